//! The boot disk: layout (from board.toml `[firmware]`), the hand-laid MBR partition table,
//! and reading/writing the environment block and the slots on the device (or an image file).
//!
//! ```text
//! 0        MBR: GRUB boot.img code + partition table (genimage's table on release images)
//! 512      GRUB core.img (embedded before the first partition; x86 only)
//! 1 MiB    p1  boot: GRUB: FAT12 holding only `grubenv`       type 0x01
//!              (GRUB's save_env writes through a filesystem;
//!              the box finds the file's one sector run and
//!              writes it in place). U-Boot: raw, two copies of
//!              a U-Boot environment, then the A/B boot script
//! 2 MiB    p2  slot A: rootfs at 0, kernel at rootfs_len       type 0xda
//! ..       p3  slot B: same                                     type 0xda
//! ```
//! Slots are raw (no filesystem): the bootloader loads the kernel (and the dev image's
//! initramfs) by sector ranges whose lengths are in the environment, so nothing needs mounts
//! or loop devices. The rootfs starts the slot so a release image's squashfs is the slot
//! partition itself (`root=/dev/vdb2`); the kernel at the end is ignored by squashfs.
//! GRUB 2.06 cannot `save_env` to a blocklist ("sparse file not allowed"), hence the small FAT.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use super::grubenv::{Env, BLOCK_LEN};
use super::slots::Slot;
use super::ubootenv::{Form, UbootEnv};
use crate::config::board::Bootloader;

/// Sector size GRUB's blocklists count in.
pub const SECTOR: u64 = 512;
/// Where the environment partition starts.
pub const ENV_OFFSET: u64 = 1 << 20;
/// Size of the environment partition.
pub const ENV_PART: u64 = 1 << 20;
/// MBR partition type of the slots (raw data).
pub const PART_TYPE: u8 = 0xda;
/// MBR partition type of the environment partition (FAT12).
pub const ENV_PART_TYPE: u8 = 0x01;

/// Size of one U-Boot environment copy (`env export -cs`, `env import -c`).
pub const UBOOT_ENV_SIZE: u64 = 16 << 10;
/// Where the A/B boot script (a mkimage `script` image) sits in the U-Boot boot partition,
/// after the two environment copies.
pub const UBOOT_SCRIPT_OFFSET: u64 = ENV_OFFSET + 2 * UBOOT_ENV_SIZE;
/// Prefix of the slot variables in a U-Boot environment (`BOOT_ORDER`, `BOOT_A_LEFT`...,
/// RAUC's U-Boot names); the GRUB environment uses the bare names.
pub const UBOOT_PREFIX: &str = "BOOT_";
/// Every slot variable the boot script must carry over when it saves the environment
/// (`firmware::slots` writes these; a test checks the list against it).
pub const SLOT_VARS: [&str; 15] = [
    "ORDER",
    "A_OK",
    "A_LEFT",
    "A_TRIAL",
    "A_VERSION",
    "A_KSEC",
    "A_RSEC",
    "B_OK",
    "B_LEFT",
    "B_TRIAL",
    "B_VERSION",
    "B_KSEC",
    "B_RSEC",
    "NOTE",
    "EXTRA_ARGS",
];

/// How the kernel of a slot finds its root filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Root<'a> {
    /// The bootloader loads the rootfs as an initramfs (the dev image).
    Initramfs,
    /// The rootfs is the slot partition itself, a squashfs: Linux's name of the slot partitions
    /// without their number (`/dev/vdb`, or `PARTUUID=51b10ad2-0` for a fixed MBR signature).
    Partition(&'a str),
}

/// Boot disk layout: a board fact (board.toml `[firmware]`).
pub use crate::config::board::FirmwareLayout as Layout;

impl Layout {
    /// Byte offset of a slot.
    pub fn slot_offset(&self, s: Slot) -> u64 {
        ENV_OFFSET
            + ENV_PART
            + match s {
                Slot::A => 0,
                Slot::B => self.slot_mib << 20,
            }
    }
    /// Bytes for the kernel.
    pub fn kernel_len(&self) -> u64 {
        self.kernel_mib << 20
    }
    /// Bytes for the rootfs.
    pub fn rootfs_len(&self) -> u64 {
        (self.slot_mib - self.kernel_mib) << 20
    }
    /// Byte offset and room of image `name` in slot `s`: the rootfs first, so a squashfs
    /// root is the slot partition itself, then the kernel.
    pub fn area(&self, s: Slot, name: &str) -> Option<(u64, u64)> {
        match name {
            "rootfs" => Some((self.slot_offset(s), self.rootfs_len())),
            "kernel" => Some((self.slot_offset(s) + self.rootfs_len(), self.kernel_len())),
            _ => None,
        }
    }
    /// Whole disk size.
    pub fn disk_len(&self) -> u64 {
        self.slot_offset(Slot::B) + (self.slot_mib << 20)
    }

    /// The MBR partition table (64 bytes at offset 446) and signature.
    pub fn partition_table(&self) -> [u8; 66] {
        let mut t = [0u8; 66];
        let parts = [
            (ENV_OFFSET, ENV_PART),
            (self.slot_offset(Slot::A), self.slot_mib << 20),
            (self.slot_offset(Slot::B), self.slot_mib << 20),
        ];
        for (i, (start, len)) in parts.iter().enumerate() {
            let e = &mut t[i * 16..i * 16 + 16];
            // CHS fields: "use LBA" markers (0xfe 0xff 0xff), as modern tools write.
            e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
            e[4] = if i == 0 { ENV_PART_TYPE } else { PART_TYPE };
            e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
            e[8..12].copy_from_slice(&((start / SECTOR) as u32).to_le_bytes());
            e[12..16].copy_from_slice(&((len / SECTOR) as u32).to_le_bytes());
        }
        t[64] = 0x55;
        t[65] = 0xaa;
        t
    }

    /// The GRUB partition numbers of the slots (grub.cfg uses them).
    pub fn grub_part(s: Slot) -> u8 {
        match s {
            Slot::A => 2,
            Slot::B => 3,
        }
    }

    /// grub.cfg of the dev image (initramfs root, no password).
    pub fn grub_cfg(&self) -> String {
        self.grub_cfg_for(Root::Initramfs, false)
    }

    /// grub.cfg for this layout: pick a slot like [`super::slots::grub_pick`], count one
    /// attempt down, save, and boot its kernel (and initramfs) from blocklists. `locked`
    /// adds a superuser whose hash the release build fills in, so a failed boot drops to a
    /// password prompt, not a free GRUB shell.
    pub fn grub_cfg_for(&self, root: Root<'_>, locked: bool) -> String {
        let kstart = self.rootfs_len() / SECTOR;
        let mut s = String::from(
            "# Generated by `appliance firmware grub-cfg` (firmware/disk.rs); A/B choice as in firmware/slots.rs.\n\
             serial --unit=0 --speed=115200\n\
             terminal_input serial\n\
             terminal_output serial\n",
        );
        if locked {
            s.push_str(
                "# Locked: the GRUB command line and menu editing need the superuser's password\n\
                 # (post-build.sh fills in $SIP_LB_GRUB_PASSWORD_PBKDF2 and refuses to build without it).\n\
                 set superusers=\"root\"\n\
                 password_pbkdf2 root @SIP_LB_GRUB_PASSWORD_PBKDF2@\n",
            );
        }
        s.push_str("set envblk=(hd0,msdos1)/grubenv\nload_env --file $envblk\nset slot=\n");
        s.push_str("for s in $ORDER; do\n  if [ -z \"$slot\" ]; then\n");
        for x in ["A", "B"] {
            s.push_str(&format!(
                "    if [ \"$s\" = {x} -a \"${x}_OK\" = 1 ]; then\n\
                 \x20     if [ \"${x}_LEFT\" = 3 ]; then set {x}_LEFT=2; set slot={x}\n\
                 \x20     elif [ \"${x}_LEFT\" = 2 ]; then set {x}_LEFT=1; set slot={x}\n\
                 \x20     elif [ \"${x}_LEFT\" = 1 ]; then set {x}_LEFT=0; set slot={x}\n\
                 \x20     fi\n\
                 \x20   fi\n"
            ));
        }
        s.push_str("  fi\ndone\n");
        s.push_str(
            "if [ -z \"$slot\" ]; then\n  echo \"no slot has boot attempts left: booting the primary anyway\"\n  for s in $ORDER; do if [ -z \"$slot\" ]; then set slot=$s; fi; done\nfi\n\
             save_env --file $envblk A_LEFT B_LEFT\n",
        );
        for (x, p) in [
            ("A", Self::grub_part(Slot::A)),
            ("B", Self::grub_part(Slot::B)),
        ] {
            let (root_args, initrd) = match root {
                Root::Initramfs => (
                    String::new(),
                    format!("  initrd (hd0,msdos{p})0+${x}_RSEC\n"),
                ),
                Root::Partition(prefix) => (
                    format!(" root={prefix}{p} rootfstype=squashfs ro rootwait"),
                    String::new(),
                ),
            };
            s.push_str(&format!(
                "if [ \"$slot\" = {x} ]; then\n  echo \"booting slot {x} (${x}_VERSION)\"\n  \
                 linux (hd0,msdos{p}){kstart}+${x}_KSEC console=ttyS0,115200 panic=1 loglevel=4 appliance.slot={x} appliance.trial=${x}_TRIAL{root_args} $EXTRA_ARGS\n\
                 {initrd}  boot\nfi\n"
            ));
        }
        s
    }

    /// U-Boot's `bootcmd` that runs the A/B boot script from the boot partition of `disk`.
    pub fn uboot_bootcmd(disk: &str) -> String {
        let (iface, num) = disk.split_once(' ').unwrap_or((disk, "0"));
        format!(
            "{iface} scan; {iface} dev {num}; {iface} read ${{scriptaddr}} {:#x} {:#x}; source ${{scriptaddr}}",
            UBOOT_SCRIPT_OFFSET / SECTOR,
            (ENV_OFFSET + ENV_PART - UBOOT_SCRIPT_OFFSET) / SECTOR
        )
    }

    /// One slot's image for a partitioning tool (genimage): the rootfs at 0, the kernel at
    /// its area, exactly `slot_mib` long.
    pub fn slot_image(&self, kernel: &[u8], rootfs: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = vec![0u8; (self.slot_mib << 20) as usize];
        let base = self.slot_offset(Slot::A);
        for (name, data) in [("rootfs", rootfs), ("kernel", kernel)] {
            let (off, room) = self.area(Slot::A, name).unwrap_or((base, 0));
            if data.len() as u64 > room {
                return Err(format!(
                    "the {name} ({} bytes) does not fit the slot's {name} area ({room} bytes): raise slot_mib/kernel_mib in board.toml and genimage.cfg together",
                    data.len()
                ));
            }
            out[(off - base) as usize..][..data.len()].copy_from_slice(data);
        }
        Ok(out)
    }

    /// The U-Boot A/B boot script (source of a mkimage `script` image) for this layout: the
    /// same rule as [`Self::grub_cfg_for`] on `BOOT_`-prefixed variables. It loads the
    /// environment (copy 1, else copy 2) from the boot partition of `disk` (U-Boot's
    /// `interface devnum`, e.g. `virtio 1`), counts one attempt down, saves both copies and
    /// boots the slot's kernel with `booti`, its squashfs the slot partition (`root`).
    pub fn uboot_script(&self, disk: &str, root: &str, console: &str) -> String {
        let hex = |bytes: u64| format!("0x{:x}", bytes / SECTOR);
        let env_cnt = hex(UBOOT_ENV_SIZE);
        let env1 = hex(ENV_OFFSET);
        let env2 = hex(ENV_OFFSET + UBOOT_ENV_SIZE);
        let p = UBOOT_PREFIX;
        // U-Boot's block commands act on the current device: select it, then `IF read/write`.
        let (iface, num) = disk.split_once(' ').unwrap_or((disk, "0"));
        let select = format!("{iface} dev {num}");
        let disk = iface;
        // U-Boot's default CONFIG_SYS_MAXARGS is 16, so the export line carries only what a
        // U-Boot board uses: the sector counts are for GRUB's blocklists.
        let vars: Vec<String> = SLOT_VARS
            .iter()
            .filter(|v| !v.ends_with("SEC"))
            .map(|v| format!("{p}{v}"))
            .collect();
        let mut s = format!(
            "# Generated by `appliance firmware uboot-script` (firmware/disk.rs); A/B choice as in firmware/slots.rs.\n\
             # Compile: mkimage -A arm64 -T script -C none -d boot.cmd boot.scr\n\
             setenv slot\n\
             {select}\n\
             if {disk} read ${{kernel_addr_r}} {env1} {env_cnt} && env import -c ${{kernel_addr_r}} {size:#x}; then\n  echo \"A/B environment: copy 1\"\n\
             elif {disk} read ${{kernel_addr_r}} {env2} {env_cnt} && env import -c ${{kernel_addr_r}} {size:#x}; then\n  echo \"A/B environment: copy 2\"\n\
             else\n  echo \"no valid A/B environment\"\n\
             fi\n\
             for s in ${{{p}ORDER}}; do\n  if test -z \"${{slot}}\"; then\n",
            size = UBOOT_ENV_SIZE,
        );
        for x in ["A", "B"] {
            s.push_str(&format!(
                "    if test \"${{s}}\" = {x} && test \"${{{p}{x}_OK}}\" = 1; then\n\
                 \x20     if test \"${{{p}{x}_LEFT}}\" = 3; then setenv {p}{x}_LEFT 2; setenv slot {x}\n\
                 \x20     elif test \"${{{p}{x}_LEFT}}\" = 2; then setenv {p}{x}_LEFT 1; setenv slot {x}\n\
                 \x20     elif test \"${{{p}{x}_LEFT}}\" = 1; then setenv {p}{x}_LEFT 0; setenv slot {x}\n\
                 \x20     fi\n\
                 \x20   fi\n"
            ));
        }
        s.push_str(&format!(
            "  fi\ndone\n\
             if test -z \"${{slot}}\"; then\n  echo \"no slot has boot attempts left: booting the primary anyway\"\n  \
             for s in ${{{p}ORDER}}; do if test -z \"${{slot}}\"; then setenv slot ${{s}}; fi; done\nfi\n\
             # Both copies, first then second: a power cut leaves at least one whole. The kernel\n\
             # area is the scratch buffer (scriptaddr holds this script).\n\
             env export -cs {size:#x} ${{kernel_addr_r}} {vars}\n\
             {disk} write ${{kernel_addr_r}} {env1} {env_cnt}\n\
             {disk} write ${{kernel_addr_r}} {env2} {env_cnt}\n",
            size = UBOOT_ENV_SIZE,
            vars = vars.join(" "),
        ));
        for x in [Slot::A, Slot::B] {
            let part = Self::grub_part(x);
            s.push_str(&format!(
                "if test \"${{slot}}\" = {x}; then\n  echo \"booting slot {x} (${{{p}{x}_VERSION}})\"\n  \
                 {disk} read ${{kernel_addr_r}} {kstart} {kcnt}\n  \
                 setenv bootargs \"console={console} panic=1 loglevel=4 appliance.slot={x} appliance.trial=${{{p}{x}_TRIAL}} root={root}{part} rootfstype=squashfs ro rootwait ${{{p}EXTRA_ARGS}}\"\n  \
                 booti ${{kernel_addr_r}} - ${{fdtcontroladdr}}\nfi\n",
                kstart = hex(self.slot_offset(x) + self.rootfs_len()),
                kcnt = hex(self.kernel_len()),
            ));
        }
        s.push_str("echo \"A/B boot failed: no bootable slot\"\n");
        s
    }
}

/// The boot disk, open for reading and writing.
pub struct Disk {
    file: File,
    env_offset: u64,
    /// Its layout.
    pub layout: Layout,
}

fn io(what: &str, e: std::io::Error) -> String {
    format!("{what}: {e}")
}

impl Disk {
    /// Open the device (or image file) the layout names.
    pub fn open(layout: Layout) -> Result<Disk, String> {
        layout.check()?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&layout.disk)
            .map_err(|e| io(&format!("cannot open the boot disk {}", layout.disk), e))?;
        let env_offset = match layout.bootloader {
            Bootloader::Uboot => ENV_OFFSET,
            Bootloader::Grub => {
                let mut part = vec![0u8; ENV_PART as usize];
                file.read_exact_at(&mut part, ENV_OFFSET)
                    .map_err(|e| io("reading the environment partition", e))?;
                ENV_OFFSET + find_env(&part)?
            }
        };
        Ok(Disk {
            file,
            env_offset,
            layout,
        })
    }

    /// Read the environment block.
    pub fn read_env(&self) -> Result<Env, String> {
        if self.layout.bootloader == Bootloader::Uboot {
            let mut b = vec![0u8; 2 * UBOOT_ENV_SIZE as usize];
            self.file
                .read_exact_at(&mut b, self.env_offset)
                .map_err(|e| io("reading the U-Boot environment", e))?;
            return from_uboot_copies(&b);
        }
        let mut b = vec![0u8; BLOCK_LEN];
        self.file
            .read_exact_at(&mut b, self.env_offset)
            .map_err(|e| io("reading the GRUB environment", e))?;
        Env::decode(&b).map_err(|e| e.to_string())
    }

    /// Write the environment block and flush it to the medium.
    pub fn write_env(&self, env: &Env) -> Result<(), String> {
        if self.layout.bootloader == Bootloader::Uboot {
            let b = to_uboot(env)?;
            // First copy, flushed, then the second: the boot script reads the first valid one.
            for copy in 0..2 {
                self.file
                    .write_all_at(&b, self.env_offset + copy * UBOOT_ENV_SIZE)
                    .map_err(|e| io("writing the U-Boot environment", e))?;
                self.file
                    .sync_all()
                    .map_err(|e| io("flushing the U-Boot environment", e))?;
            }
            return Ok(());
        }
        let b = env.encode().map_err(|e| e.to_string())?;
        self.file
            .write_all_at(&b, self.env_offset)
            .map_err(|e| io("writing the GRUB environment", e))?;
        self.file
            .sync_all()
            .map_err(|e| io("flushing the GRUB environment", e))
    }

    /// A writer for image `name` of slot `s` that refuses to pass the area's end.
    pub fn area_writer(&self, s: Slot, name: &str) -> Result<AreaWriter<'_>, String> {
        let (off, room) = self
            .layout
            .area(s, name)
            .ok_or_else(|| format!("slots have no '{name}' area"))?;
        Ok(AreaWriter {
            file: &self.file,
            off,
            room,
            pos: 0,
        })
    }

    /// Flush slot writes to the medium.
    pub fn sync(&self) -> Result<(), String> {
        self.file.sync_all().map_err(|e| io("flushing the slot", e))
    }

    /// SHA-256 of `len` bytes of image `name` in slot `s`, read back from the medium.
    pub fn hash_area(&self, s: Slot, name: &str, len: u64) -> Result<String, String> {
        use sha2::{Digest, Sha256};
        let (off, _) = self
            .layout
            .area(s, name)
            .ok_or_else(|| format!("slots have no '{name}' area"))?;
        drop_cache(&self.file);
        let mut f = self.file.try_clone().map_err(|e| io("read back", e))?;
        f.seek(SeekFrom::Start(off))
            .map_err(|e| io("read back", e))?;
        let mut h = Sha256::new();
        let mut left = len;
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            f.read_exact(&mut buf[..n])
                .map_err(|e| io("read back", e))?;
            h.update(&buf[..n]);
            left -= n as u64;
        }
        Ok(super::keys::to_hex(&h.finalize()))
    }
}

/// One U-Boot environment copy holding the slot variables of `env` (prefixed).
pub fn to_uboot(env: &Env) -> Result<Vec<u8>, String> {
    let mut u = UbootEnv::default();
    for (k, v) in env.vars() {
        u.set(&format!("{UBOOT_PREFIX}{k}"), v)
            .map_err(|e| e.to_string())?;
    }
    u.encode(UBOOT_ENV_SIZE as usize, Form::Plain)
        .map_err(|e| e.to_string())
}

/// The slot variables of two consecutive U-Boot environment copies: the first valid copy,
/// as the boot script reads them. Variables without the prefix are not the slots' and stay out.
pub fn from_uboot_copies(two: &[u8]) -> Result<Env, String> {
    let size = UBOOT_ENV_SIZE as usize;
    if two.len() != 2 * size {
        return Err(format!(
            "expected two U-Boot environment copies of {size} bytes"
        ));
    }
    let u = UbootEnv::decode(&two[..size], Form::Plain)
        .or_else(|_| UbootEnv::decode(&two[size..], Form::Plain))
        .map_err(|e| {
            format!("no valid copy of the U-Boot A/B environment ({e}): rebuild the boot partition")
        })?;
    let mut env = Env::default();
    for (k, v) in &u.vars {
        if let Some(k) = k.strip_prefix(UBOOT_PREFIX) {
            env.set(k, v).map_err(|e| e.to_string())?;
        }
    }
    Ok(env)
}

/// Offset of the one sector-aligned GRUB environment block inside the environment partition
/// (the `grubenv` file of its FAT: 1024 bytes in two contiguous sectors of a fresh FAT).
pub fn find_env(part: &[u8]) -> Result<u64, String> {
    let hits: Vec<usize> = (0..part.len().saturating_sub(BLOCK_LEN - 1))
        .step_by(SECTOR as usize)
        .filter(|&o| part[o..].starts_with(super::grubenv::HEADER.as_bytes()))
        .collect();
    match hits.as_slice() {
        [o] => Ok(*o as u64),
        [] => Err("the boot disk has no GRUB environment block in its first partition: rebuild it with tests/image/build-disk.sh".into()),
        _ => Err(format!("the boot disk's first partition holds {} environment blocks, expected one", hits.len())),
    }
}

/// Ask the kernel to drop cached pages so a read-back comes from the medium.
fn drop_cache(f: &File) {
    use std::os::fd::AsFd;
    let _ = nix::fcntl::posix_fadvise(
        f.as_fd(),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
}

/// Sequential writer into one slot area.
pub struct AreaWriter<'a> {
    file: &'a File,
    off: u64,
    room: u64,
    pos: u64,
}

impl AreaWriter<'_> {
    /// Append `chunk`.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), String> {
        if self.pos + chunk.len() as u64 > self.room {
            return Err(format!(
                "the image does not fit its slot area ({} bytes)",
                self.room
            ));
        }
        self.file
            .write_all_at(chunk, self.off + self.pos)
            .map_err(|e| io("writing the slot", e))?;
        self.pos += chunk.len() as u64;
        Ok(())
    }
    /// Zero the rest of the last sector (GRUB reads whole sectors) and return the sector count.
    pub fn finish(self) -> Result<u64, String> {
        let pad = (SECTOR - self.pos % SECTOR) % SECTOR;
        let mut w = self;
        w.write(&vec![0u8; pad as usize])?;
        Ok(w.pos / SECTOR)
    }
}

/// Write a fresh boot disk image file: MBR (boot code from `boot_img`), GRUB `core_img`
/// right after it, the environment partition `env_part` (a FAT with an empty `grubenv`)
/// with the environment `env_for` gives written into that file, and slot A.
#[allow(clippy::too_many_arguments)]
pub fn make_disk(
    out: &str,
    layout: &Layout,
    boot_img: &[u8],
    core_img: &[u8],
    env_part: &[u8],
    kernel: &[u8],
    rootfs: &[u8],
    env_for: impl FnOnce(u64, u64) -> Result<Env, String>,
) -> Result<(), String> {
    layout.check()?;
    if boot_img.len() != 512 {
        return Err(format!("boot.img is {} bytes, not 512", boot_img.len()));
    }
    if core_img.len() as u64 > ENV_OFFSET - SECTOR {
        return Err(format!(
            "core.img ({} bytes) does not fit before the first partition",
            core_img.len()
        ));
    }
    if kernel.len() as u64 > layout.kernel_len() || rootfs.len() as u64 > layout.rootfs_len() {
        return Err(format!(
            "kernel ({} bytes) or rootfs ({} bytes) larger than the slot areas ({} / {})",
            kernel.len(),
            rootfs.len(),
            layout.kernel_len(),
            layout.rootfs_len()
        ));
    }
    if env_part.len() as u64 > ENV_PART {
        return Err(format!(
            "the environment partition image is {} bytes, more than {ENV_PART}",
            env_part.len()
        ));
    }
    let env_at = ENV_OFFSET + find_env(env_part)?;
    let mut f = File::create(out).map_err(|e| io(out, e))?;
    f.set_len(layout.disk_len()).map_err(|e| io(out, e))?;
    let mut mbr = [0u8; 512];
    // boot.img's code and BPB area; the disk signature area and table are ours.
    mbr[..440].copy_from_slice(&boot_img[..440]);
    mbr[446..].copy_from_slice(&layout.partition_table());
    f.write_all_at(&mbr, 0).map_err(|e| io(out, e))?;
    f.write_all_at(core_img, SECTOR).map_err(|e| io(out, e))?;
    let sectors = |n: usize| (n as u64).div_ceil(SECTOR);
    let at = |name| layout.area(Slot::A, name).map_or(0, |(off, _)| off);
    f.write_all_at(kernel, at("kernel"))
        .map_err(|e| io(out, e))?;
    f.write_all_at(rootfs, at("rootfs"))
        .map_err(|e| io(out, e))?;
    let env = env_for(sectors(kernel.len()), sectors(rootfs.len()))?;
    let b = env.encode().map_err(|e| e.to_string())?;
    f.write_all_at(env_part, ENV_OFFSET)
        .map_err(|e| io(out, e))?;
    f.write_all_at(&b, env_at).map_err(|e| io(out, e))?;
    f.flush().map_err(|e| io(out, e))
}

/// The first environment of a release image (Buildroot's post-image, genimage puts it in
/// the boot partition): slot A holds `version` with images of these lengths. GRUB: the
/// 1024-byte `grubenv` file; U-Boot: both environment copies, the boot script goes after them.
/// `boot_script` (a compiled boot.scr) goes after the two copies.
pub fn env_image(
    layout: &Layout,
    env: &Env,
    boot_script: Option<&[u8]>,
) -> Result<Vec<u8>, String> {
    match (layout.bootloader, boot_script) {
        (Bootloader::Grub, None) => env.encode().map(|b| b.to_vec()).map_err(|e| e.to_string()),
        (Bootloader::Grub, Some(_)) => {
            Err("a GRUB board has no boot script in its environment partition".into())
        }
        (Bootloader::Uboot, script) => {
            let one = to_uboot(env)?;
            let mut out = [one.clone(), one].concat();
            if let Some(script) = script {
                let room = ENV_OFFSET + ENV_PART - UBOOT_SCRIPT_OFFSET;
                if script.len() as u64 > room {
                    return Err(format!(
                        "the boot script ({} bytes) is larger than its {room} bytes",
                        script.len()
                    ));
                }
                out.extend_from_slice(script);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            disk: "/dev/vdb".into(),
            slot_mib: 32,
            kernel_mib: 8,
            bootloader: Bootloader::Grub,
        }
    }

    #[test]
    fn layout_offsets_and_partition_table() {
        let l = layout();
        l.check().unwrap();
        assert_eq!(l.slot_offset(Slot::A), 2 << 20);
        assert_eq!(l.slot_offset(Slot::B), 34 << 20);
        assert_eq!(l.area(Slot::B, "rootfs"), Some((34 << 20, 24 << 20)));
        assert_eq!(l.area(Slot::B, "kernel"), Some((58 << 20, 8 << 20)));
        assert_eq!(l.disk_len(), 66 << 20);
        let t = l.partition_table();
        // p2 (slot A) starts at sector 4096, 65536 sectors long.
        assert_eq!(
            &t[16 + 8..16 + 16],
            &[0x00, 0x10, 0, 0, 0x00, 0x00, 0x01, 0]
        );
        assert_eq!((t[4], t[16 + 4], t[32 + 4]), (0x01, 0xda, 0xda));
        assert_eq!(&t[64..], &[0x55, 0xaa]);
        assert!(Layout {
            kernel_mib: 32,
            ..layout()
        }
        .check()
        .is_err());
    }

    #[test]
    fn grub_cfg_uses_the_layout_and_the_env_names() {
        let c = layout().grub_cfg();
        assert!(c.contains("initrd (hd0,msdos3)0+$B_RSEC"), "{c}");
        assert!(c.contains("linux (hd0,msdos2)49152+$A_KSEC"), "{c}");
        assert!(!c.contains("superusers") && !c.contains("root="));
        assert!(c.contains("save_env --file $envblk A_LEFT B_LEFT"));
        assert!(c.contains("set envblk=(hd0,msdos1)/grubenv"));
        // rcS arms the watchdog early on a trial boot.
        assert!(
            c.contains("appliance.slot=B appliance.trial=$B_TRIAL "),
            "{c}"
        );
        assert!(c.contains("appliance.slot=B"));
    }

    #[test]
    fn slot_write_env_and_read_back_on_an_image_file() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("disk.img");
        let l = Layout {
            disk: path.display().to_string(),
            slot_mib: 3,
            kernel_mib: 1,
            bootloader: Bootloader::Grub,
        };
        // A stand-in for the FAT: the empty block two sectors in.
        let mut part = vec![0u8; 8192];
        part[1024..2048].copy_from_slice(&super::super::grubenv::Env::default().encode().unwrap());
        make_disk(
            &l.disk,
            &l,
            &[0x90; 512],
            &[1; 4000],
            &part,
            b"kernel",
            b"rootfs!",
            |k, r| super::super::slots::initial_env("0.1.0", k, r).map_err(|e| e.to_string()),
        )
        .unwrap();
        let disk = Disk::open(l.clone()).unwrap();
        let env = disk.read_env().unwrap();
        assert_eq!(env.get("A_KSEC"), Some("1"));
        let mut w = disk.area_writer(Slot::B, "kernel").unwrap();
        w.write(b"new kernel").unwrap();
        assert_eq!(w.finish().unwrap(), 1);
        assert_eq!(
            disk.hash_area(Slot::B, "kernel", 10).unwrap(),
            super::super::bundle::sha256_hex(b"new kernel")
        );
        let mut w = disk.area_writer(Slot::B, "kernel").unwrap();
        assert!(w
            .write(&vec![0; (1 << 20) + 1])
            .unwrap_err()
            .contains("does not fit"));
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(&raw[510..512], &[0x55, 0xaa]);
        assert_eq!(&raw[512..516], &[1, 1, 1, 1]);
        assert!(raw[(ENV_OFFSET + 1024) as usize..]
            .starts_with(b"# GRUB Environment Block\nORDER=A B\n"));
        let mut two = part.clone();
        two[4096..5120].copy_from_slice(&part[1024..2048]);
        assert!(find_env(&two).unwrap_err().contains("2 environment blocks"));
        assert!(find_env(&[0; 4096]).unwrap_err().contains("build-disk.sh"));
    }

    #[test]
    fn release_grub_cfg_mounts_the_slot_partition_and_is_locked() {
        let c = layout().grub_cfg_for(Root::Partition("PARTUUID=51b10ad2-0"), true);
        assert!(c.contains(
            "set superusers=\"root\"\npassword_pbkdf2 root @SIP_LB_GRUB_PASSWORD_PBKDF2@\n"
        ));
        assert!(c.contains(
            "appliance.slot=B appliance.trial=$B_TRIAL root=PARTUUID=51b10ad2-03 rootfstype=squashfs ro rootwait"
        ));
        assert!(c.contains("linux (hd0,msdos3)49152+$B_KSEC"));
        assert!(!c.contains("initrd"), "{c}");
    }

    #[test]
    fn uboot_script_reads_counts_saves_and_boots_by_layout() {
        let c = layout().uboot_script("virtio 1", "/dev/vdb", "ttyAMA0");
        assert!(c.contains("setenv slot\nvirtio dev 1\n"));
        assert!(c.contains(
            "if virtio read ${kernel_addr_r} 0x800 0x20 && env import -c ${kernel_addr_r} 0x4000; then"
        ));
        assert!(c.contains("elif virtio read ${kernel_addr_r} 0x820 0x20 && env import -c"));
        assert!(
            c.contains("if test \"${BOOT_B_LEFT}\" = 1; then setenv BOOT_B_LEFT 0; setenv slot B")
        );
        let export = c.lines().find(|l| l.starts_with("env export")).unwrap();
        assert!(export.starts_with(
            "env export -cs 0x4000 ${kernel_addr_r} BOOT_ORDER BOOT_A_OK BOOT_A_LEFT"
        ));
        // U-Boot's default CONFIG_SYS_MAXARGS.
        assert!(export.split(' ').count() <= 16, "{export}");
        let w1 = c.find("virtio write ${kernel_addr_r} 0x800 0x20").unwrap();
        let w2 = c.find("virtio write ${kernel_addr_r} 0x820 0x20").unwrap();
        assert!(w1 < w2, "copy 1 is written first");
        // Slot B's kernel: 58 MiB = sector 0x1d000, 8 MiB = 0x4000 sectors.
        assert!(
            c.contains("virtio read ${kernel_addr_r} 0x1d000 0x4000"),
            "{c}"
        );
        assert!(c.contains(
            "appliance.slot=A appliance.trial=${BOOT_A_TRIAL} root=/dev/vdb2 rootfstype=squashfs"
        ));
        assert!(
            c.find("booti ${").unwrap() > w2,
            "the count is saved before booting"
        );
    }

    #[test]
    fn slot_vars_cover_everything_the_slot_machine_writes() {
        use super::super::slots;
        let mut env = slots::initial_env("1.0.0", 10, 20).unwrap();
        env.set("EXTRA_ARGS", "quiet").unwrap();
        slots::begin_install(&mut env, Slot::B).unwrap();
        slots::finish_install(&mut env, Slot::B, "1.1.0", 11, 21).unwrap();
        slots::grub_pick(&mut env).unwrap();
        let _ = slots::after_boot(&mut env, Slot::B);
        let _ = slots::mark_good(&mut env, Slot::B);
        let _ = slots::rollback(&mut env, Slot::B);
        for (k, _) in env.vars() {
            assert!(
                SLOT_VARS.contains(&k.as_str()),
                "{k} missing from SLOT_VARS"
            );
        }
    }

    #[test]
    fn uboot_env_on_disk_round_trips_and_survives_a_torn_first_copy() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("disk.img");
        let l = Layout {
            disk: path.display().to_string(),
            slot_mib: 3,
            kernel_mib: 1,
            bootloader: Bootloader::Uboot,
        };
        let env = super::super::slots::initial_env("0.1.0", 3, 4).unwrap();
        let img = env_image(&l, &env, None).unwrap();
        assert_eq!(img.len() as u64, 2 * UBOOT_ENV_SIZE);
        let with = env_image(&l, &env, Some(b"scr")).unwrap();
        assert_eq!(
            &with[UBOOT_SCRIPT_OFFSET as usize - ENV_OFFSET as usize..],
            b"scr"
        );
        let slot = l.slot_image(b"kern", b"root").unwrap();
        assert_eq!(
            (slot.len(), &slot[..4], &slot[2 << 20..(2 << 20) + 4]),
            (3 << 20, &b"root"[..], &b"kern"[..])
        );
        assert!(l
            .slot_image(&[0; (1 << 20) + 1], b"r")
            .unwrap_err()
            .contains("kernel"));
        let mut raw = vec![0u8; l.disk_len() as usize];
        raw[ENV_OFFSET as usize..][..img.len()].copy_from_slice(&img);
        std::fs::write(&path, &raw).unwrap();
        let disk = Disk::open(l.clone()).unwrap();
        let mut got = disk.read_env().unwrap();
        assert_eq!(got, env);
        let u = UbootEnv::decode(&img[..UBOOT_ENV_SIZE as usize], Form::Plain).unwrap();
        assert_eq!(u.get("BOOT_ORDER"), Some("A B"));
        assert_eq!(u.get("BOOT_A_KSEC"), Some("3"));
        got.set("NOTE", "changed").unwrap();
        disk.write_env(&got).unwrap();
        // Tear copy 1: copy 2 still carries the change.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xff; 100], ENV_OFFSET + 10).unwrap();
        assert_eq!(disk.read_env().unwrap().get("NOTE"), Some("changed"));
        f.write_all_at(&[0xff; 100], ENV_OFFSET + UBOOT_ENV_SIZE + 10)
            .unwrap();
        assert!(disk.read_env().unwrap_err().contains("no valid copy"));
    }

    /// The bootloader scripts the release images ship are this generator's output: regenerate
    /// them with the command in their first lines when the layout or the rule changes.
    #[test]
    fn committed_release_boot_scripts_match_the_generator() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let board = |b: &str| {
            let path = format!("{root}/board/{b}/rootfs-overlay/etc/appliance/board.toml");
            crate::config::board::Board::load(&path)
                .unwrap()
                .firmware
                .unwrap()
        };
        let read = |f: &str| std::fs::read_to_string(format!("{root}/board/{f}")).unwrap();
        for (b, prefix) in [
            ("pcengines-apu2", "PARTUUID=51b10ad2-0"),
            ("qemu-x86_64", "/dev/vdb"),
        ] {
            let want = format!(
                "# appliance firmware grub-cfg --board-file board/{b}/rootfs-overlay/etc/appliance/board.toml --root {prefix} --locked\n{}",
                board(b).grub_cfg_for(Root::Partition(prefix), true)
            );
            assert_eq!(
                read(&format!("{b}/grub.cfg")),
                want,
                "board/{b}/grub.cfg is stale"
            );
        }
        let b = "qemu-aarch64-virt";
        let l = board(b);
        assert_eq!(l.bootloader, Bootloader::Uboot);
        let want = format!(
            "# appliance firmware uboot-script --board-file board/{b}/rootfs-overlay/etc/appliance/board.toml --uboot-disk virtio:1 --root /dev/vdb --console ttyAMA0\n{}",
            l.uboot_script("virtio 1", "/dev/vdb", "ttyAMA0")
        );
        assert_eq!(
            read(&format!("{b}/boot.cmd")),
            want,
            "board/{b}/boot.cmd is stale"
        );
    }
}
