//! Remote syslog: the daemon's events (server health, HA role, config apply/save,
//! faults, clock sync) as RFC 5424 messages with structured data, sent over UDP
//! (RFC 5426) or TCP with octet counting (RFC 6587) to up to two collectors.
//!
//! `format` is pure; `tasks` holds one sender task per collector behind a bounded
//! queue. Emitting never blocks: a full queue drops the message and counts it, so a
//! dead, unreachable or hanging collector costs the daemon nothing. The local log
//! ring (`daemon::logbuf`) is independent of this.

pub mod format;
pub mod tasks;

use std::net::SocketAddrV4;

pub use tasks::Syslog;

/// SD-ID of our structured data: name `slb` under the documentation enterprise number
/// 32473 (RFC 5612).
pub const SD_ID: &str = "slb@32473";

/// RFC 5424 severities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// 0.
    Emergency = 0,
    /// 1.
    Alert = 1,
    /// 2.
    Critical = 2,
    /// 3.
    Error = 3,
    /// 4.
    Warning = 4,
    /// 5.
    Notice = 5,
    /// 6.
    Informational = 6,
    /// 7.
    Debug = 7,
}

/// One daemon event as it goes to syslog: MSGID, `[slb@32473 ...]` params and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Severity.
    pub severity: Severity,
    /// MSGID: `HEALTH`, `HA`, `CONFIG`, `FAULT` or `TIME`.
    pub msgid: &'static str,
    /// SD-PARAMs of `[slb@32473]`, in order (names are fixed SD-NAMEs).
    pub params: Vec<(&'static str, String)>,
    /// Free text (MSG).
    pub text: String,
}

impl Event {
    /// A server's health changed (`up` = true for up).
    pub fn server_health(service: &str, server: SocketAddrV4, up: bool, reason: &str) -> Event {
        let state = if up { "up" } else { "down" };
        Event {
            severity: if up {
                Severity::Notice
            } else {
                Severity::Warning
            },
            msgid: "HEALTH",
            params: vec![
                ("service", service.into()),
                ("server", server.to_string()),
                ("state", state.into()),
                ("reason", reason.into()),
            ],
            text: format!("server {server} of service {service} is {state}: {reason}"),
        }
    }

    /// The HA role changed.
    pub fn ha_role(from: &str, to: &str, reason: &str) -> Event {
        let loud = to == "master" || to == "fault";
        Event {
            severity: if loud {
                Severity::Warning
            } else {
                Severity::Notice
            },
            msgid: "HA",
            params: vec![
                ("from", from.into()),
                ("state", to.into()),
                ("reason", reason.into()),
            ],
            text: format!("HA role {from} -> {to}: {reason}"),
        }
    }

    /// A config apply or save (`action`) finished, well or not.
    pub fn config(action: &str, ok: bool, detail: &str) -> Event {
        let result = if ok { "ok" } else { "failed" };
        let mut text = format!("configuration {action} {result}");
        if !detail.is_empty() {
            text.push_str(": ");
            text.push_str(detail);
        }
        Event {
            severity: if ok {
                Severity::Notice
            } else {
                Severity::Error
            },
            msgid: "CONFIG",
            params: vec![("action", action.into()), ("result", result.into())],
            text,
        }
    }

    /// A fault (`kind`: `ipvs`, `net`, ...) became active or cleared.
    pub fn fault(kind: &str, active: bool, detail: &str) -> Event {
        let state = if active { "active" } else { "cleared" };
        Event {
            severity: if active {
                Severity::Error
            } else {
                Severity::Notice
            },
            msgid: "FAULT",
            params: vec![
                ("kind", kind.into()),
                ("state", state.into()),
                ("detail", detail.into()),
            ],
            text: format!("{kind} fault {state}: {detail}"),
        }
    }

    /// The clock was synced to an NTP server (or lost its sync).
    pub fn time(synced_to: Option<&str>, offset_ms: f64) -> Event {
        match synced_to {
            Some(server) => Event {
                severity: Severity::Notice,
                msgid: "TIME",
                params: vec![
                    ("state", "synced".into()),
                    ("server", server.into()),
                    ("offset_ms", format!("{offset_ms:.3}")),
                ],
                text: format!("clock synced to {server}, offset {offset_ms:.3} ms"),
            },
            None => Event {
                severity: Severity::Warning,
                msgid: "TIME",
                params: vec![("state", "unsynced".into())],
                text: "clock no longer synced: no NTP server answers".into(),
            },
        }
    }
}
