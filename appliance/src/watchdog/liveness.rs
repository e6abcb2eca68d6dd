//! Liveness registry: critical tasks register and beat; the kicker decision is pure.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Monotonic time source (a fake one in tests).
pub trait Clock: Send + Sync + 'static {
    /// Time since an arbitrary fixed origin.
    fn now(&self) -> Duration;
}

/// The real monotonic clock.
pub struct MonotonicClock(Instant);

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock(Instant::now())
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

#[derive(Debug)]
struct Entry {
    id: u64,
    name: String,
    max_stale: Duration,
    last: Duration,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    entries: Vec<Entry>,
}

/// Shared registry of critical tasks (clone freely).
#[derive(Clone)]
pub struct Liveness {
    reg: Arc<Mutex<Registry>>,
    clock: Arc<dyn Clock>,
}

/// A task that has not beaten within its allowance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HungTask {
    /// Registered name.
    pub name: String,
    /// Time since its last beat.
    pub stale: Duration,
    /// Its allowance.
    pub allowed: Duration,
}

/// Result of a liveness check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LivenessVerdict {
    /// Every registered task beat recently.
    Alive,
    /// These tasks are hung.
    Hung(Vec<HungTask>),
}

/// Handle of one registered task.
///
/// Dropping it does NOT unregister (a panicking task must still starve the watchdog);
/// call [`Beat::retire`] on orderly task exit.
pub struct Beat {
    live: Liveness,
    id: u64,
}

impl Beat {
    /// Record that the task is alive now.
    pub fn beat(&self) {
        let now = self.live.clock.now();
        let mut r = self.live.lock();
        if let Some(e) = r.entries.iter_mut().find(|e| e.id == self.id) {
            e.last = now;
        }
    }
    /// Unregister on orderly exit.
    pub fn retire(self) {
        self.live.lock().entries.retain(|e| e.id != self.id);
    }
}

impl Default for Liveness {
    fn default() -> Self {
        Self::new()
    }
}

impl Liveness {
    /// Registry on the monotonic clock.
    pub fn new() -> Liveness {
        Self::with_clock(Arc::new(MonotonicClock::default()))
    }

    /// Registry on a given clock.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Liveness {
        Liveness {
            reg: Arc::new(Mutex::new(Registry::default())),
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A poisoned lock only means a panic elsewhere; the data is still consistent.
        match self.reg.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Register a critical task that must beat at least every `max_stale`.
    /// Counts as having beaten now.
    pub fn register(&self, name: &str, max_stale: Duration) -> Beat {
        let now = self.clock.now();
        let mut r = self.lock();
        r.next_id += 1;
        let id = r.next_id;
        r.entries.push(Entry {
            id,
            name: name.to_owned(),
            max_stale,
            last: now,
        });
        Beat {
            live: self.clone(),
            id,
        }
    }

    /// Which tasks (if any) are hung now.
    pub fn check(&self) -> LivenessVerdict {
        let now = self.clock.now();
        let hung: Vec<HungTask> = self
            .lock()
            .entries
            .iter()
            .filter_map(|e| {
                let stale = now.saturating_sub(e.last);
                (stale > e.max_stale).then(|| HungTask {
                    name: e.name.clone(),
                    stale,
                    allowed: e.max_stale,
                })
            })
            .collect();
        if hung.is_empty() {
            LivenessVerdict::Alive
        } else {
            LivenessVerdict::Hung(hung)
        }
    }

    /// Names of the registered tasks (for status views).
    pub fn names(&self) -> Vec<String> {
        self.lock().entries.iter().map(|e| e.name.clone()).collect()
    }
}

/// What the kicker does on a tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Kick the hardware.
    Kick,
    /// Do not kick; `newly_hung` is set on the first withheld tick (log it once).
    Withhold {
        /// Tasks found hung on this tick, first time only.
        newly_hung: Option<Vec<HungTask>>,
    },
}

/// Kicker state: once a task was found hung, kicking stops for good (latched), so the
/// hardware resets the box even if the task later twitches back to life.
#[derive(Debug, Default)]
pub struct Kicker {
    latched: bool,
}

impl Kicker {
    /// Decide for one tick.
    pub fn decide(&mut self, v: &LivenessVerdict) -> Decision {
        match (self.latched, v) {
            (false, LivenessVerdict::Alive) => Decision::Kick,
            (false, LivenessVerdict::Hung(h)) => {
                self.latched = true;
                Decision::Withhold {
                    newly_hung: Some(h.clone()),
                }
            }
            (true, _) => Decision::Withhold { newly_hung: None },
        }
    }
    /// True once kicking has stopped.
    pub fn is_latched(&self) -> bool {
        self.latched
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct FakeClock(AtomicU64);
    impl FakeClock {
        fn advance(&self, ms: u64) {
            self.0.fetch_add(ms, Ordering::SeqCst);
        }
    }
    impl Clock for FakeClock {
        fn now(&self) -> Duration {
            Duration::from_millis(self.0.load(Ordering::SeqCst))
        }
    }

    #[test]
    fn kicks_only_while_every_task_beats() {
        let clock = Arc::new(FakeClock::default());
        let live = Liveness::with_clock(clock.clone());
        let mut k = Kicker::default();
        assert_eq!(k.decide(&live.check()), Decision::Kick, "empty registry");
        let main = live.register("main loop", Duration::from_secs(5));
        let prober = live.register("prober", Duration::from_secs(3));
        for _ in 0..10 {
            clock.advance(1000);
            main.beat();
            prober.beat();
            assert_eq!(k.decide(&live.check()), Decision::Kick);
        }
        // The prober hangs; the main loop keeps beating.
        for _ in 0..3 {
            clock.advance(1000);
            main.beat();
            assert_eq!(k.decide(&live.check()), Decision::Kick);
        }
        clock.advance(1000);
        main.beat();
        match k.decide(&live.check()) {
            Decision::Withhold {
                newly_hung: Some(h),
            } => {
                assert_eq!(h.len(), 1);
                assert_eq!(h[0].name, "prober");
                assert_eq!(h[0].stale, Duration::from_secs(4));
                assert_eq!(h[0].allowed, Duration::from_secs(3));
            }
            other => panic!("expected withhold, got {other:?}"),
        }
        // Latched: reported once, and a late beat does not resume kicking.
        prober.beat();
        assert_eq!(
            k.decide(&live.check()),
            Decision::Withhold { newly_hung: None }
        );
        assert!(k.is_latched());
    }

    #[test]
    fn dropped_beat_still_counts_retired_does_not() {
        let clock = Arc::new(FakeClock::default());
        let live = Liveness::with_clock(clock.clone());
        {
            let _crashed = live.register("reconciler", Duration::from_secs(2));
        }
        let done = live.register("one-shot", Duration::from_secs(2));
        done.retire();
        assert_eq!(live.names(), ["reconciler"]);
        clock.advance(2001);
        assert!(matches!(live.check(), LivenessVerdict::Hung(h) if h[0].name == "reconciler"));
    }
}
