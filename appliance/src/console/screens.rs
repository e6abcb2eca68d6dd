//! Pure screen rendering for an 80x24 terminal: no cursor addressing, every line
//! at most [`WIDTH`] characters so dumb terminals never wrap.

use std::fmt::Write as _;

use crate::config::{AdminState, Config};
use crate::control::proto::{ServerRow, StatusInfo};
use crate::probe::Health;

/// Widest line we print (one less than 80 so no terminal auto-wraps).
pub const WIDTH: usize = 79;

/// The main menu prompt; tests and the QEMU harness wait for it.
pub const MAIN_PROMPT: &str = "Enter an option: ";

/// Main menu items (number, label).
pub const MAIN_ITEMS: [(u8, &str); 18] = [
    (1, "Status (live)"),
    (2, "Interfaces"),
    (3, "Virtual service settings"),
    (4, "Servers"),
    (5, "Probe settings"),
    (6, "Changes (diff/apply/save)"),
    (7, "Diagnostics (ping, SIP)"),
    (8, "Recent log events"),
    (9, "Console password"),
    (10, "Factory reset"),
    (11, "Reboot / power off"),
    (12, "Shell"),
    (13, "Import keepalived.conf"),
    (14, "High availability"),
    (15, "Management access"),
    (16, "Syslog and time (NTP)"),
    (17, "Firmware update"),
    (0, "Logout / lock"),
];

/// Cut a line to `WIDTH` characters.
pub fn fit(s: &str) -> String {
    s.chars().take(WIDTH).collect()
}

/// Word-wrap `s` into lines of at most `width` characters (long words are split).
pub fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for word in s.split(' ') {
        let mut word: String = word.to_owned();
        loop {
            let need = cur.chars().count() + usize::from(!cur.is_empty()) + word.chars().count();
            if need <= width {
                if !cur.is_empty() {
                    cur.push(' ');
                }
                cur.push_str(&word);
                break;
            }
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            // A single word longer than the line: hard split.
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            out.push(head);
            if word.is_empty() {
                break;
            }
        }
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(cur);
    }
    out
}

fn rule() -> String {
    "-".repeat(WIDTH)
}

fn iface(label: &str, i: &crate::control::proto::IfaceInfo) -> String {
    let link = match i.link_up {
        Some(true) => " up",
        Some(false) => " DOWN",
        None => "",
    };
    format!("{label} {} {}{link}", i.name, i.address)
}

/// The header block shown above every menu.
pub fn header(st: &StatusInfo) -> String {
    let mut flags = Vec::new();
    if st.unapplied {
        flags.push("UNAPPLIED".to_string());
    }
    if st.unsaved {
        flags.push("UNSAVED".to_string());
    }
    if st.candidate_errors > 0 {
        flags.push(format!("{} ERRORS", st.candidate_errors));
    }
    let left = format!("{}  appliance {}", st.hostname, st.version);
    let right = if flags.is_empty() {
        "changes: none".to_string()
    } else {
        format!("changes: {}", flags.join(" "))
    };
    let pad = WIDTH
        .saturating_sub(left.chars().count() + right.chars().count())
        .max(1);
    let mut out = String::new();
    let _ = writeln!(out, "{}", fit(&format!("{left}{}{right}", " ".repeat(pad))));
    let w = iface("WAN", &st.wan);
    let _ = writeln!(
        out,
        "{}",
        fit(&format!("{w:<39} {}", iface("LAN", &st.lan)))
    );
    let vip = if st.vips.is_empty() {
        "none".to_string()
    } else {
        st.vips.join(" ")
    };
    let _ = writeln!(
        out,
        "{}",
        fit(&format!(
            "VIP {vip}   Pool {}/{} up   Active calls {}",
            st.servers_up, st.servers_total, st.active_calls
        ))
    );
    if let Some(ha) = &st.ha {
        for l in ha_lines(ha) {
            let _ = writeln!(out, "{}", fit(&l));
        }
    }
    for l in alert_lines(&st.alerts) {
        let _ = writeln!(out, "{l}");
    }
    let _ = writeln!(out, "{}", rule());
    out
}

/// The locked console when nobody can log in (store fault, no password known since this
/// boot): the fault and what someone at the port can do (docs/console.md, "Store fault").
pub fn login_blocked(st: &StatusInfo, why: &str) -> String {
    let mut out = format!(
        "\n{} (appliance {}) console is locked: nobody can log in.\n\n",
        st.hostname, st.version
    );
    for l in wrap(&format!("The config store is faulty: {why}."), WIDTH - 1) {
        let _ = writeln!(out, "{l}");
    }
    out.push_str(
        "No console password is known since this boot, and a fault never falls back to\n\
         the factory password, so the menu cannot open. No stored config runs.\n\n\
         What you can do here:\n\
         \x20 - A loose or replaced medium: fix it and power-cycle; a readable store\n\
         \x20   brings the config and its password back.\n\
         \x20 - A config from other firmware: boot that firmware (the other slot).\n\
         \x20 - Otherwise erase the store: the box reboots on factory defaults and asks\n\
         \x20   for a new password. The stored config is lost.\n",
    );
    out
}

/// Most header lines the alerts may take; the rest is summarised (the log has them all).
pub const MAX_ALERT_LINES: usize = 6;

/// Alerts wrapped to the screen (never cut mid-sentence), `!! ` first, indented after,
/// at most [`MAX_ALERT_LINES`] lines with a pointer to the log for the rest.
pub fn alert_lines(alerts: &[String]) -> Vec<String> {
    let mut all = Vec::new();
    for a in alerts {
        for (i, part) in wrap(a, WIDTH - 3).into_iter().enumerate() {
            all.push(format!("{}{part}", if i == 0 { "!! " } else { "   " }));
        }
    }
    if all.len() > MAX_ALERT_LINES {
        let more = all.len() - (MAX_ALERT_LINES - 1);
        all.truncate(MAX_ALERT_LINES - 1);
        all.push(format!(
            "!! ... {more} more line(s): 8) Recent log events has every alert"
        ));
    }
    all
}

/// Lines for the pager: every line wrapped to the screen, continuations indented.
pub fn wrap_for_pager(lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for l in lines {
        if l.chars().count() <= WIDTH {
            out.push(l.clone());
            continue;
        }
        // Keep the line's own indentation (SIP replies, diffs); continuations 4 deeper.
        let body = l.trim_start_matches(' ');
        let indent = (l.len() - body.len()).min(WIDTH / 2);
        let lead = " ".repeat(indent);
        for (i, part) in wrap(body, WIDTH - indent - 4).into_iter().enumerate() {
            out.push(if i == 0 {
                format!("{lead}{part}")
            } else {
                format!("{lead}    {part}")
            });
        }
    }
    out
}

/// The HA part of the header: role and peer, the last transition, then any alarm.
pub fn ha_lines(ha: &crate::control::proto::HaInfo) -> Vec<String> {
    let peer = match &ha.peer {
        Some(p) => format!(
            "peer {} prio {} ({:.1} s ago)",
            p.addr, p.priority, p.seen_s_ago
        ),
        None => "peer never heard".into(),
    };
    let sync = if ha.sync_daemons.is_empty() {
        "none".to_string()
    } else {
        ha.sync_daemons
            .iter()
            .filter_map(|d| d.split_whitespace().next())
            .collect::<Vec<_>>()
            .join("+")
    };
    let mut out = vec![format!(
        "HA {} {} s  {peer}  sync {sync}",
        ha.role.to_uppercase(),
        ha.since_s
    )];
    if !ha.last_transition.is_empty() {
        out.push(format!(
            "   last {}: {}",
            ha.last_transition, ha.last_reason
        ));
    }
    if ha.split_brain {
        out.push("!! SPLIT BRAIN: another master is active; it should yield".into());
    }
    if !ha.faults.is_empty() {
        out.push(format!("!! HA fault: {}", ha.faults.join(", ")));
    }
    for e in ha.sync_error.iter().chain(&ha.vrrp_error) {
        out.push(format!("!! {e}"));
    }
    out
}

/// The main menu (header + two columns of items), ending with the prompt text.
pub fn main_menu(st: &StatusInfo) -> String {
    let mut out = header(st);
    // Two columns, the left one taking the odd item.
    let (left, right) = MAIN_ITEMS.split_at(MAIN_ITEMS.len().div_ceil(2));
    for (i, l) in left.iter().enumerate() {
        match right.get(i) {
            Some(r) => {
                let _ = writeln!(out, "{:>3}) {:<34}{:>3}) {}", l.0, l.1, r.0, r.1);
            }
            None => {
                let _ = writeln!(out, "{:>3}) {}", l.0, l.1);
            }
        }
    }
    out.push('\n');
    out.push_str(MAIN_PROMPT);
    out
}

fn health(h: Health) -> &'static str {
    match h {
        Health::Up => "up",
        Health::Down => "DOWN",
        Health::Unknown => "?",
    }
}

/// Operator state as a word.
pub fn admin(a: AdminState) -> &'static str {
    match a {
        AdminState::Enabled => "enabled",
        AdminState::Draining => "draining",
        AdminState::Disabled => "disabled",
    }
}

fn ms(us: Option<u32>) -> String {
    us.map_or_else(|| "-".into(), |u| format!("{:.1}", f64::from(u) / 1000.0))
}

/// The clock's sync state and any syslog collector in trouble, one line each, fitted
/// to the screen; nothing while NTP and remote syslog are off.
pub fn time_and_syslog_lines(st: &StatusInfo) -> Vec<String> {
    let mut out = Vec::new();
    let n = &st.ntp;
    match n.state.as_str() {
        "synced" => {
            let last = n
                .last_sync_unix
                .map(|t| crate::syslog::format::timestamp(t as i64 * 1_000_000))
                .map(|t| t.split('.').next().unwrap_or("").replace('T', " ") + "Z")
                .unwrap_or_else(|| "-".into());
            out.push(format!(
                "Time: synced to {}, offset {:+.1} ms, last sync {last}",
                n.server.as_deref().unwrap_or("-"),
                n.offset_ms.unwrap_or(0.0)
            ));
        }
        "unsynced" => {
            let why: Vec<String> = n
                .servers
                .iter()
                .map(|s| match &s.error {
                    Some(e) => format!("{}: {e}", s.address),
                    None => format!("{}: {}", s.address, s.state),
                })
                .collect();
            out.push(format!("Time: NOT SYNCED ({})", why.join("; ")));
        }
        _ => {}
    }
    for c in &st.syslog {
        if let Some(e) = &c.error {
            out.push(format!("Syslog {}: {} dropped; {e}", c.target, c.dropped));
        }
    }
    out.iter().map(|l| fit(l)).collect()
}

/// The live status screen body.
pub fn status_table(st: &StatusInfo, rows: &[ServerRow], refresh_s: u64) -> String {
    let mut out = header(st);
    for l in time_and_syslog_lines(st) {
        let _ = writeln!(out, "{l}");
    }
    let _ = writeln!(
        out,
        "Live status, refreshed every {refresh_s} s. Press Enter to return."
    );
    let _ = writeln!(
        out,
        "{:<6} {:<20} {:<8} {:<4} {:>3} {:>9} {:>4} {:>5} {:>4} {:>6}",
        "Svc", "Server", "Admin", "Hlth", "Wt", "RTT ms", "Act", "Inact", "Pers", "Call/s"
    );
    // A tall header (HA alarms, alerts) still leaves at least a few rows.
    let max_rows = 24usize.saturating_sub(out.lines().count() + 2).max(3);
    for r in rows.iter().take(max_rows) {
        let wt = r
            .kernel_weight
            .map_or_else(|| "-".into(), |w| w.to_string());
        let rtt = format!("{}/{}", ms(r.rtt_last_us), ms(r.rtt_ewma_us));
        let svc: String = r.service.chars().take(6).collect();
        let _ = writeln!(
            out,
            "{}",
            fit(&format!(
                "{:<6} {:<20} {:<8} {:<4} {:>3} {:>9} {:>4} {:>5} {:>4} {:>6.1}",
                svc,
                r.server.to_string(),
                admin(r.admin),
                health(r.health),
                wt,
                rtt,
                r.active_conns,
                r.inactive_conns,
                r.persistent_conns,
                r.calls_per_s
            ))
        );
    }
    if rows.len() > max_rows {
        let _ = writeln!(
            out,
            "... {} more servers (use 'appliance show servers' from the shell)",
            rows.len() - max_rows
        );
    }
    if rows.is_empty() {
        let _ = writeln!(out, "(no servers configured)");
    }
    out
}

/// One-line summaries of the interfaces for the interfaces menu.
pub fn interfaces(c: &Config) -> String {
    let mut out = String::new();
    for (n, label, i) in [(1, "WAN", &c.wan), (2, "LAN", &c.lan)] {
        let _ = writeln!(
            out,
            "{}",
            fit(&format!(
                "  {n}) {label}  {:<6} {:<18} gateway {:<15} mtu {}",
                i.name,
                i.address.to_string(),
                super::fields::show_gateway(i.gateway),
                i.mtu
            ))
        );
    }
    let _ = writeln!(out, "  3) Hostname  {}", c.hostname);
    let _ = writeln!(out, "  4) Assign WAN and LAN from the ports found");
    let _ = writeln!(out, "  0) Back");
    out
}

/// The ports present, numbered from 1, with their MAC, link, driver and current role.
pub fn nics(list: &[crate::net::nics::Nic], c: &Config) -> String {
    let mut out = String::new();
    if list.is_empty() {
        out.push_str("  (the daemon found no network ports)\n");
    }
    for (i, n) in list.iter().enumerate() {
        let link = match n.link_up {
            Some(true) => "link up",
            Some(false) => "no link",
            None => "link ?",
        };
        let role = if n.name == c.wan.name.as_str() {
            "WAN"
        } else if n.name == c.lan.name.as_str() {
            "LAN"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{}",
            fit(&format!(
                "  {:>2}) {:<10} {:<17} {:<7} {:<12} {role}",
                i + 1,
                n.name,
                n.mac,
                link,
                n.driver.as_deref().unwrap_or("virtual"),
            ))
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st() -> StatusInfo {
        StatusInfo {
            hostname: "sip-lb".into(),
            version: "0.1.0".into(),
            wan: crate::control::proto::IfaceInfo {
                name: "eth0".into(),
                address: "203.0.113.2/24".into(),
                link_up: Some(true),
            },
            lan: crate::control::proto::IfaceInfo {
                name: "eth1".into(),
                address: "198.51.100.1/24".into(),
                link_up: Some(false),
            },
            vips: vec!["203.0.113.10:5060".into()],
            servers_up: 2,
            servers_total: 3,
            active_calls: 7,
            unsaved: true,
            ..Default::default()
        }
    }

    #[test]
    fn login_blocked_screen_fits_and_wraps_the_reason() {
        let why = "cannot read the config store: a very long device error that goes on and on past the edge";
        let m = login_blocked(&st(), why);
        assert!(m.lines().count() <= 20, "{m}");
        assert!(m.lines().all(|l| l.chars().count() < WIDTH), "{m}");
        assert!(m.replace('\n', " ").contains(why), "{m}");
        assert!(m.contains("erase the store"), "{m}");
    }

    #[test]
    fn main_menu_fits_80x24_and_shows_the_header() {
        let m = main_menu(&st());
        assert!(m.lines().count() <= 24, "{m}");
        for l in m.lines() {
            assert!(l.chars().count() <= WIDTH, "too wide: {l:?}");
        }
        assert!(m.contains("sip-lb  appliance 0.1.0"));
        assert!(m.contains("changes: UNSAVED"));
        assert!(m.contains("WAN eth0 203.0.113.2/24 up"));
        assert!(m.contains("LAN eth1 198.51.100.1/24 DOWN"));
        assert!(m.contains("Pool 2/3 up   Active calls 7"));
        assert!(m.contains(" 13) Import keepalived.conf"));
        assert!(m.contains(" 14) High availability"));
        // Every item is shown once.
        for (n, label) in MAIN_ITEMS {
            assert_eq!(m.matches(&format!("{n:>3}) {label}")).count(), 1, "{label}");
        }
        assert!(m.ends_with(MAIN_PROMPT));
    }

    #[test]
    fn header_shows_the_ha_role_peer_transition_and_alarms() {
        let mut s = st();
        assert!(!header(&s).contains("HA "), "no HA line when HA is off");
        s.ha = Some(crate::control::proto::HaInfo {
            role: "master".into(),
            since_s: 12,
            last_transition: "backup -> master".into(),
            last_reason: "no master heard on any member".into(),
            transitions: 2,
            peer: Some(crate::control::proto::HaPeerInfo {
                addr: "203.0.113.3".into(),
                interface: "eth0".into(),
                priority: 100,
                seen_s_ago: 0.04,
            }),
            split_brain: true,
            faults: vec![],
            sync_daemons: vec!["master eth1 id 51".into(), "backup eth1 id 51".into()],
            sync_error: None,
            vrrp_error: Some("VRRP cannot start: no eth0".into()),
        });
        let h = header(&s);
        assert!(
            h.contains("HA MASTER 12 s  peer 203.0.113.3 prio 100 (0.0 s ago)  sync master+backup"),
            "{h}"
        );
        assert!(h.contains("last backup -> master: no master heard"), "{h}");
        assert!(h.contains("!! SPLIT BRAIN"), "{h}");
        assert!(h.contains("!! VRRP cannot start: no eth0"), "{h}");
        let m = main_menu(&s);
        assert!(m.lines().count() <= 24, "{m}");
        for l in m.lines() {
            assert!(l.chars().count() <= WIDTH, "too wide: {l:?}");
        }
    }

    #[test]
    fn long_alerts_wrap_instead_of_being_cut() {
        let a = "network config rejected, nothing was changed: - WAN interface 'eth0' does not exist on this box; the interfaces present are eth1, eth2 (assign one in 2) Interfaces)".to_string();
        let lines = alert_lines(std::slice::from_ref(&a));
        assert!(lines.len() > 1, "{lines:#?}");
        assert!(
            lines.iter().all(|l| l.chars().count() <= WIDTH),
            "{lines:#?}"
        );
        assert!(lines[0].starts_with("!! network config rejected"));
        let joined: String = lines
            .iter()
            .map(|l| l.trim_start_matches("!! ").trim_start())
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(joined, a, "every word of the alert is on screen");
        // Many alerts: capped, with a pointer to the whole text.
        let many = vec![a.clone(); 5];
        let lines = alert_lines(&many);
        assert_eq!(lines.len(), MAX_ALERT_LINES);
        assert!(
            lines.last().unwrap().contains("Recent log events"),
            "{lines:#?}"
        );
    }

    #[test]
    fn pager_lines_wrap_with_indented_continuations() {
        let long = format!("[     12s] WARN  {}", "word ".repeat(40).trim_end());
        let out = wrap_for_pager(&[long.clone(), "short".into()]);
        assert!(out.len() > 2);
        assert!(out.iter().all(|l| l.chars().count() <= WIDTH), "{out:#?}");
        assert!(out[1].starts_with("    word"), "{out:#?}");
        assert_eq!(out.last().unwrap(), "short");
        // Short lines are kept exactly, indentation included.
        assert_eq!(
            wrap_for_pager(&["  | SIP/2.0 200 OK".into()]),
            ["  | SIP/2.0 200 OK"]
        );
        assert_eq!(
            out.iter()
                .map(|l| l.split_whitespace().count())
                .sum::<usize>(),
            long.split_whitespace().count() + 1
        );
    }

    #[test]
    fn wrap_keeps_every_word_within_the_width() {
        let w = wrap("cannot reach the appliance daemon at /run/appliance/control.sock: No such file or directory (os error 2) (is it running? are you root?)", 40);
        assert!(w.iter().all(|l| l.chars().count() <= 40), "{w:#?}");
        assert_eq!(w.join(" "), "cannot reach the appliance daemon at /run/appliance/control.sock: No such file or directory (os error 2) (is it running? are you root?)");
        assert_eq!(wrap("x".repeat(9).as_str(), 4), vec!["xxxx", "xxxx", "x"]);
        assert_eq!(wrap("", 10), vec![""]);
    }

    #[test]
    fn status_table_truncates_to_the_screen() {
        let row = ServerRow {
            service: "a-very-long-service-name".into(),
            server: "198.51.100.11:5060".parse().unwrap(),
            admin: AdminState::Draining,
            health: Health::Down,
            reason: String::new(),
            weight: 1,
            kernel_weight: Some(0),
            rtt_last_us: Some(1234),
            rtt_ewma_us: None,
            active_conns: 1,
            inactive_conns: 99999,
            persistent_conns: 3,
            calls_per_s: 12.25,
        };
        let rows = vec![row; 40];
        let s = status_table(&st(), &rows, 2);
        assert!(s.lines().count() <= 23, "{s}");
        assert!(s.contains("more servers"));
        assert!(
            s.contains("draining DOWN   0     1.2/-    1 99999    3   12.2"),
            "{s}"
        );
        for l in s.lines() {
            assert!(l.chars().count() <= WIDTH, "too wide: {l:?}");
        }
    }

    #[test]
    fn time_and_syslog_lines_show_sync_state_and_collector_errors() {
        let mut st = StatusInfo::default();
        assert!(time_and_syslog_lines(&st).is_empty(), "off: nothing shown");
        st.ntp = crate::ntp::NtpStatus {
            state: "synced".into(),
            server: Some("198.51.100.60".into()),
            offset_ms: Some(-0.25),
            last_sync_unix: Some(1_795_874_773),
            ..Default::default()
        };
        assert_eq!(
            time_and_syslog_lines(&st),
            vec!["Time: synced to 198.51.100.60, offset -0.2 ms, last sync 2026-11-28 14:06:13Z"]
        );
        st.ntp.state = "unsynced".into();
        st.ntp.servers = vec![crate::ntp::client::ServerStatus {
            address: "198.51.100.61".into(),
            state: "error".into(),
            error: Some("no reply within 1 s (server down, unreachable or filtered)".into()),
            ..Default::default()
        }];
        st.syslog = vec![crate::syslog::tasks::CollectorStatus {
            target: "udp://198.51.100.99:514".into(),
            sent: 0,
            dropped: 3,
            state: "error".into(),
            error: Some("host unreachable".into()),
        }];
        let l = time_and_syslog_lines(&st);
        assert!(
            l[0].starts_with("Time: NOT SYNCED (198.51.100.61: no reply within 1 s"),
            "{l:?}"
        );
        assert!(l[0].chars().count() <= 80, "{l:?}");
        assert_eq!(
            l[1],
            "Syslog udp://198.51.100.99:514: 3 dropped; host unreachable"
        );
    }
}
