//! Link monitoring over the rtnetlink RTNLGRP_LINK multicast group.
//!
//! `LinkTracker` is the pure part (dedupes the kernel's frequent RTM_NEWLINK messages into
//! real up/carrier changes); `spawn` is the tokio task that feeds it.

use std::collections::HashMap;

use neli::{
    consts::{
        rtnl::{Iff, Ifla, Rtm},
        socket::NlFamily,
    },
    rtnl::Ifinfomsg,
    socket::asynchronous::NlSocketHandle,
    utils::Groups,
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::NetError;

/// A link changed state (or was first seen).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkEvent {
    /// Interface name.
    pub ifname: String,
    /// Administratively up.
    pub up: bool,
    /// Carrier (lower layer up).
    pub carrier: bool,
}

/// Remembers the last reported state per interface and reports only changes.
#[derive(Debug, Default)]
pub struct LinkTracker {
    last: HashMap<String, (bool, bool)>,
}

impl LinkTracker {
    /// Feed one observation; returns an event when it differs from the last one.
    pub fn observe(&mut self, ifname: &str, up: bool, carrier: bool) -> Option<LinkEvent> {
        if self.last.get(ifname) == Some(&(up, carrier)) {
            return None;
        }
        self.last.insert(ifname.to_owned(), (up, carrier));
        Some(LinkEvent {
            ifname: ifname.to_owned(),
            up,
            carrier,
        })
    }
    /// The link was deleted: report it down once and forget it.
    pub fn removed(&mut self, ifname: &str) -> Option<LinkEvent> {
        self.last.remove(ifname).map(|_| LinkEvent {
            ifname: ifname.to_owned(),
            up: false,
            carrier: false,
        })
    }
}

/// Running link monitor; dropping it stops the task.
pub struct MonitorHandle {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn name_of(p: &Ifinfomsg) -> Option<String> {
    p.rtattrs().iter().find_map(|a| {
        if *a.rta_type() == Ifla::Ifname {
            let b: &[u8] = a.rta_payload().as_ref();
            let s = b.split(|c| *c == 0).next().unwrap_or(b);
            Some(String::from_utf8_lossy(s).into_owned())
        } else {
            None
        }
    })
}

/// Subscribe to link events and forward changes to `tx`.
///
/// Must be called inside a tokio runtime. The socket belongs to the network namespace of
/// the calling thread. The current state of every link is sent first, so the receiver
/// starts with a complete picture.
pub fn spawn(tx: mpsc::Sender<LinkEvent>) -> Result<MonitorHandle, NetError> {
    let sock = NlSocketHandle::connect(
        NlFamily::Route,
        None,
        Groups::new_groups(&[nix::libc::RTNLGRP_LINK]),
    )
    .map_err(|e| NetError::Netlink {
        context: "subscribing to link events".into(),
        reason: e.to_string(),
    })?;
    // Subscribed before the dump, so no change between the two can be missed.
    let initial = super::rtnl::Rtnl::connect()?.state()?;
    let mut tracker = LinkTracker::default();
    let first: Vec<LinkEvent> = initial
        .links
        .iter()
        .filter_map(|l| tracker.observe(&l.name, l.up, l.carrier))
        .collect();
    let task = tokio::spawn(async move {
        for ev in first {
            if tx.send(ev).await.is_err() {
                return;
            }
        }
        loop {
            let msgs = match sock.recv::<Rtm, Ifinfomsg>().await {
                Ok((iter, _groups)) => iter.collect::<Vec<_>>(),
                Err(e) => {
                    // ENOBUFS (overrun) and friends: keep listening; state re-syncs on
                    // the next change of each link.
                    warn!(error = %e, "link monitor receive error");
                    continue;
                }
            };
            for m in msgs {
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        debug!(error = %e, "undecodable link message");
                        continue;
                    }
                };
                let Some(p) = m.get_payload() else { continue };
                let Some(name) = name_of(p) else { continue };
                let ev = if *m.nl_type() == Rtm::Dellink {
                    tracker.removed(&name)
                } else {
                    tracker.observe(
                        &name,
                        p.ifi_flags().contains(Iff::UP),
                        p.ifi_flags().contains(Iff::LOWERUP),
                    )
                };
                if let Some(ev) = ev {
                    info!(ifname = %ev.ifname, up = ev.up, carrier = ev.carrier, "link change");
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok(MonitorHandle { task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_reports_only_changes() {
        let mut t = LinkTracker::default();
        assert!(t.observe("eth0", true, true).is_some());
        assert!(t.observe("eth0", true, true).is_none());
        let e = t.observe("eth0", true, false).unwrap();
        assert!(e.up && !e.carrier);
        let e = t.removed("eth0").unwrap();
        assert!(!e.up && !e.carrier);
        assert!(t.removed("eth0").is_none());
    }
}
