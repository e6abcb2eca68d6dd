//! `appliance factory-reset [--yes] [--store SPEC] [--lock PATH] [--socket PATH]`, and the
//! choice every store writer of the command line makes: write directly under the store
//! lock, or send the change to the running daemon that holds it.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use argh::FromArgs;

use crate::config::board::{Board, BOARD_PATH};
use crate::store::{lock, Store};

#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "factory-reset",
    help_triggers("-h", "--help", "help")
)]
/// erase the stored config; factory defaults apply at the next start (through the daemon while it runs).
pub struct FactoryReset {
    /// do not ask for confirmation
    #[argh(switch, short = 'y')]
    pub yes: bool,
    /// config store, file:/path or mtd:/dev/mtdN (default: 'store' in /etc/appliance/board.toml)
    #[argh(option)]
    pub store: Option<String>,
    /// store lock file (default /run/appliance/store.lock)
    #[argh(option)]
    pub lock: Option<String>,
    /// control socket of the daemon (default /run/appliance/control.sock)
    #[argh(option)]
    pub socket: Option<String>,
}

/// Where a store writer goes: the store, its lock and the daemon's control socket.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterPaths {
    /// Store spec (given, else the board's).
    pub spec: String,
    /// Lock file.
    pub lock: String,
    /// Daemon control socket.
    pub socket: String,
    /// The daemon's store is the one meant: no explicit `--store`, or `--socket` names the
    /// daemon too; a store given on the command line is never silently replaced by the
    /// daemon's own.
    pub route_to_daemon: bool,
}

impl WriterPaths {
    /// Resolve the `--store`, `--lock` and `--socket` options of a store writer.
    pub fn new(store: Option<String>, lock: Option<String>, socket: Option<String>) -> Self {
        WriterPaths {
            route_to_daemon: store.is_none() || socket.is_some(),
            spec: store.unwrap_or_else(|| Board::load_or_default(BOARD_PATH).store),
            lock: lock.unwrap_or_else(|| lock::LOCK_FILE.into()),
            socket: socket.unwrap_or_else(|| crate::control::proto::DEFAULT_SOCKET.into()),
        }
    }
}

/// How long an offline writer waits for another offline writer's save before it concludes
/// the lock belongs to the running daemon.
pub const WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Where a store write goes: straight to the medium under the lock, or through the daemon.
#[derive(Debug)]
pub enum Writer {
    /// The lock is ours; write the store directly while this is held.
    Direct(lock::StoreLock),
    /// The lock is held (the daemon runs): send the change over the control socket.
    Daemon,
}

/// Why a write with an explicit `--store` is not sent to the running daemon.
pub const EXPLICIT_STORE_BUSY: &str = "the daemon is running and holds the store lock, and it writes only its own store: run without --store (or name its socket with --socket) to send the change through it";

/// Decide how to write the store, given the lock file (see [`crate::store::lock`]) and the
/// daemon's control socket. A held lock whose daemon answers on its socket goes through
/// the daemon at once; otherwise another offline writer holds it, and we wait for it.
pub fn writer(lock: &std::path::Path, socket: &std::path::Path) -> Result<Writer, lock::LockError> {
    match lock::StoreLock::try_acquire(lock) {
        Ok(l) => return Ok(Writer::Direct(l)),
        Err(lock::LockError::Held { .. }) => {}
        Err(e) => return Err(e),
    }
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Ok(Writer::Daemon);
    }
    match lock::StoreLock::acquire_within(lock, WRITER_WAIT) {
        Ok(l) => Ok(Writer::Direct(l)),
        Err(lock::LockError::Held { .. }) => Ok(Writer::Daemon),
        Err(e) => Err(e),
    }
}

/// `appliance factory-reset`.
pub fn run(a: FactoryReset) -> ExitCode {
    let WriterPaths {
        spec,
        lock,
        socket,
        route_to_daemon,
    } = WriterPaths::new(a.store, a.lock, a.socket);
    let yes = a.yes;
    let held = match writer(std::path::Path::new(&lock), std::path::Path::new(&socket)) {
        Ok(Writer::Direct(l)) => l,
        Ok(Writer::Daemon) if route_to_daemon => return factory_reset_via_daemon(&socket, yes),
        Ok(Writer::Daemon) => {
            eprintln!("factory-reset: {EXPLICIT_STORE_BUSY}; nothing changed");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("factory-reset: {e}; nothing changed");
            return ExitCode::FAILURE;
        }
    };
    let mut store = match Store::open(&spec) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("factory-reset: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !yes {
        print!(
            "Erase the stored configuration on {}? The appliance will use factory defaults at the next start. Type 'yes' to confirm: ",
            store.describe()
        );
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).is_err() || line.trim() != "yes" {
            eprintln!("factory-reset: not confirmed, nothing changed");
            return ExitCode::FAILURE;
        }
    }
    let erased = store.erase();
    drop(held);
    match erased {
        Ok(()) => {
            println!(
                "config store {} erased; factory defaults apply at the next start",
                store.describe()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("factory-reset: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The daemon holds the store: it erases (serialised with its own saves); like the
/// offline path, factory defaults apply at the next start (no reboot here).
fn factory_reset_via_daemon(socket: &str, yes: bool) -> ExitCode {
    use crate::control::proto::{Reply, Request};
    if !yes {
        print!(
            "Erase the stored configuration (through the running appliance daemon)? The appliance will use factory defaults at the next start. Type 'yes' to confirm: "
        );
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).is_err() || line.trim() != "yes" {
            eprintln!("factory-reset: not confirmed, nothing changed");
            return ExitCode::FAILURE;
        }
    }
    match crate::control::client::Client::new(socket).call(&Request::FactoryReset {
        confirm: true,
        reboot: false,
    }) {
        Ok(Reply::Done { message }) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Ok(other) => {
            eprintln!("factory-reset: unexpected answer from the daemon: {other:?}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("factory-reset: the config store is locked (daemon running or another writer) and the daemon at {socket} did not answer: {e}; nothing changed");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn held_lock_goes_to_a_live_daemon_at_once_else_waits_for_the_other_writer() {
        let d = tempfile::tempdir().unwrap();
        let (lock, sock) = (d.path().join("store.lock"), d.path().join("control.sock"));
        // Free lock: write directly.
        let direct = writer(&lock, &sock).unwrap();
        assert!(matches!(direct, Writer::Direct(_)));
        // Held, and a daemon answers on the socket: through it, without waiting.
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let t = Instant::now();
        assert!(matches!(writer(&lock, &sock).unwrap(), Writer::Daemon));
        assert!(t.elapsed() < WRITER_WAIT / 2, "{:?}", t.elapsed());
        // Held by another offline writer (no daemon socket): wait for it first.
        drop(listener);
        std::fs::remove_file(&sock).unwrap();
        let t = Instant::now();
        assert!(matches!(writer(&lock, &sock).unwrap(), Writer::Daemon));
        assert!(t.elapsed() >= WRITER_WAIT, "{:?}", t.elapsed());
        drop(direct);
        assert!(matches!(writer(&lock, &sock).unwrap(), Writer::Direct(_)));
    }
}
