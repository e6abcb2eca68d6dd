//! Kernel IPVS control over generic netlink: codec, transport and reconciler.
//!
//! - [`codec`]: pure encode/decode of the "IPVS" genl family (byte-vector tested);
//! - [`transport`]: neli socket, family lookup, ACK/dump handling;
//! - [`model`] + [`reconcile`]: pure desired-minus-actual planning;
//! - [`drain`]: pure quiesce-then-remove of servers the operator removed or disabled;
//! - [`Ipvs`] / [`Reconciler`]: dump → plan → apply → read back → verify;
//! - [`syncd`]: connection-sync daemons (HA);
//! - [`sysctl`]: data-path and sync sysctls.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

pub mod codec;
pub mod drain;
pub mod error;
pub mod model;
pub mod reconcile;
pub mod sync_pump;
pub mod syncd;
pub mod sysctl;
pub mod transport;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use codec::{
    DaemonConfig, DestEntry, DestKey, DestParams, FwdMethod, Info, ServiceKey, ServiceParams,
    Stats, Timeouts,
};
pub use error::{IpvsError, KernelError};
pub use model::{ActualService, DesiredService, Role, TableOp};
pub use transport::{Link, Transport};

use crate::config::Config;
use crate::probe::Health;
use codec::Request;

/// Handle on the kernel's IPVS table.
pub struct Ipvs {
    link: Box<dyn Link + Send>,
}

impl std::fmt::Debug for Ipvs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ipvs")
    }
}

impl Ipvs {
    /// Connect to the kernel (fails with [`IpvsError::NoIpvs`] without CONFIG_IP_VS).
    pub fn connect() -> Result<Ipvs, IpvsError> {
        Ok(Ipvs::with_link(Box::new(Transport::connect()?)))
    }

    /// Use another link (tests: the in-memory fake kernel).
    pub fn with_link(link: Box<dyn Link + Send>) -> Ipvs {
        Ipvs { link }
    }

    /// Execute one request, translating kernel errors.
    pub fn exec(&mut self, req: &Request) -> Result<Vec<Vec<u8>>, IpvsError> {
        self.link.exec(req).map_err(|e| IpvsError::Kernel {
            action: describe(req),
            errno: e.errno(),
            reason: error::explain(req, &e),
        })
    }

    /// Dump every service with its destinations and counters.
    pub fn dump(&mut self) -> Result<Vec<ActualService>, IpvsError> {
        let mut out = Vec::new();
        for raw in self.exec(&Request::GetServices)? {
            let e = codec::decode_service(&raw)?;
            let af = match e.key {
                ServiceKey::Addr { addr, .. } => codec::af_of(addr),
                ServiceKey::Fwmark { af, .. } => af,
            };
            let mut dests = Vec::new();
            for draw in self.exec(&Request::GetDests(e.key))? {
                dests.push(codec::decode_dest(&draw, af)?);
            }
            dests.sort_by_key(|d| d.key);
            out.push(ActualService {
                key: e.key,
                params: e.params,
                stats: e.stats,
                dests,
            });
        }
        out.sort_by_key(|s| s.key);
        Ok(out)
    }

    /// Apply operations in order; returns the failures ("<op> failed: <why>").
    ///
    /// Keeps going after a failure so one bad server does not block the others, but skips
    /// the remaining operations of a service whose creation failed (they could only fail
    /// with "service does not exist" and bury the real cause).
    pub fn apply_collect(&mut self, ops: &[TableOp]) -> Vec<String> {
        let mut failures = Vec::new();
        let mut dead = std::collections::BTreeSet::new();
        for op in ops {
            if dead.contains(&op.service()) {
                continue;
            }
            let req = op.to_request();
            if let Err(e) = self.link.exec(&req) {
                let why = error::explain(&req, &e);
                tracing::warn!(op = %op, error = %why, "IPVS change failed");
                failures.push(format!("{op} failed: {why}"));
                if matches!(op, TableOp::AddService { .. }) {
                    dead.insert(op.service());
                }
            } else {
                tracing::debug!(op = %op, "IPVS change applied");
            }
        }
        failures
    }

    /// Apply operations; any failure is an error listing every failed change.
    pub fn apply(&mut self, ops: &[TableOp]) -> Result<(), IpvsError> {
        let failures = self.apply_collect(ops);
        if failures.is_empty() {
            Ok(())
        } else {
            Err(IpvsError::Unverified {
                failures,
                differences: vec![],
            })
        }
    }

    /// GET_INFO.
    pub fn info(&mut self) -> Result<Info, IpvsError> {
        let r = self.exec(&Request::GetInfo)?;
        let first = r
            .first()
            .ok_or(codec::CodecError::Truncated("GET_INFO reply"))?;
        Ok(codec::decode_info(first)?)
    }

    /// GET_CONFIG (connection timeouts).
    pub fn timeouts(&mut self) -> Result<Timeouts, IpvsError> {
        let r = self.exec(&Request::GetConfig)?;
        let first = r
            .first()
            .ok_or(codec::CodecError::Truncated("GET_CONFIG reply"))?;
        Ok(codec::decode_config(first)?)
    }

    /// SET_CONFIG (None fields are left unchanged).
    pub fn set_timeouts(&mut self, t: Timeouts) -> Result<(), IpvsError> {
        self.exec(&Request::SetConfig(t)).map(|_| ())
    }

    /// GET_DAEMON dump.
    pub fn daemons(&mut self) -> Result<Vec<DaemonConfig>, IpvsError> {
        self.exec(&Request::GetDaemons)?
            .iter()
            .map(|b| codec::decode_daemon(b).map_err(IpvsError::from))
            .collect()
    }

    /// NEW_DAEMON (connection sync; used by HA later).
    pub fn start_daemon(&mut self, c: &DaemonConfig) -> Result<(), IpvsError> {
        self.exec(&Request::NewDaemon(c.clone())).map(|_| ())
    }

    /// DEL_DAEMON for a state (1 master, 2 backup).
    pub fn stop_daemon(&mut self, state: u32) -> Result<(), IpvsError> {
        self.exec(&Request::DelDaemon(state)).map(|_| ())
    }
}

/// Human description of a request for error messages.
fn describe(req: &Request) -> String {
    match req {
        Request::NewService(k, p) => format!("add service {k} ({})", model::params_text(p)),
        Request::SetService(k, p) => format!("change service {k} to ({})", model::params_text(p)),
        Request::DelService(k) => format!("remove service {k}"),
        Request::GetServices => "list IPVS services".into(),
        Request::NewDest(k, d, p) => format!("add server {d} (weight {}) to {k}", p.weight),
        Request::SetDest(k, d, p) => format!("set server {d} in {k} to weight {}", p.weight),
        Request::DelDest(k, d) => format!("remove server {d} from {k}"),
        Request::GetDests(k) => format!("list servers of {k}"),
        Request::GetInfo => "read IPVS info".into(),
        Request::NewDaemon(c) => format!("start sync daemon on {}", c.mcast_ifn),
        Request::DelDaemon(s) => format!("stop sync daemon (state {s})"),
        Request::GetDaemons => "list sync daemons".into(),
        Request::SetConfig(_) => "set IPVS timeouts".into(),
        Request::GetConfig => "read IPVS timeouts".into(),
    }
}

/// What one sync did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncReport {
    /// Operations applied (empty when the kernel already matched).
    pub ops: Vec<TableOp>,
    /// Services in the verified table.
    pub services: usize,
    /// Destinations in the verified table.
    pub dests: usize,
    /// Wall time of dump + apply + read-back.
    pub elapsed: Duration,
    /// Wall time of the apply step alone.
    pub apply_time: Duration,
    /// The verified table (with counters) as read back.
    pub table: Vec<ActualService>,
}

/// Keeps the kernel table equal to config + health (+ drains of removed servers).
#[derive(Debug)]
pub struct Reconciler {
    ipvs: Ipvs,
    drains: drain::DrainBook,
}

impl Reconciler {
    /// Wrap a connected [`Ipvs`].
    pub fn new(ipvs: Ipvs) -> Reconciler {
        Reconciler {
            ipvs,
            drains: drain::DrainBook::new(),
        }
    }

    /// The drains in progress (for status).
    pub fn drains(&self, now: Instant) -> Vec<drain::DrainView> {
        self.drains.view(now)
    }

    /// Hand the drains over to a new reconciler (the daemon reopens its netlink socket
    /// after an error; the grace of a drain in progress must not restart).
    pub fn take_drains(&mut self) -> drain::DrainBook {
        std::mem::take(&mut self.drains)
    }

    /// Continue the drains of an earlier reconciler.
    pub fn set_drains(&mut self, book: drain::DrainBook) {
        self.drains = book;
    }

    /// The underlying handle (for stats, info, timeouts).
    pub fn ipvs(&mut self) -> &mut Ipvs {
        &mut self.ipvs
    }

    /// [`Reconciler::sync_as`] on an active box, now.
    pub fn sync(
        &mut self,
        cfg: &Config,
        health: &dyn Fn(&str, SocketAddrV4) -> Health,
    ) -> Result<SyncReport, IpvsError> {
        self.sync_as(cfg, health, Role::Active, Instant::now())
    }

    /// Dump → plan → apply → dump again → verify; never claims success it did not verify.
    /// `role` decides how DOWN servers are treated; `now` times the drains.
    pub fn sync_as(
        &mut self,
        cfg: &Config,
        health: &dyn Fn(&str, SocketAddrV4) -> Health,
        role: Role,
        now: Instant,
    ) -> Result<SyncReport, IpvsError> {
        let t0 = Instant::now();
        let mut desired = reconcile::desired_for(cfg, health, role);
        let actual = self.ipvs.dump()?;
        for ev in self
            .drains
            .extend(&mut desired, cfg, health, role, &actual, now)
        {
            log_drain(&ev);
        }
        let ops = reconcile::plan(&desired, &actual);
        let t1 = Instant::now();
        let failures = self.ipvs.apply_collect(&ops);
        let apply_time = t1.elapsed();
        // Nothing applied: the dump we planned from is already the verified table, so the
        // periodic drift check costs one dump, not two.
        let table = if ops.is_empty() {
            actual
        } else {
            self.ipvs.dump()?
        };
        let residual = reconcile::plan(&desired, &table);
        if !failures.is_empty() || !residual.is_empty() {
            let differences: Vec<String> = residual.iter().map(ToString::to_string).collect();
            tracing::error!(failures = ?failures, differences = ?differences, "IPVS sync not verified");
            return Err(IpvsError::Unverified {
                failures,
                differences,
            });
        }
        if !ops.is_empty() {
            tracing::info!(ops = ops.len(), "IPVS table updated and verified");
        }
        Ok(SyncReport {
            services: table.len(),
            dests: table.iter().map(|s| s.dests.len()).sum(),
            ops,
            elapsed: t0.elapsed(),
            apply_time,
            table,
        })
    }
}

fn log_drain(ev: &drain::DrainEvent) {
    match ev {
        drain::DrainEvent::Started {
            service,
            server,
            conns,
            grace_s,
        } => tracing::info!(
            service = %service,
            server = %server,
            conns,
            grace_s,
            "server removed from the config is draining (weight 0 until its calls end)"
        ),
        drain::DrainEvent::Ended {
            service,
            server,
            why,
            conns,
        } => tracing::info!(
            service = %service,
            server = %server,
            conns,
            why = %why,
            "drain of a removed server over"
        ),
    }
}

/// Per-destination figures for the console.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DestView {
    /// Server address.
    pub server: DestKey,
    /// Forwarding method.
    pub fwd: FwdMethod,
    /// Current weight.
    pub weight: u32,
    /// Active connection entries.
    pub active_conns: u32,
    /// Inactive connection entries (UDP entries count here).
    pub inact_conns: u32,
    /// Persistence templates; with pe sip one per Call-ID seen within the persistence
    /// timeout, i.e. the number of calls pinned to this server (no /proc/net/ip_vs_conn walk).
    pub calls: u32,
    /// Counters.
    pub stats: Stats,
}

/// Per-service figures for the console.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceView {
    /// Config name, if the service is in the config.
    pub name: Option<String>,
    /// Identity.
    pub key: ServiceKey,
    /// ipvsadm-like settings text.
    pub settings: String,
    /// Sum of `calls` over destinations.
    pub calls: u64,
    /// Counters.
    pub stats: Stats,
    /// Destinations.
    pub dests: Vec<DestView>,
}

/// Console view of a dumped table, naming services from the config.
pub fn view(cfg: &Config, table: &[ActualService]) -> Vec<ServiceView> {
    table
        .iter()
        .map(|s| {
            let name = cfg
                .services
                .iter()
                .find(|vs| ServiceKey::udp(vs.vip, vs.port) == s.key)
                .map(|vs| vs.name.to_string());
            let dests: Vec<DestView> = s
                .dests
                .iter()
                .map(|d| DestView {
                    server: d.key,
                    fwd: d.params.fwd,
                    weight: d.params.weight,
                    active_conns: d.active_conns,
                    inact_conns: d.inact_conns,
                    calls: d.persist_conns,
                    stats: d.stats,
                })
                .collect();
            ServiceView {
                name,
                key: s.key,
                settings: model::params_text(&s.params),
                calls: dests.iter().map(|d| u64::from(d.calls)).sum(),
                stats: s.stats,
                dests,
            }
        })
        .collect()
}
