//! The A/B slot state kept in the GRUB environment block, and every change the box makes
//! to it: install, mark good, rollback, and noticing after boot that GRUB fell back.
//!
//! Variables (the names the boot disk's grub.cfg uses, modelled on RAUC's GRUB backend):
//! `ORDER` ("A B": primary first), `<S>_OK` (1 = may boot), `<S>_LEFT` (boot attempts left
//! before GRUB skips the slot: GRUB counts it down before every boot, the running firmware sets
//! it back to [`GOOD_TRIES`] when it marks the slot good), `<S>_VERSION`, `<S>_KSEC` /
//! `<S>_RSEC` (kernel and rootfs length in 512-byte sectors, for GRUB's blocklists) and `NOTE`
//! (the last install / switch / rollback, for status). [`grub_pick`] is the same choice as
//! grub.cfg, so the whole cycle is tested here with a fake bootloader.

use super::grubenv::{Env, EnvError};

/// Attempts a slot marked good keeps (a transient crash of a good slot does not drop it).
pub const GOOD_TRIES: u8 = 3;
/// Attempts a freshly installed slot gets before GRUB falls back to the other one.
pub const TRIAL_TRIES: u8 = 1;

/// One of the two slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Slot A.
    A,
    /// Slot B.
    B,
}

impl Slot {
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
    /// "A" or "B".
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }
    /// Parse "A" / "B" (either case).
    pub fn parse(s: &str) -> Option<Slot> {
        match s {
            "A" | "a" => Some(Slot::A),
            "B" | "b" => Some(Slot::B),
            _ => None,
        }
    }
    fn var(self, what: &str) -> String {
        format!("{}_{what}", self.name())
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the environment says about one slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotInfo {
    /// May GRUB boot it at all.
    pub ok: bool,
    /// Boot attempts left.
    pub left: u8,
    /// Installed and not yet marked good.
    pub trial: bool,
    /// Written and verified by `install --no-activate`; boots only after `activate`.
    pub staged: bool,
    /// Firmware version written to it ("" = none / being written).
    pub version: String,
    /// Kernel length in sectors.
    pub kernel_sectors: u64,
    /// Rootfs length in sectors.
    pub rootfs_sectors: u64,
}

impl SlotInfo {
    /// Human state for status.
    pub fn state(&self) -> &'static str {
        match (self.ok, self.trial, self.left) {
            (false, _, _) if self.version.is_empty() => "empty",
            (false, _, _) if self.staged => "staged (not bootable until activated)",
            (false, _, _) => "bad",
            (true, true, _) => "on trial (not yet marked good)",
            (true, false, 0) => "good, no boot attempts left",
            (true, false, _) => "good",
        }
    }
}

/// Both slots and the boot order, read from an environment block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slots {
    /// Slot tried first.
    pub primary: Slot,
    /// Slot A.
    pub a: SlotInfo,
    /// Slot B.
    pub b: SlotInfo,
    /// Last install / switch / rollback note.
    pub note: String,
}

fn num(env: &Env, k: &str) -> u64 {
    env.get(k).and_then(|v| v.parse().ok()).unwrap_or(0)
}

impl Slots {
    /// Read the slot state (missing or odd values read as "not bootable").
    pub fn from_env(env: &Env) -> Slots {
        let info = |s: Slot| SlotInfo {
            ok: env.get(&s.var("OK")) == Some("1"),
            left: num(env, &s.var("LEFT")).min(u64::from(u8::MAX)) as u8,
            trial: env.get(&s.var("TRIAL")) == Some("1"),
            staged: env.get(&s.var("STAGED")) == Some("1"),
            version: env.get(&s.var("VERSION")).unwrap_or("").to_owned(),
            kernel_sectors: num(env, &s.var("KSEC")),
            rootfs_sectors: num(env, &s.var("RSEC")),
        };
        let primary = env
            .get("ORDER")
            .and_then(|o| o.split_whitespace().next())
            .and_then(Slot::parse)
            .unwrap_or(Slot::A);
        Slots {
            primary,
            a: info(Slot::A),
            b: info(Slot::B),
            note: env.get("NOTE").unwrap_or("").to_owned(),
        }
    }

    /// The info of `s`.
    pub fn get(&self, s: Slot) -> &SlotInfo {
        match s {
            Slot::A => &self.a,
            Slot::B => &self.b,
        }
    }
}

fn set_slot(env: &mut Env, s: Slot, ok: bool, left: u8) -> Result<(), EnvError> {
    env.set(&s.var("OK"), if ok { "1" } else { "0" })?;
    env.set(&s.var("TRIAL"), "0")?;
    // Only a slot that has been staged carries the flag; every other change clears it.
    if env.get(&s.var("STAGED")).is_some() {
        env.set(&s.var("STAGED"), "0")?;
    }
    env.set(&s.var("LEFT"), &left.to_string())
}

fn set_order(env: &mut Env, first: Slot) -> Result<(), EnvError> {
    env.set("ORDER", &format!("{} {}", first, first.other()))
}

/// Before writing `target`: make it unbootable, so a power cut mid-write never boots half a slot.
pub fn begin_install(env: &mut Env, target: Slot) -> Result<(), EnvError> {
    set_slot(env, target, false, 0)?;
    env.set(&target.var("VERSION"), "")?;
    set_order(env, target.other())?;
    env.set("NOTE", &format!("installing into slot {target}"))
}

/// After `target` was written and read back: boot it next, once, on trial.
pub fn finish_install(
    env: &mut Env,
    target: Slot,
    version: &str,
    kernel_sectors: u64,
    rootfs_sectors: u64,
) -> Result<(), EnvError> {
    record_image(env, target, version, kernel_sectors, rootfs_sectors)?;
    boot_on_trial(env, target)?;
    env.set(
        "NOTE",
        &format!("installed {version} into slot {target}; it boots next, on trial"),
    )
}

/// After `target` was written and read back by `install --no-activate`: keep it unbootable
/// (a power cut or reboot still starts the running slot) until [`activate`].
pub fn stage_install(
    env: &mut Env,
    target: Slot,
    version: &str,
    kernel_sectors: u64,
    rootfs_sectors: u64,
) -> Result<(), EnvError> {
    record_image(env, target, version, kernel_sectors, rootfs_sectors)?;
    set_slot(env, target, false, 0)?;
    env.set(&target.var("STAGED"), "1")?;
    set_order(env, target.other())?;
    env.set(
        "NOTE",
        &format!(
            "staged {version} in slot {target}; slot {} still boots until it is activated",
            target.other()
        ),
    )
}

fn record_image(
    env: &mut Env,
    target: Slot,
    version: &str,
    kernel_sectors: u64,
    rootfs_sectors: u64,
) -> Result<(), EnvError> {
    env.set(&target.var("VERSION"), version)?;
    env.set(&target.var("KSEC"), &kernel_sectors.to_string())?;
    env.set(&target.var("RSEC"), &rootfs_sectors.to_string())
}

fn boot_on_trial(env: &mut Env, target: Slot) -> Result<(), EnvError> {
    set_slot(env, target, true, TRIAL_TRIES)?;
    env.set(&target.var("TRIAL"), "1")?;
    set_order(env, target)
}

/// Why a staged slot cannot be activated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActivateError {
    /// The other slot holds no staged firmware.
    #[error("slot {0} holds no staged firmware ({1}): stage one first with `appliance firmware install FILE --no-activate`")]
    NothingStaged(Slot, &'static str),
    /// Environment problem.
    #[error(transparent)]
    Env(#[from] EnvError),
}

/// Boot the firmware staged in the other slot next, once, on trial.
pub fn activate(env: &mut Env, booted: Slot) -> Result<Slot, ActivateError> {
    let target = booted.other();
    let s = Slots::from_env(env);
    let info = s.get(target);
    if !info.staged || info.version.is_empty() {
        return Err(ActivateError::NothingStaged(target, info.state()));
    }
    let version = info.version.clone();
    boot_on_trial(env, target)?;
    env.set(
        "NOTE",
        &format!("activated {version} in slot {target}; it boots next, on trial"),
    )?;
    Ok(target)
}

/// The running slot is healthy: keep booting it.
pub fn mark_good(env: &mut Env, booted: Slot) -> Result<bool, EnvError> {
    let s = Slots::from_env(env);
    let info = s.get(booted);
    if s.primary == booted && info.ok && !info.trial && info.left >= GOOD_TRIES {
        return Ok(false);
    }
    let was_trial = info.trial;
    set_slot(env, booted, true, GOOD_TRIES)?;
    set_order(env, booted)?;
    if was_trial {
        env.set(
            "NOTE",
            &format!(
                "slot {booted} ({}) marked good after a healthy boot",
                info.version
            ),
        )?;
    }
    Ok(true)
}

/// Why a rollback cannot be done.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RollbackError {
    /// The other slot holds nothing bootable.
    #[error("slot {0} holds no good firmware to roll back to ({1})")]
    NothingThere(Slot, &'static str),
    /// Environment problem.
    #[error(transparent)]
    Env(#[from] EnvError),
}

/// Operator rollback: boot the other slot next (it must hold firmware that was good).
pub fn rollback(env: &mut Env, booted: Slot) -> Result<Slot, RollbackError> {
    let other = booted.other();
    let s = Slots::from_env(env);
    let info = s.get(other);
    if !info.ok {
        return Err(RollbackError::NothingThere(other, info.state()));
    }
    set_slot(env, other, true, GOOD_TRIES)?;
    set_order(env, other)?;
    env.set(
        "NOTE",
        &format!(
            "rollback requested by the operator: slot {other} ({}) boots next",
            info.version
        ),
    )?;
    Ok(other)
}

/// After boot: if GRUB started `booted` although the primary was the other slot, the
/// primary used up its attempts. Make the fallback permanent and say why.
pub fn after_boot(env: &mut Env, booted: Slot) -> Result<Option<String>, EnvError> {
    let s = Slots::from_env(env);
    if s.primary == booted {
        return Ok(None);
    }
    let failed = s.primary;
    let f = s.get(failed);
    let tries = if f.trial { TRIAL_TRIES } else { GOOD_TRIES };
    let reason = format!(
        "slot {failed} ({}) did not become healthy in {tries} boot attempt(s) (never marked good); rolled back to slot {booted} ({})",
        f.version,
        s.get(booted).version
    );
    set_slot(env, failed, false, 0)?;
    set_order(env, booted)?;
    env.set("NOTE", &reason)?;
    Ok(Some(reason))
}

/// The choice grub.cfg makes: the first slot in ORDER that is OK with attempts left, counting
/// one attempt down; `None` when neither can boot (grub.cfg then boots the primary anyway).
pub fn grub_pick(env: &mut Env) -> Result<Option<Slot>, EnvError> {
    let s = Slots::from_env(env);
    for slot in [s.primary, s.primary.other()] {
        let i = s.get(slot);
        if i.ok && i.left > 0 {
            env.set(&slot.var("LEFT"), &(i.left - 1).to_string())?;
            return Ok(Some(slot));
        }
    }
    Ok(None)
}

/// The environment of a fresh disk: slot A holds `version`, good; slot B empty.
pub fn initial_env(
    version: &str,
    kernel_sectors: u64,
    rootfs_sectors: u64,
) -> Result<Env, EnvError> {
    let mut env = Env::default();
    set_order(&mut env, Slot::A)?;
    set_slot(&mut env, Slot::A, true, GOOD_TRIES)?;
    env.set("A_VERSION", version)?;
    env.set("A_KSEC", &kernel_sectors.to_string())?;
    env.set("A_RSEC", &rootfs_sectors.to_string())?;
    set_slot(&mut env, Slot::B, false, 0)?;
    env.set("B_VERSION", "")?;
    env.set("B_KSEC", "0")?;
    env.set("B_RSEC", "0")?;
    env.set("NOTE", &format!("factory image {version} in slot A"))?;
    Ok(env)
}

/// `appliance.slot=X` from a kernel command line.
pub fn booted_slot(cmdline: &str) -> Option<Slot> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("appliance.slot="))
        .and_then(Slot::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A box: the env block survives power cuts (each change is one block write).
    fn fresh() -> Env {
        let e = initial_env("0.1.0", 100, 200).unwrap();
        // Through the codec, as on disk.
        Env::decode(&e.encode().unwrap()).unwrap()
    }

    /// Boot: GRUB picks; the firmware then notices a fallback.
    fn boot(env: &mut Env) -> (Slot, Option<String>) {
        let s = grub_pick(env).unwrap().expect("a bootable slot");
        let r = after_boot(env, s).unwrap();
        (s, r)
    }

    #[test]
    fn good_update_boots_new_slot_once_then_keeps_it_after_mark_good() {
        let mut env = fresh();
        assert_eq!(boot(&mut env), (Slot::A, None));
        mark_good(&mut env, Slot::A).unwrap();
        begin_install(&mut env, Slot::B).unwrap();
        finish_install(&mut env, Slot::B, "0.2.0", 10, 20).unwrap();
        let s = Slots::from_env(&env);
        assert_eq!(s.primary, Slot::B);
        assert_eq!(s.b.state(), "on trial (not yet marked good)");
        assert_eq!(s.a.state(), "good");
        assert_eq!(boot(&mut env), (Slot::B, None));
        assert_eq!(
            Slots::from_env(&env).b.state(),
            "on trial (not yet marked good)"
        );
        assert!(mark_good(&mut env, Slot::B).unwrap());
        assert!(Slots::from_env(&env)
            .note
            .contains("slot B (0.2.0) marked good"));
        // Marked good: it survives several reboots (and crashes) from now on.
        for _ in 0..5 {
            assert_eq!(boot(&mut env), (Slot::B, None));
            assert_eq!(Slots::from_env(&env).b.state(), "good");
            assert!(mark_good(&mut env, Slot::B).unwrap());
            assert!(
                !mark_good(&mut env, Slot::B).unwrap(),
                "second mark is a no-op"
            );
        }
        assert_eq!(Slots::from_env(&env).b.kernel_sectors, 10);
    }

    #[test]
    fn bad_image_never_marked_good_falls_back_by_itself_and_says_why() {
        let mut env = fresh();
        begin_install(&mut env, Slot::B).unwrap();
        finish_install(&mut env, Slot::B, "0.2.0", 10, 20).unwrap();
        // Trial boot: never marked good (watchdog / trial deadline reboots it).
        assert_eq!(boot(&mut env), (Slot::B, None));
        let (s, why) = boot(&mut env);
        assert_eq!(s, Slot::A);
        let why = why.expect("a reason");
        assert!(
            why.contains("slot B (0.2.0) did not become healthy in 1 boot attempt(s)"),
            "{why}"
        );
        assert!(why.contains("rolled back to slot A (0.1.0)"), "{why}");
        let st = Slots::from_env(&env);
        assert_eq!(st.primary, Slot::A);
        assert_eq!(st.b.state(), "bad");
        assert_eq!(st.note, why);
        // And it stays on A.
        mark_good(&mut env, Slot::A).unwrap();
        assert_eq!(boot(&mut env), (Slot::A, None));
        assert!(rollback(&mut env, Slot::A).is_err(), "B failed its trial");
    }

    #[test]
    fn power_cut_at_each_phase_boots_a_good_slot() {
        // While writing the slot: only begin_install is on disk.
        let mut env = fresh();
        begin_install(&mut env, Slot::B).unwrap();
        assert_eq!(boot(&mut env), (Slot::A, None));
        // Written, before the switch: same env as above; A boots.
        // During the first boot of the new slot: the cut is a boot that never marks good.
        let mut env = fresh();
        begin_install(&mut env, Slot::B).unwrap();
        finish_install(&mut env, Slot::B, "0.2.0", 1, 1).unwrap();
        let _ = grub_pick(&mut env).unwrap(); // B's attempt, cut
        let (s, why) = boot(&mut env);
        assert_eq!(s, Slot::A);
        assert!(why.is_some());
        // Right after being marked good: B again.
        let mut env = fresh();
        finish_install(&mut env, Slot::B, "0.2.0", 1, 1).unwrap();
        boot(&mut env);
        mark_good(&mut env, Slot::B).unwrap();
        assert_eq!(boot(&mut env), (Slot::B, None));
    }

    #[test]
    fn operator_rollback_and_refusals() {
        let mut env = fresh();
        assert!(matches!(
            rollback(&mut env, Slot::A),
            Err(RollbackError::NothingThere(Slot::B, "empty"))
        ));
        finish_install(&mut env, Slot::B, "0.2.0", 1, 1).unwrap();
        boot(&mut env);
        mark_good(&mut env, Slot::B).unwrap();
        assert_eq!(rollback(&mut env, Slot::B).unwrap(), Slot::A);
        assert!(Slots::from_env(&env).note.contains("rollback requested"));
        assert_eq!(boot(&mut env), (Slot::A, None));
    }

    #[test]
    fn staged_slot_survives_power_cuts_unbooted_until_activated() {
        let mut env = fresh();
        assert_eq!(boot(&mut env), (Slot::A, None));
        mark_good(&mut env, Slot::A).unwrap();
        assert!(matches!(
            activate(&mut env, Slot::A),
            Err(ActivateError::NothingStaged(Slot::B, "empty"))
        ));
        begin_install(&mut env, Slot::B).unwrap();
        stage_install(&mut env, Slot::B, "0.2.0", 10, 20).unwrap();
        // Power cut after staging: the block on disk is all that is left.
        let mut env = Env::decode(&env.encode().unwrap()).unwrap();
        let s = Slots::from_env(&env);
        assert_eq!(s.primary, Slot::A);
        assert_eq!(s.b.state(), "staged (not bootable until activated)");
        assert_eq!((s.b.version.as_str(), s.b.kernel_sectors), ("0.2.0", 10));
        assert!(s.note.contains("staged 0.2.0 in slot B"), "{}", s.note);
        for _ in 0..3 {
            assert_eq!(boot(&mut env), (Slot::A, None));
            mark_good(&mut env, Slot::A).unwrap();
        }
        assert!(
            matches!(
                rollback(&mut env, Slot::A),
                Err(RollbackError::NothingThere(Slot::B, _))
            ),
            "a staged slot is not a rollback target"
        );
        assert_eq!(activate(&mut env, Slot::A).unwrap(), Slot::B);
        let s = Slots::from_env(&env);
        assert_eq!(s.b.state(), "on trial (not yet marked good)");
        assert!(!s.b.staged);
        assert!(s.note.contains("activated 0.2.0 in slot B"), "{}", s.note);
        assert!(
            matches!(
                activate(&mut env, Slot::A),
                Err(ActivateError::NothingStaged(..))
            ),
            "activating twice is refused"
        );
        assert_eq!(boot(&mut env), (Slot::B, None));
        assert!(mark_good(&mut env, Slot::B).unwrap());
        assert_eq!(boot(&mut env), (Slot::B, None));
    }

    #[test]
    fn staging_over_a_staged_slot_and_reinstalling_clear_the_flag() {
        let mut env = fresh();
        stage_install(&mut env, Slot::B, "0.2.0", 1, 1).unwrap();
        begin_install(&mut env, Slot::B).unwrap();
        let s = Slots::from_env(&env);
        assert!(!s.b.staged);
        assert_eq!(s.b.state(), "empty", "a slot being written is never staged");
        finish_install(&mut env, Slot::B, "0.3.0", 1, 1).unwrap();
        assert!(!Slots::from_env(&env).b.staged);
        assert!(matches!(
            activate(&mut env, Slot::A),
            Err(ActivateError::NothingStaged(Slot::B, _))
        ));
    }

    #[test]
    fn a_good_slot_that_fails_all_its_attempts_names_them() {
        let mut env = fresh();
        finish_install(&mut env, Slot::B, "0.2.0", 1, 1).unwrap();
        boot(&mut env);
        mark_good(&mut env, Slot::B).unwrap();
        for _ in 0..GOOD_TRIES {
            assert_eq!(grub_pick(&mut env).unwrap(), Some(Slot::B));
        }
        let (s, why) = boot(&mut env);
        assert_eq!(s, Slot::A);
        let why = why.unwrap();
        assert!(
            why.contains("slot B (0.2.0) did not become healthy in 3 boot attempt(s)"),
            "{why}"
        );
    }

    #[test]
    fn garbage_env_boots_nothing_rather_than_a_random_slot() {
        let mut env = Env::default();
        env.set("ORDER", "X Y").unwrap();
        assert_eq!(grub_pick(&mut env).unwrap(), None);
        assert_eq!(Slots::from_env(&env).a.state(), "empty");
    }
}
