//! Netlink attribute primitives: the writer (nests, padding) and the readers of each payload kind.

use super::*;

pub(super) fn align4(n: usize) -> usize {
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

pub(super) fn get_u8(what: &'static str, d: &[u8]) -> Result<u8, CodecError> {
    match d {
        [a] => Ok(*a),
        _ => Err(CodecError::BadLength {
            what,
            got: d.len(),
            want: 1,
        }),
    }
}
pub(super) fn arr<const N: usize>(what: &'static str, d: &[u8]) -> Result<[u8; N], CodecError> {
    d.try_into().map_err(|_| CodecError::BadLength {
        what,
        got: d.len(),
        want: N,
    })
}
pub(super) fn get_u16(what: &'static str, d: &[u8]) -> Result<u16, CodecError> {
    Ok(u16::from_ne_bytes(arr(what, d)?))
}
pub(super) fn get_be16(what: &'static str, d: &[u8]) -> Result<u16, CodecError> {
    Ok(u16::from_be_bytes(arr(what, d)?))
}
pub(super) fn get_u32(what: &'static str, d: &[u8]) -> Result<u32, CodecError> {
    Ok(u32::from_ne_bytes(arr(what, d)?))
}
pub(super) fn get_be32(what: &'static str, d: &[u8]) -> Result<u32, CodecError> {
    Ok(u32::from_be_bytes(arr(what, d)?))
}
pub(super) fn get_u64(what: &'static str, d: &[u8]) -> Result<u64, CodecError> {
    Ok(u64::from_ne_bytes(arr(what, d)?))
}
pub(super) fn get_str(what: &'static str, d: &[u8]) -> Result<String, CodecError> {
    let end = d.iter().position(|&c| c == 0).unwrap_or(d.len());
    std::str::from_utf8(&d[..end])
        .map(str::to_owned)
        .map_err(|_| CodecError::BadString(what))
}
pub(super) fn get_addr(what: &'static str, d: &[u8]) -> Result<[u8; 16], CodecError> {
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
