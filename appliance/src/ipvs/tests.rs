//! Reconciler sync tests against the byte-speaking fake kernel.

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use super::codec::{svc_flags, Request};
use super::fake::FakeKernel;
use super::*;

fn up(_: &str, _: SocketAddrV4) -> Health {
    Health::Up
}

fn reconciler() -> (
    Reconciler,
    std::sync::Arc<std::sync::Mutex<fake::FakeState>>,
) {
    let (k, st) = FakeKernel::new();
    (Reconciler::new(Ipvs::with_link(Box::new(k))), st)
}

#[test]
fn sync_programs_verifies_and_then_adopts() {
    let (mut r, st) = reconciler();
    let cfg = Config::builtin_default();
    let rep = r.sync(&cfg, &up).expect("first sync");
    assert_eq!(rep.ops.len(), 4);
    assert_eq!((rep.services, rep.dests), (1, 3));
    let p = &rep.table[0].params;
    assert_eq!(
        p.flags,
        svc_flags::PERSISTENT | svc_flags::ONEPACKET,
        "HASHED stripped"
    );
    assert_eq!(p.pe.as_deref(), Some("sip"));
    // Restart: a fresh reconciler over the same kernel changes nothing.
    let before = st.lock().expect("lock").log.len();
    let rep2 = r.sync(&cfg, &up).expect("second sync");
    assert!(rep2.ops.is_empty());
    let log = &st.lock().expect("lock").log;
    assert!(
        log[before..]
            .iter()
            .all(|q| matches!(q, Request::GetServices | Request::GetDests(_))),
        "adoption only reads: {:?}",
        &log[before..]
    );
}

#[test]
fn missing_sip_engine_is_an_error_not_a_success() {
    let (mut r, st) = reconciler();
    st.lock().expect("lock").pes.clear();
    let err = r
        .sync(&Config::builtin_default(), &up)
        .expect_err("must not claim success");
    let text = err.to_string();
    assert!(text.contains("CONFIG_IP_VS_PE_SIP"), "{text}");
    assert!(text.contains("add service UDP 203.0.113.10:5060"), "{text}");
    assert!(
        text.contains("add server 198.51.100.11:5060"),
        "differences listed: {text}"
    );
    assert!(!text.contains("not unicast"), "{text}");
    // Server adds for the failed service were not even attempted.
    let log = &st.lock().expect("lock").log;
    assert!(!log.iter().any(|q| matches!(q, Request::NewDest(..))));
}

#[test]
fn upper_case_pe_gets_the_lower_case_hint() {
    let (k, _st) = FakeKernel::new();
    let mut ipvs = Ipvs::with_link(Box::new(k));
    let vs = &Config::builtin_default().services[0];
    let mut params = reconcile::service_params(vs);
    params.pe = Some("SIP".into());
    let key = ServiceKey::udp(vs.vip, vs.port);
    let ops = vec![
        TableOp::AddService { key, params },
        TableOp::AddDest {
            svc: key,
            dest: DestKey {
                addr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 11)),
                port: 5060,
            },
            params: DestParams {
                fwd: FwdMethod::Masq,
                weight: 1,
                u_thresh: 0,
                l_thresh: 0,
            },
        },
    ];
    let text = ipvs.apply(&ops).expect_err("rejected").to_string();
    assert!(
        text.contains("the kernel rejected persistence engine 'SIP'; it must be lower-case 'sip' and needs CONFIG_IP_VS_PE_SIP"),
        "{text}"
    );
    assert!(
        text.contains("1 change(s) failed"),
        "one cause, no ESRCH noise: {text}"
    );
}

#[test]
fn a_kernel_that_silently_drops_settings_fails_verification() {
    let (mut r, st) = reconciler();
    st.lock().expect("lock").drop_pe = true;
    let text = r
        .sync(&Config::builtin_default(), &up)
        .expect_err("unverified")
        .to_string();
    assert!(
        text.contains("still to do after reading the table back"),
        "{text}"
    );
    assert!(text.contains("pe sip"), "{text}");

    let (mut r, st) = reconciler();
    let mut cfg = Config::builtin_default();
    // Weight-0 policy: the failure is a weight change the fake kernel ignores.
    cfg.services[0].probe.on_failure = crate::config::FailureAction::Weight0;
    r.sync(&cfg, &up).expect("first");
    let sticky = DestKey {
        addr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 12)),
        port: 5060,
    };
    st.lock().expect("lock").sticky = Some(sticky);
    let down = |_: &str, a: SocketAddrV4| {
        if *a.ip() == Ipv4Addr::new(198, 51, 100, 12) {
            Health::Down
        } else {
            Health::Up
        }
    };
    let text = r
        .sync(&cfg, &down)
        .expect_err("weight not applied")
        .to_string();
    assert!(text.contains("change server 198.51.100.12:5060"), "{text}");
}

#[test]
fn drift_repair_through_bytes() {
    let (mut r, st) = reconciler();
    let cfg = Config::builtin_default();
    r.sync(&cfg, &up).expect("first");
    {
        let mut s = st.lock().expect("lock");
        s.services[0].dests[0].1.weight = 9; // edited by hand
        s.services[0].dests.pop(); // removed by hand
    }
    let rep = r.sync(&cfg, &up).expect("repair");
    assert_eq!(rep.ops.len(), 2, "{:?}", rep.ops);
    assert!(rep.table[0].dests.iter().all(|d| d.params.weight == 1));
    assert_eq!(rep.table[0].dests.len(), 3);
}

#[test]
fn console_view_counts_calls_from_persistence_templates() {
    let (mut r, st) = reconciler();
    let cfg = Config::builtin_default();
    r.sync(&cfg, &up).expect("sync");
    {
        let mut s = st.lock().expect("lock");
        s.services[0].dests[0].2 = 4;
        s.services[0].dests[1].2 = 6;
    }
    let table = r.ipvs().dump().expect("dump");
    let v = view(&cfg, &table);
    assert_eq!(v[0].name.as_deref(), Some("sip"));
    assert_eq!(v[0].calls, 10);
    assert_eq!(v[0].stats.conns, 5);
    assert_eq!(
        v[0].settings,
        format!(
            "rr persistent {} mask 0.0.0.0 ops pe sip",
            cfg.services[0].persistence_timeout
        )
    );
}

#[test]
fn info_and_timeouts() {
    let (k, _) = FakeKernel::new();
    let mut ipvs = Ipvs::with_link(Box::new(k));
    assert_eq!(ipvs.info().expect("info").version_string(), "1.2.1");
    ipvs.set_timeouts(Timeouts {
        udp: Some(30),
        ..Timeouts::default()
    })
    .expect("set");
    assert_eq!(ipvs.timeouts().expect("get").udp, Some(30));
}

#[test]
fn errno_explanations_are_actionable() {
    use super::error::explain;
    use nix::libc::*;
    let vs = &Config::builtin_default().services[0];
    let key = ServiceKey::udp(vs.vip, vs.port);
    let d = DestKey {
        addr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 11)),
        port: 5060,
    };
    let p = DestParams {
        fwd: FwdMethod::Masq,
        weight: 1,
        u_thresh: 0,
        l_thresh: 0,
    };
    let e = |errno| KernelError::Errno {
        errno,
        detail: None,
    };
    let mut bad_sched = reconcile::service_params(vs);
    bad_sched.sched = "xyz".into();
    let cases: Vec<(Request, i32, &str)> = vec![
        (
            Request::NewService(key, bad_sched),
            ENOENT,
            "no scheduler 'xyz'",
        ),
        (
            Request::NewDest(key, d, p),
            ESRCH,
            "does not exist in the kernel",
        ),
        (Request::NewDest(key, d, p), EEXIST, "already in service"),
        (Request::DelDest(key, d), ENOENT, "is not in service"),
        (Request::NewDest(key, d, p), EINVAL, "normal host address"),
        (Request::SetDest(key, d, p), ERANGE, "weight must be"),
        (Request::GetServices, EPERM, "needs root"),
        (Request::GetServices, EIO, "EIO"),
    ];
    for (req, errno, want) in cases {
        let text = explain(&req, &e(errno));
        assert!(text.contains(want), "{req:?} errno {errno}: {text}");
        assert!(!text.contains("not unicast"), "{text}");
    }
}

/// Real socket: resolving the family works against this machine's kernel, whichever way.
#[test]
fn transport_resolves_family_or_says_ipvs_is_missing() {
    let has_ipvs = std::path::Path::new("/proc/net/ip_vs").exists();
    match Ipvs::connect() {
        Err(IpvsError::NoIpvs) => {
            assert!(
                !has_ipvs,
                "kernel has /proc/net/ip_vs but the genl family was not found"
            );
            let text = IpvsError::NoIpvs.to_string();
            assert!(
                text.starts_with("kernel has no IPVS support (CONFIG_IP_VS)"),
                "{text}"
            );
        }
        Ok(mut ipvs) => {
            assert!(has_ipvs);
            // Only reads: never touch a real table from a unit test.
            match ipvs.info() {
                Ok(i) => assert!(i.version >= 0x010200, "{i:?}"),
                Err(e) => assert!(e.to_string().contains("root"), "{e}"),
            }
        }
        Err(IpvsError::Socket(e)) => panic!("no generic netlink socket on this machine: {e}"),
        Err(e) => panic!("unexpected: {e}"),
    }
}

/// Quiesce-then-remove through the byte-speaking fake: the read-back verifies the weight-0
/// drain and the weight-0 DOWN server of a backup, and no flush is ever sent.
#[test]
fn drains_and_backup_quiesce_verify_through_bytes() {
    let (mut r, st) = reconciler();
    let cfg = Config::builtin_default();
    let t0 = std::time::Instant::now();
    r.sync_as(&cfg, &up, Role::Active, t0).expect("first");
    let s13 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 13), 5060);
    let weight = |st: &fake::FakeState, last: u8| {
        st.services[0]
            .dests
            .iter()
            .find(|d| d.0.addr == IpAddr::V4(Ipv4Addr::new(198, 51, 100, last)))
            .map(|d| d.1.weight)
    };
    // The fake reports one connection on every server: .13 removed from the config drains.
    let mut less = cfg.clone();
    less.services[0].servers.retain(|s| s.address != *s13.ip());
    let rep = r
        .sync_as(&less, &up, Role::Active, t0)
        .expect("drain verified");
    assert_eq!(rep.ops.len(), 1, "{:?}", rep.ops);
    assert_eq!(weight(&st.lock().expect("lock"), 13), Some(0));
    let v = r.drains(t0);
    assert_eq!(v.len(), 1);
    assert_eq!((v[0].service.as_str(), v[0].conns), ("sip", 1));
    // Steady: nothing to do, nothing unverified.
    assert!(r
        .sync_as(&less, &up, Role::Active, t0)
        .expect("steady")
        .ops
        .is_empty());
    // The grace passes: deleted and verified.
    let later = t0 + std::time::Duration::from_secs(u64::from(less.services[0].drain_grace_s()));
    let rep = r.sync_as(&less, &up, Role::Active, later).expect("deleted");
    assert!(matches!(rep.ops.as_slice(), [TableOp::DelDest { .. }]));
    assert_eq!(weight(&st.lock().expect("lock"), 13), None);
    assert!(r.drains(later).is_empty());

    // Backup: .12 DOWN stays at weight 0; master: removed.
    let down12 = |_: &str, a: SocketAddrV4| {
        if a.ip().octets()[3] == 12 {
            Health::Down
        } else {
            Health::Up
        }
    };
    r.sync_as(&less, &down12, Role::Standby, later)
        .expect("backup verified");
    assert_eq!(weight(&st.lock().expect("lock"), 12), Some(0));
    r.sync_as(&less, &down12, Role::Active, later)
        .expect("master verified");
    assert_eq!(weight(&st.lock().expect("lock"), 12), None);
    let log = &st.lock().expect("lock").log;
    assert!(
        !log.iter().any(|q| matches!(q, Request::DelService(_))),
        "never a service delete or flush"
    );
}
