//! The metrics endpoint's thin tokio server.
//!
//! Never blocks the event loop and cannot be held open by a peer: connections from
//! outside the allow list are reset before any byte is read; at most
//! [`MAX_CONNECTIONS`] are served at once (more are reset); the request head must
//! arrive within [`HEAD_TIMEOUT`] and fit [`super::http::MAX_HEAD`]; the answer must be
//! taken within [`WRITE_TIMEOUT`]. The snapshot is taken on the loop (a short lock) and
//! rendered on the blocking pool.

use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::http::{self, Parsed, Status};
use super::render::{self, EndpointCounters, Snapshot};
use crate::config::Ipv4Net;

/// Connections served at the same time; more are reset at once.
pub const MAX_CONNECTIONS: usize = 4;
/// Time a client has to send the whole request head (slowloris bound).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoint's bounds (the constants above; tests shorten them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time to receive the request head.
    pub head_timeout: Duration,
    /// Time to hand over the response.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            head_timeout: HEAD_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
        }
    }
}

/// How long a closing connection's input is drained after the answer.
const LINGER: Duration = Duration::from_millis(500);

/// Where and for whom the endpoint serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Listen address and port.
    pub addr: SocketAddrV4,
    /// Source prefixes allowed to connect.
    pub allow: Vec<Ipv4Net>,
}

/// Builds a fresh snapshot of daemon state (called on the event loop, must be quick).
pub type SnapshotFn = Arc<dyn Fn() -> Snapshot + Send + Sync>;

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listening socket could not be opened.
    #[error("cannot listen for metrics on {addr}: {source}; check management.listen and metrics_port (is the address configured and the port free?)")]
    Bind {
        /// The address.
        addr: SocketAddrV4,
        /// The OS error.
        source: std::io::Error,
    },
}

#[derive(Default)]
struct Counters {
    served: AtomicU64,
    refused_source: AtomicU64,
    refused_busy: AtomicU64,
    rejected: AtomicU64,
    timeouts: AtomicU64,
}

impl Counters {
    fn get(&self) -> EndpointCounters {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EndpointCounters {
            served: g(&self.served),
            refused_source: g(&self.refused_source),
            refused_busy: g(&self.refused_busy),
            rejected: g(&self.rejected),
            timeouts: g(&self.timeouts),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// A running endpoint; dropping it stops listening (connections in progress finish).
pub struct Endpoint {
    binding: Binding,
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl Endpoint {
    /// Listens on `binding.addr` and serves snapshots from `source`. Call inside the runtime.
    pub fn start(binding: Binding, source: SnapshotFn) -> Result<Endpoint, MetricsError> {
        Self::start_with(binding, source, Limits::default())
    }

    /// [`Endpoint::start`] with other bounds.
    pub fn start_with(
        binding: Binding,
        source: SnapshotFn,
        limits: Limits,
    ) -> Result<Endpoint, MetricsError> {
        let bind_err = |source| MetricsError::Bind {
            addr: binding.addr,
            source,
        };
        let std_l = std::net::TcpListener::bind(binding.addr).map_err(bind_err)?;
        std_l.set_nonblocking(true).map_err(bind_err)?;
        let local = std_l.local_addr().map_err(bind_err)?;
        let listener = TcpListener::from_std(std_l).map_err(bind_err)?;
        info!(listen = %local, allow = ?binding.allow, "metrics endpoint listening");
        let task = tokio::spawn(accept_loop(listener, binding.allow.clone(), source, limits));
        Ok(Endpoint {
            binding,
            local,
            task,
        })
    }

    /// The address actually bound (port 0 picks one).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// What it listens on, for whom.
    pub fn binding(&self) -> &Binding {
        &self.binding
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn allowed(allow: &[Ipv4Net], peer: SocketAddr) -> bool {
    let ip = match peer.ip() {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(a) => a,
            None => return false,
        },
    };
    allow.iter().any(|n| n.contains(ip))
}

/// Closes with a reset: the peer learns at once, and no socket lingers in TIME_WAIT.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn accept_loop(
    listener: TcpListener,
    allow: Vec<Ipv4Net>,
    source: SnapshotFn,
    limits: Limits,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let counters = Arc::new(Counters::default());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if !allowed(&allow, peer) {
            bump(&counters.refused_source);
            debug!(peer = %peer, "metrics: source not in management.allow, connection reset");
            reset(stream);
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            bump(&counters.refused_busy);
            debug!(peer = %peer, "metrics: too many connections, connection reset");
            reset(stream);
            continue;
        };
        let source = source.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            serve(stream, &source, &counters, limits).await;
            drop(permit);
        });
    }
}

/// Reads the head (bounded in size and time), answers once, closes.
async fn serve(mut stream: TcpStream, source: &SnapshotFn, counters: &Counters, limits: Limits) {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limits.head_timeout;
    let outcome = loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => break Err(Status::Timeout),
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                match http::parse(&buf) {
                    Parsed::Incomplete => continue,
                    Parsed::Request(r) => break Ok(r),
                    Parsed::Reject(s) => break Err(s),
                }
            }
        }
    };
    let response = match outcome {
        Ok(req) => match http::route(&req) {
            Status::Ok => {
                let mut snap = source();
                snap.endpoint = counters.get();
                let body = tokio::task::spawn_blocking(move || {
                    let mut s = String::with_capacity(64 * 1024);
                    render::render(&snap, &mut s);
                    s
                })
                .await
                .unwrap_or_default();
                bump(&counters.served);
                let mut out =
                    http::response_head(Status::Ok, render::CONTENT_TYPE, body.len()).into_bytes();
                if req.method != "HEAD" {
                    out.extend_from_slice(body.as_bytes());
                }
                out
            }
            other => {
                bump(&counters.rejected);
                http::error_response(other)
            }
        },
        Err(Status::Timeout) => {
            bump(&counters.timeouts);
            http::error_response(Status::Timeout)
        }
        Err(s) => {
            bump(&counters.rejected);
            http::error_response(s)
        }
    };
    let write = async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    };
    if let Ok(Ok(())) = tokio::time::timeout(limits.write_timeout, write).await {
        // Lingering close: closing with unread input would reset the connection and
        // could destroy the answer before the client reads it, so drain a little first.
        let drain = async {
            let mut sink = [0u8; 1024];
            let mut left = 64 * 1024usize;
            while left > 0 {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpStream as StdStream};

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    /// Runs the endpoint on its own runtime thread, the way the daemon runs it.
    fn start(allow: &[&str], limits: Limits) -> (SocketAddr, std::sync::mpsc::Sender<()>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let allow: Vec<Ipv4Net> = allow.iter().map(|a| net(a)).collect();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let source: SnapshotFn = Arc::new(|| Snapshot {
                    version: "test".into(),
                    ..Snapshot::default()
                });
                let b = Binding {
                    addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
                    allow,
                };
                let ep = Endpoint::start_with(b, source, limits).unwrap();
                tx.send(ep.local_addr()).unwrap();
                // Serve until the test drops its sender.
                while stop_rx.try_recv() == Err(std::sync::mpsc::TryRecvError::Empty) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        });
        (rx.recv().unwrap(), stop_tx)
    }

    fn exchange(addr: SocketAddr, send: &[u8]) -> std::io::Result<String> {
        let mut s = StdStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(send)?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn serves_get_metrics_and_refuses_the_rest() {
        let (addr, _stop) = start(&["127.0.0.0/8"], Limits::default());
        let r = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
        assert!(
            r.contains("appliance_build_info{version=\"test\"} 1\n"),
            "{r}"
        );
        let r = exchange(addr, b"GET / HTTP/1.1\r\n\r\n").unwrap();
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
        let r = exchange(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").unwrap();
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
        let r = exchange(addr, b"\x16\x03\x01\x00\x05hello").unwrap();
        assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
        let big = vec![b'a'; 8192];
        let r = exchange(addr, &big).unwrap_or_default();
        // Either the 431 arrives, or the reset for the unread rest of the flood does.
        assert!(r.is_empty() || r.starts_with("HTTP/1.1 431 "), "{r}");
        // The endpoint counted the refusals; the next scrape shows them.
        let r = exchange(addr, b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        assert!(
            r.contains("appliance_metrics_connections_total{outcome=\"rejected\"} 4\n"),
            "{r}"
        );
    }

    #[test]
    fn a_source_outside_the_allow_list_gets_nothing() {
        let (addr, _stop) = start(&["192.0.2.0/24"], Limits::default());
        match exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n") {
            Ok(r) => assert!(r.is_empty(), "answered a refused source: {r}"),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ),
                "{e}"
            ),
        }
    }

    #[test]
    fn a_slow_head_times_out_and_busy_slots_reset_extra_connections() {
        let limits = Limits {
            max_connections: 2,
            head_timeout: Duration::from_millis(300),
            write_timeout: Duration::from_secs(1),
        };
        let (addr, _stop) = start(&["127.0.0.1/32"], limits);
        // Two slow clients hold both slots with half a head each.
        let mut slow: Vec<StdStream> = (0..2)
            .map(|_| {
                let mut s = StdStream::connect(addr).unwrap();
                s.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ").unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        // A third is reset without an answer while they hold them.
        match exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n") {
            Ok(r) => assert!(r.is_empty(), "{r}"),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
        // The slow ones get 408 once their time is up, and the slots free again.
        for s in slow.iter_mut() {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
        }
        // Closing ends the server's lingering drain, which frees the slots.
        drop(slow);
        std::thread::sleep(Duration::from_millis(100));
        let r = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
        assert!(
            r.contains("appliance_metrics_connections_total{outcome=\"timeout\"} 2\n")
                && r.contains("appliance_metrics_connections_total{outcome=\"refused_busy\"} 1\n"),
            "{r}"
        );
    }
}
