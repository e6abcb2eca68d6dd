//! An in-memory daemon for tests and demos: a [`Handler`] backed by [`ConfigSession`]
//! with recorded (not performed) side effects and scripted live data.
//!
//! Nothing here touches the network, IPVS or flash. It validates with the real
//! `config::validate`, like the daemon. Its keepalived "importer" maps
//! only `real_server A P` lines and reports every other keyword line as unmapped.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{AdminState, Config, Forwarding};
use crate::control::proto::{
    DrainInfo, FirmwareAction, FirmwareInfo, FirmwareJob, FirmwareSlot, IfaceInfo, ImportInfo,
    LogEvent, Reply, Request, Response, ServerRow, ServiceRow, SipReplyInfo, StatusInfo,
    UnmappedLine, Validation,
};
use crate::control::server::{BoxFuture, Handler};
use crate::control::session::{config_toml, ConfigSession, EffectError, Effects};
use crate::probe::Health;

/// Side effects that are recorded instead of performed.
#[derive(Default, Debug)]
pub struct MemEffects {
    /// Configs passed to `apply`, in order.
    pub applied: Vec<Config>,
    /// Configs passed to `save`, in order.
    pub saved: Vec<Config>,
}

impl Effects for MemEffects {
    fn validate(&self, c: &Config) -> Validation {
        fake_validate(c)
    }
    fn apply(&mut self, c: &Config) -> Result<String, EffectError> {
        self.applied.push(c.clone());
        Ok("in-memory apply (no kernel changes)".into())
    }
    fn save(&mut self, c: &Config) -> Result<u64, EffectError> {
        self.saved.push(c.clone());
        Ok(self.saved.len() as u64)
    }
}

/// The real rules (`config::validate`), so tests see the operator's messages.
fn fake_validate(c: &Config) -> Validation {
    Validation::from(&crate::config::validate(c))
}

/// Mutable state of the fake daemon.
pub struct FakeState {
    /// The config session.
    pub session: ConfigSession<MemEffects>,
    /// Health per server (default Up).
    pub health: HashMap<SocketAddrV4, Health>,
    /// Remaining calls per server for drain countdowns; decremented on each `DrainStatus`.
    pub remaining: HashMap<SocketAddrV4, u64>,
    /// Power and reset actions requested ("reboot", "poweroff", "factory-reset").
    pub actions: Vec<String>,
    /// Event ring.
    pub logs: Vec<LogEvent>,
    /// Alerts for the status header.
    pub alerts: Vec<String>,
    /// Manual clock for the password back-off (tests); `None` = real time since start.
    pub clock: Option<Duration>,
    /// A/B firmware as the fake shows it; an install advances one half per status poll.
    pub firmware: FirmwareInfo,
}

/// The fake daemon.
pub struct FakeDaemon {
    /// Shared state, inspect it from tests.
    pub state: Arc<Mutex<FakeState>>,
    started: Instant,
}

impl FakeDaemon {
    /// A fake daemon running `config` (saved = running = candidate).
    pub fn new(config: Config) -> FakeDaemon {
        let mut session = ConfigSession::new(config.clone(), config, MemEffects::default());
        // Cheap hashes keep debug-build tests fast; the PHC string records the parameters.
        session.set_hash_cost(256, 1);
        let logs = vec![LogEvent {
            uptime_s: 0,
            level: "info".into(),
            message: "fake daemon started".into(),
        }];
        FakeDaemon {
            state: Arc::new(Mutex::new(FakeState {
                session,
                health: HashMap::new(),
                remaining: HashMap::new(),
                actions: Vec::new(),
                logs,
                alerts: Vec::new(),
                clock: None,
                firmware: fake_firmware(),
            })),
            started: Instant::now(),
        }
    }

    /// Handle a request synchronously.
    pub fn handle_sync(&self, req: Request) -> Response {
        let Ok(mut st) = self.state.lock() else {
            return Response::error("fake daemon state poisoned");
        };
        let now = st.clock.unwrap_or_else(|| self.started.elapsed());
        if let Some(r) = st.session.handle(&req, now) {
            let msg = format!("{req:?}");
            let level = if matches!(r, Response::Error { .. }) {
                "warn"
            } else {
                "info"
            };
            let ev = LogEvent {
                uptime_s: now.as_secs(),
                level: level.into(),
                message: format!("control: {}", msg.chars().take(60).collect::<String>()),
            };
            if !matches!(
                req,
                Request::VerifyPassword { .. } | Request::SetPassword { .. }
            ) {
                st.logs.push(ev);
            }
            return r;
        }
        let ok = Response::Ok;
        match req {
            Request::Status => ok(Reply::Status(Box::new(status(&st, now)))),
            Request::ShowServers => ok(Reply::Servers(servers(&st))),
            Request::ShowServices => ok(Reply::Services(services(&st))),
            Request::DrainStatus { service, server } => {
                let run = st.session.running();
                let exists = run
                    .services
                    .iter()
                    .filter(|s| s.name.as_str() == service)
                    .flat_map(|s| s.servers.iter())
                    .any(|r| r.address == *server.ip() && r.port == server.port());
                if !exists {
                    return Response::error(format!(
                        "server {server} is not in running service '{service}'"
                    ));
                }
                let left = st.remaining.entry(server).or_insert(0);
                let now_left = *left;
                *left = left.saturating_sub(1);
                ok(Reply::Drain(DrainInfo {
                    server,
                    kernel_weight: Some(0),
                    remaining: now_left,
                }))
            }
            Request::FactoryReset { confirm, .. } => {
                if !confirm {
                    return Response::error("factory reset needs confirm: true");
                }
                st.actions.push("factory-reset".into());
                ok(Reply::Done {
                    message: "stored config erased; rebooting on factory defaults".into(),
                })
            }
            Request::Reboot => {
                st.actions.push("reboot".into());
                ok(Reply::Done {
                    message: "rebooting".into(),
                })
            }
            Request::PowerOff => {
                st.actions.push("poweroff".into());
                ok(Reply::Done {
                    message: "powering off".into(),
                })
            }
            Request::Ping { host, count } => ok(Reply::Output {
                success: true,
                lines: (0..count)
                    .map(|i| format!("64 bytes from {host}: seq={i} ttl=64 time=0.1 ms (fake)"))
                    .collect(),
            }),
            Request::SipOptions { host, port } => match host.parse() {
                Ok(ip) => ok(Reply::Sip(SipReplyInfo {
                    target: SocketAddrV4::new(ip, port),
                    code: Some(200),
                    reason: "OK".into(),
                    rtt_ms: Some(0.4),
                    text: "SIP/2.0 200 OK\r\nServer: fake\r\n".into(),
                })),
                Err(_) => Response::error(format!("'{host}' is not an IPv4 address")),
            },
            Request::Logs { n } => {
                let k = st.logs.len().saturating_sub(n as usize);
                ok(Reply::Logs(st.logs[k..].to_vec()))
            }
            Request::ListNics => ok(Reply::Nics(fake_nics())),
            Request::Firmware { action } => firmware(&mut st, action, now),
            Request::ImportKeepalived { text } => ok(Reply::Import(Box::new(import(
                st.session.candidate(),
                &text,
            )))),
            // The session answers these above; listed so a new request must be routed here.
            Request::GetConfig { .. }
            | Request::SetCandidate { .. }
            | Request::Diff
            | Request::Apply
            | Request::Save
            | Request::Revert { .. }
            | Request::ServerAction { .. }
            | Request::ImportConfig { .. }
            | Request::SetPassword { .. }
            | Request::VerifyPassword { .. } => {
                Response::error(format!("the config session did not answer {req:?}"))
            }
        }
    }
}

impl Handler for FakeDaemon {
    fn handle(&self, req: Request) -> BoxFuture<'_, Response> {
        Box::pin(std::future::ready(self.handle_sync(req)))
    }
}

/// Slot A 0.1.0 booted and good, slot B empty.
fn fake_firmware() -> FirmwareInfo {
    let slot = |name: &str, version: &str, state: &str, here: bool| FirmwareSlot {
        name: name.into(),
        version: version.into(),
        state: state.into(),
        booted: here,
        next: here,
    };
    FirmwareInfo {
        slots: vec![
            slot("A", "0.1.0", "good", true),
            slot("B", "", "empty", false),
        ],
        ..FirmwareInfo::default()
    }
}

/// The fake's firmware: a missing file is refused at once (as by the daemon); a URL whose
/// path does not end in `.bundle` fails like a 404 on the first poll; anything else
/// installs 0.2.0 into slot B over two polls.
fn firmware(st: &mut FakeState, action: FirmwareAction, now: Duration) -> Response {
    let log = |st: &mut FakeState, level: &str, message: String| {
        st.logs.push(LogEvent {
            uptime_s: now.as_secs(),
            level: level.into(),
            message,
        })
    };
    let mut message = String::new();
    match action {
        FirmwareAction::Status => {
            let fw = &mut st.firmware;
            let mut event = None;
            if let Some(j) = fw.job.as_mut().filter(|j| !j.finished) {
                if j.source.starts_with("http") && !j.source.ends_with(".bundle") {
                    j.finished = true;
                    j.error = Some(format!(
                        "{}: the server answered HTTP 404; check the path and that the bundle is published there",
                        j.source
                    ));
                    event = Some(("warn", format!("firmware install failed: {}", j.source)));
                } else {
                    j.total = 1000;
                    j.done = (j.done + 500).min(j.total);
                    j.step = format!("writing version 0.2.0 into slot B from {}", j.source);
                    if j.done == j.total {
                        j.finished = true;
                        j.result = Some("installed 0.2.0 into slot B; it boots next, on trial: reboot to run it".into());
                        fw.slots[1].version = "0.2.0".into();
                        fw.slots[1].state = "trial".into();
                        fw.slots[0].next = false;
                        fw.slots[1].next = true;
                        fw.last_event =
                            "installed 0.2.0 into slot B; it boots next, on trial".into();
                        event = Some((
                            "info",
                            format!("firmware installed; boots next on trial: {}", fw.last_event),
                        ));
                    }
                }
            }
            if let Some((level, m)) = event {
                log(st, level, m);
            }
        }
        FirmwareAction::Install { source, .. } => {
            if !crate::firmware::fetch::is_url(&source) {
                if let Err(e) = std::fs::metadata(&source) {
                    return Response::error(format!(
                        "{source}: {e}; give the path of a bundle on the box or an http(s):// URL"
                    ));
                }
            }
            if st.firmware.job.as_ref().is_some_and(|j| !j.finished) {
                return Response::error("an install is already running; wait for it to finish");
            }
            st.firmware.job = Some(FirmwareJob {
                source: source.clone(),
                step: format!("verifying {source}"),
                ..FirmwareJob::default()
            });
            message = format!("install of {source} started");
            log(st, "info", format!("firmware install started: {source}"));
        }
        FirmwareAction::Changed => {
            let m = format!(
                "firmware changed by the command line: {}",
                st.firmware.last_event
            );
            log(st, "info", m);
        }
        FirmwareAction::Rollback => {
            let fw = &mut st.firmware;
            let Some(other) = fw.slots.iter().position(|s| !s.booted) else {
                return Response::error("no other slot");
            };
            if fw.slots[other].version.is_empty() {
                return Response::error("slot B is empty: there is nothing to roll back to");
            }
            for (i, s) in fw.slots.iter_mut().enumerate() {
                s.next = i == other;
            }
            fw.last_event = format!(
                "rollback to slot {} requested by the operator",
                fw.slots[other].name
            );
            message = format!("{}: reboot to run it", fw.last_event);
            let m = format!("firmware rollback requested: {}", st.firmware.last_event);
            log(st, "info", m);
        }
    }
    Response::Ok(Reply::Firmware(Box::new(FirmwareInfo {
        message,
        ..st.firmware.clone()
    })))
}

fn health_of(st: &FakeState, s: SocketAddrV4) -> Health {
    st.health.get(&s).copied().unwrap_or(Health::Up)
}

fn status(st: &FakeState, now: Duration) -> StatusInfo {
    let run = st.session.running();
    let (mut up, mut total) = (0, 0);
    for s in &run.services {
        for r in &s.servers {
            total += 1;
            let sa = SocketAddrV4::new(r.address, r.port);
            if r.state == AdminState::Enabled && health_of(st, sa) == Health::Up {
                up += 1;
            }
        }
    }
    StatusInfo {
        hostname: run.hostname.to_string(),
        version: crate::VERSION.into(),
        wan: IfaceInfo {
            name: run.wan.name.to_string(),
            address: run.wan.address.to_string(),
            link_up: Some(true),
        },
        lan: IfaceInfo {
            name: run.lan.name.to_string(),
            address: run.lan.address.to_string(),
            link_up: Some(true),
        },
        vips: run
            .services
            .iter()
            .map(|s| format!("{}:{}", s.vip, s.port))
            .collect(),
        servers_up: up,
        servers_total: total,
        active_calls: st.remaining.values().sum(),
        unapplied: st.session.unapplied(),
        unsaved: st.session.unsaved(),
        candidate_errors: st.session.validation().errors.len() as u32,
        password_set: st.session.password_set(),
        login_blocked: st.session.login_blocked().map(str::to_owned),
        idle_lock_s: run.console.idle_lock_s,
        uptime_s: now.as_secs(),
        alerts: st.alerts.clone(),
        ha: None,
        ntp: crate::ntp::NtpStatus::default(),
        syslog: Vec::new(),
        draining: Vec::new(),
        firmware: st
            .firmware
            .slots
            .iter()
            .map(|s| format!("slot {} {} {}", s.name, s.version, s.state))
            .collect(),
    }
}

fn servers(st: &FakeState) -> Vec<ServerRow> {
    let run = st.session.running();
    let mut out = Vec::new();
    for s in &run.services {
        for r in &s.servers {
            let sa = SocketAddrV4::new(r.address, r.port);
            let h = health_of(st, sa);
            let kw = match r.state {
                AdminState::Disabled => None,
                AdminState::Draining => Some(0),
                AdminState::Enabled if h == Health::Up => Some(r.weight),
                AdminState::Enabled => Some(0),
            };
            let left = st.remaining.get(&sa).copied().unwrap_or(0) as u32;
            out.push(ServerRow {
                service: s.name.to_string(),
                server: sa,
                admin: r.state,
                health: h,
                reason: if h == Health::Up {
                    "200 OK".into()
                } else {
                    "3 timeouts".into()
                },
                weight: r.weight,
                kernel_weight: kw,
                rtt_last_us: Some(420),
                rtt_ewma_us: Some(450),
                active_conns: 0,
                inactive_conns: left,
                persistent_conns: left,
                calls_per_s: 0.5,
            });
        }
    }
    out
}

fn services(st: &FakeState) -> Vec<ServiceRow> {
    let run = st.session.running();
    run.services
        .iter()
        .map(|s| ServiceRow {
            name: s.name.to_string(),
            vip: SocketAddrV4::new(s.vip, s.port),
            scheduler: s.scheduler.kernel_name().into(),
            forwarding: match s.forwarding {
                Forwarding::Nat => "nat".into(),
                Forwarding::Dr => "dr".into(),
            },
            persistence_timeout: s.persistence_timeout,
            sip_persistence: s.sip_persistence,
            one_packet: s.one_packet,
            servers_up: s.servers.len() as u32,
            servers_total: s.servers.len() as u32,
            in_kernel: true,
            conns: 0,
            calls_per_s: 0.0,
        })
        .collect()
}

fn import(base: &Config, text: &str) -> ImportInfo {
    let mut c = base.clone();
    let mut unmapped = Vec::new();
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        let mut w = t.split_whitespace();
        match w.next() {
            None | Some("{") | Some("}") => {}
            Some(k) if k.starts_with('!') || k.starts_with('#') => {}
            Some("real_server") => {
                let ip = w.next().and_then(|x| x.parse().ok());
                let port = w.next().and_then(|x| x.parse().ok());
                match (ip, port) {
                    (Some(ip), Some(port)) => found.push(SocketAddrV4::new(ip, port)),
                    _ => unmapped.push(UnmappedLine {
                        line: i as u32 + 1,
                        text: line.into(),
                        reason: "real_server needs an IPv4 address and a port".into(),
                    }),
                }
            }
            Some(_) => unmapped.push(UnmappedLine {
                line: i as u32 + 1,
                text: line.into(),
                reason: "not understood by the fake importer".into(),
            }),
        }
    }
    let mut validation = Validation::default();
    if found.is_empty() {
        validation
            .errors
            .push("no real_server lines found; nothing to import".into());
        return ImportInfo {
            config: None,
            toml: String::new(),
            unmapped,
            validation,
        };
    }
    if let Some(svc) = c.services.first_mut() {
        svc.servers.clear();
        for sa in found {
            let _ = svc.servers.push(crate::config::RealServer {
                address: *sa.ip(),
                port: sa.port(),
                weight: 1,
                state: AdminState::Enabled,
            });
        }
    }
    validation = fake_validate(&c);
    ImportInfo {
        toml: config_toml(&c),
        config: Some(c),
        unmapped,
        validation,
    }
}

/// Three ports, as on a box with a spare NIC: the console tests assign from this list.
fn fake_nics() -> Vec<crate::net::nics::Nic> {
    [
        ("eth0", "52:54:00:12:34:01", Some(true), "virtio_net"),
        ("eth1", "52:54:00:12:34:02", Some(true), "virtio_net"),
        ("eth2", "52:54:00:12:34:03", Some(false), "igb"),
    ]
    .into_iter()
    .map(|(name, mac, link_up, driver)| crate::net::nics::Nic {
        name: name.into(),
        mac: mac.into(),
        link_up,
        driver: Some(driver.into()),
    })
    .collect()
}
