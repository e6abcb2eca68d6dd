//! Minimal pcap reader for the lab's captures: Ethernet (or Linux cooked)
//! frames carrying IPv4/UDP SIP. Just enough to pull out, per packet, the
//! addresses, the request method or status code, the Call-ID and the CSeq
//! method. It is the independent evidence: no part of the appliance is used.

use std::net::{Ipv4Addr, SocketAddrV4};

/// First line of a SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipKind {
    /// A request, with its method.
    Request(String),
    /// A response, with its status code.
    Response(u16),
}

/// One captured SIP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipPacket {
    /// Capture time, microseconds since the Unix epoch (host clock).
    pub ts_us: u64,
    /// IPv4/UDP source.
    pub src: SocketAddrV4,
    /// IPv4/UDP destination.
    pub dst: SocketAddrV4,
    /// Request method or response code.
    pub kind: SipKind,
    /// The Call-ID header (`Call-ID` or compact `i`), empty if missing.
    pub call_id: String,
    /// The method in the CSeq header, empty if missing.
    pub cseq_method: String,
}

impl SipPacket {
    /// Whether this is a request with this method.
    pub fn is_request(&self, method: &str) -> bool {
        matches!(&self.kind, SipKind::Request(m) if m == method)
    }
}

/// Why a capture file could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PcapError {
    /// Shorter than a pcap global header, or wrong magic number.
    #[error("not a pcap file (bad or missing header)")]
    NotPcap,
    /// A link type the reader does not handle.
    #[error("unsupported pcap link type {0} (expected Ethernet 1 or Linux cooked 113)")]
    LinkType(u32),
}

/// One record of a pcap file: capture time and the frame bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Capture time, microseconds since the Unix epoch (host clock).
    pub ts_us: u64,
    /// The captured bytes, from the link-layer header on.
    pub data: &'a [u8],
}

/// Link types the lab's readers handle.
pub const LINK_ETHERNET: u32 = 1;
/// Linux cooked capture (tcpdump `-i any`).
pub const LINK_LINUX_SLL: u32 = 113;

/// Splits a whole pcap file into (link type, records). A truncated last
/// record (capture still being written) is ignored.
pub fn records(data: &[u8]) -> Result<(u32, Vec<Record<'_>>), PcapError> {
    if data.len() < 24 {
        return Err(PcapError::NotPcap);
    }
    let magic = [data[0], data[1], data[2], data[3]];
    // Microsecond or nanosecond timestamps, either byte order.
    let (le, nanos) = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => (true, false),
        [0xa1, 0xb2, 0xc3, 0xd4] => (false, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (true, true),
        [0xa1, 0xb2, 0x3c, 0x4d] => (false, true),
        _ => return Err(PcapError::NotPcap),
    };
    let u32_at = |b: &[u8], o: usize| -> u32 {
        let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let link = u32_at(data, 20);
    if link != LINK_ETHERNET && link != LINK_LINUX_SLL {
        return Err(PcapError::LinkType(link));
    }
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let sec = u32_at(data, off) as u64;
        let frac = u32_at(data, off + 4) as u64;
        let incl = u32_at(data, off + 8) as usize;
        let start = off + 16;
        let Some(end) = start.checked_add(incl) else {
            break;
        };
        if end > data.len() {
            break;
        }
        let ts_us = sec * 1_000_000 + if nanos { frac / 1000 } else { frac };
        out.push(Record {
            ts_us,
            data: &data[start..end],
        });
        off = end;
    }
    Ok((link, out))
}

/// Link-layer header of a frame: (source MAC, destination MAC, ethertype,
/// offset of the layer-3 header). Linux cooked frames carry only the source.
pub fn link_header(f: &[u8], link: u32) -> Option<([u8; 6], [u8; 6], u16, usize)> {
    if link == LINK_ETHERNET {
        let dst: [u8; 6] = f.get(0..6)?.try_into().ok()?;
        let src: [u8; 6] = f.get(6..12)?.try_into().ok()?;
        let mut et = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
        let mut o = 14;
        if et == 0x8100 {
            et = u16::from_be_bytes([*f.get(16)?, *f.get(17)?]);
            o = 18;
        }
        Some((src, dst, et, o))
    } else {
        let src: [u8; 6] = f.get(6..12)?.try_into().ok()?;
        let et = u16::from_be_bytes([*f.get(14)?, *f.get(15)?]);
        Some((src, [0; 6], et, 16))
    }
}

/// (capture time, UDP payload) of every IPv4/UDP datagram to `port` in a pcap file
/// (e.g. the IPVS sync daemon's messages, port 8848).
pub fn udp_to(data: &[u8], port: u16) -> Vec<(u64, Vec<u8>)> {
    let Ok((link, recs)) = records(data) else {
        return vec![];
    };
    let mut out = Vec::new();
    for r in recs {
        let Some((_, _, et, l3)) = link_header(r.data, link) else {
            continue;
        };
        let Some(ip) = r.data.get(l3..) else { continue };
        if et != 0x0800 || ip.len() < 20 || ip[9] != 17 {
            continue;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let Some(udp) = ip.get(ihl..) else { continue };
        if udp.len() < 8 || u16::from_be_bytes([udp[2], udp[3]]) != port {
            continue;
        }
        out.push((r.ts_us, udp[8..].to_vec()));
    }
    out
}

/// Whether `needle` (not empty) occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Parses a whole pcap file; non-SIP, non-IPv4/UDP packets are skipped. A
/// truncated last record (capture still being written) is ignored.
pub fn parse(data: &[u8]) -> Result<Vec<SipPacket>, PcapError> {
    let (link, recs) = records(data)?;
    Ok(recs
        .iter()
        .filter_map(|r| sip_frame(r.data, link, r.ts_us))
        .collect())
}

/// The SIP datagram in one frame, if it carries one (IPv4/UDP).
pub fn sip_frame(f: &[u8], link: u32, ts_us: u64) -> Option<SipPacket> {
    let (_, _, ethertype, l3) = link_header(f, link)?;
    if ethertype != 0x0800 {
        return None;
    }
    let ip = f.get(l3..)?;
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 17 {
        return None;
    }
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    // Non-first fragments carry no UDP header.
    let frag_off = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
    if frag_off != 0 {
        return None;
    }
    let total = (u16::from_be_bytes([ip[2], ip[3]]) as usize).min(ip.len());
    let src_ip = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst_ip = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let udp = ip.get(ihl..total)?;
    if udp.len() < 8 {
        return None;
    }
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    let (kind, call_id, cseq_method) = sip(&udp[8..])?;
    Some(SipPacket {
        ts_us,
        src: SocketAddrV4::new(src_ip, sport),
        dst: SocketAddrV4::new(dst_ip, dport),
        kind,
        call_id,
        cseq_method,
    })
}

/// Parses the start line and the Call-ID/CSeq headers of a SIP message.
pub fn sip(payload: &[u8]) -> Option<(SipKind, String, String)> {
    let text = String::from_utf8_lossy(payload);
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let first = lines.next()?.trim();
    let kind = if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
        SipKind::Response(rest.split_whitespace().next()?.parse().ok()?)
    } else {
        let mut w = first.split_whitespace();
        let method = w.next()?;
        let _uri = w.next()?;
        if w.next()? != "SIP/2.0" || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return None;
        }
        SipKind::Request(method.to_owned())
    };
    let mut call_id = String::new();
    let mut cseq = String::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("call-id") || name == "i" {
            call_id = value.trim().to_owned();
        } else if name.eq_ignore_ascii_case("cseq") {
            cseq = value.split_whitespace().nth(1).unwrap_or("").to_owned();
        }
    }
    Some((kind, call_id, cseq))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        let total = (20 + 8 + payload.len()) as u16;
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    fn pcap(frames: &[(u32, u32, Vec<u8>)]) -> Vec<u8> {
        let mut d = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        d.extend_from_slice(&[0; 8]);
        d.extend_from_slice(&65535u32.to_le_bytes());
        d.extend_from_slice(&1u32.to_le_bytes());
        for (s, us, f) in frames {
            d.extend_from_slice(&s.to_le_bytes());
            d.extend_from_slice(&us.to_le_bytes());
            d.extend_from_slice(&(f.len() as u32).to_le_bytes());
            d.extend_from_slice(&(f.len() as u32).to_le_bytes());
            d.extend_from_slice(f);
        }
        d
    }

    #[test]
    fn parses_request_and_response() {
        let inv = b"INVITE sip:s@203.0.113.10:5060 SIP/2.0\r\nVia: x\r\nCall-ID: 1-2@h\r\nCSeq: 1 INVITE\r\n\r\nv=0\r\n";
        let ok = b"SIP/2.0 200 OK\r\ni: 1-2@h\r\nCSeq: 2 BYE\r\n\r\n";
        let data = pcap(&[
            (
                10,
                5,
                udp_frame([203, 0, 113, 100], [198, 51, 100, 11], 5061, 5060, inv),
            ),
            (
                11,
                0,
                udp_frame([198, 51, 100, 11], [203, 0, 113, 100], 5060, 5061, ok),
            ),
        ]);
        let p = parse(&data).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].ts_us, 10_000_005);
        assert!(p[0].is_request("INVITE"));
        assert_eq!(p[0].call_id, "1-2@h");
        assert_eq!(p[0].cseq_method, "INVITE");
        assert_eq!(p[0].dst, "198.51.100.11:5060".parse().unwrap());
        assert_eq!(p[1].kind, SipKind::Response(200));
        assert_eq!(p[1].call_id, "1-2@h");
        assert_eq!(p[1].cseq_method, "BYE");
    }

    #[test]
    fn skips_non_sip_and_truncated_tail() {
        let junk = udp_frame([192, 0, 2, 1], [192, 0, 2, 2], 1, 2, b"hello");
        let mut data = pcap(&[(1, 0, junk)]);
        data.extend_from_slice(&[1, 2, 3]); // partial record header
        assert_eq!(parse(&data).unwrap(), vec![]);
    }

    #[test]
    fn rejects_bad_header() {
        assert_eq!(parse(b"nope"), Err(PcapError::NotPcap));
        let mut d = pcap(&[]);
        d[20] = 228; // LINKTYPE_IPV4
        assert_eq!(parse(&d), Err(PcapError::LinkType(228)));
    }
}
