//! Multi-call entry point: `appliance <command> [args...]`.
//!
//! Each module owns its own sub-commands through a `cli` function so that this file
//! only dispatches; see `appliance help`.

use std::process::ExitCode;

fn usage() -> &'static str {
    "usage: appliance <command> [args]

commands:
  daemon [--dry-run] [--config FILE]   run the balancer service (started by init)
  console                              serial console menu (started by init)
  status [--json]                      pool and service status
  show servers|services|ipvs [--json]  detailed views
  config check|export|import FILE      validate / write / load the TOML config
  config import-keepalived FILE        convert a keepalived.conf
  factory-reset [--yes]                erase the stored config
  net apply|show [--config FILE]       apply / show interfaces, addresses, routes, sysctls
  probe HOST[:PORT] [--count N] [--json] send SIP OPTIONS and print the reply
  version                              firmware version
"
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprint!("{}", usage());
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "version" | "--version" => {
            println!("appliance {}", appliance::VERSION);
            ExitCode::SUCCESS
        }
        "help" | "--help" | "-h" => {
            print!("{}", usage());
            ExitCode::SUCCESS
        }
        "net" => appliance::net::cli(rest),
        "probe" => appliance::probe::cli(rest),
        other => {
            let _ = rest;
            eprintln!("appliance: unknown command '{other}'\n");
            eprint!("{}", usage());
            ExitCode::from(2)
        }
    }
}
