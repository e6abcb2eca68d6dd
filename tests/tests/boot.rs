//! Boot smoke tests: the dev image boots under TCG and has the kernel features,
//! devices and init set-up the appliance relies on. Checked from inside the
//! guest through the ttyS1 test shell, independently of the appliance binary.
//! Needs qemu-system-x86_64 (tests/setup-host.sh); fails, never skips, without.

use std::time::Duration;

use appliance_tests::{checks, ensure_image, Vm, VmError, VmOptions};

const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

fn boot() -> Result<Vm, VmError> {
    let image = ensure_image()?;
    Vm::boot(VmOptions::new(image))
}

#[test]
fn image_boots_with_appliance_kernel_features() -> Result<(), VmError> {
    let mut vm = boot()?;
    let t = vm.wait_shell(BOOT_TIMEOUT)?;
    eprintln!(
        "BENCH boot_to_test_shell_tcg_ms={} (QEMU start to ttyS1 shell answering)",
        t.as_millis()
    );

    checks::kernel_features(&mut vm)
}

#[test]
fn store_written_through_mtd_survives_power_cut() -> Result<(), VmError> {
    let mut vm = boot()?;
    vm.wait_shell(BOOT_TIMEOUT)?;
    checks::store_survives_power_cut(vm, BOOT_TIMEOUT)?;
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

/// A network namespace with tap devices, deleted (with its taps) on drop.
struct NetnsGuard {
    name: String,
}

impl NetnsGuard {
    fn new(tag: &str) -> NetnsGuard {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("apt-{tag}-{}-{n}", std::process::id());
        ip(&["netns", "add", &name]);
        NetnsGuard { name }
    }

    fn run(&self, args: &[&str]) {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full);
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tap_nics_are_eth0_wan_and_eth1_lan() -> Result<(), VmError> {
    let ns = NetnsGuard::new("nic");
    for (tap, addr) in [("tapwan", "203.0.113.1/24"), ("taplan", "198.51.100.11/24")] {
        ns.run(&["tuntap", "add", "dev", tap, "mode", "tap"]);
        ns.run(&["addr", "add", addr, "dev", tap]);
        ns.run(&["link", "set", tap, "up"]);
    }
    let mut opts = VmOptions::new(ensure_image()?);
    opts.netns = Some(ns.name.clone());
    opts.wan_tap = Some("tapwan".into());
    opts.lan_tap = Some("taplan".into());
    let mut vm = Vm::boot(opts)?;
    vm.wait_shell(BOOT_TIMEOUT)?;
    assert_eq!(
        vm.shell_ok("cat /sys/class/net/eth0/address")?.trim(),
        "52:54:00:00:00:01"
    );
    assert_eq!(
        vm.shell_ok("cat /sys/class/net/eth1/address")?.trim(),
        "52:54:00:00:00:02"
    );
    // Both wires carry traffic to the namespace side of the taps.
    vm.shell_ok("ip addr add 203.0.113.2/24 dev eth0 && ip link set eth0 up")?;
    vm.shell_ok("ip addr add 198.51.100.1/24 dev eth1 && ip link set eth1 up")?;
    vm.shell_ok("ping -c 1 -W 10 203.0.113.1")?;
    vm.shell_ok("ping -c 1 -W 10 198.51.100.11")?;
    Ok(())
}

#[test]
fn watchdog_resets_guest_when_not_kicked() -> Result<(), VmError> {
    let mut opts = VmOptions::new(ensure_image()?);
    opts.no_reboot = true; // a watchdog reset then makes QEMU exit
    let mut vm = Vm::boot(opts)?;
    vm.wait_shell(BOOT_TIMEOUT)?;
    // 2 s timeout, kicked only every 600 s: the i6300esb must fire.
    vm.shell_ok("watchdog -T 2 -t 600 /dev/watchdog")?;
    let armed = std::time::Instant::now();
    let status = vm.wait_exit(Duration::from_secs(120))?;
    eprintln!(
        "QEMU exited {:.1} s after arming a 2 s watchdog: {status}",
        armed.elapsed().as_secs_f64()
    );
    Ok(())
}

#[test]
fn orderly_reboot_comes_back() -> Result<(), VmError> {
    let mut vm = boot()?;
    vm.wait_shell(BOOT_TIMEOUT)?;
    let boot_id = vm.shell_ok("cat /proc/sys/kernel/random/boot_id")?;
    vm.shell_ok("reboot")?;
    vm.wait_for("reboot: Restarting system", Duration::from_secs(60))?;
    vm.wait_shell(BOOT_TIMEOUT)?;
    let new_id = vm.shell_ok("cat /proc/sys/kernel/random/boot_id")?;
    assert!(
        boot_id.trim().len() == 36 && new_id.trim() != boot_id.trim(),
        "no new boot: boot_id {boot_id:?} then {new_id:?}"
    );
    Ok(())
}
