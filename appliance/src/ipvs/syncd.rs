//! IPVS connection-sync daemons (HA): the desired set from the config, the plan that turns
//! the kernel's set into it, and apply + read back + verify.
//!
//! When HA is on, both the MASTER and the BACKUP daemon run on both boxes (the kernel
//! allows both at once): the box holding the VIPs sends, the other one receives, and no
//! daemon has to be switched on a VRRP transition. See docs/ha.md "Connection sync".

use std::fmt;

use super::codec::{daemon_state, DaemonConfig};
use super::{Ipvs, IpvsError};
use crate::config::Config;

/// `sync_maxlen` asked for the MASTER daemon: the kernel clamps it to at least 1 and sizes
/// each send buffer as max(entry + header, sync_maxlen), so every message holds exactly one
/// entry and the next entry queues it for sending at once instead of after the 2 s flush.
pub const MASTER_SYNC_MAXLEN: u16 = 1;

/// Human name of a daemon state.
pub fn state_name(state: u32) -> &'static str {
    match state {
        daemon_state::MASTER => "master",
        daemon_state::BACKUP => "backup",
        _ => "unknown",
    }
}

/// The daemons the config asks for: none without HA, else MASTER and BACKUP on the sync
/// interface with sync id = VRID (the same on both boxes).
pub fn desired(cfg: &Config) -> Vec<DaemonConfig> {
    if !cfg.ha.enabled {
        return vec![];
    }
    let ifn = cfg.ha.sync_ifname(cfg).to_owned();
    let sync_id = u32::from(cfg.ha.vrid);
    vec![
        DaemonConfig {
            state: daemon_state::MASTER,
            mcast_ifn: ifn.clone(),
            sync_id,
            sync_maxlen: Some(MASTER_SYNC_MAXLEN),
            mcast_group: None,
            mcast_port: None,
            mcast_ttl: None,
        },
        DaemonConfig {
            state: daemon_state::BACKUP,
            mcast_ifn: ifn,
            sync_id,
            // The backup's receive buffer: the kernel default (interface MTU - headers)
            // holds any one-entry message.
            sync_maxlen: None,
            mcast_group: None,
            mcast_port: None,
            mcast_ttl: None,
        },
    ]
}

/// One change to the kernel's sync daemons.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum DaemonOp {
    /// IPVS_CMD_DEL_DAEMON for this state.
    Stop(u32),
    /// IPVS_CMD_NEW_DAEMON.
    Start(DaemonConfig),
}

impl fmt::Display for DaemonOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonOp::Stop(s) => write!(f, "stop {} sync daemon", state_name(*s)),
            DaemonOp::Start(c) => write!(
                f,
                "start {} sync daemon on {} (sync id {})",
                state_name(c.state),
                c.mcast_ifn,
                c.sync_id
            ),
        }
    }
}

/// Whether a running daemon satisfies a wanted one. Fields left `None` in `want` are the
/// kernel's defaults and not compared; the kernel raises a too-small `sync_maxlen` to its
/// minimum, so a reported value at or below what we asked for matches.
pub fn satisfies(want: &DaemonConfig, got: &DaemonConfig) -> bool {
    want.state == got.state
        && want.mcast_ifn == got.mcast_ifn
        && want.sync_id == got.sync_id
        && match (want.sync_maxlen, got.sync_maxlen) {
            (None, _) => true,
            (Some(w), Some(g)) => g <= w.max(kernel_min_maxlen(want.state)),
            (Some(_), None) => false,
        }
        && unset_or_eq(want.mcast_group, got.mcast_group)
        && unset_or_eq(want.mcast_port, got.mcast_port)
        && unset_or_eq(want.mcast_ttl, got.mcast_ttl)
}

/// `None` wanted = the kernel's default, whatever it reports.
fn unset_or_eq<T: PartialEq>(want: Option<T>, got: Option<T>) -> bool {
    match want {
        None => true,
        Some(_) => want == got,
    }
}

/// The smallest `sync_maxlen` the kernel keeps (`start_sync_thread`: 1 master, 1024 backup).
fn kernel_min_maxlen(state: u32) -> u16 {
    if state == daemon_state::BACKUP {
        1024
    } else {
        1
    }
}

/// Stops first (a changed daemon must be stopped before it can start again), then starts.
pub fn plan(desired: &[DaemonConfig], actual: &[DaemonConfig]) -> Vec<DaemonOp> {
    let mut stops = Vec::new();
    let mut starts = Vec::new();
    for got in actual {
        match desired.iter().find(|w| w.state == got.state) {
            Some(w) if satisfies(w, got) => {}
            _ => stops.push(DaemonOp::Stop(got.state)),
        }
    }
    for w in desired {
        match actual.iter().find(|g| g.state == w.state) {
            Some(g) if satisfies(w, g) => {}
            _ => starts.push(DaemonOp::Start(w.clone())),
        }
    }
    stops.sort_by_key(|op| match op {
        DaemonOp::Stop(s) => *s,
        DaemonOp::Start(c) => c.state,
    });
    stops.extend(starts);
    stops
}

/// One daemon in words: "master sync daemon on eth1 (sync id 51, maxlen 1)".
fn daemon_text(c: &DaemonConfig) -> String {
    let mut s = format!(
        "{} sync daemon on {} (sync id {}",
        state_name(c.state),
        c.mcast_ifn,
        c.sync_id
    );
    if let Some(m) = c.sync_maxlen {
        s.push_str(&format!(", maxlen {m}"));
    }
    s.push(')');
    s
}

/// The plan from `actual` to `desired` for a person (dry runs): a stop and a start of the
/// same state read as one "reconfigure ... -> ..." line, with interface and sync id on
/// both sides. Empty when nothing changes.
pub fn describe(desired: &[DaemonConfig], actual: &[DaemonConfig]) -> Vec<String> {
    let ops = plan(desired, actual);
    let mut out = Vec::new();
    for op in &ops {
        match op {
            DaemonOp::Stop(state) => {
                let from = actual.iter().find(|g| g.state == *state);
                let restart = ops
                    .iter()
                    .any(|o| matches!(o, DaemonOp::Start(c) if c.state == *state));
                match (from, restart) {
                    // Written once, at its start.
                    (_, true) => {}
                    (Some(g), false) => out.push(format!("stop {}", daemon_text(g))),
                    (None, false) => out.push(op.to_string()),
                }
            }
            DaemonOp::Start(c) => match actual.iter().find(|g| g.state == c.state) {
                Some(g) => out.push(format!(
                    "reconfigure {} -> {} (stop, then start)",
                    daemon_text(g),
                    daemon_text(c)
                )),
                None => out.push(format!("start {}", daemon_text(c))),
            },
        }
    }
    out
}

/// A running daemon as shown by status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DaemonStatus {
    /// "master" or "backup".
    pub state: String,
    /// Interface.
    pub ifname: String,
    /// Sync id.
    pub sync_id: u32,
    /// Message size limit the kernel uses.
    pub sync_maxlen: Option<u16>,
}

impl From<&DaemonConfig> for DaemonStatus {
    fn from(c: &DaemonConfig) -> DaemonStatus {
        DaemonStatus {
            state: state_name(c.state).to_owned(),
            ifname: c.mcast_ifn.clone(),
            sync_id: c.sync_id,
            sync_maxlen: c.sync_maxlen,
        }
    }
}

/// What one daemon reconcile did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DaemonReport {
    /// Changes applied (empty when the kernel already matched).
    pub ops: Vec<DaemonOp>,
    /// The daemons read back after the change.
    pub running: Vec<DaemonStatus>,
}

/// GET_DAEMON → plan → apply → GET_DAEMON → verify.
pub fn reconcile(ipvs: &mut Ipvs, desired: &[DaemonConfig]) -> Result<DaemonReport, IpvsError> {
    let actual = ipvs.daemons()?;
    let ops = plan(desired, &actual);
    let mut failures = Vec::new();
    for op in &ops {
        let r = match op {
            DaemonOp::Stop(s) => ipvs.stop_daemon(*s),
            DaemonOp::Start(c) => ipvs.start_daemon(c),
        };
        match r {
            Ok(()) => tracing::info!(op = %op, "IPVS sync daemon changed"),
            Err(e) => {
                tracing::warn!(op = %op, error = %e, "IPVS sync daemon change failed");
                failures.push(e.to_string());
            }
        }
    }
    let table = if ops.is_empty() {
        actual
    } else {
        ipvs.daemons()?
    };
    let residual = plan(desired, &table);
    if !failures.is_empty() || !residual.is_empty() {
        return Err(IpvsError::Unverified {
            failures,
            differences: residual.iter().map(ToString::to_string).collect(),
        });
    }
    Ok(DaemonReport {
        ops,
        running: table.iter().map(DaemonStatus::from).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvs::fake::FakeKernel;

    fn ha_cfg(sync_if: &str) -> Config {
        let mut c = Config::builtin_default();
        c.ha.enabled = true;
        c.ha.vrid = 51;
        c.ha.sync_interface = crate::config::model::bounded(sync_if);
        c
    }

    #[test]
    fn no_daemons_without_ha() {
        assert!(desired(&Config::builtin_default()).is_empty());
    }

    #[test]
    fn both_daemons_on_lan_by_default_with_vrid_as_sync_id() {
        let c = ha_cfg("");
        let d = desired(&c);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].state, daemon_state::MASTER);
        assert_eq!(d[1].state, daemon_state::BACKUP);
        for x in &d {
            assert_eq!(x.mcast_ifn, c.lan.name.as_str());
            assert_eq!(x.sync_id, 51);
        }
        assert_eq!(d[0].sync_maxlen, Some(MASTER_SYNC_MAXLEN));
        assert_eq!(d[1].sync_maxlen, None);
        let d = desired(&ha_cfg("eth2"));
        assert!(d.iter().all(|x| x.mcast_ifn == "eth2"));
    }

    fn kernel_view(mut c: DaemonConfig) -> DaemonConfig {
        // what GET_DAEMON reports after the kernel filled in its defaults
        c.sync_maxlen = Some(
            c.sync_maxlen
                .unwrap_or(1472)
                .max(kernel_min_maxlen(c.state)),
        );
        c.mcast_port = Some(8848);
        c.mcast_ttl = Some(1);
        c.mcast_group = Some(std::net::Ipv4Addr::new(224, 0, 0, 81));
        c
    }

    #[test]
    fn plan_is_empty_when_the_kernel_matches_with_its_defaults() {
        let want = desired(&ha_cfg(""));
        let got: Vec<_> = want.iter().cloned().map(kernel_view).collect();
        assert_eq!(plan(&want, &got), vec![]);
    }

    #[test]
    fn plan_starts_missing_restarts_changed_and_stops_unwanted() {
        let want = desired(&ha_cfg(""));
        assert_eq!(
            plan(&want, &[]),
            want.iter()
                .cloned()
                .map(DaemonOp::Start)
                .collect::<Vec<_>>()
        );
        // master on the wrong interface, backup with another sync id
        let mut m = kernel_view(want[0].clone());
        m.mcast_ifn = "eth9".into();
        let mut b = kernel_view(want[1].clone());
        b.sync_id = 7;
        let ops = plan(&want, &[b, m]);
        assert_eq!(
            ops,
            vec![
                DaemonOp::Stop(daemon_state::MASTER),
                DaemonOp::Stop(daemon_state::BACKUP),
                DaemonOp::Start(want[0].clone()),
                DaemonOp::Start(want[1].clone()),
            ]
        );
        // master with a large message size would wait for the 2 s flush: restart it
        let mut m = kernel_view(want[0].clone());
        m.sync_maxlen = Some(1472);
        let b = kernel_view(want[1].clone());
        assert_eq!(
            plan(&want, &[m, b.clone()]),
            vec![
                DaemonOp::Stop(daemon_state::MASTER),
                DaemonOp::Start(want[0].clone())
            ]
        );
        // HA turned off: stop both
        assert_eq!(
            plan(&[], &[kernel_view(want[0].clone()), b]),
            vec![
                DaemonOp::Stop(daemon_state::MASTER),
                DaemonOp::Stop(daemon_state::BACKUP)
            ]
        );
    }

    #[test]
    fn describe_names_interface_and_sync_id_and_merges_restarts() {
        let want = desired(&ha_cfg(""));
        assert_eq!(
            describe(&want, &[]),
            vec![
                "start master sync daemon on eth1 (sync id 51, maxlen 1)".to_string(),
                "start backup sync daemon on eth1 (sync id 51)".to_string(),
            ]
        );
        let got: Vec<_> = want.iter().cloned().map(kernel_view).collect();
        assert!(describe(&want, &got).is_empty());
        let mut m = kernel_view(want[0].clone());
        m.mcast_ifn = "eth2".into();
        m.sync_id = 7;
        let b = kernel_view(want[1].clone());
        assert_eq!(
            describe(&want, &[m.clone(), b.clone()]),
            vec![
                "reconfigure master sync daemon on eth2 (sync id 7, maxlen 1) -> master sync daemon on eth1 (sync id 51, maxlen 1) (stop, then start)".to_string()
            ]
        );
        assert_eq!(
            describe(&[], &[m, b]),
            vec![
                "stop master sync daemon on eth2 (sync id 7, maxlen 1)".to_string(),
                "stop backup sync daemon on eth1 (sync id 51, maxlen 1472)".to_string(),
            ]
        );
    }

    #[test]
    fn reconcile_applies_reads_back_and_is_idempotent() {
        let (k, st) = FakeKernel::new();
        let mut ipvs = Ipvs::with_link(Box::new(k));
        let want = desired(&ha_cfg(""));
        let r = reconcile(&mut ipvs, &want).expect("reconcile");
        assert_eq!(r.ops.len(), 2);
        assert_eq!(r.running.len(), 2);
        assert_eq!(r.running[0].state, "master");
        assert_eq!(r.running[0].sync_maxlen, Some(1));
        assert_eq!(r.running[1].sync_maxlen, Some(1472));
        let r = reconcile(&mut ipvs, &want).expect("again");
        assert!(r.ops.is_empty(), "{:?}", r.ops);
        let r = reconcile(&mut ipvs, &[]).expect("off");
        assert_eq!(r.ops.len(), 2);
        assert!(r.running.is_empty());
        assert!(st.lock().expect("lock").daemons.is_empty());
    }

    #[test]
    fn reconcile_reports_a_kernel_refusal() {
        let (k, st) = FakeKernel::new();
        st.lock().expect("lock").no_such_ifname = Some("eth1".into());
        let mut ipvs = Ipvs::with_link(Box::new(k));
        let e = reconcile(&mut ipvs, &desired(&ha_cfg("eth1"))).expect_err("ENODEV");
        let text = e.to_string();
        assert!(text.contains("eth1"), "{text}");
    }
}
