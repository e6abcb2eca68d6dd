//! The daemon's pure state driven directly: no sockets, no tasks, a fake clock.

use std::time::{Duration, Instant};

use super::*;
use crate::ipvs::model::WeightRule;
use crate::ipvs::{DestEntry, DestParams, Stats};
use crate::leds::{ACTIVITY_BLINK, BOOT_BLINK, FAST_BLINK, SLOW_BLINK};
use crate::vrrp::group::State as Role;

fn cfg() -> Config {
    Config::builtin_default()
}

/// Every server of `c`, as (service, address).
fn servers(c: &Config) -> Vec<(crate::config::Name, SocketAddrV4)> {
    c.services
        .iter()
        .flat_map(|s| {
            s.servers
                .iter()
                .map(move |r| (s.name.clone(), SocketAddrV4::new(r.address, r.port)))
        })
        .collect()
}

fn event(service: &crate::config::Name, server: SocketAddrV4, health: Health) -> HealthEvent {
    HealthEvent {
        service: service.clone(),
        server,
        health,
        reason: format!("test says {health:?}"),
    }
}

fn all(c: &Config, health: Health) -> Vec<HealthEvent> {
    servers(c)
        .iter()
        .map(|(s, a)| event(s, *a, health))
        .collect()
}

fn pattern(st: &State, c: &Config, now: Instant, role: LedRole) -> Pattern {
    st.led_patterns(c, now)
        .into_iter()
        .find(|(r, _)| *r == role)
        .map(|(_, p)| p)
        .expect("every role has a pattern")
}

#[test]
fn health_events_drive_the_leds_the_faults_and_syslog() {
    let c = cfg();
    assert!(servers(&c).len() >= 2, "the factory config has a pool");
    let t0 = Instant::now();
    let mut st = State::new(Vec::new(), t0, false);
    // Nothing probed yet, just started: booting.
    assert_eq!(pattern(&st, &c, t0, LedRole::Status), BOOT_BLINK);
    assert_eq!(pattern(&st, &c, t0, LedRole::Pool), BOOT_BLINK);
    // Past the grace time with health still unknown: no longer booting, pool not up.
    let late = t0 + BOOT_GRACE + Duration::from_secs(1);
    assert_eq!(pattern(&st, &c, late, LedRole::Status), Pattern::On);
    assert_eq!(pattern(&st, &c, late, LedRole::Pool), FAST_BLINK);

    st.record_health(all(&c, Health::Up));
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(pattern(&st, &c, t1, LedRole::Pool), Pattern::On);
    assert_eq!(pattern(&st, &c, t1, LedRole::Status), Pattern::On);
    let evs = st.take_events();
    assert_eq!(evs.len(), servers(&c).len(), "one HEALTH event per server");
    assert!(evs.iter().all(|e| e.msgid == "HEALTH"), "{evs:?}");
    assert!(st.take_events().is_empty(), "events are handed out once");

    // One server down: degraded.
    let (svc, first) = servers(&c)[0].clone();
    st.record_health(vec![event(&svc, first, Health::Down)]);
    assert_eq!(pattern(&st, &c, t1, LedRole::Pool), SLOW_BLINK);
    assert_eq!(st.health_of(svc.as_str(), first).health, Health::Down);
    assert_eq!(st.counts.transitions[&(svc.to_string(), first)], (1, 1));

    // HA on: the whole pool down is the pool-dead fault, told once, cleared once.
    let mut ha = c.clone();
    ha.ha.enabled = true;
    assert_eq!(st.ha_fault_changes(&ha), Vec::new());
    st.record_health(all(&c, Health::Down));
    st.take_events();
    assert_eq!(
        st.ha_fault_changes(&ha),
        vec![(FaultReason::PoolDead, true)]
    );
    assert_eq!(
        st.ha_fault_changes(&ha),
        Vec::new(),
        "only changes are told"
    );
    assert_eq!(
        st.ha.faults.words(),
        vec![FaultReason::PoolDead.as_str().to_string()]
    );
    let evs = st.take_events();
    assert!(
        evs.iter().any(|e| e.msgid == "FAULT"),
        "the fault goes to syslog: {evs:?}"
    );
    assert_eq!(pattern(&st, &c, t1, LedRole::Pool), FAST_BLINK);
    st.record_health(vec![event(&svc, first, Health::Up)]);
    assert_eq!(
        st.ha_fault_changes(&ha),
        vec![(FaultReason::PoolDead, false)]
    );
}

#[test]
fn link_down_is_an_ha_fault_only_for_wan_and_lan() {
    let mut c = cfg();
    c.ha.enabled = true;
    let mut st = State::new(Vec::new(), Instant::now(), false);
    assert!(st.set_link("eth9", false));
    assert!(!st.set_link("eth9", false), "no change, no news");
    assert_eq!(st.ha_fault_changes(&c), Vec::new());
    st.set_link(c.wan.name.as_str(), false);
    assert_eq!(
        st.ha_fault_changes(&c),
        vec![(FaultReason::WanLinkDown, true)]
    );
    assert_eq!(st.link_up(c.wan.name.as_str()), Some(false));
    st.set_link(c.wan.name.as_str(), true);
    assert_eq!(
        st.ha_fault_changes(&c),
        vec![(FaultReason::WanLinkDown, false)]
    );
}

#[test]
fn a_store_fault_keeps_hands_off_until_an_operator_takes_over() {
    let c = cfg();
    let t0 = Instant::now();
    let mut st = State::new(Vec::new(), t0, false);
    assert!(!st.boot_hands_off(), "no fault: boot goes ahead");
    assert_eq!(st.fault(), None);

    st.set_store_fault("both slots are corrupt".into());
    assert_eq!(st.hands_off(), Some("both slots are corrupt"));
    assert!(st.boot_hands_off());
    let fault = st.fault().expect("the fault is shown");
    assert!(
        fault.contains("both slots are corrupt") && fault.contains("kept as found"),
        "{fault}"
    );
    let late = t0 + BOOT_GRACE * 2;
    assert_eq!(pattern(&st, &c, late, LedRole::Status), FAST_BLINK);
    assert_eq!(pattern(&st, &c, late, LedRole::Pool), FAST_BLINK);

    st.take_over();
    assert_eq!(st.hands_off(), None);
    // A verified table clears the boot fault and says so once.
    st.table_verified(Vec::new(), late);
    assert_eq!(st.fault(), None);
    let evs = st.take_events();
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0].msgid, "FAULT");
}

#[test]
fn table_faults_are_reported_once_and_network_faults_until_cleared() {
    let mut st = State::new(Vec::new(), Instant::now(), false);
    st.table_failed("IPVS unavailable: no family".into());
    st.table_failed("IPVS unavailable: no family".into());
    assert_eq!(st.take_events().len(), 1, "a repeated fault is told once");
    assert_eq!(st.ipvs_fault(), Some("IPVS unavailable: no family"));
    st.table_verified(Vec::new(), Instant::now());
    assert_eq!(st.ipvs_fault(), None);

    st.set_net_fault("WAN interface 'eth0' does not exist".into());
    assert_eq!(st.ipvs_fault(), None, "the network fault is not IPVS's");
    assert!(st.fault().is_some_and(|f| f.contains("eth0")));
    st.clear_net_fault();
    assert_eq!(st.fault(), None);
}

#[test]
fn health_decides_what_the_table_wants() {
    let c = cfg();
    let mut st = State::new(Vec::new(), Instant::now(), false);
    let (svc, first) = servers(&c)[0].clone();
    let weight_of = |st: &State| {
        st.desired_table(&c)[0]
            .dests
            .iter()
            .find(|d| d.key.addr == std::net::IpAddr::V4(*first.ip()) && d.key.port == first.port())
            .map(|d| d.weight)
    };
    let unknown = weight_of(&st);
    assert!(
        matches!(
            unknown,
            Some(WeightRule::KeepElse(_)) | Some(WeightRule::KeepElseAbsent)
        ),
        "unknown health keeps the kernel's weight: {unknown:?}"
    );
    st.record_health(vec![event(&svc, first, Health::Up)]);
    assert!(matches!(weight_of(&st), Some(WeightRule::Set(w)) if w > 0));
    st.record_health(vec![event(&svc, first, Health::Down)]);
    let down = weight_of(&st);
    assert!(
        down.is_none() || down == Some(WeightRule::Set(0)),
        "a failed server is removed or quiesced: {down:?}"
    );
    // A server that leaves the config is forgotten.
    let mut fewer = c.clone();
    fewer.services[0].servers.clear();
    st.forget_health_outside(&fewer);
    assert_eq!(st.health_of(svc.as_str(), first).health, Health::Unknown);
}

#[test]
fn ha_role_changes_decide_the_pump_and_the_ha_led() {
    let mut c = cfg();
    let t0 = Instant::now();
    let mut st = State::new(Vec::new(), t0, false);
    assert_eq!(
        pattern(&st, &c, t0, LedRole::Ha),
        Pattern::Off,
        "HA off: dark"
    );
    c.ha.enabled = true;
    assert!(!st.pump_wanted(&c), "not master yet");
    let t1 = t0 + Duration::from_secs(3);
    st.on_ha_notice(
        Notice::Transition {
            from: Role::Backup,
            to: Role::Master,
            reason: "master down".into(),
        },
        t1,
    );
    assert!(st.pump_wanted(&c), "master pumps sync entries");
    assert_eq!(pattern(&st, &c, t1, LedRole::Ha), Pattern::On);
    assert_eq!(st.ha.since, t1);
    assert_eq!(st.ha.transitions, 1);
    let evs = st.take_events();
    assert!(evs.iter().any(|e| e.msgid == "HA"), "{evs:?}");
    let mut off = c.clone();
    off.ha.enabled = false;
    assert!(!st.pump_wanted(&off), "HA off never pumps");

    // Split brain, then back to backup (which ends it).
    st.on_ha_notice(
        Notice::SplitBrain {
            member: 0,
            other: "192.0.2.3".parse().unwrap(),
            active: true,
        },
        t1,
    );
    assert!(st.ha.split_brain);
    st.on_ha_notice(
        Notice::Transition {
            from: Role::Master,
            to: Role::Backup,
            reason: "higher priority seen".into(),
        },
        t1 + Duration::from_secs(1),
    );
    assert!(!st.ha.split_brain);
    assert!(!st.pump_wanted(&c));
    assert_eq!(pattern(&st, &c, t1, LedRole::Ha), SLOW_BLINK);

    // A restarted runner starts a fresh view but keeps sync daemons and fault inputs.
    st.ha.faults.set(FaultReason::LanLinkDown, true);
    st.sync_daemons_failed("IPVS sync daemons: no such device".into());
    st.ha_runner_started(t1 + Duration::from_secs(9));
    assert_eq!(st.ha.state, Role::Initialize);
    assert_eq!(st.ha.transitions, 0);
    assert_eq!(
        st.ha.faults.words(),
        vec![FaultReason::LanLinkDown.as_str().to_string()]
    );
    assert!(st.ha.sync_error.is_some());
    st.sync_daemons_ok(Vec::new());
    assert_eq!(st.ha.sync_error, None);
}

#[test]
fn rates_follow_the_table_on_a_fake_clock() {
    let c = cfg();
    let mut st = State::new(Vec::new(), Instant::now(), false);
    let desired = st.desired_table(&c);
    let (vip, svc) = (
        SocketAddrV4::new(c.services[0].vip, c.services[0].port),
        &desired[0],
    );
    let server = servers(&c)[0].1;
    let table = |conns: u64| {
        vec![ActualService {
            key: svc.key,
            params: svc.params.clone(),
            stats: Stats::default(),
            dests: vec![DestEntry {
                key: crate::ipvs::DestKey {
                    addr: std::net::IpAddr::V4(*server.ip()),
                    port: server.port(),
                },
                params: DestParams {
                    fwd: crate::ipvs::FwdMethod::Masq,
                    weight: 1,
                    u_thresh: 0,
                    l_thresh: 0,
                },
                active_conns: 0,
                inact_conns: 0,
                persist_conns: 0,
                stats: Stats {
                    conns,
                    ..Stats::default()
                },
            }],
        }]
    };
    let t0 = Instant::now();
    st.table_verified(table(100), t0);
    assert_eq!(st.rate(vip, server), 0.0, "one sample is no rate");
    let late = t0 + BOOT_GRACE * 2;
    assert_eq!(pattern(&st, &c, late, LedRole::Activity), Pattern::Off);
    st.table_verified(table(120), t0 + Duration::from_secs(2));
    assert!(
        (st.rate(vip, server) - 10.0).abs() < 1e-9,
        "20 conns in 2 s"
    );
    assert_eq!(pattern(&st, &c, late, LedRole::Activity), ACTIVITY_BLINK);
    assert_eq!(st.table().len(), 1);
}

#[test]
fn saves_and_the_clock_are_counted_and_told() {
    let mut st = State::new(Vec::new(), Instant::now(), false);
    st.saved(Ok(7));
    st.saved(Err("disk full"));
    assert_eq!((st.counts.saves, st.counts.save_failures), (1, 1));
    let evs = st.take_events();
    assert_eq!(evs.len(), 2);
    assert!(evs.iter().all(|e| e.msgid == "CONFIG"));
    let mut ntp = crate::ntp::NtpStatus {
        state: "synced".into(),
        server: Some("192.0.2.123".into()),
        offset_ms: Some(1.5),
        ..Default::default()
    };
    st.clock_state(&ntp);
    st.clock_state(&ntp);
    assert_eq!(st.take_events().len(), 1, "told when it changes only");
    ntp.state = "unsynced".into();
    st.clock_state(&ntp);
    assert_eq!(st.take_events()[0].msgid, "TIME");
}
