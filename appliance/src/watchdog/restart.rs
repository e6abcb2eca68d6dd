//! "Why was I restarted": previous boot reason and a crash-loop detector.
//!
//! The start log lives in /run (tmpfs), so it counts daemon starts within this boot only:
//! N starts within M seconds means init keeps respawning a crashing daemon.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::WatchdogError;

/// Default start log.
pub const START_LOG: &str = "/run/appliance/starts";
/// Default crash-loop window.
pub const CRASH_WINDOW_S: u64 = 300;
/// Default number of starts within the window that means a crash loop.
pub const CRASH_THRESHOLD: usize = 5;
/// Entries kept in the log (bounds its size).
const KEEP: usize = 32;

/// Outcome of recording a start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartHistory {
    /// Starts (including this one) within the window.
    pub starts_in_window: usize,
    /// Previous start in this boot, if any (unix seconds).
    pub previous_start: Option<u64>,
    /// Crash loop detected.
    pub crash_loop: bool,
}

impl StartHistory {
    /// One line for the log and the console.
    pub fn describe(&self) -> String {
        match (self.crash_loop, self.previous_start) {
            (true, _) => format!(
                "CRASH LOOP: the service started {} times within {} s; check the log",
                self.starts_in_window, CRASH_WINDOW_S
            ),
            (false, Some(_)) => {
                "service restarted by init after the previous instance exited".into()
            }
            (false, None) => "first start since boot".into(),
        }
    }
}

/// Pure evaluation of start timestamps (`stamps` already include `now`).
pub fn evaluate(stamps: &[u64], now: u64, window_s: u64, threshold: usize) -> StartHistory {
    let in_window = stamps
        .iter()
        .filter(|t| **t <= now && now - **t < window_s)
        .count();
    let previous_start = stamps.iter().rev().nth(1).copied();
    StartHistory {
        starts_in_window: in_window,
        previous_start,
        crash_loop: in_window >= threshold,
    }
}

/// Appends daemon start times to a small file and detects crash loops.
#[derive(Clone, Debug)]
pub struct StartLog {
    path: PathBuf,
    window_s: u64,
    threshold: usize,
}

impl StartLog {
    /// Log at `path` with a crash-loop rule of `threshold` starts within `window_s`.
    pub fn new(path: &Path, window_s: u64, threshold: usize) -> StartLog {
        StartLog {
            path: path.to_path_buf(),
            window_s,
            threshold: threshold.max(2),
        }
    }

    /// Record a start at `now` (unix seconds) and evaluate the history.
    ///
    /// Unparseable lines are ignored (the file is advisory, not configuration).
    pub fn record(&self, now: u64) -> Result<StartHistory, WatchdogError> {
        let io = |source| WatchdogError::StartLog {
            path: self.path.clone(),
            source,
        };
        let mut stamps: Vec<u64> = match std::fs::read_to_string(&self.path) {
            Ok(s) => s.lines().filter_map(|l| l.trim().parse().ok()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        stamps.push(now);
        let skip = stamps.len().saturating_sub(KEEP);
        let stamps = &stamps[skip..];
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // Write-then-rename so a crash mid-write never leaves a truncated log.
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        for t in stamps {
            writeln!(f, "{t}").map_err(io)?;
        }
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        Ok(evaluate(stamps, now, self.window_s, self.threshold))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_loop_needs_threshold_starts_inside_window() {
        assert!(!evaluate(&[100], 100, 300, 5).crash_loop);
        assert!(evaluate(&[100, 110, 120, 130, 140], 140, 300, 5).crash_loop);
        // Old starts fall out of the window.
        let h = evaluate(&[0, 10, 400, 410, 420], 420, 300, 5);
        assert_eq!(h.starts_in_window, 3);
        assert!(!h.crash_loop);
        assert_eq!(h.previous_start, Some(410));
    }

    #[test]
    fn start_log_file_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let log = StartLog::new(&t.path().join("sub/starts"), 60, 3);
        let h = log.record(1000).unwrap();
        assert_eq!(h.previous_start, None);
        assert_eq!(h.describe(), "first start since boot");
        assert!(!log.record(1010).unwrap().crash_loop);
        let h = log.record(1020).unwrap();
        assert!(h.crash_loop, "{h:?}");
        assert!(h.describe().contains("CRASH LOOP"));
        // Much later: calm again.
        let h = log.record(5000).unwrap();
        assert!(!h.crash_loop);
        assert!(h.describe().contains("restarted"));
        // Garbage in the file is ignored; size stays bounded.
        std::fs::write(t.path().join("sub/starts"), "junk\n").unwrap();
        for i in 0..100 {
            log.record(6000 + i).unwrap();
        }
        let n = std::fs::read_to_string(t.path().join("sub/starts"))
            .unwrap()
            .lines()
            .count();
        assert_eq!(n, KEEP);
    }
}
