//! Thin rtnetlink executor: dump links/addresses/routes/rules into a [`NetState`] and
//! apply planner [`NetOp`]s, one acknowledged request each.

use std::net::Ipv4Addr;

use neli::{
    consts::{
        nl::NlmF,
        rtnl::{
            Arphrd, FrAct, Frattr, Frf, Ifa, IfaF, Iff, Ifla, RtAddrFamily, RtScope, RtTable, Rta,
            Rtm, Rtn, Rtprot,
        },
        socket::NlFamily,
    },
    err::RouterError,
    nl::{NlPayload, Nlmsghdr},
    router::synchronous::{NlRouter, NlRouterReceiverHandle},
    rtnl::{
        Fibmsg, FibmsgBuilder, IfaddrmsgBuilder, Ifinfomsg, IfinfomsgBuilder, Rtattr,
        RtattrBuilder, Rtmsg, RtmsgBuilder,
    },
    types::{Buffer, RtBuffer},
    utils::Groups,
    Size, ToBytes,
};

use super::plan::{Addr, Link, NetOp, NetState, Route, Rule};
use super::NetError;

/// An rtnetlink connection (bound to the network namespace of the creating thread).
pub struct Rtnl {
    router: NlRouter,
}

fn build_err(what: &str) -> impl Fn(String) -> NetError + '_ {
    move |e| NetError::Netlink {
        context: what.to_owned(),
        reason: e,
    }
}

/// Turn a router error into a readable reason, with errno text and extended-ack message.
fn router_reason<T, P>(e: RouterError<T, P>) -> String
where
    T: std::fmt::Debug,
    P: std::fmt::Debug,
{
    match e {
        RouterError::Nlmsgerr(m) => {
            let errno = -*m.error();
            let mut s = std::io::Error::from_raw_os_error(errno).to_string();
            for a in m.ext_ack().iter() {
                if u16::from(*a.nla_type().nla_type()) == 1 {
                    let b: &[u8] = a.nla_payload().as_ref();
                    let txt = String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap_or(b));
                    s.push_str(&format!(" (kernel: {txt})"));
                }
            }
            s
        }
        other => format!("{other:?}"),
    }
}

fn attr<T: neli::consts::rtnl::RtaType, P: Size + ToBytes>(
    t: T,
    p: P,
) -> Result<Rtattr<T, Buffer>, NetError> {
    RtattrBuilder::default()
        .rta_type(t)
        .rta_payload(p)
        .build()
        .map_err(|e| build_err("building attribute")(e.to_string()))
}

fn ip4(b: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(b).ok().map(Ipv4Addr::from)
}
fn u32_of(b: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(b).ok().map(u32::from_ne_bytes)
}

fn table_hdr(table: u32) -> RtTable {
    // Tables above 255 only fit in the RTA_TABLE / FRA_TABLE attribute.
    if table < 256 {
        RtTable::from(table as u8)
    } else {
        RtTable::Unspec
    }
}

impl Rtnl {
    /// Open an rtnetlink socket.
    pub fn connect() -> Result<Rtnl, NetError> {
        let (router, _mcast) = NlRouter::connect(NlFamily::Route, None, Groups::empty())
            .map_err(|e| build_err("opening rtnetlink socket")(router_reason(e)))?;
        // Extended acks give the kernel's own explanation; older kernels lack them.
        let _ = router.enable_ext_ack(true);
        Ok(Rtnl { router })
    }

    fn dump<P>(&self, what: &str, ty: Rtm, payload: P) -> Result<Vec<Nlmsghdr<Rtm, P>>, NetError>
    where
        P: Size + ToBytes + neli::FromBytesWithInput<Input = usize> + std::fmt::Debug,
    {
        let recv: NlRouterReceiverHandle<Rtm, P> = self
            .router
            .send(ty, NlmF::DUMP, NlPayload::Payload(payload))
            .map_err(|e| build_err(what)(router_reason(e)))?;
        let mut out = Vec::new();
        for m in recv {
            let m = m.map_err(|e| build_err(what)(router_reason(e)))?;
            if m.get_payload().is_some() {
                out.push(m);
            }
        }
        Ok(out)
    }

    fn request<P>(&self, what: &str, ty: Rtm, flags: NlmF, payload: P) -> Result<(), NetError>
    where
        P: Size + ToBytes + std::fmt::Debug,
    {
        let recv: NlRouterReceiverHandle<Rtm, Buffer> = self
            .router
            .send(ty, flags | NlmF::ACK, NlPayload::Payload(payload))
            .map_err(|e| build_err(what)(router_reason(e)))?;
        for m in recv {
            m.map_err(|e| build_err(what)(router_reason(e)))?;
        }
        Ok(())
    }

    /// Dump links, IPv4 addresses, IPv4 unicast routes (all tables but local) and IPv4 rules.
    pub fn state(&self) -> Result<NetState, NetError> {
        let mut st = NetState::default();
        let msg = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .build()
            .map_err(|e| build_err("building link dump")(e.to_string()))?;
        for m in self.dump("dumping links", Rtm::Getlink, msg)? {
            if let Some(p) = m.get_payload() {
                if let Some(l) = parse_link(p) {
                    st.links.push(l);
                }
            }
        }
        let msg = IfaddrmsgBuilder::default()
            .ifa_family(RtAddrFamily::Inet)
            .ifa_prefixlen(0)
            .ifa_scope(RtScope::Universe)
            .ifa_index(0)
            .build()
            .map_err(|e| build_err("building address dump")(e.to_string()))?;
        for m in self.dump("dumping addresses", Rtm::Getaddr, msg)? {
            let Some(p) = m.get_payload() else { continue };
            if *p.ifa_family() != RtAddrFamily::Inet {
                continue;
            }
            let mut local = None;
            let mut address = None;
            for a in p.rtattrs().iter() {
                match a.rta_type() {
                    Ifa::Local => local = ip4(a.rta_payload().as_ref()),
                    Ifa::Address => address = ip4(a.rta_payload().as_ref()),
                    _ => {}
                }
            }
            if let Some(addr) = local.or(address) {
                st.addrs.push(Addr {
                    index: *p.ifa_index(),
                    addr,
                    prefix: *p.ifa_prefixlen(),
                });
            }
        }
        let msg = RtmsgBuilder::default()
            .rtm_family(RtAddrFamily::Inet)
            .rtm_dst_len(0)
            .rtm_src_len(0)
            .rtm_tos(0)
            .rtm_table(RtTable::Unspec)
            .rtm_protocol(Rtprot::Unspec)
            .rtm_scope(RtScope::Universe)
            .rtm_type(Rtn::Unspec)
            .build()
            .map_err(|e| build_err("building route dump")(e.to_string()))?;
        for m in self.dump("dumping routes", Rtm::Getroute, msg)? {
            if let Some(r) = m.get_payload().and_then(parse_route) {
                st.routes.push(r);
            }
        }
        let msg = FibmsgBuilder::default()
            .fib_family(RtAddrFamily::Inet)
            .fib_dst_len(0)
            .fib_src_len(0)
            .fib_tos(0)
            .fib_table(RtTable::Unspec)
            .fib_action(FrAct::Unspec)
            .build()
            .map_err(|e| build_err("building rule dump")(e.to_string()))?;
        for m in self.dump("dumping rules", Rtm::Getrule, msg)? {
            if let Some(r) = m.get_payload().and_then(parse_rule) {
                st.rules.push(r);
            }
        }
        Ok(st)
    }

    /// Execute one operation (acknowledged by the kernel).
    pub fn apply(&self, op: &NetOp) -> Result<(), NetError> {
        let what = op.to_string();
        let bad = |e: String| NetError::Netlink {
            context: what.clone(),
            reason: e,
        };
        match op {
            NetOp::SetMtu { index, mtu, .. } => {
                let mut attrs = RtBuffer::new();
                attrs.push(attr(Ifla::Mtu, *mtu)?);
                let msg = IfinfomsgBuilder::default()
                    .ifi_family(RtAddrFamily::Unspecified)
                    .ifi_type(Arphrd::from(0))
                    .ifi_index(*index as i32)
                    .rtattrs(attrs)
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                self.request(&what, Rtm::Newlink, NlmF::empty(), msg)
            }
            NetOp::SetUp { index, up, .. } => {
                let b = IfinfomsgBuilder::default()
                    .ifi_family(RtAddrFamily::Unspecified)
                    .ifi_index(*index as i32);
                let b = if *up { b.up() } else { b.down() };
                let msg = b.build().map_err(|e| bad(e.to_string()))?;
                self.request(&what, Rtm::Newlink, NlmF::empty(), msg)
            }
            NetOp::AddAddr(a, _) | NetOp::DelAddr(a, _) => {
                let mut attrs = RtBuffer::new();
                attrs.push(attr(Ifa::Local, a.addr.octets())?);
                attrs.push(attr(Ifa::Address, a.addr.octets())?);
                if matches!(op, NetOp::AddAddr(..)) && a.prefix <= 30 {
                    let brd = crate::config::Ipv4Net {
                        addr: a.addr,
                        prefix: a.prefix,
                    }
                    .broadcast();
                    attrs.push(attr(Ifa::Broadcast, brd.octets())?);
                }
                let msg = IfaddrmsgBuilder::default()
                    .ifa_family(RtAddrFamily::Inet)
                    .ifa_prefixlen(a.prefix)
                    .ifa_flags(IfaF::PERMANENT)
                    .ifa_scope(RtScope::Universe)
                    .ifa_index(a.index)
                    .rtattrs(attrs)
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                if matches!(op, NetOp::AddAddr(..)) {
                    self.request(&what, Rtm::Newaddr, NlmF::CREATE | NlmF::EXCL, msg)
                } else {
                    self.request(&what, Rtm::Deladdr, NlmF::empty(), msg)
                }
            }
            NetOp::AddRoute(r) | NetOp::DelRoute(r) => {
                let add = matches!(op, NetOp::AddRoute(_));
                let mut attrs = RtBuffer::new();
                attrs.push(attr(Rta::Table, r.table)?);
                if r.dst_len > 0 {
                    attrs.push(attr(Rta::Dst, r.dst.octets())?);
                }
                if let Some(g) = r.gateway {
                    attrs.push(attr(Rta::Gateway, g.octets())?);
                }
                if let Some(o) = r.oif {
                    attrs.push(attr(Rta::Oif, o)?);
                }
                if let Some(m) = r.metric {
                    attrs.push(attr(Rta::Priority, m)?);
                }
                let msg = RtmsgBuilder::default()
                    .rtm_family(RtAddrFamily::Inet)
                    .rtm_dst_len(r.dst_len)
                    .rtm_src_len(0)
                    .rtm_tos(0)
                    .rtm_table(table_hdr(r.table))
                    .rtm_protocol(Rtprot::from(r.protocol))
                    .rtm_scope(if add {
                        if r.gateway.is_some() {
                            RtScope::Universe
                        } else {
                            RtScope::Link
                        }
                    } else {
                        RtScope::Nowhere
                    })
                    .rtm_type(Rtn::Unicast)
                    .rtattrs(attrs)
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                if add {
                    self.request(&what, Rtm::Newroute, NlmF::CREATE | NlmF::EXCL, msg)
                } else {
                    self.request(&what, Rtm::Delroute, NlmF::empty(), msg)
                }
            }
            NetOp::AddRule(r) | NetOp::DelRule(r) => {
                let mut attrs = RtBuffer::new();
                attrs.push(attr(Frattr::Priority, r.priority)?);
                attrs.push(attr(Frattr::Table, r.table)?);
                attrs.push(attr(Frattr::Protocol, r.protocol)?);
                if let Some(m) = r.fwmark {
                    attrs.push(attr(Frattr::Fwmark, m)?);
                    attrs.push(attr(Frattr::Fwmask, u32::MAX)?);
                }
                if let Some(p) = r.ip_proto {
                    attrs.push(attr(Frattr::IpProto, p)?);
                }
                if let Some(p) = r.sport {
                    // struct fib_rule_port_range { __u16 start; __u16 end; } in host order.
                    let mut b = [0u8; 4];
                    b[..2].copy_from_slice(&p.to_ne_bytes());
                    b[2..].copy_from_slice(&p.to_ne_bytes());
                    attrs.push(attr(Frattr::SportRange, b)?);
                }
                let msg = FibmsgBuilder::default()
                    .fib_family(RtAddrFamily::Inet)
                    .fib_dst_len(0)
                    .fib_src_len(0)
                    .fib_tos(0)
                    .fib_table(table_hdr(r.table))
                    .fib_action(FrAct::FrActToTbl)
                    .fib_flags(Frf::empty())
                    .rtattrs(attrs)
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                if matches!(op, NetOp::AddRule(_)) {
                    self.request(&what, Rtm::Newrule, NlmF::CREATE | NlmF::EXCL, msg)
                } else {
                    self.request(&what, Rtm::Delrule, NlmF::empty(), msg)
                }
            }
        }
    }
}

fn parse_link(p: &Ifinfomsg) -> Option<Link> {
    let mut name = None;
    let mut mtu = 0;
    let mut min_mtu = None;
    let mut max_mtu = None;
    for a in p.rtattrs().iter() {
        let b: &[u8] = a.rta_payload().as_ref();
        match a.rta_type() {
            Ifla::Ifname => {
                let s = b.split(|c| *c == 0).next().unwrap_or(b);
                name = Some(String::from_utf8_lossy(s).into_owned());
            }
            Ifla::Mtu => mtu = u32_of(b).unwrap_or(0),
            Ifla::MinMtu => min_mtu = u32_of(b),
            Ifla::MaxMtu => max_mtu = u32_of(b),
            _ => {}
        }
    }
    Some(Link {
        index: u32::try_from(*p.ifi_index()).ok()?,
        name: name?,
        up: p.ifi_flags().contains(Iff::UP),
        carrier: p.ifi_flags().contains(Iff::LOWERUP),
        mtu,
        min_mtu,
        max_mtu,
    })
}

fn parse_route(p: &Rtmsg) -> Option<Route> {
    if *p.rtm_family() != RtAddrFamily::Inet || *p.rtm_type() != Rtn::Unicast {
        return None;
    }
    let mut table = u32::from(u8::from(*p.rtm_table()));
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let mut gateway = None;
    let mut oif = None;
    let mut metric = None;
    for a in p.rtattrs().iter() {
        let b: &[u8] = a.rta_payload().as_ref();
        match a.rta_type() {
            Rta::Table => table = u32_of(b).unwrap_or(table),
            Rta::Dst => dst = ip4(b).unwrap_or(dst),
            Rta::Gateway => gateway = ip4(b),
            Rta::Oif => oif = u32_of(b),
            Rta::Priority => metric = u32_of(b),
            _ => {}
        }
    }
    if table == 255 {
        return None;
    }
    Some(Route {
        table,
        dst,
        dst_len: *p.rtm_dst_len(),
        gateway,
        oif,
        metric,
        protocol: u8::from(*p.rtm_protocol()),
    })
}

fn parse_rule(p: &Fibmsg) -> Option<Rule> {
    if *p.fib_family() != RtAddrFamily::Inet {
        return None;
    }
    let mut r = Rule {
        priority: 0,
        table: u32::from(u8::from(*p.fib_table())),
        fwmark: None,
        sport: None,
        ip_proto: None,
        protocol: 0,
        other_selectors: *p.fib_src_len() != 0 || *p.fib_dst_len() != 0 || *p.fib_tos() != 0,
    };
    if *p.fib_action() != FrAct::FrActToTbl {
        r.other_selectors = true;
    }
    for a in p.rtattrs().iter() {
        let b: &[u8] = a.rta_payload().as_ref();
        match a.rta_type() {
            Frattr::Priority => r.priority = u32_of(b).unwrap_or(0),
            Frattr::Table => r.table = u32_of(b).unwrap_or(r.table),
            Frattr::Fwmark => r.fwmark = u32_of(b),
            Frattr::Fwmask if u32_of(b) != Some(u32::MAX) => r.other_selectors = true,
            Frattr::Protocol => r.protocol = b.first().copied().unwrap_or(0),
            Frattr::IpProto => r.ip_proto = b.first().copied(),
            Frattr::SportRange if b.len() == 4 => {
                let lo = u16::from_ne_bytes([b[0], b[1]]);
                let hi = u16::from_ne_bytes([b[2], b[3]]);
                if lo == hi {
                    r.sport = Some(lo);
                } else {
                    r.other_selectors = true;
                }
            }
            Frattr::Iifname | Frattr::Oifname | Frattr::Dst | Frattr::Src | Frattr::DportRange => {
                r.other_selectors = true
            }
            _ => {}
        }
    }
    Some(r)
}
