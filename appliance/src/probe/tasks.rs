//! Tokio I/O around the pure [`ServerFsm`]: one task and one connected UDP socket per
//! real server.
//!
//! Socket design: each server gets its own UDP socket bound to the LAN address with an
//! ephemeral port (port 0, so two probes can never share a port, the failure the seed
//! warns about) and `connect()`ed to the server. The kernel then (a) drops datagrams
//! from any other address:port before we see them and (b) turns an ICMP port
//! unreachable into ECONNREFUSED on the next `recv`, so a closed SIP port is seen one
//! RTT after the probe instead of after a timeout. Because anyone can send an ICMP
//! error, the socket also has `IP_RECVERR`: every error is read back from the error
//! queue and counts only if [`icmp::judge`] finds it genuine (it quotes our probe,
//! and a port unreachable comes from the server).

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::health::{Action, Counters, Outcome, Policy, Rtt, ServerFsm, Transition};
use super::icmp::{self, IcmpVerdict, SentProbe};
use super::packet::{self, Expected, Ids, ReplyVerdict, RequestParams, RECV_BUF};
use super::{Health, HealthEvent};
use crate::config::{AdminState, Config, Name, ProbeSettings};

/// Longest a server task sleeps without beating (bounds heartbeat staleness).
const MAX_SLEEP: Duration = Duration::from_millis(500);
/// Supervisor tick: how often the prober heartbeat is refreshed.
const BEAT_EVERY: Duration = Duration::from_millis(100);
/// A server task that has not beaten for this long counts as stuck.
const STUCK_AFTER: Duration = Duration::from_secs(3);

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Milliseconds on the process-wide monotonic clock used by [`Heartbeat`].
pub fn monotonic_ms() -> u64 {
    u64::try_from(origin().elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn now() -> Duration {
    origin().elapsed()
}

/// Liveness of the prober for the watchdog: the supervisor stores [`monotonic_ms`]
/// every 100 ms while every server task has made progress in the last 3 s.
#[derive(Clone, Debug, Default)]
pub struct Heartbeat(Arc<AtomicU64>);

impl Heartbeat {
    /// Time of the last beat on the [`monotonic_ms`] clock.
    pub fn last_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    /// How long ago the last beat was.
    pub fn age(&self) -> Duration {
        Duration::from_millis(monotonic_ms().saturating_sub(self.last_ms()))
    }
    /// The shared atomic itself (for a watchdog registry).
    pub fn atomic(&self) -> Arc<AtomicU64> {
        self.0.clone()
    }
}

/// What the console and control socket show for one probed server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerProbeStats {
    /// Service name.
    pub service: Name,
    /// Real server address.
    pub server: SocketAddrV4,
    /// Current health.
    pub health: Health,
    /// Our socket's address (after bind/connect), if open.
    pub local: Option<SocketAddrV4>,
    /// Round-trip times.
    pub rtt: Rtt,
    /// Counters.
    pub counters: Counters,
    /// Last outcome or transition reason.
    pub last_reason: String,
}

/// Control data a server task watches.
#[derive(Debug, Clone, PartialEq)]
struct Ctl {
    settings: ProbeSettings,
    bind: Ipv4Addr,
    link_up: bool,
}

struct Shared {
    stats: Mutex<ServerProbeStats>,
    beat_ms: AtomicU64,
}

struct Entry {
    ctl: watch::Sender<Ctl>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

type Key = (String, SocketAddrV4);

struct Inner {
    rt: tokio::runtime::Handle,
    servers: Mutex<BTreeMap<Key, Entry>>,
    link_up: AtomicBool,
    tx: mpsc::Sender<HealthEvent>,
    heartbeat: Heartbeat,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(servers) = self.servers.get_mut() {
            for e in servers.values() {
                e.task.abort();
            }
        }
        if let Ok(Some(s)) = self.supervisor.get_mut().map(Option::take) {
            s.abort();
        }
    }
}

/// Entry point of the prober.
pub struct Prober;

/// Handle to the running prober; cheap to clone. Dropping the last clone stops it.
#[derive(Clone)]
pub struct ProberHandle {
    inner: Arc<Inner>,
}

impl Prober {
    /// Start probing every enabled or draining server of `config`; health changes go
    /// to `tx`. Must be called inside a tokio runtime.
    pub fn spawn(config: &Config, tx: mpsc::Sender<HealthEvent>) -> ProberHandle {
        let inner = Arc::new(Inner {
            rt: tokio::runtime::Handle::current(),
            servers: Mutex::new(BTreeMap::new()),
            link_up: AtomicBool::new(true),
            tx,
            heartbeat: Heartbeat::default(),
            supervisor: Mutex::new(None),
        });
        inner.heartbeat.0.store(monotonic_ms(), Ordering::Relaxed);
        let weak = Arc::downgrade(&inner);
        let sup = inner.rt.spawn(async move {
            let mut tick = tokio::time::interval(BEAT_EVERY);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let now = monotonic_ms();
                let stuck = STUCK_AFTER.as_millis() as u64;
                let all_alive = match inner.servers.lock() {
                    Ok(s) => s.values().all(|e| {
                        !e.task.is_finished()
                            && now.saturating_sub(e.shared.beat_ms.load(Ordering::Relaxed)) < stuck
                    }),
                    Err(_) => false,
                };
                if all_alive {
                    inner.heartbeat.0.store(now, Ordering::Relaxed);
                } else {
                    tracing::warn!("probe: a server task is stuck; withholding heartbeat");
                }
            }
        });
        if let Ok(mut s) = inner.supervisor.lock() {
            *s = Some(sup);
        }
        let handle = ProberHandle { inner };
        handle.update(config);
        handle
    }
}

fn desired(config: &Config) -> BTreeMap<Key, ProbeSettings> {
    let mut out = BTreeMap::new();
    for svc in &config.services {
        for rs in &svc.servers {
            // Disabled servers are out of the kernel table; probing them is noise.
            if rs.state == AdminState::Disabled {
                continue;
            }
            let key = (
                svc.name.as_str().to_string(),
                SocketAddrV4::new(rs.address, rs.port),
            );
            out.insert(key, svc.probe.clone());
        }
    }
    out
}

impl ProberHandle {
    /// Apply a new configuration: add and remove servers; unchanged servers keep
    /// their health, counters and RTT; changed probe settings apply in place.
    pub fn update(&self, config: &Config) {
        let want = desired(config);
        let bind = config.lan.address.addr;
        let link_up = self.inner.link_up.load(Ordering::Relaxed);
        let Ok(mut servers) = self.inner.servers.lock() else {
            tracing::error!("probe: server table lock poisoned; update ignored");
            return;
        };
        servers.retain(|key, e| {
            let keep = want.contains_key(key);
            if !keep {
                e.task.abort();
                tracing::info!(service = %key.0, server = %key.1, "probe: server removed");
            }
            keep
        });
        for (key, settings) in want {
            let ctl = Ctl {
                settings,
                bind,
                link_up,
            };
            if let Some(e) = servers.get(&key) {
                e.ctl.send_if_modified(|cur| {
                    let changed = *cur != ctl;
                    *cur = ctl;
                    changed
                });
                continue;
            }
            let service = Name::try_from(key.0.as_str()).unwrap_or_default();
            let shared = Arc::new(Shared {
                stats: Mutex::new(ServerProbeStats {
                    service: service.clone(),
                    server: key.1,
                    health: Health::Unknown,
                    local: None,
                    rtt: Rtt::default(),
                    counters: Counters::default(),
                    last_reason: "not probed yet".into(),
                }),
                beat_ms: AtomicU64::new(monotonic_ms()),
            });
            let (ctl_tx, ctl_rx) = watch::channel(ctl);
            let task = self.inner.rt.spawn(server_task(
                service,
                key.1,
                shared.clone(),
                ctl_rx,
                self.inner.tx.clone(),
            ));
            tracing::info!(service = %key.0, server = %key.1, "probe: server added");
            servers.insert(
                key,
                Entry {
                    ctl: ctl_tx,
                    shared,
                    task,
                },
            );
        }
    }

    /// Current state of every probed server, sorted by service then server.
    pub fn snapshot(&self) -> Vec<ServerProbeStats> {
        let Ok(servers) = self.inner.servers.lock() else {
            return Vec::new();
        };
        servers
            .values()
            .filter_map(|e| e.shared.stats.lock().ok().map(|s| s.clone()))
            .collect()
    }

    /// LAN link state: down marks every server Down at once and pauses probing; up
    /// probes every server immediately (each still needs `rise` successes).
    pub fn set_link(&self, up: bool) {
        self.inner.link_up.store(up, Ordering::Relaxed);
        if let Ok(servers) = self.inner.servers.lock() {
            for e in servers.values() {
                e.ctl.send_if_modified(|c| {
                    let changed = c.link_up != up;
                    c.link_up = up;
                    changed
                });
            }
        }
    }

    /// The prober's liveness heartbeat for the watchdog.
    pub fn heartbeat(&self) -> Heartbeat {
        self.inner.heartbeat.clone()
    }
}

fn open_socket(bind: Ipv4Addr, peer: SocketAddrV4) -> io::Result<(UdpSocket, SocketAddrV4)> {
    // Port 0: the kernel picks a free ephemeral port, so sockets never clash.
    let sock = match std::net::UdpSocket::bind((bind, 0)) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
            // LAN address not configured yet: let routing pick the source.
            tracing::debug!(%bind, %peer, "probe: LAN address not present, binding 0.0.0.0");
            std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?
        }
        Err(e) => return Err(e),
    };
    sock.connect(peer)?;
    // Queue every ICMP error with its offender and quote, so forged ones can be told apart.
    nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::Ipv4RecvErr, &true)
        .map_err(io::Error::from)?;
    sock.set_nonblocking(true)?;
    let local = match sock.local_addr()? {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "IPv6 local address",
            ))
        }
    };
    Ok((UdpSocket::from_std(sock)?, local))
}

async fn recv_opt(sock: Option<&UdpSocket>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// Most errors read from the queue per socket error (bounds the work a flood causes).
const MAX_QUEUED: usize = 16;

/// One entry of the socket's error queue: the quoted payload and the control buffer.
fn read_errqueue(sock: &UdpSocket) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    use nix::libc;
    use std::os::fd::AsRawFd;
    let mut data = vec![0u8; RECV_BUF];
    let mut control = vec![0u8; 512];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid value (no name, no buffers).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() as _;
    // SAFETY: every pointer in msg refers to a live buffer of the stated length for
    // the duration of the call; the fd is owned by `sock`.
    let n = unsafe {
        libc::recvmsg(
            sock.as_raw_fd(),
            &mut msg,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(e)
        };
    }
    data.truncate(usize::try_from(n).unwrap_or(0));
    // msg_controllen is usize on glibc and u32 on musl (the image).
    #[allow(clippy::useless_conversion)]
    let clen = usize::try_from(msg.msg_controllen).unwrap_or(0);
    control.truncate(clen.min(512));
    Ok(Some((data, control)))
}

/// errnos an ICMP error turns into on a connected UDP socket.
fn from_icmp(e: &io::Error) -> bool {
    use nix::libc;
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EPROTO)
    )
}

/// What a socket error means for the probe in flight: every queued error is judged
/// (the first that counts wins; the others are ignored). `None` = nothing counts.
fn judge_error(
    sock: &UdpSocket,
    e: &io::Error,
    server: SocketAddrV4,
    sent: &[SentProbe],
    fsm: &mut ServerFsm,
) -> Option<Outcome> {
    let mut out = None;
    let mut queued = 0;
    while queued < MAX_QUEUED {
        let (quote, control) = match read_errqueue(sock) {
            Ok(Some(entry)) => entry,
            Ok(None) => break,
            Err(err) => {
                tracing::debug!(%server, %err, "probe: cannot read the error queue");
                break;
            }
        };
        queued += 1;
        let Some(ee) = icmp::ext_err_from_control(&control) else {
            fsm.on_icmp_ignored();
            continue;
        };
        match icmp::judge(&ee, &quote, server, sent) {
            IcmpVerdict::Counts(o) => {
                if !matches!(out, Some(Outcome::Refused)) {
                    out = Some(o);
                }
            }
            IcmpVerdict::Ignored(why) => {
                tracing::debug!(%server, %why, "probe: ICMP error ignored");
                fsm.on_icmp_ignored();
            }
        }
    }
    if queued == 0 {
        if from_icmp(e) {
            // Every ICMP error is queued; with none to read (queue overflowed) it
            // cannot be checked, so it does not count.
            fsm.on_icmp_ignored();
        } else {
            out = Some(Outcome::Error(format!("socket error: {e}")));
        }
    }
    out
}

struct Task {
    service: Name,
    server: SocketAddrV4,
    shared: Arc<Shared>,
    tx: mpsc::Sender<HealthEvent>,
}

impl Task {
    async fn emit(&self, fsm: &ServerFsm, t: Option<Transition>) {
        self.publish(fsm, None);
        let Some(t) = t else { return };
        tracing::info!(
            service = %self.service, server = %self.server,
            from = ?t.from, to = ?t.to, reason = %t.reason, "probe: health changed"
        );
        let ev = HealthEvent {
            service: self.service.clone(),
            server: self.server,
            health: t.to,
            reason: t.reason,
        };
        // A closed receiver only means nobody listens (tests, shutdown).
        let _ = self.tx.send(ev).await;
    }

    fn publish(&self, fsm: &ServerFsm, local: Option<Option<SocketAddrV4>>) {
        self.shared.beat_ms.store(monotonic_ms(), Ordering::Relaxed);
        if let Ok(mut s) = self.shared.stats.lock() {
            s.health = fsm.health();
            s.rtt = fsm.rtt();
            s.counters = fsm.counters();
            if s.last_reason != fsm.last_reason() {
                s.last_reason = fsm.last_reason().to_string();
            }
            if let Some(l) = local {
                s.local = l;
            }
        }
    }
}

async fn server_task(
    service: Name,
    server: SocketAddrV4,
    shared: Arc<Shared>,
    mut ctl: watch::Receiver<Ctl>,
    tx: mpsc::Sender<HealthEvent>,
) {
    let task = Task {
        service,
        server,
        shared,
        tx,
    };
    let mut cur = ctl.borrow_and_update().clone();
    let mut fsm = ServerFsm::new(Policy::from_settings(&cur.settings), now());
    let t = fsm.set_link(cur.link_up, now());
    task.emit(&fsm, t).await;
    let mut ids = Ids::new();
    let mut sock: Option<(UdpSocket, SocketAddrV4)> = None;
    let mut expected: Option<Expected> = None;
    // The probes an ICMP error may still answer: the one in flight and the one before.
    let mut sent: Vec<SentProbe> = Vec::with_capacity(2);
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let (action, t) = fsm.poll(now());
        task.emit(&fsm, t).await;
        let wake = match action {
            Action::Send { cseq } => {
                if sock.is_none() {
                    match open_socket(cur.bind, server) {
                        Ok(s) => {
                            task.publish(&fsm, Some(Some(s.1)));
                            sock = Some(s);
                        }
                        Err(e) => {
                            let t = fsm.on_outcome(
                                now(),
                                Outcome::Error(format!("cannot open socket: {e}")),
                            );
                            task.emit(&fsm, t).await;
                            continue;
                        }
                    }
                }
                let Some((s, local)) = sock.as_ref() else {
                    continue;
                };
                let branch = ids.branch();
                let call_id = ids.call_id(*local.ip());
                let tag = ids.tag();
                let params = RequestParams {
                    local: *local,
                    target: server,
                    settings: &cur.settings,
                    branch: &branch,
                    call_id: &call_id,
                    from_tag: &tag,
                    cseq,
                };
                let bytes = match packet::build_options(&params) {
                    Ok(b) => b,
                    Err(e) => {
                        let t = fsm.on_outcome(now(), Outcome::Error(e.to_string()));
                        task.emit(&fsm, t).await;
                        continue;
                    }
                };
                if sent.len() >= 2 {
                    sent.remove(0);
                }
                sent.push(SentProbe {
                    bytes: bytes.clone(),
                    branch: branch.clone(),
                });
                expected = Some(Expected {
                    branch,
                    call_id,
                    cseq,
                    peer: server,
                });
                // A pending ICMP error from an earlier probe may surface here; a forged
                // one must not stop this probe, so send again once it is judged.
                for attempt in 0..2 {
                    let Err(e) = s.send(&bytes).await else { break };
                    if let Some(o) = judge_error(s, &e, server, &sent, &mut fsm) {
                        let t = fsm.on_outcome(now(), o);
                        task.emit(&fsm, t).await;
                        break;
                    }
                    if attempt == 1 {
                        tracing::debug!(%server, %e, "probe: send failed twice");
                    }
                }
                task.publish(&fsm, None);
                continue;
            }
            Action::WaitUntil(t) => t.min(now() + MAX_SLEEP),
            Action::Paused => now() + MAX_SLEEP,
        };
        let deadline = tokio::time::Instant::from_std(origin() + wake);
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            r = recv_opt(sock.as_ref().map(|s| &s.0), &mut buf) => {
                let at = now();
                let t = match r {
                    Ok((n, src)) => {
                        let verdict = match (&expected, fsm.in_flight_cseq()) {
                            (Some(exp), Some(c)) if c == exp.cseq => {
                                packet::classify(buf.get(..n).unwrap_or(&[]), src, exp)
                            }
                            // Nothing in flight: whatever this is, it is late.
                            _ => ReplyVerdict::Unmatched(packet::Mismatch::WrongCSeq),
                        };
                        match verdict {
                            ReplyVerdict::Final { code, reason } => {
                                fsm.on_outcome(at, Outcome::Reply { code, reason })
                            }
                            ReplyVerdict::Provisional { .. } => {
                                fsm.on_provisional();
                                None
                            }
                            ReplyVerdict::Unmatched(why) => {
                                tracing::debug!(server = %server, %src, %why, "probe: reply ignored");
                                fsm.on_unmatched();
                                None
                            }
                            ReplyVerdict::Malformed(why) => {
                                tracing::debug!(server = %server, %src, %why, "probe: malformed reply");
                                fsm.on_malformed();
                                None
                            }
                        }
                    }
                    Err(e) => match sock.as_ref() {
                        Some((s, _)) => match judge_error(s, &e, server, &sent, &mut fsm) {
                            Some(o) => fsm.on_outcome(at, o),
                            None => None,
                        },
                        None => None,
                    },
                };
                task.emit(&fsm, t).await;
            }
            changed = ctl.changed() => {
                if changed.is_err() {
                    return; // handle dropped: server removed or prober stopped
                }
                let next = ctl.borrow_and_update().clone();
                if next.bind != cur.bind {
                    sock = None;
                    sent.clear();
                    task.publish(&fsm, Some(None));
                }
                if next.settings != cur.settings {
                    fsm.set_policy(Policy::from_settings(&next.settings), now());
                }
                if next.link_up != cur.link_up {
                    let t = fsm.set_link(next.link_up, now());
                    task.emit(&fsm, t).await;
                }
                cur = next;
            }
        }
    }
}
