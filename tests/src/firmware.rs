//! A/B firmware test material built on the host: the GRUB boot disk
//! (tests/image/build-disk.sh), a "new version" of the dev image (the same initramfs
//! with an appended cpio that sets `/etc/appliance/firmware-version`, so no second
//! binary build is needed), signed bundles (tests/image/build-bundle.sh, test key),
//! bundles as raw disks for the guest, and the slot state read from a boot disk file
//! on the host (`appliance firmware status --disk`).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::vm::{repo_root, Image};

/// Errors of this module: the failing command or file with its message.
pub type FwResult<T> = Result<T, Box<dyn Error>>;

/// Runs a command; error (with stderr) unless it exits 0. Returns stdout.
pub fn run(cmd: &mut Command) -> FwResult<String> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Host tools the boot disk and bundles need: Err(what to install) when one is missing.
pub fn host_tools() -> Result<(), String> {
    for (tool, pkg) in [
        ("/usr/lib/grub/i386-pc/boot.img", "grub-pc-bin"),
        ("/usr/bin/grub-mkimage", "grub-common"),
        ("/usr/sbin/mkfs.fat", "dosfstools"),
        ("/usr/bin/mcopy", "mtools"),
        ("/usr/bin/cpio", "cpio"),
    ] {
        if !Path::new(tool).exists() {
            return Err(format!(
                "{tool} missing: run tests/setup-host.sh (installs {pkg})"
            ));
        }
    }
    Ok(())
}

/// The host build of `appliance` that build-disk.sh and build-bundle.sh build and use.
pub fn host_tool() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"))
        .join("debug/appliance")
}

/// The x86 dev board's facts file (its `[firmware]` section is the disk layout).
pub fn board_file() -> PathBuf {
    repo_root().join("board/qemu-x86_64/rootfs-overlay/etc/appliance/board.toml")
}

/// Builds an A/B boot disk at `out` with slot A = `image`, the kernel command line
/// extended by `append` (e.g. `appliance.testshell=1`, which a GRUB boot cannot get
/// from QEMU).
pub fn boot_disk(image: &Image, out: &Path, append: &str) -> FwResult<PathBuf> {
    run(Command::new("bash")
        .arg(repo_root().join("tests/image/build-disk.sh"))
        .arg(out)
        .env("KERNEL", &image.kernel)
        .env("ROOTFS", &image.initrd)
        .env("APPEND", append))?;
    Ok(out.to_path_buf())
}

/// The dev initramfs plus an appended archive that sets the firmware version file.
pub fn versioned_rootfs(initrd: &Path, dir: &Path, version: &str) -> FwResult<PathBuf> {
    let stage = dir.join(format!("version-stage-{version}"));
    std::fs::create_dir_all(stage.join("etc/appliance"))?;
    std::fs::write(
        stage.join("etc/appliance/firmware-version"),
        format!("{version}\n"),
    )?;
    let extra = dir.join(format!("version-{version}.cpio"));
    run(Command::new("bash").arg("-c").arg(format!(
        "cd {} && printf 'etc\\netc/appliance\\netc/appliance/firmware-version\\n' \
         | cpio --quiet -o -H newc -R 0:0 > {}",
        stage.display(),
        extra.display()
    )))?;
    let out = dir.join(format!("initramfs-{version}.cpio"));
    let mut bytes = std::fs::read(initrd)?;
    bytes.extend(std::fs::read(&extra)?);
    std::fs::write(&out, bytes)?;
    Ok(out)
}

/// A bundle of `image`'s kernel and `rootfs` as `version`, signed with the test key
/// by tests/image/build-bundle.sh.
pub fn signed_bundle(image: &Image, rootfs: &Path, version: &str, out: &Path) -> FwResult<PathBuf> {
    run(Command::new("bash")
        .arg(repo_root().join("tests/image/build-bundle.sh"))
        .arg(out)
        .env("KERNEL", &image.kernel)
        .env("ROOTFS", rootfs)
        .env("VERSION", version))?;
    Ok(out.to_path_buf())
}

/// A copy of `bytes` padded with zeros to whole sectors, to attach as a raw disk.
pub fn as_disk(bytes: &[u8], path: &Path) -> FwResult<PathBuf> {
    let mut b = bytes.to_vec();
    b.resize(b.len().div_ceil(512) * 512, 0);
    std::fs::write(path, b)?;
    Ok(path.to_path_buf())
}

/// `appliance firmware status` of a boot disk file, read on the host from its GRUB
/// environment (`booted`: the slot the guest runs, for the "booted" tag).
pub fn host_status(disk: &Path, booted: &str) -> FwResult<String> {
    run(Command::new(host_tool())
        .args(["firmware", "status", "--board-file"])
        .arg(board_file())
        .arg("--disk")
        .arg(disk)
        .args(["--booted", booted]))
}

/// The line of `slot` (`"A"`/`"B"`) in a firmware status text.
pub fn slot_line<'a>(status: &'a str, slot: &str) -> Option<&'a str> {
    status
        .lines()
        .find(|l| l.starts_with(&format!("slot {slot}: ")))
}

/// Whether `status` shows `slot` holding `version`, good (not on trial, attempts
/// restored) and first in the boot order.
pub fn slot_good_and_next(status: &str, slot: &str, version: &str) -> bool {
    slot_line(status, slot).is_some_and(|l| {
        let mut w = l.split_whitespace().skip(2);
        w.next() == Some(version)
            && w.next() == Some("good")
            && l.contains("boots next")
            && l.contains("3 boot attempt(s) left")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "slot A: 0.1.0    good                             3 boot attempt(s) left\n\
                          slot B: 0.2.0    good                             booted, boots next, 3 boot attempt(s) left\n\
                          running: 0.2.0\n";

    #[test]
    fn reads_slot_lines_of_the_status_text() {
        assert!(slot_good_and_next(STATUS, "B", "0.2.0"));
        assert!(
            !slot_good_and_next(STATUS, "A", "0.1.0"),
            "A does not boot next"
        );
        assert!(!slot_good_and_next(STATUS, "B", "0.1.0"));
        let trial = STATUS.replace(
            "slot B: 0.2.0    good                             booted, boots next, 3",
            "slot B: 0.2.0    on trial (not yet marked good)   booted, boots next, 0",
        );
        assert!(!slot_good_and_next(&trial, "B", "0.2.0"));
        assert_eq!(slot_line(STATUS, "C"), None);
    }
}
