//! Typed requests and replies: what the reconciler asks and what the kernel answers.

use super::*;

/// Identity of a virtual service: (af, protocol, addr, port) or (af, fwmark).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum ServiceKey {
    /// Address-based service.
    Addr {
        /// Transport protocol number (17 = UDP).
        protocol: u16,
        /// Virtual address.
        addr: IpAddr,
        /// Virtual port.
        port: u16,
    },
    /// Firewall-mark service (only ever seen in dumps; we never create one).
    Fwmark {
        /// Address family.
        af: u16,
        /// Mark.
        mark: u32,
    },
}

impl ServiceKey {
    /// A UDP IPv4 service key.
    pub fn udp(addr: Ipv4Addr, port: u16) -> ServiceKey {
        ServiceKey::Addr {
            protocol: IPPROTO_UDP,
            addr: IpAddr::V4(addr),
            port,
        }
    }

    /// The identifying attributes only (what DEL_SERVICE and dest commands carry).
    pub fn to_attrs(&self) -> SvcAttrs {
        match *self {
            ServiceKey::Addr {
                protocol,
                addr,
                port,
            } => SvcAttrs {
                af: Some(af_of(addr)),
                protocol: Some(protocol),
                addr: Some(addr_to_raw(addr)),
                port: Some(port),
                ..SvcAttrs::default()
            },
            ServiceKey::Fwmark { af, mark } => SvcAttrs {
                af: Some(af),
                fwmark: Some(mark),
                ..SvcAttrs::default()
            },
        }
    }

    /// Read the identity out of a service nest.
    pub fn from_attrs(s: &SvcAttrs) -> Result<ServiceKey, CodecError> {
        let af = s.af.ok_or(CodecError::Missing("SVC_AF"))?;
        if let Some(mark) = s.fwmark.filter(|&m| m != 0) {
            return Ok(ServiceKey::Fwmark { af, mark });
        }
        let raw = s.addr.ok_or(CodecError::Missing("SVC_ADDR"))?;
        Ok(ServiceKey::Addr {
            protocol: s.protocol.ok_or(CodecError::Missing("SVC_PROTOCOL"))?,
            addr: addr_from_raw(af, raw)?,
            port: s.port.ok_or(CodecError::Missing("SVC_PORT"))?,
        })
    }
}

/// Protocol name as ipvsadm prints it.
pub fn proto_name(p: u16) -> String {
    match p {
        IPPROTO_UDP => "UDP".into(),
        IPPROTO_TCP => "TCP".into(),
        IPPROTO_SCTP => "SCTP".into(),
        other => format!("proto{other}"),
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceKey::Addr {
                protocol,
                addr,
                port,
            } => write!(f, "{} {}", proto_name(*protocol), SockFmt(*addr, *port)),
            ServiceKey::Fwmark { mark, .. } => write!(f, "FWM {mark}"),
        }
    }
}

/// Formats ip:port with brackets for IPv6.
struct SockFmt(IpAddr, u16);
impl std::fmt::Display for SockFmt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.1),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
        }
    }
}

/// The settable part of a service (what NEW/SET_SERVICE carry besides the key).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceParams {
    /// Scheduler name, e.g. "rr".
    pub sched: String,
    /// `IP_VS_SVC_F_*` flags (HASHED is never part of this).
    pub flags: u32,
    /// Persistence timeout in seconds.
    pub timeout: u32,
    /// Persistence netmask (IPv4 mask as a host u32; 0 = 0.0.0.0).
    pub netmask: u32,
    /// Persistence engine name ("sip"), or none.
    pub pe: Option<String>,
}

impl ServiceParams {
    fn check(&self) -> Result<(), CodecError> {
        if self.sched.len() >= SCHEDNAME_MAXLEN {
            return Err(CodecError::NameTooLong {
                name: self.sched.clone(),
                max: SCHEDNAME_MAXLEN - 1,
            });
        }
        if let Some(pe) = &self.pe {
            if pe.len() >= PENAME_MAXLEN {
                return Err(CodecError::NameTooLong {
                    name: pe.clone(),
                    max: PENAME_MAXLEN - 1,
                });
            }
        }
        Ok(())
    }
}

/// Identity of a destination inside a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct DestKey {
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port.
    pub port: u16,
}

impl std::fmt::Display for DestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        SockFmt(self.addr, self.port).fmt(f)
    }
}

/// Forwarding method (`IP_VS_CONN_F_FWD_MASK` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum FwdMethod {
    /// Masquerading (NAT), 0.
    Masq,
    /// Local node, 1.
    Local,
    /// IP-in-IP tunnel, 2.
    Tunnel,
    /// Direct routing, 3.
    Route,
    /// Cache bypass, 4.
    Bypass,
    /// Anything else the kernel reports.
    Other(u32),
}

impl FwdMethod {
    /// Wire value.
    pub fn to_u32(self) -> u32 {
        match self {
            FwdMethod::Masq => 0,
            FwdMethod::Local => 1,
            FwdMethod::Tunnel => 2,
            FwdMethod::Route => 3,
            FwdMethod::Bypass => 4,
            FwdMethod::Other(v) => v,
        }
    }
    /// From the wire value.
    pub fn from_u32(v: u32) -> FwdMethod {
        match v & 0x7 {
            0 => FwdMethod::Masq,
            1 => FwdMethod::Local,
            2 => FwdMethod::Tunnel,
            3 => FwdMethod::Route,
            4 => FwdMethod::Bypass,
            other => FwdMethod::Other(other),
        }
    }
    /// Name as `/proc/net/ip_vs` prints it.
    pub fn proc_name(self) -> &'static str {
        match self {
            FwdMethod::Masq => "Masq",
            FwdMethod::Local => "Local",
            FwdMethod::Tunnel => "Tunnel",
            FwdMethod::Route => "Route",
            FwdMethod::Bypass => "Bypass",
            FwdMethod::Other(_) => "Unknown",
        }
    }
}

/// The settable part of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DestParams {
    /// Forwarding method.
    pub fwd: FwdMethod,
    /// Weight (0 = quiesced: no new connections).
    pub weight: u32,
    /// Upper connection threshold (0 = none).
    pub u_thresh: u32,
    /// Lower connection threshold.
    pub l_thresh: u32,
}

/// Sync daemon configuration (for HA, later).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DaemonConfig {
    /// 1 = master, 2 = backup.
    pub state: u32,
    /// Interface for the sync multicast.
    pub mcast_ifn: String,
    /// Sync id.
    pub sync_id: u32,
    /// Max UDP payload, if set.
    pub sync_maxlen: Option<u16>,
    /// Multicast group, if not the default.
    pub mcast_group: Option<Ipv4Addr>,
    /// Multicast port, if not the default.
    pub mcast_port: Option<u16>,
    /// Multicast TTL, if not the default.
    pub mcast_ttl: Option<u8>,
}

/// Connection timeouts (seconds); `None` leaves a value unchanged / was not reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Timeouts {
    /// TCP established.
    pub tcp: Option<u32>,
    /// TCP FIN wait.
    pub tcp_fin: Option<u32>,
    /// UDP.
    pub udp: Option<u32>,
}

/// GET_INFO answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Info {
    /// IPVS version code, e.g. 0x010201 = 1.2.1.
    pub version: u32,
    /// Connection hash table size.
    pub conn_tab_size: u32,
}

impl Info {
    /// "1.2.1".
    pub fn version_string(&self) -> String {
        format!(
            "{}.{}.{}",
            (self.version >> 16) & 0xff,
            (self.version >> 8) & 0xff,
            self.version & 0xff
        )
    }
}

/// A request to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// IPVS_CMD_NEW_SERVICE.
    NewService(ServiceKey, ServiceParams),
    /// IPVS_CMD_SET_SERVICE.
    SetService(ServiceKey, ServiceParams),
    /// IPVS_CMD_DEL_SERVICE.
    DelService(ServiceKey),
    /// IPVS_CMD_GET_SERVICE as a dump (all services).
    GetServices,
    /// IPVS_CMD_NEW_DEST.
    NewDest(ServiceKey, DestKey, DestParams),
    /// IPVS_CMD_SET_DEST.
    SetDest(ServiceKey, DestKey, DestParams),
    /// IPVS_CMD_DEL_DEST.
    DelDest(ServiceKey, DestKey),
    /// IPVS_CMD_GET_DEST dump for one service.
    GetDests(ServiceKey),
    /// IPVS_CMD_GET_INFO.
    GetInfo,
    /// IPVS_CMD_NEW_DAEMON.
    NewDaemon(DaemonConfig),
    /// IPVS_CMD_DEL_DAEMON for a state (master/backup).
    DelDaemon(u32),
    /// IPVS_CMD_GET_DAEMON dump.
    GetDaemons,
    /// IPVS_CMD_SET_CONFIG.
    SetConfig(Timeouts),
    /// IPVS_CMD_GET_CONFIG.
    GetConfig,
}

pub(super) fn full_service(key: &ServiceKey, p: &ServiceParams) -> SvcAttrs {
    let mut s = key.to_attrs();
    s.sched_name = Some(p.sched.clone());
    s.pe_name = p.pe.clone();
    // Mask all bits: we own every flag, and HASHED is ignored by the kernel on input.
    s.flags = Some((p.flags & !svc_flags::HASHED, u32::MAX));
    s.timeout = Some(p.timeout);
    s.netmask = Some(p.netmask);
    s
}

pub(super) fn dest_attrs(d: &DestKey, p: Option<&DestParams>) -> DestAttrs {
    let mut a = DestAttrs {
        addr: Some(addr_to_raw(d.addr)),
        port: Some(d.port),
        addr_family: Some(af_of(d.addr)),
        ..DestAttrs::default()
    };
    if let Some(p) = p {
        a.fwd_method = Some(p.fwd.to_u32());
        a.weight = Some(p.weight);
        a.u_thresh = Some(p.u_thresh);
        a.l_thresh = Some(p.l_thresh);
    }
    a
}

impl Request {
    /// True for requests answered by a multi-part dump (sent with NLM_F_DUMP).
    pub fn is_dump(&self) -> bool {
        matches!(
            self,
            Request::GetServices | Request::GetDests(_) | Request::GetDaemons
        )
    }

    /// The genl command.
    pub fn cmd(&self) -> u8 {
        match self {
            Request::NewService(..) => cmd::NEW_SERVICE,
            Request::SetService(..) => cmd::SET_SERVICE,
            Request::DelService(..) => cmd::DEL_SERVICE,
            Request::GetServices => cmd::GET_SERVICE,
            Request::NewDest(..) => cmd::NEW_DEST,
            Request::SetDest(..) => cmd::SET_DEST,
            Request::DelDest(..) => cmd::DEL_DEST,
            Request::GetDests(..) => cmd::GET_DEST,
            Request::GetInfo => cmd::GET_INFO,
            Request::NewDaemon(..) => cmd::NEW_DAEMON,
            Request::DelDaemon(..) => cmd::DEL_DAEMON,
            Request::GetDaemons => cmd::GET_DAEMON,
            Request::SetConfig(..) => cmd::SET_CONFIG,
            Request::GetConfig => cmd::GET_CONFIG,
        }
    }

    /// The attribute-level message.
    pub fn to_message(&self) -> Result<Message, CodecError> {
        let mut m = Message::new(self.cmd());
        match self {
            Request::NewService(k, p) | Request::SetService(k, p) => {
                p.check()?;
                m.service = Some(full_service(k, p));
            }
            Request::DelService(k) | Request::GetDests(k) => m.service = Some(k.to_attrs()),
            Request::NewDest(k, d, p) | Request::SetDest(k, d, p) => {
                m.service = Some(k.to_attrs());
                m.dest = Some(dest_attrs(d, Some(p)));
            }
            Request::DelDest(k, d) => {
                m.service = Some(k.to_attrs());
                m.dest = Some(dest_attrs(d, None));
            }
            Request::GetServices | Request::GetInfo | Request::GetDaemons | Request::GetConfig => {}
            Request::NewDaemon(c) => {
                if c.mcast_ifn.len() >= IFNAME_MAXLEN {
                    return Err(CodecError::NameTooLong {
                        name: c.mcast_ifn.clone(),
                        max: IFNAME_MAXLEN - 1,
                    });
                }
                m.daemon = Some(DaemonAttrs {
                    state: Some(c.state),
                    mcast_ifn: Some(c.mcast_ifn.clone()),
                    sync_id: Some(c.sync_id),
                    sync_maxlen: c.sync_maxlen,
                    mcast_group: c.mcast_group,
                    mcast_group6: None,
                    mcast_port: c.mcast_port,
                    mcast_ttl: c.mcast_ttl,
                })
            }
            Request::DelDaemon(state) => {
                m.daemon = Some(DaemonAttrs {
                    state: Some(*state),
                    ..DaemonAttrs::default()
                })
            }
            Request::SetConfig(t) => {
                m.timeout_tcp = t.tcp;
                m.timeout_tcp_fin = t.tcp_fin;
                m.timeout_udp = t.udp;
            }
        }
        Ok(m)
    }

    /// Encode to genl header + attributes.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        Ok(self.to_message()?.encode())
    }

    /// Parse a request back (used by tests and by the fake kernel).
    pub fn decode(b: &[u8]) -> Result<Request, CodecError> {
        let m = Message::decode(b)?;
        let svc_key = || -> Result<ServiceKey, CodecError> {
            ServiceKey::from_attrs(m.service.as_ref().ok_or(CodecError::Missing("SERVICE"))?)
        };
        let svc_params = || -> Result<ServiceParams, CodecError> {
            let s = m.service.as_ref().ok_or(CodecError::Missing("SERVICE"))?;
            Ok(ServiceParams {
                sched: s
                    .sched_name
                    .clone()
                    .ok_or(CodecError::Missing("SVC_SCHED_NAME"))?,
                flags: s.flags.ok_or(CodecError::Missing("SVC_FLAGS"))?.0,
                timeout: s.timeout.ok_or(CodecError::Missing("SVC_TIMEOUT"))?,
                netmask: s.netmask.ok_or(CodecError::Missing("SVC_NETMASK"))?,
                pe: s.pe_name.clone(),
            })
        };
        let dest_key = || -> Result<DestKey, CodecError> {
            let d = m.dest.as_ref().ok_or(CodecError::Missing("DEST"))?;
            let af = d.addr_family.unwrap_or(AF_INET);
            Ok(DestKey {
                addr: addr_from_raw(af, d.addr.ok_or(CodecError::Missing("DEST_ADDR"))?)?,
                port: d.port.ok_or(CodecError::Missing("DEST_PORT"))?,
            })
        };
        let dest_params = || -> Result<DestParams, CodecError> {
            let d = m.dest.as_ref().ok_or(CodecError::Missing("DEST"))?;
            Ok(DestParams {
                fwd: FwdMethod::from_u32(
                    d.fwd_method.ok_or(CodecError::Missing("DEST_FWD_METHOD"))?,
                ),
                weight: d.weight.ok_or(CodecError::Missing("DEST_WEIGHT"))?,
                u_thresh: d.u_thresh.ok_or(CodecError::Missing("DEST_U_THRESH"))?,
                l_thresh: d.l_thresh.ok_or(CodecError::Missing("DEST_L_THRESH"))?,
            })
        };
        Ok(match m.cmd {
            cmd::NEW_SERVICE => Request::NewService(svc_key()?, svc_params()?),
            cmd::SET_SERVICE => Request::SetService(svc_key()?, svc_params()?),
            cmd::DEL_SERVICE => Request::DelService(svc_key()?),
            cmd::GET_SERVICE => Request::GetServices,
            cmd::NEW_DEST => Request::NewDest(svc_key()?, dest_key()?, dest_params()?),
            cmd::SET_DEST => Request::SetDest(svc_key()?, dest_key()?, dest_params()?),
            cmd::DEL_DEST => Request::DelDest(svc_key()?, dest_key()?),
            cmd::GET_DEST => Request::GetDests(svc_key()?),
            cmd::GET_INFO => Request::GetInfo,
            cmd::NEW_DAEMON => {
                let d = m.daemon.as_ref().ok_or(CodecError::Missing("DAEMON"))?;
                Request::NewDaemon(DaemonConfig {
                    state: d.state.ok_or(CodecError::Missing("DAEMON_STATE"))?,
                    mcast_ifn: d
                        .mcast_ifn
                        .clone()
                        .ok_or(CodecError::Missing("DAEMON_MCAST_IFN"))?,
                    sync_id: d.sync_id.ok_or(CodecError::Missing("DAEMON_SYNC_ID"))?,
                    sync_maxlen: d.sync_maxlen,
                    mcast_group: d.mcast_group,
                    mcast_port: d.mcast_port,
                    mcast_ttl: d.mcast_ttl,
                })
            }
            cmd::DEL_DAEMON => Request::DelDaemon(
                m.daemon
                    .as_ref()
                    .and_then(|d| d.state)
                    .ok_or(CodecError::Missing("DAEMON_STATE"))?,
            ),
            cmd::GET_DAEMON => Request::GetDaemons,
            cmd::SET_CONFIG => Request::SetConfig(Timeouts {
                tcp: m.timeout_tcp,
                tcp_fin: m.timeout_tcp_fin,
                udp: m.timeout_udp,
            }),
            cmd::GET_CONFIG => Request::GetConfig,
            other => {
                return Err(CodecError::UnexpectedCmd {
                    got: other,
                    want: 0,
                })
            }
        })
    }
}

/// A service as the kernel reports it in a GET_SERVICE reply.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceEntry {
    /// Identity.
    pub key: ServiceKey,
    /// Settings (flags without HASHED).
    pub params: ServiceParams,
    /// Counters.
    pub stats: Stats,
}

/// A destination as the kernel reports it in a GET_DEST reply.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DestEntry {
    /// Identity.
    pub key: DestKey,
    /// Settings.
    pub params: DestParams,
    /// Active connections.
    pub active_conns: u32,
    /// Inactive connections.
    pub inact_conns: u32,
    /// Persistence templates pointing at this destination (with pe sip: one per Call-ID).
    pub persist_conns: u32,
    /// Counters.
    pub stats: Stats,
}

pub(super) fn expect_cmd(m: &Message, want: u8) -> Result<(), CodecError> {
    if m.cmd == want {
        Ok(())
    } else {
        Err(CodecError::UnexpectedCmd { got: m.cmd, want })
    }
}

/// Decode one GET_SERVICE reply (cmd NEW_SERVICE).
pub fn decode_service(b: &[u8]) -> Result<ServiceEntry, CodecError> {
    let m = Message::decode(b)?;
    expect_cmd(&m, cmd::NEW_SERVICE)?;
    let s = m.service.ok_or(CodecError::Missing("SERVICE"))?;
    let key = ServiceKey::from_attrs(&s)?;
    let params = ServiceParams {
        sched: s.sched_name.clone().unwrap_or_default(),
        flags: s.flags.map(|(f, _)| f & !svc_flags::HASHED).unwrap_or(0),
        timeout: s.timeout.unwrap_or(0),
        netmask: s.netmask.unwrap_or(0),
        pe: s.pe_name.clone(),
    };
    Ok(ServiceEntry {
        key,
        params,
        stats: s.stats64.or(s.stats).unwrap_or_default(),
    })
}

/// Decode one GET_DEST reply (cmd NEW_DEST); `svc_af` is used when ADDR_FAMILY is absent.
pub fn decode_dest(b: &[u8], svc_af: u16) -> Result<DestEntry, CodecError> {
    let m = Message::decode(b)?;
    expect_cmd(&m, cmd::NEW_DEST)?;
    let d = m.dest.ok_or(CodecError::Missing("DEST"))?;
    let af = d.addr_family.unwrap_or(svc_af);
    Ok(DestEntry {
        key: DestKey {
            addr: addr_from_raw(af, d.addr.ok_or(CodecError::Missing("DEST_ADDR"))?)?,
            port: d.port.ok_or(CodecError::Missing("DEST_PORT"))?,
        },
        params: DestParams {
            fwd: FwdMethod::from_u32(d.fwd_method.unwrap_or(0)),
            weight: d.weight.ok_or(CodecError::Missing("DEST_WEIGHT"))?,
            u_thresh: d.u_thresh.unwrap_or(0),
            l_thresh: d.l_thresh.unwrap_or(0),
        },
        active_conns: d.active_conns.unwrap_or(0),
        inact_conns: d.inact_conns.unwrap_or(0),
        persist_conns: d.persist_conns.unwrap_or(0),
        stats: d.stats64.or(d.stats).unwrap_or_default(),
    })
}

/// Decode the GET_INFO reply (cmd SET_INFO).
pub fn decode_info(b: &[u8]) -> Result<Info, CodecError> {
    let m = Message::decode(b)?;
    expect_cmd(&m, cmd::SET_INFO)?;
    Ok(Info {
        version: m.info_version.ok_or(CodecError::Missing("INFO_VERSION"))?,
        conn_tab_size: m
            .info_conn_tab_size
            .ok_or(CodecError::Missing("INFO_CONN_TAB_SIZE"))?,
    })
}

/// Decode the GET_CONFIG reply (cmd SET_CONFIG).
pub fn decode_config(b: &[u8]) -> Result<Timeouts, CodecError> {
    let m = Message::decode(b)?;
    expect_cmd(&m, cmd::SET_CONFIG)?;
    Ok(Timeouts {
        tcp: m.timeout_tcp,
        tcp_fin: m.timeout_tcp_fin,
        udp: m.timeout_udp,
    })
}

/// Decode one GET_DAEMON reply (cmd NEW_DAEMON).
pub fn decode_daemon(b: &[u8]) -> Result<DaemonConfig, CodecError> {
    let m = Message::decode(b)?;
    expect_cmd(&m, cmd::NEW_DAEMON)?;
    let d = m.daemon.ok_or(CodecError::Missing("DAEMON"))?;
    Ok(DaemonConfig {
        state: d.state.ok_or(CodecError::Missing("DAEMON_STATE"))?,
        mcast_ifn: d.mcast_ifn.unwrap_or_default(),
        sync_id: d.sync_id.unwrap_or(0),
        sync_maxlen: d.sync_maxlen,
        mcast_group: d.mcast_group,
        mcast_port: d.mcast_port,
        mcast_ttl: d.mcast_ttl,
    })
}

/// nlctrl CTRL_CMD_GETFAMILY request payload for `name`.
pub fn encode_getfamily(name: &str) -> Vec<u8> {
    let mut w = AttrWriter::genl(ctrl::CMD_GETFAMILY, 1);
    w.string(ctrl::ATTR_FAMILY_NAME, name);
    w.finish()
}

/// Family id from a nlctrl CTRL_CMD_NEWFAMILY reply payload.
pub fn decode_family_id(b: &[u8]) -> Result<u16, CodecError> {
    if b.len() < GENL_HDRLEN {
        return Err(CodecError::Truncated("generic netlink header"));
    }
    for a in attrs(&b[GENL_HDRLEN..])? {
        if a.ty == ctrl::ATTR_FAMILY_ID {
            return get_u16("CTRL_ATTR_FAMILY_ID", a.data);
        }
    }
    Err(CodecError::Missing("CTRL_ATTR_FAMILY_ID"))
}

/// Lower-case hex of bytes (for logging captured replies as test vectors).
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parse lower/upper-case hex, ignoring whitespace.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| {
            let h = (p[0] as char).to_digit(16)?;
            let l = (p[1] as char).to_digit(16)?;
            Some((h * 16 + l) as u8)
        })
        .collect()
}
