//! The appliance configuration model.
//!
//! Every collection and string is bounded with `heapless` so that a stored record
//! has a known maximum size that fits one store slot (see `store`). The same types
//! serialize to TOML (human form) and postcard (flash form).

use core::fmt;
use core::str::FromStr;
use std::net::Ipv4Addr;
use std::time::Duration;

use heapless::{String, Vec};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Maximum number of virtual services.
pub const MAX_SERVICES: usize = 8;
/// Maximum number of real servers per virtual service.
pub const MAX_SERVERS: usize = 64;
/// Maximum length of a short name (service names, interface names).
pub const NAME_LEN: usize = 32;
/// Maximum length of an interface name (Linux IFNAMSIZ - 1).
pub const IFNAME_LEN: usize = 15;
/// Maximum length of a hostname label.
pub const HOSTNAME_LEN: usize = 63;
/// Maximum length of a SIP URI or User-Agent in probe settings.
pub const URI_LEN: usize = 96;
/// Maximum number of accepted reply-code ranges per probe policy.
pub const MAX_CODE_RANGES: usize = 8;
/// Maximum number of LED bindings.
pub const MAX_LEDS: usize = 8;
/// Maximum length of a password hash string (PHC format).
pub const HASH_LEN: usize = 128;
/// Maximum length of an LED device name or path.
pub const LED_NAME_LEN: usize = 48;
/// Default probe interval, milliseconds (see [`ProbeSettings::default`]).
pub const DEFAULT_PROBE_INTERVAL_MS: u32 = 100;
/// Default probe timeout, milliseconds.
pub const DEFAULT_PROBE_TIMEOUT_MS: u32 = 250;

/// Short bounded name.
pub type Name = String<NAME_LEN>;
/// Interface name.
pub type IfName = String<IFNAME_LEN>;
/// SIP URI or header value.
pub type Uri = String<URI_LEN>;

/// The whole appliance configuration (current version).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Hostname shown on the console and set in the kernel.
    pub hostname: String<HOSTNAME_LEN>,
    /// The client-facing interface; carries the VIPs.
    pub wan: Interface,
    /// The server-facing interface; default gateway of the servers in NAT mode.
    pub lan: Interface,
    /// Policy routing for "only SIP through the balancer" set-ups.
    #[serde(default)]
    pub policy_routing: PolicyRouting,
    /// Virtual services (VIP:port) with their real-server pools.
    pub services: Vec<VirtualService, MAX_SERVICES>,
    /// Status LED bindings (board defaults come from the board's factory config).
    #[serde(default)]
    pub leds: Vec<LedBinding, MAX_LEDS>,
    /// Console settings (password, idle lock).
    #[serde(default)]
    pub console: ConsoleSettings,
    /// Hardware watchdog settings.
    #[serde(default)]
    pub watchdog: WatchdogSettings,
    /// High availability: a VRRP pair with IPVS connection sync (off by default).
    #[serde(default)]
    pub ha: HaSettings,
    /// What the box routes besides the balanced traffic (nothing, by default).
    #[serde(default)]
    pub router: RouterSettings,
    /// Management access: where management services (metrics) listen and who may connect.
    #[serde(default)]
    pub management: ManagementSettings,
    /// Remote syslog collectors (none by default).
    #[serde(default)]
    pub syslog: SyslogSettings,
    /// NTP servers that keep the clock right (none by default).
    #[serde(default)]
    pub ntp: NtpSettings,
}

/// Routing between WAN and LAN outside the virtual services.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSettings {
    /// Forward packets that arrive on WAN for addresses that are not the box's own
    /// (off: from WAN only the VIPs and the box itself are reachable; every LAN server
    /// port would otherwise be open to any host that routes the LAN prefix via WAN).
    /// For labs and benchmarks that call servers directly.
    #[serde(default)]
    pub route_wan_to_lan: bool,
}

/// An IPv4 address with prefix length, written `192.0.2.1/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    /// The interface address.
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32 (validated, not enforced by the type).
    pub prefix: u8,
}

/// One network interface (WAN or LAN).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    /// Kernel interface name, e.g. `eth0`.
    pub name: IfName,
    /// Address and prefix.
    pub address: Ipv4Net,
    /// Default gateway reachable on this interface, if any (normally WAN only).
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// Link MTU in bytes.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
}

fn default_mtu() -> u16 {
    1500
}

/// Transport protocol of a virtual service. Only UDP is supported (SIP persistence engine).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// UDP.
    #[default]
    Udp,
}

/// IPVS scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    /// Round robin.
    #[default]
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connections.
    Lc,
    /// Weighted least connections.
    Wlc,
    /// Source hashing.
    Sh,
    /// Maglev hashing.
    Mh,
}

impl Scheduler {
    /// The kernel's scheduler name.
    pub fn kernel_name(self) -> &'static str {
        match self {
            Scheduler::Rr => "rr",
            Scheduler::Wrr => "wrr",
            Scheduler::Lc => "lc",
            Scheduler::Wlc => "wlc",
            Scheduler::Sh => "sh",
            Scheduler::Mh => "mh",
        }
    }
}

/// IPVS forwarding method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Forwarding {
    /// Masquerading: the appliance is the servers' gateway.
    #[default]
    Nat,
    /// Direct routing: replies bypass the appliance.
    Dr,
}

/// One virtual service: a VIP:port balanced over a pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualService {
    /// Operator-visible name, unique among services.
    pub name: Name,
    /// Virtual IP on the WAN side.
    pub vip: Ipv4Addr,
    /// Virtual port (normally 5060).
    #[serde(default = "default_sip_port")]
    pub port: u16,
    /// Transport protocol.
    #[serde(default)]
    pub protocol: Protocol,
    /// IPVS scheduler.
    #[serde(default)]
    pub scheduler: Scheduler,
    /// Forwarding method.
    #[serde(default)]
    pub forwarding: Forwarding,
    /// Persistence timeout in seconds; 0 disables persistence.
    #[serde(default = "default_persistence_timeout")]
    pub persistence_timeout: u32,
    /// Use the kernel's SIP persistence engine (Call-ID affinity).
    #[serde(default = "default_true")]
    pub sip_persistence: bool,
    /// One-packet scheduling (each UDP datagram scheduled on its own).
    #[serde(default = "default_true")]
    pub one_packet: bool,
    /// Persistence granularity netmask (`0.0.0.0` = Call-ID only, recommended with pe sip).
    #[serde(default = "default_granularity")]
    pub persistence_granularity: Ipv4Addr,
    /// Health probe settings for this service's servers.
    #[serde(default)]
    pub probe: ProbeSettings,
    /// The real-server pool.
    #[serde(default)]
    pub servers: Vec<RealServer, MAX_SERVERS>,
}

fn default_sip_port() -> u16 {
    5060
}
/// Default persistence timeout: above the 90 s Min-SE floor of SIP session timers
/// (the seed used 60 s, which `validate` warns about).
fn default_persistence_timeout() -> u32 {
    120
}
fn default_true() -> bool {
    true
}
fn default_granularity() -> Ipv4Addr {
    Ipv4Addr::UNSPECIFIED
}

/// Drain grace of a service without persistence, in seconds: the kernel's default UDP
/// connection timeout, after which an idle UDP flow is gone anyway.
pub const DRAIN_GRACE_NO_PERSISTENCE_S: u32 = 300;

impl VirtualService {
    /// How long a server the operator removed or disabled stays in the kernel at weight 0
    /// while calls are still on it: the persistence timeout (a call idle that long has lost
    /// its template anyway), or [`DRAIN_GRACE_NO_PERSISTENCE_S`] without persistence.
    pub fn drain_grace_s(&self) -> u32 {
        if self.persistence_timeout > 0 {
            self.persistence_timeout
        } else {
            DRAIN_GRACE_NO_PERSISTENCE_S
        }
    }
}

/// Administrative state of a real server, set by the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// Takes new calls when healthy.
    #[default]
    Enabled,
    /// Weight 0: existing calls finish, no new calls.
    Draining,
    /// Removed from the kernel table.
    Disabled,
}

/// One real server of a pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealServer {
    /// Server address (on the LAN subnet in NAT mode).
    pub address: Ipv4Addr,
    /// Server SIP port.
    #[serde(default = "default_sip_port")]
    pub port: u16,
    /// IPVS weight, 1..=65535 for an enabled server.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Operator state.
    #[serde(default)]
    pub state: AdminState,
}

fn default_weight() -> u32 {
    1
}

/// What happens to a server that fails its health probe. An operator drain
/// is a different event and always means weight 0 (see docs/ipvs.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FailureAction {
    /// Keep it in the table with weight 0: its Call-ID templates stay, so a
    /// call whose INVITE reached it just before it failed keeps retrying it.
    Weight0,
    /// Remove it from the table: the kernel then drops its Call-ID templates
    /// on their next packet, so such a call's INVITE retransmission is
    /// scheduled to a live server (the default).
    #[default]
    Remove,
}

/// An inclusive range of SIP status codes, written `200-299`, `2xx` or `404`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CodeRange {
    /// Lowest accepted code.
    pub lo: u16,
    /// Highest accepted code.
    pub hi: u16,
}

impl CodeRange {
    /// True when `code` is inside the range.
    pub fn contains(&self, code: u16) -> bool {
        self.lo <= code && code <= self.hi
    }
}

/// SIP OPTIONS health-probe settings for one service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSettings {
    /// Probing on/off; off means servers are always considered healthy.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Time between probes to one server, milliseconds.
    pub interval_ms: u32,
    /// Time to wait for a reply, milliseconds.
    pub timeout_ms: u32,
    /// Consecutive successes before a server is marked up.
    pub rise: u8,
    /// Consecutive failures before a server is marked down.
    pub fall: u8,
    /// Reply codes that count as alive.
    pub accept: Vec<CodeRange, MAX_CODE_RANGES>,
    /// From URI of the OPTIONS request.
    pub from_uri: Uri,
    /// To/Request URI; empty means `sip:<server>:<port>`.
    #[serde(default)]
    pub to_uri: Uri,
    /// User-Agent header value.
    pub user_agent: Uri,
    /// What to do with a failed server.
    #[serde(default)]
    pub on_failure: FailureAction,
}

/// Policy routing so that only the servers' SIP replies go through the appliance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRouting {
    /// Whether the rule and table are installed.
    pub enabled: bool,
    /// Routing table id used for SIP replies.
    pub table: u32,
    /// Rule priority.
    pub priority: u32,
    /// Match by firewall mark instead of source port when non-zero.
    #[serde(default)]
    pub fwmark: u32,
    /// Source port to match (servers' SIP port) when fwmark is 0.
    pub sip_port: u16,
    /// Next hop for SIP replies.
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
}

/// The role an LED shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LedRole {
    /// Power / overall status.
    Status,
    /// Pool health.
    Pool,
    /// HA role: on = master, slow blink = backup, fast blink = fault, off = HA disabled.
    Ha,
    /// Traffic activity.
    Activity,
}

/// How an LED is driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LedBackend {
    /// Kernel LED class device `/sys/class/leds/<name>`.
    #[default]
    Class,
    /// A sysfs GPIO line (`gpio` number, optionally active low).
    Gpio,
}

/// Binds an LED role to a physical LED.
///
/// A flat struct rather than a tagged enum because postcard cannot decode
/// internally tagged or flattened serde shapes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedBinding {
    /// What the LED shows.
    pub role: LedRole,
    /// How it is driven.
    #[serde(default)]
    pub backend: LedBackend,
    /// LED class device name (backend = class).
    #[serde(default)]
    pub name: String<LED_NAME_LEN>,
    /// GPIO number (backend = gpio).
    #[serde(default)]
    pub gpio: u32,
    /// GPIO line is active low (backend = gpio).
    #[serde(default)]
    pub active_low: bool,
}

/// Console settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSettings {
    /// PHC-format password hash; empty means "not set yet, force a change at first login".
    #[serde(default)]
    pub password_hash: String<HASH_LEN>,
    /// Lock the console after this many idle seconds (0 = never).
    pub idle_lock_s: u32,
}

/// Hardware watchdog settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchdogSettings {
    /// Use the hardware watchdog.
    pub enabled: bool,
    /// Timeout in seconds programmed into the device.
    pub timeout_s: u32,
}

/// Default VRRP virtual router id (also the IPVS sync id).
pub const HA_DEFAULT_VRID: u8 = 51;
/// Default VRRP priority (the other box gets a different one, e.g. 90).
pub const HA_DEFAULT_PRIORITY: u8 = 100;
/// Default VRRP advertisement interval in centiseconds (5 = 50 ms).
pub const HA_DEFAULT_ADVERT_CS: u16 = 5;
/// Default extra preemption delay in seconds (the hold is at least the longest persistence timeout).
pub const HA_DEFAULT_PREEMPT_DELAY_S: u32 = 0;
/// Sync pump: while master, a datagram to this loopback service every
/// [`HA_SYNC_PUMP_INTERVAL_MS`] makes the kernel emit a sync entry, which pushes out the
/// one waiting before it (the kernel sends a part-full buffer only on its 2 s flush).
pub const HA_SYNC_PUMP_ADDR: std::net::Ipv4Addr = std::net::Ipv4Addr::LOCALHOST;
/// UDP port of the sync pump's loopback service (loopback only; never on a wire).
pub const HA_SYNC_PUMP_PORT: u16 = 8849;
/// Sync pump period: a new call's template waits at most this (+ the kernel's 20 ms send
/// delay) on an otherwise idle master.
pub const HA_SYNC_PUMP_INTERVAL_MS: u64 = 100;
/// Persistence timeout (s) of the sync pump's service: outlives several pump periods.
pub const HA_SYNC_PUMP_TIMEOUT_S: u32 = 3;

/// High availability: two appliances elect a master with VRRPv3 (one virtual router on
/// WAN for the VIPs, one on LAN for `lan_gateway`, same VRID) and the kernel's IPVS sync
/// daemon replicates connections master -> backup. Rules live in `validate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HaSettings {
    /// HA on/off.
    pub enabled: bool,
    /// VRRP virtual router id, the same on both boxes; also the IPVS sync id.
    pub vrid: u8,
    /// VRRP priority, 1..=254; the higher one becomes master.
    pub priority: u8,
    /// VRRP advertisement interval in centiseconds.
    pub advert_interval_cs: u16,
    /// Take the master role back from a lower-priority master (after `preempt_hold`).
    pub preempt: bool,
    /// Minimum time as backup before preempting, seconds (see [`HaSettings::preempt_hold`]).
    pub preempt_delay_s: u32,
    /// The servers' default gateway: a virtual address on LAN held by the master (None = no LAN router).
    pub lan_gateway: Option<Ipv4Addr>,
    /// Unicast VRRP peer on WAN (None = multicast 224.0.0.18).
    pub peer_wan: Option<Ipv4Addr>,
    /// Unicast VRRP peer on LAN (None = multicast 224.0.0.18).
    pub peer_lan: Option<Ipv4Addr>,
    /// Interface for connection sync; empty = the LAN interface.
    pub sync_interface: IfName,
}

impl Default for HaSettings {
    fn default() -> Self {
        HaSettings {
            enabled: false,
            vrid: HA_DEFAULT_VRID,
            priority: HA_DEFAULT_PRIORITY,
            advert_interval_cs: HA_DEFAULT_ADVERT_CS,
            preempt: false,
            preempt_delay_s: HA_DEFAULT_PREEMPT_DELAY_S,
            lan_gateway: None,
            peer_wan: None,
            peer_lan: None,
            sync_interface: IfName::new(),
        }
    }
}

/// Default TCP port of the metrics endpoint: node_exporter's well-known port, so a
/// scrape config written for a Linux host's exporter points at the box unchanged.
pub const DEFAULT_METRICS_PORT: u16 = 9100;
/// Maximum number of allowed management source prefixes.
pub const MAX_MGMT_ALLOW: usize = 8;

/// Where the management services listen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ManagementListen {
    /// The LAN interface address (the default: the monitoring network is behind the box).
    #[default]
    Lan,
    /// A dedicated management interface (`management.interface` with `management.address`).
    Interface,
    /// The WAN interface address: reachable from the SIP clients' side (a validation warning).
    Wan,
}

impl ManagementListen {
    /// The word used in the config file and on the console.
    pub fn word(self) -> &'static str {
        match self {
            ManagementListen::Lan => "lan",
            ManagementListen::Interface => "interface",
            ManagementListen::Wan => "wan",
        }
    }
}

/// Management access: where management services listen and which sources may connect.
/// A connection from a source outside `allow` is closed before any byte is read.
/// Rules live in `validate` (`check_management`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManagementSettings {
    /// Which address the services listen on.
    pub listen: ManagementListen,
    /// The dedicated management interface (only with `listen = "interface"`).
    pub interface: IfName,
    /// Address and prefix of the dedicated management interface (only with `listen = "interface"`).
    pub address: Option<Ipv4Net>,
    /// Source prefixes allowed to connect (e.g. the monitoring server's `198.51.100.50/32`).
    pub allow: Vec<Ipv4Net, MAX_MGMT_ALLOW>,
    /// Serve Prometheus metrics on `http://<listen address>:<metrics_port>/metrics`.
    pub metrics_enabled: bool,
    /// TCP port of the metrics endpoint.
    pub metrics_port: u16,
}

impl Default for ManagementSettings {
    fn default() -> Self {
        ManagementSettings {
            listen: ManagementListen::Lan,
            interface: IfName::new(),
            address: None,
            allow: Vec::new(),
            // Off until the operator names who may scrape (an empty allow list admits nobody).
            metrics_enabled: false,
            metrics_port: DEFAULT_METRICS_PORT,
        }
    }
}

impl ManagementSettings {
    /// The address the management services listen on (None: a dedicated interface without address).
    pub fn listen_addr(&self, c: &Config) -> Option<Ipv4Addr> {
        match self.listen {
            ManagementListen::Lan => Some(c.lan.address.addr),
            ManagementListen::Wan => Some(c.wan.address.addr),
            ManagementListen::Interface => self.address.map(|a| a.addr),
        }
    }

    /// True when `src` may connect: inside one of the `allow` prefixes.
    pub fn allows(&self, src: Ipv4Addr) -> bool {
        self.allow.iter().any(|n| n.contains(src))
    }
}

impl HaSettings {
    /// The VRRP advertisement interval.
    pub fn advert_interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.advert_interval_cs) * 10)
    }

    /// The interface the connection sync daemons use (the LAN interface when unset).
    pub fn sync_ifname<'a>(&'a self, c: &'a Config) -> &'a str {
        if self.sync_interface.is_empty() {
            c.lan.name.as_str()
        } else {
            self.sync_interface.as_str()
        }
    }

    /// How long a box must have been backup before it preempts: the configured delay,
    /// but never less than the longest persistence timeout of any service, so the
    /// persistence templates synced from the master are complete before it takes over.
    pub fn preempt_hold(&self, c: &Config) -> Duration {
        let longest = c
            .services
            .iter()
            .map(|s| s.persistence_timeout)
            .max()
            .unwrap_or(0);
        Duration::from_secs(u64::from(self.preempt_delay_s.max(longest)))
    }
}

impl Default for ProbeSettings {
    fn default() -> Self {
        let mut accept = Vec::new();
        // Any 2xx means alive by default; capacity is > 0 so this cannot fail.
        let _ = accept.push(CodeRange { lo: 200, hi: 299 });
        ProbeSettings {
            enabled: true,
            // 100 ms: a closed port is out ~100 ms after it closes (median), a
            // silent server within 850 ms; see docs/probe.md for the trade-off.
            interval_ms: DEFAULT_PROBE_INTERVAL_MS,
            timeout_ms: DEFAULT_PROBE_TIMEOUT_MS,
            rise: 2,
            fall: 3,
            accept,
            from_uri: bounded("sip:probe@appliance.invalid"),
            to_uri: Uri::new(),
            user_agent: bounded("sip-lb-appliance"),
            // Remove: calls caught in the detection window are rescued by their
            // own INVITE retransmissions (lab_rescue, docs/ipvs.md).
            on_failure: FailureAction::default(),
        }
    }
}

impl Default for PolicyRouting {
    fn default() -> Self {
        PolicyRouting {
            enabled: false,
            table: 100,
            priority: 1000,
            fwmark: 0,
            sip_port: 5060,
            gateway: None,
        }
    }
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            password_hash: String::new(),
            idle_lock_s: 900,
        }
    }
}

impl Default for WatchdogSettings {
    fn default() -> Self {
        WatchdogSettings {
            enabled: true,
            timeout_s: 10,
        }
    }
}

/// Maximum number of remote syslog collectors.
pub const MAX_SYSLOG_COLLECTORS: usize = 2;
/// Default syslog collector port (UDP, RFC 5426; also the usual TCP port).
pub const SYSLOG_DEFAULT_PORT: u16 = 514;
/// Maximum number of NTP servers.
pub const MAX_NTP_SERVERS: usize = 3;
/// The NTP server port (RFC 5905).
pub const NTP_PORT: u16 = 123;
/// Default time between NTP polls once synced, seconds.
pub const NTP_DEFAULT_POLL_S: u32 = 64;

/// How messages reach a syslog collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyslogTransport {
    /// One datagram per message (RFC 5426).
    #[default]
    Udp,
    /// A TCP stream with octet-counting framing (RFC 6587).
    Tcp,
}

/// The syslog facility of every message the appliance sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFacility {
    /// System daemons (3).
    Daemon,
    /// Local use 0 (16), the default.
    #[default]
    Local0,
    /// Local use 1 (17).
    Local1,
    /// Local use 2 (18).
    Local2,
    /// Local use 3 (19).
    Local3,
    /// Local use 4 (20).
    Local4,
    /// Local use 5 (21).
    Local5,
    /// Local use 6 (22).
    Local6,
    /// Local use 7 (23).
    Local7,
}

impl SyslogFacility {
    /// The facility's numeric code (RFC 5424 table 1).
    pub fn code(self) -> u8 {
        match self {
            SyslogFacility::Daemon => 3,
            SyslogFacility::Local0 => 16,
            SyslogFacility::Local1 => 17,
            SyslogFacility::Local2 => 18,
            SyslogFacility::Local3 => 19,
            SyslogFacility::Local4 => 20,
            SyslogFacility::Local5 => 21,
            SyslogFacility::Local6 => 22,
            SyslogFacility::Local7 => 23,
        }
    }
}

/// One remote syslog collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogCollector {
    /// Collector address (IPv4; the appliance has no resolver).
    pub address: Ipv4Addr,
    /// Collector port.
    #[serde(default = "default_syslog_port")]
    pub port: u16,
    /// UDP (default) or TCP.
    #[serde(default)]
    pub transport: SyslogTransport,
}

fn default_syslog_port() -> u16 {
    SYSLOG_DEFAULT_PORT
}

impl fmt::Display for SyslogCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.transport {
            SyslogTransport::Udp => "udp",
            SyslogTransport::Tcp => "tcp",
        };
        write!(f, "{scheme}://{}:{}", self.address, self.port)
    }
}

impl FromStr for SyslogCollector {
    type Err = ParseValueError;
    /// `a.b.c.d`, `a.b.c.d:port`, with an optional `udp://` or `tcp://` in front.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseValueError::Collector(s.to_owned());
        let t = s.trim();
        let (transport, rest) = if let Some(r) = t.strip_prefix("tcp://") {
            (SyslogTransport::Tcp, r)
        } else {
            (SyslogTransport::Udp, t.strip_prefix("udp://").unwrap_or(t))
        };
        let (a, port) = match rest.split_once(':') {
            Some((a, p)) => (a, p.parse::<u16>().map_err(|_| bad())?),
            None => (rest, SYSLOG_DEFAULT_PORT),
        };
        Ok(SyslogCollector {
            address: a.parse().map_err(|_| bad())?,
            port,
            transport,
        })
    }
}

/// Remote syslog: the daemon's events as RFC 5424 messages to up to two collectors.
/// No collector = off. Rules live in `validate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SyslogSettings {
    /// Where messages go (empty = remote syslog off).
    pub collectors: Vec<SyslogCollector, MAX_SYSLOG_COLLECTORS>,
    /// Facility of every message.
    pub facility: SyslogFacility,
}

/// NTP: the daemon's SNTP client sets the clock from these servers. No server = off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NtpSettings {
    /// Server addresses (IPv4; the appliance has no resolver), port 123.
    pub servers: Vec<Ipv4Addr, MAX_NTP_SERVERS>,
    /// Seconds between polls once synced (unsynced, the client retries every few seconds).
    pub poll_s: u32,
}

impl Default for NtpSettings {
    fn default() -> Self {
        NtpSettings {
            servers: Vec::new(),
            poll_s: NTP_DEFAULT_POLL_S,
        }
    }
}

/// Copy a str into a bounded string, truncating at a char boundary (for constants only).
pub fn bounded<const N: usize>(s: &str) -> String<N> {
    let mut out = String::new();
    for c in s.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

impl Config {
    /// The addresses the WAN virtual router holds: the service VIPs, deduplicated, in
    /// service order, without the WAN interface address itself (as the net planner adds them).
    pub fn ha_wan_addresses(&self) -> std::vec::Vec<Ipv4Addr> {
        let mut out = std::vec::Vec::new();
        for s in self.services.iter() {
            if s.vip != self.wan.address.addr && !out.contains(&s.vip) {
                out.push(s.vip);
            }
        }
        out
    }

    /// A small built-in configuration matching the QEMU demo lab (documentation addresses).
    ///
    /// The image's real factory defaults are `/etc/appliance/factory.toml`; this is the
    /// last-resort fallback when that file is missing or invalid.
    pub fn builtin_default() -> Config {
        let mut servers = Vec::new();
        for last in [11u8, 12, 13] {
            let _ = servers.push(RealServer {
                address: Ipv4Addr::new(198, 51, 100, last),
                port: 5060,
                weight: 1,
                state: AdminState::Enabled,
            });
        }
        let mut services = Vec::new();
        let _ = services.push(VirtualService {
            name: bounded("sip"),
            vip: Ipv4Addr::new(203, 0, 113, 10),
            port: 5060,
            protocol: Protocol::Udp,
            scheduler: Scheduler::Rr,
            forwarding: Forwarding::Nat,
            persistence_timeout: default_persistence_timeout(),
            sip_persistence: true,
            one_packet: true,
            persistence_granularity: Ipv4Addr::UNSPECIFIED,
            probe: ProbeSettings::default(),
            servers,
        });
        Config {
            hostname: bounded("sip-lb"),
            wan: Interface {
                name: bounded("eth0"),
                address: Ipv4Net {
                    addr: Ipv4Addr::new(203, 0, 113, 2),
                    prefix: 24,
                },
                gateway: Some(Ipv4Addr::new(203, 0, 113, 1)),
                mtu: 1500,
            },
            lan: Interface {
                name: bounded("eth1"),
                address: Ipv4Net {
                    addr: Ipv4Addr::new(198, 51, 100, 1),
                    prefix: 24,
                },
                gateway: None,
                mtu: 1500,
            },
            policy_routing: PolicyRouting::default(),
            services,
            leds: Vec::new(),
            console: ConsoleSettings::default(),
            watchdog: WatchdogSettings::default(),
            ha: HaSettings::default(),
            router: RouterSettings::default(),
            management: ManagementSettings::default(),
            syslog: SyslogSettings::default(),
            ntp: NtpSettings::default(),
        }
    }
}

// ---- textual forms ---------------------------------------------------------

/// Why a textual value could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseValueError {
    /// Not `a.b.c.d/len`.
    #[error("'{0}' is not an IPv4 address with prefix, expected e.g. 192.0.2.1/24")]
    Net(std::string::String),
    /// Not a syslog collector.
    #[error("'{0}' is not a syslog collector, expected e.g. 192.0.2.5, 192.0.2.5:1514 or tcp://192.0.2.5:514")]
    Collector(std::string::String),
    /// Not a status code or range.
    #[error(
        "'{0}' is not a SIP status code range, expected e.g. 200, 2xx or 200-299 (codes 100-699)"
    )]
    Codes(std::string::String),
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = ParseValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseValueError::Net(s.to_owned());
        let (a, p) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        Ok(Ipv4Net { addr, prefix })
    }
}

impl Ipv4Net {
    /// The netmask as a u32.
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix.min(32)))
        }
    }
    /// True when `ip` is inside this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) & self.mask()) == (u32::from(self.addr) & self.mask())
    }
    /// The subnet itself: the network address with this prefix (`a.b.c.0/24`).
    pub fn network(&self) -> Ipv4Net {
        Ipv4Net {
            addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()),
            prefix: self.prefix,
        }
    }
    /// The subnet's broadcast address (all host bits set).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }
    /// True when `ip` is this subnet's network or broadcast address, which no host
    /// may use; /31 and /32 have no such addresses (RFC 3021).
    pub fn is_network_or_broadcast(&self, ip: Ipv4Addr) -> bool {
        self.prefix <= 30 && (ip == self.network().addr || ip == self.broadcast())
    }
    /// True when the two subnets share any address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        // The shorter prefix contains the other's network address.
        let (short, long) = if self.prefix <= other.prefix {
            (self, other)
        } else {
            (other, self)
        };
        short.contains(long.network().addr)
    }
}

impl fmt::Display for CodeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else if self.lo.is_multiple_of(100) && self.hi == self.lo + 99 {
            write!(f, "{}xx", self.lo / 100)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl FromStr for CodeRange {
    type Err = ParseValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let bad = || ParseValueError::Codes(s.to_owned());
        let code = |x: &str| -> Result<u16, ParseValueError> {
            let v: u16 = x.trim().parse().map_err(|_| bad())?;
            if (100..=699).contains(&v) {
                Ok(v)
            } else {
                Err(bad())
            }
        };
        let r = if let Some(class) = t.strip_suffix("xx").or_else(|| t.strip_suffix("XX")) {
            let c: u16 = class.parse().map_err(|_| bad())?;
            if !(1..=6).contains(&c) {
                return Err(bad());
            }
            CodeRange {
                lo: c * 100,
                hi: c * 100 + 99,
            }
        } else if let Some((a, b)) = t.split_once('-') {
            CodeRange {
                lo: code(a)?,
                hi: code(b)?,
            }
        } else {
            let v = code(t)?;
            CodeRange { lo: v, hi: v }
        };
        if r.lo > r.hi {
            return Err(bad());
        }
        Ok(r)
    }
}

// Human-readable formats (TOML, JSON) get strings; postcard gets compact tuples.
macro_rules! text_or_tuple_serde {
    ($ty:ty, $tuple:ty, $to:expr, $from:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.collect_str(self)
                } else {
                    let t: $tuple = $to(self);
                    t.serialize(s)
                }
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = std::string::String::deserialize(d)?;
                    s.parse().map_err(serde::de::Error::custom)
                } else {
                    let t = <$tuple>::deserialize(d)?;
                    Ok($from(t))
                }
            }
        }
    };
}

text_or_tuple_serde!(
    Ipv4Net,
    (u32, u8),
    |n: &Ipv4Net| (u32::from(n.addr), n.prefix),
    |(a, p): (u32, u8)| Ipv4Net {
        addr: Ipv4Addr::from(a),
        prefix: p
    }
);
text_or_tuple_serde!(
    CodeRange,
    (u16, u16),
    |c: &CodeRange| (c.lo, c.hi),
    |(lo, hi): (u16, u16)| CodeRange { lo, hi }
);

#[cfg(test)]
mod tests {
    use super::*;

    /// The one place for subnet arithmetic (validation, console, planner, netlink).
    #[test]
    fn ipv4net_network_broadcast_overlaps() {
        let n: Ipv4Net = "198.51.100.7/24".parse().unwrap();
        assert_eq!(n.network().to_string(), "198.51.100.0/24");
        assert_eq!(n.broadcast(), Ipv4Addr::new(198, 51, 100, 255));
        assert!(n.is_network_or_broadcast(Ipv4Addr::new(198, 51, 100, 0)));
        assert!(n.is_network_or_broadcast(Ipv4Addr::new(198, 51, 100, 255)));
        assert!(!n.is_network_or_broadcast(Ipv4Addr::new(198, 51, 100, 1)));
        let p31: Ipv4Net = "192.0.2.0/31".parse().unwrap();
        assert!(!p31.is_network_or_broadcast(Ipv4Addr::new(192, 0, 2, 0)));
        let all: Ipv4Net = "192.0.2.1/0".parse().unwrap();
        assert_eq!(all.broadcast(), Ipv4Addr::BROADCAST);
        let big: Ipv4Net = "198.51.0.1/16".parse().unwrap();
        let other: Ipv4Net = "203.0.113.1/24".parse().unwrap();
        assert!(n.overlaps(&big) && big.overlaps(&n));
        assert!(!n.overlaps(&other) && !other.overlaps(&n));
    }

    #[test]
    fn builtin_default_round_trips_toml_and_postcard() {
        let c = Config::builtin_default();
        let text = toml::to_string(&c).expect("toml serialize");
        let back: Config = toml::from_str(&text).expect("toml parse");
        assert_eq!(c, back, "{text}");
        let bytes = postcard::to_stdvec(&c).expect("postcard");
        let back2: Config = postcard::from_bytes(&bytes).expect("postcard parse");
        assert_eq!(c, back2);
    }

    #[test]
    fn ha_defaults_and_helpers() {
        let mut c = Config::builtin_default();
        let h = HaSettings::default();
        assert_eq!(
            (h.enabled, h.vrid, h.priority, h.advert_interval_cs),
            (false, 51, 100, 5)
        );
        assert_eq!(h.advert_interval(), Duration::from_millis(50));
        // An empty [ha] table gets every default.
        let parsed: HaSettings = toml::from_str("").unwrap();
        assert_eq!(parsed, h);
        assert_eq!(h.sync_ifname(&c), "eth1");
        let named = HaSettings {
            sync_interface: bounded("eth2"),
            ..h.clone()
        };
        assert_eq!(named.sync_ifname(&c), "eth2");
        // The hold is the longest persistence timeout unless the delay is longer.
        assert_eq!(h.preempt_hold(&c), Duration::from_secs(120));
        let mut dr = c.services[0].clone();
        dr.name = bounded("long");
        dr.persistence_timeout = 1800;
        let _ = c.services.push(dr);
        assert_eq!(h.preempt_hold(&c), Duration::from_secs(1800));
        let long_delay = HaSettings {
            preempt_delay_s: 3600,
            ..h.clone()
        };
        assert_eq!(long_delay.preempt_hold(&c), Duration::from_secs(3600));
        c.services.clear();
        assert_eq!(h.preempt_hold(&c), Duration::ZERO);
    }

    #[test]
    fn ha_wan_addresses_dedup_and_skip_own_address() {
        let mut c = Config::builtin_default();
        let mut s2 = c.services[0].clone();
        s2.port = 5080;
        let _ = c.services.push(s2.clone());
        s2.vip = Ipv4Addr::new(203, 0, 113, 11);
        let _ = c.services.push(s2.clone());
        s2.vip = c.wan.address.addr;
        let _ = c.services.push(s2);
        assert_eq!(
            c.ha_wan_addresses(),
            vec![
                Ipv4Addr::new(203, 0, 113, 10),
                Ipv4Addr::new(203, 0, 113, 11)
            ]
        );
    }

    #[test]
    fn syslog_collectors_parse_and_print() {
        let c: SyslogCollector = "192.0.2.5".parse().unwrap();
        assert_eq!(c.to_string(), "udp://192.0.2.5:514");
        let c: SyslogCollector = " tcp://192.0.2.5:6514 ".parse().unwrap();
        assert_eq!((c.transport, c.port), (SyslogTransport::Tcp, 6514));
        assert_eq!(c.to_string().parse::<SyslogCollector>().unwrap(), c);
        assert_eq!(
            "udp://192.0.2.5:99"
                .parse::<SyslogCollector>()
                .unwrap()
                .port,
            99
        );
        for bad in [
            "",
            "host",
            "192.0.2.5:x",
            "192.0.2.5:70000",
            "sctp://192.0.2.5",
        ] {
            let e = bad.parse::<SyslogCollector>().unwrap_err().to_string();
            assert!(e.contains("tcp://192.0.2.5:514"), "{bad}: {e}");
        }
    }

    #[test]
    fn code_ranges_parse_and_print() {
        assert_eq!(
            "2xx".parse::<CodeRange>().unwrap(),
            CodeRange { lo: 200, hi: 299 }
        );
        assert_eq!("404".parse::<CodeRange>().unwrap().to_string(), "404");
        assert_eq!(
            "400-405".parse::<CodeRange>().unwrap().to_string(),
            "400-405"
        );
        assert!("99".parse::<CodeRange>().is_err());
        assert!("500-400".parse::<CodeRange>().is_err());
        assert!("7xx".parse::<CodeRange>().is_err());
    }

    #[test]
    fn ipv4net_parse_and_contains() {
        let n: Ipv4Net = "198.51.100.1/24".parse().unwrap();
        assert!(n.contains(Ipv4Addr::new(198, 51, 100, 200)));
        assert!(!n.contains(Ipv4Addr::new(198, 51, 101, 1)));
        assert!("198.51.100.1/33".parse::<Ipv4Net>().is_err());
        assert!("198.51.100.1".parse::<Ipv4Net>().is_err());
        let z: Ipv4Net = "0.0.0.0/0".parse().unwrap();
        assert!(z.contains(Ipv4Addr::new(8, 8, 8, 8)));
    }
}
