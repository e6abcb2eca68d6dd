//! Prober benchmark: CPU per 1,000 in-process probes next to one forked sipp OPTIONS
//! check (the seed's way), and detection latency for a silent server and a closed
//! port. Prints a markdown table.
//!
//! Run (root for the namespace lab, sipp installed):
//!   cargo run --release -p appliance --example probe_bench -- [--trials 50] [--loopback]

#[path = "../tests/probe_common/mod.rs"]
mod probe_common;

use std::future::Future;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use appliance::config::Name;
use appliance::probe::packet::Ids;
use appliance::probe::{Health, Prober};
use nix::sys::resource::{getrusage, UsageWho};
use probe_common::{free_udp_port, wait_for, Env, NetLab};
use tokio::sync::mpsc;
use tokio::time::sleep;

static TRIALS: AtomicU32 = AtomicU32::new(50);
/// Up time before each closed-port trial (ICMP rate-limit refill, see below).
const CLOSED_GAP_MS: u64 = 4000;

fn cpu(who: UsageWho) -> (Duration, i64) {
    match getrusage(who) {
        Ok(u) => {
            let t = |tv: nix::sys::time::TimeVal| {
                Duration::from_secs(tv.tv_sec() as u64) + Duration::from_micros(tv.tv_usec() as u64)
            };
            (t(u.user_time()) + t(u.system_time()), u.max_rss())
        }
        Err(_) => (Duration::ZERO, 0),
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn bench(env: Env) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(async move {
        let trials = TRIALS.load(Ordering::Relaxed) as usize;
        let mut rows: Vec<(String, String)> = Vec::new();

        // ---- CPU per 1,000 probes --------------------------------------------------
        let uas = env.sipp("uas_200.xml", &[]);
        let mut cfg = env.config(|s| s.interval_ms = 10);
        // 4 services probing the same server: 4 sockets, ~400 probes/s.
        let base = cfg.services[0].clone();
        for i in 1..4 {
            let mut s = base.clone();
            s.name = Name::try_from(format!("sip{i}").as_str()).unwrap_or_default();
            let _ = cfg.services.push(s);
        }
        let (tx, mut rx) = mpsc::channel(64);
        let p = Prober::spawn(&cfg, tx);
        for _ in 0..4 {
            let _ = wait_for(&mut rx, Health::Up, Duration::from_secs(5)).await;
        }
        let sent = |p: &appliance::probe::ProberHandle| -> u64 {
            p.snapshot().iter().map(|s| s.counters.sent).sum()
        };
        let (c0, _) = cpu(UsageWho::RUSAGE_SELF);
        let s0 = sent(&p);
        let t0 = Instant::now();
        sleep(Duration::from_secs(8)).await;
        let (c1, rss_self) = cpu(UsageWho::RUSAGE_SELF);
        let probes = sent(&p) - s0;
        let ok: u64 = p.snapshot().iter().map(|s| s.counters.ok).sum();
        drop(p);
        let per_k = (c1 - c0).mul_f64(1000.0 / probes.max(1) as f64);
        let wall = t0.elapsed();
        rows.push((
            "in-process: CPU per 1,000 probes".into(),
            format!(
                "{} ({} probes in {:.1} s, {} ok total)",
                ms(per_k),
                probes,
                wall.as_secs_f64(),
                ok
            ),
        ));

        // ---- one sipp OPTIONS check, forked like the seed ---------------------------
        let uac = probe_common::scenario("uac_options.xml");
        let runs = 10u32;
        let (k0, _) = cpu(UsageWho::RUSAGE_CHILDREN);
        let mut okruns = 0;
        let w0 = Instant::now();
        for _ in 0..runs {
            let port = if env.srv_ns.is_some() {
                5080
            } else {
                free_udp_port()
            };
            // Children of this (setns'd) thread start in the prober's namespace.
            let mut args: Vec<String> = Vec::new();
            args.extend(
                [
                    "-sf",
                    uac.to_str().unwrap_or(""),
                    "-m",
                    "1",
                    "-i",
                    &env.lan.to_string(),
                    "-p",
                    &port.to_string(),
                    "-nostdin",
                    "-timeout",
                    "5s",
                    "-timeout_error",
                    &env.server.to_string(),
                ]
                .map(String::from),
            );
            let st = Command::new("sipp")
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if st.is_ok_and(|s| s.success()) {
                okruns += 1;
            }
        }
        let (k1, child_rss) = cpu(UsageWho::RUSAGE_CHILDREN);
        let per_check = (k1 - k0) / runs;
        rows.push((
            "seed: CPU per forked sipp check (-m 1)".into(),
            format!(
                "{} ({okruns}/{runs} ok, {:.0} ms wall each)",
                ms(per_check),
                w0.elapsed().as_secs_f64() * 1000.0 / runs as f64,
            ),
        ));
        rows.push((
            "one sipp check costs the CPU of N in-process probes".into(),
            format!(
                "N = {:.0}",
                per_check.as_secs_f64() * 1000.0 / per_k.as_secs_f64().max(1e-9)
            ),
        ));
        rows.push((
            "max RSS: bench process (all of it) vs sipp child".into(),
            format!("{} KiB vs {} KiB", rss_self, child_rss),
        ));
        drop(uas);

        // ---- detection latency --------------------------------------------------
        let mut rng = Ids::new();
        let (tx, mut rx) = mpsc::channel(64);
        let cfg = env.config(|_| {});
        let _p = Prober::spawn(&cfg, tx);
        let interval = u64::from(cfg.services[0].probe.interval_ms);
        let mut silent = Vec::new();
        let mut closed = Vec::new();
        let mut uas = env.sipp("uas_200.xml", &[]);
        let _ = wait_for(&mut rx, Health::Up, Duration::from_secs(5)).await;
        for _ in 0..trials {
            sleep(Duration::from_millis(300 + rng.next_u64() % interval)).await;
            let t = Instant::now();
            uas.stop();
            if wait_for(&mut rx, Health::Down, Duration::from_secs(5))
                .await
                .is_ok()
            {
                silent.push(t.elapsed());
            }
            uas.cont();
            let _ = wait_for(&mut rx, Health::Up, Duration::from_secs(5)).await;
        }
        for _ in 0..trials {
            // A server's kernel sends at most a burst of 6 ICMP errors to us, then 1/s
            // (net.ipv4.icmp_ratelimit); each trial uses ~4. Stay up long enough for
            // the bucket to refill, as for a port that closes after real uptime.
            sleep(Duration::from_millis(
                CLOSED_GAP_MS + rng.next_u64() % interval,
            ))
            .await;
            let t = Instant::now();
            uas.kill();
            if wait_for(&mut rx, Health::Down, Duration::from_secs(5))
                .await
                .is_ok()
            {
                closed.push(t.elapsed());
            }
            uas = env.sipp("uas_200.xml", &[]);
            let _ = wait_for(&mut rx, Health::Up, Duration::from_secs(5)).await;
        }
        drop(uas);
        for (name, mut v) in [("silent (SIGSTOP)", silent), ("port closed (kill)", closed)] {
            v.sort();
            rows.push((
                format!("detection latency, {name}, n={}", v.len()),
                format!(
                    "median {}, p99 {}, min {}, max {}",
                    ms(pct(&v, 0.5)),
                    ms(pct(&v, 0.99)),
                    ms(v.first().copied().unwrap_or_default()),
                    ms(v.last().copied().unwrap_or_default())
                ),
            ));
        }

        println!(
            "\n| measure ({}) | value |",
            if env.lb_ns.is_some() {
                "namespace lab, veth"
            } else {
                "loopback"
            }
        );
        println!("|---|---|");
        for (k, v) in rows {
            println!("| {k} | {v} |");
        }
        let d = &cfg.services[0].probe;
        println!(
            "\nsettings: interval {} ms, timeout {} ms, rise {}, fall {}, refused retry {:?}; CPU part: interval 10 ms x 4 sockets, {} build",
            d.interval_ms, d.timeout_ms, d.rise, d.fall, appliance::probe::health::REFUSED_RETRY,
            if cfg!(debug_assertions) { "debug" } else { "release" }
        );
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut loopback = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--loopback" => loopback = true,
            "--trials" => {
                let n = it.next().and_then(|v| v.parse().ok()).unwrap_or(50u32);
                TRIALS.store(n.max(1), Ordering::Relaxed);
            }
            other => {
                eprintln!("usage: probe_bench [--trials N] [--loopback] (unknown {other})");
                std::process::exit(2);
            }
        }
    }
    if let Some(why) = probe_common::skip_reason(!loopback) {
        eprintln!("SKIPPED: {why}");
        std::process::exit(1);
    }
    if loopback {
        Env::loopback().run(bench);
    } else {
        match NetLab::new() {
            Ok(lab) => {
                Env::netns(&lab).run(bench);
                drop(lab);
            }
            Err(e) => {
                eprintln!("namespace lab unavailable ({e}); using loopback");
                Env::loopback().run(bench);
            }
        }
    }
}
