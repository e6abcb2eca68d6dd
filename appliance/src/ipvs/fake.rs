//! In-memory stand-in for the kernel's IPVS genl handler (tests only).
//!
//! It speaks bytes: requests are encoded and re-decoded with the codec, replies are
//! encoded as the kernel would (HASHED flag set, STATS/STATS64 nests), and it follows
//! the kernel's errno conventions from `ip_vs_ctl.c` (ESRCH: no service, ENOENT: no dest
//! or unknown scheduler/pe, EEXIST: duplicate).

use std::sync::{Arc, Mutex};

use super::codec::{
    self, cmd, svc_flags, DestAttrs, DestKey, DestParams, Message, Request, ServiceKey,
    ServiceParams, Stats, SvcAttrs,
};
use super::error::KernelError;
use super::transport::Link;

/// One service in the fake table.
#[derive(Debug, Clone)]
pub struct FakeService {
    pub key: ServiceKey,
    pub params: ServiceParams,
    pub dests: Vec<(DestKey, DestParams, u32)>,
}

/// Fake kernel state, shared with the test through an Arc.
#[derive(Debug, Default)]
pub struct FakeState {
    pub services: Vec<FakeService>,
    /// Requests received (decoded from their bytes).
    pub log: Vec<Request>,
    /// Persistence engines "compiled in".
    pub pes: Vec<&'static str>,
    /// Accept pe names but do not store them (a kernel that silently drops it).
    pub drop_pe: bool,
    /// Accept SET_DEST for this dest but ignore it.
    pub sticky: Option<DestKey>,
    pub udp_timeout: u32,
    /// Running sync daemons, as GET_DAEMON reports them (defaults filled in).
    pub daemons: Vec<codec::DaemonConfig>,
    /// NEW_DAEMON on this interface fails with ENODEV.
    pub no_such_ifname: Option<String>,
}

/// Link implementation over a shared [`FakeState`].
#[derive(Debug, Clone)]
pub struct FakeKernel(pub Arc<Mutex<FakeState>>);

impl FakeKernel {
    /// A kernel with rr/wrr/... schedulers and the sip pe.
    pub fn new() -> (FakeKernel, Arc<Mutex<FakeState>>) {
        let st = Arc::new(Mutex::new(FakeState {
            pes: vec!["sip"],
            udp_timeout: 300,
            ..FakeState::default()
        }));
        (FakeKernel(st.clone()), st)
    }
}

fn err(errno: i32) -> KernelError {
    KernelError::Errno {
        errno,
        detail: None,
    }
}

const SCHEDS: &[&str] = &["rr", "wrr", "lc", "wlc", "sh", "mh"];

impl Link for FakeKernel {
    fn exec(&mut self, req: &Request) -> Result<Vec<Vec<u8>>, KernelError> {
        use nix::libc::{EEXIST, ENOENT, ESRCH};
        let bytes = req
            .encode()
            .map_err(|e| KernelError::Protocol(e.to_string()))?;
        let req = Request::decode(&bytes).map_err(|e| KernelError::Protocol(e.to_string()))?;
        let mut st = self
            .0
            .lock()
            .map_err(|_| KernelError::Io("poisoned".into()))?;
        st.log.push(req.clone());
        let find = |st: &FakeState, k: &ServiceKey| st.services.iter().position(|s| s.key == *k);
        let check = |st: &FakeState, p: &ServiceParams| -> Result<(), KernelError> {
            if !SCHEDS.contains(&p.sched.as_str()) {
                return Err(err(ENOENT));
            }
            if let Some(pe) = &p.pe {
                if !st.pes.contains(&pe.as_str()) {
                    return Err(err(ENOENT));
                }
            }
            Ok(())
        };
        match req {
            Request::NewService(k, mut p) => {
                if find(&st, &k).is_some() {
                    return Err(err(EEXIST));
                }
                check(&st, &p)?;
                if st.drop_pe {
                    p.pe = None;
                }
                st.services.push(FakeService {
                    key: k,
                    params: p,
                    dests: vec![],
                });
                Ok(vec![])
            }
            Request::SetService(k, mut p) => {
                let i = find(&st, &k).ok_or(err(ESRCH))?;
                check(&st, &p)?;
                if st.drop_pe {
                    p.pe = None;
                }
                st.services[i].params = p;
                Ok(vec![])
            }
            Request::DelService(k) => {
                let i = find(&st, &k).ok_or(err(ESRCH))?;
                st.services.remove(i);
                Ok(vec![])
            }
            Request::NewDest(k, d, p) => {
                let i = find(&st, &k).ok_or(err(ESRCH))?;
                if st.services[i].dests.iter().any(|x| x.0 == d) {
                    return Err(err(EEXIST));
                }
                st.services[i].dests.push((d, p, 0));
                Ok(vec![])
            }
            Request::SetDest(k, d, p) => {
                let i = find(&st, &k).ok_or(err(ESRCH))?;
                let sticky = st.sticky;
                let x = st.services[i]
                    .dests
                    .iter_mut()
                    .find(|x| x.0 == d)
                    .ok_or(err(ENOENT))?;
                if sticky != Some(d) {
                    x.1 = p;
                }
                Ok(vec![])
            }
            Request::DelDest(k, d) => {
                let i = find(&st, &k).ok_or(err(ESRCH))?;
                let before = st.services[i].dests.len();
                st.services[i].dests.retain(|x| x.0 != d);
                if before == st.services[i].dests.len() {
                    return Err(err(ENOENT));
                }
                Ok(vec![])
            }
            Request::GetServices => Ok(st
                .services
                .iter()
                .map(|s| {
                    let mut a: SvcAttrs = s.key.to_attrs();
                    a.sched_name = Some(s.params.sched.clone());
                    a.pe_name = s.params.pe.clone();
                    a.flags = Some((s.params.flags | svc_flags::HASHED, u32::MAX));
                    a.timeout = Some(s.params.timeout);
                    a.netmask = Some(s.params.netmask);
                    let stats = Stats {
                        conns: 5,
                        inpkts: 50,
                        ..Stats::default()
                    };
                    a.stats = Some(stats);
                    a.stats64 = Some(stats);
                    let mut m = Message::new(cmd::NEW_SERVICE);
                    m.service = Some(a);
                    m.encode()
                })
                .collect()),
            Request::GetDests(k) => {
                let Some(i) = find(&st, &k) else {
                    return Ok(vec![]);
                };
                Ok(st.services[i]
                    .dests
                    .iter()
                    .map(|(d, p, persist)| {
                        let mut m = Message::new(cmd::NEW_DEST);
                        m.dest = Some(DestAttrs {
                            addr: Some(codec::addr_to_raw(d.addr)),
                            port: Some(d.port),
                            fwd_method: Some(p.fwd.to_u32()),
                            weight: Some(p.weight),
                            u_thresh: Some(p.u_thresh),
                            l_thresh: Some(p.l_thresh),
                            active_conns: Some(0),
                            inact_conns: Some(1),
                            persist_conns: Some(*persist),
                            addr_family: Some(codec::af_of(d.addr)),
                            stats64: Some(Stats::default()),
                            ..DestAttrs::default()
                        });
                        m.encode()
                    })
                    .collect())
            }
            Request::GetInfo => {
                let mut m = Message::new(cmd::SET_INFO);
                m.info_version = Some(0x010201);
                m.info_conn_tab_size = Some(4096);
                Ok(vec![m.encode()])
            }
            Request::GetConfig => {
                let mut m = Message::new(cmd::SET_CONFIG);
                m.timeout_tcp = Some(900);
                m.timeout_tcp_fin = Some(120);
                m.timeout_udp = Some(st.udp_timeout);
                Ok(vec![m.encode()])
            }
            Request::SetConfig(t) => {
                if let Some(u) = t.udp {
                    st.udp_timeout = u;
                }
                Ok(vec![])
            }
            Request::GetDaemons => Ok(st
                .daemons
                .iter()
                .map(|d| {
                    let mut m = Message::new(cmd::NEW_DAEMON);
                    m.daemon = Some(codec::DaemonAttrs {
                        state: Some(d.state),
                        mcast_ifn: Some(d.mcast_ifn.clone()),
                        sync_id: Some(d.sync_id),
                        sync_maxlen: d.sync_maxlen,
                        mcast_group: d.mcast_group,
                        mcast_group6: None,
                        mcast_port: d.mcast_port,
                        mcast_ttl: d.mcast_ttl,
                    });
                    m.encode()
                })
                .collect()),
            Request::NewDaemon(c) => {
                if st.no_such_ifname.as_deref() == Some(c.mcast_ifn.as_str()) {
                    return Err(err(nix::libc::ENODEV));
                }
                if st.daemons.iter().any(|d| d.state == c.state) {
                    return Err(err(EEXIST));
                }
                // start_sync_thread: defaults and the sync_maxlen clamp (MTU 1500, IPv4)
                let min = if c.state == codec::daemon_state::BACKUP {
                    1024
                } else {
                    1
                };
                let mut d = c.clone();
                d.sync_maxlen = Some(c.sync_maxlen.map_or(1472, |v| v.clamp(min, 65535 - 28)));
                d.mcast_group = Some(
                    c.mcast_group
                        .unwrap_or(std::net::Ipv4Addr::new(224, 0, 0, 81)),
                );
                d.mcast_port = Some(c.mcast_port.unwrap_or(8848));
                d.mcast_ttl = Some(c.mcast_ttl.unwrap_or(1));
                st.daemons.push(d);
                Ok(vec![])
            }
            Request::DelDaemon(state) => {
                let before = st.daemons.len();
                st.daemons.retain(|d| d.state != state);
                if st.daemons.len() == before {
                    return Err(err(ESRCH));
                }
                Ok(vec![])
            }
        }
    }
}
