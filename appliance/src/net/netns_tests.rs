//! Host integration tests against the real kernel, inside network namespaces the tests
//! create (veth pairs, documentation addresses, no route out), checked with `ip -j`.

use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::plan::SystemProblem;
use super::*;
use crate::config::{bounded, Config};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A namespace with two veth pairs: wan0<->wanp and lan0<->lanp (peers up for carrier).
struct NetNs {
    name: String,
}

impl NetNs {
    fn new() -> Option<NetNs> {
        if !nix::unistd::geteuid().is_root() {
            crate::test_skip::skip("network namespace tests need root");
            return None;
        }
        if Command::new("ip").arg("-V").output().is_err() {
            crate::test_skip::skip("iproute2 'ip' not installed (apt-get install iproute2)");
            return None;
        }
        let name = format!(
            "aplnet{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let ns = NetNs { name };
        ns.sh(&["netns", "add", &ns.name.clone()], false);
        for (a, b) in [("wan0", "wanp"), ("lan0", "lanp")] {
            ns.ip(&["link", "add", "dev", a, "type", "veth", "peer", "name", b]);
            ns.ip(&["link", "set", "dev", b, "up"]);
        }
        Some(ns)
    }

    fn sh(&self, args: &[&str], in_ns: bool) -> String {
        let mut c = Command::new("ip");
        if in_ns {
            c.arg("-n").arg(&self.name);
        }
        let out = c.args(args).output().expect("run ip");
        assert!(
            out.status.success(),
            "ip {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn ip(&self, args: &[&str]) -> String {
        self.sh(args, true)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["-j"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ip(&a)).expect("ip -j output is JSON")
    }

    /// Everything we could possibly change (IPv4 only: IPv6 link-local DAD state changes
    /// on its own), with address lists sorted because a restore may reorder them.
    fn dump(&self) -> Value {
        let mut addr = self.json(&["-4", "addr", "show"]);
        for l in addr.as_array_mut().into_iter().flatten() {
            if let Some(a) = l["addr_info"].as_array_mut() {
                a.sort_by_key(|x| x["local"].as_str().unwrap_or("").to_owned());
            }
        }
        // Operational state and carrier settle asynchronously after a veth peer changes;
        // they are the kernel's observation, not configuration we could have changed.
        let mut link = self.json(&["link", "show"]);
        for l in link
            .as_array_mut()
            .into_iter()
            .flatten()
            .chain(addr.as_array_mut().into_iter().flatten())
        {
            if let Some(o) = l.as_object_mut() {
                o.remove("operstate");
            }
            if let Some(f) = l["flags"].as_array_mut() {
                f.retain(|x| x != "NO-CARRIER");
            }
        }
        serde_json::json!({
            "link": link,
            "addr": addr,
            "route": self.json(&["-4", "route", "show", "table", "all"]),
            "rule": self.json(&["-4", "rule", "show"]),
        })
    }

    /// Run `f` on a fresh thread that has entered this namespace.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let fd = std::fs::File::open(&path).expect("open netns");
                nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            })
            .join()
            .expect("namespace thread panicked")
        })
    }

    fn apply(&self, cfg: &Config) -> Result<NetReport, NetError> {
        self.run(|| apply(cfg))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn lab_config() -> Config {
    let mut c = Config::builtin_default();
    c.wan.name = bounded("wan0");
    c.lan.name = bounded("lan0");
    c
}

fn addrs_of(ns: &NetNs, dev: &str) -> Vec<String> {
    let v = ns.json(&["-4", "addr", "show", "dev", dev]);
    let mut out = Vec::new();
    for l in v.as_array().into_iter().flatten() {
        for a in l["addr_info"].as_array().into_iter().flatten() {
            out.push(format!(
                "{}/{}",
                a["local"].as_str().unwrap_or("?"),
                a["prefixlen"]
            ));
        }
    }
    out.sort();
    out
}

fn default_routes(ns: &NetNs, table: &str) -> Vec<(String, String)> {
    let v = ns.json(&["-4", "route", "show", "table", table, "default"]);
    v.as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["gateway"].as_str().unwrap_or("").to_owned(),
                r["dev"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn apply_configures_everything_and_second_apply_changes_nothing() {
    let Some(ns) = NetNs::new() else { return };
    let mut cfg = lab_config();
    cfg.wan.mtu = 1400;
    let r = ns.apply(&cfg).expect("apply");
    assert!(r.changes >= 7, "{r:?}");

    assert_eq!(addrs_of(&ns, "wan0"), ["203.0.113.10/32", "203.0.113.2/24"]);
    assert_eq!(addrs_of(&ns, "lan0"), ["198.51.100.1/24"]);
    assert_eq!(
        default_routes(&ns, "main"),
        [("203.0.113.1".to_owned(), "wan0".to_owned())]
    );
    let wan = ns.json(&["link", "show", "dev", "wan0"]);
    assert_eq!(wan[0]["mtu"], 1400);
    assert!(wan[0]["flags"]
        .as_array()
        .unwrap()
        .contains(&Value::from("UP")));
    let lo = ns.json(&["link", "show", "dev", "lo"]);
    assert!(lo[0]["flags"]
        .as_array()
        .unwrap()
        .contains(&Value::from("UP")));

    let before = ns.dump();
    let again = ns.apply(&cfg).expect("second apply");
    assert_eq!(again.changes, 0, "{again:?}");
    assert_eq!(ns.dump(), before);
}

#[test]
fn address_change_replaces_old_and_keeps_vip_and_route() {
    let Some(ns) = NetNs::new() else { return };
    let cfg = lab_config();
    ns.apply(&cfg).expect("apply");
    // A stray address left by someone else on a managed interface is removed too.
    ns.ip(&["addr", "add", "192.0.2.9/24", "dev", "lan0"]);
    let mut cfg2 = cfg.clone();
    cfg2.wan.address = "203.0.113.3/24".parse().unwrap();
    let r = ns.apply(&cfg2).expect("apply changed address");
    assert_eq!(r.changes, 3, "{r:?}");
    assert_eq!(addrs_of(&ns, "wan0"), ["203.0.113.10/32", "203.0.113.3/24"]);
    assert_eq!(addrs_of(&ns, "lan0"), ["198.51.100.1/24"]);
    assert_eq!(
        default_routes(&ns, "main"),
        [("203.0.113.1".to_owned(), "wan0".to_owned())]
    );
    // Gateway removed from config: the default route goes.
    let mut cfg3 = cfg2.clone();
    cfg3.wan.gateway = None;
    assert_eq!(ns.apply(&cfg3).expect("apply").changes, 1);
    assert!(default_routes(&ns, "main").is_empty());
}

#[test]
fn bad_configs_change_nothing() {
    let Some(ns) = NetNs::new() else { return };
    ns.apply(&lab_config()).expect("apply good config");
    // An unmanaged interface holding an address we will try to claim.
    ns.ip(&[
        "link", "add", "dev", "dum0", "type", "veth", "peer", "name", "dump",
    ]);
    ns.ip(&["addr", "add", "203.0.113.50/32", "dev", "dum0"]);
    // An unmanaged interface on a subnet that overlaps the LAN.
    ns.ip(&[
        "link", "add", "dev", "dum1", "type", "veth", "peer", "name", "dum1p",
    ]);
    ns.ip(&["addr", "add", "198.51.100.200/25", "dev", "dum1"]);
    let before = ns.dump();

    // Valid configs (validation passes) that clash with what the system already has.
    let mut unknown = lab_config();
    unknown.lan.name = bounded("eth7");
    let mut conflict = lab_config();
    conflict.services[0].vip = "203.0.113.50".parse().unwrap();
    let overlap = lab_config();
    let mut prefix = lab_config();
    prefix.wan.address.prefix = 33;
    let mut gateway = lab_config();
    gateway.wan.gateway = Some("198.51.100.254".parse().unwrap());
    // Changes the address too, so a partial apply would be visible.
    gateway.wan.address = "203.0.113.4/24".parse().unwrap();

    type Case = (&'static str, Config, fn(&SystemProblem) -> bool);
    let cases: [Case; 5] = [
        (
            "unknown interface",
            unknown,
            |p| matches!(p, SystemProblem::UnknownInterface { name, .. } if name == "eth7"),
        ),
        (
            "address conflict",
            conflict,
            |p| matches!(p, SystemProblem::AddressConflict(m) if m.contains("dum0")),
        ),
        (
            "subnet overlap",
            overlap,
            |p| matches!(p, SystemProblem::AddressConflict(m) if m.contains("overlaps")),
        ),
        (
            "prefix out of range",
            prefix,
            |p| matches!(p, SystemProblem::Config(m) if m.contains("prefix length /33")),
        ),
        (
            "gateway off-subnet",
            gateway,
            |p| matches!(p, SystemProblem::Config(m) if m.contains("198.51.100.254")),
        ),
    ];
    for (what, cfg, check) in cases {
        match ns.apply(&cfg) {
            Err(NetError::Invalid(ps)) => {
                assert!(ps.iter().any(check), "{what}: wrong problems {ps:?}");
                let msg = NetError::Invalid(ps).to_string();
                assert!(msg.contains("nothing was changed"), "{msg}");
            }
            other => panic!("{what}: expected rejection, got {other:?}"),
        }
        assert_eq!(ns.dump(), before, "{what}: system state changed");
    }
}

#[test]
fn policy_routing_by_sport_and_fwmark() {
    let Some(ns) = NetNs::new() else { return };
    let mut cfg = lab_config();
    cfg.policy_routing.enabled = true;
    cfg.policy_routing.gateway = Some("198.51.100.254".parse().unwrap());
    ns.apply(&cfg).expect("apply");
    let rules = ns.json(&["rule", "show"]);
    let ours: Vec<&Value> = rules
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["priority"] == 1000)
        .collect();
    assert_eq!(ours.len(), 1, "{rules}");
    assert_eq!(ours[0]["table"], "100");
    assert_eq!(ours[0]["sport"], 5060);
    assert_eq!(ours[0]["ipproto"], "udp");
    assert_eq!(
        default_routes(&ns, "100"),
        [("198.51.100.254".to_owned(), "lan0".to_owned())]
    );
    assert_eq!(ns.apply(&cfg).expect("again").changes, 0);

    cfg.policy_routing.fwmark = 0x5060;
    cfg.policy_routing.table = 200;
    ns.apply(&cfg).expect("switch to fwmark");
    let rules = ns.json(&["rule", "show"]);
    let ours: Vec<&Value> = rules
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["priority"] == 1000)
        .collect();
    assert_eq!(ours.len(), 1, "{rules}");
    assert_eq!(ours[0]["fwmark"], "0x5060");
    assert_eq!(ours[0]["table"], "200");
    assert!(default_routes(&ns, "100").is_empty());
    assert_eq!(default_routes(&ns, "200").len(), 1);
    assert_eq!(ns.apply(&cfg).expect("again").changes, 0);

    cfg.policy_routing.enabled = false;
    assert_eq!(ns.apply(&cfg).expect("disable").changes, 2);
    let rules = ns.json(&["rule", "show"]);
    assert!(
        !rules
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["priority"] == 1000),
        "{rules}"
    );
    assert!(default_routes(&ns, "200").is_empty());
}

#[test]
fn rollback_restores_previous_state() {
    let Some(ns) = NetNs::new() else { return };
    ns.apply(&lab_config()).expect("apply");
    let before_dump = ns.dump();
    let mut cfg2 = lab_config();
    cfg2.wan.address = "203.0.113.7/24".parse().unwrap();
    cfg2.wan.mtu = 1280;
    cfg2.policy_routing.enabled = true;
    let outcome = ns.run(|| {
        let rt = rtnl::Rtnl::connect().unwrap();
        let before = rt.state().unwrap();
        let want = plan::desired(&cfg2, &before).unwrap();
        // Apply only part of the plan, as if the next op had failed.
        let ops = plan::plan(&want, &before);
        assert!(ops.len() >= 5, "{ops:?}");
        for op in &ops[..ops.len() - 1] {
            rt.apply(op).unwrap();
        }
        roll_back(&rt, &before, &want)
    });
    assert_eq!(outcome, "previous network config restored");
    assert_eq!(ns.dump(), before_dump);
}

#[test]
fn kernel_error_midway_is_reported_with_rollback() {
    let Some(ns) = NetNs::new() else { return };
    ns.apply(&lab_config()).expect("apply");
    let before_dump = ns.dump();
    // Validation catches config-level mistakes, so inject a kernel failure after the
    // first change: an address on an interface index that does not exist.
    let mut cfg2 = lab_config();
    cfg2.lan.address = "198.51.100.2/24".parse().unwrap();
    cfg2.wan.mtu = 1400;
    let err = ns.run(|| {
        let rt = rtnl::Rtnl::connect().unwrap();
        let before = rt.state().unwrap();
        let want = plan::desired(&cfg2, &before).unwrap();
        let ops = plan::plan(&want, &before);
        // Execute the first op, then make the second one impossible.
        rt.apply(&ops[0]).unwrap();
        let bogus = plan::NetOp::AddAddr(
            plan::Addr {
                index: 999_999,
                addr: "198.51.100.2".parse().unwrap(),
                prefix: 24,
            },
            "gone0".into(),
        );
        let e = rt.apply(&bogus).unwrap_err();
        (e.to_string(), roll_back(&rt, &before, &want))
    });
    assert!(err.0.contains("gone0"), "{}", err.0);
    assert!(err.0.contains("No such device"), "{}", err.0);
    assert_eq!(err.1, "previous network config restored");
    assert_eq!(ns.dump(), before_dump);
}

#[test]
fn router_sysctls_in_namespace() {
    let Some(ns) = NetNs::new() else { return };
    let cfg = lab_config();
    let r = ns.run(|| sysctl::apply_router(&cfg)).expect("sysctls");
    assert!(!r.changed.is_empty());
    let get = |k: &str| {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.name, "cat", &format!("/proc/sys/{k}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(get("net/ipv4/ip_forward"), "1");
    assert_eq!(get("net/ipv4/conf/wan0/rp_filter"), "1");
    assert_eq!(get("net/ipv4/conf/lan0/rp_filter"), "2");
    assert_eq!(get("net/ipv4/conf/wan0/forwarding"), "0");
    assert_eq!(get("net/ipv4/conf/lan0/forwarding"), "1");
    assert_eq!(get("net/ipv4/conf/lan0/send_redirects"), "0");
    let again = ns.run(|| sysctl::apply_router(&cfg)).expect("again");
    assert!(again.changed.is_empty(), "{again:?}");
}

#[test]
fn link_monitor_sees_link_down() {
    let Some(ns) = NetNs::new() else { return };
    ns.apply(&lab_config()).expect("apply");
    let name = ns.name.clone();
    let seen = ns.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            let _mon = monitor::spawn(tx).expect("monitor");
            let mut initial = Vec::new();
            // Initial snapshot: lo, wan0, wanp, lan0, lanp.
            while initial.len() < 5 {
                let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                    .await
                    .expect("initial events")
                    .unwrap();
                initial.push(ev);
            }
            assert!(initial
                .iter()
                .any(|e| e.ifname == "wan0" && e.up && e.carrier));
            let st = Command::new("ip")
                .args(["-n", &name, "link", "set", "dev", "wan0", "down"])
                .status()
                .unwrap();
            assert!(st.success());
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut events = Vec::new();
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let Ok(Some(ev)) = tokio::time::timeout(left, rx.recv()).await else {
                    break;
                };
                let done = ev.ifname == "wan0" && !ev.up;
                events.push(ev);
                if done {
                    break;
                }
            }
            events
        })
    });
    let down = seen.iter().find(|e| e.ifname == "wan0" && !e.up);
    let down = down.unwrap_or_else(|| panic!("no wan0 down event in {seen:?}"));
    assert!(!down.carrier);
}

/// The box between a client namespace (on wanp) and a server namespace (on lanp).
struct Routed {
    ns: NetNs,
    client: NetNs,
    server: NetNs,
}

impl Routed {
    fn new() -> Option<Routed> {
        let ns = NetNs::new()?;
        let client = NetNs::new()?;
        let server = NetNs::new()?;
        // Only the box keeps its veth pairs; the peers' own ones go.
        for peer in [&client, &server] {
            peer.ip(&["link", "del", "wan0"]);
            peer.ip(&["link", "del", "lan0"]);
        }
        ns.ip(&["link", "set", "wanp", "netns", &client.name]);
        ns.ip(&["link", "set", "lanp", "netns", &server.name]);
        for (peer, dev, addr, route) in [
            (
                &client,
                "wanp",
                "203.0.113.50/24",
                ["198.51.100.0/24", "via", "203.0.113.2"],
            ),
            (
                &server,
                "lanp",
                "198.51.100.11/24",
                ["default", "via", "198.51.100.1"],
            ),
        ] {
            peer.ip(&["addr", "add", addr, "dev", dev]);
            peer.ip(&["link", "set", dev, "up"]);
            peer.ip(&["link", "set", "lo", "up"]);
            let mut r = vec!["route", "add"];
            r.extend_from_slice(&route);
            peer.ip(&r);
        }
        Some(Routed { ns, client, server })
    }

    /// Send datagrams from `src` in `from` to `dst`, and report whether a socket on
    /// `dst` in `to` received one from `src`.
    fn passes(&self, from: &NetNs, src: &str, to: &NetNs, dst: &str) -> bool {
        let dst: std::net::SocketAddr = dst.parse().unwrap();
        let src: std::net::SocketAddr = src.parse().unwrap();
        let rx = to.run(|| {
            let s = std::net::UdpSocket::bind(dst).expect("bind receiver");
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            s
        });
        from.run(|| {
            // IPPROTO_RAW: we write the IP header, so the source can be spoofed (the
            // kernel fills in the header checksum; a zero UDP checksum means none).
            let s = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::RAW,
                Some(socket2::Protocol::from(255)),
            )
            .unwrap();
            let (std::net::SocketAddr::V4(s4), std::net::SocketAddr::V4(d4)) = (src, dst) else {
                panic!("IPv4 only");
            };
            let mut pkt = vec![0x45, 0, 0, 33, 0, 0, 0x40, 0, 64, 17, 0, 0];
            pkt.extend_from_slice(&s4.ip().octets());
            pkt.extend_from_slice(&d4.ip().octets());
            pkt.extend_from_slice(&s4.port().to_be_bytes());
            pkt.extend_from_slice(&d4.port().to_be_bytes());
            pkt.extend_from_slice(&[0, 13, 0, 0]);
            pkt.extend_from_slice(b"probe");
            // Three tries: the first datagram after a veth comes up can be lost
            // while its neighbour entry resolves.
            for _ in 0..3 {
                s.send_to(&pkt, &dst.into()).expect("send");
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let mut buf = [0u8; 16];
        matches!(rx.recv_from(&mut buf), Ok((5, from)) if from == src)
    }
}

#[test]
fn wan_routes_nothing_to_lan_and_drops_lan_sources() {
    let Some(r) = Routed::new() else { return };
    let mut cfg = lab_config();
    r.ns.apply(&cfg).expect("apply");
    r.ns.run(|| sysctl::apply_router(&cfg)).expect("sysctls");
    // Both links carry traffic to the box before anything is judged (veths settle).
    let ready = (0..20).any(|i| {
        r.passes(
            &r.server,
            "198.51.100.11:7000",
            &r.ns,
            &format!("198.51.100.1:{}", 7100 + i),
        ) && r.passes(
            &r.client,
            "203.0.113.50:7000",
            &r.ns,
            &format!("203.0.113.2:{}", 7100 + i),
        )
    });
    assert!(ready, "the lab's links never carried a datagram");
    // The servers' side forwards (the NAT replies' path).
    assert!(r.passes(
        &r.server,
        "198.51.100.11:5060",
        &r.client,
        "203.0.113.50:4000"
    ));
    // A WAN host routing the LAN prefix via the box reaches no server port.
    assert!(!r.passes(
        &r.client,
        "203.0.113.50:4001",
        &r.server,
        "198.51.100.11:5060"
    ));
    assert!(!r.passes(
        &r.client,
        "203.0.113.50:4002",
        &r.server,
        "198.51.100.11:22"
    ));
    // The box itself still answers on WAN: its address and the VIP (203.0.113.10).
    assert!(r.passes(&r.client, "203.0.113.50:4003", &r.ns, "203.0.113.2:5060"));
    assert!(r.passes(&r.client, "203.0.113.50:4003", &r.ns, "203.0.113.10:5060"));
    // A LAN source arriving on WAN is dropped, also when addressed to the box (a forged
    // ICMP "from a server" aimed at the prober's LAN address).
    assert!(!r.passes(&r.client, "198.51.100.11:5060", &r.ns, "203.0.113.2:5061"));
    assert!(!r.passes(&r.client, "198.51.100.11:5060", &r.ns, "198.51.100.1:5062"));

    // The lab/benchmark option routes WAN to LAN again.
    cfg.router.route_wan_to_lan = true;
    r.ns.run(|| sysctl::apply_router(&cfg)).expect("sysctls");
    assert!(r.passes(
        &r.client,
        "203.0.113.50:4004",
        &r.server,
        "198.51.100.11:5060"
    ));
    // Anti-spoofing does not depend on it.
    assert!(!r.passes(&r.client, "198.51.100.11:5060", &r.ns, "203.0.113.2:5063"));
}
