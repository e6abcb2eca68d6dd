//! The console while nobody can log in: the config store is faulty and no password is known
//! since this boot (the daemon never falls back to the factory config's password). It shows
//! the fault and what someone at the port can do; the only action is erasing the store.
//!
//! Why an erase behind a typed word, and nothing gentler: whoever holds the serial port can
//! power-cycle the box (docs/security.md), so no boot-time window would prove more presence
//! than the port itself; and this state only arises when the fault is found at boot, when
//! the kernel holds no production state, so the erase loses only the unusable store.

use super::*;

/// The word that erases the store from the locked console.
pub(super) const ERASE_WORD: &str = "erase";

impl<P: Port, D: Daemon> Menu<P, D> {
    /// Show the fault and the recovery until the store is usable again (then `Ok`, and the
    /// session starts over with a login) or the terminal goes away.
    pub(super) fn locked_out(&mut self) -> R<()> {
        loop {
            let Some(why) = self.status.login_blocked.clone() else {
                return Ok(());
            };
            self.port.write(&screens::login_blocked(&self.status, &why));
            let answer = match self.read(
                &format!(
                    "Type '{ERASE_WORD}' to erase the store and reboot, or Enter to check again: "
                ),
                false,
                None,
            ) {
                Ok(a) => a,
                Err(Esc::Eof) => return Err(Esc::Eof),
                Err(_) => String::new(),
            };
            if answer == ERASE_WORD {
                if let Some(Reply::Done { message }) = self.req(Request::FactoryReset {
                    confirm: true,
                    reboot: true,
                }) {
                    self.port.write(&format!("{message}\n"));
                }
            } else if !answer.is_empty() {
                self.say(&format!(
                    "nothing was erased: type exactly '{ERASE_WORD}' to erase the store"
                ));
            }
            self.connect()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{lines, Script};
    use super::super::{Input, Menu};
    use crate::config::Config;
    use crate::control::fake::FakeDaemon;
    use std::sync::Arc;

    /// A store fault found at boot, no password known: no prompt, no first-boot password,
    /// the fault and the recovery instead; only the typed word erases.
    #[test]
    fn store_fault_without_a_known_password_admits_nobody() {
        let f = Arc::new(FakeDaemon::new(Config::builtin_default()));
        let dir = tempfile::tempdir().unwrap();
        f.state.lock().unwrap().session.keep_password(
            dir.path().join("console-hash"),
            Some("both slots are corrupt"),
            "",
        );
        let mut steps = lines(&["", "longpassword", "longpassword", "Erase", "0"]);
        steps.extend([Input::Interrupt, Input::Timeout]);
        steps.extend(lines(&["erase"]));
        let port = Script {
            inputs: steps.into(),
            fake: Some(f.clone()),
            ..Default::default()
        };
        let mut m = Menu::new(port, super::super::tests::Direct(f.clone()));
        m.run();
        let out = &m.port.out;
        for msg in [
            "console is locked: nobody can log in",
            "The config store is faulty: both slots are corrupt",
            "Type 'erase' to erase the store and reboot",
            "nothing was erased: type exactly 'erase'",
            "stored config erased; rebooting on factory defaults",
        ] {
            assert!(out.contains(msg), "missing {msg:?} in:\n{out}");
        }
        for never in [
            "No console password is set",
            "Password: ",
            "Enter an option",
        ] {
            assert!(!out.contains(never), "{never:?} shown:\n{out}");
        }
        let st = f.state.lock().unwrap();
        assert_eq!(
            st.actions,
            vec!["factory-reset"],
            "only the exact word erases"
        );
        assert!(!st.session.password_set());
    }
}
