//! Field parsers for console input: each returns the value or a message a person can act on.

use std::net::Ipv4Addr;

use crate::config::validate::{check_ifname, MTU_MAX, MTU_MIN};
use crate::config::{CodeRange, FailureAction, Forwarding, Ipv4Net, Scheduler, URI_LEN};

/// Parse result with a human message.
pub type Parsed<T> = Result<T, String>;

/// Kernel interface name, by the same rule as validation (`config::validate::check_ifname`).
pub fn ifname(s: &str) -> Parsed<String> {
    check_ifname(s).map(|()| s.to_owned())
}

/// Unicast IPv4 address (not 0.0.0.0, broadcast, multicast or loopback).
pub fn ipv4(s: &str) -> Parsed<Ipv4Addr> {
    let ip: Ipv4Addr = s
        .parse()
        .map_err(|_| format!("'{s}' is not an IPv4 address, expected e.g. 198.51.100.11"))?;
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
        return Err(format!(
            "{ip} cannot be used here: it is not a unicast host address"
        ));
    }
    Ok(ip)
}

/// Interface address with prefix, e.g. `203.0.113.2/24`.
pub fn net(s: &str) -> Parsed<Ipv4Net> {
    let n: Ipv4Net = s.parse().map_err(|e| format!("{e}"))?;
    if n.prefix == 0 {
        return Err("prefix /0 is not an interface subnet; use 1 to 32".into());
    }
    ipv4(&n.addr.to_string())?;
    if n.is_network_or_broadcast(n.addr) {
        return Err(format!(
            "{} is the network or broadcast address of /{}; use a host address",
            n.addr, n.prefix
        ));
    }
    Ok(n)
}

/// Gateway: `none` or an address inside `subnet`.
pub fn gateway(s: &str, subnet: Ipv4Net) -> Parsed<Option<Ipv4Addr>> {
    if s.eq_ignore_ascii_case("none") || s == "-" {
        return Ok(None);
    }
    let ip = ipv4(s)?;
    if !subnet.contains(ip) {
        return Err(format!(
            "gateway {ip} is not on this interface's subnet {subnet}; enter an address in it or 'none'"
        ));
    }
    if ip == subnet.addr {
        return Err(format!("gateway {ip} is this interface's own address"));
    }
    Ok(Some(ip))
}

/// Display form of an optional gateway.
pub fn show_gateway(g: Option<Ipv4Addr>) -> String {
    g.map_or_else(|| "none".into(), |g| g.to_string())
}

/// Integer within an inclusive range.
pub fn number<T>(s: &str, lo: T, hi: T, what: &str) -> Parsed<T>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match s.parse::<T>() {
        Ok(v) if v >= lo && v <= hi => Ok(v),
        _ => Err(format!(
            "'{s}' is not a valid {what}: enter a whole number from {lo} to {hi}"
        )),
    }
}

/// Link MTU.
pub fn mtu(s: &str) -> Parsed<u16> {
    number(s, MTU_MIN, MTU_MAX, "MTU")
}

/// UDP port 1-65535.
pub fn port(s: &str) -> Parsed<u16> {
    number(s, 1, 65535, "port")
}

/// Hostname label: 1-63 letters, digits and hyphens, not starting or ending with a hyphen.
pub fn hostname(s: &str) -> Parsed<String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "'{s}' is not a hostname: use 1-63 letters, digits or '-', not starting or ending with '-'"
        ))
    }
}

/// Service name: 1-32 letters, digits, `-`, `_`.
pub fn service_name(s: &str) -> Parsed<String> {
    if !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "'{s}' is not a service name: use 1-32 letters, digits, '-' or '_'"
        ))
    }
}

/// Yes/no.
pub fn yes_no(s: &str) -> Parsed<bool> {
    match s.to_ascii_lowercase().as_str() {
        "y" | "yes" | "on" | "true" => Ok(true),
        "n" | "no" | "off" | "false" => Ok(false),
        _ => Err(format!("'{s}': answer y or n")),
    }
}

/// Display form of a list: its items joined by `sep`, or `none` when empty.
pub fn show_list<T: std::fmt::Display>(items: &[T], sep: &str) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(sep)
}

/// Display form of a bool for y/n prompts.
pub fn show_yn(b: bool) -> String {
    if b { "y" } else { "n" }.into()
}

/// IPVS scheduler.
pub fn scheduler(s: &str) -> Parsed<Scheduler> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "rr" => Scheduler::Rr,
        "wrr" => Scheduler::Wrr,
        "lc" => Scheduler::Lc,
        "wlc" => Scheduler::Wlc,
        "sh" => Scheduler::Sh,
        "mh" => Scheduler::Mh,
        _ => {
            return Err(format!(
                "'{s}' is not a scheduler: use rr, wrr, lc, wlc, sh or mh"
            ))
        }
    })
}

/// Forwarding method.
pub fn forwarding(s: &str) -> Parsed<Forwarding> {
    match s.to_ascii_lowercase().as_str() {
        "nat" => Ok(Forwarding::Nat),
        "dr" => Ok(Forwarding::Dr),
        _ => Err(format!("'{s}' is not a forwarding method: use nat or dr")),
    }
}

/// Display form of forwarding.
pub fn show_forwarding(f: Forwarding) -> String {
    match f {
        Forwarding::Nat => "nat".into(),
        Forwarding::Dr => "dr".into(),
    }
}

/// Contiguous netmask such as `255.255.255.0` or `0.0.0.0`.
pub fn netmask(s: &str) -> Parsed<Ipv4Addr> {
    let ip: Ipv4Addr = s
        .parse()
        .map_err(|_| format!("'{s}' is not a netmask, expected e.g. 0.0.0.0 or 255.255.255.0"))?;
    let m = u32::from(ip);
    if m.leading_ones() + m.trailing_zeros() != 32 {
        return Err(format!(
            "{ip} is not a contiguous netmask (ones then zeros)"
        ));
    }
    Ok(ip)
}

/// Comma-separated SIP code ranges, e.g. `2xx,404`.
pub fn codes(s: &str) -> Parsed<Vec<CodeRange>> {
    let v: Result<Vec<CodeRange>, String> = s
        .split(',')
        .map(|p| p.trim().parse::<CodeRange>().map_err(|e| e.to_string()))
        .collect();
    let v = v?;
    if v.is_empty() || v.len() > crate::config::MAX_CODE_RANGES {
        return Err(format!(
            "give 1 to {} code ranges separated by commas",
            crate::config::MAX_CODE_RANGES
        ));
    }
    Ok(v)
}

/// Display form of a code list.
pub fn show_codes(c: &[CodeRange]) -> String {
    c.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// SIP URI (`sip:` or `sips:`, no spaces); `allow_empty` for "default".
pub fn sip_uri(s: &str, allow_empty: bool) -> Parsed<String> {
    if s.is_empty() || s == "-" {
        if allow_empty {
            return Ok(String::new());
        }
        return Err("a SIP URI is required, e.g. sip:probe@appliance.invalid".into());
    }
    let ok = (s.starts_with("sip:") || s.starts_with("sips:"))
        && s.len() > 4
        && s.len() <= URI_LEN
        && s.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "'{s}' is not a SIP URI: it must start with sip: and have no spaces (max {URI_LEN} characters)"
        ))
    }
}

/// Printable header value (User-Agent).
pub fn header_value(s: &str) -> Parsed<String> {
    if !s.is_empty() && s.len() <= URI_LEN && s.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        Ok(s.to_owned())
    } else {
        Err(format!("use 1-{URI_LEN} printable ASCII characters"))
    }
}

/// Failure action.
pub fn failure_action(s: &str) -> Parsed<FailureAction> {
    match s.to_ascii_lowercase().as_str() {
        "weight0" | "weight-0" | "0" => Ok(FailureAction::Weight0),
        "remove" => Ok(FailureAction::Remove),
        _ => Err(format!(
            "'{s}': use weight0 (keep calls, no new ones) or remove"
        )),
    }
}

/// Display form of a failure action.
pub fn show_failure(f: FailureAction) -> String {
    match f {
        FailureAction::Weight0 => "weight0".into(),
        FailureAction::Remove => "remove".into(),
    }
}

/// Host for ping: IPv4 address or DNS name.
pub fn host(s: &str) -> Parsed<String> {
    if s.parse::<Ipv4Addr>().is_ok() {
        return Ok(s.to_owned());
    }
    let ok = !s.is_empty()
        && s.len() <= 253
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "'{s}' is not a host: enter an IPv4 address or a host name"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{bounded, validate, Config, IFNAME_LEN};

    /// One rule: the console accepts exactly the interface names and MTUs that
    /// validation accepts (the console used to refuse e.g. `veth+1` and `wan@0`).
    #[test]
    fn interface_and_mtu_rules_match_validation() {
        let names = [
            "eth0",
            "veth+1",
            "wan@0",
            "br-lan.100",
            "a",
            "fifteen_chars_x",
            "",
            ".",
            "..",
            "eth/1",
            "eth:1",
            "eth 1",
            "sixteen_chars_xx",
        ];
        for name in names {
            if name.len() > IFNAME_LEN {
                assert!(ifname(name).is_err(), "{name}");
                continue;
            }
            let mut c = Config::builtin_default();
            c.wan.name = bounded(name);
            let refused = validate(&c).errors.iter().any(|p| p.path == "wan.name");
            assert_eq!(ifname(name).is_ok(), !refused, "{name:?}");
        }
        assert!(ifname("veth+1").is_ok());
        for v in [0u16, 575, 576, 1500, 9000, 9001] {
            let mut c = Config::builtin_default();
            c.wan.mtu = v;
            let refused = validate(&c).errors.iter().any(|p| p.path == "wan.mtu");
            assert_eq!(mtu(&v.to_string()).is_ok(), !refused, "MTU {v}");
        }
    }

    #[test]
    fn good_and_bad_values() {
        assert!(ifname("eth0").is_ok());
        assert!(ifname("eth0 ; rm")
            .unwrap_err()
            .contains("not an interface name"));
        assert!(ifname("averyveryverylongname").is_err());
        assert_eq!(net("203.0.113.2/24").unwrap().prefix, 24);
        assert!(net("203.0.113.0/24")
            .unwrap_err()
            .contains("network or broadcast"));
        assert!(net("203.0.113.255/24")
            .unwrap_err()
            .contains("network or broadcast"));
        assert!(net("203.0.113.2").unwrap_err().contains("expected e.g."));
        assert!(net("203.0.113.2/0").is_err());
        assert!(net("224.0.0.1/24").unwrap_err().contains("not a unicast"));
        let sub = net("203.0.113.2/24").unwrap();
        assert_eq!(gateway("none", sub).unwrap(), None);
        assert!(gateway("198.51.100.1", sub)
            .unwrap_err()
            .contains("not on this interface"));
        assert!(gateway("203.0.113.2", sub)
            .unwrap_err()
            .contains("own address"));
        assert!(mtu("100").unwrap_err().contains("576 to 9000"));
        assert_eq!(mtu("1500").unwrap(), 1500);
        assert!(port("0").is_err());
        assert!(port("70000").is_err());
        assert!(port("x").unwrap_err().contains("whole number"));
        assert!(hostname("-bad").is_err());
        assert!(hostname("sip-lb2").is_ok());
        assert!(yes_no("maybe").is_err());
        assert!(scheduler("WRR").is_ok());
        assert!(scheduler("fifo").unwrap_err().contains("rr, wrr"));
        assert!(forwarding("tun").is_err());
        assert!(netmask("255.0.255.0").unwrap_err().contains("contiguous"));
        assert!(netmask("0.0.0.0").is_ok());
        assert_eq!(show_codes(&codes("2xx, 404").unwrap()), "2xx,404");
        assert!(codes("2xx,abc").is_err());
        assert!(sip_uri("http://x", false).is_err());
        assert_eq!(sip_uri("", true).unwrap(), "");
        assert!(sip_uri("", false).is_err());
        assert!(header_value("bad\u{1b}").is_err());
        assert!(failure_action("remove").is_ok());
        assert!(failure_action("explode").is_err());
        assert!(host("xms-1.lab").is_ok());
        assert!(host("a b").is_err());
    }
}
