//! One blocking OPTIONS request for diagnostics (`appliance probe`, the console's probe item).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use super::health::Policy;
use super::packet::{self, Expected, Ids, PacketError, ReplyVerdict, RequestParams, RECV_BUF};
use crate::config::ProbeSettings;

/// A final reply to a one-shot probe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProbeReply {
    /// Server probed.
    pub target: SocketAddrV4,
    /// Our socket address.
    pub local: SocketAddrV4,
    /// Status code.
    pub code: u16,
    /// Reason phrase.
    pub reason: String,
    /// Whether the code is in the settings' accept list (alive).
    pub accepted: bool,
    /// Round-trip time, microseconds.
    pub rtt_us: u64,
    /// Provisional codes received before the final reply.
    pub provisional: Vec<u16>,
    /// Datagrams ignored (stale, spoofed, malformed) while waiting.
    pub ignored: u32,
    /// Reply headers in order (canonical names, unfolded values).
    pub headers: Vec<(String, String)>,
}

/// Why a one-shot probe got no final reply.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The probe settings cannot produce a request.
    #[error(transparent)]
    Settings(#[from] PacketError),
    /// Local socket trouble.
    #[error("cannot {op} a UDP socket for {target}: {source}")]
    Socket {
        /// What failed: bind, connect, send.
        op: &'static str,
        /// Server probed.
        target: SocketAddrV4,
        /// OS error.
        source: io::Error,
    },
    /// ICMP port unreachable: nothing listens there.
    #[error("{target}: port unreachable (ICMP, connection refused): no SIP service listens on this UDP port")]
    Refused {
        /// Server probed.
        target: SocketAddrV4,
    },
    /// Host or network unreachable, or another receive error.
    #[error("{target}: {source}")]
    Unreachable {
        /// Server probed.
        target: SocketAddrV4,
        /// OS error.
        source: io::Error,
    },
    /// No final reply in time.
    #[error("{target}: no final reply within {ms} ms ({ignored} unmatched or malformed datagrams ignored)")]
    Timeout {
        /// Server probed.
        target: SocketAddrV4,
        /// Timeout used.
        ms: u64,
        /// Datagrams ignored while waiting.
        ignored: u32,
    },
}

/// Send one OPTIONS to `target` and wait `settings.timeout_ms` for the final reply.
/// Blocking (std sockets): call it from a plain thread or `spawn_blocking`.
pub fn options_once(
    target: SocketAddrV4,
    settings: &ProbeSettings,
) -> Result<ProbeReply, ProbeError> {
    let timeout = Duration::from_millis(u64::from(settings.timeout_ms.max(1)));
    options_once_from(None, target, settings, timeout)
}

/// [`options_once`] with an explicit source address and timeout.
pub fn options_once_from(
    bind: Option<Ipv4Addr>,
    target: SocketAddrV4,
    settings: &ProbeSettings,
    timeout: Duration,
) -> Result<ProbeReply, ProbeError> {
    packet::validate_settings(settings)?;
    let sock_err = |op| move |source| ProbeError::Socket { op, target, source };
    let sock = std::net::UdpSocket::bind((bind.unwrap_or(Ipv4Addr::UNSPECIFIED), 0))
        .map_err(sock_err("bind"))?;
    sock.connect(target).map_err(sock_err("connect"))?;
    let local = match sock.local_addr().map_err(sock_err("read the address of"))? {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => {
            return Err(ProbeError::Socket {
                op: "bind (IPv4)",
                target,
                source: io::Error::new(io::ErrorKind::InvalidInput, "IPv6 local address"),
            })
        }
    };
    let mut ids = Ids::new();
    let exp = Expected {
        branch: ids.branch(),
        call_id: ids.call_id(*local.ip()),
        cseq: 1,
        peer: target,
    };
    let tag = ids.tag();
    let bytes = packet::build_options(&RequestParams {
        local,
        target,
        settings,
        branch: &exp.branch,
        call_id: &exp.call_id,
        from_tag: &tag,
        cseq: exp.cseq,
    })?;
    let policy = Policy::from_settings(settings);
    let start = Instant::now();
    let deadline = start + timeout;
    sock.send(&bytes).map_err(|e| map_io(target, e, "send"))?;
    let mut buf = vec![0u8; RECV_BUF];
    let (mut provisional, mut ignored) = (Vec::new(), 0u32);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ProbeError::Timeout {
                target,
                ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                ignored,
            });
        }
        sock.set_read_timeout(Some(left))
            .map_err(sock_err("set a timeout on"))?;
        let (n, src) = match sock.recv_from(&mut buf) {
            Ok(v) => v,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(map_io(target, e, "receive")),
        };
        let data = buf.get(..n).unwrap_or(&[]);
        match packet::classify(data, src, &exp) {
            ReplyVerdict::Final { code, reason } => {
                let rtt = start.elapsed();
                let headers = packet::parse_reply(data)
                    .map(|r| r.headers)
                    .unwrap_or_default();
                return Ok(ProbeReply {
                    target,
                    local,
                    code,
                    reason,
                    accepted: policy.accepts(code),
                    rtt_us: u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX),
                    provisional,
                    ignored,
                    headers,
                });
            }
            ReplyVerdict::Provisional { code } => provisional.push(code),
            ReplyVerdict::Unmatched(_) | ReplyVerdict::Malformed(_) => ignored += 1,
        }
    }
}

fn map_io(target: SocketAddrV4, e: io::Error, op: &'static str) -> ProbeError {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ProbeError::Refused { target },
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            ProbeError::Unreachable { target, source: e }
        }
        _ if op == "receive" => ProbeError::Unreachable { target, source: e },
        _ => ProbeError::Socket {
            op,
            target,
            source: e,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_loopback_port_is_refused() {
        // Find a free UDP port on loopback, release it, probe it: ICMP port unreachable.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .expect("ephemeral port");
        let target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let r = options_once_from(
            None,
            target,
            &ProbeSettings::default(),
            Duration::from_secs(2),
        );
        assert!(matches!(r, Err(ProbeError::Refused { .. })), "{r:?}");
    }

    #[test]
    fn silent_loopback_socket_times_out() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let Ok(SocketAddr::V4(target)) = silent.local_addr() else {
            panic!("no v4 addr")
        };
        let r = options_once_from(
            None,
            target,
            &ProbeSettings::default(),
            Duration::from_millis(100),
        );
        assert!(
            matches!(r, Err(ProbeError::Timeout { ms: 100, .. })),
            "{r:?}"
        );
        // It did receive our request: a well-formed OPTIONS.
        let mut buf = [0u8; 2048];
        let n = silent.recv(&mut buf).expect("request arrived");
        assert!(buf[..n].starts_with(b"OPTIONS sip:127.0.0.1:"));
    }
}
