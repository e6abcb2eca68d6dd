//! `appliance firmware ...`: build and verify bundles (host or box), and keys.

use std::io::{BufReader, Write};
use std::process::ExitCode;

use super::bundle::{self, BundleError, Policy, Verified};
use super::keys::{self, Keyring, KEYRING_PATH};
use super::version::Version;
use crate::config::board::{Board, BOARD_PATH};
use crate::store::cli::take_opt;

const USAGE: &str = "usage: appliance firmware <command>

on the box:
  verify FILE [--force] [--keyring PATH] [--board NAME]
                               check a bundle (signature, board, version, hashes); writes nothing

on a build host:
  keygen NAME                  write NAME.key (secret) and NAME.pub (a keyring line)
  bundle --key FILE|--unsigned --version X.Y.Z --board NAME -o OUT [--description TEXT]
         kernel=PATH [rootfs=PATH]
                               build a signed bundle
";

/// Entry point for `appliance firmware ...`.
pub fn cli(args: &[String]) -> ExitCode {
    let mut args = args.to_vec();
    let Some(cmd) = (!args.is_empty()).then(|| args.remove(0)) else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let r = match cmd.as_str() {
        "verify" => verify_cmd(args),
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

fn take_flag(args: &mut Vec<String>, name: &str) -> bool {
    match args.iter().position(|a| a == name) {
        Some(i) => {
            args.remove(i);
            true
        }
        None => false,
    }
}

fn no_more(args: &[String]) -> Result<(), String> {
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
        let running =
            Version::parse(crate::VERSION).map_err(|e| format!("running firmware: {e}"))?;
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

/// Verify a bundle file as a stream: header, signature, manifest, then every image hash.
pub fn verify_file(path: &str, policy: &Policy<'_>) -> Result<Verified, BundleError> {
    let f = std::fs::File::open(path).map_err(|e| BundleError::Io(format!("{path}: {e}")))?;
    let mut r = BufReader::with_capacity(64 * 1024, f);
    bundle::verify_stream(&mut r, policy)
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
