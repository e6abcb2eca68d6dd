//! Pure encoder/decoder for the kernel's "IPVS" generic-netlink family, version 1.
//!
//! The unit of work is the *generic-netlink payload*: the 4-byte genl header
//! (`cmd`, `version`, reserved u16) followed by netlink attributes. The outer
//! `nlmsghdr` (length, type = family id, flags, seq, pid) belongs to the transport.
//!
//! Constants come from the kernel's `include/uapi/linux/ip_vs.h`; the attribute
//! encodings (which are big-endian, which are native) from `net/netfilter/ipvs/ip_vs_ctl.c`.
//! Pitfalls honoured here:
//! - NEW/SET_SERVICE need SCHED_NAME, FLAGS, TIMEOUT and NETMASK or the kernel says EINVAL;
//! - PORT (service and dest) and NETMASK are big-endian (`__be16`/`__be32`), everything
//!   else (AF, PROTOCOL, FWMARK, WEIGHT, TIMEOUT, FLAGS...) is host order;
//! - ADDR is always 16 bytes (`union nf_inet_addr`); IPv4 sits in the first 4;
//! - strings are NUL-terminated (`NLA_NUL_STRING`);
//! - destination commands carry the (identifying) service nest too;
//! - the GET_INFO reply puts VERSION (1) and CONN_TAB_SIZE (2) at the top level, where
//!   the same numbers otherwise mean SERVICE and DEST: decoding depends on the command;
//! - SET_SERVICE *replaces* the persistence engine: leaving PE_NAME out removes it.
//!
//! All integers in host byte order are encoded with `to_ne_bytes`, like the kernel does;
//! the byte vectors in the tests are little-endian (x86-64, arm64, armv7 are all LE).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Generic netlink family name.
pub const FAMILY_NAME: &str = "IPVS";
/// Generic netlink family version.
pub const FAMILY_VERSION: u8 = 1;
/// Length of the generic netlink header.
pub const GENL_HDRLEN: usize = 4;
/// Netlink attribute header length.
const NLA_HDRLEN: usize = 4;
/// Flag bits in `nla_type` (NLA_F_NESTED, NLA_F_NET_BYTEORDER) masked off when reading.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// `IPVS_CMD_*` command numbers.
#[allow(missing_docs)]
pub mod cmd {
    pub const NEW_SERVICE: u8 = 1;
    pub const SET_SERVICE: u8 = 2;
    pub const DEL_SERVICE: u8 = 3;
    pub const GET_SERVICE: u8 = 4;
    pub const NEW_DEST: u8 = 5;
    pub const SET_DEST: u8 = 6;
    pub const DEL_DEST: u8 = 7;
    pub const GET_DEST: u8 = 8;
    pub const NEW_DAEMON: u8 = 9;
    pub const DEL_DAEMON: u8 = 10;
    pub const GET_DAEMON: u8 = 11;
    pub const SET_CONFIG: u8 = 12;
    pub const GET_CONFIG: u8 = 13;
    pub const SET_INFO: u8 = 14;
    pub const GET_INFO: u8 = 15;
    pub const ZERO: u8 = 16;
    pub const FLUSH: u8 = 17;
}

/// Top-level attributes (`IPVS_CMD_ATTR_*`).
#[allow(missing_docs)]
pub mod cmd_attr {
    pub const SERVICE: u16 = 1;
    pub const DEST: u16 = 2;
    pub const DAEMON: u16 = 3;
    pub const TIMEOUT_TCP: u16 = 4;
    pub const TIMEOUT_TCP_FIN: u16 = 5;
    pub const TIMEOUT_UDP: u16 = 6;
}

/// Service nest attributes (`IPVS_SVC_ATTR_*`).
#[allow(missing_docs)]
pub mod svc_attr {
    pub const AF: u16 = 1;
    pub const PROTOCOL: u16 = 2;
    pub const ADDR: u16 = 3;
    pub const PORT: u16 = 4;
    pub const FWMARK: u16 = 5;
    pub const SCHED_NAME: u16 = 6;
    pub const FLAGS: u16 = 7;
    pub const TIMEOUT: u16 = 8;
    pub const NETMASK: u16 = 9;
    pub const STATS: u16 = 10;
    pub const PE_NAME: u16 = 11;
    pub const STATS64: u16 = 12;
}

/// Destination nest attributes (`IPVS_DEST_ATTR_*`).
#[allow(missing_docs)]
pub mod dest_attr {
    pub const ADDR: u16 = 1;
    pub const PORT: u16 = 2;
    pub const FWD_METHOD: u16 = 3;
    pub const WEIGHT: u16 = 4;
    pub const U_THRESH: u16 = 5;
    pub const L_THRESH: u16 = 6;
    pub const ACTIVE_CONNS: u16 = 7;
    pub const INACT_CONNS: u16 = 8;
    pub const PERSIST_CONNS: u16 = 9;
    pub const STATS: u16 = 10;
    pub const ADDR_FAMILY: u16 = 11;
    pub const STATS64: u16 = 12;
    pub const TUN_TYPE: u16 = 13;
    pub const TUN_PORT: u16 = 14;
    pub const TUN_FLAGS: u16 = 15;
}

/// Sync-daemon nest attributes (`IPVS_DAEMON_ATTR_*`).
#[allow(missing_docs)]
pub mod daemon_attr {
    pub const STATE: u16 = 1;
    pub const MCAST_IFN: u16 = 2;
    pub const SYNC_ID: u16 = 3;
    pub const SYNC_MAXLEN: u16 = 4;
    pub const MCAST_GROUP: u16 = 5;
    pub const MCAST_GROUP6: u16 = 6;
    pub const MCAST_PORT: u16 = 7;
    pub const MCAST_TTL: u16 = 8;
}

/// Statistics nest attributes (`IPVS_STATS_ATTR_*`).
#[allow(missing_docs)]
pub mod stats_attr {
    pub const CONNS: u16 = 1;
    pub const INPKTS: u16 = 2;
    pub const OUTPKTS: u16 = 3;
    pub const INBYTES: u16 = 4;
    pub const OUTBYTES: u16 = 5;
    pub const CPS: u16 = 6;
    pub const INPPS: u16 = 7;
    pub const OUTPPS: u16 = 8;
    pub const INBPS: u16 = 9;
    pub const OUTBPS: u16 = 10;
    pub const PAD: u16 = 11;
}

/// GET_INFO reply attributes (`IPVS_INFO_ATTR_*`), top level of a SET_INFO message.
#[allow(missing_docs)]
pub mod info_attr {
    pub const VERSION: u16 = 1;
    pub const CONN_TAB_SIZE: u16 = 2;
}

/// Virtual service flags (`IP_VS_SVC_F_*`).
#[allow(missing_docs)]
pub mod svc_flags {
    pub const PERSISTENT: u32 = 0x0001;
    /// Set by the kernel on every hashed service; ignored when comparing.
    pub const HASHED: u32 = 0x0002;
    pub const ONEPACKET: u32 = 0x0004;
    pub const SCHED1: u32 = 0x0008;
    pub const SCHED2: u32 = 0x0010;
    pub const SCHED3: u32 = 0x0020;
}

/// Sync daemon states (`IP_VS_STATE_*`).
#[allow(missing_docs)]
pub mod daemon_state {
    pub const MASTER: u32 = 1;
    pub const BACKUP: u32 = 2;
}

/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u16 = 6;
/// `IPPROTO_UDP`.
pub const IPPROTO_UDP: u16 = 17;
/// `IPPROTO_SCTP`.
pub const IPPROTO_SCTP: u16 = 132;
/// Kernel limit for scheduler names including the NUL.
pub const SCHEDNAME_MAXLEN: usize = 16;
/// Kernel limit for persistence engine names.
pub const PENAME_MAXLEN: usize = 16;
/// Kernel limit for interface names including the NUL.
pub const IFNAME_MAXLEN: usize = 16;

/// Controller (nlctrl) constants for resolving the family id.
#[allow(missing_docs)]
pub mod ctrl {
    /// `GENL_ID_CTRL`, the netlink message type of nlctrl.
    pub const GENL_ID_CTRL: u16 = 0x10;
    pub const CMD_GETFAMILY: u8 = 3;
    pub const CMD_NEWFAMILY: u8 = 1;
    pub const ATTR_FAMILY_ID: u16 = 1;
    pub const ATTR_FAMILY_NAME: u16 = 2;
}

/// Why bytes could not be decoded (or a value cannot be encoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Fewer bytes than a header or attribute announced.
    #[error("truncated IPVS netlink message: {0}")]
    Truncated(&'static str),
    /// An attribute had the wrong payload size.
    #[error("IPVS attribute {what} has {got} bytes, expected {want}")]
    BadLength {
        /// Attribute name.
        what: &'static str,
        /// Actual size.
        got: usize,
        /// Expected size.
        want: usize,
    },
    /// A string attribute was not valid UTF-8 / not NUL-terminated.
    #[error("IPVS attribute {0} is not a valid string")]
    BadString(&'static str),
    /// A required attribute was missing from a reply.
    #[error("IPVS reply is missing attribute {0}")]
    Missing(&'static str),
    /// The reply had an unexpected command.
    #[error("unexpected IPVS reply command {got}, expected {want}")]
    UnexpectedCmd {
        /// Command found.
        got: u8,
        /// Command expected.
        want: u8,
    },
    /// A name is too long for the kernel's fixed buffer.
    #[error("name '{name}' is too long for the kernel (at most {max} characters)")]
    NameTooLong {
        /// The name.
        name: String,
        /// Maximum characters.
        max: usize,
    },
    /// Unknown address family in a reply.
    #[error("unsupported address family {0} in IPVS reply")]
    Family(u16),
}

// ---- low-level attribute writer / reader -----------------------------------

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Appends netlink attributes to a buffer, keeping 4-byte alignment.
#[derive(Debug, Default, Clone)]
pub struct AttrWriter {
    buf: Vec<u8>,
}

impl AttrWriter {
    /// A writer whose buffer starts with the genl header for `cmd`.
    pub fn genl(cmd: u8, version: u8) -> Self {
        AttrWriter {
            buf: vec![cmd, version, 0, 0],
        }
    }

    /// Put one attribute with a raw payload.
    pub fn put(&mut self, ty: u16, payload: &[u8]) {
        let len = NLA_HDRLEN + payload.len();
        // Payloads are tiny (<= 16 bytes + nests of a few hundred), far below u16::MAX.
        let len16 = u16::try_from(len).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len16.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(align4(self.buf.len()), 0);
    }

    /// Put a host-order u8.
    pub fn u8(&mut self, ty: u16, v: u8) {
        self.put(ty, &[v]);
    }
    /// Put a host-order u16.
    pub fn u16(&mut self, ty: u16, v: u16) {
        self.put(ty, &v.to_ne_bytes());
    }
    /// Put a big-endian u16 (ports).
    pub fn be16(&mut self, ty: u16, v: u16) {
        self.put(ty, &v.to_be_bytes());
    }
    /// Put a host-order u32.
    pub fn u32(&mut self, ty: u16, v: u32) {
        self.put(ty, &v.to_ne_bytes());
    }
    /// Put a big-endian u32 (netmask, IPv4 group).
    pub fn be32(&mut self, ty: u16, v: u32) {
        self.put(ty, &v.to_be_bytes());
    }
    /// Put a NUL-terminated string.
    pub fn string(&mut self, ty: u16, s: &str) {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.put(ty, &v);
    }

    /// Open a nest; returns its start offset for [`AttrWriter::end_nest`].
    ///
    /// NLA_F_NESTED is not set: the kernel's IPVS parser is the deprecated, lenient one and
    /// ipvsadm/keepalived do not set it either.
    pub fn begin_nest(&mut self, ty: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        at
    }

    /// Close a nest opened at `at`, fixing its length.
    pub fn end_nest(&mut self, at: usize) {
        let len = self.buf.len() - at;
        let len16 = u16::try_from(len).unwrap_or(u16::MAX);
        self.buf[at..at + 2].copy_from_slice(&len16.to_ne_bytes());
    }

    /// The bytes written.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// One attribute seen by [`attrs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    /// Type with the NESTED/BYTEORDER flag bits removed.
    pub ty: u16,
    /// Payload without padding.
    pub data: &'a [u8],
}

/// Split a byte run into attributes; fails on any length inconsistency.
pub fn attrs(mut b: &[u8]) -> Result<Vec<Attr<'_>>, CodecError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < NLA_HDRLEN {
            return Err(CodecError::Truncated("attribute header"));
        }
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let ty = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || len > b.len() {
            return Err(CodecError::Truncated("attribute payload"));
        }
        out.push(Attr {
            ty,
            data: &b[NLA_HDRLEN..len],
        });
        let next = align4(len).min(b.len());
        b = &b[next..];
    }
    Ok(out)
}

fn get_u8(what: &'static str, d: &[u8]) -> Result<u8, CodecError> {
    match d {
        [a] => Ok(*a),
        _ => Err(CodecError::BadLength {
            what,
            got: d.len(),
            want: 1,
        }),
    }
}
fn arr<const N: usize>(what: &'static str, d: &[u8]) -> Result<[u8; N], CodecError> {
    d.try_into().map_err(|_| CodecError::BadLength {
        what,
        got: d.len(),
        want: N,
    })
}
fn get_u16(what: &'static str, d: &[u8]) -> Result<u16, CodecError> {
    Ok(u16::from_ne_bytes(arr(what, d)?))
}
fn get_be16(what: &'static str, d: &[u8]) -> Result<u16, CodecError> {
    Ok(u16::from_be_bytes(arr(what, d)?))
}
fn get_u32(what: &'static str, d: &[u8]) -> Result<u32, CodecError> {
    Ok(u32::from_ne_bytes(arr(what, d)?))
}
fn get_be32(what: &'static str, d: &[u8]) -> Result<u32, CodecError> {
    Ok(u32::from_be_bytes(arr(what, d)?))
}
fn get_u64(what: &'static str, d: &[u8]) -> Result<u64, CodecError> {
    Ok(u64::from_ne_bytes(arr(what, d)?))
}
fn get_str(what: &'static str, d: &[u8]) -> Result<String, CodecError> {
    let end = d.iter().position(|&c| c == 0).unwrap_or(d.len());
    std::str::from_utf8(&d[..end])
        .map(str::to_owned)
        .map_err(|_| CodecError::BadString(what))
}
fn get_addr(what: &'static str, d: &[u8]) -> Result<[u8; 16], CodecError> {
    // The kernel always sends 16 bytes; accept a bare 4-byte IPv4 from other encoders.
    match d.len() {
        16 => arr(what, d),
        4 => {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(d);
            Ok(a)
        }
        n => Err(CodecError::BadLength {
            what,
            got: n,
            want: 16,
        }),
    }
}

/// Turn a 16-byte `nf_inet_addr` into an IP address for the given family.
pub fn addr_from_raw(af: u16, raw: [u8; 16]) -> Result<IpAddr, CodecError> {
    match af {
        AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        AF_INET6 => Ok(IpAddr::V6(Ipv6Addr::from(raw))),
        other => Err(CodecError::Family(other)),
    }
}

/// Turn an IP address into the kernel's 16-byte `nf_inet_addr`.
pub fn addr_to_raw(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&v4.octets());
            a
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Address family of an IP address.
pub fn af_of(ip: IpAddr) -> u16 {
    match ip {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

// ---- generic message model ---------------------------------------------------

/// Statistics of a service or destination (STATS64 when present, else STATS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Connections scheduled (with one-packet scheduling: datagrams scheduled).
    pub conns: u64,
    /// Packets in.
    pub inpkts: u64,
    /// Packets out.
    pub outpkts: u64,
    /// Bytes in.
    pub inbytes: u64,
    /// Bytes out.
    pub outbytes: u64,
    /// Connection rate per second.
    pub cps: u64,
    /// Incoming packet rate.
    pub inpps: u64,
    /// Outgoing packet rate.
    pub outpps: u64,
    /// Incoming byte rate.
    pub inbps: u64,
    /// Outgoing byte rate.
    pub outbps: u64,
}

impl Stats {
    fn decode(d: &[u8], wide: bool) -> Result<Stats, CodecError> {
        let mut s = Stats::default();
        for a in attrs(d)? {
            // STATS carries u32 except the byte counters; STATS64 is all u64.
            let n = |what| -> Result<u64, CodecError> {
                if wide {
                    get_u64(what, a.data)
                } else {
                    get_u32(what, a.data).map(u64::from)
                }
            };
            match a.ty {
                stats_attr::CONNS => s.conns = n("STATS_CONNS")?,
                stats_attr::INPKTS => s.inpkts = n("STATS_INPKTS")?,
                stats_attr::OUTPKTS => s.outpkts = n("STATS_OUTPKTS")?,
                stats_attr::INBYTES => s.inbytes = get_u64("STATS_INBYTES", a.data)?,
                stats_attr::OUTBYTES => s.outbytes = get_u64("STATS_OUTBYTES", a.data)?,
                stats_attr::CPS => s.cps = n("STATS_CPS")?,
                stats_attr::INPPS => s.inpps = n("STATS_INPPS")?,
                stats_attr::OUTPPS => s.outpps = n("STATS_OUTPPS")?,
                stats_attr::INBPS => s.inbps = n("STATS_INBPS")?,
                stats_attr::OUTBPS => s.outbps = n("STATS_OUTBPS")?,
                _ => {}
            }
        }
        Ok(s)
    }

    fn encode(&self, w: &mut AttrWriter, ty: u16, wide: bool) {
        let at = w.begin_nest(ty);
        let vals = [
            (stats_attr::CONNS, self.conns),
            (stats_attr::INPKTS, self.inpkts),
            (stats_attr::OUTPKTS, self.outpkts),
            (stats_attr::INBYTES, self.inbytes),
            (stats_attr::OUTBYTES, self.outbytes),
            (stats_attr::CPS, self.cps),
            (stats_attr::INPPS, self.inpps),
            (stats_attr::OUTPPS, self.outpps),
            (stats_attr::INBPS, self.inbps),
            (stats_attr::OUTBPS, self.outbps),
        ];
        for (ty, v) in vals {
            let is_bytes = ty == stats_attr::INBYTES || ty == stats_attr::OUTBYTES;
            if wide || is_bytes {
                w.put(ty, &v.to_ne_bytes());
            } else {
                w.u32(ty, v as u32);
            }
        }
        w.end_nest(at);
    }
}

/// The service nest, every attribute optional (requests and replies share it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SvcAttrs {
    /// IPVS_SVC_ATTR_AF.
    pub af: Option<u16>,
    /// IPVS_SVC_ATTR_PROTOCOL.
    pub protocol: Option<u16>,
    /// IPVS_SVC_ATTR_ADDR (16 bytes).
    pub addr: Option<[u8; 16]>,
    /// IPVS_SVC_ATTR_PORT (host value; be16 on the wire).
    pub port: Option<u16>,
    /// IPVS_SVC_ATTR_FWMARK.
    pub fwmark: Option<u32>,
    /// IPVS_SVC_ATTR_SCHED_NAME.
    pub sched_name: Option<String>,
    /// IPVS_SVC_ATTR_FLAGS as (flags, mask).
    pub flags: Option<(u32, u32)>,
    /// IPVS_SVC_ATTR_TIMEOUT (seconds).
    pub timeout: Option<u32>,
    /// IPVS_SVC_ATTR_NETMASK (host value of the be32 mask).
    pub netmask: Option<u32>,
    /// IPVS_SVC_ATTR_PE_NAME.
    pub pe_name: Option<String>,
    /// IPVS_SVC_ATTR_STATS.
    pub stats: Option<Stats>,
    /// IPVS_SVC_ATTR_STATS64.
    pub stats64: Option<Stats>,
}

impl SvcAttrs {
    fn encode(&self, w: &mut AttrWriter) {
        let at = w.begin_nest(cmd_attr::SERVICE);
        if let Some(v) = self.af {
            w.u16(svc_attr::AF, v);
        }
        if let Some(v) = self.protocol {
            w.u16(svc_attr::PROTOCOL, v);
        }
        if let Some(v) = self.addr {
            w.put(svc_attr::ADDR, &v);
        }
        if let Some(v) = self.port {
            w.be16(svc_attr::PORT, v);
        }
        if let Some(v) = self.fwmark {
            w.u32(svc_attr::FWMARK, v);
        }
        if let Some(v) = &self.sched_name {
            w.string(svc_attr::SCHED_NAME, v);
        }
        if let Some(v) = &self.pe_name {
            w.string(svc_attr::PE_NAME, v);
        }
        if let Some((f, m)) = self.flags {
            let mut b = [0u8; 8];
            b[..4].copy_from_slice(&f.to_ne_bytes());
            b[4..].copy_from_slice(&m.to_ne_bytes());
            w.put(svc_attr::FLAGS, &b);
        }
        if let Some(v) = self.timeout {
            w.u32(svc_attr::TIMEOUT, v);
        }
        if let Some(v) = self.netmask {
            w.be32(svc_attr::NETMASK, v);
        }
        if let Some(s) = &self.stats {
            s.encode(w, svc_attr::STATS, false);
        }
        if let Some(s) = &self.stats64 {
            s.encode(w, svc_attr::STATS64, true);
        }
        w.end_nest(at);
    }

    fn decode(d: &[u8]) -> Result<SvcAttrs, CodecError> {
        let mut s = SvcAttrs::default();
        for a in attrs(d)? {
            match a.ty {
                svc_attr::AF => s.af = Some(get_u16("SVC_AF", a.data)?),
                svc_attr::PROTOCOL => s.protocol = Some(get_u16("SVC_PROTOCOL", a.data)?),
                svc_attr::ADDR => s.addr = Some(get_addr("SVC_ADDR", a.data)?),
                svc_attr::PORT => s.port = Some(get_be16("SVC_PORT", a.data)?),
                svc_attr::FWMARK => s.fwmark = Some(get_u32("SVC_FWMARK", a.data)?),
                svc_attr::SCHED_NAME => s.sched_name = Some(get_str("SVC_SCHED_NAME", a.data)?),
                svc_attr::PE_NAME => s.pe_name = Some(get_str("SVC_PE_NAME", a.data)?),
                svc_attr::FLAGS => {
                    let b: [u8; 8] = arr("SVC_FLAGS", a.data)?;
                    let f = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                    let m = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
                    s.flags = Some((f, m));
                }
                svc_attr::TIMEOUT => s.timeout = Some(get_u32("SVC_TIMEOUT", a.data)?),
                svc_attr::NETMASK => s.netmask = Some(get_be32("SVC_NETMASK", a.data)?),
                svc_attr::STATS => s.stats = Some(Stats::decode(a.data, false)?),
                svc_attr::STATS64 => s.stats64 = Some(Stats::decode(a.data, true)?),
                _ => {}
            }
        }
        Ok(s)
    }
}

/// The destination nest, every attribute optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestAttrs {
    /// IPVS_DEST_ATTR_ADDR (16 bytes).
    pub addr: Option<[u8; 16]>,
    /// IPVS_DEST_ATTR_PORT (host value; be16 on the wire).
    pub port: Option<u16>,
    /// IPVS_DEST_ATTR_FWD_METHOD (IP_VS_CONN_F_* forwarding bits).
    pub fwd_method: Option<u32>,
    /// IPVS_DEST_ATTR_WEIGHT.
    pub weight: Option<u32>,
    /// IPVS_DEST_ATTR_U_THRESH.
    pub u_thresh: Option<u32>,
    /// IPVS_DEST_ATTR_L_THRESH.
    pub l_thresh: Option<u32>,
    /// IPVS_DEST_ATTR_ACTIVE_CONNS.
    pub active_conns: Option<u32>,
    /// IPVS_DEST_ATTR_INACT_CONNS.
    pub inact_conns: Option<u32>,
    /// IPVS_DEST_ATTR_PERSIST_CONNS.
    pub persist_conns: Option<u32>,
    /// IPVS_DEST_ATTR_STATS.
    pub stats: Option<Stats>,
    /// IPVS_DEST_ATTR_ADDR_FAMILY.
    pub addr_family: Option<u16>,
    /// IPVS_DEST_ATTR_STATS64.
    pub stats64: Option<Stats>,
    /// IPVS_DEST_ATTR_TUN_TYPE.
    pub tun_type: Option<u8>,
    /// IPVS_DEST_ATTR_TUN_PORT (host value; be16 on the wire).
    pub tun_port: Option<u16>,
    /// IPVS_DEST_ATTR_TUN_FLAGS.
    pub tun_flags: Option<u16>,
}

impl DestAttrs {
    fn encode(&self, w: &mut AttrWriter) {
        let at = w.begin_nest(cmd_attr::DEST);
        if let Some(v) = self.addr {
            w.put(dest_attr::ADDR, &v);
        }
        if let Some(v) = self.port {
            w.be16(dest_attr::PORT, v);
        }
        if let Some(v) = self.fwd_method {
            w.u32(dest_attr::FWD_METHOD, v);
        }
        if let Some(v) = self.weight {
            w.u32(dest_attr::WEIGHT, v);
        }
        if let Some(v) = self.tun_type {
            w.u8(dest_attr::TUN_TYPE, v);
        }
        if let Some(v) = self.tun_port {
            w.be16(dest_attr::TUN_PORT, v);
        }
        if let Some(v) = self.tun_flags {
            w.u16(dest_attr::TUN_FLAGS, v);
        }
        if let Some(v) = self.u_thresh {
            w.u32(dest_attr::U_THRESH, v);
        }
        if let Some(v) = self.l_thresh {
            w.u32(dest_attr::L_THRESH, v);
        }
        if let Some(v) = self.active_conns {
            w.u32(dest_attr::ACTIVE_CONNS, v);
        }
        if let Some(v) = self.inact_conns {
            w.u32(dest_attr::INACT_CONNS, v);
        }
        if let Some(v) = self.persist_conns {
            w.u32(dest_attr::PERSIST_CONNS, v);
        }
        if let Some(v) = self.addr_family {
            w.u16(dest_attr::ADDR_FAMILY, v);
        }
        if let Some(s) = &self.stats {
            s.encode(w, dest_attr::STATS, false);
        }
        if let Some(s) = &self.stats64 {
            s.encode(w, dest_attr::STATS64, true);
        }
        w.end_nest(at);
    }

    fn decode(d: &[u8]) -> Result<DestAttrs, CodecError> {
        let mut s = DestAttrs::default();
        for a in attrs(d)? {
            match a.ty {
                dest_attr::ADDR => s.addr = Some(get_addr("DEST_ADDR", a.data)?),
                dest_attr::PORT => s.port = Some(get_be16("DEST_PORT", a.data)?),
                dest_attr::FWD_METHOD => s.fwd_method = Some(get_u32("DEST_FWD_METHOD", a.data)?),
                dest_attr::WEIGHT => s.weight = Some(get_u32("DEST_WEIGHT", a.data)?),
                dest_attr::U_THRESH => s.u_thresh = Some(get_u32("DEST_U_THRESH", a.data)?),
                dest_attr::L_THRESH => s.l_thresh = Some(get_u32("DEST_L_THRESH", a.data)?),
                dest_attr::ACTIVE_CONNS => {
                    s.active_conns = Some(get_u32("DEST_ACTIVE_CONNS", a.data)?)
                }
                dest_attr::INACT_CONNS => {
                    s.inact_conns = Some(get_u32("DEST_INACT_CONNS", a.data)?)
                }
                dest_attr::PERSIST_CONNS => {
                    s.persist_conns = Some(get_u32("DEST_PERSIST_CONNS", a.data)?)
                }
                dest_attr::STATS => s.stats = Some(Stats::decode(a.data, false)?),
                dest_attr::ADDR_FAMILY => {
                    s.addr_family = Some(get_u16("DEST_ADDR_FAMILY", a.data)?)
                }
                dest_attr::STATS64 => s.stats64 = Some(Stats::decode(a.data, true)?),
                dest_attr::TUN_TYPE => s.tun_type = Some(get_u8("DEST_TUN_TYPE", a.data)?),
                dest_attr::TUN_PORT => s.tun_port = Some(get_be16("DEST_TUN_PORT", a.data)?),
                dest_attr::TUN_FLAGS => s.tun_flags = Some(get_u16("DEST_TUN_FLAGS", a.data)?),
                _ => {}
            }
        }
        Ok(s)
    }
}

/// The sync-daemon nest, every attribute optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonAttrs {
    /// IPVS_DAEMON_ATTR_STATE (master = 1, backup = 2).
    pub state: Option<u32>,
    /// IPVS_DAEMON_ATTR_MCAST_IFN.
    pub mcast_ifn: Option<String>,
    /// IPVS_DAEMON_ATTR_SYNC_ID.
    pub sync_id: Option<u32>,
    /// IPVS_DAEMON_ATTR_SYNC_MAXLEN.
    pub sync_maxlen: Option<u16>,
    /// IPVS_DAEMON_ATTR_MCAST_GROUP (IPv4, network order on the wire).
    pub mcast_group: Option<Ipv4Addr>,
    /// IPVS_DAEMON_ATTR_MCAST_GROUP6.
    pub mcast_group6: Option<Ipv6Addr>,
    /// IPVS_DAEMON_ATTR_MCAST_PORT.
    pub mcast_port: Option<u16>,
    /// IPVS_DAEMON_ATTR_MCAST_TTL.
    pub mcast_ttl: Option<u8>,
}

impl DaemonAttrs {
    fn encode(&self, w: &mut AttrWriter) {
        let at = w.begin_nest(cmd_attr::DAEMON);
        if let Some(v) = self.state {
            w.u32(daemon_attr::STATE, v);
        }
        if let Some(v) = &self.mcast_ifn {
            w.string(daemon_attr::MCAST_IFN, v);
        }
        if let Some(v) = self.sync_id {
            w.u32(daemon_attr::SYNC_ID, v);
        }
        if let Some(v) = self.sync_maxlen {
            w.u16(daemon_attr::SYNC_MAXLEN, v);
        }
        if let Some(v) = self.mcast_port {
            w.u16(daemon_attr::MCAST_PORT, v);
        }
        if let Some(v) = self.mcast_ttl {
            w.u8(daemon_attr::MCAST_TTL, v);
        }
        if let Some(v) = self.mcast_group {
            // nla_get_in_addr: the u32 holds the address in network order.
            w.put(daemon_attr::MCAST_GROUP, &v.octets());
        }
        if let Some(v) = self.mcast_group6 {
            w.put(daemon_attr::MCAST_GROUP6, &v.octets());
        }
        w.end_nest(at);
    }

    fn decode(d: &[u8]) -> Result<DaemonAttrs, CodecError> {
        let mut s = DaemonAttrs::default();
        for a in attrs(d)? {
            match a.ty {
                daemon_attr::STATE => s.state = Some(get_u32("DAEMON_STATE", a.data)?),
                daemon_attr::MCAST_IFN => s.mcast_ifn = Some(get_str("DAEMON_MCAST_IFN", a.data)?),
                daemon_attr::SYNC_ID => s.sync_id = Some(get_u32("DAEMON_SYNC_ID", a.data)?),
                daemon_attr::SYNC_MAXLEN => {
                    s.sync_maxlen = Some(get_u16("DAEMON_SYNC_MAXLEN", a.data)?)
                }
                daemon_attr::MCAST_GROUP => {
                    s.mcast_group = Some(Ipv4Addr::from(arr::<4>("DAEMON_MCAST_GROUP", a.data)?))
                }
                daemon_attr::MCAST_GROUP6 => {
                    s.mcast_group6 = Some(Ipv6Addr::from(arr::<16>("DAEMON_MCAST_GROUP6", a.data)?))
                }
                daemon_attr::MCAST_PORT => {
                    s.mcast_port = Some(get_u16("DAEMON_MCAST_PORT", a.data)?)
                }
                daemon_attr::MCAST_TTL => s.mcast_ttl = Some(get_u8("DAEMON_MCAST_TTL", a.data)?),
                _ => {}
            }
        }
        Ok(s)
    }
}

/// One IPVS generic-netlink message (request or reply) at attribute level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Command (`cmd::*`).
    pub cmd: u8,
    /// Family version from the genl header.
    pub version: u8,
    /// IPVS_CMD_ATTR_SERVICE.
    pub service: Option<SvcAttrs>,
    /// IPVS_CMD_ATTR_DEST.
    pub dest: Option<DestAttrs>,
    /// IPVS_CMD_ATTR_DAEMON.
    pub daemon: Option<DaemonAttrs>,
    /// IPVS_CMD_ATTR_TIMEOUT_TCP.
    pub timeout_tcp: Option<u32>,
    /// IPVS_CMD_ATTR_TIMEOUT_TCP_FIN.
    pub timeout_tcp_fin: Option<u32>,
    /// IPVS_CMD_ATTR_TIMEOUT_UDP.
    pub timeout_udp: Option<u32>,
    /// IPVS_INFO_ATTR_VERSION (only in SET_INFO, the GET_INFO reply).
    pub info_version: Option<u32>,
    /// IPVS_INFO_ATTR_CONN_TAB_SIZE (only in SET_INFO).
    pub info_conn_tab_size: Option<u32>,
}

impl Message {
    /// A message with just a command.
    pub fn new(cmd: u8) -> Message {
        Message {
            cmd,
            version: FAMILY_VERSION,
            ..Message::default()
        }
    }

    /// Encode to genl header + attributes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = AttrWriter::genl(self.cmd, self.version);
        if self.cmd == cmd::SET_INFO {
            if let Some(v) = self.info_version {
                w.u32(info_attr::VERSION, v);
            }
            if let Some(v) = self.info_conn_tab_size {
                w.u32(info_attr::CONN_TAB_SIZE, v);
            }
            return w.finish();
        }
        if let Some(s) = &self.service {
            s.encode(&mut w);
        }
        if let Some(d) = &self.dest {
            d.encode(&mut w);
        }
        if let Some(d) = &self.daemon {
            d.encode(&mut w);
        }
        if let Some(v) = self.timeout_tcp {
            w.u32(cmd_attr::TIMEOUT_TCP, v);
        }
        if let Some(v) = self.timeout_tcp_fin {
            w.u32(cmd_attr::TIMEOUT_TCP_FIN, v);
        }
        if let Some(v) = self.timeout_udp {
            w.u32(cmd_attr::TIMEOUT_UDP, v);
        }
        w.finish()
    }

    /// Decode genl header + attributes.
    pub fn decode(b: &[u8]) -> Result<Message, CodecError> {
        if b.len() < GENL_HDRLEN {
            return Err(CodecError::Truncated("generic netlink header"));
        }
        let mut m = Message {
            cmd: b[0],
            version: b[1],
            ..Message::default()
        };
        for a in attrs(&b[GENL_HDRLEN..])? {
            if m.cmd == cmd::SET_INFO {
                match a.ty {
                    info_attr::VERSION => m.info_version = Some(get_u32("INFO_VERSION", a.data)?),
                    info_attr::CONN_TAB_SIZE => {
                        m.info_conn_tab_size = Some(get_u32("INFO_CONN_TAB_SIZE", a.data)?)
                    }
                    _ => {}
                }
                continue;
            }
            match a.ty {
                cmd_attr::SERVICE => m.service = Some(SvcAttrs::decode(a.data)?),
                cmd_attr::DEST => m.dest = Some(DestAttrs::decode(a.data)?),
                cmd_attr::DAEMON => m.daemon = Some(DaemonAttrs::decode(a.data)?),
                cmd_attr::TIMEOUT_TCP => m.timeout_tcp = Some(get_u32("TIMEOUT_TCP", a.data)?),
                cmd_attr::TIMEOUT_TCP_FIN => {
                    m.timeout_tcp_fin = Some(get_u32("TIMEOUT_TCP_FIN", a.data)?)
                }
                cmd_attr::TIMEOUT_UDP => m.timeout_udp = Some(get_u32("TIMEOUT_UDP", a.data)?),
                _ => {}
            }
        }
        Ok(m)
    }
}

// ---- typed requests and replies ----------------------------------------------

/// Identity of a virtual service: (af, protocol, addr, port) or (af, fwmark).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum ServiceKey {
    /// Address-based service.
    Addr {
        /// Transport protocol number (17 = UDP).
        protocol: u16,
        /// Virtual address.
        addr: IpAddr,
        /// Virtual port.
        port: u16,
    },
    /// Firewall-mark service (only ever seen in dumps; we never create one).
    Fwmark {
        /// Address family.
        af: u16,
        /// Mark.
        mark: u32,
    },
}

impl ServiceKey {
    /// A UDP IPv4 service key.
    pub fn udp(addr: Ipv4Addr, port: u16) -> ServiceKey {
        ServiceKey::Addr {
            protocol: IPPROTO_UDP,
            addr: IpAddr::V4(addr),
            port,
        }
    }

    /// The identifying attributes only (what DEL_SERVICE and dest commands carry).
    pub fn to_attrs(&self) -> SvcAttrs {
        match *self {
            ServiceKey::Addr {
                protocol,
                addr,
                port,
            } => SvcAttrs {
                af: Some(af_of(addr)),
                protocol: Some(protocol),
                addr: Some(addr_to_raw(addr)),
                port: Some(port),
                ..SvcAttrs::default()
            },
            ServiceKey::Fwmark { af, mark } => SvcAttrs {
                af: Some(af),
                fwmark: Some(mark),
                ..SvcAttrs::default()
            },
        }
    }

    /// Read the identity out of a service nest.
    pub fn from_attrs(s: &SvcAttrs) -> Result<ServiceKey, CodecError> {
        let af = s.af.ok_or(CodecError::Missing("SVC_AF"))?;
        if let Some(mark) = s.fwmark.filter(|&m| m != 0) {
            return Ok(ServiceKey::Fwmark { af, mark });
        }
        let raw = s.addr.ok_or(CodecError::Missing("SVC_ADDR"))?;
        Ok(ServiceKey::Addr {
            protocol: s.protocol.ok_or(CodecError::Missing("SVC_PROTOCOL"))?,
            addr: addr_from_raw(af, raw)?,
            port: s.port.ok_or(CodecError::Missing("SVC_PORT"))?,
        })
    }
}

/// Protocol name as ipvsadm prints it.
pub fn proto_name(p: u16) -> String {
    match p {
        IPPROTO_UDP => "UDP".into(),
        IPPROTO_TCP => "TCP".into(),
        IPPROTO_SCTP => "SCTP".into(),
        other => format!("proto{other}"),
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceKey::Addr {
                protocol,
                addr,
                port,
            } => write!(f, "{} {}", proto_name(*protocol), SockFmt(*addr, *port)),
            ServiceKey::Fwmark { mark, .. } => write!(f, "FWM {mark}"),
        }
    }
}

/// Formats ip:port with brackets for IPv6.
struct SockFmt(IpAddr, u16);
impl std::fmt::Display for SockFmt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.1),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
        }
    }
}

/// The settable part of a service (what NEW/SET_SERVICE carry besides the key).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceParams {
    /// Scheduler name, e.g. "rr".
    pub sched: String,
    /// `IP_VS_SVC_F_*` flags (HASHED is never part of this).
    pub flags: u32,
    /// Persistence timeout in seconds.
    pub timeout: u32,
    /// Persistence netmask (IPv4 mask as a host u32; 0 = 0.0.0.0).
    pub netmask: u32,
    /// Persistence engine name ("sip"), or none.
    pub pe: Option<String>,
}

impl ServiceParams {
    fn check(&self) -> Result<(), CodecError> {
        if self.sched.len() >= SCHEDNAME_MAXLEN {
            return Err(CodecError::NameTooLong {
                name: self.sched.clone(),
                max: SCHEDNAME_MAXLEN - 1,
            });
        }
        if let Some(pe) = &self.pe {
            if pe.len() >= PENAME_MAXLEN {
                return Err(CodecError::NameTooLong {
                    name: pe.clone(),
                    max: PENAME_MAXLEN - 1,
                });
            }
        }
        Ok(())
    }
}

/// Identity of a destination inside a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct DestKey {
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port.
    pub port: u16,
}

impl std::fmt::Display for DestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        SockFmt(self.addr, self.port).fmt(f)
    }
}

/// Forwarding method (`IP_VS_CONN_F_FWD_MASK` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum FwdMethod {
    /// Masquerading (NAT), 0.
    Masq,
    /// Local node, 1.
    Local,
    /// IP-in-IP tunnel, 2.
    Tunnel,
    /// Direct routing, 3.
    Route,
    /// Cache bypass, 4.
    Bypass,
    /// Anything else the kernel reports.
    Other(u32),
}

impl FwdMethod {
    /// Wire value.
    pub fn to_u32(self) -> u32 {
        match self {
            FwdMethod::Masq => 0,
            FwdMethod::Local => 1,
            FwdMethod::Tunnel => 2,
            FwdMethod::Route => 3,
            FwdMethod::Bypass => 4,
            FwdMethod::Other(v) => v,
        }
    }
    /// From the wire value.
    pub fn from_u32(v: u32) -> FwdMethod {
        match v & 0x7 {
            0 => FwdMethod::Masq,
            1 => FwdMethod::Local,
            2 => FwdMethod::Tunnel,
            3 => FwdMethod::Route,
            4 => FwdMethod::Bypass,
            other => FwdMethod::Other(other),
        }
    }
    /// Name as `/proc/net/ip_vs` prints it.
    pub fn proc_name(self) -> &'static str {
        match self {
            FwdMethod::Masq => "Masq",
            FwdMethod::Local => "Local",
            FwdMethod::Tunnel => "Tunnel",
            FwdMethod::Route => "Route",
            FwdMethod::Bypass => "Bypass",
            FwdMethod::Other(_) => "Unknown",
        }
    }
}

/// The settable part of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DestParams {
    /// Forwarding method.
    pub fwd: FwdMethod,
    /// Weight (0 = quiesced: no new connections).
    pub weight: u32,
    /// Upper connection threshold (0 = none).
    pub u_thresh: u32,
    /// Lower connection threshold.
    pub l_thresh: u32,
}

/// Sync daemon configuration (for HA, later).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DaemonConfig {
    /// 1 = master, 2 = backup.
    pub state: u32,
    /// Interface for the sync multicast.
    pub mcast_ifn: String,
    /// Sync id.
    pub sync_id: u32,
    /// Max UDP payload, if set.
    pub sync_maxlen: Option<u16>,
    /// Multicast group, if not the default.
    pub mcast_group: Option<Ipv4Addr>,
    /// Multicast port, if not the default.
    pub mcast_port: Option<u16>,
    /// Multicast TTL, if not the default.
    pub mcast_ttl: Option<u8>,
}

/// Connection timeouts (seconds); `None` leaves a value unchanged / was not reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Timeouts {
    /// TCP established.
    pub tcp: Option<u32>,
    /// TCP FIN wait.
    pub tcp_fin: Option<u32>,
    /// UDP.
    pub udp: Option<u32>,
}

/// GET_INFO answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Info {
    /// IPVS version code, e.g. 0x010201 = 1.2.1.
    pub version: u32,
    /// Connection hash table size.
    pub conn_tab_size: u32,
}

impl Info {
    /// "1.2.1".
    pub fn version_string(&self) -> String {
        format!(
            "{}.{}.{}",
            (self.version >> 16) & 0xff,
            (self.version >> 8) & 0xff,
            self.version & 0xff
        )
    }
}

/// A request to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// IPVS_CMD_NEW_SERVICE.
    NewService(ServiceKey, ServiceParams),
    /// IPVS_CMD_SET_SERVICE.
    SetService(ServiceKey, ServiceParams),
    /// IPVS_CMD_DEL_SERVICE.
    DelService(ServiceKey),
    /// IPVS_CMD_GET_SERVICE as a dump (all services).
    GetServices,
    /// IPVS_CMD_NEW_DEST.
    NewDest(ServiceKey, DestKey, DestParams),
    /// IPVS_CMD_SET_DEST.
    SetDest(ServiceKey, DestKey, DestParams),
    /// IPVS_CMD_DEL_DEST.
    DelDest(ServiceKey, DestKey),
    /// IPVS_CMD_GET_DEST dump for one service.
    GetDests(ServiceKey),
    /// IPVS_CMD_GET_INFO.
    GetInfo,
    /// IPVS_CMD_NEW_DAEMON.
    NewDaemon(DaemonConfig),
    /// IPVS_CMD_DEL_DAEMON for a state (master/backup).
    DelDaemon(u32),
    /// IPVS_CMD_GET_DAEMON dump.
    GetDaemons,
    /// IPVS_CMD_SET_CONFIG.
    SetConfig(Timeouts),
    /// IPVS_CMD_GET_CONFIG.
    GetConfig,
}

fn full_service(key: &ServiceKey, p: &ServiceParams) -> SvcAttrs {
    let mut s = key.to_attrs();
    s.sched_name = Some(p.sched.clone());
    s.pe_name = p.pe.clone();
    // Mask all bits: we own every flag, and HASHED is ignored by the kernel on input.
    s.flags = Some((p.flags & !svc_flags::HASHED, u32::MAX));
    s.timeout = Some(p.timeout);
    s.netmask = Some(p.netmask);
    s
}

fn dest_attrs(d: &DestKey, p: Option<&DestParams>) -> DestAttrs {
    let mut a = DestAttrs {
        addr: Some(addr_to_raw(d.addr)),
        port: Some(d.port),
        addr_family: Some(af_of(d.addr)),
        ..DestAttrs::default()
    };
    if let Some(p) = p {
        a.fwd_method = Some(p.fwd.to_u32());
        a.weight = Some(p.weight);
        a.u_thresh = Some(p.u_thresh);
        a.l_thresh = Some(p.l_thresh);
    }
    a
}

impl Request {
    /// True for requests answered by a multi-part dump (sent with NLM_F_DUMP).
    pub fn is_dump(&self) -> bool {
        matches!(
            self,
            Request::GetServices | Request::GetDests(_) | Request::GetDaemons
        )
    }

    /// The genl command.
    pub fn cmd(&self) -> u8 {
        match self {
            Request::NewService(..) => cmd::NEW_SERVICE,
            Request::SetService(..) => cmd::SET_SERVICE,
            Request::DelService(..) => cmd::DEL_SERVICE,
            Request::GetServices => cmd::GET_SERVICE,
            Request::NewDest(..) => cmd::NEW_DEST,
            Request::SetDest(..) => cmd::SET_DEST,
            Request::DelDest(..) => cmd::DEL_DEST,
            Request::GetDests(..) => cmd::GET_DEST,
            Request::GetInfo => cmd::GET_INFO,
            Request::NewDaemon(..) => cmd::NEW_DAEMON,
            Request::DelDaemon(..) => cmd::DEL_DAEMON,
            Request::GetDaemons => cmd::GET_DAEMON,
            Request::SetConfig(..) => cmd::SET_CONFIG,
            Request::GetConfig => cmd::GET_CONFIG,
        }
    }

    /// The attribute-level message.
    pub fn to_message(&self) -> Result<Message, CodecError> {
        let mut m = Message::new(self.cmd());
        match self {
            Request::NewService(k, p) | Request::SetService(k, p) => {
                p.check()?;
                m.service = Some(full_service(k, p));
            }
            Request::DelService(k) | Request::GetDests(k) => m.service = Some(k.to_attrs()),
            Request::NewDest(k, d, p) | Request::SetDest(k, d, p) => {
                m.service = Some(k.to_attrs());
                m.dest = Some(dest_attrs(d, Some(p)));
            }
            Request::DelDest(k, d) => {
                m.service = Some(k.to_attrs());
                m.dest = Some(dest_attrs(d, None));
            }
            Request::GetServices | Request::GetInfo | Request::GetDaemons | Request::GetConfig => {}
            Request::NewDaemon(c) => {
                if c.mcast_ifn.len() >= IFNAME_MAXLEN {
                    return Err(CodecError::NameTooLong {
                        name: c.mcast_ifn.clone(),
                        max: IFNAME_MAXLEN - 1,
                    });
                }
                m.daemon = Some(DaemonAttrs {
                    state: Some(c.state),
                    mcast_ifn: Some(c.mcast_ifn.clone()),
                    sync_id: Some(c.sync_id),
                    sync_maxlen: c.sync_maxlen,
                    mcast_group: c.mcast_group,
                    mcast_group6: None,
                    mcast_port: c.mcast_port,
                    mcast_ttl: c.mcast_ttl,
                })
            }
            Request::DelDaemon(state) => {
                m.daemon = Some(DaemonAttrs {
                    state: Some(*state),
                    ..DaemonAttrs::default()
                })
            }
            Request::SetConfig(t) => {
                m.timeout_tcp = t.tcp;
                m.timeout_tcp_fin = t.tcp_fin;
                m.timeout_udp = t.udp;
            }
        }
        Ok(m)
    }

    /// Encode to genl header + attributes.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        Ok(self.to_message()?.encode())
    }

    /// Parse a request back (used by tests and by the fake kernel).
    pub fn decode(b: &[u8]) -> Result<Request, CodecError> {
        let m = Message::decode(b)?;
        let svc_key = || -> Result<ServiceKey, CodecError> {
            ServiceKey::from_attrs(m.service.as_ref().ok_or(CodecError::Missing("SERVICE"))?)
        };
        let svc_params = || -> Result<ServiceParams, CodecError> {
            let s = m.service.as_ref().ok_or(CodecError::Missing("SERVICE"))?;
            Ok(ServiceParams {
                sched: s
                    .sched_name
                    .clone()
                    .ok_or(CodecError::Missing("SVC_SCHED_NAME"))?,
                flags: s.flags.ok_or(CodecError::Missing("SVC_FLAGS"))?.0,
                timeout: s.timeout.ok_or(CodecError::Missing("SVC_TIMEOUT"))?,
                netmask: s.netmask.ok_or(CodecError::Missing("SVC_NETMASK"))?,
                pe: s.pe_name.clone(),
            })
        };
        let dest_key = || -> Result<DestKey, CodecError> {
            let d = m.dest.as_ref().ok_or(CodecError::Missing("DEST"))?;
            let af = d.addr_family.unwrap_or(AF_INET);
            Ok(DestKey {
                addr: addr_from_raw(af, d.addr.ok_or(CodecError::Missing("DEST_ADDR"))?)?,
                port: d.port.ok_or(CodecError::Missing("DEST_PORT"))?,
            })
        };
        let dest_params = || -> Result<DestParams, CodecError> {
            let d = m.dest.as_ref().ok_or(CodecError::Missing("DEST"))?;
            Ok(DestParams {
                fwd: FwdMethod::from_u32(
                    d.fwd_method.ok_or(CodecError::Missing("DEST_FWD_METHOD"))?,
                ),
                weight: d.weight.ok_or(CodecError::Missing("DEST_WEIGHT"))?,
                u_thresh: d.u_thresh.ok_or(CodecError::Missing("DEST_U_THRESH"))?,
                l_thresh: d.l_thresh.ok_or(CodecError::Missing("DEST_L_THRESH"))?,
            })
        };
        Ok(match m.cmd {
            cmd::NEW_SERVICE => Request::NewService(svc_key()?, svc_params()?),
            cmd::SET_SERVICE => Request::SetService(svc_key()?, svc_params()?),
            cmd::DEL_SERVICE => Request::DelService(svc_key()?),
            cmd::GET_SERVICE => Request::GetServices,
            cmd::NEW_DEST => Request::NewDest(svc_key()?, dest_key()?, dest_params()?),
            cmd::SET_DEST => Request::SetDest(svc_key()?, dest_key()?, dest_params()?),
            cmd::DEL_DEST => Request::DelDest(svc_key()?, dest_key()?),
            cmd::GET_DEST => Request::GetDests(svc_key()?),
            cmd::GET_INFO => Request::GetInfo,
            cmd::NEW_DAEMON => {
                let d = m.daemon.as_ref().ok_or(CodecError::Missing("DAEMON"))?;
                Request::NewDaemon(DaemonConfig {
                    state: d.state.ok_or(CodecError::Missing("DAEMON_STATE"))?,
                    mcast_ifn: d
                        .mcast_ifn
                        .clone()
                        .ok_or(CodecError::Missing("DAEMON_MCAST_IFN"))?,
                    sync_id: d.sync_id.ok_or(CodecError::Missing("DAEMON_SYNC_ID"))?,
                    sync_maxlen: d.sync_maxlen,
                    mcast_group: d.mcast_group,
                    mcast_port: d.mcast_port,
                    mcast_ttl: d.mcast_ttl,
                })
            }
            cmd::DEL_DAEMON => Request::DelDaemon(
                m.daemon
                    .as_ref()
                    .and_then(|d| d.state)
                    .ok_or(CodecError::Missing("DAEMON_STATE"))?,
            ),
            cmd::GET_DAEMON => Request::GetDaemons,
            cmd::SET_CONFIG => Request::SetConfig(Timeouts {
                tcp: m.timeout_tcp,
                tcp_fin: m.timeout_tcp_fin,
                udp: m.timeout_udp,
            }),
            cmd::GET_CONFIG => Request::GetConfig,
            other => {
                return Err(CodecError::UnexpectedCmd {
                    got: other,
                    want: 0,
                })
            }
        })
    }
}

/// A service as the kernel reports it in a GET_SERVICE reply.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceEntry {
    /// Identity.
    pub key: ServiceKey,
    /// Settings (flags without HASHED).
    pub params: ServiceParams,
    /// Counters.
    pub stats: Stats,
}

/// A destination as the kernel reports it in a GET_DEST reply.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DestEntry {
    /// Identity.
    pub key: DestKey,
    /// Settings.
    pub params: DestParams,
    /// Active connections.
    pub active_conns: u32,
    /// Inactive connections.
    pub inact_conns: u32,
    /// Persistence templates pointing at this destination (with pe sip: one per Call-ID).
    pub persist_conns: u32,
    /// Counters.
    pub stats: Stats,
}

fn expect_cmd(m: &Message, want: u8) -> Result<(), CodecError> {
    if m.cmd == want {
        Ok(())
    } else {
        Err(CodecError::UnexpectedCmd { got: m.cmd, want })
    }
}

/// Decode one GET_SERVICE reply (cmd NEW_SERVICE).
pub fn decode_service(b: &[u8]) -> Result<ServiceEntry, CodecError> {
    let m = Message::decode(b)?;
    expect_cmd(&m, cmd::NEW_SERVICE)?;
    let s = m.service.ok_or(CodecError::Missing("SERVICE"))?;
    let key = ServiceKey::from_attrs(&s)?;
    let params = ServiceParams {
        sched: s.sched_name.clone().unwrap_or_default(),
        flags: s.flags.map(|(f, _)| f & !svc_flags::HASHED).unwrap_or(0),
        timeout: s.timeout.unwrap_or(0),
        netmask: s.netmask.unwrap_or(0),
        pe: s.pe_name.clone(),
    };
    Ok(ServiceEntry {
        key,
        params,
        stats: s.stats64.or(s.stats).unwrap_or_default(),
    })
}

/// Decode one GET_DEST reply (cmd NEW_DEST); `svc_af` is used when ADDR_FAMILY is absent.
pub fn decode_dest(b: &[u8], svc_af: u16) -> Result<DestEntry, CodecError> {
    let m = Message::decode(b)?;
    expect_cmd(&m, cmd::NEW_DEST)?;
    let d = m.dest.ok_or(CodecError::Missing("DEST"))?;
    let af = d.addr_family.unwrap_or(svc_af);
    Ok(DestEntry {
        key: DestKey {
            addr: addr_from_raw(af, d.addr.ok_or(CodecError::Missing("DEST_ADDR"))?)?,
            port: d.port.ok_or(CodecError::Missing("DEST_PORT"))?,
        },
        params: DestParams {
            fwd: FwdMethod::from_u32(d.fwd_method.unwrap_or(0)),
            weight: d.weight.ok_or(CodecError::Missing("DEST_WEIGHT"))?,
            u_thresh: d.u_thresh.unwrap_or(0),
            l_thresh: d.l_thresh.unwrap_or(0),
        },
        active_conns: d.active_conns.unwrap_or(0),
        inact_conns: d.inact_conns.unwrap_or(0),
        persist_conns: d.persist_conns.unwrap_or(0),
        stats: d.stats64.or(d.stats).unwrap_or_default(),
    })
}

/// Decode the GET_INFO reply (cmd SET_INFO).
pub fn decode_info(b: &[u8]) -> Result<Info, CodecError> {
    let m = Message::decode(b)?;
    expect_cmd(&m, cmd::SET_INFO)?;
    Ok(Info {
        version: m.info_version.ok_or(CodecError::Missing("INFO_VERSION"))?,
        conn_tab_size: m
            .info_conn_tab_size
            .ok_or(CodecError::Missing("INFO_CONN_TAB_SIZE"))?,
    })
}

/// Decode the GET_CONFIG reply (cmd SET_CONFIG).
pub fn decode_config(b: &[u8]) -> Result<Timeouts, CodecError> {
    let m = Message::decode(b)?;
    expect_cmd(&m, cmd::SET_CONFIG)?;
    Ok(Timeouts {
        tcp: m.timeout_tcp,
        tcp_fin: m.timeout_tcp_fin,
        udp: m.timeout_udp,
    })
}

/// Decode one GET_DAEMON reply (cmd NEW_DAEMON).
pub fn decode_daemon(b: &[u8]) -> Result<DaemonConfig, CodecError> {
    let m = Message::decode(b)?;
    expect_cmd(&m, cmd::NEW_DAEMON)?;
    let d = m.daemon.ok_or(CodecError::Missing("DAEMON"))?;
    Ok(DaemonConfig {
        state: d.state.ok_or(CodecError::Missing("DAEMON_STATE"))?,
        mcast_ifn: d.mcast_ifn.unwrap_or_default(),
        sync_id: d.sync_id.unwrap_or(0),
        sync_maxlen: d.sync_maxlen,
        mcast_group: d.mcast_group,
        mcast_port: d.mcast_port,
        mcast_ttl: d.mcast_ttl,
    })
}

/// nlctrl CTRL_CMD_GETFAMILY request payload for `name`.
pub fn encode_getfamily(name: &str) -> Vec<u8> {
    let mut w = AttrWriter::genl(ctrl::CMD_GETFAMILY, 1);
    w.string(ctrl::ATTR_FAMILY_NAME, name);
    w.finish()
}

/// Family id from a nlctrl CTRL_CMD_NEWFAMILY reply payload.
pub fn decode_family_id(b: &[u8]) -> Result<u16, CodecError> {
    if b.len() < GENL_HDRLEN {
        return Err(CodecError::Truncated("generic netlink header"));
    }
    for a in attrs(&b[GENL_HDRLEN..])? {
        if a.ty == ctrl::ATTR_FAMILY_ID {
            return get_u16("CTRL_ATTR_FAMILY_ID", a.data);
        }
    }
    Err(CodecError::Missing("CTRL_ATTR_FAMILY_ID"))
}

/// Lower-case hex of bytes (for logging captured replies as test vectors).
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parse lower/upper-case hex, ignoring whitespace.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| {
            let h = (p[0] as char).to_digit(16)?;
            let l = (p[1] as char).to_digit(16)?;
            Some((h * 16 + l) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests;
