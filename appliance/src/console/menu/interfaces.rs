//! Menu item 2: interfaces, the ports found on the box, hostname.

use super::form::{Field, Rules};
use super::*;
use crate::config::Interface;

/// The WAN or the LAN interface of `c`.
fn port(c: &Config, wan: bool) -> &Interface {
    if wan {
        &c.wan
    } else {
        &c.lan
    }
}

fn port_mut(c: &mut Config, wan: bool) -> &mut Interface {
    if wan {
        &mut c.wan
    } else {
        &mut c.lan
    }
}

impl<P: Port, D: Daemon> Menu<P, D> {
    pub(super) fn interfaces(&mut self) -> R<()> {
        loop {
            let Some(c) = self.candidate() else {
                return Ok(());
            };
            self.port.write("\nInterfaces (candidate config)\n");
            self.port.write(&screens::interfaces(&c));
            match self.line("Interface option: ")?.as_str() {
                "0" | "" => return Ok(()),
                "1" => self.edit_iface(c, true)?,
                "2" => self.edit_iface(c, false)?,
                "3" => {
                    let rows = [Field::new(
                        "Hostname",
                        "hostname",
                        |c| c.hostname.to_string(),
                        fields::hostname,
                        |c, v| c.hostname = bounded(&v),
                    )];
                    let (n, ch) = self.form(&c, &rows, Rules::ALL)?;
                    self.stage(n, ch)?;
                }
                "4" => self.assign_ports(c)?,
                other => self.say(&format!("'{other}' is not an option: enter 0 to 4")),
            }
        }
    }

    /// pfSense's "Assign interfaces": pick WAN and LAN from the ports the daemon found,
    /// by number or name, seeing each port's MAC, link and driver.
    pub(super) fn assign_ports(&mut self, c: Config) -> R<()> {
        let ports = match self.req(Request::ListNics) {
            Some(Reply::Nics(l)) => l,
            _ => return Ok(()),
        };
        self.port
            .write("\nNetwork ports on this box (plug or unplug a cable to see which is which)\n");
        self.port.write(&screens::nics(&ports, &c));
        if ports.len() < 2 {
            self.say("WAN and LAN need two ports; fewer were found, nothing was changed");
            return Ok(());
        }
        let pick = |s: &str, other: Option<&str>| -> Parsed<String> {
            let name = match s.parse::<usize>() {
                Ok(i) if (1..=ports.len()).contains(&i) => ports[i - 1].name.clone(),
                Ok(i) => {
                    return Err(format!(
                        "{i} is not in the list: enter 1 to {}",
                        ports.len()
                    ))
                }
                Err(_) => fields::ifname(s)?,
            };
            if other == Some(name.as_str()) {
                return Err(format!("{name} is already WAN; WAN and LAN must differ"));
            }
            if !ports.iter().any(|p| p.name == name) {
                return Err(format!(
                    "there is no port named '{name}' on this box: enter a number from the list"
                ));
            }
            Ok(name)
        };
        let rows = [
            Field::new(
                "WAN port (number or name)",
                "WAN name",
                |c| c.wan.name.to_string(),
                |s| pick(s, None),
                |c, v| c.wan.name = bounded(&v),
            ),
            // The WAN just picked is no LAN to keep.
            Field::new_in(
                "LAN port (number or name)",
                "LAN name",
                |c| c.lan.name.to_string(),
                |n, s| pick(s, Some(n.wan.name.as_str())),
                |c, v| c.lan.name = bounded(&v),
            )
            .current(|_, n| {
                if n.lan.name == n.wan.name {
                    String::new()
                } else {
                    n.lan.name.to_string()
                }
            }),
        ];
        let (n, ch) = self.form(&c, &rows, Rules::ALL)?;
        self.stage(n, ch)
    }

    pub(super) fn edit_iface(&mut self, c: Config, wan: bool) -> R<()> {
        let label = if wan { "WAN" } else { "LAN" };
        self.port.write(&format!(
            "Editing {label}. Press Enter to keep the value in brackets.\n"
        ));
        let rows = [
            Field::new_in(
                format!("{label} interface name"),
                format!("{label} name"),
                move |c| port(c, wan).name.to_string(),
                move |n, s| {
                    let name = fields::ifname(s)?;
                    if name == port(n, !wan).name.as_str() {
                        Err(format!(
                            "{name} is already the other interface; WAN and LAN must differ"
                        ))
                    } else {
                        Ok(name)
                    }
                },
                move |c, v| port_mut(c, wan).name = bounded(&v),
            ),
            Field::new(
                format!("{label} address/prefix"),
                format!("{label} address"),
                move |c| port(c, wan).address.to_string(),
                fields::net,
                move |c, v| port_mut(c, wan).address = v,
            ),
            // A gateway outside the address just entered is no value to keep.
            Field::new_in(
                format!("{label} gateway or 'none'"),
                format!("{label} gateway"),
                move |c| fields::show_gateway(port(c, wan).gateway),
                move |n, s| fields::gateway(s, port(n, wan).address),
                move |c, v| port_mut(c, wan).gateway = v,
            )
            .current(move |_, n| {
                let i = port(n, wan);
                match i.gateway {
                    Some(g) if i.address.contains(g) => g.to_string(),
                    _ => "none".into(),
                }
            }),
            Field::new(
                format!("{label} MTU"),
                format!("{label} MTU"),
                move |c| port(c, wan).mtu.to_string(),
                fields::mtu,
                move |c, v| port_mut(c, wan).mtu = v,
            ),
        ];
        let (n, ch) = self.form(&c, &rows, Rules::ALL)?;
        self.stage(n, ch)
    }
}
