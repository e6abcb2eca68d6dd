//! Firmware-update test material built on the host: the A/B boot disk, derived rootfs
//! images (the dev initramfs plus an appended cpio archive), signed test bundles, and the
//! GRUB environment read straight from the boot disk file (evidence independent of the
//! guest). Shared by the firmware QEMU tests.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::vm::repo_root;
use crate::Image;

/// Boxed error of these helpers.
pub type BoxError = Box<dyn Error>;
/// Result of these helpers: the failing command or file with its message.
pub type FwResult<T> = Result<T, BoxError>;

/// Offset of the GRUB environment FAT in the boot disk (firmware/disk.rs `ENV_OFFSET`).
pub const ENV_PART_OFFSET: u64 = 1 << 20;

/// Run `cmd`; its stdout, or an error with its stderr.
pub fn run(cmd: &mut Command) -> Result<String, BoxError> {
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
        ("/usr/bin/mtype", "mtools"),
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

/// [`host_tools`], skipping (a failure under CI) with what to install when one is missing.
pub fn host_tools_ok() -> bool {
    match host_tools() {
        Ok(()) => true,
        Err(why) => {
            crate::skip::skip(&why);
            false
        }
    }
}

/// The debug `appliance` tool of this build (bundles, keys, disk layout).
pub fn host_tool() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"))
        .join("debug/appliance")
}

/// `initrd` with an appended newc archive holding `files` (path inside the image, content):
/// the kernel unpacks archives in order, so these replace the image's own files.
pub fn rootfs_with(
    initrd: &Path,
    dir: &Path,
    name: &str,
    files: &[(&str, &[u8])],
) -> Result<PathBuf, BoxError> {
    let stage = dir.join(format!("{name}-stage"));
    let mut list = Vec::new();
    for (path, bytes) in files {
        let p = stage.join(path);
        let parent = p.parent().ok_or("file path has no parent")?;
        std::fs::create_dir_all(parent)?;
        std::fs::write(&p, bytes)?;
        // Parent directories first, as cpio wants them.
        let mut dirs: Vec<&Path> = Path::new(path).ancestors().skip(1).collect();
        dirs.reverse();
        for d in dirs.into_iter().filter(|d| !d.as_os_str().is_empty()) {
            let d = d.display().to_string();
            if !list.contains(&d) {
                list.push(d);
            }
        }
        list.push((*path).to_owned());
    }
    let extra = dir.join(format!("{name}.cpio"));
    run(Command::new("bash").arg("-c").arg(format!(
        "cd {} && printf '{}\\n' | cpio --quiet -o -H newc -R 0:0 > {}",
        stage.display(),
        list.join("\\n"),
        extra.display()
    )))?;
    let out = dir.join(format!("initramfs-{name}.cpio"));
    let mut bytes = std::fs::read(initrd)?;
    bytes.extend(std::fs::read(&extra)?);
    std::fs::write(&out, bytes)?;
    Ok(out)
}

/// The dev initramfs whose `/etc/appliance/firmware-version` says `version`.
pub fn versioned_rootfs(initrd: &Path, dir: &Path, version: &str) -> Result<PathBuf, BoxError> {
    rootfs_with(
        initrd,
        dir,
        version,
        &[(
            "etc/appliance/firmware-version",
            format!("{version}\n").as_bytes(),
        )],
    )
}

/// A copy of `bytes` padded with zeros to whole sectors, to attach as a raw disk.
pub fn as_disk(bytes: &[u8], path: &Path) -> Result<PathBuf, BoxError> {
    let mut b = bytes.to_vec();
    b.resize(b.len().div_ceil(512) * 512, 0);
    std::fs::write(path, b)?;
    Ok(path.to_path_buf())
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

/// A bundle signed with the test key for `board`, of `kernel` and `rootfs`.
pub fn test_bundle(
    out: &Path,
    version: &str,
    board: &str,
    kernel: &Path,
    rootfs: &Path,
) -> Result<Vec<u8>, BoxError> {
    let key = repo_root().join("tests/image/keys/test-firmware.key");
    run(Command::new(host_tool())
        .args(["firmware", "bundle", "--version", version, "--board", board])
        .arg("--key")
        .arg(key)
        .arg("-o")
        .arg(out)
        .arg(format!("kernel={}", kernel.display()))
        .arg(format!("rootfs={}", rootfs.display())))?;
    Ok(std::fs::read(out)?)
}

/// A bundle of `image`'s kernel and `rootfs` as `version` for the x86 dev board, signed with
/// the test key ([`test_bundle`]).
pub fn signed_bundle(image: &Image, rootfs: &Path, version: &str, out: &Path) -> FwResult<PathBuf> {
    test_bundle(out, version, "qemu-x86_64", &image.kernel, rootfs)?;
    Ok(out.to_path_buf())
}

/// The GRUB environment of a boot disk file, read on the host with mtools (not with the
/// appliance's own codec): `KEY=VALUE` lines of the `grubenv` file in the env FAT.
pub fn host_grubenv(disk: &Path) -> Result<BTreeMap<String, String>, BoxError> {
    let text = run(Command::new("mtype")
        .arg("-i")
        .arg(format!("{}@@{ENV_PART_OFFSET}", disk.display()))
        .arg("::grubenv"))?;
    if !text.starts_with("# GRUB Environment Block") {
        return Err(format!("{}: no GRUB environment block: {text:?}", disk.display()).into());
    }
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
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
