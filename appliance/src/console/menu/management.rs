//! Menu item 15: management access (`[management]`): where management services listen,
//! which sources may connect, and the metrics endpoint.
//!
//! Every value is checked by `config::validate` as it is entered (the problems whose
//! path is the field's); nothing is restated here.

use super::{Changes, Daemon, Menu, Port, R};
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

fn show_allow(v: &[Ipv4Net]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn show_addr(a: Option<Ipv4Net>) -> String {
    a.map_or_else(|| "none".into(), |a| a.to_string())
}

impl<P: Port, D: Daemon> Menu<P, D> {
    /// Ask one `[management]` field until validation has no error at `path` (or below it).
    fn ask_mgmt<T: Clone>(
        &mut self,
        n: &mut Config,
        (label, current, path): (&str, &str, &str),
        parse: impl Fn(&str) -> Parsed<T>,
        set: impl Fn(&mut Config, T),
    ) -> R<()> {
        loop {
            let v = self.ask(label, current, &parse)?;
            let mut trial = n.clone();
            set(&mut trial, v);
            let r = validate(&trial);
            let here = |p: &str| p == path || p.starts_with(&format!("{path}["));
            for w in r.warnings.iter().filter(|p| here(&p.path)) {
                self.say(&format!("warning: {}", w.message));
            }
            let errors: Vec<String> = r
                .errors
                .iter()
                .filter(|p| here(&p.path))
                .map(|p| p.message.clone())
                .collect();
            if errors.is_empty() {
                *n = trial;
                return Ok(());
            }
            for e in &errors {
                self.say(e);
            }
        }
    }

    pub(super) fn management(&mut self) -> R<()> {
        let Some(c) = self.candidate() else {
            return Ok(());
        };
        let m = c.management.clone();
        self.port.write(
            "Management access: where management services (metrics) listen and who may \
             connect.\nPress Enter to keep the value in brackets.\n",
        );
        let mut n = c.clone();
        let label = format!(
            "Listen on lan ({}), interface (a third port) or wan ({})",
            c.lan.address.addr, c.wan.address.addr
        );
        self.ask_mgmt(
            &mut n,
            (&label, m.listen.word(), "management.listen"),
            listen,
            |c, v| c.management.listen = v,
        )?;
        if n.management.listen == ManagementListen::Interface {
            let cur = m.interface.to_string();
            self.ask_mgmt(
                &mut n,
                ("Management interface", &cur, "management.interface"),
                fields::ifname,
                |c, v| c.management.interface = bounded(&v),
            )?;
            self.ask_mgmt(
                &mut n,
                (
                    "Management address/prefix",
                    &show_addr(m.address),
                    "management.address",
                ),
                |s| fields::net(s).map(Some),
                |c, v| c.management.address = v,
            )?;
        }
        let label =
            format!("Allowed sources, comma-separated prefixes (max {MAX_MGMT_ALLOW}) or none");
        self.ask_mgmt(
            &mut n,
            (&label, &show_allow(&m.allow), "management.allow"),
            allow_list,
            |c, v| c.management.allow = v.into_iter().collect(),
        )?;
        let en = self.ask(
            "Metrics enabled y/n",
            &fields::show_yn(m.metrics_enabled),
            fields::yes_no,
        )?;
        n.management.metrics_enabled = en;
        self.ask_mgmt(
            &mut n,
            (
                "Metrics TCP port",
                &m.metrics_port.to_string(),
                "management.metrics_port",
            ),
            fields::port,
            |c, v| c.management.metrics_port = v,
        )?;
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
        let g = &n.management;
        let mut ch = Changes::default();
        ch.note("listen", m.listen.word(), g.listen.word());
        ch.note("interface", m.interface.as_str(), g.interface.as_str());
        ch.note("address", show_addr(m.address), show_addr(g.address));
        ch.note(
            "allowed sources",
            show_allow(&m.allow),
            show_allow(&g.allow),
        );
        ch.note(
            "metrics",
            fields::show_yn(m.metrics_enabled),
            fields::show_yn(g.metrics_enabled),
        );
        ch.note("metrics port", m.metrics_port, g.metrics_port);
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
