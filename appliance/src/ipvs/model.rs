//! Desired and actual IPVS table, and the operations that turn one into the other.

use std::fmt;

use super::codec::{
    DestEntry, DestKey, DestParams, FwdMethod, Request, ServiceKey, ServiceParams, Stats,
};

/// Whether client traffic flows through this box; decides how a DOWN server is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Role {
    /// No HA, or the HA master: a DOWN server is removed (with `on_failure = "remove"`) so
    /// a new call never goes to it and its calls' retransmissions move to a live server.
    Active,
    /// HA backup (or initialising, or in fault): no traffic flows, so a DOWN server is only
    /// quiesced to weight 0 and its synced connections and templates survive a failover.
    Standby,
}

/// How a destination's weight is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum WeightRule {
    /// Exactly this weight (0 = quiesced).
    Set(u32),
    /// Health unknown: keep the kernel's weight if the destination exists, else add with this.
    KeepElse(u32),
    /// Health unknown with on_failure=remove: keep it if it exists, else leave it out.
    KeepElseAbsent,
}

/// A destination the configuration and health ask for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DesiredDest {
    /// Address and port.
    pub key: DestKey,
    /// Forwarding method from the service's config.
    pub fwd: FwdMethod,
    /// Weight rule.
    pub weight: WeightRule,
}

/// A virtual service the configuration asks for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DesiredService {
    /// Operator name from the config (for messages and the console).
    pub name: String,
    /// Identity in the kernel.
    pub key: ServiceKey,
    /// Scheduler, flags, timeout, netmask, pe.
    pub params: ServiceParams,
    /// Destinations (already filtered for admin state and health).
    pub dests: Vec<DesiredDest>,
}

/// A virtual service as dumped from the kernel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ActualService {
    /// Identity.
    pub key: ServiceKey,
    /// Settings.
    pub params: ServiceParams,
    /// Counters.
    pub stats: Stats,
    /// Destinations with their counters.
    pub dests: Vec<DestEntry>,
}

/// One change to the kernel table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum TableOp {
    /// Create a service (NEW_SERVICE).
    AddService {
        /// Identity.
        key: ServiceKey,
        /// Settings.
        params: ServiceParams,
    },
    /// Change scheduler/flags/timeout/netmask/pe in place (SET_SERVICE; keeps connections).
    EditService {
        /// Identity.
        key: ServiceKey,
        /// New settings.
        params: ServiceParams,
        /// What the kernel had.
        from: ServiceParams,
    },
    /// Delete a service not in the configuration (DEL_SERVICE).
    DelService {
        /// Identity.
        key: ServiceKey,
    },
    /// Add a destination (NEW_DEST).
    AddDest {
        /// Service.
        svc: ServiceKey,
        /// Destination.
        dest: DestKey,
        /// Settings.
        params: DestParams,
    },
    /// Change weight/forwarding of a destination (SET_DEST).
    EditDest {
        /// Service.
        svc: ServiceKey,
        /// Destination.
        dest: DestKey,
        /// New settings.
        params: DestParams,
        /// What the kernel had.
        from: DestParams,
    },
    /// Remove a destination (DEL_DEST).
    DelDest {
        /// Service.
        svc: ServiceKey,
        /// Destination.
        dest: DestKey,
    },
}

impl TableOp {
    /// The kernel request for this operation.
    pub fn to_request(&self) -> Request {
        match self {
            TableOp::AddService { key, params } => Request::NewService(*key, params.clone()),
            TableOp::EditService { key, params, .. } => Request::SetService(*key, params.clone()),
            TableOp::DelService { key } => Request::DelService(*key),
            TableOp::AddDest { svc, dest, params } => Request::NewDest(*svc, *dest, *params),
            TableOp::EditDest {
                svc, dest, params, ..
            } => Request::SetDest(*svc, *dest, *params),
            TableOp::DelDest { svc, dest } => Request::DelDest(*svc, *dest),
        }
    }

    /// The service this operation touches.
    pub fn service(&self) -> ServiceKey {
        match self {
            TableOp::AddService { key, .. }
            | TableOp::EditService { key, .. }
            | TableOp::DelService { key } => *key,
            TableOp::AddDest { svc, .. }
            | TableOp::EditDest { svc, .. }
            | TableOp::DelDest { svc, .. } => *svc,
        }
    }
}

/// ipvsadm-like text for service settings.
pub fn params_text(p: &ServiceParams) -> String {
    use super::codec::svc_flags;
    let mut s = p.sched.clone();
    if p.flags & svc_flags::PERSISTENT != 0 {
        s.push_str(&format!(
            " persistent {} mask {}",
            p.timeout,
            std::net::Ipv4Addr::from(p.netmask)
        ));
    }
    if p.flags & svc_flags::ONEPACKET != 0 {
        s.push_str(" ops");
    }
    if let Some(pe) = &p.pe {
        s.push_str(&format!(" pe {pe}"));
    }
    let other = p.flags & !(svc_flags::PERSISTENT | svc_flags::ONEPACKET);
    if other != 0 {
        s.push_str(&format!(" flags {other:#x}"));
    }
    s
}

fn dest_text(p: &DestParams) -> String {
    let mut s = format!("{} weight {}", p.fwd.proc_name(), p.weight);
    if p.u_thresh != 0 || p.l_thresh != 0 {
        s.push_str(&format!(" thresholds {}-{}", p.l_thresh, p.u_thresh));
    }
    s
}

impl fmt::Display for TableOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableOp::AddService { key, params } => {
                write!(f, "add service {key} ({})", params_text(params))
            }
            TableOp::EditService { key, params, from } => write!(
                f,
                "change service {key} from ({}) to ({})",
                params_text(from),
                params_text(params)
            ),
            TableOp::DelService { key } => {
                write!(f, "remove service {key} (not in the configuration)")
            }
            TableOp::AddDest { svc, dest, params } => {
                write!(f, "add server {dest} to {svc} ({})", dest_text(params))
            }
            TableOp::EditDest {
                svc,
                dest,
                params,
                from,
            } => write!(
                f,
                "change server {dest} in {svc} from ({}) to ({})",
                dest_text(from),
                dest_text(params)
            ),
            TableOp::DelDest { svc, dest } => write!(f, "remove server {dest} from {svc}"),
        }
    }
}
