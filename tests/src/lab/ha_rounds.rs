//! Measured failover rounds on a booted HA pair: call load through the VIP,
//! one failure of the master (or the return of a box), captures on the
//! client side and on both boxes' LAN taps, and figures drawn from them.

use super::booted::now_us;
use super::capture::Capture;
use super::frames::{Frame, Mac};
use super::ha::{self, CallFigures, Switchover};
use super::pair::{BoxId, HaPair, Side, VRID};
use super::{LabError, Result};
use crate::sipp::{Transport, Uac, UacOptions, UacStats};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// What happens to a box in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// QEMU killed (power cut).
    PowerOff,
    /// Its daemon SIGKILLed (init respawns it).
    DaemonKill,
    /// Its LAN cable pulled, plugged back after the takeover.
    LanCable,
    /// Its WAN cable pulled, plugged back after the takeover.
    WanCable,
    /// Orderly reboot (the daemon resigns with priority 0).
    Reboot,
    /// A powered-off box powers on and boots (must not preempt).
    Return,
}

impl Event {
    /// Whether the master role moves in this round.
    pub fn moves_master(self) -> bool {
        self != Event::Return
    }
}

/// Load of a round.
#[derive(Debug, Clone)]
pub struct HaLoad {
    /// New calls per second, single-socket client.
    pub single_rate: u32,
    /// New calls per second, socket-per-call client.
    pub per_call_rate: u32,
    /// sipp `-d` for `uac_refresh.xml` (a call lasts about 4 × this).
    pub hold_ms: u32,
    /// Base local port (each round its own).
    pub port: u16,
}

impl Default for HaLoad {
    fn default() -> Self {
        HaLoad {
            single_rate: 11,
            per_call_rate: 9,
            hold_ms: 1000,
            port: 6000,
        }
    }
}

/// Time bounds of a round.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Load before the event.
    pub pre: Duration,
    /// Load after the event (for [`Event::Return`]: after the box is up).
    pub post: Duration,
    /// Cable rounds: how long the cable stays out after the takeover.
    pub cable_out: Duration,
    /// The VIP must carry client traffic again within this after the event.
    pub vip_bound: Duration,
    /// Calls answered within this before the event may not have been synced.
    pub recent: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            pre: Duration::from_secs(6),
            post: Duration::from_secs(10),
            cable_out: Duration::from_secs(4),
            vip_bound: Duration::from_secs(5),
            recent: Duration::from_secs(2),
        }
    }
}

/// Figures of one round.
#[derive(Debug, Clone)]
pub struct RoundFigures {
    /// Round name.
    pub name: String,
    /// The event.
    pub event: Event,
    /// The box it happened to.
    pub target: BoxId,
    /// The box expected to be master at the end.
    pub expected_master: BoxId,
    /// WAN advertising masters in the last 2 s of the round.
    pub masters_wan_end: BTreeSet<Ipv4Addr>,
    /// LAN advertising masters in the last 2 s of the round.
    pub masters_lan_end: BTreeSet<Ipv4Addr>,
    /// Changes of WAN master from the event to the end (excluding the first sender).
    pub master_changes: usize,
    /// First WAN advert of the new master after the event (ms).
    pub takeover_ms: Option<u64>,
    /// LAN-side switch-over of client traffic (old box's LAN MAC → new).
    pub lan: Switchover,
    /// WAN-side switch-over of client traffic (old box's WAN MAC → new).
    pub wan: Switchover,
    /// Call figures around the event.
    pub calls: CallFigures,
    /// sipp statistics per client.
    pub sipp: Vec<UacStats>,
    /// Event instant (µs since the epoch).
    pub t0_us: u64,
    /// (VIP, LAN gateway) held per box at the end, from `ip -4 addr` (None: powered off).
    pub holds: [Option<(bool, bool)>; 2],
}

impl RoundFigures {
    /// The `FIGURE` line.
    pub fn figure_line(&self) -> String {
        let c = &self.calls;
        let ms = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_else(|| "none".into());
        format!(
            "FIGURE ha_round={} event={:?} target={:?} takeover_ms={} wan_first_new_ms={} \
             lan_first_new_ms={} lan_gap_ms={} old_box_after_settle_lan={} old_box_after_settle_wan={} \
             master_changes={} masters_wan_end={:?} calls={} completed={} new_calls_failed={} \
             split_any={} inflight={} inflight_completed={} inflight_split={} switched_pct={:.2} inflight_split_recent2s={} inflight_failed={} inflight_failed_recent2s={} \
             setup_failed={} failed_after_{}ms={} got_481={} sipp_failed={} capture_incomplete={} \
             sipp={:?} holds={:?}",
            self.name,
            self.event,
            self.target,
            ms(self.takeover_ms),
            ms(self.wan.first_new_us.map(|t| t.saturating_sub(self.t0_us) / 1000)),
            ms(self.lan.first_new_us.map(|t| t.saturating_sub(self.t0_us) / 1000)),
            ms(self.lan.gap_ms()),
            self.lan.old_after_settle,
            self.wan.old_after_settle,
            self.master_changes,
            self.masters_wan_end,
            c.calls,
            c.completed,
            c.new_failed.len(),
            c.split_any.len(),
            c.inflight,
            c.inflight_completed,
            c.inflight_split.len(),
            c.switched_pct(),
            c.inflight_split_recent.len(),
            c.inflight_failed.len(),
            c.inflight_failed_recent.len(),
            c.setup_failed.len(),
            Timing::default().vip_bound.as_millis(),
            c.failed_after_bound.len(),
            c.got_481,
            self.sipp_failed(),
            c.calls - c.completed,
            self.sipp,
            self.holds,
        )
    }

    /// What the product promises, checked at margins TCG cannot flake:
    /// one list entry per broken promise.
    pub fn problems(&self, pair: &HaPair) -> Vec<String> {
        let mut p = self.role_problems();
        let n = &self.name;
        let want = pair.spec(self.expected_master);
        if self.masters_wan_end != [want.wan].into_iter().collect() {
            p.push(format!(
                "{n}: WAN masters at the end {:?}, want exactly {} (box {:?})",
                self.masters_wan_end, want.wan, self.expected_master
            ));
        }
        if self.masters_lan_end != [want.lan].into_iter().collect() {
            p.push(format!(
                "{n}: LAN masters at the end {:?}, want exactly {} (box {:?})",
                self.masters_lan_end, want.lan, self.expected_master
            ));
        }
        let max_changes = usize::from(self.event.moves_master());
        if self.master_changes > max_changes {
            p.push(format!(
                "{n}: the WAN master changed {} times after the event (flapping; at most {max_changes})",
                self.master_changes
            ));
        }
        if self.event.moves_master() {
            let bound = Timing::default().vip_bound.as_micros() as u64;
            match self.lan.first_new_us {
                Some(t) if t <= self.t0_us + bound => {}
                other => p.push(format!(
                    "{n}: no client traffic through the new master's LAN within {} ms (first at {:?} ms)",
                    bound / 1000,
                    other.map(|t| t.saturating_sub(self.t0_us) / 1000)
                )),
            }
            if self.lan.old_after_settle > 0 || self.wan.old_after_settle > 0 {
                p.push(format!(
                    "{n}: client traffic still through the old master after the takeover \
                     (LAN {}, WAN {} frames)",
                    self.lan.old_after_settle, self.wan.old_after_settle
                ));
            }
        }
        if self.lan.new_before > 0 && self.event.moves_master() {
            p.push(format!(
                "{n}: the backup forwarded {} client frames before the event",
                self.lan.new_before
            ));
        }
        let c = &self.calls;
        // A request that reached a second server is a failure whatever the
        // client's count says (it reached a server that did not know the call).
        let old_split: Vec<&String> = c
            .inflight_split
            .iter()
            .filter(|id| !c.inflight_split_recent.contains(id))
            .collect();
        if !old_split.is_empty() {
            p.push(format!(
                "{n}: {} calls answered more than {:?} before the event reached a second server: {:?}",
                old_split.len(),
                Timing::default().recent,
                old_split
            ));
        }
        // Which calls failed is judged per call from the client capture, but
        // a capture can miss packets (tcpdump reports kernel drops): when
        // sipp itself counts no failed call, an incomplete call in the
        // capture is a capture gap (printed as a figure), not a failure.
        if self.sipp_failed() == 0 {
            return p;
        }
        if !c.failed_after_bound.is_empty() {
            p.push(format!(
                "{n}: calls started after the VIP bound failed: {:?}",
                c.failed_after_bound
            ));
        }
        // Calls answered well before the event were synced to the backup:
        // they must finish on their server.
        let old_failed: Vec<&String> = c
            .inflight_failed
            .iter()
            .filter(|id| !c.inflight_failed_recent.contains(id))
            .collect();
        if !old_failed.is_empty() {
            p.push(format!(
                "{n}: {} calls answered more than {:?} before the event failed: {:?}",
                old_failed.len(),
                Timing::default().recent,
                old_failed
            ));
        }
        if self.event == Event::Return {
            p.push(format!(
                "{n}: a returning backup must disturb nothing, but sipp counts {} failed calls",
                self.sipp_failed()
            ));
        }
        p
    }

    /// Calls sipp counted as failed, over all clients.
    pub fn sipp_failed(&self) -> u64 {
        self.sipp.iter().map(|s| s.failed).sum()
    }

    /// Checks that hold whatever the calls did: masters, addresses, load ran.
    fn role_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let n = &self.name;
        if self.calls.calls == 0 || self.sipp.iter().all(|s| s.created == 0) {
            p.push(format!(
                "{n}: no calls were made or captured (load did not run?)"
            ));
        }
        for (i, h) in self.holds.iter().enumerate() {
            let id = if i == 0 { BoxId::A } else { BoxId::B };
            let want = if id == self.expected_master {
                (true, true)
            } else {
                (false, false)
            };
            if let Some(h) = h {
                if *h != want {
                    p.push(format!(
                        "{n}: box {id:?} holds (VIP, LAN gateway) = {h:?}, want {want:?}"
                    ));
                }
            }
        }
        p
    }
}

/// Starts the round's sipp clients through the VIP (`uac_refresh.xml`, one single-socket and
/// one socket-per-call client at the load's rates) with a budget of `calls_s` seconds of calls.
pub fn start_load(pair: &HaPair, load: &HaLoad, calls_s: u64, tag: &str) -> Result<Vec<Uac>> {
    let mut uacs = Vec::new();
    for (i, (rate, tr)) in [
        (load.single_rate, Transport::SingleSocket),
        (load.per_call_rate, Transport::SocketPerCall),
    ]
    .into_iter()
    .enumerate()
    {
        if rate == 0 {
            continue;
        }
        let mut o = UacOptions::basic(&pair.lab, pair.lab.vip(), rate * calls_s as u32, rate);
        o.scenario = "uac_refresh.xml".into();
        o.hold_ms = load.hold_ms;
        o.transport = tr;
        o.local = pair.lab.clients[i];
        o.port = load.port + (i as u16) * 1000;
        o.recv_timeout_ms = 10_000;
        o.time_limit = Duration::from_secs(calls_s + 90);
        uacs.push(Uac::start(&pair.lab, &o, &format!("{tag}-{i}"))?);
    }
    Ok(uacs)
}

/// Starts the captures a round reads: VRRP, ARP and SIP on the client side (`wan`) and
/// on each box's LAN tap, into `<name>-wan.pcap` and `<name>-lan-<box>.pcap`.
pub fn start_captures(pair: &HaPair, name: &str) -> Result<(Capture, Vec<Capture>)> {
    let filt = ["vrrp", "or", "arp", "or", "udp", "port", "5060"];
    let wan = Capture::start_filtered(
        &pair.lab.client_ns,
        "eth0",
        pair.lab.path(&format!("{name}-wan.pcap")),
        &filt,
    )?;
    let mut lans = Vec::new();
    for id in [BoxId::A, BoxId::B] {
        lans.push(Capture::start_filtered(
            &pair.lab.switch_ns,
            &pair.spec(id).lan_tap,
            pair.lab.path(&format!("{name}-lan-{id:?}.pcap")),
            &filt,
        )?);
    }
    Ok((wan, lans))
}

/// Stops the captures of [`start_captures`]: the client-side frames and the frames of
/// both LAN taps merged in time order.
pub fn finish_captures(mut wan: Capture, lans: &mut [Capture]) -> Result<(Vec<Frame>, Vec<Frame>)> {
    wan.finish();
    for l in lans.iter_mut() {
        l.finish();
    }
    let wf = wan.frames()?;
    let mut lf: Vec<Frame> = Vec::new();
    for l in lans.iter() {
        lf.extend(l.frames()?);
    }
    lf.sort_by_key(|f| f.ts_us);
    Ok((wf, lf))
}

fn frames_of(c: &Capture) -> Vec<Frame> {
    c.frames().unwrap_or_default()
}

/// Waits (bounded) until `addr` advertises on the WAN capture after `from_us`.
fn wait_advert(cap: &Capture, addr: Ipv4Addr, from_us: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ha::first_advert_from(&frames_of(cap), VRID, addr, from_us).is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Runs one round: load, `event` on `target`, more load, analysis.
/// `expected_master` is who must be master at the end.
pub fn round(
    pair: &mut HaPair,
    name: &str,
    event: Event,
    target: BoxId,
    expected_master: BoxId,
    load: &HaLoad,
    timing: &Timing,
) -> Result<RoundFigures> {
    let (wan, mut lans) = start_captures(pair, name)?;
    // Generous call budget; the clients are stopped softly at the end.
    let budget_s = (timing.pre + timing.post).as_secs() + 300;
    let uacs = start_load(pair, load, budget_s, name)?;
    std::thread::sleep(timing.pre);
    let t0 = match event {
        Event::PowerOff => pair.power_off(target),
        Event::DaemonKill => pair.kill_daemon(target)?.0,
        Event::LanCable | Event::WanCable => {
            let side = if event == Event::LanCable {
                Side::Lan
            } else {
                Side::Wan
            };
            let t = pair.cable(target, side, false)?;
            let new = pair.spec(expected_master).wan;
            let _ = wait_advert(&wan, new, t, timing.vip_bound);
            std::thread::sleep(timing.cable_out);
            pair.cable(target, side, true)?;
            t
        }
        Event::Reboot => pair.reboot(target)?,
        Event::Return => {
            let t = now_us();
            pair.power_on(target)?;
            pair.wait_up(target, super::booted::BOOT_TIMEOUT)?;
            t
        }
    };
    std::thread::sleep(timing.post);
    for u in &uacs {
        u.soft_stop();
    }
    let mut sipp = Vec::new();
    for u in uacs {
        sipp.push(u.wait()?);
    }
    let end = now_us();
    let (wf, lf) = finish_captures(wan, &mut lans)?;
    let window = 2_000_000;
    let new = pair.spec(expected_master).clone();
    let old_id = if event.moves_master() {
        target
    } else {
        expected_master.other()
    };
    let old = pair.spec(old_id).clone();
    let changes = ha::master_changes(&wf, VRID, t0, end);
    // Only a round that moves the master has a takeover.
    let takeover = ha::first_advert_from(&wf, VRID, new.wan, t0)
        .filter(|_| event.moves_master())
        .map(|t| t.saturating_sub(t0) / 1000);
    let (lan_sw, wan_sw) = if event.moves_master() {
        (
            ha::switchover(&lf, old.lan_mac, new.lan_mac, t0, window),
            ha::switchover(&wf, old.wan_mac, new.wan_mac, t0, window),
        )
    } else {
        // No move: the "new" box is the master throughout; anything through the other is wrong.
        let none = Mac([0; 6]);
        let mut l = ha::switchover(&lf, none, new.lan_mac, 0, 0);
        let mut w = ha::switchover(&wf, none, new.wan_mac, 0, 0);
        l.old_after_settle = ha::sip_via(&lf, old.lan_mac).len();
        w.old_after_settle = ha::sip_via(&wf, old.wan_mac).len();
        (l, w)
    };
    let servers = pair.lab.server_addrs();
    let calls = ha::calls(&ha::sip_packets(&wf), &ha::sip_packets(&lf), &servers);
    let figs = ha::call_figures(
        &calls,
        t0,
        timing.recent.as_micros() as u64,
        timing.vip_bound.as_micros() as u64,
    );
    let mut holds = [None, None];
    for id in [BoxId::A, BoxId::B] {
        // A rebooting box has no shell yet; the test checks it once it is back.
        if pair.bx(id).vm.is_some() && !(event == Event::Reboot && id == target) {
            holds[if id == BoxId::A { 0 } else { 1 }] = pair.holds(id).ok();
        }
    }
    if wf.is_empty() {
        return Err(LabError::Evidence(format!(
            "{name}: the WAN capture is empty"
        )));
    }
    Ok(RoundFigures {
        name: name.to_owned(),
        event,
        target,
        expected_master,
        masters_wan_end: ha::masters(&wf, VRID, end.saturating_sub(window), end),
        masters_lan_end: ha::masters(&lf, VRID, end.saturating_sub(window), end),
        master_changes: changes.len().saturating_sub(1),
        takeover_ms: takeover,
        lan: lan_sw,
        wan: wan_sw,
        calls: figs,
        sipp,
        t0_us: t0,
        holds,
    })
}
