//! Pure network planner: the desired state derived from a [`Config`], validated against
//! the current system state, and the ordered rtnetlink operations that reconcile the two.
//!
//! Nothing here does I/O; `rtnl.rs` dumps a [`NetState`] and executes [`NetOp`]s.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;

use crate::config::{Config, Ipv4Net};

/// rtnetlink protocol id stamped on the routes and rules we create, so that stale ones
/// can be found again after a config change (shown as `proto 77` by `ip`).
pub const RTPROT_APPLIANCE: u8 = 77;
/// The kernel's main routing table.
pub const RT_TABLE_MAIN: u32 = 254;
/// IP protocol number of UDP (policy rules match SIP over UDP only).
pub const IPPROTO_UDP: u8 = 17;

/// One network interface as seen by the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Carrier present (IFF_LOWER_UP).
    pub carrier: bool,
    /// Current MTU.
    pub mtu: u32,
    /// Smallest MTU the driver accepts, when reported.
    pub min_mtu: Option<u32>,
    /// Largest MTU the driver accepts, when reported.
    pub max_mtu: Option<u32>,
}

/// One IPv4 address on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Addr {
    /// Interface index.
    pub index: u32,
    /// The local address.
    pub addr: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

/// One IPv4 unicast route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Routing table id.
    pub table: u32,
    /// Destination network.
    pub dst: Ipv4Addr,
    /// Destination prefix length (0 = default route).
    pub dst_len: u8,
    /// Next hop.
    pub gateway: Option<Ipv4Addr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Metric, if any (needed to delete the exact route).
    pub metric: Option<u32>,
    /// Routing protocol id (who installed it).
    pub protocol: u8,
}

/// Identity of a route for reconciliation (who installed it and its metric do not matter).
type RouteKey = (u32, Ipv4Addr, u8, Option<Ipv4Addr>, Option<u32>);

impl Route {
    fn key(&self) -> RouteKey {
        (self.table, self.dst, self.dst_len, self.gateway, self.oif)
    }
}

/// One IPv4 policy routing rule (only the selectors we use are modelled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Rule priority.
    pub priority: u32,
    /// Table looked up.
    pub table: u32,
    /// Firewall mark selector.
    pub fwmark: Option<u32>,
    /// Source port selector (single port).
    pub sport: Option<u16>,
    /// IP protocol selector.
    pub ip_proto: Option<u8>,
    /// Rule protocol id (who installed it).
    pub protocol: u8,
    /// True when the rule has selectors we do not model (never ours; never touched).
    pub other_selectors: bool,
}

type RuleKey = (u32, u32, Option<u32>, Option<u16>, Option<u8>);

impl Rule {
    fn key(&self) -> RuleKey {
        (
            self.priority,
            self.table,
            self.fwmark,
            self.sport,
            self.ip_proto,
        )
    }
}

/// A snapshot of the kernel's IPv4 network state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetState {
    /// All links.
    pub links: Vec<Link>,
    /// All IPv4 addresses.
    pub addrs: Vec<Addr>,
    /// IPv4 unicast routes outside the local table.
    pub routes: Vec<Route>,
    /// IPv4 policy rules.
    pub rules: Vec<Rule>,
}

impl NetState {
    /// Link by name.
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }
    /// Link name by index (or `#index`).
    pub fn name_of(&self, index: u32) -> String {
        self.links
            .iter()
            .find(|l| l.index == index)
            .map(|l| l.name.clone())
            .unwrap_or_else(|| format!("#{index}"))
    }
}

/// What a managed link should look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkWant {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Wanted admin state.
    pub up: bool,
    /// Wanted MTU (None = leave alone, used for loopback).
    pub mtu: Option<u32>,
}

/// The state we want, restricted to what we manage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// Links whose admin state / MTU we set.
    pub links: Vec<LinkWant>,
    /// Interfaces whose IPv4 addresses we own (stale ones are removed).
    pub managed_ifs: Vec<u32>,
    /// Wanted IPv4 addresses on managed interfaces.
    pub addrs: Vec<Addr>,
    /// Wanted managed routes (see [`is_managed_route`]).
    pub routes: Vec<Route>,
    /// Wanted managed rules (see [`is_managed_rule`]).
    pub rules: Vec<Rule>,
    /// Addresses the VRRP runtime owns when HA is on (VIPs, LAN gateway): never added nor
    /// removed here, whatever prefix they carry, so an apply neither steals them from the
    /// peer on a backup nor drops them on the master.
    pub vrrp_owned: Vec<Ipv4Addr>,
}

/// Routes we own: every IPv4 default route in the main table (the box has exactly one
/// default gateway) and anything stamped with our protocol id.
pub fn is_managed_route(r: &Route) -> bool {
    (r.table == RT_TABLE_MAIN && r.dst_len == 0) || r.protocol == RTPROT_APPLIANCE
}

/// Rules we own: those stamped with our protocol id.
pub fn is_managed_rule(r: &Rule) -> bool {
    r.protocol == RTPROT_APPLIANCE && !r.other_selectors
}

/// One rtnetlink change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetOp {
    /// Set the MTU (`from` kept for messages).
    SetMtu {
        /// Interface index.
        index: u32,
        /// Interface name.
        name: String,
        /// New MTU.
        mtu: u32,
        /// Previous MTU.
        from: u32,
    },
    /// Set the link up or down.
    SetUp {
        /// Interface index.
        index: u32,
        /// Interface name.
        name: String,
        /// New admin state.
        up: bool,
    },
    /// Add an address.
    AddAddr(Addr, String),
    /// Delete an address.
    DelAddr(Addr, String),
    /// Add a route.
    AddRoute(Route),
    /// Delete a route.
    DelRoute(Route),
    /// Add a rule.
    AddRule(Rule),
    /// Delete a rule.
    DelRule(Rule),
}

impl fmt::Display for NetOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetOp::SetMtu {
                name, mtu, from, ..
            } => write!(f, "set {name} mtu {from} -> {mtu}"),
            NetOp::SetUp { name, up, .. } => {
                write!(f, "set {name} {}", if *up { "up" } else { "down" })
            }
            NetOp::AddAddr(a, n) => write!(f, "add address {}/{} on {n}", a.addr, a.prefix),
            NetOp::DelAddr(a, n) => write!(f, "remove address {}/{} from {n}", a.addr, a.prefix),
            NetOp::AddRoute(r) => write!(f, "add route {}", RouteFmt(r)),
            NetOp::DelRoute(r) => write!(f, "remove route {}", RouteFmt(r)),
            NetOp::AddRule(r) => write!(f, "add rule {}", RuleFmt(r)),
            NetOp::DelRule(r) => write!(f, "remove rule {}", RuleFmt(r)),
        }
    }
}

struct RouteFmt<'a>(&'a Route);
impl fmt::Display for RouteFmt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        if r.dst_len == 0 {
            write!(f, "default")?;
        } else {
            write!(f, "{}/{}", r.dst, r.dst_len)?;
        }
        if let Some(g) = r.gateway {
            write!(f, " via {g}")?;
        }
        if let Some(o) = r.oif {
            write!(f, " oif #{o}")?;
        }
        write!(f, " table {}", r.table)
    }
}

struct RuleFmt<'a>(&'a Rule);
impl fmt::Display for RuleFmt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        write!(f, "pref {}", r.priority)?;
        if let Some(m) = r.fwmark {
            write!(f, " fwmark {m:#x}")?;
        }
        if let Some(p) = r.ip_proto {
            write!(f, " ipproto {p}")?;
        }
        if let Some(p) = r.sport {
            write!(f, " sport {p}")?;
        }
        write!(f, " lookup {}", r.table)
    }
}

/// Why a requested network config cannot be applied to this system.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SystemProblem {
    /// The named interface does not exist.
    #[error("{role} interface '{name}' does not exist on this system (available: {available})")]
    UnknownInterface {
        /// WAN / LAN / loopback.
        role: &'static str,
        /// Requested name.
        name: String,
        /// Names that do exist.
        available: String,
    },
    /// The config breaks one of its own rules (see `config::validate`).
    #[error("{0}")]
    Config(String),
    /// Address or subnet clash.
    #[error("address conflict: {0}")]
    AddressConflict(String),
    /// MTU not accepted by the device.
    #[error("{role} interface '{name}': MTU {mtu} is out of range ({min}-{max})")]
    MtuOutOfRange {
        /// WAN / LAN.
        role: &'static str,
        /// Interface.
        name: String,
        /// Requested.
        mtu: u32,
        /// Lowest allowed.
        min: u32,
        /// Highest allowed.
        max: u32,
    },
}

/// Build the desired state for `cfg` and validate it against `cur`.
///
/// Every problem is collected so the operator sees them all at once; nothing is changed
/// by the caller unless this returns `Ok`.
pub fn desired(cfg: &Config, cur: &NetState) -> Result<Desired, Vec<SystemProblem>> {
    // The config's own rules live in `config::validate`, the one place; the planner adds
    // only what depends on the running system (links present, device MTU, addresses in use).
    let report = crate::config::validate(cfg);
    if !report.errors.is_empty() {
        return Err(report
            .errors
            .into_iter()
            .map(|p| SystemProblem::Config(p.message))
            .collect());
    }
    let mut problems = Vec::new();
    let available = || {
        cur.links
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let find = |role: &'static str, name: &str, problems: &mut Vec<SystemProblem>| {
        let l = cur.link(name);
        if l.is_none() {
            problems.push(SystemProblem::UnknownInterface {
                role,
                name: name.to_owned(),
                available: available(),
            });
        }
        l
    };
    let wan = find("WAN", cfg.wan.name.as_str(), &mut problems);
    let lan = find("LAN", cfg.lan.name.as_str(), &mut problems);
    let lo = find("loopback", "lo", &mut problems);
    // A dedicated management port is ours too: up, with its one address.
    let mgmt = match (cfg.management.listen, cfg.management.address) {
        (crate::config::ManagementListen::Interface, Some(a)) => find(
            "management",
            cfg.management.interface.as_str(),
            &mut problems,
        )
        .map(|l| (l, a)),
        _ => None,
    };

    // The device's MTU range.
    for (role, ifc, link) in [("WAN", &cfg.wan, wan), ("LAN", &cfg.lan, lan)] {
        if let Some(l) = link {
            let min = l.min_mtu.unwrap_or(68).max(68);
            let max = l.max_mtu.filter(|m| *m > 0).unwrap_or(65535);
            let mtu = u32::from(ifc.mtu);
            if mtu < min || mtu > max {
                problems.push(SystemProblem::MtuOutOfRange {
                    role,
                    name: l.name.clone(),
                    mtu,
                    min,
                    max,
                });
            }
        }
    }

    // VIPs: extra /32s on WAN, deduplicated, skipping the WAN address itself.
    let mut vips: Vec<Ipv4Addr> = Vec::new();
    for s in cfg.services.iter() {
        if s.vip != cfg.wan.address.addr && !vips.contains(&s.vip) {
            vips.push(s.vip);
        }
    }

    // Against the running system: our addresses must not live on other interfaces,
    // and our subnets must not overlap subnets of unmanaged interfaces.
    let ours: Vec<u32> = [wan, lan].iter().flatten().map(|l| l.index).collect();
    let mut wanted: Vec<(&'static str, Ipv4Addr, u32)> = Vec::new();
    if let Some(w) = wan {
        wanted.push(("WAN address", cfg.wan.address.addr, w.index));
        for v in &vips {
            wanted.push(("VIP", *v, w.index));
        }
    }
    if let Some(l) = lan {
        wanted.push(("LAN address", cfg.lan.address.addr, l.index));
    }
    for a in &cur.addrs {
        for (what, ip, target) in &wanted {
            if a.addr == *ip && a.index != *target && !ours.contains(&a.index) {
                problems.push(SystemProblem::AddressConflict(format!(
                    "{what} {ip} is already configured on interface '{}'; remove it there first",
                    cur.name_of(a.index)
                )));
            }
        }
        if ours.contains(&a.index) || lo.is_some_and(|l| l.index == a.index) {
            continue;
        }
        let other = Ipv4Net {
            addr: a.addr,
            prefix: a.prefix,
        };
        if a.prefix == 32 || a.addr.is_loopback() {
            continue;
        }
        for (role, n) in [("WAN", &cfg.wan.address), ("LAN", &cfg.lan.address)] {
            if n.overlaps(&other) {
                problems.push(SystemProblem::AddressConflict(format!(
                    "{role} subnet {} overlaps {}/{} on interface '{}'",
                    n.network(),
                    a.addr,
                    a.prefix,
                    cur.name_of(a.index)
                )));
            }
        }
    }

    // Policy routing: validation checked table, priority, match and gateway subnet.
    let pr = &cfg.policy_routing;
    let policy = if pr.enabled {
        pr.gateway.or(cfg.wan.gateway).and_then(|g| {
            let via = if cfg.wan.address.contains(g) {
                wan
            } else if cfg.lan.address.contains(g) {
                lan
            } else {
                None
            };
            via.map(|l| (g, l.index))
        })
    } else {
        None
    };

    if !problems.is_empty() {
        return Err(problems);
    }
    // All lookups succeeded when there are no problems.
    let (Some(wan), Some(lan), Some(lo)) = (wan, lan, lo) else {
        return Err(problems);
    };

    let mut d = Desired {
        links: vec![
            LinkWant {
                index: lo.index,
                name: lo.name.clone(),
                up: true,
                mtu: None,
            },
            LinkWant {
                index: wan.index,
                name: wan.name.clone(),
                up: true,
                mtu: Some(u32::from(cfg.wan.mtu)),
            },
            LinkWant {
                index: lan.index,
                name: lan.name.clone(),
                up: true,
                mtu: Some(u32::from(cfg.lan.mtu)),
            },
        ],
        managed_ifs: vec![wan.index, lan.index],
        ..Desired::default()
    };
    if let Some((l, a)) = mgmt {
        if l.index != wan.index && l.index != lan.index {
            d.links.push(LinkWant {
                index: l.index,
                name: l.name.clone(),
                up: true,
                mtu: None,
            });
            d.managed_ifs.push(l.index);
            d.addrs.push(Addr {
                index: l.index,
                addr: a.addr,
                prefix: a.prefix,
            });
        }
    }
    d.addrs.push(Addr {
        index: wan.index,
        addr: cfg.wan.address.addr,
        prefix: cfg.wan.address.prefix,
    });
    if cfg.ha.enabled {
        d.vrrp_owned = vips;
        d.vrrp_owned.extend(cfg.ha.lan_gateway);
    } else {
        for v in vips {
            d.addrs.push(Addr {
                index: wan.index,
                addr: v,
                prefix: 32,
            });
        }
    }
    d.addrs.push(Addr {
        index: lan.index,
        addr: cfg.lan.address.addr,
        prefix: cfg.lan.address.prefix,
    });
    let default_gw = cfg
        .wan
        .gateway
        .map(|g| (g, wan.index))
        .or(cfg.lan.gateway.map(|g| (g, lan.index)));
    if let Some((g, oif)) = default_gw {
        d.routes.push(Route {
            table: RT_TABLE_MAIN,
            dst: Ipv4Addr::UNSPECIFIED,
            dst_len: 0,
            gateway: Some(g),
            oif: Some(oif),
            metric: None,
            protocol: RTPROT_APPLIANCE,
        });
    }
    if let Some((g, oif)) = policy {
        d.routes.push(Route {
            table: pr.table,
            dst: Ipv4Addr::UNSPECIFIED,
            dst_len: 0,
            gateway: Some(g),
            oif: Some(oif),
            metric: None,
            protocol: RTPROT_APPLIANCE,
        });
        let (fwmark, sport, ip_proto) = if pr.fwmark != 0 {
            (Some(pr.fwmark), None, None)
        } else {
            (None, Some(pr.sip_port), Some(IPPROTO_UDP))
        };
        d.rules.push(Rule {
            priority: pr.priority,
            table: pr.table,
            fwmark,
            sport,
            ip_proto,
            protocol: RTPROT_APPLIANCE,
            other_selectors: false,
        });
    }
    Ok(d)
}

/// The managed part of a snapshot, as a desired state (used to roll back).
pub fn desired_from_state(snap: &NetState, managed: &Desired) -> Desired {
    let links = managed
        .links
        .iter()
        .filter_map(|w| {
            snap.links
                .iter()
                .find(|l| l.index == w.index)
                .map(|l| LinkWant {
                    index: l.index,
                    name: l.name.clone(),
                    up: l.up,
                    mtu: w.mtu.map(|_| l.mtu),
                })
        })
        .collect();
    Desired {
        links,
        managed_ifs: managed.managed_ifs.clone(),
        addrs: snap
            .addrs
            .iter()
            .filter(|a| {
                managed.managed_ifs.contains(&a.index) && !managed.vrrp_owned.contains(&a.addr)
            })
            .copied()
            .collect(),
        vrrp_owned: managed.vrrp_owned.clone(),
        routes: snap
            .routes
            .iter()
            .filter(|r| is_managed_route(r))
            .copied()
            .collect(),
        rules: snap
            .rules
            .iter()
            .filter(|r| is_managed_rule(r))
            .copied()
            .collect(),
    }
}

/// Ordered operations turning `cur` into `want`; empty when already there.
///
/// Order: links (MTU, then up), stale rules, stale routes, new addresses, stale addresses,
/// new routes, new rules. New addresses go in before old ones leave so that (with
/// `promote_secondaries`) routes via a still-valid gateway survive an address change.
pub fn plan(want: &Desired, cur: &NetState) -> Vec<NetOp> {
    let mut ops = Vec::new();
    for w in &want.links {
        let Some(l) = cur.links.iter().find(|l| l.index == w.index) else {
            continue;
        };
        if let Some(mtu) = w.mtu {
            if mtu != l.mtu {
                ops.push(NetOp::SetMtu {
                    index: l.index,
                    name: l.name.clone(),
                    mtu,
                    from: l.mtu,
                });
            }
        }
        if w.up != l.up {
            ops.push(NetOp::SetUp {
                index: l.index,
                name: l.name.clone(),
                up: w.up,
            });
        }
    }

    // Rules: each wanted key satisfies at most one existing rule; extras are stale.
    let mut rule_keys: Vec<RuleKey> = want.rules.iter().map(Rule::key).collect();
    let mut have_rules = Vec::new();
    for r in cur.rules.iter().filter(|r| is_managed_rule(r)) {
        if let Some(i) = rule_keys.iter().position(|k| *k == r.key()) {
            have_rules.push(rule_keys.remove(i));
        } else {
            ops.push(NetOp::DelRule(*r));
        }
    }
    let mut route_keys: Vec<RouteKey> = want.routes.iter().map(Route::key).collect();
    let mut have_routes = Vec::new();
    for r in cur.routes.iter().filter(|r| is_managed_route(r)) {
        if let Some(i) = route_keys.iter().position(|k| *k == r.key()) {
            have_routes.push(route_keys.remove(i));
        } else {
            ops.push(NetOp::DelRoute(*r));
        }
    }

    let have_addrs: BTreeSet<Addr> = cur.addrs.iter().copied().collect();
    let want_addrs: BTreeSet<Addr> = want.addrs.iter().copied().collect();
    for a in &want.addrs {
        if !have_addrs.contains(a) && !want.vrrp_owned.contains(&a.addr) {
            ops.push(NetOp::AddAddr(*a, cur.name_of(a.index)));
        }
    }
    for a in &cur.addrs {
        if want.managed_ifs.contains(&a.index)
            && !want_addrs.contains(a)
            && !want.vrrp_owned.contains(&a.addr)
        {
            ops.push(NetOp::DelAddr(*a, cur.name_of(a.index)));
        }
    }
    for r in &want.routes {
        if let Some(i) = have_routes.iter().position(|k| *k == r.key()) {
            have_routes.remove(i);
        } else {
            ops.push(NetOp::AddRoute(*r));
        }
    }
    for r in &want.rules {
        if let Some(i) = have_rules.iter().position(|k| *k == r.key()) {
            have_rules.remove(i);
        } else {
            ops.push(NetOp::AddRule(*r));
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::bounded;

    fn link(index: u32, name: &str) -> Link {
        Link {
            index,
            name: name.into(),
            up: false,
            carrier: false,
            mtu: 1500,
            min_mtu: Some(68),
            max_mtu: Some(9000),
        }
    }

    fn system() -> NetState {
        NetState {
            links: vec![link(1, "lo"), link(2, "eth0"), link(3, "eth1")],
            ..NetState::default()
        }
    }

    fn apply_ops(st: &mut NetState, ops: &[NetOp]) {
        for op in ops {
            match op {
                NetOp::SetMtu { index, mtu, .. } => {
                    st.links.iter_mut().find(|l| l.index == *index).unwrap().mtu = *mtu
                }
                NetOp::SetUp { index, up, .. } => {
                    st.links.iter_mut().find(|l| l.index == *index).unwrap().up = *up
                }
                NetOp::AddAddr(a, _) => st.addrs.push(*a),
                NetOp::DelAddr(a, _) => st.addrs.retain(|x| x != a),
                NetOp::AddRoute(r) => st.routes.push(*r),
                NetOp::DelRoute(r) => st.routes.retain(|x| x != r),
                NetOp::AddRule(r) => st.rules.push(*r),
                NetOp::DelRule(r) => st.rules.retain(|x| x != r),
            }
        }
    }

    #[test]
    fn fresh_system_gets_everything_then_nothing() {
        let cfg = Config::builtin_default();
        let mut st = system();
        let d = desired(&cfg, &st).expect("valid");
        let ops = plan(&d, &st);
        // lo up, eth0 up, eth1 up, 3 addresses (WAN, VIP, LAN), default route.
        assert_eq!(ops.len(), 7, "{ops:#?}");
        assert!(ops.contains(&NetOp::AddAddr(
            Addr {
                index: 2,
                addr: Ipv4Addr::new(203, 0, 113, 10),
                prefix: 32
            },
            "eth0".into()
        )));
        apply_ops(&mut st, &ops);
        assert_eq!(plan(&desired(&cfg, &st).unwrap(), &st), vec![]);
    }

    #[test]
    fn a_dedicated_management_port_is_brought_up_with_its_address() {
        let mut cfg = Config::builtin_default();
        cfg.management.listen = crate::config::ManagementListen::Interface;
        cfg.management.interface = bounded("eth2");
        cfg.management.address = Some("192.0.2.2/24".parse().unwrap());
        let mut st = system();
        // Missing port: named as a problem.
        let e = desired(&cfg, &st).unwrap_err();
        assert!(e.iter().any(|p| p.to_string().contains("eth2")), "{e:?}");
        st.links.push(link(4, "eth2"));
        let ops = plan(&desired(&cfg, &st).unwrap(), &st);
        assert!(ops.contains(&NetOp::AddAddr(
            Addr {
                index: 4,
                addr: Ipv4Addr::new(192, 0, 2, 2),
                prefix: 24
            },
            "eth2".into()
        )));
        assert!(ops.iter().any(|o| matches!(
            o,
            NetOp::SetUp {
                index: 4,
                up: true,
                ..
            }
        )));
        apply_ops(&mut st, &ops);
        assert_eq!(plan(&desired(&cfg, &st).unwrap(), &st), vec![]);
        // Back to the LAN address: the port is no longer managed, its address stays.
        cfg.management.listen = crate::config::ManagementListen::Lan;
        assert!(!desired(&cfg, &st).unwrap().managed_ifs.contains(&4));
    }

    fn ha_cfg() -> Config {
        let mut cfg = Config::builtin_default();
        cfg.ha.enabled = true;
        cfg.ha.lan_gateway = Some(Ipv4Addr::new(198, 51, 100, 254));
        cfg
    }

    fn has_addr(st: &NetState, ip: Ipv4Addr) -> bool {
        st.addrs.iter().any(|a| a.addr == ip)
    }

    #[test]
    fn ha_leaves_vips_and_lan_gateway_to_vrrp() {
        let vip = Ipv4Addr::new(203, 0, 113, 10);
        let gw = Ipv4Addr::new(198, 51, 100, 254);
        let cfg = ha_cfg();
        // backup: nothing held, the planner must not add them
        let mut st = system();
        let d = desired(&cfg, &st).expect("valid");
        assert_eq!(d.vrrp_owned, vec![vip, gw]);
        let ops = plan(&d, &st);
        apply_ops(&mut st, &ops);
        assert!(!has_addr(&st, vip) && !has_addr(&st, gw), "{ops:#?}");
        // master: VRRP added them; the planner must not remove them
        st.addrs.push(Addr {
            index: 2,
            addr: vip,
            prefix: 32,
        });
        st.addrs.push(Addr {
            index: 3,
            addr: gw,
            prefix: 32,
        });
        let d = desired(&cfg, &st).expect("valid");
        assert_eq!(plan(&d, &st), vec![]);
        // rollback to a snapshot never re-adds or removes them either
        let snap = system();
        let back = desired_from_state(&snap, &d);
        assert!(plan(&back, &st).iter().all(
            |o| !matches!(o, NetOp::AddAddr(a, _) | NetOp::DelAddr(a, _) if a.addr == vip || a.addr == gw)
        ));
        let mut held = st.clone();
        held.addrs.retain(|a| a.addr != vip);
        let back = desired_from_state(&st, &d);
        assert!(plan(&back, &held).is_empty(), "{:?}", plan(&back, &held));
    }

    #[test]
    fn ha_off_again_gives_the_vips_back_to_the_planner() {
        let vip = Ipv4Addr::new(203, 0, 113, 10);
        let mut st = system();
        let ops = plan(&desired(&ha_cfg(), &st).unwrap(), &st);
        apply_ops(&mut st, &ops);
        assert!(!has_addr(&st, vip));
        let cfg = Config::builtin_default();
        let d = desired(&cfg, &st).unwrap();
        assert!(d.vrrp_owned.is_empty());
        let ops = plan(&d, &st);
        apply_ops(&mut st, &ops);
        assert!(has_addr(&st, vip));
    }

    #[test]
    fn address_change_adds_new_before_removing_old() {
        let cfg = Config::builtin_default();
        let mut st = system();
        let ops = plan(&desired(&cfg, &st).unwrap(), &st);
        apply_ops(&mut st, &ops);
        let mut cfg2 = cfg.clone();
        cfg2.wan.address.addr = Ipv4Addr::new(203, 0, 113, 3);
        let ops = plan(&desired(&cfg2, &st).unwrap(), &st);
        let add = ops.iter().position(
            |o| matches!(o, NetOp::AddAddr(a, _) if a.addr == Ipv4Addr::new(203,0,113,3)),
        );
        let del = ops.iter().position(
            |o| matches!(o, NetOp::DelAddr(a, _) if a.addr == Ipv4Addr::new(203,0,113,2)),
        );
        assert_eq!(ops.len(), 2, "{ops:#?}");
        assert!(add.unwrap() < del.unwrap());
    }

    #[test]
    fn stale_default_route_and_foreign_addresses_removed() {
        let cfg = Config::builtin_default();
        let mut st = system();
        st.addrs.push(Addr {
            index: 3,
            addr: Ipv4Addr::new(192, 0, 2, 7),
            prefix: 24,
        });
        st.routes.push(Route {
            table: RT_TABLE_MAIN,
            dst: Ipv4Addr::UNSPECIFIED,
            dst_len: 0,
            gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
            oif: Some(3),
            metric: None,
            protocol: 3,
        });
        let ops = plan(&desired(&cfg, &st).unwrap(), &st);
        assert!(ops.iter().any(
            |o| matches!(o, NetOp::DelRoute(r) if r.gateway == Some(Ipv4Addr::new(192,0,2,1)))
        ));
        assert!(ops
            .iter()
            .any(|o| matches!(o, NetOp::DelAddr(a, _) if a.addr == Ipv4Addr::new(192,0,2,7))));
    }

    #[test]
    fn policy_routing_rule_and_table_then_removed_when_disabled() {
        let mut cfg = Config::builtin_default();
        cfg.policy_routing.enabled = true;
        let mut st = system();
        let ops = plan(&desired(&cfg, &st).unwrap(), &st);
        let rule = ops.iter().find_map(|o| match o {
            NetOp::AddRule(r) => Some(*r),
            _ => None,
        });
        let rule = rule.expect("rule added");
        assert_eq!(
            (rule.table, rule.priority, rule.sport, rule.ip_proto),
            (100, 1000, Some(5060), Some(17))
        );
        assert!(ops
            .iter()
            .any(|o| matches!(o, NetOp::AddRoute(r) if r.table == 100)));
        apply_ops(&mut st, &ops);
        cfg.policy_routing.enabled = false;
        let ops = plan(&desired(&cfg, &st).unwrap(), &st);
        assert_eq!(ops.len(), 2, "{ops:#?}");
        assert!(matches!(ops[0], NetOp::DelRule(_)));
        assert!(matches!(ops[1], NetOp::DelRoute(r) if r.table == 100));
    }

    fn problems(cfg: &Config, st: &NetState) -> Vec<SystemProblem> {
        desired(cfg, st).expect_err("must be rejected")
    }

    #[test]
    fn validation_errors_are_specific() {
        let st = system();
        let mut c = Config::builtin_default();
        c.wan.name = bounded("eth9");
        assert!(
            matches!(&problems(&c, &st)[0], SystemProblem::UnknownInterface { name, .. } if name == "eth9")
        );

        let mut c = Config::builtin_default();
        c.lan.address.prefix = 33;
        // The config's own rules come from validation, with its messages.
        let config_error = |c: &Config, needle: &str| {
            let p = problems(c, &st);
            assert!(
                p.iter()
                    .any(|p| matches!(p, SystemProblem::Config(m) if m.contains(needle))),
                "{needle}: {p:?}"
            );
        };
        config_error(&c, "LAN prefix length /33 is invalid");

        let mut c = Config::builtin_default();
        c.wan.gateway = Some(Ipv4Addr::new(198, 51, 100, 254));
        config_error(&c, "198.51.100.254");

        let mut c = Config::builtin_default();
        c.lan.address = "203.0.113.129/25".parse().unwrap();
        config_error(&c, "overlapping subnets");

        let mut st2 = system();
        st2.links.push(link(4, "dummy0"));
        st2.addrs.push(Addr {
            index: 4,
            addr: Ipv4Addr::new(203, 0, 113, 10),
            prefix: 32,
        });
        let c = Config::builtin_default();
        let p = problems(&c, &st2);
        assert!(
            p.iter()
                .any(|p| matches!(p, SystemProblem::AddressConflict(m) if m.contains("dummy0"))),
            "{p:?}"
        );

        let mut c = Config::builtin_default();
        c.wan.address = "203.0.113.0/24".parse().unwrap();
        config_error(&c, "network or broadcast");

        // The device's own MTU limit is a system fact (validation allows up to 9000).
        let mut small = system();
        for l in small.links.iter_mut().filter(|l| l.name == "eth0") {
            l.max_mtu = Some(1500);
        }
        let mut c = Config::builtin_default();
        c.wan.mtu = 4000;
        assert!(matches!(
            problems(&c, &small)[0],
            SystemProblem::MtuOutOfRange { max: 1500, .. }
        ));

        let mut c = Config::builtin_default();
        c.policy_routing.enabled = true;
        c.policy_routing.table = 254;
        config_error(&c, "policy routing table 254 is reserved");

        // Only system facts remain the planner's: a valid config on a box without its ports.
        let c = Config::builtin_default();
        assert!(crate::config::validate(&c).errors.is_empty());
    }

    #[test]
    fn rollback_desired_restores_snapshot() {
        let cfg = Config::builtin_default();
        let before = system();
        let d = desired(&cfg, &before).unwrap();
        let mut now = before.clone();
        apply_ops(&mut now, &plan(&d, &before));
        assert_ne!(now, before);
        let back = desired_from_state(&before, &d);
        let undo = plan(&back, &now);
        apply_ops(&mut now, &undo);
        assert_eq!(now.addrs, before.addrs);
        assert_eq!(now.routes, before.routes);
        assert_eq!(now.links, before.links);
    }
}
