//! Status LEDs, hardware watchdog and supervision on the real image.
//!
//! LEDs are real LED class devices created through /dev/uleds; the test reads
//! /sys/class/leds/NAME/{trigger,delay_on,delay_off,brightness} in the guest as
//! the pool goes up, degraded and down (sipp servers in lab namespaces). The
//! watchdog is QEMU's i6300esb: a frozen daemon (SIGSTOP) must reset the VM
//! within the configured timeout, an orderly stop must not. Figures are
//! printed (`FIGURE ...`), never asserted against a time budget.
//!
//! Needs qemu-system-x86_64, root and iproute2/sipp/tcpdump for the lab
//! (tests/setup-host.sh); reports a skip without root or tools (a failure in CI).

use std::error::Error;
use std::time::Duration;

use appliance_tests::checks::{has, WD_TIMEOUT_S};
use appliance_tests::guest::{
    self, fail, Led, BOOTING, FAST, LED_ACTIVITY, LED_HA, LED_POOL, LED_STATUS, SLOW,
};
use appliance_tests::lab::booted::{Failure, LabVm};
use appliance_tests::lab::{self, LabOptions};
use appliance_tests::{checks, ensure_image, Vm, VmError};

type R = Result<(), Box<dyn Error>>;

const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
const READY_TIMEOUT: Duration = Duration::from_secs(180);
const LED_TIMEOUT: Duration = Duration::from_secs(60);

fn lab_ok() -> bool {
    match lab::check_host() {
        Ok(()) => true,
        Err(why) => {
            appliance_tests::skip::skip(&why);
            false
        }
    }
}

#[test]
fn leds_follow_pool_health_and_boot() -> R {
    if !lab_ok() {
        return Ok(());
    }
    let mut lv = LabVm::boot(&LabOptions::default(), "uas.xml")?;
    let vm = &mut lv.vm;

    // 3/3 up: pool on, status on, HA off (reserved), activity off (no calls).
    let t_on = guest::wait_led(vm, LED_POOL, Led::On, LED_TIMEOUT)?;
    let all = guest::leds(vm)?;
    eprintln!("LEDs with 3/3 up: {all:?}");
    for (name, want) in [
        (LED_STATUS, Led::On),
        (LED_HA, Led::Off),
        (LED_ACTIVITY, Led::Off),
    ] {
        if all.get(name) != Some(&want) {
            return Err(fail(format!("LED {name}: want {want:?}, have {all:?}")).into());
        }
    }

    // 2/3 up: slow blink.
    lv.fail_server(0, Failure::Killed)?;
    let t_slow = guest::wait_led(&mut lv.vm, LED_POOL, SLOW, LED_TIMEOUT)?;
    assert_eq!(guest::led(&mut lv.vm, LED_STATUS)?, Led::On, "status LED");

    // 0/3 up: fast blink; the status LED stays on (no fault, just no server).
    lv.fail_server(1, Failure::Killed)?;
    lv.fail_server(2, Failure::Killed)?;
    let t_fast = guest::wait_led(&mut lv.vm, LED_POOL, FAST, LED_TIMEOUT)?;
    assert_eq!(guest::led(&mut lv.vm, LED_STATUS)?, Led::On, "status LED");

    // All back: on again.
    for i in 0..3 {
        lv.restore_server(i, Failure::Killed)?;
    }
    let t_back = guest::wait_led(&mut lv.vm, LED_POOL, Led::On, LED_TIMEOUT)?;
    eprintln!(
        "FIGURE led_pool_transitions_s (host polling every 0.3 s): on {:.1}, \
         slow after 1 kill {:.1}, fast after 3 kills {:.1}, on after restore {:.1}",
        t_on.as_secs_f64(),
        t_slow.as_secs_f64(),
        t_fast.as_secs_f64(),
        t_back.as_secs_f64()
    );

    // Booting blink: restart the daemon while no server answers (silent, so
    // no ICMP either) with a slow probe (3 s interval, 1 s timeout, fall 10):
    // every server stays Unknown for many seconds, and the LEDs must show the
    // booting blink; once the servers answer, on. (With answering servers the
    // first probe decides within ~0.1 s, too short to observe reliably.)
    lv.vm.shell_ok(
        "sed -e 's/^interval_ms = .*/interval_ms = 3000/' -e 's/^timeout_ms = .*/timeout_ms = 1000/' \
         -e 's/^fall = .*/fall = 10/' /etc/appliance/factory.toml > /tmp/slow.toml \
         && appliance config import /tmp/slow.toml",
    )?;
    for i in 0..3 {
        lv.fail_server(i, Failure::Silent)?;
    }
    let vm = &mut lv.vm;
    let old = guest::daemon_pid(vm)?.ok_or_else(|| fail("no daemon running"))?;
    vm.shell_ok(&format!("kill -TERM {old}"))?;
    guest::wait_new_daemon(vm, old, Duration::from_secs(60))?;
    guest::wait_led(vm, LED_STATUS, BOOTING, Duration::from_secs(20))?;
    let pool = guest::led(vm, LED_POOL)?;
    if pool != BOOTING {
        return Err(fail(format!("pool LED while booting: {pool:?}")).into());
    }
    let restart_log = guest::last_daemon_log(vm)?;
    if restart_log.contains("to=Down") || restart_log.contains("to=Up") {
        return Err(fail(format!(
            "a server left Unknown before the booting check:\n{restart_log}"
        ))
        .into());
    }
    for i in 0..3 {
        lv.restore_server(i, Failure::Silent)?;
    }
    let vm = &mut lv.vm;
    let t_up = guest::wait_led(vm, LED_POOL, Led::On, LED_TIMEOUT)?;
    guest::wait_led(vm, LED_STATUS, Led::On, LED_TIMEOUT)?;
    eprintln!(
        "LEDs after a restart with silent servers: booting blink 500/500 on status and pool; \
         on {:.1} s after the servers answered again",
        t_up.as_secs_f64()
    );

    // Freeze the daemon: the i6300esb resets the VM in place (QEMU keeps
    // running); the new boot logs the watchdog reset and balances again.
    checks::watchdog_resets_in_place(vm, READY_TIMEOUT)?;
    guest::wait_led(vm, LED_POOL, Led::On, LED_TIMEOUT)?;
    Ok(())
}

/// Remove the daemon's line from inittab (init will not respawn it) or put it back.
fn daemon_in_inittab(vm: &mut Vm, present: bool) -> Result<(), VmError> {
    if present {
        vm.shell_ok("cp /tmp/inittab.orig /etc/inittab && kill -HUP 1")?;
    } else {
        vm.shell_ok(
            "cp /etc/inittab /tmp/inittab.orig && grep -v 'appliance daemon' /tmp/inittab.orig \
             > /etc/inittab && kill -HUP 1",
        )?;
    }
    // init re-reads inittab from its main loop.
    std::thread::sleep(Duration::from_secs(2));
    Ok(())
}

/// QEMU (started with no_reboot) must not exit for `d`, and the guest keeps
/// its boot id: no watchdog reset.
fn no_reset_for(vm: &mut Vm, d: Duration, what: &str) -> Result<(), VmError> {
    let id0 = boot_id(vm)?;
    match vm.wait_exit(d) {
        Err(VmError::Timeout { .. }) => {}
        Ok(st) => return Err(fail(format!("{what}: the VM reset ({st}) within {d:?}"))),
        Err(e) => return Err(e),
    }
    let id1 = boot_id(vm)?;
    if id1 != id0 {
        return Err(fail(format!(
            "{what}: the guest boot id changed ({id0} -> {id1}): it rebooted"
        )));
    }
    Ok(())
}

fn boot_id(vm: &mut Vm) -> Result<String, VmError> {
    Ok(vm
        .shell_ok("cat /proc/sys/kernel/random/boot_id")?
        .trim()
        .to_string())
}

#[test]
fn watchdog_supervision_and_crash_loop() -> R {
    if !lab_ok() {
        return Ok(());
    }
    let image = ensure_image()?;
    // Lab taps, no sipp: the network applies (no fault) and every server is down.
    let (_lab, mut opts) = guest::lab_with_taps(image)?;
    opts.no_reboot = true; // a watchdog reset makes QEMU exit
    let mut vm = Vm::boot(opts)?;
    vm.wait_shell(BOOT_TIMEOUT)?;
    let ready = guest::boot_to_ready(&mut vm, READY_TIMEOUT)?;
    eprintln!("BENCH boot_to_ready_ms={} (lab taps)", ready.as_millis());

    // No server up: pool fast blink; status on (network and IPVS fine).
    guest::wait_led(&mut vm, LED_POOL, FAST, LED_TIMEOUT)?;
    guest::wait_led(&mut vm, LED_STATUS, Led::On, LED_TIMEOUT)?;
    let wd = guest::watchdog_state(&mut vm)?;
    if wd != ("active".into(), WD_TIMEOUT_S as u32) {
        return Err(fail(format!("watchdog after boot: {wd:?}")).into());
    }
    has(
        "daemon log",
        &guest::last_daemon_log(&mut vm)?,
        "first start since boot",
    )?;

    // Orderly stop for good (init told not to respawn): magic close disarms
    // the watchdog and nothing resets the VM for twice the timeout.
    // (BusyBox init may itself SIGTERM the process of a removed entry on reload.)
    let pid = guest::daemon_pid(&mut vm)?.ok_or_else(|| fail("no daemon running"))?;
    daemon_in_inittab(&mut vm, false)?;
    vm.shell_ok(&format!("kill -TERM {pid} 2>/dev/null; true"))?;
    guest::poll(
        &mut vm,
        Duration::from_secs(30),
        Duration::from_millis(300),
        "the daemon to exit",
        |vm| Ok(guest::daemon_pid(vm)?.is_none().then_some(())),
    )?;
    let log = guest::last_daemon_log(&mut vm)?;
    has("stopped daemon log", &log, "SIGTERM: orderly stop")?;
    has(
        "stopped daemon log",
        &log,
        "watchdog disarmed (magic close)",
    )?;
    let wd = guest::watchdog_state(&mut vm)?;
    if wd.0 != "inactive" {
        return Err(fail(format!("watchdog after magic close: {wd:?}")).into());
    }
    no_reset_for(
        &mut vm,
        Duration::from_secs(2 * WD_TIMEOUT_S + 2),
        "daemon stopped in order",
    )?;

    // Back in inittab: init starts it, it re-arms.
    let readies = guest::dmesg_count(&mut vm, guest::READY_LINE)?;
    daemon_in_inittab(&mut vm, true)?;
    guest::wait_dmesg_count(&mut vm, guest::READY_LINE, readies + 1, READY_TIMEOUT)?;
    let wd = guest::watchdog_state(&mut vm)?;
    if wd.0 != "active" {
        return Err(fail(format!("watchdog after the daemon came back: {wd:?}")).into());
    }

    // Orderly stop with respawn: the new instance re-arms; no reset.
    let pid = guest::daemon_pid(&mut vm)?.ok_or_else(|| fail("no daemon running"))?;
    vm.shell_ok(&format!("kill -TERM {pid}"))?;
    guest::wait_new_daemon(&mut vm, pid, Duration::from_secs(60))?;
    guest::wait_dmesg_count(&mut vm, guest::READY_LINE, readies + 2, READY_TIMEOUT)?;
    has(
        "respawned daemon log",
        &guest::last_daemon_log(&mut vm)?,
        "service restarted by init after the previous instance exited",
    )?;
    no_reset_for(
        &mut vm,
        Duration::from_secs(2 * WD_TIMEOUT_S + 2),
        "daemon restarted in order",
    )?;
    if guest::watchdog_state(&mut vm)?.0 != "active" {
        return Err(fail("watchdog not re-armed by the respawned daemon").into());
    }
    if alerts_crash_loop(&mut vm)? {
        return Err(fail("CRASH LOOP reported after only 3 starts").into());
    }

    // Crash loop: SIGKILL it again and again; init respawns it each time.
    let mut n_ready = readies + 2;
    for k in 0..5 {
        let pid = guest::daemon_pid(&mut vm)?.ok_or_else(|| fail("no daemon running"))?;
        vm.shell_ok(&format!("kill -9 {pid}"))?;
        guest::wait_new_daemon(&mut vm, pid, Duration::from_secs(60))?;
        n_ready += 1;
        guest::wait_dmesg_count(&mut vm, guest::READY_LINE, n_ready, READY_TIMEOUT)?;
        eprintln!("crash-loop kill {k}: pid {pid} killed, respawned");
    }
    if !alerts_crash_loop(&mut vm)? {
        let st = vm.shell_ok("appliance status 2>&1")?;
        return Err(fail(format!("no CRASH LOOP alert after 8 starts:\n{st}")).into());
    }
    has(
        "crash-looping daemon log",
        &guest::last_daemon_log(&mut vm)?,
        "CRASH LOOP: the service started",
    )?;
    guest::wait_led(&mut vm, LED_STATUS, FAST, LED_TIMEOUT)?;
    if guest::watchdog_state(&mut vm)?.0 != "active" {
        return Err(fail("watchdog not armed after the crash loop").into());
    }

    // Freeze the daemon: nothing kicks the watchdog, the i6300esb resets the VM.
    checks::watchdog_resets_frozen_daemon(&mut vm)?;
    Ok(())
}

fn alerts_crash_loop(vm: &mut Vm) -> Result<bool, VmError> {
    Ok(vm
        .shell_ok("appliance status --json 2>&1")?
        .contains("CRASH LOOP"))
}
