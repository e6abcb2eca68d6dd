//! Console password: argon2id PHC hashes and the exponential back-off on wrong guesses.
//!
//! The daemon owns the hash (in `config.console.password_hash`) and the back-off, so
//! restarting the console (Ctrl-D, cable pull) does not reset the wait. The back-off is
//! also kept in tmpfs ([`BACKOFF_FILE`]) against the boot-monotonic clock ([`boot_clock`]),
//! so a crashed and respawned daemon does not reset it either.

use std::io;
use std::path::Path;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Shortest accepted password.
pub const MIN_LEN: usize = 8;
/// Longest accepted password.
pub const MAX_LEN: usize = 128;
/// Longest back-off between attempts.
pub const MAX_BACKOFF_S: u32 = 30;

/// Consecutive wrong passwords after which (and after every further as many) a lockout
/// event is logged.
pub const LOCKOUT_FAILURES: u32 = 5;
/// Where the daemon keeps the back-off across its own restarts (tmpfs: a reboot clears it).
pub const BACKOFF_FILE: &str = "/run/appliance/login-backoff";
/// Where the daemon keeps the last known console password hash across its own restarts
/// (tmpfs: a reboot clears it), so a respawned daemon that finds the store faulty keeps the
/// console locked with it instead of the factory config's (empty) password.
pub const KNOWN_HASH_FILE: &str = "/run/appliance/console-hash";

/// Time since boot on the monotonic clock: one time base for every daemon of this boot.
pub fn boot_clock() -> Duration {
    use nix::time::{clock_gettime, ClockId};
    // CLOCK_MONOTONIC cannot fail on Linux; zero would only shorten a wait, never lengthen it.
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Why a password could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Too short or too long, or has control characters.
    #[error("the password must be {MIN_LEN} to {MAX_LEN} printable characters")]
    Policy,
    /// Hashing failed (no randomness or bad parameters).
    #[error("could not hash the password: {0}")]
    Hash(String),
}

/// Check the password policy (length, printable).
pub fn check_policy(pw: &str) -> Result<(), PasswordError> {
    let n = pw.chars().count();
    if !(MIN_LEN..=MAX_LEN).contains(&n) || pw.chars().any(char::is_control) {
        return Err(PasswordError::Policy);
    }
    Ok(())
}

fn salt() -> Result<SaltString, PasswordError> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| PasswordError::Hash(format!("reading /dev/urandom: {e}")))?;
    SaltString::encode_b64(&bytes).map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Hash with argon2id default parameters (19 MiB, 2 passes) into a PHC string.
pub fn hash_password(pw: &str) -> Result<String, PasswordError> {
    hash_password_with(pw, Params::DEFAULT_M_COST, Params::DEFAULT_T_COST)
}

/// Hash with explicit memory (KiB) and time cost; tests use small values. Checks the policy.
pub fn hash_password_with(pw: &str, m_kib: u32, t: u32) -> Result<String, PasswordError> {
    check_policy(pw)?;
    let params = Params::new(m_kib, t, 1, None).map_err(|e| PasswordError::Hash(e.to_string()))?;
    let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = salt()?;
    a.hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// True when `pw` matches the PHC `hash`; a malformed or over-priced hash never matches.
pub fn verify_password(hash: &str, pw: &str) -> bool {
    // Validation refuses such hashes on import; this guards any path that skipped it, so one
    // login attempt can never cost more than the configured cap.
    if crate::config::validate::password_hash_problem(hash).is_some() {
        return false;
    }
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(pw.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// True when `hash` can stand for a password: a PHC string within the cost cap that fits the
/// config field (never the empty hash of a box with no password).
pub fn usable_hash(hash: &str) -> bool {
    !hash.is_empty()
        && hash.len() <= crate::config::HASH_LEN
        && crate::config::validate::password_hash_problem(hash).is_none()
}

/// Read the hash kept at `path` by [`keep_known_hash`]: `Ok(None)` when there is none; a file
/// that cannot be read or holds no usable hash is an error (the caller then knows none).
pub fn load_known_hash(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(s) if usable_hash(s.trim()) => Ok(Some(s.trim().to_owned())),
        Ok(_) => Err(format!("{} holds no usable password hash", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Keep `hash` at `path` (mode 0600, temporary file + rename, creates the directory); an empty
/// hash (no password set) removes the file.
pub fn keep_known_hash(path: &Path, hash: &str) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if hash.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(format!("{hash}\n").as_bytes())?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Exponential back-off after wrong passwords: 1, 2, 4, 8, 16, 30, 30... seconds.
///
/// Pure: the caller passes a monotonic `now`.
#[derive(Clone, Debug, Default)]
pub struct Backoff {
    failures: u32,
    not_before: Duration,
}

impl Backoff {
    /// Seconds still to wait at `now` (0 = an attempt may be checked).
    pub fn wait_s(&self, now: Duration) -> u32 {
        let left = self.not_before.saturating_sub(now);
        // Round up so "0.2 s left" reads as 1 s, never 0.
        let s = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        s.min(u64::from(MAX_BACKOFF_S)) as u32
    }

    /// Record a wrong password at `now`; returns the delay imposed.
    pub fn failure(&mut self, now: Duration) -> u32 {
        self.failures = self.failures.saturating_add(1);
        let d = 1u32
            .checked_shl(self.failures - 1)
            .unwrap_or(MAX_BACKOFF_S)
            .min(MAX_BACKOFF_S);
        self.not_before = now + Duration::from_secs(u64::from(d));
        d
    }

    /// Record a correct password.
    pub fn success(&mut self) {
        *self = Backoff::default();
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// True when the failures just reached a multiple of [`LOCKOUT_FAILURES`] (log it).
    pub fn lockout(&self) -> bool {
        self.failures != 0 && self.failures.is_multiple_of(LOCKOUT_FAILURES)
    }

    /// The persisted form: `<failures> <not-before ms on the boot clock>`.
    pub fn to_line(&self) -> String {
        format!("{} {}\n", self.failures, self.not_before.as_millis())
    }

    /// Parse [`Backoff::to_line`]'s form.
    pub fn from_line(s: &str) -> Option<Backoff> {
        let mut it = s.split_ascii_whitespace();
        let failures = it.next()?.parse().ok()?;
        let ms: u64 = it.next()?.parse().ok()?;
        it.next().is_none().then_some(Backoff {
            failures,
            not_before: Duration::from_millis(ms),
        })
    }

    /// Load the back-off kept at `path` (`now` on the boot clock). No file: no back-off. An
    /// unreadable or damaged file fails closed: a full back-off from `now`.
    pub fn load(path: &Path, now: Duration) -> (Backoff, Option<String>) {
        let closed = Backoff {
            failures: LOCKOUT_FAILURES,
            not_before: now + Duration::from_secs(u64::from(MAX_BACKOFF_S)),
        };
        match std::fs::read_to_string(path) {
            Ok(s) => match Backoff::from_line(&s) {
                Some(b) => (b, None),
                None => (
                    closed,
                    Some(format!(
                        "{} is damaged; imposing a full back-off",
                        path.display()
                    )),
                ),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Backoff::default(), None),
            Err(e) => (
                closed,
                Some(format!(
                    "cannot read {}: {e}; imposing a full back-off",
                    path.display()
                )),
            ),
        }
    }

    /// Write the back-off to `path` atomically (temporary file + rename; creates the directory).
    pub fn store(&self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.to_line())?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password_with("correct horse", 64, 1).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{h}");
        assert!(h.len() <= crate::config::HASH_LEN);
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "correct horsE"));
        assert!(!verify_password("", "anything"));
        assert!(!verify_password("$argon2id$garbage", "anything"));
        // Over the cost cap: refused without being computed.
        let big = hash_password_with("correct horse", 64, 1)
            .unwrap()
            .replace("m=64,", "m=4194304,");
        assert!(!verify_password(&big, "correct horse"));
        // Two hashes of one password differ (random salt).
        assert_ne!(h, hash_password_with("correct horse", 64, 1).unwrap());
    }

    #[test]
    fn known_hash_file_round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/console-hash");
        assert_eq!(load_known_hash(&path), Ok(None));
        let h = hash_password_with("correct horse", 64, 1).unwrap();
        keep_known_hash(&path, &h).unwrap();
        assert_eq!(load_known_hash(&path), Ok(Some(h.clone())));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Damaged or empty: an error, never an empty (admit-anyone) hash.
        for bad in ["", "\n", "$argon2id$garbage", "plain text"] {
            std::fs::write(&path, bad).unwrap();
            assert!(load_known_hash(&path).is_err(), "{bad:?}");
        }
        // An over-priced hash is not usable either.
        std::fs::write(&path, h.replace("m=64,", "m=4194304,")).unwrap();
        assert!(load_known_hash(&path).is_err());
        // An empty hash (no password) removes the file; removing twice is fine.
        keep_known_hash(&path, "").unwrap();
        keep_known_hash(&path, "").unwrap();
        assert_eq!(load_known_hash(&path), Ok(None));
        assert!(!usable_hash(""));
    }

    #[test]
    fn default_params_fit_the_config_field() {
        let h = hash_password("a default pw").unwrap();
        assert!(h.len() <= crate::config::HASH_LEN, "{} > HASH_LEN", h.len());
        assert!(verify_password(&h, "a default pw"));
    }

    #[test]
    fn policy() {
        assert_eq!(check_policy("short"), Err(PasswordError::Policy));
        assert_eq!(check_policy("has\u{7}bell!"), Err(PasswordError::Policy));
        assert!(check_policy("longenough").is_ok());
        assert!(check_policy(&"x".repeat(MAX_LEN + 1)).is_err());
        assert!(hash_password_with("short", 64, 1).is_err());
    }

    #[test]
    fn backoff_doubles_to_thirty_and_resets() {
        let mut b = Backoff::default();
        let t0 = Duration::from_secs(100);
        assert_eq!(b.wait_s(t0), 0);
        let delays: Vec<u32> = (0..8).map(|_| b.failure(t0)).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(b.wait_s(t0), 30);
        assert_eq!(b.wait_s(t0 + Duration::from_millis(29_500)), 1);
        assert_eq!(b.wait_s(t0 + Duration::from_secs(30)), 0);
        b.success();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.failure(t0), 1);
        // Many failures never overflow.
        for _ in 0..100 {
            b.failure(t0);
        }
        assert_eq!(b.failure(t0), 30);
    }

    #[test]
    fn backoff_persists_and_fails_closed() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sub/login-backoff");
        let t = Duration::from_secs(500);
        assert_eq!(
            Backoff::load(&path, t).0.failures(),
            0,
            "no file, no back-off"
        );
        let mut b = Backoff::default();
        b.failure(t);
        b.failure(t + Duration::from_secs(1));
        b.store(&path).unwrap();
        let (back, note) = Backoff::load(&path, t + Duration::from_secs(1));
        assert!(note.is_none());
        assert_eq!(back.failures(), 2);
        assert_eq!(back.wait_s(t + Duration::from_secs(1)), 2);
        assert_eq!(back.wait_s(t + Duration::from_secs(3)), 0);
        std::fs::write(&path, "2 not-a-number\n").unwrap();
        let (back, note) = Backoff::load(&path, t);
        assert!(note.unwrap().contains("damaged"));
        assert_eq!(back.wait_s(t), MAX_BACKOFF_S);
        assert!(Backoff::from_line("1 2 3").is_none());
        assert_eq!(
            Backoff::from_line(&b.to_line()).unwrap().to_line(),
            b.to_line()
        );
    }

    #[test]
    fn lockout_every_five_failures() {
        let mut b = Backoff::default();
        let seen: Vec<bool> = (0..10)
            .map(|_| {
                b.failure(Duration::ZERO);
                b.lockout()
            })
            .collect();
        let at: Vec<usize> = seen
            .iter()
            .enumerate()
            .filter(|(_, l)| **l)
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(at, vec![5, 10]);
    }

    #[test]
    fn boot_clock_is_monotonic() {
        let a = boot_clock();
        let b = boot_clock();
        assert!(a > Duration::ZERO && b >= a);
    }
}
