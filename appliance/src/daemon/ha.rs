//! HA wiring, pure parts: the VRRP group config from the config, the fault inputs (links,
//! pool), and the role/status record behind `appliance status`, the console header and
//! the `ha` LED. The runner itself (raw sockets, its own thread) lives in `vrrp::tasks`.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::control::proto::{HaInfo, HaPeerInfo};
use crate::ipvs::syncd::DaemonStatus;
use crate::leds::HaLed;
use crate::probe::Health;
use crate::vrrp::group::{FaultReason, GroupConfig, GroupStatus, MemberConfig, PeerSeen, State};

/// The sync group the config asks for: member 0 = WAN with the VIPs, member 1 = LAN with
/// the servers' gateway (only when `ha.lan_gateway` is set).
pub fn group_config(cfg: &Config) -> GroupConfig {
    let ha = &cfg.ha;
    let mut members = vec![MemberConfig {
        name: cfg.wan.name.to_string(),
        own_addr: cfg.wan.address.addr,
        addresses: cfg.ha_wan_addresses(),
        unicast_peer: ha.peer_wan,
    }];
    if let Some(gw) = ha.lan_gateway {
        members.push(MemberConfig {
            name: cfg.lan.name.to_string(),
            own_addr: cfg.lan.address.addr,
            addresses: vec![gw],
            unicast_peer: ha.peer_lan,
        });
    }
    GroupConfig {
        vrid: ha.vrid,
        priority: ha.priority,
        advert_interval: ha.advert_interval(),
        preempt: ha.preempt,
        preempt_hold: ha.preempt_hold(cfg),
        members,
    }
}

/// True when every server of every service is known to be Down. Unknown health never
/// counts (a starting prober must not push the box into Fault), and a config without
/// servers is not "dead".
pub fn pool_dead(cfg: &Config, health: &dyn Fn(&str, SocketAddrV4) -> Health) -> bool {
    let mut any = false;
    for s in &cfg.services {
        for r in &s.servers {
            any = true;
            if health(s.name.as_str(), SocketAddrV4::new(r.address, r.port)) != Health::Down {
                return false;
            }
        }
    }
    any
}

/// The fault a link's state stands for, when it is the WAN or the LAN.
pub fn link_fault(cfg: &Config, ifname: &str) -> Option<FaultReason> {
    if ifname == cfg.wan.name.as_str() {
        Some(FaultReason::WanLinkDown)
    } else if ifname == cfg.lan.name.as_str() {
        Some(FaultReason::LanLinkDown)
    } else {
        None
    }
}

const ALL_FAULTS: [FaultReason; 3] = [
    FaultReason::WanLinkDown,
    FaultReason::LanLinkDown,
    FaultReason::PoolDead,
];

/// The fault conditions as last told to the runner; reports only changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    active: Vec<FaultReason>,
}

impl Faults {
    /// Record a condition; true when it changed (the runner must be told).
    pub fn set(&mut self, reason: FaultReason, active: bool) -> bool {
        let was = self.active.contains(&reason);
        if was == active {
            return false;
        }
        if active {
            self.active.push(reason);
        } else {
            self.active.retain(|r| *r != reason);
        }
        true
    }

    /// Every condition with its state (for a newly started runner).
    pub fn all(&self) -> Vec<(FaultReason, bool)> {
        ALL_FAULTS
            .iter()
            .map(|r| (*r, self.active.contains(r)))
            .collect()
    }

    /// Active conditions in words.
    pub fn words(&self) -> Vec<String> {
        ALL_FAULTS
            .iter()
            .filter(|r| self.active.contains(r))
            .map(|r| r.as_str().to_owned())
            .collect()
    }
}

/// The last transition the runner reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Old state.
    pub from: State,
    /// New state.
    pub to: State,
    /// Why.
    pub reason: String,
    /// When the daemon heard of it.
    pub at: Instant,
}

/// What the daemon knows of the HA role (fed by the runner's notices).
#[derive(Debug, Clone)]
pub struct HaView {
    /// Current state.
    pub state: State,
    /// Since when.
    pub since: Instant,
    /// Why the current state was entered.
    pub reason: String,
    /// Last transition.
    pub last: Option<Transition>,
    /// Transitions seen.
    pub transitions: u64,
    /// Last other router heard.
    pub peer: Option<PeerSeen>,
    /// Split brain active.
    pub split_brain: bool,
    /// Fault inputs.
    pub faults: Faults,
    /// Sync daemons as last read back.
    pub sync: Vec<DaemonStatus>,
    /// Sync daemon / sysctl problem.
    pub sync_error: Option<String>,
    /// VRRP runner start problem.
    pub vrrp_error: Option<String>,
}

impl HaView {
    /// A view of a runner that has not reported yet (it starts as backup-to-be).
    pub fn new(now: Instant) -> HaView {
        HaView {
            state: State::Initialize,
            since: now,
            reason: "starting".into(),
            last: None,
            transitions: 0,
            peer: None,
            split_brain: false,
            faults: Faults::default(),
            sync: Vec::new(),
            sync_error: None,
            vrrp_error: None,
        }
    }

    /// A transition notice.
    pub fn on_transition(&mut self, from: State, to: State, reason: &str, now: Instant) {
        self.state = to;
        self.since = now;
        self.reason = reason.to_owned();
        self.transitions += 1;
        self.last = Some(Transition {
            from,
            to,
            reason: reason.to_owned(),
            at: now,
        });
        if to != State::Master {
            self.split_brain = false;
        }
    }

    /// A status snapshot from the runner (authoritative for state, peer, split brain).
    pub fn on_status(&mut self, s: &GroupStatus) {
        self.state = s.state;
        self.since = s.since;
        self.reason = s.last_reason.clone();
        self.peer = s.peer;
        self.split_brain = s.split_brain;
        self.transitions = self.transitions.max(s.transitions);
    }

    /// What the `ha` LED shows.
    pub fn led(&self) -> HaLed {
        match self.state {
            State::Master if self.split_brain => HaLed::SplitBrain,
            State::Master => HaLed::Master,
            State::Fault => HaLed::Fault,
            State::Backup | State::Initialize => HaLed::Backup,
        }
    }

    /// Status for the control protocol.
    pub fn info(&self, cfg: &Config, now: Instant) -> HaInfo {
        let age = |t: Instant| now.saturating_duration_since(t);
        HaInfo {
            role: self.state.as_str().to_owned(),
            since_s: age(self.since).as_secs(),
            last_transition: self
                .last
                .as_ref()
                .map(|t| format!("{} -> {}", t.from, t.to))
                .unwrap_or_default(),
            last_reason: self.reason.clone(),
            transitions: self.transitions,
            peer: self.peer.map(|p| HaPeerInfo {
                addr: p.addr.to_string(),
                interface: group_config(cfg)
                    .members
                    .get(p.member)
                    .map(|m| m.name.clone())
                    .unwrap_or_default(),
                priority: p.priority,
                seen_s_ago: round_ms(age(p.last_seen)),
            }),
            split_brain: self.split_brain,
            faults: self.faults.words(),
            sync_daemons: self
                .sync
                .iter()
                .map(|d| format!("{} {} id {}", d.state, d.ifname, d.sync_id))
                .collect(),
            sync_error: self.sync_error.clone(),
            vrrp_error: self.vrrp_error.clone(),
        }
    }
}

fn round_ms(d: Duration) -> f64 {
    (d.as_millis() as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ha_cfg() -> Config {
        let mut c = Config::builtin_default();
        c.ha.enabled = true;
        c.ha.vrid = 51;
        c.ha.priority = 150;
        c.ha.advert_interval_cs = 5;
        c.ha.peer_wan = Some(Ipv4Addr::new(203, 0, 113, 3));
        c
    }

    #[test]
    fn group_has_wan_with_vips_and_lan_only_with_a_gateway() {
        let mut c = ha_cfg();
        let g = group_config(&c);
        assert_eq!(g.vrid, 51);
        assert_eq!(g.priority, 150);
        assert_eq!(g.advert_interval, Duration::from_millis(50));
        assert_eq!(g.members.len(), 1);
        assert_eq!(g.members[0].name, c.wan.name.as_str());
        assert_eq!(g.members[0].own_addr, c.wan.address.addr);
        assert_eq!(g.members[0].addresses, c.ha_wan_addresses());
        assert!(!g.members[0].addresses.is_empty());
        assert_eq!(
            g.members[0].unicast_peer,
            Some(Ipv4Addr::new(203, 0, 113, 3))
        );
        c.ha.lan_gateway = Some(Ipv4Addr::new(198, 51, 100, 1));
        let g = group_config(&c);
        assert_eq!(g.members.len(), 2);
        assert_eq!(g.members[1].name, c.lan.name.as_str());
        assert_eq!(g.members[1].own_addr, c.lan.address.addr);
        assert_eq!(g.members[1].addresses, vec![Ipv4Addr::new(198, 51, 100, 1)]);
        assert_eq!(g.members[1].unicast_peer, None);
        assert_eq!(g.preempt_hold, c.ha.preempt_hold(&c));
    }

    #[test]
    fn pool_dead_needs_every_server_known_down() {
        let c = ha_cfg();
        let n: usize = c.services.iter().map(|s| s.servers.len()).sum();
        assert!(n >= 2, "builtin config has several servers");
        assert!(pool_dead(&c, &|_, _| Health::Down));
        assert!(!pool_dead(&c, &|_, _| Health::Up));
        assert!(!pool_dead(&c, &|_, _| Health::Unknown));
        // one server unknown, the rest down: not dead
        let first = SocketAddrV4::new(
            c.services[0].servers[0].address,
            c.services[0].servers[0].port,
        );
        assert!(!pool_dead(&c, &|_, a| if a == first {
            Health::Unknown
        } else {
            Health::Down
        }));
        assert!(!pool_dead(&c, &|_, a| if a == first {
            Health::Up
        } else {
            Health::Down
        }));
        let mut empty = c.clone();
        empty.services.clear();
        assert!(!pool_dead(&empty, &|_, _| Health::Down));
    }

    #[test]
    fn link_faults_only_for_wan_and_lan() {
        let c = ha_cfg();
        assert_eq!(
            link_fault(&c, c.wan.name.as_str()),
            Some(FaultReason::WanLinkDown)
        );
        assert_eq!(
            link_fault(&c, c.lan.name.as_str()),
            Some(FaultReason::LanLinkDown)
        );
        assert_eq!(link_fault(&c, "lo"), None);
    }

    #[test]
    fn faults_report_changes_only() {
        let mut f = Faults::default();
        assert!(!f.set(FaultReason::PoolDead, false));
        assert!(f.set(FaultReason::PoolDead, true));
        assert!(!f.set(FaultReason::PoolDead, true));
        assert!(f.set(FaultReason::WanLinkDown, true));
        assert_eq!(f.words(), vec!["WAN link down", "every server is down"]);
        assert!(f.all().contains(&(FaultReason::LanLinkDown, false)));
        assert!(f.set(FaultReason::PoolDead, false));
        assert_eq!(f.words(), vec!["WAN link down"]);
    }

    #[test]
    fn view_follows_transitions_and_maps_to_led_and_status() {
        let t0 = Instant::now();
        let c = ha_cfg();
        let mut v = HaView::new(t0);
        assert_eq!(v.led(), HaLed::Backup);
        v.on_transition(State::Initialize, State::Backup, "startup", t0);
        v.on_transition(
            State::Backup,
            State::Master,
            "master down timer expired",
            t0 + Duration::from_secs(1),
        );
        assert_eq!(v.led(), HaLed::Master);
        v.split_brain = true;
        assert_eq!(v.led(), HaLed::SplitBrain, "split brain shows on the LED");
        v.sync = vec![DaemonStatus {
            state: "master".into(),
            ifname: "eth1".into(),
            sync_id: 51,
            sync_maxlen: Some(1),
        }];
        let i = v.info(&c, t0 + Duration::from_secs(11));
        assert_eq!(i.role, "master");
        assert_eq!(i.since_s, 10);
        assert_eq!(i.last_transition, "backup -> master");
        assert_eq!(i.last_reason, "master down timer expired");
        assert_eq!(i.transitions, 2);
        assert!(i.split_brain);
        assert_eq!(i.sync_daemons, vec!["master eth1 id 51"]);
        v.on_transition(State::Master, State::Fault, "WAN link down", t0);
        assert_eq!(v.led(), HaLed::Fault);
        assert!(!v.split_brain, "a split brain ends with mastership");
    }

    #[test]
    fn status_snapshot_carries_the_peer() {
        let t0 = Instant::now();
        let c = ha_cfg();
        let mut v = HaView::new(t0);
        v.on_status(&GroupStatus {
            state: State::Backup,
            since: t0,
            last_reason: "higher priority master".into(),
            peer: Some(PeerSeen {
                member: 0,
                addr: Ipv4Addr::new(203, 0, 113, 3),
                priority: 200,
                interval: Duration::from_millis(50),
                last_seen: t0,
            }),
            split_brain: false,
            transitions: 1,
            counters: Default::default(),
        });
        let i = v.info(&c, t0 + Duration::from_millis(250));
        let p = i.peer.expect("peer");
        assert_eq!(p.addr, "203.0.113.3");
        assert_eq!(p.priority, 200);
        assert_eq!(p.interface, c.wan.name.as_str());
        assert!((p.seen_s_ago - 0.25).abs() < 1e-9);
        assert_eq!(i.role, "backup");
    }
}
