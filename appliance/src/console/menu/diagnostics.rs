//! Menu item 7: ping and one SIP OPTIONS from the box.

use super::*;

impl<P: Port, D: Daemon> Menu<P, D> {
    pub(super) fn first_server(&mut self) -> String {
        match self.daemon.call(&Request::ShowServers) {
            Ok(Reply::Servers(r)) => r
                .first()
                .map_or(String::new(), |s| s.server.ip().to_string()),
            _ => String::new(),
        }
    }

    pub(super) fn diagnostics(&mut self) -> R<()> {
        loop {
            self.port.write(
                "\nDiagnostics\n  1) Ping a host\n  2) Send a SIP OPTIONS and show the reply\n  0) Back\n",
            );
            match self.line("Diagnostics option: ")?.as_str() {
                "0" | "" => return Ok(()),
                "1" => {
                    let def = self.first_server();
                    let host = self.ask("Host to ping", &def, fields::host)?;
                    let count = self.ask("Count", "3", |s| fields::number(s, 1u8, 10, "count"))?;
                    self.port.write(&format!("Pinging {host}...\n"));
                    if let Some(Reply::Output { success, lines }) =
                        self.req(Request::Ping { host, count })
                    {
                        self.page(&lines)?;
                        self.port.write(if success {
                            "Ping: host answered.\n"
                        } else {
                            "Ping: FAILED.\n"
                        });
                    }
                }
                "2" => {
                    let def = self.first_server();
                    let ip = self.ask("SIP host address", &def, fields::ipv4)?;
                    let port = self.ask("SIP port", "5060", fields::port)?;
                    self.port
                        .write(&format!("Sending OPTIONS to {ip}:{port}...\n"));
                    if let Some(Reply::Sip(s)) = self.req(Request::SipOptions {
                        host: ip.to_string(),
                        port,
                    }) {
                        let rtt = s.rtt_ms.map_or(String::new(), |r| format!(" in {r:.1} ms"));
                        match s.code {
                            Some(code) => self.port.write(&format!(
                                "Reply from {}: {} {}{}\n",
                                s.target, code, s.reason, rtt
                            )),
                            None => self
                                .port
                                .write(&format!("No reply from {}: {}\n", s.target, s.reason)),
                        }
                        let lines: Vec<String> = s
                            .text
                            .lines()
                            .take(15)
                            .map(|l| format!("  | {l}"))
                            .collect();
                        self.page(&lines)?;
                    }
                }
                other => self.say(&format!("'{other}' is not an option: enter 0 to 2")),
            }
        }
    }
}
