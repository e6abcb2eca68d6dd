//! VRRP advertisement codec (RFC 5798 version 3 for IPv4; version 2, RFC 3768, decoded
//! for interop diagnostics only) and the IPv4 header parse used on raw-socket receive.
//!
//! Pure: bytes in, values out. Nothing here panics on any input (fuzzed by
//! `fuzz/fuzz_targets/vrrp_packet.rs`).

use std::net::Ipv4Addr;
use std::time::Duration;

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// The IPv4 multicast group VRRP advertisements go to (RFC 5798 section 5.1.1.2).
pub const VRRP_MULTICAST: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// Adverts are sent with, and accepted only with, this TTL (RFC 5798 section 5.1.1.3).
pub const VRRP_TTL: u8 = 255;
/// Fixed part of a VRRP message before the address list.
pub const HEADER_LEN: usize = 8;
/// Version 2 messages end with 8 bytes of authentication data.
const V2_AUTH_LEN: usize = 8;
/// Advertisement is the only VRRP message type.
const TYPE_ADVERT: u8 = 1;
/// Largest interval the 12-bit v3 field can carry, in centiseconds.
pub const MAX_ADVER_INT_CS: u16 = 0x0fff;
/// The address count is one byte.
pub const MAX_ADDRESSES: usize = 255;

/// Why a received packet was rejected. Every variant says what was wrong and what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Fewer bytes than the headers announce.
    #[error("truncated packet: {what} needs {need} bytes, got {got} (damaged frame or a non-VRRP sender)")]
    Truncated {
        /// Which part was cut short.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        got: usize,
    },
    /// Not an IPv4 header.
    #[error("IP version {0} where 4 was expected (only IPv4 VRRP is supported)")]
    IpVersion(u8),
    /// IPv4 header length field out of range.
    #[error("IPv4 header length {0} bytes is invalid (must be 20..=60 and within the packet)")]
    IpHeaderLength(usize),
    /// The IPv4 datagram carries another protocol.
    #[error("IP protocol {0} is not VRRP (112)")]
    IpProtocol(u8),
    /// VRRP version other than 2 or 3.
    #[error("VRRP version {0} is not supported (the peer must run VRRP version 3; version 2 is decoded for diagnostics only)")]
    Version(u8),
    /// VRRP type other than advertisement.
    #[error("VRRP message type {0} is not an advertisement (1)")]
    Type(u8),
    /// No addresses (RFC 5798: the count is at least 1).
    #[error("advertisement carries no virtual address (count 0); the peer's VRRP instance has no virtual_ipaddress")]
    NoAddresses,
    /// Message length does not match the address count.
    #[error("VRRP length {got} bytes does not match {count} address(es) (expected {expected}); the peer may be sending IPv6 or a different version")]
    Length {
        /// Address count field.
        count: u8,
        /// Length that count implies.
        expected: usize,
        /// Actual VRRP message length.
        got: usize,
    },
    /// Checksum mismatch.
    #[error("VRRP checksum 0x{got:04x} is wrong (computed 0x{computed:04x}); damaged packet, or a VRRPv2 peer checksumming without the IPv4 pseudo-header")]
    Checksum {
        /// Checksum field in the packet.
        got: u16,
        /// Checksum we computed over the same bytes with the field zeroed.
        computed: u16,
    },
    /// Advertisement interval 0 would make the master-down timer meaningless.
    #[error("advertisement interval 0 is invalid (must be at least 1)")]
    ZeroInterval,
    /// VRRPv2 authentication other than none.
    #[error("VRRPv2 authentication type {0} is not supported (only 0, no authentication; configure the peer without auth_type)")]
    AuthType(u8),
}

/// One VRRP advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// Protocol version: 3 (the only one emitted) or 2 (decoded for diagnostics).
    pub version: u8,
    /// Virtual router id.
    pub vrid: u8,
    /// Sender's priority (0 = the master resigns, 255 = address owner).
    pub priority: u8,
    /// Advertisement interval in centiseconds (v3: Max Adver Int; v2: Adver Int seconds x 100).
    pub max_adver_int_cs: u16,
    /// Virtual addresses carried.
    pub addresses: Vec<Ipv4Addr>,
    /// Checksum as received (ignored by `encode`, which computes it).
    pub checksum: u16,
}

/// The fields of an IPv4 header that VRRP receive needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Header {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Time to live as received (VRRP requires 255).
    pub ttl: u8,
    /// IP protocol number.
    pub proto: u8,
}

/// Internet checksum (RFC 1071) over the concatenation of `parts`, each padded logically
/// as one stream (odd lengths only occur at the very end here).
fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut carry: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match carry.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => carry = Some(b),
            }
        }
    }
    if let Some(hi) = carry {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The v3 checksum: over the IPv4 pseudo-header (src, dst, zero, protocol, VRRP length)
/// and the VRRP message with its checksum field zeroed.
pub fn checksum_v3(msg: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
    let len = u16::try_from(msg.len()).unwrap_or(u16::MAX).to_be_bytes();
    let pseudo = [0, IPPROTO_VRRP, len[0], len[1]];
    let (head, tail) = split_checksum(msg);
    internet_checksum(&[&src.octets(), &dst.octets(), &pseudo, head, &[0, 0], tail])
}

/// The v2 checksum: over the VRRP message only, checksum field zeroed.
pub fn checksum_v2(msg: &[u8]) -> u16 {
    let (head, tail) = split_checksum(msg);
    internet_checksum(&[head, &[0, 0], tail])
}

/// The message around its checksum field (bytes 6..8); short messages yield what exists.
fn split_checksum(msg: &[u8]) -> (&[u8], &[u8]) {
    (
        msg.get(..6).unwrap_or(msg),
        msg.get(HEADER_LEN..).unwrap_or(&[]),
    )
}

impl Advert {
    /// A version 3 advertisement (checksum computed by `encode`).
    pub fn v3(vrid: u8, priority: u8, interval: Duration, addresses: Vec<Ipv4Addr>) -> Advert {
        Advert {
            version: 3,
            vrid,
            priority,
            max_adver_int_cs: interval_to_cs(interval),
            addresses,
            checksum: 0,
        }
    }

    /// The advertisement interval as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.max_adver_int_cs) * 10)
    }

    /// Decode the VRRP part of a datagram (after the IPv4 header) sent from `src` to `dst`,
    /// verifying version, type, address count, length and checksum.
    pub fn decode(payload: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<Advert, PacketError> {
        if payload.len() < HEADER_LEN {
            return Err(PacketError::Truncated {
                what: "VRRP header",
                need: HEADER_LEN,
                got: payload.len(),
            });
        }
        let version = payload[0] >> 4;
        let kind = payload[0] & 0x0f;
        if version != 2 && version != 3 {
            return Err(PacketError::Version(version));
        }
        if kind != TYPE_ADVERT {
            return Err(PacketError::Type(kind));
        }
        let (vrid, priority, count) = (payload[1], payload[2], payload[3]);
        if count == 0 {
            return Err(PacketError::NoAddresses);
        }
        let trailer = if version == 2 { V2_AUTH_LEN } else { 0 };
        let expected = HEADER_LEN + 4 * usize::from(count) + trailer;
        if payload.len() != expected {
            return Err(PacketError::Length {
                count,
                expected,
                got: payload.len(),
            });
        }
        let checksum = u16::from_be_bytes([payload[6], payload[7]]);
        let computed = if version == 3 {
            checksum_v3(payload, src, dst)
        } else {
            checksum_v2(payload)
        };
        if computed != checksum {
            return Err(PacketError::Checksum {
                got: checksum,
                computed,
            });
        }
        let max_adver_int_cs = if version == 3 {
            u16::from_be_bytes([payload[4], payload[5]]) & MAX_ADVER_INT_CS
        } else {
            if payload[4] != 0 {
                return Err(PacketError::AuthType(payload[4]));
            }
            u16::from(payload[5]) * 100
        };
        if max_adver_int_cs == 0 {
            return Err(PacketError::ZeroInterval);
        }
        let addresses = payload[HEADER_LEN..HEADER_LEN + 4 * usize::from(count)]
            .chunks_exact(4)
            .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
            .collect();
        Ok(Advert {
            version,
            vrid,
            priority,
            max_adver_int_cs,
            addresses,
            checksum,
        })
    }

    /// Encode as a version 3 message from `src` to `dst` (whatever `version` says). The
    /// interval is clamped to 1..=4095 cs and at most 255 addresses are carried: the
    /// config validation keeps real values inside both limits.
    pub fn encode(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let addrs = &self.addresses[..self.addresses.len().min(MAX_ADDRESSES)];
        let int = self
            .max_adver_int_cs
            .clamp(1, MAX_ADVER_INT_CS)
            .to_be_bytes();
        let mut out = Vec::with_capacity(HEADER_LEN + 4 * addrs.len());
        out.extend_from_slice(&[
            0x30 | TYPE_ADVERT,
            self.vrid,
            self.priority,
            addrs.len() as u8,
            int[0],
            int[1],
            0,
            0,
        ]);
        for a in addrs {
            out.extend_from_slice(&a.octets());
        }
        let sum = checksum_v3(&out, src, dst).to_be_bytes();
        out[6] = sum[0];
        out[7] = sum[1];
        out
    }
}

/// Centiseconds of `d`, clamped to the 12-bit field's 1..=4095.
pub fn interval_to_cs(d: Duration) -> u16 {
    let cs = d.as_millis() / 10;
    cs.clamp(1, u128::from(MAX_ADVER_INT_CS)) as u16
}

/// Split a raw IPv4 datagram (as a raw socket delivers it) into its header fields and
/// the payload, cut to the header's total length.
pub fn parse_ipv4(buf: &[u8]) -> Result<(Ipv4Header, &[u8]), PacketError> {
    const MIN: usize = 20;
    if buf.len() < MIN {
        return Err(PacketError::Truncated {
            what: "IPv4 header",
            need: MIN,
            got: buf.len(),
        });
    }
    let version = buf[0] >> 4;
    if version != 4 {
        return Err(PacketError::IpVersion(version));
    }
    let ihl = usize::from(buf[0] & 0x0f) * 4;
    if ihl < MIN || ihl > buf.len() {
        return Err(PacketError::IpHeaderLength(ihl));
    }
    let total = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if total < ihl {
        return Err(PacketError::IpHeaderLength(ihl));
    }
    if total > buf.len() {
        return Err(PacketError::Truncated {
            what: "IPv4 datagram",
            need: total,
            got: buf.len(),
        });
    }
    let hdr = Ipv4Header {
        ttl: buf[8],
        proto: buf[9],
        src: Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]),
        dst: Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]),
    };
    Ok((hdr, &buf[ihl..total]))
}

/// Parse a raw IPv4 datagram and decode the VRRP advertisement it carries.
pub fn parse_datagram(buf: &[u8]) -> Result<(Ipv4Header, Advert), PacketError> {
    let (hdr, payload) = parse_ipv4(buf)?;
    if hdr.proto != IPPROTO_VRRP {
        return Err(PacketError::IpProtocol(hdr.proto));
    }
    let adv = Advert::decode(payload, hdr.src, hdr.dst)?;
    Ok((hdr, adv))
}

/// Length of a gratuitous-ARP Ethernet frame (the 42 bytes of header and ARP padded to
/// the Ethernet minimum of 60 without FCS).
pub const GARP_FRAME_LEN: usize = 60;

/// A gratuitous ARP (broadcast ARP request, sender = target = `addr`, RFC 5227
/// announcement) from `mac`, as a full Ethernet frame.
pub fn gratuitous_arp(mac: [u8; 6], addr: Ipv4Addr) -> [u8; GARP_FRAME_LEN] {
    let mut f = [0u8; GARP_FRAME_LEN];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    // Ethernet, IPv4, hardware length 6, protocol length 4, request.
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&addr.octets());
    // Target hardware address stays zero (ignored in an announcement).
    f[38..42].copy_from_slice(&addr.octets());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
    const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

    /// v3, vrid 51, priority 100, 5 cs, one address 203.0.113.10, 203.0.113.2 -> 224.0.0.18.
    /// Checksum by hand: pseudo-header words CB00+7102+E000+0012+0070+000C plus message
    /// words 3133+6401+0005+0000+CB00+710A = 0x3EDD3 -> fold 0xEDD6 -> complement 0x1229.
    const V3_ONE: [u8; 12] = [0x31, 51, 100, 1, 0x00, 0x05, 0x12, 0x29, 203, 0, 113, 10];
    /// v3 unicast 198.51.100.2 -> 198.51.100.3, vrid 7, priority 0 (resign), 100 cs, two
    /// addresses 198.51.100.1 and 198.51.100.9; checksum 0x2533 (computed independently).
    const V3_TWO: [u8; 16] = [
        0x31, 7, 0, 2, 0x00, 100, 0x25, 0x33, 198, 51, 100, 1, 198, 51, 100, 9,
    ];
    /// v2 (RFC 3768) vrid 51, priority 100, 1 s, auth none, 203.0.113.10, 8 zero auth
    /// bytes. Checksum over the message only: 2133+6401+0001+CB00+710A = 0x1C13F ->
    /// 0xC140 -> 0x3EBF.
    const V2_ONE: [u8; 20] = [
        0x21, 51, 100, 1, 0, 1, 0x3e, 0xbf, 203, 0, 113, 10, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    fn ipv4(ttl: u8, proto: u8, src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        let total = (20 + payload.len()) as u16;
        let mut v = vec![0x45, 0xc0];
        v.extend_from_slice(&total.to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 0, ttl, proto, 0, 0]);
        v.extend_from_slice(&src.octets());
        v.extend_from_slice(&dst.octets());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn v3_hand_vector_decodes_and_reencodes_byte_for_byte() {
        let a = Advert::decode(&V3_ONE, A, VRRP_MULTICAST).expect("valid");
        assert_eq!(
            a,
            Advert {
                version: 3,
                vrid: 51,
                priority: 100,
                max_adver_int_cs: 5,
                addresses: vec![VIP],
                checksum: 0x1229,
            }
        );
        assert_eq!(a.interval(), Duration::from_millis(50));
        assert_eq!(a.encode(A, VRRP_MULTICAST), V3_ONE);
        assert_eq!(checksum_v3(&V3_ONE, A, VRRP_MULTICAST), 0x1229);
    }

    #[test]
    fn v3_unicast_two_addresses_priority_zero_round_trip() {
        let src = Ipv4Addr::new(198, 51, 100, 2);
        let dst = Ipv4Addr::new(198, 51, 100, 3);
        let a = Advert::decode(&V3_TWO, src, dst).expect("valid");
        assert_eq!((a.vrid, a.priority, a.max_adver_int_cs), (7, 0, 100));
        assert_eq!(
            a.addresses,
            [
                Ipv4Addr::new(198, 51, 100, 1),
                Ipv4Addr::new(198, 51, 100, 9)
            ]
        );
        assert_eq!(a.encode(src, dst), V3_TWO);
        // The same bytes claimed from another source fail: the pseudo-header is covered.
        assert!(matches!(
            Advert::decode(&V3_TWO, Ipv4Addr::new(198, 51, 100, 4), dst),
            Err(PacketError::Checksum { got: 0x2533, .. })
        ));
    }

    #[test]
    fn constructed_adverts_round_trip() {
        for (prio, ms, n) in [(1u8, 10u64, 1usize), (254, 40_950, 20), (255, 1000, 255)] {
            let addrs: Vec<_> = (0..n)
                .map(|i| Ipv4Addr::new(198, 51, 100, i as u8))
                .collect();
            let a = Advert::v3(200, prio, Duration::from_millis(ms), addrs);
            let bytes = a.encode(A, VRRP_MULTICAST);
            assert_eq!(bytes.len(), 8 + 4 * n);
            let back = Advert::decode(&bytes, A, VRRP_MULTICAST).expect("own output decodes");
            assert_eq!(back.checksum, checksum_v3(&bytes, A, VRRP_MULTICAST));
            assert_eq!(
                Advert {
                    checksum: 0,
                    ..back
                },
                a
            );
        }
    }

    #[test]
    fn encode_clamps_interval_and_reserved_bits_are_ignored_on_decode() {
        let mut a = Advert::v3(1, 100, Duration::from_secs(60), vec![VIP]);
        assert_eq!(a.max_adver_int_cs, 4095);
        a.max_adver_int_cs = 0xffff;
        let bytes = a.encode(A, VRRP_MULTICAST);
        assert_eq!(u16::from_be_bytes([bytes[4], bytes[5]]), 0x0fff);
        assert_eq!(interval_to_cs(Duration::from_millis(3)), 1);
        // Reserved high nibble set by a sender: ignored, the interval is the low 12 bits.
        let mut v = V3_ONE;
        v[4] = 0xf0;
        let sum = checksum_v3(&v, A, VRRP_MULTICAST).to_be_bytes();
        v[6..8].copy_from_slice(&sum);
        assert_eq!(
            Advert::decode(&v, A, VRRP_MULTICAST)
                .unwrap()
                .max_adver_int_cs,
            5
        );
    }

    #[test]
    fn v2_vector_decodes_for_diagnostics() {
        let a = Advert::decode(&V2_ONE, A, VRRP_MULTICAST).expect("valid v2");
        assert_eq!(a.version, 2);
        assert_eq!((a.vrid, a.priority, a.max_adver_int_cs), (51, 100, 100));
        assert_eq!(a.addresses, [VIP]);
        assert_eq!(checksum_v2(&V2_ONE), 0x3ebf);
        // v2 checksum does not depend on the addresses around it.
        assert!(Advert::decode(&V2_ONE, VIP, VIP).is_ok());
        // Simple-text authentication is rejected with its own error.
        let mut v = V2_ONE;
        v[4] = 1;
        let sum = checksum_v2(&v).to_be_bytes();
        v[6..8].copy_from_slice(&sum);
        assert_eq!(
            Advert::decode(&v, A, VRRP_MULTICAST),
            Err(PacketError::AuthType(1))
        );
    }

    /// Patch a v3 message and fix its checksum so only the patched field is wrong.
    fn patched(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut v = V3_ONE.to_vec();
        f(&mut v);
        if v.len() >= 8 {
            let sum = checksum_v3(&v, A, VRRP_MULTICAST).to_be_bytes();
            v[6..8].copy_from_slice(&sum);
        }
        v
    }

    #[test]
    fn every_rejection() {
        let d = |v: &[u8]| Advert::decode(v, A, VRRP_MULTICAST);
        for n in 0..8 {
            assert_eq!(
                d(&V3_ONE[..n]),
                Err(PacketError::Truncated {
                    what: "VRRP header",
                    need: 8,
                    got: n
                })
            );
        }
        assert_eq!(d(&patched(|v| v[0] = 0x11)), Err(PacketError::Version(1)));
        assert_eq!(d(&patched(|v| v[0] = 0x41)), Err(PacketError::Version(4)));
        assert_eq!(d(&patched(|v| v[0] = 0x32)), Err(PacketError::Type(2)));
        assert_eq!(d(&patched(|v| v[3] = 0)), Err(PacketError::NoAddresses));
        assert_eq!(
            d(&patched(|v| v[3] = 2)),
            Err(PacketError::Length {
                count: 2,
                expected: 16,
                got: 12
            })
        );
        assert_eq!(
            d(&V3_ONE[..11]),
            Err(PacketError::Length {
                count: 1,
                expected: 12,
                got: 11
            })
        );
        assert_eq!(
            d(&patched(|v| v.extend_from_slice(&[0, 0, 0, 0]))),
            Err(PacketError::Length {
                count: 1,
                expected: 12,
                got: 16
            })
        );
        assert_eq!(d(&patched(|v| v[5] = 0)), Err(PacketError::ZeroInterval));
        let mut bad = V3_ONE;
        bad[11] ^= 1;
        assert_eq!(
            d(&bad),
            Err(PacketError::Checksum {
                got: 0x1229,
                computed: 0x1228
            })
        );
        let mut bad = V3_ONE;
        bad[7] = 0;
        assert!(matches!(
            d(&bad),
            Err(PacketError::Checksum {
                got: 0x1200,
                computed: 0x1229
            })
        ));
        // A v2 message must end with 8 bytes of auth data.
        assert_eq!(
            d(&V2_ONE[..12]),
            Err(PacketError::Length {
                count: 1,
                expected: 20,
                got: 12
            })
        );
        // Error texts carry the numbers a person needs.
        let msg = d(&bad).unwrap_err().to_string();
        assert!(msg.contains("0x1200") && msg.contains("0x1229"), "{msg}");
    }

    #[test]
    fn ipv4_parse_and_datagram() {
        let raw = ipv4(255, IPPROTO_VRRP, A, VRRP_MULTICAST, &V3_ONE);
        let (h, p) = parse_ipv4(&raw).expect("valid");
        assert_eq!(
            h,
            Ipv4Header {
                src: A,
                dst: VRRP_MULTICAST,
                ttl: 255,
                proto: 112
            }
        );
        assert_eq!(p, V3_ONE);
        let (h2, adv) = parse_datagram(&raw).expect("valid");
        assert_eq!(h2, h);
        assert_eq!(adv.addresses, [VIP]);
        // Trailing link-layer padding beyond the total length is cut off.
        let mut padded = raw.clone();
        padded.extend_from_slice(&[0xee; 6]);
        assert_eq!(parse_ipv4(&padded).unwrap().1, V3_ONE);
        // Options (IHL 6) are skipped.
        let mut opt = vec![0x46, 0, 0, 36];
        opt.extend_from_slice(&raw[4..20]);
        opt.extend_from_slice(&[1, 1, 1, 0]);
        opt.extend_from_slice(&V3_ONE);
        assert_eq!(parse_ipv4(&opt).unwrap().1, V3_ONE);
    }

    #[test]
    fn ipv4_rejections() {
        let raw = ipv4(255, IPPROTO_VRRP, A, VRRP_MULTICAST, &V3_ONE);
        assert_eq!(
            parse_ipv4(&raw[..19]),
            Err(PacketError::Truncated {
                what: "IPv4 header",
                need: 20,
                got: 19
            })
        );
        let mut v6 = raw.clone();
        v6[0] = 0x65;
        assert_eq!(parse_ipv4(&v6), Err(PacketError::IpVersion(6)));
        let mut short_ihl = raw.clone();
        short_ihl[0] = 0x44;
        assert_eq!(parse_ipv4(&short_ihl), Err(PacketError::IpHeaderLength(16)));
        let mut long_ihl = raw[..20].to_vec();
        long_ihl[0] = 0x4f;
        assert_eq!(parse_ipv4(&long_ihl), Err(PacketError::IpHeaderLength(60)));
        let mut total_small = raw.clone();
        total_small[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(
            parse_ipv4(&total_small),
            Err(PacketError::IpHeaderLength(20))
        );
        assert_eq!(
            parse_ipv4(&raw[..30]),
            Err(PacketError::Truncated {
                what: "IPv4 datagram",
                need: 32,
                got: 30
            })
        );
        let udp = ipv4(255, 17, A, VRRP_MULTICAST, &V3_ONE);
        assert_eq!(parse_datagram(&udp), Err(PacketError::IpProtocol(17)));
    }

    #[test]
    fn gratuitous_arp_frame_bytes() {
        let mac = [0x02, 0, 0, 0, 0, 0x0a];
        let f = gratuitous_arp(mac, VIP);
        let want: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 10, 0x08, 0x06, // Ethernet
            0, 1, 8, 0, 6, 4, 0, 1, // ARP request
            2, 0, 0, 0, 0, 10, 203, 0, 113, 10, // sender
            0, 0, 0, 0, 0, 0, 203, 0, 113, 10, // target
        ];
        assert_eq!(f[..42], want);
        assert!(f[42..].iter().all(|&b| b == 0));
    }
}
