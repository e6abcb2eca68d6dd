//! Admin commands over the control socket:
//! `appliance status|show|drain|apply|save|revert|logs [--json] [--socket PATH]`.

use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::process::ExitCode;

use argh::FromArgs;

use super::usage_error;
use crate::console::screens;
use crate::control::client::Client;
use crate::control::proto::{
    parse_server, Reply, Request, ServerOp, ServerRow, ServiceRow, StatusInfo, Which,
    DEFAULT_SOCKET,
};

fn default_socket() -> String {
    DEFAULT_SOCKET.to_owned()
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "status", help_triggers("-h", "--help", "help"))]
/// pool and service status (header: pool health, calls, unsaved changes, alerts).
pub struct Status {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// control socket of the daemon (default /run/appliance/control.sock)
    #[argh(option, default = "default_socket()")]
    pub socket: String,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "show",
    help_triggers("-h", "--help", "help"),
    example = "appliance show servers\nappliance show config saved\nappliance show diff --json"
)]
/// live state and configs: servers, services, config [running|candidate|saved], diff.
pub struct Show {
    /// servers (per-server state), services, config (as TOML) or diff (running -> candidate)
    #[argh(positional)]
    pub what: String,
    /// with config: running (default), candidate or saved
    #[argh(positional)]
    pub which: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// control socket of the daemon (default /run/appliance/control.sock)
    #[argh(option, default = "default_socket()")]
    pub socket: String,
}

fn drain_target(s: &str) -> Result<SocketAddrV4, String> {
    parse_server(s, 5060)
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "drain", help_triggers("-h", "--help", "help"))]
/// drain a server now: weight 0, its calls continue on it, no new calls.
pub struct Drain {
    /// service name
    #[argh(positional)]
    pub service: String,
    /// server address, ADDR[:PORT] (default port 5060)
    #[argh(positional, from_str_fn(drain_target))]
    pub server: SocketAddrV4,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// control socket of the daemon (default /run/appliance/control.sock)
    #[argh(option, default = "default_socket()")]
    pub socket: String,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "apply", help_triggers("-h", "--help", "help"))]
/// apply the candidate config (network and IPVS, verified).
pub struct Apply {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// control socket of the daemon (default /run/appliance/control.sock)
    #[argh(option, default = "default_socket()")]
    pub socket: String,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "save", help_triggers("-h", "--help", "help"))]
/// save the running config to flash.
pub struct Save {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// control socket of the daemon (default /run/appliance/control.sock)
    #[argh(option, default = "default_socket()")]
    pub socket: String,
}

fn revert_from(s: &str) -> Result<Which, String> {
    match s {
        "running" => Ok(Which::Running),
        "saved" => Ok(Which::Saved),
        _ => Err("--from takes 'running' or 'saved'".into()),
    }
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "revert", help_triggers("-h", "--help", "help"))]
/// reset the candidate config to the running (default) or saved one.
pub struct Revert {
    /// running or saved
    #[argh(option, default = "Which::Running", from_str_fn(revert_from))]
    pub from: Which,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// control socket of the daemon (default /run/appliance/control.sock)
    #[argh(option, default = "default_socket()")]
    pub socket: String,
}

fn log_lines(v: &str) -> Result<u32, String> {
    v.parse()
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| format!("'{v}': give a number from 1 to 10000"))
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "logs", help_triggers("-h", "--help", "help"))]
/// recent daemon events.
pub struct Logs {
    /// how many events, 1 to 10000 (default 20)
    #[argh(
        option,
        short = 'n',
        long = "lines",
        default = "20",
        from_str_fn(log_lines)
    )]
    pub n: u32,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// control socket of the daemon (default /run/appliance/control.sock)
    #[argh(option, default = "default_socket()")]
    pub socket: String,
}

/// `appliance status`.
pub fn status(a: Status) -> ExitCode {
    call("status", &a.socket, &Request::Status, a.json)
}

/// `appliance show`.
pub fn show(a: Show) -> ExitCode {
    let req = match (a.what.as_str(), a.which.as_deref()) {
        ("servers", None) => Request::ShowServers,
        ("services", None) => Request::ShowServices,
        ("config", which) => Request::GetConfig {
            which: match which {
                None | Some("running") => Which::Running,
                Some("candidate") => Which::Candidate,
                Some("saved") => Which::Saved,
                Some(other) => {
                    return usage_error(
                        "show",
                        &format!("'{other}': show config takes running, candidate or saved"),
                    )
                }
            },
        },
        ("diff", None) => Request::Diff,
        ("servers" | "services" | "diff", Some(extra)) => {
            return usage_error("show", &format!("unexpected argument '{extra}'"))
        }
        (other, _) => {
            return usage_error(
                "show",
                &format!("'{other}': show takes servers, services, config or diff"),
            )
        }
    };
    call("show", &a.socket, &req, a.json)
}

/// `appliance drain`.
pub fn drain(a: Drain) -> ExitCode {
    let req = Request::ServerAction {
        service: a.service,
        server: a.server,
        action: ServerOp::Drain,
    };
    call("drain", &a.socket, &req, a.json)
}

/// `appliance apply`.
pub fn apply(a: Apply) -> ExitCode {
    call("apply", &a.socket, &Request::Apply, a.json)
}

/// `appliance save`.
pub fn save(a: Save) -> ExitCode {
    call("save", &a.socket, &Request::Save, a.json)
}

/// `appliance revert`.
pub fn revert(a: Revert) -> ExitCode {
    call(
        "revert",
        &a.socket,
        &Request::Revert { from: a.from },
        a.json,
    )
}

/// `appliance logs`.
pub fn logs(a: Logs) -> ExitCode {
    call("logs", &a.socket, &Request::Logs { n: a.n }, a.json)
}

/// Send one request and print the reply; 1 when the daemon cannot be reached or refuses.
fn call(cmd: &str, socket: &str, req: &Request, json: bool) -> ExitCode {
    match Client::new(socket).call(req) {
        Ok(reply) => {
            print!("{}", render(&reply, json));
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
    for l in &s.firmware {
        let _ = writeln!(out, "firmware {l}");
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
    for d in &s.draining {
        let _ = writeln!(
            out,
            "server {} of {}: {} (removed or disabled), {} connection(s) left, deleted in {} s at most",
            d.server, d.service, d.state, d.conns_left, d.grace_left_s
        );
    }
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
    use super::super::{argv, run};
    use std::process::ExitCode;

    #[test]
    fn usage_errors_exit_2() {
        for bad in [
            &["show", "nonsense"][..],
            &["show", "config", "later"],
            &["show", "servers", "extra"],
            &["drain", "sip", "bad-address"],
            &["drain", "sip"],
            &["status", "extra"],
            &["logs", "-n", "0"],
            &["revert", "--from", "yesterday"],
            &["status", "--socket"],
            &["status", "--bogus"],
        ] {
            assert_eq!(run(&argv(bad)), ExitCode::from(2), "{bad:?}");
        }
    }

    #[test]
    fn status_text_lists_drains() {
        let mut s = crate::control::proto::StatusInfo::default();
        s.draining.push(crate::control::proto::DrainingServer {
            service: "sip".into(),
            server: "198.51.100.13:5060".parse().unwrap(),
            state: "draining".into(),
            conns_left: 4,
            grace_left_s: 97,
        });
        let t = super::status_text(&s);
        assert!(
            t.contains("server 198.51.100.13:5060 of sip: draining (removed or disabled), 4 connection(s) left, deleted in 97 s at most"),
            "{t}"
        );
        let j = super::render(&crate::control::proto::Reply::Status(Box::new(s)), true);
        assert!(j.contains("\"state\": \"draining\""), "{j}");
        assert!(j.contains("\"conns_left\": 4"), "{j}");
    }

    #[test]
    fn unreachable_daemon_exits_1() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("none.sock");
        let args = argv(&["status", "--socket", sock.to_str().unwrap()]);
        assert_eq!(run(&args), ExitCode::from(1));
    }
}
