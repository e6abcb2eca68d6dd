//! The daemon's state, pure: server health, the last verified table, faults, links, the
//! LED patterns it calls for, the HA role view and the counters behind the metrics.
//!
//! No I/O happens here: [`super::live::Live`] feeds it kernel results and notices and
//! performs what it asks for (LED patterns, fault changes for the VRRP runner, syslog
//! events). Time comes in as an argument, so tests drive it with a fake clock.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::config::{AdminState, Config, LedRole};
use crate::ipvs::{self, ActualService};
use crate::leds::{self, Pattern, PoolSummary};
use crate::probe::{Health, HealthEvent};
use crate::syslog::Event;
use crate::vrrp::group::{FaultReason, State as Role};
use crate::vrrp::tasks::Notice;

use super::ha::{self, HaView};

/// Key of one real server: (service name, address).
pub type ServerKey = (String, SocketAddrV4);

/// Health plus the reason of the last transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthEntry {
    /// Current health.
    pub health: Health,
    /// Why.
    pub reason: String,
}

/// How long after start unknown health still counts as booting (status LED).
pub const BOOT_GRACE: Duration = Duration::from_secs(30);

/// The LED roles the daemon drives, in the order it shows them.
pub const LED_ROLES: [LedRole; 4] = [
    LedRole::Status,
    LedRole::Pool,
    LedRole::Ha,
    LedRole::Activity,
];

/// Connections-per-second estimate for one destination.
#[derive(Clone, Copy, Debug, Default)]
struct Rate {
    conns: u64,
    at: Option<Instant>,
    per_s: f64,
}

/// What only the daemon counts, for the metrics endpoint.
#[derive(Clone, Debug, Default)]
pub struct MetricCounts {
    /// Transitions to (up, down) per server.
    pub transitions: HashMap<ServerKey, (u64, u64)>,
    /// Store saves that succeeded.
    pub saves: u64,
    /// Store saves that failed.
    pub save_failures: u64,
    /// The hardware watchdog is armed.
    pub watchdog_armed: bool,
    /// Daemon starts in the crash-loop window.
    pub recent_starts: u64,
}

/// Everything the daemon knows, without the devices that produced it.
#[derive(Debug)]
pub struct State {
    /// The config the system was last brought to (the rollback target of an apply).
    pub applied: Option<Config>,
    /// Store fault at start: the network and the IPVS table are left as found until an
    /// operator applies a config (a respawn must not replace production with defaults).
    hands_off: Option<String>,
    health: HashMap<ServerKey, HealthEntry>,
    /// Alerts shown in the console header.
    pub alerts: Vec<String>,
    started: Instant,
    crash_loop: bool,
    fault: Option<String>,
    net_fault: Option<String>,
    table: Vec<ActualService>,
    rates: HashMap<(SocketAddrV4, SocketAddrV4), Rate>,
    links: BTreeMap<String, bool>,
    /// HA role, fault inputs and sync daemons (reported only when HA is on).
    pub ha: HaView,
    /// The sync sysctls were set and verified for the running config.
    pub sync_sysctls_ok: bool,
    /// Metrics counters.
    pub counts: MetricCounts,
    /// The clock's sync state last reported to syslog.
    time_synced: bool,
    /// Syslog events not yet handed to the senders.
    events: Vec<Event>,
}

impl State {
    /// A daemon that has just started at `started`.
    pub fn new(alerts: Vec<String>, started: Instant, crash_loop: bool) -> State {
        State {
            applied: None,
            hands_off: None,
            health: HashMap::new(),
            alerts,
            started,
            crash_loop,
            fault: None,
            net_fault: None,
            table: Vec::new(),
            rates: HashMap::new(),
            links: BTreeMap::new(),
            ha: HaView::new(started),
            sync_sysctls_ok: false,
            counts: MetricCounts::default(),
            time_synced: false,
            events: Vec::new(),
        }
    }

    /// When the daemon started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The daemon restarts in a loop (shown on the status LED).
    pub fn crash_loop(&self) -> bool {
        self.crash_loop
    }

    /// Syslog events produced since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Queue a syslog event.
    pub fn emit(&mut self, ev: Event) {
        self.events.push(ev);
    }

    // --- store fault -------------------------------------------------------------------

    /// The daemon started without a loadable store: keep the network and the table as found.
    pub fn set_store_fault(&mut self, reason: String) {
        self.hands_off = Some(reason);
    }

    /// The store fault that keeps the daemon's hands off the system, if still in force.
    pub fn hands_off(&self) -> Option<&str> {
        self.hands_off.as_deref()
    }

    /// An operator apply takes over from a store fault's hands-off start.
    pub fn take_over(&mut self) {
        self.hands_off = None;
    }

    /// Boot under a store fault: record the fault that explains why nothing was changed.
    /// False when there is no store fault (boot goes ahead).
    pub fn boot_hands_off(&mut self) -> bool {
        let Some(reason) = &self.hands_off else {
            return false;
        };
        let msg = format!(
            "config store fault ({reason}): the network and the IPVS table are kept as found; \
             apply a config to take over"
        );
        error!("{msg}");
        self.fault = Some(msg);
        true
    }

    // --- health ------------------------------------------------------------------------

    /// Record health transitions from the prober (counted, logged, queued for syslog).
    pub fn record_health(&mut self, events: Vec<HealthEvent>) {
        for ev in events {
            let key = (ev.service.to_string(), ev.server);
            let n = self.counts.transitions.entry(key.clone()).or_default();
            match ev.health {
                Health::Up => n.0 += 1,
                Health::Down => n.1 += 1,
                Health::Unknown => {}
            }
            match ev.health {
                Health::Down => {
                    warn!(service = %ev.service, server = %ev.server, reason = %ev.reason, "server DOWN")
                }
                Health::Up => {
                    info!(service = %ev.service, server = %ev.server, reason = %ev.reason, "server UP")
                }
                Health::Unknown => {}
            }
            if ev.health != Health::Unknown {
                self.events.push(Event::server_health(
                    &ev.service,
                    ev.server,
                    ev.health == Health::Up,
                    &ev.reason,
                ));
            }
            self.health.insert(
                key,
                HealthEntry {
                    health: ev.health,
                    reason: ev.reason,
                },
            );
        }
    }

    /// Forget the health of servers that are not in `cfg`.
    pub fn forget_health_outside(&mut self, cfg: &Config) {
        let keep: std::collections::HashSet<ServerKey> = cfg
            .services
            .iter()
            .flat_map(|s| {
                s.servers
                    .iter()
                    .map(move |r| (s.name.to_string(), SocketAddrV4::new(r.address, r.port)))
            })
            .collect();
        self.health.retain(|k, _| keep.contains(k));
    }

    /// The whole health map (saved before an apply, put back by its rollback).
    pub fn health_map(&self) -> &HashMap<ServerKey, HealthEntry> {
        &self.health
    }

    /// Put a saved health map back.
    pub fn restore_health(&mut self, health: HashMap<ServerKey, HealthEntry>) {
        self.health = health;
    }

    /// Health of one server (Unknown until the prober decides).
    pub fn health_of(&self, service: &str, server: SocketAddrV4) -> HealthEntry {
        self.health
            .get(&(service.to_string(), server))
            .cloned()
            .unwrap_or(HealthEntry {
                health: Health::Unknown,
                reason: "not probed yet".into(),
            })
    }

    /// Health as the reconciler and the HA pool check ask for it.
    pub fn health_lookup(&self, service: &str, server: SocketAddrV4) -> Health {
        self.health
            .get(&(service.to_string(), server))
            .map(|h| h.health)
            .unwrap_or(Health::Unknown)
    }

    /// How the IPVS table treats DOWN servers: only where traffic flows (HA off, or master)
    /// are they removed; a standby keeps them at weight 0 with their synced connections.
    pub fn ipvs_role(&self, cfg: &Config) -> ipvs::Role {
        if cfg.ha.enabled && self.ha.state != crate::vrrp::group::State::Master {
            ipvs::Role::Standby
        } else {
            ipvs::Role::Active
        }
    }

    /// The IPVS table `cfg`, the current health and the HA role call for (drains aside).
    pub fn desired_table(&self, cfg: &Config) -> Vec<ipvs::model::DesiredService> {
        ipvs::reconcile::desired_for(cfg, &|s, a| self.health_lookup(s, a), self.ipvs_role(cfg))
    }

    // --- IPVS table and faults ---------------------------------------------------------

    /// The table was programmed and read back as wanted at `now`.
    pub fn table_verified(&mut self, table: Vec<ActualService>, now: Instant) {
        if let Some(old) = self.fault.take() {
            info!("IPVS table verified again; fault cleared");
            self.events.push(Event::fault("ipvs", false, &old));
        }
        self.table = table;
        self.update_rates(now);
    }

    /// The table could not be reached, programmed or verified (`msg` says why).
    pub fn table_failed(&mut self, msg: String) {
        if self.fault.as_deref() != Some(msg.as_str()) {
            error!("{msg}");
            self.events.push(Event::fault("ipvs", true, &msg));
        }
        self.fault = Some(msg);
    }

    /// The network step failed at boot (kept until an apply succeeds).
    pub fn set_net_fault(&mut self, msg: String) {
        error!(error = %msg, "network configuration failed at boot");
        self.events.push(Event::fault("net", true, &msg));
        self.net_fault = Some(msg);
    }

    /// The network was applied: a boot-time network fault is over.
    pub fn clear_net_fault(&mut self) {
        self.net_fault = None;
    }

    /// IPVS fault only: the table could not be programmed or read back as wanted.
    pub fn ipvs_fault(&self) -> Option<&str> {
        self.fault.as_deref()
    }

    /// Current fault text (IPVS or network), if any.
    pub fn fault(&self) -> Option<String> {
        self.fault.clone().or_else(|| self.net_fault.clone())
    }

    /// Last verified kernel table.
    pub fn table(&self) -> &[ActualService] {
        &self.table
    }

    fn update_rates(&mut self, now: Instant) {
        for s in &self.table {
            let crate::ipvs::codec::ServiceKey::Addr {
                addr: std::net::IpAddr::V4(a),
                port,
                ..
            } = s.key
            else {
                continue;
            };
            let vip = SocketAddrV4::new(a, port);
            for d in &s.dests {
                let std::net::IpAddr::V4(ra) = d.key.addr else {
                    continue;
                };
                let rs = SocketAddrV4::new(ra, d.key.port);
                let r = self.rates.entry((vip, rs)).or_default();
                if let Some(at) = r.at {
                    let dt = now.duration_since(at).as_secs_f64();
                    if dt > 0.2 {
                        r.per_s = d.stats.conns.saturating_sub(r.conns) as f64 / dt;
                        r.conns = d.stats.conns;
                        r.at = Some(now);
                    }
                } else {
                    r.conns = d.stats.conns;
                    r.at = Some(now);
                }
            }
        }
    }

    /// New connections per second towards `server` of the service at `vip`.
    pub fn rate(&self, vip: SocketAddrV4, server: SocketAddrV4) -> f64 {
        self.rates
            .get(&(vip, server))
            .map(|r| r.per_s)
            .unwrap_or(0.0)
    }

    // --- links -------------------------------------------------------------------------

    /// A link's state from the monitor; true when it changed.
    pub fn set_link(&mut self, ifname: &str, up: bool) -> bool {
        let before = self.links.insert(ifname.to_string(), up);
        let changed = before != Some(up);
        if changed {
            if up {
                info!(interface = %ifname, "link up");
            } else {
                warn!(interface = %ifname, "link down");
            }
        }
        changed
    }

    /// Link state of an interface as last reported by the monitor.
    pub fn link_up(&self, ifname: &str) -> Option<bool> {
        self.links.get(ifname).copied()
    }

    // --- LEDs --------------------------------------------------------------------------

    /// Pool summary over enabled servers at `now`.
    pub fn pool_summary(&self, cfg: &Config, now: Instant) -> PoolSummary {
        let mut s = PoolSummary::default();
        let mut unknown = 0;
        for svc in &cfg.services {
            for rs in &svc.servers {
                if rs.state != AdminState::Enabled {
                    continue;
                }
                s.total += 1;
                let addr = SocketAddrV4::new(rs.address, rs.port);
                match self.health_lookup(svc.name.as_str(), addr) {
                    Health::Up => s.up += 1,
                    Health::Unknown if !svc.probe.enabled => s.up += 1,
                    Health::Unknown => unknown += 1,
                    Health::Down => {}
                }
            }
        }
        s.fault = self.fault().is_some();
        s.ha = if cfg.ha.enabled {
            self.ha.led()
        } else {
            leds::HaLed::Disabled
        };
        s.booting = unknown > 0 && now.saturating_duration_since(self.started) < BOOT_GRACE;
        s
    }

    /// The pattern each LED role should show at `now`.
    pub fn led_patterns(&self, cfg: &Config, now: Instant) -> [(LedRole, Pattern); 4] {
        let summary = self.pool_summary(cfg, now);
        let activity = self.rates.values().any(|r| r.per_s > 0.0);
        LED_ROLES.map(|role| {
            (
                role,
                leds::role_pattern(role, summary, self.crash_loop, activity),
            )
        })
    }

    // --- HA ----------------------------------------------------------------------------

    /// Recompute the HA fault inputs (links, pool); returns the changes the runner must hear.
    pub fn ha_fault_changes(&mut self, cfg: &Config) -> Vec<(FaultReason, bool)> {
        let mut out = Vec::new();
        for (ifname, up) in &self.links {
            if let Some(reason) = ha::link_fault(cfg, ifname) {
                if self.ha.faults.set(reason, !up) {
                    out.push((reason, !up));
                }
            }
        }
        let dead = ha::pool_dead(cfg, &|svc, addr| self.health_lookup(svc, addr));
        let reason = FaultReason::PoolDead;
        if self.ha.faults.set(reason, dead) {
            out.push((reason, dead));
        }
        for (reason, active) in &out {
            self.events
                .push(Event::fault("ha", *active, &reason.to_string()));
            if *active {
                warn!(fault = %reason, "HA fault condition active");
            } else {
                info!(fault = %reason, "HA fault condition cleared");
            }
        }
        out
    }

    /// A VRRP runner was (re)started at `now`: its role view starts afresh, keeping the
    /// sync daemons and fault inputs the daemon knows.
    pub fn ha_runner_started(&mut self, now: Instant) {
        let mut fresh = HaView::new(now);
        fresh.sync = std::mem::take(&mut self.ha.sync);
        fresh.sync_error = self.ha.sync_error.take();
        fresh.faults = self.ha.faults.clone();
        self.ha = fresh;
    }

    /// A notice from the VRRP runner, heard at `now`.
    pub fn on_ha_notice(&mut self, n: Notice, now: Instant) {
        match n {
            Notice::Transition { from, to, reason } => {
                if to == Role::Master || to == Role::Fault {
                    warn!(from = %from, to = %to, reason = %reason, "HA transition");
                } else {
                    info!(from = %from, to = %to, reason = %reason, "HA transition");
                }
                self.events.push(Event::ha_role(
                    &from.to_string(),
                    &to.to_string(),
                    &reason.to_string(),
                ));
                self.ha.on_transition(from, to, &reason, now);
            }
            Notice::SplitBrain {
                member,
                other,
                active,
            } => {
                if active {
                    error!(member, other = %other, "HA split brain: another master is active");
                } else {
                    info!(member, other = %other, "HA split brain over");
                }
                self.ha.split_brain = active;
            }
            Notice::Status(st) => self.ha.on_status(&st),
        }
    }

    /// The sync pump runs exactly while HA is on and this box is master.
    pub fn pump_wanted(&self, cfg: &Config) -> bool {
        cfg.ha.enabled && self.ha.state == Role::Master
    }

    /// The sync daemons were read back after a reconcile.
    pub fn sync_daemons_ok(&mut self, running: Vec<ipvs::syncd::DaemonStatus>) {
        if self.ha.sync_error.take().is_some() {
            info!("IPVS sync daemons match the config again");
        }
        self.ha.sync = running;
    }

    /// The sync daemons could not be brought to the config.
    pub fn sync_daemons_failed(&mut self, msg: String) {
        if self.ha.sync_error.as_deref() != Some(msg.as_str()) {
            error!("{msg}");
        }
        self.ha.sync_error = Some(msg);
    }

    // --- counters, clock, metrics ------------------------------------------------------

    /// Count and report a save.
    pub fn saved(&mut self, r: Result<u64, &str>) {
        let ev = match r {
            Ok(g) => {
                self.counts.saves += 1;
                Event::config("save", true, &format!("generation {g}"))
            }
            Err(e) => {
                self.counts.save_failures += 1;
                Event::config("save", false, e)
            }
        };
        self.events.push(ev);
    }

    /// The clock's sync state now; queues a TIME event when it changed.
    pub fn clock_state(&mut self, st: &crate::ntp::NtpStatus) {
        let synced = st.state == "synced";
        if synced == self.time_synced {
            return;
        }
        self.time_synced = synced;
        self.events.push(if synced {
            Event::time(st.server.as_deref(), st.offset_ms.unwrap_or(0.0))
        } else {
            Event::time(None, 0.0)
        });
    }

    /// A snapshot of everything the metrics endpoint shows, with the prober's per-server
    /// stats and the time `now`.
    pub fn metrics_snapshot(
        &self,
        cfg: &Config,
        probed: &HashMap<ServerKey, crate::probe::ServerProbeStats>,
        now: Instant,
    ) -> crate::metrics::Snapshot {
        use crate::metrics::render::{HaSnap, ServerSnap};
        let mut servers = Vec::new();
        for svc in &cfg.services {
            for rs in &svc.servers {
                let addr = SocketAddrV4::new(rs.address, rs.port);
                let key = (svc.name.to_string(), addr);
                let health = self.health_lookup(svc.name.as_str(), addr);
                let (to_up, to_down) = self.counts.transitions.get(&key).copied().unwrap_or((0, 0));
                let p = probed.get(&key);
                servers.push(ServerSnap {
                    up: health == Health::Up || (health == Health::Unknown && !svc.probe.enabled),
                    enabled: rs.state == AdminState::Enabled,
                    health,
                    to_up,
                    to_down,
                    probe: p.map(|p| p.counters).unwrap_or_default(),
                    rtt: p.map(|p| p.rtt.hist).unwrap_or_default(),
                    service: key.0,
                    addr,
                });
            }
        }
        let ha = cfg.ha.enabled.then(|| HaSnap {
            role: self.ha.state.as_str(),
            transitions: self.ha.transitions,
            split_brain: self.ha.split_brain,
            sync: self
                .ha
                .sync
                .iter()
                .map(|d| (d.state.clone(), d.ifname.clone()))
                .collect(),
            sync_ok: self.ha.sync_error.is_none(),
        });
        crate::metrics::Snapshot {
            version: crate::VERSION.to_string(),
            uptime_s: now.saturating_duration_since(self.started).as_secs(),
            table: self.table.clone(),
            servers,
            ha,
            fault: self.fault().is_some(),
            store_saves: self.counts.saves,
            store_save_failures: self.counts.save_failures,
            watchdog_armed: self.counts.watchdog_armed,
            crash_loop: self.crash_loop,
            recent_starts: self.counts.recent_starts,
            endpoint: Default::default(),
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
