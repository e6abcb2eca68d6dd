//! Menu item 5: probe settings.

use super::*;

impl<P: Port, D: Daemon> Menu<P, D> {
    pub(super) fn probe(&mut self) -> R<()> {
        let Some(c) = self.candidate() else {
            return Ok(());
        };
        let Some(i) = self.pick_service(&c)? else {
            return Ok(());
        };
        let p = c.services[i].probe.clone();
        self.port.write(&format!(
            "Probe settings of '{}' (SIP OPTIONS). Press Enter to keep the value in brackets.\n",
            c.services[i].name
        ));
        let en = self.ask(
            "Probing enabled y/n",
            &fields::show_yn(p.enabled),
            fields::yes_no,
        )?;
        // Ranges come from validation, so Enter on any stored (valid) value keeps it.
        use crate::config::validate::{
            PROBE_COUNT_RANGE as CN, PROBE_INTERVAL_RANGE_MS as IV, PROBE_TIMEOUT_RANGE_MS as TO,
        };
        let iv = self.ask("Interval in ms", &p.interval_ms.to_string(), |s| {
            fields::number(s, *IV.start(), *IV.end(), "interval")
        })?;
        let to = self.ask("Timeout in ms", &p.timeout_ms.to_string(), |s| {
            fields::number(s, *TO.start(), *TO.end(), "timeout")
        })?;
        let rise = self.ask("Rise (successes to mark up)", &p.rise.to_string(), |s| {
            fields::number(s, *CN.start(), *CN.end(), "rise count")
        })?;
        let fall = self.ask("Fall (failures to mark down)", &p.fall.to_string(), |s| {
            fields::number(s, *CN.start(), *CN.end(), "fall count")
        })?;
        let acc = self.ask(
            "Accepted reply codes",
            &fields::show_codes(&p.accept),
            fields::codes,
        )?;
        let from = self.ask("From URI", &p.from_uri, |s| fields::sip_uri(s, false))?;
        let to_cur = if p.to_uri.is_empty() {
            "-"
        } else {
            p.to_uri.as_str()
        };
        let to_uri = self.ask("To URI ('-' = the server)", to_cur, |s| {
            fields::sip_uri(s, true)
        })?;
        let ua = self.ask("User-Agent", &p.user_agent, fields::header_value)?;
        let fail = self.ask(
            "On failure weight0|remove",
            &fields::show_failure(p.on_failure),
            fields::failure_action,
        )?;
        let mut ch = Changes::default();
        ch.note("enabled", fields::show_yn(p.enabled), fields::show_yn(en));
        ch.note("interval ms", p.interval_ms, iv);
        ch.note("timeout ms", p.timeout_ms, to);
        ch.note("rise", p.rise, rise);
        ch.note("fall", p.fall, fall);
        ch.note(
            "accept",
            fields::show_codes(&p.accept),
            fields::show_codes(&acc),
        );
        ch.note("From", &p.from_uri, &from);
        ch.note("To", to_cur, if to_uri.is_empty() { "-" } else { &to_uri });
        ch.note("User-Agent", &p.user_agent, &ua);
        ch.note(
            "on failure",
            fields::show_failure(p.on_failure),
            fields::show_failure(fail),
        );
        let mut n = c;
        let q = &mut n.services[i].probe;
        q.enabled = en;
        q.interval_ms = iv;
        q.timeout_ms = to;
        q.rise = rise;
        q.fall = fall;
        q.accept = acc.into_iter().collect();
        q.from_uri = bounded(&from);
        q.to_uri = bounded(&to_uri);
        q.user_agent = bounded(&ua);
        q.on_failure = fail;
        self.stage(n, ch)
    }
}
