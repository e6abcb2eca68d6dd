//! Virtual addresses held by the VRRP master (VIPs on WAN, the servers' gateway on LAN):
//! /32 adds and removes on one interface, idempotent, over the same rtnetlink executor as
//! the planner. The planner leaves these addresses alone when HA is on
//! ([`super::plan::Desired::vrrp_owned`]).

use std::net::Ipv4Addr;

use super::plan::{Addr, NetOp, NetState};
use super::rtnl::Rtnl;
use super::NetError;

/// The operations that make `addrs` present (`add`) or absent on interface `ifname` as /32s.
///
/// Present means the address is on that interface with any prefix (the kernel refuses a
/// second copy); absent removes every copy on that interface. Addresses on other
/// interfaces are never touched.
pub fn ops(
    st: &NetState,
    ifname: &str,
    addrs: &[Ipv4Addr],
    add: bool,
) -> Result<Vec<NetOp>, NetError> {
    let link = st.link(ifname).ok_or_else(|| NetError::Netlink {
        context: format!("virtual addresses on {ifname}"),
        reason: format!(
            "interface '{ifname}' does not exist (have: {})",
            st.links
                .iter()
                .map(|l| l.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })?;
    let mut out = Vec::new();
    for ip in addrs {
        let here: Vec<&Addr> = st
            .addrs
            .iter()
            .filter(|a| a.index == link.index && a.addr == *ip)
            .collect();
        if add {
            if here.is_empty() {
                out.push(NetOp::AddAddr(
                    Addr {
                        index: link.index,
                        addr: *ip,
                        prefix: 32,
                    },
                    link.name.clone(),
                ));
            }
        } else {
            out.extend(
                here.into_iter()
                    .map(|a| NetOp::DelAddr(*a, link.name.clone())),
            );
        }
    }
    Ok(out)
}

/// Add (`add`) or remove `addrs` on `ifname`; returns the changes made.
///
/// Connects per call so the handle can live on the VRRP runner's own thread (same network
/// namespace as the daemon).
pub fn set(ifname: &str, addrs: &[Ipv4Addr], add: bool) -> Result<Vec<String>, NetError> {
    let rt = Rtnl::connect()?;
    let st = rt.state()?;
    let todo = ops(&st, ifname, addrs, add)?;
    let mut done = Vec::new();
    for op in &todo {
        rt.apply(op)?;
        done.push(op.to_string());
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::plan::Link;

    fn st() -> NetState {
        let link = |index: u32, name: &str| Link {
            index,
            name: name.into(),
            up: true,
            carrier: true,
            mtu: 1500,
            min_mtu: None,
            max_mtu: None,
        };
        NetState {
            links: vec![link(2, "eth0"), link(3, "eth1")],
            addrs: vec![
                Addr {
                    index: 2,
                    addr: Ipv4Addr::new(203, 0, 113, 2),
                    prefix: 24,
                },
                Addr {
                    index: 2,
                    addr: Ipv4Addr::new(203, 0, 113, 10),
                    prefix: 32,
                },
                // the same address on another interface is not ours to touch
                Addr {
                    index: 3,
                    addr: Ipv4Addr::new(203, 0, 113, 11),
                    prefix: 32,
                },
            ],
            ..NetState::default()
        }
    }

    #[test]
    fn add_only_what_is_missing_as_slash_32() {
        let v = [
            Ipv4Addr::new(203, 0, 113, 10),
            Ipv4Addr::new(203, 0, 113, 11),
        ];
        let o = ops(&st(), "eth0", &v, true).expect("ops");
        assert_eq!(
            o,
            vec![NetOp::AddAddr(
                Addr {
                    index: 2,
                    addr: v[1],
                    prefix: 32
                },
                "eth0".into()
            )]
        );
    }

    #[test]
    fn remove_only_what_is_there_on_that_interface() {
        let v = [
            Ipv4Addr::new(203, 0, 113, 10),
            Ipv4Addr::new(203, 0, 113, 11),
        ];
        let o = ops(&st(), "eth0", &v, false).expect("ops");
        assert_eq!(
            o,
            vec![NetOp::DelAddr(
                Addr {
                    index: 2,
                    addr: v[0],
                    prefix: 32
                },
                "eth0".into()
            )]
        );
        assert!(ops(&st(), "eth0", &[Ipv4Addr::new(192, 0, 2, 9)], false)
            .expect("ops")
            .is_empty());
    }

    #[test]
    fn unknown_interface_is_an_actionable_error() {
        let e = ops(&st(), "eth7", &[], true).expect_err("no eth7");
        let t = e.to_string();
        assert!(t.contains("eth7") && t.contains("eth0, eth1"), "{t}");
    }
}
