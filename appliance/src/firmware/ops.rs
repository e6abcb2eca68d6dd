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

/// The board's slot layout and the booted slot; `Err` says why this box has none.
fn box_slots() -> Result<(Board, Layout, Slot), String> {
    let board = Board::load(BOARD_PATH).map_err(|e| e.to_string())?;
    let layout = board
        .firmware
        .clone()
        .ok_or("this board has no A/B firmware slots (no [firmware] in board.toml)")?;
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let booted = booted_slot(&cmdline).ok_or(
        "this box was not started by the A/B bootloader (no appliance.slot= on the kernel command line)",
    )?;
    Ok((board, layout, booted))
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
pub fn info(job: &JobCell) -> Result<FirmwareInfo, String> {
    let (_, layout, booted) = box_slots()?;
    let env = Disk::open(layout)?.read_env()?;
    let st = Slots::from_env(&env);
    Ok(FirmwareInfo {
        slots: slot_rows(&st, Some(booted)),
        last_event: st.note.clone(),
        job: lock(job).clone(),
        message: String::new(),
    })
}

/// `status` lines: one per slot and the last event; empty on a box without slots.
pub fn status_lines() -> Vec<String> {
    let Ok((_, layout, booted)) = box_slots() else {
        return Vec::new();
    };
    let Ok(env) = Disk::open(layout).and_then(|d| d.read_env()) else {
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
pub fn start_install(job: &JobCell, source: &str, force: bool) -> Result<String, String> {
    let src = Source::parse(source.trim());
    if source.trim().is_empty() {
        return Err("give a bundle path on the box or an http(s):// URL".into());
    }
    if let Source::File(p) = &src {
        std::fs::metadata(p).map_err(|e| {
            format!("{p}: {e}; give the path of a bundle on the box or an http(s):// URL")
        })?;
    }
    let (board, layout, booted) = box_slots()?;
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
    std::thread::Builder::new()
        .name("fw-install".into())
        .spawn(move || {
            let r = run_install(&cell, &src, board, layout, booted, force);
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

fn run_install(
    cell: &JobCell,
    src: &Source,
    board: Board,
    layout: Layout,
    booted: Slot,
    force: bool,
) -> Result<String, String> {
    let keyring = Keyring::load(std::path::Path::new(KEYRING_PATH))?;
    let t = install::Target {
        layout,
        booted,
        policy: Policy {
            keyring: &keyring,
            keyring_path: KEYRING_PATH,
            board: &board.name,
            running: super::running_version(),
            force,
        },
        fetch: super::fetch::Options::default(),
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
pub fn rollback(reason: &str) -> Result<String, String> {
    let (_, layout, booted) = box_slots()?;
    let _lock = super::change_lock()?;
    let disk = Disk::open(layout)?;
    let mut env = disk.read_env()?;
    let to = slots::rollback(&mut env, booted).map_err(|e| e.to_string())?;
    disk.write_env(&env)?;
    let note = Slots::from_env(&env).note;
    tracing::info!(slot = %to, reason, note = %note, "firmware rollback requested");
    Ok(format!("{note}: reboot to run it"))
}
