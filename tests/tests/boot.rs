//! Boot smoke tests: the dev image boots under TCG and has the kernel features,
//! devices and init set-up the appliance relies on. Checked from inside the
//! guest through the ttyS1 test shell, independently of the appliance binary.
//! Needs qemu-system-x86_64 (tests/setup-host.sh); fails, never skips, without.

use std::time::Duration;

use appliance_tests::{ensure_image, Vm, VmError, VmOptions};

const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

fn boot() -> Result<Vm, VmError> {
    let image = ensure_image()?;
    Vm::boot(VmOptions::new(image))
}

fn assert_contains(what: &str, out: &str, needle: &str) {
    assert!(
        out.contains(needle),
        "{what}: expected {needle:?} in:\n{out}"
    );
}

#[test]
fn image_boots_with_appliance_kernel_features() -> Result<(), VmError> {
    let mut vm = boot()?;
    let t = vm.wait_shell(BOOT_TIMEOUT)?;
    eprintln!(
        "BENCH boot_to_test_shell_tcg_ms={} (QEMU start to ttyS1 shell answering)",
        t.as_millis()
    );

    // Init ran rcS: pseudo filesystems, hostname, lo, devkmsg.
    let mounts = vm.shell_ok("cat /proc/mounts")?;
    for m in [
        " /proc proc ",
        " /sys sysfs ",
        " /dev devtmpfs ",
        " /run tmpfs ",
        " /tmp tmpfs ",
    ] {
        assert_contains("/proc/mounts", &mounts, m);
    }
    assert_eq!(vm.shell_ok("hostname")?.trim(), "sip-lb");
    assert_contains("lo", &vm.shell_ok("ip -o link show lo")?, "UP");
    assert_eq!(
        vm.shell_ok("cat /proc/sys/kernel/printk_devkmsg")?.trim(),
        "on"
    );
    assert_eq!(vm.shell_ok("cat /proc/1/comm")?.trim(), "init");

    // IPVS built in, with the SIP persistence engine and our schedulers.
    let ipvs = vm.shell_ok("cat /proc/net/ip_vs")?;
    assert_contains("/proc/net/ip_vs", &ipvs, "IP Virtual Server version");
    let dmesg = vm.shell_ok("dmesg")?;
    for s in ["[rr]", "[wrr]", "[lc]", "[wlc]", "[sh]", "[mh]"] {
        assert_contains(
            "IPVS schedulers in dmesg",
            &dmesg,
            &format!("IPVS: {s} scheduler registered"),
        );
    }
    assert_contains("IPVS SIP pe in dmesg", &dmesg, "IPVS: [sip] pe registered");
    assert_contains(
        "nf_conntrack",
        &vm.shell_ok("ls /proc/sys/net/netfilter/")?,
        "nf_conntrack_max",
    );

    // Store disk exposed as MTD by block2mtd, 1 MiB with 64 KiB erase blocks.
    let mtd = vm.shell_ok("cat /proc/mtd")?;
    assert_contains(
        "/proc/mtd",
        &mtd,
        "mtd0: 00100000 00010000 \"block2mtd: /dev/vda\"",
    );
    vm.shell_ok("test -c /dev/mtd0 && test -b /dev/vda")?;

    // Watchdog (i6300esb) and userspace LEDs.
    vm.shell_ok("test -c /dev/watchdog")?;
    assert_contains(
        "watchdog identity",
        &vm.shell_ok("cat /sys/class/watchdog/watchdog0/identity")?,
        "i6300ESB",
    );
    vm.shell_ok("test -c /dev/uleds")?;

    // Board facts are installed.
    assert_contains(
        "board.toml",
        &vm.shell_ok("cat /etc/appliance/board.toml")?,
        "device = \"mtd:/dev/mtd0\"",
    );

    // The static appliance binary can be executed by the kernel (126/127
    // would mean not executable / not found / missing interpreter).
    let (out, code) = vm.shell("/usr/sbin/appliance --version")?;
    assert!(
        code != 126 && code != 127,
        "/usr/sbin/appliance did not execute (status {code}): {out}"
    );
    Ok(())
}

#[test]
fn store_written_through_mtd_survives_power_cut() -> Result<(), VmError> {
    let mut vm = boot()?;
    vm.wait_shell(BOOT_TIMEOUT)?;
    // A fresh store disk reads as erased flash.
    assert_eq!(
        vm.shell_ok("head -c 16 /dev/mtd0 | od -An -tx1 | tr -d ' \\n'")?,
        "f".repeat(32)
    );
    // Writing through mtdchar and closing it syncs block2mtd to the disk.
    vm.shell_ok("printf 'sip-lb-marker' > /dev/mtd0")?;
    let mut vm = vm.power_cycle()?;
    vm.wait_shell(BOOT_TIMEOUT)?;
    assert_eq!(vm.shell_ok("head -c 13 /dev/mtd0")?, "sip-lb-marker");
    Ok(())
}

#[test]
fn test_shell_is_off_without_kernel_flag() -> Result<(), VmError> {
    let image = ensure_image()?;
    let mut opts = VmOptions::new(image);
    opts.testshell = false;
    // Kernel messages on the console show when init has started.
    opts.extra_cmdline.push("loglevel=7".into());
    let mut vm = Vm::boot(opts)?;
    vm.wait_for("Run /init as init process", BOOT_TIMEOUT)?;
    vm.wait_for("block2mtd: mtd0", BOOT_TIMEOUT)?;
    // rcS is done; give init time to start the ttyS1 entry, then poke it.
    for _ in 0..10 {
        vm.test_port().send(b"echo '@@SHE''LL@@'\n")?;
        std::thread::sleep(Duration::from_secs(1));
    }
    let port = vm.test_port();
    assert!(
        !port.contains("@@SHELL@@"),
        "ttyS1 answered without appliance.testshell=1:\n{}",
        port.transcript()
    );
    Ok(())
}
