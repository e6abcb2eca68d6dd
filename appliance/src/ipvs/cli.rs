//! `appliance ipvs ...`: inspect and drive the kernel table (used by the VM tests too).

use std::net::{IpAddr, SocketAddrV4};
use std::process::ExitCode;
use std::time::Instant;

use super::codec::{self, Request};
use super::{
    reconcile, view, DestKey, DestParams, FwdMethod, Ipvs, Reconciler, ServiceKey, Timeouts,
};
use crate::config::{bounded, AdminState, Config, RealServer};
use crate::probe::Health;

const USAGE: &str = "usage: appliance ipvs <command>
  show [--json] [--config FILE]     dump the kernel table with counters
  sync [--config FILE] [--json]     one-shot reconcile (all servers treated as up)
  info                              IPVS version and connection table size
  timeouts [--udp N] [--tcp N] [--tcpfin N]   show / set connection timeouts
  sysctl [--root DIR]               set and verify the data-path sysctls
  bench [--rounds N]                time a full 8x64 table from empty and a one-server change
  raw set-weight VIP:PORT RS:PORT W   low-level edit (tests: simulate a hand edit)
  raw del-dest VIP:PORT RS:PORT
  raw add-dest VIP:PORT RS:PORT W
  raw add-service VIP:PORT [--sched S] [--pe NAME] [--timeout N]
  raw del-service VIP:PORT
  raw dump-hex                      print raw genl reply payloads (test vectors)
  raw sip-ping VIP:PORT CALLID      send one SIP OPTIONS datagram (tests)
";

const FACTORY: &str = "/etc/appliance/factory.toml";

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("appliance ipvs: {msg}");
    ExitCode::from(1)
}

fn usage_err(msg: &str) -> ExitCode {
    eprintln!("appliance ipvs: {msg}\n\n{USAGE}");
    ExitCode::from(2)
}

fn flag(args: &[String], name: &str) -> bool {
    args.iter().any(|a| a == name)
}

fn opt<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// The config given with --config, else the factory file, else the built-in default.
fn load_config(args: &[String]) -> Result<Config, String> {
    let (path, must) = match opt(args, "--config") {
        Some(p) => (p.to_owned(), true),
        None => (FACTORY.to_owned(), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| format!("{path}: {e}")),
        Err(e) if must => Err(format!("cannot read {path}: {e}")),
        Err(_) => Ok(Config::builtin_default()),
    }
}

fn parse_sock(s: &str) -> Result<SocketAddrV4, String> {
    s.parse()
        .map_err(|_| format!("'{s}' is not an IPv4 address with port, e.g. 203.0.113.10:5060"))
}

fn connect() -> Result<Ipvs, ExitCode> {
    Ipvs::connect().map_err(fail)
}

/// Entry point for `appliance ipvs ...`.
pub fn cli(args: &[String]) -> ExitCode {
    let Some(sub) = args.first() else {
        return usage_err("missing command");
    };
    let rest = &args[1..];
    let r = match sub.as_str() {
        "show" => show(rest),
        "sync" => sync(rest),
        "info" => info(),
        "timeouts" => timeouts(rest),
        "sysctl" => sysctl(rest),
        "bench" => bench(rest),
        "raw" => raw(rest),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => return usage_err(&format!("unknown command '{other}'")),
    };
    r.unwrap_or_else(|code| code)
}

fn show(args: &[String]) -> Result<ExitCode, ExitCode> {
    let cfg = load_config(args).map_err(fail)?;
    let mut ipvs = connect()?;
    let table = ipvs.dump().map_err(fail)?;
    let v = view(&cfg, &table);
    if flag(args, "--json") {
        println!("{}", serde_json::to_string_pretty(&v).map_err(fail)?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Ok(i) = ipvs.info() {
        println!(
            "IP Virtual Server version {} (size={})",
            i.version_string(),
            i.conn_tab_size
        );
    }
    println!("Prot LocalAddress:Port Scheduler Flags");
    println!("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn Calls Conns");
    for s in &v {
        let name = s
            .name
            .as_deref()
            .map(|n| format!("  [{n}]"))
            .unwrap_or_default();
        println!("{} {}{}", s.key, s.settings, name);
        for d in &s.dests {
            println!(
                "  -> {:<28} {:<7} {:<6} {:<10} {:<9} {:<5} {}",
                d.server.to_string(),
                d.fwd.proc_name(),
                d.weight,
                d.active_conns,
                d.inact_conns,
                d.calls,
                d.stats.conns
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn all_up(_: &str, _: SocketAddrV4) -> Health {
    Health::Up
}

fn sync(args: &[String]) -> Result<ExitCode, ExitCode> {
    let cfg = load_config(args).map_err(fail)?;
    let mut r = Reconciler::new(connect()?);
    let rep = r.sync(&cfg, &all_up).map_err(fail)?;
    if flag(args, "--json") {
        let ops: Vec<String> = rep.ops.iter().map(ToString::to_string).collect();
        let j = serde_json::json!({
            "ops": ops,
            "services": rep.services,
            "servers": rep.dests,
            "elapsed_us": rep.elapsed.as_micros() as u64,
            "apply_us": rep.apply_time.as_micros() as u64,
        });
        println!("{j}");
        return Ok(ExitCode::SUCCESS);
    }
    for op in &rep.ops {
        println!("{op}");
    }
    println!(
        "verified: {} service(s), {} server(s), {} change(s) in {:.1} ms (apply {:.1} ms)",
        rep.services,
        rep.dests,
        rep.ops.len(),
        rep.elapsed.as_secs_f64() * 1e3,
        rep.apply_time.as_secs_f64() * 1e3
    );
    Ok(ExitCode::SUCCESS)
}

fn info() -> Result<ExitCode, ExitCode> {
    let mut ipvs = connect()?;
    let i = ipvs.info().map_err(fail)?;
    println!(
        "IPVS version {} (0x{:06x}), connection table size {}",
        i.version_string(),
        i.version,
        i.conn_tab_size
    );
    Ok(ExitCode::SUCCESS)
}

fn num(args: &[String], name: &str) -> Result<Option<u32>, ExitCode> {
    match opt(args, name) {
        None => Ok(None),
        Some(v) => v
            .parse::<u32>()
            .map(Some)
            .map_err(|_| usage_err(&format!("{name} needs a number of seconds, got '{v}'"))),
    }
}

fn timeouts(args: &[String]) -> Result<ExitCode, ExitCode> {
    let mut ipvs = connect()?;
    let t = Timeouts {
        tcp: num(args, "--tcp")?,
        tcp_fin: num(args, "--tcpfin")?,
        udp: num(args, "--udp")?,
    };
    if t != Timeouts::default() {
        ipvs.set_timeouts(t).map_err(fail)?;
    }
    let got = ipvs.timeouts().map_err(fail)?;
    let s = |v: Option<u32>| v.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
    println!(
        "Timeout (tcp tcpfin udp): {} {} {}",
        s(got.tcp),
        s(got.tcp_fin),
        s(got.udp)
    );
    Ok(ExitCode::SUCCESS)
}

fn sysctl(args: &[String]) -> Result<ExitCode, ExitCode> {
    let root = opt(args, "--root").unwrap_or("/proc/sys");
    let rep = super::sysctl::apply_datapath_at(std::path::Path::new(root)).map_err(fail)?;
    for (k, old, new) in &rep.changed {
        println!("{k}: {old} -> {new}");
    }
    for k in &rep.skipped {
        println!("{k}: not present in this kernel, skipped");
    }
    println!("data-path sysctls verified");
    Ok(ExitCode::SUCCESS)
}

/// A full table: 8 services × 64 servers, documentation addresses only.
pub fn bench_config() -> Config {
    let mut cfg = Config::builtin_default();
    let template = cfg.services[0].clone();
    cfg.services.clear();
    for s in 0..8u8 {
        let mut vs = template.clone();
        vs.name = bounded(&format!("bench{s}"));
        vs.vip = std::net::Ipv4Addr::new(203, 0, 113, 10 + s);
        vs.servers.clear();
        for i in 0..64u8 {
            let _ = vs.servers.push(RealServer {
                address: std::net::Ipv4Addr::new(198, 51, 100, 11 + i),
                port: 5060,
                weight: 1,
                state: AdminState::Enabled,
            });
        }
        let _ = cfg.services.push(vs);
    }
    cfg
}

fn bench(args: &[String]) -> Result<ExitCode, ExitCode> {
    let rounds = num(args, "--rounds")?.unwrap_or(3).max(1);
    let mut r = Reconciler::new(connect()?);
    let full = bench_config();
    let mut empty = full.clone();
    empty.services.clear();
    let mut changed = full.clone();
    changed.services[3].servers[17].weight = 5;
    let mut fulls = Vec::new();
    let mut ones = Vec::new();
    let mut noops = Vec::new();
    for _ in 0..rounds {
        r.sync(&empty, &all_up).map_err(fail)?;
        let t = Instant::now();
        let rep = r.sync(&full, &all_up).map_err(fail)?;
        fulls.push((t.elapsed(), rep.ops.len(), rep.apply_time));
        let t = Instant::now();
        let rep = r.sync(&changed, &all_up).map_err(fail)?;
        ones.push((t.elapsed(), rep.ops.len(), rep.apply_time));
        let t = Instant::now();
        let rep = r.sync(&changed, &all_up).map_err(fail)?;
        noops.push((t.elapsed(), rep.ops.len(), rep.apply_time));
    }
    r.sync(&empty, &all_up).map_err(fail)?;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    for (label, v) in [
        ("full 8x64 from empty", &fulls),
        ("one-server change", &ones),
        ("no-op sync (adopt)", &noops),
    ] {
        let total: Vec<String> = v.iter().map(|x| format!("{:.1}", ms(x.0))).collect();
        let apply: Vec<String> = v.iter().map(|x| format!("{:.1}", ms(x.2))).collect();
        println!(
            "bench {label}: ops={} sync_ms=[{}] apply_ms=[{}]",
            v[0].1,
            total.join(", "),
            apply.join(", ")
        );
    }
    let f = fulls.iter().map(|x| ms(x.0)).sum::<f64>() / fulls.len() as f64;
    let o = ones.iter().map(|x| ms(x.0)).sum::<f64>() / ones.len() as f64;
    println!(
        "bench ratio full/one-change sync time: {:.1}",
        f / o.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

fn svc_key(s: &str) -> Result<ServiceKey, ExitCode> {
    let a = parse_sock(s).map_err(|e| usage_err(&e))?;
    Ok(ServiceKey::udp(*a.ip(), a.port()))
}

fn dest_key(s: &str) -> Result<DestKey, ExitCode> {
    let a = parse_sock(s).map_err(|e| usage_err(&e))?;
    Ok(DestKey {
        addr: IpAddr::V4(*a.ip()),
        port: a.port(),
    })
}

fn raw(args: &[String]) -> Result<ExitCode, ExitCode> {
    let mut ipvs = connect()?;
    let arg = |i: usize| -> Result<&str, ExitCode> {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| usage_err("missing argument"))
    };
    let weight = |s: &str| -> Result<u32, ExitCode> {
        s.parse()
            .map_err(|_| usage_err(&format!("weight must be a number, got '{s}'")))
    };
    let req = match arg(0)? {
        "set-weight" | "add-dest" => {
            let k = svc_key(arg(1)?)?;
            let d = dest_key(arg(2)?)?;
            // Keep the forwarding method the kernel has (or NAT for a new one).
            let fwd = ipvs
                .dump()
                .map_err(fail)?
                .iter()
                .find(|s| s.key == k)
                .and_then(|s| s.dests.iter().find(|x| x.key == d))
                .map(|x| x.params.fwd)
                .unwrap_or(FwdMethod::Masq);
            let p = DestParams {
                fwd,
                weight: weight(arg(3)?)?,
                u_thresh: 0,
                l_thresh: 0,
            };
            if arg(0)? == "add-dest" {
                Request::NewDest(k, d, p)
            } else {
                Request::SetDest(k, d, p)
            }
        }
        "del-dest" => Request::DelDest(svc_key(arg(1)?)?, dest_key(arg(2)?)?),
        "del-service" => Request::DelService(svc_key(arg(1)?)?),
        "add-service" => {
            let k = svc_key(arg(1)?)?;
            let mut p = reconcile::service_params(&Config::builtin_default().services[0]);
            if let Some(s) = opt(args, "--sched") {
                p.sched = s.to_owned();
            }
            if let Some(pe) = opt(args, "--pe") {
                p.pe = (!pe.is_empty()).then(|| pe.to_owned());
            }
            if let Some(t) = num(args, "--timeout")? {
                p.timeout = t;
            }
            Request::NewService(k, p)
        }
        "sip-ping" => {
            // Test helper: one SIP OPTIONS datagram with a given Call-ID, so the pe sip
            // template shows up in /proc/net/ip_vs_conn.
            let to = parse_sock(arg(1)?).map_err(|e| usage_err(&e))?;
            let callid = arg(2)?;
            let msg = format!(
                "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{callid}\r\n\
                 From: <sip:test@appliance.invalid>;tag=1\r\nTo: <sip:{to}>\r\nCall-ID: {callid}\r\n\
                 CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            let sock = std::net::UdpSocket::bind("0.0.0.0:0").map_err(fail)?;
            sock.send_to(msg.as_bytes(), to).map_err(fail)?;
            println!("sent");
            return Ok(ExitCode::SUCCESS);
        }
        "dump-hex" => {
            for (label, req) in [
                ("GET_INFO", Request::GetInfo),
                ("GET_CONFIG", Request::GetConfig),
                ("GET_SERVICE", Request::GetServices),
            ] {
                for b in ipvs.exec(&req).map_err(fail)? {
                    println!("{label} {}", codec::hex(&b));
                    if label == "GET_SERVICE" {
                        let e = codec::decode_service(&b).map_err(fail)?;
                        for d in ipvs.exec(&Request::GetDests(e.key)).map_err(fail)? {
                            println!("GET_DEST {}", codec::hex(&d));
                        }
                    }
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        other => return Err(usage_err(&format!("unknown raw command '{other}'"))),
    };
    ipvs.exec(&req).map_err(fail)?;
    println!("ok");
    Ok(ExitCode::SUCCESS)
}
