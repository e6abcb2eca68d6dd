//! Menu item 14: high availability settings (`[ha]`).
//!
//! Every value is checked by `config::validate` as it is entered (ranges from its
//! constants, everything else through `ha_problems`); nothing is restated here. The
//! HA rules bind only an enabled `[ha]`, so while HA stays off a problem is shown as
//! a note and the value is kept, which lets an operator prepare the settings first.

use std::net::Ipv4Addr;

use super::form::{Field, Rules};
use super::{Daemon, Menu, Port, R};
use crate::config::validate::{
    ha_problems, HA_ADVERT_CS_RANGE, HA_PREEMPT_DELAY_RANGE_S, HA_PRIORITY_RANGE, HA_VRID_RANGE,
};
use crate::config::{bounded, Config};
use crate::console::fields::{self, Parsed};

/// Optional address: `none` / `-` or a unicast address.
fn opt_ipv4(s: &str) -> Parsed<Option<Ipv4Addr>> {
    if s.eq_ignore_ascii_case("none") || s == "-" {
        Ok(None)
    } else {
        fields::ipv4(s).map(Some)
    }
}

/// Sync interface: `-` = the LAN interface, else an interface name.
fn sync_iface(s: &str) -> Parsed<String> {
    if s == "-" {
        Ok(String::new())
    } else {
        fields::ifname(s)
    }
}

fn show_opt(a: Option<Ipv4Addr>) -> String {
    a.map_or_else(|| "none".into(), |a| a.to_string())
}

fn show_sync(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// `[ha]` fields meet `ha_problems`, which binds only once HA is enabled.
const HA_RULES: Rules = Rules {
    check: ha_problems,
    binding: |c| c.ha.enabled,
    note: "note (a problem once HA is enabled)",
};

/// A whole number field of `[ha]` within `range` (config's constant).
fn number<'a, T>(
    prompt: &str,
    name: &'static str,
    what: &'static str,
    range: std::ops::RangeInclusive<T>,
    get: fn(&Config) -> T,
    set: fn(&mut Config, T),
) -> Field<'a>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + 'a,
{
    let (lo, hi) = (*range.start(), *range.end());
    Field::new(
        prompt
            .replace("{lo}", &lo.to_string())
            .replace("{hi}", &hi.to_string()),
        name,
        move |c| get(c).to_string(),
        move |s| fields::number(s, lo, hi, what),
        set,
    )
}

impl<P: Port, D: Daemon> Menu<P, D> {
    pub(super) fn ha(&mut self) -> R<()> {
        let Some(c) = self.candidate() else {
            return Ok(());
        };
        self.port.write(
            "High availability: two boxes, VRRP for the VIPs and the servers' gateway, \
             connection sync.\nBoth boxes use the same VRID and different priorities. \
             Press Enter to keep the value in brackets.\n",
        );
        let rows = [
            Field::new(
                "HA enabled y/n",
                "HA enabled",
                |c| fields::show_yn(c.ha.enabled),
                fields::yes_no,
                |c, v| c.ha.enabled = v,
            ),
            number(
                "VRID {lo}-{hi}, the same on both boxes",
                "VRID",
                "VRID",
                HA_VRID_RANGE,
                |c| c.ha.vrid,
                |c, v| c.ha.vrid = v,
            )
            .checked("ha.vrid"),
            number(
                "Priority {lo}-{hi}, the higher box is master",
                "priority",
                "priority",
                HA_PRIORITY_RANGE,
                |c| c.ha.priority,
                |c, v| c.ha.priority = v,
            )
            .checked("ha.priority"),
            number(
                "Advert interval in centiseconds {lo}-{hi}",
                "advert interval cs",
                "advert interval",
                HA_ADVERT_CS_RANGE,
                |c| c.ha.advert_interval_cs,
                |c, v| c.ha.advert_interval_cs = v,
            )
            .checked("ha.advert_interval_cs"),
            Field::new(
                "Preempt y/n",
                "preempt",
                |c| fields::show_yn(c.ha.preempt),
                fields::yes_no,
                |c, v| c.ha.preempt = v,
            ),
            number(
                "Preempt delay in s {lo}-{hi}",
                "preempt delay s",
                "preempt delay",
                HA_PREEMPT_DELAY_RANGE_S,
                |c| c.ha.preempt_delay_s,
                |c, v| c.ha.preempt_delay_s = v,
            )
            .checked("ha.preempt_delay_s"),
            Field::new(
                "Servers' gateway on LAN (lan_gateway) or none",
                "LAN gateway",
                |c| show_opt(c.ha.lan_gateway),
                opt_ipv4,
                |c, v| c.ha.lan_gateway = v,
            )
            .checked("ha.lan_gateway"),
            Field::new(
                "Peer's WAN address or none (multicast)",
                "WAN peer",
                |c| show_opt(c.ha.peer_wan),
                opt_ipv4,
                |c, v| c.ha.peer_wan = v,
            )
            .checked("ha.peer_wan"),
            Field::new(
                "Peer's LAN address or none (multicast)",
                "LAN peer",
                |c| show_opt(c.ha.peer_lan),
                opt_ipv4,
                |c, v| c.ha.peer_lan = v,
            )
            .checked("ha.peer_lan"),
            Field::new(
                format!("Sync interface ('-' = LAN, {})", c.lan.name),
                "sync interface",
                |c| show_sync(&c.ha.sync_interface).to_string(),
                sync_iface,
                |c, v| c.ha.sync_interface = bounded(&v),
            )
            .checked("ha.sync_interface"),
        ];
        let (n, ch) = self.form(&c, &rows, HA_RULES)?;
        self.stage(n, ch)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{drive, fake, lines};
    use std::net::Ipv4Addr;

    #[test]
    fn ha_screen_checks_every_field_with_config_rules_then_stages() {
        let f = fake(true);
        // The demo's LAN address is 198.51.100.1: move it first, as docs/ha.md says.
        {
            let mut st = f.state.lock().unwrap();
            let mut c = st.session.candidate().clone();
            c.lan.address = "198.51.100.2/24".parse().unwrap();
            st.session.set_candidate(c);
        }
        let steps = lines(&[
            "14",
            "y",
            "0",   // VRID out of range
            "52",  //
            "255", // priority out of range
            "150", //
            "0",   // advert interval out of range
            "2",   // accepted with a warning
            "y",
            "4000", // preempt delay out of range
            "30",
            "none",         // required with NAT
            "198.51.100.2", // own LAN address
            "198.51.100.1", //
            "203.0.113.10", // a VIP
            "203.0.113.3",  //
            "198.51.100.1", // the LAN gateway
            "198.51.100.3", //
            "eth0",         // the WAN interface
            "eth2",         //
            "y",            // stage
            "n",            // do not apply
            "0",
        ]);
        let out = drive(&f, steps).out;
        for msg in [
            "'0' is not a valid VRID: enter a whole number from 1 to 255",
            "'255' is not a valid priority: enter a whole number from 1 to 254",
            "'0' is not a valid advert interval: enter a whole number from 1 to 4095",
            "warning: ha.advert_interval_cs 2 (20 ms) is below 3 (30 ms)",
            "'4000' is not a valid preempt delay: enter a whole number from 0 to 3600",
            "ha.lan_gateway is not set but service sip uses NAT forwarding",
            "ha.lan_gateway 198.51.100.2 is this box's own LAN address",
            "ha.peer_wan 203.0.113.10 is a service VIP",
            "ha.peer_lan 198.51.100.1 is ha.lan_gateway",
            "ha.sync_interface eth0 is the WAN interface",
            "VRID: 51 -> 52",
            "LAN gateway: none -> 198.51.100.1",
            "sync interface: - -> eth2",
        ] {
            assert!(out.contains(msg), "missing {msg:?} in:\n{out}");
        }
        let st = f.state.lock().unwrap();
        let h = &st.session.candidate().ha;
        assert!(h.enabled && h.preempt);
        assert_eq!(
            (h.vrid, h.priority, h.advert_interval_cs, h.preempt_delay_s),
            (52, 150, 2, 30)
        );
        assert_eq!(h.lan_gateway, Some(Ipv4Addr::new(198, 51, 100, 1)));
        assert_eq!(h.peer_wan, Some(Ipv4Addr::new(203, 0, 113, 3)));
        assert_eq!(h.peer_lan, Some(Ipv4Addr::new(198, 51, 100, 3)));
        assert_eq!(h.sync_interface.as_str(), "eth2");
        assert!(!st.session.unsaved(), "staging alone saves nothing");
    }

    #[test]
    fn ha_off_keeps_values_with_notes_and_enter_keeps_everything() {
        let f = fake(true);
        // HA off: the demo's own LAN address as gateway is only a note.
        let steps = lines(&[
            "14",
            "n",
            "",
            "",
            "",
            "",
            "",
            "198.51.100.1",
            "",
            "",
            "",
            "y",
            "n",
            "0",
        ]);
        let out = drive(&f, steps).out;
        assert!(
            out.contains(
                "note (a problem once HA is enabled): ha.lan_gateway 198.51.100.1 is this"
            ),
            "{out}"
        );
        {
            let st = f.state.lock().unwrap();
            let h = &st.session.candidate().ha;
            assert!(!h.enabled);
            assert_eq!(h.lan_gateway, Some(Ipv4Addr::new(198, 51, 100, 1)));
        }
        // Enter on every prompt: nothing changes.
        let steps = lines(&["14", "", "", "", "", "", "", "", "", "", "", "0"]);
        let out = drive(&f, steps).out;
        assert!(out.contains("No changes."), "{out}");
        // Ctrl-C leaves the form without staging.
        let mut steps = lines(&["14", "y", "52"]);
        steps.push(super::super::Input::Interrupt);
        steps.extend(lines(&["0"]));
        drive(&f, steps);
        assert!(!f.state.lock().unwrap().session.candidate().ha.enabled);
    }
}
