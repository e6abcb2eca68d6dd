//! Multi-call entry point: `appliance <command> [args...]`.
//!
//! Each module owns its own sub-commands through a `cli` function so that this file
//! only dispatches; see `appliance help`.

use std::process::ExitCode;

fn usage() -> &'static str {
    "usage: appliance <command> [args]

commands:
  daemon [--dry-run] [--config FILE]   run the balancer service (started by init)
  console [--socket PATH]              serial console menu (started by init)
  status [--json]                      pool and service status
  show servers|services|config|diff    detailed views (--json; config running|candidate|saved)
  drain SERVICE SERVER[:PORT]          drain a server now (weight 0, calls continue)
  apply|save|revert [--from saved]     apply the candidate / save running to flash / reset candidate
  logs [-n N] [--json]                 recent daemon events
  config check|export|import FILE      validate / write / load the TOML config
  config import-keepalived FILE        convert a keepalived.conf
  factory-reset [--yes]                erase the stored config
  net apply|show [--config FILE]       apply / show interfaces, addresses, routes, sysctls
  probe HOST[:PORT] [--count N] [--json] send SIP OPTIONS and print the reply
  leds test-uleds NAME[,NAME...]       drive userspace LEDs from stdin (diagnostics, QEMU test)
  config check|export|import FILE      validate / write / load the TOML config [--store SPEC]
  config import-keepalived FILE [--apply]  convert a keepalived.conf (--apply saves it)
  factory-reset [--yes] [--store SPEC] erase the stored config
  probe HOST[:PORT]                    send one SIP OPTIONS and print the reply
  ipvs show|sync|info|timeouts|sysctl  kernel IPVS table (see appliance ipvs help)
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
        "ipvs" => appliance::ipvs::cli(rest),
        "help" | "--help" | "-h" => {
            print!("{}", usage());
            ExitCode::SUCCESS
        }
        "net" => appliance::net::cli(rest),
        "probe" => appliance::probe::cli(rest),
        "leds" => appliance::leds::cli(rest),
        "config" => appliance::config::cli(rest),
        "factory-reset" => appliance::store::cli(rest),
        "console" => appliance::console::run(rest),
        "status" | "show" | "drain" | "apply" | "save" | "revert" | "logs" => {
            appliance::control::cli(&args)
        }
        other => {
            let _ = rest;
            eprintln!("appliance: unknown command '{other}'\n");
            eprint!("{}", usage());
            ExitCode::from(2)
        }
    }
}
