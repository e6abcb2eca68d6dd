//! Menu item 15: management access (`[management]`): where management services listen,
//! which sources may connect, and the metrics endpoint.
//!
//! Every value is checked by `config::validate` as it is entered (the problems whose
//! path is the field's); nothing is restated here.

use super::form::{Field, Rules};
use super::{Daemon, Menu, Port, R};
use crate::config::{bounded, validate, Config, Ipv4Net, ManagementListen, MAX_MGMT_ALLOW};
use crate::console::fields::{self, Parsed};

fn listen(s: &str) -> Parsed<ManagementListen> {
    match s.to_ascii_lowercase().as_str() {
        "lan" => Ok(ManagementListen::Lan),
        "interface" | "if" => Ok(ManagementListen::Interface),
        "wan" => Ok(ManagementListen::Wan),
        _ => Err(format!("'{s}': enter lan, interface or wan")),
    }
}

/// Comma-separated prefixes, or `none`.
fn allow_list(s: &str) -> Parsed<Vec<Ipv4Net>> {
    if s.eq_ignore_ascii_case("none") || s == "-" {
        return Ok(Vec::new());
    }
    let v: Vec<Ipv4Net> = s
        .split(',')
        .map(|p| p.trim().parse::<Ipv4Net>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    if v.len() > MAX_MGMT_ALLOW {
        return Err(format!(
            "{} prefixes given; at most {MAX_MGMT_ALLOW} fit, use wider prefixes",
            v.len()
        ));
    }
    Ok(v)
}

fn show_addr(a: Option<Ipv4Net>) -> String {
    a.map_or_else(|| "none".into(), |a| a.to_string())
}

impl<P: Port, D: Daemon> Menu<P, D> {
    pub(super) fn management(&mut self) -> R<()> {
        let Some(c) = self.candidate() else {
            return Ok(());
        };
        self.port.write(
            "Management access: where management services (metrics) listen and who may \
             connect.\nPress Enter to keep the value in brackets.\n",
        );
        let on_interface = |c: &Config| c.management.listen == ManagementListen::Interface;
        let rows = [
            Field::new(
                format!(
                    "Listen on lan ({}), interface (a third port) or wan ({})",
                    c.lan.address.addr, c.wan.address.addr
                ),
                "listen",
                |c| c.management.listen.word().to_string(),
                listen,
                |c, v| c.management.listen = v,
            )
            .checked("management.listen"),
            Field::new(
                "Management interface",
                "interface",
                |c| c.management.interface.to_string(),
                fields::ifname,
                |c, v| c.management.interface = bounded(&v),
            )
            .checked("management.interface")
            .when(on_interface),
            Field::new(
                "Management address/prefix",
                "address",
                |c| show_addr(c.management.address),
                |s| fields::net(s).map(Some),
                |c, v| c.management.address = v,
            )
            .checked("management.address")
            .when(on_interface),
            Field::new(
                format!("Allowed sources, comma-separated prefixes (max {MAX_MGMT_ALLOW}) or none"),
                "allowed sources",
                |c| fields::show_list(&c.management.allow, ","),
                allow_list,
                |c, v| c.management.allow = v.into_iter().collect(),
            )
            .checked("management.allow"),
            Field::new(
                "Metrics enabled y/n",
                "metrics",
                |c| fields::show_yn(c.management.metrics_enabled),
                fields::yes_no,
                |c, v| c.management.metrics_enabled = v,
            ),
            Field::new(
                "Metrics TCP port",
                "metrics port",
                |c| c.management.metrics_port.to_string(),
                fields::port,
                |c, v| c.management.metrics_port = v,
            )
            .checked("management.metrics_port"),
        ];
        let (n, ch) = self.form(&c, &rows, Rules::ALL)?;
        // Rules that join fields (metrics on with nobody allowed) are checked last.
        let late: Vec<String> = validate(&n)
            .errors
            .iter()
            .filter(|p| p.path.starts_with("management"))
            .map(|p| p.message.clone())
            .collect();
        if !late.is_empty() {
            for e in &late {
                self.say(e);
            }
            self.port
                .write("Nothing staged; enter 15 again to fix it.\n");
            return Ok(());
        }
        self.stage(n, ch)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{drive, fake, lines};
    use std::net::Ipv4Addr;

    #[test]
    fn management_screen_checks_with_config_rules_then_stages() {
        let f = fake(true);
        let steps = lines(&[
            "15",
            "dmz",             // not a choice
            "wan",             // accepted with a warning
            "198.51.100.7/24", // host bits set
            "198.51.100.50/32,192.0.2.0/24",
            "y",
            "0", // port 0
            "9101",
            "y", // stage
            "n", // do not apply
            "0",
        ]);
        let out = drive(&f, steps).out;
        for msg in [
            "'dmz': enter lan, interface or wan",
            "warning: management services listen on WAN (203.0.113.2)",
            "allowed source 198.51.100.7/24 has host bits set",
            "is not a valid port",
            "listen: lan -> wan",
            "allowed sources: none -> 198.51.100.50/32,192.0.2.0/24",
            "metrics: n -> y",
            "metrics port: 9100 -> 9101",
        ] {
            assert!(out.contains(msg), "missing {msg:?} in:\n{out}");
        }
        let st = f.state.lock().unwrap();
        let m = &st.session.candidate().management;
        assert!(m.metrics_enabled);
        assert_eq!(m.metrics_port, 9101);
        assert_eq!(m.allow.len(), 2);
        assert!(m.allows(Ipv4Addr::new(198, 51, 100, 50)));
    }

    #[test]
    fn metrics_on_with_nobody_allowed_is_not_staged() {
        let f = fake(true);
        let steps = lines(&["15", "", "", "y", "", "0"]);
        let out = drive(&f, steps).out;
        assert!(
            out.contains("metrics are on but no source may connect"),
            "{out}"
        );
        assert!(out.contains("Nothing staged"), "{out}");
        assert!(
            !f.state
                .lock()
                .unwrap()
                .session
                .candidate()
                .management
                .metrics_enabled
        );
    }
}
