//! Drains of servers the operator removed or disabled: quiesce, then remove.
//!
//! Deleting a destination at once breaks the calls still on it: with one-packet scheduling
//! the kernel keeps no connection entry between packets, and a reply the server sends later
//! is de-NATed only while the destination exists (the SIP persistence engine's `conn_out`
//! finds it by its address and re-creates the connection from the Call-ID template).
//! Without it the reply is routed out of WAN with the server's own LAN source address.
//!
//! So a destination that is in the kernel but no longer wanted by the config is kept at
//! weight 0 (no new calls) until its connections and templates (ActiveConn + InActConn +
//! persistence templates, from the dump) reach zero, or the service's drain grace
//! ([`crate::config::VirtualService::drain_grace_s`]) has passed since the drain began;
//! then it is deleted. Templates count because with one-packet scheduling they are what
//! a call in progress leaves in the table between packets.
//!
//! Health beats draining: on an active box a server that is DOWN is deleted at once. A
//! whole service removed from the config is deleted with its servers (no drain).
//!
//! Pure: the caller passes the dumped table, health, role and the time.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use super::codec::{DestKey, ServiceKey};
use super::model::{ActualService, DesiredDest, DesiredService, Role, WeightRule};
use crate::config::{AdminState, Config, FailureAction};
use crate::probe::Health;

/// One drain in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Drain {
    service: String,
    since: Instant,
    grace: Duration,
    conns: u64,
    /// The grace passed: the destination is being deleted (kept so a failed delete does
    /// not start a new drain).
    expired: bool,
}

/// Why a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum DrainEnd {
    /// No connection or template left: deleted.
    Idle,
    /// The grace passed with connections left: deleted.
    Grace,
    /// The server is DOWN on an active box: deleted (health beats draining).
    Down,
    /// The server is wanted again by the config (re-added or enabled).
    Returned,
    /// The destination left the kernel table by other means (service removed, by hand).
    Gone,
}

impl std::fmt::Display for DrainEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DrainEnd::Idle => "no connections left",
            DrainEnd::Grace => "grace passed with connections left",
            DrainEnd::Down => "server is down",
            DrainEnd::Returned => "server is in the config again",
            DrainEnd::Gone => "server left the kernel table",
        })
    }
}

/// A change of a drain, for the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum DrainEvent {
    /// A removed or disabled server with connections is kept at weight 0.
    Started {
        /// Service name.
        service: String,
        /// Server.
        server: DestKey,
        /// Connections and templates on it.
        conns: u64,
        /// Seconds until it is deleted anyway.
        grace_s: u64,
    },
    /// The drain is over.
    Ended {
        /// Service name.
        service: String,
        /// Server.
        server: DestKey,
        /// Why.
        why: DrainEnd,
        /// Connections and templates left when it ended.
        conns: u64,
    },
}

/// A drain as shown in status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DrainView {
    /// Service name.
    pub service: String,
    /// Service identity in the kernel.
    pub key: ServiceKey,
    /// Server.
    pub server: DestKey,
    /// Connections and templates left at the last reconcile.
    pub conns: u64,
    /// Seconds until the server is deleted even with connections left.
    pub grace_left_s: u64,
}

/// The drains in progress, kept by the reconciler between syncs.
#[derive(Debug, Default, Clone)]
pub struct DrainBook {
    drains: BTreeMap<(ServiceKey, DestKey), Drain>,
}

fn config_state(cfg: &Config, service: &str, d: DestKey) -> Option<(AdminState, SocketAddrV4)> {
    let IpAddr::V4(a) = d.addr else { return None };
    let vs = cfg.services.iter().find(|s| s.name.as_str() == service)?;
    vs.servers
        .iter()
        .find(|rs| rs.address == a && rs.port == d.port)
        .map(|rs| (rs.state, SocketAddrV4::new(a, d.port)))
}

impl DrainBook {
    /// An empty book.
    pub fn new() -> DrainBook {
        DrainBook::default()
    }

    /// Add weight-0 entries to `desired` for the destinations in `actual` that the config
    /// no longer wants but that still carry calls; returns what changed, for the log.
    pub fn extend(
        &mut self,
        desired: &mut [DesiredService],
        cfg: &Config,
        health: &dyn Fn(&str, SocketAddrV4) -> Health,
        role: Role,
        actual: &[ActualService],
        now: Instant,
    ) -> Vec<DrainEvent> {
        let mut events = Vec::new();
        let mut seen = BTreeSet::new();
        for d in desired.iter_mut() {
            let Some(vs) = cfg.services.iter().find(|s| s.name.as_str() == d.name) else {
                // Not a configured service (the HA sync pump's loopback service).
                continue;
            };
            let Some(a) = actual.iter().find(|a| a.key == d.key) else {
                continue;
            };
            for e in &a.dests {
                if d.dests.iter().any(|x| x.key == e.key) {
                    continue;
                }
                let id = (d.key, e.key);
                let conns = u64::from(e.active_conns)
                    + u64::from(e.inact_conns)
                    + u64::from(e.persist_conns);
                let state = config_state(cfg, &d.name, e.key);
                let down = state.is_some_and(|(_, sa)| {
                    vs.probe.enabled
                        && vs.probe.on_failure == FailureAction::Remove
                        && health(&d.name, sa) == Health::Down
                });
                let end = match state {
                    // In the config and not disabled, yet not wanted: only a DOWN server on
                    // an active box is left out (see `reconcile::desired_for`). Never drained.
                    Some((s, _)) if s != AdminState::Disabled => Some(DrainEnd::Down),
                    _ if down && role == Role::Active => Some(DrainEnd::Down),
                    _ if conns == 0 => Some(DrainEnd::Idle),
                    _ => None,
                };
                let drain = match end {
                    Some(why) => {
                        if let Some(old) = self.drains.remove(&id) {
                            if !old.expired {
                                events.push(DrainEvent::Ended {
                                    service: old.service,
                                    server: e.key,
                                    why,
                                    conns,
                                });
                            }
                        }
                        continue;
                    }
                    None => self.drains.entry(id).or_insert_with(|| {
                        let grace = Duration::from_secs(u64::from(vs.drain_grace_s()));
                        events.push(DrainEvent::Started {
                            service: d.name.clone(),
                            server: e.key,
                            conns,
                            grace_s: grace.as_secs(),
                        });
                        Drain {
                            service: d.name.clone(),
                            since: now,
                            grace,
                            conns,
                            expired: false,
                        }
                    }),
                };
                drain.conns = conns;
                seen.insert(id);
                if drain.expired || now.saturating_duration_since(drain.since) >= drain.grace {
                    if !drain.expired {
                        drain.expired = true;
                        events.push(DrainEvent::Ended {
                            service: drain.service.clone(),
                            server: e.key,
                            why: DrainEnd::Grace,
                            conns,
                        });
                    }
                    continue;
                }
                d.dests.push(DesiredDest {
                    key: e.key,
                    fwd: e.params.fwd,
                    weight: WeightRule::Set(0),
                });
            }
            d.dests.sort_by_key(|x| x.key);
        }
        // Drains whose destination is wanted again or gone from the kernel.
        let gone: Vec<(ServiceKey, DestKey)> = self
            .drains
            .keys()
            .filter(|k| !seen.contains(*k))
            .copied()
            .collect();
        for id in gone {
            let Some(old) = self.drains.remove(&id) else {
                continue;
            };
            if old.expired {
                continue;
            }
            let wanted = desired
                .iter()
                .any(|d| d.key == id.0 && d.dests.iter().any(|x| x.key == id.1));
            events.push(DrainEvent::Ended {
                service: old.service,
                server: id.1,
                why: if wanted {
                    DrainEnd::Returned
                } else {
                    DrainEnd::Gone
                },
                conns: old.conns,
            });
        }
        events
    }

    /// The drains in progress (not those past their grace).
    pub fn view(&self, now: Instant) -> Vec<DrainView> {
        self.drains
            .iter()
            .filter(|(_, d)| !d.expired)
            .map(|((key, server), d)| DrainView {
                service: d.service.clone(),
                key: *key,
                server: *server,
                conns: d.conns,
                grace_left_s: d
                    .grace
                    .saturating_sub(now.saturating_duration_since(d.since))
                    .as_secs(),
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "drain_tests.rs"]
mod tests;
