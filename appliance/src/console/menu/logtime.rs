//! Menu item 16: remote syslog collectors and NTP servers (`[syslog]`, `[ntp]`).
//!
//! Each value is parsed with config's text forms and checked by `config::validate`
//! (only the problems of the field being entered are shown); nothing is restated here.

use std::net::Ipv4Addr;

use super::form::{Field, Rules};
use super::{Daemon, Menu, Port, R};
use crate::config::validate::NTP_POLL_RANGE_S;
use crate::config::{SyslogCollector, SyslogFacility, MAX_NTP_SERVERS, MAX_SYSLOG_COLLECTORS};
use crate::console::fields::{self, Parsed};

fn opt_collector(s: &str) -> Parsed<Option<SyslogCollector>> {
    if s.eq_ignore_ascii_case("none") || s == "-" {
        Ok(None)
    } else {
        s.parse::<SyslogCollector>()
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

fn show_collector(c: Option<&SyslogCollector>) -> String {
    c.map_or_else(|| "none".into(), |c| c.to_string())
}

fn facility(s: &str) -> Parsed<SyslogFacility> {
    let quoted = format!("\"{}\"", s.trim().to_ascii_lowercase());
    toml::from_str::<std::collections::BTreeMap<String, SyslogFacility>>(&format!("f = {quoted}"))
        .ok()
        .and_then(|m| m.into_values().next())
        .ok_or_else(|| format!("'{s}' is not a facility: enter daemon or local0 to local7"))
}

fn show_facility(f: SyslogFacility) -> String {
    toml::to_string(&std::collections::BTreeMap::from([("f", f)]))
        .ok()
        .and_then(|t| t.split('"').nth(1).map(str::to_owned))
        .unwrap_or_default()
}

fn servers(s: &str) -> Parsed<Vec<Ipv4Addr>> {
    if s.eq_ignore_ascii_case("none") || s == "-" {
        return Ok(Vec::new());
    }
    let v = s
        .split([' ', ','])
        .filter(|w| !w.is_empty())
        .map(fields::ipv4)
        .collect::<Parsed<Vec<_>>>()?;
    if v.len() > MAX_NTP_SERVERS {
        return Err(format!(
            "{} servers given; enter at most {MAX_NTP_SERVERS} addresses",
            v.len()
        ));
    }
    Ok(v)
}

impl<P: Port, D: Daemon> Menu<P, D> {
    pub(super) fn logtime(&mut self) -> R<()> {
        let Some(c) = self.candidate() else {
            return Ok(());
        };
        self.port.write(
            "Remote syslog (RFC 5424 events to up to two collectors) and NTP time servers.\n\
             Collectors: 192.0.2.5, 192.0.2.5:1514 or tcp://192.0.2.5:514; 'none' removes one.\n\
             Press Enter to keep the value in brackets.\n",
        );
        // Collectors are entered in order; a 'none' first collector leaves only the second.
        let mut rows: Vec<Field> = (0..MAX_SYSLOG_COLLECTORS)
            .map(|i| {
                Field::new(
                    format!("Syslog collector {}", i + 1),
                    "syslog collectors",
                    |c| fields::show_list(&c.syslog.collectors, " "),
                    opt_collector,
                    move |c, v| {
                        let mut all: Vec<SyslogCollector> =
                            c.syslog.collectors.iter().take(i).copied().collect();
                        all.extend(v);
                        c.syslog.collectors = all.into_iter().collect();
                    },
                )
                .current(move |c, _| show_collector(c.syslog.collectors.get(i)))
                .checked("syslog.collectors")
            })
            .collect();
        let (lo, hi) = (*NTP_POLL_RANGE_S.start(), *NTP_POLL_RANGE_S.end());
        rows.extend([
            Field::new(
                "Syslog facility (daemon, local0-local7)",
                "syslog facility",
                |c| show_facility(c.syslog.facility),
                facility,
                |c, v| c.syslog.facility = v,
            ),
            Field::new(
                format!("NTP servers, up to {MAX_NTP_SERVERS}, separated by spaces, or none"),
                "NTP servers",
                |c| fields::show_list(&c.ntp.servers, " "),
                servers,
                |c, v| c.ntp.servers = v.into_iter().collect(),
            )
            .checked("ntp.servers"),
            Field::new(
                format!("NTP poll interval in s {lo}-{hi}"),
                "NTP poll s",
                |c| c.ntp.poll_s.to_string(),
                move |s| fields::number(s, lo, hi, "poll interval"),
                |c, v| c.ntp.poll_s = v,
            )
            .checked("ntp.poll_s"),
        ]);
        let (n, ch) = self.form(&c, &rows, Rules::ALL)?;
        self.stage(n, ch)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{drive, fake, lines};
    use crate::config::SyslogTransport;
    use std::net::Ipv4Addr;

    #[test]
    fn syslog_and_ntp_screen_checks_with_config_rules_then_stages() {
        let f = fake(true);
        let steps = lines(&[
            "16",
            "syslog.example", // not an address
            "198.51.100.1",   // the box's own LAN address
            "198.51.100.50",
            "udp://198.51.100.50:514", // the same collector again
            "tcp://198.51.100.51:6514",
            "kern", // not offered
            "local3",
            "198.51.100.60 198.51.100.60",     // twice
            "1.2.3.4 5.6.7.8 9.9.9.9 8.8.8.8", // four
            "198.51.100.60 198.51.100.61",
            "5", // poll out of range
            "128",
            "y", // stage
            "n", // do not apply
            "0",
        ]);
        let out = drive(&f, steps).out;
        for msg in [
            "'syslog.example' is not a syslog collector",
            "syslog collector 198.51.100.1 is this appliance's own address",
            "syslog collector udp://198.51.100.50:514 is listed twice",
            "'kern' is not a facility: enter daemon or local0 to local7",
            "NTP server 198.51.100.60 is listed twice",
            "4 servers given; enter at most 3 addresses",
            "'5' is not a valid poll interval: enter a whole number from 16 to 1024",
            "syslog collectors: none -> udp://198.51.100.50:514 tcp://198.51.100.51:6514",
            "syslog facility: local0 -> local3",
            "NTP servers: none -> 198.51.100.60 198.51.100.61",
            "NTP poll s: 64 -> 128",
        ] {
            assert!(out.contains(msg), "missing {msg:?} in:\n{out}");
        }
        let st = f.state.lock().unwrap();
        let c = st.session.candidate();
        assert_eq!(c.syslog.collectors.len(), 2);
        assert_eq!(c.syslog.collectors[1].transport, SyslogTransport::Tcp);
        assert_eq!(c.syslog.collectors[1].port, 6514);
        assert_eq!(
            c.ntp.servers.as_slice(),
            &[
                Ipv4Addr::new(198, 51, 100, 60),
                Ipv4Addr::new(198, 51, 100, 61)
            ]
        );
        assert_eq!(c.ntp.poll_s, 128);
    }
}
