//! The desired table across role × health × admin state × connection counts, with a fake
//! clock for the drain grace.

use std::net::Ipv4Addr;

use super::*;
use crate::config::{AdminState, Config, FailureAction};
use crate::ipvs::codec::{DestEntry, DestParams, FwdMethod, Stats};
use crate::ipvs::model::TableOp;
use crate::ipvs::reconcile::{desired_for, plan};

fn rs(last: u8) -> DestKey {
    DestKey {
        addr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, last)),
        port: 5060,
    }
}

fn svc() -> ServiceKey {
    ServiceKey::udp(Ipv4Addr::new(203, 0, 113, 10), 5060)
}

fn nat(w: u32) -> DestParams {
    DestParams {
        fwd: FwdMethod::Masq,
        weight: w,
        u_thresh: 0,
        l_thresh: 0,
    }
}

/// The factory table as programmed (.11 .12 .13 at weight 1) with `conns` connections
/// (split over active, inactive and templates) on each server.
fn table(conns: &[(u8, u32)]) -> Vec<ActualService> {
    let cfg = Config::builtin_default();
    let d = desired_for(&cfg, &|_, _| Health::Up, Role::Active);
    let mut dests: Vec<DestEntry> = [11, 12, 13]
        .iter()
        .map(|&l| DestEntry {
            key: rs(l),
            params: nat(1),
            active_conns: 0,
            inact_conns: 0,
            persist_conns: 0,
            stats: Stats::default(),
        })
        .collect();
    for &(l, n) in conns {
        let e = dests.iter_mut().find(|e| e.key == rs(l)).expect("dest");
        e.inact_conns = n / 2;
        e.persist_conns = n - n / 2;
    }
    vec![ActualService {
        key: svc(),
        params: d[0].params.clone(),
        stats: Stats::default(),
        dests,
    }]
}

fn health_of(down: &'static [u8]) -> impl Fn(&str, SocketAddrV4) -> Health {
    move |_: &str, a: SocketAddrV4| {
        if down.contains(&a.ip().octets()[3]) {
            Health::Down
        } else {
            Health::Up
        }
    }
}

/// The config without server .13 (the operator removed it).
fn without_13() -> Config {
    let mut cfg = Config::builtin_default();
    cfg.services[0]
        .servers
        .retain(|r| r.address.octets()[3] != 13);
    cfg
}

/// Desired (with drains) then plan, as `Reconciler::sync_as` does.
fn step(
    book: &mut DrainBook,
    cfg: &Config,
    down: &'static [u8],
    role: Role,
    actual: &[ActualService],
    now: Instant,
) -> (Vec<TableOp>, Vec<DrainEvent>) {
    let h = health_of(down);
    let mut d = desired_for(cfg, &h, role);
    let ev = book.extend(&mut d, cfg, &h, role, actual, now);
    (plan(&d, actual), ev)
}

fn quiesce(l: u8) -> TableOp {
    TableOp::EditDest {
        svc: svc(),
        dest: rs(l),
        params: nat(0),
        from: nat(1),
    }
}

fn delete(l: u8) -> TableOp {
    TableOp::DelDest {
        svc: svc(),
        dest: rs(l),
    }
}

/// Role × health: a DOWN server is removed where traffic flows, quiesced on a backup.
#[test]
fn down_server_is_removed_on_master_and_quiesced_on_backup() {
    let cfg = Config::builtin_default();
    let t0 = Instant::now();
    for (role, conns, want) in [
        (Role::Active, 0, vec![delete(12)]),
        (Role::Active, 40, vec![delete(12)]),
        (Role::Standby, 0, vec![quiesce(12)]),
        (Role::Standby, 40, vec![quiesce(12)]),
    ] {
        let mut book = DrainBook::new();
        let (ops, ev) = step(&mut book, &cfg, &[12], role, &table(&[(12, conns)]), t0);
        assert_eq!(ops, want, "{role:?} with {conns} connections");
        assert!(ev.is_empty(), "a health decision is not a drain");
    }
    // Backup: a DOWN server missing from the kernel is added at weight 0, so synced
    // connections find their destination.
    let mut t = table(&[]);
    t[0].dests.retain(|d| d.key != rs(12));
    let (ops, _) = step(&mut DrainBook::new(), &cfg, &[12], Role::Standby, &t, t0);
    assert_eq!(
        ops,
        vec![TableOp::AddDest {
            svc: svc(),
            dest: rs(12),
            params: nat(0),
        }]
    );
    // The weight-0 policy is the same in both roles.
    let mut cfg0 = Config::builtin_default();
    cfg0.services[0].probe.on_failure = FailureAction::Weight0;
    for role in [Role::Active, Role::Standby] {
        let (ops, _) = step(&mut DrainBook::new(), &cfg0, &[12], role, &table(&[]), t0);
        assert_eq!(ops, vec![quiesce(12)], "{role:?}");
    }
}

/// Backup → master with a server DOWN: the first reconcile as master removes it.
#[test]
fn becoming_master_removes_the_quiesced_down_server_at_once() {
    let cfg = Config::builtin_default();
    let t0 = Instant::now();
    let mut book = DrainBook::new();
    let mut t = table(&[(12, 30)]);
    let (ops, _) = step(&mut book, &cfg, &[12], Role::Standby, &t, t0);
    assert_eq!(ops, vec![quiesce(12)]);
    t[0].dests[1].params.weight = 0;
    // Steady as backup: nothing more, templates stay.
    let (ops, _) = step(&mut book, &cfg, &[12], Role::Standby, &t, t0);
    assert_eq!(ops, vec![]);
    let (ops, ev) = step(&mut book, &cfg, &[12], Role::Active, &t, t0);
    assert_eq!(ops, vec![delete(12)]);
    assert!(ev.is_empty());
    // It comes back up as master: re-added with its weight.
    t[0].dests.retain(|d| d.key != rs(12));
    let (ops, _) = step(&mut book, &cfg, &[], Role::Active, &t, t0);
    assert_eq!(
        ops,
        vec![TableOp::AddDest {
            svc: svc(),
            dest: rs(12),
            params: nat(1),
        }]
    );
}

/// Admin removal × connection counts × clock: quiesce, then remove when idle or when the
/// grace has passed, whichever comes first.
#[test]
fn removed_server_drains_until_idle_or_grace() {
    let cfg = without_13();
    let grace = Duration::from_secs(u64::from(cfg.services[0].drain_grace_s()));
    assert_eq!(
        grace,
        Duration::from_secs(120),
        "factory persistence timeout"
    );
    let t0 = Instant::now();

    // No connections: deleted at once, nothing to drain.
    let mut book = DrainBook::new();
    let (ops, ev) = step(&mut book, &cfg, &[], Role::Active, &table(&[]), t0);
    assert_eq!(ops, vec![delete(13)]);
    assert!(ev.is_empty());
    assert!(book.view(t0).is_empty());

    // Connections left: weight 0 and a drain in the book.
    let mut t = table(&[(13, 5)]);
    let (ops, ev) = step(&mut book, &cfg, &[], Role::Active, &t, t0);
    assert_eq!(ops, vec![quiesce(13)]);
    assert_eq!(
        ev,
        vec![DrainEvent::Started {
            service: "sip".into(),
            server: rs(13),
            conns: 5,
            grace_s: 120,
        }]
    );
    t[0].dests[2].params.weight = 0;
    // Still connections, within the grace: nothing to do (the read-back verifies clean).
    let (ops, ev) = step(&mut book, &cfg, &[], Role::Active, &t, t0 + grace / 2);
    assert_eq!(ops, vec![]);
    assert!(ev.is_empty());
    let v = book.view(t0 + grace / 2);
    assert_eq!(v.len(), 1);
    assert_eq!(
        (v[0].server, v[0].conns, v[0].grace_left_s),
        (rs(13), 5, 60)
    );
    // Down to 2 connections, then none: deleted.
    t[0].dests[2].inact_conns = 0;
    t[0].dests[2].persist_conns = 2;
    let (ops, _) = step(&mut book, &cfg, &[], Role::Active, &t, t0 + grace / 2);
    assert_eq!(ops, vec![]);
    assert_eq!(book.view(t0).first().map(|v| v.conns), Some(2));
    t[0].dests[2].persist_conns = 0;
    let (ops, ev) = step(&mut book, &cfg, &[], Role::Active, &t, t0 + grace / 2);
    assert_eq!(ops, vec![delete(13)]);
    assert!(matches!(
        ev.as_slice(),
        [DrainEvent::Ended {
            why: DrainEnd::Idle,
            ..
        }]
    ));
    assert!(book.view(t0).is_empty());

    // Calls never end: deleted when the grace has passed, exactly then.
    let mut book = DrainBook::new();
    let mut t = table(&[(13, 9)]);
    step(&mut book, &cfg, &[], Role::Active, &t, t0);
    t[0].dests[2].params.weight = 0;
    let just_before = t0 + grace - Duration::from_millis(1);
    let (ops, _) = step(&mut book, &cfg, &[], Role::Active, &t, just_before);
    assert_eq!(ops, vec![]);
    let (ops, ev) = step(&mut book, &cfg, &[], Role::Active, &t, t0 + grace);
    assert_eq!(ops, vec![delete(13)]);
    assert!(matches!(
        ev.as_slice(),
        [DrainEvent::Ended {
            why: DrainEnd::Grace,
            conns: 9,
            ..
        }]
    ));
    // The delete failed (the destination is still there): still deleted, no new drain.
    let (ops, ev) = step(&mut book, &cfg, &[], Role::Active, &t, t0 + grace * 2);
    assert_eq!(ops, vec![delete(13)]);
    assert!(ev.is_empty(), "{ev:?}");
    assert!(book.view(t0 + grace * 2).is_empty());
    // Once gone, the book forgets it.
    t[0].dests.retain(|d| d.key != rs(13));
    let (ops, _) = step(&mut book, &cfg, &[], Role::Active, &t, t0 + grace * 2);
    assert_eq!(ops, vec![]);
    assert!(book.drains.is_empty());
}

/// Health beats draining on an active box; on a backup the drain goes on.
#[test]
fn disabled_server_that_is_down_is_removed_on_master_only() {
    let mut cfg = Config::builtin_default();
    cfg.services[0].servers[2].state = AdminState::Disabled;
    let t0 = Instant::now();
    let t = table(&[(13, 4)]);
    let (ops, _) = step(&mut DrainBook::new(), &cfg, &[13], Role::Active, &t, t0);
    assert_eq!(ops, vec![delete(13)]);
    let (ops, ev) = step(&mut DrainBook::new(), &cfg, &[13], Role::Standby, &t, t0);
    assert_eq!(ops, vec![quiesce(13)]);
    assert_eq!(ev.len(), 1);
    // Disabled and healthy: drained in both roles.
    for role in [Role::Active, Role::Standby] {
        let (ops, _) = step(&mut DrainBook::new(), &cfg, &[], role, &t, t0);
        assert_eq!(ops, vec![quiesce(13)], "{role:?}");
    }
    // A drain in progress whose server then goes DOWN on the master: deleted at once.
    let mut book = DrainBook::new();
    step(&mut book, &cfg, &[], Role::Active, &t, t0);
    let (ops, ev) = step(&mut book, &cfg, &[13], Role::Active, &t, t0);
    assert_eq!(ops, vec![delete(13)]);
    assert!(matches!(
        ev.as_slice(),
        [DrainEvent::Ended {
            why: DrainEnd::Down,
            ..
        }]
    ));
}

/// A removed server put back into the config ends its drain and gets its weight back.
#[test]
fn server_put_back_ends_the_drain() {
    let t0 = Instant::now();
    let mut book = DrainBook::new();
    let mut t = table(&[(13, 3)]);
    step(&mut book, &without_13(), &[], Role::Active, &t, t0);
    t[0].dests[2].params.weight = 0;
    let (ops, ev) = step(
        &mut book,
        &Config::builtin_default(),
        &[],
        Role::Active,
        &t,
        t0,
    );
    assert_eq!(
        ops,
        vec![TableOp::EditDest {
            svc: svc(),
            dest: rs(13),
            params: nat(1),
            from: nat(0),
        }]
    );
    assert!(matches!(
        ev.as_slice(),
        [DrainEvent::Ended {
            why: DrainEnd::Returned,
            ..
        }]
    ));
    assert!(book.view(t0).is_empty());
}

/// A whole service removed from the config is deleted with its servers (documented).
#[test]
fn removed_service_is_not_drained() {
    let mut cfg = Config::builtin_default();
    cfg.services.clear();
    let t0 = Instant::now();
    let (ops, ev) = step(
        &mut DrainBook::new(),
        &cfg,
        &[],
        Role::Active,
        &table(&[(13, 3)]),
        t0,
    );
    assert_eq!(ops, vec![TableOp::DelService { key: svc() }]);
    assert!(ev.is_empty());
}

/// No persistence: the grace is the default constant (the kernel's UDP timeout).
#[test]
fn grace_without_persistence_is_the_udp_default() {
    let mut cfg = without_13();
    cfg.services[0].persistence_timeout = 0;
    assert_eq!(
        cfg.services[0].drain_grace_s(),
        crate::config::DRAIN_GRACE_NO_PERSISTENCE_S
    );
    let t0 = Instant::now();
    let mut book = DrainBook::new();
    let mut t = table(&[(13, 2)]);
    t[0].params = crate::ipvs::reconcile::service_params(&cfg.services[0]);
    let (_, ev) = step(&mut book, &cfg, &[], Role::Active, &t, t0);
    assert!(matches!(
        ev.as_slice(),
        [DrainEvent::Started { grace_s: 300, .. }]
    ));
}
