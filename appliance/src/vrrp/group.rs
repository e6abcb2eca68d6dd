//! The VRRP sync-group state machine (RFC 5798 section 6.4 per member, keepalived's
//! sync-group rule across members). Pure: it is driven by explicit instants and events
//! and answers with actions; the runner in `tasks` does the I/O.
//!
//! Member 0 is the WAN router, member 1 (when present) the LAN router. The group has one
//! state: it becomes Master only when every member's Master_Down timer has expired, any
//! member hearing a better master pulls the whole group to Backup, and any fault puts the
//! whole group in Fault.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::packet::Advert;

/// While a split brain lasts, gratuitous-ARP bursts are repeated at most this often.
pub const SPLIT_GARP_REPEAT: Duration = Duration::from_secs(1);
/// A split brain is over when the other master has been silent for this many of its
/// (or our, whichever is longer) advertisement intervals.
const SPLIT_CLEAR_INTERVALS: u32 = 3;

/// One router of the group: an interface with its own address and the virtual addresses
/// the master holds on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberConfig {
    /// Interface name.
    pub name: String,
    /// This box's own (primary) address on the interface: the advert source and the tie-break.
    pub own_addr: Ipv4Addr,
    /// Virtual addresses held by the master on this interface.
    pub addresses: Vec<Ipv4Addr>,
    /// Send to, and accept only from, this peer (else multicast 224.0.0.18).
    pub unicast_peer: Option<Ipv4Addr>,
}

/// Everything the state machine needs from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// Virtual router id (the same on every member and both boxes).
    pub vrid: u8,
    /// Our priority (1..=254; 255 would be the address owner).
    pub priority: u8,
    /// Advertisement_Interval we send with as master.
    pub advert_interval: Duration,
    /// Preempt a lower-priority master (only after `preempt_hold` as backup).
    pub preempt: bool,
    /// Time spent as backup before preemption is allowed.
    pub preempt_hold: Duration,
    /// Member 0 = WAN, member 1 = LAN (optional).
    pub members: Vec<MemberConfig>,
}

/// The group's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started, or shut down.
    Initialize,
    /// Listening for the master.
    Backup,
    /// Holding the addresses and advertising.
    Master,
    /// A fault is active: no addresses, no adverts.
    Fault,
}

impl State {
    /// Lower-case name for logs and status.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initialize => "initialize",
            State::Backup => "backup",
            State::Master => "master",
            State::Fault => "fault",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const ALL_FAULTS: [FaultReason; 3] = [
    FaultReason::WanLinkDown,
    FaultReason::LanLinkDown,
    FaultReason::PoolDead,
];

/// Why the group must not be master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultReason {
    /// The WAN link has no carrier.
    WanLinkDown,
    /// The LAN link has no carrier.
    LanLinkDown,
    /// Every server of every service is down.
    PoolDead,
}

impl FaultReason {
    fn bit(self) -> u8 {
        match self {
            FaultReason::WanLinkDown => 1,
            FaultReason::LanLinkDown => 2,
            FaultReason::PoolDead => 4,
        }
    }

    /// Words for logs and status.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultReason::WanLinkDown => "WAN link down",
            FaultReason::LanLinkDown => "LAN link down",
            FaultReason::PoolDead => "every server is down",
        }
    }
}

impl fmt::Display for FaultReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Input to the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Leave Initialize.
    Startup,
    /// `next_deadline()` has been reached (early or spurious timers are harmless).
    Timer,
    /// An advert received on `member` from `src` (the runner has checked TTL 255).
    Advert {
        /// Member index.
        member: usize,
        /// IPv4 source of the advert.
        src: Ipv4Addr,
        /// The decoded advert.
        advert: Advert,
    },
    /// A fault condition became active or cleared.
    Fault {
        /// Which condition.
        reason: FaultReason,
        /// True = now active.
        active: bool,
    },
    /// Orderly stop: resign if master.
    Shutdown,
}

/// What the runner must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send one advert on `member` with `priority` (0 = resign).
    Send {
        /// Member index.
        member: usize,
        /// Priority to advertise.
        priority: u8,
    },
    /// Add the member's virtual addresses.
    AddAddresses {
        /// Member index.
        member: usize,
    },
    /// Remove the member's virtual addresses.
    RemoveAddresses {
        /// Member index.
        member: usize,
    },
    /// Start a gratuitous-ARP burst for the member's addresses.
    GratuitousArp {
        /// Member index.
        member: usize,
    },
    /// The group changed state.
    Transition {
        /// Old state.
        from: State,
        /// New state.
        to: State,
        /// Why, in words.
        reason: String,
    },
    /// Another master was heard while we are master (it should yield), or it went quiet.
    SplitBrain {
        /// Member index.
        member: usize,
        /// The other master's address.
        other: Ipv4Addr,
        /// True = started, false = over.
        active: bool,
    },
}

/// The last advert heard from another router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSeen {
    /// Member it was heard on (addition to HA-SPEC).
    pub member: usize,
    /// Its source address.
    pub addr: Ipv4Addr,
    /// Its advertised priority.
    pub priority: u8,
    /// Its advertised interval.
    pub interval: Duration,
    /// When it was heard.
    pub last_seen: Instant,
}

/// Counters for status and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Adverts accepted (passed every filter).
    pub adverts_rx: u64,
    /// Adverts the machine asked to send.
    pub adverts_tx: u64,
    /// Priority-0 adverts accepted.
    pub priority_zero_rx: u64,
    /// Ignored: other virtual router id.
    pub ignored_vrid: u64,
    /// Ignored: not version 3.
    pub ignored_version: u64,
    /// Ignored: not from the configured unicast peer.
    pub ignored_peer: u64,
    /// Ignored: our own advert.
    pub ignored_own: u64,
    /// Ignored: member index out of range.
    pub ignored_member: u64,
    /// Lower-priority adverts discarded by a preempting backup.
    pub preempt_discards: u64,
    /// Split brains detected.
    pub split_brains: u64,
}

/// A snapshot for status, the console and LEDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    /// Current state.
    pub state: State,
    /// When it was entered.
    pub since: Instant,
    /// Why it was entered.
    pub last_reason: String,
    /// The most recent other router heard on any member.
    pub peer: Option<PeerSeen>,
    /// A split brain is active on some member.
    pub split_brain: bool,
    /// Number of state transitions.
    pub transitions: u64,
    /// Counters.
    pub counters: Counters,
}

/// Skew_Time = ((256 - priority) x Master_Adver_Interval) / 256 (RFC 5798 section 6.1),
/// kept to the nanosecond rather than truncated to centiseconds.
pub fn skew_time(master_adver_interval: Duration, priority: u8) -> Duration {
    master_adver_interval * (256 - u32::from(priority)) / 256
}

/// Master_Down_Interval = 3 x Master_Adver_Interval + Skew_Time.
pub fn master_down_interval(master_adver_interval: Duration, priority: u8) -> Duration {
    master_adver_interval * 3 + skew_time(master_adver_interval, priority)
}

#[derive(Debug, Clone)]
struct Split {
    other: Ipv4Addr,
    last_seen: Instant,
    clear_after: Duration,
    last_garp: Instant,
}

#[derive(Debug, Clone)]
struct Member {
    /// Learned from the master's adverts (ours until then).
    master_adver_interval: Duration,
    /// Backup only: when this member declares the master down.
    master_down_at: Option<Instant>,
    /// Backup only: the Master_Down timer expired and no master was heard since.
    ready: bool,
    /// Master only: another master heard on this member.
    split: Option<Split>,
    /// Last other router heard here.
    peer: Option<PeerSeen>,
}

/// The sync group.
#[derive(Debug, Clone)]
pub struct Group {
    cfg: GroupConfig,
    state: State,
    since: Instant,
    last_reason: String,
    members: Vec<Member>,
    adver_at: Option<Instant>,
    faults: u8,
    transitions: u64,
    counters: Counters,
}

impl Group {
    /// A group in Initialize.
    pub fn new(cfg: GroupConfig, now: Instant) -> Group {
        let members = cfg
            .members
            .iter()
            .map(|_| Member {
                master_adver_interval: cfg.advert_interval,
                master_down_at: None,
                ready: false,
                split: None,
                peer: None,
            })
            .collect();
        Group {
            cfg,
            state: State::Initialize,
            since: now,
            last_reason: "created".into(),
            members,
            adver_at: None,
            faults: 0,
            transitions: 0,
            counters: Counters::default(),
        }
    }

    /// The config in force.
    pub fn config(&self) -> &GroupConfig {
        &self.cfg
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// A status snapshot.
    pub fn status(&self) -> GroupStatus {
        GroupStatus {
            state: self.state,
            since: self.since,
            last_reason: self.last_reason.clone(),
            peer: self
                .members
                .iter()
                .filter_map(|m| m.peer)
                .max_by_key(|p| p.last_seen),
            split_brain: self.members.iter().any(|m| m.split.is_some()),
            transitions: self.transitions,
            counters: self.counters,
        }
    }

    /// The fault conditions currently active (they survive a restart of the group).
    pub fn active_faults(&self) -> Vec<FaultReason> {
        ALL_FAULTS
            .into_iter()
            .filter(|r| self.faults & r.bit() != 0)
            .collect()
    }

    /// When the runner must deliver `Event::Timer` next (None = only on other events).
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Backup => self
                .members
                .iter()
                .filter(|m| !m.ready)
                .filter_map(|m| m.master_down_at)
                .min(),
            State::Master => self
                .members
                .iter()
                .filter_map(|m| m.split.as_ref().map(|s| s.last_seen + s.clear_after))
                .chain(self.adver_at)
                .min(),
            State::Initialize | State::Fault => None,
        }
    }

    /// Apply a change that keeps the vrid and each member's interface and own address;
    /// returns false and changes nothing when the change needs a restart (shutdown and a
    /// new group). Address-list changes of a master are the runner's to apply (diff).
    pub fn update(&mut self, now: Instant, cfg: GroupConfig) -> bool {
        let same_shape = cfg.vrid == self.cfg.vrid
            && cfg.members.len() == self.cfg.members.len()
            && cfg
                .members
                .iter()
                .zip(&self.cfg.members)
                .all(|(a, b)| a.name == b.name && a.own_addr == b.own_addr);
        if !same_shape {
            return false;
        }
        if self.state == State::Master && cfg.advert_interval != self.cfg.advert_interval {
            self.adver_at = Some(now + cfg.advert_interval);
        }
        self.cfg = cfg;
        true
    }

    /// Feed one event; returns the actions to carry out, in order.
    pub fn handle(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Startup => self.startup(now, &mut out),
            Event::Timer => self.timer(now, &mut out),
            Event::Advert {
                member,
                src,
                advert,
            } => self.advert(now, member, src, &advert, &mut out),
            Event::Fault { reason, active } => self.fault(now, reason, active, &mut out),
            Event::Shutdown => {
                if self.state != State::Initialize {
                    self.leave(now, State::Initialize, "shutdown".into(), &mut out);
                }
            }
        }
        out
    }

    fn startup(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state != State::Initialize {
            return;
        }
        if self.faults != 0 {
            let why = format!("startup with fault: {}", self.fault_words());
            self.set_state(now, State::Fault, why, out);
        } else if self.cfg.priority == 255 {
            self.become_master(now, "address owner (priority 255)".into(), out);
        } else {
            self.become_backup(now, "startup".into(), true, out);
        }
    }

    fn timer(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.state {
            State::Backup => {
                for m in &mut self.members {
                    if !m.ready && m.master_down_at.is_some_and(|t| t <= now) {
                        m.ready = true;
                        m.master_down_at = None;
                    }
                }
                if !self.members.is_empty() && self.members.iter().all(|m| m.ready) {
                    let why = if self.members.len() == 1 {
                        "no master heard for Master_Down_Interval".to_owned()
                    } else {
                        "no master heard on any member for Master_Down_Interval".to_owned()
                    };
                    self.become_master(now, why, out);
                }
            }
            State::Master => {
                if self.adver_at.is_some_and(|t| t <= now) {
                    self.send_all(self.cfg.priority, out);
                    self.adver_at = Some(now + self.cfg.advert_interval);
                }
                for (i, m) in self.members.iter_mut().enumerate() {
                    if let Some(s) = &m.split {
                        if s.last_seen + s.clear_after <= now {
                            out.push(Action::SplitBrain {
                                member: i,
                                other: s.other,
                                active: false,
                            });
                            m.split = None;
                        }
                    }
                }
            }
            State::Initialize | State::Fault => {}
        }
    }

    fn advert(
        &mut self,
        now: Instant,
        member: usize,
        src: Ipv4Addr,
        adv: &Advert,
        out: &mut Vec<Action>,
    ) {
        let Some(mc) = self.cfg.members.get(member) else {
            self.counters.ignored_member += 1;
            return;
        };
        if adv.version != 3 {
            self.counters.ignored_version += 1;
            return;
        }
        if adv.vrid != self.cfg.vrid {
            self.counters.ignored_vrid += 1;
            return;
        }
        if src == mc.own_addr {
            self.counters.ignored_own += 1;
            return;
        }
        if mc.unicast_peer.is_some_and(|p| p != src) {
            self.counters.ignored_peer += 1;
            return;
        }
        let own = mc.own_addr;
        self.counters.adverts_rx += 1;
        if adv.priority == 0 {
            self.counters.priority_zero_rx += 1;
        }
        self.members[member].peer = Some(PeerSeen {
            member,
            addr: src,
            priority: adv.priority,
            interval: adv.interval(),
            last_seen: now,
        });
        let prio = self.cfg.priority;
        match self.state {
            State::Initialize | State::Fault => {}
            State::Backup => {
                let preempting = self.cfg.preempt
                    && now.saturating_duration_since(self.since) >= self.cfg.preempt_hold;
                let m = &mut self.members[member];
                if adv.priority == 0 {
                    // The master resigned: take over after Skew_Time only.
                    m.master_down_at = Some(now + skew_time(m.master_adver_interval, prio));
                    m.ready = false;
                } else if !preempting || adv.priority >= prio {
                    m.master_adver_interval = adv.interval();
                    m.master_down_at =
                        Some(now + master_down_interval(m.master_adver_interval, prio));
                    m.ready = false;
                } else {
                    // Preemption: let the Master_Down timer run out.
                    self.counters.preempt_discards += 1;
                }
            }
            State::Master => {
                if adv.priority == 0 {
                    // The other master resigned; make sure the backups hear us at once.
                    self.send(member, prio, out);
                } else if adv.priority > prio
                    || (adv.priority == prio && u32::from(src) > u32::from(own))
                {
                    self.members[member].master_adver_interval = adv.interval();
                    let why = format!(
                        "better master {src} (priority {}) on {}",
                        adv.priority, mc.name
                    );
                    self.become_backup(now, why, false, out);
                } else {
                    self.split_brain(now, member, src, adv, out);
                }
            }
        }
    }

    fn split_brain(
        &mut self,
        now: Instant,
        member: usize,
        src: Ipv4Addr,
        adv: &Advert,
        out: &mut Vec<Action>,
    ) {
        let clear_after = adv.interval().max(self.cfg.advert_interval) * SPLIT_CLEAR_INTERVALS;
        let m = &mut self.members[member];
        let garp = match &mut m.split {
            None => {
                m.split = Some(Split {
                    other: src,
                    last_seen: now,
                    clear_after,
                    last_garp: now,
                });
                self.counters.split_brains += 1;
                out.push(Action::SplitBrain {
                    member,
                    other: src,
                    active: true,
                });
                true
            }
            Some(s) => {
                s.other = src;
                s.last_seen = now;
                s.clear_after = clear_after;
                let again = now.saturating_duration_since(s.last_garp) >= SPLIT_GARP_REPEAT;
                if again {
                    s.last_garp = now;
                }
                again
            }
        };
        self.send(member, self.cfg.priority, out);
        if garp {
            out.push(Action::GratuitousArp { member });
        }
    }

    fn fault(&mut self, now: Instant, reason: FaultReason, active: bool, out: &mut Vec<Action>) {
        let before = self.faults;
        if active {
            self.faults |= reason.bit();
        } else {
            self.faults &= !reason.bit();
        }
        if self.faults == before {
            return;
        }
        match self.state {
            State::Initialize => {}
            State::Backup | State::Master if self.faults != 0 => {
                let why = format!("fault: {}", self.fault_words());
                self.leave(now, State::Fault, why, out);
            }
            State::Fault if self.faults == 0 => {
                self.become_backup(now, format!("fault cleared: {reason}"), true, out);
            }
            _ => {}
        }
    }

    fn fault_words(&self) -> String {
        self.active_faults()
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn send(&mut self, member: usize, priority: u8, out: &mut Vec<Action>) {
        self.counters.adverts_tx += 1;
        out.push(Action::Send { member, priority });
    }

    fn send_all(&mut self, priority: u8, out: &mut Vec<Action>) {
        for member in 0..self.members.len() {
            self.send(member, priority, out);
        }
    }

    fn set_state(&mut self, now: Instant, to: State, reason: String, out: &mut Vec<Action>) {
        out.push(Action::Transition {
            from: self.state,
            to,
            reason: reason.clone(),
        });
        self.state = to;
        self.since = now;
        self.last_reason = reason;
        self.transitions += 1;
    }

    fn become_master(&mut self, now: Instant, reason: String, out: &mut Vec<Action>) {
        self.set_state(now, State::Master, reason, out);
        let n = self.members.len();
        for m in &mut self.members {
            m.master_down_at = None;
            m.ready = false;
            m.split = None;
        }
        // Last member first: the LAN gateway must have moved before the first
        // request arrives through the new master, or the reply goes to the old box.
        out.extend((0..n).rev().map(|member| Action::AddAddresses { member }));
        self.send_all(self.cfg.priority, out);
        out.extend((0..n).rev().map(|member| Action::GratuitousArp { member }));
        self.adver_at = Some(now + self.cfg.advert_interval);
    }

    /// Enter Backup. `fresh` (startup, fault cleared) forgets learned intervals.
    fn become_backup(&mut self, now: Instant, reason: String, fresh: bool, out: &mut Vec<Action>) {
        let was_master = self.state == State::Master;
        self.set_state(now, State::Backup, reason, out);
        if was_master {
            self.drop_master(out);
        }
        let (own, prio) = (self.cfg.advert_interval, self.cfg.priority);
        for m in &mut self.members {
            if fresh {
                m.master_adver_interval = own;
            }
            m.master_down_at = Some(now + master_down_interval(m.master_adver_interval, prio));
            m.ready = false;
        }
    }

    /// Leave Backup/Master for Fault or Initialize; a master resigns with priority 0.
    fn leave(&mut self, now: Instant, to: State, reason: String, out: &mut Vec<Action>) {
        let was_master = self.state == State::Master;
        self.set_state(now, to, reason, out);
        if was_master {
            self.send_all(0, out);
            self.drop_master(out);
        }
        for m in &mut self.members {
            m.master_down_at = None;
            m.ready = false;
        }
    }

    /// Stop being master: addresses go, advert timer stops, split brains end.
    fn drop_master(&mut self, out: &mut Vec<Action>) {
        self.adver_at = None;
        for (member, m) in self.members.iter_mut().enumerate() {
            out.push(Action::RemoveAddresses { member });
            if let Some(s) = m.split.take() {
                out.push(Action::SplitBrain {
                    member,
                    other: s.other,
                    active: false,
                });
            }
        }
    }
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
