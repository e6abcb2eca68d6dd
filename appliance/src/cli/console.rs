//! `appliance console [--socket PATH] [--start-wait SECONDS]`.

use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;

use crate::console::{self, menu::Timing};
use crate::control::proto::DEFAULT_SOCKET;

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "console", help_triggers("-h", "--help", "help"))]
/// serial console menu (started by init on ttyS0; a client of the daemon).
pub struct Args {
    /// control socket of the daemon (default /run/appliance/control.sock)
    #[argh(option, default = "DEFAULT_SOCKET.to_owned()")]
    pub socket: String,
    /// how long to wait for the daemon at start, 0 to 3600 seconds
    #[argh(option, from_str_fn(start_wait))]
    pub start_wait: Option<Duration>,
}

fn start_wait(v: &str) -> Result<Duration, String> {
    match v.parse::<u64>() {
        Ok(s) if s <= 3600 => Ok(Duration::from_secs(s)),
        _ => Err(format!("takes whole seconds from 0 to 3600, not '{v}'")),
    }
}

/// `appliance console ...`.
pub fn run(a: Args) -> ExitCode {
    let mut timing = Timing::default();
    if let Some(w) = a.start_wait {
        timing.start_wait = w;
    }
    console::run(&a.socket, timing)
}
