//! Metrics benchmark: CPU time of one scrape of the largest config (8 services x 64
//! servers), end to end over loopback (accept, head parse, snapshot copy, render,
//! write), and of the render alone. Prints a markdown table.
//!
//! Run: cargo run --release -p appliance --example metrics_bench -- [--scrapes 200]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use appliance::config::{MAX_SERVERS, MAX_SERVICES};
use appliance::ipvs::codec::{
    DestEntry, DestKey, DestParams, FwdMethod, ServiceKey, ServiceParams, Stats,
};
use appliance::ipvs::ActualService;
use appliance::metrics::render::{HaSnap, ServerSnap};
use appliance::metrics::{render, Binding, Endpoint, Snapshot, SnapshotFn};
use appliance::probe::health::RttHistogram;
use appliance::probe::{Counters, Health};
use nix::sys::resource::{getrusage, UsageWho};

fn cpu(who: UsageWho) -> Duration {
    match getrusage(who) {
        Ok(u) => {
            let t = |tv: nix::sys::time::TimeVal| {
                Duration::from_secs(tv.tv_sec() as u64) + Duration::from_micros(tv.tv_usec() as u64)
            };
            t(u.user_time()) + t(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

/// A snapshot as large as the config allows, with busy-looking counters.
fn largest() -> Snapshot {
    let mut table = Vec::new();
    let mut servers = Vec::new();
    for s in 0..MAX_SERVICES {
        let vip = Ipv4Addr::new(203, 0, 113, 10 + s as u8);
        let mut dests = Vec::new();
        for d in 0..MAX_SERVERS {
            let addr = Ipv4Addr::new(198, 51, 100 + s as u8, 1 + d as u8);
            dests.push(DestEntry {
                key: DestKey {
                    addr: IpAddr::V4(addr),
                    port: 5060,
                },
                params: DestParams {
                    fwd: FwdMethod::Masq,
                    weight: 100,
                    u_thresh: 0,
                    l_thresh: 0,
                },
                active_conns: 12_345,
                inact_conns: 67_890,
                persist_conns: 1_234,
                stats: Stats {
                    conns: 123_456_789,
                    inpkts: 987_654_321,
                    outpkts: 876_543_210,
                    inbytes: 123_456_789_012,
                    outbytes: 98_765_432_109,
                    ..Stats::default()
                },
            });
            let mut rtt = RttHistogram::default();
            for us in [300, 700, 900, 1_800, 40_000] {
                rtt.observe(us);
            }
            servers.push(ServerSnap {
                service: format!("service-{s}"),
                addr: SocketAddrV4::new(addr, 5060),
                health: Health::Up,
                up: true,
                enabled: true,
                to_up: 3,
                to_down: 2,
                probe: Counters {
                    sent: 8_640_000,
                    ok: 8_639_000,
                    timeout: 700,
                    refused: 300,
                    ..Counters::default()
                },
                rtt,
            });
        }
        table.push(ActualService {
            key: ServiceKey::udp(vip, 5060),
            params: ServiceParams {
                sched: "rr".into(),
                flags: 1,
                timeout: 120,
                netmask: 0,
                pe: Some("sip".into()),
            },
            stats: Stats::default(),
            dests,
        });
    }
    Snapshot {
        version: appliance::VERSION.into(),
        uptime_s: 86_400,
        table,
        servers,
        ha: Some(HaSnap {
            role: "master",
            transitions: 4,
            split_brain: false,
            sync: vec![
                ("master".into(), "eth1".into()),
                ("backup".into(), "eth1".into()),
            ],
            sync_ok: true,
        }),
        ..Snapshot::default()
    }
}

fn main() {
    let mut scrapes = 200u32;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--scrapes") {
        scrapes = args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(scrapes);
    }
    let snap = largest();

    // Render alone (this thread only: the daemon renders on the blocking pool).
    let mut out = String::new();
    render(&snap, &mut out);
    let size = out.len();
    let lines = out.lines().count();
    let t0 = cpu(UsageWho::RUSAGE_THREAD);
    for _ in 0..scrapes {
        let copy = snap.clone();
        render(&copy, &mut out);
    }
    let render_cpu = (cpu(UsageWho::RUSAGE_THREAD) - t0) / scrapes;

    // End to end over loopback: the daemon's endpoint on a current-thread runtime in
    // this process, the client in this process too (its share is small and counted).
    let (tx, rx) = std::sync::mpsc::channel();
    let shared = Arc::new(snap);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let s = shared.clone();
            let source: SnapshotFn = Arc::new(move || (*s).clone());
            let b = Binding {
                addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
                allow: vec!["127.0.0.1/32".parse().expect("prefix")],
            };
            let ep = Endpoint::start(b, source).expect("listen");
            tx.send(ep.local_addr()).expect("send");
            std::future::pending::<()>().await;
        });
    });
    let addr = rx.recv().expect("endpoint address");
    let scrape = || {
        let mut c = TcpStream::connect(addr).expect("connect");
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
            .expect("write");
        let mut body = Vec::with_capacity(size + 512);
        c.read_to_end(&mut body).expect("read");
        assert!(body.starts_with(b"HTTP/1.1 200 OK"));
        body.len()
    };
    scrape();
    let wall = Instant::now();
    let t0 = cpu(UsageWho::RUSAGE_SELF);
    for _ in 0..scrapes {
        scrape();
    }
    let e2e_cpu = (cpu(UsageWho::RUSAGE_SELF) - t0) / scrapes;
    let e2e_wall = wall.elapsed() / scrapes;

    println!(
        "| what ({} services x {} servers, {scrapes} scrapes) | value |",
        MAX_SERVICES, MAX_SERVERS
    );
    println!("| --- | --- |");
    println!("| exposition size | {size} bytes, {lines} lines |");
    println!(
        "| CPU per render (snapshot copy + render, one thread) | {:.2} ms |",
        render_cpu.as_secs_f64() * 1e3
    );
    println!(
        "| CPU per scrape end to end (server + client, whole process) | {:.2} ms |",
        e2e_cpu.as_secs_f64() * 1e3
    );
    println!(
        "| wall time per scrape end to end | {:.2} ms |",
        e2e_wall.as_secs_f64() * 1e3
    );
}
