//! One-shot OPTIONS for diagnostics (`appliance probe HOST[:PORT]`, console).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::health::Policy;
use super::packet::{self, Expected, Ids, PacketError, RequestParams, Verdict, RECV_BUF};
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
            Verdict::Final { code, reason } => {
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
            Verdict::Provisional { code } => provisional.push(code),
            Verdict::Unmatched(_) | Verdict::Malformed(_) => ignored += 1,
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

const USAGE: &str = "usage: appliance probe HOST[:PORT] [--count N] [--interval MS] [--timeout MS] [--from ADDR] [--json]
  Sends SIP OPTIONS (default port 5060, 1 probe, timeout 1000 ms) and prints the reply.
  Exit status: 0 when every probe got a 2xx reply, 1 otherwise, 2 on bad arguments.";

struct Args {
    target: SocketAddrV4,
    count: u32,
    interval: Duration,
    timeout: Duration,
    from: Option<Ipv4Addr>,
    json: bool,
}

fn parse_target(s: &str) -> Result<SocketAddrV4, String> {
    if let Ok(a) = s.parse::<SocketAddrV4>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<Ipv4Addr>() {
        return Ok(SocketAddrV4::new(ip, 5060));
    }
    let with_port = if s.contains(':') {
        s.to_string()
    } else {
        format!("{s}:5060")
    };
    let addrs = with_port.to_socket_addrs().map_err(|e| {
        format!("cannot resolve '{s}': {e} (give an IPv4 address like 198.51.100.11[:5060])")
    })?;
    addrs
        .filter_map(|a| match a {
            SocketAddr::V4(v) => Some(v),
            SocketAddr::V6(_) => None,
        })
        .next()
        .ok_or_else(|| format!("'{s}' has no IPv4 address"))
}

fn parse_num(flag: &str, v: Option<&String>, lo: u64, hi: u64) -> Result<u64, String> {
    let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
    let n: u64 = v
        .parse()
        .map_err(|_| format!("{flag} {v:?} is not a number"))?;
    if !(lo..=hi).contains(&n) {
        return Err(format!("{flag} must be between {lo} and {hi}, got {n}"));
    }
    Ok(n)
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut target = None;
    let mut a = Args {
        target: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
        count: 1,
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(1000),
        from: None,
        json: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--count" | "-c" => a.count = parse_num("--count", it.next(), 1, 100_000)? as u32,
            "--interval" => {
                a.interval = Duration::from_millis(parse_num("--interval", it.next(), 0, 60_000)?)
            }
            "--timeout" => {
                a.timeout = Duration::from_millis(parse_num("--timeout", it.next(), 1, 60_000)?)
            }
            "--from" => {
                let v = it.next().ok_or("--from needs an IPv4 address")?;
                a.from = Some(
                    v.parse()
                        .map_err(|_| format!("--from {v:?} is not an IPv4 address"))?,
                );
            }
            "--json" => a.json = true,
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if target.is_none() => target = Some(parse_target(s)?),
            s => return Err(format!("unexpected argument {s:?}")),
        }
    }
    a.target = target.ok_or("missing HOST[:PORT]")?;
    Ok(a)
}

/// `appliance probe ...`.
pub fn cli(args: &[String]) -> ExitCode {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let a = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("appliance probe: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let settings = ProbeSettings::default();
    let (mut ok, mut rtts) = (0u32, Vec::new());
    for i in 0..a.count {
        if i > 0 {
            std::thread::sleep(a.interval);
        }
        let r = options_once_from(a.from, a.target, &settings, a.timeout);
        if a.json {
            let v = match &r {
                Ok(rep) => {
                    serde_json::json!({"target": a.target.to_string(), "ok": rep.accepted, "reply": rep})
                }
                Err(e) => {
                    serde_json::json!({"target": a.target.to_string(), "ok": false, "error": e.to_string()})
                }
            };
            println!("{v}");
        } else {
            match &r {
                Ok(rep) => {
                    println!(
                        "{} -> {}: SIP/2.0 {} {}  rtt {:.3} ms{}",
                        rep.local,
                        rep.target,
                        rep.code,
                        rep.reason,
                        rep.rtt_us as f64 / 1000.0,
                        if rep.accepted {
                            ""
                        } else {
                            "  (code not accepted: counts as DOWN)"
                        }
                    );
                    if i == 0 {
                        for (n, v) in &rep.headers {
                            println!("  {n}: {v}");
                        }
                    }
                }
                Err(e) => println!("{e}"),
            }
        }
        if let Ok(rep) = &r {
            rtts.push(rep.rtt_us);
            if rep.accepted {
                ok += 1;
            }
        }
    }
    if a.count > 1 && !a.json {
        let (min, max) = (rtts.iter().min(), rtts.iter().max());
        let avg = if rtts.is_empty() {
            0
        } else {
            rtts.iter().sum::<u64>() / rtts.len() as u64
        };
        println!(
            "--- {}: {} sent, {} accepted, {} replied; rtt min/avg/max = {:.3}/{:.3}/{:.3} ms",
            a.target,
            a.count,
            ok,
            rtts.len(),
            min.copied().unwrap_or(0) as f64 / 1000.0,
            avg as f64 / 1000.0,
            max.copied().unwrap_or(0) as f64 / 1000.0
        );
    }
    if ok == a.count {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn args_parse() {
        let a = parse_args(&s(&["198.51.100.11", "--count", "3", "--json"])).expect("ok");
        assert_eq!(a.target, "198.51.100.11:5060".parse().expect("addr"));
        assert_eq!((a.count, a.json), (3, true));
        let a = parse_args(&s(&["198.51.100.11:5070", "--from", "198.51.100.1"])).expect("ok");
        assert_eq!(a.target.port(), 5070);
        assert_eq!(a.from, Some(Ipv4Addr::new(198, 51, 100, 1)));
        for bad in [
            vec![],
            vec!["198.51.100.11", "--count", "0"],
            vec!["198.51.100.11", "--count", "x"],
            vec!["198.51.100.11", "--bogus"],
            vec!["198.51.100.11", "198.51.100.12"],
            vec!["198.51.100.11:99999"],
            vec!["198.51.100.11", "--from", "nope"],
        ] {
            assert!(parse_args(&s(&bad)).is_err(), "{bad:?}");
        }
    }

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
