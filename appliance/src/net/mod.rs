//! Interfaces, addresses, routes, sysctls and link monitoring over rtnetlink.
//!
//! `plan` is the pure planner (desired state, validation, ordered ops), `rtnl` the thin
//! executor, `sysctl` the router sysctls, `monitor` the link-event task, `vaddr` the
//! VRRP-held /32 addresses, `nics` the ports present.

pub mod monitor;
pub mod nics;
pub mod plan;
pub mod rtnl;
pub mod sysctl;
pub mod vaddr;

#[cfg(test)]
mod netns_tests;

use std::path::Path;

use tracing::{info, warn};

use crate::config::Config;
use plan::{NetOp, SystemProblem};

pub use monitor::LinkEvent;

/// Errors from network configuration.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The config cannot be applied to this system; nothing was changed.
    #[error("network config rejected, nothing was changed:\n  - {}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  - "))]
    Invalid(Vec<SystemProblem>),
    /// An rtnetlink request failed.
    #[error("rtnetlink: {context}: {reason}")]
    Netlink {
        /// What we were doing.
        context: String,
        /// Kernel / library reason.
        reason: String,
    },
    /// A change failed midway; what was done has been rolled back (see `rollback`).
    #[error("network change failed at '{op}': {reason}; {rollback}")]
    ApplyFailed {
        /// The failing operation.
        op: String,
        /// Why it failed.
        reason: String,
        /// Outcome of the best-effort rollback, in words.
        rollback: String,
    },
    /// A sysctl could not be set or verified.
    #[error(transparent)]
    Sysctl(#[from] sysctl::SysctlError),
}

/// What an apply changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetReport {
    /// Number of rtnetlink changes made (0 = already as configured).
    pub changes: usize,
    /// Human-readable list of the changes, in order.
    pub ops: Vec<String>,
}

/// Apply the network part of `cfg` (links, addresses, VIPs, default route, policy routing).
///
/// Idempotent: a second call with the same config makes zero changes. Everything is
/// validated against the live system before the first change; if a change fails the
/// previous state is restored (best effort, reported in the error).
pub fn apply(cfg: &Config) -> Result<NetReport, NetError> {
    apply_with(cfg, Path::new(sysctl::PROC_SYS))
}

/// [`apply`] with an explicit /proc/sys root (for the `promote_secondaries` setting).
pub fn apply_with(cfg: &Config, proc_sys: &Path) -> Result<NetReport, NetError> {
    let rt = rtnl::Rtnl::connect()?;
    let before = rt.state()?;
    let want = plan::desired(cfg, &before).map_err(NetError::Invalid)?;
    // Keep secondaries (VIPs in the WAN subnet, the new address during a change) when the
    // primary address goes away; otherwise the kernel deletes them and the routes via them.
    sysctl::Sysctl::new(proc_sys)
        .set_promote_secondaries(&[cfg.wan.name.as_str(), cfg.lan.name.as_str()])?;
    let mut report = NetReport::default();
    let mut cur = before.clone();
    // A change can have kernel side effects (e.g. a route disappearing with an address),
    // so re-read and re-plan; bounded to a few rounds.
    for round in 0..3 {
        let ops = plan::plan(&want, &cur);
        if ops.is_empty() {
            if report.changes > 0 {
                info!(changes = report.changes, "network config applied");
            }
            return Ok(report);
        }
        if round > 0 {
            warn!(
                round,
                pending = ops.len(),
                "network state moved after changes, reconciling again"
            );
        }
        for op in &ops {
            if let Err(e) = rt.apply(op) {
                let reason = match &e {
                    NetError::Netlink { reason, .. } => reason.clone(),
                    other => other.to_string(),
                };
                let rollback = roll_back(&rt, &before, &want);
                return Err(NetError::ApplyFailed {
                    op: op.to_string(),
                    reason,
                    rollback,
                });
            }
            info!(op = %op, "network change");
            report.changes += 1;
            report.ops.push(op.to_string());
        }
        cur = rt.state()?;
    }
    let rollback = roll_back(&rt, &before, &want);
    Err(NetError::ApplyFailed {
        op: "converging".into(),
        reason: "the kernel state kept changing after 3 rounds".into(),
        rollback,
    })
}

/// Best-effort restore of the managed part of `before`; returns a sentence for the error.
fn roll_back(rt: &rtnl::Rtnl, before: &plan::NetState, want: &plan::Desired) -> String {
    let back = plan::desired_from_state(before, want);
    let mut failed = Vec::new();
    for round in 0..2 {
        let now = match rt.state() {
            Ok(s) => s,
            Err(e) => return format!("rollback impossible, could not read state: {e}"),
        };
        let ops: Vec<NetOp> = plan::plan(&back, &now);
        if ops.is_empty() {
            return if failed.is_empty() {
                "previous network config restored".into()
            } else {
                format!(
                    "previous network config restored after retries ({})",
                    failed.join("; ")
                )
            };
        }
        if round == 1 {
            failed.clear();
        }
        for op in &ops {
            if let Err(e) = rt.apply(op) {
                warn!(op = %op, error = %e, "rollback step failed");
                failed.push(format!("{op}: {e}"));
            }
        }
    }
    format!(
        "rollback INCOMPLETE, check with 'appliance net show': {}",
        failed.join("; ")
    )
}

/// Read the current state (for `appliance net show` and the console).
pub fn show() -> Result<plan::NetState, NetError> {
    rtnl::Rtnl::connect()?.state()
}

/// Validate `cfg` against the live system and list what [`apply`] would change.
pub fn dry_run(cfg: &Config) -> Result<Vec<NetOp>, NetError> {
    let st = show()?;
    let want = plan::desired(cfg, &st).map_err(NetError::Invalid)?;
    Ok(plan::plan(&want, &st))
}
