//! Menu item 2: interfaces, the ports found on the box, hostname.

use super::*;

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
                    let h = self.ask("Hostname", &c.hostname, fields::hostname)?;
                    let mut ch = Changes::default();
                    ch.note("hostname", &c.hostname, &h);
                    let mut n = c;
                    n.hostname = bounded(&h);
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
        let wan = self.ask("WAN port (number or name)", &c.wan.name, |s| pick(s, None))?;
        let lan_cur = if c.lan.name.as_str() == wan {
            String::new()
        } else {
            c.lan.name.to_string()
        };
        let lan = self.ask("LAN port (number or name)", &lan_cur, |s| {
            pick(s, Some(wan.as_str()))
        })?;
        let mut ch = Changes::default();
        ch.note("WAN name", &c.wan.name, &wan);
        ch.note("LAN name", &c.lan.name, &lan);
        let mut n = c;
        n.wan.name = bounded(&wan);
        n.lan.name = bounded(&lan);
        self.stage(n, ch)
    }

    pub(super) fn edit_iface(&mut self, c: Config, wan: bool) -> R<()> {
        let (label, cur, other) = if wan {
            ("WAN", c.wan.clone(), c.lan.name.to_string())
        } else {
            ("LAN", c.lan.clone(), c.wan.name.to_string())
        };
        self.port.write(&format!(
            "Editing {label}. Press Enter to keep the value in brackets.\n"
        ));
        let name = self.ask(&format!("{label} interface name"), &cur.name, |s| {
            let n = fields::ifname(s)?;
            if n == other {
                Err(format!(
                    "{n} is already the other interface; WAN and LAN must differ"
                ))
            } else {
                Ok(n)
            }
        })?;
        let addr = self.ask(
            &format!("{label} address/prefix"),
            &cur.address.to_string(),
            fields::net,
        )?;
        let gw_cur = match cur.gateway {
            Some(g) if addr.contains(g) => g.to_string(),
            _ => "none".into(),
        };
        let gw = self.ask(&format!("{label} gateway or 'none'"), &gw_cur, |s| {
            fields::gateway(s, addr)
        })?;
        let mtu = self.ask(&format!("{label} MTU"), &cur.mtu.to_string(), fields::mtu)?;
        let mut ch = Changes::default();
        ch.note(&format!("{label} name"), &cur.name, &name);
        ch.note(&format!("{label} address"), cur.address, addr);
        ch.note(
            &format!("{label} gateway"),
            fields::show_gateway(cur.gateway),
            fields::show_gateway(gw),
        );
        ch.note(&format!("{label} MTU"), cur.mtu, mtu);
        let mut n = c;
        let i = if wan { &mut n.wan } else { &mut n.lan };
        i.name = bounded(&name);
        i.address = addr;
        i.gateway = gw;
        i.mtu = mtu;
        self.stage(n, ch)
    }
}
