//! Drives the operator console (`appliance console` on ttyS0) the way a person
//! at a serial terminal does: wait for a prompt, type an answer and Enter.
//! Prompts are the console's own texts (appliance/src/console/menu.rs,
//! docs/console.md); a prompt that does not come fails with the transcript.

use std::time::Duration;

use crate::vm::{Pattern, Serial, VmError};

/// The main menu prompt (`console::screens::MAIN_PROMPT`).
pub const MAIN_PROMPT: &str = "Enter an option: ";
/// First-boot / change password prompt.
pub const NEW_PASSWORD: &str = "New password (8-128 characters): ";
/// Password confirmation prompt.
pub const REPEAT_PASSWORD: &str = "Repeat the new password: ";
/// Login prompt.
pub const PASSWORD: &str = "Password: ";

/// The header block above the main menu.
#[derive(Clone, Debug)]
pub struct Header {
    /// Hostname (first word of the first line).
    pub hostname: String,
    /// The "changes: ..." text (e.g. "none", "UNSAVED").
    pub changes: String,
    /// The whole header and menu text before the prompt.
    pub text: String,
}

/// An expect-style driver over the console serial port.
pub struct ConsoleDriver<'a> {
    port: &'a mut Serial,
    /// Bound for each wait (TCG is slow; argon2 hashing takes seconds).
    pub timeout: Duration,
}

impl<'a> ConsoleDriver<'a> {
    /// Drive `port` (the VM's ttyS0).
    pub fn new(port: &'a mut Serial) -> Self {
        ConsoleDriver {
            port,
            timeout: Duration::from_secs(90),
        }
    }

    /// Wait for `p` after the cursor; returns the matched text.
    pub fn expect(&mut self, p: impl Into<Pattern>) -> Result<String, VmError> {
        self.port.wait_for(p, self.timeout)
    }

    /// Wait for the first of several literal texts; returns its index.
    pub fn expect_any(&mut self, options: &[&str]) -> Result<usize, VmError> {
        let alt: Vec<String> = options.iter().map(|o| regex::escape(o)).collect();
        let got = self.expect(Pattern::re(&alt.join("|")))?;
        Ok(options.iter().position(|o| *o == got).unwrap_or(0))
    }

    /// Type `text` and Enter.
    pub fn line(&mut self, text: &str) -> Result<(), VmError> {
        self.port.send(format!("{text}\r").as_bytes())
    }

    /// Wait for `prompt`, then type `text` and Enter.
    pub fn answer(&mut self, prompt: &str, text: &str) -> Result<(), VmError> {
        self.expect(prompt)?;
        self.line(text)
    }

    /// Wait for a prompt starting with `label` and ending in "]: " (a field
    /// with its current value in brackets), then type `text`; returns the
    /// current value shown.
    pub fn field(&mut self, label: &str, text: &str) -> Result<String, VmError> {
        let re = format!(r"{} \[([^\]\r\n]*)\]: ", regex::escape(label));
        let g = self.port.wait_for_match(Pattern::re(&re), self.timeout)?;
        self.line(text)?;
        Ok(g.get(1).cloned().unwrap_or_default())
    }

    /// Press Ctrl-C.
    pub fn ctrl_c(&mut self) -> Result<(), VmError> {
        self.port.send(b"\x03")
    }

    /// First boot: wait for the forced password screen and set `pw`.
    pub fn first_password(&mut self, pw: &str) -> Result<(), VmError> {
        self.expect("No console password is set (first boot).")?;
        self.answer(NEW_PASSWORD, pw)?;
        self.answer(REPEAT_PASSWORD, pw)?;
        self.expect("password changed and saved to flash")?;
        Ok(())
    }

    /// Locked console: log in with `pw`.
    pub fn login(&mut self, pw: &str) -> Result<(), VmError> {
        self.answer(PASSWORD, pw)
    }

    /// Wait for the next main menu; returns its header.
    pub fn main_menu(&mut self) -> Result<Header, VmError> {
        let re = format!(
            r"([^\r\n]*  appliance [^\r\n]*changes: ([^\r\n]*))\r?\n((?s:.*?)){}",
            regex::escape(MAIN_PROMPT)
        );
        let g = self.port.wait_for_match(Pattern::re(&re), self.timeout)?;
        let first = g.get(1).cloned().unwrap_or_default();
        Ok(Header {
            hostname: first.split_whitespace().next().unwrap_or("").to_string(),
            changes: g.get(2).cloned().unwrap_or_default().trim().to_string(),
            text: format!("{first}\n{}", g.get(3).cloned().unwrap_or_default()),
        })
    }

    /// From the main menu prompt: choose item `n`.
    pub fn choose(&mut self, n: &str) -> Result<(), VmError> {
        self.line(n)
    }
}
