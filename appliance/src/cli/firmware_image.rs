//! `appliance firmware grub-cfg | uboot-script | env-image`: the build host's side of the A/B
//! boot disk (the dev image's build-disk.sh and Buildroot's post-image call them), so the
//! layout and the slot rule stay in `firmware::disk` / `firmware::slots` only.

use super::firmware::{layout_from, no_more, take_flag, take_opt};
use crate::firmware::disk::{self, Root};
use crate::firmware::slots;

/// grub.cfg: the dev image's by default; `--root PREFIX --locked` for release images.
pub fn grub_cfg_cmd(mut args: Vec<String>) -> Result<(), String> {
    let (_, layout) = layout_from(&mut args)?;
    let root = take_opt(&mut args, "--root")?;
    let locked = take_flag(&mut args, "--locked");
    no_more(&args)?;
    let root = root.as_deref().map_or(Root::Initramfs, Root::Partition);
    print!("{}", layout.grub_cfg_for(root, locked));
    Ok(())
}

/// The U-Boot boot script source.
pub fn uboot_script_cmd(mut args: Vec<String>) -> Result<(), String> {
    let (_, layout) = layout_from(&mut args)?;
    let need =
        |v: Option<String>, what: &str| v.ok_or_else(|| format!("uboot-script needs {what}"));
    let dev = need(
        take_opt(&mut args, "--uboot-disk")?,
        "--uboot-disk IF:N (the boot disk as U-Boot names it, e.g. virtio:1, mmc:0)",
    )?;
    let root = need(
        take_opt(&mut args, "--root")?,
        "--root DEVPREFIX (Linux's name of the slot partitions without the number, e.g. /dev/vdb)",
    )?;
    let console = need(
        take_opt(&mut args, "--console")?,
        "--console TTY (e.g. ttyAMA0)",
    )?;
    no_more(&args)?;
    let Some((iface, num)) = dev
        .split_once(':')
        .filter(|(i, n)| !i.is_empty() && n.parse::<u8>().is_ok())
    else {
        return Err(format!(
            "--uboot-disk '{dev}' must be an interface and a device number, e.g. virtio:1"
        ));
    };
    print!(
        "{}",
        layout.uboot_script(&format!("{iface} {num}"), &root, &console)
    );
    Ok(())
}

/// The first environment of a release image, slot A = the given kernel and rootfs.
pub fn env_image_cmd(mut args: Vec<String>) -> Result<(), String> {
    let (_, layout) = layout_from(&mut args)?;
    let out = take_opt(&mut args, "-o")?.ok_or("env-image needs -o OUT")?;
    let version = take_opt(&mut args, "--version")?.ok_or("env-image needs --version X.Y.Z")?;
    let append = take_opt(&mut args, "--append")?.unwrap_or_default();
    let script = take_opt(&mut args, "--boot-script")?
        .map(|p| std::fs::read(&p).map_err(|e| format!("{p}: {e}")))
        .transpose()?;
    let mut lens = [None, None];
    for a in &args {
        let (i, p) = match a.split_once('=') {
            Some(("kernel", p)) => (0, p),
            Some(("rootfs", p)) => (1, p),
            _ => {
                return Err(format!(
                    "unexpected argument '{a}' (kernel=PATH rootfs=PATH)"
                ))
            }
        };
        let len = std::fs::metadata(p).map_err(|e| format!("{p}: {e}"))?.len();
        let name = if i == 0 { "kernel" } else { "rootfs" };
        let room = layout
            .area(slots::Slot::A, name)
            .map_or(0, |(_, room)| room);
        if len > room {
            return Err(format!(
                "{p} ({len} bytes) does not fit the slot's {name} area ({room} bytes): raise slot_mib/kernel_mib in board.toml and genimage.cfg together"
            ));
        }
        lens[i] = Some(len.div_ceil(disk::SECTOR));
    }
    let [Some(k), Some(r)] = lens else {
        return Err("env-image needs kernel=PATH and rootfs=PATH".into());
    };
    let mut env = slots::initial_env(&version, k, r).map_err(|e| e.to_string())?;
    env.set("EXTRA_ARGS", &append).map_err(|e| e.to_string())?;
    let bytes = disk::env_image(&layout, &env, script.as_deref())?;
    std::fs::write(&out, &bytes).map_err(|e| format!("{out}: {e}"))?;
    println!("{out}: {} bytes, slot A = {version}", bytes.len());
    Ok(())
}

/// One slot's image (rootfs at 0, kernel at the end) for genimage.
pub fn slot_image_cmd(mut args: Vec<String>) -> Result<(), String> {
    let (_, layout) = layout_from(&mut args)?;
    let out = take_opt(&mut args, "-o")?.ok_or("slot-image needs -o OUT")?;
    let read = |p: &str| std::fs::read(p).map_err(|e| format!("{p}: {e}"));
    let (mut kernel, mut rootfs) = (None, None);
    for a in &args {
        match a.split_once('=') {
            Some(("kernel", p)) => kernel = Some(read(p)?),
            Some(("rootfs", p)) => rootfs = Some(read(p)?),
            _ => {
                return Err(format!(
                    "unexpected argument '{a}' (kernel=PATH rootfs=PATH)"
                ))
            }
        }
    }
    let (kernel, rootfs) = kernel
        .zip(rootfs)
        .ok_or("slot-image needs kernel=PATH and rootfs=PATH")?;
    let img = layout.slot_image(&kernel, &rootfs)?;
    std::fs::write(&out, &img).map_err(|e| format!("{out}: {e}"))?;
    println!("{out}: {} bytes", img.len());
    Ok(())
}
