//! Pure reconciliation: desired state (config + health) minus kernel state → ordered ops.
//!
//! Rules:
//! - The appliance owns the whole IPVS table: kernel services absent from the config are
//!   deleted (only ever one by one, never FLUSH). Destinations are only touched inside
//!   services; there is no other kind of object.
//! - A service's identity is (protocol, VIP, port). Scheduler, flags, timeout, netmask and
//!   persistence engine are changed in place with SET_SERVICE, which the kernel supports
//!   without dropping connections (`ip_vs_edit_service`). A changed VIP/port/protocol is a
//!   different service: the new one is added first, the old one removed last.
//! - Order: service adds/edits, then destination adds and weight raises, then weight
//!   lowering (quiesce), then destination removals, then service removals. So a VIP never
//!   loses its last healthy server before a replacement is in place.
//! - Health Unknown keeps whatever weight the kernel has (daemon restart adopts the table
//!   and must not disturb calls).
//! - A health failure and an operator drain are different kernel treatments. Drain = weight
//!   0: the server's pe sip templates stay valid, so its calls' in-dialog requests still reach
//!   it. Failure with `on_failure = remove` (the default) = DEL_DEST: the kernel invalidates
//!   the server's templates on their next packet (`ip_vs_check_template`: destination not
//!   available), so a call whose INVITE reached the server just before it failed is
//!   rescheduled to a live server by its own retransmission. A drained server that fails is
//!   removed too.
//! - Only where traffic flows ([`Role::Active`]). On an HA backup ([`Role::Standby`]) a DOWN
//!   server is kept at weight 0: removing it would make the kernel drop its synced
//!   connections and templates (`expire_nodest_conn`), and a failover would then move its
//!   calls. The role change to master reconciles at once and removes it.
//! - A server the operator removes or disables is drained, not deleted (see [`super::drain`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddrV4};

use super::codec::{svc_flags, DestKey, DestParams, FwdMethod, ServiceKey, ServiceParams};
use super::model::{ActualService, DesiredDest, DesiredService, Role, TableOp, WeightRule};
use crate::config::{AdminState, Config, FailureAction, Forwarding, VirtualService};
use crate::probe::Health;

/// The persistence engine name; the kernel only knows it in lower case.
pub const PE_SIP: &str = "sip";

/// Kernel service settings for a configured virtual service.
pub fn service_params(vs: &VirtualService) -> ServiceParams {
    let persistent = vs.persistence_timeout > 0;
    let mut flags = 0;
    if persistent {
        flags |= svc_flags::PERSISTENT;
    }
    if vs.one_packet {
        flags |= svc_flags::ONEPACKET;
    }
    ServiceParams {
        sched: vs.scheduler.kernel_name().to_owned(),
        flags,
        timeout: vs.persistence_timeout,
        netmask: u32::from(vs.persistence_granularity),
        // The SIP engine only acts on persistent services; without the flag it would be
        // accepted and silently do nothing, so it is left out (validation warns).
        pe: (vs.sip_persistence && persistent).then(|| PE_SIP.to_owned()),
    }
}

fn fwd_of(f: Forwarding) -> FwdMethod {
    match f {
        Forwarding::Nat => FwdMethod::Masq,
        Forwarding::Dr => FwdMethod::Route,
    }
}

/// The desired table for `cfg` on an active box, asking `health(service_name, server)`.
pub fn desired(cfg: &Config, health: &dyn Fn(&str, SocketAddrV4) -> Health) -> Vec<DesiredService> {
    desired_for(cfg, health, Role::Active)
}

/// The desired table for `cfg` in `role` (without drains of removed servers).
pub fn desired_for(
    cfg: &Config,
    health: &dyn Fn(&str, SocketAddrV4) -> Health,
    role: Role,
) -> Vec<DesiredService> {
    let mut out: Vec<DesiredService> = Vec::new();
    let mut seen_services = BTreeSet::new();
    for vs in cfg.services.iter() {
        let key = ServiceKey::udp(vs.vip, vs.port);
        if !seen_services.insert(key) {
            // Validation rejects duplicates; never program the same VIP twice.
            tracing::warn!(service = %vs.name, %key, "duplicate virtual service ignored");
            continue;
        }
        let fwd = fwd_of(vs.forwarding);
        let mut dests = Vec::new();
        let mut seen_dests = BTreeSet::new();
        for rs in vs.servers.iter() {
            let sa = SocketAddrV4::new(rs.address, rs.port);
            let dkey = DestKey {
                addr: IpAddr::V4(rs.address),
                port: rs.port,
            };
            if rs.state == AdminState::Disabled || !seen_dests.insert(dkey) {
                continue;
            }
            let h = if vs.probe.enabled {
                health(&vs.name, sa)
            } else {
                Health::Up
            };
            let remove_policy = vs.probe.on_failure == FailureAction::Remove;
            let remove_on_failure = remove_policy && role == Role::Active;
            let weight = rs.weight.min(i32::MAX as u32);
            let rule = match (h, rs.state) {
                // Removed even while draining: its calls cannot finish on a dead server,
                // and removal lets their retransmissions find a live one.
                (Health::Down, _) if remove_on_failure => None,
                (Health::Down, _) => Some(WeightRule::Set(0)),
                (_, AdminState::Draining) => Some(WeightRule::Set(0)),
                (Health::Up, _) => Some(WeightRule::Set(weight)),
                (Health::Unknown, _) if remove_policy => Some(WeightRule::KeepElseAbsent),
                (Health::Unknown, _) => Some(WeightRule::KeepElse(0)),
            };
            if let Some(weight) = rule {
                dests.push(DesiredDest {
                    key: dkey,
                    fwd,
                    weight,
                });
            }
        }
        out.push(DesiredService {
            name: vs.name.to_string(),
            key,
            params: service_params(vs),
            dests,
        });
    }
    // HA: the loopback service the sync pump sends through (see `sync_pump`).
    out.extend(super::sync_pump::service(cfg));
    out
}

fn dest_params(fwd: FwdMethod, weight: u32) -> DestParams {
    DestParams {
        fwd,
        weight,
        u_thresh: 0,
        l_thresh: 0,
    }
}

/// Ordering phases; lower runs first.
fn phase(op: &TableOp) -> u8 {
    match op {
        TableOp::AddService { .. } => 0,
        TableOp::EditService { .. } => 1,
        TableOp::AddDest { params, .. } if params.weight > 0 => 2,
        TableOp::EditDest { params, from, .. } if params.weight > from.weight => 2,
        TableOp::AddDest { .. } => 3,
        TableOp::EditDest { .. } => 4,
        TableOp::DelDest { .. } => 5,
        TableOp::DelService { .. } => 6,
    }
}

fn sort_key(op: &TableOp) -> (u8, ServiceKey, Option<DestKey>) {
    let d = match op {
        TableOp::AddDest { dest, .. }
        | TableOp::EditDest { dest, .. }
        | TableOp::DelDest { dest, .. } => Some(*dest),
        _ => None,
    };
    (phase(op), op.service(), d)
}

/// The minimal ordered operations turning `actual` into `desired`.
pub fn plan(desired: &[DesiredService], actual: &[ActualService]) -> Vec<TableOp> {
    let mut ops = Vec::new();
    let actual_by_key: BTreeMap<ServiceKey, &ActualService> =
        actual.iter().map(|a| (a.key, a)).collect();
    let desired_keys: BTreeSet<ServiceKey> = desired.iter().map(|d| d.key).collect();

    for d in desired {
        let a = actual_by_key.get(&d.key).copied();
        match a {
            None => ops.push(TableOp::AddService {
                key: d.key,
                params: d.params.clone(),
            }),
            Some(a) if a.params != d.params => ops.push(TableOp::EditService {
                key: d.key,
                params: d.params.clone(),
                from: a.params.clone(),
            }),
            Some(_) => {}
        }
        let actual_dests: BTreeMap<DestKey, DestParams> = a
            .map(|a| a.dests.iter().map(|e| (e.key, e.params)).collect())
            .unwrap_or_default();
        let mut wanted = BTreeSet::new();
        for dd in &d.dests {
            let have = actual_dests.get(&dd.key);
            let want = match (dd.weight, have) {
                (WeightRule::Set(w), _) => Some(dest_params(dd.fwd, w)),
                (WeightRule::KeepElse(_) | WeightRule::KeepElseAbsent, Some(h)) => {
                    Some(dest_params(dd.fwd, h.weight))
                }
                (WeightRule::KeepElse(w), None) => Some(dest_params(dd.fwd, w)),
                (WeightRule::KeepElseAbsent, None) => None,
            };
            let Some(want) = want else { continue };
            wanted.insert(dd.key);
            match have {
                None => ops.push(TableOp::AddDest {
                    svc: d.key,
                    dest: dd.key,
                    params: want,
                }),
                Some(h) if *h != want => ops.push(TableOp::EditDest {
                    svc: d.key,
                    dest: dd.key,
                    params: want,
                    from: *h,
                }),
                Some(_) => {}
            }
        }
        for k in actual_dests.keys() {
            if !wanted.contains(k) {
                ops.push(TableOp::DelDest {
                    svc: d.key,
                    dest: *k,
                });
            }
        }
    }
    for a in actual {
        if !desired_keys.contains(&a.key) {
            // Deleting the service removes its destinations with it.
            ops.push(TableOp::DelService { key: a.key });
        }
    }
    ops.sort_by_key(sort_key);
    ops
}

#[cfg(test)]
mod tests;
