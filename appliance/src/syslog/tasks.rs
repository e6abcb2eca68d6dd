//! Thin sender tasks: one per collector, each behind a bounded queue.
//!
//! [`Syslog::emit`] formats once and `try_send`s to every queue; a full or closed
//! queue drops the message and counts it. UDP sends on a connected socket (an ICMP
//! error shows up as the next send's error); TCP connects with a timeout, writes with
//! a timeout, and reconnects with back-off, so a hanging collector only fills its queue.

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::format::{self, Header};
use super::Event;
use crate::config::{Config, SyslogCollector, SyslogSettings, SyslogTransport};

/// Messages queued per collector before new ones are dropped.
pub const QUEUE: usize = 256;
/// Longest wait for a TCP connect or one write (or a UDP send).
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest pause between TCP reconnect attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Counters and state of one collector (shared with its task).
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages handed to the kernel.
    pub sent: AtomicU64,
    /// Messages dropped (queue full, send error, not connected in time).
    pub dropped: AtomicU64,
    /// TCP: connected now (UDP: last send succeeded).
    pub ok: AtomicBool,
    /// The last error, in words, until a send succeeds.
    pub last_error: Mutex<Option<String>>,
}

impl Stats {
    fn fail(&self, why: String) {
        self.ok.store(false, Ordering::Relaxed);
        let mut e = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        if e.as_deref() != Some(why.as_str()) {
            warn!(error = %why, "syslog collector");
        }
        *e = Some(why);
    }
    fn success(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if !self.ok.swap(true, Ordering::Relaxed) {
            let mut e = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
            if e.take().is_some() {
                info!("syslog collector reachable again");
            }
        }
    }
}

/// A collector's status for `status --json` (and metrics).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
pub struct CollectorStatus {
    /// `udp://a.b.c.d:port` or `tcp://...`.
    pub target: String,
    /// Messages sent since the settings last changed.
    pub sent: u64,
    /// Messages dropped since the settings last changed.
    pub dropped: u64,
    /// "ok", "pending" (nothing sent yet) or "error".
    pub state: String,
    /// The last error, in words.
    #[serde(default)]
    pub error: Option<String>,
}

struct Collector {
    conf: SyslogCollector,
    tx: mpsc::Sender<Vec<u8>>,
    stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

/// The daemon's syslog handle: current settings and one sender task per collector.
pub struct Syslog {
    settings: SyslogSettings,
    hostname: String,
    collectors: Vec<Collector>,
    synced: Arc<AtomicBool>,
}

impl Syslog {
    /// No collectors yet; `synced` is the NTP client's sync flag (timeQuality).
    pub fn new(synced: Arc<AtomicBool>) -> Syslog {
        Syslog {
            settings: SyslogSettings::default(),
            hostname: String::new(),
            collectors: Vec::new(),
            synced,
        }
    }

    /// Match the tasks to `c` (restart them only when the settings changed).
    /// Must run inside the tokio runtime.
    pub fn reconfigure(&mut self, c: &Config) {
        self.hostname = c.hostname.to_string();
        if self.settings == c.syslog && self.collectors.len() == c.syslog.collectors.len() {
            return;
        }
        for old in self.collectors.drain(..) {
            old.task.abort();
        }
        self.settings = c.syslog.clone();
        for conf in c.syslog.collectors.iter().copied() {
            let (tx, rx) = mpsc::channel(QUEUE);
            let stats = Arc::new(Stats::default());
            let target = SocketAddrV4::new(conf.address, conf.port);
            let task = match conf.transport {
                SyslogTransport::Udp => tokio::spawn(udp_task(target, rx, stats.clone())),
                SyslogTransport::Tcp => tokio::spawn(tcp_task(target, rx, stats.clone())),
            };
            info!(collector = %target, transport = ?conf.transport, "remote syslog collector");
            self.collectors.push(Collector {
                conf,
                tx,
                stats,
                task,
            });
        }
    }

    /// Queue `e` for every collector; never blocks (full queue = dropped, counted).
    pub fn emit(&self, e: &Event) {
        if self.collectors.is_empty() {
            return;
        }
        let unix_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let h = Header {
            facility: self.settings.facility.code(),
            hostname: &self.hostname,
            procid: std::process::id(),
            unix_us,
            synced: self.synced.load(Ordering::Relaxed),
        };
        let msg = format::format(&h, e);
        for c in &self.collectors {
            let bytes = match c.conf.transport {
                SyslogTransport::Udp => msg.clone(),
                SyslogTransport::Tcp => format::octet_counted(&msg),
            };
            if c.tx.try_send(bytes).is_err() {
                c.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Per-collector status.
    pub fn status(&self) -> Vec<CollectorStatus> {
        self.collectors
            .iter()
            .map(|c| {
                let s = &c.stats;
                let sent = s.sent.load(Ordering::Relaxed);
                let error = s
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let state = if error.is_some() {
                    "error"
                } else if sent == 0 {
                    "pending"
                } else {
                    "ok"
                };
                CollectorStatus {
                    target: c.conf.to_string(),
                    sent,
                    dropped: s.dropped.load(Ordering::Relaxed),
                    state: state.into(),
                    error,
                }
            })
            .collect()
    }
}

impl Drop for Syslog {
    fn drop(&mut self) {
        for c in &self.collectors {
            c.task.abort();
        }
    }
}

async fn udp_task(target: SocketAddrV4, mut rx: mpsc::Receiver<Vec<u8>>, stats: Arc<Stats>) {
    let mut sock = None;
    while let Some(msg) = rx.recv().await {
        if sock.is_none() {
            match tokio::net::UdpSocket::bind("0.0.0.0:0").await {
                Ok(s) => match s.connect(target).await {
                    Ok(()) => sock = Some(s),
                    Err(e) => stats.fail(format!("udp://{target}: cannot connect the socket: {e}")),
                },
                Err(e) => stats.fail(format!("udp://{target}: cannot open a socket: {e}")),
            }
        }
        let Some(s) = sock.as_ref() else {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        match tokio::time::timeout(IO_TIMEOUT, s.send(&msg)).await {
            Ok(Ok(_)) => stats.success(),
            Ok(Err(e)) => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                stats.fail(udp_error(target, &e));
            }
            Err(_) => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                stats.fail(format!("udp://{target}: send timed out"));
            }
        }
    }
}

/// An operator's reading of a UDP send error (an ICMP error of an earlier datagram).
fn udp_error(target: SocketAddrV4, e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc_errno) if libc_errno == nix::libc::ECONNREFUSED => format!(
            "udp://{target}: the collector host answers but nothing listens on UDP port {} (ICMP port unreachable)",
            target.port()
        ),
        Some(n) if n == nix::libc::EHOSTUNREACH || n == nix::libc::ENETUNREACH => format!(
            "udp://{target}: host unreachable (no ARP reply or no route); check the collector address"
        ),
        _ => format!("udp://{target}: {e}"),
    }
}

async fn tcp_task(target: SocketAddrV4, mut rx: mpsc::Receiver<Vec<u8>>, stats: Arc<Stats>) {
    let mut backoff = Duration::from_secs(1);
    let mut stream: Option<tokio::net::TcpStream> = None;
    while let Some(msg) = rx.recv().await {
        if stream.is_none() {
            match tokio::time::timeout(IO_TIMEOUT, tokio::net::TcpStream::connect(target)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    stream = Some(s);
                    backoff = Duration::from_secs(1);
                }
                Ok(Err(e)) => {
                    stats.fail(format!("tcp://{target}: cannot connect: {e}"));
                }
                Err(_) => {
                    stats.fail(format!(
                        "tcp://{target}: connect timed out after {} s (host down or filtered?)",
                        IO_TIMEOUT.as_secs()
                    ));
                }
            }
        }
        let Some(s) = stream.as_mut() else {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            // Wait before the next attempt; what queues meanwhile is bounded, the rest drops.
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        };
        match tokio::time::timeout(IO_TIMEOUT, s.write_all(&msg)).await {
            Ok(Ok(())) => stats.success(),
            Ok(Err(e)) => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                stats.fail(format!("tcp://{target}: write failed: {e}; reconnecting"));
                stream = None;
            }
            Err(_) => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                stats.fail(format!(
                    "tcp://{target}: write stalled for {} s; reconnecting",
                    IO_TIMEOUT.as_secs()
                ));
                stream = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{bounded, SyslogFacility};
    use tokio::io::AsyncReadExt;

    fn config_with(cols: &[SyslogCollector]) -> Config {
        let mut c = Config::builtin_default();
        c.hostname = bounded("box1");
        c.syslog.facility = SyslogFacility::Daemon;
        for col in cols {
            let _ = c.syslog.collectors.push(*col);
        }
        c
    }

    fn ev() -> Event {
        Event::server_health(
            "sip",
            "198.51.100.11:5060".parse().unwrap(),
            false,
            "timeout",
        )
    }

    #[tokio::test(flavor = "current_thread")]
    async fn udp_and_tcp_collectors_receive_messages() {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = |a: std::net::SocketAddr| a.port();
        let c = config_with(&[
            SyslogCollector {
                address: std::net::Ipv4Addr::LOCALHOST,
                port: port(udp.local_addr().unwrap()),
                transport: SyslogTransport::Udp,
            },
            SyslogCollector {
                address: std::net::Ipv4Addr::LOCALHOST,
                port: port(tcp.local_addr().unwrap()),
                transport: SyslogTransport::Tcp,
            },
        ]);
        let mut s = Syslog::new(Arc::new(AtomicBool::new(false)));
        s.reconfigure(&c);
        s.emit(&ev());
        s.emit(&Event::config("apply", true, ""));
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), udp.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let m = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(m.starts_with("<28>1 "), "{m}");
        assert!(m.contains(" box1 appliance "), "{m}");
        assert!(m.contains("[slb@32473 service=\"sip\""), "{m}");
        let (mut conn, _) = tokio::time::timeout(Duration::from_secs(5), tcp.accept())
            .await
            .unwrap()
            .unwrap();
        let mut got = Vec::new();
        while got.iter().filter(|&&b| b == b'<').count() < 2 {
            let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "connection closed early");
            got.extend_from_slice(&buf[..n]);
        }
        // Two octet-counted frames.
        let text = String::from_utf8(got).unwrap();
        let (len, rest) = text.split_once(' ').unwrap();
        let len: usize = len.parse().unwrap();
        assert!(rest[..len].starts_with("<28>1 ") && rest[..len].ends_with("down: timeout"));
        let (len2, rest2) = rest[len..].split_once(' ').unwrap();
        assert_eq!(rest2.len(), len2.parse::<usize>().unwrap(), "{rest2}");
        assert!(rest2.contains("CONFIG"), "{rest2}");
        let st = s.status();
        assert_eq!(st.len(), 2);
        assert!(st[0].target.starts_with("udp://127.0.0.1:"));
        assert!(st[1].target.starts_with("tcp://127.0.0.1:"));
        assert_eq!((st[0].sent, st[0].dropped), (2, 0), "{st:?}");
    }

    /// A collector whose TCP connect hangs (a listener that never accepts, backlog full,
    /// or a black hole) must never block `emit`: the queue fills and the rest is dropped.
    #[tokio::test(flavor = "current_thread")]
    async fn hanging_or_refusing_collectors_never_block_and_drop_with_a_count() {
        // A closed port: refused connects / ICMP port unreachable.
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let c = config_with(&[
            SyslogCollector {
                address: std::net::Ipv4Addr::LOCALHOST,
                port: closed_port,
                transport: SyslogTransport::Udp,
            },
            SyslogCollector {
                address: std::net::Ipv4Addr::LOCALHOST,
                port: closed_port,
                transport: SyslogTransport::Tcp,
            },
        ]);
        let mut s = Syslog::new(Arc::new(AtomicBool::new(true)));
        s.reconfigure(&c);
        let t0 = std::time::Instant::now();
        for _ in 0..(QUEUE * 3) {
            s.emit(&ev());
        }
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "emit blocked: {:?}",
            t0.elapsed()
        );
        // Let the tasks run a little.
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let st = s.status();
        assert!(st[1].dropped >= (QUEUE * 2) as u64, "{st:?}");
        assert_eq!(st[1].state, "error", "{st:?}");
        assert!(
            st[1]
                .error
                .as_deref()
                .unwrap_or("")
                .contains("cannot connect"),
            "{st:?}"
        );
        assert!(st[0].dropped > 0, "{st:?}");
        assert!(
            st[0]
                .error
                .as_deref()
                .unwrap_or("")
                .contains("nothing listens"),
            "{st:?}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reconfigure_restarts_only_on_change() {
        let mut s = Syslog::new(Arc::new(AtomicBool::new(false)));
        let c = config_with(&[SyslogCollector {
            address: std::net::Ipv4Addr::LOCALHOST,
            port: 9,
            transport: SyslogTransport::Udp,
        }]);
        s.reconfigure(&c);
        s.collectors[0].stats.sent.store(5, Ordering::Relaxed);
        s.reconfigure(&c);
        assert_eq!(s.status()[0].sent, 5, "unchanged settings keep the tasks");
        s.reconfigure(&config_with(&[]));
        assert!(s.status().is_empty());
        s.emit(&ev()); // no collectors: nothing to do, no panic
    }
}
