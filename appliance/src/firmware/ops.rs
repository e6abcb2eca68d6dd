//! Firmware requests answered by the daemon (the console's "Firmware update" item): the
//! slots, an install running on its own thread with its progress kept for polling, and a
//! rollback. Installs and rollbacks are logged with their reason, so they reach the
//! daemon's log ring, syslog and (through the environment's note) `appliance status`.

use std::sync::{Arc, Mutex};

use crate::config::board::{Board, BOARD_PATH};
use crate::control::proto::{FirmwareInfo, FirmwareJob, FirmwareSlot};

use super::bundle::Policy;
use super::disk::{Disk, Layout};
use super::install::{self, Progress, Source};
use super::keys::{Keyring, KEYRING_PATH};
use super::slots::{self, booted_slot, Slot, Slots};

/// The install started through the control socket (one at a time).
pub type JobCell = Arc<Mutex<Option<FirmwareJob>>>;

/// The facts a firmware request works on.
#[derive(Clone, Debug)]
pub struct BoxSlots {
    /// Board name (bundles must be for it).
    pub board: String,
    /// Boot disk layout.
    pub layout: Layout,
    /// The running slot.
    pub booted: Slot,
    /// Trusted keys.
    pub keyring_path: String,
}

impl BoxSlots {
    /// This box's: board.toml, the kernel command line, the keyring; `Err` says why it has
    /// no slots.
    pub fn this_box() -> Result<BoxSlots, String> {
        // Board facts and the kernel command line do not change while the box runs; status
        // asks for them on every request.
        static THIS_BOX: std::sync::OnceLock<Result<BoxSlots, String>> = std::sync::OnceLock::new();
        THIS_BOX.get_or_init(Self::read_this_box).clone()
    }

    fn read_this_box() -> Result<BoxSlots, String> {
        let board = Board::load(BOARD_PATH).map_err(|e| e.to_string())?;
        let layout = board
            .firmware
            .clone()
            .ok_or("this board has no A/B firmware slots (no [firmware] in board.toml)")?;
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        let booted = booted_slot(&cmdline).ok_or(
            "this box was not started by the A/B bootloader (no appliance.slot= on the kernel command line)",
        )?;
        Ok(BoxSlots {
            board: board.name,
            layout,
            booted,
            keyring_path: KEYRING_PATH.into(),
        })
    }
}

/// Both slots as rows, booted and next marked.
pub fn slot_rows(st: &Slots, booted: Option<Slot>) -> Vec<FirmwareSlot> {
    [Slot::A, Slot::B]
        .into_iter()
        .map(|s| {
            let i = st.get(s);
            FirmwareSlot {
                name: s.to_string(),
                version: i.version.clone(),
                state: i.state().to_owned(),
                booted: booted == Some(s),
                next: st.primary == s,
            }
        })
        .collect()
}

/// The slots, the last event and the job, read from the boot disk now.
pub fn info(b: &BoxSlots, job: &JobCell) -> Result<FirmwareInfo, String> {
    let env = Disk::open(b.layout.clone())?.read_env()?;
    let st = Slots::from_env(&env);
    Ok(FirmwareInfo {
        slots: slot_rows(&st, Some(b.booted)),
        last_event: st.note.clone(),
        job: lock(job).clone(),
        message: String::new(),
    })
}

/// `status` lines: one per slot and the last event; empty on a box without slots.
pub fn status_lines() -> Vec<String> {
    let Ok(b) = BoxSlots::this_box() else {
        return Vec::new();
    };
    let booted = b.booted;
    let Ok(env) = Disk::open(b.layout).and_then(|d| d.read_env()) else {
        return vec!["firmware slots unreadable".into()];
    };
    let st = Slots::from_env(&env);
    let mut out: Vec<String> = slot_rows(&st, Some(booted))
        .iter()
        .map(|s| {
            format!(
                "slot {} {} {}{}{}",
                s.name,
                if s.version.is_empty() {
                    "-"
                } else {
                    &s.version
                },
                s.state,
                if s.booted { ", booted" } else { "" },
                if s.next { ", boots next" } else { "" }
            )
        })
        .collect();
    if !st.note.is_empty() {
        out.push(format!("last event: {}", st.note));
    }
    out
}

fn lock(job: &JobCell) -> std::sync::MutexGuard<'_, Option<FirmwareJob>> {
    job.lock().unwrap_or_else(|p| p.into_inner())
}

/// Start an install of `source` on its own thread; poll [`info`] for its progress. A file
/// that does not exist is refused at once; everything else is reported in the job.
pub fn start_install(
    b: &BoxSlots,
    job: &JobCell,
    source: &str,
    force: bool,
) -> Result<String, String> {
    let src = Source::parse(source.trim());
    if source.trim().is_empty() {
        return Err("give a bundle path on the box or an http(s):// URL".into());
    }
    if let Source::File(p) = &src {
        std::fs::metadata(p).map_err(|e| {
            format!("{p}: {e}; give the path of a bundle on the box or an http(s):// URL")
        })?;
    }
    {
        let mut j = lock(job);
        if j.as_ref().is_some_and(|j| !j.finished) {
            return Err("an install is already running; wait for it to finish".into());
        }
        *j = Some(FirmwareJob {
            source: src.to_string(),
            step: "starting".into(),
            ..FirmwareJob::default()
        });
    }
    let cell = job.clone();
    let b = b.clone();
    std::thread::Builder::new()
        .name("fw-install".into())
        .spawn(move || {
            let r = run_install(&cell, &src, &b, force);
            if let Err(e) = &r {
                tracing::warn!(source = %src, error = %e, "firmware install failed");
            }
            let mut j = lock(&cell);
            if let Some(j) = j.as_mut() {
                j.finished = true;
                match r {
                    Ok(m) => j.result = Some(m),
                    Err(e) => j.error = Some(e),
                }
            }
        })
        .map_err(|e| format!("cannot start the install: {e}"))?;
    Ok(format!("install of {source} started"))
}

fn run_install(cell: &JobCell, src: &Source, b: &BoxSlots, force: bool) -> Result<String, String> {
    let keyring = Keyring::load(std::path::Path::new(&b.keyring_path))?;
    let t = install::Target {
        layout: b.layout.clone(),
        booted: b.booted,
        policy: Policy {
            keyring: &keyring,
            keyring_path: &b.keyring_path,
            board: &b.board,
            running: super::running_version(),
            force,
        },
        fetch: super::fetch::Options::default(),
        activate: true,
    };
    let done = install::install(src, &t, &mut |p| {
        if let Some(j) = lock(cell).as_mut() {
            match p {
                Progress::Step(s) => {
                    j.step = s.clone();
                    j.done = 0;
                }
                Progress::Bytes { done, total } => {
                    j.done = *done;
                    j.total = *total;
                }
            }
        }
    });
    match done {
        Ok(d) => Ok(format!(
            "installed {} into slot {} in {:.1} s; it boots next, on trial: reboot to run it",
            d.version, d.slot, d.secs
        )),
        Err(e) => Err(e),
    }
}

/// Make the other slot boot next; `reason` goes into the log with it.
pub fn rollback(b: &BoxSlots, reason: &str) -> Result<String, String> {
    let _lock = super::change_lock()?;
    let disk = Disk::open(b.layout.clone())?;
    let mut env = disk.read_env()?;
    let to = slots::rollback(&mut env, b.booted).map_err(|e| e.to_string())?;
    disk.write_env(&env)?;
    let note = Slots::from_env(&env).note;
    tracing::info!(slot = %to, reason, note = %note, "firmware rollback requested");
    Ok(format!("{note}: reboot to run it"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firmware::install::tests_support::{bundle_signed_by, disk, SERIAL};

    fn wait(job: &JobCell) -> FirmwareJob {
        for _ in 0..200 {
            if let Some(j) = lock(job).clone().filter(|j| j.finished) {
                return j;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the install did not finish in 10 s");
    }

    #[test]
    fn an_install_job_reports_progress_and_its_end_and_rollback_logs_the_reason() {
        let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::write(&keys, crate::firmware::keys::key_files(&[1; 32], "t").1).unwrap();
        let b = BoxSlots {
            board: "test-board".into(),
            layout: disk(dir.path()),
            booted: Slot::A,
            keyring_path: keys.display().to_string(),
        };
        let job = JobCell::default();
        let e = start_install(&b, &job, "/nonexistent/fw.bundle", false).unwrap_err();
        assert!(e.contains("No such file"), "{e}");
        assert!(lock(&job).is_none(), "a refused source starts no job");
        let bad = dir.path().join("bad.bundle");
        std::fs::write(&bad, bundle_signed_by(9)).unwrap();
        start_install(&b, &job, &bad.display().to_string(), false).unwrap();
        let j = wait(&job);
        assert!(
            j.error.as_deref().unwrap_or("").contains("bad signature"),
            "{j:?}"
        );
        let good = dir.path().join("good.bundle");
        std::fs::write(&good, bundle_signed_by(1)).unwrap();
        let m = start_install(&b, &job, &good.display().to_string(), false).unwrap();
        assert!(m.contains("started"), "{m}");
        let j = wait(&job);
        assert!(
            j.result
                .as_deref()
                .unwrap_or("")
                .contains("installed 99.1.0 into slot B"),
            "{j:?}"
        );
        assert_eq!((j.done, j.total > 0), (j.total, true));
        let i = info(&b, &job).unwrap();
        assert!(i.slots[1].next && i.slots[1].version == "99.1.0", "{i:?}");
        assert!(i.last_event.contains("installed 99.1.0"), "{i:?}");
        // Running the new slot B, the operator rolls back to A.
        let on_b = BoxSlots {
            booted: Slot::B,
            ..b.clone()
        };
        let r = rollback(&on_b, "test").unwrap();
        assert!(
            r.contains("slot A (0.1.0) boots next: reboot to run it"),
            "{r}"
        );
        let i = info(&on_b, &job).unwrap();
        assert!(i.slots[0].next, "{i:?}");
    }
}
