//! Menu item 6: the candidate against the running config: diff, apply, save, revert.

use super::*;

impl<P: Port, D: Daemon> Menu<P, D> {
    pub(super) fn changes(&mut self) -> R<()> {
        loop {
            self.refresh();
            let st = &self.status;
            let cand = if st.unapplied {
                "has changes that are not applied"
            } else {
                "same as running"
            };
            let errs = if st.candidate_errors > 0 {
                format!(" ({} problems)", st.candidate_errors)
            } else {
                String::new()
            };
            let run = if st.unsaved {
                "NOT saved to flash"
            } else {
                "saved to flash"
            };
            self.port.write(&format!(
                "\nChanges\n  Candidate: {cand}{errs}\n  Running:   {run}\n\
                 \x20 1) Show diff (running -> candidate)\n\
                 \x20 2) Apply the candidate\n\
                 \x20 3) Save the running config to flash\n\
                 \x20 4) Revert: discard candidate changes\n\
                 \x20 5) Revert: load the saved config into the candidate\n\
                 \x20 0) Back\n"
            ));
            match self.line("Changes option: ")?.as_str() {
                "0" | "" => return Ok(()),
                "1" => {
                    if let Some(Reply::Diff(d)) = self.req(Request::Diff) {
                        if d.lines.is_empty() {
                            self.port
                                .write("No differences between running and candidate.\n");
                        } else {
                            self.page(&d.lines)?;
                        }
                    }
                }
                "2" => {
                    if self.confirm("Apply the candidate now")? {
                        self.apply()?;
                    }
                }
                "3" => {
                    if self.confirm("Save the running config to flash")? {
                        self.save();
                    }
                }
                "4" => self.revert(Which::Running, "Discard all candidate changes")?,
                "5" => self.revert(Which::Saved, "Load the saved config into the candidate")?,
                other => self.say(&format!("'{other}' is not an option: enter 0 to 5")),
            }
        }
    }

    pub(super) fn revert(&mut self, from: Which, q: &str) -> R<()> {
        if !self.confirm(q)? {
            self.port.write("Nothing changed.\n");
            return Ok(());
        }
        if let Some(Reply::Done { message }) = self.req(Request::Revert { from }) {
            self.port.write(&format!("{}\n", fit(&message)));
        }
        Ok(())
    }
}
