//! `appliance daemon [--dry-run] [--config FILE] [--board FILE] [--socket PATH]`.

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;

use crate::daemon::{self, Options};

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "daemon", help_triggers("-h", "--help", "help"))]
/// run the balancer service (started by init); --dry-run prints the plan.
pub struct Args {
    /// print the network and IPVS plan and exit, touching nothing
    #[argh(switch)]
    pub dry_run: bool,
    /// use this TOML config instead of the store (tests, dry runs)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// board facts file (default /etc/appliance/board.toml)
    #[argh(option)]
    pub board: Option<PathBuf>,
    /// control socket to serve (default /run/appliance/control.sock)
    #[argh(option)]
    pub socket: Option<PathBuf>,
}

impl From<Args> for Options {
    fn from(a: Args) -> Self {
        let d = Options::default();
        Options {
            dry_run: a.dry_run,
            config: a.config,
            board: a.board.unwrap_or(d.board),
            socket: a.socket.unwrap_or(d.socket),
        }
    }
}

/// `appliance daemon ...`.
pub fn run(a: Args) -> ExitCode {
    daemon::start(a.into())
}

#[cfg(test)]
mod tests {
    use super::super::{argv, parse, Appliance, Command};
    use super::*;

    fn daemon(v: &[&str]) -> Result<Options, String> {
        match parse(&argv(&[&["daemon"], v].concat())) {
            Ok(Appliance {
                command: Some(Command::Daemon(a)),
                ..
            }) => Ok(a.into()),
            Ok(other) => Err(format!("{other:?}")),
            Err((text, _)) => Err(text),
        }
    }

    #[test]
    fn options_parse_and_reject_unknown() {
        let o = daemon(&["--dry-run", "--config", "x.toml"]).unwrap();
        assert!(o.dry_run);
        assert_eq!(o.config, Some(PathBuf::from("x.toml")));
        assert_eq!(o.socket, Options::default().socket);
        let o = daemon(&["--board", "b.toml", "--socket", "/tmp/s"]).unwrap();
        assert_eq!(
            (o.board, o.socket),
            (PathBuf::from("b.toml"), PathBuf::from("/tmp/s"))
        );
        let e = daemon(&["--bogus"]).unwrap_err();
        assert!(e.contains("--bogus"), "{e}");
        let e = daemon(&["--config"]).unwrap_err();
        assert!(e.contains("--config"), "{e}");
    }
}
