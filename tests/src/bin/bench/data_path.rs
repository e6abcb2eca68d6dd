//! c. Data path: call-rate ladders, fine steps near the limit, guest counters, template growth.

use super::*;

/// Guest-wide counters read before and after a data-path step: /proc/stat's
/// cpu line (USER_HZ ticks), the NET_RX/NET_TX softirq counts, softnet
/// backlog drops, UDP receive-buffer errors, the IPVS connection-table lines
/// (templates + non-one-packet entries); and on the host the taps' drops
/// towards the guest (tx_dropped of tapw + tapl: QEMU did not read in time).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counters {
    pub(super) user: u64,
    pub(super) system: u64,
    pub(super) idle: u64,
    pub(super) irq: u64,
    pub(super) softirq: u64,
    pub(super) other: u64,
    pub(super) net_rx: u64,
    pub(super) net_tx: u64,
    pub(super) backlog_drops: u64,
    pub(super) udp_rcvbuf: u64,
    pub(super) tap_drops: u64,
}

impl Counters {
    pub(super) fn busy(&self) -> u64 {
        self.user + self.system + self.irq + self.softirq + self.other
    }
    pub(super) fn since(&self, a: &Counters) -> Counters {
        Counters {
            user: self.user.saturating_sub(a.user),
            system: self.system.saturating_sub(a.system),
            idle: self.idle.saturating_sub(a.idle),
            irq: self.irq.saturating_sub(a.irq),
            softirq: self.softirq.saturating_sub(a.softirq),
            other: self.other.saturating_sub(a.other),
            net_rx: self.net_rx.saturating_sub(a.net_rx),
            net_tx: self.net_tx.saturating_sub(a.net_tx),
            backlog_drops: self.backlog_drops.saturating_sub(a.backlog_drops),
            udp_rcvbuf: self.udp_rcvbuf.saturating_sub(a.udp_rcvbuf),
            tap_drops: self.tap_drops.saturating_sub(a.tap_drops),
        }
    }
    /// Busy share of the window, percent.
    pub(super) fn busy_pct(&self) -> f64 {
        let all = self.busy() + self.idle;
        if all == 0 {
            0.0
        } else {
            self.busy() as f64 * 100.0 / all as f64
        }
    }
    pub(super) fn softirq_pct(&self) -> f64 {
        let all = self.busy() + self.idle;
        if all == 0 {
            0.0
        } else {
            self.softirq as f64 * 100.0 / all as f64
        }
    }
}

pub(super) const COUNTERS_CMD: &str =
    "head -1 /proc/stat; grep -E '^ *NET_(RX|TX):' /proc/softirqs; \
     sed 's/^/SN /' /proc/net/softnet_stat; grep '^Udp:' /proc/net/snmp";

/// Parses the guest side of [`Counters`] from [`COUNTERS_CMD`]'s output.
pub(super) fn parse_counters(text: &str) -> Option<Counters> {
    let mut c = Counters::default();
    let mut seen_cpu = false;
    let mut udp_head: Option<Vec<&str>> = None;
    for l in text.lines().map(str::trim) {
        let f: Vec<&str> = l.split_whitespace().collect();
        match f.first().copied() {
            Some("cpu") => {
                let n: Vec<u64> = f[1..].iter().filter_map(|v| v.parse().ok()).collect();
                if n.len() < 8 {
                    return None;
                }
                c.user = n[0] + n[1];
                c.system = n[2];
                c.idle = n[3] + n[4];
                c.irq = n[5];
                c.softirq = n[6];
                c.other = n[7];
                seen_cpu = true;
            }
            Some("NET_RX:") => c.net_rx = f[1..].iter().filter_map(|v| v.parse::<u64>().ok()).sum(),
            Some("NET_TX:") => c.net_tx = f[1..].iter().filter_map(|v| v.parse::<u64>().ok()).sum(),
            Some("SN") => {
                c.backlog_drops += f
                    .get(2)
                    .and_then(|v| u64::from_str_radix(v, 16).ok())
                    .unwrap_or(0)
            }
            Some("Udp:") => match udp_head.take() {
                None => udp_head = Some(f),
                Some(h) => {
                    if let Some(i) = h.iter().position(|k| *k == "RcvbufErrors") {
                        c.udp_rcvbuf = f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
                    }
                }
            },
            _ => {}
        }
    }
    seen_cpu.then_some(c)
}

/// Reads [`Counters`] (guest over the serial shell, taps on the host).
pub(super) fn counters(lv: &mut LabVm) -> Res<Counters> {
    let out = guest(lv, COUNTERS_CMD, Duration::from_secs(30))?;
    let mut c = parse_counters(&out).ok_or(format!("unreadable guest counters: {out}"))?;
    for tap in [WAN_TAP, LAN_TAP] {
        let o = Command::new("ip")
            .args(["netns", "exec", &lv.lab.switch_ns, "cat"])
            .arg(format!("/sys/class/net/{tap}/statistics/tx_dropped"))
            .output()
            .map_err(err)?;
        c.tap_drops += String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse::<u64>()
            .unwrap_or(0);
    }
    Ok(c)
}

/// Where a data-path step sends its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// The VIP: IPVS (appliance) or Kamailio.
    Vip,
    /// Server 1 directly, routed through the same VM.
    Direct,
}

#[derive(Debug, Clone)]
pub(super) struct Step {
    pub(super) rate: u32,
    pub(super) stats: UacStats,
    /// Counter deltas over the step (None: unreadable, see stderr).
    pub(super) d: Option<Counters>,
    /// Wall time of the step, s.
    pub(super) wall_s: f64,
}

impl Step {
    pub(super) fn failed_ratio(&self) -> f64 {
        if self.stats.created == 0 {
            1.0
        } else {
            self.stats.failed as f64 / self.stats.created as f64
        }
    }
    pub(super) fn ok(&self) -> bool {
        self.failed_ratio() < 0.01
    }
}

pub(super) static NEXT_PORT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A fresh client port per step (sipp binds it; steps never share one).
pub(super) fn next_port() -> u16 {
    let n = NEXT_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    21000 + ((n * 4) % 8000) as u16
}

pub(super) fn mode_name(t: Transport) -> &'static str {
    match t {
        Transport::SocketPerCall => "socket per call",
        Transport::SingleSocket => "one client socket",
    }
}

pub(super) fn one_step(
    lv: &mut LabVm,
    path: Route,
    rate: u32,
    secs: u32,
    mode: Transport,
    tag: &str,
) -> Res<Step> {
    let target = match path {
        Route::Vip => lv.lab.vip(),
        Route::Direct => lv.lab.servers[0].sip(),
    };
    let mut o = UacOptions::basic(&lv.lab, target, rate * secs, rate);
    o.hold_ms = 0;
    o.transport = mode;
    o.port = next_port();
    o.recv_timeout_ms = 4000;
    o.time_limit = Duration::from_secs(secs as u64 + 60);
    let c0 = counters(lv);
    let t0 = Instant::now();
    let stats = Uac::run(&lv.lab, &o, tag).map_err(err)?;
    let wall_s = t0.elapsed().as_secs_f64();
    let c1 = counters(lv);
    let d = match (c0, c1) {
        (Ok(a), Ok(b)) => Some(b.since(&a)),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("bench: counters around {tag}: {e}");
            None
        }
    };
    let s = Step {
        rate,
        stats,
        d,
        wall_s,
    };
    eprintln!(
        "bench: {tag}: {}/{} failed ({:.1}%), guest busy {:.0}% softirq {:.0}%, tap drops {}",
        s.stats.failed,
        s.stats.created,
        s.failed_ratio() * 100.0,
        s.d.map(|d| d.busy_pct()).unwrap_or(f64::NAN),
        s.d.map(|d| d.softirq_pct()).unwrap_or(f64::NAN),
        s.d.map(|d| d.tap_drops).unwrap_or(0)
    );
    Ok(s)
}

/// Rates between `lo` and `hi` (both included), geometric, at most 10 % apart.
pub(super) fn fine_rates(lo: u32, hi: u32) -> Vec<u32> {
    if hi <= lo || lo == 0 {
        return vec![lo];
    }
    let n = ((hi as f64 / lo as f64).ln() / 1.1f64.ln()).ceil().max(1.0) as u32;
    let mut v: Vec<u32> = (0..=n)
        .map(|k| (lo as f64 * (hi as f64 / lo as f64).powf(k as f64 / n as f64)).round() as u32)
        .collect();
    v.dedup();
    v
}

/// One client mode's data-path measurements on one side.
#[derive(Debug, Clone)]
pub(super) struct Mode {
    pub(super) transport: Transport,
    /// Coarse ladder, VIP and direct alternating; each stops at its first failure.
    pub(super) coarse: Vec<(Route, Step)>,
    /// Fine steps near each path's limit: (path, repetition, step).
    pub(super) fine: Vec<(Route, usize, Step)>,
    /// Repetitions asked for near the limit.
    pub(super) reps: usize,
    /// Fixed-rate steps for CPU per call.
    pub(super) fixed: Vec<(Route, Step)>,
}

/// A path's limit from a [`Mode`]: per repetition the highest passing rate
/// before its first failure (None: it failed at its lowest rate).
#[derive(Debug, Clone)]
pub(super) struct Limit {
    pub(super) per_rep: Vec<Option<u32>>,
    /// No step of the path failed (the limit is above `per_rep`).
    pub(super) capped: bool,
    /// The lowest rate tried near the limit.
    pub(super) floor: u32,
}

impl Mode {
    pub(super) fn coarse_of(&self, p: Route) -> Vec<&Step> {
        self.coarse
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, s)| s)
            .collect()
    }

    /// The ladder's (highest passing rate below the first failing one, first
    /// rate where every step failed).
    pub(super) fn coarse_bounds(&self, p: Route) -> (Option<u32>, Option<u32>) {
        let coarse = self.coarse_of(p);
        let fail = coarse
            .iter()
            .map(|s| s.rate)
            .find(|r| coarse.iter().filter(|s| s.rate == *r).all(|s| !s.ok()));
        let pass = coarse
            .iter()
            .filter(|s| s.ok() && fail.is_none_or(|f| s.rate < f))
            .map(|s| s.rate)
            .max();
        (pass, fail)
    }

    pub(super) fn limit(&self, p: Route) -> Option<Limit> {
        let coarse = self.coarse_of(p);
        let first = coarse.first()?;
        let (pass, fail) = self.coarse_bounds(p);
        if fail.is_none() {
            return Some(Limit {
                per_rep: vec![pass],
                capped: true,
                floor: first.rate,
            });
        }
        let fine: Vec<&(Route, usize, Step)> =
            self.fine.iter().filter(|(q, _, _)| *q == p).collect();
        if fine.is_empty() {
            // Only the ladder: one repetition.
            return Some(Limit {
                per_rep: vec![pass],
                capped: false,
                floor: first.rate,
            });
        }
        let floor = fine.iter().map(|f| f.2.rate).min().unwrap_or(0);
        let mut per_rep = Vec::new();
        let mut capped = true;
        for r in 0..self.reps {
            let steps: Vec<&Step> = fine.iter().filter(|f| f.1 == r).map(|f| &f.2).collect();
            if steps.is_empty() {
                continue;
            }
            if steps.iter().any(|s| !s.ok()) {
                capped = false;
            }
            // The highest passing rate below the repetition's lowest failing rate.
            let lowest_fail = steps
                .iter()
                .filter(|s| !s.ok())
                .map(|s| s.rate)
                .min()
                .unwrap_or(u32::MAX);
            per_rep.push(
                steps
                    .iter()
                    .filter(|s| s.ok() && s.rate < lowest_fail)
                    .map(|s| s.rate)
                    .max(),
            );
        }
        Some(Limit {
            per_rep,
            capped,
            floor,
        })
    }
}

impl Limit {
    /// Median of the repetitions' limits (a failed-at-floor repetition counts as the floor).
    pub(super) fn median(&self) -> Option<f64> {
        let v: Vec<f64> = self
            .per_rep
            .iter()
            .map(|r| r.unwrap_or(self.floor) as f64)
            .collect();
        median(&v)
    }
    pub(super) fn text(&self) -> String {
        let vals: Vec<u32> = self.per_rep.iter().flatten().copied().collect();
        let below = self.per_rep.iter().any(|r| r.is_none());
        let plus = if self.capped { "+" } else { "" };
        let range = match (vals.iter().min(), vals.iter().max()) {
            (Some(_), Some(b)) if below => format!("< {}–{b}{plus}", self.floor),
            (Some(a), Some(b)) if a == b => format!("{a}{plus}"),
            (Some(a), Some(b)) => format!("{a}–{b}{plus}"),
            _ => format!("< {}", self.floor),
        };
        format!("{range} calls/s (n={})", self.per_rep.len())
    }
}

/// Coarse ladder, then `reps` repetitions of finer steps (≤ 10 % apart)
/// between each path's last passing and first failing coarse rate, VIP and
/// direct alternating; then `fixed_reps` steps at `fixed_rate` per path.
#[allow(clippy::too_many_arguments)]
pub(super) fn data_mode(
    lv: &mut LabVm,
    mode: Transport,
    rates: &[u32],
    secs: u32,
    reps: usize,
    fixed_rate: u32,
    fixed_reps: usize,
    tag: &str,
) -> Res<Mode> {
    let short = match mode {
        Transport::SocketPerCall => "un",
        Transport::SingleSocket => "u1",
    };
    let mut m = Mode {
        transport: mode,
        coarse: Vec::new(),
        fine: Vec::new(),
        reps,
        fixed: Vec::new(),
    };
    let mut done = [false, false];
    for &rate in rates {
        for (i, p) in [Route::Vip, Route::Direct].into_iter().enumerate() {
            if done[i] {
                continue;
            }
            let s = one_step(
                lv,
                p,
                rate,
                secs,
                mode,
                &format!("{tag}-{short}-{p:?}-{rate}"),
            )?;
            let mut ok = s.ok();
            m.coarse.push((p, s));
            if !ok {
                // One noisy step must not end the ladder: a failure counts
                // only when an immediate repeat fails too.
                let s = one_step(
                    lv,
                    p,
                    rate,
                    secs,
                    mode,
                    &format!("{tag}-{short}-{p:?}-{rate}-again"),
                )?;
                ok = s.ok();
                m.coarse.push((p, s));
            }
            done[i] = !ok;
        }
        if done == [true, true] {
            break;
        }
    }
    // Fine ranges per path: from the last passing to the first failing coarse rate.
    let mut plan: Vec<(Route, Vec<u32>)> = Vec::new();
    for p in [Route::Vip, Route::Direct] {
        let (pass, fail) = m.coarse_bounds(p);
        if let (Some(lo), Some(hi)) = (pass, fail) {
            plan.push((p, fine_rates(lo, hi)));
        }
    }
    if reps > 0 && !plan.is_empty() {
        for r in 0..reps {
            let mut stopped = vec![false; plan.len()];
            let longest = plan.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
            for k in 0..longest {
                for (j, (p, rs)) in plan.iter().enumerate() {
                    let Some(&rate) = rs.get(k) else { continue };
                    if stopped[j] {
                        continue;
                    }
                    let s = one_step(
                        lv,
                        *p,
                        rate,
                        secs,
                        mode,
                        &format!("{tag}-{short}-fine{r}-{p:?}-{rate}"),
                    )?;
                    stopped[j] = !s.ok();
                    let failed_first = k == 0 && !s.ok();
                    m.fine.push((*p, r, s));
                    // Failed at the lowest fine rate: step down ~9 % at a
                    // time (at most 3 steps) until one passes, so the
                    // repetition still has a limit.
                    let mut down = rate;
                    for _ in 0..3 {
                        if !failed_first {
                            break;
                        }
                        down = (down as f64 / 1.1).round() as u32;
                        let s = one_step(
                            lv,
                            *p,
                            down,
                            secs,
                            mode,
                            &format!("{tag}-{short}-fine{r}-{p:?}-{down}"),
                        )?;
                        let ok = s.ok();
                        m.fine.push((*p, r, s));
                        if ok {
                            break;
                        }
                    }
                }
            }
        }
    }
    for r in 0..fixed_reps {
        for p in [Route::Vip, Route::Direct] {
            let s = one_step(
                lv,
                p,
                fixed_rate,
                secs.max(8),
                mode,
                &format!("{tag}-{short}-fixed{r}-{p:?}-{fixed_rate}"),
            )?;
            m.fixed.push((p, s));
        }
    }
    Ok(m)
}

/// Guest busy ticks per second with no calls (subtracted from fixed-rate steps).
pub(super) fn idle_busy_per_s(lv: &mut LabVm, secs: u64) -> Res<f64> {
    let a = counters(lv)?;
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let b = counters(lv)?;
    Ok(b.since(&a).busy() as f64 / t.elapsed().as_secs_f64())
}

/// Guest CPU ms per call of fixed-rate steps on `p` (idle baseline
/// subtracted): (total, softirq, n).
pub(super) fn cpu_per_call(m: &Mode, p: Route, idle_per_s: f64) -> Option<(f64, f64, usize)> {
    let v: Vec<(f64, f64)> = m
        .fixed
        .iter()
        .filter(|(q, s)| *q == p && s.stats.created > 0)
        .filter_map(|(_, s)| {
            let d = s.d?;
            let busy = (d.busy() as f64 - idle_per_s * s.wall_s).max(0.0);
            let n = s.stats.created as f64;
            Some((busy * 10.0 / n, d.softirq as f64 * 10.0 / n))
        })
        .collect();
    if v.is_empty() {
        return None;
    }
    let n = v.len();
    Some((
        v.iter().map(|x| x.0).sum::<f64>() / n as f64,
        v.iter().map(|x| x.1).sum::<f64>() / n as f64,
        n,
    ))
}

/// The persistence table grown to `n` templates: one SIP OPTIONS per
/// Call-ID sent to the VIP from the client namespace (python3, paced at
/// `pps`), then the table's line count read in the guest.
pub(super) fn grow_templates(lv: &mut LabVm, n: u32, pps: u32) -> Res<u64> {
    let script = r#"import socket,sys,time
n=int(sys.argv[1]);pps=int(sys.argv[2]);src=sys.argv[3];vip=sys.argv[4]
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind((src,0));port=s.getsockname()[1]
t0=time.monotonic()
for i in range(n):
    m=('OPTIONS sip:t@%s:5060 SIP/2.0\r\nVia: SIP/2.0/UDP %s:%d;branch=z9hG4bKtpl%d\r\nFrom: <sip:t@%s>;tag=%d\r\nTo: <sip:t@%s>\r\nCall-ID: tpl%d-%d@bench\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n'%(vip,src,port,i,src,i,vip,n,i)).encode()
    s.sendto(m,(vip,5060))
    if i%50==0:
        d=t0+i/pps-time.monotonic()
        if d>0: time.sleep(d)
"#;
    let st = Command::new("ip")
        .args(["netns", "exec", &lv.lab.client_ns, "python3", "-c", script])
        .arg(n.to_string())
        .arg(pps.to_string())
        .arg(lv.lab.clients[2].to_string())
        .arg(lv.lab.vip().ip().to_string())
        .status()
        .map_err(|e| format!("python3 in the client namespace: {e}"))?;
    if !st.success() {
        return Err(format!("template sender exited {st}"));
    }
    std::thread::sleep(Duration::from_secs(2));
    let out = guest(lv, "wc -l < /proc/net/ip_vs_conn", Duration::from_secs(120))?;
    out.trim()
        .parse::<u64>()
        .map(|l| l.saturating_sub(1))
        .map_err(|_| format!("ip_vs_conn line count: {out}"))
}

/// Fixed-rate VIP steps (socket per call) with the table at each size.
#[derive(Debug, Clone)]
pub(super) struct Growth {
    /// (templates asked, table entries seen, step).
    pub(super) rows: Vec<(u32, u64, Step)>,
}

pub(super) fn table_growth(lv: &mut LabVm, sizes: &[u32], rate: u32, secs: u32) -> Res<Growth> {
    let mut g = Growth { rows: Vec::new() };
    for &n in sizes {
        // Wait for the previous size's templates to expire first (they live
        // for the persistence timeout after their last packet).
        let seen = grow_templates(lv, n, 2000)?;
        eprintln!("bench: persistence table grown by {n}: {seen} entries");
        let s = one_step(
            lv,
            Route::Vip,
            rate,
            secs,
            Transport::SocketPerCall,
            &format!("templates-{n}"),
        )?;
        g.rows.push((n, seen, s));
    }
    Ok(g)
}
