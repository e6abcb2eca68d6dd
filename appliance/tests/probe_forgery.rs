//! Forged ICMP errors must never take a live server out. A third namespace (another
//! host next to the balancer) sends ICMP port unreachables at the prober's exact
//! socket, both with its own source address and spoofing the server's, quoting a
//! plausible probe with a guessed branch or nothing at all. The server (sipp) stays
//! up; a really closed port is still out in about 100 ms (probe_sipp::port_closed).
//!
//! Run: `cargo test -p appliance --test probe_forgery` (root, sipp installed).

mod probe_common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use appliance::probe::{Health, Prober};
use probe_common::{wait_for, Env, NetLab};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::sync::mpsc;

const LB: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const EVE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 66);

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The forger's namespace, joined to the balancer's by its own veth (192.0.2.0/24).
struct Eve {
    ns: String,
}

impl Eve {
    fn new(lab: &NetLab) -> Result<Eve, String> {
        let eve = Eve {
            ns: format!("{}-eve", lab.lb),
        };
        ip(&["netns", "add", &eve.ns])?;
        ip(&[
            "link", "add", "name", "eve0", "netns", &eve.ns, "type", "veth", "peer", "name",
            "side0", "netns", &lab.lb,
        ])?;
        ip(&["-n", &eve.ns, "addr", "add", "192.0.2.66/24", "dev", "eve0"])?;
        ip(&["-n", &eve.ns, "link", "set", "eve0", "up"])?;
        ip(&[
            "-n",
            &eve.ns,
            "route",
            "add",
            "198.51.100.0/24",
            "dev",
            "eve0",
        ])?;
        ip(&["-n", &lab.lb, "addr", "add", "192.0.2.1/24", "dev", "side0"])?;
        ip(&["-n", &lab.lb, "link", "set", "side0", "up"])?;
        // The attacker's spoofed source must arrive: the balancer namespace keeps
        // reverse-path filtering off here, the worst case for the prober.
        for k in ["all", "side0"] {
            let _ = Command::new("ip")
                .args(["netns", "exec", &lab.lb, "sysctl", "-qw"])
                .arg(format!("net.ipv4.conf.{k}.rp_filter=0"))
                .status();
        }
        Ok(eve)
    }
}

impl Drop for Eve {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.ns]);
    }
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in b.chunks(2) {
        let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, total: usize) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&(total as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// An ICMP port unreachable from `src` to the prober, quoting a datagram from the
/// prober's `port` to the server's 5060 whose payload is `quote`.
fn forged(src: Ipv4Addr, port: u16, quote: &[u8]) -> Vec<u8> {
    let udp_len = 8 + quote.len();
    let mut inner = ipv4_header(LB, SERVER, 17, 20 + udp_len);
    inner.extend_from_slice(&port.to_be_bytes());
    inner.extend_from_slice(&5060u16.to_be_bytes());
    inner.extend_from_slice(&(udp_len as u16).to_be_bytes());
    inner.extend_from_slice(&[0, 0]);
    inner.extend_from_slice(quote);
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&inner);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut pkt = ipv4_header(src, LB, 1, 20 + icmp.len());
    pkt.extend_from_slice(&icmp);
    pkt
}

/// Send forged ICMP from the namespace `ns` until `stop`, cycling through
/// spoofed/own sources and empty/guessed quotes. Returns how many were sent.
fn forge(ns: String, port: u16, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns file");
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    // IPPROTO_RAW: we write the IP header ourselves (spoofed source).
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255))).expect("raw socket");
    let to = SockAddr::from(SocketAddrV4::new(LB, 0));
    let guess = format!(
        "OPTIONS sip:{SERVER}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {LB}:{port};branch=z9hG4bK\
         00000000000000000000000000000000;rport\r\n"
    );
    let variants = [
        forged(SERVER, port, guess.as_bytes()),
        forged(SERVER, port, b""),
        forged(EVE, port, guess.as_bytes()),
        forged(EVE, port, b""),
    ];
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        if s.send_to(&variants[i % variants.len()], &to).is_ok() {
            sent.fetch_add(1, Ordering::Relaxed);
        }
        i += 1;
        // About 2,000 a second: 20 forgeries for every probe.
        if i.is_multiple_of(20) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn forged_port_unreachables_never_take_a_live_server_out() {
    if let Some(why) = probe_common::skip_reason(true) {
        probe_common::skip(&why);
        return;
    }
    let lab = match NetLab::new() {
        Ok(l) => l,
        Err(e) => {
            probe_common::skip(&format!("cannot create network namespaces: {e}"));
            return;
        }
    };
    let eve = Eve::new(&lab).expect("forger namespace");
    let env = Env::netns(&lab);
    let _uas = env.sipp("uas_200.xml", &[]);
    let lb_ns = lab.lb.clone();
    let eve_ns = eve.ns.clone();
    let h = std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{lb_ns}")).expect("netns file");
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (tx, mut rx) = mpsc::channel(64);
            let p = Prober::spawn(&env.config(|_| {}), tx);
            wait_for(&mut rx, Health::Up, Duration::from_secs(6))
                .await
                .expect("up before the attack");
            let stats = || {
                p.snapshot()
                    .into_iter()
                    .find(|s| s.server == env.server)
                    .expect("server probed")
            };
            // The strongest off-path forger: it knows the prober's port exactly.
            let port = stats().local.expect("socket open").port();
            let before = stats().counters;
            let stop = Arc::new(AtomicBool::new(false));
            let count = Arc::new(AtomicU64::new(0));
            let forger = {
                let (stop, count) = (stop.clone(), count.clone());
                std::thread::spawn(move || forge(eve_ns, port, stop, count))
            };
            let started = Instant::now();
            let down = wait_for(&mut rx, Health::Down, Duration::from_secs(4)).await;
            stop.store(true, Ordering::Relaxed);
            forger.join().expect("forger thread");
            let after = stats().counters;
            let forged = count.load(Ordering::Relaxed);
            eprintln!(
                "forged {forged} ICMP in {:?}; prober: {} ignored, {} refused, {} ok",
                started.elapsed(),
                after.icmp_ignored - before.icmp_ignored,
                after.refused - before.refused,
                after.ok - before.ok
            );
            assert!(
                down.is_err(),
                "a forged ICMP took the server down: {down:?}"
            );
            assert_eq!(stats().health, Health::Up);
            assert_eq!(
                after.refused, before.refused,
                "no forgery counted: {after:?}"
            );
            assert!(forged >= 2000, "the forger ran ({forged} sent)");
            // The forgeries did reach the socket (else this test proves nothing).
            assert!(
                after.icmp_ignored - before.icmp_ignored >= 20,
                "forgeries reached the prober's socket: {after:?}"
            );
            // Probing went on throughout: about 10 answered probes a second.
            assert!(after.ok - before.ok >= 20, "{after:?}");
        });
    });
    let r = h.join();
    drop(eve);
    drop(lab);
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
}
