//! Multi-call entry point: `appliance <command> [args...]`.
//!
//! Each module owns its own sub-commands through a `cli` function so that this file
//! only dispatches; see `appliance help`.

use std::process::ExitCode;

const USAGE: &str = "usage: appliance <command> [args]

service (started by init):
  daemon [--dry-run] [--config FILE]       run the balancer service; --dry-run prints the plan
  console [--socket PATH]                  serial console menu

operation (talk to the running daemon):
  status [--json]                          pool and service status
  show servers|services|config|diff [--json]
  drain SERVICE SERVER                     weight 0 now; existing calls finish
  apply | save | revert                    candidate -> running -> flash
  logs [-n N]                              recent daemon events

configuration and store:
  config check|export|import FILE [--store SPEC] [--live]
  config import-keepalived FILE [--apply]  convert a keepalived.conf
  factory-reset [--yes] [--store SPEC]     erase the stored config

diagnostics:
  probe HOST[:PORT] [--count N] [--json]   send SIP OPTIONS and print the reply
  ipvs show|sync|info|timeouts|sysctl      kernel IPVS table (appliance ipvs help)
  net apply|show [--config FILE]           interfaces, addresses, routes, sysctls
  leds test-uleds NAME[,NAME...]           drive userspace LEDs from stdin
  version                                  firmware version

firmware:
  firmware status|install|rollback|verify   A/B slots and signed bundles (appliance firmware help)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "daemon" => appliance::daemon::cli(rest),
        "console" => appliance::console::run(rest),
        "status" | "show" | "drain" | "apply" | "save" | "revert" | "logs" => {
            appliance::control::cli(&args)
        }
        "config" => appliance::config::cli(rest),
        "factory-reset" => appliance::store::cli(rest),
        "probe" => appliance::probe::cli(rest),
        "ipvs" => appliance::ipvs::cli(rest),
        "net" => appliance::net::cli(rest),
        "leds" => appliance::leds::cli(rest),
        "firmware" => appliance::firmware::cli(rest),
        "version" | "--version" => {
            println!("appliance {}", appliance::VERSION);
            ExitCode::SUCCESS
        }
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("appliance: unknown command '{other}'\n");
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
