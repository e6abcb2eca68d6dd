//! The live system behind the config session: the devices and tasks the daemon drives
//! (netlink sockets, prober tasks, LEDs, the VRRP runner, sync daemons and pump, syslog
//! and NTP tasks) around its pure [`State`].
//!
//! Everything here runs on the daemon's runtime thread or a blocking-pool thread under
//! the session lock; netlink calls are short, synchronous kernel round trips.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::{self, board::Board, Config};
use crate::control::proto::Validation;
use crate::control::session::{EffectError, Effects};
use crate::ipvs::{self, ActualService, Ipvs, Reconciler};
use crate::leds::{Leds, Pattern, PoolSummary};
use crate::net::monitor::LinkEvent;
use crate::probe::tasks::{Heartbeat, Prober, ProberHandle};
use crate::probe::HealthEvent;
use crate::store::shared::SharedStore;
use crate::store::Store;

use super::apply::{self, Step};
use super::ha::{self, HaView};
use super::ha_runner::HaRunner;
use super::logbuf::LogRing;
pub use super::state::{HealthEntry, ServerKey, State};

/// Why a save cannot happen: the box started without a usable store.
pub const NO_STORE: &str = "no config store is available on this box (see the boot log)";

/// What [`Live::start`] needs.
pub struct StartOptions<'a> {
    /// Board facts (LED map, sysfs root).
    pub board: &'a Board,
    /// The config the prober starts with.
    pub config: &'a Config,
    /// The config store, if one could be opened.
    pub store: Option<Store>,
    /// Where the prober sends health transitions.
    pub health_tx: mpsc::Sender<HealthEvent>,
    /// Ring of recent log events (console "recent events").
    pub ring: LogRing,
    /// Alerts for the console header.
    pub alerts: Vec<String>,
    /// Daemon start time.
    pub started: Instant,
    /// The daemon restarts in a loop.
    pub crash_loop: bool,
    /// uleds devices to keep open (see [`create_uleds`]).
    pub uleds: Vec<File>,
}

/// The devices and tasks the daemon drives; [`State`] holds what it knows.
struct Devices {
    store: Option<SharedStore>,
    /// None until the first sync, and again after a failed one (reopened on the next).
    reconciler: Option<Reconciler>,
    prober: ProberHandle,
    leds: Option<Leds>,
    /// What each LED role shows now (written only on change).
    led_shown: BTreeMap<u8, Pattern>,
    _uleds: Vec<File>,
    /// Drains kept while the reconciler is closed (between a netlink error and the reopen).
    drains: ipvs::drain::DrainBook,
    /// The VRRP runner (None until [`Live::attach_ha`]).
    runner: Option<HaRunner>,
    /// Makes the kernel send waiting sync entries while master (None until attach_ha).
    pump: Option<ipvs::sync_pump::SyncPump>,
    /// Remote syslog senders (the daemon's events as RFC 5424).
    syslog: crate::syslog::Syslog,
    /// The SNTP client.
    ntp: crate::ntp::Ntp,
}

/// The real side effects of the config session: pure state plus devices.
pub struct Live {
    state: State,
    dev: Devices,
    /// Ring of recent log events (console "recent events").
    pub ring: LogRing,
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
    pub fn start(o: StartOptions<'_>) -> Live {
        let prober = Prober::spawn(o.config, o.health_tx);
        let bindings: Vec<config::LedBinding> = if o.config.leds.is_empty() {
            o.board.leds.clone()
        } else {
            o.config.leds.iter().cloned().collect()
        };
        let leds = if bindings.is_empty() {
            None
        } else {
            match Leds::open(&bindings, Path::new(&o.board.sysfs_root)) {
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
            state: State::new(o.alerts, o.started, o.crash_loop),
            dev: Devices {
                store: o.store.map(SharedStore::new),
                reconciler: None,
                prober,
                leds,
                led_shown: BTreeMap::new(),
                _uleds: o.uleds,
                drains: ipvs::drain::DrainBook::new(),
                runner: None,
                pump: None,
                syslog,
                ntp,
            },
            ring: o.ring,
        }
    }

    /// The daemon's pure state (health, table, faults, HA view, counters).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Hand the syslog events the state queued to the senders.
    fn flush_events(&mut self) {
        for ev in self.state.take_events() {
            self.dev.syslog.emit(&ev);
        }
    }

    /// Count and report a save done outside [`Live`] (the handler saves off the event loop).
    pub fn saved_elsewhere(&mut self, r: Result<u64, String>) {
        self.state
            .saved(r.as_ref().map(|g| *g).map_err(String::as_str));
        self.flush_events();
    }

    /// Start facts the metrics show: watchdog armed, daemon starts in the crash-loop window.
    pub fn set_start_facts(&mut self, watchdog_armed: bool, recent_starts: u64) {
        self.state.counts.watchdog_armed = watchdog_armed;
        self.state.counts.recent_starts = recent_starts;
    }

    /// A snapshot of everything the metrics endpoint shows (quick: clones, no I/O
    /// beyond the prober's per-server stats locks).
    pub fn metrics_snapshot(&self, cfg: &Config) -> crate::metrics::Snapshot {
        let probed: HashMap<ServerKey, crate::probe::ServerProbeStats> = self
            .dev
            .prober
            .snapshot()
            .into_iter()
            .map(|p| ((p.service.to_string(), p.server), p))
            .collect();
        self.state.metrics_snapshot(cfg, &probed, Instant::now())
    }

    /// Enable the VRRP runner; its notices go to `notices` (the daemon loop hands them back
    /// through [`Live::on_ha_notice`]). Call inside the daemon's runtime, before boot.
    pub fn attach_ha(&mut self, notices: mpsc::Sender<crate::vrrp::tasks::Notice>) {
        self.dev.runner = Some(HaRunner::new(notices, tokio::runtime::Handle::current()));
        self.dev.pump = Some(ipvs::sync_pump::SyncPump::spawn());
    }

    /// Pump sync entries exactly while HA is on and this box is master.
    fn update_pump(&self, cfg: &Config) {
        if let Some(p) = &self.dev.pump {
            p.set_active(self.state.pump_wanted(cfg));
        }
    }

    /// Start, reconfigure or stop the VRRP runner to match `cfg`; Err names what failed
    /// (also kept for status).
    fn ha_reconcile(&mut self, cfg: &Config) -> Result<(), String> {
        let faults = if cfg.ha.enabled {
            self.state.ha_fault_changes(cfg);
            self.flush_events();
            self.state.ha.faults.all()
        } else {
            Vec::new()
        };
        let Some(r) = self.dev.runner.as_mut() else {
            return Ok(());
        };
        let was = r.running();
        let want = cfg.ha.enabled.then(|| ha::group_config(cfg));
        let out = match r.reconcile(want, &faults) {
            Ok(()) if !was && r.running() => {
                self.state.ha_runner_started(Instant::now());
                Ok(())
            }
            Ok(()) => {
                if r.running() || !cfg.ha.enabled {
                    self.state.ha.vrrp_error = None;
                }
                Ok(())
            }
            Err(e) => {
                self.state.ha.vrrp_error = Some(e.clone());
                Err(e)
            }
        };
        self.update_pump(cfg);
        out
    }

    /// The VRRP group the runner runs with now (None when HA is off or not attached).
    pub fn vrrp_group(&self) -> Option<&crate::vrrp::group::GroupConfig> {
        self.dev.runner.as_ref().and_then(HaRunner::group)
    }

    /// Orderly stop of the VRRP runner (SIGTERM): resign and wait, bounded.
    pub fn ha_shutdown(&mut self) {
        if let Some(r) = self.dev.runner.as_mut() {
            r.stop(super::ha_runner::STOP_WAIT);
        }
        // The VIPs are gone: push the last sync entry out before the box goes down.
        if let Some(p) = &self.dev.pump {
            p.set_active(false);
        }
    }

    /// A notice from the VRRP runner: log transitions, update status and LEDs.
    pub fn on_ha_notice(&mut self, cfg: &Config, n: crate::vrrp::tasks::Notice) {
        let transition = matches!(n, crate::vrrp::tasks::Notice::Transition { .. });
        self.state.on_ha_notice(n, Instant::now());
        self.flush_events();
        if transition {
            // The role decides how DOWN servers are treated: reconcile now, so a new
            // master removes them before a new call can reach one.
            self.sync(cfg);
        }
        self.update_pump(cfg);
        self.update_leds(cfg);
    }

    /// Tell the runner about changed fault inputs (links, pool).
    fn ha_faults(&mut self, cfg: &Config) {
        if !cfg.ha.enabled {
            return;
        }
        let changes = self.state.ha_fault_changes(cfg);
        self.flush_events();
        if let Some(r) = self.dev.runner.as_ref() {
            for (reason, active) in changes {
                r.fault(reason, active);
            }
        }
    }

    /// HA status for the control protocol (None when HA is off).
    pub fn ha_info(&self, cfg: &Config) -> Option<crate::control::proto::HaInfo> {
        cfg.ha
            .enabled
            .then(|| self.state.ha.info(cfg, Instant::now()))
    }

    /// The HA view (role, faults, sync daemons).
    pub fn ha_view(&mut self) -> &mut HaView {
        &mut self.state.ha
    }

    /// Recompute the fault inputs (links, pool); returns the changes the runner must hear.
    pub fn ha_fault_changes(
        &mut self,
        cfg: &Config,
    ) -> Vec<(crate::vrrp::group::FaultReason, bool)> {
        let out = self.state.ha_fault_changes(cfg);
        self.flush_events();
        out
    }

    /// Start/stop/restart the IPVS sync daemons to match the config and read them back.
    /// Problems are kept for status; Err says what failed (fatal only inside an apply).
    pub fn sync_daemons(&mut self, cfg: &Config) -> Result<(), String> {
        let want = ipvs::syncd::desired(cfg);
        if !want.is_empty() && !self.state.sync_sysctls_ok {
            // Daemons started before sync_version/sync_ports are right would run the old
            // protocol or split entries over several buffers.
            return Err(self
                .state
                .ha
                .sync_error
                .clone()
                .unwrap_or_else(|| "IPVS sync sysctls are not set".into()));
        }
        let Some(rec) = self.dev.reconciler.as_mut() else {
            return Err("IPVS sync daemons: IPVS is not reachable".into());
        };
        match ipvs::syncd::reconcile(rec.ipvs(), &want) {
            Ok(r) => {
                self.state.sync_daemons_ok(r.running);
                Ok(())
            }
            Err(e) => {
                let msg = format!("IPVS sync daemons: {e}");
                self.state.sync_daemons_failed(msg.clone());
                Err(msg)
            }
        }
    }

    /// The prober's liveness heartbeat (for the watchdog).
    pub fn prober_heartbeat(&self) -> Heartbeat {
        self.dev.prober.heartbeat()
    }

    /// The prober handle (stats, diagnostics).
    pub fn prober(&self) -> &ProberHandle {
        &self.dev.prober
    }

    /// Health of one server (Unknown until the prober decides).
    pub fn health_of(&self, service: &str, server: SocketAddrV4) -> HealthEntry {
        self.state.health_of(service, server)
    }

    /// Last verified kernel table.
    pub fn table(&self) -> &[ActualService] {
        self.state.table()
    }

    /// New connections per second towards `server` of the service at `vip`.
    pub fn rate(&self, vip: SocketAddrV4, server: SocketAddrV4) -> f64 {
        self.state.rate(vip, server)
    }

    /// IPVS fault only: the table could not be programmed or read back as wanted.
    pub fn ipvs_fault(&self) -> Option<&str> {
        self.state.ipvs_fault()
    }

    /// Current fault text (IPVS or network), if any.
    pub fn fault(&self) -> Option<String> {
        self.state.fault()
    }

    /// Alerts shown in the console header.
    pub fn alerts(&self) -> &[String] {
        &self.state.alerts
    }

    /// Link state of an interface as last reported by the monitor.
    pub fn link_up(&self, ifname: &str) -> Option<bool> {
        self.state.link_up(ifname)
    }

    /// The store, for writes off the event loop (save, factory reset).
    pub fn store(&self) -> Option<SharedStore> {
        self.dev.store.clone()
    }

    /// The daemon started without a loadable store (`reason`): keep the kernel's
    /// network and IPVS table as found, refuse saves over the store, show the fault.
    pub fn set_store_fault(&mut self, reason: String) {
        if let Some(s) = &self.dev.store {
            s.set_fault(reason.clone());
        }
        self.state.set_store_fault(reason);
    }

    /// A save or erase is running now (shown in status).
    pub fn store_busy(&self) -> bool {
        self.dev.store.as_ref().is_some_and(SharedStore::busy)
    }

    /// Boot: network, sysctls, then adopt and reconcile the IPVS table.
    pub fn apply_boot(&mut self, cfg: &Config) {
        if self.state.boot_hands_off() {
            self.update_leds(cfg);
            return;
        }
        // The running config, even if a step below fails: an apply rolls back to it.
        self.state.applied = Some(cfg.clone());
        if let Err(e) = self.apply_system(cfg) {
            self.state.set_net_fault(e);
            self.flush_events();
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
        // Problems are kept for status; the periodic tick retries.
        let _ = self.sync_daemons(cfg);
        // VRRP after the IPVS services exist, so synced entries find them.
        let _ = self.ha_reconcile(cfg);
        self.update_leds(cfg);
    }

    fn apply_system(&mut self, cfg: &Config) -> Result<String, String> {
        if let Err(e) = nix::unistd::sethostname(cfg.hostname.as_str()) {
            warn!(error = %e, "cannot set hostname");
        }
        // Observability first: a failing network apply is still reported remotely.
        self.dev.syslog.reconfigure(cfg);
        self.dev.ntp.reconfigure(cfg);
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
        self.state.sync_sysctls_ok = false;
        if cfg.ha.enabled {
            match ipvs::sysctl::apply_sync() {
                Ok(_) => self.state.sync_sysctls_ok = true,
                Err(e) => {
                    let msg = format!("IPVS sync sysctls: {e}");
                    tracing::error!("{msg}");
                    self.state.ha.sync_error = Some(msg);
                }
            }
        }
        Ok(format!("{} network change(s)", net.changes))
    }

    /// Servers removed or disabled by the operator that still carry calls (weight 0).
    pub fn drains(&self) -> Vec<ipvs::drain::DrainView> {
        self.dev
            .reconciler
            .as_ref()
            .map(|r| r.drains(Instant::now()))
            .unwrap_or_default()
    }

    /// Reconcile the kernel table to config + health; records faults instead of failing.
    pub fn sync(&mut self, cfg: &Config) -> Option<ipvs::SyncReport> {
        let r = self.sync_inner(cfg);
        self.flush_events();
        r
    }

    fn sync_inner(&mut self, cfg: &Config) -> Option<ipvs::SyncReport> {
        if self.state.hands_off().is_some() {
            // The fault message set at boot stays; the kernel table is not touched.
            return None;
        }
        if self.dev.reconciler.is_none() {
            match Ipvs::connect() {
                Ok(i) => {
                    let mut r = Reconciler::new(i);
                    r.set_drains(std::mem::take(&mut self.dev.drains));
                    self.dev.reconciler = Some(r);
                }
                Err(e) => {
                    self.state.table_failed(format!("IPVS unavailable: {e}"));
                    return None;
                }
            }
        }
        let role = self.state.ipvs_role(cfg);
        let rec = self.dev.reconciler.as_mut()?;
        let state = &self.state;
        match rec.sync_as(cfg, &|s, a| state.health_lookup(s, a), role, Instant::now()) {
            Ok(report) => {
                self.state
                    .table_verified(report.table.clone(), Instant::now());
                Some(report)
            }
            Err(e) => {
                self.state
                    .table_failed(format!("IPVS table differs from the config: {e}"));
                // A dropped netlink socket is reopened on the next sync.
                // Drains go on.
                if let Some(mut old) = self.dev.reconciler.take() {
                    self.dev.drains = old.take_drains();
                }
                None
            }
        }
    }

    /// Health transitions from the prober.
    pub fn on_health(&mut self, cfg: &Config, events: Vec<HealthEvent>) {
        self.state.record_health(events);
        self.flush_events();
        self.sync(cfg);
        self.ha_faults(cfg);
        self.update_leds(cfg);
    }

    /// Link changes from the monitor.
    pub fn on_link(&mut self, cfg: &Config, ev: LinkEvent) {
        let up = ev.up && ev.carrier;
        self.state.set_link(&ev.ifname, up);
        if ev.ifname == cfg.lan.name.as_str() {
            self.dev.prober.set_link(up);
        }
        self.ha_faults(cfg);
        self.update_leds(cfg);
    }

    /// Periodic: drift repair (table, sync daemons, VRRP runner), stats, LEDs.
    pub fn on_tick(&mut self, cfg: &Config) {
        // Back to the running config's collectors and servers after a failed apply
        // (a no-op when they already match).
        self.dev.syslog.reconfigure(cfg);
        self.dev.ntp.reconfigure(cfg);
        self.state.clock_state(&self.dev.ntp.status());
        self.flush_events();
        self.sync(cfg);
        // Problems are kept for status; the next tick retries.
        let _ = self.sync_daemons(cfg);
        // Restarts a runner that failed to start or was stopped by an apply that then
        // failed (the running config still has HA on).
        let _ = self.ha_reconcile(cfg);
        self.update_leds(cfg);
    }

    /// Remote syslog collectors' status (counters for status and metrics).
    pub fn syslog_status(&self) -> Vec<crate::syslog::tasks::CollectorStatus> {
        self.dev.syslog.status()
    }

    /// The clock's sync state.
    pub fn ntp_status(&self) -> crate::ntp::NtpStatus {
        self.dev.ntp.status()
    }

    /// Pool summary over enabled servers.
    pub fn pool_summary(&self, cfg: &Config) -> PoolSummary {
        self.state.pool_summary(cfg, Instant::now())
    }

    /// Show the patterns the state calls for (each LED written only when it changes).
    fn update_leds(&mut self, cfg: &Config) {
        let patterns = self.state.led_patterns(cfg, Instant::now());
        let Some(leds) = self.dev.leds.as_mut() else {
            return;
        };
        for (role, p) in patterns {
            let k = role as u8;
            if self.dev.led_shown.get(&k) == Some(&p) {
                continue;
            }
            match leds.show(role, p) {
                Ok(()) => {
                    self.dev.led_shown.insert(k, p);
                }
                Err(e) => warn!(role = ?role, error = %e, "LED update failed"),
            }
        }
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
        self.state.emit(match &r {
            Ok(m) => crate::syslog::Event::config("apply", true, m),
            Err(e) => crate::syslog::Event::config("apply", false, &e.0),
        });
        self.flush_events();
        r
    }

    fn save(&mut self, c: &Config) -> Result<u64, EffectError> {
        let Some(store) = self.dev.store.as_ref() else {
            let e = EffectError(NO_STORE.into());
            self.state
                .emit(crate::syslog::Event::config("save", false, &e.0));
            self.flush_events();
            return Err(e);
        };
        let r = store
            .save_blocking(c)
            .map_err(|e| EffectError(e.to_string()));
        if let Ok(generation) = &r {
            info!(generation, "configuration saved to flash");
        }
        self.state
            .saved(r.as_ref().map(|g| *g).map_err(|e| e.0.as_str()));
        self.flush_events();
        r
    }
}

impl Live {
    fn apply_config(&mut self, c: &Config) -> Result<String, EffectError> {
        // All or nothing: the steps run in order (`apply::plan`); what a failed step and
        // the steps before it changed is put back to the config that ran before (the
        // network, sysctls, the prober's servers and their health, the IPVS table, the
        // sync daemons and the VRRP runner), and the error names the step and the
        // rollback's outcome. An operator apply takes over from a store fault's
        // hands-off start.
        self.state.take_over();
        let before = self.state.applied.clone();
        let health_before = self.state.health_map().clone();
        let steps = apply::plan(c);
        let mut net = String::new();
        let mut table = None;
        for &step in &steps {
            let r = match step {
                Step::VrrpStop | Step::Vrrp => self.ha_reconcile(c),
                Step::Network => self.apply_system(c).map(|n| {
                    self.state.clear_net_fault();
                    net = n;
                }),
                Step::Prober => {
                    self.dev.prober.update(c);
                    // Forget health of servers that left the config.
                    self.state.forget_health_outside(c);
                    Ok(())
                }
                Step::Table => match self.sync(c) {
                    Some(r) => {
                        table = Some(r);
                        Ok(())
                    }
                    None => Err(self
                        .fault()
                        .unwrap_or_else(|| "IPVS sync failed for an unknown reason".into())),
                },
                Step::SyncDaemons => self.sync_daemons(c),
            };
            if let Err(e) = r {
                warn!(step = step.name(), error = %e, "apply failed; rolling back");
                let Some(before) = before.as_ref() else {
                    return Err(EffectError(format!(
                        "{e}; nothing applied since start to roll back to; check 'appliance net show'"
                    )));
                };
                let parts = apply::rollback(&steps, step);
                let problems = self.restore(before, health_before, &parts);
                return Err(EffectError(apply::failure_message(
                    step, &e, &parts, &problems,
                )));
            }
        }
        self.state.applied = Some(c.clone());
        self.update_leds(c);
        let (ops, services, dests) =
            table.map_or((0, 0, 0), |r| (r.ops.len(), r.services, r.dests));
        Ok(format!(
            "{net}, {ops} IPVS change(s), table verified ({services} service(s), {dests} server(s))"
        ))
    }

    /// Put `parts` back to `before` (the config that ran before a failed apply) and the
    /// prober's health to `health`; returns what could not be put back.
    fn restore(
        &mut self,
        before: &Config,
        health: HashMap<ServerKey, HealthEntry>,
        parts: &[Step],
    ) -> Vec<String> {
        let mut failed = Vec::new();
        for part in parts {
            match part {
                Step::Network => {
                    if let Err(e) = self.apply_system(before) {
                        failed.push(format!("network: {e}"));
                    }
                }
                Step::Prober => {
                    self.dev.prober.update(before);
                    self.state.restore_health(health.clone());
                }
                Step::Table => {
                    if self.sync(before).is_none() {
                        failed.push(self.fault().unwrap_or_else(|| "IPVS sync failed".into()));
                    }
                }
                Step::SyncDaemons => {
                    if let Err(e) = self.sync_daemons(before) {
                        failed.push(e);
                    }
                }
                Step::VrrpStop | Step::Vrrp => {
                    if let Err(e) = self.ha_reconcile(before) {
                        failed.push(format!("VRRP: {e}"));
                    }
                }
            }
        }
        if !failed.is_empty() {
            warn!(failed = ?failed, "rollback incomplete");
        }
        self.update_leds(before);
        failed
    }
}

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
