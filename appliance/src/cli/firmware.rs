//! `appliance firmware ...`: A/B slots on the box (status, install, rollback, mark-good) and
//! bundles and keys on a build host (verify, keygen, bundle, grub-cfg, make-disk).

use std::io::{BufReader, Write};
use std::process::ExitCode;

use argh::FromArgs;

use crate::config::board::{Board, BOARD_PATH};
use crate::firmware::bundle::{self, BundleError, Policy, Verified};
use crate::firmware::disk::{self, Disk, Layout};
use crate::firmware::keys::{self, Keyring, KEYRING_PATH};
use crate::firmware::slots::{self, booted_slot, Slot, Slots};
use crate::firmware::version::Version;
use crate::firmware::{fetch, install};

#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "firmware",
    help_triggers("-h", "--help", "help"),
    note = "On the box: status, install, rollback, mark-good (they take --board-file PATH, --disk PATH
and --booted A|B to work on a disk image from a host). On a build host: verify, keygen,
bundle, grub-cfg, make-disk. Every command has its own help: appliance firmware <command> --help."
)]
/// A/B firmware slots and signed bundles.
pub struct Args {
    #[argh(subcommand)]
    /// the firmware command
    pub command: Sub,
}

/// A `firmware` sub-command.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand)]
pub enum Sub {
    /// `firmware status`
    Status(Status),
    /// `firmware install`
    Install(Install),
    /// `firmware rollback`
    Rollback(Rollback),
    /// `firmware mark-good`
    MarkGood(MarkGood),
    /// `firmware verify`
    Verify(VerifyArgs),
    /// `firmware keygen`
    Keygen(Keygen),
    /// `firmware bundle`
    Bundle(BundleArgs),
    /// `firmware activate`
    Activate(Activate),
    /// `firmware grub-cfg`
    GrubCfg(super::firmware_image::GrubCfg),
    /// `firmware uboot-script`
    UbootScript(super::firmware_image::UbootScript),
    /// `firmware env-image`
    EnvImage(super::firmware_image::EnvImage),
    /// `firmware slot-image`
    SlotImage(super::firmware_image::SlotImage),
    /// `firmware make-disk`
    MakeDisk(MakeDisk),
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "status", help_triggers("-h", "--help", "help"))]
/// both slots: versions, states, which one booted, the last event.
pub struct Status {
    /// board facts file with the [firmware] layout (default /etc/appliance/board.toml)
    #[argh(option)]
    pub board_file: Option<String>,
    /// boot disk device or image (default: the board's)
    #[argh(option)]
    pub disk: Option<String>,
    /// the slot that booted, A or B (default: appliance.slot= on the kernel command line)
    #[argh(option)]
    pub booted: Option<String>,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "install",
    help_triggers("-h", "--help", "help"),
    note = "The whole bundle is verified (signature, board, version, every image hash) before
anything is written; then it is read a second time, written into the other slot, read back
and compared, and only then does that slot boot next, on trial. A URL is downloaded twice
(never held in memory whole): connect 10 s, stall 30 s, 30 min in all, and no larger than
the slots can hold. The trust is the bundle's signature, over http as over https."
)]
/// verify a bundle (a file, a raw device or an http(s) URL), write the other slot, read it back, boot it next on trial.
pub struct Install {
    /// the bundle: a file, a raw device, or http://HOST[:PORT]/PATH or https://... on a management host
    #[argh(positional)]
    pub source: String,
    /// PEM file of CA certificates trusted for an https URL (default /etc/appliance/firmware-ca.pem if present, else the built-in Mozilla roots)
    #[argh(option)]
    pub ca_file: Option<String>,
    /// install an older version than the running one
    #[argh(switch)]
    pub force: bool,
    /// stage it: write and verify the slot but keep booting the running one until `appliance firmware activate`
    #[argh(switch)]
    pub no_activate: bool,
    /// trusted keys (default /etc/appliance/firmware-keys)
    #[argh(option)]
    pub keyring: Option<String>,
    /// board facts file with the [firmware] layout (default /etc/appliance/board.toml)
    #[argh(option)]
    pub board_file: Option<String>,
    /// boot disk device or image (default: the board's)
    #[argh(option)]
    pub disk: Option<String>,
    /// the slot that booted, A or B (default: appliance.slot= on the kernel command line)
    #[argh(option)]
    pub booted: Option<String>,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "activate", help_triggers("-h", "--help", "help"))]
/// boot the staged slot (install --no-activate) next, on trial.
pub struct Activate {
    /// board facts file with the [firmware] layout (default /etc/appliance/board.toml)
    #[argh(option)]
    pub board_file: Option<String>,
    /// boot disk device or image (default: the board's)
    #[argh(option)]
    pub disk: Option<String>,
    /// the slot that booted, A or B (default: appliance.slot= on the kernel command line)
    #[argh(option)]
    pub booted: Option<String>,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "rollback", help_triggers("-h", "--help", "help"))]
/// boot the other (good) slot next.
pub struct Rollback {
    /// board facts file with the [firmware] layout (default /etc/appliance/board.toml)
    #[argh(option)]
    pub board_file: Option<String>,
    /// boot disk device or image (default: the board's)
    #[argh(option)]
    pub disk: Option<String>,
    /// the slot that booted, A or B (default: appliance.slot= on the kernel command line)
    #[argh(option)]
    pub booted: Option<String>,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "mark-good", help_triggers("-h", "--help", "help"))]
/// the running slot is healthy: keep booting it (normally the daemon does this).
pub struct MarkGood {
    /// board facts file with the [firmware] layout (default /etc/appliance/board.toml)
    #[argh(option)]
    pub board_file: Option<String>,
    /// boot disk device or image (default: the board's)
    #[argh(option)]
    pub disk: Option<String>,
    /// the slot that booted, A or B (default: appliance.slot= on the kernel command line)
    #[argh(option)]
    pub booted: Option<String>,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "verify", help_triggers("-h", "--help", "help"))]
/// check a bundle (signature, board, version, hashes); writes nothing.
pub struct VerifyArgs {
    /// the bundle file
    #[argh(positional)]
    pub file: String,
    /// accept an older version than the running one
    #[argh(switch)]
    pub force: bool,
    /// trusted keys (default /etc/appliance/firmware-keys)
    #[argh(option)]
    pub keyring: Option<String>,
    /// board name the bundle must be for (default: this box's, from board.toml)
    #[argh(option)]
    pub board: Option<String>,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "keygen", help_triggers("-h", "--help", "help"))]
/// write NAME.key (secret, mode 0600) and NAME.pub (a keyring line).
pub struct Keygen {
    /// file name stem of the key pair
    #[argh(positional)]
    pub name: String,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "bundle",
    help_triggers("-h", "--help", "help"),
    note = "Images are NAME=PATH arguments: kernel=bzImage rootfs=initramfs.cpio."
)]
/// build a signed bundle (on a build host).
pub struct BundleArgs {
    /// secret key file from `appliance firmware keygen`
    #[argh(option)]
    pub key: Option<String>,
    /// build an unsigned bundle (tests of the refusal only)
    #[argh(switch)]
    pub unsigned: bool,
    /// firmware version X.Y.Z
    #[argh(option)]
    pub version: String,
    /// board name the images are for (board.toml name)
    #[argh(option)]
    pub board: String,
    /// output file
    #[argh(option, short = 'o')]
    pub out: String,
    /// free text for people (build host, date)
    #[argh(option, default = "String::new()")]
    pub description: String,
    /// images as NAME=PATH
    #[argh(positional)]
    pub images: Vec<String>,
}

#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "make-disk",
    help_triggers("-h", "--help", "help"),
    note = "Slot A's images are kernel=PATH rootfs=PATH arguments."
)]
/// lay out a fresh boot disk image with slot A filled (on a build host).
pub struct MakeDisk {
    /// output disk image
    #[argh(option, short = 'o')]
    pub out: String,
    /// GRUB i386-pc boot.img
    #[argh(option)]
    pub boot_img: String,
    /// GRUB core.img from grub-mkimage
    #[argh(option)]
    pub core_img: String,
    /// a FAT image holding an empty grubenv
    #[argh(option)]
    pub env_part: String,
    /// slot A's version (default: this binary's)
    #[argh(option)]
    pub version: Option<String>,
    /// extra kernel command line arguments
    #[argh(option, default = "String::new()")]
    pub append: String,
    /// board facts file with the [firmware] layout (default /etc/appliance/board.toml)
    #[argh(option)]
    pub board_file: Option<String>,
    /// kernel=PATH rootfs=PATH
    #[argh(positional)]
    pub images: Vec<String>,
}

/// Run `appliance firmware ...`.
pub fn run(a: Args) -> ExitCode {
    let (name, r) = match a.command {
        Sub::Status(a) => ("status", status_cmd(a)),
        Sub::Install(a) => ("install", install_cmd(a)),
        Sub::Rollback(a) => ("rollback", rollback_cmd(a)),
        Sub::MarkGood(a) => ("mark-good", mark_good_cmd(a)),
        Sub::Verify(a) => ("verify", verify_cmd(a)),
        Sub::Keygen(a) => ("keygen", keygen_cmd(a)),
        Sub::Bundle(a) => ("bundle", bundle_cmd(a)),
        Sub::Activate(a) => ("activate", activate_cmd(a)),
        Sub::GrubCfg(a) => ("grub-cfg", super::firmware_image::grub_cfg_cmd(a)),
        Sub::UbootScript(a) => ("uboot-script", super::firmware_image::uboot_script_cmd(a)),
        Sub::EnvImage(a) => ("env-image", super::firmware_image::env_image_cmd(a)),
        Sub::SlotImage(a) => ("slot-image", super::firmware_image::slot_image_cmd(a)),
        Sub::MakeDisk(a) => ("make-disk", make_disk_cmd(a)),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("appliance firmware {name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Tell a running daemon that the slots changed, so its log records the event (it reads
/// the reason from the disk). Best effort: the command works without a daemon.
fn tell_daemon() {
    let req = crate::control::proto::Request::Firmware {
        action: crate::control::proto::FirmwareAction::Changed,
    };
    let mut c = crate::control::client::Client::new(crate::control::proto::DEFAULT_SOCKET);
    if let Err(e) = c.call(&req) {
        tracing::debug!(error = %e, "daemon not told of the firmware change");
    }
}

/// Board name, keyring and running version the checks use (options override the box's files).
pub struct Context {
    /// Board name (board.toml `name`).
    pub board: String,
    /// Keyring path.
    pub keyring_path: String,
    /// Loaded keyring.
    pub keyring: Keyring,
    /// Running version.
    pub running: Version,
}

impl Context {
    /// From `--keyring` / `--board`, else the box's files.
    pub fn new(keyring: Option<String>, board: Option<String>) -> Result<Context, String> {
        let keyring_path = keyring.unwrap_or_else(|| KEYRING_PATH.into());
        let board = match board {
            Some(b) => b,
            None => Board::load(BOARD_PATH).map_err(|e| e.to_string())?.name,
        };
        let keyring = Keyring::load(std::path::Path::new(&keyring_path))?;
        let running = crate::firmware::running_version();
        Ok(Context {
            board,
            keyring_path,
            keyring,
            running,
        })
    }

    /// The policy for these facts.
    pub fn policy(&self, force: bool) -> Policy<'_> {
        Policy {
            keyring: &self.keyring,
            keyring_path: &self.keyring_path,
            board: &self.board,
            running: self.running,
            force,
        }
    }
}

/// Verify a bundle file (or raw device) as a stream: header, signature, manifest, then every
/// image hash.
pub fn verify_file(path: &str, policy: &Policy<'_>) -> Result<Verified, BundleError> {
    let f = std::fs::File::open(path).map_err(|e| BundleError::Io(format!("{path}: {e}")))?;
    let mut r = BufReader::with_capacity(64 * 1024, f);
    bundle::verify_stream_opts(&mut r, policy, !install::is_device(path))
}

fn verify_cmd(a: VerifyArgs) -> Result<(), String> {
    let ctx = Context::new(a.keyring, a.board)?;
    let (file, force) = (a.file, a.force);
    let v = verify_file(&file, &ctx.policy(force)).map_err(|e| e.to_string())?;
    println!(
        "{file}: good bundle, version {} for '{}', signed by '{}'",
        v.manifest.version, v.manifest.compatible, v.signer
    );
    for i in &v.manifest.images {
        println!("  {:<7} {:>10} bytes  sha256 {}", i.name, i.size, i.sha256);
    }
    Ok(())
}

fn keygen_cmd(a: Keygen) -> Result<(), String> {
    let name = a.name;
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| format!("no randomness from the kernel: {e}"))?;
    let label = std::path::Path::new(&name)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.clone());
    let (secret, public) = keys::key_files(&seed, &label);
    let kpath = format!("{name}.key");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode_0600()
        .open(&kpath)
        .map_err(|e| format!("{kpath}: {e} (an existing key is never overwritten)"))?;
    f.write_all(secret.as_bytes())
        .map_err(|e| format!("{kpath}: {e}"))?;
    let ppath = format!("{name}.pub");
    std::fs::write(&ppath, &public).map_err(|e| format!("{ppath}: {e}"))?;
    println!("secret key: {kpath} (keep it off the boxes)\npublic key: {ppath} (append it to {KEYRING_PATH} in the image)");
    Ok(())
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}
impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

fn bundle_cmd(a: BundleArgs) -> Result<(), String> {
    let (unsigned, key, version, board, out, description) =
        (a.unsigned, a.key, a.version, a.board, a.out, a.description);
    let key = match (key, unsigned) {
        (Some(k), false) => {
            let text = std::fs::read_to_string(&k).map_err(|e| format!("{k}: {e}"))?;
            Some(keys::parse_signing_key(&text, &k)?)
        }
        (None, true) => None,
        _ => return Err("give exactly one of --key FILE and --unsigned".into()),
    };
    let mut images = Vec::new();
    for a in &a.images {
        let (name, path) = a
            .split_once('=')
            .ok_or_else(|| format!("'{a}' is not NAME=PATH (kernel=... rootfs=...)"))?;
        let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
        images.push((name.to_owned(), bytes));
    }
    let refs: Vec<(&str, &[u8])> = images
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let b = bundle::build(&version, &board, &description, &refs, key.as_ref())?;
    std::fs::write(&out, &b).map_err(|e| format!("{out}: {e}"))?;
    println!(
        "{out}: {} bytes, version {version} for '{board}', {}",
        b.len(),
        if key.is_some() { "signed" } else { "UNSIGNED" }
    );
    Ok(())
}

/// The board's firmware layout (`--board-file`, else the box's), with `--disk` overriding the device.
pub(super) fn layout_from(
    board_file: Option<String>,
    disk: Option<String>,
) -> Result<(Board, Layout), String> {
    let path = board_file.unwrap_or_else(|| BOARD_PATH.into());
    let board = Board::load(&path).map_err(|e| e.to_string())?;
    let mut layout = board.firmware.clone().ok_or_else(|| {
        format!("{path} has no [firmware] section: this board has no A/B firmware slots")
    })?;
    if let Some(d) = disk {
        layout.disk = d;
    }
    layout.check()?;
    Ok((board, layout))
}

/// The slot the running kernel was booted from (`appliance.slot=` from GRUB), or `--booted`.
fn booted_from(booted: Option<String>) -> Result<Slot, String> {
    if let Some(b) = booted {
        return Slot::parse(&b).ok_or_else(|| format!("--booted must be A or B, not '{b}'"));
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    booted_slot(&cmdline).ok_or_else(|| {
        "the kernel command line has no appliance.slot=A|B: this box was not started by the A/B bootloader".into()
    })
}

/// Status text of both slots.
pub fn status_text(slots: &Slots, booted: Option<Slot>) -> String {
    let mut out = String::new();
    for s in [Slot::A, Slot::B] {
        let i = slots.get(s);
        let mut tags = Vec::new();
        if booted == Some(s) {
            tags.push("booted");
        }
        if slots.primary == s {
            tags.push("boots next");
        }
        let left = format!("{} boot attempt(s) left", i.left);
        if i.ok {
            tags.push(&left);
        }
        out.push_str(&format!(
            "slot {s}: {:<8} {:<32} {}\n",
            if i.version.is_empty() {
                "-"
            } else {
                &i.version
            },
            i.state(),
            tags.join(", ")
        ));
    }
    out.push_str(&format!(
        "running: {}\n",
        crate::firmware::running_version()
    ));
    if !slots.note.is_empty() {
        out.push_str(&format!("last event: {}\n", slots.note));
    }
    out
}

fn status_cmd(a: Status) -> Result<(), String> {
    let (_, layout) = layout_from(a.board_file, a.disk)?;
    let booted = booted_from(a.booted).ok();
    let disk = Disk::open(layout)?;
    let env = disk.read_env()?;
    print!("{}", status_text(&Slots::from_env(&env), booted));
    Ok(())
}

fn lock() -> Result<crate::store::lock::StoreLock, String> {
    crate::firmware::change_lock()
}

fn install_cmd(a: Install) -> Result<(), String> {
    let (board, layout) = layout_from(a.board_file, a.disk)?;
    let booted = booted_from(a.booted)?;
    let keyring_path = a.keyring.unwrap_or_else(|| KEYRING_PATH.into());
    let keyring = Keyring::load(std::path::Path::new(&keyring_path))?;
    let target = install::Target {
        layout,
        booted,
        policy: Policy {
            keyring: &keyring,
            keyring_path: &keyring_path,
            board: &board.name,
            running: crate::firmware::running_version(),
            force: a.force,
        },
        fetch: fetch::Options {
            ca_file: a.ca_file,
            ..fetch::Options::default()
        },
        activate: !a.no_activate,
    };
    let src = install::Source::parse(&a.source);
    let done = install::install(&src, &target, &mut |p| match p {
        install::Progress::Step(s) => eprintln!("{s}"),
        install::Progress::Bytes { done, total } => eprintln!(
            "  {:>3}%  {done} of {total} bytes",
            done * 100 / (*total).max(1)
        ),
    })?;
    tell_daemon();
    if a.no_activate {
        println!(
            "staged {} in slot {} in {:.1} s ({} bytes, read back and verified); slot {booted} keeps booting until `appliance firmware activate`",
            done.version, done.slot, done.secs, done.bytes
        );
    } else {
        println!(
            "installed {} into slot {} in {:.1} s ({} bytes, read back and verified); it boots next, on trial: reboot to run it",
            done.version, done.slot, done.secs, done.bytes
        );
    }
    Ok(())
}

fn activate_cmd(a: Activate) -> Result<(), String> {
    let (_, layout) = layout_from(a.board_file, a.disk)?;
    let booted = booted_from(a.booted)?;
    let _lock = lock()?;
    let disk = Disk::open(layout)?;
    let mut env = disk.read_env()?;
    let to = slots::activate(&mut env, booted).map_err(|e| e.to_string())?;
    disk.write_env(&env)?;
    let note = Slots::from_env(&env).note;
    tracing::info!(slot = %to, "staged firmware activated");
    tell_daemon();
    println!("{note}: reboot to run it");
    Ok(())
}

fn rollback_cmd(a: Rollback) -> Result<(), String> {
    let (_, layout) = layout_from(a.board_file, a.disk)?;
    let booted = booted_from(a.booted)?;
    let _lock = lock()?;
    let disk = Disk::open(layout)?;
    let mut env = disk.read_env()?;
    let to = slots::rollback(&mut env, booted).map_err(|e| e.to_string())?;
    disk.write_env(&env)?;
    let note = Slots::from_env(&env).note;
    tracing::info!(slot = %to, "firmware rollback requested");
    tell_daemon();
    println!("{note}: reboot to run it");
    Ok(())
}

fn mark_good_cmd(a: MarkGood) -> Result<(), String> {
    let (_, layout) = layout_from(a.board_file, a.disk)?;
    let booted = booted_from(a.booted)?;
    let _lock = lock()?;
    let disk = Disk::open(layout)?;
    let mut env = disk.read_env()?;
    if let Some(why) = slots::after_boot(&mut env, booted).map_err(|e| e.to_string())? {
        tracing::warn!(reason = %why, "firmware rollback by the bootloader");
        eprintln!("{why}");
    }
    let changed = slots::mark_good(&mut env, booted).map_err(|e| e.to_string())?;
    disk.write_env(&env)?;
    println!(
        "slot {booted} {}",
        if changed {
            "marked good"
        } else {
            "was already good"
        }
    );
    Ok(())
}

fn make_disk_cmd(a: MakeDisk) -> Result<(), String> {
    let (_, layout) = layout_from(a.board_file, None)?;
    let (out, boot, core, env_part, append) = (a.out, a.boot_img, a.core_img, a.env_part, a.append);
    let version = a.version.unwrap_or_else(|| crate::VERSION.into());
    let read = |p: &str| std::fs::read(p).map_err(|e| format!("{p}: {e}"));
    let mut kernel = None;
    let mut rootfs = None;
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
        .ok_or("make-disk needs kernel=PATH and rootfs=PATH")?;
    disk::make_disk(
        &out,
        &layout,
        &read(&boot)?,
        &read(&core)?,
        &read(&env_part)?,
        &kernel,
        &rootfs,
        |k, r| {
            let mut env = slots::initial_env(&version, k, r).map_err(|e| e.to_string())?;
            env.set("EXTRA_ARGS", &append).map_err(|e| e.to_string())?;
            Ok(env)
        },
    )?;
    println!("{out}: {} bytes, slot A = {version}", layout.disk_len());
    Ok(())
}
