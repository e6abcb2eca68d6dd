//! Link-layer view of the lab's captures for the HA tests: VRRP adverts, ARP
//! (gratuitous ARP after a takeover) and SIP datagrams, each with the MAC
//! addresses of the frame, so a capture tells which box sent or received it.
//! Decoded here from raw bytes (RFC 5798, RFC 826), independently of the
//! appliance's own VRRP codec: this is the evidence, not the thing tested.

use super::pcap::{self, PcapError, SipPacket};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// VRRP's IPv4 multicast group.
pub const VRRP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Mac, String> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(format!("'{s}' is not a MAC address (aa:bb:cc:dd:ee:ff)"));
        }
        let mut m = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            m[i] = u8::from_str_radix(p, 16)
                .map_err(|_| format!("'{s}' is not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
        }
        Ok(Mac(m))
    }
}

/// One VRRP advertisement as it crossed the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// IPv4 source (the sender's primary address on that link).
    pub src: Ipv4Addr,
    /// IPv4 destination (224.0.0.18, or the unicast peer).
    pub dst: Ipv4Addr,
    /// IPv4 TTL (RFC 5798: must be 255).
    pub ttl: u8,
    /// VRRP version (2 or 3).
    pub version: u8,
    /// Virtual router id.
    pub vrid: u8,
    /// Priority (0: the master resigns).
    pub priority: u8,
    /// Advert interval in centiseconds (v3 field; v2 seconds × 100).
    pub interval_cs: u16,
    /// The virtual addresses it carries.
    pub addrs: Vec<Ipv4Addr>,
    /// Whether the checksum verifies (v3: with the IPv4 pseudo-header).
    pub checksum_ok: bool,
}

/// An ARP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arp {
    /// 1 request, 2 reply.
    pub op: u16,
    /// Sender hardware address.
    pub sender_mac: Mac,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

impl Arp {
    /// A gratuitous ARP: sender and target address are the same.
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip == self.target_ip
    }
}

/// What a frame carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A VRRP advertisement.
    Vrrp(Advert),
    /// An ARP packet.
    Arp(Arp),
    /// A SIP datagram.
    Sip(SipPacket),
    /// Anything else (or undecodable).
    Other,
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Capture time, µs since the epoch.
    pub ts_us: u64,
    /// Ethernet source.
    pub src_mac: Mac,
    /// Ethernet destination (zero for Linux cooked captures).
    pub dst_mac: Mac,
    /// What it carries.
    pub payload: Payload,
}

/// Decodes every frame of a pcap file (truncated tail ignored).
pub fn parse(data: &[u8]) -> Result<Vec<Frame>, PcapError> {
    let (link, recs) = pcap::records(data)?;
    Ok(recs
        .iter()
        .filter_map(|r| {
            let (src, dst, et, l3) = pcap::link_header(r.data, link)?;
            let payload = match et {
                0x0806 => r.data.get(l3..).and_then(arp).map(Payload::Arp),
                0x0800 => r
                    .data
                    .get(l3..)
                    .and_then(vrrp)
                    .map(Payload::Vrrp)
                    .or_else(|| pcap::sip_frame(r.data, link, r.ts_us).map(Payload::Sip)),
                _ => None,
            }
            .unwrap_or(Payload::Other);
            Some(Frame {
                ts_us: r.ts_us,
                src_mac: Mac(src),
                dst_mac: Mac(dst),
                payload,
            })
        })
        .collect())
}

fn arp(p: &[u8]) -> Option<Arp> {
    // Ethernet/IPv4 ARP only: htype 1, ptype 0x0800, hlen 6, plen 4.
    if p.len() < 28 || p[0..2] != [0, 1] || p[2..4] != [8, 0] || p[4] != 6 || p[5] != 4 {
        return None;
    }
    Some(Arp {
        op: u16::from_be_bytes([p[6], p[7]]),
        sender_mac: Mac(p[8..14].try_into().ok()?),
        sender_ip: Ipv4Addr::new(p[14], p[15], p[16], p[17]),
        target_ip: Ipv4Addr::new(p[24], p[25], p[26], p[27]),
    })
}

/// Internet checksum (RFC 1071) of the concatenation of `parts`.
pub fn inet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn vrrp(ip: &[u8]) -> Option<Advert> {
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != IPPROTO_VRRP {
        return None;
    }
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    let total = (u16::from_be_bytes([ip[2], ip[3]]) as usize).min(ip.len());
    let v = ip.get(ihl..total)?;
    if v.len() < 8 || v[0] & 0x0f != 1 {
        return None;
    }
    let version = v[0] >> 4;
    let count = v[3] as usize;
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let addr_bytes = v.get(8..8 + 4 * count)?;
    let addrs = addr_bytes
        .chunks_exact(4)
        .map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        .collect();
    let (interval_cs, checksum_ok) = match version {
        3 => {
            let len = (v.len() as u16).to_be_bytes();
            let pseudo = [&ip[12..20], &[0, IPPROTO_VRRP][..], &len[..]].concat();
            (
                u16::from_be_bytes([v[4], v[5]]) & 0x0fff,
                inet_checksum(&[&pseudo, v]) == 0,
            )
        }
        2 => (u16::from(v[5]) * 100, inet_checksum(&[v]) == 0),
        _ => return None,
    };
    Some(Advert {
        src,
        dst,
        ttl: ip[8],
        version,
        vrid: v[1],
        priority: v[2],
        interval_cs,
        addrs,
        checksum_ok,
    })
}

/// Test helper: a VRRPv3 advert frame (Ethernet/IPv4) with a correct checksum.
pub fn build_v3_frame(
    src_mac: Mac,
    src: Ipv4Addr,
    vrid: u8,
    priority: u8,
    interval_cs: u16,
    addrs: &[Ipv4Addr],
) -> Vec<u8> {
    let mut v = vec![
        0x31,
        vrid,
        priority,
        addrs.len() as u8,
        (interval_cs >> 8) as u8 & 0x0f,
        interval_cs as u8,
        0,
        0,
    ];
    for a in addrs {
        v.extend_from_slice(&a.octets());
    }
    let dst = VRRP_GROUP;
    let len = (v.len() as u16).to_be_bytes();
    let pseudo = [
        &src.octets()[..],
        &dst.octets()[..],
        &[0, IPPROTO_VRRP][..],
        &len[..],
    ]
    .concat();
    let c = inet_checksum(&[&pseudo, &v]).to_be_bytes();
    v[6] = c[0];
    v[7] = c[1];
    let total = (20 + v.len()) as u16;
    let mut ip = vec![0x45, 0xc0, 0, 0, 0, 0, 0, 0, 255, IPPROTO_VRRP, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = inet_checksum(&[&ip]).to_be_bytes();
    ip[10] = c[0];
    ip[11] = c[1];
    let mut f = vec![0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&v);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_of(frames: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let mut d = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        d.extend_from_slice(&[0; 8]);
        d.extend_from_slice(&65535u32.to_le_bytes());
        d.extend_from_slice(&1u32.to_le_bytes());
        for (s, f) in frames {
            d.extend_from_slice(&s.to_le_bytes());
            d.extend_from_slice(&0u32.to_le_bytes());
            d.extend_from_slice(&(f.len() as u32).to_le_bytes());
            d.extend_from_slice(&(f.len() as u32).to_le_bytes());
            d.extend_from_slice(f);
        }
        d
    }

    #[test]
    fn mac_text_round_trip() {
        let m: Mac = "52:54:00:00:0a:01".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:00:00:0a:01");
        assert!("52:54:00".parse::<Mac>().is_err());
        assert!("zz:54:00:00:0a:01".parse::<Mac>().is_err());
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2 -> checksum !0xddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(inet_checksum(&[&d]), !0xddf2);
        // Splitting the input at an odd offset changes nothing.
        assert_eq!(inet_checksum(&[&d[..3], &d[3..]]), !0xddf2);
    }

    /// A VRRPv3 advert as keepalived 2.2.7 sent it in a lab namespace
    /// (tcpdump -xx): vrid 51, priority 100, 20 cs, VIP 203.0.113.10, from
    /// 203.0.113.3, VRRP checksum 0x1219.
    const KEEPALIVED_V3: &str = "01005e000012 525400000b01 0800 \
        45c0 0020 0001 0000 ff70 9e96 cb007103 e0000012 \
        3133 6401 0014 1219 cb00710a";

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn decodes_keepalived_v3_advert_from_the_wire() {
        let wire = hex(KEEPALIVED_V3);
        let vip: Ipv4Addr = "203.0.113.10".parse().unwrap();
        let src: Ipv4Addr = "203.0.113.3".parse().unwrap();
        let frames = parse(&pcap_of(&[(7, wire.clone())])).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].src_mac.to_string(), "52:54:00:00:0b:01");
        assert_eq!(frames[0].ts_us, 7_000_000);
        let Payload::Vrrp(a) = &frames[0].payload else {
            panic!("not VRRP: {:?}", frames[0].payload)
        };
        assert_eq!(
            (a.version, a.vrid, a.priority, a.interval_cs, a.ttl),
            (3, 51, 100, 20, 255)
        );
        assert_eq!(a.src, src);
        assert_eq!(a.dst, VRRP_GROUP);
        assert_eq!(a.addrs, vec![vip]);
        assert!(a.checksum_ok);
        // The builder produces the same VRRP message (after the IPv4 header).
        let built = build_v3_frame(frames[0].src_mac, src, 51, 100, 20, &[vip]);
        assert_eq!(built[34..], wire[34..]);
        assert_eq!(built[..14], wire[..14]);
    }

    #[test]
    fn flags_a_bad_checksum_and_skips_garbage() {
        let mut f = build_v3_frame(Mac([2; 6]), Ipv4Addr::new(192, 0, 2, 1), 1, 0, 100, &[]);
        let last = f.len() - 1;
        f[last - 1] ^= 0xff; // corrupt the VRRP checksum
        let fr = parse(&pcap_of(&[(1, f.clone())])).unwrap();
        let Payload::Vrrp(a) = &fr[0].payload else {
            panic!("not VRRP")
        };
        assert!(!a.checksum_ok);
        assert_eq!(a.priority, 0);
        // Truncated VRRP body (count says 3 addresses, none present): Other.
        let mut t = build_v3_frame(Mac([2; 6]), Ipv4Addr::new(192, 0, 2, 1), 1, 9, 100, &[]);
        t[14 + 20 + 3] = 3;
        let fr = parse(&pcap_of(&[(1, t)])).unwrap();
        assert_eq!(fr[0].payload, Payload::Other);
    }

    #[test]
    fn decodes_gratuitous_arp() {
        let mac = Mac([0x52, 0x54, 0, 0, 0x0a, 0x01]);
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&mac.0);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&mac.0);
        f.extend_from_slice(&[203, 0, 113, 10]);
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&[203, 0, 113, 10]);
        let fr = parse(&pcap_of(&[(3, f)])).unwrap();
        let Payload::Arp(a) = &fr[0].payload else {
            panic!("not ARP")
        };
        assert!(a.is_gratuitous());
        assert_eq!(a.sender_mac, mac);
        assert_eq!(a.op, 1);
        assert_eq!(fr[0].dst_mac, Mac([0xff; 6]));
    }
}
