//! Hardware watchdog: kicked only while the critical tasks are alive.
//!
//! - [`Watchdog`]: the `/dev/watchdog` device (timeout ioctls, kick by write, magic close).
//! - [`Liveness`]: critical tasks register and beat; [`spawn_kicker`] kicks only while all
//!   of them beat recently, otherwise it stops kicking (latched) and the hardware resets.
//! - [`restart`]: previous boot reason and the crash-loop detector.

pub mod liveness;
pub mod restart;

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

pub use liveness::{Beat, Clock, Decision, HungTask, Kicker, Liveness, LivenessVerdict};

/// Watchdog errors.
#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    /// Could not open the device.
    #[error("watchdog {path}: cannot open: {source} (is the driver loaded, e.g. i6300esb? is another process holding it?)")]
    Open {
        /// Device.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// An ioctl failed.
    #[error("watchdog {path}: {op} failed: {errno}{hint}")]
    Ioctl {
        /// Device.
        path: PathBuf,
        /// Which ioctl.
        op: &'static str,
        /// Error.
        errno: Errno,
        /// Extra advice.
        hint: &'static str,
    },
    /// Kick or magic close write failed.
    #[error("watchdog {path}: write failed: {source}")]
    Write {
        /// Device.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The start log could not be used.
    #[error("start log {path}: {source}")]
    StartLog {
        /// File.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
}

/// Why the previous boot ended, as far as the watchdog driver knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootReason {
    /// The watchdog reset the machine (WDIOF_CARDRESET).
    WatchdogReset,
    /// The driver reports no watchdog-caused reset (power-on or ordinary reboot).
    NotWatchdog,
    /// Other status flags (raw WDIOF_* bits).
    Flags(u32),
    /// The driver cannot tell.
    Unknown(String),
}

impl std::fmt::Display for BootReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootReason::WatchdogReset => write!(f, "previous boot ended by a WATCHDOG RESET"),
            BootReason::NotWatchdog => write!(f, "previous boot did not end by a watchdog reset"),
            BootReason::Flags(x) => write!(f, "watchdog boot status flags {x:#x}"),
            BootReason::Unknown(w) => write!(f, "previous boot reason unknown ({w})"),
        }
    }
}

/// WDIOF_CARDRESET: the card (watchdog) caused the last reboot.
pub const WDIOF_CARDRESET: u32 = 0x0020;

mod ioctl {
    use nix::libc::c_int;
    nix::ioctl_read!(getbootstatus, b'W', 2, c_int);
    nix::ioctl_readwrite!(settimeout, b'W', 6, c_int);
    nix::ioctl_read!(gettimeout, b'W', 7, c_int);
}

/// An open watchdog device. Opening starts the hardware timer.
///
/// Dropping it without [`Watchdog::magic_close`] leaves the timer running (the box resets):
/// exactly what a crash should do.
pub struct Watchdog {
    file: File,
    path: PathBuf,
    timeout_s: u32,
}

impl Watchdog {
    /// Open `path` (normally `/dev/watchdog`) and program `timeout_s`.
    pub fn open(path: &Path, timeout_s: u32) -> Result<Watchdog, WatchdogError> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|source| WatchdogError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let fd = file.as_raw_fd();
        let ioerr = |op, errno: Errno| WatchdogError::Ioctl {
            path: path.to_path_buf(),
            op,
            errno,
            hint: if errno == Errno::ENOTTY {
                " (not a watchdog device)"
            } else if errno == Errno::EINVAL {
                " (timeout out of the driver's range)"
            } else {
                ""
            },
        };
        let mut t: nix::libc::c_int = timeout_s.try_into().unwrap_or(nix::libc::c_int::MAX);
        // SAFETY: fd is an open file we own; `t` is a valid c_int for the duration of the call.
        unsafe { ioctl::settimeout(fd, &mut t) }.map_err(|e| ioerr("WDIOC_SETTIMEOUT", e))?;
        let mut got: nix::libc::c_int = 0;
        // SAFETY: as above; the driver writes one c_int.
        unsafe { ioctl::gettimeout(fd, &mut got) }.map_err(|e| ioerr("WDIOC_GETTIMEOUT", e))?;
        let actual = u32::try_from(got).unwrap_or(timeout_s);
        if actual != timeout_s {
            warn!(
                wanted = timeout_s,
                actual, "watchdog rounded the timeout to what the hardware supports"
            );
        }
        info!(path = %path.display(), timeout_s = actual, "watchdog armed");
        Ok(Watchdog {
            file,
            path: path.to_path_buf(),
            timeout_s: actual,
        })
    }

    /// Wrap an already open file (tests use a plain file to check the write protocol).
    pub fn from_file(file: File, path: &Path, timeout_s: u32) -> Watchdog {
        Watchdog {
            file,
            path: path.to_path_buf(),
            timeout_s,
        }
    }

    /// The programmed timeout in seconds (as reported by the driver).
    pub fn timeout_s(&self) -> u32 {
        self.timeout_s
    }

    /// Keep the box alive for another timeout period.
    pub fn kick(&mut self) -> Result<(), WatchdogError> {
        // Any byte except 'V' kicks; 'V' would arm the magic close on some drivers.
        self.file
            .write_all(b"k")
            .map_err(|source| WatchdogError::Write {
                path: self.path.clone(),
                source,
            })
    }

    /// Orderly stop: write the magic 'V' and close, which disarms the timer
    /// (unless the kernel was built with nowayout).
    pub fn magic_close(mut self) -> Result<(), WatchdogError> {
        self.file
            .write_all(b"V")
            .map_err(|source| WatchdogError::Write {
                path: self.path.clone(),
                source,
            })?;
        info!(path = %self.path.display(), "watchdog disarmed (magic close)");
        Ok(())
    }

    /// Why the previous boot ended (WDIOC_GETBOOTSTATUS); drivers that cannot tell give `Unknown`.
    pub fn boot_reason(&self) -> BootReason {
        let mut flags: nix::libc::c_int = 0;
        // SAFETY: fd is open; the driver writes one c_int.
        match unsafe { ioctl::getbootstatus(self.file.as_raw_fd(), &mut flags) } {
            Ok(_) => decode_boot_status(flags as u32),
            Err(e) => BootReason::Unknown(format!("WDIOC_GETBOOTSTATUS: {e}")),
        }
    }
}

/// Decode WDIOC_GETBOOTSTATUS flags.
pub fn decode_boot_status(flags: u32) -> BootReason {
    if flags & WDIOF_CARDRESET != 0 {
        BootReason::WatchdogReset
    } else if flags == 0 {
        BootReason::NotWatchdog
    } else {
        BootReason::Flags(flags)
    }
}

/// Log why the daemon (re)started: the watchdog's previous-boot status (if a device is
/// open) and the start history; returns the history (`crash_loop` for console and LEDs).
pub fn log_restart_reason(
    wd: Option<&Watchdog>,
    log: &restart::StartLog,
) -> Result<restart::StartHistory, WatchdogError> {
    if let Some(wd) = wd {
        match wd.boot_reason() {
            r @ BootReason::WatchdogReset => error!(reason = %r, "boot reason"),
            r => info!(reason = %r, "boot reason"),
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let h = log.record(now)?;
    if h.crash_loop {
        error!(starts = h.starts_in_window, "{}", h.describe());
    } else {
        info!("{}", h.describe());
    }
    Ok(h)
}

/// Running kicker; [`KickerHandle::stop`] performs the orderly magic close.
pub struct KickerHandle {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), WatchdogError>>,
}

impl KickerHandle {
    /// Orderly shutdown: stop kicking and disarm the watchdog.
    pub async fn stop(mut self) -> Result<(), WatchdogError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "watchdog kicker task failed");
                Ok(())
            }
        }
    }
}

/// Kick `wd` every `period` while every task in `live` is alive; on a hung task stop
/// kicking for good and log which task it is (the hardware then resets the box).
///
/// Choose `period` well below the timeout (e.g. timeout / 3).
pub fn spawn_kicker(mut wd: Watchdog, live: Liveness, period: Duration) -> KickerHandle {
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut kicker = Kicker::default();
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop_rx => return wd.magic_close(),
                _ = tick.tick() => {
                    match kicker.decide(&live.check()) {
                        Decision::Kick => {
                            if let Err(e) = wd.kick() {
                                warn!(error = %e, "watchdog kick failed");
                            }
                        }
                        Decision::Withhold { newly_hung: Some(h) } => {
                            for t in &h {
                                error!(
                                    task = %t.name,
                                    stale_ms = t.stale.as_millis() as u64,
                                    allowed_ms = t.allowed.as_millis() as u64,
                                    timeout_s = wd.timeout_s(),
                                    "critical task hung: no more watchdog kicks, the box will reset"
                                );
                            }
                        }
                        Decision::Withhold { newly_hung: None } => {}
                    }
                }
            }
        }
    });
    KickerHandle {
        stop: Some(stop_tx),
        task,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn write_protocol_kicks_then_magic_close() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("watchdog");
        let f = File::create(&p).unwrap();
        let mut wd = Watchdog::from_file(f, &p, 10);
        for _ in 0..3 {
            wd.kick().unwrap();
        }
        wd.magic_close().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "kkkV");
    }

    #[test]
    fn open_on_a_non_watchdog_is_a_clear_error() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("not-a-watchdog");
        std::fs::write(&p, "").unwrap();
        let e = Watchdog::open(&p, 10).err().expect("must fail");
        let msg = e.to_string();
        assert!(
            msg.contains("WDIOC_SETTIMEOUT") && msg.contains("not a watchdog"),
            "{msg}"
        );
        let e = Watchdog::open(&t.path().join("missing"), 10).err().unwrap();
        assert!(e.to_string().contains("cannot open"), "{e}");
    }

    #[test]
    fn boot_status_decoding() {
        assert_eq!(decode_boot_status(0x20), BootReason::WatchdogReset);
        assert_eq!(decode_boot_status(0), BootReason::NotWatchdog);
        assert_eq!(decode_boot_status(0x1), BootReason::Flags(1));
        // A plain file answers the ioctl with ENOTTY: handled, not fatal.
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("wd");
        let wd = Watchdog::from_file(File::create(&p).unwrap(), &p, 10);
        assert!(matches!(wd.boot_reason(), BootReason::Unknown(_)));
    }

    /// Bounded wait until the device file's length satisfies `f`.
    async fn wait_len(p: &Path, f: impl Fn(u64) -> bool) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let n = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            if f(n) || Instant::now() > deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn kicker_stops_kicking_when_a_task_hangs_and_magic_closes_on_stop() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("watchdog");
        let wd = Watchdog::from_file(File::create(&p).unwrap(), &p, 10);
        let live = Liveness::new();
        let beat = live.register("prober", Duration::from_millis(200));
        let k = spawn_kicker(wd, live.clone(), Duration::from_millis(10));
        // Alive: kicks accumulate.
        for _ in 0..10 {
            beat.beat();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(wait_len(&p, |n| n >= 3).await >= 3);
        // Stop beating: after the allowance the kicks stop.
        let before_hang = std::fs::metadata(&p).unwrap().len();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let a = std::fs::metadata(&p).unwrap().len();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let b = std::fs::metadata(&p).unwrap().len();
        assert!(a >= before_hang);
        assert_eq!(a, b, "no kicks while the task is hung");
        k.stop().await.unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(
            s.ends_with('V') && s.trim_end_matches('V').chars().all(|c| c == 'k'),
            "{s}"
        );
    }
}
