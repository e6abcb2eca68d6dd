//! Menu item 3: virtual services (add, remove, edit).

use super::form::{Field, Rules};
use super::*;

/// Service `i` of `c`.
fn svc(c: &Config, i: usize) -> &VirtualService {
    &c.services[i]
}

impl<P: Port, D: Daemon> Menu<P, D> {
    pub(super) fn services(&mut self) -> R<()> {
        loop {
            let Some(c) = self.candidate() else {
                return Ok(());
            };
            self.port.write("\nVirtual services (candidate config)\n");
            for (i, s) in c.services.iter().enumerate() {
                self.port.write(&format!(
                    "{}\n",
                    fit(&format!(
                        "  {}) {:<10} {}:{} {} {} persist {} s pe sip {}",
                        i + 1,
                        s.name,
                        s.vip,
                        s.port,
                        s.scheduler.kernel_name(),
                        fields::show_forwarding(s.forwarding),
                        s.persistence_timeout,
                        if s.sip_persistence { "on" } else { "off" }
                    ))
                ));
            }
            self.port
                .write("  a) Add a service   r) Remove a service   0) Back\n");
            let s = self.line("Service to edit (number), a, r or 0: ")?;
            match s.as_str() {
                "0" | "" => return Ok(()),
                "a" | "A" => self.add_service(c)?,
                "r" | "R" => self.remove_service(c)?,
                n => match n.parse::<usize>() {
                    Ok(k) if (1..=c.services.len()).contains(&k) => self.edit_service(c, k - 1)?,
                    _ => self.say(&format!(
                        "'{n}' is not an option: enter a service number, a, r or 0"
                    )),
                },
            }
        }
    }

    pub(super) fn add_service(&mut self, c: Config) -> R<()> {
        if c.services.len() >= crate::config::MAX_SERVICES {
            self.say(&format!(
                "the maximum of {} services is reached",
                crate::config::MAX_SERVICES
            ));
            return Ok(());
        }
        let names: Vec<String> = c.services.iter().map(|s| s.name.to_string()).collect();
        let name = self.ask("New service name", "", |s| {
            let n = fields::service_name(s)?;
            if names.contains(&n) {
                Err(format!("a service named '{n}' already exists"))
            } else {
                Ok(n)
            }
        })?;
        let vip = self.ask("VIP address", "", fields::ipv4)?;
        let port = self.ask("VIP port", "5060", fields::port)?;
        let svc = VirtualService {
            name: bounded(&name),
            vip,
            port,
            protocol: Default::default(),
            scheduler: Default::default(),
            forwarding: Default::default(),
            persistence_timeout: 60,
            sip_persistence: true,
            one_packet: true,
            persistence_granularity: Ipv4Addr::UNSPECIFIED,
            probe: Default::default(),
            servers: heapless::Vec::new(),
        };
        let mut ch = Changes::default();
        ch.note(
            "services",
            "-",
            format!("add {name} {vip}:{port} (no servers yet)"),
        );
        let mut n = c;
        if n.services.push(svc).is_err() {
            self.say("no room for another service");
            return Ok(());
        }
        self.stage(n, ch)
    }

    pub(super) fn remove_service(&mut self, c: Config) -> R<()> {
        let Some(i) = self.pick_service_any(&c)? else {
            return Ok(());
        };
        let mut ch = Changes::default();
        let name = c.services[i].name.to_string();
        ch.note(
            "services",
            format!("{name} present"),
            format!("{name} removed"),
        );
        let mut n = c;
        n.services.remove(i);
        self.stage(n, ch)
    }

    /// Like `pick_service` but always asks (used for remove, even with one service).
    pub(super) fn pick_service_any(&mut self, c: &Config) -> R<Option<usize>> {
        if c.services.is_empty() {
            self.say("there is no service to remove");
            return Ok(None);
        }
        for (i, s) in c.services.iter().enumerate() {
            self.port
                .write(&format!("  {}) {}  {}:{}\n", i + 1, s.name, s.vip, s.port));
        }
        let n = c.services.len();
        let k = self.ask("Service number (0 = back)", "", |s| {
            fields::number(s, 0, n, "service number")
        })?;
        Ok(k.checked_sub(1))
    }

    pub(super) fn edit_service(&mut self, c: Config, i: usize) -> R<()> {
        self.port.write(&format!(
            "Editing service '{}'. Press Enter to keep the value in brackets.\n",
            c.services[i].name
        ));
        let rows = [
            Field::new(
                "VIP address",
                "VIP",
                move |c| svc(c, i).vip.to_string(),
                fields::ipv4,
                move |c, v| c.services[i].vip = v,
            ),
            Field::new(
                "VIP port",
                "port",
                move |c| svc(c, i).port.to_string(),
                fields::port,
                move |c, v| c.services[i].port = v,
            ),
            Field::new(
                "Scheduler rr|wrr|lc|wlc|sh|mh",
                "scheduler",
                move |c| svc(c, i).scheduler.kernel_name().to_string(),
                fields::scheduler,
                move |c, v| c.services[i].scheduler = v,
            ),
            Field::new(
                "Forwarding nat|dr",
                "forwarding",
                move |c| fields::show_forwarding(svc(c, i).forwarding),
                fields::forwarding,
                move |c, v| c.services[i].forwarding = v,
            ),
            Field::new(
                "Persistence timeout in s (0 = off)",
                "persistence timeout",
                move |c| svc(c, i).persistence_timeout.to_string(),
                |v| fields::number(v, 0u32, 86_400, "persistence timeout"),
                move |c, v| c.services[i].persistence_timeout = v,
            ),
            Field::new(
                "SIP persistence engine (pe sip) y/n",
                "pe sip",
                move |c| fields::show_yn(svc(c, i).sip_persistence),
                fields::yes_no,
                move |c, v| c.services[i].sip_persistence = v,
            ),
            Field::new(
                "One-packet scheduling y/n",
                "one-packet",
                move |c| fields::show_yn(svc(c, i).one_packet),
                fields::yes_no,
                move |c, v| c.services[i].one_packet = v,
            ),
            Field::new(
                "Persistence granularity netmask",
                "granularity",
                move |c| svc(c, i).persistence_granularity.to_string(),
                fields::netmask,
                move |c, v| c.services[i].persistence_granularity = v,
            ),
        ];
        let (n, ch) = self.form(&c, &rows, Rules::ALL)?;
        self.stage(n, ch)
    }
}
