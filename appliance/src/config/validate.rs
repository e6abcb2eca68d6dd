//! Semantic validation of a [`Config`]: returns every problem, never panics.
//!
//! Errors make a config unusable (it is refused by import, save and the daemon);
//! warnings are accepted but shown to the operator. Every message names the
//! object it is about and says what to change.
//!
//! Decisions documented here:
//! - Probe timeout may exceed the interval: the prober keeps several OPTIONS in
//!   flight and matches replies by Call-ID, so overlap is harmless. We only
//!   require `timeout <= fall * interval` (a warning otherwise, since detection
//!   time is then dominated by the timeout).
//! - Persistence timeout below 90 s (the smallest SIP session interval, Min-SE,
//!   RFC 4028) is a warning: in-dialog requests of long calls may lose their
//!   persistence entry unless clients refresh sessions more often than that.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::model::*;

/// One problem found by [`validate`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// Where in the config, e.g. `services[0].servers[2].weight` (for UIs to highlight).
    pub path: String,
    /// What is wrong and what to do, naming the object.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The result of [`validate`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// Problems that make the config unusable.
    pub errors: Vec<Problem>,
    /// Accepted but probably unintended settings.
    pub warnings: Vec<Problem>,
}

impl Report {
    /// True when there are no errors (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// All problems as printable lines, errors first (`error: ...`, `warning: ...`).
    pub fn lines(&self) -> Vec<String> {
        self.errors
            .iter()
            .map(|p| format!("error: {p}"))
            .chain(self.warnings.iter().map(|p| format!("warning: {p}")))
            .collect()
    }

    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Lowest accepted MTU (RFC 791 hosts must accept 576-byte datagrams; SIP over UDP needs it).
pub const MTU_MIN: u16 = 576;
/// Highest accepted MTU (jumbo frames).
pub const MTU_MAX: u16 = 9000;
/// Smallest SIP session interval (Min-SE, RFC 4028), seconds.
pub const MIN_SE_S: u32 = 90;
/// Accepted watchdog timeouts, seconds.
pub const WATCHDOG_RANGE_S: std::ops::RangeInclusive<u32> = 2..=300;
/// Accepted probe interval, milliseconds.
pub const PROBE_INTERVAL_RANGE_MS: std::ops::RangeInclusive<u32> = 20..=3_600_000;
/// Accepted probe timeout, milliseconds.
pub const PROBE_TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u32> = 10..=60_000;
/// Accepted probe rise and fall counts.
pub const PROBE_COUNT_RANGE: std::ops::RangeInclusive<u8> = 1..=u8::MAX;
/// Usable policy-routing table ids (253..=255 are the kernel's default/main/local).
pub const ROUTE_TABLE_RANGE: std::ops::RangeInclusive<u32> = 1..=252;
/// Usable policy rule priorities (0, 32766, 32767 are the kernel's own rules).
pub const RULE_PRIORITY_RANGE: std::ops::RangeInclusive<u32> = 1..=32765;
/// Highest GPIO number accepted for an LED.
pub const GPIO_MAX: u32 = 4095;

/// The kernel's rule for an interface name (dev_valid_name): 1-15 bytes, not `.`
/// or `..`, no `/`, `:` or whitespace. `Err` says what to enter instead.
pub fn check_ifname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= IFNAME_LEN
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{}' is not an interface name; use a kernel interface name such as eth0 (1-{IFNAME_LEN} characters, no '/', ':' or spaces)",
            name.escape_debug()
        ))
    }
}

/// Check a configuration and return every problem found.
pub fn validate(c: &Config) -> Report {
    let mut r = Report::default();
    check_hostname(&mut r, c.hostname.as_str());
    let wan_ok = check_interface(&mut r, "wan", "WAN", &c.wan);
    let lan_ok = check_interface(&mut r, "lan", "LAN", &c.lan);
    if c.wan.name == c.lan.name && !c.wan.name.is_empty() {
        r.error(
            "lan.name",
            format!(
                "WAN and LAN both use interface {}; give them different interfaces",
                c.wan.name
            ),
        );
    }
    if wan_ok && lan_ok && c.wan.address.overlaps(&c.lan.address) {
        r.error(
            "lan.address",
            format!(
                "WAN {} and LAN {} are on overlapping subnets; the balancer needs the clients and the servers on different subnets",
                c.wan.address, c.lan.address
            ),
        );
    }
    if c.wan.gateway.is_some() && c.lan.gateway.is_some() {
        r.error(
            "lan.gateway",
            "both WAN and LAN have a gateway, but the appliance installs a single default route; set the LAN gateway to none (the default route normally goes through WAN), or set the WAN gateway to none if the LAN router is the way out",
        );
    }
    check_policy_routing(&mut r, c, wan_ok, lan_ok);
    check_services(&mut r, c, wan_ok, lan_ok);
    check_leds(&mut r, c);
    check_console(&mut r, &c.console);
    if c.watchdog.enabled && !WATCHDOG_RANGE_S.contains(&c.watchdog.timeout_s) {
        r.error(
            "watchdog.timeout_s",
            format!(
                "watchdog timeout {} s is out of range; use {}..={} seconds",
                c.watchdog.timeout_s,
                WATCHDOG_RANGE_S.start(),
                WATCHDOG_RANGE_S.end()
            ),
        );
    }
    if c.ha.enabled {
        r.error(
            "ha.enabled",
            "high availability (VRRP, connection sync) is not supported in this firmware; set ha.enabled = false",
        );
    }
    r
}

fn check_hostname(r: &mut Report, h: &str) {
    if h.is_empty() {
        r.error("hostname", "hostname is empty; set e.g. \"sip-lb\"");
        return;
    }
    for label in h.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            r.error(
                "hostname",
                format!(
                    "hostname '{}' is invalid: use letters, digits and '-' (not at the start or end of a label), labels separated by '.'",
                    h.escape_debug()
                ),
            );
            return;
        }
    }
}

/// Checks one interface; returns true when its address/prefix is usable for subnet checks.
fn check_interface(r: &mut Report, key: &str, label: &str, i: &Interface) -> bool {
    if let Err(e) = check_ifname(i.name.as_str()) {
        r.error(format!("{key}.name"), format!("{label}: {e}"));
    }
    let mut ok = true;
    let a = i.address;
    if a.prefix > 32 {
        r.error(
            format!("{key}.address"),
            format!("{label} prefix length /{} is invalid; use 1..=32", a.prefix),
        );
        ok = false;
    } else if a.prefix == 0 {
        r.error(
            format!("{key}.address"),
            format!("{label} address {a} has prefix /0 which covers every address; use the real subnet, e.g. /24"),
        );
        ok = false;
    }
    if !is_host_addr(a.addr) {
        r.error(
            format!("{key}.address"),
            format!("{label} address {} is not a usable host address (unspecified, loopback, multicast or broadcast)", a.addr),
        );
        ok = false;
    } else if ok && a.is_network_or_broadcast(a.addr) {
        r.error(
            format!("{key}.address"),
            format!("{label} address {a} is the network or broadcast address of its subnet; pick a host address"),
        );
    }
    if !(MTU_MIN..=MTU_MAX).contains(&i.mtu) {
        r.error(
            format!("{key}.mtu"),
            format!(
                "{label} MTU {} is out of range; use {MTU_MIN}..={MTU_MAX} (normally 1500)",
                i.mtu
            ),
        );
    }
    if let Some(gw) = i.gateway {
        if gw == a.addr {
            r.error(
                format!("{key}.gateway"),
                format!(
                    "{label} gateway {gw} is the interface's own address; use the router's address"
                ),
            );
        } else if ok && !a.contains(gw) {
            r.error(
                format!("{key}.gateway"),
                format!(
                    "{label} gateway {gw} is not on the {label} subnet {}; a gateway must be directly reachable",
                    a.network()
                ),
            );
        } else if !is_host_addr(gw) {
            r.error(
                format!("{key}.gateway"),
                format!("{label} gateway {gw} is not a usable host address"),
            );
        }
    }
    ok
}

fn is_host_addr(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast())
}

fn check_policy_routing(r: &mut Report, c: &Config, wan_ok: bool, lan_ok: bool) {
    let p = &c.policy_routing;
    if !p.enabled {
        return;
    }
    if !ROUTE_TABLE_RANGE.contains(&p.table) {
        r.error(
            "policy_routing.table",
            format!(
                "policy routing table {} is reserved or invalid; use {}..={} (253-255 are the kernel's default/main/local tables)",
                p.table,
                ROUTE_TABLE_RANGE.start(),
                ROUTE_TABLE_RANGE.end()
            ),
        );
    }
    if !RULE_PRIORITY_RANGE.contains(&p.priority) {
        r.error(
            "policy_routing.priority",
            format!(
                "policy routing rule priority {} is reserved or invalid; use {}..={}",
                p.priority,
                RULE_PRIORITY_RANGE.start(),
                RULE_PRIORITY_RANGE.end()
            ),
        );
    }
    if p.fwmark == 0 && p.sip_port == 0 {
        r.error(
            "policy_routing.sip_port",
            "policy routing matches neither a firewall mark nor a source port; set sip_port (normally 5060) or fwmark",
        );
    }
    if let Some(gw) = p.gateway {
        let reachable =
            (wan_ok && c.wan.address.contains(gw)) || (lan_ok && c.lan.address.contains(gw));
        if !reachable {
            r.error(
                "policy_routing.gateway",
                format!("policy routing gateway {gw} is on neither the WAN nor the LAN subnet; it must be directly reachable"),
            );
        }
    }
}

fn is_netmask(m: Ipv4Addr) -> bool {
    let v = u32::from(m);
    v.leading_ones() + v.trailing_zeros() == 32
}

fn check_services(r: &mut Report, c: &Config, wan_ok: bool, lan_ok: bool) {
    if c.services.is_empty() {
        r.error(
            "services",
            "no virtual service is configured; add at least one (VIP, port and real servers)",
        );
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut vips: HashMap<(Ipv4Addr, u16), &str> = HashMap::new();
    for (si, s) in c.services.iter().enumerate() {
        let p = format!("services[{si}]");
        let name = s.name.as_str();
        let sv = format!(
            "service {}",
            if name.is_empty() { "(unnamed)" } else { name }
        );
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            r.error(
                format!("{p}.name"),
                format!(
                    "service name '{}' is invalid; use 1-{NAME_LEN} letters, digits, '-', '_' or '.'",
                    name.escape_debug()
                ),
            );
        } else if let Some(first) = names.insert(name, si) {
            r.error(
                format!("{p}.name"),
                format!("service name {name} is used twice (services #{} and #{}); service names must be unique", first + 1, si + 1),
            );
        }
        if s.port == 0 {
            r.error(
                format!("{p}.port"),
                format!("{sv} has port 0; use the SIP port, normally 5060"),
            );
        }
        if let Some(other) = vips.insert((s.vip, s.port), name) {
            r.error(
                format!("{p}.vip"),
                format!(
                    "virtual address {}:{} is used by both service {other} and {sv}; each VIP:port may appear once",
                    s.vip, s.port
                ),
            );
        }
        if !is_host_addr(s.vip) {
            r.error(
                format!("{p}.vip"),
                format!("{sv}: VIP {} is not a usable unicast address", s.vip),
            );
        } else if wan_ok && !c.wan.address.contains(s.vip) {
            r.error(
                format!("{p}.vip"),
                format!(
                    "{sv}: VIP {} is not on the WAN subnet {}; clients reach the VIP through WAN, use an address in that subnet",
                    s.vip,
                    c.wan.address.network()
                ),
            );
        } else if lan_ok && c.lan.address.addr == s.vip {
            r.error(
                format!("{p}.vip"),
                format!("{sv}: VIP {} is the LAN interface address", s.vip),
            );
        }
        check_persistence(r, &p, &sv, s);
        check_probe(r, &p, &sv, s);
        check_servers(r, c, &p, &sv, s, lan_ok, wan_ok);
    }
}

fn check_persistence(r: &mut Report, p: &str, sv: &str, s: &VirtualService) {
    if s.sip_persistence && s.persistence_timeout == 0 {
        r.error(
            format!("{p}.sip_persistence"),
            format!(
                "{sv}: the SIP persistence engine needs persistence (keepalived would silently drop it); set persistence_timeout (e.g. 120) or turn sip_persistence off"
            ),
        );
    }
    if !is_netmask(s.persistence_granularity) {
        r.error(
            format!("{p}.persistence_granularity"),
            format!(
                "{sv}: persistence granularity {} is not a netmask; use 0.0.0.0 (per Call-ID) or e.g. 255.255.255.0",
                s.persistence_granularity
            ),
        );
    }
    if s.sip_persistence && s.persistence_timeout > 0 {
        if !s.one_packet {
            r.warn(
                format!("{p}.one_packet"),
                format!(
                    "{sv}: one-packet scheduling is off; with clients sending all calls from one UDP socket (an SBC or proxy) every call lands on one server and calls stay stuck to it for the UDP timeout after it fails (seen in the SIP lab: calls kept failing until the UDP timeout); turn one_packet on"
                ),
            );
        }
        if s.persistence_granularity != Ipv4Addr::UNSPECIFIED {
            r.warn(
                format!("{p}.persistence_granularity"),
                format!(
                    "{sv}: persistence granularity {} groups calls by client address, so calls from one SBC or proxy all go to one server and stay stuck after it fails (seen in the SIP lab); use 0.0.0.0 to balance per Call-ID",
                    s.persistence_granularity
                ),
            );
        }
    }
    if s.persistence_timeout > 0 {
        let pr = &s.probe;
        let detect_ms = u64::from(pr.fall) * u64::from(pr.interval_ms);
        if pr.enabled && u64::from(s.persistence_timeout) * 1000 < 2 * detect_ms {
            r.warn(
                format!("{p}.persistence_timeout"),
                format!(
                    "{sv}: persistence timeout {} s is shorter than twice the failure detection time ({} x {} ms); persistence entries expire before a failed server is detected, raise it",
                    s.persistence_timeout, pr.fall, pr.interval_ms
                ),
            );
        }
        if s.persistence_timeout < MIN_SE_S {
            r.warn(
                format!("{p}.persistence_timeout"),
                format!(
                    "{sv}: persistence timeout {} s is below {MIN_SE_S} s, the smallest SIP session interval (Min-SE, RFC 4028); unless every client refreshes its session more often than every {} s, in-dialog requests of long calls may reach another server; use at least your clients' session-timer refresh interval",
                    s.persistence_timeout, s.persistence_timeout
                ),
            );
        }
    }
}

fn uri_ok(u: &str) -> bool {
    u.len() > 4 && u.starts_with("sip:") && u.bytes().all(|b| b.is_ascii_graphic())
}

fn check_probe(r: &mut Report, p: &str, sv: &str, s: &VirtualService) {
    let pr = &s.probe;
    let pp = format!("{p}.probe");
    if !PROBE_INTERVAL_RANGE_MS.contains(&pr.interval_ms) {
        r.error(
            format!("{pp}.interval_ms"),
            format!(
                "{sv}: probe interval {} ms is out of range; use {}..={} ms (default {DEFAULT_PROBE_INTERVAL_MS})",
                pr.interval_ms,
                PROBE_INTERVAL_RANGE_MS.start(),
                PROBE_INTERVAL_RANGE_MS.end()
            ),
        );
    }
    if !PROBE_TIMEOUT_RANGE_MS.contains(&pr.timeout_ms) {
        r.error(
            format!("{pp}.timeout_ms"),
            format!(
                "{sv}: probe timeout {} ms is out of range; use {}..={} ms (default {DEFAULT_PROBE_TIMEOUT_MS})",
                pr.timeout_ms,
                PROBE_TIMEOUT_RANGE_MS.start(),
                PROBE_TIMEOUT_RANGE_MS.end()
            ),
        );
    }
    if !PROBE_COUNT_RANGE.contains(&pr.rise) {
        r.error(
            format!("{pp}.rise"),
            format!("{sv}: probe rise is 0; use at least 1 (successes before a server is up)"),
        );
    }
    if !PROBE_COUNT_RANGE.contains(&pr.fall) {
        r.error(
            format!("{pp}.fall"),
            format!("{sv}: probe fall is 0; use at least 1 (failures before a server is down)"),
        );
    }
    if pr.fall > 0
        && u64::from(pr.timeout_ms) > u64::from(pr.fall) * u64::from(pr.interval_ms)
        && pr.interval_ms > 0
    {
        r.warn(
            format!("{pp}.timeout_ms"),
            format!(
                "{sv}: probe timeout {} ms is longer than fall x interval ({} x {} ms); failure detection is slowed by the timeout",
                pr.timeout_ms, pr.fall, pr.interval_ms
            ),
        );
    }
    if pr.accept.is_empty() {
        r.error(
            format!("{pp}.accept"),
            format!(
                "{sv}: probe accepts no reply code, every server would be down; use e.g. [\"2xx\"]"
            ),
        );
    }
    for (i, cr) in pr.accept.iter().enumerate() {
        if cr.lo > cr.hi || cr.lo < 100 || cr.hi > 699 {
            r.error(
                format!("{pp}.accept[{i}]"),
                format!(
                    "{sv}: probe reply code range {}-{} is invalid; use codes 100..=699, low <= high",
                    cr.lo, cr.hi
                ),
            );
        }
    }
    if !uri_ok(&pr.from_uri) {
        r.error(
            format!("{pp}.from_uri"),
            format!(
                "{sv}: probe From URI '{}' is invalid; it must start with sip: and contain no spaces, e.g. sip:probe@lb.example",
                pr.from_uri.escape_debug()
            ),
        );
    }
    if !pr.to_uri.is_empty() && !uri_ok(&pr.to_uri) {
        r.error(
            format!("{pp}.to_uri"),
            format!(
                "{sv}: probe To URI '{}' is invalid; leave it empty (sip:<server>:<port>) or use a sip: URI without spaces",
                pr.to_uri.escape_debug()
            ),
        );
    }
    if pr.user_agent.is_empty()
        || !pr.user_agent.bytes().all(|b| (0x20..0x7f).contains(&b))
        || pr.user_agent.starts_with(' ')
    {
        r.error(
            format!("{pp}.user_agent"),
            format!(
                "{sv}: probe User-Agent '{}' is invalid; use printable ASCII, not empty",
                pr.user_agent.escape_debug()
            ),
        );
    }
    // The prober's own request builder is the final judge of what it can send; report
    // anything it refuses that the checks above let through.
    let field_errors = r.errors.iter().filter(|e| e.path.starts_with(&pp)).count();
    if field_errors == 0 {
        if let Err(e) = crate::probe::packet::validate_settings(pr) {
            r.error(pp.clone(), format!("{sv}: probe settings rejected: {e}"));
        }
    }
}

fn check_servers(
    r: &mut Report,
    c: &Config,
    p: &str,
    sv: &str,
    s: &VirtualService,
    lan_ok: bool,
    wan_ok: bool,
) {
    if s.servers.is_empty() {
        r.warn(
            format!("{p}.servers"),
            format!(
                "{sv} has no real servers; calls to {}:{} will be dropped, add servers",
                s.vip, s.port
            ),
        );
    } else if s.servers.iter().all(|x| x.state == AdminState::Disabled) {
        r.warn(
            format!("{p}.servers"),
            format!(
                "{sv}: every real server is disabled; calls to {}:{} will be dropped",
                s.vip, s.port
            ),
        );
    }
    let mut seen: HashMap<(Ipv4Addr, u16), usize> = HashMap::new();
    for (i, x) in s.servers.iter().enumerate() {
        let pp = format!("{p}.servers[{i}]");
        let sa = SocketAddrV4::new(x.address, x.port);
        if seen.insert((x.address, x.port), i).is_some() {
            r.error(
                pp.clone(),
                format!("real server {sa} is listed twice in {sv}; remove the duplicate"),
            );
        }
        if x.port == 0 {
            r.error(
                format!("{pp}.port"),
                format!("real server {sa} in {sv} has port 0; use its SIP port, normally 5060"),
            );
        }
        if !is_host_addr(x.address) {
            r.error(
                format!("{pp}.address"),
                format!(
                    "real server {sa} in {sv}: {} is not a usable unicast address",
                    x.address
                ),
            );
        } else {
            match s.forwarding {
                Forwarding::Nat => {
                    if lan_ok && !c.lan.address.contains(x.address) {
                        r.error(
                            format!("{pp}.address"),
                            format!(
                                "real server {sa} in {sv} is not on the LAN subnet {}; in NAT mode the servers must be on the LAN subnet with the appliance ({}) as their gateway",
                                c.lan.address.network(),
                                c.lan.address.addr
                            ),
                        );
                    }
                }
                Forwarding::Dr => {
                    let local = (lan_ok && c.lan.address.contains(x.address))
                        || (wan_ok && c.wan.address.contains(x.address));
                    if !local {
                        r.warn(
                            format!("{pp}.address"),
                            format!(
                                "real server {sa} in {sv} is on neither the LAN nor the WAN subnet; direct routing needs the server on a directly attached network"
                            ),
                        );
                    }
                    if x.port != s.port && x.port != 0 {
                        r.error(
                            format!("{pp}.port"),
                            format!(
                                "real server {sa} in {sv}: direct routing cannot change the port; use port {} or NAT forwarding",
                                s.port
                            ),
                        );
                    }
                }
            }
            if lan_ok && x.address == c.lan.address.addr {
                r.error(
                    format!("{pp}.address"),
                    format!("real server {sa} in {sv} is the appliance's own LAN address"),
                );
            }
        }
        match x.state {
            AdminState::Enabled => {
                if !(1..=65535).contains(&x.weight) {
                    r.error(
                        format!("{pp}.weight"),
                        format!(
                            "real server {sa} in {sv} has weight {}; an enabled server needs 1..=65535 (use state = \"draining\" to stop new calls)",
                            x.weight
                        ),
                    );
                }
            }
            AdminState::Draining | AdminState::Disabled => {
                if x.weight > 65535 {
                    r.error(
                        format!("{pp}.weight"),
                        format!(
                            "real server {sa} in {sv} has weight {}; use 0..=65535",
                            x.weight
                        ),
                    );
                }
            }
        }
    }
}

fn check_leds(r: &mut Report, c: &Config) {
    let mut roles: Vec<LedRole> = Vec::new();
    for (i, l) in c.leds.iter().enumerate() {
        let p = format!("leds[{i}]");
        let role = format!("{:?}", l.role).to_lowercase();
        if roles.contains(&l.role) {
            r.error(
                format!("{p}.role"),
                format!("LED role {role} is bound twice; bind each role to one LED"),
            );
        }
        roles.push(l.role);
        match l.backend {
            LedBackend::Class => {
                let n = l.name.as_str();
                let ok = !n.is_empty()
                    && n != "."
                    && n != ".."
                    && n.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
                if !ok {
                    r.error(
                        format!("{p}.name"),
                        format!(
                            "LED for role {role}: name '{}' is not an LED class device name (as in /sys/class/leds/<name>, no '/')",
                            n.escape_debug()
                        ),
                    );
                }
            }
            LedBackend::Gpio => {
                if l.gpio > GPIO_MAX {
                    r.error(
                        format!("{p}.gpio"),
                        format!(
                            "LED for role {role}: GPIO {} is out of range 0..={GPIO_MAX}",
                            l.gpio
                        ),
                    );
                }
            }
        }
    }
}

fn check_console(r: &mut Report, cs: &ConsoleSettings) {
    let h = cs.password_hash.as_str();
    if !h.is_empty() && !h.starts_with("$argon2") {
        r.error(
            "console.password_hash",
            "console password hash is not an argon2 PHC string ($argon2id$...); set the password from the console instead of editing the hash",
        );
    }
    if cs.idle_lock_s != 0 && cs.idle_lock_s < 30 {
        r.warn(
            "console.idle_lock_s",
            format!(
                "console idle lock of {} s is very short; use 0 (never) or at least 30 s",
                cs.idle_lock_s
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Config {
        Config::builtin_default()
    }

    /// Runs validate and asserts exactly one error containing every `needle`.
    fn one_error(c: &Config, needles: &[&str]) {
        let r = validate(c);
        let hits: Vec<_> = r
            .errors
            .iter()
            .filter(|p| needles.iter().all(|n| p.message.contains(n)))
            .collect();
        assert_eq!(
            hits.len(),
            1,
            "wanted one error with {needles:?}, got {:#?}",
            r
        );
    }

    fn one_warning(c: &Config, needles: &[&str]) {
        let r = validate(c);
        assert!(r.errors.is_empty(), "{:#?}", r.errors);
        let hits: Vec<_> = r
            .warnings
            .iter()
            .filter(|p| needles.iter().all(|n| p.message.contains(n)))
            .collect();
        assert_eq!(
            hits.len(),
            1,
            "wanted one warning with {needles:?}, got {:#?}",
            r
        );
    }

    fn server(a: [u8; 4], port: u16) -> RealServer {
        RealServer {
            address: Ipv4Addr::from(a),
            port,
            weight: 1,
            state: AdminState::Enabled,
        }
    }

    #[test]
    fn builtin_default_is_clean() {
        let r = validate(&base());
        assert!(r.errors.is_empty() && r.warnings.is_empty(), "{r:#?}");
    }

    #[test]
    fn hostname() {
        let mut c = base();
        c.hostname = bounded("bad_host");
        one_error(&c, &["hostname 'bad_host' is invalid"]);
        c.hostname = bounded("-x");
        one_error(&c, &["hostname '-x'"]);
        c.hostname = bounded("");
        one_error(&c, &["hostname is empty"]);
        c.hostname = bounded("lb-1.example");
        assert!(validate(&c).is_ok());
    }

    #[test]
    fn interface_names() {
        let mut c = base();
        c.wan.name = bounded("");
        one_error(&c, &["WAN: '' is not an interface name"]);
        let mut c = base();
        c.lan.name = bounded("eth/1");
        one_error(&c, &["LAN: 'eth/1' is not an interface name"]);
        let mut c = base();
        c.lan.name = bounded("eth0");
        one_error(&c, &["WAN and LAN both use interface eth0"]);
    }

    #[test]
    fn prefix_and_host_address() {
        let mut c = base();
        c.lan.address.prefix = 40;
        one_error(&c, &["LAN prefix length /40 is invalid"]);
        let mut c = base();
        c.wan.address.prefix = 0;
        let r = validate(&c);
        assert!(
            r.errors.iter().any(|p| p.message.contains("prefix /0")),
            "{r:#?}"
        );
        let mut c = base();
        c.lan.address.addr = Ipv4Addr::new(198, 51, 100, 255);
        one_error(
            &c,
            &["network or broadcast", "LAN address 198.51.100.255/24"],
        );
        let mut c = base();
        c.lan.address.addr = Ipv4Addr::new(127, 0, 0, 1);
        let r = validate(&c);
        assert!(r
            .errors
            .iter()
            .any(|p| p.message.contains("LAN address 127.0.0.1 is not a usable")));
    }

    #[test]
    fn mtu_range() {
        let mut c = base();
        c.wan.mtu = 100;
        one_error(&c, &["WAN MTU 100 is out of range"]);
        c.wan.mtu = 9001;
        one_error(&c, &["WAN MTU 9001"]);
    }

    #[test]
    fn subnets_and_gateway() {
        let mut c = base();
        c.lan.address = "203.0.113.3/24".parse().unwrap();
        let r = validate(&c);
        assert!(
            r.errors
                .iter()
                .any(|p| p.message.contains("overlapping subnets")),
            "{r:#?}"
        );
        let mut c = base();
        c.wan.gateway = Some(Ipv4Addr::new(192, 0, 2, 1));
        one_error(
            &c,
            &["WAN gateway 192.0.2.1 is not on the WAN subnet 203.0.113.0/24"],
        );
        let mut c = base();
        c.wan.gateway = Some(c.wan.address.addr);
        one_error(
            &c,
            &["WAN gateway 203.0.113.2 is the interface's own address"],
        );
        let mut c = base();
        c.lan.gateway = Some(Ipv4Addr::new(198, 51, 100, 254));
        one_error(
            &c,
            &[
                "both WAN and LAN have a gateway",
                "set the LAN gateway to none",
            ],
        );
    }

    #[test]
    fn vip_on_wan_subnet() {
        let mut c = base();
        c.services[0].vip = Ipv4Addr::new(192, 0, 2, 10);
        one_error(
            &c,
            &["service sip: VIP 192.0.2.10 is not on the WAN subnet 203.0.113.0/24"],
        );
        c.services[0].vip = Ipv4Addr::new(224, 0, 0, 1);
        one_error(&c, &["VIP 224.0.0.1 is not a usable unicast"]);
    }

    #[test]
    fn nat_servers_on_lan_subnet() {
        let mut c = base();
        let _ = c.services[0].servers.push(server([192, 168, 49, 7], 5060));
        one_error(
            &c,
            &["real server 192.168.49.7:5060 in service sip is not on the LAN subnet 198.51.100.0/24"],
        );
        c.services[0].forwarding = Forwarding::Dr;
        one_warning(&c, &["192.168.49.7:5060", "direct routing"]);
        let mut c = base();
        c.services[0].forwarding = Forwarding::Dr;
        c.services[0].servers[0].port = 5080;
        one_error(&c, &["direct routing cannot change the port"]);
        let mut c = base();
        c.services[0].servers[0].address = c.lan.address.addr;
        one_error(&c, &["appliance's own LAN address"]);
    }

    #[test]
    fn duplicates() {
        let mut c = base();
        let s = c.services[0].clone();
        let _ = c.services.push(s);
        let r = validate(&c);
        assert!(
            r.errors
                .iter()
                .any(|p| p.message.contains("service name sip is used twice")),
            "{r:#?}"
        );
        assert!(r.errors.iter().any(|p| p.message.contains(
            "virtual address 203.0.113.10:5060 is used by both service sip and service sip"
        )));
        let mut c = base();
        let _ = c.services[0].servers.push(server([198, 51, 100, 7], 5060));
        let _ = c.services[0].servers.push(server([198, 51, 100, 7], 5060));
        one_error(
            &c,
            &["real server 198.51.100.7:5060 is listed twice in service sip"],
        );
    }

    #[test]
    fn port_zero() {
        let mut c = base();
        c.services[0].port = 0;
        let r = validate(&c);
        assert!(
            r.errors
                .iter()
                .any(|p| p.message.contains("service sip has port 0")),
            "{r:#?}"
        );
        let mut c = base();
        c.services[0].servers[1].port = 0;
        one_error(
            &c,
            &["real server 198.51.100.12:0 in service sip has port 0"],
        );
    }

    #[test]
    fn weights() {
        let mut c = base();
        c.services[0].servers[0].weight = 0;
        one_error(
            &c,
            &["198.51.100.11:5060 in service sip has weight 0", "draining"],
        );
        c.services[0].servers[0].weight = 70000;
        one_error(&c, &["weight 70000"]);
        c.services[0].servers[0].state = AdminState::Draining;
        one_error(&c, &["weight 70000; use 0..=65535"]);
        c.services[0].servers[0].weight = 0;
        assert!(validate(&c).is_ok());
    }

    #[test]
    fn at_least_one_service_and_server() {
        let mut c = base();
        c.services.clear();
        one_error(&c, &["no virtual service is configured"]);
        let mut c = base();
        c.services[0].servers.clear();
        one_warning(&c, &["service sip has no real servers"]);
        let mut c = base();
        for s in c.services[0].servers.iter_mut() {
            s.state = AdminState::Disabled;
        }
        one_warning(&c, &["every real server is disabled"]);
    }

    #[test]
    fn persistence_engine_without_persistence() {
        let mut c = base();
        c.services[0].persistence_timeout = 0;
        one_error(
            &c,
            &["service sip: the SIP persistence engine needs persistence"],
        );
        c.services[0].sip_persistence = false;
        assert!(validate(&c).is_ok());
    }

    #[test]
    fn one_packet_and_granularity_warnings() {
        let mut c = base();
        c.services[0].one_packet = false;
        one_warning(&c, &["one-packet scheduling is off", "stuck"]);
        let mut c = base();
        c.services[0].persistence_granularity = Ipv4Addr::new(255, 255, 255, 255);
        one_warning(&c, &["granularity 255.255.255.255", "use 0.0.0.0"]);
        c.services[0].persistence_granularity = Ipv4Addr::new(255, 0, 255, 0);
        one_error(&c, &["granularity 255.0.255.0 is not a netmask"]);
    }

    #[test]
    fn persistence_timeout_warnings() {
        let mut c = base();
        c.services[0].persistence_timeout = 60;
        one_warning(&c, &["persistence timeout 60 s is below 90 s", "Min-SE"]);
        c.services[0].persistence_timeout = 100;
        c.services[0].probe.interval_ms = 30_000;
        c.services[0].probe.fall = 3;
        one_warning(
            &c,
            &["shorter than twice the failure detection time (3 x 30000 ms)"],
        );
    }

    #[test]
    fn probe_settings() {
        let mut c = base();
        c.services[0].probe.interval_ms = 0;
        let r = validate(&c);
        assert!(r
            .errors
            .iter()
            .any(|p| p.message.contains("probe interval 0 ms is out of range")));
        let mut c = base();
        c.services[0].probe.timeout_ms = 0;
        one_error(&c, &["probe timeout 0 ms is out of range"]);
        let mut c = base();
        c.services[0].probe.rise = 0;
        one_error(&c, &["probe rise is 0"]);
        let mut c = base();
        c.services[0].probe.fall = 0;
        one_error(&c, &["probe fall is 0"]);
        let mut c = base();
        c.services[0].probe.accept.clear();
        one_error(&c, &["probe accepts no reply code"]);
        let mut c = base();
        c.services[0].probe.accept[0] = CodeRange { lo: 700, hi: 100 };
        one_error(&c, &["reply code range 700-100 is invalid"]);
        let mut c = base();
        c.services[0].probe.from_uri = bounded("probe@x");
        one_error(&c, &["probe From URI 'probe@x' is invalid"]);
        let mut c = base();
        c.services[0].probe.to_uri = bounded("sip:a b");
        one_error(&c, &["probe To URI 'sip:a b'"]);
        let mut c = base();
        c.services[0].probe.user_agent = bounded("ua\u{7}");
        one_error(&c, &["probe User-Agent 'ua\\u{7}' is invalid"]);
        let mut c = base();
        c.services[0].probe.timeout_ms = 5000;
        one_warning(
            &c,
            &["probe timeout 5000 ms is longer than fall x interval (3 x 100 ms)"],
        );
    }

    #[test]
    fn policy_routing() {
        let mut c = base();
        c.policy_routing.enabled = true;
        assert!(validate(&c).is_ok(), "{:#?}", validate(&c));
        c.policy_routing.table = 254;
        one_error(&c, &["policy routing table 254 is reserved"]);
        c.policy_routing.table = 100;
        c.policy_routing.priority = 0;
        one_error(&c, &["rule priority 0"]);
        c.policy_routing.priority = 1000;
        c.policy_routing.sip_port = 0;
        one_error(&c, &["matches neither a firewall mark nor a source port"]);
        c.policy_routing.sip_port = 5060;
        c.policy_routing.gateway = Some(Ipv4Addr::new(192, 0, 2, 1));
        one_error(&c, &["policy routing gateway 192.0.2.1 is on neither"]);
    }

    #[test]
    fn ha_not_supported() {
        let mut c = base();
        c.ha.enabled = true;
        one_error(&c, &["high availability", "not supported in this firmware"]);
    }

    #[test]
    fn leds() {
        let mut c = base();
        let led = LedBinding {
            role: LedRole::Pool,
            backend: LedBackend::Class,
            name: bounded("../x"),
            gpio: 0,
            active_low: false,
        };
        let _ = c.leds.push(led.clone());
        one_error(&c, &["LED for role pool: name '../x'"]);
        c.leds[0].name = bounded("apu:green:led2");
        let _ = c.leds.push(LedBinding {
            backend: LedBackend::Gpio,
            gpio: 5000,
            ..led
        });
        let r = validate(&c);
        assert!(r
            .errors
            .iter()
            .any(|p| p.message.contains("LED role pool is bound twice")));
        assert!(r
            .errors
            .iter()
            .any(|p| p.message.contains("GPIO 5000 is out of range")));
        assert_eq!(r.errors.len(), 2, "{r:#?}");
    }

    #[test]
    fn watchdog_and_console() {
        let mut c = base();
        c.watchdog.timeout_s = 1;
        one_error(&c, &["watchdog timeout 1 s is out of range; use 2..=300"]);
        c.watchdog.enabled = false;
        assert!(validate(&c).is_ok());
        let mut c = base();
        c.console.password_hash = bounded("plaintext");
        one_error(&c, &["console password hash is not an argon2 PHC string"]);
        let mut c = base();
        c.console.idle_lock_s = 5;
        one_warning(&c, &["console idle lock of 5 s"]);
    }

    #[test]
    fn reports_every_problem_at_once() {
        let mut c = base();
        c.hostname = bounded("a b");
        c.wan.mtu = 1;
        c.services[0].port = 0;
        c.services[0].servers[0].weight = 0;
        c.ha.enabled = true;
        let r = validate(&c);
        assert!(r.errors.len() >= 5, "{r:#?}");
        assert_eq!(r.lines().len(), r.errors.len() + r.warnings.len());
    }

    #[test]
    fn never_panics_on_extreme_values() {
        let mut c = base();
        c.wan.address.prefix = 255;
        c.lan.address.prefix = 255;
        c.services[0].probe.interval_ms = u32::MAX;
        c.services[0].probe.timeout_ms = u32::MAX;
        c.services[0].probe.fall = u8::MAX;
        c.services[0].persistence_timeout = u32::MAX;
        c.services[0].servers[0].weight = u32::MAX;
        let r = validate(&c);
        assert!(!r.is_ok());
    }
}
