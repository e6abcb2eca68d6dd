//! Admin commands over the control socket:
//! `appliance status|show|drain|apply|save|revert|logs [--json] [--socket PATH]`.

use std::fmt::Write as _;
use std::process::ExitCode;

use crate::console::screens;
use crate::control::client::Client;
use crate::control::proto::{
    parse_server, Reply, Request, ServerOp, ServerRow, ServiceRow, StatusInfo, Which,
    DEFAULT_SOCKET,
};

/// Usage of the control commands (one line each, mirrored in main.rs).
pub const USAGE: &str = "\
  status [--json]                          pool and service status
  show servers|services [--json]           live per-server / per-service state
  show config [running|candidate|saved]    a config as TOML (--json for JSON)
  show diff [--json]                       pending changes, running -> candidate
  drain SERVICE SERVER[:PORT]              drain a server now (weight 0, calls continue)
  apply | save                             apply the candidate / save running to flash
  revert [--from running|saved]            reset the candidate
  logs [-n N] [--json]                     recent daemon events
  (all accept --socket PATH, default /run/appliance/control.sock)";

#[derive(Debug)]
struct Opts {
    json: bool,
    socket: String,
    words: Vec<String>,
    n: u32,
    from: Which,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        json: false,
        socket: DEFAULT_SOCKET.into(),
        words: Vec::new(),
        n: 20,
        from: Which::Running,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => o.json = true,
            "--socket" => o.socket = it.next().ok_or("--socket needs a path")?.clone(),
            "-n" => {
                let v = it.next().ok_or("-n needs a number")?;
                o.n = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| format!("-n '{v}': give a number from 1 to 10000"))?;
            }
            "--from" => {
                o.from = match it.next().map(String::as_str) {
                    Some("running") => Which::Running,
                    Some("saved") => Which::Saved,
                    _ => return Err("--from takes 'running' or 'saved'".into()),
                }
            }
            s if s.starts_with('-') => return Err(format!("unknown option '{s}'")),
            s => o.words.push(s.to_owned()),
        }
    }
    Ok(o)
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("appliance: {msg}\nusage:\n{USAGE}");
    ExitCode::from(2)
}

/// Run a control command; `args[0]` is the command word (status, show, drain...).
pub fn cli(args: &[String]) -> ExitCode {
    let Some((cmd, rest)) = args.split_first() else {
        return usage_error("missing command");
    };
    let o = match parse(rest) {
        Ok(o) => o,
        Err(m) => return usage_error(&m),
    };
    let w: Vec<&str> = o.words.iter().map(String::as_str).collect();
    let req = match (cmd.as_str(), w.as_slice()) {
        ("status", []) => Request::Status,
        ("show", ["servers"]) => Request::ShowServers,
        ("show", ["services"]) => Request::ShowServices,
        ("show", ["config"]) => Request::GetConfig {
            which: Which::Running,
        },
        ("show", ["config", which]) => Request::GetConfig {
            which: match *which {
                "running" => Which::Running,
                "candidate" => Which::Candidate,
                "saved" => Which::Saved,
                other => {
                    return usage_error(&format!(
                        "'{other}': show config takes running, candidate or saved"
                    ))
                }
            },
        },
        ("show", ["diff"]) => Request::Diff,
        ("drain", [service, server]) => match parse_server(server, 5060) {
            Ok(server) => Request::ServerAction {
                service: (*service).into(),
                server,
                action: ServerOp::Drain,
            },
            Err(m) => return usage_error(&m),
        },
        ("apply", []) => Request::Apply,
        ("save", []) => Request::Save,
        ("revert", []) => Request::Revert { from: o.from },
        ("logs", []) => Request::Logs { n: o.n },
        (c, _) => return usage_error(&format!("bad arguments for '{c}'")),
    };
    let mut client = Client::new(&o.socket);
    match client.call(&req) {
        Ok(reply) => {
            print!("{}", render(&reply, o.json));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("appliance {cmd}: {e}");
            ExitCode::from(1)
        }
    }
}

/// Human or JSON text of a reply (ends with a newline).
pub fn render(reply: &Reply, json: bool) -> String {
    if json {
        let v = match reply {
            Reply::Status(s) => serde_json::to_string_pretty(s),
            Reply::Servers(s) => serde_json::to_string_pretty(s),
            Reply::Services(s) => serde_json::to_string_pretty(s),
            Reply::Config { config, .. } => serde_json::to_string_pretty(config),
            Reply::Diff(d) => serde_json::to_string_pretty(d),
            Reply::Logs(l) => serde_json::to_string_pretty(l),
            other => serde_json::to_string_pretty(other),
        };
        return v.unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")) + "\n";
    }
    match reply {
        Reply::Status(s) => status_text(s),
        Reply::Servers(r) => servers_text(r),
        Reply::Services(r) => services_text(r),
        Reply::Config { toml, .. } => toml.clone(),
        Reply::Diff(d) => {
            let mut out = String::new();
            if d.lines.is_empty() {
                out.push_str("no differences between running and candidate\n");
            }
            for l in &d.lines {
                let _ = writeln!(out, "{l}");
            }
            if d.unsaved {
                out.push_str("(the running config is not saved to flash)\n");
            }
            out
        }
        Reply::Logs(ev) => ev.iter().fold(String::new(), |mut o, e| {
            let _ = writeln!(o, "[{:>7}s] {:<5} {}", e.uptime_s, e.level, e.message);
            o
        }),
        Reply::Done { message } => format!("{message}\n"),
        other => format!("{other:?}\n"),
    }
}

fn status_text(s: &StatusInfo) -> String {
    let mut out = screens::header(s);
    for l in screens::time_and_syslog_lines(s) {
        let _ = writeln!(out, "{l}");
    }
    let _ = writeln!(
        out,
        "uptime {} s; candidate {}{}; running {}",
        s.uptime_s,
        if s.unapplied {
            "has unapplied changes"
        } else {
            "= running"
        },
        if s.candidate_errors > 0 {
            format!(" ({} problems)", s.candidate_errors)
        } else {
            String::new()
        },
        if s.unsaved { "NOT saved" } else { "saved" }
    );
    out
}

fn servers_text(rows: &[ServerRow]) -> String {
    let mut out = format!(
        "{:<10} {:<21} {:<8} {:<7} {:>6} {:>6} {:>13} {:>6} {:>6} {:>6} {:>7}  {}\n",
        "SERVICE",
        "SERVER",
        "ADMIN",
        "HEALTH",
        "WEIGHT",
        "KERNEL",
        "RTT last/avg",
        "ACT",
        "INACT",
        "PERS",
        "CALL/S",
        "REASON"
    );
    let ms = |u: Option<u32>| u.map_or("-".into(), |u| format!("{:.1}", f64::from(u) / 1000.0));
    for r in rows {
        let _ = writeln!(
            out,
            "{:<10} {:<21} {:<8} {:<7} {:>6} {:>6} {:>13} {:>6} {:>6} {:>6} {:>7.1}  {}",
            r.service,
            r.server.to_string(),
            screens::admin(r.admin),
            format!("{:?}", r.health).to_lowercase(),
            r.weight,
            r.kernel_weight.map_or("-".into(), |w| w.to_string()),
            format!("{}/{}", ms(r.rtt_last_us), ms(r.rtt_ewma_us)),
            r.active_conns,
            r.inactive_conns,
            r.persistent_conns,
            r.calls_per_s,
            r.reason
        );
    }
    out
}

fn services_text(rows: &[ServiceRow]) -> String {
    let mut out = format!(
        "{:<10} {:<21} {:<5} {:<4} {:>7} {:<6} {:<4} {:>7} {:<9} {:>8} {:>7}\n",
        "SERVICE",
        "VIP",
        "SCHED",
        "FWD",
        "PERSIST",
        "PE",
        "OPS",
        "UP",
        "IN KERNEL",
        "CONNS",
        "CALL/S"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<10} {:<21} {:<5} {:<4} {:>7} {:<6} {:<4} {:>7} {:<9} {:>8} {:>7.1}",
            r.name,
            r.vip.to_string(),
            r.scheduler,
            r.forwarding,
            r.persistence_timeout,
            if r.sip_persistence { "sip" } else { "-" },
            if r.one_packet { "yes" } else { "no" },
            format!("{}/{}", r.servers_up, r.servers_total),
            if r.in_kernel { "yes" } else { "NO" },
            r.conns,
            r.calls_per_s
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn option_parsing() {
        let o = parse(&s(&["servers", "--json", "--socket", "/tmp/x"])).unwrap();
        assert!(o.json);
        assert_eq!(o.socket, "/tmp/x");
        assert_eq!(o.words, vec!["servers"]);
        assert_eq!(parse(&s(&["-n", "5"])).unwrap().n, 5);
        assert!(parse(&s(&["-n", "0"])).unwrap_err().contains("1 to 10000"));
        assert!(parse(&s(&["--socket"])).is_err());
        assert!(parse(&s(&["--bogus"]))
            .unwrap_err()
            .contains("unknown option"));
        assert_eq!(parse(&s(&["--from", "saved"])).unwrap().from, Which::Saved);
    }

    #[test]
    fn usage_errors_exit_2() {
        assert_eq!(cli(&s(&["show", "nonsense"])), ExitCode::from(2));
        assert_eq!(cli(&s(&["drain", "sip", "bad-address"])), ExitCode::from(2));
        assert_eq!(cli(&s(&["status", "extra"])), ExitCode::from(2));
    }

    #[test]
    fn unreachable_daemon_exits_1() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("none.sock");
        let args = s(&["status", "--socket", sock.to_str().unwrap()]);
        assert_eq!(cli(&args), ExitCode::from(1));
    }
}
