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
    task: JoinHandle<()>,
}

impl Endpoint {
    /// Listens on `binding.addr` and serves snapshots from `source`. Call inside the runtime.
    pub fn start(binding: Binding, source: SnapshotFn) -> Result<Endpoint, MetricsError> {
        let bind_err = |source| MetricsError::Bind {
            addr: binding.addr,
            source,
        };
        let std_l = std::net::TcpListener::bind(binding.addr).map_err(bind_err)?;
        std_l.set_nonblocking(true).map_err(bind_err)?;
        let listener = TcpListener::from_std(std_l).map_err(bind_err)?;
        info!(listen = %binding.addr, allow = ?binding.allow, "metrics endpoint listening");
        let task = tokio::spawn(accept_loop(listener, binding.allow.clone(), source));
        Ok(Endpoint { binding, task })
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

async fn accept_loop(listener: TcpListener, allow: Vec<Ipv4Net>, source: SnapshotFn) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
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
            serve(stream, &source, &counters).await;
            drop(permit);
        });
    }
}

/// Reads the head (bounded in size and time), answers once, closes.
async fn serve(mut stream: TcpStream, source: &SnapshotFn, counters: &Counters) {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
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
    let _ = tokio::time::timeout(WRITE_TIMEOUT, write).await;
}
