//! Generic netlink transport for the IPVS family on top of neli's socket.
//!
//! neli frames and parses the outer `nlmsghdr` (and NLMSG_ERROR / NLMSG_DONE); the genl
//! payload bytes come from and go to the pure [`super::codec`]. Requests are strictly
//! sequential (one in flight), so every error maps to exactly one operation.

use neli::{
    consts::{
        nl::{NlmF, Nlmsg, NlmsgerrAttr},
        socket::NlFamily,
    },
    nl::{NlPayload, NlmsghdrBuilder},
    socket::synchronous::NlSocketHandle,
    types::Buffer,
    utils::Groups,
};

use super::codec::{self, ctrl, Request};
use super::error::{IpvsError, KernelError};

/// Something that executes IPVS requests and returns the raw genl reply payloads.
///
/// Implemented by the real [`Transport`] and by the in-memory fake kernel in tests.
pub trait Link {
    /// Execute one request; dumps return every part, plain requests their reply (if any).
    fn exec(&mut self, req: &Request) -> Result<Vec<Vec<u8>>, KernelError>;
}

/// A generic netlink socket bound to the resolved "IPVS" family.
pub struct Transport {
    sock: NlSocketHandle,
    family: u16,
    seq: u32,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("family", &self.family)
            .finish()
    }
}

impl Transport {
    /// Open the socket and resolve the "IPVS" family.
    pub fn connect() -> Result<Transport, IpvsError> {
        let sock = NlSocketHandle::connect(NlFamily::Generic, None, Groups::empty())
            .map_err(|e| IpvsError::Socket(e.to_string()))?;
        // Extended ACK gives the kernel's text for policy errors; older kernels lack it.
        let _ = sock.enable_ext_ack(true);
        let mut t = Transport {
            sock,
            family: 0,
            seq: 1,
        };
        let payload = codec::encode_getfamily(codec::FAMILY_NAME);
        let replies = match t.roundtrip(ctrl::GENL_ID_CTRL, false, payload) {
            Ok(r) => r,
            Err(KernelError::Errno { errno, .. }) if errno == nix::libc::ENOENT => {
                return Err(IpvsError::NoIpvs)
            }
            Err(e) => {
                return Err(IpvsError::Kernel {
                    action: "looking up the IPVS generic netlink family".into(),
                    errno: e.errno(),
                    reason: e.to_string(),
                })
            }
        };
        let first = replies.first().ok_or(IpvsError::NoIpvs)?;
        t.family = codec::decode_family_id(first)?;
        tracing::debug!(family = t.family, "IPVS generic netlink family resolved");
        Ok(t)
    }

    /// The resolved family id.
    pub fn family(&self) -> u16 {
        self.family
    }

    fn roundtrip(
        &mut self,
        nl_type: u16,
        dump: bool,
        payload: Vec<u8>,
    ) -> Result<Vec<Vec<u8>>, KernelError> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        // Dumps end with NLMSG_DONE (the kernel sends no ACK after a dump); everything
        // else asks for an ACK so success is confirmed, not assumed.
        let flags = if dump {
            NlmF::REQUEST | NlmF::DUMP
        } else {
            NlmF::REQUEST | NlmF::ACK
        };
        let msg = NlmsghdrBuilder::default()
            .nl_type(nl_type)
            .nl_flags(flags)
            .nl_seq(seq)
            .nl_pid(0)
            .nl_payload(NlPayload::<u16, Buffer>::Payload(Buffer::from(payload)))
            .build()
            .map_err(|e| KernelError::Protocol(e.to_string()))?;
        self.sock
            .send(&msg)
            .map_err(|e| KernelError::Io(e.to_string()))?;

        let mut out = Vec::new();
        // Bounded: a dump of 8 services × 64 servers is far below this many datagrams.
        for _ in 0..100_000 {
            let (iter, _) = self
                .sock
                .recv::<u16, Buffer>()
                .map_err(|e| KernelError::Io(e.to_string()))?;
            for m in iter {
                let m = m.map_err(|e| KernelError::Protocol(e.to_string()))?;
                if *m.nl_seq() != seq {
                    // A late answer to an earlier request: not ours.
                    continue;
                }
                let is_done = *m.nl_type() == u16::from(Nlmsg::Done);
                match m.nl_payload() {
                    NlPayload::Ack(_) => return Ok(out),
                    NlPayload::Err(e) => {
                        let detail = e
                            .ext_ack()
                            .as_ref()
                            .iter()
                            .find(|a| *a.nla_type().nla_type() == NlmsgerrAttr::Msg)
                            .map(|a| {
                                String::from_utf8_lossy(a.nla_payload().as_ref())
                                    .trim_end_matches('\0')
                                    .to_owned()
                            });
                        return Err(KernelError::Errno {
                            errno: -*e.error(),
                            detail,
                        });
                    }
                    NlPayload::DumpExtAck(e) => {
                        if *e.error() != 0 {
                            return Err(KernelError::Errno {
                                errno: -*e.error(),
                                detail: None,
                            });
                        }
                        return Ok(out);
                    }
                    NlPayload::Empty if is_done => return Ok(out),
                    NlPayload::Payload(_) if is_done => return Ok(out),
                    NlPayload::Payload(p) => out.push(p.as_ref().to_vec()),
                    NlPayload::Empty => {}
                }
            }
        }
        Err(KernelError::Protocol(
            "no end of reply from the kernel after 100000 datagrams".into(),
        ))
    }
}

impl Link for Transport {
    fn exec(&mut self, req: &Request) -> Result<Vec<Vec<u8>>, KernelError> {
        let payload = req
            .encode()
            .map_err(|e| KernelError::Protocol(e.to_string()))?;
        let family = self.family;
        self.roundtrip(family, req.is_dump(), payload)
    }
}
