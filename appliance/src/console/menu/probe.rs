//! Menu item 5: probe settings.

use super::form::{Field, Rules};
use super::*;
use crate::config::ProbeSettings;

/// The probe settings of service `i` of `c`.
fn settings(c: &Config, i: usize) -> &ProbeSettings {
    &c.services[i].probe
}

impl<P: Port, D: Daemon> Menu<P, D> {
    pub(super) fn probe(&mut self) -> R<()> {
        let Some(c) = self.candidate() else {
            return Ok(());
        };
        let Some(i) = self.pick_service(&c)? else {
            return Ok(());
        };
        self.port.write(&format!(
            "Probe settings of '{}' (SIP OPTIONS). Press Enter to keep the value in brackets.\n",
            c.services[i].name
        ));
        // Ranges come from validation, so Enter on any stored (valid) value keeps it.
        use crate::config::validate::{
            PROBE_COUNT_RANGE as CN, PROBE_INTERVAL_RANGE_MS as IV, PROBE_TIMEOUT_RANGE_MS as TO,
        };
        let rows = [
            Field::new(
                "Probing enabled y/n",
                "enabled",
                move |c| fields::show_yn(settings(c, i).enabled),
                fields::yes_no,
                move |c, v| c.services[i].probe.enabled = v,
            ),
            Field::new(
                "Interval in ms",
                "interval ms",
                move |c| settings(c, i).interval_ms.to_string(),
                |s| fields::number(s, *IV.start(), *IV.end(), "interval"),
                move |c, v| c.services[i].probe.interval_ms = v,
            ),
            Field::new(
                "Timeout in ms",
                "timeout ms",
                move |c| settings(c, i).timeout_ms.to_string(),
                |s| fields::number(s, *TO.start(), *TO.end(), "timeout"),
                move |c, v| c.services[i].probe.timeout_ms = v,
            ),
            Field::new(
                "Rise (successes to mark up)",
                "rise",
                move |c| settings(c, i).rise.to_string(),
                |s| fields::number(s, *CN.start(), *CN.end(), "rise count"),
                move |c, v| c.services[i].probe.rise = v,
            ),
            Field::new(
                "Fall (failures to mark down)",
                "fall",
                move |c| settings(c, i).fall.to_string(),
                |s| fields::number(s, *CN.start(), *CN.end(), "fall count"),
                move |c, v| c.services[i].probe.fall = v,
            ),
            Field::new(
                "Accepted reply codes",
                "accept",
                move |c| fields::show_codes(&settings(c, i).accept),
                fields::codes,
                move |c, v| c.services[i].probe.accept = v.into_iter().collect(),
            ),
            Field::new(
                "From URI",
                "From",
                move |c| settings(c, i).from_uri.to_string(),
                |s| fields::sip_uri(s, false),
                move |c, v| c.services[i].probe.from_uri = bounded(&v),
            ),
            Field::new(
                "To URI ('-' = the server)",
                "To",
                move |c| {
                    let to = &settings(c, i).to_uri;
                    if to.is_empty() {
                        "-".into()
                    } else {
                        to.to_string()
                    }
                },
                |s| fields::sip_uri(s, true),
                move |c, v| c.services[i].probe.to_uri = bounded(&v),
            ),
            Field::new(
                "User-Agent",
                "User-Agent",
                move |c| settings(c, i).user_agent.to_string(),
                fields::header_value,
                move |c, v| c.services[i].probe.user_agent = bounded(&v),
            ),
            Field::new(
                "On failure weight0|remove",
                "on failure",
                move |c| fields::show_failure(settings(c, i).on_failure),
                fields::failure_action,
                move |c, v| c.services[i].probe.on_failure = v,
            ),
        ];
        let (n, ch) = self.form(&c, &rows, Rules::ALL)?;
        self.stage(n, ch)
    }
}
