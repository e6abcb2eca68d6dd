//! The store as the daemon shares it: writes (save, erase) go through the blocking
//! pool, one at a time, so a slow medium (fdatasync on a worn card can take seconds)
//! never stalls the event loop that probes servers and feeds the watchdog, and never
//! holds the config session while it waits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Store, StoreError};
use crate::config::Config;

/// A [`Store`] behind its own lock, with a "write in progress" flag for status.
#[derive(Clone)]
pub struct SharedStore {
    store: Arc<Mutex<Store>>,
    busy: Arc<AtomicBool>,
    /// Why the store could not be loaded at start; saves are refused while set.
    fault: Arc<Mutex<Option<String>>>,
}

/// Clears the busy flag when a write ends, also by panic.
struct Busy<'a>(&'a AtomicBool);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

impl SharedStore {
    /// Share `store`.
    pub fn new(store: Store) -> SharedStore {
        SharedStore {
            store: Arc::new(Mutex::new(store)),
            busy: Arc::new(AtomicBool::new(false)),
            fault: Arc::new(Mutex::new(None)),
        }
    }

    /// Mark the store faulty (it could not be loaded): saves are refused until an
    /// erase (factory reset), so what it holds is never overwritten by accident.
    pub fn set_fault(&self, reason: String) {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    /// The fault set by [`SharedStore::set_fault`], if any.
    pub fn fault(&self) -> Option<String> {
        self.fault.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A save or erase is running now.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic mid-write leaves the medium as the A/B scheme expects (the other
        // slot intact), so the store stays usable.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Save on the calling thread (it blocks): for callers already off the event loop.
    pub fn save_blocking(&self, config: &Config) -> Result<u64, StoreError> {
        if let Some(f) = self.fault() {
            return Err(StoreError::Fault(f));
        }
        let mut store = self.lock();
        self.busy.store(true, Ordering::Relaxed);
        let _busy = Busy(&self.busy);
        store.save(config)
    }

    /// Erase both slots on the calling thread (it blocks).
    pub fn erase_blocking(&self) -> Result<(), StoreError> {
        let mut store = self.lock();
        self.busy.store(true, Ordering::Relaxed);
        let _busy = Busy(&self.busy);
        store.erase()?;
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }

    /// Save on the blocking pool; the event loop runs on while the medium syncs.
    pub async fn save(&self, config: Config) -> Result<u64, String> {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.save_blocking(&config)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("the save task failed: {e}")),
        }
    }

    /// Erase on the blocking pool.
    pub async fn erase(&self) -> Result<(), String> {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.erase_blocking()).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("the erase task failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::FileBackend;
    use crate::store::sim::{SimMedium, SlowDisk};
    use crate::watchdog::{Liveness, LivenessVerdict};
    use std::time::{Duration, Instant};

    #[test]
    fn a_faulty_store_refuses_saves_until_erased() {
        let m = SimMedium::new(256 * 1024, 64 * 1024, 0xFF);
        let shared = SharedStore::new(Store::with_backend(Box::new(FileBackend::with_disk(
            crate::store::sim::SimDisk(m.clone()),
        ))));
        shared.set_fault("both slots are corrupt".into());
        let image = m.image();
        let e = shared
            .save_blocking(&Config::builtin_default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("both slots are corrupt") && e.contains("refused"),
            "{e}"
        );
        assert_eq!(m.image(), image, "nothing was written");
        shared.erase_blocking().unwrap();
        assert_eq!(shared.fault(), None);
        assert_eq!(shared.save_blocking(&Config::builtin_default()).unwrap(), 1);
    }

    /// A save that stalls 15 s in fdatasync: the event loop keeps running its tasks
    /// (a 100 ms ticker standing for the prober and the main loop), the liveness check
    /// the watchdog kicker uses stays Alive throughout, status sees the write in
    /// progress, and the save completes.
    #[test]
    fn a_save_stalled_15_s_never_stalls_the_loop() {
        let stall = Duration::from_secs(15);
        let m = SimMedium::new(256 * 1024, 64 * 1024, 0xFF);
        let disk = SlowDisk::new(m, stall);
        let shared = SharedStore::new(Store::with_backend(Box::new(FileBackend::with_disk(disk))));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let live = Liveness::new();
            let beat = live.register("main loop", Duration::from_secs(5));
            let ticker = tokio::spawn(async move {
                let mut ticks = 0u32;
                let mut t = tokio::time::interval(Duration::from_millis(100));
                loop {
                    t.tick().await;
                    beat.beat();
                    ticks += 1;
                    if ticks >= 10_000 {
                        return ticks;
                    }
                }
            });
            let started = Instant::now();
            let save = tokio::spawn({
                let s = shared.clone();
                async move { s.save(Config::builtin_default()).await }
            });
            let mut checks = 0;
            let mut saw_busy = false;
            while !save.is_finished() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                saw_busy |= shared.busy();
                assert_eq!(
                    live.check(),
                    LivenessVerdict::Alive,
                    "after {:?}",
                    started.elapsed()
                );
                checks += 1;
                assert!(started.elapsed() < stall * 3, "the save never ended");
            }
            let took = started.elapsed();
            let generation = save.await.unwrap().expect("the save completes");
            assert_eq!(generation, 1);
            assert!(took >= stall, "the medium really stalled ({took:?})");
            assert!(
                checks >= 25,
                "the loop ran {checks} liveness checks during the save"
            );
            assert!(saw_busy, "status saw the save in progress");
            assert!(!shared.busy());
            ticker.abort();
        });
    }
}
