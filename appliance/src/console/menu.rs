//! The console menu logic, written against two small traits so it runs without a terminal:
//! [`Port`] (line input, output, timed key waits) and [`Daemon`] (control requests).
//!
//! Ctrl-C, idle timeout and terminal loss travel up as [`Esc`] through `?`: Ctrl-C
//! returns to the main menu, idle locks the console, EOF ends the program (init respawns it).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::config::{bounded, Config, RealServer, VirtualService};
use crate::console::fields::{self, Parsed};
use crate::console::screens::{self, fit};
use crate::control::client::Client;
use crate::control::password;
use crate::control::proto::{Reply, Request, ServerOp, ServerRow, StatusInfo, Validation, Which};

mod changes;
mod diagnostics;
mod firmware;
mod form;
mod ha;
mod interfaces;
mod locked;
mod logtime;
mod management;
mod probe;
mod servers;
mod services;
mod system;

/// What a line read produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A line (without the terminator), or any key for `wait_key`.
    Line(String),
    /// Ctrl-C.
    Interrupt,
    /// The timeout passed without input.
    Timeout,
    /// The terminal went away (EOF, Ctrl-D, hang-up).
    Eof,
}

/// The terminal, as the menu sees it.
pub trait Port {
    /// Write text (`\n` line ends).
    fn write(&mut self, text: &str);
    /// Read one line; `secret` disables echo; `Timeout` after `timeout` without a key.
    fn read_line(&mut self, secret: bool, timeout: Option<Duration>) -> Input;
    /// Wait up to `timeout` for any key (consumed); `Line("")` when one came.
    fn wait_key(&mut self, timeout: Duration) -> Input;
    /// Sleep, discarding typed input (password back-off); `Timeout` when done.
    fn pause(&mut self, d: Duration) -> Input;
    /// Start a fresh screen (clear on VT100, a separator on dumb terminals).
    fn clear(&mut self);
    /// Run an interactive shell on the terminal and wait for it.
    fn shell(&mut self) -> Result<(), String>;
}

/// The daemon, as the menu sees it.
pub trait Daemon {
    /// Send one request; `Err` carries the message to show.
    fn call(&mut self, req: &Request) -> Result<Reply, String>;
}

impl Daemon for Client {
    fn call(&mut self, req: &Request) -> Result<Reply, String> {
        Client::call(self, req).map_err(|e| e.to_string())
    }
}

/// Ways out of a screen other than finishing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Esc {
    /// Ctrl-C: back to the main menu.
    Interrupt,
    /// Idle too long: lock.
    Idle,
    /// Terminal lost: exit.
    Eof,
}

type R<T> = Result<T, Esc>;

/// Timings (shortened by tests).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Live status refresh.
    pub refresh: Duration,
    /// Drain countdown poll.
    pub drain_poll: Duration,
    /// Retry interval while the daemon is unreachable.
    pub retry: Duration,
    /// At console start, how long an unreachable daemon is waited for quietly
    /// (init starts both at once; the daemon needs a moment to open its socket).
    pub start_wait: Duration,
    /// Poll interval during that quiet wait.
    pub start_poll: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            refresh: Duration::from_secs(2),
            drain_poll: Duration::from_secs(1),
            retry: Duration::from_secs(5),
            start_wait: Duration::from_secs(20),
            start_poll: Duration::from_millis(500),
        }
    }
}

/// Recorded field changes for the confirmation summary.
#[derive(Default)]
struct Changes(Vec<(String, String, String)>);

impl Changes {
    fn note(&mut self, label: &str, old: impl ToString, new: impl ToString) {
        let (o, n) = (old.to_string(), new.to_string());
        if o != n {
            self.0.push((label.into(), o, n));
        }
    }
}

/// The console menu.
pub struct Menu<P: Port, D: Daemon> {
    /// The terminal.
    pub port: P,
    /// The daemon connection.
    pub daemon: D,
    /// Timings.
    pub timing: Timing,
    status: StatusInfo,
    idle: Option<Duration>,
    /// The daemon has answered at least once since the console started.
    reached: bool,
}

/// Lines per page when paging long output.
const PAGE: usize = 20;
/// Largest keepalived.conf paste accepted.
const MAX_PASTE: usize = 200_000;

impl<P: Port, D: Daemon> Menu<P, D> {
    /// A menu on `port` talking to `daemon`.
    pub fn new(port: P, daemon: D) -> Self {
        Menu {
            port,
            daemon,
            timing: Timing::default(),
            status: StatusInfo::default(),
            idle: None,
            reached: false,
        }
    }

    /// Run until the terminal goes away.
    pub fn run(&mut self) {
        loop {
            match self.session() {
                Err(Esc::Eof) => {
                    self.port.write("\nTerminal closed; console exiting.\n");
                    return;
                }
                Err(Esc::Idle) => self.port.write(&format!(
                    "\n\nConsole locked after {} s without input.\n",
                    self.idle.map_or(0, |d| d.as_secs())
                )),
                Err(Esc::Interrupt) | Ok(()) => self.port.write("\nConsole locked.\n"),
            }
        }
    }

    /// One login session: connect, authenticate, main menu until logout/idle.
    fn session(&mut self) -> R<()> {
        self.connect()?;
        if self.status.login_blocked.is_some() {
            return self.locked_out();
        }
        if self.status.password_set {
            self.login()?;
        } else {
            self.first_password()?;
        }
        loop {
            match self.main_once() {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(Esc::Interrupt) => self.port.write("^C\n"),
                Err(e) => return Err(e),
            }
        }
    }

    fn set_status(&mut self, s: StatusInfo) {
        self.idle = (s.idle_lock_s > 0).then(|| Duration::from_secs(u64::from(s.idle_lock_s)));
        self.status = s;
    }

    fn connect(&mut self) -> R<()> {
        if !self.reached {
            self.wait_for_daemon_start();
        }
        loop {
            match self.daemon.call(&Request::Status) {
                Ok(Reply::Status(s)) => {
                    self.reached = true;
                    self.set_status(*s);
                    return Ok(());
                }
                Ok(other) => self.say(&format!("unexpected answer to status: {other:?}")),
                Err(m) => self.say(&m),
            }
            self.port.write(&format!(
                "Retrying in {} s (press Enter to retry now).\n",
                self.timing.retry.as_secs()
            ));
            if self.port.wait_key(self.timing.retry) == Input::Eof {
                return Err(Esc::Eof);
            }
        }
    }

    /// First connection after boot: an unreachable daemon is most likely still
    /// starting, so poll quietly for `start_wait` before reporting it as a fault.
    fn wait_for_daemon_start(&mut self) {
        let polls = self.timing.start_wait.as_millis() / self.timing.start_poll.as_millis().max(1);
        for i in 0..polls {
            if let Ok(Reply::Status(s)) = self.daemon.call(&Request::Status) {
                self.reached = true;
                self.set_status(*s);
                return;
            }
            if i == 0 {
                self.port
                    .write("Waiting for the appliance daemon to start...\n");
            }
            self.port.pause(self.timing.start_poll);
        }
    }

    fn refresh(&mut self) {
        if let Ok(Reply::Status(s)) = self.daemon.call(&Request::Status) {
            self.set_status(*s);
        }
    }

    // ---- input helpers -------------------------------------------------------

    fn say(&mut self, m: &str) {
        for l in m.lines() {
            for (i, part) in screens::wrap(l, screens::WIDTH - 4).iter().enumerate() {
                let lead = if i == 0 { "  ! " } else { "    " };
                self.port.write(&format!("{lead}{part}\n"));
            }
        }
    }

    fn read(&mut self, prompt: &str, secret: bool, idle: Option<Duration>) -> R<String> {
        self.port.write(prompt);
        match self.port.read_line(secret, idle) {
            Input::Line(s) => Ok(if secret { s } else { s.trim().to_owned() }),
            Input::Interrupt => Err(Esc::Interrupt),
            Input::Timeout => Err(Esc::Idle),
            Input::Eof => Err(Esc::Eof),
        }
    }

    fn line(&mut self, prompt: &str) -> R<String> {
        self.read(prompt, false, self.idle)
    }

    fn secret(&mut self, prompt: &str) -> R<String> {
        let r = self.read(prompt, true, self.idle);
        self.port.write("\n");
        r
    }

    /// Ask for a value, re-prompting with the parser's message until it parses.
    fn ask<T>(&mut self, label: &str, current: &str, parse: impl Fn(&str) -> Parsed<T>) -> R<T> {
        loop {
            let prompt = if current.is_empty() {
                format!("{label}: ")
            } else {
                format!("{label} [{current}]: ")
            };
            let s = self.line(&prompt)?;
            let s = if s.is_empty() { current.to_owned() } else { s };
            match parse(&s) {
                Ok(v) => return Ok(v),
                Err(m) => self.say(&m),
            }
        }
    }

    fn confirm(&mut self, q: &str) -> R<bool> {
        self.ask(&format!("{q} (y/n)"), "", fields::yes_no)
    }

    fn req(&mut self, r: Request) -> Option<Reply> {
        match self.daemon.call(&r) {
            Ok(reply) => Some(reply),
            Err(m) => {
                self.say(&m);
                None
            }
        }
    }

    fn page(&mut self, lines: &[String]) -> R<()> {
        // Wrapped, never cut: a long log line or problem is read whole, page by page.
        let lines = screens::wrap_for_pager(lines);
        let pages = lines.len().div_ceil(PAGE);
        for (i, chunk) in lines.chunks(PAGE).enumerate() {
            for l in chunk {
                self.port.write(&format!("{l}\n"));
            }
            if i + 1 < pages {
                let s = self.line("-- more: Enter for the next page, q to stop: ")?;
                if s.eq_ignore_ascii_case("q") {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Wait for a key during a watch loop, counting idle time; `true` = key pressed.
    fn watch_wait(&mut self, d: Duration, waited: &mut Duration) -> R<bool> {
        match self.port.wait_key(d) {
            Input::Line(_) => Ok(true),
            Input::Interrupt => Err(Esc::Interrupt),
            Input::Eof => Err(Esc::Eof),
            Input::Timeout => {
                *waited += d;
                match self.idle {
                    Some(limit) if *waited >= limit => Err(Esc::Idle),
                    _ => Ok(false),
                }
            }
        }
    }

    // ---- authentication --------------------------------------------------------

    fn new_password(&mut self) -> R<String> {
        loop {
            let pw = self.secret(&format!(
                "New password ({}-{} characters): ",
                password::MIN_LEN,
                password::MAX_LEN
            ))?;
            // A bare Enter is someone waking the terminal, not a password attempt.
            if pw.is_empty() {
                continue;
            }
            if let Err(e) = password::check_policy(&pw) {
                self.say(&e.to_string());
                continue;
            }
            let again = self.secret("Repeat the new password: ")?;
            if again != pw {
                self.say("the two passwords differ; try again");
                continue;
            }
            return Ok(pw);
        }
    }

    fn first_password(&mut self) -> R<()> {
        self.port.write(
            "\nNo console password is set (first boot).\n\
             Set one now: it protects this menu and the shell.\n",
        );
        loop {
            let pw = match self.new_password() {
                Ok(pw) => pw,
                Err(Esc::Eof) => return Err(Esc::Eof),
                // Ctrl-C or idle cannot skip the first password.
                Err(_) => {
                    self.port
                        .write("\nA password must be set before anything else.\n");
                    continue;
                }
            };
            if let Some(Reply::Done { message }) = self.req(Request::SetPassword {
                old: String::new(),
                new: pw,
            }) {
                self.port.write(&format!("{message}\n"));
                self.refresh();
                return Ok(());
            }
        }
    }

    /// Ask for the password once; `Ok(true)` when accepted. Applies the back-off pause.
    fn check_password(&mut self, idle: Option<Duration>) -> R<bool> {
        let pw = self.read("Password: ", true, idle)?;
        self.port.write("\n");
        match self.req(Request::VerifyPassword { password: pw }) {
            Some(Reply::Verified(v)) if v.ok => Ok(true),
            Some(Reply::Verified(v)) => {
                self.port.write(&format!(
                    "Wrong password. Wait {} s before the next attempt.\n",
                    v.retry_after_s
                ));
                if self
                    .port
                    .pause(Duration::from_secs(u64::from(v.retry_after_s)))
                    == Input::Eof
                {
                    return Err(Esc::Eof);
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    fn login(&mut self) -> R<()> {
        self.port.write(&format!(
            "\n{} (appliance {}) console is locked.\n",
            self.status.hostname, self.status.version
        ));
        loop {
            match self.check_password(None) {
                Ok(true) => return Ok(()),
                Ok(false) | Err(Esc::Interrupt) | Err(Esc::Idle) => {}
                Err(Esc::Eof) => return Err(Esc::Eof),
            }
        }
    }

    // ---- main menu -------------------------------------------------------------

    /// Show the main menu once and run the chosen item; `Ok(false)` = logout.
    fn main_once(&mut self) -> R<bool> {
        self.refresh();
        self.port.write("\n");
        self.port.write(&screens::main_menu(&self.status));
        let choice = match self.port.read_line(false, self.idle) {
            Input::Line(s) => s.trim().to_owned(),
            Input::Interrupt => return Err(Esc::Interrupt),
            Input::Timeout => return Err(Esc::Idle),
            Input::Eof => return Err(Esc::Eof),
        };
        match choice.as_str() {
            "" => {}
            "1" => self.live_status()?,
            "2" => self.interfaces()?,
            "3" => self.services()?,
            "4" => self.servers()?,
            "5" => self.probe()?,
            "6" => self.changes()?,
            "7" => self.diagnostics()?,
            "8" => self.logs()?,
            "9" => self.change_password()?,
            "10" => self.factory_reset()?,
            "11" => self.power()?,
            "12" => self.shell()?,
            "13" => self.import()?,
            "14" => self.ha()?,
            "15" => self.management()?,
            "16" => self.logtime()?,
            "17" => self.firmware()?,
            "0" => return Ok(false),
            other => {
                let shown: String = other.chars().take(20).collect();
                self.say(&format!(
                    "'{shown}' is not an option: enter a number from the menu"
                ))
            }
        }
        Ok(true)
    }

    // ---- 1: live status --------------------------------------------------------

    fn live_status(&mut self) -> R<()> {
        let mut waited = Duration::ZERO;
        loop {
            self.refresh();
            let rows: Vec<ServerRow> = match self.daemon.call(&Request::ShowServers) {
                Ok(Reply::Servers(r)) => r,
                Ok(_) => Vec::new(),
                Err(m) => {
                    self.say(&m);
                    Vec::new()
                }
            };
            self.port.clear();
            let body = screens::status_table(&self.status, &rows, self.timing.refresh.as_secs());
            self.port.write(&body);
            if self.watch_wait(self.timing.refresh, &mut waited)? {
                return Ok(());
            }
        }
    }

    // ---- config editing helpers -------------------------------------------------

    fn candidate(&mut self) -> Option<Config> {
        match self.req(Request::GetConfig {
            which: Which::Candidate,
        })? {
            Reply::Config { config, .. } => Some(*config),
            other => {
                self.say(&format!("unexpected answer: {other:?}"));
                None
            }
        }
    }

    fn show_validation(&mut self, v: &Validation) {
        for w in &v.warnings {
            self.port.write(&format!("  warning: {}\n", fit(w)));
        }
        if !v.errors.is_empty() {
            self.port.write(&format!(
                "The candidate has {} problem(s); it cannot be applied until they are fixed:\n",
                v.errors.len()
            ));
            for e in &v.errors {
                self.port.write(&format!("  - {}\n", fit(e)));
            }
        }
    }

    /// After a staged edit: show problems, offer apply (and then save).
    fn after_stage(&mut self, v: &Validation) -> R<()> {
        self.show_validation(v);
        if !v.is_ok() {
            self.port
                .write("Staged in the candidate. Fix the problems, then use 6) Changes.\n");
            return Ok(());
        }
        self.port
            .write("Staged in the candidate (not running yet).\n");
        if self.confirm("Apply the candidate now")? {
            self.apply()?;
        }
        Ok(())
    }

    fn apply(&mut self) -> R<()> {
        if let Some(Reply::Done { message }) = self.req(Request::Apply) {
            self.port.write(&format!("{}\n", fit(&message)));
            self.refresh();
            if self.status.unsaved && self.confirm("Save the running config to flash now")? {
                self.save();
            }
        }
        Ok(())
    }

    fn save(&mut self) {
        if let Some(Reply::Done { message }) = self.req(Request::Save) {
            self.port.write(&format!("{}\n", fit(&message)));
        }
    }

    /// Confirm the recorded changes and stage `new` as the candidate.
    fn stage(&mut self, new: Config, changes: Changes) -> R<()> {
        if changes.0.is_empty() {
            self.port.write("No changes.\n");
            return Ok(());
        }
        self.port.write("Changes:\n");
        for (l, o, n) in &changes.0 {
            self.port
                .write(&format!("{}\n", fit(&format!("  {l}: {o} -> {n}"))));
        }
        if !self.confirm("Stage these changes in the candidate config")? {
            self.port.write("Nothing changed.\n");
            return Ok(());
        }
        if let Some(Reply::Validation(v)) = self.req(Request::SetCandidate {
            config: Box::new(new),
        }) {
            self.after_stage(&v)?;
        }
        Ok(())
    }

    fn pick_service(&mut self, c: &Config) -> R<Option<usize>> {
        match c.services.len() {
            0 => {
                self.say(
                    "no virtual service is configured; add one in 3) Virtual service settings",
                );
                Ok(None)
            }
            1 => Ok(Some(0)),
            n => {
                for (i, s) in c.services.iter().enumerate() {
                    self.port
                        .write(&format!("  {}) {}  {}:{}\n", i + 1, s.name, s.vip, s.port));
                }
                let k = self.ask("Service number (0 = back)", "", |s| {
                    fields::number(s, 0, n, "service number")
                })?;
                Ok(k.checked_sub(1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AdminState;
    use crate::control::fake::FakeDaemon;
    use std::collections::VecDeque;
    use std::sync::Arc;

    /// Scripted terminal: pops inputs, records output; EOF when the script ends.
    #[derive(Default)]
    pub(super) struct Script {
        pub(super) inputs: VecDeque<Input>,
        pub(super) out: String,
        pub(super) pauses: Vec<Duration>,
        pub(super) shells: u32,
        pub(super) fake: Option<Arc<FakeDaemon>>,
    }

    impl Port for Script {
        fn write(&mut self, text: &str) {
            self.out.push_str(text);
        }
        fn read_line(&mut self, _secret: bool, _t: Option<Duration>) -> Input {
            self.inputs.pop_front().unwrap_or(Input::Eof)
        }
        fn wait_key(&mut self, _t: Duration) -> Input {
            self.inputs.pop_front().unwrap_or(Input::Eof)
        }
        fn pause(&mut self, d: Duration) -> Input {
            self.pauses.push(d);
            if let Some(f) = &self.fake {
                let mut st = f.state.lock().unwrap();
                st.clock = Some(st.clock.unwrap_or_default() + d);
            }
            Input::Timeout
        }
        fn clear(&mut self) {
            self.out.push_str("<CLEAR>");
        }
        fn shell(&mut self) -> Result<(), String> {
            self.shells += 1;
            Ok(())
        }
    }

    pub(super) struct Direct(pub(super) Arc<FakeDaemon>);
    impl Daemon for Direct {
        fn call(&mut self, req: &Request) -> Result<Reply, String> {
            match self.0.handle_sync(req.clone()) {
                crate::control::proto::Response::Ok(r) => Ok(r),
                crate::control::proto::Response::Error { message } => Err(message),
            }
        }
    }

    const PW: &str = "console-pw-1";

    pub(super) fn fake(with_password: bool) -> Arc<FakeDaemon> {
        let f = Arc::new(FakeDaemon::new(Config::builtin_default()));
        f.state.lock().unwrap().clock = Some(Duration::ZERO);
        if with_password {
            f.state
                .lock()
                .unwrap()
                .session
                .set_password("", PW, Duration::ZERO)
                .unwrap();
        }
        f
    }

    fn l(s: &str) -> Input {
        Input::Line(s.into())
    }

    /// Log in, then run `steps`; returns the output and the script port.
    pub(super) fn drive(f: &Arc<FakeDaemon>, steps: Vec<Input>) -> Script {
        let mut inputs = vec![l(PW)];
        inputs.extend(steps);
        let port = Script {
            inputs: inputs.into(),
            fake: Some(f.clone()),
            ..Default::default()
        };
        let mut m = Menu::new(port, Direct(f.clone()));
        m.run();
        m.port
    }

    pub(super) fn lines(v: &[&str]) -> Vec<Input> {
        v.iter().map(|s| l(s)).collect()
    }

    #[test]
    fn first_boot_forces_a_password_then_login_backs_off() {
        let f = fake(false);
        let mut steps = vec![Input::Interrupt];
        steps.extend(lines(&[
            "",
            "abc",
            "longpassword",
            "different1",
            "longpassword",
            "longpassword",
            "0",
        ]));
        steps.extend(lines(&["wrong-one", "wrong-two", "longpassword", "0"]));
        let port = Script {
            inputs: steps.into(),
            fake: Some(f.clone()),
            ..Default::default()
        };
        let mut m = Menu::new(port, Direct(f.clone()));
        m.run();
        let out = &m.port.out;
        assert!(
            out.contains("No console password is set (first boot)"),
            "{out}"
        );
        assert!(out.contains("A password must be set before anything else"));
        // "abc" is refused; the bare Enter before it is not an attempt.
        assert_eq!(
            out.matches("the password must be 8 to 128 printable characters")
                .count(),
            1,
            "{out}"
        );
        assert!(out.contains("the two passwords differ"));
        assert!(out.contains("password changed and saved to flash"));
        assert!(out.contains(screens::MAIN_PROMPT));
        assert!(out.contains("console is locked"));
        assert!(out.contains("Wrong password. Wait 1 s"));
        assert!(out.contains("Wrong password. Wait 2 s"), "{out}");
        assert_eq!(
            m.port.pauses,
            vec![Duration::from_secs(1), Duration::from_secs(2)]
        );
        assert!(out.ends_with("Terminal closed; console exiting.\n"));
        assert!(f.state.lock().unwrap().session.password_set());
    }

    #[test]
    fn bad_menu_options_and_ctrl_c_and_idle_lock() {
        let f = fake(true);
        let mut steps = lines(&["99", "x\u{fffd}y", "2", "1"]);
        steps.push(Input::Interrupt); // abandon the WAN edit
        steps.push(Input::Timeout); // idle at the main menu
        steps.push(l(PW));
        let port = drive(&f, steps);
        let out = &port.out;
        assert!(out.contains("'99' is not an option"), "{out}");
        assert!(out.contains("is not an option: enter a number from the menu"));
        assert!(out.contains("WAN interface name [eth0]: "));
        assert!(out.contains("^C"));
        assert!(out.contains("Console locked after 900 s without input."));
        assert_eq!(out.matches("console is locked").count(), 2);
        assert!(
            !f.state.lock().unwrap().session.unapplied(),
            "Ctrl-C must change nothing"
        );
    }

    #[test]
    fn interfaces_validate_every_field_then_stage_apply_save() {
        let f = fake(true);
        let steps = lines(&[
            "2",
            "1", // interfaces, WAN
            "eth 0",
            "eth1",
            "", // bad name, LAN's name, keep
            "bad",
            "203.0.113.0/24",
            "203.0.113.3/24", // bad, network address, ok
            "198.51.100.1",
            "203.0.113.1", // gateway off-subnet, ok
            "100",
            "1400", // MTU
            "maybe",
            "y", // stage?
            "y",
            "y", // apply, save
            "3",
            "-bad-",
            "lb-2",
            "n", // hostname, then decline staging
            "0",
            "0",
        ]);
        let port = drive(&f, steps);
        let out = &port.out;
        for msg in [
            "'eth 0' is not an interface name",
            "eth1 is already the other interface",
            "'bad' is not an IPv4 address with prefix",
            "is the network or broadcast address",
            "gateway 198.51.100.1 is not on this interface's subnet 203.0.113.3/24",
            "'100' is not a valid MTU",
            "'maybe': answer y or n",
            "WAN address: 203.0.113.2/24 -> 203.0.113.3/24",
            "WAN MTU: 1500 -> 1400",
            "applied:",
            "saved the running config to flash",
            "'-bad-' is not a hostname",
            "Nothing changed.",
        ] {
            assert!(out.contains(msg), "missing {msg:?} in:\n{out}");
        }
        let st = f.state.lock().unwrap();
        assert_eq!(st.session.saved().wan.mtu, 1400);
        assert_eq!(
            st.session.running().wan.address.to_string(),
            "203.0.113.3/24"
        );
        assert_eq!(st.session.running().hostname.as_str(), "sip-lb");
    }

    #[test]
    fn ports_are_listed_with_mac_link_driver_and_assigned_by_number() {
        let f = fake(true);
        let steps = lines(&[
            "2", "4", // interfaces, assign from the ports found
            "9", "wlan7", "", // out of range, not a port, keep eth0 as WAN
            "1", "3", // eth0 is WAN already, then eth2
            "y", // stage?
            "n", // apply now?
            "0", "0",
        ]);
        let port = drive(&f, steps);
        let out = &port.out;
        for msg in [
            "4) Assign WAN and LAN from the ports found",
            "1) eth0       52:54:00:12:34:01 link up virtio_net   WAN",
            "2) eth1       52:54:00:12:34:02 link up virtio_net   LAN",
            "3) eth2       52:54:00:12:34:03 no link igb",
            "9 is not in the list: enter 1 to 3",
            "there is no port named 'wlan7' on this box",
            "eth0 is already WAN; WAN and LAN must differ",
            "LAN name: eth1 -> eth2",
        ] {
            assert!(out.contains(msg), "missing {msg:?} in:\n{out}");
        }
        let st = f.state.lock().unwrap();
        assert_eq!(st.session.candidate().lan.name.as_str(), "eth2");
        assert_eq!(st.session.candidate().wan.name.as_str(), "eth0");
        assert_eq!(st.session.running().lan.name.as_str(), "eth1");
    }

    #[test]
    fn service_edit_add_remove() {
        let f = fake(true);
        let steps = lines(&[
            "3",
            "1",
            "999.1.1.1",
            "", // VIP bad, keep
            "0",
            "5080", // port
            "fifo",
            "wrr",
            "tun",
            "dr",
            "-1",
            "120",
            "perhaps",
            "n",
            "y",
            "255.0.255.0",
            "255.255.255.255",
            "y",
            "n", // stage, no apply
            "a",
            "sip",
            "sip2",
            "203.0.113.11",
            "",
            "y",
            "n",
            "r",
            "2",
            "y",
            "n",
            "q",
            "0",
            "0",
        ]);
        let port = drive(&f, steps);
        let out = &port.out;
        for msg in [
            "'999.1.1.1' is not an IPv4 address",
            "'0' is not a valid port",
            "'fifo' is not a scheduler",
            "'tun' is not a forwarding method",
            "'-1' is not a valid persistence timeout",
            "'perhaps': answer y or n",
            "255.0.255.0 is not a contiguous netmask",
            "scheduler: rr -> wrr",
            "pe sip: y -> n",
            "a service named 'sip' already exists",
            "add sip2 203.0.113.11:5060",
            "sip2 removed",
            "'q' is not an option",
        ] {
            assert!(out.contains(msg), "missing {msg:?} in:\n{out}");
        }
        let st = f.state.lock().unwrap();
        let c = st.session.candidate();
        assert_eq!(c.services.len(), 1);
        assert_eq!(c.services[0].port, 5080);
        assert!(!c.services[0].sip_persistence);
        assert!(
            st.session.effects().applied.is_empty(),
            "nothing applied without confirmation"
        );
    }

    #[test]
    fn servers_add_remove_enable_disable_and_drain_countdown() {
        let f = fake(true);
        f.state
            .lock()
            .unwrap()
            .remaining
            .insert("198.51.100.12:5060".parse().unwrap(), 2);
        let mut steps = lines(&[
            "4",
            "a",
            "nope",
            "198.51.100.11",
            "",
            "0",
            "5061",
            "0",
            "7",
            "y",
            "y",
            "n",
            "a",
            "192.0.2.50",
            "5060",
            "1",
            "y",
            "r",
            "5",
            "y",
            "n",
            "x",
            "9",
            "1",
            "y",
            "n",
            "e",
            "1",
            "y",
            "n",
            "d",
            "2",
            "y",
        ]);
        steps.extend([Input::Timeout, Input::Timeout]); // countdown polls until 0
        steps.extend(lines(&["z", "0", "0"]));
        let port = drive(&f, steps);
        let out = &port.out;
        for msg in [
            "Servers of 'sip'",
            "'nope' is not an IPv4 address",
            "198.51.100.11:5060 is already in this service",
            "'0' is not a valid weight",
            "'0' is not a valid port",
            "Add 198.51.100.11:5061 with weight 7 to the candidate",
            "real server 192.0.2.50:5060 in service sip is not on the LAN subnet",
            "cannot be applied until they are fixed",
            "'9' is not a valid server number",
            "is draining now",
            "Calls remaining on 198.51.100.12:5060: 2",
            "Calls remaining on 198.51.100.12:5060: 1",
            "Calls remaining on 198.51.100.12:5060: 0",
            "has no calls left",
            "'z' is not an action",
        ] {
            assert!(out.contains(msg), "missing {msg:?} in:\n{out}");
        }
        let st = f.state.lock().unwrap();
        let run = st.session.running();
        assert_eq!(run.services[0].servers[1].state, AdminState::Draining);
        assert!(st.session.unsaved());
        let cand = st.session.candidate();
        assert_eq!(cand.services[0].servers.len(), 4, "added 2, removed 1");
        assert_eq!(cand.services[0].servers[0].state, AdminState::Enabled);
    }

    #[test]
    fn drain_watch_stops_on_a_key() {
        let f = fake(true);
        f.state
            .lock()
            .unwrap()
            .remaining
            .insert("198.51.100.11:5060".parse().unwrap(), 50);
        let steps = lines(&["4", "d", "1", "y", "", "0", "0"]);
        let out = drive(&f, steps).out;
        assert!(
            out.contains("Calls remaining on 198.51.100.11:5060: 50"),
            "{out}"
        );
        assert!(out.contains("Stopped watching; the server keeps draining."));
    }

    #[test]
    fn probe_settings() {
        let f = fake(true);
        let steps = lines(&[
            "5",
            "n",
            "10",
            "500",
            "5",
            "300",
            "0",
            "3",
            "256",
            "2",
            "2xx,abc",
            "2xx,404",
            "http://x",
            "sip:mon@lb.invalid",
            "sip:a b",
            "-",
            "",
            "explode",
            "remove",
            "y",
            "n",
            "0",
        ]);
        let out = drive(&f, steps).out;
        for msg in [
            "'10' is not a valid interval",
            "'5' is not a valid timeout",
            "'0' is not a valid rise count",
            "'256' is not a valid fall count",
            "is not a SIP status code range",
            "'http://x' is not a SIP URI",
            "'explode': use weight0",
            "interval ms: 100 -> 500",
        ] {
            assert!(out.contains(msg), "missing {msg:?} in:\n{out}");
        }
        let st = f.state.lock().unwrap();
        let p = &st.session.candidate().services[0].probe;
        assert_eq!(
            (p.interval_ms, p.timeout_ms, p.rise, p.fall),
            (500, 300, 3, 2)
        );
        assert_eq!(p.accept.len(), 2);
        assert_eq!(p.from_uri.as_str(), "sip:mon@lb.invalid");
    }

    /// keepalived's `delay_loop 120` imports as 120,000 ms, which validation accepts;
    /// Enter on every probe prompt must keep it instead of re-prompting forever.
    #[test]
    fn probe_enter_keeps_any_valid_stored_value() {
        let mut c = Config::builtin_default();
        c.services[0].probe.interval_ms = 120_000;
        c.services[0].probe.fall = 30;
        assert!(
            crate::config::validate(&c).is_ok(),
            "stored config is valid"
        );
        let f = Arc::new(FakeDaemon::new(c));
        {
            let mut st = f.state.lock().unwrap();
            st.clock = Some(Duration::ZERO);
            st.session.set_password("", PW, Duration::ZERO).unwrap();
        }
        let mut steps = lines(&["5"]);
        steps.extend(lines(&[""; 10])); // the ten probe prompts
        steps.extend(lines(&["0"]));
        let out = drive(&f, steps).out;
        assert!(!out.contains("is not a valid"), "re-prompted:\n{out}");
        let st = f.state.lock().unwrap();
        let p = &st.session.candidate().services[0].probe;
        assert_eq!((p.interval_ms, p.fall), (120_000, 30));
    }

    #[test]
    fn changes_menu_diff_apply_save_revert() {
        let f = fake(true);
        let steps = lines(&[
            "6", "1", "7", // no diff, bad option
            "0", "4", "x", "1", "y", "n",
            "0", // disable server 1 in the candidate, don't apply yet
            "6", "1", "2", "y", "n", "3", "y", "4", "y", "5", "y", "0", "0",
        ]);
        let out = drive(&f, steps).out;
        for msg in [
            "No differences between running and candidate.",
            "'7' is not an option: enter 0 to 5",
            "@@ -",
            "+state = \"disabled\"",
            "applied:",
            "saved the running config to flash",
            "candidate changes discarded",
            "the candidate now holds the saved config",
        ] {
            assert!(out.contains(msg), "missing {msg:?} in:\n{out}");
        }
        let st = f.state.lock().unwrap();
        assert_eq!(
            st.session.saved().services[0].servers[0].state,
            AdminState::Disabled
        );
    }

    #[test]
    fn diagnostics_logs_password_reset_power_shell_import() {
        let f = fake(true);
        let steps = lines(&[
            "7",
            "1",
            "bad host!",
            "",
            "11",
            "2",
            "2",
            "",
            "",
            "9",
            "0",
            "8",
            "9",
            PW,
            "newpassword1",
            "newpassword1",
            // A wrong current password starts the login back-off (checked at the lock below).
            "9",
            "wrong-current",
            "newpassword2",
            "newpassword2",
            "10",
            "no",
            "10",
            "yes",
            "11",
            "1",
            "nah",
            "11",
            "2",
            "yes",
            "11",
            "5",
            "12",
            "bad",
            "12",
            "newpassword1",
            "13",
            "virtual_server 203.0.113.10 5060 {",
            "  lb_algo rr",
            "  real_server 198.51.100.21 5060 {",
            "  }",
            "}",
            ".",
            "q",
            "y",
            "n",
            "0",
        ]);
        let port = drive(&f, steps);
        let out = &port.out;
        for msg in [
            "'bad host!' is not a host",
            "'11' is not a valid count",
            "64 bytes from 198.51.100.11",
            "Reply from 198.51.100.11:5060: 200 OK in 0.4 ms",
            "  | SIP/2.0 200 OK",
            "'9' is not an option: enter 0 to 2",
            "Recent events (oldest first)",
            "fake daemon started",
            "the current password is wrong",
            "password changed and saved",
            "Cancelled; nothing changed.",
            "stored config erased",
            "Cancelled.",
            "powering off",
            "'5' is not an option",
            "No shell.",
            "Starting /bin/sh",
            "Result (TOML):",
            "Unmapped lines (2):",
            "line 2: lb_algo rr -- not understood",
            "Staged in the candidate",
        ] {
            assert!(out.contains(msg), "missing {msg:?} in:\n{out}");
        }
        assert_eq!(port.shells, 1);
        assert_eq!(port.pauses, vec![Duration::from_secs(1)]);
        let st = f.state.lock().unwrap();
        assert_eq!(st.actions, vec!["factory-reset", "poweroff"]);
        let c = st.session.candidate();
        assert_eq!(c.services[0].servers.len(), 1);
        assert_eq!(
            c.services[0].servers[0].address.to_string(),
            "198.51.100.21"
        );
    }

    #[test]
    fn live_status_refreshes_until_a_key() {
        let f = fake(true);
        let mut steps = vec![l("1"), Input::Timeout, Input::Timeout, l("")];
        steps.push(l("0"));
        let out = drive(&f, steps).out;
        assert_eq!(
            out.matches("Live status, refreshed every 2 s").count(),
            3,
            "{out}"
        );
        assert_eq!(out.matches("<CLEAR>").count(), 3);
        assert!(out.contains("198.51.100.13:5060"));
    }

    #[test]
    fn unreachable_daemon_retries() {
        struct Down(u32);
        impl Daemon for Down {
            fn call(&mut self, _r: &Request) -> Result<Reply, String> {
                self.0 += 1;
                Err("cannot reach the appliance daemon at /x: refused (is it running? are you root?)".into())
            }
        }
        let port = Script {
            inputs: vec![Input::Timeout, l("")].into(),
            ..Default::default()
        };
        let mut m = Menu::new(port, Down(0));
        // The quiet start wait has its own test below.
        m.timing.start_wait = Duration::ZERO;
        m.run();
        assert_eq!(m.daemon.0, 3);
        assert_eq!(m.port.out.matches("Retrying in 5 s").count(), 3);
        assert!(m.port.out.contains("cannot reach the appliance daemon"));
    }

    #[test]
    fn daemon_still_starting_is_waited_for_quietly() {
        // Unreachable for the first 3 calls, then up with no password set.
        struct Late(u32);
        impl Daemon for Late {
            fn call(&mut self, _r: &Request) -> Result<Reply, String> {
                self.0 += 1;
                if self.0 <= 3 {
                    return Err("cannot reach the appliance daemon at /x: No such file or directory (is it running? are you root?)".into());
                }
                Ok(Reply::Status(Box::default()))
            }
        }
        let mut m = Menu::new(Script::default(), Late(0));
        m.run();
        let out = &m.port.out;
        assert_eq!(
            out.matches("Waiting for the appliance daemon to start")
                .count(),
            1,
            "{out}"
        );
        assert!(
            !out.contains("cannot reach"),
            "no fault reported while it starts: {out}"
        );
        assert!(!out.contains("Retrying in"), "{out}");
        assert_eq!(m.port.pauses, vec![Duration::from_millis(500); 3]);
        assert!(
            out.contains("No console password is set"),
            "then the first-boot prompt: {out}"
        );

        // A daemon that never comes up is reported once the wait is over.
        struct Down;
        impl Daemon for Down {
            fn call(&mut self, _r: &Request) -> Result<Reply, String> {
                Err("cannot reach the appliance daemon at /x: refused (is it running? are you root?)".into())
            }
        }
        let mut m = Menu::new(Script::default(), Down);
        m.run();
        assert_eq!(m.port.pauses.len(), 40, "20 s of 500 ms polls");
        assert!(
            m.port.out.contains("cannot reach the appliance daemon"),
            "{}",
            m.port.out
        );
    }
}
