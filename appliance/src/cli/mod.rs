//! The admin command line, one layer above the library: `appliance <command> [args]`.
//!
//! Every command word is a variant of [`Command`] with its arguments parsed by `argh`
//! (which also writes `--help` for each); each file here turns the parsed arguments into
//! library calls and prints the result. Nothing below this module imports it.
//!
//! - [`daemon`], [`console`]: the services init starts.
//! - [`control`]: `status|show|drain|apply|save|revert|logs` over the control socket.
//! - [`config`], [`store`]: `config ...` and `factory-reset` (store writers).
//! - [`probe`], [`ipvs`], [`net`], [`leds`]: diagnostics.

pub mod config;
pub mod console;
pub mod control;
pub mod daemon;
pub mod firmware;
pub mod firmware_image;
pub mod ipvs;
pub mod leds;
pub mod net;
pub mod probe;
pub mod store;

use std::process::ExitCode;

use argh::FromArgs;

/// Exit status of a usage error (bad command word, option or value).
pub const USAGE_EXIT: u8 = 2;

#[derive(FromArgs, Debug, PartialEq)]
/// SIP load-balancer appliance: the service, the serial console and the admin commands.
#[argh(
    help_triggers("-h", "--help", "help"),
    note = "Every command has its own help: appliance <command> --help.
Operation commands talk to the running daemon over /run/appliance/control.sock.
Exit status: 0 done, 1 failed, 2 usage error."
)]
pub struct Appliance {
    /// print the firmware version
    #[argh(switch)]
    pub version: bool,
    #[argh(subcommand)]
    /// the command to run
    pub command: Option<Command>,
}

/// One command word of `appliance`.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand)]
pub enum Command {
    /// `daemon`
    Daemon(daemon::Args),
    /// `console`
    Console(console::Args),
    /// `status`
    Status(control::Status),
    /// `show`
    Show(control::Show),
    /// `drain`
    Drain(control::Drain),
    /// `apply`
    Apply(control::Apply),
    /// `save`
    Save(control::Save),
    /// `revert`
    Revert(control::Revert),
    /// `logs`
    Logs(control::Logs),
    /// `config`
    Config(config::Args),
    /// `factory-reset`
    FactoryReset(store::FactoryReset),
    /// `probe`
    Probe(probe::Args),
    /// `ipvs`
    Ipvs(ipvs::Args),
    /// `net`
    Net(net::Args),
    /// `leds`
    Leds(leds::Args),
    /// `firmware`
    Firmware(firmware::Args),
    /// `version`
    Version(Version),
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "version", help_triggers("-h", "--help", "help"))]
/// print the firmware version.
pub struct Version {}

/// Rewrite the two argument forms argh does not take into ones it does, so callers keep
/// working: `--name=value` becomes `--name value`, and a bare `-` (stdin, always the last
/// positional of its command) moves behind a `--`, where argh reads it as a positional.
pub fn normalise(args: &[String]) -> Vec<String> {
    let end = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let (head, tail) = args.split_at(end);
    let mut out = Vec::with_capacity(args.len() + 2);
    let mut dashes = 0;
    for a in head {
        match a.split_once('=') {
            _ if a == "-" => dashes += 1,
            Some((name, value)) if name.starts_with("--") && name.len() > 2 => {
                out.push(name.to_owned());
                out.push(value.to_owned());
            }
            _ => out.push(a.clone()),
        }
    }
    if dashes > 0 || !tail.is_empty() {
        out.push("--".into());
        out.extend((0..dashes).map(|_| "-".to_owned()));
        out.extend(tail.iter().skip(1).cloned());
    }
    out
}

/// Parse `args` (without the program name). `Err` carries what to print and the exit
/// status: help goes to stdout with 0, a usage error to stderr with 2.
pub fn parse(args: &[String]) -> Result<Appliance, (String, ExitCode)> {
    let args = normalise(args);
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    Appliance::from_args(&["appliance"], &strs).map_err(|e| match e.status {
        Ok(()) => (e.output, ExitCode::SUCCESS),
        Err(()) => (e.output, ExitCode::from(USAGE_EXIT)),
    })
}

/// The command words of `args` that name a command with its own help (e.g. `config import`
/// of `config import x.toml`), so a usage error can point at that help.
pub fn command_path(args: &[String]) -> String {
    let words: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .take_while(|a| !a.starts_with('-'))
        .collect();
    let mut path = String::new();
    for n in 1..=words.len() {
        let candidate = words[..n].join(" ");
        let mut probe: Vec<&str> = words[..n].to_vec();
        probe.push("--help");
        match Appliance::from_args(&["appliance"], &probe) {
            Err(e)
                if e.status.is_ok()
                    && e.output
                        .starts_with(&format!("Usage: appliance {candidate} ")) =>
            {
                path = candidate
            }
            _ => break,
        }
    }
    path
}

/// The top-level help text (also printed, to stderr, when no command is given).
pub fn usage() -> String {
    match Appliance::from_args(&["appliance"], &["--help"]) {
        Ok(_) => String::new(),
        Err(e) => e.output,
    }
}

/// Print a usage error naming the problem, the command's usage line and where its help
/// is; exit status 2.
pub fn usage_error(cmd: &str, msg: &str) -> ExitCode {
    eprintln!("{}", usage_error_text(cmd, msg));
    ExitCode::from(USAGE_EXIT)
}

/// The text of [`usage_error`]: `appliance CMD: MSG`, `usage: ...`, `Run ... --help`.
pub fn usage_error_text(cmd: &str, msg: &str) -> String {
    let mut words: Vec<&str> = cmd.split_whitespace().collect();
    words.push("--help");
    let usage = match Appliance::from_args(&["appliance"], &words) {
        Err(e) => e
            .output
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("Usage: "))
            .map(|l| format!("usage: {l}\n"))
            .unwrap_or_default(),
        Ok(_) => String::new(),
    };
    let sp = if cmd.is_empty() { "" } else { " " };
    format!(
        "appliance{sp}{cmd}: {}\n{usage}Run appliance{sp}{cmd} --help for more information.",
        msg.trim_end()
    )
}

/// Parse and run one command line (without the program name).
pub fn run(args: &[String]) -> ExitCode {
    let a = match parse(args) {
        Ok(a) => a,
        Err((text, code)) if code == ExitCode::SUCCESS => {
            println!("{}", text.trim_end());
            return code;
        }
        Err((text, code)) => {
            eprintln!("{}", usage_error_text(&command_path(args), &text));
            return code;
        }
    };
    match a.command {
        None if a.version => version(),
        None => {
            eprintln!("{}", usage().trim_end());
            ExitCode::from(USAGE_EXIT)
        }
        Some(c) => dispatch(c),
    }
}

fn version() -> ExitCode {
    println!("appliance {}", crate::VERSION);
    ExitCode::SUCCESS
}

fn dispatch(c: Command) -> ExitCode {
    match c {
        Command::Daemon(a) => daemon::run(a),
        Command::Console(a) => console::run(a),
        Command::Status(a) => control::status(a),
        Command::Show(a) => control::show(a),
        Command::Drain(a) => control::drain(a),
        Command::Apply(a) => control::apply(a),
        Command::Save(a) => control::save(a),
        Command::Revert(a) => control::revert(a),
        Command::Logs(a) => control::logs(a),
        Command::Config(a) => config::run(a),
        Command::FactoryReset(a) => store::run(a),
        Command::Probe(a) => probe::run(a),
        Command::Ipvs(a) => ipvs::run(a),
        Command::Net(a) => net::run(a),
        Command::Leds(a) => leds::run(a),
        Command::Firmware(a) => firmware::run(a),
        Command::Version(_) => version(),
    }
}

/// Entry point of the binary: the process arguments, parsed and run.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    run(&args)
}

/// Test helper: `&["a", "b"]` as owned arguments.
#[cfg(test)]
pub(crate) fn argv(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

#[cfg(test)]
mod tests;
