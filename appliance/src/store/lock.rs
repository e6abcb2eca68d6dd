//! One writer at a time: an exclusive `flock` on a lock file in tmpfs.
//!
//! The daemon takes it at start and holds it while it runs; the offline writers (`config
//! import`, `config import-keepalived --apply`, `factory-reset`) take it for their write.
//! When it is held the daemon is running (or another writer is mid-save), so those commands
//! send their change through the control socket instead, where the daemon serialises it
//! with the console's edits. Without the lock two saves could read the same slot states and
//! pick the same target slot. The kernel drops the lock when its holder exits or crashes.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Where the store lock lives (tmpfs, so a reboot never leaves a stale file behind).
pub const LOCK_FILE: &str = "/run/appliance/store.lock";

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process (normally the running daemon) holds it.
    #[error("the config store is in use by the running daemon or another writer (lock {path})")]
    Held {
        /// Lock file.
        path: String,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock the config store with {path}: {source}")]
    Io {
        /// Lock file.
        path: String,
        /// Cause.
        source: io::Error,
    },
}

/// A held store lock; dropping it releases the lock.
#[derive(Debug)]
pub struct StoreLock {
    _lock: Flock<File>,
    path: PathBuf,
}

impl StoreLock {
    /// Take the lock at `path` without waiting (creates the directory and the file).
    pub fn try_acquire(path: &Path) -> Result<StoreLock, LockError> {
        let io_err = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(io_err)?;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_err)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(StoreLock {
                _lock: lock,
                path: path.to_path_buf(),
            }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(LockError::Held {
                path: path.display().to_string(),
            }),
            Err((_, e)) => Err(io_err(io::Error::from(e))),
        }
    }

    /// Take the lock, retrying for up to `wait` (a writer's save takes well under a second).
    pub fn acquire_within(path: &Path, wait: std::time::Duration) -> Result<StoreLock, LockError> {
        let until = std::time::Instant::now() + wait;
        loop {
            match StoreLock::try_acquire(path) {
                Err(LockError::Held { .. }) if std::time::Instant::now() < until => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                r => return r,
            }
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn exclusive_until_dropped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("run/appliance/store.lock");
        let held = StoreLock::try_acquire(&p).unwrap();
        assert_eq!(held.path(), p);
        // flock is per open file description: a second open in this process conflicts too,
        // just as another process would.
        let e = StoreLock::try_acquire(&p).unwrap_err();
        assert!(
            e.to_string().contains("in use by the running daemon"),
            "{e}"
        );
        assert!(matches!(
            StoreLock::acquire_within(&p, Duration::from_millis(120)),
            Err(LockError::Held { .. })
        ));
        drop(held);
        StoreLock::try_acquire(&p).unwrap();
    }

    #[test]
    fn lock_dir_problems_are_io_errors() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let e = StoreLock::try_acquire(&file.join("store.lock")).unwrap_err();
        assert!(matches!(e, LockError::Io { .. }), "{e}");
    }
}
