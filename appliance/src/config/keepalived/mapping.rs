//! Mapping parsed keepalived.conf statements to appliance services (the VRRP side is in `vrrp`).

use std::net::Ipv4Addr;

use super::parser::Node;
use super::{vrrp, Ctx, Severity, KEEPALIVED_DEFAULT_PERSISTENCE};
use crate::config::model::*;

/// Per-service probe facts gathered from checks, merged across real servers.
#[derive(Default)]
pub(super) struct CheckFacts {
    pub(super) seen_check: bool,
    pub(super) timeout_s: Option<u32>,
    pub(super) retry: Option<u32>,
    pub(super) inhibit: Vec<bool>,
}

pub(super) struct Mapper<'c> {
    pub(super) ctx: &'c mut Ctx,
}

pub(super) fn parse_u32(s: &str) -> Option<u32> {
    s.parse::<u32>().ok()
}

impl Mapper<'_> {
    pub(super) fn note(&mut self, n: &Node, sev: Severity, msg: String) {
        self.ctx.note(n.file, n.line, sev, msg);
    }

    /// The `ADDRESS PORT` arguments of a virtual_server or real_server line; every
    /// problem becomes an error note on that line.
    pub(super) fn address_port(
        &mut self,
        n: &Node,
        label: &str,
        keyword: &str,
        v4_hint: &str,
    ) -> Option<(Ipv4Addr, u16)> {
        let addr = match n.args.first().map(|a| a.parse::<Ipv4Addr>()) {
            Some(Ok(a)) => a,
            Some(Err(_)) => {
                self.note(
                    n,
                    Severity::Error,
                    format!("{label}: '{}' is not an IPv4 address{v4_hint}", n.args[0]),
                );
                return None;
            }
            None => {
                self.note(
                    n,
                    Severity::Error,
                    format!("{keyword} needs an address and a port"),
                );
                return None;
            }
        };
        let port = match n.args.get(1).map(|p| p.parse::<u16>()) {
            Some(Ok(p)) => p,
            Some(Err(_)) => {
                self.note(
                    n,
                    Severity::Error,
                    format!("{label}: '{}' is not a port number", n.args[1]),
                );
                return None;
            }
            None => {
                self.note(n, Severity::Error, format!("{label}: missing port"));
                return None;
            }
        };
        Some((addr, port))
    }

    /// The single numeric argument of `n`, or an error note naming the keyword.
    pub(super) fn num(&mut self, n: &Node, what: &str) -> Option<u32> {
        match n.args.first() {
            None => {
                self.note(
                    n,
                    Severity::Error,
                    format!("{} needs a value ({what})", n.key),
                );
                None
            }
            Some(a) => match parse_u32(a) {
                Some(v) => {
                    self.extra_args(n, 1);
                    Some(v)
                }
                None => {
                    self.note(
                        n,
                        Severity::Error,
                        format!("{} needs a whole number ({what}), got '{a}'", n.key),
                    );
                    None
                }
            },
        }
    }

    pub(super) fn word<'n>(&mut self, n: &'n Node, what: &str) -> Option<&'n str> {
        match n.args.first() {
            None => {
                self.note(
                    n,
                    Severity::Error,
                    format!("{} needs a value ({what})", n.key),
                );
                None
            }
            Some(a) => {
                self.extra_args(n, 1);
                Some(a.as_str())
            }
        }
    }

    pub(super) fn extra_args(&mut self, n: &Node, expected: usize) {
        if n.args.len() > expected {
            self.note(
                n,
                Severity::Unmapped,
                format!(
                    "extra arguments after {}: '{}' ignored",
                    n.key,
                    n.args[expected..].join(" ")
                ),
            );
        }
    }

    pub(super) fn no_block(&mut self, n: &Node) {
        if n.block.is_some() {
            self.note(
                n,
                Severity::Unmapped,
                format!("unexpected block after {}; its content is ignored", n.key),
            );
        }
    }

    pub(super) fn top<'n>(
        &mut self,
        nodes: &'n [Node],
        services: &mut Vec<VirtualService>,
        vrrp: &mut vrrp::Vrrp<'n>,
    ) {
        for n in nodes {
            match n.key.as_str() {
                "vrrp_instance" => vrrp.instances.push(n),
                "global_defs" => {
                    let why = if self.global_defs_sync(n, vrrp) {
                        "apart from the sync daemon interface (see its note) it has no equivalent on the appliance"
                    } else {
                        "it has no equivalent on the appliance"
                    };
                    self.note(
                        n,
                        Severity::Unmapped,
                        format!("{} {}(lines {}-{}) not imported: {why}", n.key, args_sp(n), n.line, n.end_line),
                    )
                }
                "virtual_server" => {
                    if let Some(s) = self.virtual_server(n, services.len()) {
                        services.push(s);
                    }
                }
                "virtual_server_group" => self.note(
                    n,
                    Severity::Unmapped,
                    format!(
                        "virtual_server_group {} (lines {}-{}) is not supported; define each VIP as its own virtual_server",
                        n.args.join(" "),
                        n.line,
                        n.end_line
                    ),
                ),
                "vrrp_sync_group" | "vrrp_script" | "vrrp_track_process"
                | "static_ipaddress" | "static_routes" | "static_rules" | "linkbeat_interfaces" | "track_file"
                | "garp_group" | "bfd_instance" | "net_namespace" => {
                    let why = if n.key == "vrrp_sync_group" {
                        "the appliance's WAN and LAN routers always act as one group"
                    } else if n.key.starts_with("vrrp") {
                        "the appliance tracks its WAN and LAN links and the pool health itself"
                    } else if n.key.starts_with("static") {
                        "addresses and routes come from the appliance's WAN/LAN settings"
                    } else {
                        "it has no equivalent on the appliance"
                    };
                    self.note(
                        n,
                        Severity::Unmapped,
                        format!("{} {}(lines {}-{}) not imported: {why}", n.key, args_sp(n), n.line, n.end_line),
                    )
                }
                _ => self.note(
                    n,
                    Severity::Unmapped,
                    format!("unknown top-level keyword '{}' not imported", n.key),
                ),
            }
        }
    }

    pub(super) fn virtual_server(&mut self, n: &Node, index: usize) -> Option<VirtualService> {
        let label = format!("virtual_server {}", n.args.join(" "));
        if n.args.first().map(String::as_str) == Some("group")
            || n.args.first().map(String::as_str) == Some("fwmark")
        {
            self.note(
                n,
                Severity::Unmapped,
                format!(
                    "{label} (lines {}-{}): {} virtual servers are not supported; use VIP and port",
                    n.line, n.end_line, n.args[0]
                ),
            );
            return None;
        }
        let (vip, port) =
            self.address_port(n, &label, "virtual_server", " (IPv6 is not supported)")?;
        self.extra_args(n, 2);
        let Some(block) = &n.block else {
            self.note(
                n,
                Severity::Error,
                format!("{label} has no {{ ... }} block"),
            );
            return None;
        };
        let mut s = VirtualService {
            name: bounded(&if index == 0 {
                "sip".to_string()
            } else {
                format!("sip-{}", index + 1)
            }),
            vip,
            port,
            protocol: Protocol::Udp,
            scheduler: Scheduler::Rr,
            forwarding: Forwarding::Nat,
            persistence_timeout: 0,
            sip_persistence: false,
            one_packet: false,
            // ipvsadm's default persistent netmask when none is given.
            persistence_granularity: Ipv4Addr::BROADCAST,
            probe: ProbeSettings::default(),
            servers: heapless::Vec::new(),
        };
        let mut protocol_ok = true;
        let mut facts = CheckFacts::default();
        let mut pe_line: Option<&Node> = None;
        let mut sched_set = false;
        let mut delay_loop: Option<(u32, &Node)> = None;
        for c in block {
            match c.key.as_str() {
                "delay_loop" => {
                    if let Some(v) = self.num(c, "seconds between checks") {
                        delay_loop = Some((v, c));
                    }
                }
                "lb_algo" | "lvs_sched" => {
                    if let Some(w) = self.word(c, "scheduler") {
                        sched_set = true;
                        match w.to_ascii_lowercase().as_str() {
                            "rr" => s.scheduler = Scheduler::Rr,
                            "wrr" => s.scheduler = Scheduler::Wrr,
                            "lc" => s.scheduler = Scheduler::Lc,
                            "wlc" => s.scheduler = Scheduler::Wlc,
                            "sh" => s.scheduler = Scheduler::Sh,
                            "mh" => s.scheduler = Scheduler::Mh,
                            other => self.note(
                                c,
                                Severity::Error,
                                format!("scheduler '{other}' is not supported; use rr, wrr, lc, wlc, sh or mh"),
                            ),
                        }
                    }
                }
                "lb_kind" | "lvs_method" => {
                    if let Some(w) = self.word(c, "forwarding method") {
                        match w.to_ascii_uppercase().as_str() {
                            "NAT" => s.forwarding = Forwarding::Nat,
                            "DR" => s.forwarding = Forwarding::Dr,
                            other => self.note(
                                c,
                                Severity::Error,
                                format!("forwarding method {other} is not supported; use NAT or DR"),
                            ),
                        }
                    }
                }
                "protocol" => {
                    if let Some(w) = self.word(c, "UDP") {
                        if !w.eq_ignore_ascii_case("udp") {
                            self.note(
                                c,
                                Severity::Error,
                                format!("{label}: protocol {w} is not supported; the appliance balances SIP over UDP only"),
                            );
                            protocol_ok = false;
                        }
                    }
                }
                "persistence_timeout" => {
                    if c.args.is_empty() {
                        s.persistence_timeout = KEEPALIVED_DEFAULT_PERSISTENCE;
                        self.note(
                            c,
                            Severity::Info,
                            format!("persistence_timeout without a value: keepalived's default {KEEPALIVED_DEFAULT_PERSISTENCE} s used"),
                        );
                    } else if let Some(v) = self.num(c, "seconds") {
                        s.persistence_timeout = v;
                    }
                }
                "persistence_granularity" => {
                    if let Some(w) = self.word(c, "netmask") {
                        match w.parse::<Ipv4Addr>() {
                            Ok(m) => s.persistence_granularity = m,
                            Err(_) => self.note(c, Severity::Error, format!("persistence_granularity '{w}' is not a netmask")),
                        }
                    }
                }
                "pe" | "persistence_engine" => {
                    if let Some(w) = self.word(c, "persistence engine name") {
                        if w.eq_ignore_ascii_case("sip") {
                            s.sip_persistence = true;
                            pe_line = Some(c);
                            if w != "sip" {
                                self.note(
                                    c,
                                    Severity::Info,
                                    format!("persistence engine '{w}' imported as sip (the kernel only accepts lower case; '{w}' made keepalived's table empty)"),
                                );
                            }
                        } else {
                            self.note(c, Severity::Error, format!("persistence engine '{w}' is not supported; only sip"));
                        }
                    }
                }
                "ops" => {
                    self.extra_args(c, 0);
                    s.one_packet = true;
                }
                "nat_mask" => self.note(
                    c,
                    Severity::Info,
                    "nat_mask not needed: the LAN prefix comes from the appliance's LAN setting".into(),
                ),
                "alpha" => self.note(
                    c,
                    Severity::Info,
                    "alpha is how the appliance always works: a server takes calls only after passing its probe".into(),
                ),
                "retry" => {
                    if let Some(v) = self.num(c, "retries") {
                        facts.retry.get_or_insert(v);
                    }
                }
                "delay_before_retry" => self.note(
                    c,
                    Severity::Unmapped,
                    "delay_before_retry not imported: the prober retries at the probe interval".into(),
                ),
                "inhibit_on_failure" => facts.inhibit.push(true),
                "real_server" => {
                    if let Some(r) = self.real_server(c, &mut facts) {
                        if s.servers.push(r).is_err() {
                            self.note(c, Severity::Error, format!("{label}: more than {MAX_SERVERS} real servers; the rest are not imported"));
                        }
                    }
                }
                "sorry_server" | "sorry_server_inhibit" | "sorry_server_lvs_method" | "quorum" | "quorum_up"
                | "quorum_down" | "hysteresis" | "virtualhost" | "ha_suspend" | "smtp_alert" | "omega"
                | "one_packet_scheduling" | "lvs_flags" | "hashed" | "flag-1" | "flag-2" | "flag-3" | "sh-port"
                | "sh-fallback" | "mh-port" | "mh-fallback" | "ip_family" | "connect_timeout" | "warmup"
                | "notify_up" | "notify_down" | "quorum_up_script" => {
                    let why = match c.key.as_str() {
                        "sorry_server" | "sorry_server_inhibit" | "sorry_server_lvs_method" => {
                            "a sorry server is not supported; calls are dropped when no server is healthy"
                        }
                        "quorum" | "quorum_up" | "quorum_down" | "hysteresis" => {
                            "quorum is not supported; the service stays up while any server is healthy"
                        }
                        _ => "no equivalent on the appliance",
                    };
                    self.note(c, Severity::Unmapped, format!("{} {}not imported: {why}", c.key, args_sp(c)));
                }
                other => self.note(
                    c,
                    Severity::Unmapped,
                    format!("unknown keyword '{other}' in {label} not imported"),
                ),
            }
            if c.key != "real_server" {
                self.no_block(c);
            }
        }
        if !sched_set {
            self.note(
                n,
                Severity::Info,
                format!("{label}: no lb_algo given; rr used (set the scheduler explicitly)"),
            );
        }
        if s.sip_persistence && s.persistence_timeout == 0 {
            if let Some(p) = pe_line {
                self.note(
                    p,
                    Severity::Info,
                    "pe sip without persistence_timeout: keepalived silently drops the engine; the appliance refuses this (add persistence_timeout)".into(),
                );
            }
        }
        if s.persistence_timeout == 0 {
            s.persistence_granularity = Ipv4Addr::UNSPECIFIED;
        }
        // Probe mapping.
        if let Some((v, node)) = delay_loop {
            let ms = v.saturating_mul(1000);
            s.probe.interval_ms = ms;
            self.note(
                node,
                Severity::Info,
                format!(
                    "delay_loop {v} s mapped to probe interval {ms} ms; the appliance's default is {} ms, which detects a dead server in about a second",
                    super::DEFAULT_PROBE_INTERVAL_MS
                ),
            );
        }
        if let Some(t) = facts.timeout_s {
            let r = &crate::config::validate::PROBE_TIMEOUT_RANGE_MS;
            s.probe.timeout_ms = t.saturating_mul(1000).clamp(*r.start(), *r.end());
        }
        if let Some(r) = facts.retry {
            s.probe.fall = u8::try_from(r.saturating_add(1)).unwrap_or(u8::MAX);
        }
        if !facts.seen_check && !s.servers.is_empty() {
            self.note(
                n,
                Severity::Info,
                format!("{label} has no health check; the appliance probes every server with SIP OPTIONS (set probe.enabled = false to turn it off)"),
            );
        }
        let inhibited = facts.inhibit.iter().filter(|b| **b).count();
        if inhibited == 0 {
            s.probe.on_failure = FailureAction::Remove;
            self.note(
                n,
                Severity::Info,
                format!("{label}: failed servers are removed as keepalived does without inhibit_on_failure; on_failure = \"weight0\" keeps them at weight 0 instead"),
            );
        } else {
            s.probe.on_failure = FailureAction::Weight0;
        }
        if inhibited > 0 && inhibited < facts.inhibit.len() {
            self.note(
                n,
                Severity::Info,
                format!("{label}: inhibit_on_failure is set on some servers only; the appliance applies weight 0 to all"),
            );
        }
        if protocol_ok {
            Some(s)
        } else {
            None
        }
    }

    pub(super) fn real_server(&mut self, n: &Node, facts: &mut CheckFacts) -> Option<RealServer> {
        let label = format!("real_server {}", n.args.join(" "));
        let (address, port) = self.address_port(n, &label, "real_server", "")?;
        self.extra_args(n, 2);
        let mut r = RealServer {
            address,
            port,
            weight: 1,
            state: AdminState::Enabled,
        };
        let mut inhibit = false;
        for c in n.block.as_deref().unwrap_or(&[]) {
            match c.key.as_str() {
                "weight" => {
                    if let Some(w) = self.num(c, "weight") {
                        r.weight = w;
                        if w == 0 {
                            r.state = AdminState::Draining;
                            self.note(
                                c,
                                Severity::Info,
                                format!("{label}: weight 0 imported as state \"draining\""),
                            );
                        }
                    }
                }
                "inhibit_on_failure" => inhibit = true,
                "MISC_CHECK" => self.misc_check(c, address, facts),
                "HTTP_GET" | "SSL_GET" | "TCP_CHECK" | "SMTP_CHECK" | "DNS_CHECK" | "UDP_CHECK"
                | "PING_CHECK" | "BFD_CHECK" | "FILE_CHECK" => {
                    facts.seen_check = true;
                    self.note(
                        c,
                        Severity::Unmapped,
                        format!(
                            "{} (lines {}-{}) replaced by the appliance's SIP OPTIONS probe",
                            c.key, c.line, c.end_line
                        ),
                    );
                    self.check_timing(c, facts);
                }
                "notify_up" | "notify_down" | "uthreshold" | "lthreshold" | "virtualhost"
                | "rise" | "alpha" => {
                    self.note(
                        c,
                        Severity::Unmapped,
                        format!("{} in {label} not imported: no equivalent", c.key),
                    );
                }
                other => self.note(
                    c,
                    Severity::Unmapped,
                    format!("unknown keyword '{other}' in {label} not imported"),
                ),
            }
            if !c.key.ends_with("_CHECK") && !matches!(c.key.as_str(), "HTTP_GET" | "SSL_GET") {
                self.no_block(c);
            }
        }
        facts.inhibit.push(inhibit);
        if n.block.is_none() {
            self.note(
                n,
                Severity::Info,
                format!("{label} has no block; weight 1 used"),
            );
        }
        Some(r)
    }

    /// Timing keywords shared by all checks: connect_timeout / misc_timeout, retry, delay_before_retry.
    pub(super) fn check_timing(&mut self, c: &Node, facts: &mut CheckFacts) {
        for k in c.block.as_deref().unwrap_or(&[]) {
            match k.key.as_str() {
                "connect_timeout" | "misc_timeout" => {
                    if let Some(v) = self.num(k, "seconds") {
                        facts.timeout_s.get_or_insert(v);
                        self.note(
                            k,
                            Severity::Info,
                            format!("{} {v} s mapped to probe timeout", k.key),
                        );
                    }
                }
                "retry" | "nb_get_retry" => {
                    if let Some(v) = self.num(k, "retries") {
                        facts.retry.get_or_insert(v);
                        self.note(
                            k,
                            Severity::Info,
                            format!(
                                "{} {v} mapped to probe fall = {}",
                                k.key,
                                v.saturating_add(1)
                            ),
                        );
                    }
                }
                _ => {}
            }
        }
    }

    pub(super) fn misc_check(&mut self, c: &Node, server: Ipv4Addr, facts: &mut CheckFacts) {
        facts.seen_check = true;
        let mut have_path = false;
        for k in c.block.as_deref().unwrap_or(&[]) {
            match k.key.as_str() {
                "misc_path" => {
                    have_path = true;
                    // keepalived takes the script and its arguments as one (quoted) string.
                    let joined = k.args.join(" ");
                    let mut parts = joined.split_whitespace();
                    let script = parts.next().unwrap_or("");
                    let ip = parts.next();
                    let port = parts.next();
                    let mut msg = format!("MISC_CHECK script {script} replaced by the appliance's SIP OPTIONS probe of {server}");
                    match ip.map(|i| i.parse::<Ipv4Addr>()) {
                        Some(Ok(ip)) if ip != server => {
                            msg.push_str(&format!(
                                "; the script probed {ip}, not the real server: the appliance always probes the server itself"
                            ))
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) => msg.push_str(&format!("; script argument '{}' is not an address", ip.unwrap_or(""))),
                        None => msg.push_str("; the script had no server address argument"),
                    }
                    if let Some(p) = port {
                        msg.push_str(&format!(
                            "; its local probe port {p} is not needed (one prober socket serves all servers)"
                        ));
                    }
                    self.note(k, Severity::Info, msg);
                }
                "misc_timeout" | "retry" | "nb_get_retry" => {}
                "misc_dynamic" => self.note(
                    k,
                    Severity::Unmapped,
                    "misc_dynamic not imported: weights stay as configured".into(),
                ),
                "delay_before_retry" => self.note(
                    k,
                    Severity::Unmapped,
                    "delay_before_retry not imported: the prober retries at the probe interval"
                        .into(),
                ),
                other => self.note(
                    k,
                    Severity::Unmapped,
                    format!("unknown keyword '{other}' in MISC_CHECK not imported"),
                ),
            }
        }
        if !have_path {
            self.note(
                c,
                Severity::Info,
                "MISC_CHECK without misc_path; SIP OPTIONS probe used".into(),
            );
        }
        self.check_timing(c, facts);
    }
}

pub(super) fn args_sp(n: &Node) -> String {
    if n.args.is_empty() {
        String::new()
    } else {
        format!("{} ", n.args.join(" "))
    }
}
