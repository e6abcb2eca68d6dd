//! Which ICMP errors may count against a server (pure).
//!
//! A connected UDP socket turns any ICMP error whose quoted header names its 4-tuple
//! into ECONNREFUSED/EHOSTUNREACH, and the 4-tuple is easy to guess: an off-path
//! sender sweeping the ephemeral ports can fail probes of a live server. With
//! `IP_RECVERR` the kernel also queues each error with its origin, ICMP type/code,
//! the offender (the ICMP's source) and the quoted bytes of our datagram. An error
//! counts only when the quote proves it answers a probe we sent (it reaches past the
//! 128-bit random Via branch, which nobody off-path has seen) and, for a port
//! unreachable, when the offender is the server itself. Anything else is ignored
//! and counted, so a forged error never fails a probe.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::health::Outcome;

/// `SO_EE_ORIGIN_LOCAL`: the error was raised by our own stack.
pub const ORIGIN_LOCAL: u8 = 1;
/// `SO_EE_ORIGIN_ICMP`: the error came in an ICMP message.
pub const ORIGIN_ICMP: u8 = 2;
/// ICMP type destination unreachable.
const DEST_UNREACH: u8 = 3;
/// ICMP type time exceeded.
const TIME_EXCEEDED: u8 = 11;
/// Destination-unreachable code: port unreachable.
const PORT_UNREACH: u8 = 3;
/// Destination-unreachable code: fragmentation needed (path MTU; not a failure).
const FRAG_NEEDED: u8 = 4;

/// One entry of the socket's error queue: `struct sock_extended_err` and the
/// `SO_EE_OFFENDER` address that follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtErr {
    /// errno the kernel maps this error to.
    pub errno: i32,
    /// `SO_EE_ORIGIN_*`.
    pub origin: u8,
    /// ICMP type (ICMP origin only).
    pub icmp_type: u8,
    /// ICMP code (ICMP origin only).
    pub icmp_code: u8,
    /// Source of the ICMP message, when the kernel gave one.
    pub offender: Option<Ipv4Addr>,
}

/// Why [`ExtErr::parse`] rejected a control message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtErrError {
    /// Shorter than `struct sock_extended_err` (16 bytes).
    #[error("extended error is {0} bytes, need 16")]
    Short(usize),
}

/// `AF_INET` as the kernel writes it into `sockaddr_in.sin_family`.
const AF_INET: u16 = 2;

impl ExtErr {
    /// Parse the data of an `IP_RECVERR` control message: `sock_extended_err`
    /// (errno u32, origin, type, code, pad, info u32, data u32; host byte order)
    /// then an optional `sockaddr_in` offender (family host order, port and address
    /// network order). A missing or non-IPv4 offender is `None`.
    pub fn parse(b: &[u8]) -> Result<ExtErr, ExtErrError> {
        let head = b.get(..16).ok_or(ExtErrError::Short(b.len()))?;
        let errno = u32::from_ne_bytes([head[0], head[1], head[2], head[3]]);
        let offender = b.get(16..24).and_then(|sa| {
            let family = u16::from_ne_bytes([sa[0], sa[1]]);
            let ip = Ipv4Addr::new(sa[4], sa[5], sa[6], sa[7]);
            (family == AF_INET && !ip.is_unspecified()).then_some(ip)
        });
        Ok(ExtErr {
            errno: i32::try_from(errno).unwrap_or(i32::MAX),
            origin: head[4],
            icmp_type: head[5],
            icmp_code: head[6],
            offender,
        })
    }
}

/// A probe we sent and may still get an ICMP error for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentProbe {
    /// The UDP payload exactly as sent.
    pub bytes: Vec<u8>,
    /// Its Via branch (random, unseen off-path).
    pub branch: String,
}

/// What one queued error means for the probe in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IcmpVerdict {
    /// Counts as the probe's outcome.
    Counts(Outcome),
    /// Does not count; the reason is for logs and the counters.
    Ignored(String),
}

/// True when `quote` (the payload bytes the ICMP quoted) is a prefix of `sent` that
/// reaches past the end of its branch, so only someone who saw the probe could
/// have written it. A datagram shorter than that must be quoted whole.
pub fn quote_proves(quote: &[u8], sent: &SentProbe) -> bool {
    let Some(at) = find(&sent.bytes, sent.branch.as_bytes()) else {
        return false;
    };
    let need = (at + sent.branch.len()).min(sent.bytes.len());
    quote.len() >= need && sent.bytes.starts_with(quote)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Judge one queued error for a probe of `server`, given the quoted payload and the
/// probes still answerable (the one in flight and the one before it).
pub fn judge(e: &ExtErr, quote: &[u8], server: SocketAddrV4, sent: &[SentProbe]) -> IcmpVerdict {
    let errno = std::io::Error::from_raw_os_error(e.errno);
    if e.origin == ORIGIN_LOCAL {
        // Raised by our own stack (e.g. message too long): nobody outside forged it.
        return IcmpVerdict::Counts(Outcome::Error(format!("socket error: {errno}")));
    }
    if e.origin != ORIGIN_ICMP {
        return IcmpVerdict::Ignored(format!("error of origin {} ignored", e.origin));
    }
    let from = e
        .offender
        .map_or_else(|| "an unknown sender".to_string(), |a| a.to_string());
    if !sent.iter().any(|s| quote_proves(quote, s)) {
        return IcmpVerdict::Ignored(format!(
            "ICMP {}/{} from {from} does not quote a probe of ours ({} bytes quoted)",
            e.icmp_type,
            e.icmp_code,
            quote.len()
        ));
    }
    match (e.icmp_type, e.icmp_code) {
        (DEST_UNREACH, PORT_UNREACH) => {
            if e.offender == Some(*server.ip()) {
                IcmpVerdict::Counts(Outcome::Refused)
            } else {
                IcmpVerdict::Ignored(format!(
                    "port unreachable from {from}, not from the server {}",
                    server.ip()
                ))
            }
        }
        (DEST_UNREACH, FRAG_NEEDED) => {
            IcmpVerdict::Ignored(format!("fragmentation needed (from {from})"))
        }
        (DEST_UNREACH, code) => IcmpVerdict::Counts(Outcome::Error(format!(
            "destination unreachable (ICMP code {code} from {from}: {errno})"
        ))),
        (TIME_EXCEEDED, _) => IcmpVerdict::Counts(Outcome::Error(format!(
            "time exceeded in transit (ICMP from {from})"
        ))),
        (t, c) => IcmpVerdict::Ignored(format!("ICMP {t}/{c} from {from} ignored")),
    }
}

/// `SOL_IP`.
const SOL_IP: i32 = 0;
/// `IP_RECVERR`, also the control message type of a queued error.
const IP_RECVERR: i32 = 11;

/// Find the `IP_RECVERR` entry in a `recvmsg` control buffer and parse it. The
/// buffer is a sequence of `cmsghdr { len: usize, level: i32, type: i32 }`, each
/// header and its data aligned to `usize`, as Linux lays them out.
pub fn ext_err_from_control(control: &[u8]) -> Option<ExtErr> {
    const W: usize = std::mem::size_of::<usize>();
    let align = |n: usize| n.div_ceil(W) * W;
    let hdr = align(W + 8);
    let mut at = 0;
    while let Some(h) = control.get(at..at + hdr) {
        let len = usize::from_ne_bytes(h[..W].try_into().ok()?);
        let level = i32::from_ne_bytes(h[W..W + 4].try_into().ok()?);
        let kind = i32::from_ne_bytes(h[W + 4..W + 8].try_into().ok()?);
        if len < hdr {
            return None;
        }
        let data = control.get(at + hdr..at + len)?;
        if level == SOL_IP && kind == IP_RECVERR {
            return ExtErr::parse(data).ok();
        }
        at += align(len);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 11), 5060);

    /// `sock_extended_err` + `sockaddr_in` as the kernel lays them out on x86-64.
    fn raw(errno: u32, origin: u8, t: u8, c: u8, offender: Option<[u8; 4]>) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&errno.to_ne_bytes());
        b.extend_from_slice(&[origin, t, c, 0]);
        b.extend_from_slice(&0u32.to_ne_bytes()); // ee_info
        b.extend_from_slice(&0u32.to_ne_bytes()); // ee_data
        if let Some(a) = offender {
            b.extend_from_slice(&AF_INET.to_ne_bytes());
            b.extend_from_slice(&0u16.to_be_bytes());
            b.extend_from_slice(&a);
            b.extend_from_slice(&[0; 8]);
        }
        b
    }

    fn probe() -> SentProbe {
        let bytes = b"OPTIONS sip:198.51.100.11:5060 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 198.51.100.1:40000;branch=z9hG4bK0123456789abcdef0123456789abcdef;rport\r\n\
            Call-ID: 1@198.51.100.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            .to_vec();
        SentProbe {
            bytes,
            branch: "z9hG4bK0123456789abcdef0123456789abcdef".into(),
        }
    }

    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        const W: usize = std::mem::size_of::<usize>();
        let hdr = (W + 8).div_ceil(W) * W;
        let mut b = Vec::new();
        b.extend_from_slice(&(hdr + data.len()).to_ne_bytes());
        b.extend_from_slice(&level.to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.resize(hdr, 0);
        b.extend_from_slice(data);
        b.resize((hdr + data.len()).div_ceil(W) * W, 0);
        b
    }

    #[test]
    fn finds_the_error_among_control_messages() {
        let ee = raw(111, ORIGIN_ICMP, 3, 3, Some([198, 51, 100, 11]));
        // IP_TTL (level 0, type 2) first, then the error.
        let mut buf = cmsg(0, 2, &64i32.to_ne_bytes());
        buf.extend(cmsg(SOL_IP, IP_RECVERR, &ee));
        let e = ext_err_from_control(&buf).unwrap();
        assert_eq!(e.offender, Some(Ipv4Addr::new(198, 51, 100, 11)));
        assert_eq!(ext_err_from_control(&cmsg(0, 2, &[0; 4])), None);
        assert_eq!(ext_err_from_control(&[]), None);
        // A length that runs past the buffer, or a too-short one, ends the walk.
        let mut bad = cmsg(SOL_IP, IP_RECVERR, &ee);
        bad[0] = 200;
        assert_eq!(ext_err_from_control(&bad), None);
        let mut bad = cmsg(SOL_IP, IP_RECVERR, &ee);
        bad[..std::mem::size_of::<usize>()].copy_from_slice(&4usize.to_ne_bytes());
        assert_eq!(ext_err_from_control(&bad), None);
    }

    #[test]
    fn parses_kernel_layout() {
        let e = ExtErr::parse(&raw(111, ORIGIN_ICMP, 3, 3, Some([198, 51, 100, 11]))).unwrap();
        assert_eq!(
            e,
            ExtErr {
                errno: 111,
                origin: ORIGIN_ICMP,
                icmp_type: 3,
                icmp_code: 3,
                offender: Some(Ipv4Addr::new(198, 51, 100, 11)),
            }
        );
        // No offender (local errors) and a zeroed one are both "unknown".
        let e = ExtErr::parse(&raw(90, ORIGIN_LOCAL, 0, 0, None)).unwrap();
        assert_eq!(e.offender, None);
        let e = ExtErr::parse(&raw(111, ORIGIN_ICMP, 3, 3, Some([0; 4]))).unwrap();
        assert_eq!(e.offender, None);
        assert_eq!(ExtErr::parse(&[0; 15]), Err(ExtErrError::Short(15)));
    }

    #[test]
    fn port_unreachable_from_server_quoting_our_probe_counts() {
        let p = probe();
        let e = ExtErr::parse(&raw(111, ORIGIN_ICMP, 3, 3, Some([198, 51, 100, 11]))).unwrap();
        // Linux quotes the whole datagram.
        assert_eq!(
            judge(&e, &p.bytes, SERVER, std::slice::from_ref(&p)),
            IcmpVerdict::Counts(Outcome::Refused)
        );
        // A quote cut just after the branch still proves it.
        let end = find(&p.bytes, p.branch.as_bytes()).unwrap() + p.branch.len();
        assert_eq!(
            judge(&e, &p.bytes[..end], SERVER, std::slice::from_ref(&p)),
            IcmpVerdict::Counts(Outcome::Refused)
        );
        // The previous probe's error still counts (it arrives one RTT late).
        let older = probe();
        let mut newer = probe();
        newer.branch = "z9hG4bKffffffffffffffffffffffffffffffff".into();
        newer.bytes = String::from_utf8(older.bytes.clone())
            .unwrap()
            .replace(&older.branch, &newer.branch)
            .into_bytes();
        assert_eq!(
            judge(&e, &older.bytes, SERVER, &[older.clone(), newer]),
            IcmpVerdict::Counts(Outcome::Refused)
        );
    }

    #[test]
    fn forged_quotes_are_ignored() {
        let p = probe();
        let e = ExtErr::parse(&raw(111, ORIGIN_ICMP, 3, 3, Some([198, 51, 100, 11]))).unwrap();
        let sent = std::slice::from_ref(&p);
        // Nothing quoted (only the UDP header, as a blind forger or RFC 792's minimum).
        assert!(matches!(
            judge(&e, b"", SERVER, sent),
            IcmpVerdict::Ignored(_)
        ));
        // A guessed prefix that stops before the branch's random part.
        let at = find(&p.bytes, p.branch.as_bytes()).unwrap();
        assert!(matches!(
            judge(&e, &p.bytes[..at + 10], SERVER, sent),
            IcmpVerdict::Ignored(_)
        ));
        // A plausible probe with a guessed branch.
        let guess = String::from_utf8(p.bytes.clone())
            .unwrap()
            .replace("0123456789abcdef0123", "00000000000000000000")
            .into_bytes();
        assert!(matches!(
            judge(&e, &guess, SERVER, sent),
            IcmpVerdict::Ignored(_)
        ));
        // Nothing in flight: nothing to prove against.
        assert!(matches!(
            judge(&e, &p.bytes, SERVER, &[]),
            IcmpVerdict::Ignored(_)
        ));
    }

    #[test]
    fn port_unreachable_from_elsewhere_is_ignored() {
        let p = probe();
        let sent = std::slice::from_ref(&p);
        for off in [Some([198, 51, 100, 99]), None] {
            let e = ExtErr::parse(&raw(111, ORIGIN_ICMP, 3, 3, off)).unwrap();
            let v = judge(&e, &p.bytes, SERVER, sent);
            assert!(
                matches!(&v, IcmpVerdict::Ignored(r) if r.contains("not from the server")),
                "{v:?}"
            );
        }
    }

    #[test]
    fn path_errors_count_as_errors_and_frag_needed_does_not() {
        let p = probe();
        let sent = std::slice::from_ref(&p);
        // Host unreachable from a router on the path: it may come from anyone on it.
        let e = ExtErr::parse(&raw(113, ORIGIN_ICMP, 3, 1, Some([198, 51, 100, 254]))).unwrap();
        let v = judge(&e, &p.bytes, SERVER, sent);
        assert!(
            matches!(&v, IcmpVerdict::Counts(Outcome::Error(r)) if r.contains("198.51.100.254")),
            "{v:?}"
        );
        let e = ExtErr::parse(&raw(90, ORIGIN_ICMP, 3, 4, Some([198, 51, 100, 254]))).unwrap();
        assert!(matches!(
            judge(&e, &p.bytes, SERVER, sent),
            IcmpVerdict::Ignored(_)
        ));
        let e = ExtErr::parse(&raw(113, ORIGIN_ICMP, 11, 0, Some([198, 51, 100, 254]))).unwrap();
        assert!(matches!(
            judge(&e, &p.bytes, SERVER, sent),
            IcmpVerdict::Counts(Outcome::Error(_))
        ));
        // Unknown type, and an unknown origin.
        let e = ExtErr::parse(&raw(0, ORIGIN_ICMP, 5, 0, Some([198, 51, 100, 11]))).unwrap();
        assert!(matches!(
            judge(&e, &p.bytes, SERVER, sent),
            IcmpVerdict::Ignored(_)
        ));
        let e = ExtErr::parse(&raw(0, 4, 0, 0, None)).unwrap();
        assert!(matches!(
            judge(&e, &p.bytes, SERVER, sent),
            IcmpVerdict::Ignored(_)
        ));
        // Our own stack's errors count whatever the quote.
        let e = ExtErr::parse(&raw(90, ORIGIN_LOCAL, 0, 0, None)).unwrap();
        assert!(matches!(
            judge(&e, b"", SERVER, sent),
            IcmpVerdict::Counts(Outcome::Error(_))
        ));
    }
}
