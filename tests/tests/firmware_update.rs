//! A/B firmware update on the dev image booted through GRUB from the A/B boot disk
//! (tests/image/build-disk.sh): bad bundles are refused with the whole boot disk unchanged,
//! a good bundle is installed into slot B, the box reboots into it, the daemon marks it
//! good, and the stored config is kept. One boot sequence for every check.
//!
//! The new version is the same image with `/etc/appliance/firmware-version` = 0.2.0 (an
//! appended cpio archive), so no second binary build is needed. Bundles reach the guest as
//! read-only virtio disks (/dev/vdc...), read up to their signed length.
//! Needs qemu-system-x86_64, grub-pc-bin, grub-common, dosfstools, mtools (tests/setup-host.sh).

use std::error::Error;
use std::process::Command;
use std::time::{Duration, Instant};

use appliance_tests::firmware::{
    as_disk, boot_disk, host_tool, host_tools_ok, run, versioned_rootfs,
};
use appliance_tests::guest::{self, fail};
use appliance_tests::vm::repo_root;
use appliance_tests::{ensure_image, Vm, VmOptions};

type R = Result<(), Box<dyn Error>>;

const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
const NEW_VERSION: &str = "0.2.0";

fn status(vm: &mut Vm) -> Result<String, Box<dyn Error>> {
    Ok(vm.shell_ok("appliance firmware status 2>&1")?)
}

#[test]
fn firmware_update_good_and_bad_bundles() -> R {
    if !host_tools_ok() {
        return Ok(());
    }
    let image = ensure_image()?;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let root = repo_root();

    // Boot disk: slot A = the dev image (its own version), test shell on.
    let boot_disk = boot_disk(&image, &d.join("boot.img"), "appliance.testshell=1")?;
    let tool = host_tool();

    // Bundles: the good one and four bad ones.
    let new_rootfs = versioned_rootfs(&image.initrd, d, NEW_VERSION)?;
    let bundle = |name: &str, extra: &[&str]| -> Result<Vec<u8>, Box<dyn Error>> {
        let out = d.join(name);
        let mut c = Command::new(&tool);
        c.args(["firmware", "bundle", "--version", NEW_VERSION, "-o"])
            .arg(&out)
            .args(extra)
            .arg(format!("kernel={}", image.kernel.display()))
            .arg(format!("rootfs={}", new_rootfs.display()));
        run(&mut c)?;
        Ok(std::fs::read(out)?)
    };
    let key = root.join("tests/image/keys/test-firmware.key");
    let key = key.to_str().ok_or("key path")?;
    let good = bundle("good.bundle", &["--key", key, "--board", "qemu-x86_64"])?;
    let unsigned = bundle("unsigned.bundle", &["--unsigned", "--board", "qemu-x86_64"])?;
    let other_board = bundle(
        "arm.bundle",
        &["--key", key, "--board", "qemu-aarch64-virt"],
    )?;
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    let truncated = good[..good.len() / 2].to_vec();
    // /dev/vdc.. in this order.
    let bad: [(&str, &[u8], &str); 4] = [
        ("unsigned", &unsigned, "unsigned"),
        ("flipped", &flipped, "corrupt or tampered"),
        ("truncated", &truncated, "truncated"),
        ("other-board", &other_board, "for board 'qemu-aarch64-virt'"),
    ];
    let mut opts = VmOptions::new(image.clone());
    opts.boot_disk = Some(boot_disk.clone());
    opts.no_reboot = true;
    for (name, bytes, _) in &bad {
        opts.extra_disks
            .push(as_disk(bytes, &d.join(format!("{name}.disk")))?);
    }
    opts.extra_disks.push(as_disk(&good, &d.join("good.disk"))?);
    eprintln!(
        "FIGURE bundle {} bytes (kernel {} + rootfs {}), boot disk {} bytes",
        good.len(),
        std::fs::metadata(&image.kernel)?.len(),
        std::fs::metadata(&new_rootfs)?.len(),
        std::fs::metadata(&boot_disk)?.len()
    );

    let mut vm = Vm::boot(opts)?;
    vm.wait_shell(BOOT_TIMEOUT)?;
    let cmdline = vm.shell_ok("cat /proc/cmdline")?;
    if !cmdline.contains("appliance.slot=A") {
        return Err(fail(format!("GRUB did not boot slot A: {cmdline}")).into());
    }
    guest::boot_to_ready(&mut vm, BOOT_TIMEOUT)?;
    // The daemon marks slot A good (GRUB counted one attempt down).
    guest::poll(
        &mut vm,
        Duration::from_secs(120),
        Duration::from_secs(2),
        "slot A marked good",
        |vm| {
            let s = vm.shell_ok("appliance firmware status 2>&1")?;
            Ok(s.contains("3 boot attempt(s) left").then_some(()))
        },
    )?;
    let st = status(&mut vm)?;
    eprintln!("status before:\n{st}");
    for want in [
        "slot A: ",
        "good",
        "booted, boots next",
        "slot B: -",
        "empty",
    ] {
        if !st.contains(want) {
            return Err(fail(format!("status lacks {want:?}:\n{st}")).into());
        }
    }
    let config_before = vm.shell_ok("appliance show config")?;

    // Bad bundles: refused with the reason, the whole boot disk unchanged.
    let hash_before = vm.shell_ok("sha256sum /dev/vdb | cut -d' ' -f1")?;
    for (i, (name, _, why)) in bad.iter().enumerate() {
        let dev = format!("/dev/vd{}", (b'c' + i as u8) as char);
        let (out, rc) = vm.shell(&format!("appliance firmware install {dev} 2>&1"))?;
        eprintln!("{name}: rc {rc}: {}", out.trim());
        if rc == 0 || !out.contains(why) {
            return Err(fail(format!(
                "{name} bundle: expected refusal with {why:?}, got rc {rc}: {out}"
            ))
            .into());
        }
    }
    let hash_after = vm.shell_ok("sha256sum /dev/vdb | cut -d' ' -f1")?;
    if hash_before.trim() != hash_after.trim() || hash_before.trim().len() != 64 {
        return Err(fail(format!(
            "boot disk changed by refused bundles: {hash_before} -> {hash_after}"
        ))
        .into());
    }

    // Good bundle.
    let t = Instant::now();
    let (out, rc) = vm.shell_timeout(
        "appliance firmware install /dev/vdg 2>&1",
        Duration::from_secs(600),
    )?;
    let install = t.elapsed();
    eprintln!("install: rc {rc}:\n{out}");
    if rc != 0 || !out.contains(&format!("installed {NEW_VERSION} into slot B")) {
        return Err(fail(format!("good bundle not installed: {out}")).into());
    }
    eprintln!(
        "FIGURE install {:.1} s for {} bytes (TCG)",
        install.as_secs_f64(),
        good.len()
    );
    let st = status(&mut vm)?;
    if !st.contains("on trial") || !st.contains(&format!("slot B: {NEW_VERSION}")) {
        return Err(fail(format!("status after install:\n{st}")).into());
    }

    // Reboot into it.
    let t = Instant::now();
    let _ = vm.shell("reboot");
    let mut vm = vm.reboot_with_same_disk(Duration::from_secs(120))?;
    vm.wait_shell(BOOT_TIMEOUT)?;
    let cmdline = vm.shell_ok("cat /proc/cmdline")?;
    let version = vm.shell_ok("cat /etc/appliance/firmware-version")?;
    if !cmdline.contains("appliance.slot=B") || version.trim() != NEW_VERSION {
        return Err(fail(format!("new slot not running: {cmdline} / {version}")).into());
    }
    guest::boot_to_ready(&mut vm, BOOT_TIMEOUT)?;
    let ready = t.elapsed();
    guest::poll(
        &mut vm,
        Duration::from_secs(120),
        Duration::from_secs(2),
        "slot B marked good",
        |vm| {
            let s = vm.shell_ok("appliance firmware status 2>&1")?;
            Ok(s.contains("marked good after a healthy boot").then_some(()))
        },
    )?;
    eprintln!(
        "FIGURE reboot to daemon ready on the new slot {:.1} s (TCG)",
        ready.as_secs_f64()
    );
    let st = status(&mut vm)?;
    eprintln!("status after:\n{st}");
    for want in [
        format!("slot B: {NEW_VERSION}"),
        "good".into(),
        "booted, boots next".into(),
        format!("running: {NEW_VERSION}"),
    ] {
        if !st.contains(&want) {
            return Err(fail(format!("status lacks {want:?}:\n{st}")).into());
        }
    }
    let log = vm.shell_ok("dmesg | grep -F 'firmware' || true")?;
    if !log.contains("marked good") {
        return Err(fail(format!("no mark-good in the log:\n{log}")).into());
    }
    let config_after = vm.shell_ok("appliance show config")?;
    if config_before != config_after {
        return Err(fail(format!(
            "config changed across the update:\n{config_before}\n---\n{config_after}"
        ))
        .into());
    }
    vm.kill();
    Ok(())
}
