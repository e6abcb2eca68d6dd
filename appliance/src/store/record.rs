//! The record codec and the slot-choice rules: pure functions over bytes.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{Loaded, Origin, Slot, StoreError};
use crate::config::model::*;

/// Record magic.
pub const MAGIC: [u8; 4] = *b"SLBC";
/// Record layout version (the payload has its own envelope version).
pub const FORMAT_VERSION: u16 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 20;
/// Bytes after the payload.
pub const CRC_LEN: usize = 4;
/// Upper bound of a payload; [`largest_config`] must fit (checked by a test).
pub const MAX_PAYLOAD: usize = 16 * 1024;
/// Upper bound of a whole record; every backend's slot is at least this big.
pub const MAX_RECORD: usize = HEADER_LEN + MAX_PAYLOAD + CRC_LEN;

const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// The config as stored by envelope V1: a frozen copy of the model of that firmware.
/// Only the structs that changed since are copied; the rest are today's types, and
/// whoever changes one of them freezes its old shape here and adds an envelope.
/// Never edit these structs: the golden vector `tests/data/golden-v1.bin` pins them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigV1 {
    /// Hostname.
    pub hostname: heapless::String<HOSTNAME_LEN>,
    /// WAN interface.
    pub wan: Interface,
    /// LAN interface.
    pub lan: Interface,
    /// Policy routing.
    #[serde(default)]
    pub policy_routing: PolicyRouting,
    /// Virtual services.
    pub services: heapless::Vec<VirtualService, MAX_SERVICES>,
    /// LED bindings.
    #[serde(default)]
    pub leds: heapless::Vec<LedBinding, MAX_LEDS>,
    /// Console settings.
    #[serde(default)]
    pub console: ConsoleSettings,
    /// Watchdog settings.
    #[serde(default)]
    pub watchdog: WatchdogSettings,
    /// The reserved HA shape of V1 (never active).
    #[serde(default)]
    pub ha: HaSettingsV1,
}

/// The reserved HA settings of envelope V1 (HA could not be enabled then).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HaSettingsV1 {
    /// Always false in valid V1 configs.
    #[serde(default)]
    pub enabled: bool,
    /// VRRP virtual router id (0 = unset).
    #[serde(default)]
    pub vrid: u8,
    /// VRRP priority (0 = unset).
    #[serde(default)]
    pub priority: u8,
    /// Peer appliance address.
    #[serde(default)]
    pub peer: Option<Ipv4Addr>,
    /// Sync interface.
    #[serde(default)]
    pub sync_interface: IfName,
}

impl From<ConfigV1> for Config {
    /// V1 -> current: HA stays off; unset or unusable VRID/priority take today's defaults;
    /// the old peer becomes the unicast peer of the subnet it is on (dropped when on neither).
    fn from(v: ConfigV1) -> Config {
        let old = v.ha;
        let on = |n: &Ipv4Net, ip: Ipv4Addr| n.contains(ip) && n.addr != ip;
        let peer_lan = old.peer.filter(|&p| on(&v.lan.address, p));
        let peer_wan = old
            .peer
            .filter(|&p| peer_lan.is_none() && on(&v.wan.address, p));
        let defaults = HaSettings::default();
        let ha = HaSettings {
            enabled: false,
            vrid: if old.vrid == 0 {
                defaults.vrid
            } else {
                old.vrid
            },
            // 255 means "address owner", which an appliance never is.
            priority: if old.priority == 0 || old.priority == u8::MAX {
                defaults.priority
            } else {
                old.priority
            },
            peer_lan,
            peer_wan,
            sync_interface: old.sync_interface,
            ..defaults
        };
        Config {
            hostname: v.hostname,
            wan: v.wan,
            lan: v.lan,
            policy_routing: v.policy_routing,
            services: v.services,
            leds: v.leds,
            console: v.console,
            watchdog: v.watchdog,
            ha,
            router: Default::default(),
            management: Default::default(),
            syslog: SyslogSettings::default(),
            ntp: NtpSettings::default(),
        }
    }
}

/// The config as stored by envelope V2 (the HA pair): a frozen copy of that model.
/// Never edit it: the golden vector `tests/data/golden-v2.bin` pins it. Sections added
/// since are new fields of [`Config`] that V2 records migrate to their defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigV2 {
    /// Hostname.
    pub hostname: heapless::String<HOSTNAME_LEN>,
    /// WAN interface.
    pub wan: Interface,
    /// LAN interface.
    pub lan: Interface,
    /// Policy routing.
    #[serde(default)]
    pub policy_routing: PolicyRouting,
    /// Virtual services.
    pub services: heapless::Vec<VirtualService, MAX_SERVICES>,
    /// LED bindings.
    #[serde(default)]
    pub leds: heapless::Vec<LedBinding, MAX_LEDS>,
    /// Console settings.
    #[serde(default)]
    pub console: ConsoleSettings,
    /// Watchdog settings.
    #[serde(default)]
    pub watchdog: WatchdogSettings,
    /// HA settings.
    #[serde(default)]
    pub ha: HaSettings,
}

impl From<ConfigV2> for Config {
    /// V2 -> current: every section V2 had is kept; sections added since take their defaults.
    fn from(v: ConfigV2) -> Config {
        Config {
            hostname: v.hostname,
            wan: v.wan,
            lan: v.lan,
            policy_routing: v.policy_routing,
            services: v.services,
            leds: v.leds,
            console: v.console,
            watchdog: v.watchdog,
            ha: v.ha,
            router: Default::default(),
            management: Default::default(),
            syslog: SyslogSettings::default(),
            ntp: NtpSettings::default(),
        }
    }
}

/// Versioned payload. Variants are never reordered or removed (postcard encodes
/// the variant index); old versions are migrated to the current model on load.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Envelope {
    /// First stored format (HA reserved).
    V1(ConfigV1),
    /// HA settings (VRRP pair, connection sync).
    V2(ConfigV2),
    /// The current model.
    V3(Config),
}

impl Envelope {
    /// Migrate any stored version to the current model.
    pub fn into_current(self) -> Config {
        match self {
            Envelope::V1(c) => c.into(),
            Envelope::V2(c) => c.into(),
            Envelope::V3(c) => c,
        }
    }
}

/// What one slot holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotState {
    /// A record that passed every check.
    Valid {
        /// Its generation.
        generation: u64,
        /// The (migrated) config.
        config: Box<Config>,
    },
    /// Erased (all 0xFF) or never written (all 0x00) header.
    Erased,
    /// Anything else, with the reason.
    Corrupt(String),
}

impl SlotState {
    /// Short description for logs and the console.
    pub fn describe(&self) -> String {
        match self {
            SlotState::Valid { generation, .. } => format!("valid, generation {generation}"),
            SlotState::Erased => "erased".into(),
            SlotState::Corrupt(why) => format!("corrupt ({why})"),
        }
    }
    fn generation(&self) -> Option<u64> {
        match self {
            SlotState::Valid { generation, .. } => Some(*generation),
            _ => None,
        }
    }
}

/// Encode a record of `config` with `generation` (always the current envelope).
pub fn encode_record(config: &Config, generation: u64) -> Result<Vec<u8>, StoreError> {
    encode_envelope(&Envelope::V3(config.clone()), generation)
}

/// Encode a record of any envelope version (older ones only for golden-vector tests).
pub fn encode_envelope(env: &Envelope, generation: u64) -> Result<Vec<u8>, StoreError> {
    let payload = postcard::to_stdvec(env).map_err(|e| StoreError::Encode(e.to_string()))?;
    if payload.len() > MAX_PAYLOAD {
        return Err(StoreError::TooLarge {
            len: payload.len() + HEADER_LEN + CRC_LEN,
            slot: MAX_RECORD,
        });
    }
    let mut rec = Vec::with_capacity(HEADER_LEN + payload.len() + CRC_LEN);
    rec.extend_from_slice(&MAGIC);
    rec.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    rec.extend_from_slice(&0u16.to_le_bytes());
    rec.extend_from_slice(&generation.to_le_bytes());
    // payload.len() <= MAX_PAYLOAD, which fits u32.
    rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    rec.extend_from_slice(&payload);
    let crc = CRC32.checksum(&rec);
    rec.extend_from_slice(&crc.to_le_bytes());
    Ok(rec)
}

/// From a header, the payload length: `Ok(None)` when erased, `Err(reason)` when corrupt.
pub fn header_payload_len(h: &[u8], slot_size: usize) -> Result<Option<usize>, String> {
    if h.len() < HEADER_LEN {
        return Err("short header".into());
    }
    let h = &h[..HEADER_LEN];
    if h.iter().all(|&b| b == 0xFF) || h.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    if h[0..4] != MAGIC {
        return Err(format!("bad magic {:02x?}", &h[0..4]));
    }
    let version = u16::from_le_bytes([h[4], h[5]]);
    if version != FORMAT_VERSION {
        return Err(format!(
            "record format version {version} is not known to this firmware (knows {FORMAT_VERSION}); written by newer firmware or damaged"
        ));
    }
    let len = u32::from_le_bytes([h[16], h[17], h[18], h[19]]) as usize;
    let max = MAX_PAYLOAD.min(slot_size.saturating_sub(HEADER_LEN + CRC_LEN));
    if len > max {
        return Err(format!("payload length {len} exceeds the maximum {max}"));
    }
    Ok(Some(len))
}

/// Decode a slot's bytes (at least the whole record; extra bytes are ignored).
pub fn decode_slot(bytes: &[u8]) -> SlotState {
    let len = match header_payload_len(bytes, usize::MAX) {
        Ok(Some(len)) => len,
        Ok(None) => return SlotState::Erased,
        Err(why) => return SlotState::Corrupt(why),
    };
    let end = HEADER_LEN + len;
    let Some(crc_bytes) = bytes.get(end..end + CRC_LEN) else {
        return SlotState::Corrupt("record truncated".into());
    };
    let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    if CRC32.checksum(&bytes[..end]) != stored {
        return SlotState::Corrupt("CRC mismatch (interrupted write or damaged flash)".into());
    }
    let mut g = [0u8; 8];
    g.copy_from_slice(&bytes[8..16]);
    let generation = u64::from_le_bytes(g);
    match postcard::take_from_bytes::<Envelope>(&bytes[HEADER_LEN..end]) {
        Ok((env, [])) => SlotState::Valid {
            generation,
            config: Box::new(env.into_current()),
        },
        Ok((_, rest)) => SlotState::Corrupt(format!("{} trailing payload bytes", rest.len())),
        Err(e) => SlotState::Corrupt(format!(
            "payload does not decode ({e}); written by newer firmware?"
        )),
    }
}

/// Choose the config to run from the two slot states.
pub fn pick(states: [SlotState; 2], factory: &Config) -> Loaded {
    let notes = vec![
        format!("slot A: {}", states[0].describe()),
        format!("slot B: {}", states[1].describe()),
    ];
    let erased = states.iter().all(|s| *s == SlotState::Erased);
    let [a, b] = states;
    let best = match (a, b) {
        (
            SlotState::Valid {
                generation: ga,
                config: ca,
            },
            SlotState::Valid {
                generation: gb,
                config: cb,
            },
        ) => {
            // Equal generations (two writers that raced before the store lock existed, or
            // a copied image): slot A wins, and `next_target` then writes B, never A.
            if ga >= gb {
                Some((ga, ca, Origin::SlotA))
            } else {
                Some((gb, cb, Origin::SlotB))
            }
        }
        (SlotState::Valid { generation, config }, _) => Some((generation, config, Origin::SlotA)),
        (_, SlotState::Valid { generation, config }) => Some((generation, config, Origin::SlotB)),
        _ => None,
    };
    match best {
        Some((generation, config, origin)) => Loaded {
            config: *config,
            generation,
            origin,
            notes,
        },
        None => Loaded {
            config: factory.clone(),
            generation: 0,
            origin: if erased {
                Origin::Empty
            } else {
                Origin::BothCorrupt
            },
            notes,
        },
    }
}

/// The slot the next save writes (never the one [`pick`] loads) and its generation.
pub fn next_target(states: &[SlotState; 2]) -> (Slot, u64) {
    match (states[0].generation(), states[1].generation()) {
        (Some(a), Some(b)) => {
            // Same tie rule as `pick`: on equal generations A is the loaded one, so write B.
            if a < b {
                (Slot::A, b.saturating_add(1))
            } else {
                (Slot::B, a.saturating_add(1))
            }
        }
        (Some(a), None) => (Slot::B, a.saturating_add(1)),
        (None, Some(b)) => (Slot::A, b.saturating_add(1)),
        (None, None) => (Slot::A, 1),
    }
}

fn filled<const N: usize>(c: char) -> heapless::String<N> {
    let mut s = heapless::String::new();
    while s.push(c).is_ok() {}
    s
}

/// The largest config the model can carry: every collection full, every string
/// at capacity, every number at its type maximum (so every varint at its longest).
/// Not a valid config; it bounds the record size.
pub fn largest_config() -> Config {
    let max_ip = Ipv4Addr::new(255, 255, 255, 255);
    let iface = Interface {
        name: filled('e'),
        address: Ipv4Net {
            addr: max_ip,
            prefix: u8::MAX,
        },
        gateway: Some(max_ip),
        mtu: u16::MAX,
    };
    let mut accept = heapless::Vec::new();
    while accept
        .push(CodeRange {
            lo: u16::MAX,
            hi: u16::MAX,
        })
        .is_ok()
    {}
    let probe = ProbeSettings {
        enabled: true,
        interval_ms: u32::MAX,
        timeout_ms: u32::MAX,
        rise: u8::MAX,
        fall: u8::MAX,
        accept,
        from_uri: filled('f'),
        to_uri: filled('t'),
        user_agent: filled('u'),
        on_failure: FailureAction::Remove,
    };
    let mut services = heapless::Vec::new();
    for i in 0..MAX_SERVICES {
        let mut servers = heapless::Vec::new();
        for j in 0..MAX_SERVERS {
            let _ = servers.push(RealServer {
                address: Ipv4Addr::new(255, 255, i as u8, j as u8),
                port: u16::MAX,
                weight: u32::MAX,
                state: AdminState::Disabled,
            });
        }
        let _ = services.push(VirtualService {
            name: filled('s'),
            vip: max_ip,
            port: u16::MAX,
            protocol: Protocol::Udp,
            scheduler: Scheduler::Mh,
            forwarding: Forwarding::Dr,
            persistence_timeout: u32::MAX,
            sip_persistence: true,
            one_packet: true,
            persistence_granularity: max_ip,
            probe: probe.clone(),
            servers,
        });
    }
    let mut leds = heapless::Vec::new();
    while leds
        .push(LedBinding {
            role: LedRole::Activity,
            backend: LedBackend::Gpio,
            name: filled('l'),
            gpio: u32::MAX,
            active_low: true,
        })
        .is_ok()
    {}
    Config {
        hostname: filled('h'),
        wan: iface.clone(),
        lan: iface.clone(),
        policy_routing: PolicyRouting {
            enabled: true,
            table: u32::MAX,
            priority: u32::MAX,
            fwmark: u32::MAX,
            sip_port: u16::MAX,
            gateway: Some(max_ip),
        },
        services,
        leds,
        console: ConsoleSettings {
            password_hash: filled('p'),
            idle_lock_s: u32::MAX,
        },
        watchdog: WatchdogSettings {
            enabled: true,
            timeout_s: u32::MAX,
        },
        ha: HaSettings {
            enabled: true,
            vrid: u8::MAX,
            priority: u8::MAX,
            advert_interval_cs: u16::MAX,
            preempt: true,
            preempt_delay_s: u32::MAX,
            lan_gateway: Some(max_ip),
            peer_wan: Some(max_ip),
            peer_lan: Some(max_ip),
            sync_interface: filled('i'),
        },
        router: RouterSettings {
            route_wan_to_lan: true,
        },
        management: ManagementSettings {
            listen: ManagementListen::Interface,
            interface: filled('m'),
            address: Some(Ipv4Net {
                addr: max_ip,
                prefix: u8::MAX,
            }),
            allow: {
                let mut v = heapless::Vec::new();
                while v
                    .push(Ipv4Net {
                        addr: max_ip,
                        prefix: u8::MAX,
                    })
                    .is_ok()
                {}
                v
            },
            metrics_enabled: true,
            metrics_port: u16::MAX,
        },
        syslog: SyslogSettings {
            collectors: core::iter::repeat_n(
                SyslogCollector {
                    address: max_ip,
                    port: u16::MAX,
                    transport: SyslogTransport::Tcp,
                },
                MAX_SYSLOG_COLLECTORS,
            )
            .collect(),
            facility: SyslogFacility::Local7,
        },
        ntp: NtpSettings {
            servers: core::iter::repeat_n(max_ip, MAX_NTP_SERVERS).collect(),
            poll_s: u32::MAX,
        },
    }
}
