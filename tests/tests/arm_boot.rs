//! The aarch64 image (BOARD=qemu-aarch64-virt: qemu-system-aarch64 -M virt -cpu
//! cortex-a53, TCG) runs the x86_64 boot checks (tests/src/checks.rs) and a SIP lab
//! round with real sipp calls, on one boot in the lab (plus the power cut's restart
//! on the same disk and the watchdog's reset in place), to keep TCG time down:
//!
//! kernel features; daemon readiness (the VIP balances over every server); IPVS
//! programmed with `pe sip`; spread and Call-ID persistence of real calls; a server
//! killed under load (out of the kernel table, no new call reaches it, it returns);
//! the serial console (first-boot password, a change applied and saved); the saved
//! config surviving a power cut; the watchdog resetting a frozen daemon's box.
//!
//! Figures (`BENCH ...`): boot to test shell and to ready, probe CPU per 1,000
//! probes (daemon CPU ticks over a window / OPTIONS seen on the LAN capture, the
//! tests/bench method), binary and image sizes. `APPLIANCE_SUITE_BOARD=qemu-x86_64`
//! runs the same suite on the x86_64 image, for side-by-side figures.
//!
//! Needs qemu-system-aarch64, the cross tools (tests/setup-host.sh), root and the
//! lab's tools; reports a skip without root or tools (a failure in CI).

use std::time::Duration;

use appliance_tests::checks;
use appliance_tests::guest;
use appliance_tests::lab::booted::{now_us, Failure, LabVm, BOOT_TIMEOUT};
use appliance_tests::lab::rounds::{failure_round, Load};
use appliance_tests::lab::{self, evidence, LabOptions, APPLIANCE_LAN};
use appliance_tests::sipp::{Transport, Uac, UacOptions};
use appliance_tests::Board;

const READY_TIMEOUT: Duration = Duration::from_secs(240);
/// Probe-cost window (tests/bench uses 20 s too).
const COST_WINDOW: Duration = Duration::from_secs(20);
/// USER_HZ of /proc/<pid>/stat (the kernel's clock ticks for userspace).
const USER_HZ: f64 = 100.0;

fn board() -> Board {
    match std::env::var("APPLIANCE_SUITE_BOARD").as_deref() {
        Ok("qemu-x86_64") => Board::X86_64,
        Ok("qemu-aarch64-virt") | Err(_) => Board::Aarch64Virt,
        Ok(other) => {
            panic!("APPLIANCE_SUITE_BOARD={other}: use qemu-aarch64-virt (default) or qemu-x86_64")
        }
    }
}

/// utime + stime of `pid` in the guest, in clock ticks.
fn ticks(lv: &mut LabVm, pid: u32) -> u64 {
    let stat = lv
        .guest(&format!("cat /proc/{pid}/stat"))
        .expect("read the daemon's /proc stat");
    // Fields after the ")" of comm: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| -> u64 {
        f.get(i - 3)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("field {i} of /proc/{pid}/stat: {stat}"))
    };
    get(14) + get(15)
}

#[test]
fn arm_image_boot_checks_and_sip_lab() {
    if let Err(why) = lab::check_host() {
        appliance_tests::skip::skip(&why);
        return;
    }
    let board = board();
    let name = board.name();
    // Boot in the lab: the VIP balancing over the 3 sipp servers is the daemon's
    // readiness as the kernel shows it.
    let mut lv = LabVm::boot_on(board, &LabOptions::default(), "uas.xml")
        .unwrap_or_else(|e| panic!("boot the {name} image in the lab: {e}"));
    // The benchmarks' boot-to-ready (tests/bench): QEMU start to the VIP balancing
    // over every server in the kernel table, on the host's clock.
    eprintln!(
        "BENCH board={name} boot_to_vip_balancing_ms={} (QEMU start to the VIP balancing over 3 servers)",
        lv.vm.started().elapsed().as_millis()
    );
    // Slow TCG (more so on a busy host): shell commands like the daemon's pid
    // lookup (a loop over /proc) may take minutes.
    lv.vm.set_shell_timeout(Duration::from_secs(300));
    let ready = guest::boot_to_ready(&mut lv.vm, READY_TIMEOUT).expect("daemon ready line");
    eprintln!(
        "BENCH board={name} boot_to_ready_ms={} (QEMU start to the daemon's ready line, lab taps)",
        ready.as_millis()
    );
    let sizes = lv
        .guest("wc -c < /usr/sbin/appliance; uname -m")
        .expect("binary size");
    eprintln!("BENCH board={name} appliance_binary_bytes_and_machine={sizes:?}");
    let want_machine = match board {
        Board::X86_64 => "x86_64",
        Board::Aarch64Virt => "aarch64",
    };
    assert!(
        sizes.contains(want_machine),
        "the guest is not {want_machine}: {sizes}"
    );

    // The x86_64 boot checks, unchanged.
    checks::kernel_features(&mut lv.vm).expect("kernel features");
    checks::ipvs_programmed_with_pe_sip(&mut lv.vm).expect("IPVS with pe sip");

    // Probe CPU per 1,000 probes: daemon CPU over an idle window, probes counted
    // on the wire (OPTIONS from the appliance's LAN address).
    let pid = guest::daemon_pid(&mut lv.vm)
        .expect("daemon pid")
        .expect("a daemon running");
    let mut cap = lv.capture_lan("cost.pcap").expect("LAN capture");
    let a = ticks(&mut lv, pid);
    let w0 = now_us();
    std::thread::sleep(COST_WINDOW);
    let b = ticks(&mut lv, pid);
    let w1 = now_us();
    let probes = cap
        .stop()
        .expect("LAN capture")
        .iter()
        .filter(|p| {
            p.is_request("OPTIONS") && *p.src.ip() == APPLIANCE_LAN && p.ts_us >= w0 && p.ts_us < w1
        })
        .count();
    let cpu_s = b.saturating_sub(a) as f64 / USER_HZ;
    assert!(probes > 0, "no probes on the LAN in {COST_WINDOW:?}");
    eprintln!(
        "BENCH board={name} probe_cpu_s_per_1000={:.3} ({cpu_s:.2} s CPU, {probes} probes in {:.1} s)",
        cpu_s * 1000.0 / probes as f64,
        (w1 - w0) as f64 / 1e6
    );

    // The serial console: first-boot password, a change (hostname, probe interval
    // 300 ms) applied and saved. Early, as in daemon_boot.rs: the console is fresh.
    checks::first_boot_console(&mut lv.vm).expect("console session");
    checks::console_change_persisted(&mut lv.vm, "after save").expect("saved");

    // Spread and persistence of real calls: single-socket and socket-per-call
    // clients, rr equal within one call, no call split across servers.
    let servers = lv.lab.server_addrs();
    let mut lan = lv.capture_lan("lan.pcap").expect("LAN capture");
    let n = 30;
    let mut single = UacOptions::basic(&lv.lab, lv.lab.vip(), n, 5);
    single.hold_ms = 300;
    let s1 = Uac::run(&lv.lab, &single, "spread-single").expect("single-socket load");
    let mut per_call = single.clone();
    per_call.transport = Transport::SocketPerCall;
    per_call.local = lv.lab.clients[1];
    let s2 = Uac::run(&lv.lab, &per_call, "spread-per-call").expect("socket-per-call load");
    let lan_p = lan.stop().expect("LAN capture");
    for (what, s) in [("single", &s1), ("per-call", &s2)] {
        assert_eq!((s.successful, s.failed), (n as u64, 0), "{what}: {s:?}");
    }
    for (what, client) in [
        ("single socket", lv.lab.clients[0]),
        ("socket per call", lv.lab.clients[1]),
    ] {
        let t = evidence::per_server(&evidence::from_client(&lan_p, client), &servers);
        let counts: Vec<usize> = t.values().map(|t| t.new_calls.len()).collect();
        eprintln!(
            "{what}: calls per server {counts:?}\n{}",
            evidence::table(&t)
        );
        assert_eq!(
            counts.iter().sum::<usize>(),
            n as usize,
            "{what}: {counts:?}"
        );
        assert!(
            evidence::max_spread(&counts) <= 1,
            "{what}: rr spread must be equal within 1, got {counts:?}"
        );
    }
    let split = evidence::split_calls(&lan_p, &servers);
    assert!(split.is_empty(), "calls split across servers: {split:?}");

    // A server killed under load: out of the kernel table, no new call reaches
    // it, calls elsewhere unaffected, it gets calls again once back.
    let load = Load {
        duration: Duration::from_secs(32),
        port: 5100,
        ..Load::default()
    };
    let f = failure_round(
        &mut lv,
        1,
        Failure::Killed,
        &load,
        Duration::from_secs(6),
        Duration::from_secs(12),
    )
    .expect("failure round");
    eprintln!("--- server killed ---\n{}", f.table);
    eprintln!(
        "FIGURE board={name} failure=Killed kernel_out_ms={:?} new_calls_after_out={} \
         failed_after_out={} failed_on_live={} return_ms={:?} calls_after_return={}",
        f.kernel_out_ms,
        f.new_calls_after_out,
        f.failed_calls_after_out.len(),
        f.failed_calls_on_live_servers.len(),
        f.return_ms,
        f.calls_after_return
    );
    assert!(
        f.kernel_out_ms.is_some(),
        "the kernel never took the server out"
    );
    assert_eq!(
        f.new_calls_after_out, 0,
        "new calls reached the dead server"
    );
    assert!(
        f.failed_calls_after_out.is_empty(),
        "new calls failed after detection: {:?}",
        f.failed_calls_after_out
    );
    assert!(
        f.failed_calls_on_live_servers.is_empty(),
        "calls on live servers failed: {:?}",
        f.failed_calls_on_live_servers
    );
    assert!(
        f.calls_after_return > 0,
        "the server got no calls after it came back"
    );

    // Power cut: QEMU killed, started again on the same store disk.
    lv.vm.power_cut().expect("power cut");
    let shell = lv
        .vm
        .wait_shell(BOOT_TIMEOUT)
        .expect("shell after the power cut");
    let ready2 =
        guest::boot_to_ready(&mut lv.vm, READY_TIMEOUT).expect("ready after the power cut");
    eprintln!(
        "BENCH board={name} boot_to_ready_ms={} boot_to_test_shell_ms={} (after a power cut, stored config)",
        ready2.as_millis(),
        shell.as_millis()
    );
    checks::console_change_persisted(&mut lv.vm, "after power cut")
        .expect("survived the power cut");
    checks::ipvs_programmed_with_pe_sip(&mut lv.vm).expect("IPVS with pe sip after the power cut");

    // The watchdog: a frozen daemon's box is reset and comes back.
    checks::watchdog_resets_in_place(&mut lv.vm, READY_TIMEOUT).expect("watchdog reset");
}
