//! `lab-demo`: boots the appliance image in the SIP lab, runs a call load
//! with a live per-server table (from packet captures, plus the kernel's
//! IPVS weights read through the guest's test shell), kills one server's SIP
//! process in the middle and brings it back, then attaches the serial
//! console to this terminal (Ctrl-] quits). Everything is torn down on exit,
//! on Ctrl-C, and on panic. Run through `tests/demo.sh` (as root).

use appliance_tests::lab::booted::{Failure, LabVm};
use appliance_tests::lab::rounds::Load;
use appliance_tests::lab::{self, evidence, LabOptions};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

struct Args {
    duration: u64,
    rate: u32,
    failure: bool,
    console: bool,
}

fn usage() -> &'static str {
    "usage: lab-demo [--duration SECS (default 60, 10..=600)] [--rate CALLS_PER_S (default 6, 1..=50)]\n\
     \x20               [--no-failure] [--no-console]\n"
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        duration: 60,
        rate: 6,
        failure: true,
        console: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |name: &str, lo: u64, hi: u64| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{name} needs a value"))?;
            match v.parse::<u64>() {
                Ok(n) if (lo..=hi).contains(&n) => Ok(n),
                _ => Err(format!(
                    "{name} must be a whole number from {lo} to {hi}, not '{v}'"
                )),
            }
        };
        match arg.as_str() {
            "--duration" => a.duration = num("--duration", 10, 600)?,
            "--rate" => a.rate = num("--rate", 1, 50)? as u32,
            "--no-failure" => a.failure = false,
            "--no-console" => a.console = false,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("lab-demo: {e}");
            }
            eprint!("{}", usage());
            return ExitCode::from(2);
        }
    };
    if let Err(why) = lab::check_host() {
        eprintln!("lab-demo: {why}");
        return ExitCode::from(1);
    }
    // Ctrl-C / SIGTERM end the demo through normal returns, so every Drop
    // (QEMU, namespaces, sipp, tcpdump) runs.
    let handler = nix::sys::signal::SigHandler::Handler(on_signal);
    for sig in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
    ] {
        // SAFETY: the handler only stores to an atomic.
        let _ = unsafe { nix::sys::signal::signal(sig, handler) };
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lab-demo: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args) -> Result<(), lab::LabError> {
    println!("lab-demo: building the image and the lab, booting the appliance (QEMU TCG, about a minute)...");
    let mut lv = LabVm::boot(&LabOptions::default(), "uas.xml")?;
    if STOP.load(Ordering::SeqCst) {
        return Ok(());
    }
    let servers = lv.lab.server_addrs();
    let mut lan = lv.capture_lan("demo-lan.pcap")?;
    let load = Load {
        single_rate: args.rate.div_ceil(2),
        per_call_rate: args.rate / 2,
        hold_ms: 2000,
        duration: Duration::from_secs(args.duration),
        port: 5100,
    };
    let run = load.start(&lv, "demo")?;
    let started = Instant::now();
    let (fail_at, back_at) = (args.duration / 3, args.duration * 2 / 3);
    let mut failed = false;
    let mut restored = false;
    let mut events: Vec<String> = Vec::new();
    let end = Duration::from_secs(args.duration) + Duration::from_secs(8);
    while started.elapsed() < end && !STOP.load(Ordering::SeqCst) {
        let t = started.elapsed().as_secs();
        if args.failure && !failed && t >= fail_at {
            lv.fail_server(1, Failure::Killed)?;
            events.push(format!(
                "t={t:>3}s  killed the SIP server process on {}",
                servers[1]
            ));
            failed = true;
        }
        if failed && !restored && t >= back_at {
            lv.restore_server(1, Failure::Killed)?;
            events.push(format!(
                "t={t:>3}s  restarted the SIP server on {}",
                servers[1]
            ));
            restored = true;
        }
        let pk = lan.packets()?;
        let tallies = evidence::per_server(&pk, &servers);
        let ks = lv.kernel_service().ok().flatten();
        let mut out = String::from("\x1b[H\x1b[2J");
        out.push_str(&format!(
            "SIP load-balancer appliance demo: VIP {}  t={t}s/{}s  (Ctrl-C stops)\n\n",
            lv.lab.vip(),
            args.duration
        ));
        out.push_str("server            kernel-weight  calls(new)  packets-in  replies\n");
        for (a, tl) in &tallies {
            let w = ks
                .as_ref()
                .and_then(|s| s.dests.iter().find(|d| d.0 == *a))
                .map(|d| d.2.to_string())
                .unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "{:<17} {:>13}  {:>10}  {:>10}  {:>7}\n",
                a.to_string(),
                w,
                tl.new_calls.len(),
                tl.packets,
                tl.replies
            ));
        }
        let done = evidence::completed_calls(&pk).len();
        let split = evidence::split_calls(&pk, &servers).len();
        let clients = run.totals();
        out.push_str(&format!(
            "\ncalls completed: {done}   calls split across servers: {split}\n\
             clients (sipp): {} started, {} succeeded, {} FAILED\n\
             (calls and packets from a capture on the appliance's LAN port; weights from /proc/net/ip_vs;\n\
              started/succeeded/failed from the sipp clients' own statistics)\n\n",
            clients.created, clients.successful, clients.failed
        ));
        for e in &events {
            out.push_str(e);
            out.push('\n');
        }
        print!("{out}");
        let _ = std::io::stdout().flush();
        std::thread::sleep(Duration::from_secs(1));
    }
    drop(run);
    let _ = lan.stop();
    if STOP.load(Ordering::SeqCst) || !args.console {
        println!("\nlab-demo: done, tearing down.");
        return Ok(());
    }
    attach_console(&mut lv)
}

/// Copies the serial console to this terminal and the keyboard to the
/// console (raw mode) until Ctrl-] or Ctrl-C from outside, bounded to 30 min.
fn attach_console(lv: &mut LabVm) -> Result<(), lab::LabError> {
    println!(
        "\nlab-demo: the appliance's serial console follows (press Enter for the menu; Ctrl-] quits)\n"
    );
    let _ = std::process::Command::new("stty")
        .args(["raw", "-echo"])
        .stdin(std::process::Stdio::inherit())
        .status();
    let (tx, rx) = mpsc::channel::<u8>();
    std::thread::spawn(move || {
        let mut b = [0u8; 1];
        let mut stdin = std::io::stdin();
        while let Ok(1) = stdin.read(&mut b) {
            if tx.send(b[0]).is_err() {
                break;
            }
        }
    });
    let mut shown = lv.vm.console().transcript().len();
    let started = Instant::now();
    let _ = lv.vm.console().send(b"\r");
    'outer: while !STOP.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(1800) {
        while let Ok(b) = rx.try_recv() {
            if b == 0x1d {
                break 'outer;
            }
            let _ = lv.vm.console().send(&[b]);
        }
        let t = lv.vm.console().transcript();
        if t.len() > shown && t.is_char_boundary(shown) {
            print!("{}", &t[shown..]);
            let _ = std::io::stdout().flush();
            shown = t.len();
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    let _ = std::process::Command::new("stty")
        .arg("sane")
        .stdin(std::process::Stdio::inherit())
        .status();
    println!("\r\nlab-demo: done, tearing down.");
    Ok(())
}
