//! The live system with its devices. Apply is all or nothing, against the real kernel in
//! a namespace the test creates.
//! The host kernel has no IPVS, so the IPVS sysctls step fails after the network step
//! has changed addresses: the injected failure the rollback must undo. A store fault
//! refuses saves (a store file, no namespace).

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

impl Ns {
    /// Every interface's IPv4 addresses (not its flags: a veth's carrier comes up on
    /// its own time).
    fn addrs(&self) -> Vec<(String, Vec<String>)> {
        let v: serde_json::Value =
            serde_json::from_str(&self.ip(&["-4", "-j", "addr", "show"])).expect("ip -j");
        v.as_array()
            .expect("a list of interfaces")
            .iter()
            .map(|l| {
                let name = l["ifname"].as_str().unwrap_or_default().to_string();
                let addrs = l["addr_info"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| format!("{}/{}", a["local"], a["prefixlen"]))
                    .collect();
                (name, addrs)
            })
            .collect()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A namespace with veth pairs wan0/wanp and lan0/lanp for an apply whose IPVS sysctls step
/// fails (this host kernel has no IPVS); None (the test skipped, loudly) when not root or
/// when the kernel has IPVS, so the failure cannot be injected.
fn apply_failure_ns(prefix: &str) -> Option<Ns> {
    if !nix::unistd::geteuid().is_root() {
        crate::test_skip::skip("network namespace tests need root");
        return None;
    }
    if std::path::Path::new("/proc/sys/net/ipv4/vs").exists() {
        crate::test_skip::skip(
            "this kernel has IPVS: the injected failure (no IPVS sysctls) does not happen",
        );
        return None;
    }
    let ns = Ns(format!("{prefix}{}", std::process::id()));
    assert!(Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap()
        .success());
    for (a, b) in [("wan0", "wanp"), ("lan0", "lanp")] {
        ns.ip(&["link", "add", "dev", a, "type", "veth", "peer", "name", b]);
        ns.ip(&["link", "set", "dev", b, "up"]);
    }
    Some(ns)
}

fn lab_config() -> Config {
    let mut c = Config::builtin_default();
    c.wan.name = bounded("wan0");
    c.lan.name = bounded("lan0");
    c
}

#[test]
fn a_failed_apply_puts_network_and_prober_back() {
    let Some(ns) = apply_failure_ns("apllive") else {
        return;
    };
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
                let before = ns.addrs();
                let err = live
                    .apply(&candidate)
                    .expect_err("no IPVS here: the apply fails");
                tokio::time::sleep(Duration::from_millis(100)).await;
                let after = ns.addrs();
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
fn a_failed_apply_puts_the_vrrp_runner_back() {
    let Some(ns) = apply_failure_ns("aplha") else {
        return;
    };
    let mut running = lab_config();
    running.ha.enabled = true;
    running.ha.vrid = 42;
    running.ha.priority = 150;
    // Slow adverts: the runner stays backup (no VIPs) for the whole test.
    running.ha.advert_interval_cs = 1000;
    running.ha.lan_gateway = Some("198.51.100.254".parse().unwrap());
    assert!(
        crate::config::validate(&running).errors.is_empty(),
        "{:?}",
        crate::config::validate(&running).lines()
    );
    // HA turned off: the runner is stopped before the network step, which then fails.
    let mut ha_off = running.clone();
    ha_off.ha.enabled = false;
    ha_off.lan.address = Ipv4Net {
        addr: "198.51.100.2".parse().unwrap(),
        prefix: 24,
    };
    // HA reconfigured: the failure comes before the VRRP step, which must not run.
    let mut ha_changed = ha_off.clone();
    ha_changed.ha.enabled = true;
    ha_changed.ha.priority = 200;
    let want = ha::group_config(&running);
    let path = format!("/run/netns/{}", ns.0);
    let (errors, groups) = std::thread::scope(|s| {
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
                let (ntx, _nrx) = tokio::sync::mpsc::channel(64);
                live.attach_ha(ntx);
                live.apply_boot(&running);
                let booted = live.vrrp_group().cloned();
                let before = ns.addrs();
                let mut errors = Vec::new();
                let mut groups = vec![booted];
                for cand in [&ha_off, &ha_changed] {
                    errors.push(live.apply(cand).expect_err("no IPVS here").0);
                    groups.push(live.vrrp_group().cloned());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    assert_eq!(
                        ns.addrs(),
                        before,
                        "addresses are back to the running config"
                    );
                }
                live.ha_shutdown();
                (errors, groups)
            })
        })
        .join()
        .unwrap()
    });
    assert_eq!(
        groups[0].as_ref(),
        Some(&want),
        "the runner started at boot with the running config"
    );
    for (err, group) in errors.iter().zip(&groups[1..]) {
        assert!(err.contains("IPVS sysctls"), "names the failed step: {err}");
        assert_eq!(
            group.as_ref(),
            Some(&want),
            "VRRP runs with the running config's settings again after: {err}"
        );
    }
    // Stopped, then put back: the rollback names the VRRP settings (or says what failed).
    assert!(
        errors[0].contains("rollback INCOMPLETE") || errors[0].contains("VRRP settings"),
        "{}",
        errors[0]
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
    let before = ns.addrs();
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
                (ns.addrs(), live.fault(), save)
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

#[test]
fn a_store_fault_refuses_saves_until_a_factory_reset() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("store.bin");
    std::fs::write(&disk, vec![0xFFu8; 256 * 1024]).unwrap();
    let store = Store::open(&format!("file:{}", disk.display())).unwrap();
    let image = || std::fs::read(&disk).unwrap();
    let cfg = lab_config();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (tx, _rx) = tokio::sync::mpsc::channel(64);
        let mut live = Live::start(StartOptions {
            board: &Board::default(),
            config: &cfg,
            store: Some(store),
            health_tx: tx,
            ring: LogRing::new(),
            alerts: Vec::new(),
            started: Instant::now(),
            crash_loop: false,
            uleds: Vec::new(),
        });
        live.set_store_fault("both slots are corrupt".into());
        let blank = image();
        let e = live.save(&cfg).unwrap_err().0;
        assert!(e.contains("both slots are corrupt"), "{e}");
        assert_eq!(image(), blank, "nothing was written");
        assert_eq!(live.state().counts.save_failures, 1);
        assert_eq!(live.state().hands_off(), Some("both slots are corrupt"));
        // The factory reset's erase lifts the refusal.
        live.store().expect("a store").erase_blocking().unwrap();
        assert_eq!(live.save(&cfg).unwrap(), 1);
        assert_eq!(live.state().counts.saves, 1);
    });
}
