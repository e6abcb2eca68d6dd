//! `bench`: the appliance side by side with the seed's setup (keepalived + LVS).
//!
//! Boots the dev image and then the keepalived benchmark variant
//! (`tests/bench/build-keepalived-image.sh`: Debian keepalived 2.2, LVS, sipp
//! OPTIONS MISC_CHECK) in the same SIP lab (`appliance_tests::lab`), one after
//! the other in one run, and measures on both: failure
//! detection (from packet captures), probe cost, data-path call rate,
//! footprint, config change. Prints a markdown report, ratios first, and
//! writes it to `--out`. A benchmark never fails on a number; a measurement
//! that cannot run is reported as such, with the reason.
//!
//! Run through `bash tests/bench/run.sh` (root; builds both images first).

use appliance_tests::lab::booted::{Failure, LabVm, BOOT_TIMEOUT, READY_TIMEOUT};
use appliance_tests::lab::pcap::SipPacket;
use appliance_tests::lab::rounds::poll_kernel;
use appliance_tests::lab::{self, evidence, Lab, LabOptions, APPLIANCE_LAN, LAN_TAP, WAN_TAP};
use appliance_tests::sipp::{self, Transport, Uac, UacOptions, UacStats};
use appliance_tests::vm::{self, Image, Vm, VmOptions};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

type Res<T> = Result<T, String>;

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Command-line settings.
#[derive(Debug, Clone)]
struct Args {
    /// Failure-detection trials per failure mode and side.
    trials: usize,
    /// Config-change trials (each: one change out, one back).
    changes: usize,
    /// Probe-cost window, seconds.
    cost_secs: u64,
    /// Data-path call rates to step through.
    rates: Vec<u32>,
    /// Seconds per data-path step.
    step_secs: u32,
    /// Real detection trials at the seed's delay_loop 120 (0: computed only).
    dl120_trials: usize,
    /// Call rate of the detection load (socket per call).
    load_rate: u32,
    /// Run only one side ("ours" or "keepalived"), for development.
    only: Option<String>,
    /// Markdown output file.
    out: Option<PathBuf>,
    /// Exact command, for the report.
    command: String,
}

const USAGE: &str = "usage: bench [--trials N (12)] [--changes N (4)] [--cost-secs S (20)]\n\
    \x20            [--rates R,R,... (50,100,200,300,400,600,800,1000,1500)] [--step-secs S (8)]\n\
    \x20            [--dl120-trials N (0)] [--load-rate CPS (25)] [--only ours|keepalived] [--out FILE] [--command TEXT]\n";

fn parse_args() -> Res<Args> {
    let mut a = Args {
        trials: 12,
        changes: 4,
        cost_secs: 20,
        rates: vec![50, 100, 200, 300, 400, 600, 800, 1000, 1500],
        step_secs: 8,
        dl120_trials: 0,
        load_rate: 25,
        only: None,
        out: None,
        command: "bash tests/bench/run.sh".into(),
    };
    let mut it = std::env::args().skip(1);
    let num = |v: Option<String>, what: &str, max: u64| -> Res<u64> {
        let v = v.ok_or(format!("{what} needs a value"))?;
        v.parse::<u64>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or(format!("{what} '{v}': give a whole number up to {max}"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--trials" => a.trials = num(it.next(), "--trials", 200)? as usize,
            "--changes" => a.changes = num(it.next(), "--changes", 50)? as usize,
            "--cost-secs" => a.cost_secs = num(it.next(), "--cost-secs", 600)?.max(5),
            "--step-secs" => a.step_secs = num(it.next(), "--step-secs", 120)?.max(3) as u32,
            "--dl120-trials" => a.dl120_trials = num(it.next(), "--dl120-trials", 10)? as usize,
            "--load-rate" => a.load_rate = num(it.next(), "--load-rate", 200)?.max(3) as u32,
            "--rates" => {
                let v = it.next().ok_or("--rates needs a list")?;
                a.rates = v
                    .split(',')
                    .map(|r| {
                        r.trim()
                            .parse::<u32>()
                            .ok()
                            .filter(|r| (1..=20000).contains(r))
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or(format!("--rates '{v}': comma-separated calls/s, 1..=20000"))?;
            }
            "--only" => a.only = Some(it.next().ok_or("--only needs ours|keepalived")?),
            "--out" => a.out = Some(PathBuf::from(it.next().ok_or("--out needs a file")?)),
            "--command" => a.command = it.next().ok_or("--command needs text")?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(a)
}

// ---------------------------------------------------------------- statistics

/// Median and p99 (nearest rank) of a sample, in its unit.
fn median_p99(v: &[f64]) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = |p: f64| s[(((s.len() as f64) * p).ceil() as usize).clamp(1, s.len()) - 1];
    Some((rank(0.5), rank(0.99)))
}

fn fmt_ms(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} s", v / 1000.0)
    } else {
        format!("{v:.0} ms")
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b <= 0.0 || !a.is_finite() || !b.is_finite() {
        "n/a".into()
    } else {
        let r = a / b;
        if r >= 10.0 {
            format!("{r:.0}×")
        } else {
            format!("{r:.1}×")
        }
    }
}

// ---------------------------------------------------------------- guest helpers

/// Runs a guest command with a long bound; error unless it exits 0.
fn guest(lv: &mut LabVm, cmd: &str, limit: Duration) -> Res<String> {
    let (out, code) = lv.vm.shell_timeout(cmd, limit).map_err(err)?;
    if code != 0 {
        return Err(format!("guest `{cmd}` exited {code}: {}", out.trim()));
    }
    Ok(out)
}

/// Pids in the guest whose /proc/PID/cmdline contains `needle`.
fn guest_pids(lv: &mut LabVm, needle: &str) -> Res<Vec<u32>> {
    let out = guest(
        lv,
        &format!(
            "for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null); \
             case \"$c\" in *'{needle}'*) echo ${{p#/proc/}};; esac; done; true"
        ),
        Duration::from_secs(60),
    )?;
    Ok(out
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// utime+stime+cutime+cstime (clock ticks) of guest processes, summed.
fn guest_ticks(lv: &mut LabVm, pids: &[u32]) -> Res<u64> {
    let mut total = 0;
    for p in pids {
        let s = guest(lv, &format!("cat /proc/{p}/stat"), Duration::from_secs(30))?;
        let rest = s
            .rsplit_once(')')
            .map(|(_, r)| r)
            .ok_or(format!("/proc/{p}/stat unreadable: {s}"))?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After "comm)": state ppid pgrp session tty tpgid flags minflt
        // cminflt majflt cmajflt utime stime cutime cstime.
        for i in 11..=14 {
            total += f
                .get(i)
                .and_then(|v| v.parse::<i64>().ok())
                .ok_or(format!("/proc/{p}/stat field {i}: {s}"))? as u64;
        }
    }
    Ok(total)
}

/// VmRSS in KiB, summed over guest processes.
fn guest_rss_kib(lv: &mut LabVm, pids: &[u32]) -> Res<u64> {
    let mut total = 0;
    for p in pids {
        let s = guest(
            lv,
            &format!("grep VmRSS /proc/{p}/status"),
            Duration::from_secs(30),
        )?;
        total += s
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(format!("VmRSS of {p}: {s}"))?;
    }
    Ok(total)
}

/// The guest's clock ticks per second (USER_HZ; 100 on Linux x86).
const USER_HZ: f64 = 100.0;

/// The /proc/net/ip_vs destination key of a server (`C633640D:13C4`).
fn ipvs_key(a: Ipv4Addr, port: u16) -> String {
    format!("{:08X}:{:04X}", u32::from(a), port)
}

/// Runs `cmd` in the guest and then polls /proc/net/ip_vs (in the guest, no
/// serial round trips) until `want` (an extended regex) matches; returns the
/// guest-measured milliseconds (/proc/uptime, 10 ms resolution) or None when
/// it never matched within the bound.
fn timed_change(lv: &mut LabVm, cmd: &str, want: &str) -> Res<Option<f64>> {
    let line = format!(
        "t0=$(cut -d' ' -f1 /proc/uptime); {cmd} >/dev/null 2>&1; n=0; \
         until grep -qE '{want}' /proc/net/ip_vs || [ $n -ge 3000 ]; do n=$((n+1)); done; \
         t1=$(cut -d' ' -f1 /proc/uptime); echo \"T $t0 $t1 $n\""
    );
    let out = guest(lv, &line, Duration::from_secs(180))?;
    let l = out
        .lines()
        .find(|l| l.starts_with("T "))
        .ok_or(format!("no timing line from the guest: {out}"))?;
    let f: Vec<f64> = l[2..]
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    if f.len() != 3 {
        return Err(format!("bad timing line: {l}"));
    }
    if f[2] >= 3000.0 {
        return Ok(None);
    }
    Ok(Some((f[1] - f[0]) * 1000.0))
}

// ---------------------------------------------------------------- lab + VM

/// One side of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Ours,
    Keepalived,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Ours => "appliance",
            Side::Keepalived => "keepalived",
        }
    }
}

/// Builds the lab, starts the sipp servers, boots `image` on the lab's taps
/// and waits until the kernel balances the VIP over every server. Returns the
/// booted lab and (QEMU start → test shell, QEMU start → VIP ready) in s.
fn boot(image: Image) -> Res<(LabVm, f64, f64)> {
    let mut lab = Lab::new(&LabOptions::default()).map_err(err)?;
    let mut uas = Vec::new();
    for i in 0..lab.servers.len() {
        uas.push(Some(
            sipp::start_uas(&mut lab, i, "uas.xml", 1000).map_err(err)?,
        ));
    }
    // CONFIG_HZ of the kernel (kernel.config beside the bzImage), for the
    // lab's reading of /proc/net/ip_vs timeouts.
    let hz = std::fs::read_to_string(image.kernel.with_file_name("kernel.config"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("CONFIG_HZ=")?.trim().parse().ok())
        })
        .ok_or("no CONFIG_HZ in kernel.config beside the bzImage")?;
    let mut vo = VmOptions::new(image);
    vo.wan_tap = Some(WAN_TAP.into());
    vo.lan_tap = Some(LAN_TAP.into());
    vo.netns = Some(lab.switch_ns.clone());
    vo.hard_timeout = Duration::from_secs(3000);
    let vm = Vm::boot(vo).map_err(err)?;
    let mut lv = LabVm {
        vm,
        uas,
        uas_scenario: "uas.xml".into(),
        uas_hold_ms: 1000,
        hz,
        lab,
    };
    let shell = lv.vm.wait_shell(BOOT_TIMEOUT).map_err(err)?.as_secs_f64();
    lv.wait_balancing(READY_TIMEOUT).map_err(err)?;
    let ready = lv.vm.started().elapsed().as_secs_f64();
    Ok((lv, shell, ready))
}

/// A socket-per-call client load to the VIP that runs until dropped.
fn background_load(lv: &LabVm, rate: u32, port: u16, tag: &str) -> Res<Uac> {
    let mut o = UacOptions::basic(&lv.lab, lv.lab.vip(), rate * 3600, rate);
    o.transport = Transport::SocketPerCall;
    o.local = lv.lab.clients[1];
    o.port = port;
    o.hold_ms = 500;
    o.time_limit = Duration::from_secs(3600);
    Uac::start(&lv.lab, &o, tag).map_err(err)
}

// ---------------------------------------------------------------- a. detection

/// One failure-detection trial.
#[derive(Debug, Clone)]
struct Trial {
    how: Failure,
    /// Failure instant (µs, host clock = capture clock).
    t0: u64,
    /// Kernel table showed the server out (µs), polled through the shell.
    out_at: Option<u64>,
    /// Server restored (µs).
    t1: u64,
}

/// Detection results of one side/setting.
#[derive(Debug, Clone, Default)]
struct Detection {
    /// Per failure mode: ms from failure to the last new INVITE that reached
    /// the dead server (capture evidence), one value per detected trial.
    steering_ms: Vec<(Failure, f64)>,
    /// Per failure mode: ms from failure to the kernel showing it out (polled).
    kernel_ms: Vec<(Failure, f64)>,
    /// Trials where the kernel never showed the server out within the bound.
    undetected: Vec<Failure>,
    /// Per failure mode: new calls that reached the dead server after the
    /// kernel showed it out.
    late_calls: Vec<(Failure, usize)>,
}

impl Detection {
    fn ms(&self, how: Failure) -> Vec<f64> {
        self.steering_ms
            .iter()
            .filter(|(h, _)| *h == how)
            .map(|(_, v)| *v)
            .collect()
    }
    fn kernel(&self, how: Failure) -> Vec<f64> {
        self.kernel_ms
            .iter()
            .filter(|(h, _)| *h == how)
            .map(|(_, v)| *v)
            .collect()
    }
}

/// Takes server `i` out: `Killed` = its sipp SIGKILLed (port closed);
/// `Silent` = its sipp SIGSTOPped (a hung server: datagrams queue, nothing
/// is answered, no ICMP). Returns the instant (µs).
fn fail(lv: &mut LabVm, i: usize, how: Failure) -> Res<u64> {
    match how {
        Failure::Silent => signal_uas(lv, i, nix::sys::signal::Signal::SIGSTOP),
        other => lv.fail_server(i, other).map_err(err),
    }
}

/// Undoes [`fail`]: SIGCONT, or a new sipp for a killed one.
fn restore(lv: &mut LabVm, i: usize, how: Failure) -> Res<u64> {
    match how {
        Failure::Silent => signal_uas(lv, i, nix::sys::signal::Signal::SIGCONT),
        other => lv.restore_server(i, other).map_err(err),
    }
}

/// Sends `sig` to server `i`'s sipp; returns the instant (µs).
fn signal_uas(lv: &LabVm, i: usize, sig: nix::sys::signal::Signal) -> Res<u64> {
    let pid = lv.uas[i].ok_or("server not running")?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).map_err(err)?;
    Ok(appliance_tests::lab::booted::now_us())
}

/// `trials` rounds of {killed, silent} on server 1 under a socket-per-call
/// load to the VIP, one capture on the appliance's LAN attachment for all.
fn detection(
    lv: &mut LabVm,
    args: &Args,
    trials: usize,
    detect_limit: Duration,
    tag: &str,
    mut after_out: impl FnMut(&mut LabVm, Failure) -> Res<()>,
) -> Res<Detection> {
    let server = 1;
    let servers = lv.lab.server_addrs();
    let dead = servers[server];
    let mut cap = lv.capture_lan(&format!("detect-{tag}.pcap")).map_err(err)?;
    let load = background_load(lv, args.load_rate, 5200, &format!("detect-{tag}"))?;
    std::thread::sleep(Duration::from_secs(3));
    let mut done = Vec::new();
    for t in 0..trials {
        for how in [Failure::Killed, Failure::Silent] {
            // Back in and settled (ICMP rate-limit bucket refilled, see docs/probe.md).
            poll_kernel(lv, server, false, Duration::from_secs(60)).map_err(err)?;
            std::thread::sleep(Duration::from_millis(2500));
            let t0 = fail(lv, server, how)?;
            let out_at = poll_kernel(lv, server, true, detect_limit).map_err(err)?;
            if out_at.is_some() {
                after_out(lv, how)?;
            }
            std::thread::sleep(Duration::from_millis(1200));
            let t1 = restore(lv, server, how)?;
            let back = poll_kernel(lv, server, false, Duration::from_secs(30)).map_err(err)?;
            eprintln!(
                "bench: {tag} trial {}/{trials} {how:?}: back in after {}; kernel out after {}",
                t + 1,
                back.map(|b| format!("{} ms", (b - t1) / 1000))
                    .unwrap_or_else(|| "NEVER (30 s)".into()),
                out_at
                    .map(|o| format!("{} ms", (o - t0) / 1000))
                    .unwrap_or_else(|| "NEVER".into())
            );
            done.push(Trial {
                how,
                t0,
                out_at,
                t1,
            });
        }
    }
    poll_kernel(lv, server, false, Duration::from_secs(60)).map_err(err)?;
    drop(load);
    let packets = cap.stop().map_err(err)?;
    Ok(analyse_detection(
        &packets,
        &servers,
        dead,
        &done,
        args.load_rate,
    ))
}

fn analyse_detection(
    packets: &[SipPacket],
    servers: &[Ipv4Addr],
    dead: Ipv4Addr,
    trials: &[Trial],
    rate: u32,
) -> Detection {
    let _ = rate;
    let mut d = Detection::default();
    for tr in trials {
        let during: Vec<(String, u64)> = evidence::new_calls_after(packets, servers, dead, tr.t0)
            .into_iter()
            .filter(|(_, t)| *t < tr.t1)
            .collect();
        match tr.out_at {
            None => d.undetected.push(tr.how),
            Some(o) => {
                let last = during.last().map(|(_, t)| *t).unwrap_or(tr.t0);
                d.steering_ms
                    .push((tr.how, (last.saturating_sub(tr.t0)) as f64 / 1000.0));
                d.kernel_ms.push((tr.how, (o - tr.t0) as f64 / 1000.0));
                d.late_calls
                    .push((tr.how, during.iter().filter(|(_, t)| *t >= o).count()));
            }
        }
    }
    d
}

// ---------------------------------------------------------------- b. probe cost

/// CPU seconds per 1,000 checks over an idle window.
#[derive(Debug, Clone)]
struct Cost {
    cpu_s: f64,
    checks: usize,
    window_s: f64,
}

impl Cost {
    fn per_1000(&self) -> Option<f64> {
        (self.checks > 0).then(|| self.cpu_s * 1000.0 / self.checks as f64)
    }
}

fn probe_cost(lv: &mut LabVm, pids: &[u32], secs: u64, tag: &str) -> Res<Cost> {
    let mut cap = lv.capture_lan(&format!("cost-{tag}.pcap")).map_err(err)?;
    let a = guest_ticks(lv, pids)?;
    let w0 = vm_now_us();
    std::thread::sleep(Duration::from_secs(secs));
    let b = guest_ticks(lv, pids)?;
    let w1 = vm_now_us();
    let packets = cap.stop().map_err(err)?;
    let checks = packets
        .iter()
        .filter(|p| {
            p.is_request("OPTIONS") && *p.src.ip() == APPLIANCE_LAN && p.ts_us >= w0 && p.ts_us < w1
        })
        .count();
    Ok(Cost {
        cpu_s: (b.saturating_sub(a)) as f64 / USER_HZ,
        checks,
        window_s: (w1 - w0) as f64 / 1e6,
    })
}

fn vm_now_us() -> u64 {
    appliance_tests::lab::booted::now_us()
}

// ---------------------------------------------------------------- c. data path

#[derive(Debug, Clone)]
struct Step {
    rate: u32,
    stats: UacStats,
}

impl Step {
    fn failed_ratio(&self) -> f64 {
        if self.stats.created == 0 {
            1.0
        } else {
            self.stats.failed as f64 / self.stats.created as f64
        }
    }
}

fn one_step(
    lv: &LabVm,
    target: SocketAddrV4,
    rate: u32,
    secs: u32,
    port: u16,
    tag: &str,
) -> Res<Step> {
    let mut o = UacOptions::basic(&lv.lab, target, rate * secs, rate);
    o.hold_ms = 0;
    o.transport = Transport::SocketPerCall;
    o.port = port;
    o.recv_timeout_ms = 4000;
    o.time_limit = Duration::from_secs(secs as u64 + 60);
    let stats = Uac::run(&lv.lab, &o, tag).map_err(err)?;
    Ok(Step { rate, stats })
}

/// Steps VIP and direct alternately at each rate; each side stops after its
/// first step with ≥ 1% failed calls.
fn data_path(lv: &mut LabVm, args: &Args) -> Res<(Vec<Step>, Vec<Step>)> {
    lv.lab.client_route_to_servers().map_err(err)?;
    let direct = lv.lab.servers[0].sip();
    let vip = lv.lab.vip();
    let (mut v, mut d) = (Vec::new(), Vec::new());
    let (mut v_done, mut d_done) = (false, false);
    for (i, &rate) in args.rates.iter().enumerate() {
        let port = 21000 + (i as u16) * 20;
        if !v_done {
            let s = one_step(lv, vip, rate, args.step_secs, port, &format!("vip-{rate}"))?;
            eprintln!("bench: VIP {rate}/s: {:?}", s.stats);
            v_done = s.failed_ratio() >= 0.01;
            v.push(s);
        }
        if !d_done {
            let s = one_step(
                lv,
                direct,
                rate,
                args.step_secs,
                port + 10,
                &format!("direct-{rate}"),
            )?;
            eprintln!("bench: direct {rate}/s: {:?}", s.stats);
            d_done = s.failed_ratio() >= 0.01;
            d.push(s);
        }
        if v_done && d_done {
            break;
        }
    }
    Ok((v, d))
}

fn best_rate(steps: &[Step]) -> Option<(u32, bool)> {
    let ok: Vec<&Step> = steps.iter().filter(|s| s.failed_ratio() < 0.01).collect();
    let capped = steps.iter().all(|s| s.failed_ratio() < 0.01);
    ok.last().map(|s| (s.rate, capped))
}

// ---------------------------------------------------------------- e. config change

#[derive(Debug, Clone, Default)]
struct Change {
    out_ms: Vec<f64>,
    back_ms: Vec<f64>,
    not_applied: usize,
    calls: u64,
    failed: u64,
}

/// `n` config changes (server 3 to weight 0 and back) under a socket-per-call
/// load; guest-timed until /proc/net/ip_vs shows the new weight.
fn config_change(
    lv: &mut LabVm,
    n: usize,
    rate: u32,
    out_cmd: &str,
    back_cmd: &str,
    tag: &str,
) -> Res<Change> {
    let key = ipvs_key(lv.lab.servers[2].addr, 5060);
    let w0 = format!("{key} +Masq +0 ");
    let w1 = format!("{key} +Masq +1 ");
    let secs = (n as u32) * 12 + 10;
    let mut o = UacOptions::basic(&lv.lab, lv.lab.vip(), rate * secs, rate);
    o.transport = Transport::SocketPerCall;
    o.local = lv.lab.clients[2];
    o.port = 5400;
    o.hold_ms = 1000;
    o.time_limit = Duration::from_secs(secs as u64 + 120);
    let uac = Uac::start(&lv.lab, &o, &format!("change-{tag}")).map_err(err)?;
    let started = Instant::now();
    let mut c = Change::default();
    std::thread::sleep(Duration::from_secs(3));
    for i in 0..n {
        match timed_change(lv, out_cmd, &w0)? {
            Some(ms) => c.out_ms.push(ms),
            None => c.not_applied += 1,
        }
        std::thread::sleep(Duration::from_secs(2));
        match timed_change(lv, back_cmd, &w1)? {
            Some(ms) => c.back_ms.push(ms),
            None => c.not_applied += 1,
        }
        eprintln!(
            "bench: {tag} change {}/{n}: out {:?} back {:?}",
            i + 1,
            c.out_ms.last(),
            c.back_ms.last()
        );
        std::thread::sleep(Duration::from_secs(2));
        if started.elapsed() > Duration::from_secs(secs as u64 - 4) {
            break;
        }
    }
    let st = uac.wait().map_err(err)?;
    c.calls = st.created;
    c.failed = st.failed;
    Ok(c)
}

// ---------------------------------------------------------------- d. footprint

/// The largest supported config (MAX_SERVICES × MAX_SERVERS = 8 × 64) as
/// TOML, from the factory file (globals and service settings kept).
fn big_config(factory: &str) -> Res<String> {
    let strip = |l: &str| -> String {
        // Drop a trailing comment unless the '#' is inside a string.
        let mut quotes = 0;
        for (i, ch) in l.char_indices() {
            match ch {
                '"' => quotes += 1,
                '#' if quotes % 2 == 0 => return l[..i].trim_end().to_owned(),
                _ => {}
            }
        }
        l.trim_end().to_owned()
    };
    let s = factory
        .find("[[services]]")
        .ok_or("factory.toml has no [[services]]")?;
    let e = factory
        .find("[[services.servers]]")
        .ok_or("factory.toml has no [[services.servers]]")?;
    let keep = |t: &str| -> Vec<String> {
        t.lines()
            .map(strip)
            .filter(|l| !l.trim().is_empty())
            .collect()
    };
    let mut out = keep(&factory[..s]);
    let svc = keep(&factory[s..e]);
    for k in 0..8u8 {
        for l in &svc {
            let l = if l.starts_with("name ") {
                format!("name = \"sip{k}\"")
            } else if l.starts_with("vip ") {
                format!("vip = \"203.0.113.{}\"", 10 + k)
            } else {
                l.clone()
            };
            out.push(l);
        }
        for i in 0..64u8 {
            out.push("[[services.servers]]".into());
            out.push(format!("address = \"198.51.100.{}\"", 11 + i));
            out.push("port = 5060".into());
            out.push("weight = 1".into());
        }
    }
    Ok(out.join("\n") + "\n")
}

/// Writes `text` to `path` in the guest, a few KiB per shell line.
fn guest_write(lv: &mut LabVm, path: &str, text: &str) -> Res<()> {
    guest(lv, &format!(": > {path}"), Duration::from_secs(30))?;
    let mut chunk = String::new();
    for l in text.lines() {
        if l.contains('\'') {
            return Err(format!("line with a quote cannot be sent: {l}"));
        }
        chunk.push_str(&format!(" '{l}'"));
        if chunk.len() > 2500 {
            guest(
                lv,
                &format!("printf '%s\\n'{chunk} >> {path}"),
                Duration::from_secs(60),
            )?;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        guest(
            lv,
            &format!("printf '%s\\n'{chunk} >> {path}"),
            Duration::from_secs(60),
        )?;
    }
    Ok(())
}

fn file_size(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.len())
}

fn gzip_size(p: &Path) -> Option<u64> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -6 -n -c '{}' | wc -c", p.display()))
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

// ---------------------------------------------------------------- the run

/// Everything measured on one side; `None` fields say why in `notes`.
#[derive(Debug, Default)]
struct SideResult {
    shell_s: Option<f64>,
    ready_s: Option<f64>,
    rss_kib: Option<u64>,
    rss_big_kib: Option<(u64, u32)>,
    cost: Option<Cost>,
    detect: Option<Detection>,
    detect_120: Option<Detection>,
    /// Duration of a failing / passing MISC_CHECK run (ms), guest-timed.
    check_fail_ms: Vec<f64>,
    check_ok_ms: Vec<f64>,
    change: Option<Change>,
    vip: Vec<Step>,
    direct: Vec<Step>,
    notes: Vec<String>,
}

fn note<T>(r: &mut SideResult, what: &str, v: Res<T>) -> Option<T> {
    match v {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("bench: {what} could not run: {e}");
            let first = e
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(300)
                .collect::<String>();
            r.notes.push(format!("{what}: could not run: {first}"));
            None
        }
    }
}

/// Runs a guest timing of one MISC_CHECK invocation; returns (ms, exit code).
fn time_check(lv: &mut LabVm, server: Ipv4Addr, port: u16) -> Res<(f64, i32)> {
    let out = guest(
        lv,
        &format!(
            "t0=$(cut -d' ' -f1 /proc/uptime); /etc/keepalived/script.sh {server} {port}; rc=$?; \
             t1=$(cut -d' ' -f1 /proc/uptime); echo \"C $t0 $t1 $rc\""
        ),
        Duration::from_secs(60),
    )?;
    let l = out
        .lines()
        .find(|l| l.starts_with("C "))
        .ok_or(format!("no timing line: {out}"))?;
    let f: Vec<f64> = l[2..]
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    if f.len() != 3 {
        return Err(format!("bad timing line {l}"));
    }
    Ok(((f[1] - f[0]) * 1000.0, f[2] as i32))
}

fn run_ours(args: &Args, r: &mut SideResult) -> Res<()> {
    let image = vm::ensure_image().map_err(err)?;
    let (mut lv, shell, ready) = boot(image)?;
    r.shell_s = Some(shell);
    r.ready_s = Some(ready);
    eprintln!("bench: appliance ready {ready:.1} s after QEMU start");
    let pid = lv
        .daemon_pid()
        .map_err(err)?
        .ok_or("no appliance daemon in the guest")?;
    let pids = [pid];
    r.rss_kib = note(r, "daemon RSS", guest_rss_kib(&mut lv, &pids));
    r.cost = note(
        r,
        "probe cost",
        probe_cost(&mut lv, &pids, args.cost_secs, "ours"),
    );
    r.detect = note(
        r,
        "failure detection",
        detection(
            &mut lv,
            args,
            args.trials,
            Duration::from_secs(20),
            "ours",
            |_, _| Ok(()),
        ),
    );
    // Config change: drain (weight 0 at once) and back (revert the candidate
    // to the saved config, apply).
    let target = lv.lab.servers[2].sip();
    let saved = guest(&mut lv, "appliance save", Duration::from_secs(60));
    if let Err(e) = &saved {
        r.notes.push(format!(
            "appliance save before the config-change trials failed: {e}"
        ));
    }
    r.change = note(
        r,
        "config change",
        config_change(
            &mut lv,
            args.changes,
            10,
            &format!("appliance drain sip {target}"),
            "appliance revert --from saved && appliance apply",
            "ours",
        ),
    );
    if let Some((v, d)) = note(r, "data path", data_path(&mut lv, args)) {
        r.vip = v;
        r.direct = d;
    }
    r.rss_big_kib = note(r, "daemon RSS at 8×64", rss_big(&mut lv));
    Ok(())
}

fn rss_big(lv: &mut LabVm) -> Res<(u64, u32)> {
    let factory =
        std::fs::read_to_string(vm::repo_root().join("rootfs-overlay/etc/appliance/factory.toml"))
            .map_err(err)?;
    let big = big_config(&factory)?;
    guest_write(lv, "/tmp/big.toml", &big)?;
    guest(
        lv,
        "appliance config check /tmp/big.toml",
        Duration::from_secs(60),
    )?;
    guest(
        lv,
        "appliance config import /tmp/big.toml",
        Duration::from_secs(60),
    )?;
    lv.kill_daemon().map_err(err)?;
    // Wait until the kernel has all 8 services, then let the prober run.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let n = guest(
            lv,
            "grep -c '^UDP' /proc/net/ip_vs || true",
            Duration::from_secs(60),
        )?;
        if n.trim().parse::<u32>().unwrap_or(0) >= 8 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "8 services not in the kernel table after 180 s (have {})",
                n.trim()
            ));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    std::thread::sleep(Duration::from_secs(10));
    let pid = lv.daemon_pid().map_err(err)?.ok_or("daemon gone")?;
    let dests = guest(
        lv,
        "grep -cE -- '-> [0-9A-F]{8}:' /proc/net/ip_vs || true",
        Duration::from_secs(60),
    )?;
    let dests = dests.trim().parse::<u32>().unwrap_or(0);
    eprintln!("bench: 8×64 config running, {dests} kernel destinations");
    Ok((guest_rss_kib(lv, &[pid])?, dests))
}

fn run_keepalived(args: &Args, r: &mut SideResult) -> Res<()> {
    let script = vm::repo_root().join("tests/bench/build-keepalived-image.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("SKIP_DEV_BUILD", "1")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed ({})", script.display(), out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut l = text.lines().filter(|l| !l.trim().is_empty());
    let (Some(k), Some(i)) = (l.next(), l.next()) else {
        return Err(format!("{} printed no image paths", script.display()));
    };
    let image = Image {
        kernel: PathBuf::from(k.trim()),
        initrd: PathBuf::from(i.trim()),
        board: vm::Board::X86_64,
    };
    let (mut lv, shell, ready) = boot(image)?;
    r.shell_s = Some(shell);
    r.ready_s = Some(ready);
    eprintln!("bench: keepalived ready {ready:.1} s after QEMU start");
    let pids = guest_pids(&mut lv, "/usr/sbin/keepalived")?;
    if pids.is_empty() {
        return Err("no keepalived process in the guest".into());
    }
    // Let the checkers settle into their loop.
    std::thread::sleep(Duration::from_secs(3));
    r.rss_kib = note(r, "keepalived RSS", guest_rss_kib(&mut lv, &pids));
    r.cost = note(
        r,
        "probe cost",
        probe_cost(&mut lv, &pids, args.cost_secs, "keepalived"),
    );
    let dead = lv.lab.servers[1].addr;
    let mut fails = Vec::new();
    r.detect = note(
        r,
        "failure detection (delay_loop 1)",
        detection(
            &mut lv,
            args,
            args.trials,
            Duration::from_secs(30),
            "keepalived-dl1",
            |lv, _| {
                // How long a failing check runs, timed in the guest (own port).
                if fails.len() < 6 {
                    let (ms, rc) = time_check(lv, dead, 5197)?;
                    if rc != 0 {
                        fails.push(ms);
                    }
                }
                Ok(())
            },
        ),
    );
    r.check_fail_ms = fails;
    let live = lv.lab.servers[0].addr;
    for _ in 0..5 {
        if let Some((ms, 0)) = note(r, "check timing", time_check(&mut lv, live, 5198)) {
            r.check_ok_ms.push(ms);
        }
    }
    // Config change: weight 0 and back by editing keepalived.conf + SIGHUP.
    let conf = "/etc/keepalived/keepalived.conf";
    let s3 = lv.lab.servers[2].addr;
    let hup = "kill -HUP $(cat /run/keepalived.pid 2>/dev/null || pidof keepalived | tr \" \" \"\\n\" | sort -n | head -1)";
    r.change = note(
        r,
        "config change",
        config_change(
            &mut lv,
            args.changes,
            10,
            &format!("sed -i '/real_server {s3} /,/weight/ s/weight 1/weight 0/' {conf} && {hup}"),
            &format!("sed -i '/real_server {s3} /,/weight/ s/weight 0/weight 1/' {conf} && {hup}"),
            "keepalived",
        ),
    );
    if args.dl120_trials > 0 {
        let switched = guest(
            &mut lv,
            &format!("cp /etc/keepalived/keepalived-dl120.conf {conf} && {hup}"),
            Duration::from_secs(30),
        );
        if note(r, "switch to delay_loop 120", switched).is_some() {
            std::thread::sleep(Duration::from_secs(5));
            r.detect_120 = note(
                r,
                "failure detection (delay_loop 120, real trials)",
                detection(
                    &mut lv,
                    args,
                    args.dl120_trials,
                    Duration::from_secs(150),
                    "keepalived-dl120",
                    |_, _| Ok(()),
                ),
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- report

struct Sizes {
    appliance_bin: Option<u64>,
    keepalived_bin: Option<u64>,
    keepalived_extra: Option<u64>,
    bzimage: Option<u64>,
    initramfs: Option<u64>,
    initramfs_gz: Option<u64>,
    k_initramfs: Option<u64>,
    k_initramfs_gz: Option<u64>,
}

fn sizes() -> Sizes {
    let root = vm::repo_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let build = root.join("build");
    Sizes {
        appliance_bin: file_size(&target.join("x86_64-unknown-linux-gnu/release/appliance")),
        keepalived_bin: file_size(Path::new("/usr/sbin/keepalived")),
        keepalived_extra: file_size(&build.join("keepalived/extra.cpio")),
        bzimage: file_size(&build.join("bzImage")),
        initramfs: file_size(&build.join("initramfs.cpio")),
        initramfs_gz: gzip_size(&build.join("initramfs.cpio")),
        k_initramfs: file_size(&build.join("keepalived/initramfs.cpio")),
        k_initramfs_gz: gzip_size(&build.join("keepalived/initramfs.cpio")),
    }
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "not measured".into())
}

fn mp(v: &[f64]) -> String {
    match median_p99(v) {
        Some((m, p)) => format!("{} / {} (n={})", fmt_ms(m), fmt_ms(p), v.len()),
        None => "not measured".into(),
    }
}

fn median(v: &[f64]) -> Option<f64> {
    median_p99(v).map(|(m, _)| m)
}

/// The seed's delay_loop 120, computed: the failure lands at a uniformly
/// random point of the check cycle (delay_loop + a passing check's run time,
/// keepalived re-arms after the check ends), then the failing check runs.
fn model(delay_loop_s: f64, ok_ms: &[f64], fail_ms: &[f64]) -> Option<(f64, f64)> {
    let ok = median(ok_ms)?;
    let (fm, fp) = median_p99(fail_ms)?;
    let cycle = delay_loop_s * 1000.0 + ok;
    Some((0.5 * cycle + fm, 0.99 * cycle + fp))
}

/// The factory probe settings, as the image ships them.
fn factory_probe() -> String {
    let f =
        std::fs::read_to_string(vm::repo_root().join("rootfs-overlay/etc/appliance/factory.toml"))
            .unwrap_or_default();
    let get = |k: &str| {
        f.lines()
            .find_map(|l| {
                let (a, b) = l.split_once('=')?;
                (a.trim() == k).then(|| b.split('#').next().unwrap_or("").trim().to_owned())
            })
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "probe every {} ms, timeout {} ms, fall {}, rise {}",
        get("interval_ms"),
        get("timeout_ms"),
        get("fall"),
        get("rise")
    )
}

fn report(
    args: &Args,
    ours: &SideResult,
    ka: &SideResult,
    sz: &Sizes,
    elapsed: Duration,
) -> String {
    let mut s = String::new();
    let w = &mut s;
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");

    let _ = writeln!(
        w,
        "# Benchmarks: the appliance side by side with the seed's setup\n"
    );
    let _ = writeln!(w, "- Date: {date}");
    let _ = writeln!(
        w,
        "- Machine: {cores} cores ({cpu}), guests under QEMU TCG (no KVM), 256 MiB, 1 vCPU; host load average at the end {load} (shared build machine)"
    );
    let _ = writeln!(
        w,
        "- Command: `{}` (total {:.0} s)",
        args.command,
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        w,
        "- Both sides in this one run, one after the other, on the same kernel (dev image bzImage), the same lab \
         (tests/src/lab: client namespace, 3 sipp UAS servers, taps into the VM) and the same host: \
         **appliance** = dev image, factory config ({}); \
         **keepalived** = benchmark variant (tests/bench/build-keepalived-image.sh): Debian keepalived 2.2.7, \
         `persistence_engine sip`, MISC_CHECK running sipp `-m 1` (1 s receive timeout), delay_loop 1 measured, the seed's 120 computed.",
        factory_probe()
    );
    let _ = writeln!(
        w,
        "- Benchmarks never fail on a number; anything that could not run says so below.\n"
    );

    // ---- ratios first
    let _ = writeln!(
        w,
        "## Ratios (keepalived ÷ appliance; > 1 means the appliance is better)\n"
    );
    let _ = writeln!(
        w,
        "| Measure | Appliance | keepalived + sipp MISC_CHECK | Ratio |"
    );
    let _ = writeln!(w, "|---|---|---|---|");
    let od = ours.detect.as_ref();
    let kd = ka.detect.as_ref();
    for (how, label) in [
        (Failure::Silent, "silent server"),
        (Failure::Killed, "SIP port closed"),
    ] {
        let o = od.map(|d| d.ms(how)).unwrap_or_default();
        let k = kd.map(|d| d.ms(how)).unwrap_or_default();
        let (om, km) = (median(&o), median(&k));
        let _ = writeln!(
            w,
            "| Failure detection, {label}, median (delay_loop 1) | {} | {} | {} |",
            opt(om, fmt_ms),
            opt(km, fmt_ms),
            match (km, om) {
                (Some(k), Some(o)) => ratio(k, o.max(1.0)),
                _ => "n/a".into(),
            }
        );
    }
    let m120 = model(120.0, &ka.check_ok_ms, &ka.check_fail_ms);
    for (how, label) in [
        (Failure::Silent, "silent server"),
        (Failure::Killed, "SIP port closed"),
    ] {
        let o = median(&od.map(|d| d.ms(how)).unwrap_or_default());
        let _ = writeln!(
            w,
            "| Failure detection, {label}, median, seed's delay_loop 120 (computed) | {} | {} | {} |",
            opt(o, fmt_ms),
            opt(m120.map(|m| m.0), fmt_ms),
            match (m120, o) {
                (Some((k, _)), Some(o)) => ratio(k, o.max(1.0)),
                _ => "n/a".into(),
            }
        );
    }
    let oc = ours.cost.as_ref().and_then(Cost::per_1000);
    let kc = ka.cost.as_ref().and_then(Cost::per_1000);
    let _ = writeln!(
        w,
        "| Probe cost, CPU s per 1,000 checks (in the VM) | {} | {} | {} |",
        opt(oc, |v| format!("{v:.3} s")),
        opt(kc, |v| format!("{v:.2} s")),
        match (kc, oc) {
            (Some(k), Some(o)) => ratio(k, o),
            _ => "n/a".into(),
        }
    );
    let _ = writeln!(
        w,
        "| Resident memory (lab config, 1×3) | {} | {} | {} |",
        opt(ours.rss_kib, |v| format!("{v} KiB")),
        opt(ka.rss_kib, |v| format!("{v} KiB")),
        match (ka.rss_kib, ours.rss_kib) {
            (Some(k), Some(o)) => ratio(k as f64, o as f64),
            _ => "n/a".into(),
        }
    );
    let _ = writeln!(
        w,
        "| Initramfs size (uncompressed) | {} | {} | {} |",
        opt(sz.initramfs, mib),
        opt(sz.k_initramfs, mib),
        match (sz.k_initramfs, sz.initramfs) {
            (Some(k), Some(o)) => ratio(k as f64, o as f64),
            _ => "n/a".into(),
        }
    );
    let _ = writeln!(
        w,
        "| Boot to ready (QEMU start → VIP balancing over 3 servers) | {} | {} | {} |",
        opt(ours.ready_s, |v| format!("{v:.1} s")),
        opt(ka.ready_s, |v| format!("{v:.1} s")),
        match (ka.ready_s, ours.ready_s) {
            (Some(k), Some(o)) => ratio(k, o),
            _ => "n/a".into(),
        }
    );
    let ocm = ours.change.as_ref().and_then(|c| median(&c.out_ms));
    let kcm = ka.change.as_ref().and_then(|c| median(&c.out_ms));
    let _ = writeln!(
        w,
        "| Config change to IPVS applied (server to weight 0), median | {} | {} | {} |",
        opt(ocm, fmt_ms),
        opt(kcm, fmt_ms),
        match (kcm, ocm) {
            (Some(k), Some(o)) => ratio(k, o.max(1.0)),
            _ => "n/a".into(),
        }
    );
    let vb = best_rate(&ours.vip);
    let db = best_rate(&ours.direct);
    let _ = writeln!(
        w,
        "| Data path: highest call rate < 1% failed, VIP ÷ direct (same VM routing) | {} | same kernel IPVS path (not re-measured) | {} |",
        match (vb, db) {
            (Some((v, vc)), Some((d, dc))) => format!(
                "{v}{} calls/s via VIP, {d}{} direct",
                if vc { "+" } else { "" },
                if dc { "+" } else { "" }
            ),
            _ => "not measured".into(),
        },
        match (vb, db) {
            (Some((v, _)), Some((d, _))) => format!("{:.2} (VIP/direct)", v as f64 / d as f64),
            _ => "n/a".into(),
        }
    );

    // ---- a. detection
    let _ = writeln!(w, "\n## a. Failure detection\n");
    let _ = writeln!(
        w,
        "Time from the failure to the **last new call (initial INVITE) that still reached the failed server**, from a \
         packet capture on the appliance's LAN attachment (independent of both balancers), under a socket-per-call \
         sipp load of {} calls/s to the VIP (round robin over 3 servers: the failed server's turn comes every ≈{:.0} ms, \
         which is the resolution). Failure = `Killed`: the server's sipp is SIGKILLed (port closed, ICMP port unreachable); \
         `Silent`: the server's sipp SIGSTOPped (a hung server: datagrams queue unanswered, no ICMP; the host kernel has no netem). \
         Median / p99 (nearest rank; with n ≤ 100, p99 is the worst trial). \"Kernel out\" = the failed server at weight 0 \
         or gone in /proc/net/ip_vs, polled over the serial shell (≈ a shell round trip of resolution).\n",
        args.load_rate,
        3000.0 / args.load_rate as f64
    );
    let _ = writeln!(w, "| Setup | Failure | Last new call after failure: median / p99 | Kernel out: median / p99 | Not detected | New calls after kernel out |");
    let _ = writeln!(w, "|---|---|---|---|---|---|");
    let mut rows = |name: &str, d: Option<&Detection>| {
        for how in [Failure::Killed, Failure::Silent] {
            match d {
                Some(d) => {
                    let _ = writeln!(
                        w,
                        "| {name} | {how:?} | {} | {} | {} | {} |",
                        mp(&d.ms(how)),
                        mp(&d.kernel(how)),
                        d.undetected.iter().filter(|h| **h == how).count(),
                        d.late_calls
                            .iter()
                            .filter(|(h, _)| *h == how)
                            .map(|(_, n)| n)
                            .sum::<usize>()
                    );
                }
                None => {
                    let _ = writeln!(w, "| {name} | {how:?} | not measured (see notes) | | | |");
                }
            }
        }
    };
    rows("appliance (defaults)", od);
    rows("keepalived MISC_CHECK, delay_loop 1", kd);
    if ka.detect_120.is_some() {
        rows(
            "keepalived MISC_CHECK, delay_loop 120 (real trials)",
            ka.detect_120.as_ref(),
        );
    }
    let m1 = model(1.0, &ka.check_ok_ms, &ka.check_fail_ms);
    let _ = writeln!(
        w,
        "\nkeepalived at the seed's **delay_loop 120** is computed, not waited for (each trial would take minutes): \
         keepalived re-arms a checker `delay_loop` after its check ends, so a failure lands at a uniformly random point of a \
         cycle of delay_loop + one passing check, and is seen when the next (failing) check ends (MISC_CHECK retry defaults to 0). \
         Guest-timed MISC_CHECK runs: passing {}, failing {}. \
         Model: median = cycle/2 + failing check, p99 = 0.99·cycle + failing check (p99). \
         **delay_loop 120: median {}, p99 {}.** \
         The same model for delay_loop 1 gives median {} / p99 {}, to compare with the measured row above.",
        mp(&ka.check_ok_ms),
        mp(&ka.check_fail_ms),
        opt(m120.map(|m| m.0), fmt_ms),
        opt(m120.map(|m| m.1), fmt_ms),
        opt(m1.map(|m| m.0), fmt_ms),
        opt(m1.map(|m| m.1), fmt_ms),
    );

    // ---- b. probe cost
    let _ = writeln!(w, "\n## b. Probe cost\n");
    let _ = writeln!(
        w,
        "Idle lab (no calls), in the VM: CPU time (utime+stime+cutime+cstime from /proc/PID/stat, 10 ms ticks) of the \
         appliance daemon (everything it does, not just probing) vs every keepalived process (parent + checker; the \
         checker's cutime/cstime include the sh/sipp children it reaps), over the same window; checks = SIP OPTIONS \
         requests from 198.51.100.1 in a LAN capture over that window.\n"
    );
    let _ = writeln!(
        w,
        "| Setup | Window | Checks | CPU | CPU s per 1,000 checks |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|");
    for (name, c) in [
        ("appliance (3 servers, factory interval)", &ours.cost),
        ("keepalived MISC_CHECK (3 servers, delay_loop 1)", &ka.cost),
    ] {
        match c {
            Some(c) => {
                let _ = writeln!(
                    w,
                    "| {name} | {:.1} s | {} | {:.2} s | {} |",
                    c.window_s,
                    c.checks,
                    c.cpu_s,
                    opt(c.per_1000(), |v| format!("{v:.3} s"))
                );
            }
            None => {
                let _ = writeln!(w, "| {name} | not measured (see notes) | | | |");
            }
        }
    }
    let _ = writeln!(
        w,
        "\nOutside the VM (host, release build) the probe helper measured 61 µs of CPU per in-process probe against \
         5.3 ms per forked `sipp -m 1` check (docs/probe.md, `cargo run --release -p appliance --example probe_bench`); \
         not repeated here. Inside the TCG VM every figure is larger, the ratio is what compares."
    );

    // ---- c. data path
    let _ = writeln!(w, "\n## c. Data path\n");
    let _ = writeln!(
        w,
        "sipp UAC, INVITE/ACK/BYE with no hold, a socket per call, {} s per step, from the client namespace; the same \
         sipp UAS servers. **VIP** = through IPVS on the appliance (NAT, SIP persistence); **direct** = to server \
         198.51.100.11 routed through the same VM without IPVS (the physical limit of this path). A step fails at ≥ 1% \
         failed calls (4 s receive timeout); steps alternate VIP/direct at each rate. \"+\" = no step failed (the limit is \
         above the last rate tried). keepalived programs the same kernel IPVS and does not touch packets, so its data path \
         is not measured separately. A Kamailio dispatcher comparison was not run: it needs a third VM variant \
         (kamailio and its modules and libraries, a dispatcher config, a stateless-proxy topology), more than this run's time budget.\n",
        args.step_secs
    );
    let _ = writeln!(
        w,
        "| Rate (calls/s) | VIP created / failed | Direct created / failed |"
    );
    let _ = writeln!(w, "|---|---|---|");
    let n = ours.vip.len().max(ours.direct.len());
    for i in 0..n {
        let cell = |s: Option<&Step>| {
            s.map(|s| {
                format!(
                    "{} / {} ({:.1}%)",
                    s.stats.created,
                    s.stats.failed,
                    s.failed_ratio() * 100.0
                )
            })
            .unwrap_or_else(|| "—".into())
        };
        let rate = ours
            .vip
            .get(i)
            .or(ours.direct.get(i))
            .map(|s| s.rate)
            .unwrap_or(0);
        let _ = writeln!(
            w,
            "| {rate} | {} | {} |",
            cell(ours.vip.get(i)),
            cell(ours.direct.get(i))
        );
    }
    if n == 0 {
        let _ = writeln!(w, "| not measured (see notes) | | |");
    }

    // ---- d. footprint
    let _ = writeln!(w, "\n## d. Footprint\n");
    let _ = writeln!(w, "| Item | Appliance | keepalived variant |");
    let _ = writeln!(w, "|---|---|---|");
    let _ = writeln!(
        w,
        "| Daemon RSS, lab config (1 service × 3 servers) | {} | {} (all keepalived processes, summed VmRSS) |",
        opt(ours.rss_kib, |v| format!("{v} KiB")),
        opt(ka.rss_kib, |v| format!("{v} KiB"))
    );
    let _ = writeln!(
        w,
        "| Daemon RSS, largest supported config (8 services × 64 servers, servers absent) | {} | not measured (it would be 512 sipp MISC_CHECK scripts per delay_loop) |",
        opt(ours.rss_big_kib, |(v, d)| format!("{v} KiB ({d} destinations in the kernel table)"))
    );
    let _ = writeln!(
        w,
        "| Binary | {} (`appliance`, static, all functions) | {} (`keepalived`) + shared libraries; keepalived+sipp+libraries+scripts add {} |",
        opt(sz.appliance_bin, mib),
        opt(sz.keepalived_bin, mib),
        opt(sz.keepalived_extra, mib)
    );
    let _ = writeln!(
        w,
        "| Kernel (bzImage, shared) | {} | same |",
        opt(sz.bzimage, mib)
    );
    let _ = writeln!(
        w,
        "| Initramfs, uncompressed / gzip -6 | {} / {} | {} / {} |",
        opt(sz.initramfs, mib),
        opt(sz.initramfs_gz, mib),
        opt(sz.k_initramfs, mib),
        opt(sz.k_initramfs_gz, mib)
    );
    let _ = writeln!(
        w,
        "| QEMU start → test shell / → VIP balancing over 3 servers | {} / {} | {} / {} |",
        opt(ours.shell_s, |v| format!("{v:.1} s")),
        opt(ours.ready_s, |v| format!("{v:.1} s")),
        opt(ka.shell_s, |v| format!("{v:.1} s")),
        opt(ka.ready_s, |v| format!("{v:.1} s"))
    );

    // ---- e. config change
    let _ = writeln!(w, "\n## e. Config change\n");
    let _ = writeln!(
        w,
        "Server 198.51.100.13 to weight 0 and back, under a socket-per-call load of 10 calls/s (1 s hold) to the VIP. \
         Timed inside the guest (/proc/uptime, 10 ms resolution) from issuing the change to /proc/net/ip_vs showing the new \
         weight. Appliance: `appliance drain sip 198.51.100.13:5060`, back with `appliance revert --from saved && appliance apply`. \
         keepalived: edit the weight in keepalived.conf, `kill -HUP` (reload), and back. Failed calls are sipp's count over the \
         whole load.\n"
    );
    let _ = writeln!(w, "| Setup | To weight 0: median / p99 | Back to 1: median / p99 | Not applied | Calls / failed |");
    let _ = writeln!(w, "|---|---|---|---|---|");
    for (name, c) in [("appliance", &ours.change), ("keepalived", &ka.change)] {
        match c {
            Some(c) => {
                let _ = writeln!(
                    w,
                    "| {name} | {} | {} | {} | {} / {} |",
                    mp(&c.out_ms),
                    mp(&c.back_ms),
                    c.not_applied,
                    c.calls,
                    c.failed
                );
            }
            None => {
                let _ = writeln!(w, "| {name} | not measured (see notes) | | | |");
            }
        }
    }

    // ---- notes
    let _ = writeln!(w, "\n## Notes and what could not run\n");
    let mut any = false;
    for (side, r) in [(Side::Ours, ours), (Side::Keepalived, ka)] {
        for n in &r.notes {
            any = true;
            let _ = writeln!(w, "- {}: {n}", side.name());
        }
    }
    if !any {
        let _ = writeln!(w, "- Every measurement above ran.");
    }
    let _ = writeln!(
        w,
        "- Single-socket clients (an SBC in front) are not used here: with the seed's config (no one-packet scheduling) \
         all their calls stick to one server, see the lab tests (tests/tests/lab_balance.rs)."
    );
    let _ = writeln!(
        w,
        "- Silent = SIGSTOPped sipp, not the lab's blackhole routes (`Failure::Silent`): after those routes were \
         removed the server stayed unreachable for about 60 s in the VM lab, which made repeated trials impossible."
    );
    let _ = writeln!(
        w,
        "- Data-path limits are the last passing step: the true limit lies between it and the next step tried."
    );
    let _ = writeln!(
        w,
        "- TCG makes every in-VM figure slower than on hardware; compare the two columns, not absolute values."
    );
    s
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("bench: {e}");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(why) = lab::check_host() {
        eprintln!("SKIPPED: benchmarks need the SIP lab: {why}");
        return ExitCode::from(0);
    }
    let started = Instant::now();
    let mut ours = SideResult::default();
    let mut ka = SideResult::default();
    let skip = |side: &str| args.only.as_deref().is_some_and(|o| o != side);
    if skip("ours") {
        ours.notes.push("not run (--only)".into());
    } else if let Err(e) = run_ours(&args, &mut ours) {
        eprintln!("bench: appliance side stopped: {e}");
        ours.notes.push(format!(
            "the appliance side stopped early: {}",
            e.lines().next().unwrap_or("")
        ));
    }
    if skip("keepalived") {
        ka.notes.push("not run (--only)".into());
    } else if let Err(e) = run_keepalived(&args, &mut ka) {
        eprintln!("bench: keepalived side stopped: {e}");
        ka.notes.push(format!(
            "the keepalived side stopped early: {}",
            e.lines().next().unwrap_or("")
        ));
    }
    let sz = sizes();
    let text = report(&args, &ours, &ka, &sz, started.elapsed());
    print!("{text}");
    if let Some(p) = &args.out {
        if let Err(e) = std::fs::write(p, &text) {
            eprintln!("bench: cannot write {}: {e}", p.display());
            return ExitCode::from(1);
        }
        eprintln!("bench: wrote {}", p.display());
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(median_p99(&v), Some((5.0, 10.0)));
        assert_eq!(median_p99(&[3.0]), Some((3.0, 3.0)));
        assert_eq!(median_p99(&[]), None);
    }

    #[test]
    fn ipvs_keys() {
        assert_eq!(
            ipvs_key(Ipv4Addr::new(198, 51, 100, 13), 5060),
            "C633640D:13C4"
        );
    }

    #[test]
    fn big_config_has_8_by_64() {
        let f = std::fs::read_to_string(
            vm::repo_root().join("rootfs-overlay/etc/appliance/factory.toml"),
        )
        .expect("factory.toml");
        let b = big_config(&f).expect("big config");
        assert_eq!(b.matches("[[services]]").count(), 8);
        assert_eq!(b.matches("[[services.servers]]").count(), 512);
        assert!(!b.contains('#'));
        assert!(b.contains("vip = \"203.0.113.17\""));
    }

    #[test]
    fn model_of_delay_loop() {
        let (m, p) = model(120.0, &[100.0], &[1000.0]).expect("model");
        assert!((m - (60_050.0 + 1000.0)).abs() < 1e-6);
        assert!((p - (0.99 * 120_100.0 + 1000.0)).abs() < 1e-6);
    }
}
