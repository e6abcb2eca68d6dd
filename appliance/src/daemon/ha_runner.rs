//! HA wiring, I/O parts: starts, reconfigures and stops the VRRP runner (its own thread),
//! supplies it the /32 address executor, and forwards its notices to the daemon loop.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::vrrp::group::{FaultReason, GroupConfig};
use crate::vrrp::tasks::{AddressError, Addresses, Control, Notice, Runner};

/// How long an orderly stop waits for the runner to send its priority-0 adverts and end.
pub const STOP_WAIT: Duration = Duration::from_secs(1);
/// After a failed start, the periodic reconcile retries no sooner than this.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Member index -> interface name, shared with the runner's address executor so that a
/// reconfigured interface name takes effect without a new executor.
type MemberNames = Arc<Mutex<Vec<String>>>;

/// The daemon's [`Addresses`]: /32 adds and removes through `net::vaddr`.
struct VirtualAddrs {
    names: MemberNames,
}

impl VirtualAddrs {
    fn ifname(&self, member: usize) -> Result<String, AddressError> {
        let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        names
            .get(member)
            .cloned()
            .ok_or_else(|| format!("VRRP member {member} has no interface").into())
    }

    fn set(&self, member: usize, addrs: &[Ipv4Addr], add: bool) -> Result<(), AddressError> {
        let ifname = self.ifname(member)?;
        let done = crate::net::vaddr::set(&ifname, addrs, add)?;
        if !done.is_empty() {
            info!(interface = %ifname, changes = ?done, "virtual addresses changed");
        }
        Ok(())
    }
}

impl Addresses for VirtualAddrs {
    fn add(&mut self, member: usize, addrs: &[Ipv4Addr]) -> Result<(), AddressError> {
        self.set(member, addrs, true)
    }

    fn remove(&mut self, member: usize, addrs: &[Ipv4Addr]) -> Result<(), AddressError> {
        self.set(member, addrs, false)
    }
}

fn member_names(g: &GroupConfig) -> Vec<String> {
    g.members.iter().map(|m| m.name.clone()).collect()
}

/// The VRRP runner as the daemon holds it.
pub struct HaRunner {
    runner: Option<Runner>,
    group: Option<GroupConfig>,
    names: MemberNames,
    notices: mpsc::Sender<Notice>,
    rt: tokio::runtime::Handle,
    failed_at: Option<std::time::Instant>,
}

impl HaRunner {
    /// Nothing running yet; notices will be forwarded to `notices`.
    pub fn new(notices: mpsc::Sender<Notice>, rt: tokio::runtime::Handle) -> HaRunner {
        HaRunner {
            runner: None,
            group: None,
            names: Arc::new(Mutex::new(Vec::new())),
            notices,
            rt,
            failed_at: None,
        }
    }

    /// True while a runner is up.
    pub fn running(&self) -> bool {
        self.runner.is_some()
    }

    /// The group the running runner was given (None when no runner is up).
    pub fn group(&self) -> Option<&GroupConfig> {
        self.runner.as_ref().and(self.group.as_ref())
    }

    /// Make the runner match `want` (None = HA off): start, reconfigure or stop it.
    /// `faults` are the conditions to tell a newly started runner.
    pub fn reconcile(
        &mut self,
        want: Option<GroupConfig>,
        faults: &[(FaultReason, bool)],
    ) -> Result<(), String> {
        match want {
            None => {
                self.stop(STOP_WAIT);
                Ok(())
            }
            Some(g) if self.runner.is_none() => self.start(g, faults),
            Some(g) if self.group.as_ref() == Some(&g) => Ok(()),
            Some(g) => {
                info!(vrid = g.vrid, priority = g.priority, "VRRP reconfigured");
                *self.names.lock().unwrap_or_else(|p| p.into_inner()) = member_names(&g);
                let sent = self
                    .runner
                    .as_ref()
                    .is_some_and(|r| r.send(Control::Reconfigure(g.clone())));
                if sent {
                    self.group = Some(g);
                    Ok(())
                } else {
                    // The runner thread ended (it logs why): start afresh.
                    self.runner = None;
                    self.start(g, faults)
                }
            }
        }
    }

    fn start(&mut self, g: GroupConfig, faults: &[(FaultReason, bool)]) -> Result<(), String> {
        if self
            .failed_at
            .is_some_and(|t| t.elapsed() < RETRY_AFTER && self.group.as_ref() == Some(&g))
        {
            // Failed moments ago with this very config: the error is already reported.
            return Ok(());
        }
        // A respawned daemon may find the VIPs its predecessor held as master: drop them and
        // start as backup, so the box never answers for addresses the peer may now hold.
        for m in &g.members {
            match crate::net::vaddr::set(&m.name, &m.addresses, false) {
                Ok(done) if !done.is_empty() => {
                    warn!(interface = %m.name, removed = ?done, "stale virtual addresses removed at VRRP start")
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(interface = %m.name, error = %e, "cannot check for stale virtual addresses")
                }
            }
        }
        *self.names.lock().unwrap_or_else(|p| p.into_inner()) = member_names(&g);
        let addrs = Box::new(VirtualAddrs {
            names: self.names.clone(),
        });
        let (runner, mut rx) = match Runner::spawn(g.clone(), addrs) {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("VRRP cannot start: {e}");
                error!("{msg}");
                self.failed_at = Some(std::time::Instant::now());
                // Remembered so the retry back-off applies to this config only.
                self.group = Some(g);
                return Err(msg);
            }
        };
        self.failed_at = None;
        for (reason, active) in faults.iter().filter(|(_, a)| *a) {
            runner.send(Control::Fault {
                reason: *reason,
                active: *active,
            });
        }
        let fwd = self.notices.clone();
        self.rt.spawn(async move {
            while let Some(n) = rx.recv().await {
                if fwd.send(n).await.is_err() {
                    return;
                }
            }
        });
        info!(
            vrid = g.vrid,
            priority = g.priority,
            members = ?member_names(&g),
            "VRRP started (as backup)"
        );
        self.runner = Some(runner);
        self.group = Some(g);
        Ok(())
    }

    /// Tell the runner a fault condition changed.
    pub fn fault(&self, reason: FaultReason, active: bool) {
        if let Some(r) = &self.runner {
            if !r.send(Control::Fault { reason, active }) {
                warn!(fault = %reason, "VRRP runner is not running; fault not delivered");
            }
        }
    }

    /// Orderly stop: the runner resigns (priority 0 on every member if master), removes
    /// its addresses and ends; waits at most `wait` so a stuck thread cannot hold up a
    /// shutdown or an apply. Blocking (a few milliseconds normally).
    pub fn stop(&mut self, wait: Duration) {
        self.group = None;
        let Some(r) = self.runner.take() else {
            return;
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let joined = std::thread::Builder::new()
            .name("vrrp-stop".into())
            .spawn(move || {
                r.stop();
                let _ = done_tx.send(());
            });
        match joined {
            Ok(_) => match done_rx.recv_timeout(wait) {
                Ok(()) => info!("VRRP stopped (resigned)"),
                Err(_) => warn!(
                    wait_ms = wait.as_millis() as u64,
                    "VRRP runner did not stop in time; continuing"
                ),
            },
            Err(e) => warn!(error = %e, "cannot wait for the VRRP runner"),
        }
    }
}
