//! Menu item 17: firmware update. Both slots and the last event, an install from a path or
//! URL run by the daemon (polled for progress), reboot into the new firmware and rollback,
//! each behind a confirmation.

use crate::control::proto::{FirmwareAction, FirmwareInfo, FirmwareJob};

use super::*;

/// Longest wait for one install, in polls (the daemon's own limits end it sooner).
const MAX_POLLS: u32 = 7200;

/// The screen: slots, the last event and the choices (pure).
pub(super) fn screen(fw: &FirmwareInfo) -> String {
    let mut out = String::from("\nFirmware update\n");
    if fw.slots.is_empty() {
        out.push_str("  this box has no A/B firmware slots\n");
    }
    for s in &fw.slots {
        let mut tags = Vec::new();
        if s.booted {
            tags.push("running");
        }
        if s.next {
            tags.push("boots next");
        }
        let version = if s.version.is_empty() {
            "-"
        } else {
            &s.version
        };
        out.push_str(&format!(
            "  slot {}  {:<10} {:<8} {}\n",
            s.name,
            version,
            s.state,
            tags.join(", ")
        ));
    }
    let last = if fw.last_event.is_empty() {
        "none"
    } else {
        &fw.last_event
    };
    out.push_str(&fit(&format!("  last event: {last}")));
    out.push('\n');
    out.push_str(
        "  1) Install from a file or URL\n  2) Reboot into the new firmware\n  3) Roll back to the other slot\n  0) Back\n",
    );
    out
}

/// One progress line of a job: step, percent, bytes.
pub(super) fn progress(j: &FirmwareJob) -> String {
    if j.total == 0 {
        return fit(&format!("  {}", j.step));
    }
    fit(&format!(
        "  {:>3}%  {} of {} bytes  ({})",
        j.done * 100 / j.total,
        j.done,
        j.total,
        j.step
    ))
}

impl<P: Port, D: Daemon> Menu<P, D> {
    fn fw(&mut self, action: FirmwareAction) -> Option<FirmwareInfo> {
        match self.req(Request::Firmware { action })? {
            Reply::Firmware(f) => Some(*f),
            other => {
                self.say(&format!("unexpected answer: {other:?}"));
                None
            }
        }
    }

    pub(super) fn firmware(&mut self) -> R<()> {
        loop {
            let Some(fw) = self.fw(FirmwareAction::Status) else {
                return Ok(());
            };
            self.port.write(&screen(&fw));
            match self.line("Firmware option: ")?.as_str() {
                "1" => self.fw_install()?,
                "2" => self.fw_reboot(&fw)?,
                "3" => self.fw_rollback()?,
                "0" | "" => return Ok(()),
                other => {
                    let shown: String = other.chars().take(20).collect();
                    self.say(&format!("'{shown}' is not an option: enter 0 to 3"));
                }
            }
        }
    }

    fn fw_install(&mut self) -> R<()> {
        let source = self.line("Bundle path on the box or http(s):// URL (Enter = back): ")?;
        if source.is_empty() {
            return Ok(());
        }
        let Some(fw) = self.fw(FirmwareAction::Install {
            source,
            force: false,
        }) else {
            self.port.write("Nothing was installed.\n");
            return Ok(());
        };
        self.port.write(&format!("{}\n", fit(&fw.message)));
        let mut last = String::new();
        for _ in 0..MAX_POLLS {
            if self.port.pause(self.timing.drain_poll) == Input::Eof {
                return Err(Esc::Eof);
            }
            let Some(fw) = self.fw(FirmwareAction::Status) else {
                return Ok(());
            };
            let Some(j) = fw.job.clone() else {
                self.say("the daemon has no install running (was it restarted?)");
                return Ok(());
            };
            let line = progress(&j);
            if line != last {
                self.port.write(&format!("{line}\n"));
                last = line;
            }
            if let Some(e) = &j.error {
                self.say(e);
                self.port
                    .write("The install failed; the running firmware is unchanged.\n");
                return Ok(());
            }
            if let Some(r) = &j.result {
                self.port.write(&format!("{}\n", fit(r)));
                return self.fw_reboot(&fw);
            }
        }
        self.say("the install is still running; come back to this screen to see its end");
        Ok(())
    }

    fn fw_reboot(&mut self, fw: &FirmwareInfo) -> R<()> {
        let Some(next) = fw.slots.iter().find(|s| s.next && !s.booted) else {
            self.say("no new firmware is waiting: the running slot boots next (install one first)");
            return Ok(());
        };
        let s = self.line(&format!(
            "Reboot into slot {} ({}, {}) now? Calls in progress are dropped. Type 'yes': ",
            next.name, next.version, next.state
        ))?;
        if s != "yes" {
            self.port.write("Cancelled; not rebooting.\n");
            return Ok(());
        }
        if let Some(Reply::Done { message }) = self.req(Request::Reboot) {
            self.port.write(&format!("{message}\n"));
        }
        Ok(())
    }

    fn fw_rollback(&mut self) -> R<()> {
        let s = self.line("Boot the other slot next (rollback)? Type 'yes': ")?;
        if s != "yes" {
            self.port.write("Cancelled; nothing changed.\n");
            return Ok(());
        }
        if let Some(fw) = self.fw(FirmwareAction::Rollback) {
            self.port.write(&format!("{}\n", fit(&fw.message)));
            return self.fw_reboot(&fw);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{drive, fake, lines};
    use super::*;

    #[test]
    fn screen_shows_both_slots_and_the_last_event() {
        let f = fake(true);
        let fw = f.state.lock().unwrap().firmware.clone();
        let s = screen(&fw);
        assert!(
            s.contains("slot A  0.1.0      good     running, boots next"),
            "{s}"
        );
        assert!(s.contains("slot B  -          empty"), "{s}");
        assert!(s.contains("last event: none"), "{s}");
        assert!(s.lines().all(|l| l.len() <= 80));
    }

    #[test]
    fn install_from_a_url_shows_progress_then_reboots_only_after_yes() {
        let f = fake(true);
        let port = drive(
            &f,
            lines(&["17", "1", "http://192.0.2.7/fw.bundle", "no", "0", "0"]),
        );
        let out = &port.out;
        assert!(
            out.contains("install of http://192.0.2.7/fw.bundle started"),
            "{out}"
        );
        assert!(out.contains(" 50%  500 of 1000 bytes"), "{out}");
        assert!(out.contains("100%  1000 of 1000 bytes"), "{out}");
        assert!(out.contains("installed 0.2.0 into slot B"), "{out}");
        assert!(
            out.contains("Reboot into slot B (0.2.0, trial) now?"),
            "{out}"
        );
        assert!(out.contains("Cancelled; not rebooting."), "{out}");
        let st = f.state.lock().unwrap();
        assert!(st.actions.is_empty(), "{:?}", st.actions);
        assert!(st
            .logs
            .iter()
            .any(|l| l.message.contains("firmware installed")));
        // The screen after the install shows the new slot and the event.
        assert!(
            out.contains("slot B  0.2.0      trial    boots next"),
            "{out}"
        );
        assert!(
            out.contains("last event: installed 0.2.0 into slot B"),
            "{out}"
        );
    }

    #[test]
    fn reboot_into_the_new_firmware_after_yes() {
        let f = fake(true);
        drive(&f, lines(&["17", "1", "http://192.0.2.7/fw.bundle", "yes"]));
        assert_eq!(f.state.lock().unwrap().actions, vec!["reboot".to_string()]);
    }

    #[test]
    fn bad_sources_are_refused_and_change_nothing() {
        let f = fake(true);
        let port = drive(
            &f,
            lines(&[
                "17",
                "1",
                "/tmp/no-such-dir/fw.bundle",
                "1",
                "http://192.0.2.7/missing",
                "2",
                "9",
                "0",
                "0",
            ]),
        );
        let out = &port.out;
        assert!(
            out.contains("! /tmp/no-such-dir/fw.bundle: No such file"),
            "{out}"
        );
        assert!(out.contains("Nothing was installed."), "{out}");
        assert!(out.contains("answered HTTP 404"), "{out}");
        assert!(out.contains("the running firmware is unchanged"), "{out}");
        assert!(out.contains("no new firmware is waiting"), "{out}");
        assert!(out.contains("'9' is not an option: enter 0 to 3"), "{out}");
        let st = f.state.lock().unwrap();
        assert!(st.actions.is_empty());
        assert_eq!(st.firmware.slots[1].state, "empty");
    }

    #[test]
    fn rollback_needs_yes_and_an_installed_slot() {
        let f = fake(true);
        let port = drive(&f, lines(&["17", "3", "no", "3", "yes", "0", "0"]));
        assert!(
            port.out.contains("Cancelled; nothing changed."),
            "{}",
            port.out
        );
        assert!(port.out.contains("slot B is empty"), "{}", port.out);
        let f = fake(true);
        let port = drive(
            &f,
            lines(&[
                "17",
                "1",
                "http://192.0.2.7/fw.bundle",
                "no",
                "3",
                "yes",
                "no",
                "0",
                "0",
            ]),
        );
        assert!(
            port.out
                .contains("rollback to slot B requested by the operator: reboot to run it"),
            "{}",
            port.out
        );
        let st = f.state.lock().unwrap();
        assert!(st
            .logs
            .iter()
            .any(|l| l.message.contains("firmware rollback requested")));
        assert!(st.actions.is_empty());
    }
}
