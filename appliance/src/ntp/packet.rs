//! SNTP packet codec (RFC 4330 / RFC 5905 header, 48 octets), pure.
//!
//! Requests carry a random transmit timestamp (RFC 9109: nothing of our clock leaks,
//! and a reply must echo it as its origin timestamp, which defeats off-path spoofing).
//! Replies are checked strictly: server mode, version 1-4, a synchronised leap
//! indicator, stratum 1-15 (stratum 0 is a kiss-o'-death), non-zero timestamps.

/// Length of an NTP header without extensions.
pub const LEN: usize = 48;
/// Seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
pub const UNIX_OFFSET_S: i64 = 2_208_988_800;

/// A 64-bit NTP timestamp (32.32 fixed point, seconds since 1900 in its era).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// From microseconds since the Unix epoch (wraps into era 1 after 2036).
    pub fn from_unix_us(us: i64) -> Timestamp {
        let secs = us.div_euclid(1_000_000) + UNIX_OFFSET_S;
        let frac = ((us.rem_euclid(1_000_000) as u64) << 32) / 1_000_000;
        Timestamp(((secs as u64) << 32) | frac)
    }

    /// To microseconds since the Unix epoch. Seconds with the top bit clear are taken
    /// as era 1 (2036-2104), as RFC 4330 section 3 suggests.
    pub fn to_unix_us(self) -> i64 {
        let secs = (self.0 >> 32) as i64;
        let secs = if secs & 0x8000_0000 == 0 {
            secs + (1i64 << 32)
        } else {
            secs
        };
        let frac = ((self.0 & 0xFFFF_FFFF) * 1_000_000) >> 32;
        (secs - UNIX_OFFSET_S) * 1_000_000 + frac as i64
    }
}

/// A client request (mode 3, version 4) whose transmit timestamp is `cookie`.
pub fn request(cookie: Timestamp) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[0] = 0b00_100_011; // LI 0, VN 4, mode 3
    b[40..48].copy_from_slice(&cookie.0.to_be_bytes());
    b
}

/// A decoded server reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Leap indicator (0-2; 3 is refused).
    pub leap: u8,
    /// Version (1-4).
    pub version: u8,
    /// Stratum (1-15).
    pub stratum: u8,
    /// Poll exponent the server advertises.
    pub poll: i8,
    /// Precision exponent.
    pub precision: i8,
    /// Root delay (16.16 seconds).
    pub root_delay: u32,
    /// Root dispersion (16.16 seconds).
    pub root_dispersion: u32,
    /// Reference id.
    pub reference_id: [u8; 4],
    /// Reference timestamp.
    pub reference: Timestamp,
    /// Origin timestamp (our request's transmit timestamp, echoed).
    pub origin: Timestamp,
    /// When the server received the request (T2).
    pub receive: Timestamp,
    /// When the server sent the reply (T3).
    pub transmit: Timestamp,
}

/// Why a datagram is not a usable reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than 48 octets.
    #[error("reply too short: {0} octets, an NTP header has 48")]
    Short(usize),
    /// Not mode 4 (server).
    #[error("not a server reply (mode {0})")]
    Mode(u8),
    /// Version 0 or above 4.
    #[error("unsupported NTP version {0}")]
    Version(u8),
    /// Leap indicator 3: the server's clock is not synchronised.
    #[error("the server's own clock is not synchronised (leap indicator 3)")]
    Unsynchronised,
    /// Stratum 0: a kiss-o'-death with its code.
    #[error("the server refused service (kiss code {0})")]
    Kiss(String),
    /// Stratum 16 or above.
    #[error("the server is unsynchronised (stratum {0})")]
    Stratum(u8),
    /// Zero transmit or receive timestamp.
    #[error("the reply has no timestamps")]
    NoTime,
}

fn ts(b: &[u8], at: usize) -> Timestamp {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    Timestamp(u64::from_be_bytes(a))
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Reply {
    /// Decode and check a server reply. Extension fields and MACs after the header are ignored.
    pub fn decode(b: &[u8]) -> Result<Reply, DecodeError> {
        if b.len() < LEN {
            return Err(DecodeError::Short(b.len()));
        }
        let leap = b[0] >> 6;
        let version = (b[0] >> 3) & 7;
        let mode = b[0] & 7;
        if mode != 4 {
            return Err(DecodeError::Mode(mode));
        }
        if !(1..=4).contains(&version) {
            return Err(DecodeError::Version(version));
        }
        let stratum = b[1];
        let reference_id = [b[12], b[13], b[14], b[15]];
        if stratum == 0 {
            let code: String = reference_id
                .iter()
                .map(|&c| if c.is_ascii_graphic() { c as char } else { '?' })
                .collect();
            return Err(DecodeError::Kiss(code));
        }
        if stratum >= 16 {
            return Err(DecodeError::Stratum(stratum));
        }
        if leap == 3 {
            return Err(DecodeError::Unsynchronised);
        }
        let r = Reply {
            leap,
            version,
            stratum,
            poll: b[2] as i8,
            precision: b[3] as i8,
            root_delay: be32(b, 4),
            root_dispersion: be32(b, 8),
            reference_id,
            reference: ts(b, 16),
            origin: ts(b, 24),
            receive: ts(b, 32),
            transmit: ts(b, 40),
        };
        if r.transmit.0 == 0 || r.receive.0 == 0 {
            return Err(DecodeError::NoTime);
        }
        Ok(r)
    }

    /// Encode (for tests and the fuzz target's round trip).
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = (self.leap << 6) | ((self.version & 7) << 3) | 4;
        b[1] = self.stratum;
        b[2] = self.poll as u8;
        b[3] = self.precision as u8;
        b[4..8].copy_from_slice(&self.root_delay.to_be_bytes());
        b[8..12].copy_from_slice(&self.root_dispersion.to_be_bytes());
        b[12..16].copy_from_slice(&self.reference_id);
        b[16..24].copy_from_slice(&self.reference.0.to_be_bytes());
        b[24..32].copy_from_slice(&self.origin.0.to_be_bytes());
        b[32..40].copy_from_slice(&self.receive.0.to_be_bytes());
        b[40..48].copy_from_slice(&self.transmit.0.to_be_bytes());
        b
    }
}

/// One measurement: clock offset and round-trip delay, microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Server time minus our time.
    pub offset_us: i64,
    /// Round trip minus the server's processing time (never negative).
    pub delay_us: i64,
    /// The server's stratum.
    pub stratum: u8,
}

/// Offset and delay from T1 (our send, local clock), the reply's T2/T3, and T4 (our receive).
pub fn sample(t1_us: i64, reply: &Reply, t4_us: i64) -> Sample {
    let t2 = reply.receive.to_unix_us();
    let t3 = reply.transmit.to_unix_us();
    Sample {
        offset_us: ((t2 - t1_us) + (t3 - t4_us)) / 2,
        delay_us: ((t4_us - t1_us) - (t3 - t2)).max(0),
        stratum: reply.stratum,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as chrony with `local stratum 8` sends it (LI 0, version 4, refid
    /// 127.127.1.1), echoing our cookie as origin; hand-assembled for the test.
    const CHRONY: [u8; 48] = [
        0x24, 0x08, 0x03, 0xe9, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7f, 0x7f, 0x01,
        0x01, 0xec, 0xd5, 0x7c, 0x10, 0x1f, 0x7c, 0xed, 0x91, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
        0x77, 0x88, 0xec, 0xd5, 0x7c, 0x15, 0x3c, 0x50, 0x4d, 0x2f, 0xec, 0xd5, 0x7c, 0x15, 0x3c,
        0x52, 0x8f, 0x44,
    ];

    #[test]
    fn request_bytes() {
        let r = request(Timestamp(0x1122_3344_5566_7788));
        assert_eq!(r[0], 0x23);
        assert!(r[1..40].iter().all(|&b| b == 0));
        assert_eq!(&r[40..], &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
    }

    #[test]
    fn decodes_and_round_trips_a_server_reply() {
        let r = Reply::decode(&CHRONY).unwrap();
        assert_eq!((r.leap, r.version, r.stratum), (0, 4, 8));
        assert_eq!(r.reference_id, [127, 127, 1, 1]);
        assert_eq!(r.origin, Timestamp(0x1122_3344_5566_7788));
        assert_eq!(r.poll, 3);
        assert_eq!(r.precision, -23);
        assert_eq!(r.encode(), CHRONY);
        // Extensions after the header are ignored.
        let mut long = CHRONY.to_vec();
        long.extend_from_slice(&[0u8; 20]);
        assert_eq!(Reply::decode(&long).unwrap(), r);
    }

    #[test]
    fn refuses_what_is_not_a_usable_reply() {
        assert_eq!(Reply::decode(&CHRONY[..47]), Err(DecodeError::Short(47)));
        let mut b = CHRONY;
        b[0] = 0x23; // our own request mode 3
        assert_eq!(Reply::decode(&b), Err(DecodeError::Mode(3)));
        b[0] = 0x04; // version 0
        assert_eq!(Reply::decode(&b), Err(DecodeError::Version(0)));
        b[0] = 0xe4; // LI 3
        assert_eq!(Reply::decode(&b), Err(DecodeError::Unsynchronised));
        let mut k = CHRONY;
        k[1] = 0;
        k[12..16].copy_from_slice(b"RATE");
        assert_eq!(Reply::decode(&k), Err(DecodeError::Kiss("RATE".into())));
        let mut s = CHRONY;
        s[1] = 16;
        assert_eq!(Reply::decode(&s), Err(DecodeError::Stratum(16)));
        let mut z = CHRONY;
        z[40..48].fill(0);
        assert_eq!(Reply::decode(&z), Err(DecodeError::NoTime));
        assert!(DecodeError::Kiss("DENY".into())
            .to_string()
            .contains("refused"));
    }

    #[test]
    fn timestamps_convert_both_ways_and_across_the_2036_era() {
        let t = 1_795_874_773_123_456; // 2026-11-28T14:06:13.123456Z
        let n = Timestamp::from_unix_us(t);
        assert_eq!(n.0 >> 32, (1_795_874_773 + UNIX_OFFSET_S) as u64);
        assert!((n.to_unix_us() - t).abs() <= 1);
        assert_eq!(Timestamp::from_unix_us(0).0, (UNIX_OFFSET_S as u64) << 32);
        assert_eq!(Timestamp((UNIX_OFFSET_S as u64) << 32).to_unix_us(), 0);
        // 2040: NTP seconds wrapped (era 1), top bit clear.
        let y2040 = 2_208_988_800_000_000;
        let w = Timestamp::from_unix_us(y2040);
        assert_eq!(w.0 >> 63, 0);
        assert_eq!(w.to_unix_us(), y2040);
    }

    #[test]
    fn offset_and_delay() {
        let base = 1_795_874_773_000_000;
        let reply = Reply {
            receive: Timestamp::from_unix_us(base + 10_000_000 + 1_000),
            transmit: Timestamp::from_unix_us(base + 10_000_000 + 1_500),
            ..Reply::decode(&CHRONY).unwrap()
        };
        // Sent at base, received 3 ms later; the server is 10 s ahead.
        let s = sample(base, &reply, base + 3_000);
        assert!((s.offset_us - 9_999_750).abs() <= 2, "{s:?}");
        assert!((s.delay_us - 2_500).abs() <= 2, "{s:?}");
        // The guest at 1970: a huge positive offset, no overflow.
        let s = sample(5_000_000, &reply, 5_002_000);
        assert!(s.offset_us > 1_700_000_000_000_000, "{s:?}");
    }

    /// Mutated replies never panic; whatever decodes re-encodes to its first 48 bytes
    /// (the fuzz target `ntp_reply` does this with coverage guidance).
    #[test]
    fn mutated_replies_never_panic_and_round_trip() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut b = CHRONY.to_vec();
            let len = (next() % 64) as usize;
            b.resize(len, 0);
            for _ in 0..(next() % 4) {
                if !b.is_empty() {
                    let i = (next() as usize) % b.len();
                    b[i] = next() as u8;
                }
            }
            if let Ok(r) = Reply::decode(&b) {
                accepted += 1;
                assert_eq!(&r.encode()[..], &b[..LEN]);
                assert!(sample(0, &r, 1).delay_us >= 0);
            }
        }
        assert!(accepted > 0);
    }
}
