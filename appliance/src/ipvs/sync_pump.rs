//! Sync pump: makes the master's kernel send a waiting sync entry within ~0.1 s at any
//! call rate.
//!
//! Why: the kernel (`ip_vs_sync.c`, 6.1) hands a send buffer to its sender thread only
//! when the *next* entry does not fit, or on its flush timer (`IPVS_SYNC_FLUSH_TIME`, 2 s,
//! checked every second). With `sync_maxlen` clamped to one entry (see `syncd`) any later
//! entry pushes the waiting one out at once, but on an idle box the template of a call
//! whose INVITE was the last packet waits 2-3 s: a failover in that window loses the
//! call's pinning. No sysctl or daemon attribute changes the timer.
//!
//! The fix the firmware controls: a persistent one-packet UDP service on loopback
//! (`config::HA_SYNC_PUMP_*`, destination itself with the "local" forwarding method, so
//! nothing leaves the box) and a task that, while this box is master, sends one datagram
//! to it every [`HA_SYNC_PUMP_INTERVAL_MS`]. IPVS schedules each datagram on LOCAL_OUT
//! and syncs the service's persistence template at every packet (templates skip the
//! `sync_threshold` test), and that entry pushes out whatever entry was waiting. Cost: one
//! ~60-byte sync message per period on the sync link while master.

use std::net::{IpAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::codec::{svc_flags, DestKey, FwdMethod, ServiceKey, ServiceParams};
use super::model::{DesiredDest, DesiredService, WeightRule};
use crate::config::{
    Config, HA_SYNC_PUMP_ADDR, HA_SYNC_PUMP_INTERVAL_MS, HA_SYNC_PUMP_PORT, HA_SYNC_PUMP_TIMEOUT_S,
};

/// Name of the pump's service in plans and logs.
pub const NAME: &str = "(ha sync pump)";

/// The pump's identity in the kernel table.
pub fn key() -> ServiceKey {
    ServiceKey::udp(HA_SYNC_PUMP_ADDR, HA_SYNC_PUMP_PORT)
}

/// The pump's IPVS service when HA is on (programmed on both boxes, like every service).
pub fn service(cfg: &Config) -> Option<DesiredService> {
    if !cfg.ha.enabled {
        return None;
    }
    Some(DesiredService {
        name: NAME.to_owned(),
        key: key(),
        params: ServiceParams {
            sched: "rr".to_owned(),
            // Persistent: the template is what gets synced at every packet; one-packet:
            // no connection entries pile up.
            flags: svc_flags::PERSISTENT | svc_flags::ONEPACKET,
            timeout: HA_SYNC_PUMP_TIMEOUT_S,
            netmask: u32::MAX,
            pe: None,
        },
        dests: vec![DesiredDest {
            key: DestKey {
                addr: IpAddr::V4(HA_SYNC_PUMP_ADDR),
                port: HA_SYNC_PUMP_PORT,
            },
            // Local node: the kernel accepts the packet as addressed (loopback), no rewrite.
            fwd: FwdMethod::Local,
            weight: WeightRule::Set(1),
        }],
    })
}

/// Period of the pump.
pub fn interval() -> Duration {
    Duration::from_millis(HA_SYNC_PUMP_INTERVAL_MS)
}

/// The running pump task; sends only while [`SyncPump::set_active`] says so.
pub struct SyncPump {
    active: Arc<AtomicBool>,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
    at: SocketAddrV4,
}

/// Datagrams sent, and received back (proof they went through the stack and came home).
#[derive(Debug, Default)]
struct Counts {
    sent: AtomicU64,
    looped: AtomicU64,
}

impl SyncPump {
    /// Start the (idle) pump task on the current tokio runtime.
    pub fn spawn() -> SyncPump {
        Self::spawn_at(
            SocketAddrV4::new(HA_SYNC_PUMP_ADDR, HA_SYNC_PUMP_PORT),
            interval(),
        )
    }

    fn spawn_at(at: SocketAddrV4, period: Duration) -> SyncPump {
        let active = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let (flag, c) = (active.clone(), counts.clone());
        let task = tokio::spawn(async move { run(flag, c, at, period).await });
        SyncPump {
            active,
            counts,
            task,
            at,
        }
    }

    /// Pump while `on` (this box is master with HA on). Leaving the master role sends one
    /// last datagram ([`SyncPump::flush`]).
    pub fn set_active(&self, on: bool) {
        let was = self.active.swap(on, Ordering::Relaxed);
        if was != on {
            info!(
                active = on,
                interval_ms = HA_SYNC_PUMP_INTERVAL_MS,
                "IPVS sync pump"
            );
        }
        if was && !on {
            self.flush();
        }
    }

    /// One datagram through the pump's service now, from a fresh socket. Why: when the box
    /// leaves the master role (resign on stop, fault) its VIPs are gone, so no later packet
    /// pushes out the sync entry the kernel holds back; without this the last call set up
    /// before the switch would wait for the 2 s flush (or be lost with a rebooting box),
    /// and its next request could reach another server through the new master.
    pub fn flush(&self) {
        let sent = std::net::UdpSocket::bind(SocketAddrV4::new(*self.at.ip(), 0))
            .and_then(|s| s.send_to(b"f", self.at));
        match sent {
            Ok(_) => {
                self.counts.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => warn!(addr = %self.at, error = %e, "IPVS sync pump: last flush failed"),
        }
    }

    /// Whether it is pumping.
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// (datagrams sent, datagrams received back) since start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counts.sent.load(Ordering::Relaxed),
            self.counts.looped.load(Ordering::Relaxed),
        )
    }
}

impl Drop for SyncPump {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The socket sends to itself: bound and connected to the pump's address, so the datagram
/// IPVS lets through is delivered back here (and discarded) instead of drawing an ICMP
/// port unreachable.
/// A plain non-blocking socket: a send to loopback never waits, and the tick is the only
/// wake-up needed (no reactor readiness involved).
fn open(at: SocketAddrV4) -> std::io::Result<std::net::UdpSocket> {
    let s = std::net::UdpSocket::bind(at)?;
    s.connect(s.local_addr()?)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

async fn run(active: Arc<AtomicBool>, counts: Arc<Counts>, at: SocketAddrV4, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sock: Option<std::net::UdpSocket> = None;
    let mut warned = false;
    let mut buf = [0u8; 64];
    loop {
        tick.tick().await;
        if !active.load(Ordering::Relaxed) {
            continue;
        }
        if sock.is_none() {
            match open(at) {
                Ok(s) => {
                    sock = Some(s);
                    warned = false;
                }
                Err(e) => {
                    if !warned {
                        warn!(addr = %at, error = %e, "IPVS sync pump cannot open its loopback socket; a new call's template may wait for the kernel's 2 s flush");
                        warned = true;
                    }
                    continue;
                }
            }
        }
        let Some(s) = sock.as_ref() else { continue };
        while s.recv(&mut buf).is_ok() {
            counts.looped.fetch_add(1, Ordering::Relaxed);
        }
        match s.send(b"p") {
            Ok(_) => {
                counts.sent.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(e) if !warned => {
                warn!(error = %e, "IPVS sync pump send failed");
                warned = true;
            }
            Err(_) => {}
        }
        sock = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_only_with_ha_and_never_leaves_the_box() {
        let mut c = Config::builtin_default();
        assert!(service(&c).is_none());
        c.ha.enabled = true;
        let s = service(&c).expect("pump service");
        assert_eq!(s.key, key());
        let ServiceKey::Addr {
            addr: IpAddr::V4(vip),
            ..
        } = s.key
        else {
            panic!("an IPv4 address service: {:?}", s.key)
        };
        assert!(vip.is_loopback());
        assert_ne!(s.params.flags & svc_flags::PERSISTENT, 0);
        assert_ne!(s.params.flags & svc_flags::ONEPACKET, 0);
        assert!(s.params.pe.is_none());
        assert_eq!(s.dests.len(), 1);
        assert_eq!(s.dests[0].fwd, FwdMethod::Local);
        assert_eq!(s.dests[0].key.addr, IpAddr::V4(vip));
        // A pump slower than ~0.2 s would miss the sync-delay goal.
        assert!(interval() <= Duration::from_millis(150));
        assert!(u64::from(HA_SYNC_PUMP_TIMEOUT_S) * 1000 > 3 * HA_SYNC_PUMP_INTERVAL_MS);
    }

    #[tokio::test]
    async fn leaving_the_master_role_sends_one_last_datagram_to_the_service() {
        // Stands for the IPVS service: the pump itself cannot bind it (address in use), so
        // only the flush reaches it.
        let svc = std::net::UdpSocket::bind(SocketAddrV4::new(HA_SYNC_PUMP_ADDR, 0)).unwrap();
        svc.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let at = match svc.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            other => panic!("IPv4 expected: {other}"),
        };
        let p = SyncPump::spawn_at(at, Duration::from_secs(3600));
        p.set_active(false);
        p.set_active(true);
        p.set_active(true);
        p.set_active(false);
        let mut buf = [0u8; 8];
        let (n, from) = svc.recv_from(&mut buf).expect("the flush datagram");
        assert_eq!(&buf[..n], b"f");
        assert_ne!(from, std::net::SocketAddr::V4(at));
        // Exactly one: staying inactive sends nothing more.
        p.set_active(false);
        svc.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert!(svc.recv_from(&mut buf).is_err(), "a second flush");
        assert_eq!(p.counts().0, 1);
    }

    #[tokio::test]
    async fn pumps_datagrams_through_the_stack_only_while_active() {
        let period = Duration::from_millis(10);
        let p = SyncPump::spawn_at(SocketAddrV4::new(HA_SYNC_PUMP_ADDR, 0), period);
        tokio::time::sleep(period * 5).await;
        assert_eq!(p.counts(), (0, 0), "sent while inactive");
        p.set_active(true);
        assert!(p.active());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while p.counts().1 < 3 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(period).await;
        }
        let (sent, looped) = p.counts();
        assert!(
            looped >= 3 && sent >= looped,
            "sent {sent}, came back {looped}"
        );
        p.set_active(false);
        tokio::time::sleep(period * 3).await;
        let stopped = p.counts().0;
        tokio::time::sleep(period * 5).await;
        assert_eq!(
            p.counts().0,
            stopped,
            "still sending after set_active(false)"
        );
    }
}
