//! keepalived's VRRP side to `[ha]`: `vrrp_instance` blocks and the sync daemon interface.
//!
//! keepalived runs one instance per network (often with different VRIDs in a sync
//! group); the appliance runs one WAN and one LAN router with one VRID. An instance
//! whose addresses are on the base config's WAN subnet (or whose `interface` is the
//! WAN interface) becomes the WAN router, one on the LAN subnet gives `lan_gateway`.
//! HA is imported switched off: the operator checks the notes and enables it.

use std::net::Ipv4Addr;

use super::{Mapper, Node, Severity};
use crate::config::model::*;
use crate::config::validate::ha_problems;

/// What the VRRP part of a keepalived.conf gave.
#[derive(Default)]
pub(super) struct Vrrp<'n> {
    /// The `vrrp_instance` blocks, mapped after the services (their VIPs are needed).
    pub instances: Vec<&'n Node>,
    /// `lvs_sync_daemon` / `lvs_sync_daemon_interface` from global_defs.
    pub sync_interface: Option<(String, &'n Node)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Wan,
    Lan,
}

/// The address of a `virtual_ipaddress` / `unicast_peer` line (`A[/P] [dev X ...]`).
fn line_addr(n: &Node) -> Option<Ipv4Addr> {
    n.key.split('/').next()?.parse().ok()
}

/// keepalived's `advert_int` (seconds, decimals allowed) in centiseconds.
fn advert_cs(s: &str) -> Option<u16> {
    let v: f64 = s.parse().ok()?;
    let cs = (v * 100.0).round();
    (v.is_finite() && (0.0..=f64::from(u16::MAX)).contains(&cs)).then_some(cs as u16)
}

impl Mapper<'_> {
    /// Scan global_defs for the sync daemon's interface; true when something was mapped.
    pub(super) fn global_defs_sync<'n>(&mut self, n: &'n Node, v: &mut Vrrp<'n>) -> bool {
        let mut mapped = false;
        for k in n.block.as_deref().unwrap_or(&[]) {
            if k.key == "lvs_sync_daemon" || k.key == "lvs_sync_daemon_interface" {
                if let Some(ifname) = k.args.first() {
                    v.sync_interface = Some((ifname.clone(), k));
                    mapped = true;
                    if k.args.len() > 2 {
                        self.note(
                            k,
                            Severity::Unmapped,
                            format!(
                                "{} options '{}' not imported: the appliance sets the sync id to the VRID and tunes the rest itself",
                                k.key,
                                k.args[2..].join(" ")
                            ),
                        );
                    }
                }
            }
        }
        mapped
    }

    fn side(&self, n: &Node, base: &Config) -> Option<Side> {
        let addrs: Vec<Ipv4Addr> = n
            .block
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .filter(|k| k.key == "virtual_ipaddress")
            .flat_map(|k| {
                k.block
                    .as_deref()
                    .unwrap_or(&[])
                    .iter()
                    .filter_map(line_addr)
            })
            .collect();
        if addrs.iter().any(|a| base.wan.address.contains(*a)) {
            return Some(Side::Wan);
        }
        if addrs.iter().any(|a| base.lan.address.contains(*a)) {
            return Some(Side::Lan);
        }
        let iface = n
            .block
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .find(|k| k.key == "interface")
            .and_then(|k| k.args.first())?;
        if *iface == base.wan.name.as_str() {
            Some(Side::Wan)
        } else if *iface == base.lan.name.as_str() {
            Some(Side::Lan)
        } else {
            None
        }
    }

    /// Map the collected VRRP blocks onto `config.ha` (left disabled).
    pub(super) fn map_vrrp(&mut self, v: &Vrrp<'_>, config: &mut Config) {
        if v.instances.is_empty() && v.sync_interface.is_none() {
            return;
        }
        let base = config.clone();
        let mut ha = HaSettings::default();
        let mut wan: Option<&Node> = None;
        let mut lan: Option<&Node> = None;
        for &n in &v.instances {
            let name = n.args.join(" ");
            let slot = match self.side(n, &base) {
                Some(Side::Wan) => &mut wan,
                Some(Side::Lan) => &mut lan,
                None => {
                    self.note(
                        n,
                        Severity::Unmapped,
                        format!(
                            "vrrp_instance {name} (lines {}-{}) not imported: its addresses are on neither the WAN subnet {} nor the LAN subnet {}",
                            n.line, n.end_line, base.wan.address, base.lan.address
                        ),
                    );
                    continue;
                }
            };
            if slot.is_some() {
                self.note(
                    n,
                    Severity::Unmapped,
                    format!(
                        "vrrp_instance {name} (lines {}-{}) not imported: the appliance runs one router per network and an earlier instance already covers this one",
                        n.line, n.end_line
                    ),
                );
                continue;
            }
            *slot = Some(n);
        }
        if let Some(n) = wan {
            self.instance(n, Side::Wan, &base, &mut ha);
            self.instance_addresses(n, Side::Wan, &base, &mut ha);
        }
        if let Some(n) = lan {
            if wan.is_none() {
                self.instance(n, Side::Lan, &base, &mut ha);
            } else {
                let lan_vrid = n
                    .block
                    .as_deref()
                    .unwrap_or(&[])
                    .iter()
                    .find(|k| k.key == "virtual_router_id")
                    .and_then(|k| k.args.first())
                    .and_then(|a| a.parse::<u8>().ok());
                let vrid = match lan_vrid.filter(|lv| *lv != ha.vrid) {
                    Some(lv) => format!(
                        "; its virtual_router_id {lv} is not used: the appliance's WAN and LAN routers share one VRID ({})",
                        ha.vrid
                    ),
                    None => String::new(),
                };
                self.note(
                    n,
                    Severity::Info,
                    format!(
                        "vrrp_instance {} (lines {}-{}) is the LAN router: only its address and unicast peer are imported, VRID, priority and timing come from the WAN instance{vrid}",
                        n.args.join(" "),
                        n.line,
                        n.end_line
                    ),
                );
            }
            self.instance_addresses(n, Side::Lan, &base, &mut ha);
        }
        if let Some((ifname, k)) = &v.sync_interface {
            ha.sync_interface = bounded(ifname);
            self.note(
                k,
                Severity::Info,
                format!("{} {ifname} imported as ha.sync_interface", k.key),
            );
        }
        config.ha = ha;
        // Say what still needs doing before HA can be switched on.
        let problems = ha_problems(config);
        let first = v
            .instances
            .first()
            .copied()
            .or(v.sync_interface.as_ref().map(|(_, k)| *k));
        if let Some(n) = first {
            self.note(
                n,
                Severity::Info,
                format!(
                    "VRRP settings imported into [ha] with ha.enabled = false: check them (docs/ha.md), then set ha.enabled = true{}",
                    if problems.errors.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ". Before enabling, fix: {}",
                            problems
                                .errors
                                .iter()
                                .map(|p| p.message.as_str())
                                .collect::<Vec<_>>()
                                .join("; ")
                        )
                    }
                ),
            );
        }
    }

    /// One instance's keywords onto `ha` (its addresses: `instance_addresses`).
    fn instance(&mut self, n: &Node, side: Side, base: &Config, ha: &mut HaSettings) {
        let mut nopreempt = false;
        for k in n.block.as_deref().unwrap_or(&[]) {
            match k.key.as_str() {
                "virtual_router_id" => {
                    if let Some(v) = self.num(k, "VRID 1-255") {
                        match u8::try_from(v) {
                            Ok(v) => ha.vrid = v,
                            Err(_) => self.note(
                                k,
                                Severity::Error,
                                format!("virtual_router_id {v} is out of range 1-255"),
                            ),
                        }
                    }
                }
                "priority" => {
                    if let Some(v) = self.num(k, "priority 1-254") {
                        match u8::try_from(v) {
                            Ok(v) => ha.priority = v,
                            Err(_) => self.note(
                                k,
                                Severity::Error,
                                format!("priority {v} is out of range 1-254"),
                            ),
                        }
                    }
                }
                "advert_int" => {
                    if let Some(w) = self.word(k, "seconds") {
                        match advert_cs(w) {
                            Some(cs) => {
                                ha.advert_interval_cs = cs;
                                self.note(
                                    k,
                                    Severity::Info,
                                    format!("advert_int {w} s imported as ha.advert_interval_cs = {cs} (centiseconds)"),
                                );
                            }
                            None => self.note(
                                k,
                                Severity::Error,
                                format!("advert_int '{w}' is not a number of seconds"),
                            ),
                        }
                    }
                }
                "nopreempt" => nopreempt = true,
                "preempt" => {}
                "preempt_delay" => {
                    if let Some(v) = self.num(k, "seconds") {
                        ha.preempt_delay_s = v;
                        self.note(
                            k,
                            Severity::Info,
                            "preempt_delay imported; the appliance waits at least the longest persistence timeout before preempting".into(),
                        );
                    }
                }
                "state" => self.note(
                    k,
                    Severity::Info,
                    "state not imported: the appliance starts as backup and the priority decides the master".into(),
                ),
                "interface" => {
                    let want = match side {
                        Side::Wan => base.wan.name.as_str(),
                        Side::Lan => base.lan.name.as_str(),
                    };
                    if k.args.first().map(String::as_str) != Some(want) {
                        self.note(
                            k,
                            Severity::Info,
                            format!(
                                "interface {} not imported: this router runs on the appliance's {} interface {want}",
                                k.args.join(" "),
                                if side == Side::Wan { "WAN" } else { "LAN" }
                            ),
                        );
                    }
                }
                "virtual_ipaddress" | "unicast_peer" => {}
                "lvs_sync_daemon_interface" => {
                    if let Some(w) = self.word(k, "interface") {
                        ha.sync_interface = bounded(w);
                        self.note(
                            k,
                            Severity::Info,
                            format!("lvs_sync_daemon_interface {w} imported as ha.sync_interface"),
                        );
                    }
                }
                "unicast_src_ip" => self.note(
                    k,
                    Severity::Info,
                    "unicast_src_ip not imported: the appliance sends from its own interface address".into(),
                ),
                "authentication" => self.note(
                    k,
                    Severity::Unmapped,
                    "authentication not imported: VRRPv3 (RFC 5798) has none; use unicast peers or a dedicated link".into(),
                ),
                "track_interface" | "track_script" | "track_process" | "track_file" => self.note(
                    k,
                    Severity::Unmapped,
                    format!("{} not imported: the appliance tracks its WAN and LAN links and the pool health itself", k.key),
                ),
                "vrrp_version" => {}
                other => self.note(
                    k,
                    Severity::Unmapped,
                    format!("unknown or unsupported keyword '{other}' in vrrp_instance not imported"),
                ),
            }
        }
        ha.preempt = !nopreempt;
        if !nopreempt {
            self.note(
                n,
                Severity::Info,
                "keepalived preempts unless nopreempt is set: imported as ha.preempt = true".into(),
            );
        }
    }

    /// `virtual_ipaddress` and `unicast_peer` of one instance.
    fn instance_addresses(&mut self, n: &Node, side: Side, base: &Config, ha: &mut HaSettings) {
        let vips = base.ha_wan_addresses();
        for k in n.block.as_deref().unwrap_or(&[]) {
            match k.key.as_str() {
                "virtual_ipaddress" => {
                    for (i, a) in k.block.as_deref().unwrap_or(&[]).iter().enumerate() {
                        let Some(ip) = line_addr(a) else {
                            self.note(
                                a,
                                Severity::Unmapped,
                                format!("virtual address '{}' is not IPv4; not imported", a.key),
                            );
                            continue;
                        };
                        match side {
                            Side::Wan if !vips.contains(&ip) => self.note(
                                a,
                                Severity::Unmapped,
                                format!(
                                    "virtual address {ip} not imported: the WAN router holds exactly the service VIPs ({})",
                                    vips.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
                                ),
                            ),
                            Side::Wan => {}
                            Side::Lan if i == 0 => {
                                ha.lan_gateway = Some(ip);
                                self.note(
                                    a,
                                    Severity::Info,
                                    format!("virtual address {ip} imported as ha.lan_gateway (the servers' gateway)"),
                                );
                            }
                            Side::Lan => self.note(
                                a,
                                Severity::Unmapped,
                                format!("virtual address {ip} not imported: the LAN router holds one address, ha.lan_gateway"),
                            ),
                        }
                    }
                }
                "unicast_peer" => {
                    for (i, a) in k.block.as_deref().unwrap_or(&[]).iter().enumerate() {
                        match (line_addr(a), i) {
                            (Some(ip), 0) => {
                                let field = if side == Side::Wan {
                                    ha.peer_wan = Some(ip);
                                    "ha.peer_wan"
                                } else {
                                    ha.peer_lan = Some(ip);
                                    "ha.peer_lan"
                                };
                                self.note(
                                    a,
                                    Severity::Info,
                                    format!("unicast_peer {ip} imported as {field}"),
                                );
                            }
                            _ => self.note(
                                a,
                                Severity::Unmapped,
                                format!(
                                    "unicast_peer {} not imported: an appliance pair has one peer",
                                    a.key
                                ),
                            ),
                        }
                    }
                }
                _ => {}
            }
        }
    }
}
