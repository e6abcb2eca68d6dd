//! Conclusions about an HA pair drawn from captured frames only (never from
//! the boxes' own reports): who advertised as VRRP master and when, who
//! resigned, gratuitous ARPs, which box (by MAC) carried client SIP traffic,
//! and what happened to each call around a failure.

use super::evidence::is_client_traffic;
use super::frames::{Advert, Frame, Mac, Payload};
use super::pcap::{SipKind, SipPacket};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// Adverts of `vrid` in `[from_us, to_us)`: (time, source MAC, advert).
pub fn adverts(frames: &[Frame], vrid: u8, from_us: u64, to_us: u64) -> Vec<(u64, Mac, &Advert)> {
    frames
        .iter()
        .filter(|f| f.ts_us >= from_us && f.ts_us < to_us)
        .filter_map(|f| match &f.payload {
            Payload::Vrrp(a) if a.vrid == vrid => Some((f.ts_us, f.src_mac, a)),
            _ => None,
        })
        .collect()
}

/// What one sender advertised in a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdvertTally {
    /// Adverts with priority > 0.
    pub count: usize,
    /// Priorities seen (> 0).
    pub priorities: BTreeSet<u8>,
    /// Resignations (priority 0).
    pub resigned: usize,
    /// First and last advert with priority > 0 (µs).
    pub first_us: u64,
    /// See `first_us`.
    pub last_us: u64,
    /// Adverts whose checksum did not verify or whose TTL was not 255.
    pub malformed: usize,
    /// Versions seen.
    pub versions: BTreeSet<u8>,
    /// Advert intervals seen (cs).
    pub intervals_cs: BTreeSet<u16>,
}

/// Per sender address: its adverts of `vrid` in the window.
pub fn advertisers(
    frames: &[Frame],
    vrid: u8,
    from_us: u64,
    to_us: u64,
) -> BTreeMap<Ipv4Addr, AdvertTally> {
    let mut m: BTreeMap<Ipv4Addr, AdvertTally> = BTreeMap::new();
    for (ts, _, a) in adverts(frames, vrid, from_us, to_us) {
        let t = m.entry(a.src).or_default();
        t.versions.insert(a.version);
        t.intervals_cs.insert(a.interval_cs);
        if !a.checksum_ok || a.ttl != 255 {
            t.malformed += 1;
        }
        if a.priority == 0 {
            t.resigned += 1;
            continue;
        }
        if t.count == 0 {
            t.first_us = ts;
        }
        t.count += 1;
        t.last_us = ts;
        t.priorities.insert(a.priority);
    }
    m
}

/// Addresses that advertised as master (priority > 0) in the window.
pub fn masters(frames: &[Frame], vrid: u8, from_us: u64, to_us: u64) -> BTreeSet<Ipv4Addr> {
    advertisers(frames, vrid, from_us, to_us)
        .into_iter()
        .filter(|(_, t)| t.count > 0)
        .map(|(a, _)| a)
        .collect()
}

/// Every change of advertising master (priority > 0) in the window, in
/// time order, starting with the first sender heard: (time, new master).
pub fn master_changes(
    frames: &[Frame],
    vrid: u8,
    from_us: u64,
    to_us: u64,
) -> Vec<(u64, Ipv4Addr)> {
    let mut out: Vec<(u64, Ipv4Addr)> = Vec::new();
    for (ts, _, a) in adverts(frames, vrid, from_us, to_us) {
        if a.priority == 0 {
            continue;
        }
        if out.last().map(|(_, s)| *s) != Some(a.src) {
            out.push((ts, a.src));
        }
    }
    out
}

/// First advert with priority > 0 from `src` at or after `from_us`.
pub fn first_advert_from(frames: &[Frame], vrid: u8, src: Ipv4Addr, from_us: u64) -> Option<u64> {
    adverts(frames, vrid, from_us, u64::MAX)
        .into_iter()
        .find(|(_, _, a)| a.src == src && a.priority > 0)
        .map(|(t, _, _)| t)
}

/// Last advert with priority > 0 from `src` before `before_us`.
pub fn last_advert_from(frames: &[Frame], vrid: u8, src: Ipv4Addr, before_us: u64) -> Option<u64> {
    adverts(frames, vrid, 0, before_us)
        .into_iter()
        .rev()
        .find(|(_, _, a)| a.src == src && a.priority > 0)
        .map(|(t, _, _)| t)
}

/// Priority-0 adverts (resignations) in the window: (time, source).
pub fn resignations(frames: &[Frame], vrid: u8, from_us: u64, to_us: u64) -> Vec<(u64, Ipv4Addr)> {
    adverts(frames, vrid, from_us, to_us)
        .into_iter()
        .filter(|(_, _, a)| a.priority == 0)
        .map(|(t, _, a)| (t, a.src))
        .collect()
}

/// Gratuitous ARPs announcing `addr` in the window: (time, announced MAC).
pub fn garps(frames: &[Frame], addr: Ipv4Addr, from_us: u64, to_us: u64) -> Vec<(u64, Mac)> {
    frames
        .iter()
        .filter(|f| f.ts_us >= from_us && f.ts_us < to_us)
        .filter_map(|f| match &f.payload {
            Payload::Arp(a) if a.is_gratuitous() && a.sender_ip == addr => {
                Some((f.ts_us, a.sender_mac))
            }
            _ => None,
        })
        .collect()
}

/// Client-traffic SIP frames sent from or to `mac`, in time order.
pub fn sip_via(frames: &[Frame], mac: Mac) -> Vec<(u64, &SipPacket)> {
    frames
        .iter()
        .filter(|f| f.src_mac == mac || f.dst_mac == mac)
        .filter_map(|f| match &f.payload {
            Payload::Sip(p) if is_client_traffic(p) => Some((f.ts_us, p)),
            _ => None,
        })
        .collect()
}

/// The SIP packets of a frame list (for the call analysis).
pub fn sip_packets(frames: &[Frame]) -> Vec<SipPacket> {
    frames
        .iter()
        .filter_map(|f| match &f.payload {
            Payload::Sip(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

/// Path switch-over seen in captures: the last client SIP frame through the
/// old box and the first through the new box at or after `from_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switchover {
    /// Last client frame through the old box before the first through the new one (µs).
    pub last_old_us: Option<u64>,
    /// First client frame through the new box at or after `from_us` (µs).
    pub first_new_us: Option<u64>,
    /// Client frames through the old box after `first_new_us` + settle.
    pub old_after_settle: usize,
    /// Client frames through the new box before `from_us` (it was backup then).
    pub new_before: usize,
}

impl Switchover {
    /// Milliseconds between the last frame through the old box and the
    /// first through the new one.
    pub fn gap_ms(&self) -> Option<u64> {
        Some(self.first_new_us?.saturating_sub(self.last_old_us?) / 1000)
    }
}

/// Measures the switch-over from `old` to `new` (MACs of the boxes on the
/// captured link) for a failure at `from_us`; frames through the old box
/// more than `settle_us` after the first one through the new box count as
/// `old_after_settle` (two boxes forwarding).
pub fn switchover(
    frames: &[Frame],
    old: Mac,
    new: Mac,
    from_us: u64,
    settle_us: u64,
) -> Switchover {
    let old_v = sip_via(frames, old);
    let new_v = sip_via(frames, new);
    let first_new = new_v.iter().map(|(t, _)| *t).find(|t| *t >= from_us);
    let last_old = match first_new {
        Some(f) => old_v.iter().map(|(t, _)| *t).filter(|t| *t <= f).max(),
        None => old_v.iter().map(|(t, _)| *t).max(),
    };
    let old_after_settle = match first_new {
        Some(f) => old_v.iter().filter(|(t, _)| *t > f + settle_us).count(),
        None => 0,
    };
    Switchover {
        last_old_us: last_old,
        first_new_us: first_new,
        old_after_settle,
        new_before: new_v.iter().filter(|(t, _)| *t < from_us).count(),
    }
}

/// One call as the captures saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallRecord {
    /// First initial INVITE (client side), µs.
    pub invite_us: u64,
    /// First 200 to the initial INVITE (client side), µs.
    pub answered_us: Option<u64>,
    /// Whether the BYE got a 200 (client side).
    pub completed: bool,
    /// When the BYE's first 200 reached the client, µs.
    pub completed_us: Option<u64>,
    /// Servers its requests reached (LAN side).
    pub servers: BTreeSet<Ipv4Addr>,
    /// Whether a server answered one of its requests with 481 (a request
    /// that reached a server that did not know the dialog).
    pub got_481: bool,
}

/// Calls (by Call-ID) from a client-side capture (`wan`) and server-side
/// captures (`lan`); only calls whose initial INVITE the client capture holds.
pub fn calls(
    wan: &[SipPacket],
    lan: &[SipPacket],
    servers: &[Ipv4Addr],
) -> BTreeMap<String, CallRecord> {
    let mut m: BTreeMap<String, CallRecord> = BTreeMap::new();
    let mut sorted: Vec<&SipPacket> = wan.iter().filter(|p| is_client_traffic(p)).collect();
    sorted.sort_by_key(|p| p.ts_us);
    for p in sorted {
        match &p.kind {
            SipKind::Request(r) if r == "INVITE" && p.cseq_method == "INVITE" => {
                m.entry(p.call_id.clone()).or_insert_with(|| CallRecord {
                    invite_us: p.ts_us,
                    ..CallRecord::default()
                });
            }
            SipKind::Response(200) => {
                if let Some(c) = m.get_mut(&p.call_id) {
                    // The first INVITE of the call has CSeq 1; re-INVITEs have higher CSeq
                    // numbers but the same method, so only the first 200 counts.
                    if p.cseq_method == "INVITE" && c.answered_us.is_none() {
                        c.answered_us = Some(p.ts_us);
                    }
                    if p.cseq_method == "BYE" {
                        c.completed = true;
                        c.completed_us.get_or_insert(p.ts_us);
                    }
                }
            }
            _ => {}
        }
    }
    for p in lan.iter().filter(|p| is_client_traffic(p)) {
        let Some(c) = m.get_mut(&p.call_id) else {
            continue;
        };
        if let SipKind::Request(_) = p.kind {
            if servers.contains(p.dst.ip()) {
                c.servers.insert(*p.dst.ip());
            }
        }
        if p.kind == SipKind::Response(481) {
            c.got_481 = true;
        }
    }
    m
}

/// Figures of one failure, from [`calls`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFigures {
    /// Calls whose initial INVITE was sent in the analysed window.
    pub calls: usize,
    /// Of those, completed (200 to BYE).
    pub completed: usize,
    /// Calls started at or after the failure that did not complete.
    pub new_failed: Vec<String>,
    /// Calls answered before the failure whose later requests reached another
    /// server than their INVITE.
    pub inflight_split: Vec<String>,
    /// The subset of `inflight_split` answered within `recent_us` before the failure.
    pub inflight_split_recent: Vec<String>,
    /// Calls answered before the failure that did not complete.
    pub inflight_failed: Vec<String>,
    /// The subset of `inflight_failed` answered within `recent_us` before the failure.
    pub inflight_failed_recent: Vec<String>,
    /// Calls started before the failure but not answered by then, and not completed.
    pub setup_failed: Vec<String>,
    /// Calls started at or after `failure + bound` that did not complete.
    pub failed_after_bound: Vec<String>,
    /// Calls that got a 481 from a server.
    pub got_481: usize,
    /// Calls (any) whose requests reached more than one server.
    pub split_any: Vec<String>,
    /// Calls in progress at the failure: answered before it, not ended (BYE answered)
    /// before it. The base of the switched share.
    pub inflight: usize,
    /// Of `inflight`, those that completed after the failure.
    pub inflight_completed: usize,
}

impl CallFigures {
    /// In-progress calls that switched server, as a percentage of the in-progress calls.
    pub fn switched_pct(&self) -> f64 {
        if self.inflight == 0 {
            return 0.0;
        }
        100.0 * self.inflight_split.len() as f64 / self.inflight as f64
    }
}

/// Classifies calls around a failure at `t0_us`. `recent_us` marks calls set
/// up shortly before the failure (connection sync lag), `bound_us` the time
/// after which every new call must succeed.
pub fn call_figures(
    calls: &BTreeMap<String, CallRecord>,
    t0_us: u64,
    recent_us: u64,
    bound_us: u64,
) -> CallFigures {
    let mut f = CallFigures::default();
    for (id, c) in calls {
        f.calls += 1;
        if c.completed {
            f.completed += 1;
        }
        if c.got_481 {
            f.got_481 += 1;
        }
        if c.servers.len() > 1 {
            f.split_any.push(id.clone());
        }
        let recent = |t: u64| t + recent_us >= t0_us;
        match c.answered_us {
            Some(a) if a < t0_us => {
                if c.completed_us.is_none_or(|e| e >= t0_us) {
                    f.inflight += 1;
                    if c.completed {
                        f.inflight_completed += 1;
                    }
                }
                if c.servers.len() > 1 {
                    f.inflight_split.push(id.clone());
                    if recent(a) {
                        f.inflight_split_recent.push(id.clone());
                    }
                }
                if !c.completed {
                    f.inflight_failed.push(id.clone());
                    if recent(a) {
                        f.inflight_failed_recent.push(id.clone());
                    }
                }
            }
            _ if c.invite_us < t0_us => {
                if !c.completed {
                    f.setup_failed.push(id.clone());
                }
            }
            _ => {
                if !c.completed {
                    f.new_failed.push(id.clone());
                    if c.invite_us >= t0_us + bound_us {
                        f.failed_after_bound.push(id.clone());
                    }
                }
            }
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::frames::{build_v3_frame, parse};

    fn pcap_of(frames: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let mut d = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        d.extend_from_slice(&[0; 8]);
        d.extend_from_slice(&65535u32.to_le_bytes());
        d.extend_from_slice(&1u32.to_le_bytes());
        for (us, f) in frames {
            d.extend_from_slice(&((us / 1_000_000) as u32).to_le_bytes());
            d.extend_from_slice(&((us % 1_000_000) as u32).to_le_bytes());
            d.extend_from_slice(&(f.len() as u32).to_le_bytes());
            d.extend_from_slice(&(f.len() as u32).to_le_bytes());
            d.extend_from_slice(f);
        }
        d
    }

    const A: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
    const B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 3);
    const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

    fn adv(us: u64, mac: u8, src: Ipv4Addr, prio: u8) -> (u64, Vec<u8>) {
        (
            us,
            build_v3_frame(Mac([2, 0, 0, 0, 0, mac]), src, 51, prio, 20, &[VIP]),
        )
    }

    #[test]
    fn masters_changes_and_resignation() {
        let f = parse(&pcap_of(&[
            adv(1_000_000, 0xa, A, 150),
            adv(1_200_000, 0xa, A, 150),
            adv(1_300_000, 0xa, A, 0),
            adv(1_400_000, 0xb, B, 100),
            adv(1_600_000, 0xb, B, 100),
            (1_700_000, build_v3_frame(Mac([9; 6]), A, 52, 200, 20, &[])), // other vrid
        ]))
        .unwrap();
        assert_eq!(masters(&f, 51, 0, u64::MAX), [A, B].into_iter().collect());
        assert_eq!(
            masters(&f, 51, 1_350_000, u64::MAX),
            [B].into_iter().collect()
        );
        assert_eq!(
            master_changes(&f, 51, 0, u64::MAX),
            vec![(1_000_000, A), (1_400_000, B)]
        );
        assert_eq!(resignations(&f, 51, 0, u64::MAX), vec![(1_300_000, A)]);
        assert_eq!(first_advert_from(&f, 51, B, 0), Some(1_400_000));
        assert_eq!(last_advert_from(&f, 51, A, u64::MAX), Some(1_200_000));
        let t = &advertisers(&f, 51, 0, u64::MAX)[&A];
        assert_eq!((t.count, t.resigned, t.malformed), (2, 1, 0));
        assert_eq!(t.priorities, [150].into_iter().collect());
    }

    fn sip_frame(us: u64, src_mac: u8, dst_mac: u8, src: [u8; 4], dst: [u8; 4]) -> (u64, Vec<u8>) {
        let payload = b"UPDATE sip:s@203.0.113.10 SIP/2.0\r\nCall-ID: c1\r\nCSeq: 2 UPDATE\r\n\r\n";
        let mut f = vec![2, 0, 0, 0, 0, dst_mac, 2, 0, 0, 0, 0, src_mac, 0x08, 0x00];
        let total = (20 + 8 + payload.len()) as u16;
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&5061u16.to_be_bytes());
        f.extend_from_slice(&5060u16.to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        (us, f)
    }

    #[test]
    fn switchover_from_macs() {
        // Client 203.0.113.100 -> server 198.51.100.11, forwarded by box 0xa
        // (LAN MAC ...0a) then by box 0xb; one late frame through 0xa again.
        let (c, s) = ([203, 0, 113, 100], [198, 51, 100, 11]);
        let f = parse(&pcap_of(&[
            sip_frame(1_000_000, 0xa, 0x11, c, s),
            sip_frame(2_000_000, 0xa, 0x11, c, s),
            sip_frame(3_500_000, 0xb, 0x11, c, s),
            sip_frame(3_600_000, 0x11, 0xb, s, c),
            sip_frame(9_000_000, 0xa, 0x11, c, s),
        ]))
        .unwrap();
        let (old, new) = (Mac([2, 0, 0, 0, 0, 0xa]), Mac([2, 0, 0, 0, 0, 0xb]));
        let sw = switchover(&f, old, new, 3_000_000, 2_000_000);
        assert_eq!(sw.first_new_us, Some(3_500_000));
        assert_eq!(sw.last_old_us, Some(2_000_000));
        assert_eq!(sw.gap_ms(), Some(1500));
        assert_eq!(sw.old_after_settle, 1);
        assert_eq!(sw.new_before, 0);
        assert_eq!(sip_via(&f, new).len(), 2);
        assert_eq!(sip_packets(&f).len(), 5);
    }

    fn call(invite: u64, answered: Option<u64>, completed: bool, servers: &[u8]) -> CallRecord {
        CallRecord {
            invite_us: invite,
            answered_us: answered,
            completed,
            // A completed call ends 20 s after its INVITE (after the failure at 10 s).
            completed_us: completed.then_some(invite + 20_000_000),
            servers: servers
                .iter()
                .map(|s| Ipv4Addr::new(198, 51, 100, *s))
                .collect(),
            got_481: false,
        }
    }

    #[test]
    fn classifies_calls_around_a_failure() {
        let s = 1_000_000;
        let m: BTreeMap<String, CallRecord> = [
            ("old-ok", call(s, Some(s + 10), true, &[11])),
            ("old-split", call(s, Some(s + 10), false, &[11, 12])),
            (
                "recent-split",
                call(9 * s, Some(9 * s + 500_000), false, &[11, 13]),
            ),
            ("setup-lost", call(10 * s - 1, None, false, &[])),
            ("new-failed", call(11 * s, None, false, &[])),
            ("late-failed", call(16 * s, None, false, &[12])),
            ("new-ok", call(12 * s, Some(12 * s + 5), true, &[12])),
            (
                "ended-before",
                CallRecord {
                    completed_us: Some(5 * s),
                    ..call(s, Some(s + 10), true, &[11])
                },
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let f = call_figures(&m, 10 * s, 2 * s, 5 * s);
        assert_eq!(f.calls, 8);
        assert_eq!(f.completed, 3);
        // In progress at the failure: answered before it, not ended before it.
        assert_eq!(f.inflight, 3);
        assert_eq!(f.inflight_completed, 1);
        assert!((f.switched_pct() - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(f.inflight_split, vec!["old-split", "recent-split"]);
        assert_eq!(f.inflight_split_recent, vec!["recent-split"]);
        assert_eq!(f.inflight_failed, vec!["old-split", "recent-split"]);
        assert_eq!(f.inflight_failed_recent, vec!["recent-split"]);
        assert_eq!(f.setup_failed, vec!["setup-lost"]);
        assert_eq!(f.new_failed, vec!["late-failed", "new-failed"]);
        assert_eq!(f.failed_after_bound, vec!["late-failed"]);
        assert_eq!(f.split_any, vec!["old-split", "recent-split"]);
    }
}
