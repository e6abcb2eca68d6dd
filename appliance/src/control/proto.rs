//! JSON-lines control protocol: one [`Request`] per line, one [`Response`] line back.
//!
//! The socket is `/run/appliance/control.sock` (mode 0600, root only). Every request
//! is a JSON object tagged by `"cmd"`, e.g. `{"cmd":"status"}` or
//! `{"cmd":"server_action","service":"sip","server":"198.51.100.11:5060","action":{"op":"drain"}}`.
//! A response is `{"ok":{...}}` or `{"error":{"message":"..."}}`.
//!
//! Server actions: `drain` acts immediately on the running config (weight 0 in the
//! kernel, existing calls continue) and on the candidate, and leaves the running
//! config marked unsaved; `add`, `remove`, `enable` and `disable` only edit the
//! candidate, which takes effect on `apply`.

use std::net::SocketAddrV4;

use serde::{Deserialize, Serialize};

use crate::config::{AdminState, Config};
use crate::probe::Health;

/// Default path of the control socket.
pub const DEFAULT_SOCKET: &str = "/run/appliance/control.sock";

/// Longest accepted request or response line in bytes (a full config is ~100 KiB of JSON at most).
pub const MAX_LINE: usize = 256 * 1024;

/// Which of the three configurations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Which {
    /// What the kernel and network currently run.
    #[default]
    Running,
    /// The staged edits (what `apply` would make running).
    Candidate,
    /// What is in flash (what the box boots with).
    Saved,
}

/// An operation on one real server; see the module docs for live vs candidate semantics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum ServerOp {
    /// Add the server (address and port come from `server`) to the candidate.
    Add {
        /// IPVS weight 1..=65535.
        weight: u32,
    },
    /// Remove the server from the candidate.
    Remove,
    /// Set the server enabled in the candidate.
    Enable,
    /// Drain now: weight 0 in the running config and the candidate (unsaved).
    Drain,
    /// Set the server disabled (out of the kernel table) in the candidate.
    Disable,
}

/// A request from a client (console or admin CLI) to the daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Header information.
    Status,
    /// Per-server live state.
    ShowServers,
    /// Per-service live state.
    ShowServices,
    /// One of the three configs.
    GetConfig {
        /// Which config.
        which: Which,
    },
    /// Replace the candidate; returns every validation problem.
    SetCandidate {
        /// The new candidate.
        config: Box<Config>,
    },
    /// Line diff of the TOML forms, running -> candidate.
    Diff,
    /// Make the candidate running (refused while it has errors).
    Apply,
    /// Write the running config to flash.
    Save,
    /// Reset the candidate from the running (default) or saved config.
    Revert {
        /// Source to copy into the candidate (`running` or `saved`).
        #[serde(default)]
        from: Which,
    },
    /// Act on one real server.
    ServerAction {
        /// Service name.
        service: String,
        /// Server address and port.
        server: SocketAddrV4,
        /// What to do.
        action: ServerOp,
    },
    /// Connections left on a server (for a drain countdown).
    DrainStatus {
        /// Service name.
        service: String,
        /// Server address and port.
        server: SocketAddrV4,
    },
    /// Replace the config in one step (`config import`): validate, then apply and save
    /// (`live`) or only save; a live import is refused while the candidate has edits.
    ImportConfig {
        /// The imported config (its password hash is ignored).
        config: Box<Config>,
        /// Apply it now as well as saving it.
        live: bool,
    },
    /// Change the console password (`old` is ignored when none is set yet).
    SetPassword {
        /// Current password.
        old: String,
        /// New password.
        new: String,
    },
    /// Check a console password (subject to the daemon's back-off).
    VerifyPassword {
        /// Password to check.
        password: String,
    },
    /// Erase the stored config (serialised with the daemon's saves); factory defaults
    /// apply at the next start, which `reboot` brings about at once.
    FactoryReset {
        /// Must be true.
        confirm: bool,
        /// Reboot now (the console's item); false = erase only (`appliance factory-reset`).
        #[serde(default = "yes")]
        reboot: bool,
    },
    /// Reboot the box.
    Reboot,
    /// Power the box off.
    PowerOff,
    /// Ping a host from the appliance.
    Ping {
        /// IPv4 address or host name.
        host: String,
        /// Echo requests to send (1..=10).
        count: u8,
    },
    /// Send one SIP OPTIONS and report the reply.
    SipOptions {
        /// IPv4 address.
        host: String,
        /// UDP port.
        port: u16,
    },
    /// The most recent `n` events of the daemon's ring buffer.
    Logs {
        /// Number of events.
        n: u32,
    },
    /// The network ports present on the box (name, MAC, link, driver).
    ListNics,
    /// Convert a keepalived.conf; nothing is applied or staged.
    ImportKeepalived {
        /// The file's text.
        text: String,
    },
    /// A/B firmware: the slots and the running install, start an install, or roll back.
    Firmware {
        /// What to do.
        action: FirmwareAction,
    },
}

/// A firmware request (docs/firmware.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FirmwareAction {
    /// Both slots, the last event and the install in progress (poll this for progress).
    Status,
    /// Start an install from a file or an http(s) URL in the background.
    Install {
        /// A path on the box or a URL.
        source: String,
        /// Allow a downgrade.
        #[serde(default)]
        force: bool,
    },
    /// Boot the other (good) slot next.
    Rollback,
    /// A client (the CLI) changed the slots: the daemon logs the environment's note (the
    /// event and its reason, read from the disk, not taken from the client).
    Changed,
}

/// The daemon's answer to one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Success with a payload.
    Ok(Reply),
    /// Failure with a message a person can act on.
    Error {
        /// What went wrong and what to do.
        message: String,
    },
}

impl Response {
    /// Shorthand for an error response.
    pub fn error(message: impl Into<String>) -> Response {
        Response::Error {
            message: message.into(),
        }
    }
}

/// Success payloads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Answer to `Status`.
    Status(Box<StatusInfo>),
    /// Answer to `ShowServers`.
    Servers(Vec<ServerRow>),
    /// Answer to `ShowServices`.
    Services(Vec<ServiceRow>),
    /// Answer to `GetConfig`.
    Config {
        /// Which config this is.
        which: Which,
        /// The config.
        config: Box<Config>,
        /// Its TOML form.
        toml: String,
    },
    /// Answer to `SetCandidate` and candidate-editing server actions.
    Validation(Validation),
    /// Answer to `Diff`.
    Diff(DiffInfo),
    /// Answer to `DrainStatus`.
    Drain(DrainInfo),
    /// Answer to `VerifyPassword`.
    Verified(VerifyInfo),
    /// Answer to `SipOptions`.
    Sip(SipReplyInfo),
    /// Answer to `Logs`.
    Logs(Vec<LogEvent>),
    /// Answer to `ImportKeepalived`.
    Import(Box<ImportInfo>),
    /// Answer to `ListNics`.
    Nics(Vec<crate::net::nics::Nic>),
    /// Answer to `Firmware`.
    Firmware(Box<FirmwareInfo>),
    /// Command output (ping).
    Output {
        /// True when the command succeeded.
        success: bool,
        /// Output lines.
        lines: Vec<String>,
    },
    /// Plain acknowledgement with a human message (apply, save, revert, drain, reboot...).
    Done {
        /// What happened.
        message: String,
    },
}

/// Address summary of one interface for the header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IfaceInfo {
    /// Kernel name.
    pub name: String,
    /// Address/prefix as configured.
    pub address: String,
    /// Link state if known.
    pub link_up: Option<bool>,
}

/// Everything the console header and `appliance status` show.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct StatusInfo {
    /// Hostname.
    pub hostname: String,
    /// Firmware version.
    pub version: String,
    /// WAN interface.
    pub wan: IfaceInfo,
    /// LAN interface.
    pub lan: IfaceInfo,
    /// Virtual services as `a.b.c.d:port`.
    pub vips: Vec<String>,
    /// Servers currently healthy and enabled.
    pub servers_up: u32,
    /// Servers configured (all states).
    pub servers_total: u32,
    /// Active calls (IPVS connections on all services).
    pub active_calls: u64,
    /// Candidate differs from running (staged, not applied).
    pub unapplied: bool,
    /// Running differs from saved (applied, not saved to flash).
    pub unsaved: bool,
    /// The candidate has validation errors (apply would be refused).
    pub candidate_errors: u32,
    /// A console password is set (false on first boot).
    pub password_set: bool,
    /// Set when nobody can log in at the console: the config store is faulty (why) and no
    /// password is known since this boot; the console shows the recovery instead of a prompt.
    #[serde(default)]
    pub login_blocked: Option<String>,
    /// Idle console lock in seconds (0 = never).
    pub idle_lock_s: u32,
    /// Daemon uptime in seconds.
    pub uptime_s: u64,
    /// Alerts to show on the console (e.g. "daemon restarted 5 times in 60 s").
    #[serde(default)]
    pub alerts: Vec<String>,
    /// High availability (None when HA is off).
    #[serde(default)]
    pub ha: Option<HaInfo>,
    /// The clock: NTP sync state ("off", "unsynced", "synced"), server, offset, last sync.
    #[serde(default)]
    pub ntp: crate::ntp::NtpStatus,
    /// Remote syslog collectors: sent and dropped counters, state, last error.
    #[serde(default)]
    pub syslog: Vec<crate::syslog::tasks::CollectorStatus>,
    /// Servers removed or disabled by the operator that still carry calls.
    #[serde(default)]
    pub draining: Vec<DrainingServer>,
    /// A/B firmware: each slot and the last install, switch or rollback with its reason
    /// (empty on a board without slots).
    #[serde(default)]
    pub firmware: Vec<String>,
}

/// A server the operator removed or disabled, kept at weight 0 until its calls end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainingServer {
    /// Service name.
    pub service: String,
    /// Server address and port.
    pub server: SocketAddrV4,
    /// Always "draining" (deleted from the kernel table when over).
    pub state: String,
    /// Connections and persistence templates the kernel still has for it.
    pub conns_left: u64,
    /// Seconds until it is deleted even with connections left.
    pub grace_left_s: u64,
}

/// One firmware slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FirmwareSlot {
    /// "A" or "B".
    pub name: String,
    /// Version written into it ("" when empty).
    pub version: String,
    /// "good", "trial", "bad", "empty"... (`slots::SlotInfo::state`).
    pub state: String,
    /// The running firmware came from this slot.
    pub booted: bool,
    /// The bootloader starts this slot next.
    pub next: bool,
}

/// An install started through the control socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FirmwareJob {
    /// Its file or URL.
    pub source: String,
    /// The current step in words.
    pub step: String,
    /// Image bytes done in this step.
    pub done: u64,
    /// Image bytes in all.
    pub total: u64,
    /// Finished (see `error` / `result`).
    pub finished: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// What it did, when it succeeded.
    pub result: Option<String>,
}

/// Answer to a firmware request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FirmwareInfo {
    /// Both slots (empty on a board without A/B slots).
    pub slots: Vec<FirmwareSlot>,
    /// The last install, switch or rollback with its reason.
    pub last_event: String,
    /// The install started last through the socket, if any.
    pub job: Option<FirmwareJob>,
    /// What an action did (rollback, install started).
    pub message: String,
}

/// HA state for status and the console header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct HaInfo {
    /// "initialize", "backup", "master" or "fault".
    pub role: String,
    /// Seconds in the current role.
    pub since_s: u64,
    /// The last transition as "from -> to" (empty before the first one).
    pub last_transition: String,
    /// Why the last transition happened.
    pub last_reason: String,
    /// Transitions since the daemon started.
    pub transitions: u64,
    /// The other router last heard, if any.
    pub peer: Option<HaPeerInfo>,
    /// Another master is active at the same time (it should yield).
    pub split_brain: bool,
    /// Active fault conditions, in words.
    pub faults: Vec<String>,
    /// Running IPVS sync daemons as read back from the kernel, e.g. "master eth1 id 51".
    pub sync_daemons: Vec<String>,
    /// Why the sync daemons do not match the config, if they do not.
    pub sync_error: Option<String>,
    /// Why VRRP is not running, if it is not.
    #[serde(default)]
    pub vrrp_error: Option<String>,
}

/// The other router as last heard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct HaPeerInfo {
    /// Its address.
    pub addr: String,
    /// Interface it was heard on.
    pub interface: String,
    /// Its advertised priority.
    pub priority: u8,
    /// Seconds since its last advert.
    pub seen_s_ago: f64,
}

/// Live state of one real server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerRow {
    /// Service name.
    pub service: String,
    /// Server address and port.
    pub server: SocketAddrV4,
    /// Operator state (running config).
    pub admin: AdminState,
    /// Probe health.
    pub health: Health,
    /// Why (last probe outcome).
    #[serde(default)]
    pub reason: String,
    /// Weight in the running config.
    pub weight: u32,
    /// Weight in the kernel table, `None` if not in the table.
    pub kernel_weight: Option<u32>,
    /// Last probe round-trip time, microseconds.
    pub rtt_last_us: Option<u32>,
    /// Smoothed probe round-trip time, microseconds.
    pub rtt_ewma_us: Option<u32>,
    /// IPVS active connections.
    pub active_conns: u32,
    /// IPVS inactive connections.
    pub inactive_conns: u32,
    /// IPVS persistent connection templates (calls by Call-ID).
    pub persistent_conns: u32,
    /// New connections per second (from IPVS stats deltas).
    pub calls_per_s: f64,
}

/// Live state of one virtual service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceRow {
    /// Service name.
    pub name: String,
    /// VIP and port.
    pub vip: SocketAddrV4,
    /// Scheduler name.
    pub scheduler: String,
    /// "nat" or "dr".
    pub forwarding: String,
    /// Persistence timeout (s).
    pub persistence_timeout: u32,
    /// SIP persistence engine on.
    pub sip_persistence: bool,
    /// One-packet scheduling on.
    pub one_packet: bool,
    /// Servers healthy and enabled.
    pub servers_up: u32,
    /// Servers configured.
    pub servers_total: u32,
    /// Present in the kernel table.
    pub in_kernel: bool,
    /// Active + inactive connections.
    pub conns: u64,
    /// New connections per second.
    pub calls_per_s: f64,
}

/// Validation outcome of a staged candidate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Validation {
    /// Problems that block `apply`.
    pub errors: Vec<String>,
    /// Problems worth knowing about.
    pub warnings: Vec<String>,
}

impl From<&crate::config::Report> for Validation {
    fn from(r: &crate::config::Report) -> Self {
        Validation {
            errors: r.errors.iter().map(|p| p.message.clone()).collect(),
            warnings: r.warnings.iter().map(|p| p.message.clone()).collect(),
        }
    }
}

impl Validation {
    /// No errors.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// A diff between running and candidate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DiffInfo {
    /// Unified-style lines (`@@`, `-`, `+`, ` ` prefixes); empty when identical.
    pub lines: Vec<String>,
    /// Running differs from saved.
    pub unsaved: bool,
}

/// Connections left on a draining server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainInfo {
    /// Server.
    pub server: SocketAddrV4,
    /// Kernel weight now (`None` if not in the table).
    pub kernel_weight: Option<u32>,
    /// Calls still on the server (connections the kernel still tracks).
    pub remaining: u64,
}

/// Result of a password check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyInfo {
    /// Password accepted.
    pub ok: bool,
    /// Seconds to wait before the next attempt is even checked (back-off).
    pub retry_after_s: u32,
}

/// Outcome of one SIP OPTIONS probe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SipReplyInfo {
    /// Target probed.
    pub target: SocketAddrV4,
    /// Status code, `None` on timeout/error.
    pub code: Option<u16>,
    /// Reason phrase or error text.
    pub reason: String,
    /// Round-trip time in milliseconds.
    pub rtt_ms: Option<f64>,
    /// The raw reply (first lines).
    #[serde(default)]
    pub text: String,
}

/// One recent daemon event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEvent {
    /// Seconds since daemon start.
    pub uptime_s: u64,
    /// "error", "warn", "info".
    pub level: String,
    /// The event text.
    pub message: String,
}

/// One keepalived.conf line the importer did not map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmappedLine {
    /// 1-based line number.
    pub line: u32,
    /// The line text.
    pub text: String,
    /// Why it was not mapped.
    pub reason: String,
}

/// Result of a keepalived.conf import (nothing staged).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImportInfo {
    /// The produced config, when parsing succeeded.
    pub config: Option<Config>,
    /// Its TOML form (empty when `config` is none).
    pub toml: String,
    /// Lines not mapped, with reasons.
    pub unmapped: Vec<UnmappedLine>,
    /// Syntax errors and validation errors of the result.
    pub validation: Validation,
}

/// Parse `a.b.c.d[:port]` with a default port, with a message a person can act on.
pub fn parse_server(s: &str, default_port: u16) -> Result<SocketAddrV4, String> {
    let t = s.trim();
    if let Ok(sa) = t.parse::<SocketAddrV4>() {
        if sa.port() == 0 {
            return Err(format!("'{t}': port 0 is not allowed"));
        }
        return Ok(sa);
    }
    match t.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => Ok(SocketAddrV4::new(ip, default_port)),
        Err(_) => Err(format!(
            "'{t}' is not a server address, expected e.g. 198.51.100.11 or 198.51.100.11:5060"
        )),
    }
}

/// Serde default for fields that are on unless a request says otherwise.
fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_form_is_stable() {
        let r = Request::ServerAction {
            service: "sip".into(),
            server: "198.51.100.11:5060".parse().unwrap(),
            action: ServerOp::Add { weight: 2 },
        };
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(
            j,
            r#"{"cmd":"server_action","service":"sip","server":"198.51.100.11:5060","action":{"op":"add","weight":2}}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&j).unwrap(), r);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"status"}"#).unwrap(),
            Request::Status
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"revert"}"#).unwrap(),
            Request::Revert {
                from: Which::Running
            }
        );
    }

    #[test]
    fn factory_reset_reboots_unless_told_not_to() {
        // Older clients (the console) send no `reboot`: they keep erase + reboot.
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"factory_reset","confirm":true}"#).unwrap(),
            Request::FactoryReset {
                confirm: true,
                reboot: true
            }
        );
        let cli = Request::FactoryReset {
            confirm: true,
            reboot: false,
        };
        let j = serde_json::to_string(&cli).unwrap();
        assert_eq!(
            j,
            r#"{"cmd":"factory_reset","confirm":true,"reboot":false}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&j).unwrap(), cli);
    }

    #[test]
    fn config_round_trips_inside_requests_and_replies() {
        let c = Config::builtin_default();
        let r = Request::SetCandidate {
            config: Box::new(c.clone()),
        };
        let back: Request = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let resp = Response::Ok(Reply::Config {
            which: Which::Saved,
            config: Box::new(c),
            toml: String::new(),
        });
        let back: Response = serde_json::from_str(&serde_json::to_string(&resp).unwrap()).unwrap();
        assert_eq!(back, resp);
        let e = serde_json::to_string(&Response::error("x")).unwrap();
        assert_eq!(e, r#"{"error":{"message":"x"}}"#);
    }

    #[test]
    fn unknown_commands_and_bad_fields_are_errors() {
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"format_disk"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"ping","host":"x"}"#).is_err());
        assert!(serde_json::from_str::<Request>("not json").is_err());
    }

    #[test]
    fn parse_server_defaults_port_and_explains_errors() {
        assert_eq!(
            parse_server("198.51.100.11", 5060).unwrap(),
            "198.51.100.11:5060".parse().unwrap()
        );
        assert_eq!(
            parse_server(" 198.51.100.11:5080 ", 5060).unwrap().port(),
            5080
        );
        assert!(parse_server("198.51.100.11:0", 5060)
            .unwrap_err()
            .contains("port 0"));
        assert!(parse_server("xms1", 5060)
            .unwrap_err()
            .contains("not a server address"));
    }
}
