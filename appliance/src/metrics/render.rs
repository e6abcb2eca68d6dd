//! Prometheus text exposition (format 0.0.4) of a [`Snapshot`] of daemon state.
//!
//! Pure: the daemon fills a snapshot under its lock, and rendering happens off the
//! event loop. IPVS series use node_exporter's IPVS collector names and labels, so
//! dashboards built for it work unchanged; the rest are ours (`appliance_*`).

use std::fmt::Write;
use std::net::{IpAddr, SocketAddrV4};

use crate::ipvs::codec::{ServiceKey, Stats};
use crate::ipvs::ActualService;
use crate::probe::health::{RttHistogram, RTT_BUCKETS_US};
use crate::probe::{Counters, Health};

/// The HTTP Content-Type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One configured real server with what the daemon knows about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSnap {
    /// Virtual service name.
    pub service: String,
    /// Real server address.
    pub addr: SocketAddrV4,
    /// Current health.
    pub health: Health,
    /// Counts toward the pool as up (up, or not probed while probing is off).
    pub up: bool,
    /// Takes part in the pool (administratively enabled).
    pub enabled: bool,
    /// Transitions to up since the daemon started.
    pub to_up: u64,
    /// Transitions to down since the daemon started.
    pub to_down: u64,
    /// Probe counters (zero when probing is off).
    pub probe: Counters,
    /// Probe round-trip times.
    pub rtt: RttHistogram,
}

/// HA state, when `[ha]` is enabled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaSnap {
    /// VRRP role: `initialize`, `backup`, `master` or `fault`.
    pub role: &'static str,
    /// Role transitions since the runner started.
    pub transitions: u64,
    /// Another master is active at the same time.
    pub split_brain: bool,
    /// Sync daemons running: (`master` or `backup`, interface).
    pub sync: Vec<(String, String)>,
    /// The sync daemons match the config (no error).
    pub sync_ok: bool,
}

/// Everything one scrape shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Firmware version.
    pub version: String,
    /// Seconds since the daemon started.
    pub uptime_s: u64,
    /// The last verified kernel IPVS table.
    pub table: Vec<ActualService>,
    /// Configured servers, in config order.
    pub servers: Vec<ServerSnap>,
    /// HA state (None when HA is off).
    pub ha: Option<HaSnap>,
    /// An IPVS or network fault is active.
    pub fault: bool,
    /// Config saves that succeeded since the daemon started.
    pub store_saves: u64,
    /// Config saves that failed since the daemon started.
    pub store_save_failures: u64,
    /// The hardware watchdog is armed (and kicked while the daemon is healthy).
    pub watchdog_armed: bool,
    /// The daemon restarted too often recently (crash loop).
    pub crash_loop: bool,
    /// Daemon starts inside the crash-loop window (this one included).
    pub recent_starts: u64,
    /// The endpoint's own counters (filled by the server).
    pub endpoint: EndpointCounters,
}

/// What the metrics endpoint did with its connections since it started listening.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointCounters {
    /// Scrapes answered.
    pub served: u64,
    /// Connections reset because the source is not in `management.allow`.
    pub refused_source: u64,
    /// Connections reset because the endpoint was busy.
    pub refused_busy: u64,
    /// Requests answered with an error (malformed, wrong path or method, too large).
    pub rejected: u64,
    /// Requests whose head did not arrive in time.
    pub timeouts: u64,
}

/// The states of the server health state set, in output order.
const HEALTH_STATES: [(Health, &str); 3] = [
    (Health::Up, "up"),
    (Health::Down, "down"),
    (Health::Unknown, "unknown"),
];
/// The VRRP roles of the role state set, in output order.
const VRRP_ROLES: [&str; 4] = ["initialize", "backup", "master", "fault"];

/// Writes a label value with the exposition format's escapes (`\`, `"`, newline).
fn esc(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn bool_num(b: bool) -> u8 {
    u8::from(b)
}

/// node_exporter's backend labels: local address/port/mark, remote address/port, protocol.
fn backend_labels(out: &mut String, key: &ServiceKey, remote: IpAddr, rport: u16) {
    let (laddr, lport, proto, mark) = match *key {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => (Some(addr), port, protocol, None),
        ServiceKey::Fwmark { mark, .. } => (None, 0, 0, Some(mark)),
    };
    out.push_str("{local_address=\"");
    if let Some(a) = laddr {
        let _ = write!(out, "{a}");
    }
    let _ = write!(
        out,
        "\",local_port=\"{lport}\",remote_address=\"{remote}\",remote_port=\"{rport}\",proto=\""
    );
    out.push_str(match (mark, proto) {
        (Some(_), _) => "FWM",
        (None, 6) => "TCP",
        (None, 17) => "UDP",
        (None, 132) => "SCTP",
        _ => "",
    });
    out.push_str("\",local_mark=\"");
    if let Some(m) = mark {
        let _ = write!(out, "{m}");
    }
    out.push_str("\"}");
}

/// Our per-server labels: the service, plus node_exporter's remote address and port.
fn server_labels(out: &mut String, s: &ServerSnap) {
    out.push_str("{service=\"");
    esc(out, &s.service);
    let _ = write!(
        out,
        "\",remote_address=\"{}\",remote_port=\"{}\"",
        s.addr.ip(),
        s.addr.port()
    );
}

fn per_server(out: &mut String, snap: &Snapshot, name: &str, value: impl Fn(&ServerSnap) -> u64) {
    for s in &snap.servers {
        out.push_str(name);
        server_labels(out, s);
        let _ = writeln!(out, "}} {}", value(s));
    }
}

fn per_backend(
    out: &mut String,
    snap: &Snapshot,
    name: &str,
    value: impl Fn(&crate::ipvs::codec::DestEntry) -> u64,
) {
    for svc in &snap.table {
        for d in &svc.dests {
            out.push_str(name);
            backend_labels(out, &svc.key, d.key.addr, d.key.port);
            let _ = writeln!(out, " {}", value(d));
        }
    }
}

/// Seconds with microsecond precision, without float formatting noise.
fn secs(out: &mut String, us: u64) {
    let _ = write!(out, "{}.{:06}", us / 1_000_000, us % 1_000_000);
}

/// Renders the whole exposition into `out` (cleared first).
pub fn render(snap: &Snapshot, out: &mut String) {
    out.clear();
    let total = snap.table.iter().fold(Stats::default(), |mut t, s| {
        t.conns = t.conns.saturating_add(s.stats.conns);
        t.inpkts = t.inpkts.saturating_add(s.stats.inpkts);
        t.outpkts = t.outpkts.saturating_add(s.stats.outpkts);
        t.inbytes = t.inbytes.saturating_add(s.stats.inbytes);
        t.outbytes = t.outbytes.saturating_add(s.stats.outbytes);
        t
    });
    for (name, help, v) in [
        (
            "node_ipvs_connections_total",
            "The total number of connections made.",
            total.conns,
        ),
        (
            "node_ipvs_incoming_packets_total",
            "The total number of incoming packets.",
            total.inpkts,
        ),
        (
            "node_ipvs_outgoing_packets_total",
            "The total number of outgoing packets.",
            total.outpkts,
        ),
        (
            "node_ipvs_incoming_bytes_total",
            "The total amount of incoming data.",
            total.inbytes,
        ),
        (
            "node_ipvs_outgoing_bytes_total",
            "The total amount of outgoing data.",
            total.outbytes,
        ),
    ] {
        head(out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }
    head(
        out,
        "node_ipvs_backend_connections_active",
        "gauge",
        "The current active connections by local and remote address.",
    );
    per_backend(out, snap, "node_ipvs_backend_connections_active", |d| {
        u64::from(d.active_conns)
    });
    head(
        out,
        "node_ipvs_backend_connections_inactive",
        "gauge",
        "The current inactive connections by local and remote address.",
    );
    per_backend(out, snap, "node_ipvs_backend_connections_inactive", |d| {
        u64::from(d.inact_conns)
    });
    head(
        out,
        "node_ipvs_backend_weight",
        "gauge",
        "The current backend weight by local and remote address.",
    );
    per_backend(out, snap, "node_ipvs_backend_weight", |d| {
        u64::from(d.params.weight)
    });
    head(
        out,
        "appliance_ipvs_backend_persistence_templates",
        "gauge",
        "Persistence templates (with pe sip: one per active Call-ID) pointing at the backend.",
    );
    per_backend(
        out,
        snap,
        "appliance_ipvs_backend_persistence_templates",
        |d| u64::from(d.persist_conns),
    );
    head(
        out,
        "appliance_active_calls",
        "gauge",
        "Active calls: persistence templates over every backend (the console's figure).",
    );
    let calls: u64 = snap
        .table
        .iter()
        .flat_map(|s| s.dests.iter())
        .map(|d| u64::from(d.persist_conns))
        .sum();
    let _ = writeln!(out, "appliance_active_calls {calls}");

    head(
        out,
        "appliance_server_up",
        "gauge",
        "1 when the real server counts as up in its pool (probed up, or probing off), else 0.",
    );
    per_server(out, snap, "appliance_server_up", |s| u64::from(s.up));
    head(
        out,
        "appliance_server_enabled",
        "gauge",
        "1 when the real server is administratively enabled (not draining or disabled).",
    );
    per_server(out, snap, "appliance_server_enabled", |s| {
        u64::from(s.enabled)
    });
    head(
        out,
        "appliance_server_health",
        "gauge",
        "Health of the real server as probed: 1 for the current state.",
    );
    for s in &snap.servers {
        for (h, word) in HEALTH_STATES {
            out.push_str("appliance_server_health");
            server_labels(out, s);
            let _ = writeln!(out, ",state=\"{word}\"}} {}", bool_num(s.health == h));
        }
    }
    head(
        out,
        "appliance_server_health_transitions_total",
        "counter",
        "Health transitions of the real server since the daemon started, by new state.",
    );
    for s in &snap.servers {
        for (word, v) in [("up", s.to_up), ("down", s.to_down)] {
            out.push_str("appliance_server_health_transitions_total");
            server_labels(out, s);
            let _ = writeln!(out, ",to=\"{word}\"}} {v}");
        }
    }
    for (name, help, f) in [
        (
            "appliance_probe_sent_total",
            "SIP OPTIONS probes sent.",
            (|c: &Counters| c.sent) as fn(&Counters) -> u64,
        ),
        (
            "appliance_probe_timeouts_total",
            "Probes without a final reply in time.",
            |c: &Counters| c.timeout,
        ),
        (
            "appliance_probe_refused_total",
            "Probes refused (ICMP port unreachable: the SIP port is closed).",
            |c: &Counters| c.refused,
        ),
        (
            "appliance_probe_errors_total",
            "Probes that failed with another socket error (host or network unreachable).",
            |c: &Counters| c.error,
        ),
        (
            "appliance_probe_bad_replies_total",
            "Final replies with a status code outside the accepted ranges.",
            |c: &Counters| c.bad_code,
        ),
    ] {
        head(out, name, "counter", help);
        per_server(out, snap, name, |s| f(&s.probe));
    }
    head(
        out,
        "appliance_probe_rtt_seconds",
        "histogram",
        "Round-trip time of SIP OPTIONS probes answered with a final reply.",
    );
    for s in &snap.servers {
        let mut cum = 0u64;
        for (i, n) in s.rtt.buckets.iter().enumerate() {
            cum = cum.saturating_add(*n);
            out.push_str("appliance_probe_rtt_seconds_bucket");
            server_labels(out, s);
            out.push_str(",le=\"");
            match RTT_BUCKETS_US.get(i) {
                Some(b) => secs(out, *b),
                None => out.push_str("+Inf"),
            }
            let _ = writeln!(out, "\"}} {cum}");
        }
        out.push_str("appliance_probe_rtt_seconds_sum");
        server_labels(out, s);
        out.push_str("} ");
        secs(out, s.rtt.sum_us);
        out.push('\n');
        out.push_str("appliance_probe_rtt_seconds_count");
        server_labels(out, s);
        let _ = writeln!(out, "}} {}", s.rtt.count);
    }

    head(
        out,
        "appliance_ha_enabled",
        "gauge",
        "1 when the high-availability pair ([ha]) is enabled.",
    );
    let _ = writeln!(out, "appliance_ha_enabled {}", bool_num(snap.ha.is_some()));
    if let Some(ha) = &snap.ha {
        head(
            out,
            "appliance_vrrp_state",
            "gauge",
            "VRRP role of this box: 1 for the current role.",
        );
        for r in VRRP_ROLES {
            let _ = writeln!(
                out,
                "appliance_vrrp_state{{state=\"{r}\"}} {}",
                bool_num(ha.role == r)
            );
        }
        head(
            out,
            "appliance_vrrp_transitions_total",
            "counter",
            "VRRP role transitions since the VRRP runner started.",
        );
        let _ = writeln!(out, "appliance_vrrp_transitions_total {}", ha.transitions);
        head(
            out,
            "appliance_vrrp_split_brain",
            "gauge",
            "1 while another master is active at the same time.",
        );
        let _ = writeln!(
            out,
            "appliance_vrrp_split_brain {}",
            bool_num(ha.split_brain)
        );
        head(
            out,
            "appliance_ipvs_sync_daemon_up",
            "gauge",
            "IPVS connection-sync daemons running, by role and interface.",
        );
        for (role, ifname) in &ha.sync {
            out.push_str("appliance_ipvs_sync_daemon_up{role=\"");
            esc(out, role);
            out.push_str("\",interface=\"");
            esc(out, ifname);
            out.push_str("\"} 1\n");
        }
        head(
            out,
            "appliance_ipvs_sync_ok",
            "gauge",
            "1 when the running sync daemons match the config.",
        );
        let _ = writeln!(out, "appliance_ipvs_sync_ok {}", bool_num(ha.sync_ok));
    }

    for (name, kind, help, v) in [
        (
            "appliance_fault",
            "gauge",
            "1 while the kernel table or the network differs from the config (see the console).",
            u64::from(snap.fault),
        ),
        (
            "appliance_store_saves_total",
            "counter",
            "Config saves to flash that succeeded (verified by reading back).",
            snap.store_saves,
        ),
        (
            "appliance_store_save_failures_total",
            "counter",
            "Config saves to flash that failed.",
            snap.store_save_failures,
        ),
        (
            "appliance_watchdog_armed",
            "gauge",
            "1 when the hardware watchdog is armed.",
            u64::from(snap.watchdog_armed),
        ),
        (
            "appliance_crash_loop",
            "gauge",
            "1 when the daemon restarted too often recently (crash loop).",
            u64::from(snap.crash_loop),
        ),
        (
            "appliance_daemon_recent_starts",
            "gauge",
            "Daemon starts inside the crash-loop window, this one included.",
            snap.recent_starts,
        ),
        (
            "appliance_daemon_uptime_seconds",
            "gauge",
            "Seconds since the daemon started.",
            snap.uptime_s,
        ),
    ] {
        head(out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    }
    head(
        out,
        "appliance_metrics_connections_total",
        "counter",
        "Connections to this endpoint since it started listening, by outcome.",
    );
    let e = &snap.endpoint;
    for (what, v) in [
        ("served", e.served),
        ("refused_source", e.refused_source),
        ("refused_busy", e.refused_busy),
        ("rejected", e.rejected),
        ("timeout", e.timeouts),
    ] {
        let _ = writeln!(
            out,
            "appliance_metrics_connections_total{{outcome=\"{what}\"}} {v}"
        );
    }
    head(
        out,
        "appliance_build_info",
        "gauge",
        "Firmware build: always 1, the version is a label.",
    );
    out.push_str("appliance_build_info{version=\"");
    esc(out, &snap.version);
    out.push_str("\"} 1\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvs::codec::{DestEntry, DestKey, DestParams, FwdMethod, ServiceParams};
    use std::net::Ipv4Addr;

    fn dest(last: u8, weight: u32, active: u32, inact: u32, persist: u32) -> DestEntry {
        DestEntry {
            key: DestKey {
                addr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, last)),
                port: 5060,
            },
            params: DestParams {
                fwd: FwdMethod::Masq,
                weight,
                u_thresh: 0,
                l_thresh: 0,
            },
            active_conns: active,
            inact_conns: inact,
            persist_conns: persist,
            stats: Stats::default(),
        }
    }

    /// One service with two backends, two configured servers (one down, one up), HA on.
    pub(crate) fn small() -> Snapshot {
        let svc = ActualService {
            key: ServiceKey::udp(Ipv4Addr::new(203, 0, 113, 10), 5060),
            params: ServiceParams {
                sched: "rr".into(),
                flags: 1,
                timeout: 120,
                netmask: 0,
                pe: Some("sip".into()),
            },
            stats: Stats {
                conns: 10,
                inpkts: 20,
                outpkts: 18,
                inbytes: 9000,
                outbytes: 8000,
                ..Stats::default()
            },
            dests: vec![dest(11, 1, 0, 3, 7), dest(12, 0, 0, 0, 2)],
        };
        let mut rtt = RttHistogram::default();
        rtt.observe(400);
        rtt.observe(1_200);
        let server = |last: u8, health: Health, up: bool| ServerSnap {
            service: "sip".into(),
            addr: SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, last), 5060),
            health,
            up,
            enabled: true,
            to_up: 1,
            to_down: u64::from(!up),
            probe: Counters {
                sent: 9,
                ok: 7,
                timeout: 1,
                refused: u64::from(!up) * 2,
                ..Counters::default()
            },
            rtt,
        };
        Snapshot {
            version: "1.2.3".into(),
            uptime_s: 42,
            table: vec![svc],
            servers: vec![
                server(11, Health::Up, true),
                server(12, Health::Down, false),
            ],
            ha: Some(HaSnap {
                role: "master",
                transitions: 2,
                split_brain: false,
                sync: vec![("master".into(), "eth1".into())],
                sync_ok: true,
            }),
            fault: false,
            store_saves: 3,
            store_save_failures: 1,
            watchdog_armed: true,
            crash_loop: false,
            recent_starts: 1,
            endpoint: EndpointCounters {
                served: 5,
                refused_source: 1,
                ..EndpointCounters::default()
            },
        }
    }

    #[test]
    fn renders_the_exact_exposition() {
        let mut out = String::new();
        render(&small(), &mut out);
        let want = include_str!("testdata/small.prom");
        if out != want {
            // Line by line, so a change is easy to read.
            for (i, (a, b)) in out.lines().zip(want.lines()).enumerate() {
                assert_eq!(a, b, "line {}", i + 1);
            }
            assert_eq!(out.lines().count(), want.lines().count());
        }
    }

    #[test]
    fn label_values_are_escaped_and_ha_off_hides_vrrp() {
        let mut s = small();
        s.servers[0].service = "a\"b\\c\nd".into();
        s.ha = None;
        let mut out = String::new();
        render(&s, &mut out);
        assert!(out.contains("appliance_server_up{service=\"a\\\"b\\\\c\\nd\",remote_address=\"198.51.100.11\",remote_port=\"5060\"} 1\n"), "{out}");
        assert!(out.contains("appliance_ha_enabled 0\n"));
        assert!(!out.contains("appliance_vrrp_state"));
        // Every sample line is `name{labels} value` or `name value`; every name has a TYPE.
        for l in out.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            let base = name
                .strip_suffix("_bucket")
                .or_else(|| name.strip_suffix("_sum"))
                .or_else(|| name.strip_suffix("_count"))
                .filter(|b| out.contains(&format!("# TYPE {b} histogram")))
                .unwrap_or(name);
            assert!(out.contains(&format!("# TYPE {base} ")), "{l}");
            let v = l.rsplit(' ').next().unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }
}
