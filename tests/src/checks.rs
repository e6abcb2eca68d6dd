//! Boot checks shared by the boards' test files: each takes a booted [`Vm`]
//! (test shell enabled) and reads the guest's own files through the test shell,
//! so the x86_64 tests (boot.rs, daemon_boot.rs, leds_watchdog.rs) and the
//! aarch64 test (arm_boot.rs) assert exactly the same things.

use std::time::{Duration, Instant};

use crate::console::{ConsoleDriver, NEW_PASSWORD, REPEAT_PASSWORD};
use crate::guest::{self, fail};
use crate::vm::{Vm, VmError};

/// The console password the first-boot session sets.
pub const PW: &str = "correct-horse-9";
/// The hostname the first-boot session saves.
pub const NEW_HOST: &str = "edge-lb-7";
/// The factory watchdog timeout (factory.toml watchdog.timeout_s), seconds.
pub const WD_TIMEOUT_S: u64 = 10;

/// Ok if `hay` contains `needle`, else an error that shows `hay`.
pub fn has(what: &str, hay: &str, needle: &str) -> Result<(), VmError> {
    if hay.contains(needle) {
        Ok(())
    } else {
        Err(fail(format!("{what}: expected {needle:?} in:\n{hay}")))
    }
}

/// Kernel features, devices and init set-up the appliance relies on: rcS ran,
/// IPVS with every scheduler and the SIP persistence engine, conntrack, the store
/// disk as MTD (block2mtd), the i6300esb watchdog, /dev/uleds, board facts, and a
/// static appliance binary the kernel can execute.
pub fn kernel_features(vm: &mut Vm) -> Result<(), VmError> {
    // Init ran rcS: pseudo filesystems, hostname, lo, devkmsg.
    let mounts = vm.shell_ok("cat /proc/mounts")?;
    for m in [
        " /proc proc ",
        " /sys sysfs ",
        " /dev devtmpfs ",
        " /run tmpfs ",
        " /tmp tmpfs ",
    ] {
        has("/proc/mounts", &mounts, m)?;
    }
    let host = vm.shell_ok("hostname")?;
    if host.trim() != "sip-lb" {
        return Err(fail(format!("hostname {host:?}, want sip-lb")));
    }
    has("lo", &vm.shell_ok("ip -o link show lo")?, "UP")?;
    has(
        "printk_devkmsg",
        &vm.shell_ok("cat /proc/sys/kernel/printk_devkmsg")?,
        "on",
    )?;
    has("pid 1", &vm.shell_ok("cat /proc/1/comm")?, "init")?;

    // IPVS built in, with the SIP persistence engine and our schedulers.
    let ipvs = vm.shell_ok("cat /proc/net/ip_vs")?;
    has("/proc/net/ip_vs", &ipvs, "IP Virtual Server version")?;
    let dmesg = vm.shell_ok("dmesg")?;
    for s in ["[rr]", "[wrr]", "[lc]", "[wlc]", "[sh]", "[mh]"] {
        has(
            "IPVS schedulers in dmesg",
            &dmesg,
            &format!("IPVS: {s} scheduler registered"),
        )?;
    }
    has("IPVS SIP pe in dmesg", &dmesg, "IPVS: [sip] pe registered")?;
    has(
        "nf_conntrack",
        &vm.shell_ok("ls /proc/sys/net/netfilter/")?,
        "nf_conntrack_max",
    )?;

    // Store disk exposed as MTD by block2mtd, 1 MiB with 64 KiB erase blocks.
    has(
        "/proc/mtd",
        &vm.shell_ok("cat /proc/mtd")?,
        "mtd0: 00100000 00010000 \"block2mtd: /dev/vda\"",
    )?;
    vm.shell_ok("test -c /dev/mtd0 && test -b /dev/vda")?;

    // Watchdog (i6300esb) and userspace LEDs.
    vm.shell_ok("test -c /dev/watchdog")?;
    has(
        "watchdog identity",
        &vm.shell_ok("cat /sys/class/watchdog/watchdog0/identity")?,
        "i6300ESB",
    )?;
    vm.shell_ok("test -c /dev/uleds")?;

    // Board facts are installed.
    has(
        "board.toml",
        &vm.shell_ok("cat /etc/appliance/board.toml")?,
        "store = \"mtd:/dev/mtd0\"",
    )?;

    // The static appliance binary can be executed by the kernel (126/127
    // would mean not executable / not found / missing interpreter).
    let (out, code) = vm.shell("/usr/sbin/appliance --version")?;
    if code == 126 || code == 127 {
        return Err(fail(format!(
            "/usr/sbin/appliance did not execute (status {code}): {out}"
        )));
    }
    Ok(())
}

/// Raw MTD write then a power cut (QEMU killed, started again on the same disk):
/// the bytes are still there. Needs a blank store disk. Returns the new VM.
pub fn store_survives_power_cut(mut vm: Vm, boot_timeout: Duration) -> Result<Vm, VmError> {
    // A fresh store disk reads as erased flash.
    let head = vm.shell_ok("head -c 16 /dev/mtd0 | od -An -tx1 | tr -d ' \\n'")?;
    if head != "f".repeat(32) {
        return Err(fail(format!("fresh store is not erased flash: {head}")));
    }
    // Writing through mtdchar and closing it syncs block2mtd to the disk.
    vm.shell_ok("printf 'sip-lb-marker' > /dev/mtd0")?;
    let mut vm = vm.power_cycle()?;
    vm.wait_shell(boot_timeout)?;
    let got = vm.shell_ok("head -c 13 /dev/mtd0")?;
    if got != "sip-lb-marker" {
        return Err(fail(format!("after the power cut the store holds {got:?}")));
    }
    Ok(vm)
}

/// The IPVS service of the factory config is in the kernel (203.0.113.10:5060,
/// /proc/net/ip_vs) with the SIP persistence engine (the genl dump; /proc does not
/// print the pe).
pub fn ipvs_programmed_with_pe_sip(vm: &mut Vm) -> Result<(), VmError> {
    has("/proc/net/ip_vs", &guest::ip_vs(vm)?, "UDP  CB00710A:13C4 ")?;
    let show = vm.shell_ok("appliance ipvs show 2>&1")?;
    let line = show
        .lines()
        .find(|l| l.starts_with("UDP 203.0.113.10:5060 "))
        .ok_or_else(|| fail(format!("no VIP service in `appliance ipvs show`:\n{show}")))?;
    has("VIP service", line, " persistent ")?;
    has("VIP service", line, " pe sip ")
}

/// Console session of the first boot on the serial console: forced password
/// (with bad input and Ctrl-C), a rejected hostname, Ctrl-C back to the menu,
/// then hostname and probe interval changed, applied and saved.
pub fn first_boot_console(vm: &mut Vm) -> Result<(), VmError> {
    let mut c = ConsoleDriver::new(vm.console());
    // Hashing and saving the password (argon2, then a flash write) takes a while
    // under TCG on a busy host, more so on the emulated Cortex-A53.
    c.timeout = Duration::from_secs(300);
    c.expect("No console password is set (first boot).")?;
    // Too short: clear message, asked again.
    c.answer(NEW_PASSWORD, "short")?;
    c.expect("  ! ")?;
    // Ctrl-C cannot skip the first password.
    c.expect(NEW_PASSWORD)?;
    c.ctrl_c()?;
    c.expect("A password must be set before anything else.")?;
    // Mismatched repeat.
    c.answer(NEW_PASSWORD, PW)?;
    c.answer(REPEAT_PASSWORD, "correct-horse-0")?;
    c.expect("the two passwords differ; try again")?;
    c.answer(NEW_PASSWORD, PW)?;
    c.answer(REPEAT_PASSWORD, PW)?;
    c.expect("password changed and saved to flash")?;
    let h = c.main_menu()?;
    if h.hostname != "sip-lb" || h.changes != "none" {
        return Err(fail(format!("first menu header unexpected:\n{}", h.text)));
    }

    // A bad hostname re-prompts with a clear message; Ctrl-C returns to the menu
    // and changes nothing.
    c.choose("2")?;
    c.answer("Interface option: ", "3")?;
    if c.field("Hostname", "bad_host!")? != "sip-lb" {
        return Err(fail("the hostname field did not show sip-lb"));
    }
    c.expect("'bad_host!' is not a hostname: use 1-63 letters, digits or '-'")?;
    c.expect("Hostname [sip-lb]: ")?;
    c.ctrl_c()?;
    c.expect("^C")?;
    let h = c.main_menu()?;
    if h.hostname != "sip-lb" || h.changes != "none" {
        return Err(fail(format!("Ctrl-C changed something:\n{}", h.text)));
    }

    // The ports found on the box, as pfSense's "Assign interfaces" shows them: the guest's
    // two virtio NICs with their MACs, link and driver, and their current roles.
    c.choose("2")?;
    c.answer("Interface option: ", "4")?;
    c.expect("Network ports on this box")?;
    for want in [
        " 1) eth0 ",
        "52:54:00:00:00:01",
        "link up",
        "virtio_net",
        "WAN",
    ] {
        c.expect(want)?;
    }
    for want in [" 2) eth1 ", "52:54:00:00:00:02", "virtio_net", "LAN"] {
        c.expect(want)?;
    }
    c.expect("WAN port (number or name) [eth0]: ")?;
    c.ctrl_c()?;
    c.expect("^C")?;
    let h = c.main_menu()?;
    if h.changes != "none" {
        return Err(fail(format!(
            "leaving the port list changed something:\n{}",
            h.text
        )));
    }

    // Hostname: stage, apply, do not save yet.
    c.choose("2")?;
    c.answer("Interface option: ", "3")?;
    c.field("Hostname", NEW_HOST)?;
    c.expect(format!("hostname: sip-lb -> {NEW_HOST}"))?;
    c.answer("Stage these changes in the candidate config (y/n): ", "y")?;
    c.answer("Apply the candidate now (y/n): ", "y")?;
    match c.expect_any(&["applied: ", "  ! "])? {
        0 => {}
        _ => {
            c.expect("\n")?;
            return Err(fail(
                "apply of the hostname failed (see the console transcript)",
            ));
        }
    }
    c.answer("Save the running config to flash now (y/n): ", "n")?;
    c.answer("Interface option: ", "0")?;
    let h = c.main_menu()?;
    if h.hostname != NEW_HOST || !h.changes.contains("UNSAVED") {
        return Err(fail(format!(
            "header after apply without save:\n{}",
            h.text
        )));
    }

    // Probe interval: a bad number re-prompts; then 300 ms, apply, save.
    c.choose("5")?;
    c.field("Probing enabled y/n", "")?;
    let old_interval = c.field("Interval in ms", "5")?;
    if old_interval.is_empty() || old_interval == "300" {
        return Err(fail(format!(
            "unexpected current probe interval [{old_interval}]"
        )));
    }
    c.expect("'5' is not a valid interval: enter a whole number from 20 to 3600000")?;
    c.field("Interval in ms", "300")?;
    for label in [
        "Timeout in ms",
        "Rise (successes to mark up)",
        "Fall (failures to mark down)",
        "Accepted reply codes",
        "From URI",
        "To URI ('-' = the server)",
        "User-Agent",
        "On failure weight0|remove",
    ] {
        c.field(label, "")?;
    }
    c.expect(format!("interval ms: {old_interval} -> 300"))?;
    c.answer("Stage these changes in the candidate config (y/n): ", "y")?;
    c.answer("Apply the candidate now (y/n): ", "y")?;
    c.expect("applied: ")?;
    c.answer("Save the running config to flash now (y/n): ", "y")?;
    c.expect("saved the running config to flash (generation ")?;
    let h = c.main_menu()?;
    if h.hostname != NEW_HOST || h.changes != "none" {
        return Err(fail(format!("header after save:\n{}", h.text)));
    }
    Ok(())
}

/// The change [`first_boot_console`] saved is what the daemon runs and what
/// flash holds.
pub fn console_change_persisted(vm: &mut Vm, when: &str) -> Result<(), VmError> {
    for cmd in [
        "appliance show config",
        "appliance show config saved",
        "appliance config export",
    ] {
        let out = vm.shell_ok(&format!("{cmd} 2>&1"))?;
        has(
            &format!("{when}: {cmd}"),
            &out,
            &format!("hostname = \"{NEW_HOST}\""),
        )?;
        has(&format!("{when}: {cmd}"), &out, "interval_ms = 300")?;
    }
    let h = vm.shell_ok("hostname")?;
    if h.trim() != NEW_HOST {
        return Err(fail(format!("{when}: kernel hostname is {h:?}")));
    }
    Ok(())
}

/// The daemon armed the watchdog; frozen (SIGSTOP), nothing kicks it and the
/// i6300esb resets the VM within its timeout. Needs `no_reboot` (the reset makes
/// QEMU exit). Returns the time from the freeze to QEMU's exit.
pub fn watchdog_resets_frozen_daemon(vm: &mut Vm) -> Result<Duration, VmError> {
    let wd = guest::watchdog_state(vm)?;
    if wd != ("active".into(), WD_TIMEOUT_S as u32) {
        return Err(fail(format!("watchdog before the freeze: {wd:?}")));
    }
    let pid = guest::daemon_pid(vm)?.ok_or_else(|| fail("no daemon running"))?;
    let limit = Duration::from_secs(WD_TIMEOUT_S);
    let stopped = Instant::now();
    vm.shell_ok(&format!("kill -STOP {pid}"))?;
    let st = vm.wait_exit(limit + Duration::from_secs(20))?;
    let took = stopped.elapsed();
    eprintln!(
        "FIGURE watchdog_reset_after_sigstop_s={:.1} (timeout {} s; QEMU exit: {st})",
        took.as_secs_f64(),
        WD_TIMEOUT_S
    );
    // The last kick was at most timeout/3 before the freeze; allow TCG slack.
    if took > limit + Duration::from_secs(5) {
        return Err(fail(format!(
            "watchdog reset took {took:?}, configured timeout {limit:?}"
        )));
    }
    Ok(took)
}

/// Freeze the daemon (SIGSTOP) on a VM that may reboot: the i6300esb resets the
/// guest in place (QEMU keeps running), a new boot answers on the test shell, the
/// daemon gets ready again and logs the watchdog reset as its boot reason.
/// Returns the time from the freeze to the new boot's shell.
pub fn watchdog_resets_in_place(vm: &mut Vm, ready_timeout: Duration) -> Result<Duration, VmError> {
    let boot_id = vm.shell_ok("cat /proc/sys/kernel/random/boot_id")?;
    let pid = guest::daemon_pid(vm)?.ok_or_else(|| fail("no daemon running"))?;
    let stopped = Instant::now();
    vm.shell_ok(&format!("kill -STOP {pid}"))?;
    let deadline = stopped + Duration::from_secs(120);
    loop {
        match vm.shell_timeout(
            "cat /proc/sys/kernel/random/boot_id",
            Duration::from_secs(2),
        ) {
            Ok((id, 0)) if id != boot_id => break,
            Ok(_) => std::thread::sleep(Duration::from_millis(300)),
            Err(VmError::Timeout { .. }) => {}
            Err(e) => return Err(e),
        }
        if Instant::now() >= deadline {
            return Err(fail(
                "the VM did not reboot within 120 s of freezing the daemon",
            ));
        }
    }
    let took = stopped.elapsed();
    eprintln!(
        "FIGURE watchdog_freeze_to_new_boot_shell_s={:.1} (reset in place, timeout {WD_TIMEOUT_S} s, plus boot)",
        took.as_secs_f64()
    );
    guest::wait_dmesg_count(vm, guest::READY_LINE, 1, ready_timeout)?;
    let reason = vm.shell_ok("dmesg | grep -F 'boot reason' || true")?;
    eprintln!(
        "daemon's boot reason after the watchdog reset: {}",
        reason.trim()
    );
    has(
        "boot reason after a watchdog reset",
        &reason,
        "WATCHDOG RESET",
    )?;
    Ok(took)
}
