//! Menu item 14: high availability settings (`[ha]`).
//!
//! Every value is checked by `config::validate` as it is entered (ranges from its
//! constants, everything else through `ha_problems`); nothing is restated here. The
//! HA rules bind only an enabled `[ha]`, so while HA stays off a problem is shown as
//! a note and the value is kept, which lets an operator prepare the settings first.

use std::net::Ipv4Addr;

use super::{Changes, Daemon, Menu, Port, R};
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

impl<P: Port, D: Daemon> Menu<P, D> {
    /// Ask one `[ha]` field until config's rules accept it in `n` (see the module doc).
    fn ask_ha<T: Clone>(
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
            let r = ha_problems(&trial);
            let errors: Vec<String> = r
                .errors
                .iter()
                .filter(|p| p.path == path)
                .map(|p| p.message.clone())
                .collect();
            for w in r.warnings.iter().filter(|p| p.path == path) {
                self.say(&format!("warning: {}", w.message));
            }
            if errors.is_empty() {
                *n = trial;
                return Ok(());
            }
            if !trial.ha.enabled {
                for e in &errors {
                    self.say(&format!("note (a problem once HA is enabled): {e}"));
                }
                *n = trial;
                return Ok(());
            }
            for e in &errors {
                self.say(e);
            }
        }
    }

    pub(super) fn ha(&mut self) -> R<()> {
        let Some(c) = self.candidate() else {
            return Ok(());
        };
        let h = c.ha.clone();
        self.port.write(
            "High availability: two boxes, VRRP for the VIPs and the servers' gateway, \
             connection sync.\nBoth boxes use the same VRID and different priorities. \
             Press Enter to keep the value in brackets.\n",
        );
        let mut n = c.clone();
        let en = self.ask(
            "HA enabled y/n",
            &fields::show_yn(h.enabled),
            fields::yes_no,
        )?;
        n.ha.enabled = en;
        let (lo, hi) = (*HA_VRID_RANGE.start(), *HA_VRID_RANGE.end());
        let label = format!("VRID {lo}-{hi}, the same on both boxes");
        self.ask_ha(
            &mut n,
            (&label, &h.vrid.to_string(), "ha.vrid"),
            |s| fields::number(s, lo, hi, "VRID"),
            |c, v| c.ha.vrid = v,
        )?;
        let (lo, hi) = (*HA_PRIORITY_RANGE.start(), *HA_PRIORITY_RANGE.end());
        let label = format!("Priority {lo}-{hi}, the higher box is master");
        self.ask_ha(
            &mut n,
            (&label, &h.priority.to_string(), "ha.priority"),
            |s| fields::number(s, lo, hi, "priority"),
            |c, v| c.ha.priority = v,
        )?;
        let (lo, hi) = (*HA_ADVERT_CS_RANGE.start(), *HA_ADVERT_CS_RANGE.end());
        let label = format!("Advert interval in centiseconds {lo}-{hi}");
        self.ask_ha(
            &mut n,
            (
                &label,
                &h.advert_interval_cs.to_string(),
                "ha.advert_interval_cs",
            ),
            |s| fields::number(s, lo, hi, "advert interval"),
            |c, v| c.ha.advert_interval_cs = v,
        )?;
        let pre = self.ask("Preempt y/n", &fields::show_yn(h.preempt), fields::yes_no)?;
        n.ha.preempt = pre;
        let (lo, hi) = (
            *HA_PREEMPT_DELAY_RANGE_S.start(),
            *HA_PREEMPT_DELAY_RANGE_S.end(),
        );
        let label = format!("Preempt delay in s {lo}-{hi}");
        self.ask_ha(
            &mut n,
            (&label, &h.preempt_delay_s.to_string(), "ha.preempt_delay_s"),
            |s| fields::number(s, lo, hi, "preempt delay"),
            |c, v| c.ha.preempt_delay_s = v,
        )?;
        self.ask_ha(
            &mut n,
            (
                "Servers' gateway on LAN (lan_gateway) or none",
                &show_opt(h.lan_gateway),
                "ha.lan_gateway",
            ),
            opt_ipv4,
            |c, v| c.ha.lan_gateway = v,
        )?;
        self.ask_ha(
            &mut n,
            (
                "Peer's WAN address or none (multicast)",
                &show_opt(h.peer_wan),
                "ha.peer_wan",
            ),
            opt_ipv4,
            |c, v| c.ha.peer_wan = v,
        )?;
        self.ask_ha(
            &mut n,
            (
                "Peer's LAN address or none (multicast)",
                &show_opt(h.peer_lan),
                "ha.peer_lan",
            ),
            opt_ipv4,
            |c, v| c.ha.peer_lan = v,
        )?;
        let label = format!("Sync interface ('-' = LAN, {})", c.lan.name);
        self.ask_ha(
            &mut n,
            (&label, show_sync(&h.sync_interface), "ha.sync_interface"),
            sync_iface,
            |c, v| c.ha.sync_interface = bounded(&v),
        )?;
        let g = &n.ha;
        let mut ch = Changes::default();
        ch.note(
            "HA enabled",
            fields::show_yn(h.enabled),
            fields::show_yn(g.enabled),
        );
        ch.note("VRID", h.vrid, g.vrid);
        ch.note("priority", h.priority, g.priority);
        ch.note(
            "advert interval cs",
            h.advert_interval_cs,
            g.advert_interval_cs,
        );
        ch.note(
            "preempt",
            fields::show_yn(h.preempt),
            fields::show_yn(g.preempt),
        );
        ch.note("preempt delay s", h.preempt_delay_s, g.preempt_delay_s);
        ch.note(
            "LAN gateway",
            show_opt(h.lan_gateway),
            show_opt(g.lan_gateway),
        );
        ch.note("WAN peer", show_opt(h.peer_wan), show_opt(g.peer_wan));
        ch.note("LAN peer", show_opt(h.peer_lan), show_opt(g.peer_lan));
        ch.note(
            "sync interface",
            show_sync(&h.sync_interface),
            show_sync(&g.sync_interface),
        );
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
