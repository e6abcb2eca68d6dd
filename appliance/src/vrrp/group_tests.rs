//! Every rule of the sync-group state machine, driven by a fake clock.

use super::*;

const WAN_OWN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const WAN_HI: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 3);
const WAN_LO: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const LAN_OWN: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const LAN_HI: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const GW: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const MS50: Duration = Duration::from_millis(50);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn wan() -> MemberConfig {
    MemberConfig {
        name: "wan0".into(),
        own_addr: WAN_OWN,
        addresses: vec![VIP],
        unicast_peer: None,
    }
}

fn lan() -> MemberConfig {
    MemberConfig {
        name: "lan0".into(),
        own_addr: LAN_OWN,
        addresses: vec![GW],
        unicast_peer: None,
    }
}

fn cfg(members: Vec<MemberConfig>) -> GroupConfig {
    GroupConfig {
        vrid: 51,
        priority: 100,
        advert_interval: MS50,
        preempt: false,
        preempt_hold: Duration::ZERO,
        members,
    }
}

fn adv(priority: u8, cs: u16) -> Advert {
    Advert {
        version: 3,
        vrid: 51,
        priority,
        max_adver_int_cs: cs,
        addresses: vec![VIP],
        checksum: 0,
    }
}

fn ev(member: usize, src: Ipv4Addr, advert: Advert) -> Event {
    Event::Advert {
        member,
        src,
        advert,
    }
}

/// The fake clock is an origin plus offsets.
struct Clock(Instant);
impl Clock {
    fn at(&self, d: Duration) -> Instant {
        self.0 + d
    }
}

fn started(c: GroupConfig) -> (Group, Clock) {
    let clock = Clock(Instant::now());
    let mut g = Group::new(c, clock.0);
    assert_eq!(g.state(), State::Initialize);
    assert_eq!(g.next_deadline(), None);
    let a = g.handle(clock.0, Event::Startup);
    assert_eq!(
        a,
        [Action::Transition {
            from: State::Initialize,
            to: State::Backup,
            reason: "startup".into()
        }]
    );
    (g, clock)
}

/// Drive a started group to Master by letting its timers run out.
fn master(c: GroupConfig) -> (Group, Clock, Instant) {
    let (mut g, clock) = started(c);
    let t = g.next_deadline().expect("backup has a deadline");
    g.handle(t, Event::Timer);
    assert_eq!(g.state(), State::Master);
    (g, clock, t)
}

fn is_transition(a: &Action, from: State, to: State) -> bool {
    matches!(a, Action::Transition { from: f, to: t, .. } if *f == from && *t == to)
}

#[test]
fn skew_and_master_down_interval_exact() {
    // (256 - 100) * 50 ms / 256 = 30.46875 ms
    assert_eq!(skew_time(MS50, 100), Duration::from_nanos(30_468_750));
    assert_eq!(
        master_down_interval(MS50, 100),
        Duration::from_nanos(180_468_750)
    );
    // 2 * 50 ms / 256 = 390.625 us
    assert_eq!(skew_time(MS50, 254), Duration::from_nanos(390_625));
    // 255 * 50 ms / 256 = 49.8046875 ms, truncated to the nanosecond
    assert_eq!(skew_time(MS50, 1), Duration::from_nanos(49_804_687));
    // 1 s at priority 100: 3 s + 609.375 ms
    assert_eq!(
        master_down_interval(Duration::from_secs(1), 100),
        Duration::from_nanos(3_609_375_000)
    );
    assert_eq!(skew_time(MS50, 255), Duration::from_nanos(195_312));
}

#[test]
fn startup_backup_then_master_after_exactly_master_down_interval() {
    let (mut g, c) = started(cfg(vec![wan()]));
    let down = c.at(Duration::from_nanos(180_468_750));
    assert_eq!(g.next_deadline(), Some(down));
    // A second startup changes nothing.
    assert!(g.handle(c.0, Event::Startup).is_empty());
    // One nanosecond early: nothing.
    assert!(g
        .handle(down - Duration::from_nanos(1), Event::Timer)
        .is_empty());
    assert_eq!(g.state(), State::Backup);
    let a = g.handle(down, Event::Timer);
    assert_eq!(
        a,
        [
            Action::Transition {
                from: State::Backup,
                to: State::Master,
                reason: "no master heard for Master_Down_Interval".into()
            },
            Action::AddAddresses { member: 0 },
            Action::Send {
                member: 0,
                priority: 100
            },
            Action::GratuitousArp { member: 0 },
        ]
    );
    // Then an advert every Advertisement_Interval, and nothing in between.
    assert_eq!(g.next_deadline(), Some(down + MS50));
    assert!(g.handle(down + ms(49), Event::Timer).is_empty());
    assert_eq!(
        g.handle(down + MS50, Event::Timer),
        [Action::Send {
            member: 0,
            priority: 100
        }]
    );
    assert_eq!(g.next_deadline(), Some(down + MS50 * 2));
    let s = g.status();
    assert_eq!((s.state, s.since, s.transitions), (State::Master, down, 2));
    assert_eq!(s.counters.adverts_tx, 2);
}

#[test]
fn address_owner_priority_255_is_master_at_startup() {
    let mut c = cfg(vec![wan()]);
    c.priority = 255;
    let now = Instant::now();
    let mut g = Group::new(c, now);
    let a = g.handle(now, Event::Startup);
    assert!(
        is_transition(&a[0], State::Initialize, State::Master),
        "{a:?}"
    );
    assert_eq!(g.next_deadline(), Some(now + MS50));
}

#[test]
fn backup_learns_master_adver_interval_from_the_master() {
    let (mut g, c) = started(cfg(vec![wan()]));
    // The master advertises every 1 s (100 cs) with priority 200.
    let t = c.at(ms(10));
    assert!(g.handle(t, ev(0, WAN_HI, adv(200, 100))).is_empty());
    assert_eq!(
        g.next_deadline(),
        Some(t + Duration::from_nanos(3_609_375_000))
    );
    // Heard again 1 s later: re-armed from then.
    let t2 = t + Duration::from_secs(1);
    g.handle(t2, ev(0, WAN_HI, adv(200, 100)));
    assert_eq!(
        g.next_deadline(),
        Some(t2 + Duration::from_nanos(3_609_375_000))
    );
    let p = g.status().peer.expect("peer seen");
    assert_eq!(
        (p.addr, p.priority, p.interval, p.last_seen),
        (WAN_HI, 200, Duration::from_secs(1), t2)
    );
    // The master goes silent: takeover at exactly the learned Master_Down_Interval.
    let down = t2 + Duration::from_nanos(3_609_375_000);
    assert!(g.handle(down - ms(1), Event::Timer).is_empty());
    let a = g.handle(down, Event::Timer);
    assert!(is_transition(&a[0], State::Backup, State::Master), "{a:?}");
}

#[test]
fn election_by_priority_master_yields_to_higher() {
    let (mut g, c, t) = master(cfg(vec![wan()]));
    let now = t + ms(20);
    let a = g.handle(now, ev(0, WAN_LO, adv(101, 10)));
    assert_eq!(
        a,
        [
            Action::Transition {
                from: State::Master,
                to: State::Backup,
                reason: "better master 203.0.113.1 (priority 101) on wan0".into()
            },
            Action::RemoveAddresses { member: 0 },
        ]
    );
    // Master_Down from the learned 100 ms interval: 300 ms + 156*100/256 ms.
    assert_eq!(
        g.next_deadline(),
        Some(now + ms(300) + Duration::from_nanos(60_937_500))
    );
    let _ = c;
}

#[test]
fn election_tie_break_by_primary_address() {
    // Equal priority from a higher address: we yield.
    let (mut g, _c, t) = master(cfg(vec![wan()]));
    let a = g.handle(t + ms(1), ev(0, WAN_HI, adv(100, 5)));
    assert!(is_transition(&a[0], State::Master, State::Backup), "{a:?}");
    // Equal priority from a lower address: we stay master (the other side yields).
    let (mut g, _c, t) = master(cfg(vec![wan()]));
    let a = g.handle(t + ms(1), ev(0, WAN_LO, adv(100, 5)));
    assert_eq!(g.state(), State::Master);
    assert!(a.contains(&Action::SplitBrain {
        member: 0,
        other: WAN_LO,
        active: true
    }));
}

#[test]
fn backup_accepts_equal_priority_without_tie_break() {
    // RFC 5798 6.4.2: a backup resets its timer for priority >= its own, whatever the
    // address; the tie-break applies only between masters.
    let (mut g, c) = started(cfg(vec![wan()]));
    let t = c.at(ms(100));
    g.handle(t, ev(0, WAN_LO, adv(100, 5)));
    assert_eq!(
        g.next_deadline(),
        Some(t + Duration::from_nanos(180_468_750))
    );
}

#[test]
fn priority_zero_to_backup_takes_over_after_skew_time() {
    let (mut g, c) = started(cfg(vec![wan()]));
    g.handle(c.at(ms(10)), ev(0, WAN_HI, adv(200, 5)));
    let t = c.at(ms(40));
    assert!(g.handle(t, ev(0, WAN_HI, adv(0, 5))).is_empty());
    let skew = Duration::from_nanos(30_468_750);
    assert_eq!(g.next_deadline(), Some(t + skew));
    assert_eq!(g.status().counters.priority_zero_rx, 1);
    let a = g.handle(t + skew, Event::Timer);
    assert!(is_transition(&a[0], State::Backup, State::Master), "{a:?}");
}

#[test]
fn priority_zero_to_master_sends_an_advert_at_once() {
    let (mut g, _c, t) = master(cfg(vec![wan(), lan()]));
    let a = g.handle(t + ms(5), ev(1, LAN_HI, adv(0, 5)));
    assert_eq!(
        a,
        [Action::Send {
            member: 1,
            priority: 100
        }]
    );
    assert_eq!(g.state(), State::Master);
    // The regular schedule is untouched.
    assert_eq!(g.next_deadline(), Some(t + MS50));
}

#[test]
fn sync_group_master_only_when_every_member_is_ready() {
    let (mut g, c) = started(cfg(vec![wan(), lan()]));
    let mdi = Duration::from_nanos(180_468_750);
    // WAN hears nothing; LAN keeps hearing a better master every 50 ms.
    let mut last = c.0;
    for i in 1..=10u32 {
        let t = c.at(MS50 * i);
        assert!(g.handle(t, ev(1, LAN_HI, adv(200, 5))).is_empty());
        g.handle(t, Event::Timer);
        last = t;
    }
    assert_eq!(
        g.state(),
        State::Backup,
        "WAN expired but LAN still hears a master"
    );
    // The WAN member expired long ago; the group waits for the LAN member only.
    assert_eq!(g.next_deadline(), Some(last + mdi));
    assert!(g.handle(last + mdi - ms(1), Event::Timer).is_empty());
    let a = g.handle(last + mdi, Event::Timer);
    assert_eq!(
        a,
        [
            Action::Transition {
                from: State::Backup,
                to: State::Master,
                reason: "no master heard on any member for Master_Down_Interval".into()
            },
            // LAN (the servers' gateway) first, then WAN.
            Action::AddAddresses { member: 1 },
            Action::AddAddresses { member: 0 },
            Action::Send {
                member: 0,
                priority: 100
            },
            Action::Send {
                member: 1,
                priority: 100
            },
            Action::GratuitousArp { member: 1 },
            Action::GratuitousArp { member: 0 },
        ]
    );
}

#[test]
fn sync_group_ready_member_is_unready_again_when_it_hears_a_master() {
    let (mut g, c) = started(cfg(vec![wan(), lan()]));
    let mdi = Duration::from_nanos(180_468_750);
    // LAN hears a master at 100 ms, so WAN alone expires at mdi.
    g.handle(c.at(ms(100)), ev(1, LAN_HI, adv(200, 5)));
    g.handle(c.at(mdi), Event::Timer);
    assert_eq!(g.state(), State::Backup);
    // Then WAN hears the master too; LAN's deadline passes, but WAN is no longer ready.
    let t = c.at(ms(200));
    g.handle(t, ev(0, WAN_HI, adv(200, 5)));
    g.handle(c.at(ms(100)) + mdi, Event::Timer);
    assert_eq!(g.state(), State::Backup);
    assert_eq!(g.next_deadline(), Some(t + mdi));
    let a = g.handle(t + mdi, Event::Timer);
    assert!(is_transition(&a[0], State::Backup, State::Master), "{a:?}");
}

#[test]
fn sync_group_any_better_master_pulls_all_to_backup() {
    let (mut g, _c, t) = master(cfg(vec![wan(), lan()]));
    let now = t + ms(10);
    let a = g.handle(now, ev(1, LAN_HI, adv(150, 5)));
    assert_eq!(
        a,
        [
            Action::Transition {
                from: State::Master,
                to: State::Backup,
                reason: "better master 198.51.100.3 (priority 150) on lan0".into()
            },
            Action::RemoveAddresses { member: 0 },
            Action::RemoveAddresses { member: 1 },
        ]
    );
    // Both members are listening again, neither advertises.
    assert_eq!(
        g.next_deadline(),
        Some(now + Duration::from_nanos(180_468_750))
    );
    assert!(g
        .handle(now + ms(60), Event::Timer)
        .iter()
        .all(|a| !matches!(a, Action::Send { .. })));
}

#[test]
fn fault_from_master_resigns_with_priority_zero_and_clears_to_backup() {
    let (mut g, _c, t) = master(cfg(vec![wan(), lan()]));
    let now = t + ms(7);
    let a = g.handle(
        now,
        Event::Fault {
            reason: FaultReason::LanLinkDown,
            active: true,
        },
    );
    assert_eq!(
        a,
        [
            Action::Transition {
                from: State::Master,
                to: State::Fault,
                reason: "fault: LAN link down".into()
            },
            Action::Send {
                member: 0,
                priority: 0
            },
            Action::Send {
                member: 1,
                priority: 0
            },
            Action::RemoveAddresses { member: 0 },
            Action::RemoveAddresses { member: 1 },
        ]
    );
    assert_eq!(g.next_deadline(), None);
    // Fault ignores adverts and timers and never sends.
    assert!(g.handle(now + ms(1), ev(0, WAN_LO, adv(50, 5))).is_empty());
    assert!(g.handle(now + ms(500), Event::Timer).is_empty());
    // A second fault, then clearing one: still Fault.
    assert!(g
        .handle(
            now + ms(600),
            Event::Fault {
                reason: FaultReason::PoolDead,
                active: true
            }
        )
        .is_empty());
    // Repeating an active fault is not a change either.
    assert!(g
        .handle(
            now + ms(610),
            Event::Fault {
                reason: FaultReason::PoolDead,
                active: true
            }
        )
        .is_empty());
    assert!(g
        .handle(
            now + ms(700),
            Event::Fault {
                reason: FaultReason::LanLinkDown,
                active: false
            }
        )
        .is_empty());
    assert_eq!(g.state(), State::Fault);
    let clear = now + ms(800);
    let a = g.handle(
        clear,
        Event::Fault {
            reason: FaultReason::PoolDead,
            active: false,
        },
    );
    assert_eq!(
        a,
        [Action::Transition {
            from: State::Fault,
            to: State::Backup,
            reason: "fault cleared: every server is down".into()
        }]
    );
    assert_eq!(
        g.next_deadline(),
        Some(clear + Duration::from_nanos(180_468_750))
    );
}

#[test]
fn fault_from_backup_sends_nothing_and_fault_before_startup_starts_in_fault() {
    let (mut g, c) = started(cfg(vec![wan()]));
    let a = g.handle(
        c.at(ms(1)),
        Event::Fault {
            reason: FaultReason::WanLinkDown,
            active: true,
        },
    );
    assert_eq!(
        a,
        [Action::Transition {
            from: State::Backup,
            to: State::Fault,
            reason: "fault: WAN link down".into()
        }]
    );
    let now = Instant::now();
    let mut g = Group::new(cfg(vec![wan()]), now);
    assert!(g
        .handle(
            now,
            Event::Fault {
                reason: FaultReason::PoolDead,
                active: true
            }
        )
        .is_empty());
    let a = g.handle(now, Event::Startup);
    assert!(
        is_transition(&a[0], State::Initialize, State::Fault),
        "{a:?}"
    );
    assert_eq!(
        g.status().last_reason,
        "startup with fault: every server is down"
    );
    assert_eq!(g.active_faults(), [FaultReason::PoolDead]);
}

#[test]
fn no_preemption_by_default() {
    let (mut g, c) = started(cfg(vec![wan()]));
    // A lower-priority master keeps us backup forever (here: 100 s of adverts).
    for i in 1..=2000u32 {
        let t = c.at(MS50 * i);
        g.handle(t, ev(0, WAN_LO, adv(50, 5)));
        assert!(g.handle(t, Event::Timer).is_empty());
    }
    assert_eq!(g.state(), State::Backup);
    assert_eq!(g.status().counters.preempt_discards, 0);
}

#[test]
fn preemption_only_after_preempt_hold() {
    let mut c0 = cfg(vec![wan()]);
    c0.preempt = true;
    c0.preempt_hold = Duration::from_secs(10);
    let (mut g, c) = started(c0);
    let mut t = c.0;
    // During the hold, lower-priority adverts reset the timer.
    for i in 1..=199u32 {
        t = c.at(MS50 * i);
        g.handle(t, ev(0, WAN_LO, adv(50, 5)));
        assert!(g.handle(t, Event::Timer).is_empty());
    }
    assert_eq!(
        g.next_deadline(),
        Some(t + Duration::from_nanos(180_468_750))
    );
    assert_eq!(g.status().counters.preempt_discards, 0);
    // From 10 s on they are discarded, so the timer armed at 9.95 s runs out.
    let last_accepted = t;
    for i in 200..=202u32 {
        let ti = c.at(MS50 * i);
        assert!(g.handle(ti, ev(0, WAN_LO, adv(50, 5))).is_empty());
        assert!(g.handle(ti, Event::Timer).is_empty());
    }
    assert_eq!(g.status().counters.preempt_discards, 3);
    let down = last_accepted + Duration::from_nanos(180_468_750);
    assert_eq!(g.next_deadline(), Some(down));
    let a = g.handle(down, Event::Timer);
    assert!(is_transition(&a[0], State::Backup, State::Master), "{a:?}");
    // A higher-priority master is never discarded, preempt or not.
    let (mut g, c) = {
        let mut c1 = cfg(vec![wan()]);
        c1.preempt = true;
        started(c1)
    };
    let t = c.at(ms(20));
    g.handle(t, ev(0, WAN_HI, adv(150, 5)));
    assert_eq!(
        g.next_deadline(),
        Some(t + Duration::from_nanos(180_468_750))
    );
}

#[test]
fn split_brain_detected_reported_and_cleared() {
    let (mut g, _c, t) = master(cfg(vec![wan()]));
    let t1 = t + ms(10);
    let a = g.handle(t1, ev(0, WAN_LO, adv(90, 5)));
    assert_eq!(
        a,
        [
            Action::SplitBrain {
                member: 0,
                other: WAN_LO,
                active: true
            },
            Action::Send {
                member: 0,
                priority: 100
            },
            Action::GratuitousArp { member: 0 },
        ]
    );
    assert!(g.status().split_brain);
    assert_eq!(g.status().counters.split_brains, 1);
    // It keeps advertising: an immediate advert each time, a new GARP burst only after 1 s.
    let t2 = t1 + ms(50);
    assert_eq!(
        g.handle(t2, ev(0, WAN_LO, adv(90, 5))),
        [Action::Send {
            member: 0,
            priority: 100
        }]
    );
    let t3 = t1 + SPLIT_GARP_REPEAT;
    assert_eq!(
        g.handle(t3, ev(0, WAN_LO, adv(90, 5))),
        [
            Action::Send {
                member: 0,
                priority: 100
            },
            Action::GratuitousArp { member: 0 }
        ]
    );
    // Silent for 3 intervals: over (the deadline is part of next_deadline).
    let clear = t3 + MS50 * 3;
    assert!(g.next_deadline() <= Some(clear));
    let a = g.handle(clear - Duration::from_nanos(1), Event::Timer);
    assert!(!a.iter().any(|x| matches!(x, Action::SplitBrain { .. })));
    let a = g.handle(clear, Event::Timer);
    assert!(a.contains(&Action::SplitBrain {
        member: 0,
        other: WAN_LO,
        active: false
    }));
    assert!(!g.status().split_brain);
    assert_eq!(g.state(), State::Master);
}

#[test]
fn split_brain_ends_when_we_leave_master() {
    let (mut g, _c, t) = master(cfg(vec![wan()]));
    g.handle(t + ms(1), ev(0, WAN_LO, adv(90, 5)));
    let a = g.handle(t + ms(2), Event::Shutdown);
    assert!(a.contains(&Action::SplitBrain {
        member: 0,
        other: WAN_LO,
        active: false
    }));
    assert!(!g.status().split_brain);
}

#[test]
fn unicast_peer_filtering() {
    let mut w = wan();
    w.unicast_peer = Some(WAN_HI);
    let (mut g, c) = started(cfg(vec![w]));
    let d0 = g.next_deadline();
    // From a stranger: ignored, the timer is not reset.
    assert!(g
        .handle(c.at(ms(100)), ev(0, WAN_LO, adv(200, 5)))
        .is_empty());
    assert_eq!(g.next_deadline(), d0);
    assert_eq!(g.status().counters.ignored_peer, 1);
    assert_eq!(g.status().peer, None);
    // From the peer: accepted.
    let t = c.at(ms(120));
    g.handle(t, ev(0, WAN_HI, adv(200, 5)));
    assert_eq!(
        g.next_deadline(),
        Some(t + Duration::from_nanos(180_468_750))
    );
    assert_eq!(g.status().counters.adverts_rx, 1);
}

#[test]
fn wrong_vrid_version_own_and_member_are_ignored() {
    let (mut g, c, t) = master(cfg(vec![wan()]));
    let d0 = g.next_deadline();
    let mut other_vrid = adv(200, 5);
    other_vrid.vrid = 52;
    let mut v2 = adv(200, 100);
    v2.version = 2;
    for e in [
        ev(0, WAN_HI, other_vrid),
        ev(0, WAN_HI, v2),
        ev(0, WAN_OWN, adv(200, 5)),
        ev(1, WAN_HI, adv(200, 5)),
    ] {
        assert!(g.handle(t + ms(1), e).is_empty());
    }
    assert_eq!(g.state(), State::Master);
    assert_eq!(g.next_deadline(), d0);
    let k = g.status().counters;
    assert_eq!(
        (
            k.ignored_vrid,
            k.ignored_version,
            k.ignored_own,
            k.ignored_member,
            k.adverts_rx
        ),
        (1, 1, 1, 1, 0)
    );
    let _ = c;
}

#[test]
fn shutdown_resigns_from_master_and_is_quiet_from_backup() {
    let (mut g, _c, t) = master(cfg(vec![wan(), lan()]));
    let a = g.handle(t + ms(3), Event::Shutdown);
    assert_eq!(
        a,
        [
            Action::Transition {
                from: State::Master,
                to: State::Initialize,
                reason: "shutdown".into()
            },
            Action::Send {
                member: 0,
                priority: 0
            },
            Action::Send {
                member: 1,
                priority: 0
            },
            Action::RemoveAddresses { member: 0 },
            Action::RemoveAddresses { member: 1 },
        ]
    );
    assert_eq!(g.next_deadline(), None);
    assert!(g.handle(t + ms(4), Event::Shutdown).is_empty());
    assert!(g.handle(t + ms(500), Event::Timer).is_empty());
    // It can start again.
    let a = g.handle(t + ms(600), Event::Startup);
    assert!(is_transition(&a[0], State::Initialize, State::Backup));

    let (mut g, c) = started(cfg(vec![wan()]));
    assert_eq!(
        g.handle(c.at(ms(1)), Event::Shutdown),
        [Action::Transition {
            from: State::Backup,
            to: State::Initialize,
            reason: "shutdown".into()
        }]
    );
}

#[test]
fn update_in_place_or_refuse() {
    let (mut g, _c, t) = master(cfg(vec![wan()]));
    let mut c2 = cfg(vec![wan()]);
    c2.priority = 120;
    c2.advert_interval = ms(100);
    c2.members[0].addresses.push(Ipv4Addr::new(203, 0, 113, 11));
    assert!(g.update(t + ms(1), c2.clone()));
    assert_eq!(g.config(), &c2);
    assert_eq!(g.state(), State::Master);
    assert_eq!(g.next_deadline(), Some(t + ms(101)));
    assert_eq!(
        g.handle(t + ms(101), Event::Timer),
        [Action::Send {
            member: 0,
            priority: 120
        }]
    );
    let mut c3 = c2.clone();
    c3.members[0].own_addr = WAN_HI;
    assert!(!g.update(t + ms(2), c3));
    let mut c4 = c2.clone();
    c4.vrid = 9;
    assert!(!g.update(t + ms(2), c4));
    assert!(!g.update(t + ms(2), cfg(vec![wan(), lan()])));
    assert_eq!(g.config(), &c2);
}

#[test]
fn deterministic() {
    let script = |origin: Instant| {
        let mut g = Group::new(cfg(vec![wan(), lan()]), origin);
        let mut log = vec![g.handle(origin, Event::Startup)];
        for i in 0..200u32 {
            let t = origin + ms(7) * i;
            if i % 13 == 0 {
                log.push(g.handle(t, ev(i as usize % 2, LAN_HI, adv(100 + (i % 3) as u8, 5))));
            }
            log.push(g.handle(t, Event::Timer));
        }
        (log, g.status().transitions)
    };
    let o = Instant::now();
    assert_eq!(script(o), script(o));
}
