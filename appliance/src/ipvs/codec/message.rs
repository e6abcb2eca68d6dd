//! The generic message model: one genl payload with its service, destination and daemon nests.

use super::*;

/// Statistics of a service or destination (STATS64 when present, else STATS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Connections scheduled (with one-packet scheduling: datagrams scheduled).
    pub conns: u64,
    /// Packets in.
    pub inpkts: u64,
    /// Packets out.
    pub outpkts: u64,
    /// Bytes in.
    pub inbytes: u64,
    /// Bytes out.
    pub outbytes: u64,
    /// Connection rate per second.
    pub cps: u64,
    /// Incoming packet rate.
    pub inpps: u64,
    /// Outgoing packet rate.
    pub outpps: u64,
    /// Incoming byte rate.
    pub inbps: u64,
    /// Outgoing byte rate.
    pub outbps: u64,
}

impl Stats {
    fn decode(d: &[u8], wide: bool) -> Result<Stats, CodecError> {
        let mut s = Stats::default();
        for a in attrs(d)? {
            // STATS carries u32 except the byte counters; STATS64 is all u64.
            let n = |what| -> Result<u64, CodecError> {
                if wide {
                    get_u64(what, a.data)
                } else {
                    get_u32(what, a.data).map(u64::from)
                }
            };
            match a.ty {
                stats_attr::CONNS => s.conns = n("STATS_CONNS")?,
                stats_attr::INPKTS => s.inpkts = n("STATS_INPKTS")?,
                stats_attr::OUTPKTS => s.outpkts = n("STATS_OUTPKTS")?,
                stats_attr::INBYTES => s.inbytes = get_u64("STATS_INBYTES", a.data)?,
                stats_attr::OUTBYTES => s.outbytes = get_u64("STATS_OUTBYTES", a.data)?,
                stats_attr::CPS => s.cps = n("STATS_CPS")?,
                stats_attr::INPPS => s.inpps = n("STATS_INPPS")?,
                stats_attr::OUTPPS => s.outpps = n("STATS_OUTPPS")?,
                stats_attr::INBPS => s.inbps = n("STATS_INBPS")?,
                stats_attr::OUTBPS => s.outbps = n("STATS_OUTBPS")?,
                _ => {}
            }
        }
        Ok(s)
    }

    fn encode(&self, w: &mut AttrWriter, ty: u16, wide: bool) {
        let at = w.begin_nest(ty);
        let vals = [
            (stats_attr::CONNS, self.conns),
            (stats_attr::INPKTS, self.inpkts),
            (stats_attr::OUTPKTS, self.outpkts),
            (stats_attr::INBYTES, self.inbytes),
            (stats_attr::OUTBYTES, self.outbytes),
            (stats_attr::CPS, self.cps),
            (stats_attr::INPPS, self.inpps),
            (stats_attr::OUTPPS, self.outpps),
            (stats_attr::INBPS, self.inbps),
            (stats_attr::OUTBPS, self.outbps),
        ];
        for (ty, v) in vals {
            let is_bytes = ty == stats_attr::INBYTES || ty == stats_attr::OUTBYTES;
            if wide || is_bytes {
                w.put(ty, &v.to_ne_bytes());
            } else {
                w.u32(ty, v as u32);
            }
        }
        w.end_nest(at);
    }
}

/// The service nest, every attribute optional (requests and replies share it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SvcAttrs {
    /// IPVS_SVC_ATTR_AF.
    pub af: Option<u16>,
    /// IPVS_SVC_ATTR_PROTOCOL.
    pub protocol: Option<u16>,
    /// IPVS_SVC_ATTR_ADDR (16 bytes).
    pub addr: Option<[u8; 16]>,
    /// IPVS_SVC_ATTR_PORT (host value; be16 on the wire).
    pub port: Option<u16>,
    /// IPVS_SVC_ATTR_FWMARK.
    pub fwmark: Option<u32>,
    /// IPVS_SVC_ATTR_SCHED_NAME.
    pub sched_name: Option<String>,
    /// IPVS_SVC_ATTR_FLAGS as (flags, mask).
    pub flags: Option<(u32, u32)>,
    /// IPVS_SVC_ATTR_TIMEOUT (seconds).
    pub timeout: Option<u32>,
    /// IPVS_SVC_ATTR_NETMASK (host value of the be32 mask).
    pub netmask: Option<u32>,
    /// IPVS_SVC_ATTR_PE_NAME.
    pub pe_name: Option<String>,
    /// IPVS_SVC_ATTR_STATS.
    pub stats: Option<Stats>,
    /// IPVS_SVC_ATTR_STATS64.
    pub stats64: Option<Stats>,
}

impl SvcAttrs {
    fn encode(&self, w: &mut AttrWriter) {
        let at = w.begin_nest(cmd_attr::SERVICE);
        if let Some(v) = self.af {
            w.u16(svc_attr::AF, v);
        }
        if let Some(v) = self.protocol {
            w.u16(svc_attr::PROTOCOL, v);
        }
        if let Some(v) = self.addr {
            w.put(svc_attr::ADDR, &v);
        }
        if let Some(v) = self.port {
            w.be16(svc_attr::PORT, v);
        }
        if let Some(v) = self.fwmark {
            w.u32(svc_attr::FWMARK, v);
        }
        if let Some(v) = &self.sched_name {
            w.string(svc_attr::SCHED_NAME, v);
        }
        if let Some(v) = &self.pe_name {
            w.string(svc_attr::PE_NAME, v);
        }
        if let Some((f, m)) = self.flags {
            let mut b = [0u8; 8];
            b[..4].copy_from_slice(&f.to_ne_bytes());
            b[4..].copy_from_slice(&m.to_ne_bytes());
            w.put(svc_attr::FLAGS, &b);
        }
        if let Some(v) = self.timeout {
            w.u32(svc_attr::TIMEOUT, v);
        }
        if let Some(v) = self.netmask {
            w.be32(svc_attr::NETMASK, v);
        }
        if let Some(s) = &self.stats {
            s.encode(w, svc_attr::STATS, false);
        }
        if let Some(s) = &self.stats64 {
            s.encode(w, svc_attr::STATS64, true);
        }
        w.end_nest(at);
    }

    fn decode(d: &[u8]) -> Result<SvcAttrs, CodecError> {
        let mut s = SvcAttrs::default();
        for a in attrs(d)? {
            match a.ty {
                svc_attr::AF => s.af = Some(get_u16("SVC_AF", a.data)?),
                svc_attr::PROTOCOL => s.protocol = Some(get_u16("SVC_PROTOCOL", a.data)?),
                svc_attr::ADDR => s.addr = Some(get_addr("SVC_ADDR", a.data)?),
                svc_attr::PORT => s.port = Some(get_be16("SVC_PORT", a.data)?),
                svc_attr::FWMARK => s.fwmark = Some(get_u32("SVC_FWMARK", a.data)?),
                svc_attr::SCHED_NAME => s.sched_name = Some(get_str("SVC_SCHED_NAME", a.data)?),
                svc_attr::PE_NAME => s.pe_name = Some(get_str("SVC_PE_NAME", a.data)?),
                svc_attr::FLAGS => {
                    let b: [u8; 8] = arr("SVC_FLAGS", a.data)?;
                    let f = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                    let m = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
                    s.flags = Some((f, m));
                }
                svc_attr::TIMEOUT => s.timeout = Some(get_u32("SVC_TIMEOUT", a.data)?),
                svc_attr::NETMASK => s.netmask = Some(get_be32("SVC_NETMASK", a.data)?),
                svc_attr::STATS => s.stats = Some(Stats::decode(a.data, false)?),
                svc_attr::STATS64 => s.stats64 = Some(Stats::decode(a.data, true)?),
                _ => {}
            }
        }
        Ok(s)
    }
}

/// The destination nest, every attribute optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestAttrs {
    /// IPVS_DEST_ATTR_ADDR (16 bytes).
    pub addr: Option<[u8; 16]>,
    /// IPVS_DEST_ATTR_PORT (host value; be16 on the wire).
    pub port: Option<u16>,
    /// IPVS_DEST_ATTR_FWD_METHOD (IP_VS_CONN_F_* forwarding bits).
    pub fwd_method: Option<u32>,
    /// IPVS_DEST_ATTR_WEIGHT.
    pub weight: Option<u32>,
    /// IPVS_DEST_ATTR_U_THRESH.
    pub u_thresh: Option<u32>,
    /// IPVS_DEST_ATTR_L_THRESH.
    pub l_thresh: Option<u32>,
    /// IPVS_DEST_ATTR_ACTIVE_CONNS.
    pub active_conns: Option<u32>,
    /// IPVS_DEST_ATTR_INACT_CONNS.
    pub inact_conns: Option<u32>,
    /// IPVS_DEST_ATTR_PERSIST_CONNS.
    pub persist_conns: Option<u32>,
    /// IPVS_DEST_ATTR_STATS.
    pub stats: Option<Stats>,
    /// IPVS_DEST_ATTR_ADDR_FAMILY.
    pub addr_family: Option<u16>,
    /// IPVS_DEST_ATTR_STATS64.
    pub stats64: Option<Stats>,
    /// IPVS_DEST_ATTR_TUN_TYPE.
    pub tun_type: Option<u8>,
    /// IPVS_DEST_ATTR_TUN_PORT (host value; be16 on the wire).
    pub tun_port: Option<u16>,
    /// IPVS_DEST_ATTR_TUN_FLAGS.
    pub tun_flags: Option<u16>,
}

impl DestAttrs {
    fn encode(&self, w: &mut AttrWriter) {
        let at = w.begin_nest(cmd_attr::DEST);
        if let Some(v) = self.addr {
            w.put(dest_attr::ADDR, &v);
        }
        if let Some(v) = self.port {
            w.be16(dest_attr::PORT, v);
        }
        if let Some(v) = self.fwd_method {
            w.u32(dest_attr::FWD_METHOD, v);
        }
        if let Some(v) = self.weight {
            w.u32(dest_attr::WEIGHT, v);
        }
        if let Some(v) = self.tun_type {
            w.u8(dest_attr::TUN_TYPE, v);
        }
        if let Some(v) = self.tun_port {
            w.be16(dest_attr::TUN_PORT, v);
        }
        if let Some(v) = self.tun_flags {
            w.u16(dest_attr::TUN_FLAGS, v);
        }
        if let Some(v) = self.u_thresh {
            w.u32(dest_attr::U_THRESH, v);
        }
        if let Some(v) = self.l_thresh {
            w.u32(dest_attr::L_THRESH, v);
        }
        if let Some(v) = self.active_conns {
            w.u32(dest_attr::ACTIVE_CONNS, v);
        }
        if let Some(v) = self.inact_conns {
            w.u32(dest_attr::INACT_CONNS, v);
        }
        if let Some(v) = self.persist_conns {
            w.u32(dest_attr::PERSIST_CONNS, v);
        }
        if let Some(v) = self.addr_family {
            w.u16(dest_attr::ADDR_FAMILY, v);
        }
        if let Some(s) = &self.stats {
            s.encode(w, dest_attr::STATS, false);
        }
        if let Some(s) = &self.stats64 {
            s.encode(w, dest_attr::STATS64, true);
        }
        w.end_nest(at);
    }

    fn decode(d: &[u8]) -> Result<DestAttrs, CodecError> {
        let mut s = DestAttrs::default();
        for a in attrs(d)? {
            match a.ty {
                dest_attr::ADDR => s.addr = Some(get_addr("DEST_ADDR", a.data)?),
                dest_attr::PORT => s.port = Some(get_be16("DEST_PORT", a.data)?),
                dest_attr::FWD_METHOD => s.fwd_method = Some(get_u32("DEST_FWD_METHOD", a.data)?),
                dest_attr::WEIGHT => s.weight = Some(get_u32("DEST_WEIGHT", a.data)?),
                dest_attr::U_THRESH => s.u_thresh = Some(get_u32("DEST_U_THRESH", a.data)?),
                dest_attr::L_THRESH => s.l_thresh = Some(get_u32("DEST_L_THRESH", a.data)?),
                dest_attr::ACTIVE_CONNS => {
                    s.active_conns = Some(get_u32("DEST_ACTIVE_CONNS", a.data)?)
                }
                dest_attr::INACT_CONNS => {
                    s.inact_conns = Some(get_u32("DEST_INACT_CONNS", a.data)?)
                }
                dest_attr::PERSIST_CONNS => {
                    s.persist_conns = Some(get_u32("DEST_PERSIST_CONNS", a.data)?)
                }
                dest_attr::STATS => s.stats = Some(Stats::decode(a.data, false)?),
                dest_attr::ADDR_FAMILY => {
                    s.addr_family = Some(get_u16("DEST_ADDR_FAMILY", a.data)?)
                }
                dest_attr::STATS64 => s.stats64 = Some(Stats::decode(a.data, true)?),
                dest_attr::TUN_TYPE => s.tun_type = Some(get_u8("DEST_TUN_TYPE", a.data)?),
                dest_attr::TUN_PORT => s.tun_port = Some(get_be16("DEST_TUN_PORT", a.data)?),
                dest_attr::TUN_FLAGS => s.tun_flags = Some(get_u16("DEST_TUN_FLAGS", a.data)?),
                _ => {}
            }
        }
        Ok(s)
    }
}

/// The sync-daemon nest, every attribute optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonAttrs {
    /// IPVS_DAEMON_ATTR_STATE (master = 1, backup = 2).
    pub state: Option<u32>,
    /// IPVS_DAEMON_ATTR_MCAST_IFN.
    pub mcast_ifn: Option<String>,
    /// IPVS_DAEMON_ATTR_SYNC_ID.
    pub sync_id: Option<u32>,
    /// IPVS_DAEMON_ATTR_SYNC_MAXLEN.
    pub sync_maxlen: Option<u16>,
    /// IPVS_DAEMON_ATTR_MCAST_GROUP (IPv4, network order on the wire).
    pub mcast_group: Option<Ipv4Addr>,
    /// IPVS_DAEMON_ATTR_MCAST_GROUP6.
    pub mcast_group6: Option<Ipv6Addr>,
    /// IPVS_DAEMON_ATTR_MCAST_PORT.
    pub mcast_port: Option<u16>,
    /// IPVS_DAEMON_ATTR_MCAST_TTL.
    pub mcast_ttl: Option<u8>,
}

impl DaemonAttrs {
    fn encode(&self, w: &mut AttrWriter) {
        let at = w.begin_nest(cmd_attr::DAEMON);
        if let Some(v) = self.state {
            w.u32(daemon_attr::STATE, v);
        }
        if let Some(v) = &self.mcast_ifn {
            w.string(daemon_attr::MCAST_IFN, v);
        }
        if let Some(v) = self.sync_id {
            w.u32(daemon_attr::SYNC_ID, v);
        }
        if let Some(v) = self.sync_maxlen {
            w.u16(daemon_attr::SYNC_MAXLEN, v);
        }
        if let Some(v) = self.mcast_port {
            w.u16(daemon_attr::MCAST_PORT, v);
        }
        if let Some(v) = self.mcast_ttl {
            w.u8(daemon_attr::MCAST_TTL, v);
        }
        if let Some(v) = self.mcast_group {
            // nla_get_in_addr: the u32 holds the address in network order.
            w.put(daemon_attr::MCAST_GROUP, &v.octets());
        }
        if let Some(v) = self.mcast_group6 {
            w.put(daemon_attr::MCAST_GROUP6, &v.octets());
        }
        w.end_nest(at);
    }

    fn decode(d: &[u8]) -> Result<DaemonAttrs, CodecError> {
        let mut s = DaemonAttrs::default();
        for a in attrs(d)? {
            match a.ty {
                daemon_attr::STATE => s.state = Some(get_u32("DAEMON_STATE", a.data)?),
                daemon_attr::MCAST_IFN => s.mcast_ifn = Some(get_str("DAEMON_MCAST_IFN", a.data)?),
                daemon_attr::SYNC_ID => s.sync_id = Some(get_u32("DAEMON_SYNC_ID", a.data)?),
                daemon_attr::SYNC_MAXLEN => {
                    s.sync_maxlen = Some(get_u16("DAEMON_SYNC_MAXLEN", a.data)?)
                }
                daemon_attr::MCAST_GROUP => {
                    s.mcast_group = Some(Ipv4Addr::from(arr::<4>("DAEMON_MCAST_GROUP", a.data)?))
                }
                daemon_attr::MCAST_GROUP6 => {
                    s.mcast_group6 = Some(Ipv6Addr::from(arr::<16>("DAEMON_MCAST_GROUP6", a.data)?))
                }
                daemon_attr::MCAST_PORT => {
                    s.mcast_port = Some(get_u16("DAEMON_MCAST_PORT", a.data)?)
                }
                daemon_attr::MCAST_TTL => s.mcast_ttl = Some(get_u8("DAEMON_MCAST_TTL", a.data)?),
                _ => {}
            }
        }
        Ok(s)
    }
}

/// One IPVS generic-netlink message (request or reply) at attribute level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Command (`cmd::*`).
    pub cmd: u8,
    /// Family version from the genl header.
    pub version: u8,
    /// IPVS_CMD_ATTR_SERVICE.
    pub service: Option<SvcAttrs>,
    /// IPVS_CMD_ATTR_DEST.
    pub dest: Option<DestAttrs>,
    /// IPVS_CMD_ATTR_DAEMON.
    pub daemon: Option<DaemonAttrs>,
    /// IPVS_CMD_ATTR_TIMEOUT_TCP.
    pub timeout_tcp: Option<u32>,
    /// IPVS_CMD_ATTR_TIMEOUT_TCP_FIN.
    pub timeout_tcp_fin: Option<u32>,
    /// IPVS_CMD_ATTR_TIMEOUT_UDP.
    pub timeout_udp: Option<u32>,
    /// IPVS_INFO_ATTR_VERSION (only in SET_INFO, the GET_INFO reply).
    pub info_version: Option<u32>,
    /// IPVS_INFO_ATTR_CONN_TAB_SIZE (only in SET_INFO).
    pub info_conn_tab_size: Option<u32>,
}

impl Message {
    /// A message with just a command.
    pub fn new(cmd: u8) -> Message {
        Message {
            cmd,
            version: FAMILY_VERSION,
            ..Message::default()
        }
    }

    /// Encode to genl header + attributes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = AttrWriter::genl(self.cmd, self.version);
        if self.cmd == cmd::SET_INFO {
            if let Some(v) = self.info_version {
                w.u32(info_attr::VERSION, v);
            }
            if let Some(v) = self.info_conn_tab_size {
                w.u32(info_attr::CONN_TAB_SIZE, v);
            }
            return w.finish();
        }
        if let Some(s) = &self.service {
            s.encode(&mut w);
        }
        if let Some(d) = &self.dest {
            d.encode(&mut w);
        }
        if let Some(d) = &self.daemon {
            d.encode(&mut w);
        }
        if let Some(v) = self.timeout_tcp {
            w.u32(cmd_attr::TIMEOUT_TCP, v);
        }
        if let Some(v) = self.timeout_tcp_fin {
            w.u32(cmd_attr::TIMEOUT_TCP_FIN, v);
        }
        if let Some(v) = self.timeout_udp {
            w.u32(cmd_attr::TIMEOUT_UDP, v);
        }
        w.finish()
    }

    /// Decode genl header + attributes.
    pub fn decode(b: &[u8]) -> Result<Message, CodecError> {
        if b.len() < GENL_HDRLEN {
            return Err(CodecError::Truncated("generic netlink header"));
        }
        let mut m = Message {
            cmd: b[0],
            version: b[1],
            ..Message::default()
        };
        for a in attrs(&b[GENL_HDRLEN..])? {
            if m.cmd == cmd::SET_INFO {
                match a.ty {
                    info_attr::VERSION => m.info_version = Some(get_u32("INFO_VERSION", a.data)?),
                    info_attr::CONN_TAB_SIZE => {
                        m.info_conn_tab_size = Some(get_u32("INFO_CONN_TAB_SIZE", a.data)?)
                    }
                    _ => {}
                }
                continue;
            }
            match a.ty {
                cmd_attr::SERVICE => m.service = Some(SvcAttrs::decode(a.data)?),
                cmd_attr::DEST => m.dest = Some(DestAttrs::decode(a.data)?),
                cmd_attr::DAEMON => m.daemon = Some(DaemonAttrs::decode(a.data)?),
                cmd_attr::TIMEOUT_TCP => m.timeout_tcp = Some(get_u32("TIMEOUT_TCP", a.data)?),
                cmd_attr::TIMEOUT_TCP_FIN => {
                    m.timeout_tcp_fin = Some(get_u32("TIMEOUT_TCP_FIN", a.data)?)
                }
                cmd_attr::TIMEOUT_UDP => m.timeout_udp = Some(get_u32("TIMEOUT_UDP", a.data)?),
                _ => {}
            }
        }
        Ok(m)
    }
}
