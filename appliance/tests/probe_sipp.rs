//! Prober against real sipp UAS processes, each case on loopback and inside a pair of
//! network namespaces the test creates (198.51.100.0/24, no route out).
//!
//! Run: `cargo test -p appliance --test probe_sipp` (root, sipp installed).

mod probe_common;

use std::future::Future;
use std::net::SocketAddrV4;
use std::pin::Pin;
use std::time::Duration;

use appliance::config::CodeRange;
use appliance::probe::{Health, HealthEvent, Prober, ProberHandle, ServerProbeStats};
use probe_common::{free_udp_port, next_event, wait_for, Env, NetLab};
use tokio::sync::mpsc;
use tokio::time::sleep;

type Case = fn(Env) -> Pin<Box<dyn Future<Output = ()>>>;

fn run_case(netns: bool, case: Case) {
    if let Some(why) = probe_common::skip_reason(netns) {
        probe_common::skip(&why);
        return;
    }
    if netns {
        let lab = match NetLab::new() {
            Ok(l) => l,
            Err(e) => {
                probe_common::skip(&format!("cannot create network namespaces: {e}"));
                return;
            }
        };
        Env::netns(&lab).run(case);
        drop(lab);
    } else {
        Env::loopback().run(case);
    }
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn loopback() {
                super::run_case(false, super::cases::$name)
            }
            #[test]
            fn netns() {
                super::run_case(true, super::cases::$name)
            }
        }
    )*};
}

on_both!(
    responsive,
    slow,
    silent,
    port_closed,
    code_503,
    code_404_accepted,
    malformed,
    compact_headers,
    provisional_then_ok,
    flapping,
    link_down_up,
    update_keeps_state,
);

const WAIT: Duration = Duration::from_secs(6);

fn stats(p: &ProberHandle, server: SocketAddrV4) -> ServerProbeStats {
    p.snapshot()
        .into_iter()
        .find(|s| s.server == server)
        .expect("server in snapshot")
}

async fn drain(rx: &mut mpsc::Receiver<HealthEvent>, over: Duration) -> Vec<HealthEvent> {
    let mut v = Vec::new();
    let deadline = tokio::time::Instant::now() + over;
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        v.push(ev);
    }
    v
}

mod cases {
    use super::*;

    pub fn responsive(env: Env) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(async move {
            let _uas = env.sipp("uas_200.xml", &[]);
            let (tx, mut rx) = mpsc::channel(16);
            let p = Prober::spawn(&env.config(|_| {}), tx);
            let (ev, _) = wait_for(&mut rx, Health::Up, WAIT).await.expect("up");
            assert_eq!(ev.reason, "200 OK");
            assert_eq!(ev.server, env.server);
            assert_eq!(ev.service.as_str(), "sip");
            // Steady state: no more events, clean counters, RTT measured.
            assert!(next_event(&mut rx, Duration::from_millis(1000))
                .await
                .is_none());
            let s = stats(&p, env.server);
            assert_eq!(s.health, Health::Up);
            assert!(s.counters.ok >= 3, "{s:?}");
            assert_eq!(
                (
                    s.counters.timeout,
                    s.counters.unmatched,
                    s.counters.malformed,
                    s.counters.refused
                ),
                (0, 0, 0, 0),
                "{s:?}"
            );
            assert!(s.rtt.last_us.is_some() && s.rtt.ewma_us.is_some() && s.rtt.max_us.is_some());
            assert_eq!(
                s.local.map(|l| *l.ip()),
                Some(env.lan),
                "bound to the LAN address"
            );
            assert!(s.local.is_some_and(|l| l.port() != 0));
            assert!(
                p.heartbeat().age() < Duration::from_secs(1),
                "heartbeat beats"
            );
        })
    }

    pub fn slow(env: Env) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(async move {
            // 200 OK after 400 ms > 250 ms timeout: late replies are stale, never alive.
            let _uas = env.sipp("uas_slow.xml", &[]);
            let (tx, mut rx) = mpsc::channel(16);
            let p = Prober::spawn(&env.config(|_| {}), tx);
            let (ev, _) = wait_for(&mut rx, Health::Down, WAIT).await.expect("down");
            assert!(ev.reason.contains("timeout after 250 ms"), "{}", ev.reason);
            let later = drain(&mut rx, Duration::from_secs(2)).await;
            assert!(
                later.is_empty(),
                "late replies must not bring it up: {later:?}"
            );
            let s = stats(&p, env.server);
            assert_eq!(s.counters.ok, 0, "{s:?}");
            assert!(s.counters.timeout >= 3, "{s:?}");
            assert!(
                s.counters.unmatched >= 2,
                "late replies counted as unmatched: {s:?}"
            );
        })
    }

    pub fn silent(env: Env) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(async move {
            let uas = env.sipp("uas_200.xml", &[]);
            let (tx, mut rx) = mpsc::channel(16);
            let p = Prober::spawn(&env.config(|_| {}), tx);
            wait_for(&mut rx, Health::Up, WAIT).await.expect("up");
            uas.stop(); // hung server: socket open, no reply, no ICMP
            let (ev, took) = wait_for(&mut rx, Health::Down, WAIT).await.expect("down");
            eprintln!("silent server detected in {took:?}");
            assert_eq!(ev.reason, "3 failures in a row, last: timeout after 250 ms");
            assert_eq!(stats(&p, env.server).counters.refused, 0);
            uas.cont();
            let (ev, _) = wait_for(&mut rx, Health::Up, WAIT).await.expect("up again");
            assert_eq!(ev.reason, "2 successes in a row, last: 200 OK");
        })
    }

    pub fn port_closed(env: Env) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(async move {
            // Nothing listening from the start: Unknown -> Down by ICMP, no timeouts.
            let (tx, mut rx) = mpsc::channel(16);
            let p = Prober::spawn(&env.config(|_| {}), tx);
            let (ev, _) = wait_for(&mut rx, Health::Down, WAIT).await.expect("down");
            assert!(ev.reason.contains("port unreachable"), "{}", ev.reason);
            let s = stats(&p, env.server);
            assert_eq!(s.counters.timeout, 0, "{s:?}");
            assert!(s.counters.refused >= 3, "{s:?}");
            // Comes up when a server starts, goes down again when it is killed.
            let uas = env.sipp("uas_200.xml", &[]);
            wait_for(&mut rx, Health::Up, WAIT).await.expect("up");
            // Linux rate-limits ICMP errors per peer (burst 6, then 1/s): the probes
            // refused above used up the burst, so let it refill as it would on a
            // server that has been up for a while.
            sleep(Duration::from_secs(4)).await;
            let before = stats(&p, env.server).counters;
            uas.kill();
            let (ev, took) = wait_for(&mut rx, Health::Down, WAIT).await.expect("down");
            eprintln!("closed port detected in {took:?}");
            assert!(
                ev.reason
                    .starts_with("3 failures in a row, last: port unreachable"),
                "{}",
                ev.reason
            );
            let after = stats(&p, env.server).counters;
            assert_eq!(
                after.timeout, before.timeout,
                "detected by ICMP, not by timeout"
            );
        })
    }

    pub fn code_503(env: Env) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(async move {
            let _uas = env.sipp("uas_503.xml", &[]);
            let (tx, mut rx) = mpsc::channel(16);
            let p = Prober::spawn(&env.config(|_| {}), tx);
            let (ev, _) = wait_for(&mut rx, Health::Down, WAIT).await.expect("down");
            assert_eq!(
                ev.reason,
                "3 failures in a row, last: replied 503 Service Unavailable"
            );
            let s = stats(&p, env.server);
            assert!(s.counters.bad_code >= 3 && s.counters.ok == 0, "{s:?}");
            assert!(s.rtt.last_us.is_some(), "RTT measured for any final reply");
        })
    }

    pub fn code_404_accepted(env: Env) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(async move {
            let _uas = env.sipp("uas_404.xml", &[]);
            let (tx, mut rx) = mpsc::channel(16);
            let cfg = env.config(|s| {
                let _ = s.accept.push(CodeRange { lo: 404, hi: 405 });
            });
            let p = Prober::spawn(&cfg, tx);
            let (ev, _) = wait_for(&mut rx, Health::Up, WAIT)
                .await
                .expect("404 accepted");
            assert_eq!(ev.reason, "404 Not Found");
            // Same server under the default policy (2xx only) is down.
            let (tx2, mut rx2) = mpsc::channel(16);
            let _p2 = Prober::spawn(&env.config(|_| {}), tx2);
            let (ev, _) = wait_for(&mut rx2, Health::Down, WAIT)
                .await
                .expect("404 refused");
            assert!(
                ev.reason.ends_with("replied 404 Not Found"),
                "{}",
                ev.reason
            );
            assert_eq!(stats(&p, env.server).health, Health::Up);
        })
    }

    pub fn malformed(env: Env) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(async move {
            let _uas = env.sipp("uas_malformed.xml", &[]);
            let (tx, mut rx) = mpsc::channel(16);
            let p = Prober::spawn(&env.config(|_| {}), tx);
            let (ev, _) = wait_for(&mut rx, Health::Down, WAIT).await.expect("down");
            assert!(ev.reason.contains("timeout"), "{}", ev.reason);
            let later = drain(&mut rx, Duration::from_secs(1)).await;
            assert!(later.is_empty(), "{later:?}");
            let s = stats(&p, env.server);
            assert_eq!((s.counters.ok, s.counters.bad_code), (0, 0), "{s:?}");
            // Per probe: 5 malformed (garbage, no colon, no Call-ID, truncated body,
            // a request) and 3 unmatched (spoofed branch, stale CSeq, wrong Call-ID).
            assert!(s.counters.malformed >= 5 * 3, "{s:?}");
            assert!(s.counters.unmatched >= 3 * 3, "{s:?}");
        })
    }

    pub fn compact_headers(env: Env) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(async move {
            let _uas = env.sipp("uas_compact.xml", &[]);
            let (tx, mut rx) = mpsc::channel(16);
            let p = Prober::spawn(&env.config(|_| {}), tx);
            let (ev, _) = wait_for(&mut rx, Health::Up, WAIT).await.expect("up");
            assert_eq!(ev.reason, "200 OK");
            sleep(Duration::from_millis(500)).await;
            let s = stats(&p, env.server);
            assert_eq!(
                (s.counters.malformed, s.counters.unmatched),
                (0, 0),
                "{s:?}"
            );
        })
    }

    pub fn provisional_then_ok(env: Env) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(async move {
            let _uas = env.sipp("uas_trying.xml", &[]);
            let (tx, mut rx) = mpsc::channel(16);
            let p = Prober::spawn(&env.config(|_| {}), tx);
            wait_for(&mut rx, Health::Up, WAIT).await.expect("up");
            let s = stats(&p, env.server);
            assert!(s.counters.provisional >= 1, "{s:?}");
            assert!(
                s.rtt.last_us.is_some_and(|us| us >= 40_000),
                "RTT is to the final reply: {s:?}"
            );
        })
    }

    pub fn flapping(env: Env) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(async move {
            let uas = env.sipp("uas_200.xml", &[]);
            let (tx, mut rx) = mpsc::channel(16);
            let p = Prober::spawn(&env.config(|_| {}), tx);
            wait_for(&mut rx, Health::Up, WAIT).await.expect("up");
            // A 500 ms hiccup costs 1 or 2 timeouts (250 ms each, one probe in
            // flight) < fall (3): no flap.
            uas.stop();
            sleep(Duration::from_millis(500)).await;
            uas.cont();
            let hiccup = drain(&mut rx, Duration::from_millis(1500)).await;
            assert!(
                hiccup.is_empty(),
                "hysteresis must absorb a short hiccup: {hiccup:?}"
            );
            let s = stats(&p, env.server);
            assert!(s.counters.timeout >= 1, "the hiccup was seen: {s:?}");
            // Down (503), then up again (needs rise = 2 successes), then down again.
            uas.kill();
            let busy = env.sipp("uas_503.xml", &[]);
            wait_for(&mut rx, Health::Down, WAIT).await.expect("down");
            busy.kill();
            let ok = env.sipp("uas_200.xml", &[]);
            let (ev, _) = wait_for(&mut rx, Health::Up, WAIT).await.expect("up again");
            assert_eq!(ev.reason, "2 successes in a row, last: 200 OK");
            ok.kill();
            wait_for(&mut rx, Health::Down, WAIT)
                .await
                .expect("down again");
            let rest = drain(&mut rx, Duration::from_millis(500)).await;
            assert!(rest.is_empty(), "{rest:?}");
        })
    }

    pub fn link_down_up(env: Env) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(async move {
            let _uas = env.sipp("uas_200.xml", &[]);
            let (tx, mut rx) = mpsc::channel(16);
            let p = Prober::spawn(&env.config(|_| {}), tx);
            wait_for(&mut rx, Health::Up, WAIT).await.expect("up");
            p.set_link(false);
            let ev = next_event(&mut rx, Duration::from_secs(2))
                .await
                .expect("event");
            assert_eq!(
                (ev.health, ev.reason.as_str()),
                (Health::Down, "LAN link down")
            );
            let sent = stats(&p, env.server).counters.sent;
            sleep(Duration::from_millis(600)).await;
            assert_eq!(
                stats(&p, env.server).counters.sent,
                sent,
                "paused while link down"
            );
            p.set_link(true);
            let (ev, _) = wait_for(&mut rx, Health::Up, WAIT).await.expect("up");
            assert_eq!(ev.reason, "2 successes in a row, last: 200 OK");
        })
    }

    pub fn update_keeps_state(env: Env) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(async move {
            let _uas = env.sipp("uas_200.xml", &[]);
            let (tx, mut rx) = mpsc::channel(16);
            let cfg = env.config(|_| {});
            let p = Prober::spawn(&cfg, tx);
            wait_for(&mut rx, Health::Up, WAIT).await.expect("up");
            sleep(Duration::from_millis(500)).await;
            let before = stats(&p, env.server);
            // Add a second server (closed port) and change nothing else.
            let port2 = if env.srv_ns.is_some() {
                5070
            } else {
                free_udp_port()
            };
            let second = SocketAddrV4::new(*env.server.ip(), port2);
            let mut cfg2 = cfg.clone();
            let mut rs = cfg2.services[0].servers[0].clone();
            rs.port = port2;
            let _ = cfg2.services[0].servers.push(rs);
            p.update(&cfg2);
            let (ev, _) = wait_for(&mut rx, Health::Down, WAIT)
                .await
                .expect("second down");
            assert_eq!(ev.server, second);
            sleep(Duration::from_millis(500)).await;
            let first = stats(&p, env.server);
            assert_eq!(first.health, Health::Up);
            assert!(
                first.counters.sent > before.counters.sent,
                "not reset: {first:?}"
            );
            assert_eq!(first.local, before.local, "same socket kept");
            // Settings change in place (interval) keeps health and counters too.
            let mut cfg3 = cfg2.clone();
            cfg3.services[0].probe.interval_ms = 100;
            p.update(&cfg3);
            let s = stats(&p, env.server);
            assert_eq!(s.health, Health::Up);
            assert!(s.counters.sent >= first.counters.sent);
            // Remove the second server again.
            p.update(&cfg);
            assert_eq!(p.snapshot().len(), 1);
            let rest = drain(&mut rx, Duration::from_millis(500)).await;
            assert!(rest.is_empty(), "{rest:?}");
        })
    }
}
