//! `appliance net apply|show [--config FILE]`.

use std::path::Path;
use std::process::ExitCode;

use argh::FromArgs;

use crate::config::Config;
use crate::net::{self as netlib, plan, sysctl, NetError};

#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "net",
    help_triggers("-h", "--help", "help"),
    note = "FILE defaults to /etc/appliance/factory.toml, else the built-in demo config."
)]
/// interfaces, addresses, VIPs, routes, policy rules and router sysctls.
pub struct Args {
    #[argh(subcommand)]
    /// what to do
    pub command: Sub,
}

/// A `net` sub-command.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand)]
pub enum Sub {
    /// `net apply`
    Apply(Apply),
    /// `net show`
    Show(Show),
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "apply", help_triggers("-h", "--help", "help"))]
/// set links, addresses, VIPs, routes, policy rules and router sysctls.
pub struct Apply {
    /// TOML config
    #[argh(option)]
    pub config: Option<String>,
    /// print what would change, touch nothing
    #[argh(switch)]
    pub dry_run: bool,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "show", help_triggers("-h", "--help", "help"))]
/// print the kernel's IPv4 state; with --config also what apply would change.
pub struct Show {
    /// TOML config
    #[argh(option)]
    pub config: Option<String>,
}

const FACTORY: &str = "/etc/appliance/factory.toml";

fn load(path: Option<&str>) -> Result<Config, String> {
    let p = match path {
        Some(p) => p,
        None if Path::new(FACTORY).exists() => FACTORY,
        None => return Ok(Config::builtin_default()),
    };
    let text = std::fs::read_to_string(p).map_err(|e| format!("cannot read {p}: {e}"))?;
    let c: Config = toml::from_str(&text).map_err(|e| format!("{p}: {e}"))?;
    // Config rules live in config::validate; the planner only checks the running system.
    let r = crate::config::validate(&c);
    if !r.is_ok() {
        let msgs: Vec<String> = r.errors.iter().map(|e| e.message.clone()).collect();
        return Err(format!("{p}: {}", msgs.join("; ")));
    }
    Ok(c)
}

/// `appliance net ...`.
pub fn run(a: Args) -> ExitCode {
    match a.command {
        Sub::Apply(o) => apply(o.config.as_deref(), o.dry_run),
        Sub::Show(o) => show(o.config.as_deref()),
    }
}

fn apply(config: Option<&str>, dry: bool) -> ExitCode {
    let cfg = match load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    if dry {
        return match netlib::dry_run(&cfg) {
            Ok(ops) => {
                for o in &ops {
                    println!("would {o}");
                }
                println!("{} change(s) pending", ops.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        };
    }
    match netlib::apply(&cfg) {
        Ok(r) => {
            for o in &r.ops {
                println!("{o}");
            }
            match sysctl::apply_router(&cfg) {
                Ok(s) => {
                    for c in &s.changed {
                        println!("sysctl {c}");
                    }
                    println!(
                        "{} network change(s), {} sysctl change(s)",
                        r.changes,
                        s.changed.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn show(config: Option<&str>) -> ExitCode {
    let st = match netlib::show() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    for l in &st.links {
        println!(
            "link {:<15} {} carrier={} mtu={}",
            l.name,
            if l.up { "UP  " } else { "DOWN" },
            if l.carrier { "yes" } else { "no" },
            l.mtu
        );
        for a in st.addrs.iter().filter(|a| a.index == l.index) {
            println!("    inet {}/{}", a.addr, a.prefix);
        }
    }
    for r in &st.routes {
        let dst = if r.dst_len == 0 {
            "default".to_owned()
        } else {
            format!("{}/{}", r.dst, r.dst_len)
        };
        let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
        let dev = r
            .oif
            .map(|o| format!(" dev {}", st.name_of(o)))
            .unwrap_or_default();
        println!(
            "route {dst}{via}{dev} table {} proto {}",
            r.table, r.protocol
        );
    }
    for r in &st.rules {
        println!(
            "rule pref {} lookup {}{}{} proto {}",
            r.priority,
            r.table,
            r.fwmark
                .map(|m| format!(" fwmark {m:#x}"))
                .unwrap_or_default(),
            r.sport.map(|p| format!(" sport {p}")).unwrap_or_default(),
            r.protocol
        );
    }
    if config.is_some() {
        let cfg = match load(config) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        };
        match plan::desired(&cfg, &st) {
            Ok(want) => {
                let ops = plan::plan(&want, &st);
                for o in &ops {
                    println!("pending: {o}");
                }
                println!("{} change(s) pending", ops.len());
            }
            Err(ps) => {
                eprintln!("{}", NetError::Invalid(ps));
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}
