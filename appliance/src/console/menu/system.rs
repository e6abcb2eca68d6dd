//! Menu items 8-13: recent events, password, factory reset, reboot and power, shell, keepalived.conf import.

use super::*;

impl<P: Port, D: Daemon> Menu<P, D> {
    pub(super) fn logs(&mut self) -> R<()> {
        if let Some(Reply::Logs(ev)) = self.req(Request::Logs { n: 100 }) {
            self.port.write("\nRecent events (oldest first)\n");
            if ev.is_empty() {
                self.port.write("(no events)\n");
            }
            let lines: Vec<String> = ev
                .iter()
                .map(|e| format!("[{:>7}s] {:<5} {}", e.uptime_s, e.level, e.message))
                .collect();
            self.page(&lines)?;
        }
        Ok(())
    }

    // ---- 9: password -----------------------------------------------------------------------------

    pub(super) fn change_password(&mut self) -> R<()> {
        self.port.write("\nChange the console password\n");
        let old = self.secret("Current password: ")?;
        let new = self.new_password()?;
        if let Some(Reply::Done { message }) = self.req(Request::SetPassword { old, new }) {
            self.port.write(&format!("{message}\n"));
        }
        Ok(())
    }

    // ---- 10, 11: reset and power -----------------------------------------------------------------

    pub(super) fn factory_reset(&mut self) -> R<()> {
        self.port.write(
            "\nFactory reset erases the saved config (interfaces, services, password)\n\
             and reboots on factory defaults. Calls in progress are dropped.\n",
        );
        let s = self.line("Type 'yes' to erase and reboot, anything else cancels: ")?;
        if s == "yes" {
            if let Some(Reply::Done { message }) = self.req(Request::FactoryReset {
                confirm: true,
                reboot: true,
            }) {
                self.port.write(&format!("{message}\n"));
            }
        } else {
            self.port.write("Cancelled; nothing changed.\n");
        }
        Ok(())
    }

    pub(super) fn power(&mut self) -> R<()> {
        self.port
            .write("\nReboot / power off\n  1) Reboot\n  2) Power off\n  0) Back\n");
        let (req, what) = match self.line("Power option: ")?.as_str() {
            "1" => (Request::Reboot, "reboot"),
            "2" => (Request::PowerOff, "power off"),
            "0" | "" => return Ok(()),
            other => {
                self.say(&format!("'{other}' is not an option: enter 0 to 2"));
                return Ok(());
            }
        };
        self.refresh();
        if self.status.unsaved {
            self.port.write(
                "Note: the running config has changes not saved to flash; they will be lost.\n",
            );
        }
        let s = self.line(&format!(
            "Calls in progress are dropped. Type 'yes' to {what} now: "
        ))?;
        if s != "yes" {
            self.port.write("Cancelled.\n");
            return Ok(());
        }
        if let Some(Reply::Done { message }) = self.req(req) {
            self.port.write(&format!("{message}\n"));
        }
        Ok(())
    }

    // ---- 12: shell -------------------------------------------------------------------------------

    pub(super) fn shell(&mut self) -> R<()> {
        self.port
            .write("\nThe shell needs the console password again.\n");
        if !self.check_password(self.idle)? {
            self.port.write("No shell.\n");
            return Ok(());
        }
        self.port
            .write("Starting /bin/sh; type 'exit' to return to the menu.\n");
        if let Err(m) = self.port.shell() {
            self.say(&m);
        }
        Ok(())
    }

    // ---- 13: keepalived import -------------------------------------------------------------------

    pub(super) fn import(&mut self) -> R<()> {
        self.port.write(
            "\nPaste keepalived.conf now, then a line containing only '.' (Ctrl-C cancels).\n",
        );
        let mut text = String::new();
        loop {
            let l = match self.port.read_line(false, self.idle) {
                Input::Line(l) => l,
                Input::Interrupt => return Err(Esc::Interrupt),
                Input::Timeout => return Err(Esc::Idle),
                Input::Eof => return Err(Esc::Eof),
            };
            if l.trim() == "." {
                break;
            }
            if text.len() + l.len() + 1 > MAX_PASTE {
                self.say(&format!(
                    "the paste is longer than {MAX_PASTE} bytes; cancelled, nothing changed"
                ));
                return Ok(());
            }
            text.push_str(&l);
            text.push('\n');
        }
        let Some(Reply::Import(info)) = self.req(Request::ImportKeepalived { text }) else {
            return Ok(());
        };
        if !info.toml.is_empty() {
            self.port.write("Result (TOML):\n");
            let lines: Vec<String> = info.toml.lines().map(str::to_owned).collect();
            self.page(&lines)?;
        }
        if info.unmapped.is_empty() {
            self.port.write("Unmapped lines: none\n");
        } else {
            self.port
                .write(&format!("Unmapped lines ({}):\n", info.unmapped.len()));
            let lines: Vec<String> = info
                .unmapped
                .iter()
                .map(|u| format!("  line {}: {} -- {}", u.line, u.text.trim(), u.reason))
                .collect();
            self.page(&lines)?;
        }
        self.show_validation(&info.validation);
        let Some(cfg) = info.config else {
            self.port.write("Nothing to stage; nothing changed.\n");
            return Ok(());
        };
        if !self.confirm("Replace the candidate config with this result")? {
            self.port.write("Nothing changed.\n");
            return Ok(());
        }
        if let Some(Reply::Validation(v)) = self.req(Request::SetCandidate {
            config: Box::new(cfg),
        }) {
            self.after_stage(&v)?;
        }
        Ok(())
    }
}
