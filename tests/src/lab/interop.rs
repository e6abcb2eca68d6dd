//! The VRRP interop sequence against keepalived, shared by the appliance
//! test and the harness's own keepalived-vs-keepalived baseline (which runs
//! without a VM and proves the sequence, the captures and their decoding).
//!
//! The subject (the appliance, or a stand-in keepalived) has priority 150
//! and does not preempt; keepalived `K` plays the peer with the other box's
//! addresses. Steps, each judged from captures on both links and from K's log:
//! 1. the subject alone becomes master (adverts on WAN and LAN, VIP held);
//! 2. K starts with priority 100 and stays backup under the subject's adverts;
//!    then a partition (K's switch ports stop forwarding, carriers up) makes
//!    K master too; on healing K hears the subject's 150 and yields (its log:
//!    "Master received advert ... higher priority 150");
//! 3. the subject stops orderly: it resigns (priority 0, K logs "Backup
//!    received priority 0 advertisement"), K takes over with gratuitous ARP;
//!    the subject comes back as backup and stays so (accepts K's adverts);
//! 4. K stops (the subject takes over) and starts again with priority 200:
//!    it preempts, and the subject yields to the higher priority;
//! 5. K crashes (no priority 0): the subject takes over after Master_Down.

use super::booted::now_us;
use super::capture::Capture;
use super::frames::{Frame, Mac};
use super::ha;
use super::keepalived::{KeepalivedConf, KeepalivedNode};
use super::{wait_until, Lab, Result, WAN_GATEWAY};
use std::net::Ipv4Addr;
use std::time::Duration;

/// How long a takeover may take in the lab before it counts as failed
/// (Master_Down_Interval is about 0.7 s at 20 cs; TCG guests stall).
pub const TAKEOVER_BOUND: Duration = Duration::from_secs(5);

/// The side of the interop under test.
pub trait Subject {
    /// Name in messages.
    fn label(&self) -> String;
    /// WAN address (advert source on WAN).
    fn wan_addr(&self) -> Ipv4Addr;
    /// LAN address (advert source on LAN).
    fn lan_addr(&self) -> Ipv4Addr;
    /// WAN MAC (gratuitous ARP, client traffic).
    fn wan_mac(&self) -> Mac;
    /// The lab.
    fn lab(&mut self) -> &mut Lab;
    /// Orderly stop of the VRRP speaker, which then comes back by itself
    /// as a fresh process (the appliance: init respawns the daemon). Returns
    /// the instant of the stop.
    fn stop_orderly(&mut self) -> Result<u64>;
    /// Whether it holds the VIP (`ip -4 addr`).
    fn holds_vip(&mut self, vip: Ipv4Addr) -> Result<bool>;
}

/// What the sequence measured; `problems` empty means every check held.
#[derive(Debug, Default)]
pub struct InteropReport {
    /// Failed checks, one line each.
    pub problems: Vec<String>,
    /// Figures (`name=value`), printed as a FIGURE line.
    pub figures: Vec<(String, String)>,
}

impl InteropReport {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.problems.push(what.into());
        }
    }

    fn figure(&mut self, name: &str, v: impl std::fmt::Debug) {
        self.figures.push((name.to_owned(), format!("{v:?}")));
    }

    /// `FIGURE ...` line.
    pub fn figure_line(&self, tag: &str) -> String {
        let mut s = format!("FIGURE interop={tag}");
        for (k, v) in &self.figures {
            s.push_str(&format!(" {k}={v}"));
        }
        s
    }
}

/// Parameters of the sequence.
#[derive(Debug, Clone)]
pub struct Params {
    /// VRRP virtual router id.
    pub vrid: u8,
    /// Advert interval, centiseconds (both sides).
    pub advert_cs: u16,
    /// The WAN virtual address.
    pub vip: Ipv4Addr,
    /// The LAN virtual address (servers' gateway).
    pub lan_vip: Ipv4Addr,
    /// The subject's priority.
    pub subject_priority: u8,
}

fn frames_of(c: &Capture) -> Vec<Frame> {
    c.frames().unwrap_or_default()
}

fn ms(a: Option<u64>, from: u64) -> Option<u64> {
    a.map(|t| t.saturating_sub(from) / 1000)
}

fn sleep(d: Duration) {
    std::thread::sleep(d)
}

/// Runs the whole sequence. `k` must be added to the subject's lab and not
/// running. Captures go to the lab's scratch dir (`interop-wan.pcap`,
/// `interop-lan.pcap`).
pub fn run(subject: &mut dyn Subject, k: &mut KeepalivedNode, p: &Params) -> Result<InteropReport> {
    let mut r = InteropReport::default();
    let (sw, sl) = (subject.wan_addr(), subject.lan_addr());
    let interval = Duration::from_millis(p.advert_cs as u64 * 10);
    let settle = interval * 10 + Duration::from_secs(1);
    let lab = subject.lab();
    // WAN: in the client namespace (sees flooded adverts, ARP, client SIP).
    let wan = Capture::start_filtered(
        &lab.client_ns.clone(),
        "eth0",
        lab.path("interop-wan.pcap"),
        &["vrrp", "or", "arp"],
    )?;
    // LAN: in the first server namespace.
    let s0 = lab.servers[0].ns.clone();
    let lan = Capture::start_filtered(
        &s0,
        "eth0",
        lab.path("interop-lan.pcap"),
        &["vrrp", "or", "arp"],
    )?;
    let started = now_us();
    let router_id = format!("lab-{}", k.name);
    let conf = |priority: u8, start_master: bool| KeepalivedConf {
        router_id: router_id.clone(),
        vrid: p.vrid,
        priority,
        advert_cs: p.advert_cs,
        start_master,
        nopreempt: false,
        wan_vip: p.vip,
        lan_vip: Some(p.lan_vip),
    };

    // 1. The subject alone is master on both links.
    let alone = wait_until(
        Duration::from_secs(60),
        "the subject to advertise on WAN and LAN",
        || {
            ha::first_advert_from(&frames_of(&wan), p.vrid, sw, started).is_some()
                && ha::first_advert_from(&frames_of(&lan), p.vrid, sl, started).is_some()
        },
    );
    r.check(
        alone.is_ok(),
        format!(
            "step 1: {} never advertised on both links: {alone:?}",
            subject.label()
        ),
    );
    let vip1 = subject.holds_vip(p.vip)?;
    r.check(
        vip1,
        "step 1: the subject does not hold the VIP while alone",
    );

    // 2. K starts with a lower priority and stays backup under the subject's adverts.
    let t2 = now_us();
    k.start(subject.lab(), &conf(100, true))?;
    sleep(settle);
    let t2e = now_us();
    r.check(
        k.entered(subject.lab(), "BACKUP") && !k.entered(subject.lab(), "MASTER"),
        format!(
            "step 2: keepalived (priority 100) did not stay BACKUP under our adverts:\n{}",
            k.log(subject.lab())
        ),
    );
    let m2 = ha::masters(&frames_of(&wan), p.vrid, t2e - 1_000_000, t2e);
    r.check(
        m2 == [sw].into_iter().collect(),
        format!("step 2: WAN masters in the last second {m2:?}, want only {sw}"),
    );
    let m2l = ha::masters(&frames_of(&lan), p.vrid, t2e - 1_000_000, t2e);
    r.check(
        m2l == [sl].into_iter().collect(),
        format!("step 2: LAN masters in the last second {m2l:?}, want only {sl}"),
    );
    r.check(
        subject.holds_vip(p.vip)?,
        "step 2: the subject lost the VIP to a lower-priority peer",
    );
    r.check(
        !k.holds(p.vip)?,
        "step 2: keepalived holds the VIP as backup",
    );
    let k_sent = ha::advertisers(&frames_of(&wan), p.vrid, t2, t2e)
        .get(&k.wan_addr)
        .map(|t| t.count)
        .unwrap_or(0);
    r.check(
        k_sent == 0,
        format!("step 2: keepalived sent {k_sent} master adverts as backup"),
    );

    // 2b. Partition: K's switch ports stop forwarding (carriers stay up, so
    // K sees no link fault), K becomes master alone; on healing there are two
    // masters: K hears the subject's higher priority and yields, and the
    // subject stays master (split brain healed). K is the one cut off because
    // cutting the subject's LAN would (rightly) fault it: no server answers
    // its probes, the pool is dead.
    let (pw, pl) = k.ports();
    subject.lab().set_port_forwarding(&pw, false)?;
    subject.lab().set_port_forwarding(&pl, false)?;
    let part = k.wait_state(subject.lab(), "MASTER", TAKEOVER_BOUND);
    r.check(
        part.is_ok(),
        format!("step 2b: keepalived did not become master in the partition: {part:?}"),
    );
    sleep(interval * 5);
    let t2h = now_us();
    subject.lab().set_port_forwarding(&pw, true)?;
    subject.lab().set_port_forwarding(&pl, true)?;
    let healed = wait_until(
        TAKEOVER_BOUND,
        "keepalived to yield after the partition",
        || {
            k.log(subject.lab()).contains(&format!(
                "(WAN) Master received advert from {sw} with higher priority {}, ours 100",
                p.subject_priority
            ))
        },
    );
    sleep(settle);
    let log2 = k.log(subject.lab());
    r.check(
        healed.is_ok(),
        format!("step 2b: keepalived's log does not show it yielding to {sw}'s adverts:\n{log2}"),
    );
    let t2he = now_us();
    let f2 = frames_of(&wan);
    let m2h = ha::masters(&f2, p.vrid, t2he - 1_000_000, t2he);
    r.check(
        m2h == [sw].into_iter().collect(),
        format!("step 2b: WAN masters after healing {m2h:?}, want only {sw}"),
    );
    let changes = ha::master_changes(&f2, p.vrid, t2h, t2he);
    r.figure("step2b_master_changes_after_heal", changes.len());
    r.check(
        subject.holds_vip(p.vip)?,
        "step 2b: the subject does not hold the VIP after healing",
    );
    r.check(
        !k.holds(p.vip)?,
        "step 2b: keepalived still holds the VIP after yielding",
    );
    // K's master adverts that crossed the healed switch before it yielded.
    let k_after = ha::advertisers(&f2, p.vrid, t2h, t2he)
        .get(&k.wan_addr)
        .map(|t| t.count)
        .unwrap_or(0);
    r.figure("step2b_keepalived_adverts_after_heal", k_after);

    // 3. Orderly stop of the subject: it resigns, K takes over.
    let t3 = subject.stop_orderly()?;
    let took = k.wait_state(subject.lab(), "MASTER", TAKEOVER_BOUND);
    r.check(
        took.is_ok(),
        format!("step 3: keepalived did not take over: {took:?}"),
    );
    sleep(settle);
    let f3 = frames_of(&wan);
    let resign = ha::resignations(&f3, p.vrid, t3.saturating_sub(2_000_000), u64::MAX)
        .into_iter()
        .find(|(_, s)| *s == sw)
        .map(|(t, _)| t);
    r.figure("step3_resign_ms", ms(resign, t3));
    r.check(
        resign.is_some(),
        "step 3: no priority-0 advert from the subject on its orderly stop",
    );
    let log3 = k.log(subject.lab());
    r.check(
        log3.contains("(WAN) Backup received priority 0 advertisement"),
        "step 3: keepalived's log does not show our priority-0 advert",
    );
    let k_first = ha::first_advert_from(&f3, p.vrid, k.wan_addr, t3);
    r.figure("step3_takeover_ms", ms(k_first, t3));
    let garp = ha::garps(&f3, p.vip, t3, u64::MAX)
        .into_iter()
        .any(|(_, m)| m == k.wan_mac);
    r.check(
        garp,
        "step 3: no gratuitous ARP for the VIP from keepalived's MAC",
    );
    let t3e = now_us();
    let m3 = ha::masters(&f3, p.vrid, t3e - 1_000_000, t3e);
    r.check(
        m3 == [k.wan_addr].into_iter().collect(),
        format!("step 3: WAN masters in the last second {m3:?}, want only keepalived"),
    );
    // The subject is back (fresh process) and stays backup under K's 100 adverts.
    let back = subject.holds_vip(p.vip)?;
    r.check(
        !back,
        "step 3: the restarted subject holds the VIP while keepalived is master",
    );

    // 4. K stops (subject takes over), then returns with priority 200 and preempts.
    let t4 = now_us();
    k.stop(subject.lab())?;
    sleep(settle);
    let f4 = frames_of(&wan);
    let s_first = ha::first_advert_from(&f4, p.vrid, sw, t4);
    r.figure("step4_takeover_after_keepalived_stop_ms", ms(s_first, t4));
    r.check(
        s_first.is_some(),
        "step 4: the subject did not take over when keepalived stopped",
    );
    let t4b = now_us();
    k.start(subject.lab(), &conf(200, false))?;
    let pre = k.wait_state(subject.lab(), "MASTER", Duration::from_secs(10));
    r.check(
        pre.is_ok(),
        format!("step 4: keepalived (priority 200) did not preempt: {pre:?}"),
    );
    sleep(settle);
    let f4 = frames_of(&wan);
    let t4e = now_us();
    let m4 = ha::masters(&f4, p.vrid, t4e - 1_000_000, t4e);
    r.check(
        m4 == [k.wan_addr].into_iter().collect(),
        format!(
            "step 4: WAN masters in the last second {m4:?}, want only keepalived (priority 200)"
        ),
    );
    let m4l = ha::masters(&frames_of(&lan), p.vrid, t4e - 1_000_000, t4e);
    r.check(
        m4l == [k.lan_addr].into_iter().collect(),
        format!("step 4: LAN masters in the last second {m4l:?}, want only keepalived"),
    );
    let last_s = ha::last_advert_from(&f4, p.vrid, sw, u64::MAX);
    let k4 = ha::first_advert_from(&f4, p.vrid, k.wan_addr, t4b);
    r.figure(
        "step4_subject_yield_ms",
        match (last_s, k4) {
            (Some(l), Some(f)) if l >= f => Some((l - f) / 1000),
            (Some(_), Some(_)) => Some(0),
            _ => None,
        },
    );
    let log4 = k.log(subject.lab());
    r.check(
        log4.contains(&format!(
            "received lower priority ({}) advert from {sw}",
            p.subject_priority
        )) || log4.contains("(WAN) Entering MASTER STATE"),
        "step 4: keepalived's log shows neither our adverts nor its preemption",
    );
    r.check(
        !subject.holds_vip(p.vip)?,
        "step 4: the subject keeps the VIP under a priority-200 master",
    );

    // 5. K crashes: no priority 0; the subject takes over after Master_Down.
    let t5 = now_us();
    k.crash(subject.lab())?;
    sleep(settle);
    k.drop_addr(p.vip)?;
    k.drop_addr(p.lan_vip)?;
    let f5 = frames_of(&wan);
    let s5 = ha::first_advert_from(&f5, p.vrid, sw, t5);
    r.figure("step5_takeover_after_crash_ms", ms(s5, t5));
    r.check(
        s5.is_some_and(|t| t - t5 <= TAKEOVER_BOUND.as_micros() as u64),
        format!(
            "step 5: the subject did not take over within {TAKEOVER_BOUND:?} of keepalived's crash"
        ),
    );
    r.check(
        ha::resignations(&f5, p.vrid, t5, u64::MAX).is_empty(),
        "step 5: a priority-0 advert was seen after the crash (the crash was not a crash)",
    );
    r.check(
        subject.holds_vip(p.vip)?,
        "step 5: the subject does not hold the VIP after keepalived's crash",
    );
    let garp5 = ha::garps(&f5, p.vip, t5, u64::MAX)
        .into_iter()
        .any(|(_, m)| m == subject.wan_mac());
    r.check(
        garp5,
        "step 5: no gratuitous ARP for the VIP from the subject's MAC",
    );

    // Whole run: every advert well-formed VRRPv3 at the agreed interval.
    let all = frames_of(&wan);
    for (addr, t) in ha::advertisers(&all, p.vrid, started, u64::MAX) {
        r.check(
            t.malformed == 0 && t.versions == [3].into_iter().collect(),
            format!(
                "{addr}: {} malformed adverts, versions {:?}",
                t.malformed, t.versions
            ),
        );
        r.check(
            t.intervals_cs == [p.advert_cs].into_iter().collect(),
            format!(
                "{addr}: advert intervals {:?} cs, want {}",
                t.intervals_cs, p.advert_cs
            ),
        );
    }
    let w = ha::advertisers(&all, p.vrid, started, u64::MAX);
    r.figure(
        "subject_wan_adverts",
        w.get(&sw).map(|t| t.count).unwrap_or(0),
    );
    r.figure(
        "keepalived_wan_adverts",
        w.get(&k.wan_addr).map(|t| t.count).unwrap_or(0),
    );
    let lw = ha::advertisers(&frames_of(&lan), p.vrid, started, u64::MAX);
    r.figure(
        "subject_lan_adverts",
        lw.get(&sl).map(|t| t.count).unwrap_or(0),
    );
    r.figure(
        "keepalived_lan_adverts",
        lw.get(&k.lan_addr).map(|t| t.count).unwrap_or(0),
    );
    r.check(
        w.get(&sw).is_some_and(|t| t.count > 0) && w.get(&k.wan_addr).is_some_and(|t| t.count > 0),
        "adverts from both sides must be in the WAN capture",
    );
    // The WAN gateway (client namespace) is not part of VRRP.
    r.check(
        !w.contains_key(&WAN_GATEWAY),
        "the WAN gateway sent VRRP adverts?",
    );
    Ok(r)
}

/// A keepalived node standing in for the appliance (the harness baseline).
pub struct KeepalivedSubject {
    /// The lab both nodes live in.
    pub lab: Lab,
    /// The stand-in.
    pub node: KeepalivedNode,
    /// Its config (priority 150, nopreempt, like the appliance's defaults).
    pub conf: KeepalivedConf,
}

impl Subject for KeepalivedSubject {
    fn label(&self) -> String {
        format!("keepalived stand-in {}", self.node.name)
    }
    fn wan_addr(&self) -> Ipv4Addr {
        self.node.wan_addr
    }
    fn lan_addr(&self) -> Ipv4Addr {
        self.node.lan_addr
    }
    fn wan_mac(&self) -> Mac {
        self.node.wan_mac
    }
    fn lab(&mut self) -> &mut Lab {
        &mut self.lab
    }
    fn stop_orderly(&mut self) -> Result<u64> {
        let t = now_us();
        self.node.stop(&mut self.lab)?;
        self.node.start(&mut self.lab, &self.conf)?;
        Ok(t)
    }
    fn holds_vip(&mut self, vip: Ipv4Addr) -> Result<bool> {
        self.node.holds(vip)
    }
}

/// Box `id` of an HA pair as the subject: orderly stop = SIGTERM to its
/// daemon (init respawns it).
pub struct ApplianceSubject {
    /// The pair (only `id` needs to be powered on).
    pub pair: super::pair::HaPair,
    /// Which box.
    pub id: super::pair::BoxId,
}

impl Subject for ApplianceSubject {
    fn label(&self) -> String {
        format!("appliance box {:?}", self.id)
    }
    fn wan_addr(&self) -> Ipv4Addr {
        self.pair.spec(self.id).wan
    }
    fn lan_addr(&self) -> Ipv4Addr {
        self.pair.spec(self.id).lan
    }
    fn wan_mac(&self) -> Mac {
        self.pair.spec(self.id).wan_mac
    }
    fn lab(&mut self) -> &mut Lab {
        &mut self.pair.lab
    }
    fn stop_orderly(&mut self) -> Result<u64> {
        let vm = self.pair.vm(self.id)?;
        let old = crate::guest::daemon_pid(vm)?.ok_or_else(|| {
            super::LabError::Evidence("no appliance daemon running in the guest".into())
        })?;
        vm.shell_ok(&format!("kill -TERM {old}"))?;
        let t = now_us();
        crate::guest::wait_new_daemon(vm, old, Duration::from_secs(30))?;
        Ok(t)
    }
    fn holds_vip(&mut self, vip: Ipv4Addr) -> Result<bool> {
        let out = self.pair.guest(self.id, "ip -4 -o addr show")?;
        Ok(super::keepalived::has_addr(&out, vip))
    }
}
