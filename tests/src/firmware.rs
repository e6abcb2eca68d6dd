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

/// The host tools the boot disk needs; skips (fails under CI) naming the package otherwise.
pub fn host_tools_ok() -> bool {
    for (tool, pkg) in [
        ("/usr/lib/grub/i386-pc/boot.img", "grub-pc-bin"),
        ("/usr/bin/grub-mkimage", "grub-common"),
        ("/usr/sbin/mkfs.fat", "dosfstools"),
        ("/usr/bin/mcopy", "mtools"),
        ("/usr/bin/mtype", "mtools"),
        ("/usr/bin/cpio", "cpio"),
    ] {
        if !Path::new(tool).exists() {
            crate::skip::skip(&format!(
                "{tool} missing: run tests/setup-host.sh (installs {pkg})"
            ));
            return false;
        }
    }
    true
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

/// A fresh A/B boot disk at `path`: slot A = `image`, test shell on.
pub fn boot_disk(image: &Image, path: &Path) -> Result<(), BoxError> {
    run(Command::new("bash")
        .arg(repo_root().join("tests/image/build-disk.sh"))
        .arg(path)
        .env("KERNEL", &image.kernel)
        .env("ROOTFS", &image.initrd)
        .env("APPEND", "appliance.testshell=1"))?;
    Ok(())
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
