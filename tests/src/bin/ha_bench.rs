//! `ha_bench`: the HA pair measured, not tested (never fails on a number).
//!
//! One pair boot (two TCG guests, `lab::pair`) at a chosen advert interval, then:
//! 1. a soak: light call load for `--soak-secs`, VRRP captured on the client's WAN wire;
//!    counts master changes, adverts from the backup, resignations, and the advert gaps of
//!    the master (how close a stalled guest came to the master-down interval), plus the
//!    transitions each box logged (`HA transition` in its kernel log);
//! 2. power-off failover rounds at each `--rates` value (the master's QEMU killed, then
//!    powered on again and left to rejoin as backup before the next round): takeover
//!    (first advert of the new master), the first client packet through the new master
//!    and the LAN gap (last packet through the old box to the first through the new),
//!    new calls failed, and the in-progress calls that switched server (their share of
//!    the calls in progress at the failure, and those set up within 2 s of it).
//!
//! `--variant keepalived` runs the same on a keepalived 2.2 pair instead (Debian's
//! keepalived with a vrrp_sync_group, `lvs_sync_daemon` and the same IPVS service, built by
//! tests/bench/build-keepalived-image.sh with PAIR_DIR), `--variant both` the appliance pair
//! first, then the keepalived pair, with the same rounds (one pair booted at a time).
//!
//! Prints `FIGURE` lines and a markdown summary; `--out FILE` also writes the summary.
//! Run through `bash tests/bench/ha-soak.sh` or `tests/bench/ha.sh` (root).

use appliance_tests::lab::booted::{now_us, BOOT_TIMEOUT};
use appliance_tests::lab::capture::Capture;
use appliance_tests::lab::ha;
use appliance_tests::lab::ha_rounds::{round, Event, HaLoad, RoundFigures, Timing};
use appliance_tests::lab::pair::{factory_toml, BoxId, BoxSpec, HaPair, VRID};
use appliance_tests::lab::pcap::{contains, udp_to};
use appliance_tests::lab::{self, VIP};
use appliance_tests::sipp::{Transport, Uac, UacOptions};
use appliance_tests::vm::{ensure_image, repo_root, Image};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct Args {
    advert_cs: u16,
    soak_secs: u64,
    soak_rate: u32,
    rates: Vec<u32>,
    rounds: usize,
    variants: Vec<Variant>,
    out: Option<PathBuf>,
}

/// Which pair is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// Two appliance images (the dev image).
    Appliance,
    /// Two keepalived 2.2 images (VRRP + lvs_sync_daemon + checker).
    Keepalived,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Appliance => "appliance",
            Variant::Keepalived => "keepalived",
        }
    }
}

const USAGE: &str = "usage: ha_bench [--advert-cs N] [--soak-secs S] [--soak-rate R] [--rates R,R,...] [--rounds N] [--variant appliance|keepalived|both] [--out FILE]";

fn parse(argv: &[String]) -> Result<Args, String> {
    let mut a = Args {
        advert_cs: 5,
        soak_secs: 0,
        soak_rate: 2,
        rates: vec![2, 20],
        rounds: 1,
        variants: vec![Variant::Appliance],
        out: None,
    };
    let mut it = argv.iter();
    while let Some(k) = it.next() {
        let mut v = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{k} needs a value\n{USAGE}"))
        };
        let num = |s: String| {
            s.parse::<u64>()
                .map_err(|_| format!("{k}: '{s}' is not a number"))
        };
        match k.as_str() {
            "--advert-cs" => a.advert_cs = num(v()?)?.clamp(1, 4095) as u16,
            "--soak-secs" => a.soak_secs = num(v()?)?.min(24 * 3600),
            "--soak-rate" => a.soak_rate = num(v()?)?.clamp(1, 100) as u32,
            "--rounds" => a.rounds = num(v()?)?.min(20) as usize,
            "--rates" => {
                a.rates = v()?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| num(s.to_string()).map(|n| n.clamp(1, 100) as u32))
                    .collect::<Result<_, _>>()?
            }
            "--variant" => {
                a.variants = match v()?.as_str() {
                    "appliance" => vec![Variant::Appliance],
                    "keepalived" => vec![Variant::Keepalived],
                    "both" => vec![Variant::Appliance, Variant::Keepalived],
                    o => {
                        return Err(format!(
                            "--variant: '{o}' is not appliance, keepalived or both"
                        ))
                    }
                }
            }
            "--out" => a.out = Some(PathBuf::from(v()?)),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown option '{other}'\n{USAGE}")),
        }
    }
    Ok(a)
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    s[(((s.len() - 1) as f64) * p).round() as usize]
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// `HA transition` lines in a box's kernel log (the daemon logs to /dev/kmsg).
fn logged_transitions(pair: &mut HaPair, id: BoxId) -> Option<usize> {
    pair.guest(id, "dmesg | grep -c 'HA transition' || true")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

fn soak(pair: &mut HaPair, a: &Args, md: &mut String) -> Result<(), String> {
    let master = if pair.holds(BoxId::A).map_err(|e| e.to_string())?.0 {
        BoxId::A
    } else {
        BoxId::B
    };
    let backup = master.other();
    let before = [BoxId::A, BoxId::B].map(|id| logged_transitions(pair, id));
    let mut cap = Capture::start_filtered(
        &pair.lab.client_ns.clone(),
        "eth0",
        pair.lab.path("soak-vrrp.pcap"),
        &["vrrp"],
    )
    .map_err(|e| e.to_string())?;
    let t0 = now_us();
    let load0 = loadavg();
    let mut uacs = Vec::new();
    let single = a.soak_rate.div_ceil(2);
    for (i, (rate, tr)) in [
        (single, Transport::SingleSocket),
        (a.soak_rate - single, Transport::SocketPerCall),
    ]
    .into_iter()
    .enumerate()
    {
        if rate == 0 {
            continue;
        }
        let mut o = UacOptions::basic(
            &pair.lab,
            pair.lab.vip(),
            rate * (a.soak_secs as u32 + 60),
            rate,
        );
        o.scenario = "uac_refresh.xml".into();
        o.hold_ms = 1000;
        o.transport = tr;
        o.local = pair.lab.clients[i];
        o.port = 9000 + (i as u16) * 1000;
        o.recv_timeout_ms = 10_000;
        o.time_limit = Duration::from_secs(a.soak_secs + 120);
        uacs.push(Uac::start(&pair.lab, &o, &format!("soak-{i}")).map_err(|e| e.to_string())?);
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(a.soak_secs) {
        std::thread::sleep(Duration::from_secs(60).min(
            Duration::from_secs(a.soak_secs).saturating_sub(start.elapsed())
                + Duration::from_millis(1),
        ));
        eprintln!(
            "ha_bench: soak {:.0}/{} s, load {}",
            start.elapsed().as_secs_f64(),
            a.soak_secs,
            loadavg()
        );
    }
    for u in &uacs {
        u.soft_stop();
    }
    let mut stats = Vec::new();
    for u in uacs {
        stats.push(u.wait().map_err(|e| e.to_string())?);
    }
    let end = now_us();
    let load1 = loadavg();
    cap.finish();
    let frames = cap.frames().map_err(|e| e.to_string())?;
    let ads = ha::adverts(&frames, VRID, t0, end);
    let (m_addr, b_addr) = (pair.spec(master).wan, pair.spec(backup).wan);
    let master_ads: Vec<u64> = ads
        .iter()
        .filter(|(_, _, x)| x.src == m_addr && x.priority > 0)
        .map(|(t, _, _)| *t)
        .collect();
    let backup_ads = ads
        .iter()
        .filter(|(_, _, x)| x.src == b_addr && x.priority > 0)
        .count();
    let resigns = ha::resignations(&frames, VRID, t0, end).len();
    let changes = ha::master_changes(&frames, VRID, t0, end)
        .len()
        .saturating_sub(1);
    let gaps: Vec<f64> = master_ads
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / 1000.0)
        .collect();
    let after = [BoxId::A, BoxId::B].map(|id| logged_transitions(pair, id));
    let logged: Vec<String> = [0, 1]
        .iter()
        .map(|&i| match (before[i], after[i]) {
            (Some(b), Some(a)) => a.saturating_sub(b).to_string(),
            _ => "?".into(),
        })
        .collect();
    let interval_ms = f64::from(a.advert_cs) * 10.0;
    // Master_Down_Interval of the backup (priority 100): 3 × interval + skew.
    let down_ms = 3.0 * interval_ms + (256.0 - 100.0) * interval_ms / 256.0;
    let near = gaps.iter().filter(|g| **g >= down_ms * 0.66).count();
    let failed: u64 = stats.iter().map(|s| s.failed).sum();
    let created: u64 = stats.iter().map(|s| s.created).sum();
    let line = format!(
        "FIGURE ha_soak advert_cs={} secs={} rate={}/s calls={created} failed={failed} master_adverts={} backup_adverts={backup_ads} resignations={resigns} master_changes={changes} logged_transitions_a={} logged_transitions_b={} gap_ms_p50={:.1} p99={:.1} max={:.1} gaps_over_2/3_master_down={near} master_down_ms={down_ms:.0} load_before={load0} load_after={load1}",
        a.advert_cs,
        a.soak_secs,
        a.soak_rate,
        master_ads.len(),
        logged[0],
        logged[1],
        pct(&gaps, 0.5),
        pct(&gaps, 0.99),
        gaps.iter().copied().fold(f64::NAN, f64::max),
    );
    eprintln!("{line}");
    let _ = writeln!(
        md,
        "### Soak: {} s at {} calls/s, advert {} cs\n\n| figure | value |\n|---|---|\n\
         | calls (sipp) / failed | {created} / {failed} |\n\
         | master changes on the WAN wire | {changes} |\n\
         | adverts from the backup (it thought it was master) | {backup_ads} |\n\
         | priority-0 adverts | {resigns} |\n\
         | `HA transition` logged by box A / B during the soak | {} / {} |\n\
         | master advert gap p50 / p99 / max (ms) | {:.1} / {:.1} / {:.1} |\n\
         | gaps ≥ 2/3 of the backup's master-down interval ({down_ms:.0} ms) | {near} |\n\
         | host load average before / after | {load0} / {load1} |\n",
        a.soak_secs,
        a.soak_rate,
        a.advert_cs,
        logged[0],
        logged[1],
        pct(&gaps, 0.5),
        pct(&gaps, 0.99),
        gaps.iter().copied().fold(f64::NAN, f64::max),
    );
    Ok(())
}

fn failovers(pair: &mut HaPair, a: &Args, variant: Variant, md: &mut String) -> Result<(), String> {
    let mut master = if pair.holds(BoxId::A).map_err(|e| e.to_string())?.0 {
        BoxId::A
    } else {
        BoxId::B
    };
    let mut timing = Timing::default();
    // Slow adverts: the takeover alone takes 3.6 × the interval.
    timing.post = timing
        .post
        .max(Duration::from_millis(u64::from(a.advert_cs) * 10 * 6));
    let mut all: Vec<(u32, RoundFigures)> = Vec::new();
    let mut port = 6000u16;
    for &rate in &a.rates {
        for k in 0..a.rounds {
            let single = rate.div_ceil(2);
            let load = HaLoad {
                single_rate: single,
                per_call_rate: rate - single,
                hold_ms: 1000,
                port,
            };
            port = port.wrapping_add(100);
            let name = format!("bench-{rate}cps-{k}");
            let target = master;
            let f = round(
                pair,
                &name,
                Event::PowerOff,
                target,
                target.other(),
                &load,
                &timing,
            )
            .map_err(|e| format!("{name}: {e}"))?;
            eprintln!(
                "{} rate={rate} advert_cs={} variant={}",
                f.figure_line(),
                a.advert_cs,
                variant.name()
            );
            for p in f.problems(pair) {
                eprintln!("ha_bench: {name}: note: {p}");
            }
            all.push((rate, f));
            master = target.other();
            // The powered-off box comes back (as backup: no preemption) for the next round.
            pair.power_on(target).map_err(|e| e.to_string())?;
            pair.wait_up(target, BOOT_TIMEOUT)
                .map_err(|e| e.to_string())?;
            std::thread::sleep(Duration::from_secs(5));
        }
    }
    let _ = writeln!(
        md,
        "### Power-off failover, {} pair, advert {} cs ({} round(s) per rate)\n\n\
         | calls/s | takeover ms (first advert of the new master) | first client packet through the new master, ms | LAN gap ms | in progress at the failure | of them completed | switched server | switched % | switched, set up < 2 s before | new calls failed | sipp failed |\n\
         |---|---|---|---|---|---|---|---|---|---|---|",
        variant.name(),
        a.advert_cs,
        a.rounds
    );
    for &rate in &a.rates {
        let rs: Vec<&RoundFigures> = all
            .iter()
            .filter(|(r, _)| *r == rate)
            .map(|(_, f)| f)
            .collect();
        let list = |f: &dyn Fn(&RoundFigures) -> Option<u64>| {
            rs.iter()
                .map(|r| f(r).map(|v| v.to_string()).unwrap_or_else(|| "-".into()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sum = |f: &dyn Fn(&RoundFigures) -> usize| rs.iter().map(|r| f(r)).sum::<usize>();
        let inflight = sum(&|r| r.calls.inflight);
        let switched = sum(&|r| r.calls.inflight_split.len());
        let _ = writeln!(
            md,
            "| {rate} | {} | {} | {} | {inflight} | {} | {switched} | {:.2} | {} | {} | {} |",
            list(&|r| r.takeover_ms),
            list(&|r| r.wan.first_new_us.map(|t| t.saturating_sub(r.t0_us) / 1000)),
            list(&|r| r.lan.gap_ms()),
            sum(&|r| r.calls.inflight_completed),
            if inflight == 0 {
                0.0
            } else {
                100.0 * switched as f64 / inflight as f64
            },
            sum(&|r| r.calls.inflight_split_recent.len()),
            sum(&|r| r.calls.new_failed.len()),
            rs.iter().map(|r| r.sipp_failed()).sum::<u64>(),
        );
    }
    let take: Vec<f64> = all
        .iter()
        .filter_map(|(_, f)| f.takeover_ms.map(|v| v as f64))
        .collect();
    let _ = writeln!(
        md,
        "\nTakeover over all {} rounds: p50 {:.0} ms, p99 {:.0} ms (with so few rounds p99 is the maximum).\n",
        take.len(),
        pct(&take, 0.5),
        pct(&take, 0.99)
    );
    Ok(())
}

/// keepalived's advert_int (seconds) for an interval in centiseconds.
fn ka_advert(cs: u16) -> String {
    if cs.is_multiple_of(100) {
        (cs / 100).to_string()
    } else {
        format!("{:.2}", f64::from(cs) / 100.0)
    }
}

/// Builds the keepalived pair image: the dev image plus keepalived, each box's network
/// config (the lab pair's per-box config, its `[ha]` section leaving the VIP and the LAN
/// gateway to keepalived) and keepalived.conf.
fn keepalived_image(advert_cs: u16) -> Result<Image, String> {
    let dev = ensure_image().map_err(|e| e.to_string())?;
    let factory = factory_toml().map_err(|e| e.to_string())?;
    let dir = repo_root().join("build/kabench-pair");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (id, f) in [(BoxId::A, "a.toml"), (BoxId::B, "b.toml")] {
        let text = BoxSpec::of(id)
            .config_toml(&factory, advert_cs)
            .map_err(|e| e.to_string())?;
        std::fs::write(dir.join(f), text).map_err(|e| format!("{f}: {e}"))?;
    }
    let out_dir = dev
        .kernel
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| repo_root().join("build"));
    let script = repo_root().join("tests/bench/build-keepalived-image.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .env("OUT_DIR", &out_dir)
        .env("SKIP_DEV_BUILD", "1")
        .env("PAIR_DIR", &dir)
        .env("PAIR_ADVERT", ka_advert(advert_cs))
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    match (out.status.success(), lines.next(), lines.next()) {
        (true, Some(k), Some(i)) => Ok(Image {
            kernel: PathBuf::from(k.trim()),
            initrd: PathBuf::from(i.trim()),
            board: appliance_tests::Board::X86_64,
        }),
        _ => Err(format!(
            "{} failed ({}); its log is above",
            script.display(),
            out.status
        )),
    }
}

/// Boots one variant's pair and runs the soak and the failover rounds on it.
fn run_variant(a: &Args, variant: Variant, lifetime: Duration, md: &mut String) {
    let _ = writeln!(md, "## {} pair\n", variant.name());
    let image = match variant {
        Variant::Appliance => None,
        Variant::Keepalived => match keepalived_image(a.advert_cs) {
            Ok(i) => Some(i),
            Err(e) => {
                eprintln!("ha_bench: no keepalived pair image: {e}");
                let _ = writeln!(md, "The keepalived pair image could not be built: {e}\n");
                return;
            }
        },
    };
    let t = Instant::now();
    let mut pair = match HaPair::boot_image(
        3,
        "uas.xml",
        &[BoxId::A, BoxId::B],
        a.advert_cs,
        lifetime,
        image,
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ha_bench: the {} pair did not boot: {e}", variant.name());
            let _ = writeln!(md, "The {} pair did not boot: {e}\n", variant.name());
            return;
        }
    };
    eprintln!(
        "ha_bench: {} pair up in {:.0} s (advert {} cs)",
        variant.name(),
        t.elapsed().as_secs_f64(),
        a.advert_cs
    );
    // Let the first election settle before measuring (3 intervals + skew, at least 5 s).
    std::thread::sleep(
        Duration::from_secs(5).max(Duration::from_millis(u64::from(a.advert_cs) * 10 * 4)),
    );
    if a.soak_secs > 0 {
        if let Err(e) = soak(&mut pair, a, md) {
            let _ = writeln!(md, "Soak could not complete: {e}\n");
        }
    }
    if let Err(e) = sync_delay(&mut pair, variant, md) {
        let _ = writeln!(md, "Sync delay could not be measured: {e}\n");
    }
    if !a.rates.is_empty() && a.rounds > 0 {
        if let Err(e) = failovers(&mut pair, a, variant, md) {
            let _ = writeln!(md, "Failover rounds stopped: {e}\n");
        }
    }
}

/// IPVS sync daemon port (kernel default).
const SYNC_PORT: u16 = 8848;

/// Sync delay: `calls` calls at `rate`/s through the master; for each, its INVITE on the
/// client's wire → the first IPVS sync datagram carrying its Call-ID on the backup's LAN
/// port (the template reaching the backup). Calls never seen in a sync datagram within
/// the kernel's flush time are counted apart.
fn sync_delay(pair: &mut HaPair, variant: Variant, md: &mut String) -> Result<(), String> {
    let master = if pair.holds(BoxId::A).map_err(|e| e.to_string())?.0 {
        BoxId::A
    } else {
        BoxId::B
    };
    let backup_tap = pair.spec(master.other()).lan_tap.clone();
    let sw = pair.lab.switch_ns.clone();
    let (calls, rate) = (20u32, 2u32);
    let mut sip = Capture::start(
        &pair.lab.client_ns.clone(),
        "eth0",
        pair.lab.path("syncd-sip.pcap"),
    )
    .map_err(|e| e.to_string())?;
    let mut sync = Capture::start_filtered(
        &sw,
        &backup_tap,
        pair.lab.path("syncd-lan.pcap"),
        &["udp", "port", "8848"],
    )
    .map_err(|e| e.to_string())?;
    let mut o = UacOptions::basic(
        &pair.lab,
        SocketAddrV4::new(VIP, lab::SIP_PORT),
        calls,
        rate,
    );
    o.port = 7000;
    let st = Uac::run(&pair.lab, &o, "syncd").map_err(|e| e.to_string())?;
    // The kernel flushes a part-full sync buffer within 3 s: wait that out.
    std::thread::sleep(Duration::from_secs(4));
    sip.finish();
    sync.finish();
    let mut invites: BTreeMap<String, u64> = BTreeMap::new();
    for p in sip.packets().map_err(|e| e.to_string())? {
        if p.is_request("INVITE") && *p.dst.ip() == VIP {
            invites.entry(p.call_id.clone()).or_insert(p.ts_us);
        }
    }
    let data = std::fs::read(&sync.file).map_err(|e| e.to_string())?;
    let msgs = udp_to(&data, SYNC_PORT);
    let mut delays = Vec::new();
    let mut missing = 0usize;
    for (cid, t) in &invites {
        match msgs
            .iter()
            .find(|(ts, p)| *ts + 1_000 >= *t && contains(p, cid.as_bytes()))
        {
            Some((ts, _)) => delays.push((*ts as f64 - *t as f64) / 1000.0),
            None => missing += 1,
        }
    }
    let line = format!(
        "FIGURE ha_sync_delay variant={} calls={} sipp_failed={} sync_datagrams={} with_call_id={} never_synced={missing} p50_ms={:.0} p90_ms={:.0} max_ms={:.0}",
        variant.name(),
        invites.len(),
        st.failed,
        msgs.len(),
        delays.len(),
        pct(&delays, 0.5),
        pct(&delays, 0.9),
        delays.iter().copied().fold(f64::NAN, f64::max),
    );
    eprintln!("{line}");
    let _ = writeln!(
        md,
        "### Sync delay, {} pair ({calls} calls at {rate}/s, INVITE → first sync datagram with its Call-ID on the backup's LAN port)\n\n\
         | calls seen | synced | never synced (4 s after the last call) | p50 ms | p90 ms | max ms | sync datagrams |\n|---|---|---|---|---|---|---|\n\
         | {} | {} | {missing} | {:.0} | {:.0} | {:.0} | {} |\n",
        variant.name(),
        invites.len(),
        delays.len(),
        pct(&delays, 0.5),
        pct(&delays, 0.9),
        delays.iter().copied().fold(f64::NAN, f64::max),
        msgs.len(),
    );
    Ok(())
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let a = match parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Err(why) = lab::check_host() {
        eprintln!("ha_bench: cannot run here: {why}");
        return ExitCode::from(2);
    }
    let per_round = 400u64;
    let lifetime =
        Duration::from_secs(a.soak_secs + per_round * (a.rounds * a.rates.len()) as u64 + 1200);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Run {} (`ha_bench {}`), host load average at start {}.\n",
        date(),
        argv.join(" "),
        loadavg()
    );
    for &variant in &a.variants {
        run_variant(&a, variant, lifetime, &mut md);
    }
    let _ = writeln!(md, "Host load average at the end: {}.", loadavg());
    println!("{md}");
    if let Some(p) = &a.out {
        if let Err(e) = std::fs::write(p, &md) {
            eprintln!("ha_bench: cannot write {}: {e}", p.display());
        }
    }
    ExitCode::SUCCESS
}
