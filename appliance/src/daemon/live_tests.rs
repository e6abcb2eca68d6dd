//! Apply is all or nothing, against the real kernel in a namespace the test creates.
//! The host kernel has no IPVS, so the IPVS sysctls step fails after the network step
//! has changed addresses: the injected failure the rollback must undo.

use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use super::*;
use crate::config::{bounded, Ipv4Net};

struct Ns(String);

impl Ns {
    fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.0)
            .args(args)
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn lab_config() -> Config {
    let mut c = Config::builtin_default();
    c.wan.name = bounded("wan0");
    c.lan.name = bounded("lan0");
    c
}

#[test]
fn a_failed_apply_puts_network_and_prober_back() {
    if !nix::unistd::geteuid().is_root() {
        crate::test_skip::skip("network namespace tests need root");
        return;
    }
    if std::path::Path::new("/proc/sys/net/ipv4/vs").exists() {
        crate::test_skip::skip(
            "this kernel has IPVS: the injected failure (no IPVS sysctls) does not happen",
        );
        return;
    }
    let ns = Ns(format!("apllive{}", std::process::id()));
    assert!(Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap()
        .success());
    for (a, b) in [("wan0", "wanp"), ("lan0", "lanp")] {
        ns.ip(&["link", "add", "dev", a, "type", "veth", "peer", "name", b]);
        ns.ip(&["link", "set", "dev", b, "up"]);
    }
    let running = lab_config();
    let mut candidate = running.clone();
    candidate.lan.address = Ipv4Net {
        addr: "198.51.100.2".parse().unwrap(),
        prefix: 24,
    };
    candidate.services[0].vip = "203.0.113.20".parse().unwrap();
    candidate.services[0].servers.truncate(1);
    let path = format!("/run/netns/{}", ns.0);
    let (err, servers) = std::thread::scope(|s| {
        s.spawn(|| {
            let fd = std::fs::File::open(&path).unwrap();
            nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (tx, _rx) = tokio::sync::mpsc::channel(64);
                let mut live = Live::start(StartOptions {
                    board: &Board::default(),
                    config: &running,
                    store: None,
                    health_tx: tx,
                    ring: LogRing::new(),
                    alerts: Vec::new(),
                    started: Instant::now(),
                    crash_loop: false,
                    uleds: Vec::new(),
                });
                live.apply_boot(&running);
                let before = ns.ip(&["-4", "-j", "addr", "show"]);
                let err = live
                    .apply(&candidate)
                    .expect_err("no IPVS here: the apply fails");
                tokio::time::sleep(Duration::from_millis(100)).await;
                let after = ns.ip(&["-4", "-j", "addr", "show"]);
                assert_eq!(
                    after, before,
                    "addresses and VIPs are back to the running config"
                );
                let servers: Vec<_> = live.prober().snapshot().iter().map(|s| s.server).collect();
                (err.0, servers)
            })
        })
        .join()
        .unwrap()
    });
    assert!(
        err.contains("IPVS sysctls"),
        "the error names the failed step: {err}"
    );
    // The rollback re-runs the running config's steps; on this IPVS-less kernel the same
    // step fails again, and the message says so instead of claiming success.
    assert!(
        err.contains("rollback INCOMPLETE") || err.contains("back to the running config"),
        "{err}"
    );
    let want: Vec<_> = running.services[0]
        .servers
        .iter()
        .map(|r| std::net::SocketAddrV4::new(r.address, r.port))
        .collect();
    assert_eq!(
        servers, want,
        "the prober probes the running config's servers again"
    );
}

#[test]
fn a_store_fault_keeps_the_network_and_shows_the_fault() {
    if !nix::unistd::geteuid().is_root() {
        crate::test_skip::skip("network namespace tests need root");
        return;
    }
    let ns = Ns(format!("aplhands{}", std::process::id()));
    assert!(Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap()
        .success());
    for (a, b) in [("wan0", "wanp"), ("lan0", "lanp")] {
        ns.ip(&["link", "add", "dev", a, "type", "veth", "peer", "name", b]);
        ns.ip(&["link", "set", "dev", b, "up"]);
    }
    // What a respawned daemon finds: production addresses the factory config lacks.
    ns.ip(&["addr", "add", "192.0.2.7/24", "dev", "wan0"]);
    let before = ns.ip(&["-4", "-j", "addr", "show"]);
    let factory = lab_config();
    let path = format!("/run/netns/{}", ns.0);
    let (after, fault, save) = std::thread::scope(|s| {
        s.spawn(|| {
            let fd = std::fs::File::open(&path).unwrap();
            nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (tx, _rx) = tokio::sync::mpsc::channel(64);
                let mut live = Live::start(StartOptions {
                    board: &Board::default(),
                    config: &factory,
                    store: None,
                    health_tx: tx,
                    ring: LogRing::new(),
                    alerts: Vec::new(),
                    started: Instant::now(),
                    crash_loop: false,
                    uleds: Vec::new(),
                });
                live.set_store_fault("both slots are corrupt".into());
                live.apply_boot(&factory);
                live.on_tick(&factory);
                let save = live.save(&factory).unwrap_err().0;
                (ns.ip(&["-4", "-j", "addr", "show"]), live.fault(), save)
            })
        })
        .join()
        .unwrap()
    });
    assert_eq!(after, before, "the network is kept as found");
    let fault = fault.expect("the fault is shown");
    assert!(
        fault.contains("both slots are corrupt") && fault.contains("kept"),
        "{fault}"
    );
    assert!(save.contains("no config store"), "{save}");
}
