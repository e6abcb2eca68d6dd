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

mod config_change;
mod data_path;
mod detection;
mod footprint;
mod guest;
mod probe_cost;
mod report;
mod run;
mod side;
mod stats;

use config_change::*;
use data_path::*;
use detection::*;
use footprint::*;
use guest::*;
use probe_cost::*;
use report::*;
use run::*;
use side::*;
use stats::*;

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
