//! The daemon's side of A/B updates: after boot it records a fallback GRUB made (with the
//! reason), and it marks the booted slot good only once the box is really healthy; a slot
//! on trial that does not get there in time is rebooted, so GRUB falls back by itself.

use std::time::Duration;

use super::disk::{Disk, Layout};
use super::slots::booted_slot;
use super::slots::{self, Slot, Slots};

/// How long a slot on trial may take to become healthy before the box reboots into the
/// other slot. Generous: a TCG-emulated box needs ~1 min to boot and probe.
pub const TRIAL_DEADLINE: Duration = Duration::from_secs(300);

/// What the daemon knows about its own health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The control socket is up and the main loop runs.
    pub daemon_ready: bool,
    /// The IPVS table was programmed and read back with no fault.
    pub table_verified: bool,
    /// `[ha] enabled` in the running config.
    pub ha_enabled: bool,
    /// The HA peer has been heard.
    pub peer_seen: bool,
}

/// What to do about the booted slot now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Healthy: mark it good.
    MarkGood,
    /// Not yet healthy; the reason is shown in status.
    Wait(&'static str),
    /// On trial and out of time: reboot so GRUB falls back.
    Reboot(String),
}

/// The mark-good rule. A slot on trial in an HA pair also needs the peer heard: new
/// firmware that cannot talk to its peer is not kept. A slot already good only needs
/// the box healthy to get its boot attempts back: a master hears no adverts from a
/// backup, so a box that stays master would otherwise lose an attempt at every boot
/// until GRUB left the good slot.
pub fn decide(f: Facts, on_trial: bool, since_start: Duration) -> Decision {
    let waiting = if !f.daemon_ready {
        Some("daemon not ready")
    } else if !f.table_verified {
        Some("IPVS table not programmed and verified")
    } else if on_trial && f.ha_enabled && !f.peer_seen {
        Some("HA peer not seen yet")
    } else {
        None
    };
    match waiting {
        None => Decision::MarkGood,
        Some(why) if on_trial && since_start >= TRIAL_DEADLINE => Decision::Reboot(format!(
            "slot on trial not healthy after {} s ({why}): rebooting so the bootloader falls back",
            TRIAL_DEADLINE.as_secs()
        )),
        Some(why) => Decision::Wait(why),
    }
}

/// The booted slot's firmware state, held by the daemon.
pub struct Trial {
    disk: Disk,
    booted: Slot,
    /// The slot is on trial (installed, not yet marked good).
    pub on_trial: bool,
    /// Marked good during this boot (or was good already).
    pub marked: bool,
    /// A fallback the bootloader made, with its reason (for alerts).
    pub fallback: Option<String>,
}

impl Trial {
    /// Open the boot disk of a board with slots that was booted by the A/B bootloader.
    /// `None` (logged) otherwise: boards without slots and `-kernel` boots have nothing to do.
    pub fn start(layout: Option<&Layout>, cmdline: &str) -> Option<Trial> {
        let layout = layout?;
        let booted = booted_slot(cmdline)?;
        let disk = match Disk::open(layout.clone()) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "firmware slots unavailable");
                return None;
            }
        };
        let mut env = match disk.read_env() {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "firmware environment unreadable");
                return None;
            }
        };
        let fallback = match slots::after_boot(&mut env, booted) {
            Ok(Some(why)) => {
                tracing::warn!(slot = %booted, reason = %why, "firmware rollback by the bootloader");
                if let Err(e) = disk.write_env(&env) {
                    tracing::warn!(error = %e, "cannot record the rollback");
                }
                Some(why)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "firmware environment not updated");
                None
            }
        };
        let st = Slots::from_env(&env);
        let info = st.get(booted);
        tracing::info!(slot = %booted, version = %info.version, state = info.state(), "booted firmware slot");
        Some(Trial {
            on_trial: info.trial,
            marked: false,
            disk,
            booted,
            fallback,
        })
    }

    /// Apply a decision: mark good (once), or reboot. Returns true when it asks for a reboot.
    pub fn act(&mut self, d: &Decision) -> bool {
        match d {
            Decision::MarkGood if !self.marked => {
                // An operator's install may be rewriting the environment: try again next tick.
                let Ok(_lock) = super::change_lock() else {
                    return false;
                };
                let r = self.disk.read_env().and_then(|mut env| {
                    let changed =
                        slots::mark_good(&mut env, self.booted).map_err(|e| e.to_string())?;
                    if changed {
                        self.disk.write_env(&env)?;
                    }
                    Ok(changed)
                });
                match r {
                    Ok(changed) => {
                        self.marked = true;
                        if self.on_trial {
                            tracing::info!(slot = %self.booted, "firmware slot marked good after a healthy boot");
                        } else if changed {
                            tracing::info!(slot = %self.booted, "firmware slot boot attempts restored");
                        }
                        self.on_trial = false;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot mark the firmware slot good"),
                }
                false
            }
            Decision::Reboot(why) => {
                tracing::error!(slot = %self.booted, reason = %why, "firmware trial failed");
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: Facts = Facts {
        daemon_ready: true,
        table_verified: true,
        ha_enabled: false,
        peer_seen: false,
    };

    #[test]
    fn marks_good_only_when_every_fact_holds() {
        assert_eq!(decide(OK, true, Duration::ZERO), Decision::MarkGood);
        let no_table = Facts {
            table_verified: false,
            ..OK
        };
        assert_eq!(
            decide(no_table, true, Duration::from_secs(10)),
            Decision::Wait("IPVS table not programmed and verified")
        );
        let ha = Facts {
            ha_enabled: true,
            ..OK
        };
        assert_eq!(
            decide(ha, true, Duration::ZERO),
            Decision::Wait("HA peer not seen yet")
        );
        assert_eq!(
            decide(
                Facts {
                    peer_seen: true,
                    ..ha
                },
                true,
                Duration::ZERO
            ),
            Decision::MarkGood
        );
        let not_ready = Facts {
            daemon_ready: false,
            ..OK
        };
        assert_eq!(
            decide(not_ready, false, Duration::ZERO),
            Decision::Wait("daemon not ready")
        );
    }

    #[test]
    fn with_ha_a_trial_slot_needs_the_peer_a_good_slot_does_not() {
        let alone = Facts {
            ha_enabled: true,
            peer_seen: false,
            ..OK
        };
        // New firmware that never hears its peer is not kept: it falls back at the deadline.
        assert_eq!(
            decide(alone, true, TRIAL_DEADLINE - Duration::from_secs(1)),
            Decision::Wait("HA peer not seen yet")
        );
        assert!(matches!(
            decide(alone, true, TRIAL_DEADLINE),
            Decision::Reboot(w) if w.contains("HA peer not seen")
        ));
        // A good slot on a master (which hears no adverts from its backup) gets its
        // attempts back as soon as it is healthy.
        assert_eq!(decide(alone, false, Duration::ZERO), Decision::MarkGood);
        // Without HA the peer plays no part, on trial or not.
        assert_eq!(decide(OK, true, Duration::ZERO), Decision::MarkGood);
        // The peer never excuses an unhealthy box.
        let unhealthy = Facts {
            table_verified: false,
            peer_seen: true,
            ..alone
        };
        assert!(matches!(
            decide(unhealthy, true, Duration::ZERO),
            Decision::Wait(_)
        ));
    }

    #[test]
    fn only_a_trial_slot_reboots_and_only_after_the_deadline() {
        let bad = Facts {
            table_verified: false,
            ..OK
        };
        assert!(matches!(
            decide(bad, true, TRIAL_DEADLINE - Duration::from_secs(1)),
            Decision::Wait(_)
        ));
        let d = decide(bad, true, TRIAL_DEADLINE);
        assert!(
            matches!(&d, Decision::Reboot(w) if w.contains("IPVS table")),
            "{d:?}"
        );
        // A good slot with a fault never reboots itself: the operator needs it up to fix the config.
        assert!(matches!(
            decide(bad, false, TRIAL_DEADLINE * 10),
            Decision::Wait(_)
        ));
    }

    #[test]
    fn start_records_a_bootloader_fallback_and_marks_good_once() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout {
            disk: d.path().join("disk.img").display().to_string(),
            slot_mib: 2,
            kernel_mib: 1,
            bootloader: Default::default(),
        };
        let mut part = vec![0u8; 4096];
        part[1024..2048].copy_from_slice(&super::super::grubenv::Env::default().encode().unwrap());
        super::super::disk::make_disk(
            &l.disk,
            &l,
            &[0; 512],
            &[0; 512],
            &part,
            b"k",
            b"r",
            |k, r| {
                let mut e = slots::initial_env("0.1.0", k, r).map_err(|e| e.to_string())?;
                slots::finish_install(&mut e, Slot::B, "0.2.0", 1, 1).map_err(|e| e.to_string())?;
                // GRUB tried B once already and now started A.
                slots::grub_pick(&mut e).map_err(|e| e.to_string())?;
                Ok(e)
            },
        )
        .unwrap();
        assert!(
            Trial::start(Some(&l), "console=ttyS0").is_none(),
            "-kernel boot: nothing to do"
        );
        assert!(Trial::start(None, "appliance.slot=A").is_none());
        let mut t = Trial::start(Some(&l), "console=ttyS0 appliance.slot=A").unwrap();
        let why = t.fallback.clone().unwrap();
        assert!(
            why.contains("slot B (0.2.0) did not become healthy"),
            "{why}"
        );
        assert!(!t.on_trial);
        assert!(!t.act(&Decision::MarkGood));
        assert!(t.marked);
        let st = Slots::from_env(&Disk::open(l.clone()).unwrap().read_env().unwrap());
        assert_eq!(
            (st.primary, st.a.state(), st.b.state()),
            (Slot::A, "good", "bad")
        );
        assert_eq!(st.note, why);
        assert!(t.act(&Decision::Reboot("x".into())));
    }
}
