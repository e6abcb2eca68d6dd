//! A strict RFC 5424 parser for what a collector received (the test's own reading of
//! the appliance's messages, independent of the appliance's formatter).

use std::collections::BTreeMap;

/// One parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// PRI (facility * 8 + severity).
    pub pri: u8,
    /// TIMESTAMP, `None` for NILVALUE.
    pub timestamp: Option<String>,
    /// HOSTNAME.
    pub hostname: String,
    /// APP-NAME.
    pub app_name: String,
    /// PROCID.
    pub procid: String,
    /// MSGID.
    pub msgid: String,
    /// STRUCTURED-DATA: SD-ID -> params (in order).
    pub sd: BTreeMap<String, Vec<(String, String)>>,
    /// MSG (may be empty).
    pub msg: String,
}

impl Message {
    /// The value of `param` in SD element `id`.
    pub fn param(&self, id: &str, param: &str) -> Option<&str> {
        self.sd
            .get(id)?
            .iter()
            .find(|(k, _)| k == param)
            .map(|(_, v)| v.as_str())
    }
}

fn header_field<'a>(s: &mut &'a str, name: &str, max: usize) -> Result<&'a str, String> {
    let (f, rest) = s
        .split_once(' ')
        .ok_or_else(|| format!("{name}: no space after it"))?;
    if f.is_empty() || f.len() > max || !f.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(format!(
            "{name} {f:?}: 1-{max} printable US-ASCII characters"
        ));
    }
    *s = rest;
    Ok(f)
}

/// Checks an RFC 3339 timestamp as RFC 5424 6.2.3 restricts it (upper-case T and Z,
/// at most 6 fraction digits).
fn check_timestamp(t: &str) -> Result<(), String> {
    let b = t.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let ok = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !ok {
        return Err(format!(
            "timestamp {t:?} is not RFC 3339 full-date T full-time"
        ));
    }
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=6).contains(&n) {
            return Err(format!("timestamp {t:?}: 1-6 fraction digits"));
        }
        rest = &frac[n..];
    }
    let zone_ok = rest == "Z"
        || (rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && rest.as_bytes()[3] == b':');
    if !zone_ok {
        return Err(format!("timestamp {t:?}: bad time zone {rest:?}"));
    }
    Ok(())
}

fn sd_name(s: &str, what: &str) -> Result<(), String> {
    if s.is_empty()
        || s.len() > 32
        || !s
            .bytes()
            .all(|b| (33..=126).contains(&b) && !matches!(b, b'=' | b']' | b'"'))
    {
        return Err(format!("{what} {s:?} is not an SD-NAME"));
    }
    Ok(())
}

/// Parses one message (without transport framing or a trailing newline).
pub fn parse(line: &str) -> Result<Message, String> {
    let rest = line.strip_prefix('<').ok_or("no '<' PRI")?;
    let (pri, rest) = rest.split_once('>').ok_or("no '>' after PRI")?;
    if pri.is_empty() || pri.len() > 3 || (pri.len() > 1 && pri.starts_with('0')) {
        return Err(format!("PRI {pri:?}"));
    }
    let pri: u8 = pri.parse().map_err(|_| format!("PRI {pri:?}"))?;
    if pri > 191 {
        return Err(format!("PRI {pri} > 191"));
    }
    let mut s = rest.strip_prefix("1 ").ok_or("VERSION is not 1")?;
    let ts = header_field(&mut s, "TIMESTAMP", 64)?;
    let timestamp = if ts == "-" {
        None
    } else {
        check_timestamp(ts)?;
        Some(ts.to_string())
    };
    let hostname = header_field(&mut s, "HOSTNAME", 255)?.to_string();
    let app_name = header_field(&mut s, "APP-NAME", 48)?.to_string();
    let procid = header_field(&mut s, "PROCID", 128)?.to_string();
    // MSGID is followed by SD, which may be the last field.
    let (msgid, after) = match s.split_once(' ') {
        Some((m, a)) => (m, a),
        None => return Err("no STRUCTURED-DATA".into()),
    };
    if msgid.is_empty() || msgid.len() > 32 || !msgid.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(format!("MSGID {msgid:?}"));
    }
    let mut sd = BTreeMap::new();
    let mut p = after;
    if let Some(r) = p.strip_prefix('-') {
        p = r;
    } else {
        if !p.starts_with('[') {
            return Err(format!(
                "STRUCTURED-DATA must start with '[' or be '-': {p:?}"
            ));
        }
        while let Some(r) = p.strip_prefix('[') {
            let end = r.find([' ', ']']).ok_or("SD-ELEMENT not closed")?;
            let id = &r[..end];
            sd_name(id, "SD-ID")?;
            let mut q = &r[end..];
            let mut params = Vec::new();
            while let Some(r2) = q.strip_prefix(' ') {
                let (name, r3) = r2.split_once("=\"").ok_or("SD-PARAM without =\"")?;
                sd_name(name, "PARAM-NAME")?;
                let mut value = String::new();
                let mut chars = r3.char_indices();
                let mut close = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some((_, e @ ('"' | '\\' | ']'))) => value.push(e),
                            Some((_, e)) => {
                                value.push('\\');
                                value.push(e);
                            }
                            None => return Err("SD-PARAM ends in a backslash".into()),
                        },
                        '"' => {
                            close = Some(i);
                            break;
                        }
                        ']' => return Err(format!("unescaped ']' in PARAM-VALUE of {name}")),
                        c => value.push(c),
                    }
                }
                let close = close.ok_or("PARAM-VALUE not closed")?;
                params.push((name.to_string(), value));
                q = &r3[close + 1..];
            }
            p = q
                .strip_prefix(']')
                .ok_or("SD-ELEMENT not closed with ']'")?;
            if sd.insert(id.to_string(), params).is_some() {
                return Err(format!("SD-ID {id} twice"));
            }
        }
    }
    let msg = match p {
        "" => String::new(),
        m => m
            .strip_prefix(' ')
            .ok_or_else(|| format!("no space before MSG: {m:?}"))?
            .to_string(),
    };
    Ok(Message {
        pri,
        timestamp,
        hostname: hostname.to_string(),
        app_name,
        procid,
        msgid: msgid.to_string(),
        sd,
        msg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_rfc_examples_and_ours() {
        // RFC 5424 section 6.5, example 3 (without BOM).
        let m = parse(r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] An application event log entry..."#).unwrap();
        assert_eq!(m.pri, 165);
        assert_eq!(m.param("exampleSDID@32473", "eventID"), Some("1011"));
        assert_eq!(m.msg, "An application event log entry...");
        let m = parse(r#"<132>1 - sip-lb appliance 42 HEALTH [slb@32473 reason="a\"b\\c\]d"][timeQuality isSynced="0"]"#).unwrap();
        assert_eq!(m.timestamp, None);
        assert_eq!(m.param("slb@32473", "reason"), Some(r#"a"b\c]d"#));
        assert_eq!(m.param("timeQuality", "isSynced"), Some("0"));
        assert_eq!(m.msg, "");
    }

    #[test]
    fn refuses_broken_messages() {
        for bad in [
            "<192>1 - h a p m -",
            "<13>2 - h a p m -",
            "<13>1 2003-10-11 h a p m -",
            "<13>1 2003-10-11T22:14:15.0000001Z h a p m -",
            "<13>1 - h a p m [x a=\"1\"",
            "<13>1 - h a p m [x a=\"]\"]",
            "<13>1 - h a p m nosd",
            "<13>1 - h a p m [x][x]",
            "<013>1 - h a p m -",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
