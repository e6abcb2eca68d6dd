//! RFC 5424 message formatter (pure): header, structured data, MSG, and RFC 6587
//! octet-counting framing for TCP. Byte-exact unit tests below.

use std::fmt::Write as _;

use super::{Event, Severity, SD_ID};

/// Longest message sent (RFC 5426 asks receivers to accept 2048 octets; IPv4 UDP
/// collectors must accept 480). Longer MSG text is cut at a character boundary.
pub const MAX_MESSAGE: usize = 2048;
/// APP-NAME of every message.
pub const APP_NAME: &str = "appliance";
/// A clock before this (2020-01-01T00:00:00Z) was never set: the timestamp is NILVALUE.
pub const CLOCK_SET_AFTER_UNIX_S: i64 = 1_577_836_800;

/// What the header needs besides the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// Facility code (0..=23).
    pub facility: u8,
    /// HOSTNAME (the configured hostname).
    pub hostname: &'a str,
    /// PROCID (the daemon's pid).
    pub procid: u32,
    /// Wall-clock time in microseconds since the epoch.
    pub unix_us: i64,
    /// The clock is synced to an NTP server (timeQuality isSynced).
    pub synced: bool,
}

/// PRI value: facility * 8 + severity.
pub fn pri(facility: u8, severity: Severity) -> u16 {
    u16::from(facility.min(23)) * 8 + severity as u16
}

/// Longest SD-PARAM value, in characters (the rest is in MSG): keeps SD within the limit.
pub const MAX_PARAM_CHARS: usize = 200;

/// Escapes an SD-PARAM value: `"`, `\` and `]` get a backslash (RFC 5424 6.3.3).
/// Values are cut to [`MAX_PARAM_CHARS`] characters.
pub fn escape_param_value(v: &str, out: &mut String) {
    for c in v.chars().take(MAX_PARAM_CHARS) {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// A header field: PRINTUSASCII only, at most `max` octets, NILVALUE when empty.
fn header_field(v: &str, max: usize, out: &mut String) {
    let start = out.len();
    for b in v.bytes().take(max) {
        out.push(if (33..=126).contains(&b) {
            b as char
        } else {
            '_'
        });
    }
    if out.len() == start {
        out.push('-');
    }
}

/// RFC 3339 UTC timestamp with microseconds (`2026-11-28T14:06:13.123456Z`),
/// or NILVALUE (`-`) when the clock was never set.
pub fn timestamp(unix_us: i64) -> String {
    let secs = unix_us.div_euclid(1_000_000);
    if secs < CLOCK_SET_AFTER_UNIX_S {
        return "-".into();
    }
    let micros = unix_us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The whole RFC 5424 message (no trailing newline, no framing), at most [`MAX_MESSAGE`] octets.
pub fn format(h: &Header<'_>, e: &Event) -> Vec<u8> {
    let mut s = String::with_capacity(256);
    let _ = write!(
        s,
        "<{}>1 {} ",
        pri(h.facility, e.severity),
        timestamp(h.unix_us)
    );
    header_field(h.hostname, 255, &mut s);
    s.push(' ');
    header_field(APP_NAME, 48, &mut s);
    let _ = write!(s, " {} ", h.procid);
    header_field(e.msgid, 32, &mut s);
    s.push(' ');
    s.push('[');
    s.push_str(SD_ID);
    for (name, value) in &e.params {
        let _ = write!(s, " {name}=\"");
        escape_param_value(value, &mut s);
        s.push('"');
    }
    s.push(']');
    let _ = write!(
        s,
        "[timeQuality tzKnown=\"1\" isSynced=\"{}\"]",
        u8::from(h.synced)
    );
    if !e.text.is_empty() {
        s.push(' ');
        let room = MAX_MESSAGE.saturating_sub(s.len());
        let mut cut = e.text.len().min(room);
        while !e.text.is_char_boundary(cut) {
            cut -= 1;
        }
        s.push_str(&e.text[..cut]);
    }
    s.into_bytes()
}

/// RFC 6587 octet-counting frame: `LEN SP MSG`.
pub fn octet_counted(msg: &[u8]) -> Vec<u8> {
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-28T14:06:13.123456Z
    const T: i64 = 1_795_874_773_123_456;

    fn header(synced: bool) -> Header<'static> {
        Header {
            facility: 16,
            hostname: "sip-lb",
            procid: 42,
            unix_us: T,
            synced,
        }
    }

    #[test]
    fn server_down_exact_bytes() {
        let e = Event::server_health(
            "sip",
            "198.51.100.11:5060".parse().unwrap(),
            false,
            "timeout",
        );
        let got = String::from_utf8(format(&header(true), &e)).unwrap();
        assert_eq!(
            got,
            "<132>1 2026-11-28T14:06:13.123456Z sip-lb appliance 42 HEALTH \
             [slb@32473 service=\"sip\" server=\"198.51.100.11:5060\" state=\"down\" reason=\"timeout\"]\
             [timeQuality tzKnown=\"1\" isSynced=\"1\"] server 198.51.100.11:5060 of service sip is down: timeout"
        );
    }

    #[test]
    fn unset_clock_is_nilvalue_and_unsynced() {
        let e = Event::config("save", true, "generation 7");
        let h = Header {
            unix_us: 12_000_000,
            synced: false,
            ..header(false)
        };
        let got = String::from_utf8(format(&h, &e)).unwrap();
        assert_eq!(
            got,
            "<133>1 - sip-lb appliance 42 CONFIG [slb@32473 action=\"save\" result=\"ok\"]\
             [timeQuality tzKnown=\"1\" isSynced=\"0\"] configuration save ok: generation 7"
        );
    }

    #[test]
    fn escapes_param_values() {
        let mut s = String::new();
        escape_param_value(r#"a"b\c]d=e [f"#, &mut s);
        assert_eq!(s, r#"a\"b\\c\]d=e [f"#);
        let e = Event::fault("ipvs", true, "x\"]\\");
        let got = String::from_utf8(format(&header(true), &e)).unwrap();
        assert!(
            got.contains(r#"[slb@32473 kind="ipvs" state="active" detail="x\"\]\\"]"#),
            "{got}"
        );
    }

    #[test]
    fn header_fields_are_printable_and_bounded() {
        let long = "h".repeat(300);
        let h = Header {
            hostname: &long,
            ..header(true)
        };
        let got = String::from_utf8(format(&h, &Event::config("apply", true, ""))).unwrap();
        let host = got.split(' ').nth(2).unwrap();
        assert_eq!(host.len(), 255);
        assert!(
            got.ends_with("isSynced=\"1\"] configuration apply ok"),
            "{got}"
        );
        let h = Header {
            hostname: "a b\u{e9}",
            ..header(true)
        };
        let got = String::from_utf8(format(&h, &Event::config("apply", true, ""))).unwrap();
        assert_eq!(got.split(' ').nth(2).unwrap(), "a_b__");
        let h = Header {
            hostname: "",
            ..header(true)
        };
        let got = String::from_utf8(format(&h, &Event::config("apply", true, ""))).unwrap();
        assert_eq!(got.split(' ').nth(2).unwrap(), "-");
    }

    #[test]
    fn long_text_is_cut_to_the_limit_at_a_char_boundary() {
        let e = Event::fault("net", true, &"\u{e9}".repeat(3000));
        let got = format(&header(true), &e);
        assert!(
            got.len() <= MAX_MESSAGE && got.len() >= MAX_MESSAGE - 1,
            "{}",
            got.len()
        );
        assert!(std::str::from_utf8(&got).is_ok());
    }

    #[test]
    fn octet_counting_frame() {
        assert_eq!(
            octet_counted(b"<13>1 - - - - - -"),
            b"17 <13>1 - - - - - -".to_vec()
        );
        assert_eq!(octet_counted(b""), b"0 ".to_vec());
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(T), "2026-11-28T14:06:13.123456Z");
        assert_eq!(
            timestamp(CLOCK_SET_AFTER_UNIX_S * 1_000_000),
            "2020-01-01T00:00:00.000000Z"
        );
        assert_eq!(timestamp(CLOCK_SET_AFTER_UNIX_S * 1_000_000 - 1), "-");
        // Leap day and end of year.
        assert_eq!(
            timestamp(1_709_164_800_000_000),
            "2024-02-29T00:00:00.000000Z"
        );
        assert_eq!(
            timestamp(1_735_689_599_999_999),
            "2024-12-31T23:59:59.999999Z"
        );
        assert_eq!(pri(16, Severity::Warning), 132);
        assert_eq!(pri(3, Severity::Error), 27);
    }
}
