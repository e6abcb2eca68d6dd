//! Conclusions drawn from captured packets only (never from the appliance's
//! own report): which server each call reached, calls split across servers,
//! new calls reaching a server after some instant, reply source addresses.
//!
//! "Client traffic" is a packet whose source or destination is in the WAN
//! subnet 203.0.113.0/24; the appliance's own OPTIONS probes (from its LAN
//! address) are left out.

use super::pcap::{SipKind, SipPacket};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

fn on_wan(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[0] == 203 && o[1] == 0 && o[2] == 113
}

/// Whether a packet belongs to client traffic (not the appliance's probes).
pub fn is_client_traffic(p: &SipPacket) -> bool {
    on_wan(*p.src.ip()) || on_wan(*p.dst.ip())
}

/// What reached one server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Call-IDs of client traffic that reached it.
    pub calls: BTreeSet<String>,
    /// Calls whose first packet (the initial INVITE) reached it.
    pub new_calls: BTreeSet<String>,
    /// Client-traffic packets that reached it.
    pub packets: usize,
    /// Client-traffic packets it sent back.
    pub replies: usize,
}

/// Per server: the calls and packets of client traffic that reached it, from
/// a capture on the LAN side (server ports or the appliance's LAN attachment).
pub fn per_server(packets: &[SipPacket], servers: &[Ipv4Addr]) -> BTreeMap<Ipv4Addr, Tally> {
    let mut out: BTreeMap<Ipv4Addr, Tally> =
        servers.iter().map(|s| (*s, Tally::default())).collect();
    for (call, (server, _)) in first_arrivals(packets, servers) {
        if let Some(t) = out.get_mut(&server) {
            t.new_calls.insert(call);
        }
    }
    for p in packets.iter().filter(|p| is_client_traffic(p)) {
        if let Some(t) = out.get_mut(p.dst.ip()) {
            t.calls.insert(p.call_id.clone());
            t.packets += 1;
        } else if let Some(t) = out.get_mut(p.src.ip()) {
            t.replies += 1;
        }
    }
    out
}

/// For each call (by Call-ID): the server its first packet reached and when
/// (capture time, µs since the epoch). Only calls that start with an INVITE.
pub fn first_arrivals(
    packets: &[SipPacket],
    servers: &[Ipv4Addr],
) -> BTreeMap<String, (Ipv4Addr, u64)> {
    let mut first: BTreeMap<String, (Ipv4Addr, u64)> = BTreeMap::new();
    for p in packets
        .iter()
        .filter(|p| is_client_traffic(p) && servers.contains(p.dst.ip()))
    {
        let is_initial = p.is_request("INVITE") && p.cseq_method == "INVITE";
        match first.get(&p.call_id) {
            Some(&(_, t)) if t <= p.ts_us => {}
            _ if is_initial || first.contains_key(&p.call_id) => {
                first.insert(p.call_id.clone(), (*p.dst.ip(), p.ts_us));
            }
            _ => {}
        }
    }
    first
}

/// Calls whose packets reached more than one server, with those servers:
/// persistence violations.
pub fn split_calls(packets: &[SipPacket], servers: &[Ipv4Addr]) -> Vec<(String, Vec<Ipv4Addr>)> {
    let mut seen: BTreeMap<&str, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    for p in packets
        .iter()
        .filter(|p| is_client_traffic(p) && servers.contains(p.dst.ip()))
    {
        seen.entry(&p.call_id).or_default().insert(*p.dst.ip());
    }
    seen.into_iter()
        .filter(|(_, s)| s.len() > 1)
        .map(|(c, s)| (c.to_owned(), s.into_iter().collect()))
        .collect()
}

/// Calls that started (first INVITE) at `server` at or after `after_us`.
pub fn new_calls_after(
    packets: &[SipPacket],
    servers: &[Ipv4Addr],
    server: Ipv4Addr,
    after_us: u64,
) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = first_arrivals(packets, servers)
        .into_iter()
        .filter(|(_, (s, t))| *s == server && *t >= after_us)
        .map(|(c, (_, t))| (c, t))
        .collect();
    v.sort_by_key(|(_, t)| *t);
    v
}

/// Detection figure for the benchmarks: microseconds from `failed_at_us`
/// to the last new call that still reached `server` (0 if none did).
pub fn steering_window_us(
    packets: &[SipPacket],
    servers: &[Ipv4Addr],
    server: Ipv4Addr,
    failed_at_us: u64,
) -> u64 {
    new_calls_after(packets, servers, server, failed_at_us)
        .last()
        .map(|(_, t)| t - failed_at_us)
        .unwrap_or(0)
}

/// Source addresses of responses and requests coming from port 5060 to a
/// client address, from a capture on the client (WAN) side.
pub fn sources_towards_clients(packets: &[SipPacket]) -> BTreeMap<Ipv4Addr, usize> {
    let mut m = BTreeMap::new();
    for p in packets
        .iter()
        .filter(|p| on_wan(*p.dst.ip()) && p.dst.ip().octets()[3] >= 100 && p.src.port() == 5060)
    {
        *m.entry(*p.src.ip()).or_insert(0) += 1;
    }
    m
}

/// Calls (by Call-ID) that completed with a 200 to their BYE, as seen in a capture.
pub fn completed_calls(packets: &[SipPacket]) -> BTreeSet<String> {
    packets
        .iter()
        .filter(|p| p.kind == SipKind::Response(200) && p.cseq_method == "BYE")
        .map(|p| p.call_id.clone())
        .collect()
}

/// The packets to or from one client address.
pub fn from_client(packets: &[SipPacket], client: Ipv4Addr) -> Vec<SipPacket> {
    packets
        .iter()
        .filter(|p| *p.src.ip() == client || *p.dst.ip() == client)
        .cloned()
        .collect()
}

/// When each call started: its first initial INVITE sent by a client
/// (by Call-ID, capture time in µs), from any capture.
pub fn call_starts(packets: &[SipPacket]) -> BTreeMap<String, u64> {
    let mut m: BTreeMap<String, u64> = BTreeMap::new();
    for p in packets
        .iter()
        .filter(|p| on_wan(*p.src.ip()) && p.is_request("INVITE") && p.cseq_method == "INVITE")
    {
        let e = m.entry(p.call_id.clone()).or_insert(p.ts_us);
        *e = (*e).min(p.ts_us);
    }
    m
}

/// Calls started at or after `from_us` (and before `to_us`) that never
/// completed (no 200 to a BYE in the same capture).
pub fn incomplete_calls_between(packets: &[SipPacket], from_us: u64, to_us: u64) -> Vec<String> {
    let done = completed_calls(packets);
    call_starts(packets)
        .into_iter()
        .filter(|(c, t)| *t >= from_us && *t < to_us && !done.contains(c))
        .map(|(c, _)| c)
        .collect()
}

/// Spread: the largest count minus the smallest.
pub fn max_spread(counts: &[usize]) -> usize {
    match (counts.iter().max(), counts.iter().min()) {
        (Some(a), Some(b)) => a - b,
        _ => 0,
    }
}

/// What became of a failed server's calls, from a LAN capture (appliance ↔
/// servers) and a WAN capture (client side) of one failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFates {
    /// Calls caught by the failure: their initial INVITE reached the victim
    /// (first, before any other server) before `to_us`, and the victim had
    /// sent no final response to it before the failure. They can only
    /// complete if a retransmission is scheduled to a live server.
    pub caught: BTreeSet<String>,
    /// Caught calls that completed (200 to their BYE at the client) after an
    /// INVITE of theirs reached a live server.
    pub rescued: BTreeSet<String>,
    /// The victim's established calls: it had answered their INVITE with a
    /// 200 before the failure and had not yet answered their BYE.
    pub established: BTreeSet<String>,
    /// Established calls that completed on the victim: it answered their BYE
    /// with a 200, the client saw a 200 to the BYE, and no in-dialog request
    /// of theirs reached another server.
    pub established_kept: BTreeSet<String>,
    /// Established calls whose in-dialog requests reached another server
    /// (which does not know the dialog).
    pub established_moved: BTreeSet<String>,
}

fn answered_by(
    lan: &[SipPacket],
    server: Ipv4Addr,
    cseq: &str,
    ok_only: bool,
    before_us: u64,
) -> BTreeSet<String> {
    lan.iter()
        .filter(|p| *p.src.ip() == server && p.ts_us < before_us && p.cseq_method == cseq)
        .filter(|p| match p.kind {
            SipKind::Response(c) => {
                if ok_only {
                    (200..300).contains(&c)
                } else {
                    c >= 200
                }
            }
            SipKind::Request(_) => false,
        })
        .map(|p| p.call_id.clone())
        .collect()
}

/// Sorts the calls touched by `victim`'s failure at `from_us` (until it was
/// restored at `to_us`) into caught/rescued and established/kept/moved.
pub fn call_fates(
    lan: &[SipPacket],
    wan: &[SipPacket],
    servers: &[Ipv4Addr],
    victim: Ipv4Addr,
    from_us: u64,
    to_us: u64,
) -> CallFates {
    let done = completed_calls(wan);
    let first = first_arrivals(lan, servers);
    let answered_before = answered_by(lan, victim, "INVITE", false, from_us);
    let ok_before = answered_by(lan, victim, "INVITE", true, from_us);
    let bye_before = answered_by(lan, victim, "BYE", false, from_us);
    let bye_ok = answered_by(lan, victim, "BYE", true, u64::MAX);
    let client = |p: &&SipPacket| is_client_traffic(p) && servers.contains(p.dst.ip());
    let reached_live: BTreeSet<&str> = lan
        .iter()
        .filter(client)
        .filter(|p| *p.dst.ip() != victim)
        .map(|p| p.call_id.as_str())
        .collect();
    let live_invites: BTreeSet<&str> = lan
        .iter()
        .filter(client)
        .filter(|p| *p.dst.ip() != victim && p.is_request("INVITE"))
        .map(|p| p.call_id.as_str())
        .collect();
    let mut f = CallFates::default();
    for (call, (server, t)) in first {
        if server != victim || t >= to_us {
            continue;
        }
        if !answered_before.contains(&call) {
            if live_invites.contains(call.as_str()) && done.contains(&call) {
                f.rescued.insert(call.clone());
            }
            f.caught.insert(call);
        } else if ok_before.contains(&call) && !bye_before.contains(&call) {
            let moved = reached_live.contains(call.as_str());
            if moved {
                f.established_moved.insert(call.clone());
            } else if bye_ok.contains(&call) && done.contains(&call) {
                f.established_kept.insert(call.clone());
            }
            f.established.insert(call);
        }
    }
    f
}

/// A per-server table in markdown-ish text, for test output and the demo.
pub fn table(tallies: &BTreeMap<Ipv4Addr, Tally>) -> String {
    let mut s = String::from("server            calls  new  pkts-in  pkts-out\n");
    for (a, t) in tallies {
        s.push_str(&format!(
            "{:<16} {:>6} {:>4} {:>8} {:>9}\n",
            a.to_string(),
            t.calls.len(),
            t.new_calls.len(),
            t.packets,
            t.replies
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(ts: u64, src: &str, dst: &str, req: Option<&str>, cid: &str, cseq: &str) -> SipPacket {
        SipPacket {
            ts_us: ts,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            kind: match req {
                Some(m) => SipKind::Request(m.into()),
                None => SipKind::Response(200),
            },
            call_id: cid.into(),
            cseq_method: cseq.into(),
        }
    }

    const C: &str = "203.0.113.100:5061";
    const S1: &str = "198.51.100.11:5060";
    const S2: &str = "198.51.100.12:5060";

    fn servers() -> Vec<Ipv4Addr> {
        vec![
            "198.51.100.11".parse().unwrap(),
            "198.51.100.12".parse().unwrap(),
        ]
    }

    #[test]
    fn tallies_and_splits() {
        let p = vec![
            pkt(1, C, S1, Some("INVITE"), "a", "INVITE"),
            pkt(2, S1, C, None, "a", "INVITE"),
            pkt(3, C, S1, Some("ACK"), "a", "ACK"),
            pkt(4, C, S2, Some("INVITE"), "b", "INVITE"),
            pkt(5, C, S1, Some("BYE"), "b", "BYE"), // split!
            // prober traffic is ignored
            pkt(6, "198.51.100.1:40000", S2, Some("OPTIONS"), "p", "OPTIONS"),
        ];
        let t = per_server(&p, &servers());
        let s1 = &t[&servers()[0]];
        assert_eq!(s1.packets, 3);
        assert_eq!(s1.replies, 1);
        assert_eq!(s1.new_calls.len(), 1);
        assert_eq!(s1.calls.len(), 2);
        assert_eq!(t[&servers()[1]].packets, 1);
        assert_eq!(
            split_calls(&p, &servers()),
            vec![("b".to_string(), servers())]
        );
        assert_eq!(
            new_calls_after(&p, &servers(), servers()[1], 2),
            vec![("b".to_string(), 4)]
        );
        assert_eq!(steering_window_us(&p, &servers(), servers()[1], 2), 2);
        assert_eq!(steering_window_us(&p, &servers(), servers()[1], 5), 0);
        assert_eq!(max_spread(&[3, 4, 3]), 1);
    }

    fn resp(ts: u64, src: &str, dst: &str, code: u16, cid: &str, cseq: &str) -> SipPacket {
        SipPacket {
            kind: SipKind::Response(code),
            ..pkt(ts, src, dst, None, cid, cseq)
        }
    }

    #[test]
    fn fates_of_a_failed_servers_calls() {
        let s = servers();
        // S1 fails at t=100 and is restored at t=500.
        let lan = vec![
            // "est": established on S1 before, BYE after the failure goes to S2 (moved).
            pkt(1, C, S1, Some("INVITE"), "est", "INVITE"),
            resp(2, S1, C, 200, "est", "INVITE"),
            pkt(150, C, S2, Some("BYE"), "est", "BYE"),
            resp(151, S2, C, 481, "est", "BYE"),
            // "kept": established on S1, its BYE answered by S1 itself.
            pkt(3, C, S1, Some("INVITE"), "kept", "INVITE"),
            resp(4, S1, C, 200, "kept", "INVITE"),
            pkt(600, C, S1, Some("BYE"), "kept", "BYE"),
            resp(601, S1, C, 200, "kept", "BYE"),
            // "over": ended before the failure: neither caught nor established.
            pkt(5, C, S1, Some("INVITE"), "over", "INVITE"),
            resp(6, S1, C, 200, "over", "INVITE"),
            pkt(7, C, S1, Some("BYE"), "over", "BYE"),
            resp(8, S1, C, 200, "over", "BYE"),
            // "mid": INVITE reached S1 just before the failure, unanswered; retransmission
            // rescheduled to S2, which completes it.
            pkt(90, C, S1, Some("INVITE"), "mid", "INVITE"),
            pkt(200, C, S2, Some("INVITE"), "mid", "INVITE"),
            resp(201, S2, C, 200, "mid", "INVITE"),
            pkt(300, C, S2, Some("BYE"), "mid", "BYE"),
            resp(301, S2, C, 200, "mid", "BYE"),
            // "lost": INVITE reached S1 in its window, every retransmission too.
            pkt(120, C, S1, Some("INVITE"), "lost", "INVITE"),
            pkt(170, C, S1, Some("INVITE"), "lost", "INVITE"),
            // "late": a new call on S1 after it was restored: not the failure's.
            pkt(700, C, S1, Some("INVITE"), "late", "INVITE"),
            // "other": a call on S2 throughout.
            pkt(130, C, S2, Some("INVITE"), "other", "INVITE"),
        ];
        let wan = vec![
            resp(302, "203.0.113.10:5060", C, 200, "mid", "BYE"),
            resp(602, "203.0.113.10:5060", C, 200, "kept", "BYE"),
            resp(9, "203.0.113.10:5060", C, 200, "over", "BYE"),
        ];
        let f = call_fates(&lan, &wan, &s, s[0], 100, 500);
        let set = |v: &[&str]| v.iter().map(|c| c.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(f.caught, set(&["lost", "mid"]));
        assert_eq!(f.rescued, set(&["mid"]));
        assert_eq!(f.established, set(&["est", "kept"]));
        assert_eq!(f.established_kept, set(&["kept"]));
        assert_eq!(f.established_moved, set(&["est"]));
    }

    #[test]
    fn reply_sources() {
        let p = vec![
            pkt(1, "203.0.113.10:5060", C, None, "a", "INVITE"),
            pkt(2, S1, C, None, "b", "INVITE"),
            pkt(3, C, "203.0.113.10:5060", Some("ACK"), "a", "ACK"),
        ];
        let m = sources_towards_clients(&p);
        assert_eq!(m.len(), 2);
        assert_eq!(m[&"203.0.113.10".parse::<Ipv4Addr>().unwrap()], 1);
    }
}
