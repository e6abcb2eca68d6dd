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
//! - The `[ha]` rules bind only when `ha.enabled` is true: a disabled table is inert
//!   (firmware before HA exported `vrid = 0`, `priority = 0`, which must still import),
//!   and the settings can be prepared before the LAN address moves. [`ha_problems`]
//!   tells an editor what would be wrong once HA is switched on.

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
/// Accepted VRRP virtual router ids (0 is invalid in RFC 5798).
pub const HA_VRID_RANGE: std::ops::RangeInclusive<u8> = 1..=255;
/// Accepted VRRP priorities (0 = "resigning" and 255 = "address owner" are VRRP's own).
pub const HA_PRIORITY_RANGE: std::ops::RangeInclusive<u8> = 1..=254;
/// Accepted VRRPv3 advertisement intervals, centiseconds (a 12-bit field, RFC 5798 5.2.7).
pub const HA_ADVERT_CS_RANGE: std::ops::RangeInclusive<u16> = 1..=4095;
/// Advertisement intervals below this many centiseconds draw a warning.
pub const HA_ADVERT_CS_WARN_BELOW: u16 = 3;
/// Accepted preemption delays, seconds.
pub const HA_PREEMPT_DELAY_RANGE_S: std::ops::RangeInclusive<u32> = 0..=3600;
/// Accepted NTP poll intervals once synced, seconds (NTP's minpoll 4 to maxpoll 10).
pub const NTP_POLL_RANGE_S: std::ops::RangeInclusive<u32> = 16..=1024;

/// Largest argon2 memory cost (KiB) accepted in `console.password_hash`: a hash carries its own
/// cost, and every login attempt pays it (the built-in default is 19456 KiB).
pub const PASSWORD_HASH_MAX_M_KIB: u32 = 65_536;
/// Largest argon2 time cost (passes) accepted in `console.password_hash` (the default is 2).
pub const PASSWORD_HASH_MAX_T: u32 = 8;
/// Largest argon2 parallelism accepted in `console.password_hash` (the default is 1).
pub const PASSWORD_HASH_MAX_P: u32 = 4;

/// Why a non-empty console password hash is refused, or `None` when it is acceptable.
///
/// The one rule for stored hashes: validation reports it, and the login check refuses to
/// run a hash that breaks it (so an over-priced hash can never cost gigabytes per attempt).
pub fn password_hash_problem(h: &str) -> Option<String> {
    use argon2::password_hash::PasswordHash;
    const HOW: &str = "set the password from the console instead of editing the hash";
    if !h.starts_with("$argon2") {
        return Some(format!(
            "console password hash is not an argon2 PHC string ($argon2id$...); {HOW}"
        ));
    }
    let Ok(parsed) = PasswordHash::new(h) else {
        return Some(format!(
            "console password hash is not a well-formed argon2 PHC string; {HOW}"
        ));
    };
    let get = |k: &str| parsed.params.get_decimal(k);
    let (m, t, p) = (get("m"), get("t"), get("p"));
    let (Some(m), Some(t), Some(p)) = (m, t, p) else {
        return Some(format!(
            "console password hash lacks its m=, t= or p= cost parameters; {HOW}"
        ));
    };
    if m > PASSWORD_HASH_MAX_M_KIB || t > PASSWORD_HASH_MAX_T || p > PASSWORD_HASH_MAX_P {
        return Some(format!(
            "console password hash costs m={m} KiB, t={t}, p={p}; the appliance accepts at most m={PASSWORD_HASH_MAX_M_KIB}, t={PASSWORD_HASH_MAX_T}, p={PASSWORD_HASH_MAX_P} because every login attempt pays that cost; re-hash with lower parameters or {HOW}"
        ));
    }
    None
}

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
    if c.router.route_wan_to_lan {
        r.warn(
            "router.route_wan_to_lan",
            "traffic from WAN is routed to LAN: any host that routes the LAN prefix via the WAN address reaches every port of every server; turn it off unless this is a lab",
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
        check_ha(&mut r, c, wan_ok, lan_ok);
    }
    check_management(&mut r, c, wan_ok, lan_ok);
    check_syslog(&mut r, c);
    check_ntp(&mut r, c);
    r
}

/// The problems the HA settings of `c` have, or would have once `ha.enabled` is set
/// (the HA rules apply only to an enabled `[ha]`). For editors that check HA fields
/// while HA is still off; `validate` reports the same problems when it is on.
pub fn ha_problems(c: &Config) -> Report {
    let mut scratch = Report::default();
    let wan_ok = check_interface(&mut scratch, "wan", "WAN", &c.wan);
    let lan_ok = check_interface(&mut scratch, "lan", "LAN", &c.lan);
    let mut r = Report::default();
    check_ha(&mut r, c, wan_ok, lan_ok);
    r
}

/// Checks `[management]`: the listen address, the source allow list and the metrics port.
fn check_management(r: &mut Report, c: &Config, wan_ok: bool, lan_ok: bool) {
    let m = &c.management;
    match m.listen {
        ManagementListen::Lan => {}
        ManagementListen::Wan => r.warn(
            "management.listen",
            format!(
                "management services listen on WAN ({}), the SIP clients' side; prefer listen = \"lan\" or a dedicated interface, and keep management.allow to your monitoring hosts",
                c.wan.address.addr
            ),
        ),
        ManagementListen::Interface => {
            if let Err(e) = check_ifname(m.interface.as_str()) {
                r.error(
                    "management.interface",
                    format!("management interface: {e}"),
                );
            } else if m.interface == c.wan.name || m.interface == c.lan.name {
                r.error(
                    "management.interface",
                    format!(
                        "management interface {} is already the WAN or LAN interface; name the third port (e.g. eth2), or use listen = \"lan\"",
                        m.interface
                    ),
                );
            }
            match m.address {
                None => r.error(
                    "management.address",
                    "a dedicated management interface needs an address, e.g. address = \"192.0.2.2/24\"",
                ),
                Some(a) if a.prefix == 0 || a.prefix > 32 => r.error(
                    "management.address",
                    format!("management address {a} has an invalid prefix; use 1..=32, e.g. /24"),
                ),
                Some(a) if !is_host_addr(a.addr) || a.is_network_or_broadcast(a.addr) => r.error(
                    "management.address",
                    format!("management address {a} is not a usable host address of its subnet; pick a host address"),
                ),
                Some(a) => {
                    for (ok, label, n) in [(wan_ok, "WAN", &c.wan.address), (lan_ok, "LAN", &c.lan.address)] {
                        if ok && a.overlaps(n) {
                            r.error(
                                "management.address",
                                format!(
                                    "management subnet {} overlaps the {label} subnet {}; the management port needs a subnet of its own",
                                    a.network(),
                                    n.network()
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
    if m.listen != ManagementListen::Interface && (!m.interface.is_empty() || m.address.is_some()) {
        r.warn(
            "management.interface",
            format!(
                "management.interface and management.address are ignored while listen = \"{}\"; set listen = \"interface\" to use them, or clear them",
                m.listen.word()
            ),
        );
    }
    for (i, n) in m.allow.iter().enumerate() {
        let path = format!("management.allow[{i}]");
        if n.prefix > 32 {
            r.error(
                path,
                format!(
                    "allowed source {n} has an invalid prefix; use 0..=32, e.g. 198.51.100.50/32"
                ),
            );
            continue;
        }
        if n.network() != *n {
            r.error(
                path.clone(),
                format!(
                    "allowed source {n} has host bits set; write the prefix as {} (or {}/32 for that one host)",
                    n.network(),
                    n.addr
                ),
            );
        } else if n.prefix == 0 {
            r.warn(
                path.clone(),
                format!(
                    "allowed source {n} admits every address; list your monitoring hosts instead"
                ),
            );
        }
        if m.allow[..i].contains(n) {
            r.error(
                path,
                format!("allowed source {n} is listed twice; remove one"),
            );
        }
    }
    if m.metrics_enabled {
        if m.allow.is_empty() {
            r.error(
                "management.allow",
                "metrics are on but no source may connect; add the monitoring server to management.allow, e.g. allow = [\"198.51.100.50/32\"]",
            );
        }
        if m.metrics_port == 0 {
            r.error(
                "management.metrics_port",
                format!(
                    "metrics port 0 is not a port; use 1..=65535 (default {DEFAULT_METRICS_PORT})"
                ),
            );
        }
    }
}

/// Checks `[ha]` (called only when HA is enabled).
fn check_ha(r: &mut Report, c: &Config, wan_ok: bool, lan_ok: bool) {
    let h = &c.ha;
    if !HA_VRID_RANGE.contains(&h.vrid) {
        r.error(
            "ha.vrid",
            format!(
                "ha.vrid {} is out of range {}-{}; use the same VRID on both boxes (default {HA_DEFAULT_VRID}), one no other VRRP router on these networks uses",
                h.vrid,
                HA_VRID_RANGE.start(),
                HA_VRID_RANGE.end()
            ),
        );
    }
    if !HA_PRIORITY_RANGE.contains(&h.priority) {
        r.error(
            "ha.priority",
            format!(
                "ha.priority {} is out of range {}-{} (0 means resigning and 255 the owner of the addresses, which an appliance never is); use e.g. {HA_DEFAULT_PRIORITY} on the preferred box and 90 on the other",
                h.priority,
                HA_PRIORITY_RANGE.start(),
                HA_PRIORITY_RANGE.end()
            ),
        );
    }
    if !HA_ADVERT_CS_RANGE.contains(&h.advert_interval_cs) {
        r.error(
            "ha.advert_interval_cs",
            format!(
                "ha.advert_interval_cs {} is out of range {}-{} centiseconds; use the same value on both boxes (default {HA_DEFAULT_ADVERT_CS} = 50 ms)",
                h.advert_interval_cs,
                HA_ADVERT_CS_RANGE.start(),
                HA_ADVERT_CS_RANGE.end()
            ),
        );
    } else if h.advert_interval_cs < HA_ADVERT_CS_WARN_BELOW {
        r.warn(
            "ha.advert_interval_cs",
            format!(
                "ha.advert_interval_cs {} ({} ms) is below {HA_ADVERT_CS_WARN_BELOW} ({} ms): a busy box may miss three adverts in a row and both boxes become master; use {HA_ADVERT_CS_WARN_BELOW} or more",
                h.advert_interval_cs,
                u32::from(h.advert_interval_cs) * 10,
                u32::from(HA_ADVERT_CS_WARN_BELOW) * 10
            ),
        );
    }
    if !HA_PREEMPT_DELAY_RANGE_S.contains(&h.preempt_delay_s) {
        r.error(
            "ha.preempt_delay_s",
            format!(
                "ha.preempt_delay_s {} is out of range {}-{} seconds; the box waits at least the longest persistence timeout anyway, so 0 is usually right",
                h.preempt_delay_s,
                HA_PREEMPT_DELAY_RANGE_S.start(),
                HA_PREEMPT_DELAY_RANGE_S.end()
            ),
        );
    }
    let vips = c.ha_wan_addresses();
    if let Some(gw) = h.lan_gateway {
        let own = [(c.lan.address.addr, "this box's own LAN address")];
        let lan = lan_ok.then_some((c.lan.address, "LAN"));
        if check_ha_address(r, "ha.lan_gateway", gw, lan, &own) {
            if let Some((si, s)) = c
                .services
                .iter()
                .enumerate()
                .find(|(_, s)| s.servers.iter().any(|x| x.address == gw))
            {
                r.error(
                    "ha.lan_gateway",
                    format!(
                        "ha.lan_gateway {gw} is a real server of service {} (services[{si}]); use the servers' default gateway, an address no host owns",
                        s.name
                    ),
                );
            }
        }
    } else if let Some(s) = c.services.iter().find(|s| s.forwarding == Forwarding::Nat) {
        r.error(
            "ha.lan_gateway",
            format!(
                "ha.lan_gateway is not set but service {} uses NAT forwarding, whose servers send replies through their default gateway; set ha.lan_gateway to that gateway address (on the LAN subnet, neither box's own address) so it moves to the master",
                s.name
            ),
        );
    }
    if let Some(p) = h.peer_wan {
        let mut own = vec![(c.wan.address.addr, "this box's own WAN address")];
        own.extend(vips.iter().map(|&v| (v, "a service VIP")));
        let wan = wan_ok.then_some((c.wan.address, "WAN"));
        check_ha_address(r, "ha.peer_wan", p, wan, &own);
    }
    if let Some(p) = h.peer_lan {
        let mut own = vec![(c.lan.address.addr, "this box's own LAN address")];
        own.extend(h.lan_gateway.map(|g| (g, "ha.lan_gateway")));
        let lan = lan_ok.then_some((c.lan.address, "LAN"));
        check_ha_address(r, "ha.peer_lan", p, lan, &own);
    }
    let sync = h.sync_interface.as_str();
    if !sync.is_empty() {
        if let Err(e) = check_ifname(sync) {
            r.error(
                "ha.sync_interface",
                format!("ha.sync_interface: {e}, or leave it empty for the LAN interface"),
            );
        } else if sync == c.wan.name.as_str() {
            r.error(
                "ha.sync_interface",
                format!(
                    "ha.sync_interface {sync} is the WAN interface: connection sync is unauthenticated UDP; never run it on WAN. Leave it empty (the LAN interface) or name a dedicated link between the boxes"
                ),
            );
        }
    }
    // The VIPs move between the boxes, so neither box may own one.
    for (si, s) in c.services.iter().enumerate() {
        if s.vip == c.wan.address.addr {
            r.error(
                format!("services[{si}].vip"),
                format!(
                    "service {}: VIP {} is this box's own WAN address; with HA the VIPs move to the master, so use an address on the WAN subnet that neither box owns",
                    s.name, s.vip
                ),
            );
        }
    }
}

/// Checks one HA address: a host address inside `net` (when usable), not its network or
/// broadcast address, and none of `taken`. Returns true when no problem was found.
fn check_ha_address(
    r: &mut Report,
    path: &str,
    ip: Ipv4Addr,
    net: Option<(Ipv4Net, &str)>,
    taken: &[(Ipv4Addr, &str)],
) -> bool {
    if !is_host_addr(ip) {
        r.error(
            path,
            format!("{path} {ip} is not a usable host address (unspecified, loopback, multicast or broadcast)"),
        );
        return false;
    }
    if let Some((n, label)) = net {
        if !n.contains(ip) {
            r.error(
                path,
                format!(
                    "{path} {ip} is not on the {label} subnet {}; use an address in it",
                    n.network()
                ),
            );
            return false;
        }
        if n.is_network_or_broadcast(ip) {
            r.error(
                path,
                format!(
                    "{path} {ip} is the network or broadcast address of the {label} subnet {}; use a host address",
                    n.network()
                ),
            );
            return false;
        }
    }
    if let Some((_, what)) = taken.iter().find(|(a, _)| *a == ip) {
        r.error(
            path,
            format!("{path} {ip} is {what}; each address has one job, use another"),
        );
        return false;
    }
    true
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
    if p.gateway.is_none() && c.wan.gateway.is_none() {
        r.error(
            "policy_routing.gateway",
            "policy routing has no gateway to send the servers' SIP replies to; set policy_routing.gateway (or a WAN gateway)",
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

/// Why `a` cannot be a remote host the appliance talks to (syslog collector, NTP server),
/// or `None`. `what` names it in the message.
fn remote_host_problem(c: &Config, what: &str, a: Ipv4Addr) -> Option<String> {
    if !is_host_addr(a) {
        return Some(format!(
            "{what} {a} is not a unicast host address; use the address of the host that runs it"
        ));
    }
    if a == c.wan.address.addr || a == c.lan.address.addr {
        return Some(format!(
            "{what} {a} is this appliance's own address; use the address of another host"
        ));
    }
    None
}

fn check_syslog(r: &mut Report, c: &Config) {
    // UDP and TCP on the same port are different collectors (rsyslog listens on both).
    let mut seen: HashMap<SyslogCollector, usize> = HashMap::new();
    for (i, col) in c.syslog.collectors.iter().enumerate() {
        let p = format!("syslog.collectors[{i}]");
        let what = format!("syslog collector {col}");
        if let Some(why) = remote_host_problem(c, "syslog collector", col.address) {
            r.error(format!("{p}.address"), why);
        }
        if col.port == 0 {
            r.error(
                format!("{p}.port"),
                format!("{what}: port 0 is not a port; use the collector's port (default {SYSLOG_DEFAULT_PORT})"),
            );
        }
        if let Some(first) = seen.insert(*col, i) {
            r.error(
                format!("{p}.address"),
                format!("{what} is listed twice (collectors[{first}] and [{i}]); remove one"),
            );
        }
    }
}

fn check_ntp(r: &mut Report, c: &Config) {
    let n = &c.ntp;
    let mut seen: HashMap<Ipv4Addr, usize> = HashMap::new();
    for (i, &a) in n.servers.iter().enumerate() {
        if let Some(why) = remote_host_problem(c, "NTP server", a) {
            r.error(format!("ntp.servers[{i}]"), why);
        }
        if let Some(first) = seen.insert(a, i) {
            r.error(
                format!("ntp.servers[{i}]"),
                format!("NTP server {a} is listed twice (servers[{first}] and [{i}]); remove one"),
            );
        }
    }
    if !NTP_POLL_RANGE_S.contains(&n.poll_s) {
        r.error(
            "ntp.poll_s",
            format!(
                "ntp.poll_s {} is out of range {}-{} seconds; use {NTP_DEFAULT_POLL_S} unless the server asks for less traffic",
                n.poll_s,
                NTP_POLL_RANGE_S.start(),
                NTP_POLL_RANGE_S.end()
            ),
        );
    }
}

fn check_console(r: &mut Report, cs: &ConsoleSettings) {
    let h = cs.password_hash.as_str();
    if let Some(why) = (!h.is_empty()).then(|| password_hash_problem(h)).flatten() {
        r.error("console.password_hash", why);
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
        // No gateway at all: the planner used to refuse this; now the rule is here.
        c.policy_routing.gateway = None;
        c.wan.gateway = None;
        one_error(&c, &["policy routing has no gateway"]);
    }

    /// The demo config as box A of an HA pair (the HA-SPEC lab addresses).
    fn ha_base() -> Config {
        let mut c = base();
        c.lan.address = "198.51.100.2/24".parse().unwrap();
        c.ha = HaSettings {
            enabled: true,
            lan_gateway: Some(Ipv4Addr::new(198, 51, 100, 1)),
            peer_wan: Some(Ipv4Addr::new(203, 0, 113, 3)),
            peer_lan: Some(Ipv4Addr::new(198, 51, 100, 3)),
            ..HaSettings::default()
        };
        c
    }

    #[test]
    fn ha_pair_config_is_clean_and_rules_apply_only_when_enabled() {
        let r = validate(&ha_base());
        assert!(r.errors.is_empty() && r.warnings.is_empty(), "{r:#?}");
        // A disabled [ha] is inert: the V1 firmware exported vrid 0 / priority 0.
        let mut c = base();
        c.ha.vrid = 0;
        c.ha.priority = 0;
        c.ha.sync_interface = bounded("eth0");
        assert!(validate(&c).is_ok());
        // ... but an editor can still ask what would be wrong.
        let r = ha_problems(&c);
        let paths: Vec<_> = r.errors.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "ha.vrid",
                "ha.priority",
                "ha.lan_gateway",
                "ha.sync_interface"
            ],
            "{r:#?}"
        );
    }

    #[test]
    fn ha_vrid_range() {
        let mut c = ha_base();
        c.ha.vrid = 0;
        one_error(
            &c,
            &[
                "ha.vrid 0 is out of range 1-255",
                "the same VRID on both boxes",
            ],
        );
        c.ha.vrid = 255;
        assert!(validate(&c).is_ok());
    }

    #[test]
    fn ha_priority_range() {
        let mut c = ha_base();
        c.ha.priority = 0;
        one_error(&c, &["ha.priority 0 is out of range 1-254"]);
        c.ha.priority = 255;
        one_error(&c, &["ha.priority 255 is out of range 1-254", "owner"]);
        c.ha.priority = 254;
        assert!(validate(&c).is_ok());
        c.ha.priority = 1;
        assert!(validate(&c).is_ok());
    }

    #[test]
    fn ha_advert_interval_range_and_warning() {
        let mut c = ha_base();
        c.ha.advert_interval_cs = 0;
        one_error(&c, &["ha.advert_interval_cs 0 is out of range 1-4095"]);
        c.ha.advert_interval_cs = 4096;
        one_error(&c, &["ha.advert_interval_cs 4096 is out of range"]);
        c.ha.advert_interval_cs = 2;
        one_warning(&c, &["ha.advert_interval_cs 2 (20 ms) is below 3 (30 ms)"]);
        c.ha.advert_interval_cs = 3;
        let r = validate(&c);
        assert!(r.errors.is_empty() && r.warnings.is_empty(), "{r:#?}");
        c.ha.advert_interval_cs = 4095;
        assert!(validate(&c).is_ok());
    }

    #[test]
    fn ha_preempt_delay_range() {
        let mut c = ha_base();
        c.ha.preempt = true;
        c.ha.preempt_delay_s = 3601;
        one_error(&c, &["ha.preempt_delay_s 3601 is out of range 0-3600"]);
        c.ha.preempt_delay_s = 3600;
        assert!(validate(&c).is_ok());
    }

    #[test]
    fn ha_lan_gateway_required_with_nat() {
        let mut c = ha_base();
        c.ha.lan_gateway = None;
        c.ha.peer_lan = None;
        one_error(
            &c,
            &["ha.lan_gateway is not set but service sip uses NAT forwarding"],
        );
        // Direct routing needs no LAN router.
        c.services[0].forwarding = Forwarding::Dr;
        assert!(validate(&c).is_ok(), "{:#?}", validate(&c));
    }

    #[test]
    fn ha_lan_gateway_placement() {
        let mut c = ha_base();
        c.ha.lan_gateway = Some(Ipv4Addr::new(192, 0, 2, 1));
        one_error(
            &c,
            &["ha.lan_gateway 192.0.2.1 is not on the LAN subnet 198.51.100.0/24"],
        );
        c.ha.lan_gateway = Some(c.lan.address.addr);
        one_error(
            &c,
            &["ha.lan_gateway 198.51.100.2 is this box's own LAN address"],
        );
        c.ha.lan_gateway = Some(Ipv4Addr::new(198, 51, 100, 0));
        one_error(
            &c,
            &["ha.lan_gateway 198.51.100.0 is the network or broadcast"],
        );
        c.ha.lan_gateway = Some(Ipv4Addr::new(198, 51, 100, 255));
        one_error(
            &c,
            &["ha.lan_gateway 198.51.100.255 is the network or broadcast"],
        );
        c.ha.lan_gateway = Some(Ipv4Addr::new(224, 0, 0, 18));
        one_error(
            &c,
            &["ha.lan_gateway 224.0.0.18 is not a usable host address"],
        );
        c.ha.lan_gateway = Some(Ipv4Addr::new(198, 51, 100, 11));
        one_error(
            &c,
            &["ha.lan_gateway 198.51.100.11 is a real server of service sip"],
        );
    }

    #[test]
    fn ha_peer_wan_placement() {
        let mut c = ha_base();
        c.ha.peer_wan = Some(Ipv4Addr::new(198, 51, 100, 3));
        one_error(
            &c,
            &["ha.peer_wan 198.51.100.3 is not on the WAN subnet 203.0.113.0/24"],
        );
        c.ha.peer_wan = Some(c.wan.address.addr);
        one_error(
            &c,
            &["ha.peer_wan 203.0.113.2 is this box's own WAN address"],
        );
        c.ha.peer_wan = Some(c.services[0].vip);
        one_error(&c, &["ha.peer_wan 203.0.113.10 is a service VIP"]);
        c.ha.peer_wan = Some(Ipv4Addr::new(203, 0, 113, 255));
        one_error(
            &c,
            &["ha.peer_wan 203.0.113.255 is the network or broadcast"],
        );
        c.ha.peer_wan = None;
        assert!(validate(&c).is_ok());
    }

    #[test]
    fn ha_peer_lan_placement() {
        let mut c = ha_base();
        c.ha.peer_lan = Some(Ipv4Addr::new(203, 0, 113, 3));
        one_error(
            &c,
            &["ha.peer_lan 203.0.113.3 is not on the LAN subnet 198.51.100.0/24"],
        );
        c.ha.peer_lan = Some(c.lan.address.addr);
        one_error(
            &c,
            &["ha.peer_lan 198.51.100.2 is this box's own LAN address"],
        );
        c.ha.peer_lan = c.ha.lan_gateway;
        one_error(&c, &["ha.peer_lan 198.51.100.1 is ha.lan_gateway"]);
        c.ha.peer_lan = Some(Ipv4Addr::UNSPECIFIED);
        one_error(&c, &["ha.peer_lan 0.0.0.0 is not a usable host address"]);
        c.ha.peer_lan = None;
        assert!(validate(&c).is_ok());
    }

    #[test]
    fn ha_sync_interface() {
        let mut c = ha_base();
        c.ha.sync_interface = bounded("eth0");
        one_error(
            &c,
            &[
                "ha.sync_interface eth0 is the WAN interface",
                "never run it on WAN",
            ],
        );
        c.ha.sync_interface = bounded("eth/2");
        one_error(&c, &["ha.sync_interface: 'eth/2' is not an interface name"]);
        c.ha.sync_interface = bounded("eth2");
        assert!(validate(&c).is_ok());
        assert_eq!(c.ha.sync_ifname(&c), "eth2");
    }

    #[test]
    fn ha_vip_is_never_an_own_address() {
        let mut c = ha_base();
        c.services[0].vip = c.wan.address.addr;
        one_error(
            &c,
            &["service sip: VIP 203.0.113.2 is this box's own WAN address"],
        );
        // Without HA the VIP may be the WAN address (the planner skips it).
        c.ha.enabled = false;
        assert!(validate(&c).is_ok());
        // The LAN address and the peer's WAN address are covered by their own rules.
        let mut c = ha_base();
        c.services[0].vip = Ipv4Addr::new(203, 0, 113, 3);
        one_error(&c, &["ha.peer_wan 203.0.113.3 is a service VIP"]);
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
        c.console.password_hash = bounded("$argon2id$v=19$m=64,t=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo");
        one_error(&c, &["lacks its m=, t= or p= cost"]);
        let mut c = base();
        c.console.password_hash =
            bounded("$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo");
        one_error(
            &c,
            &[
                "costs m=4194304 KiB, t=1, p=1",
                "at most m=65536, t=8, p=4",
                "re-hash",
            ],
        );
        for (m, t, p, ok) in [
            (
                PASSWORD_HASH_MAX_M_KIB,
                PASSWORD_HASH_MAX_T,
                PASSWORD_HASH_MAX_P,
                true,
            ),
            (PASSWORD_HASH_MAX_M_KIB + 1, 1, 1, false),
            (64, PASSWORD_HASH_MAX_T + 1, 1, false),
            (64, 1, PASSWORD_HASH_MAX_P + 1, false),
        ] {
            let h = format!("$argon2id$v=19$m={m},t={t},p={p}$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo");
            assert_eq!(password_hash_problem(&h).is_none(), ok, "{h}");
        }
        // The hash the appliance itself makes passes.
        let h = crate::control::password::hash_password("a default pw").unwrap();
        assert_eq!(password_hash_problem(&h), None);
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

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn management_defaults_are_valid_and_metrics_need_an_allow_list() {
        let mut c = base();
        assert!(validate(&c).is_ok());
        assert_eq!(c.management.metrics_port, 9100);
        assert_eq!(
            c.management.listen_addr(&c),
            Some(Ipv4Addr::new(198, 51, 100, 1))
        );
        c.management.metrics_enabled = true;
        one_error(
            &c,
            &[
                "metrics are on but no source may connect",
                "management.allow",
            ],
        );
        let _ = c.management.allow.push(net("198.51.100.50/32"));
        assert!(validate(&c).is_ok(), "{:#?}", validate(&c));
        assert!(c.management.allows(Ipv4Addr::new(198, 51, 100, 50)));
        assert!(!c.management.allows(Ipv4Addr::new(198, 51, 100, 51)));
        c.management.metrics_port = 0;
        one_error(&c, &["metrics port 0 is not a port", "9100"]);
    }

    #[test]
    fn management_on_wan_is_a_warning() {
        let mut c = base();
        c.management.listen = ManagementListen::Wan;
        one_warning(&c, &["listen on WAN (203.0.113.2)", "listen = \"lan\""]);
        assert_eq!(
            c.management.listen_addr(&c),
            Some(Ipv4Addr::new(203, 0, 113, 2))
        );
    }

    #[test]
    fn management_allow_list_rules() {
        let mut c = base();
        let _ = c.management.allow.push(net("198.51.100.7/24"));
        one_error(
            &c,
            &["has host bits set", "198.51.100.0/24", "198.51.100.7/32"],
        );
        c.management.allow.clear();
        let _ = c.management.allow.push(net("192.0.2.0/24"));
        let _ = c.management.allow.push(net("192.0.2.0/24"));
        one_error(&c, &["192.0.2.0/24 is listed twice"]);
        c.management.allow.clear();
        let _ = c.management.allow.push(net("0.0.0.0/0"));
        one_warning(&c, &["admits every address"]);
    }

    #[test]
    fn management_dedicated_interface_rules() {
        let mut c = base();
        c.management.listen = ManagementListen::Interface;
        one_error(&c, &["management interface", "not an interface name"]);
        c.management.interface = bounded("eth1");
        let r = validate(&c);
        assert!(
            r.errors
                .iter()
                .any(|p| p.message.contains("already the WAN or LAN interface")),
            "{r:#?}"
        );
        assert!(
            r.errors
                .iter()
                .any(|p| p.message.contains("needs an address")),
            "{r:#?}"
        );
        c.management.interface = bounded("eth2");
        c.management.address = Some(net("198.51.100.9/24"));
        one_error(
            &c,
            &["management subnet 198.51.100.0/24 overlaps the LAN subnet"],
        );
        c.management.address = Some(net("192.0.2.0/24"));
        one_error(&c, &["192.0.2.0/24 is not a usable host address"]);
        c.management.address = Some(net("192.0.2.2/24"));
        assert!(validate(&c).is_ok(), "{:#?}", validate(&c));
        assert_eq!(
            c.management.listen_addr(&c),
            Some(Ipv4Addr::new(192, 0, 2, 2))
        );
        c.management.listen = ManagementListen::Lan;
        one_warning(&c, &["ignored while listen = \"lan\""]);
    }

    #[test]
    fn management_toml_section_round_trips() {
        let text = r#"
listen = "interface"
interface = "eth2"
address = "192.0.2.2/24"
allow = ["192.0.2.0/24", "198.51.100.50/32"]
metrics_enabled = true
metrics_port = 9101
"#;
        let m: ManagementSettings = toml::from_str(text).unwrap();
        assert_eq!(m.listen, ManagementListen::Interface);
        assert_eq!(m.allow.len(), 2);
        assert_eq!(m.metrics_port, 9101);
        let back: ManagementSettings = toml::from_str(&toml::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        // An empty table gets every default; a typo is refused by name.
        assert_eq!(
            toml::from_str::<ManagementSettings>("").unwrap(),
            ManagementSettings::default()
        );
        let e = toml::from_str::<ManagementSettings>("metrics_enable = true").unwrap_err();
        assert!(e.to_string().contains("metrics_enable"), "{e}");
    }

    #[test]
    fn syslog_collectors() {
        let mut c = base();
        let col = |a: [u8; 4], port: u16| SyslogCollector {
            address: Ipv4Addr::from(a),
            port,
            transport: SyslogTransport::Udp,
        };
        let _ = c.syslog.collectors.push(col([198, 51, 100, 50], 514));
        assert!(validate(&c).errors.is_empty(), "{:?}", validate(&c));
        c.syslog.collectors[0].port = 0;
        one_error(
            &c,
            &[
                "syslog collector udp://198.51.100.50:0",
                "port 0",
                "default 514",
            ],
        );
        c.syslog.collectors[0].port = 514;
        let _ = c.syslog.collectors.push(col([198, 51, 100, 50], 514));
        one_error(
            &c,
            &["udp://198.51.100.50:514 is listed twice", "remove one"],
        );
        c.syslog.collectors[1].transport = SyslogTransport::Tcp;
        assert!(validate(&c).errors.is_empty(), "UDP and TCP 514 differ");
        c.syslog.collectors[1].transport = SyslogTransport::Udp;
        c.syslog.collectors[1] = col([198, 51, 100, 1], 514);
        one_error(&c, &["syslog collector 198.51.100.1", "own address"]);
        c.syslog.collectors[1] = col([224, 0, 0, 1], 514);
        one_error(&c, &["syslog collector 224.0.0.1", "not a unicast host"]);
        // TOML: port and transport default; an unknown transport is refused.
        let t: SyslogSettings =
            toml::from_str("collectors = [{ address = \"192.0.2.5\" }]").unwrap();
        assert_eq!(t.collectors[0].port, 514);
        assert_eq!(t.collectors[0].transport, SyslogTransport::Udp);
        assert_eq!(t.facility, SyslogFacility::Local0);
        assert!(toml::from_str::<SyslogSettings>(
            "collectors = [{ address = \"192.0.2.5\", transport = \"sctp\" }]"
        )
        .is_err());
        assert!(toml::from_str::<SyslogSettings>(
            "collectors = [{ address = \"192.0.2.5\" }, { address = \"192.0.2.6\" }, { address = \"192.0.2.7\" }]"
        )
        .is_err(), "three collectors exceed the capacity");
    }

    #[test]
    fn ntp_servers_and_poll() {
        let mut c = base();
        let _ = c.ntp.servers.push(Ipv4Addr::new(198, 51, 100, 60));
        assert!(validate(&c).errors.is_empty());
        let _ = c.ntp.servers.push(Ipv4Addr::new(198, 51, 100, 60));
        one_error(&c, &["NTP server 198.51.100.60 is listed twice"]);
        c.ntp.servers[1] = Ipv4Addr::new(203, 0, 113, 2);
        one_error(&c, &["NTP server 203.0.113.2", "own address"]);
        c.ntp.servers[1] = Ipv4Addr::UNSPECIFIED;
        one_error(&c, &["NTP server 0.0.0.0", "not a unicast host"]);
        c.ntp.servers.truncate(1);
        c.ntp.poll_s = 8;
        one_error(&c, &["ntp.poll_s 8 is out of range 16-1024", "use 64"]);
        let t: NtpSettings = toml::from_str("servers = [\"192.0.2.9\"]").unwrap();
        assert_eq!(t.poll_s, NTP_DEFAULT_POLL_S);
    }
}
