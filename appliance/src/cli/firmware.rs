//! `appliance firmware ...`: build and verify bundles (host or box), and keys.

use std::io::{BufReader, Write};
use std::process::ExitCode;

use crate::config::board::{Board, BOARD_PATH};
use crate::firmware::bundle::{self, BundleError, Policy, Verified};
use crate::firmware::disk::{self, Disk, Layout};
use crate::firmware::keys::{self, Keyring, KEYRING_PATH};
use crate::firmware::slots::{self, booted_slot, Slot, Slots};
use crate::firmware::version::Version;

/// The value of `--NAME VALUE` in `args` (both removed from it).
pub(super) fn take_opt(args: &mut Vec<String>, name: &str) -> Result<Option<String>, String> {
    let Some(i) = args.iter().position(|a| a == name) else {
        return Ok(None);
    };
    if i + 1 >= args.len() {
        return Err(format!("{name} needs a value"));
    }
    let v = args.remove(i + 1);
    args.remove(i);
    Ok(Some(v))
}

const USAGE: &str = "usage: appliance firmware <command>

on the box (options: --board-file PATH, --disk PATH, --booted A|B for a disk image on a host):
  status                       both slots: versions, states, which one booted, last event
  install FILE [--force] [--no-activate]
                               verify, write the other slot, read back, boot it next on trial
                               (--no-activate: stage it; the running slot keeps booting)
  activate                     boot the staged slot next, on trial
  rollback                     boot the other (good) slot next
  mark-good                    the running slot is healthy: keep booting it
  verify FILE [--force] [--keyring PATH] [--board NAME]
                               check a bundle (signature, board, version, hashes); writes nothing

on a build host:
  grub-cfg [--board-file PATH] [--root DEVPREFIX --locked]
                               grub.cfg for the board's boot disk layout (--root: release
                               images mount the slot's squashfs, e.g. /dev/vdb, PARTUUID=51b10ad2-0)
  uboot-script --uboot-disk IF:N --root DEVPREFIX --console TTY [--board-file PATH]
                               the U-Boot A/B boot script (mkimage -T script source)
  env-image -o OUT --version V kernel=PATH rootfs=PATH [--boot-script boot.scr] [--append ARGS]
            [--board-file PATH]
                               first environment of a release image: grubenv file (GRUB) or
                               both U-Boot environment copies (U-Boot), slot A = these images
  slot-image -o OUT kernel=PATH rootfs=PATH [--board-file PATH]
                               one slot's raw image (rootfs at 0, kernel at the end)
  make-disk -o OUT --boot-img F --core-img F --env-part F kernel=PATH rootfs=PATH [--version V]
            [--append ARGS] [--board-file PATH]
                               lay out a fresh boot disk image with slot A filled
  keygen NAME                  write NAME.key (secret) and NAME.pub (a keyring line)
  bundle --key FILE|--unsigned --version X.Y.Z --board NAME -o OUT [--description TEXT]
         kernel=PATH [rootfs=PATH]
                               build a signed bundle
";

/// `appliance firmware ...`: its words go to the firmware tool's own parser (see its usage).
#[derive(argh::FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "firmware", help_triggers("-h", "--help"))]
/// A/B firmware slots and signed bundles: status, install FILE, activate, rollback, mark-good, verify, keygen, bundle, grub-cfg, make-disk (`appliance firmware help` lists their options).
pub struct Args {
    /// the firmware command and its options.
    #[argh(positional, greedy)]
    pub words: Vec<String>,
}

/// Run `appliance firmware ...`.
pub fn run(a: Args) -> ExitCode {
    cli(&a.words)
}

/// Entry point for `appliance firmware ...`.
pub fn cli(args: &[String]) -> ExitCode {
    let mut args = args.to_vec();
    let Some(cmd) = (!args.is_empty()).then(|| args.remove(0)) else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let r = match cmd.as_str() {
        "verify" => verify_cmd(args),
        "status" => status_cmd(args),
        "install" => install_cmd(args),
        "rollback" => rollback_cmd(args),
        "activate" => activate_cmd(args),
        "mark-good" => mark_good_cmd(args),
        "grub-cfg" => super::firmware_image::grub_cfg_cmd(args),
        "uboot-script" => super::firmware_image::uboot_script_cmd(args),
        "env-image" => super::firmware_image::env_image_cmd(args),
        "slot-image" => super::firmware_image::slot_image_cmd(args),
        "make-disk" => make_disk_cmd(args),
        "keygen" => keygen_cmd(args),
        "bundle" => bundle_cmd(args),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => Err(format!("unknown firmware command '{other}'\n\n{USAGE}")),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("appliance firmware {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(super) fn take_flag(args: &mut Vec<String>, name: &str) -> bool {
    match args.iter().position(|a| a == name) {
        Some(i) => {
            args.remove(i);
            true
        }
        None => false,
    }
}

pub(super) fn no_more(args: &[String]) -> Result<(), String> {
    match args.first() {
        Some(a) => Err(format!("unexpected argument '{a}'")),
        None => Ok(()),
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
    /// From `--keyring` / `--board` in `args` (removed), else the box's files.
    pub fn from_args(args: &mut Vec<String>) -> Result<Context, String> {
        let keyring_path = take_opt(args, "--keyring")?.unwrap_or_else(|| KEYRING_PATH.into());
        let board = match take_opt(args, "--board")? {
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

/// True for a raw device (a USB stick written with dd): it ends on a sector boundary, so
/// its tail after the signed length is not part of the bundle.
fn is_device(path: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

/// Verify a bundle file (or raw device) as a stream: header, signature, manifest, then every
/// image hash.
pub fn verify_file(path: &str, policy: &Policy<'_>) -> Result<Verified, BundleError> {
    let f = std::fs::File::open(path).map_err(|e| BundleError::Io(format!("{path}: {e}")))?;
    let mut r = BufReader::with_capacity(64 * 1024, f);
    bundle::verify_stream_opts(&mut r, policy, !is_device(path))
}

fn verify_cmd(mut args: Vec<String>) -> Result<(), String> {
    let force = take_flag(&mut args, "--force");
    let ctx = Context::from_args(&mut args)?;
    let file = (!args.is_empty())
        .then(|| args.remove(0))
        .ok_or("verify needs a bundle FILE")?;
    no_more(&args)?;
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

fn keygen_cmd(mut args: Vec<String>) -> Result<(), String> {
    let name = (!args.is_empty())
        .then(|| args.remove(0))
        .ok_or("keygen needs a NAME")?;
    no_more(&args)?;
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

fn bundle_cmd(mut args: Vec<String>) -> Result<(), String> {
    let unsigned = take_flag(&mut args, "--unsigned");
    let key = take_opt(&mut args, "--key")?;
    let version = take_opt(&mut args, "--version")?.ok_or("bundle needs --version X.Y.Z")?;
    let board =
        take_opt(&mut args, "--board")?.ok_or("bundle needs --board NAME (board.toml name)")?;
    let out = take_opt(&mut args, "-o")?.ok_or("bundle needs -o OUT")?;
    let description = take_opt(&mut args, "--description")?.unwrap_or_default();
    let key = match (key, unsigned) {
        (Some(k), false) => {
            let text = std::fs::read_to_string(&k).map_err(|e| format!("{k}: {e}"))?;
            Some(keys::parse_signing_key(&text, &k)?)
        }
        (None, true) => None,
        _ => return Err("give exactly one of --key FILE and --unsigned".into()),
    };
    let mut images = Vec::new();
    for a in &args {
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
pub(super) fn layout_from(args: &mut Vec<String>) -> Result<(Board, Layout), String> {
    let path = take_opt(args, "--board-file")?.unwrap_or_else(|| BOARD_PATH.into());
    let board = Board::load(&path).map_err(|e| e.to_string())?;
    let mut layout = board.firmware.clone().ok_or_else(|| {
        format!("{path} has no [firmware] section: this board has no A/B firmware slots")
    })?;
    if let Some(d) = take_opt(args, "--disk")? {
        layout.disk = d;
    }
    layout.check()?;
    Ok((board, layout))
}

/// The slot the running kernel was booted from (`appliance.slot=` from GRUB), or `--booted`.
fn booted_from(args: &mut Vec<String>) -> Result<Slot, String> {
    if let Some(b) = take_opt(args, "--booted")? {
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

fn status_cmd(mut args: Vec<String>) -> Result<(), String> {
    let (_, layout) = layout_from(&mut args)?;
    let booted = booted_from(&mut args).ok();
    no_more(&args)?;
    let disk = Disk::open(layout)?;
    let env = disk.read_env()?;
    print!("{}", status_text(&Slots::from_env(&env), booted));
    Ok(())
}

fn lock() -> Result<crate::store::lock::StoreLock, String> {
    crate::firmware::change_lock()
}

fn install_cmd(mut args: Vec<String>) -> Result<(), String> {
    let force = take_flag(&mut args, "--force");
    let no_activate = take_flag(&mut args, "--no-activate");
    let (board, layout) = layout_from(&mut args)?;
    let booted = booted_from(&mut args)?;
    let keyring_path = take_opt(&mut args, "--keyring")?.unwrap_or_else(|| KEYRING_PATH.into());
    let file = (!args.is_empty())
        .then(|| args.remove(0))
        .ok_or("install needs a bundle FILE")?;
    no_more(&args)?;
    let keyring = Keyring::load(std::path::Path::new(&keyring_path))?;
    let running = crate::firmware::running_version();
    let policy = Policy {
        keyring: &keyring,
        keyring_path: &keyring_path,
        board: &board.name,
        running,
        force,
    };
    let _lock = lock()?;
    let t0 = std::time::Instant::now();
    // Pass 1: the whole bundle is verified before anything is written.
    eprintln!("verifying {file}");
    let v = verify_file(&file, &policy).map_err(|e| e.to_string())?;
    let target = booted.other();
    for img in &v.manifest.images {
        let (_, room) = layout
            .area(target, &img.name)
            .ok_or_else(|| format!("no area for '{}'", img.name))?;
        if img.size > room {
            return Err(format!(
                "image '{}' ({} bytes) is larger than its slot area ({room} bytes)",
                img.name, img.size
            ));
        }
    }
    if v.manifest.image("kernel").is_none() || v.manifest.image("rootfs").is_none() {
        return Err("a slot needs both a kernel and a rootfs image; this bundle lacks one".into());
    }
    let disk = Disk::open(layout)?;
    let mut env = disk.read_env()?;
    slots::begin_install(&mut env, target).map_err(|e| e.to_string())?;
    disk.write_env(&env)?;
    tracing::info!(slot = %target, version = %v.manifest.version, signer = %v.signer, "firmware install started");
    eprintln!(
        "writing version {} into slot {target} (signed by '{}')",
        v.manifest.version, v.signer
    );
    // Pass 2: stream again, hashing while writing; a file changed since pass 1 fails here.
    let f = std::fs::File::open(&file).map_err(|e| format!("{file}: {e}"))?;
    let mut r = BufReader::with_capacity(64 * 1024, f);
    let head = bundle::read_head(&mut r).map_err(|e| e.to_string())?;
    let v2 = head.verify(&policy).map_err(|e| e.to_string())?;
    if v2.manifest != v.manifest {
        return Err(format!(
            "{file} changed during the install; slot {target} is left unbootable"
        ));
    }
    let total = v.manifest.payload_len().max(1);
    let mut done = 0u64;
    let mut shown = 0u64;
    let mut writers: Vec<(String, disk::AreaWriter<'_>)> = Vec::new();
    let whole_file = !is_device(&file);
    let res = bundle::check_images(
        &mut r,
        &v.manifest,
        head.payload_offset(),
        whole_file,
        |img, chunk| {
            if writers.last().is_none_or(|(n, _)| *n != img.name) {
                writers.push((img.name.clone(), disk.area_writer(target, &img.name)?));
            }
            let (_, w) = writers.last_mut().ok_or("no writer")?;
            w.write(chunk)?;
            done += chunk.len() as u64;
            let pct = done * 100 / total;
            if pct >= shown + 10 || done == total {
                shown = pct;
                eprintln!("  {pct:>3}%  {done} of {total} bytes");
            }
            Ok::<(), String>(())
        },
    );
    let res = res.map_err(|e| e.to_string()).and_then(|r| r);
    if let Err(e) = res {
        tracing::warn!(slot = %target, error = %e, "firmware install failed");
        return Err(format!(
            "{e}; slot {target} is left unbootable, slot {booted} still boots"
        ));
    }
    let mut sectors = std::collections::HashMap::new();
    for (name, w) in writers {
        sectors.insert(name, w.finish()?);
    }
    disk.sync()?;
    for img in &v.manifest.images {
        let got = disk.hash_area(target, &img.name, img.size)?;
        if got != img.sha256 {
            return Err(format!(
                "read-back of '{}' in slot {target} does not match (SHA-256 {got}): the medium may be failing; slot {booted} still boots",
                img.name
            ));
        }
    }
    if no_activate {
        slots::stage_install(
            &mut env,
            target,
            &v.manifest.version,
            sectors["kernel"],
            sectors["rootfs"],
        )
        .map_err(|e| e.to_string())?;
        disk.write_env(&env)?;
        tracing::info!(slot = %target, version = %v.manifest.version, "firmware staged; the running slot keeps booting");
        println!(
            "staged {} in slot {target} in {:.1} s ({} bytes, read back and verified); slot {booted} keeps booting until `appliance firmware activate`",
            v.manifest.version,
            t0.elapsed().as_secs_f64(),
            v.manifest.payload_len()
        );
        return Ok(());
    }
    slots::finish_install(
        &mut env,
        target,
        &v.manifest.version,
        sectors["kernel"],
        sectors["rootfs"],
    )
    .map_err(|e| e.to_string())?;
    disk.write_env(&env)?;
    tracing::info!(slot = %target, version = %v.manifest.version, "firmware installed; boots next on trial");
    println!(
        "installed {} into slot {target} in {:.1} s ({} bytes, read back and verified); it boots next, on trial: reboot to run it",
        v.manifest.version,
        t0.elapsed().as_secs_f64(),
        v.manifest.payload_len()
    );
    Ok(())
}

fn rollback_cmd(mut args: Vec<String>) -> Result<(), String> {
    let (_, layout) = layout_from(&mut args)?;
    let booted = booted_from(&mut args)?;
    no_more(&args)?;
    let _lock = lock()?;
    let disk = Disk::open(layout)?;
    let mut env = disk.read_env()?;
    let to = slots::rollback(&mut env, booted).map_err(|e| e.to_string())?;
    disk.write_env(&env)?;
    let note = Slots::from_env(&env).note;
    tracing::info!(slot = %to, "firmware rollback requested");
    println!("{note}: reboot to run it");
    Ok(())
}

fn activate_cmd(mut args: Vec<String>) -> Result<(), String> {
    let (_, layout) = layout_from(&mut args)?;
    let booted = booted_from(&mut args)?;
    no_more(&args)?;
    let _lock = lock()?;
    let disk = Disk::open(layout)?;
    let mut env = disk.read_env()?;
    let to = slots::activate(&mut env, booted).map_err(|e| e.to_string())?;
    disk.write_env(&env)?;
    let note = Slots::from_env(&env).note;
    tracing::info!(slot = %to, "staged firmware activated");
    println!("{note}: reboot to run it");
    Ok(())
}

fn mark_good_cmd(mut args: Vec<String>) -> Result<(), String> {
    let (_, layout) = layout_from(&mut args)?;
    let booted = booted_from(&mut args)?;
    no_more(&args)?;
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

fn make_disk_cmd(mut args: Vec<String>) -> Result<(), String> {
    let (_, layout) = layout_from(&mut args)?;
    let out = take_opt(&mut args, "-o")?.ok_or("make-disk needs -o OUT")?;
    let boot = take_opt(&mut args, "--boot-img")?
        .ok_or("make-disk needs --boot-img (GRUB i386-pc boot.img)")?;
    let core = take_opt(&mut args, "--core-img")?
        .ok_or("make-disk needs --core-img (from grub-mkimage)")?;
    let env_part = take_opt(&mut args, "--env-part")?
        .ok_or("make-disk needs --env-part (a FAT image holding an empty grubenv)")?;
    let version = take_opt(&mut args, "--version")?.unwrap_or_else(|| crate::VERSION.into());
    let append = take_opt(&mut args, "--append")?.unwrap_or_default();
    let read = |p: &str| std::fs::read(p).map_err(|e| format!("{p}: {e}"));
    let mut kernel = None;
    let mut rootfs = None;
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
