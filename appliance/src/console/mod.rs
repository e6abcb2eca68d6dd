//! The pfSense-style serial console menu (a client of the control socket).
//!
//! Started by init on the serial port (`appliance console [--socket PATH]`). It holds
//! no state of its own: the daemon owns config, password hash and back-off, so a
//! crash or a pulled cable here never affects balancing; init simply respawns it.
//!
//! - [`menu`]: the menu logic over the [`menu::Port`] and [`menu::Daemon`] traits.
//! - [`screens`]: pure 80x24 rendering; [`fields`]: input parsers with messages.
//! - [`term`]: the real terminal (raw-ish line input via termios).
//!
//! First boot: an empty `console.password_hash` forces setting a password before
//! the menu appears (Ctrl-C cannot skip it), because the box ships with no shared
//! default password that could be left unchanged.

pub mod fields;
pub mod menu;
pub mod screens;
pub mod term;

use std::process::ExitCode;

use crate::control::client::Client;
use crate::control::proto::DEFAULT_SOCKET;

const USAGE: &str = "usage: appliance console [--socket PATH] [--start-wait SECONDS]";

/// `appliance console [--socket PATH] [--start-wait SECONDS]`.
pub fn run(args: &[String]) -> ExitCode {
    let mut socket = DEFAULT_SOCKET.to_string();
    let mut timing = menu::Timing::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--socket", Some(p)) => socket = p.clone(),
            ("--start-wait", Some(v)) => match v.parse::<u64>() {
                Ok(s) if s <= 3600 => timing.start_wait = std::time::Duration::from_secs(s),
                _ => {
                    eprintln!("appliance console: --start-wait takes whole seconds from 0 to 3600, not '{v}'");
                    return ExitCode::from(2);
                }
            },
            ("--socket" | "--start-wait", None) => {
                eprintln!("appliance console: {a} needs a value\n{USAGE}");
                return ExitCode::from(2);
            }
            (other, _) => {
                eprintln!("appliance console: unknown option '{other}'\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let term = term::Term::open();
    let mut m = menu::Menu::new(term, Client::new(&socket));
    m.timing = timing;
    m.run();
    ExitCode::SUCCESS
}
