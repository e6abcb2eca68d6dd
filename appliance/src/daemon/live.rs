//! The live system behind the config session: network, IPVS, prober, store and LEDs.
//!
//! Everything here runs on the daemon's single runtime thread under the session lock;
//! netlink calls are short, synchronous kernel round trips.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::config::{self, board::Board, AdminState, Config, LedRole};
use crate::control::proto::Validation;
use crate::control::session::{EffectError, Effects};
use crate::ipvs::{self, ActualService, Ipvs, Reconciler};
use crate::leds::{self, Leds, Pattern, PoolSummary};
use crate::net::monitor::LinkEvent;
use crate::probe::tasks::{Heartbeat, Prober, ProberHandle};
use crate::probe::{Health, HealthEvent};
use crate::store::shared::SharedStore;
use crate::store::Store;

use super::ha::{self, HaView};
use super::ha_runner::HaRunner;
use super::logbuf::LogRing;

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

/// Connections-per-second estimate for one destination.
#[derive(Clone, Copy, Debug, Default)]
struct Rate {
    conns: u64,
    at: Option<Instant>,
    per_s: f64,
}

/// Why a save cannot happen: the box started without a usable store.
pub const NO_STORE: &str = "no config store is available on this box (see the boot log)";

/// The real side effects of the config session.
pub struct Live {
    store: Option<SharedStore>,
    /// The config the system was last brought to (the rollback target of an apply).
    applied: Option<Config>,
    /// Store fault at start: the network and the IPVS table are left as found until an
    /// operator applies a config (a respawn must not replace production with defaults).
    hands_off: Option<String>,
    reconciler: Option<Reconciler>,
    prober: ProberHandle,
    health: HashMap<ServerKey, HealthEntry>,
    leds: Option<Leds>,
    led_state: BTreeMap<u8, Pattern>,
    _uleds: Vec<File>,
    /// Ring of recent log events (console "recent events").
    pub ring: LogRing,
    /// Alerts shown in the console header.
    pub alerts: Vec<String>,
    /// Daemon start time.
    pub started: Instant,
    crash_loop: bool,
    fault: Option<String>,
    net_fault: Option<String>,
    table: Vec<ActualService>,
    rates: HashMap<(SocketAddrV4, SocketAddrV4), Rate>,
    links: BTreeMap<String, bool>,
    /// HA role, fault inputs and sync daemons (reported only when HA is on).
    ha: HaView,
    /// The sync sysctls were set and verified for the running config.
    sync_sysctls_ok: bool,
    /// Drains kept while the reconciler is closed (between a netlink error and the reopen).
    drains: ipvs::drain::DrainBook,
    /// The VRRP runner (None until [`Live::attach_ha`]).
    runner: Option<HaRunner>,
    /// Makes the kernel send waiting sync entries while master (None until attach_ha).
    pump: Option<ipvs::sync_pump::SyncPump>,
    /// Metrics: transitions to (up, down) per server, store saves and failures, start facts.
    counts: MetricCounts,
    /// Remote syslog senders (the daemon's events as RFC 5424).
    syslog: crate::syslog::Syslog,
    /// The SNTP client.
    ntp: crate::ntp::Ntp,
    /// The clock's sync state last reported to syslog.
    time_synced: bool,
}

/// What only the daemon counts, for the metrics endpoint.
#[derive(Clone, Debug, Default)]
struct MetricCounts {
    transitions: HashMap<ServerKey, (u64, u64)>,
    saves: u64,
    save_failures: u64,
    watchdog_armed: bool,
    recent_starts: u64,
}

/// Create the board's uleds LED devices (QEMU has no LED hardware); keep the files open.
pub fn create_uleds(board: &Board) -> Vec<File> {
    let mut out = Vec::new();
    for name in &board.uleds {
        match crate::leds::uleds::create(Path::new("/dev/uleds"), name) {
            Ok(f) => out.push(f),
            Err(e) => warn!(led = %name, error = %e, "cannot create uleds LED"),
        }
    }
    out
}

impl Live {
    /// Start the prober and LEDs; the first kernel sync happens in [`Live::apply_boot`].
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        board: &Board,
        config: Config,
        store: Option<Store>,
        health_tx: mpsc::Sender<HealthEvent>,
        ring: LogRing,
        alerts: Vec<String>,
        started: Instant,
        crash_loop: bool,
        uleds: Vec<File>,
    ) -> Live {
        let prober = Prober::spawn(&config, health_tx);
        let bindings: Vec<config::LedBinding> = if config.leds.is_empty() {
            board.leds.clone()
        } else {
            config.leds.iter().cloned().collect()
        };
        let leds = if bindings.is_empty() {
            None
        } else {
            match Leds::open(&bindings, Path::new(&board.sysfs_root)) {
                Ok(l) => Some(l),
                Err(e) => {
                    warn!(error = %e, "status LEDs not available");
                    None
                }
            }
        };
        let ntp = crate::ntp::Ntp::new();
        let syslog = crate::syslog::Syslog::new(ntp.synced_flag());
        Live {
            store: store.map(SharedStore::new),
            applied: None,
            hands_off: None,
            reconciler: None,
            prober,
            health: HashMap::new(),
            leds,
            led_state: BTreeMap::new(),
            _uleds: uleds,
            ring,
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
            drains: ipvs::drain::DrainBook::new(),
            runner: None,
            pump: None,
            counts: MetricCounts::default(),
            syslog,
            ntp,
            time_synced: false,
        }
    }

    /// Count and report a save done outside [`Live`] (the handler saves off the event loop).
    pub fn saved_elsewhere(&mut self, r: Result<u64, String>) {
        let ev = match &r {
            Ok(g) => {
                self.counts.saves += 1;
                crate::syslog::Event::config("save", true, &format!("generation {g}"))
            }
            Err(e) => {
                self.counts.save_failures += 1;
                crate::syslog::Event::config("save", false, e)
            }
        };
        self.syslog.emit(&ev);
    }

    /// Start facts the metrics show: watchdog armed, daemon starts in the crash-loop window.
    pub fn set_start_facts(&mut self, watchdog_armed: bool, recent_starts: u64) {
        self.counts.watchdog_armed = watchdog_armed;
        self.counts.recent_starts = recent_starts;
    }

    /// A snapshot of everything the metrics endpoint shows (quick: clones, no I/O
    /// beyond the prober's per-server stats locks).
    pub fn metrics_snapshot(&self, cfg: &Config) -> crate::metrics::Snapshot {
        use crate::metrics::render::{HaSnap, ServerSnap};
        let probed: HashMap<(String, SocketAddrV4), crate::probe::ServerProbeStats> = self
            .prober
            .snapshot()
            .into_iter()
            .map(|p| ((p.service.to_string(), p.server), p))
            .collect();
        let mut servers = Vec::new();
        for svc in &cfg.services {
            for rs in &svc.servers {
                let addr = SocketAddrV4::new(rs.address, rs.port);
                let key = (svc.name.to_string(), addr);
                let health = self.health_of(svc.name.as_str(), addr).health;
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
            uptime_s: self.started.elapsed().as_secs(),
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

    /// Enable the VRRP runner; its notices go to `notices` (the daemon loop hands them back
    /// through [`Live::on_ha_notice`]). Call inside the daemon's runtime, before boot.
    pub fn attach_ha(&mut self, notices: mpsc::Sender<crate::vrrp::tasks::Notice>) {
        self.runner = Some(HaRunner::new(notices, tokio::runtime::Handle::current()));
        self.pump = Some(ipvs::sync_pump::SyncPump::spawn());
    }

    /// Pump sync entries exactly while HA is on and this box is master.
    fn update_pump(&self, cfg: &Config) {
        if let Some(p) = &self.pump {
            p.set_active(cfg.ha.enabled && self.ha.state == crate::vrrp::group::State::Master);
        }
    }

    /// Start, reconfigure or stop the VRRP runner to match `cfg`.
    fn ha_reconcile(&mut self, cfg: &Config) {
        let faults = if cfg.ha.enabled {
            self.ha_fault_changes(cfg);
            self.ha.faults.all()
        } else {
            Vec::new()
        };
        let Some(r) = self.runner.as_mut() else {
            return;
        };
        let was = r.running();
        let want = cfg.ha.enabled.then(|| ha::group_config(cfg));
        match r.reconcile(want, &faults) {
            Ok(()) if !was && r.running() => {
                let sync = std::mem::take(&mut self.ha.sync);
                let sync_error = self.ha.sync_error.take();
                let faults = self.ha.faults.clone();
                self.ha = HaView::new(Instant::now());
                self.ha.sync = sync;
                self.ha.sync_error = sync_error;
                self.ha.faults = faults;
            }
            Ok(()) => {
                if r.running() || !cfg.ha.enabled {
                    self.ha.vrrp_error = None;
                }
            }
            Err(e) => self.ha.vrrp_error = Some(e),
        }
        self.update_pump(cfg);
    }

    /// Orderly stop of the VRRP runner (SIGTERM): resign and wait, bounded.
    pub fn ha_shutdown(&mut self) {
        if let Some(r) = self.runner.as_mut() {
            r.stop(super::ha_runner::STOP_WAIT);
        }
    }

    /// A notice from the VRRP runner: log transitions, update status and LEDs.
    pub fn on_ha_notice(&mut self, cfg: &Config, n: crate::vrrp::tasks::Notice) {
        use crate::vrrp::tasks::Notice;
        match n {
            Notice::Transition { from, to, reason } => {
                if to == crate::vrrp::group::State::Master || to == crate::vrrp::group::State::Fault
                {
                    warn!(from = %from, to = %to, reason = %reason, "HA transition");
                } else {
                    info!(from = %from, to = %to, reason = %reason, "HA transition");
                }
                self.syslog.emit(&crate::syslog::Event::ha_role(
                    &from.to_string(),
                    &to.to_string(),
                    &reason.to_string(),
                ));
                self.ha.on_transition(from, to, &reason, Instant::now());
                // The role decides how DOWN servers are treated: reconcile now, so a new
                // master removes them before a new call can reach one.
                self.sync(cfg);
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
        self.update_pump(cfg);
        self.update_leds(cfg);
    }

    /// Tell the runner about changed fault inputs (links, pool).
    fn ha_faults(&mut self, cfg: &Config) {
        if !cfg.ha.enabled {
            return;
        }
        let changes = self.ha_fault_changes(cfg);
        if let Some(r) = self.runner.as_ref() {
            for (reason, active) in changes {
                r.fault(reason, active);
            }
        }
    }

    /// HA status for the control protocol (None when HA is off).
    pub fn ha_info(&self, cfg: &Config) -> Option<crate::control::proto::HaInfo> {
        cfg.ha.enabled.then(|| self.ha.info(cfg, Instant::now()))
    }

    /// The HA view (role, faults, sync daemons).
    pub fn ha_view(&mut self) -> &mut HaView {
        &mut self.ha
    }

    /// Recompute the fault inputs (links, pool); returns the changes the runner must hear.
    pub fn ha_fault_changes(
        &mut self,
        cfg: &Config,
    ) -> Vec<(crate::vrrp::group::FaultReason, bool)> {
        let mut out = Vec::new();
        for (ifname, up) in &self.links {
            if let Some(reason) = ha::link_fault(cfg, ifname) {
                if self.ha.faults.set(reason, !up) {
                    out.push((reason, !up));
                }
            }
        }
        let health = &self.health;
        let dead = ha::pool_dead(cfg, &|svc: &str, addr: SocketAddrV4| {
            health
                .get(&(svc.to_string(), addr))
                .map(|h| h.health)
                .unwrap_or(Health::Unknown)
        });
        let reason = crate::vrrp::group::FaultReason::PoolDead;
        if self.ha.faults.set(reason, dead) {
            out.push((reason, dead));
        }
        for (reason, active) in &out {
            self.syslog.emit(&crate::syslog::Event::fault(
                "ha",
                *active,
                &reason.to_string(),
            ));
            if *active {
                warn!(fault = %reason, "HA fault condition active");
            } else {
                info!(fault = %reason, "HA fault condition cleared");
            }
        }
        out
    }

    /// Set the sync sysctls, then start/stop/restart the IPVS sync daemons to match the
    /// config and read them back. Problems are kept for status, never fatal.
    pub fn sync_daemons(&mut self, cfg: &Config) {
        let want = ipvs::syncd::desired(cfg);
        if !want.is_empty() && !self.sync_sysctls_ok {
            // Daemons started before sync_version/sync_ports are right would run the old
            // protocol or split entries over several buffers.
            return;
        }
        let Some(rec) = self.reconciler.as_mut() else {
            return;
        };
        match ipvs::syncd::reconcile(rec.ipvs(), &want) {
            Ok(r) => {
                if self.ha.sync_error.take().is_some() {
                    info!("IPVS sync daemons match the config again");
                }
                self.ha.sync = r.running;
            }
            Err(e) => {
                let msg = format!("IPVS sync daemons: {e}");
                if self.ha.sync_error.as_deref() != Some(msg.as_str()) {
                    error!("{msg}");
                }
                self.ha.sync_error = Some(msg);
            }
        }
    }

    /// The prober's liveness heartbeat (for the watchdog).
    pub fn prober_heartbeat(&self) -> Heartbeat {
        self.prober.heartbeat()
    }

    /// The prober handle (stats, diagnostics).
    pub fn prober(&self) -> &ProberHandle {
        &self.prober
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

    /// Last verified kernel table.
    pub fn table(&self) -> &[ActualService] {
        &self.table
    }

    /// New connections per second towards `server` of the service at `vip`.
    pub fn rate(&self, vip: SocketAddrV4, server: SocketAddrV4) -> f64 {
        self.rates
            .get(&(vip, server))
            .map(|r| r.per_s)
            .unwrap_or(0.0)
    }

    /// IPVS fault only: the table could not be programmed or read back as wanted.
    pub fn ipvs_fault(&self) -> Option<&str> {
        self.fault.as_deref()
    }

    /// Current fault text (IPVS or network), if any.
    pub fn fault(&self) -> Option<String> {
        self.fault.clone().or_else(|| self.net_fault.clone())
    }

    /// Link state of an interface as last reported by the monitor.
    pub fn link_up(&self, ifname: &str) -> Option<bool> {
        self.links.get(ifname).copied()
    }

    /// The store, for writes off the event loop (save, factory reset).
    pub fn store(&self) -> Option<SharedStore> {
        self.store.clone()
    }

    /// The daemon started without a loadable store (`reason`): keep the kernel's
    /// network and IPVS table as found, refuse saves over the store, show the fault.
    pub fn set_store_fault(&mut self, reason: String) {
        if let Some(s) = &self.store {
            s.set_fault(reason.clone());
        }
        self.hands_off = Some(reason);
    }

    /// A save or erase is running now (shown in status).
    pub fn store_busy(&self) -> bool {
        self.store.as_ref().is_some_and(SharedStore::busy)
    }

    /// Boot: network, sysctls, then adopt and reconcile the IPVS table.
    pub fn apply_boot(&mut self, cfg: &Config) {
        if let Some(reason) = &self.hands_off {
            let msg = format!(
                "config store fault ({reason}): the network and the IPVS table are kept as found; \
                 apply a config to take over"
            );
            error!("{msg}");
            self.fault = Some(msg);
            self.update_leds(cfg);
            return;
        }
        // The running config, even if a step below fails: an apply rolls back to it.
        self.applied = Some(cfg.clone());
        if let Err(e) = self.apply_system(cfg) {
            error!(error = %e, "network configuration failed at boot");
            self.syslog
                .emit(&crate::syslog::Event::fault("net", true, &e));
            self.net_fault = Some(e);
        }
        // Logged so a respawn can be checked: adopting an intact table changes nothing.
        if let Some(r) = self.sync(cfg) {
            info!(
                changes = r.ops.len(),
                services = r.services,
                servers = r.dests,
                "IPVS table adopted at start"
            );
        }
        self.sync_daemons(cfg);
        // VRRP after the IPVS services exist, so synced entries find them.
        self.ha_reconcile(cfg);
        self.update_leds(cfg);
    }

    fn apply_system(&mut self, cfg: &Config) -> Result<String, String> {
        if let Err(e) = nix::unistd::sethostname(cfg.hostname.as_str()) {
            warn!(error = %e, "cannot set hostname");
        }
        // Observability first: a failing network apply is still reported remotely.
        self.syslog.reconfigure(cfg);
        self.ntp.reconfigure(cfg);
        let net = crate::net::apply(cfg).map_err(|e| e.to_string())?;
        if net.changes > 0 {
            info!(changes = net.changes, ops = ?net.ops, "network configured");
        }
        if let Err(e) = crate::net::sysctl::apply_router(cfg) {
            return Err(format!("router sysctls: {e}"));
        }
        if let Err(e) = ipvs::sysctl::apply_datapath() {
            return Err(format!("IPVS sysctls: {e}"));
        }
        self.sync_sysctls_ok = false;
        if cfg.ha.enabled {
            match ipvs::sysctl::apply_sync() {
                Ok(_) => self.sync_sysctls_ok = true,
                Err(e) => {
                    let msg = format!("IPVS sync sysctls: {e}");
                    error!("{msg}");
                    self.ha.sync_error = Some(msg);
                }
            }
        }
        Ok(format!("{} network change(s)", net.changes))
    }

    /// Put the system back to `before` (the config that ran before a failed apply) and
    /// `health`; returns a sentence for the error.
    fn roll_back(
        &mut self,
        before: Option<&Config>,
        health: HashMap<ServerKey, HealthEntry>,
    ) -> String {
        let Some(before) = before else {
            return "nothing applied since start to roll back to; check 'appliance net show'"
                .into();
        };
        let mut failed = Vec::new();
        if let Err(e) = self.apply_system(before) {
            failed.push(format!("network: {e}"));
        }
        self.prober.update(before);
        self.health = health;
        if self.sync(before).is_none() {
            failed.push(self.fault().unwrap_or_else(|| "IPVS sync failed".into()));
        }
        self.ha_reconcile(before);
        if failed.is_empty() {
            "the network, the probed servers and the IPVS table are back to the running config"
                .into()
        } else {
            warn!(failed = ?failed, "rollback incomplete");
            format!("rollback INCOMPLETE: {}", failed.join("; "))
        }
    }

    /// How the IPVS table treats DOWN servers: only where traffic flows are they removed.
    fn ipvs_role(&self, cfg: &Config) -> ipvs::Role {
        if cfg.ha.enabled && self.ha.state != crate::vrrp::group::State::Master {
            ipvs::Role::Standby
        } else {
            ipvs::Role::Active
        }
    }

    /// Servers removed or disabled by the operator that still carry calls (weight 0).
    pub fn drains(&self) -> Vec<ipvs::drain::DrainView> {
        self.reconciler
            .as_ref()
            .map(|r| r.drains(Instant::now()))
            .unwrap_or_default()
    }

    /// Reconcile the kernel table to config + health; records faults instead of failing.
    pub fn sync(&mut self, cfg: &Config) -> Option<ipvs::SyncReport> {
        if self.hands_off.is_some() {
            // The fault message set at boot stays; the kernel table is not touched.
            return None;
        }
        if self.reconciler.is_none() {
            match Ipvs::connect() {
                Ok(i) => {
                    let mut r = Reconciler::new(i);
                    r.set_drains(std::mem::take(&mut self.drains));
                    self.reconciler = Some(r);
                }
                Err(e) => {
                    let msg = format!("IPVS unavailable: {e}");
                    if self.fault.as_deref() != Some(msg.as_str()) {
                        error!("{msg}");
                        self.syslog
                            .emit(&crate::syslog::Event::fault("ipvs", true, &msg));
                    }
                    self.fault = Some(msg);
                    return None;
                }
            }
        }
        let health = &self.health;
        let lookup = |svc: &str, addr: SocketAddrV4| {
            health
                .get(&(svc.to_string(), addr))
                .map(|h| h.health)
                .unwrap_or(Health::Unknown)
        };
        let role = self.ipvs_role(cfg);
        let rec = self.reconciler.as_mut()?;
        match rec.sync_as(cfg, &lookup, role, Instant::now()) {
            Ok(report) => {
                if let Some(old) = &self.fault {
                    info!("IPVS table verified again; fault cleared");
                    self.syslog
                        .emit(&crate::syslog::Event::fault("ipvs", false, old));
                }
                self.fault = None;
                self.table = report.table.clone();
                self.update_rates();
                Some(report)
            }
            Err(e) => {
                let msg = format!("IPVS table differs from the config: {e}");
                if self.fault.as_deref() != Some(msg.as_str()) {
                    error!("{msg}");
                    self.syslog
                        .emit(&crate::syslog::Event::fault("ipvs", true, &msg));
                }
                self.fault = Some(msg);
                // A dropped netlink socket is reopened on the next sync; drains go on.
                if let Some(mut old) = self.reconciler.take() {
                    self.drains = old.take_drains();
                }
                None
            }
        }
    }

    fn update_rates(&mut self) {
        let now = Instant::now();
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
                let Some(rs) = ipv4_key(d.key.addr, d.key.port) else {
                    continue;
                };
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

    /// Health transitions from the prober.
    pub fn on_health(&mut self, cfg: &Config, events: Vec<HealthEvent>) {
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
                self.syslog.emit(&crate::syslog::Event::server_health(
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
        self.sync(cfg);
        self.ha_faults(cfg);
        self.update_leds(cfg);
    }

    /// Link changes from the monitor.
    pub fn on_link(&mut self, cfg: &Config, ev: LinkEvent) {
        let up = ev.up && ev.carrier;
        let before = self.links.insert(ev.ifname.clone(), up);
        if before != Some(up) {
            if up {
                info!(interface = %ev.ifname, "link up");
            } else {
                warn!(interface = %ev.ifname, "link down");
            }
        }
        if ev.ifname == cfg.lan.name.as_str() {
            self.prober.set_link(up);
        }
        self.ha_faults(cfg);
        self.update_leds(cfg);
    }

    /// Periodic: drift repair (table, sync daemons, VRRP runner), stats, LEDs.
    pub fn on_tick(&mut self, cfg: &Config) {
        // Back to the running config's collectors and servers after a failed apply
        // (a no-op when they already match).
        self.syslog.reconfigure(cfg);
        self.ntp.reconfigure(cfg);
        self.report_time();
        self.sync(cfg);
        self.sync_daemons(cfg);
        // Restarts a runner that failed to start or was stopped by an apply that then
        // failed (the running config still has HA on).
        self.ha_reconcile(cfg);
        self.update_leds(cfg);
    }

    /// Send a TIME event when the clock's sync state changed since the last tick.
    fn report_time(&mut self) {
        let st = self.ntp.status();
        let synced = st.state == "synced";
        if synced == self.time_synced {
            return;
        }
        self.time_synced = synced;
        let ev = if synced {
            crate::syslog::Event::time(st.server.as_deref(), st.offset_ms.unwrap_or(0.0))
        } else {
            crate::syslog::Event::time(None, 0.0)
        };
        self.syslog.emit(&ev);
    }

    /// Remote syslog collectors' status (counters for status and metrics).
    pub fn syslog_status(&self) -> Vec<crate::syslog::tasks::CollectorStatus> {
        self.syslog.status()
    }

    /// The clock's sync state.
    pub fn ntp_status(&self) -> crate::ntp::NtpStatus {
        self.ntp.status()
    }

    /// Pool summary over enabled servers.
    pub fn pool_summary(&self, cfg: &Config) -> PoolSummary {
        let mut s = PoolSummary::default();
        let mut unknown = 0;
        for svc in &cfg.services {
            for rs in &svc.servers {
                if rs.state != AdminState::Enabled {
                    continue;
                }
                s.total += 1;
                let addr = SocketAddrV4::new(rs.address, rs.port);
                match self.health_of(svc.name.as_str(), addr).health {
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
        s.booting = unknown > 0 && self.started.elapsed().as_secs() < 30;
        s
    }

    fn update_leds(&mut self, cfg: &Config) {
        let summary = self.pool_summary(cfg);
        let activity = self.rates.values().any(|r| r.per_s > 0.0);
        let Some(leds) = self.leds.as_mut() else {
            return;
        };
        for role in [
            LedRole::Status,
            LedRole::Pool,
            LedRole::Ha,
            LedRole::Activity,
        ] {
            let p = leds::role_pattern(role, summary, self.crash_loop, activity);
            let k = role as u8;
            if self.led_state.get(&k) == Some(&p) {
                continue;
            }
            match leds.show(role, p) {
                Ok(()) => {
                    self.led_state.insert(k, p);
                }
                Err(e) => warn!(role = ?role, error = %e, "LED update failed"),
            }
        }
    }
}

fn ipv4_key(addr: std::net::IpAddr, port: u16) -> Option<SocketAddrV4> {
    match addr {
        std::net::IpAddr::V4(a) => Some(SocketAddrV4::new(a, port)),
        std::net::IpAddr::V6(_) => None,
    }
}

impl Effects for Live {
    fn validate(&self, c: &Config) -> Validation {
        let r = config::validate(c);
        Validation {
            errors: r.errors.iter().map(|p| p.message.clone()).collect(),
            warnings: r.warnings.iter().map(|p| p.message.clone()).collect(),
        }
    }

    fn apply(&mut self, c: &Config) -> Result<String, EffectError> {
        let r = self.apply_config(c);
        let ev = match &r {
            Ok(m) => crate::syslog::Event::config("apply", true, m),
            Err(e) => crate::syslog::Event::config("apply", false, &e.0),
        };
        self.syslog.emit(&ev);
        r
    }

    fn save(&mut self, c: &Config) -> Result<u64, EffectError> {
        let r = self.save_config(c);
        let ev = match &r {
            Ok(g) => crate::syslog::Event::config("save", true, &format!("generation {g}")),
            Err(e) => crate::syslog::Event::config("save", false, &e.0),
        };
        self.syslog.emit(&ev);
        r
    }
}

impl Live {
    fn apply_config(&mut self, c: &Config) -> Result<String, EffectError> {
        // All or nothing: what a failed step leaves behind is put back to the config
        // that ran before (the network, sysctls, the prober's servers, their health and
        // the IPVS table), and the error names the step and the rollback's outcome.
        // An operator apply takes over from a store fault's hands-off start.
        self.hands_off = None;
        let before = self.applied.clone();
        let health_before = self.health.clone();
        if !c.ha.enabled {
            // Stop VRRP first: its resign removes the VIPs, which the planner then adds
            // back as ordinary addresses.
            self.ha_reconcile(c);
        }
        let net = match self.apply_system(c) {
            Ok(n) => n,
            Err(e) => {
                let back = self.roll_back(before.as_ref(), health_before);
                return Err(EffectError(format!("{e}; {back}")));
            }
        };
        self.net_fault = None;
        self.prober.update(c);
        // Forget health of servers that left the config.
        let keep: std::collections::HashSet<ServerKey> = c
            .services
            .iter()
            .flat_map(|s| {
                s.servers
                    .iter()
                    .map(move |r| (s.name.to_string(), SocketAddrV4::new(r.address, r.port)))
            })
            .collect();
        self.health.retain(|k, _| keep.contains(k));
        match self.sync(c) {
            Some(r) => {
                self.applied = Some(c.clone());
                self.sync_daemons(c);
                self.ha_reconcile(c);
                self.update_leds(c);
                Ok(format!(
                    "{net}, {} IPVS change(s), table verified ({} service(s), {} server(s))",
                    r.ops.len(),
                    r.services,
                    r.dests
                ))
            }
            None => {
                let why = self
                    .fault()
                    .unwrap_or_else(|| "IPVS sync failed for an unknown reason".to_string());
                let back = self.roll_back(before.as_ref(), health_before);
                Err(EffectError(format!("{why}; {back}")))
            }
        }
    }

    fn save_config(&mut self, c: &Config) -> Result<u64, EffectError> {
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| EffectError(NO_STORE.into()))?;
        let generation = match store.save_blocking(c) {
            Ok(g) => g,
            Err(e) => {
                self.counts.save_failures += 1;
                return Err(EffectError(e.to_string()));
            }
        };
        self.counts.saves += 1;
        info!(generation, "configuration saved to flash");
        Ok(generation)
    }
}

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
