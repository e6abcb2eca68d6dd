//! A/B firmware: power cuts at every phase of an update and a bad image that rolls back by
//! itself, on one boot disk and one sequence of boots (the dev image booted through GRUB):
//!
//! 1. slot A boots and is marked good; the config is changed and saved (kept from here on);
//! 2. (a) power cut while the install writes slot B: A boots;
//! 3. (b) `install --no-activate` stages B, power cut: A boots, B stays staged; `activate`;
//! 4. (c) power cut during B's first (trial) boot, before mark-good: A boots, B is dropped;
//! 5. a bad bundle (0.3.0: its daemon never starts) is installed into B and booted: rcS
//!    arms the watchdog on the trial boot, nothing kicks it, the box resets by itself and
//!    GRUB, with no attempts left on B, boots A; status and the log say why;
//! 6. (d) the good bundle again, booted, power cut right after mark-good: B boots.
//!
//! Evidence: the rebooted guest (kernel command line, version file, running config, its
//! status and log) and the GRUB environment read on the host from the boot disk file with
//! mtools. The bad image is the good one with an appended cpio archive whose inittab has no
//! daemon line (test-only construction; nothing in the firmware knows about it).

use std::collections::BTreeMap;
use std::error::Error;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use appliance_tests::firmware::{
    as_disk, boot_disk, host_grubenv, host_tools_ok, rootfs_with, run, test_bundle,
    versioned_rootfs,
};
use appliance_tests::guest::{self, fail};
use appliance_tests::{ensure_image, Vm, VmOptions};

type R<T = ()> = Result<T, Box<dyn Error>>;

const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
const GOOD: &str = "0.2.0";
const BAD: &str = "0.3.0";
const HOST: &str = "fw-keep";
const BOARD: &str = "qemu-x86_64";

fn env_is(env: &BTreeMap<String, String>, want: &[(&str, &str)], what: &str) -> R {
    for (k, v) in want {
        if env.get(*k).map(String::as_str) != Some(*v) {
            return Err(fail(format!(
                "{what}: grubenv {k} is {:?}, want {v:?}: {env:?}",
                env.get(*k)
            ))
            .into());
        }
    }
    Ok(())
}

fn has(what: &str, text: &str, want: &str) -> R {
    if !text.contains(want) {
        return Err(fail(format!("{what}: lacks {want:?}:\n{text}")).into());
    }
    Ok(())
}

/// After a boot: the shell is up, it is `slot` running `version`, the daemon is ready and the
/// saved config came back.
fn booted(vm: &mut Vm, slot: &str, version: &str, what: &str) -> R<Duration> {
    vm.wait_shell(BOOT_TIMEOUT)?;
    let cmdline = vm.shell_ok("cat /proc/cmdline")?;
    has(what, &cmdline, &format!("appliance.slot={slot} "))?;
    let v = vm.shell_ok("cat /etc/appliance/firmware-version 2>/dev/null || appliance version")?;
    has(what, &v, version)?;
    let ready = guest::boot_to_ready(vm, BOOT_TIMEOUT)?;
    let cfg = vm.shell_ok("appliance show config")?;
    has(
        &format!("{what}: config kept"),
        &cfg,
        &format!("hostname = \"{HOST}\""),
    )?;
    Ok(ready)
}

fn status(vm: &mut Vm) -> R<String> {
    Ok(vm.shell_ok("appliance firmware status 2>&1")?)
}

/// Wait for GRUB's "booting slot X" on the console (after an orderly or watchdog reset).
fn grub_boots(vm: &mut Vm, slot: &str, limit: Duration) -> R {
    vm.console()
        .wait_for(format!("booting slot {slot} ("), limit)?;
    Ok(())
}

fn orderly_reboot(vm: &mut Vm, slot: &str) -> R<Instant> {
    vm.console().skip_to_end();
    let t = Instant::now();
    vm.test_port().send(b"reboot\n")?;
    grub_boots(vm, slot, Duration::from_secs(180))?;
    Ok(t)
}

fn power_cut(vm: &mut Vm, disk: &Path, what: &str) -> R<BTreeMap<String, String>> {
    vm.kill();
    let env = host_grubenv(disk)?;
    eprintln!("{what}: grubenv on the host after the cut: {env:?}");
    vm.power_cut()?;
    Ok(env)
}

#[test]
fn firmware_power_cuts_and_bad_image_rollback() -> R {
    if !host_tools_ok() {
        return Ok(());
    }
    let t_all = Instant::now();
    let image = ensure_image()?;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let disk = d.join("boot.img");
    boot_disk(&image, &disk, "appliance.testshell=1")?;

    let good_rootfs = versioned_rootfs(&image.initrd, d, GOOD)?;
    let good = test_bundle(
        &d.join("good.bundle"),
        GOOD,
        BOARD,
        &image.kernel,
        &good_rootfs,
    )?;
    // The bad image: the real inittab without the daemon line, and a newer version.
    let inittab = run(Command::new("bash").arg("-c").arg(format!(
        "cpio -i --quiet --to-stdout etc/inittab < {}",
        image.initrd.display()
    )))?;
    if !inittab.contains("appliance daemon") {
        return Err(fail(format!("no daemon line in the image's inittab:\n{inittab}")).into());
    }
    let no_daemon: String = inittab
        .lines()
        .filter(|l| !l.contains("appliance daemon"))
        .map(|l| format!("{l}\n"))
        .collect();
    let bad_rootfs = rootfs_with(
        &image.initrd,
        d,
        "no-daemon",
        &[
            ("etc/inittab", no_daemon.as_bytes()),
            (
                "etc/appliance/firmware-version",
                format!("{BAD}\n").as_bytes(),
            ),
        ],
    )?;
    let bad = test_bundle(
        &d.join("bad.bundle"),
        BAD,
        BOARD,
        &image.kernel,
        &bad_rootfs,
    )?;

    let mut opts = VmOptions::new(image.clone());
    opts.boot_disk = Some(disk.clone());
    // Resets (reboot, watchdog) happen inside QEMU, as on a real box.
    opts.no_reboot = false;
    opts.hard_timeout = Duration::from_secs(1500);
    opts.extra_disks.push(as_disk(&good, &d.join("good.disk"))?); // /dev/vdc
    opts.extra_disks.push(as_disk(&bad, &d.join("bad.disk"))?); // /dev/vdd
    let mut figures: Vec<String> = Vec::new();

    // 1. Slot A, marked good; a saved config that every later boot must bring back.
    let mut vm = Vm::boot(opts)?;
    vm.wait_shell(BOOT_TIMEOUT)?;
    has(
        "first boot",
        &vm.shell_ok("cat /proc/cmdline")?,
        "appliance.slot=A appliance.trial=0",
    )?;
    guest::boot_to_ready(&mut vm, BOOT_TIMEOUT)?;
    guest::poll(
        &mut vm,
        Duration::from_secs(120),
        Duration::from_secs(2),
        "slot A marked good",
        |vm| {
            Ok(vm
                .shell_ok("appliance firmware status 2>&1")?
                .contains("3 boot attempt(s) left")
                .then_some(()))
        },
    )?;
    let a_version = vm
        .shell_ok("appliance version | awk '{print $2}'")?
        .trim()
        .to_owned();
    vm.shell_ok(&format!(
        "sed 's/^hostname = .*/hostname = \"{HOST}\"/' /etc/appliance/factory.toml > /tmp/k.toml \
         && appliance config import /tmp/k.toml"
    ))?;
    // Saved to the store only (the VM has no NICs to apply it to): every later boot runs it.

    // 2. (a) Power cut while writing slot B.
    let t = Instant::now();
    vm.shell_ok("appliance firmware install /dev/vdc > /tmp/install.log 2>&1 &")?;
    // Cut at the first progress line: slot B is being written (or, at worst, read back).
    let progress = guest::poll(
        &mut vm,
        Duration::from_secs(300),
        Duration::from_millis(100),
        "install writing",
        |vm| {
            let log = vm.shell_ok("cat /tmp/install.log")?;
            Ok((log.contains("writing version") && log.contains("%  ")).then_some(log))
        },
    )?;
    let cut_s = t.elapsed().as_secs_f64();
    if progress.contains("installed") {
        return Err(fail(format!("install finished before the cut:\n{progress}")).into());
    }
    eprintln!("(a) install log at the cut:\n{progress}");
    let env = power_cut(&mut vm, &disk, "(a) mid-write")?;
    env_is(
        &env,
        &[
            ("ORDER", "A B"),
            ("A_OK", "1"),
            ("B_OK", "0"),
            ("B_VERSION", ""),
        ],
        "(a) mid-write",
    )?;
    booted(&mut vm, "A", &a_version, "(a) after a cut mid-write")?;
    has("(a) status", &status(&mut vm)?, "installing into slot B")?;
    figures.push(format!(
        "(a) cut {cut_s:.1} s into the install, back on A with the daemon ready {:.1} s later",
        t.elapsed().as_secs_f64() - cut_s
    ));

    // 3. (b) Staged, power cut before the switch; then activate.
    let t = Instant::now();
    let (out, rc) = vm.shell_timeout(
        "appliance firmware install /dev/vdc --no-activate 2>&1",
        Duration::from_secs(600),
    )?;
    if rc != 0 || !out.contains(&format!("staged {GOOD} in slot B")) {
        return Err(fail(format!("staging failed: rc {rc}: {out}")).into());
    }
    let stage_s = t.elapsed().as_secs_f64();
    let env = power_cut(&mut vm, &disk, "(b) staged")?;
    env_is(
        &env,
        &[
            ("ORDER", "A B"),
            ("B_OK", "0"),
            ("B_STAGED", "1"),
            ("B_VERSION", GOOD),
        ],
        "(b) staged",
    )?;
    booted(&mut vm, "A", &a_version, "(b) after a cut with B staged")?;
    has(
        "(b) status",
        &status(&mut vm)?,
        "staged (not bootable until activated)",
    )?;
    figures.push(format!(
        "(b) stage {stage_s:.1} s, cut to A ready {:.1} s",
        t.elapsed().as_secs_f64() - stage_s
    ));
    has(
        "activate",
        &vm.shell_ok("appliance firmware activate 2>&1")?,
        &format!("activated {GOOD} in slot B"),
    )?;

    // 4. (c) Power cut during B's first boot (GRUB has counted its one attempt down).
    let t = orderly_reboot(&mut vm, "B")?;
    let env = power_cut(&mut vm, &disk, "(c) trial boot")?;
    env_is(
        &env,
        &[
            ("ORDER", "B A"),
            ("B_OK", "1"),
            ("B_TRIAL", "1"),
            ("B_LEFT", "0"),
        ],
        "(c) trial boot",
    )?;
    booted(
        &mut vm,
        "A",
        &a_version,
        "(c) after a cut during the trial boot",
    )?;
    let st = status(&mut vm)?;
    has(
        "(c) status",
        &st,
        &format!("slot B ({GOOD}) did not become healthy in 1 boot attempt(s)"),
    )?;
    figures.push(format!(
        "(c) reboot, cut in B's boot, A ready {:.1} s",
        t.elapsed().as_secs_f64()
    ));

    // 5. The bad image: installed, booted, never healthy; the watchdog and GRUB bring A back.
    let (out, rc) = vm.shell_timeout(
        "appliance firmware install /dev/vdd 2>&1",
        Duration::from_secs(600),
    )?;
    if rc != 0 || !out.contains(&format!("installed {BAD} into slot B")) {
        return Err(fail(format!("bad bundle not installed: rc {rc}: {out}")).into());
    }
    let t = orderly_reboot(&mut vm, "B")?;
    vm.wait_shell(BOOT_TIMEOUT)?;
    let t_b = Instant::now();
    has(
        "bad slot",
        &vm.shell_ok("cat /proc/cmdline")?,
        "appliance.slot=B appliance.trial=1",
    )?;
    has(
        "bad slot",
        &vm.shell_ok("cat /etc/appliance/firmware-version")?,
        BAD,
    )?;
    let (wd, timeout) = guest::watchdog_state(&mut vm)?;
    if wd != "active" || timeout == 0 {
        return Err(fail(format!(
            "bad slot: watchdog not armed by rcS: {wd} {timeout}"
        ))
        .into());
    }
    has(
        "bad slot",
        &vm.shell_ok("dmesg | grep -F rcS:")?,
        "watchdog armed until the daemon takes it over",
    )?;
    let (_, rc) =
        vm.shell("pidof appliance >/dev/null && ps | grep -v grep | grep -q 'appliance daemon'")?;
    if rc == 0 {
        return Err(fail("bad slot: a daemon runs").into());
    }
    // Nobody touches the box now: the watchdog resets it and GRUB picks A.
    vm.console().skip_to_end();
    grub_boots(&mut vm, "A", Duration::from_secs(180))?;
    let reset_s = t_b.elapsed().as_secs_f64();
    booted(&mut vm, "A", &a_version, "after the bad image")?;
    let st = status(&mut vm)?;
    eprintln!("status after the bad image:\n{st}");
    let why = format!("slot B ({BAD}) did not become healthy in 1 boot attempt(s) (never marked good); rolled back to slot A ({a_version})");
    has("bad image: firmware status", &st, &why)?;
    has("bad image: firmware status", &st, "bad")?;
    let log = vm.shell_ok("dmesg | grep -F 'firmware rollback by the bootloader'")?;
    has(
        "bad image: log",
        &log,
        &format!("slot B ({BAD}) did not become healthy"),
    )?;
    has(
        "bad image: daemon status alerts",
        &vm.shell_ok("appliance status --json")?,
        &format!("slot B ({BAD}) did not become healthy"),
    )?;
    has(
        "bad image: reset cause",
        &vm.shell_ok("dmesg | grep -F 'WATCHDOG RESET' || true")?,
        "WATCHDOG RESET",
    )?;
    let env = host_grubenv(&disk)?;
    env_is(
        &env,
        &[("ORDER", "A B"), ("B_OK", "0"), ("A_OK", "1")],
        "after the bad image",
    )?;
    figures.push(format!(
        "bad image: reboot to B shell {:.1} s, B shell to watchdog reset and GRUB on A {reset_s:.1} s, total back on A ready {:.1} s",
        (t_b - t).as_secs_f64(),
        t.elapsed().as_secs_f64()
    ));

    // 6. (d) The good bundle again, booted and marked good, power cut right after.
    let t = Instant::now();
    let (out, rc) = vm.shell_timeout(
        "appliance firmware install /dev/vdc 2>&1",
        Duration::from_secs(600),
    )?;
    if rc != 0 || !out.contains(&format!("installed {GOOD} into slot B")) {
        return Err(fail(format!("good bundle not installed: rc {rc}: {out}")).into());
    }
    let install_s = t.elapsed().as_secs_f64();
    let t = orderly_reboot(&mut vm, "B")?;
    booted(&mut vm, "B", GOOD, "new slot")?;
    guest::poll(
        &mut vm,
        Duration::from_secs(120),
        Duration::from_millis(500),
        "slot B marked good",
        |vm| {
            Ok(vm
                .shell_ok("appliance firmware status 2>&1")?
                .contains("marked good after a healthy boot")
                .then_some(()))
        },
    )?;
    let good_s = t.elapsed().as_secs_f64();
    let env = power_cut(&mut vm, &disk, "(d) after mark-good")?;
    env_is(
        &env,
        &[
            ("ORDER", "B A"),
            ("B_OK", "1"),
            ("B_TRIAL", "0"),
            ("B_LEFT", "3"),
        ],
        "(d) after mark-good",
    )?;
    booted(&mut vm, "B", GOOD, "(d) after a cut right after mark-good")?;
    let st = status(&mut vm)?;
    eprintln!("final status:\n{st}");
    has("(d) status", &st, &format!("slot B: {GOOD}"))?;
    has("(d) status", &st, "booted, boots next")?;
    let (wd, _) = guest::watchdog_state(&mut vm)?;
    eprintln!("final watchdog state: {wd}");
    figures.push(format!(
        "(d) install {install_s:.1} s, reboot to marked good {good_s:.1} s"
    ));
    vm.kill();

    for f in &figures {
        eprintln!("FIGURE {f}");
    }
    eprintln!("FIGURE whole test {:.1} s", t_all.elapsed().as_secs_f64());
    Ok(())
}
