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
use std::net::Ipv4Addr;
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
    /// Repetitions of the finer steps near each data-path limit.
    fine_reps: usize,
    /// Client modes of the data path.
    modes: Vec<Transport>,
    /// Fixed call rate for guest CPU per call (below every limit).
    fixed_rate: u32,
    /// Persistence-table sizes to measure the data path at (0 entries: skip).
    templates: Vec<u32>,
    /// Only the tap-queue experiment on the appliance: (rate, repetitions).
    tap_ab: Option<(u32, usize)>,
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

const USAGE: &str = "usage: bench [--trials N (10)] [--changes N (4)] [--cost-secs S (20)]\n\
    \x20            [--rates R,R,... (200,300,400,500,650,800,1000,1250,1600)] [--step-secs S (5)]\n\
    \x20            [--fine-reps N (3)] [--modes un,u1] [--fixed-rate CPS (200)] [--templates N,N (50000,200000)]\n\
    \x20            [--dl120-trials N (0)] [--load-rate CPS (25)] [--only ours|keepalived|kamailio] [--out FILE] [--command TEXT]\n\
    \x20            [--tap-ab RATE,REPS: only the appliance's host-tap queue experiment, one client socket, to stdout]\n";

fn parse_args() -> Res<Args> {
    let mut a = Args {
        trials: 10,
        changes: 4,
        cost_secs: 20,
        rates: vec![200, 300, 400, 500, 650, 800, 1000, 1250, 1600],
        step_secs: 5,
        fine_reps: 3,
        modes: vec![Transport::SocketPerCall, Transport::SingleSocket],
        fixed_rate: 200,
        templates: vec![50_000, 200_000],
        tap_ab: None,
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
            "--fine-reps" => a.fine_reps = num(it.next(), "--fine-reps", 10)? as usize,
            "--tap-ab" => {
                let v = it.next().ok_or("--tap-ab needs RATE,REPS")?;
                let (r, n) = v
                    .split_once(',')
                    .and_then(|(r, n)| Some((r.parse().ok()?, n.parse().ok()?)))
                    .filter(|(r, n): &(u32, usize)| (1..=20000).contains(r) && (1..=10).contains(n))
                    .ok_or(format!(
                        "--tap-ab '{v}': RATE,REPS (calls/s 1-20000, 1-10 repetitions)"
                    ))?;
                a.tap_ab = Some((r, n));
            }
            "--fixed-rate" => a.fixed_rate = num(it.next(), "--fixed-rate", 5000)?.max(1) as u32,
            "--modes" => {
                let v = it.next().ok_or("--modes needs un, u1 or un,u1")?;
                a.modes = v
                    .split(',')
                    .map(|m| match m.trim() {
                        "un" => Some(Transport::SocketPerCall),
                        "u1" => Some(Transport::SingleSocket),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or(format!(
                        "--modes '{v}': un (socket per call), u1 (one socket) or both"
                    ))?;
            }
            "--templates" => {
                let v = it.next().ok_or("--templates needs a list (0 to skip)")?;
                a.templates = v
                    .split(',')
                    .map(|r| r.trim().parse::<u32>().ok().filter(|n| *n <= 500_000))
                    .collect::<Option<Vec<_>>>()
                    .ok_or(format!(
                        "--templates '{v}': comma-separated counts up to 500000"
                    ))?;
                a.templates.retain(|n| *n > 0);
            }
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
            "--only" => a.only = Some(it.next().ok_or("--only needs ours|keepalived|kamailio")?),
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
    Kamailio,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Ours => "appliance",
            Side::Keepalived => "keepalived",
            Side::Kamailio => "kamailio",
        }
    }
}

/// Builds the lab, starts the sipp servers, boots `image` on the lab's taps
/// and waits until `side` balances the VIP over every server (the kernel
/// table for the IPVS sides, Kamailio's dispatcher list for Kamailio).
/// Returns the booted lab and (QEMU start → test shell, QEMU start → VIP
/// ready) in s.
fn boot(image: Image, side: Side) -> Res<(LabVm, f64, f64)> {
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
    if side == Side::Kamailio {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let f = kam_flags(&mut lv)?;
            if f.len() == lv.lab.servers.len() && f.iter().all(|(_, fl)| fl.starts_with('A')) {
                break;
            }
            if Instant::now() > deadline {
                let why = guest(
                    &mut lv,
                    "kamcmd dispatcher.list 2>&1 | tail -5; ps | grep -c kamailio; dmesg | tail -15",
                    Duration::from_secs(30),
                )
                .unwrap_or_else(|e| e);
                return Err(format!(
                    "Kamailio's dispatcher did not list every server active within {READY_TIMEOUT:?}: {f:?}; guest: {why}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    } else {
        lv.wait_balancing(READY_TIMEOUT).map_err(err)?;
    }
    let ready = lv.vm.started().elapsed().as_secs_f64();
    Ok((lv, shell, ready))
}

/// Kamailio's dispatcher state per destination, from `kamcmd dispatcher.list`
/// in the guest: (address, FLAGS) with FLAGS `AP` = active (probing), `IP` =
/// inactive, `TP` = trying, `D*` = disabled.
fn kam_flags(lv: &mut LabVm) -> Res<Vec<(Ipv4Addr, String)>> {
    let out = guest(
        lv,
        "kamcmd dispatcher.list 2>&1 | grep -E 'URI:|FLAGS:' || true",
        Duration::from_secs(30),
    )?;
    Ok(parse_kam_flags(&out))
}

/// Pairs each `URI: sip:A:P` line with the `FLAGS:` line after it.
fn parse_kam_flags(text: &str) -> Vec<(Ipv4Addr, String)> {
    let mut v = Vec::new();
    let mut uri: Option<Ipv4Addr> = None;
    for l in text.lines().map(str::trim) {
        if let Some(u) = l.strip_prefix("URI:") {
            uri = u
                .trim()
                .trim_start_matches("sip:")
                .split(':')
                .next()
                .and_then(|a| a.parse().ok());
        } else if let Some(f) = l.strip_prefix("FLAGS:") {
            if let Some(a) = uri.take() {
                v.push((a, f.trim().to_owned()));
            }
        }
    }
    v
}

/// Polls until `side` shows `server` out (`out`) or back in; returns the
/// instant (µs) or None when `limit` passes. IPVS sides: the kernel table
/// (weight 0 or absent). Kamailio: the dispatcher's flags (not active).
fn poll_out(
    lv: &mut LabVm,
    side: Side,
    server: usize,
    out: bool,
    limit: Duration,
) -> Res<Option<u64>> {
    if side != Side::Kamailio {
        return poll_kernel(lv, server, out, limit).map_err(err);
    }
    let addr = lv.lab.servers[server].addr;
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let f = kam_flags(lv)?;
        let active = f
            .iter()
            .find(|(a, _)| *a == addr)
            .is_some_and(|(_, fl)| fl.starts_with('A'));
        if active != out {
            return Ok(Some(vm_now_us()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(None)
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
    /// Per trial: (failure mode, new calls caught by the failure = first
    /// INVITE reached the failed server between failure and restore, of
    /// those the calls never completed = no 200 to their BYE in the capture).
    caught: Vec<(Failure, usize, usize)>,
}

impl Detection {
    fn ms(&self, how: Failure) -> Vec<f64> {
        self.steering_ms
            .iter()
            .filter(|(h, _)| *h == how)
            .map(|(_, v)| *v)
            .collect()
    }
    /// Mean caught and lost (never completed) new calls per failure.
    fn per_failure(&self, how: Failure) -> Option<(f64, f64, usize)> {
        let v: Vec<_> = self.caught.iter().filter(|c| c.0 == how).collect();
        (!v.is_empty()).then(|| {
            let n = v.len() as f64;
            (
                v.iter().map(|c| c.1 as f64).sum::<f64>() / n,
                v.iter().map(|c| c.2 as f64).sum::<f64>() / n,
                v.len(),
            )
        })
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
    side: Side,
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
            poll_out(lv, side, server, false, Duration::from_secs(60))?;
            std::thread::sleep(Duration::from_millis(2500));
            let t0 = fail(lv, server, how)?;
            let out_at = poll_out(lv, side, server, true, detect_limit)?;
            if out_at.is_some() {
                after_out(lv, how)?;
            }
            std::thread::sleep(Duration::from_millis(1200));
            let t1 = restore(lv, server, how)?;
            let back = poll_out(lv, side, server, false, Duration::from_secs(30))?;
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
    poll_out(lv, side, server, false, Duration::from_secs(60))?;
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

/// Calls whose first INVITE reached `server` at or after `after_us`. Unlike
/// `evidence::new_calls_after` (client addresses only, as IPVS NAT keeps
/// them), it counts every INVITE: a proxy such as Kamailio forwards from its
/// own LAN address. Health checks are OPTIONS, so they never count.
fn new_calls_after(
    packets: &[SipPacket],
    servers: &[Ipv4Addr],
    server: Ipv4Addr,
    after_us: u64,
) -> Vec<(String, u64)> {
    let mut first: std::collections::BTreeMap<&str, (Ipv4Addr, u64)> = Default::default();
    for p in packets.iter().filter(|p| {
        p.is_request("INVITE") && p.cseq_method == "INVITE" && servers.contains(p.dst.ip())
    }) {
        let e = first.entry(&p.call_id).or_insert((*p.dst.ip(), p.ts_us));
        if p.ts_us < e.1 {
            *e = (*p.dst.ip(), p.ts_us);
        }
    }
    let mut v: Vec<(String, u64)> = first
        .into_iter()
        .filter(|(_, (s, t))| *s == server && *t >= after_us)
        .map(|(c, (_, t))| (c.to_owned(), t))
        .collect();
    v.sort_by_key(|(_, t)| *t);
    v
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
    let completed = evidence::completed_calls(packets);
    for tr in trials {
        let during: Vec<(String, u64)> = new_calls_after(packets, servers, dead, tr.t0)
            .into_iter()
            .filter(|(_, t)| *t < tr.t1)
            .collect();
        let lost = during
            .iter()
            .filter(|(c, _)| !completed.contains(c))
            .count();
        d.caught.push((tr.how, during.len(), lost));
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

/// Guest-wide counters read before and after a data-path step: /proc/stat's
/// cpu line (USER_HZ ticks), the NET_RX/NET_TX softirq counts, softnet
/// backlog drops, UDP receive-buffer errors, the IPVS connection-table lines
/// (templates + non-one-packet entries); and on the host the taps' drops
/// towards the guest (tx_dropped of tapw + tapl: QEMU did not read in time).
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    user: u64,
    system: u64,
    idle: u64,
    irq: u64,
    softirq: u64,
    other: u64,
    net_rx: u64,
    net_tx: u64,
    backlog_drops: u64,
    udp_rcvbuf: u64,
    tap_drops: u64,
}

impl Counters {
    fn busy(&self) -> u64 {
        self.user + self.system + self.irq + self.softirq + self.other
    }
    fn since(&self, a: &Counters) -> Counters {
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
    fn busy_pct(&self) -> f64 {
        let all = self.busy() + self.idle;
        if all == 0 {
            0.0
        } else {
            self.busy() as f64 * 100.0 / all as f64
        }
    }
    fn softirq_pct(&self) -> f64 {
        let all = self.busy() + self.idle;
        if all == 0 {
            0.0
        } else {
            self.softirq as f64 * 100.0 / all as f64
        }
    }
}

const COUNTERS_CMD: &str = "head -1 /proc/stat; grep -E '^ *NET_(RX|TX):' /proc/softirqs; \
     sed 's/^/SN /' /proc/net/softnet_stat; grep '^Udp:' /proc/net/snmp";

/// Parses the guest side of [`Counters`] from [`COUNTERS_CMD`]'s output.
fn parse_counters(text: &str) -> Option<Counters> {
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
fn counters(lv: &mut LabVm) -> Res<Counters> {
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
enum Route {
    /// The VIP: IPVS (appliance) or Kamailio.
    Vip,
    /// Server 1 directly, routed through the same VM.
    Direct,
}

#[derive(Debug, Clone)]
struct Step {
    rate: u32,
    stats: UacStats,
    /// Counter deltas over the step (None: unreadable, see stderr).
    d: Option<Counters>,
    /// Wall time of the step, s.
    wall_s: f64,
}

impl Step {
    fn failed_ratio(&self) -> f64 {
        if self.stats.created == 0 {
            1.0
        } else {
            self.stats.failed as f64 / self.stats.created as f64
        }
    }
    fn ok(&self) -> bool {
        self.failed_ratio() < 0.01
    }
}

static NEXT_PORT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A fresh client port per step (sipp binds it; steps never share one).
fn next_port() -> u16 {
    let n = NEXT_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    21000 + ((n * 4) % 8000) as u16
}

fn mode_name(t: Transport) -> &'static str {
    match t {
        Transport::SocketPerCall => "socket per call",
        Transport::SingleSocket => "one client socket",
    }
}

fn one_step(
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
fn fine_rates(lo: u32, hi: u32) -> Vec<u32> {
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
struct Mode {
    transport: Transport,
    /// Coarse ladder, VIP and direct alternating; each stops at its first failure.
    coarse: Vec<(Route, Step)>,
    /// Fine steps near each path's limit: (path, repetition, step).
    fine: Vec<(Route, usize, Step)>,
    /// Repetitions asked for near the limit.
    reps: usize,
    /// Fixed-rate steps for CPU per call.
    fixed: Vec<(Route, Step)>,
}

/// A path's limit from a [`Mode`]: per repetition the highest passing rate
/// before its first failure (None: it failed at its lowest rate).
#[derive(Debug, Clone)]
struct Limit {
    per_rep: Vec<Option<u32>>,
    /// No step of the path failed (the limit is above `per_rep`).
    capped: bool,
    /// The lowest rate tried near the limit.
    floor: u32,
}

impl Mode {
    fn coarse_of(&self, p: Route) -> Vec<&Step> {
        self.coarse
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, s)| s)
            .collect()
    }

    /// The ladder's (highest passing rate below the first failing one, first
    /// rate where every step failed).
    fn coarse_bounds(&self, p: Route) -> (Option<u32>, Option<u32>) {
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

    fn limit(&self, p: Route) -> Option<Limit> {
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
    fn median(&self) -> Option<f64> {
        let v: Vec<f64> = self
            .per_rep
            .iter()
            .map(|r| r.unwrap_or(self.floor) as f64)
            .collect();
        median(&v)
    }
    fn text(&self) -> String {
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
fn data_mode(
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
fn idle_busy_per_s(lv: &mut LabVm, secs: u64) -> Res<f64> {
    let a = counters(lv)?;
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let b = counters(lv)?;
    Ok(b.since(&a).busy() as f64 / t.elapsed().as_secs_f64())
}

/// Guest CPU ms per call of fixed-rate steps on `p` (idle baseline
/// subtracted): (total, softirq, n).
fn cpu_per_call(m: &Mode, p: Route, idle_per_s: f64) -> Option<(f64, f64, usize)> {
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
fn grow_templates(lv: &mut LabVm, n: u32, pps: u32) -> Res<u64> {
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
struct Growth {
    /// (templates asked, table entries seen, step).
    rows: Vec<(u32, u64, Step)>,
}

fn table_growth(lv: &mut LabVm, sizes: &[u32], rate: u32, secs: u32) -> Res<Growth> {
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
    /// Data path per client mode.
    modes: Vec<Mode>,
    /// Guest busy ticks per second with no calls.
    idle_per_s: Option<f64>,
    /// Data path with a grown persistence table.
    growth: Option<Growth>,
    /// Proportional set size (shared pages split between processes), KiB.
    pss_kib: Option<u64>,
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
    let (mut lv, shell, ready) = boot(image, Side::Ours)?;
    r.shell_s = Some(shell);
    r.ready_s = Some(ready);
    eprintln!("bench: appliance ready {ready:.1} s after QEMU start");
    if let Some((rate, reps)) = args.tap_ab {
        lv.route_wan_to_lan().map_err(err)?;
        tap_ab(&mut lv, args, rate, reps)?;
        if !args.templates.is_empty() {
            let g = table_growth(
                &mut lv,
                &args.templates,
                args.fixed_rate,
                args.step_secs.max(8),
            )?;
            for (n, seen, s) in &g.rows {
                println!(
                    "templates {n}: table {seen} entries; {} / {} failed; busy {} % softirq {} %; wall {:.1} s",
                    s.stats.created,
                    s.stats.failed,
                    opt(s.d, |d| format!("{:.0}", d.busy_pct())),
                    opt(s.d, |d| format!("{:.0}", d.softirq_pct())),
                    s.wall_s
                );
            }
        }
        return Ok(());
    }
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
            Side::Ours,
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
    // The appliance routes nothing from WAN to LAN unless told to (a lab-only setting);
    // the direct path needs it.
    lv.route_wan_to_lan().map_err(err)?;
    run_data_path(&mut lv, args, r, "ours", args.fine_reps)?;
    if !args.templates.is_empty() {
        r.growth = note(
            r,
            "data path with a grown persistence table",
            table_growth(
                &mut lv,
                &args.templates,
                args.fixed_rate,
                args.step_secs.max(8),
            ),
        );
    }
    r.rss_big_kib = note(r, "daemon RSS at 8×64", rss_big(&mut lv));
    Ok(())
}

/// The data path in every client mode, with the client routed to the
/// servers through the VM for the direct path; an idle baseline first.
fn run_data_path(
    lv: &mut LabVm,
    args: &Args,
    r: &mut SideResult,
    tag: &str,
    reps: usize,
) -> Res<()> {
    lv.lab.client_route_to_servers().map_err(err)?;
    r.idle_per_s = note(r, "idle guest CPU baseline", idle_busy_per_s(lv, 5));
    for &mode in &args.modes {
        if let Some(m) = note(
            r,
            &format!("data path ({})", mode_name(mode)),
            data_mode(
                lv,
                mode,
                &args.rates,
                args.step_secs,
                reps,
                args.fixed_rate,
                2,
                tag,
            ),
        ) {
            r.modes.push(m);
        }
    }
    Ok(())
}

/// Host tap queue (txqueuelen of both taps: packets waiting for QEMU to
/// read them) at the default 1000 against 10000, alternating in one boot,
/// VIP and direct, one client socket; prints a markdown table to stdout.
fn tap_ab(lv: &mut LabVm, args: &Args, rate: u32, reps: usize) -> Res<()> {
    lv.lab.client_route_to_servers().map_err(err)?;
    let set = |lv: &LabVm, q: u32| -> Res<()> {
        for tap in [WAN_TAP, LAN_TAP] {
            let st = Command::new("ip")
                .args(["-n", &lv.lab.switch_ns, "link", "set", tap, "txqueuelen"])
                .arg(q.to_string())
                .status()
                .map_err(err)?;
            if !st.success() {
                return Err(format!("ip link set {tap} txqueuelen {q}: {st}"));
            }
        }
        Ok(())
    };
    // Does a direct call (client → server 1, routed, not to the VIP) touch
    // IPVS? The server's replies come from a real server's address and port,
    // so the out hook may hand them to pe sip's conn_out (a template each).
    let lines = |lv: &mut LabVm| -> Res<u64> {
        let o = guest(lv, "wc -l < /proc/net/ip_vs_conn", Duration::from_secs(120))?;
        o.trim()
            .parse::<u64>()
            .map_err(|_| format!("ip_vs_conn lines: {o}"))
    };
    let before = lines(lv)?;
    let s = one_step(
        lv,
        Route::Direct,
        100,
        5,
        Transport::SocketPerCall,
        "direct-templates",
    )?;
    let after = lines(lv)?;
    println!(
        "direct step (socket per call, 100 calls/s): {} calls; /proc/net/ip_vs_conn lines {before} -> {after}",
        s.stats.created
    );
    let mut out = String::from(
        "| Rep | Route | Tap txqueuelen | Rate | Created / failed | Guest busy % | Softirq % | Tap drops |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in 0..reps {
        for route in [Route::Vip, Route::Direct] {
            for q in [1000u32, 10000] {
                set(lv, q)?;
                let s = one_step(
                    lv,
                    route,
                    rate,
                    args.step_secs,
                    Transport::SingleSocket,
                    &format!("tapab{r}-{route:?}-q{q}-{rate}"),
                )?;
                let _ = writeln!(
                    out,
                    "| {} | {route:?} | {q} | {rate} | {} / {} ({:.1} %) | {} | {} | {} |",
                    r + 1,
                    s.stats.created,
                    s.stats.failed,
                    s.failed_ratio() * 100.0,
                    opt(s.d, |d| format!("{:.0}", d.busy_pct())),
                    opt(s.d, |d| format!("{:.0}", d.softirq_pct())),
                    opt(s.d, |d| d.tap_drops.to_string()),
                );
            }
        }
    }
    set(lv, 1000)?;
    println!("{out}");
    Ok(())
}

/// Summed proportional set size (smaps_rollup) of guest processes, KiB.
fn guest_pss_kib(lv: &mut LabVm, pids: &[u32]) -> Res<u64> {
    let mut total = 0;
    for p in pids {
        let s = guest(
            lv,
            &format!("grep '^Pss:' /proc/{p}/smaps_rollup"),
            Duration::from_secs(30),
        )?;
        total += s
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(format!("Pss of {p}: {s}"))?;
    }
    Ok(total)
}

fn run_kamailio(args: &Args, r: &mut SideResult) -> Res<()> {
    let script = vm::repo_root().join("tests/bench/build-kamailio-image.sh");
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
        board: appliance_tests::Board::X86_64,
    };
    let (mut lv, shell, ready) = boot(image, Side::Kamailio)?;
    r.shell_s = Some(shell);
    r.ready_s = Some(ready);
    eprintln!("bench: kamailio ready {ready:.1} s after QEMU start");
    let pids = guest_pids(&mut lv, "/usr/sbin/kamailio")?;
    if pids.is_empty() {
        return Err("no kamailio process in the guest".into());
    }
    std::thread::sleep(Duration::from_secs(3));
    r.rss_kib = note(r, "kamailio RSS", guest_rss_kib(&mut lv, &pids));
    r.pss_kib = note(r, "kamailio PSS", guest_pss_kib(&mut lv, &pids));
    r.cost = note(
        r,
        "probe cost",
        probe_cost(&mut lv, &pids, args.cost_secs, "kamailio"),
    );
    r.detect = note(
        r,
        "failure detection",
        detection(
            &mut lv,
            Side::Kamailio,
            args,
            args.trials,
            Duration::from_secs(30),
            "kamailio",
            |_, _| Ok(()),
        ),
    );
    // One repetition near the limit: Kamailio's own limit, not the kernel's.
    run_data_path(&mut lv, args, r, "kamailio", 1)?;
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
    let (mut lv, shell, ready) = boot(image, Side::Keepalived)?;
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
            Side::Keepalived,
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
                    Side::Keepalived,
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
    kamailio_bin: Option<u64>,
    kamailio_extra: Option<u64>,
    m_initramfs: Option<u64>,
    m_initramfs_gz: Option<u64>,
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
        kamailio_bin: file_size(Path::new("/usr/sbin/kamailio")),
        kamailio_extra: file_size(&build.join("kamailio/extra.cpio")),
        m_initramfs: file_size(&build.join("kamailio/initramfs.cpio")),
        m_initramfs_gz: gzip_size(&build.join("kamailio/initramfs.cpio")),
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

/// Report cell of a detection median for one failure mode.
fn det_median(d: Option<&Detection>, how: Failure) -> Option<f64> {
    median(&d.map(|d| d.ms(how)).unwrap_or_default())
}

/// A side's VIP limit text and median in one client mode.
fn mode_of(r: &SideResult, t: Transport) -> Option<&Mode> {
    r.modes.iter().find(|m| m.transport == t)
}

fn limit_cell(r: &SideResult, t: Transport, p: Route) -> (String, Option<f64>) {
    match mode_of(r, t).and_then(|m| m.limit(p)) {
        Some(l) => (l.text(), l.median()),
        None => ("not measured (see notes)".into(), None),
    }
}

fn cpu_cell(r: &SideResult, t: Transport, p: Route) -> (String, Option<f64>) {
    let idle = r.idle_per_s.unwrap_or(0.0);
    match mode_of(r, t).and_then(|m| cpu_per_call(m, p, idle)) {
        Some((ms, sirq, n)) => (
            format!("{ms:.2} ms ({sirq:.2} ms softirq, n={n})"),
            Some(ms),
        ),
        None => ("not measured (see notes)".into(), None),
    }
}

fn caught_cell(d: Option<&Detection>, how: Failure) -> (String, Option<f64>) {
    match d.and_then(|d| d.per_failure(how)) {
        Some((c, l, n)) => (
            format!("{c:.1} caught, {l:.1} never completed (n={n})"),
            Some(l),
        ),
        None => ("not measured (see notes)".into(), None),
    }
}

fn report(
    args: &Args,
    ours: &SideResult,
    ka: &SideResult,
    km: &SideResult,
    sz: &Sizes,
    elapsed: Duration,
    load_start: &str,
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
    let load = loadavg();
    let kam_ver = Command::new("/usr/sbin/kamailio")
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim_start_matches("version:").trim().to_owned())
        })
        .unwrap_or_else(|| "kamailio (version unknown)".into());

    let _ = writeln!(
        w,
        "# Benchmarks: the appliance side by side with the seed's setup and a Kamailio dispatcher\n"
    );
    let _ = writeln!(w, "- Date: {date}");
    let _ = writeln!(
        w,
        "- Machine: {cores} cores ({cpu}), guests under QEMU TCG (no KVM), 256 MiB, 1 vCPU; host load average \
         (1/5/15 min) at the start {load_start}, at the end {load} (shared build machine: compare columns of this run, \
         not runs)"
    );
    let _ = writeln!(
        w,
        "- Command: `{}` (total {:.0} s)",
        args.command,
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        w,
        "- All three in this one run, one after the other, on the same kernel (dev image bzImage), the same lab \
         (tests/src/lab: client namespace, 3 sipp UAS servers, taps into the VM), the same 1-vCPU guest and the same host: \
         **appliance** = dev image, factory config ({}); \
         **keepalived** = benchmark variant (tests/bench/build-keepalived-image.sh): Debian keepalived 2.2.7, \
         `persistence_engine sip`, MISC_CHECK running sipp `-m 1` (1 s receive timeout), delay_loop 1 measured, the seed's 120 computed; \
         **Kamailio** = benchmark variant (tests/bench/build-kamailio-image.sh): Debian {kam_ver}, a stateless proxy on the VIP, \
         dispatcher algorithm 0 (Call-ID hash), OPTIONS every 1 s to every server (`ds_ping_interval 1`, `ds_probing_mode 1`), \
         out after 1 failed ping (`ds_probing_threshold 1`), back after 2 (`ds_inactive_threshold 2`), a ping unanswered after \
         900 ms (tm `fr_timer 900`); settings and reasons in tests/bench/kamailio/kamailio.cfg.in and section c.",
        factory_probe()
    );
    let _ = writeln!(
        w,
        "- Benchmarks never fail on a number; anything that could not run says so below.\n"
    );

    // ---- ratios first
    let _ = writeln!(
        w,
        "## Ratios (other ÷ appliance; > 1 means the appliance is better)\n"
    );
    let _ = writeln!(
        w,
        "| Measure | Appliance | keepalived + sipp MISC_CHECK | Kamailio dispatcher | keepalived ÷ appliance | Kamailio ÷ appliance |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|");
    let rat = |o: Option<f64>, x: Option<f64>| match (x, o) {
        (Some(x), Some(o)) => ratio(x, o),
        _ => "n/a".into(),
    };
    let od = ours.detect.as_ref();
    let kd = ka.detect.as_ref();
    let md = km.detect.as_ref();
    for (how, label) in [
        (Failure::Silent, "silent server"),
        (Failure::Killed, "SIP port closed"),
    ] {
        let (o, k, m) = (
            det_median(od, how),
            det_median(kd, how),
            det_median(md, how),
        );
        let _ = writeln!(
            w,
            "| Failure detection, {label}, median (keepalived delay_loop 1, Kamailio ping 1 s) | {} | {} | {} | {} | {} |",
            opt(o, fmt_ms),
            opt(k, fmt_ms),
            opt(m, fmt_ms),
            rat(o.map(|o| o.max(1.0)), k),
            rat(o.map(|o| o.max(1.0)), m)
        );
    }
    let m120 = model(120.0, &ka.check_ok_ms, &ka.check_fail_ms);
    let o = det_median(od, Failure::Silent);
    let _ = writeln!(
        w,
        "| Failure detection, silent server, median, seed's delay_loop 120 (computed) | {} | {} | — | {} | — |",
        opt(o, fmt_ms),
        opt(m120.map(|m| m.0), fmt_ms),
        rat(o.map(|o| o.max(1.0)), m120.map(|m| m.0))
    );
    for (how, label) in [(Failure::Killed, "killed"), (Failure::Silent, "silent")] {
        let (oc, ol) = caught_cell(od, how);
        let (kc, kl) = caught_cell(kd, how);
        let (mc, ml) = caught_cell(md, how);
        let _ = writeln!(
            w,
            "| New calls per failure ({label}, {} calls/s): caught by the failure / never completed | {oc} | {kc} | {mc} | {} | {} |",
            args.load_rate,
            rat(ol.map(|v| v.max(0.1)), kl),
            rat(ol.map(|v| v.max(0.1)), ml)
        );
    }
    let oc = ours.cost.as_ref().and_then(Cost::per_1000);
    let kc = ka.cost.as_ref().and_then(Cost::per_1000);
    let mc = km.cost.as_ref().and_then(Cost::per_1000);
    let _ = writeln!(
        w,
        "| Probe cost, CPU s per 1,000 checks (in the VM) | {} | {} | {} | {} | {} |",
        opt(oc, |v| format!("{v:.3} s")),
        opt(kc, |v| format!("{v:.2} s")),
        opt(mc, |v| format!("{v:.3} s")),
        rat(oc, kc),
        rat(oc, mc)
    );
    let _ = writeln!(
        w,
        "| Resident memory (lab config, 1×3; summed VmRSS of every process) | {} | {} | {}{} | {} | {} |",
        opt(ours.rss_kib, |v| format!("{v} KiB")),
        opt(ka.rss_kib, |v| format!("{v} KiB")),
        opt(km.rss_kib, |v| format!("{v} KiB")),
        opt(km.pss_kib, |v| format!(" (PSS {v} KiB)")),
        rat(ours.rss_kib.map(|v| v as f64), ka.rss_kib.map(|v| v as f64)),
        rat(ours.rss_kib.map(|v| v as f64), km.rss_kib.map(|v| v as f64))
    );
    let _ = writeln!(
        w,
        "| Initramfs size (uncompressed) | {} | {} | {} | {} | {} |",
        opt(sz.initramfs, mib),
        opt(sz.k_initramfs, mib),
        opt(sz.m_initramfs, mib),
        rat(
            sz.initramfs.map(|v| v as f64),
            sz.k_initramfs.map(|v| v as f64)
        ),
        rat(
            sz.initramfs.map(|v| v as f64),
            sz.m_initramfs.map(|v| v as f64)
        )
    );
    let _ = writeln!(
        w,
        "| Boot to ready (QEMU start → VIP balancing over 3 servers) | {} | {} | {} | {} | {} |",
        opt(ours.ready_s, |v| format!("{v:.1} s")),
        opt(ka.ready_s, |v| format!("{v:.1} s")),
        opt(km.ready_s, |v| format!("{v:.1} s")),
        rat(ours.ready_s, ka.ready_s),
        rat(ours.ready_s, km.ready_s)
    );
    let ocm = ours.change.as_ref().and_then(|c| median(&c.out_ms));
    let kcm = ka.change.as_ref().and_then(|c| median(&c.out_ms));
    let _ = writeln!(
        w,
        "| Config change to IPVS applied (server to weight 0), median | {} | {} | not measured (no IPVS; see section e) | {} | — |",
        opt(ocm, fmt_ms),
        opt(kcm, fmt_ms),
        rat(ocm.map(|o| o.max(1.0)), kcm)
    );
    for t in [Transport::SocketPerCall, Transport::SingleSocket] {
        if !args.modes.contains(&t) {
            continue;
        }
        let (ot, om) = limit_cell(ours, t, Route::Vip);
        let (mt, mm) = limit_cell(km, t, Route::Vip);
        let (odt, odm) = limit_cell(ours, t, Route::Direct);
        let (mdt, mdm) = limit_cell(km, t, Route::Direct);
        let _ = writeln!(
            w,
            "| Highest call rate < 1 % failed via the VIP ({}), per-repetition range | {ot} | same kernel IPVS path as the appliance (not re-measured) | {mt} | — | {} (inverse: appliance ÷ Kamailio) |",
            mode_name(t),
            rat(mm, om)
        );
        let vr = |v: Option<f64>, d: Option<f64>| match (v, d) {
            (Some(v), Some(d)) if d > 0.0 => format!("{:.2}", v / d),
            _ => "n/a".into(),
        };
        let _ = writeln!(
            w,
            "| VIP ÷ direct (same VM routing; medians of the repetitions), {} | {} (direct {odt}) | — | {} (direct {mdt}) | — | — |",
            mode_name(t),
            vr(om, odm),
            vr(mm, mdm)
        );
        let (oc, ocv) = cpu_cell(ours, t, Route::Vip);
        let (mc, mcv) = cpu_cell(km, t, Route::Vip);
        let _ = writeln!(
            w,
            "| Guest CPU per call via the VIP at {} calls/s ({}) | {oc} | same kernel path | {mc} | — | {} |",
            args.fixed_rate,
            mode_name(t),
            rat(ocv, mcv)
        );
    }

    // ---- a. detection
    let _ = writeln!(w, "\n## a. Failure detection\n");
    let _ = writeln!(
        w,
        "Time from the failure to the **last new call (initial INVITE) that still reached the failed server**, from a \
         packet capture on the appliance's LAN attachment (independent of every balancer), under a socket-per-call \
         sipp load of {} calls/s to the VIP (round robin over 3 servers for the IPVS sides: the failed server's turn comes every ≈{:.0} ms, \
         which is the resolution; Kamailio hashes Call-IDs, so its turns are random with the same mean). Failure = `Killed`: the server's sipp is SIGKILLed (port closed, ICMP port unreachable); \
         `Silent`: the server's sipp SIGSTOPped (a hung server: datagrams queue unanswered, no ICMP; the host kernel has no netem). \
         Median / p99 (nearest rank; with n ≤ 100, p99 is the worst trial). \"Out\" = the failed server at weight 0 \
         or gone in /proc/net/ip_vs (IPVS sides), or not active in `kamcmd dispatcher.list` (Kamailio), polled over the serial shell \
         (≈ a shell round trip of resolution). *Caught* = new calls whose first INVITE reached the failed server between the failure and its \
         restore ({} ms of failure after \"out\"); *never completed* = of those, calls with no 200 to their BYE anywhere in the capture.\n",
        args.load_rate,
        3000.0 / args.load_rate as f64,
        1200
    );
    let _ = writeln!(w, "| Setup | Failure | Last new call after failure: median / p99 | Out: median / p99 | Not detected | New calls after out | Caught / never completed per failure |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    let mut rows = |name: &str, d: Option<&Detection>| {
        for how in [Failure::Killed, Failure::Silent] {
            match d {
                Some(d) => {
                    let _ = writeln!(
                        w,
                        "| {name} | {how:?} | {} | {} | {} | {} | {} |",
                        mp(&d.ms(how)),
                        mp(&d.kernel(how)),
                        d.undetected.iter().filter(|h| **h == how).count(),
                        d.late_calls
                            .iter()
                            .filter(|(h, _)| *h == how)
                            .map(|(_, n)| n)
                            .sum::<usize>(),
                        caught_cell(Some(d), how).0
                    );
                }
                None => {
                    let _ = writeln!(w, "| {name} | {how:?} | not measured (see notes) | | | | |");
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
    rows("Kamailio dispatcher, ping 1 s", md);
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
    let _ = writeln!(
        w,
        "\nKamailio: a ping goes to every server each second; an unanswered one ends after tm's `fr_timer` (900 ms), so a \
         failure is seen 0.9-1.9 s after it happens (port closed included: Kamailio does not read ICMP port-unreachable for \
         its UDP pings, so a closed port looks like a silent server). Its stateless forwarding keeps no call state: an INVITE \
         retransmission of a caught call hashes to the same dead server until the dispatcher marks it inactive, then to the \
         next active server (rescued if the client still retransmits)."
    );

    // ---- b. probe cost
    let _ = writeln!(w, "\n## b. Probe cost\n");
    let _ = writeln!(
        w,
        "Idle lab (no calls), in the VM: CPU time (utime+stime+cutime+cstime from /proc/PID/stat, 10 ms ticks) of the \
         appliance daemon (everything it does, not just probing) vs every keepalived process (parent + checker; the \
         checker's cutime/cstime include the sh/sipp children it reaps) vs every Kamailio process (its timer, UDP workers and \
         ctl processes; the pings are sent by its timer process through tm), over the same window; checks = SIP OPTIONS \
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
        ("Kamailio dispatcher (3 servers, ping 1 s)", &km.cost),
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
         not repeated here. Inside the TCG VM every figure is larger, the ratio is what compares. Kamailio's figure has \
         10 ms ticks over few checks (3 per second): read it as an order of magnitude."
    );

    // ---- c. data path
    let _ = writeln!(w, "\n## c. Data path\n");
    let _ = writeln!(
        w,
        "sipp UAC, INVITE/ACK/BYE with no hold, {} s per step, from the client namespace, in two client modes: **socket per call** \
         (`-t un`, a new source port per call) and **one client socket** (`-t u1`, every call from one port: an SBC or proxy in \
         front, the main real-world case); the same sipp UAS servers. **VIP** = through IPVS on the appliance (NAT, one-packet \
         scheduling, pe sip persistence) or through Kamailio; **direct** = to server 198.51.100.11 routed through the same VM \
         without the balancer (the physical limit of this path). A step fails at ≥ 1 % failed calls (4 s receive timeout). \
         First a coarse ladder ({}), VIP and direct alternating, each path stopping at its first failure confirmed by an immediate repeat; then, for each path, \
         steps at most 10 % apart from its last passing to its first failing coarse rate, repeated {} times (Kamailio: once), VIP and \
         direct alternating, each repetition stopping at its first failure. A repetition's limit is its last passing rate; the \
         table gives the range over the repetitions (\"< X\" = a repetition failed at the lowest fine rate X; \"+\" = nothing failed). \
         Every step also reads the guest's /proc/stat, /proc/softirqs, /proc/net/softnet_stat and /proc/net/snmp over the serial \
         shell, and the host taps' tx_dropped (packets QEMU did not take from the tap in time). keepalived programs the same kernel \
         IPVS and does not touch packets, so its data path is not measured separately.\n",
        args.step_secs,
        args.rates
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        args.fine_reps
    );
    let _ = writeln!(w, "| Side | Client mode | VIP limit | Direct limit | VIP ÷ direct (medians) | Guest CPU per call at {} calls/s, VIP / direct (idle baseline subtracted) |", args.fixed_rate);
    let _ = writeln!(w, "|---|---|---|---|---|---|");
    for (name, r) in [("appliance", ours), ("Kamailio", km)] {
        for t in &args.modes {
            let (vt, vm) = limit_cell(r, *t, Route::Vip);
            let (dt, dm) = limit_cell(r, *t, Route::Direct);
            let (vc, _) = cpu_cell(r, *t, Route::Vip);
            let (dc, _) = cpu_cell(r, *t, Route::Direct);
            let ratio_txt = match (vm, dm) {
                (Some(v), Some(d)) if d > 0.0 => format!("{:.2}", v / d),
                _ => "n/a".into(),
            };
            let _ = writeln!(
                w,
                "| {name} | {} | {vt} | {dt} | {ratio_txt} | {vc} / {dc} |",
                mode_name(*t)
            );
        }
    }
    let _ = writeln!(
        w,
        "\nEvery step (guest busy and softirq share of the step's wall time, NET_RX softirqs per call, backlog drops in the guest, \
         UDP receive-buffer errors in the guest, tap drops on the host):\n"
    );
    let _ = writeln!(w, "| Side | Mode | Phase | Route | Rate | Created / failed | Busy % | Softirq % | NET_RX per call | Backlog drops | UDP rcvbuf errors | Tap drops |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, r) in [("appliance", ours), ("Kamailio", km)] {
        for m in &r.modes {
            let mut all: Vec<(String, Route, &Step)> = Vec::new();
            all.extend(m.coarse.iter().map(|(p, s)| ("coarse".to_owned(), *p, s)));
            all.extend(
                m.fine
                    .iter()
                    .map(|(p, r, s)| (format!("fine {}", r + 1), *p, s)),
            );
            all.extend(m.fixed.iter().map(|(p, s)| ("fixed".to_owned(), *p, s)));
            for (ph, p, s) in all {
                let d = s.d;
                let _ = writeln!(
                    w,
                    "| {name} | {} | {ph} | {p:?} | {} | {} / {} ({:.1} %) | {} | {} | {} | {} | {} | {} |",
                    match m.transport {
                        Transport::SocketPerCall => "un",
                        Transport::SingleSocket => "u1",
                    },
                    s.rate,
                    s.stats.created,
                    s.stats.failed,
                    s.failed_ratio() * 100.0,
                    opt(d, |d| format!("{:.0}", d.busy_pct())),
                    opt(d, |d| format!("{:.0}", d.softirq_pct())),
                    opt(d, |d| format!(
                        "{:.1}",
                        d.net_rx as f64 / s.stats.created.max(1) as f64
                    )),
                    opt(d, |d| d.backlog_drops.to_string()),
                    opt(d, |d| d.udp_rcvbuf.to_string()),
                    opt(d, |d| d.tap_drops.to_string()),
                );
            }
        }
    }
    let _ = writeln!(w, "\n### Persistence table size\n");
    let _ = writeln!(
        w,
        "The pe sip table holds one template per Call-ID for the persistence timeout (factory 120 s), so at R calls/s it holds \
         about 120·R entries. Here it is grown by one SIP OPTIONS per new Call-ID sent to the VIP from the client namespace \
         (2,000/s; each makes a template and is answered by a server), then a VIP step at {} calls/s (socket per call) runs \
         at once, well inside the templates' lifetime. Entries = lines of /proc/net/ip_vs_conn (templates and any non-one-packet \
         connections). Kernel hash table: CONFIG_IP_VS_TAB_BITS=12 (4,096 buckets).\n",
        args.fixed_rate
    );
    let _ = writeln!(w, "| Templates added | Table entries | Created / failed | Guest busy % | Softirq % | Guest CPU per call |");
    let _ = writeln!(w, "|---|---|---|---|---|---|");
    if let Some(base) = mode_of(ours, Transport::SocketPerCall)
        .and_then(|m| cpu_per_call(m, Route::Vip, ours.idle_per_s.unwrap_or(0.0)))
    {
        let _ = writeln!(
            w,
            "| 0 (fixed-rate steps above) | — | — | — | — | {:.2} ms |",
            base.0
        );
    }
    match &ours.growth {
        Some(g) => {
            for (n, seen, s) in &g.rows {
                let cpc = s.d.map(|d| {
                    (d.busy() as f64 - ours.idle_per_s.unwrap_or(0.0) * s.wall_s).max(0.0) * 10.0
                        / s.stats.created.max(1) as f64
                });
                let _ = writeln!(
                    w,
                    "| {n} | {seen} | {} / {} ({:.1} %) | {} | {} | {} |",
                    s.stats.created,
                    s.stats.failed,
                    s.failed_ratio() * 100.0,
                    opt(s.d, |d| format!("{:.0}", d.busy_pct())),
                    opt(s.d, |d| format!("{:.0}", d.softirq_pct())),
                    opt(cpc, |v| format!("{v:.2} ms"))
                );
            }
        }
        None => {
            let _ = writeln!(
                w,
                "| not measured | | | | | {} |",
                if args.templates.is_empty() {
                    "skipped (--templates 0)"
                } else {
                    "see notes"
                }
            );
        }
    }

    // ---- d. footprint
    let _ = writeln!(w, "\n## d. Footprint\n");
    let _ = writeln!(
        w,
        "| Item | Appliance | keepalived variant | Kamailio variant |"
    );
    let _ = writeln!(w, "|---|---|---|---|");
    let _ = writeln!(
        w,
        "| Daemon RSS, lab config (1 service × 3 servers) | {} | {} (all keepalived processes, summed VmRSS) | {} (all Kamailio processes, summed VmRSS: shared memory counted in each){} |",
        opt(ours.rss_kib, |v| format!("{v} KiB")),
        opt(ka.rss_kib, |v| format!("{v} KiB")),
        opt(km.rss_kib, |v| format!("{v} KiB")),
        opt(km.pss_kib, |v| format!("; PSS {v} KiB"))
    );
    let _ = writeln!(
        w,
        "| Daemon RSS, largest supported config (8 services × 64 servers, servers absent) | {} | not measured (it would be 512 sipp MISC_CHECK scripts per delay_loop) | not measured (the lab config only) |",
        opt(ours.rss_big_kib, |(v, d)| format!("{v} KiB ({d} destinations in the kernel table)"))
    );
    let _ = writeln!(
        w,
        "| Binary | {} (`appliance`, static, all functions) | {} (`keepalived`) + shared libraries; keepalived+sipp+libraries+scripts add {} | {} (`kamailio`) + modules and libraries; Kamailio+kamcmd+10 modules+libraries+config add {} |",
        opt(sz.appliance_bin, mib),
        opt(sz.keepalived_bin, mib),
        opt(sz.keepalived_extra, mib),
        opt(sz.kamailio_bin, mib),
        opt(sz.kamailio_extra, mib)
    );
    let _ = writeln!(
        w,
        "| Kernel (bzImage, shared) | {} | same | same |",
        opt(sz.bzimage, mib)
    );
    let _ = writeln!(
        w,
        "| Initramfs, uncompressed / gzip -6 | {} / {} | {} / {} | {} / {} |",
        opt(sz.initramfs, mib),
        opt(sz.initramfs_gz, mib),
        opt(sz.k_initramfs, mib),
        opt(sz.k_initramfs_gz, mib),
        opt(sz.m_initramfs, mib),
        opt(sz.m_initramfs_gz, mib)
    );
    let _ = writeln!(
        w,
        "| QEMU start → test shell / → VIP balancing over 3 servers | {} / {} | {} / {} | {} / {} (dispatcher lists all 3 active) |",
        opt(ours.shell_s, |v| format!("{v:.1} s")),
        opt(ours.ready_s, |v| format!("{v:.1} s")),
        opt(ka.shell_s, |v| format!("{v:.1} s")),
        opt(ka.ready_s, |v| format!("{v:.1} s")),
        opt(km.shell_s, |v| format!("{v:.1} s")),
        opt(km.ready_s, |v| format!("{v:.1} s"))
    );

    // ---- e. config change
    let _ = writeln!(w, "\n## e. Config change\n");
    let _ = writeln!(
        w,
        "Server 198.51.100.13 to weight 0 and back, under a socket-per-call load of 10 calls/s (1 s hold) to the VIP. \
         Timed inside the guest (/proc/uptime, 10 ms resolution) from issuing the change to /proc/net/ip_vs showing the new \
         weight. Appliance: `appliance drain sip 198.51.100.13:5060`, back with `appliance revert --from saved && appliance apply`. \
         keepalived: edit the weight in keepalived.conf, `kill -HUP` (reload), and back. Failed calls are sipp's count over the \
         whole load. Kamailio is not measured here: it has no kernel table to time, and its equivalent \
         (`kamcmd dispatcher.set_state`) acts on the next request by construction.\n"
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
    let _ = writeln!(w, "\n{NOTES_HEADING}\n");
    let mut any = false;
    for (side, r) in [
        (Side::Ours, ours),
        (Side::Keepalived, ka),
        (Side::Kamailio, km),
    ] {
        for n in &r.notes {
            any = true;
            let _ = writeln!(w, "- {}: {n}", side.name());
        }
    }
    if !any {
        let _ = writeln!(w, "- Every measurement in sections a-e ran.");
    }
    let _ = writeln!(
        w,
        "- Silent = SIGSTOPped sipp, not the lab's blackhole routes (`Failure::Silent`): after those routes were \
         removed the server stayed unreachable for about 60 s in the VM lab, which made repeated trials impossible."
    );
    let _ = writeln!(
        w,
        "- TCG makes every in-VM figure slower than on hardware; compare the columns, not absolute values. Kamailio and IPVS \
         run on the same 1-vCPU guest kernel: the L7 proxy pays for user-space copies and SIP parsing in the same CPU budget in \
         which IPVS forwards in softirq."
    );
    s
}

/// The generated report's last heading; hand-written sections of the
/// existing file (those the generator does not produce) are kept before it.
const NOTES_HEADING: &str = "## Notes and what could not run";

/// Headings (prefixes) the generator writes; every other `## ` section of
/// the existing file is hand-maintained and carried over.
const GENERATED: [&str; 7] = [
    "## Ratios",
    "## a. ",
    "## b. ",
    "## c. ",
    "## d. ",
    "## e. ",
    NOTES_HEADING,
];

/// `generated` with the hand-written `## ` sections of `old` inserted
/// before the notes, in their order.
fn merge_kept(generated: &str, old: &str) -> String {
    let mut kept = String::new();
    let mut keep = false;
    for l in old.lines() {
        if l.starts_with("## ") {
            keep = !GENERATED.iter().any(|g| l.starts_with(g));
        } else if l.starts_with("# ") {
            keep = false;
        }
        if keep {
            kept.push_str(l);
            kept.push('\n');
        }
    }
    if kept.is_empty() {
        return generated.to_owned();
    }
    match generated.find(&format!("\n{NOTES_HEADING}")) {
        Some(i) => format!(
            "{}\n{}{}",
            &generated[..i],
            kept.trim_end_matches('\n').to_owned() + "\n",
            &generated[i..]
        ),
        None => format!("{generated}\n{kept}"),
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
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
    let load_start = loadavg();
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
    let mut km = SideResult::default();
    if skip("kamailio") {
        km.notes.push("not run (--only)".into());
    } else if let Err(e) = run_kamailio(&args, &mut km) {
        eprintln!("bench: kamailio side stopped: {e}");
        km.notes.push(format!(
            "the kamailio side stopped early: {}",
            e.lines().next().unwrap_or("")
        ));
    }
    let sz = sizes();
    let text = report(&args, &ours, &ka, &km, &sz, started.elapsed(), &load_start);
    print!("{text}");
    if let Some(p) = &args.out {
        let text = merge_kept(&text, &std::fs::read_to_string(p).unwrap_or_default());
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
    fn kamcmd_flags() {
        let t = "{\n\tURI: sip:198.51.100.11:5060\n\tFLAGS: AP\n\tPRIORITY: 0\n}\n\
                 {\n\tURI: sip:198.51.100.12:5060\n\tFLAGS: IP\n}\n";
        assert_eq!(
            parse_kam_flags(t),
            vec![
                (Ipv4Addr::new(198, 51, 100, 11), "AP".to_owned()),
                (Ipv4Addr::new(198, 51, 100, 12), "IP".to_owned())
            ]
        );
        assert!(parse_kam_flags("error: 500 - No dispatcher").is_empty());
    }

    #[test]
    fn guest_counters() {
        let t = "cpu  100 5 200 1000 10 3 400 0 0 0\n\
                 NET_TX:         12\n      NET_RX:       3456\n\
                 SN 0000abcd 00000002 00000000 00000000\n\
                 Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                 Udp: 10 0 3 9 7 0\n";
        let c = parse_counters(t).expect("counters");
        assert_eq!(
            (c.user, c.system, c.idle, c.irq, c.softirq),
            (105, 200, 1010, 3, 400)
        );
        assert_eq!(
            (c.net_rx, c.net_tx, c.backlog_drops, c.udp_rcvbuf),
            (3456, 12, 2, 7)
        );
        assert_eq!(c.busy(), 708);
        assert!(parse_counters("garbage").is_none());
    }

    #[test]
    fn fine_steps_at_most_ten_percent_apart() {
        let v = fine_rates(500, 650);
        assert_eq!((v[0], *v.last().unwrap()), (500, 650));
        for w in v.windows(2) {
            assert!(w[1] as f64 / w[0] as f64 <= 1.1 + 1e-9, "{v:?}");
        }
        assert_eq!(fine_rates(500, 500), vec![500]);
    }

    #[test]
    fn hand_written_sections_are_kept() {
        let gen = "# T\n\n## a. X\nnew a\n\n## Notes and what could not run\n\n- n\n";
        let old = "# T\n\n## a. X\nold a\n\n## f. Kept\nkept f\n\n## Notes and what could not run\n\n- old\n";
        let m = merge_kept(gen, old);
        assert!(
            m.contains("new a") && !m.contains("old a") && !m.contains("- old"),
            "{m}"
        );
        let f = m.find("## f. Kept").expect("kept");
        assert!(
            f < m.find("## Notes").unwrap() && m.contains("kept f"),
            "{m}"
        );
        assert_eq!(merge_kept(gen, ""), gen);
    }

    fn step(rate: u32, failed: u64) -> Step {
        Step {
            rate,
            stats: UacStats {
                created: 1000,
                successful: 1000 - failed,
                failed,
                exit_code: Some(0),
            },
            d: None,
            wall_s: 5.0,
        }
    }

    #[test]
    fn limits_per_repetition() {
        let m = Mode {
            transport: Transport::SingleSocket,
            coarse: vec![
                (Route::Vip, step(800, 0)),
                (Route::Vip, step(1000, 300)),
                (Route::Direct, step(800, 0)),
                (Route::Direct, step(1000, 0)),
            ],
            fine: vec![
                // Repetition 1: passes 800 and 862, fails 928.
                (Route::Vip, 0, step(800, 0)),
                (Route::Vip, 0, step(862, 0)),
                (Route::Vip, 0, step(928, 50)),
                // Repetition 2: fails 800, passes 727 on the way down.
                (Route::Vip, 1, step(800, 20)),
                (Route::Vip, 1, step(727, 0)),
            ],
            reps: 2,
            fixed: vec![],
        };
        let l = m.limit(Route::Vip).expect("limit");
        assert_eq!(l.per_rep, vec![Some(862), Some(727)]);
        assert!(!l.capped);
        assert_eq!(l.text(), "727–862 calls/s (n=2)");
        let d = m.limit(Route::Direct).expect("limit");
        assert!(d.capped);
        assert_eq!(d.text(), "1000+ calls/s (n=1)");
    }

    #[test]
    fn a_noisy_ladder_step_is_repeated_before_it_counts() {
        let m = Mode {
            transport: Transport::SocketPerCall,
            coarse: vec![
                (Route::Vip, step(200, 46)),
                (Route::Vip, step(200, 0)),
                (Route::Vip, step(300, 0)),
                (Route::Vip, step(400, 300)),
                (Route::Vip, step(400, 200)),
            ],
            fine: vec![],
            reps: 0,
            fixed: vec![],
        };
        assert_eq!(m.coarse_bounds(Route::Vip), (Some(300), Some(400)));
        assert_eq!(m.limit(Route::Vip).expect("limit").per_rep, vec![Some(300)]);
    }

    #[test]
    fn model_of_delay_loop() {
        let (m, p) = model(120.0, &[100.0], &[1000.0]).expect("model");
        assert!((m - (60_050.0 + 1000.0)).abs() < 1e-6);
        assert!((p - (0.99 * 120_100.0 + 1000.0)).abs() < 1e-6);
    }
}
