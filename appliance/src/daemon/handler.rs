//! The daemon's answers to control-socket requests (console and admin CLI).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use tracing::{info, warn};

use crate::config::{AdminState, Config, Forwarding};
use crate::control::proto::{
    DrainInfo, FirmwareAction, FirmwareInfo, IfaceInfo, ImportInfo, LogEvent, Reply, Request,
    Response, ServerRow, ServiceRow, SipReplyInfo, StatusInfo, UnmappedLine, Validation,
};
use crate::control::server::{BoxFuture, Handler};
use crate::control::session::config_toml;

use super::{lock, Shared};

/// Control handler over the shared daemon state.
pub struct DaemonHandler {
    shared: Shared,
    firmware: crate::firmware::ops::JobCell,
}

impl DaemonHandler {
    /// Wrap the shared state.
    pub fn new(shared: Shared) -> DaemonHandler {
        DaemonHandler {
            shared,
            firmware: Default::default(),
        }
    }
}

impl Handler for DaemonHandler {
    fn handle(&self, req: Request) -> BoxFuture<'_, Response> {
        Box::pin(async move {
            // Exhaustive on purpose: a new request kind does not compile until it is routed.
            let work = match req {
                Request::Ping { host, count } => return ping(&host, count).await,
                Request::SipOptions { host, port } => return self.sip_options(&host, port).await,
                Request::Reboot => return power("reboot"),
                Request::PowerOff => return power("poweroff"),
                Request::FactoryReset { confirm, reboot } => {
                    return self.factory_reset(confirm, reboot).await
                }
                Request::Save => return self.save().await,
                Request::ListNics => Work::Nics,
                Request::ImportKeepalived { text } => Work::ImportKeepalived(text),
                Request::Firmware { action } => Work::Firmware(action, self.firmware.clone()),
                Request::Status => Work::Live(LiveQuery::Status),
                Request::ShowServers => Work::Live(LiveQuery::Servers),
                Request::ShowServices => Work::Live(LiveQuery::Services),
                Request::DrainStatus { service, server } => {
                    Work::Live(LiveQuery::Drain { service, server })
                }
                Request::Logs { n } => Work::Live(LiveQuery::Logs { n }),
                Request::GetConfig { .. }
                | Request::SetCandidate { .. }
                | Request::Diff
                | Request::Apply
                | Request::Revert { .. }
                | Request::ServerAction { .. }
                | Request::ImportConfig { .. }
                | Request::SetPassword { .. }
                | Request::VerifyPassword { .. } => Work::Session(req),
            };
            // The rest may hash a password (argon2), import, apply or read sysfs: it runs on
            // the blocking pool so the event loop (probes, watchdog) never waits.
            let shared = self.shared.clone();
            tokio::task::spawn_blocking(move || work.run(&shared))
                .await
                .unwrap_or_else(|e| Response::error(format!("the request failed: {e}")))
        })
    }
}

/// A request answered on the blocking pool.
enum Work {
    /// Config requests: the session answers every one of them.
    Session(Request),
    /// Questions about live state.
    Live(LiveQuery),
    /// The network ports present.
    Nics,
    /// A keepalived.conf to convert.
    ImportKeepalived(String),
    /// A/B firmware (reads or writes the boot disk's environment).
    Firmware(FirmwareAction, crate::firmware::ops::JobCell),
}

/// The read-only questions about live state that the daemon answers itself.
enum LiveQuery {
    Status,
    Servers,
    Services,
    Drain {
        service: String,
        server: SocketAddrV4,
    },
    Logs {
        n: u32,
    },
}

impl Work {
    fn run(self, shared: &Shared) -> Response {
        match self {
            Work::Session(req) => session(shared, &req),
            Work::Live(q) => live(shared, q),
            Work::Nics => Response::Ok(Reply::Nics(crate::net::nics::list(std::path::Path::new(
                crate::net::nics::SYSFS_NET,
            )))),
            Work::ImportKeepalived(text) => import_keepalived(shared, &text),
            Work::Firmware(action, job) => firmware(action, &job),
        }
    }
}

impl DaemonHandler {
    /// Save the running config without holding the session while the medium syncs.
    async fn save(&self) -> Response {
        let (config, store) = {
            let s = lock(&self.shared);
            (s.running().clone(), s.effects().store())
        };
        let Some(store) = store else {
            return Response::error(format!(
                "save failed, flash still holds the previous config: {}",
                super::live::NO_STORE
            ));
        };
        match store.save(config.clone()).await {
            Ok(generation) => {
                let mut s = lock(&self.shared);
                s.effects_mut().saved_elsewhere(Ok(generation));
                let message = s.saved_as(config, generation);
                drop(s);
                info!(%message, "operator change");
                Response::Ok(Reply::Done { message })
            }
            Err(e) => {
                lock(&self.shared)
                    .effects_mut()
                    .saved_elsewhere(Err(e.to_string()));
                warn!(error = %e, "save failed");
                Response::error(format!(
                    "save failed, flash still holds the previous config: {e}"
                ))
            }
        }
    }
}

fn firmware(action: FirmwareAction, job: &crate::firmware::ops::JobCell) -> Response {
    use crate::firmware::ops;
    let b = match ops::BoxSlots::this_box() {
        Ok(b) => b,
        Err(e) => return Response::error(e),
    };
    let message = match action {
        FirmwareAction::Status => Ok(String::new()),
        FirmwareAction::Install { source, force } => ops::start_install(&b, job, &source, force),
        FirmwareAction::Rollback => ops::rollback(&b, "operator request over the control socket"),
        FirmwareAction::Changed => ops::info(&b, job).map(|i| {
            info!(event = %i.last_event, "firmware changed by the command line");
            String::new()
        }),
    };
    match message.and_then(|m| ops::info(&b, job).map(|i| (m, i))) {
        Ok((message, info)) => {
            Response::Ok(Reply::Firmware(Box::new(FirmwareInfo { message, ..info })))
        }
        Err(e) => Response::error(e),
    }
}

fn session(shared: &Shared, req: &Request) -> Response {
    let mut s = lock(shared);
    // The boot clock, not the daemon's own: the login back-off outlives a daemon restart.
    let now = crate::control::password::boot_clock();
    let Some(r) = s.handle(req, now) else {
        return Response::error(format!(
            "request {req:?} is not answered by the config session of this daemon"
        ));
    };
    if matches!(req, Request::Apply) {
        if let Response::Ok(Reply::Done { message }) = &r {
            info!(%message, "operator change");
        }
    }
    r
}

fn live(shared: &Shared, q: LiveQuery) -> Response {
    // Read from the boot disk before the session is locked.
    let firmware = match q {
        LiveQuery::Status => crate::firmware::ops::status_lines(),
        _ => Vec::new(),
    };
    {
        let s = lock(shared);
        let now = crate::control::password::boot_clock();
        let running = s.running().clone();
        let live = s.effects();
        match q {
            LiveQuery::Status => {
                let servers = server_rows(&running, live);
                let up = servers
                    .iter()
                    .filter(|r| {
                        r.admin == AdminState::Enabled && r.health == crate::probe::Health::Up
                    })
                    .count() as u32;
                let mut alerts = live.alerts().to_vec();
                if let Some(f) = live.fault() {
                    alerts.push(f);
                }
                if live.store_busy() {
                    alerts.push("saving the config to flash: in progress".into());
                }
                let v = s.validation();
                Response::Ok(Reply::Status(Box::new(StatusInfo {
                    hostname: running.hostname.to_string(),
                    version: crate::VERSION.to_string(),
                    wan: IfaceInfo {
                        name: running.wan.name.to_string(),
                        address: running.wan.address.to_string(),
                        link_up: live.link_up(running.wan.name.as_str()),
                    },
                    lan: IfaceInfo {
                        name: running.lan.name.to_string(),
                        address: running.lan.address.to_string(),
                        link_up: live.link_up(running.lan.name.as_str()),
                    },
                    vips: running
                        .services
                        .iter()
                        .map(|v| format!("{}:{}", v.vip, v.port))
                        .collect(),
                    servers_up: up,
                    servers_total: servers.len() as u32,
                    active_calls: servers.iter().map(|r| u64::from(r.persistent_conns)).sum(),
                    unapplied: s.unapplied(),
                    unsaved: s.unsaved(),
                    candidate_errors: v.errors.len() as u32,
                    password_set: s.password_set(),
                    login_blocked: s.login_blocked().map(str::to_owned),
                    idle_lock_s: running.console.idle_lock_s,
                    uptime_s: now.as_secs(),
                    alerts,
                    ha: live.ha_info(&running),
                    ntp: live.ntp_status(),
                    syslog: live.syslog_status(),
                    draining: draining_rows(live),
                    firmware,
                })))
            }
            LiveQuery::Servers => Response::Ok(Reply::Servers(server_rows(&running, live))),
            LiveQuery::Services => Response::Ok(Reply::Services(service_rows(&running, live))),
            LiveQuery::Drain { service, server } => {
                let Some(vs) = running.services.iter().find(|v| v.name.as_str() == service) else {
                    return Response::error(format!(
                        "there is no service named '{service}' (see 'appliance show services')"
                    ));
                };
                let vip = SocketAddrV4::new(vs.vip, vs.port);
                let (kernel_weight, remaining) = kernel_dest(live, vip, server)
                    .map(|(w, a, i, p)| (Some(w), u64::from(a) + u64::from(i) + u64::from(p)))
                    .unwrap_or((None, 0));
                Response::Ok(Reply::Drain(DrainInfo {
                    server,
                    kernel_weight,
                    remaining,
                }))
            }
            LiveQuery::Logs { n } => {
                let started_unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
                    .saturating_sub(now.as_secs());
                let events = live
                    .ring
                    .recent(n as usize)
                    .into_iter()
                    .map(|e| LogEvent {
                        uptime_s: e.unix_s.saturating_sub(started_unix),
                        level: e.level.to_lowercase(),
                        message: e.text,
                    })
                    .collect();
                Response::Ok(Reply::Logs(events))
            }
        }
    }
}

impl DaemonHandler {
    async fn sip_options(&self, host: &str, port: u16) -> Response {
        let ip: Ipv4Addr = match host.trim().parse() {
            Ok(ip) => ip,
            Err(_) => {
                return Response::error(format!(
                    "'{host}' is not an IPv4 address, e.g. 198.51.100.11"
                ))
            }
        };
        if port == 0 {
            return Response::error("port 0 is not allowed, SIP normally uses 5060");
        }
        let settings = {
            let s = lock(&self.shared);
            s.running()
                .services
                .first()
                .map(|v| v.probe.clone())
                .unwrap_or_default()
        };
        let target = SocketAddrV4::new(ip, port);
        let r = tokio::task::spawn_blocking(move || {
            crate::probe::once::options_once(target, &settings)
        })
        .await;
        match r {
            Ok(Ok(reply)) => Response::Ok(Reply::Sip(SipReplyInfo {
                target,
                code: Some(reply.code),
                reason: reply.reason.clone(),
                rtt_ms: Some(reply.rtt_us as f64 / 1000.0),
                text: reply
                    .headers
                    .iter()
                    .take(20)
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            })),
            Ok(Err(e)) => Response::Ok(Reply::Sip(SipReplyInfo {
                target,
                code: None,
                reason: e.to_string(),
                rtt_ms: None,
                text: String::new(),
            })),
            Err(e) => Response::error(format!("the SIP probe task failed: {e}")),
        }
    }

    async fn factory_reset(&self, confirm: bool, reboot: bool) -> Response {
        if !confirm {
            return Response::error("factory reset needs confirmation (confirm: true)");
        }
        let store = lock(&self.shared).effects().store();
        let Some(store) = store else {
            return Response::error("no config store on this box; nothing to reset");
        };
        if let Err(e) = store.erase().await {
            return Response::error(format!(
                "factory reset failed, the stored config is unchanged: {e}"
            ));
        }
        if !reboot {
            warn!("factory reset: stored config erased; factory defaults apply at the next start");
            return Response::Ok(Reply::Done {
                message: "config store erased; factory defaults apply at the next start".into(),
            });
        }
        warn!("factory reset: stored config erased, rebooting on factory defaults");
        match power("reboot") {
            Response::Ok(_) => Response::Ok(Reply::Done {
                message: "stored config erased; rebooting on factory defaults".into(),
            }),
            Response::Error { message } => Response::Ok(Reply::Done {
                message: format!(
                    "stored config erased; reboot to use factory defaults ({message})"
                ),
            }),
        }
    }
}

fn kernel_dest(
    live: &super::Live,
    vip: SocketAddrV4,
    server: SocketAddrV4,
) -> Option<(u32, u32, u32, u32)> {
    let s = live
        .table()
        .iter()
        .find(|s| s.key == crate::ipvs::codec::ServiceKey::udp(*vip.ip(), vip.port()))?;
    let d = s.dests.iter().find(|d| {
        d.key.addr == std::net::IpAddr::V4(*server.ip()) && d.key.port == server.port()
    })?;
    Some((
        d.params.weight,
        d.active_conns,
        d.inact_conns,
        d.persist_conns,
    ))
}

fn draining_rows(live: &super::Live) -> Vec<crate::control::proto::DrainingServer> {
    live.drains()
        .into_iter()
        .filter_map(|d| {
            let std::net::IpAddr::V4(a) = d.server.addr else {
                return None;
            };
            Some(crate::control::proto::DrainingServer {
                service: d.service,
                server: SocketAddrV4::new(a, d.server.port),
                state: "draining".into(),
                conns_left: d.conns,
                grace_left_s: d.grace_left_s,
            })
        })
        .collect()
}

fn server_rows(cfg: &Config, live: &super::Live) -> Vec<ServerRow> {
    let stats = live.prober().snapshot();
    let mut rows = Vec::new();
    for vs in &cfg.services {
        let vip = SocketAddrV4::new(vs.vip, vs.port);
        for rs in &vs.servers {
            let addr = SocketAddrV4::new(rs.address, rs.port);
            let h = live.health_of(vs.name.as_str(), addr);
            let probe = stats
                .iter()
                .find(|p| p.service.as_str() == vs.name.as_str() && p.server == addr);
            let k = kernel_dest(live, vip, addr);
            rows.push(ServerRow {
                service: vs.name.to_string(),
                server: addr,
                admin: rs.state,
                health: h.health,
                reason: probe
                    .map(|p| p.last_reason.clone())
                    .filter(|r| !r.is_empty())
                    .unwrap_or(h.reason),
                weight: rs.weight,
                kernel_weight: k.map(|k| k.0),
                rtt_last_us: probe.and_then(|p| p.rtt.last_us).map(clamp_u32),
                rtt_ewma_us: probe.and_then(|p| p.rtt.ewma_us).map(clamp_u32),
                active_conns: k.map(|k| k.1).unwrap_or(0),
                inactive_conns: k.map(|k| k.2).unwrap_or(0),
                persistent_conns: k.map(|k| k.3).unwrap_or(0),
                calls_per_s: live.rate(vip, addr),
            });
        }
    }
    rows
}

fn service_rows(cfg: &Config, live: &super::Live) -> Vec<ServiceRow> {
    let servers = server_rows(cfg, live);
    cfg.services
        .iter()
        .map(|vs| {
            let vip = SocketAddrV4::new(vs.vip, vs.port);
            let mine: Vec<&ServerRow> = servers
                .iter()
                .filter(|r| r.service == vs.name.as_str())
                .collect();
            ServiceRow {
                name: vs.name.to_string(),
                vip,
                scheduler: vs.scheduler.kernel_name().to_string(),
                forwarding: match vs.forwarding {
                    Forwarding::Nat => "nat".into(),
                    Forwarding::Dr => "dr".into(),
                },
                persistence_timeout: vs.persistence_timeout,
                sip_persistence: vs.sip_persistence,
                one_packet: vs.one_packet,
                servers_up: mine
                    .iter()
                    .filter(|r| {
                        r.admin == AdminState::Enabled && r.health == crate::probe::Health::Up
                    })
                    .count() as u32,
                servers_total: mine.len() as u32,
                in_kernel: live
                    .table()
                    .iter()
                    .any(|s| s.key == crate::ipvs::codec::ServiceKey::udp(vs.vip, vs.port)),
                conns: mine
                    .iter()
                    .map(|r| u64::from(r.active_conns) + u64::from(r.inactive_conns))
                    .sum(),
                calls_per_s: mine.iter().map(|r| r.calls_per_s).sum(),
            }
        })
        .collect()
}

fn import_keepalived(shared: &Shared, text: &str) -> Response {
    use crate::config::keepalived::Severity;
    let base = lock(shared).candidate().clone();
    let r = crate::config::keepalived::import_into(text, &base);
    let lines: Vec<&str> = text.lines().collect();
    let unmapped = r
        .notes
        .iter()
        .filter(|n| n.severity != Severity::Error)
        .map(|n| UnmappedLine {
            line: u32::try_from(n.line).unwrap_or(u32::MAX),
            text: lines
                .get(n.line.wrapping_sub(1))
                .map(|l| l.trim().to_string())
                .unwrap_or_default(),
            reason: n.message.clone(),
        })
        .collect();
    let validation = Validation {
        errors: r
            .notes
            .iter()
            .filter(|n| n.severity == Severity::Error)
            .map(ToString::to_string)
            .chain(r.report.errors.iter().map(|p| p.message.clone()))
            .collect(),
        warnings: r
            .report
            .warnings
            .iter()
            .map(|p| p.message.clone())
            .collect(),
    };
    let config = (r.services > 0).then_some(r.config);
    Response::Ok(Reply::Import(Box::new(ImportInfo {
        toml: config.as_ref().map(config_toml).unwrap_or_default(),
        config,
        unmapped,
        validation,
    })))
}

async fn ping(host: &str, count: u8) -> Response {
    let host = host.trim();
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':');
    if !valid || host.starts_with('-') {
        return Response::error(format!(
            "'{host}' is not a host name or IPv4 address, e.g. 198.51.100.11"
        ));
    }
    let count = count.clamp(1, 10);
    let out = tokio::time::timeout(
        Duration::from_secs(u64::from(count) + 5),
        tokio::process::Command::new("ping")
            .args(["-c", &count.to_string(), "-W", "1", host])
            .kill_on_drop(true)
            .output(),
    )
    .await;
    match out {
        Ok(Ok(o)) => {
            let mut lines: Vec<String> = String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect();
            lines.extend(
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .map(str::to_string),
            );
            Response::Ok(Reply::Output {
                success: o.status.success(),
                lines,
            })
        }
        Ok(Err(e)) => Response::error(format!("cannot run ping: {e}")),
        Err(_) => Response::error("ping did not finish in time"),
    }
}

/// Ask BusyBox init (PID 1) to reboot or power off; refuse anywhere else.
/// Ask BusyBox init to reboot or power off (refused under another init).
pub(crate) fn power(what: &str) -> Response {
    let init = std::fs::read_link("/proc/1/exe").unwrap_or_default();
    if !init.to_string_lossy().contains("busybox") {
        return Response::error(format!(
            "{what} refused: PID 1 is {} rather than the appliance's BusyBox init",
            init.display()
        ));
    }
    // BusyBox init: SIGTERM = reboot, SIGUSR2 = power off; both run the shutdown actions.
    let sig = if what == "reboot" {
        nix::sys::signal::Signal::SIGTERM
    } else {
        nix::sys::signal::Signal::SIGUSR2
    };
    warn!(action = what, "operator requested {what}");
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(1), sig) {
        Ok(()) => Response::Ok(Reply::Done {
            message: format!("{what} in progress"),
        }),
        Err(e) => Response::error(format!("cannot signal init for {what}: {e}")),
    }
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}
