//! Menu item 4: real servers (add, enable, disable, drain with a live countdown, remove).

use super::*;

impl<P: Port, D: Daemon> Menu<P, D> {
    pub(super) fn servers(&mut self) -> R<()> {
        let Some(c) = self.candidate() else {
            return Ok(());
        };
        let Some(si) = self.pick_service(&c)? else {
            return Ok(());
        };
        let service = c.services[si].name.to_string();
        loop {
            let Some(c) = self.candidate() else {
                return Ok(());
            };
            let Some(svc) = c.services.iter().find(|s| s.name.as_str() == service) else {
                self.say(&format!(
                    "service '{service}' is no longer in the candidate"
                ));
                return Ok(());
            };
            let live = match self.daemon.call(&Request::ShowServers) {
                Ok(Reply::Servers(r)) => r,
                _ => Vec::new(),
            };
            self.port.write(&format!(
                "\nServers of '{}' (VIP {}:{}), candidate config + live state\n",
                svc.name, svc.vip, svc.port
            ));
            self.port
                .write("   #  Server                 Weight  Admin     Health  Kernel wt\n");
            for (i, r) in svc.servers.iter().enumerate() {
                let sa = SocketAddrV4::new(r.address, r.port);
                let l = live.iter().find(|x| x.service == service && x.server == sa);
                let health = l.map_or("-".to_string(), |x| {
                    format!("{:?}", x.health).to_lowercase()
                });
                let kw = l
                    .and_then(|x| x.kernel_weight)
                    .map_or("-".into(), |w| w.to_string());
                self.port.write(&format!(
                    "{}\n",
                    fit(&format!(
                        "  {:>2}) {:<22} {:>6}  {:<9} {:<7} {}",
                        i + 1,
                        sa.to_string(),
                        r.weight,
                        screens::admin(r.state),
                        health,
                        kw
                    ))
                ));
            }
            if svc.servers.is_empty() {
                self.port.write("  (no servers)\n");
            }
            self.port
                .write("  a) Add  r) Remove  e) Enable  d) Drain now  x) Disable  0) Back\n");
            let servers: Vec<RealServer> = svc.servers.iter().cloned().collect();
            let s = self.line("Server action: ")?;
            match s.to_ascii_lowercase().as_str() {
                "0" | "" => return Ok(()),
                "a" => self.add_server(&service, &servers)?,
                "r" => self.server_op(&service, &servers, ServerOp::Remove, "Remove")?,
                "e" => self.server_op(&service, &servers, ServerOp::Enable, "Enable")?,
                "x" => self.server_op(&service, &servers, ServerOp::Disable, "Disable")?,
                "d" => self.drain(&service, &servers)?,
                other => self.say(&format!(
                    "'{other}' is not an action: use a, r, e, d, x or 0"
                )),
            }
        }
    }

    pub(super) fn pick_server(&mut self, servers: &[RealServer]) -> R<Option<SocketAddrV4>> {
        if servers.is_empty() {
            self.say("there are no servers in this service");
            return Ok(None);
        }
        let n = servers.len();
        let k = self.ask("Server number (0 = back)", "", |s| {
            fields::number(s, 0, n, "server number")
        })?;
        Ok(k.checked_sub(1)
            .map(|i| SocketAddrV4::new(servers[i].address, servers[i].port)))
    }

    pub(super) fn add_server(&mut self, service: &str, servers: &[RealServer]) -> R<()> {
        let existing: Vec<SocketAddrV4> = servers
            .iter()
            .map(|r| SocketAddrV4::new(r.address, r.port))
            .collect();
        let ip = self.ask("Server address", "", fields::ipv4)?;
        let port = self.ask("Server port", "5060", |s| {
            let p = fields::port(s)?;
            if existing.contains(&SocketAddrV4::new(ip, p)) {
                Err(format!("{ip}:{p} is already in this service"))
            } else {
                Ok(p)
            }
        })?;
        let weight = self.ask("Weight", "1", |s| fields::number(s, 1u32, 65535, "weight"))?;
        let sa = SocketAddrV4::new(ip, port);
        if !self.confirm(&format!("Add {sa} with weight {weight} to the candidate"))? {
            self.port.write("Nothing changed.\n");
            return Ok(());
        }
        self.server_request(service, sa, ServerOp::Add { weight })
    }

    pub(super) fn server_op(
        &mut self,
        service: &str,
        servers: &[RealServer],
        op: ServerOp,
        verb: &str,
    ) -> R<()> {
        let Some(sa) = self.pick_server(servers)? else {
            return Ok(());
        };
        if !self.confirm(&format!("{verb} {sa} in the candidate"))? {
            self.port.write("Nothing changed.\n");
            return Ok(());
        }
        self.server_request(service, sa, op)
    }

    pub(super) fn server_request(
        &mut self,
        service: &str,
        sa: SocketAddrV4,
        op: ServerOp,
    ) -> R<()> {
        if let Some(Reply::Validation(v)) = self.req(Request::ServerAction {
            service: service.into(),
            server: sa,
            action: op,
        }) {
            self.after_stage(&v)?;
        }
        Ok(())
    }

    pub(super) fn drain(&mut self, service: &str, servers: &[RealServer]) -> R<()> {
        let Some(sa) = self.pick_server(servers)? else {
            return Ok(());
        };
        self.port.write(
            "Draining acts NOW on the running config: no new calls go to the server,\n\
             calls in progress continue. It stays unsaved until you save.\n",
        );
        if !self.confirm(&format!("Drain {sa} now"))? {
            self.port.write("Nothing changed.\n");
            return Ok(());
        }
        let Some(Reply::Done { message }) = self.req(Request::ServerAction {
            service: service.into(),
            server: sa,
            action: ServerOp::Drain,
        }) else {
            return Ok(());
        };
        self.port.write(&format!("{}\n", fit(&message)));
        self.port
            .write("Counting down the calls left; press Enter to stop watching.\n");
        let mut waited = Duration::ZERO;
        loop {
            let Some(Reply::Drain(d)) = self.req(Request::DrainStatus {
                service: service.into(),
                server: sa,
            }) else {
                return Ok(());
            };
            self.port
                .write(&format!("\rCalls remaining on {sa}: {:<10}", d.remaining));
            if d.remaining == 0 {
                self.port.write(&format!(
                    "\nServer {sa} has no calls left: it can be serviced or removed.\n"
                ));
                return Ok(());
            }
            if self.watch_wait(self.timing.drain_poll, &mut waited)? {
                self.port
                    .write("\nStopped watching; the server keeps draining.\n");
                return Ok(());
            }
        }
    }
}
