//! `appliance firmware grub-cfg | uboot-script | env-image`: the build host's side of the A/B
//! boot disk (the dev image's build-disk.sh and Buildroot's post-image call them), so the
//! layout and the slot rule stay in `firmware::disk` / `firmware::slots` only.

use argh::FromArgs;

use super::firmware::layout_from;
use crate::firmware::disk::{self, Root};
use crate::firmware::slots;

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "grub-cfg", help_triggers("-h", "--help", "help"))]
/// print grub.cfg for the board's boot disk layout (the dev image's, or a locked release one with --root).
pub struct GrubCfg {
    /// board facts file with the [firmware] layout (default /etc/appliance/board.toml)
    #[argh(option)]
    pub board_file: Option<String>,
    /// release images: mount the slot's squashfs from this device prefix (e.g. /dev/vdb, PARTUUID=51b10ad2-0)
    #[argh(option)]
    pub root: Option<String>,
    /// a superuser password guards every entry but the default
    #[argh(switch)]
    pub locked: bool,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "uboot-script",
    help_triggers("-h", "--help", "help")
)]
/// print the U-Boot A/B boot script (mkimage -T script source).
pub struct UbootScript {
    /// the boot disk as U-Boot names it, IF:N (e.g. virtio:1, mmc:0)
    #[argh(option)]
    pub uboot_disk: String,
    /// the slot partitions' device name in Linux, without the number (e.g. /dev/vdb)
    #[argh(option)]
    pub root: String,
    /// kernel console (e.g. ttyAMA0)
    #[argh(option)]
    pub console: String,
    /// board facts file with the [firmware] layout (default /etc/appliance/board.toml)
    #[argh(option)]
    pub board_file: Option<String>,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "env-image",
    help_triggers("-h", "--help", "help"),
    note = "Slot A's images are kernel=PATH rootfs=PATH arguments."
)]
/// write the first bootloader environment of a release image (grubenv, or both U-Boot copies).
pub struct EnvImage {
    /// output file
    #[argh(option, short = 'o')]
    pub out: String,
    /// slot A's version
    #[argh(option)]
    pub version: String,
    /// extra kernel command line arguments
    #[argh(option, default = "String::new()")]
    pub append: String,
    /// compiled U-Boot script (boot.scr) to store with the environment
    #[argh(option)]
    pub boot_script: Option<String>,
    /// board facts file with the [firmware] layout (default /etc/appliance/board.toml)
    #[argh(option)]
    pub board_file: Option<String>,
    /// kernel=PATH rootfs=PATH
    #[argh(positional)]
    pub images: Vec<String>,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "slot-image",
    help_triggers("-h", "--help", "help"),
    note = "The images are kernel=PATH rootfs=PATH arguments."
)]
/// write one slot's raw image (rootfs at 0, kernel at the end) for genimage.
pub struct SlotImage {
    /// output file
    #[argh(option, short = 'o')]
    pub out: String,
    /// board facts file with the [firmware] layout (default /etc/appliance/board.toml)
    #[argh(option)]
    pub board_file: Option<String>,
    /// kernel=PATH rootfs=PATH
    #[argh(positional)]
    pub images: Vec<String>,
}

/// grub.cfg: the dev image's by default; `--root PREFIX --locked` for release images.
pub fn grub_cfg_cmd(a: GrubCfg) -> Result<(), String> {
    let (_, layout) = layout_from(a.board_file, None)?;
    if a.locked && a.root.is_none() {
        return Err("--locked is for release images: give --root DEVPREFIX too".into());
    }
    let root = a.root.as_deref().map_or(Root::Initramfs, Root::Partition);
    print!("{}", layout.grub_cfg_for(root, a.locked));
    Ok(())
}

/// The U-Boot boot script source.
pub fn uboot_script_cmd(a: UbootScript) -> Result<(), String> {
    let (_, layout) = layout_from(a.board_file, None)?;
    let (dev, root, console) = (a.uboot_disk, a.root, a.console);
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
pub fn env_image_cmd(a: EnvImage) -> Result<(), String> {
    let (_, layout) = layout_from(a.board_file, None)?;
    let (out, version, append) = (a.out, a.version, a.append);
    let script = a
        .boot_script
        .map(|p| std::fs::read(&p).map_err(|e| format!("{p}: {e}")))
        .transpose()?;
    let mut lens = [None, None];
    for a in &a.images {
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
pub fn slot_image_cmd(a: SlotImage) -> Result<(), String> {
    let (_, layout) = layout_from(a.board_file, None)?;
    let out = a.out;
    let read = |p: &str| std::fs::read(p).map_err(|e| format!("{p}: {e}"));
    let (mut kernel, mut rootfs) = (None, None);
    for a in &a.images {
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
