//! `appliance ipvs ...`: inspect and drive the kernel table (used by the VM tests too).

use std::net::{IpAddr, SocketAddrV4};
use std::process::ExitCode;
use std::time::Instant;

use argh::FromArgs;

use crate::config::{bounded, AdminState, Config, RealServer};
use crate::ipvs::codec::{self, Request};
use crate::ipvs::{
    reconcile, view, DestKey, DestParams, FwdMethod, Ipvs, Reconciler, ServiceKey, Timeouts,
};
use crate::probe::Health;

const FACTORY: &str = "/etc/appliance/factory.toml";

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "ipvs", help_triggers("-h", "--help", "help"))]
/// inspect and drive the kernel IPVS table.
pub struct Args {
    #[argh(subcommand)]
    /// what to do
    pub command: Sub,
}

/// An `ipvs` sub-command.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand)]
pub enum Sub {
    /// `ipvs show`
    Show(Show),
    /// `ipvs sync`
    Sync(Sync),
    /// `ipvs info`
    Info(Info),
    /// `ipvs timeouts`
    Timeouts(TimeoutsCmd),
    /// `ipvs sysctl`
    Sysctl(Sysctl),
    /// `ipvs bench`
    Bench(Bench),
    /// `ipvs raw`
    Raw(Raw),
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "show", help_triggers("-h", "--help", "help"))]
/// dump the kernel table with counters (names from the config).
pub struct Show {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// TOML config naming the services (default /etc/appliance/factory.toml, else built-in)
    #[argh(option)]
    pub config: Option<String>,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "sync", help_triggers("-h", "--help", "help"))]
/// one-shot reconcile of the kernel table to the config (all servers treated as up).
pub struct Sync {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// TOML config (default /etc/appliance/factory.toml, else built-in)
    #[argh(option)]
    pub config: Option<String>,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "info", help_triggers("-h", "--help", "help"))]
/// IPVS version and connection table size.
pub struct Info {}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "timeouts", help_triggers("-h", "--help", "help"))]
/// show, or set then show, the connection timeouts.
pub struct TimeoutsCmd {
    /// UDP timeout, seconds
    #[argh(option)]
    pub udp: Option<u32>,
    /// TCP timeout, seconds
    #[argh(option)]
    pub tcp: Option<u32>,
    /// TCP FIN timeout, seconds
    #[argh(option)]
    pub tcpfin: Option<u32>,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "sysctl", help_triggers("-h", "--help", "help"))]
/// set and verify the data-path sysctls.
pub struct Sysctl {
    /// sysctl root (default /proc/sys)
    #[argh(option, default = "String::from(\"/proc/sys\")")]
    pub root: String,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "bench", help_triggers("-h", "--help", "help"))]
/// time a full 8x64 table from empty and a one-server change.
pub struct Bench {
    /// rounds (default 3)
    #[argh(option, default = "3")]
    pub rounds: u32,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "raw", help_triggers("-h", "--help", "help"))]
/// low-level edits and dumps (tests: simulate a hand edit, capture test vectors).
pub struct Raw {
    #[argh(subcommand)]
    /// what to do
    pub command: RawSub,
}

/// An `ipvs raw` sub-command.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand)]
pub enum RawSub {
    /// `raw set-weight`
    SetWeight(SetWeight),
    /// `raw add-dest`
    AddDest(AddDest),
    /// `raw del-dest`
    DelDest(DelDest),
    /// `raw add-service`
    AddService(AddService),
    /// `raw del-service`
    DelService(DelService),
    /// `raw dump-hex`
    DumpHex(DumpHex),
    /// `raw sip-ping`
    SipPing(SipPing),
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "set-weight", help_triggers("-h", "--help", "help"))]
/// change a server's weight (keeps its forwarding method).
pub struct SetWeight {
    /// service, VIP:PORT
    #[argh(positional, from_str_fn(parse_sock))]
    pub service: SocketAddrV4,
    /// server, RS:PORT
    #[argh(positional, from_str_fn(parse_sock))]
    pub server: SocketAddrV4,
    /// weight
    #[argh(positional)]
    pub weight: u32,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "add-dest", help_triggers("-h", "--help", "help"))]
/// add a server to a service (NAT).
pub struct AddDest {
    /// service, VIP:PORT
    #[argh(positional, from_str_fn(parse_sock))]
    pub service: SocketAddrV4,
    /// server, RS:PORT
    #[argh(positional, from_str_fn(parse_sock))]
    pub server: SocketAddrV4,
    /// weight
    #[argh(positional)]
    pub weight: u32,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "del-dest", help_triggers("-h", "--help", "help"))]
/// remove a server from a service.
pub struct DelDest {
    /// service, VIP:PORT
    #[argh(positional, from_str_fn(parse_sock))]
    pub service: SocketAddrV4,
    /// server, RS:PORT
    #[argh(positional, from_str_fn(parse_sock))]
    pub server: SocketAddrV4,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "add-service",
    help_triggers("-h", "--help", "help")
)]
/// add a UDP service with the factory settings, optionally changed.
pub struct AddService {
    /// service, VIP:PORT
    #[argh(positional, from_str_fn(parse_sock))]
    pub service: SocketAddrV4,
    /// scheduler name
    #[argh(option)]
    pub sched: Option<String>,
    /// persistence engine name ("" = none)
    #[argh(option)]
    pub pe: Option<String>,
    /// persistence timeout, seconds
    #[argh(option)]
    pub timeout: Option<u32>,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "del-service",
    help_triggers("-h", "--help", "help")
)]
/// remove a service.
pub struct DelService {
    /// service, VIP:PORT
    #[argh(positional, from_str_fn(parse_sock))]
    pub service: SocketAddrV4,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "dump-hex", help_triggers("-h", "--help", "help"))]
/// print raw genl reply payloads (test vectors).
pub struct DumpHex {}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "sip-ping", help_triggers("-h", "--help", "help"))]
/// send one SIP OPTIONS datagram with a given Call-ID (tests).
pub struct SipPing {
    /// destination, VIP:PORT
    #[argh(positional, from_str_fn(parse_sock))]
    pub to: SocketAddrV4,
    /// the Call-ID to send
    #[argh(positional)]
    pub callid: String,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("appliance ipvs: {msg}");
    ExitCode::from(1)
}

/// The config given with --config, else the factory file, else the built-in default.
fn load_config(config: Option<&str>) -> Result<Config, String> {
    let (path, must) = match config {
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

/// `appliance ipvs ...`.
pub fn run(a: Args) -> ExitCode {
    let r = match a.command {
        Sub::Show(o) => show(o),
        Sub::Sync(o) => sync(o),
        Sub::Info(_) => info(),
        Sub::Timeouts(o) => timeouts(o),
        Sub::Sysctl(o) => sysctl(&o.root),
        Sub::Bench(o) => bench(o.rounds),
        Sub::Raw(o) => raw(o.command),
    };
    r.unwrap_or_else(|code| code)
}

fn show(o: Show) -> Result<ExitCode, ExitCode> {
    let cfg = load_config(o.config.as_deref()).map_err(fail)?;
    let mut ipvs = connect()?;
    let table = ipvs.dump().map_err(fail)?;
    let v = view(&cfg, &table);
    if o.json {
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

fn sync(o: Sync) -> Result<ExitCode, ExitCode> {
    let cfg = load_config(o.config.as_deref()).map_err(fail)?;
    let mut r = Reconciler::new(connect()?);
    let rep = r.sync(&cfg, &all_up).map_err(fail)?;
    if o.json {
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

fn timeouts(o: TimeoutsCmd) -> Result<ExitCode, ExitCode> {
    let mut ipvs = connect()?;
    let t = Timeouts {
        tcp: o.tcp,
        tcp_fin: o.tcpfin,
        udp: o.udp,
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

fn sysctl(root: &str) -> Result<ExitCode, ExitCode> {
    let rep = crate::ipvs::sysctl::apply_datapath_at(std::path::Path::new(root)).map_err(fail)?;
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

fn bench(rounds: u32) -> Result<ExitCode, ExitCode> {
    let rounds = rounds.max(1);
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

fn svc_key(a: SocketAddrV4) -> ServiceKey {
    ServiceKey::udp(*a.ip(), a.port())
}

fn dest_key(a: SocketAddrV4) -> DestKey {
    DestKey {
        addr: IpAddr::V4(*a.ip()),
        port: a.port(),
    }
}

/// The forwarding method the kernel has for this server (or NAT for a new one).
fn kernel_fwd(ipvs: &mut Ipvs, k: &ServiceKey, d: &DestKey) -> Result<FwdMethod, ExitCode> {
    Ok(ipvs
        .dump()
        .map_err(fail)?
        .iter()
        .find(|s| s.key == *k)
        .and_then(|s| s.dests.iter().find(|x| x.key == *d))
        .map(|x| x.params.fwd)
        .unwrap_or(FwdMethod::Masq))
}

/// Test helper: one SIP OPTIONS datagram with a given Call-ID, so the pe sip template
/// shows up in /proc/net/ip_vs_conn.
fn sip_ping(p: &SipPing) -> Result<ExitCode, ExitCode> {
    let (to, callid) = (p.to, &p.callid);
    let msg = format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{callid}\r\n\
         From: <sip:test@appliance.invalid>;tag=1\r\nTo: <sip:{to}>\r\nCall-ID: {callid}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").map_err(fail)?;
    sock.send_to(msg.as_bytes(), to).map_err(fail)?;
    println!("sent");
    Ok(ExitCode::SUCCESS)
}

fn raw(cmd: RawSub) -> Result<ExitCode, ExitCode> {
    let mut ipvs = connect()?;
    let dest = |fwd, weight| DestParams {
        fwd,
        weight,
        u_thresh: 0,
        l_thresh: 0,
    };
    let req = match cmd {
        RawSub::SetWeight(o) => {
            let (k, d) = (svc_key(o.service), dest_key(o.server));
            let fwd = kernel_fwd(&mut ipvs, &k, &d)?;
            Request::SetDest(k, d, dest(fwd, o.weight))
        }
        RawSub::AddDest(o) => {
            let (k, d) = (svc_key(o.service), dest_key(o.server));
            let fwd = kernel_fwd(&mut ipvs, &k, &d)?;
            Request::NewDest(k, d, dest(fwd, o.weight))
        }
        RawSub::DelDest(o) => Request::DelDest(svc_key(o.service), dest_key(o.server)),
        RawSub::DelService(o) => Request::DelService(svc_key(o.service)),
        RawSub::AddService(o) => {
            let mut p = reconcile::service_params(&Config::builtin_default().services[0]);
            if let Some(s) = o.sched {
                p.sched = s;
            }
            if let Some(pe) = o.pe {
                p.pe = (!pe.is_empty()).then_some(pe);
            }
            if let Some(t) = o.timeout {
                p.timeout = t;
            }
            Request::NewService(svc_key(o.service), p)
        }
        RawSub::DumpHex(_) => {
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
        RawSub::SipPing(p) => return sip_ping(&p),
    };
    ipvs.exec(&req).map_err(fail)?;
    println!("ok");
    Ok(ExitCode::SUCCESS)
}
