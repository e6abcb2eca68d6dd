//! The daemon: loads config, applies network and IPVS state, runs probers and serves control.
//!
//! Start-up is idempotent: the kernel's IPVS table is adopted, never flushed, and servers
//! whose health is not known yet keep the weight the kernel already gives them, so a
//! respawned daemon disturbs no call. After that, every health transition and a periodic
//! tick reconcile the kernel table against config + health (the tick also repairs drift).

pub mod apply;
pub mod ha;
pub mod ha_runner;
pub mod handler;
pub mod live;
pub mod logbuf;
pub mod state;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{error, info, warn};
use tracing_subscriber::prelude::*;

use crate::config::{self, board::Board, Config};
use crate::control::session::ConfigSession;
use crate::store::{Origin, Store};

pub use live::Live;

/// How often the daemon re-reads the kernel table, repairs drift and refreshes stats.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(2);

/// Command-line options of `appliance daemon`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Print the plan and exit without touching the system.
    pub dry_run: bool,
    /// Use this TOML config instead of the store (tests, dry runs).
    pub config: Option<PathBuf>,
    /// Board facts file.
    pub board: PathBuf,
    /// Control socket path.
    pub socket: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dry_run: false,
            config: None,
            board: PathBuf::from(config::board::BOARD_PATH),
            socket: PathBuf::from(crate::control::proto::DEFAULT_SOCKET),
        }
    }
}

/// Run the service with typed options (`appliance daemon`); returns when it stops.
pub fn start(opts: Options) -> ExitCode {
    if opts.dry_run {
        return dry_run(&opts);
    }
    let ring = logbuf::LogRing::new();
    init_tracing(ring.clone());
    if disabled_on_cmdline(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default()) {
        // Test images isolate a layer (e.g. the IPVS kernel tests) by booting with the
        // daemon off; idle instead of exiting so init does not respawn us in a loop.
        info!("appliance.daemon=off on the kernel command line: not starting");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(opts, ring)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "daemon stopped");
            ExitCode::FAILURE
        }
    }
}

/// True when the kernel command line asks for the daemon to stay off.
fn disabled_on_cmdline(cmdline: &str) -> bool {
    cmdline
        .split_whitespace()
        .any(|w| w == "appliance.daemon=off")
}

fn init_tracing(ring: logbuf::LogRing) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("APPLIANCE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(true);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(ring)
        .try_init();
}

/// The configuration the daemon starts with, and why.
pub struct Startup {
    /// Config to run.
    pub config: Config,
    /// What flash holds (equal to `config` unless flash was empty/corrupt or `--config` was given).
    pub saved: Config,
    /// Human-readable origin for the log and console.
    pub origin: String,
    /// Alerts for the console (e.g. corrupt store).
    pub alerts: Vec<String>,
    /// Why the store could not be loaded (not for an empty store or `--config`): the
    /// daemon then keeps the kernel's state and refuses saves over the store.
    pub store_fault: Option<String>,
    /// The console password hash of a stored record that was read but cannot run (it fails
    /// validation); empty otherwise. Only a record's hash may stand in during a store fault,
    /// never the factory config's.
    pub stored_hash: String,
}

/// Load the factory config: the board's file, else the built-in demo config (with an alert).
pub fn factory_config(board: &Board, alerts: &mut Vec<String>) -> Config {
    match config::load_factory(&board.factory) {
        Ok(c) => c,
        Err(e) => {
            let msg = format!(
                "factory config {} unusable ({e}); using the built-in defaults",
                board.factory
            );
            warn!("{msg}");
            alerts.push(msg);
            Config::builtin_default()
        }
    }
}

/// Decide the start-up config: `--config` file, else the store's newest valid record, else factory.
pub fn startup_config(opts: &Options, board: &Board, store: Option<&mut Store>) -> Startup {
    let mut alerts = Vec::new();
    let factory = factory_config(board, &mut alerts);
    if let Some(path) = &opts.config {
        match config::text::read_file(path) {
            Ok(c) => {
                return Startup {
                    saved: c.clone(),
                    config: c,
                    origin: format!("file {}", path.display()),
                    alerts,
                    store_fault: None,
                    stored_hash: String::new(),
                }
            }
            Err(e) => {
                let msg = format!("--config {}: {e}; using factory defaults", path.display());
                error!("{msg}");
                alerts.push(msg);
                return Startup {
                    saved: factory.clone(),
                    config: factory,
                    origin: "factory defaults".into(),
                    alerts,
                    store_fault: None,
                    stored_hash: String::new(),
                };
            }
        }
    }
    let Some(store) = store else {
        alerts.push("config store unavailable: running factory defaults, saves will fail".into());
        return Startup {
            saved: factory.clone(),
            config: factory,
            origin: "factory defaults (no store)".into(),
            alerts,
            store_fault: Some("no config store could be opened".into()),
            stored_hash: String::new(),
        };
    };
    match store.load() {
        Ok(l) => {
            for n in &l.notes {
                info!(note = %n, "store");
            }
            let origin = match l.origin {
                Origin::SlotA | Origin::SlotB => {
                    format!("store {:?} generation {}", l.origin, l.generation)
                }
                Origin::Empty => {
                    info!("config store is empty (first boot or factory reset): using factory defaults");
                    return Startup {
                        saved: factory.clone(),
                        config: factory,
                        origin: "factory defaults (store empty)".into(),
                        alerts,
                        store_fault: None,
                        stored_hash: String::new(),
                    };
                }
                Origin::BothCorrupt => {
                    let msg = "both config store slots are corrupt: running factory defaults; \
                               the slots are left untouched until the next save"
                        .to_string();
                    error!("{msg}");
                    alerts.push(msg);
                    return Startup {
                        saved: factory.clone(),
                        config: factory,
                        origin: "factory defaults (store corrupt)".into(),
                        alerts,
                        store_fault: Some("both slots are corrupt".into()),
                        stored_hash: String::new(),
                    };
                }
            };
            let report = config::validate(&l.config);
            if !report.errors.is_empty() {
                // Only valid configs are ever saved; a newer firmware may be stricter.
                for line in report.lines() {
                    error!(problem = %line, "stored config");
                }
                let msg = format!(
                    "stored config has {} error(s) under this firmware: running factory defaults (fix and save again)",
                    report.errors.len()
                );
                alerts.push(msg);
                return Startup {
                    stored_hash: l.config.console.password_hash.to_string(),
                    saved: l.config,
                    config: factory,
                    origin: "factory defaults (stored config invalid)".into(),
                    alerts,
                    store_fault: Some(
                        "the stored config does not validate under this firmware".into(),
                    ),
                };
            }
            Startup {
                saved: l.config.clone(),
                config: l.config,
                origin,
                alerts,
                store_fault: None,
                stored_hash: String::new(),
            }
        }
        Err(e) => {
            let msg = format!("cannot read the config store: {e}; running factory defaults");
            error!("{msg}");
            alerts.push(msg);
            Startup {
                saved: factory.clone(),
                config: factory,
                origin: "factory defaults (store unreadable)".into(),
                alerts,
                store_fault: Some(format!("unreadable: {e}")),
                stored_hash: String::new(),
            }
        }
    }
}

fn open_store(board: &Board) -> Option<Store> {
    let mut specs = vec![board.store.clone()];
    if !board.store_fallback.is_empty() {
        specs.push(board.store_fallback.clone());
    }
    for spec in specs {
        match Store::open(&spec) {
            Ok(s) => {
                info!(store = %s.describe(), "config store opened");
                return Some(s);
            }
            Err(e) => warn!(store = %spec, error = %e, "cannot open config store"),
        }
    }
    None
}

/// `--dry-run`: print what would be applied; touch nothing.
fn dry_run(opts: &Options) -> ExitCode {
    let board = Board::load_or_default(&opts.board);
    let mut store = if opts.config.is_none() {
        open_store(&board)
    } else {
        None
    };
    let st = startup_config(opts, &board, store.as_mut());
    println!("# config: {}", st.origin);
    for a in &st.alerts {
        println!("# alert: {a}");
    }
    let report = config::validate(&st.config);
    for line in report.lines() {
        println!("# {line}");
    }
    println!("\n## network plan");
    match crate::net::dry_run(&st.config) {
        Ok(ops) if ops.is_empty() => println!("(no changes)"),
        Ok(ops) => ops.iter().for_each(|o| println!("{o}")),
        Err(e) => println!("(cannot plan against this system: {e})"),
    }
    println!("\n## IPVS plan (all servers assumed healthy)");
    let up = |_: &str, _| crate::probe::Health::Up;
    let mut desired = crate::ipvs::reconcile::desired(&st.config, &up);
    let actual = crate::ipvs::Ipvs::connect()
        .and_then(|mut i| i.dump())
        .unwrap_or_else(|e| {
            println!("(kernel table not readable: {e}; planning from an empty table)");
            Vec::new()
        });
    // Servers no longer in the config that still carry calls are drained, not deleted.
    let now = std::time::Instant::now();
    let mut drains = crate::ipvs::drain::DrainBook::new();
    drains.extend(
        &mut desired,
        &st.config,
        &up,
        crate::ipvs::Role::Active,
        &actual,
        now,
    );
    for d in drains.view(now) {
        println!(
            "drain server {} of {} (weight 0; {} connection(s) left; deleted when none are left or after {} s)",
            d.server, d.service, d.conns, d.grace_left_s
        );
    }
    let ops = crate::ipvs::reconcile::plan(&desired, &actual);
    if ops.is_empty() {
        println!("(no changes)");
    }
    for op in ops {
        println!("{op}");
    }
    println!("\n## IPVS sync daemon plan");
    let want = crate::ipvs::syncd::desired(&st.config);
    let running = crate::ipvs::Ipvs::connect()
        .and_then(|mut i| i.daemons())
        .unwrap_or_else(|e| {
            println!("(sync daemons not readable: {e}; planning from none running)");
            Vec::new()
        });
    let lines = crate::ipvs::syncd::describe(&want, &running);
    if lines.is_empty() {
        println!("(no changes)");
    }
    for l in lines {
        println!("{l}");
    }
    if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Shared daemon state: the config session wired to the live system.
pub type Shared = Arc<Mutex<ConfigSession<Live>>>;

/// Work the event loop does under the session; queued while a request holds it.
enum Pending {
    Health(Vec<crate::probe::HealthEvent>),
    Ha(crate::vrrp::tasks::Notice),
    Link(crate::net::LinkEvent),
    Tick,
}

/// How often queued work retries a session held by a control request.
const PENDING_RETRY: Duration = Duration::from_millis(50);

/// Lock the shared state; a poisoned lock (a panic mid-update) still holds usable data.
pub fn lock(s: &Shared) -> std::sync::MutexGuard<'_, ConfigSession<Live>> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

async fn run(opts: Options, ring: logbuf::LogRing) -> Result<(), DaemonError> {
    let started = Instant::now();
    info!(version = crate::VERSION, "appliance daemon starting");
    let board = Board::load_or_default(&opts.board);

    let live_tasks = crate::watchdog::Liveness::new();
    // One store writer at a time: held while the daemon runs; offline writers route through
    // the control socket meanwhile (store::lock). Waits out an offline writer's save.
    let _store_lock = hold_store_lock();
    let mut store = open_store(&board);
    let st = startup_config(&opts, &board, store.as_mut());
    info!(origin = %st.origin, hostname = %st.config.hostname, "configuration loaded");

    // A/B firmware: the booted slot and whether it is on trial (read before the watchdog).
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let mut fw_trial = crate::firmware::trial::Trial::start(board.firmware.as_ref(), &cmdline);
    // On a trial boot rcS armed the watchdog already; take it over even when the config has
    // it off, so a daemon that hangs still sends the box back to the old slot. It is
    // disarmed again once the slot is marked good.
    let trial_watchdog =
        !st.config.watchdog.enabled && fw_trial.as_ref().is_some_and(|t| t.on_trial);
    // Opening the device arms it: only do so when the config wants a watchdog.
    let wd = if board.watchdog.is_empty() || !(st.config.watchdog.enabled || trial_watchdog) {
        if !st.config.watchdog.enabled {
            info!("hardware watchdog disabled in config");
        }
        None
    } else {
        match crate::watchdog::Watchdog::open(
            std::path::Path::new(&board.watchdog),
            st.config.watchdog.timeout_s,
        ) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "hardware watchdog not available");
                None
            }
        }
    };
    let history = crate::watchdog::log_restart_reason(
        wd.as_ref(),
        &crate::watchdog::restart::StartLog::new(
            std::path::Path::new(crate::watchdog::restart::START_LOG),
            crate::watchdog::restart::CRASH_WINDOW_S,
            crate::watchdog::restart::CRASH_THRESHOLD,
        ),
    )
    .ok();
    let mut alerts = st.alerts.clone();
    if let Some(h) = &history {
        if h.crash_loop {
            alerts.push(h.describe());
        }
    }

    // A/B firmware: record a bootloader fallback, and on a trial boot that already crash-loops,
    // reboot at once so the bootloader falls back to the other slot.
    if let Some(why) = fw_trial.as_ref().and_then(|t| t.fallback.clone()) {
        alerts.push(why);
    }
    if fw_trial.as_ref().is_some_and(|t| t.on_trial)
        && history.as_ref().is_some_and(|h| h.crash_loop)
    {
        error!("firmware slot on trial crash-loops: rebooting so the bootloader falls back");
        let _ = handler::power("reboot");
    }

    let watchdog_armed = wd.is_some();
    let recent_starts = history.as_ref().map_or(0, |h| h.starts_in_window as u64);
    let (health_tx, mut health_rx) = mpsc::channel(1024);
    let (link_tx, mut link_rx) = mpsc::channel(64);
    let leds_uleds = live::create_uleds(&board);
    let mut live = Live::start(live::StartOptions {
        board: &board,
        config: &st.config,
        store,
        health_tx,
        ring,
        alerts,
        started,
        crash_loop: history.map(|h| h.crash_loop).unwrap_or(false),
        uleds: leds_uleds,
    });
    let (ha_tx, mut ha_rx) = mpsc::channel(256);
    if let Some(f) = st.store_fault.clone() {
        live.set_store_fault(f);
    }
    live.attach_ha(ha_tx);
    let mut session = ConfigSession::new(st.saved.clone(), st.config.clone(), live);
    // Login back-off survives a daemon crash (tmpfs); a reboot clears it.
    session.set_backoff_file(
        crate::control::password::BACKOFF_FILE.into(),
        crate::control::password::boot_clock(),
    );
    // The console never runs on the factory config's password during a store fault.
    session.keep_password(
        crate::control::password::KNOWN_HASH_FILE.into(),
        st.store_fault.as_deref(),
        &st.stored_hash,
    );
    session
        .effects_mut()
        .set_start_facts(watchdog_armed, recent_starts);
    let shared: Shared = Arc::new(Mutex::new(session));

    // First apply: network, sysctls, IPVS adoption.
    {
        let mut s = lock(&shared);
        let cfg = s.running().clone();
        s.effects_mut().apply_boot(&cfg);
    }

    let _monitor = match crate::net::monitor::spawn(link_tx) {
        Ok(m) => Some(m),
        Err(e) => {
            warn!(error = %e, "link monitor not available");
            None
        }
    };

    let handler = Arc::new(handler::DaemonHandler::new(shared.clone()));
    let server = crate::control::server::serve(&opts.socket, handler)
        .map_err(|e| DaemonError::Control(e.to_string()))?;
    info!(socket = %opts.socket.display(), "control socket ready");
    let mut metrics = MetricsState::new(&shared);
    metrics.reconcile(lock(&shared).running());

    let main_beat = live_tasks.register("main loop", Duration::from_secs(5));
    let prober_hb = lock(&shared).effects().prober_heartbeat();
    let prober_beat = live_tasks.register("prober", Duration::from_secs(5));
    let mut kicker = wd.map(|w| {
        let period = Duration::from_secs(u64::from(w.timeout_s().max(3) / 3));
        crate::watchdog::spawn_kicker(w, live_tasks.clone(), period)
    });

    let mut tick = tokio::time::interval(RESYNC_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| DaemonError::Signal(e.to_string()))?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| DaemonError::Signal(e.to_string()))?;
    info!(
        ready_ms = started.elapsed().as_millis() as u64,
        "appliance daemon ready"
    );

    // Events that arrived while a control request held the session (a password hash,
    // an import): the loop never waits for it, they are handled once it is free.
    let mut pending: Vec<Pending> = Vec::new();
    loop {
        tokio::select! {
            Some(ev) = health_rx.recv() => {
                let mut batch = vec![ev];
                // Coalesce a burst (e.g. link down marks every server) into one sync.
                while let Ok(more) = health_rx.try_recv() {
                    batch.push(more);
                }
                pending.push(Pending::Health(batch));
            }
            Some(n) = ha_rx.recv() => pending.push(Pending::Ha(n)),
            Some(ev) = link_rx.recv() => pending.push(Pending::Link(ev)),
            _ = tick.tick() => {
                main_beat.beat();
                // The prober's own heartbeat proves its supervisor task still runs.
                if prober_hb.age() < Duration::from_secs(5) {
                    prober_beat.beat();
                }
                pending.push(Pending::Tick);
            }
            _ = tokio::time::sleep(PENDING_RETRY), if !pending.is_empty() => {}
            _ = sigterm.recv() => { info!("SIGTERM: orderly stop"); break; }
            _ = sigint.recv() => { info!("SIGINT: orderly stop"); break; }
        }
        if pending.is_empty() {
            continue;
        }
        let mut s = match shared.try_lock() {
            Ok(s) => s,
            // A panic mid-update still leaves usable data (see `lock`).
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            // Held by a control request on the blocking pool: retry shortly.
            Err(std::sync::TryLockError::WouldBlock) => continue,
        };
        let cfg = s.running().clone();
        let mut reboot = false;
        let mut ticked = false;
        for p in pending.drain(..) {
            match p {
                Pending::Health(batch) => s.effects_mut().on_health(&cfg, batch),
                Pending::Ha(n) => s.effects_mut().on_ha_notice(&cfg, n),
                Pending::Link(ev) => s.effects_mut().on_link(&cfg, ev),
                Pending::Tick => {
                    s.effects_mut().on_tick(&cfg);
                    ticked = true;
                    if let Some(t) = fw_trial.as_mut().filter(|t| !t.marked) {
                        let facts = crate::firmware::trial::Facts {
                            daemon_ready: true,
                            // A network fault (e.g. a missing interface) is the config's, not
                            // the firmware's: rolling back would not fix it.
                            table_verified: s.effects().ipvs_fault().is_none(),
                            ha_enabled: cfg.ha.enabled,
                            peer_seen: s.effects_mut().ha_view().peer.is_some(),
                        };
                        let d =
                            crate::firmware::trial::decide(facts, t.on_trial, started.elapsed());
                        reboot |= t.act(&d);
                    }
                }
            }
        }
        drop(s);
        if ticked {
            // The endpoint follows the running config (address, port, allow list).
            metrics.reconcile(&cfg);
        }
        if reboot {
            let _ = handler::power("reboot");
        }
        if trial_watchdog && fw_trial.as_ref().is_some_and(|t| t.marked) {
            if let Some(k) = kicker.take() {
                // Off the loop: the loop never waits.
                tokio::spawn(async move {
                    match k.stop().await {
                        Ok(()) => info!("slot marked good: watchdog disarmed (off in config)"),
                        Err(e) => warn!(error = %e, "watchdog magic close failed"),
                    }
                });
            }
        }
    }

    server.abort();
    // Resign before exiting so the peer takes over after its skew time, not 3 intervals.
    lock(&shared).effects_mut().ha_shutdown();
    if let Some(k) = kicker {
        match k.stop().await {
            Ok(()) => info!("watchdog disarmed (magic close)"),
            Err(e) => warn!(error = %e, "watchdog magic close failed"),
        }
    }
    // The IPVS table is left in place on purpose: calls keep flowing while init restarts us.
    info!("appliance daemon stopped; IPVS table left in place");
    Ok(())
}

/// The metrics endpoint, kept in line with the running config's `[management]`.
struct MetricsState {
    source: crate::metrics::SnapshotFn,
    endpoint: Option<crate::metrics::Endpoint>,
    /// The last bind error (logged once, retried every tick: the address may appear later).
    error: Option<String>,
}

impl MetricsState {
    fn new(shared: &Shared) -> MetricsState {
        let shared = shared.clone();
        let source: crate::metrics::SnapshotFn = Arc::new(move || {
            let s = lock(&shared);
            s.effects().metrics_snapshot(s.running())
        });
        MetricsState {
            source,
            endpoint: None,
            error: None,
        }
    }

    /// Start, move or stop the endpoint to match `cfg`.
    fn reconcile(&mut self, cfg: &Config) {
        let want = crate::metrics::binding(cfg);
        if self.endpoint.as_ref().map(|e| e.binding()) == want.as_ref() {
            return;
        }
        if self.endpoint.take().is_some() && want.is_none() {
            info!("metrics endpoint stopped (metrics off)");
        }
        let Some(b) = want else {
            self.error = None;
            return;
        };
        match crate::metrics::Endpoint::start(b, self.source.clone()) {
            Ok(e) => {
                self.endpoint = Some(e);
                self.error = None;
            }
            Err(e) => {
                let msg = e.to_string();
                if self.error.as_deref() != Some(msg.as_str()) {
                    warn!("{msg}");
                }
                self.error = Some(msg);
            }
        }
    }
}

/// Fatal daemon errors.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Control socket could not be created.
    #[error("control socket: {0}")]
    Control(String),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signal(String),
}

/// Take the store writer lock for the daemon's lifetime; without it the daemon still runs
/// (it must), with a warning.
fn hold_store_lock() -> Option<crate::store::lock::StoreLock> {
    let path = std::path::Path::new(crate::store::lock::LOCK_FILE);
    match crate::store::lock::StoreLock::acquire_within(path, std::time::Duration::from_secs(10)) {
        Ok(l) => Some(l),
        Err(e) => {
            warn!(error = %e, "running without the store lock: offline config writers are not kept out");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_off_only_with_the_exact_flag() {
        assert!(disabled_on_cmdline(
            "console=ttyS0 appliance.daemon=off quiet"
        ));
        assert!(!disabled_on_cmdline("console=ttyS0 appliance.daemon=offx"));
        assert!(!disabled_on_cmdline(""));
    }

    #[test]
    fn startup_uses_factory_when_store_empty_and_store_when_saved() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("store.bin");
        std::fs::write(&disk, vec![0xFFu8; 256 * 1024]).unwrap();
        let factory_path = dir.path().join("factory.toml");
        let mut factory = Config::builtin_default();
        factory.hostname = config::model::bounded("factory-box");
        std::fs::write(&factory_path, config::to_toml(&factory)).unwrap();
        let board = Board {
            factory: factory_path.display().to_string(),
            store: format!("file:{}", disk.display()),
            ..Board::default()
        };
        let opts = Options::default();
        let mut store = Store::open(&board.store).unwrap();
        let st = startup_config(&opts, &board, Some(&mut store));
        assert_eq!(st.config.hostname.as_str(), "factory-box");
        assert!(st.origin.contains("store empty"), "{}", st.origin);
        assert_eq!(
            st.store_fault, None,
            "an empty store is a first boot, not a fault"
        );

        let mut saved = factory.clone();
        saved.hostname = config::model::bounded("saved-box");
        store.save(&saved).unwrap();
        let mut store = Store::open(&board.store).unwrap();
        let st = startup_config(&opts, &board, Some(&mut store));
        assert_eq!(st.config.hostname.as_str(), "saved-box");
        assert_eq!(st.saved, st.config);
        assert_eq!(st.store_fault, None);

        // Both slots damaged: a fault, so the daemon keeps the kernel's state.
        let mut img = std::fs::read(&disk).unwrap();
        for b in img.iter_mut().step_by(97) {
            *b ^= 0x55;
        }
        std::fs::write(&disk, &img).unwrap();
        let mut store = Store::open(&board.store).unwrap();
        let st = startup_config(&opts, &board, Some(&mut store));
        assert!(st.origin.contains("corrupt"), "{}", st.origin);
        assert!(st.store_fault.is_some());
        assert_eq!(
            st.stored_hash, "",
            "no record was read: no hash may stand in"
        );
        // No store at all is a fault too.
        let st = startup_config(&opts, &board, None);
        assert!(st.store_fault.is_some());
    }

    #[test]
    fn startup_with_broken_factory_file_falls_back_to_builtin_with_alert() {
        let dir = tempfile::tempdir().unwrap();
        let factory_path = dir.path().join("factory.toml");
        std::fs::write(&factory_path, "hostname = [").unwrap();
        let board = Board {
            factory: factory_path.display().to_string(),
            ..Board::default()
        };
        let st = startup_config(&Options::default(), &board, None);
        assert_eq!(st.config, Config::builtin_default());
        assert!(
            st.alerts.iter().any(|a| a.contains("factory config")),
            "{:?}",
            st.alerts
        );
        assert!(
            st.alerts.iter().any(|a| a.contains("store unavailable")),
            "{:?}",
            st.alerts
        );
    }
}
