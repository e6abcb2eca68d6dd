//! IPVS errors and the translation of kernel errnos into actionable messages.

use nix::errno::Errno;

use super::codec::{CodecError, Request};
use super::reconcile::PE_SIP;

/// What went wrong below the IPVS layer for one request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// The kernel answered with an errno (positive value).
    #[error("{}", errno_text(*errno, detail.as_deref()))]
    Errno {
        /// errno, e.g. 2 for ENOENT.
        errno: i32,
        /// Extended-ACK message, if the kernel gave one.
        detail: Option<String>,
    },
    /// Socket I/O failed.
    #[error("netlink socket error: {0}")]
    Io(String),
    /// The reply could not be framed or parsed.
    #[error("unexpected netlink reply: {0}")]
    Protocol(String),
}

impl KernelError {
    /// The errno, when the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Errno { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

fn errno_text(errno: i32, detail: Option<&str>) -> String {
    let name = Errno::from_raw(errno);
    match detail {
        Some(d) if !d.is_empty() => format!("{name:?}: {} ({d})", name.desc()),
        _ => format!("{name:?}: {}", name.desc()),
    }
}

/// Errors of the IPVS module, with messages a person can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IpvsError {
    /// The generic netlink family "IPVS" is not registered.
    #[error(
        "kernel has no IPVS support (CONFIG_IP_VS) — the generic netlink family \"IPVS\" does not exist; \
         use a kernel built with CONFIG_IP_VS, CONFIG_IP_VS_PROTO_UDP, CONFIG_IP_VS_RR and \
         CONFIG_IP_VS_PE_SIP (or load the ip_vs module)"
    )]
    NoIpvs,
    /// The netlink socket could not be opened.
    #[error("cannot open a generic netlink socket: {0}")]
    Socket(String),
    /// One kernel request failed.
    #[error("{action} failed: {reason}")]
    Kernel {
        /// What was being done, e.g. "add service UDP 203.0.113.10:5060".
        action: String,
        /// errno if any.
        errno: Option<i32>,
        /// Why, and what to check.
        reason: String,
    },
    /// The kernel sent something we cannot parse.
    #[error("malformed IPVS reply from the kernel: {0}")]
    Codec(#[from] CodecError),
    /// Apply + read-back did not reach the desired table.
    #[error("{}", unverified_text(failures, differences))]
    Unverified {
        /// Kernel errors, one line each ("<op> failed: <why>").
        failures: Vec<String>,
        /// What still differs after reading the table back, one line each.
        differences: Vec<String>,
    },
}

fn unverified_text(failures: &[String], differences: &[String]) -> String {
    let mut s = String::from("the IPVS table does not match the configuration");
    if !failures.is_empty() {
        s.push_str(&format!(
            "; {} change(s) failed: {}",
            failures.len(),
            failures.join("; ")
        ));
    }
    if !differences.is_empty() {
        s.push_str(&format!(
            "; still to do after reading the table back: {}",
            differences.join("; ")
        ));
    }
    s
}

/// Explain why the kernel refused `req` with `err`, naming what to check.
///
/// Deliberately never says "address not unicast" (libipvs's catch-all for EINVAL on
/// destinations, which is wrong more often than not).
pub fn explain(req: &Request, err: &KernelError) -> String {
    let Some(errno) = err.errno() else {
        return err.to_string();
    };
    let e = Errno::from_raw(errno);
    let generic = err.to_string();
    match (req, e) {
        (_, Errno::EPERM) | (_, Errno::EACCES) => {
            "permission denied: changing IPVS needs root (CAP_NET_ADMIN)".into()
        }
        (Request::NewService(_, p) | Request::SetService(_, p), Errno::ENOENT) => {
            if let Some(pe) = p.pe.as_deref().filter(|pe| *pe != PE_SIP && pe.eq_ignore_ascii_case(PE_SIP)) {
                format!(
                    "the kernel rejected persistence engine '{pe}'; it must be lower-case '{PE_SIP}' \
                     and needs CONFIG_IP_VS_PE_SIP"
                )
            } else {
                let pe = p
                    .pe
                    .as_deref()
                    .map(|pe| format!(" or persistence engine '{pe}' (needs CONFIG_IP_VS_PE_{})", pe.to_ascii_uppercase()))
                    .unwrap_or_default();
                format!(
                    "the kernel has no scheduler '{}' (needs CONFIG_IP_VS_{}){pe}",
                    p.sched,
                    p.sched.to_ascii_uppercase()
                )
            }
        }
        (Request::NewService(..), Errno::EEXIST) => {
            "the service already exists in the kernel (changed by someone else meanwhile?); the next sync adopts it".into()
        }
        (Request::NewService(..) | Request::SetService(..), Errno::EINVAL) => {
            "the kernel refused the service settings: check scheduler name, persistence timeout and netmask".into()
        }
        (
            Request::SetService(k, _)
            | Request::DelService(k)
            | Request::NewDest(k, ..)
            | Request::SetDest(k, ..)
            | Request::DelDest(k, ..)
            | Request::GetDests(k),
            Errno::ESRCH,
        ) => format!(
            "virtual service {k} does not exist in the kernel (removed by hand, or adding it failed earlier)"
        ),
        (Request::NewDest(k, d, _), Errno::EEXIST) => {
            format!("real server {d} is already in service {k}")
        }
        (Request::SetDest(k, d, _) | Request::DelDest(k, d), Errno::ENOENT) => {
            format!("real server {d} is not in service {k} (removed by hand?)")
        }
        (Request::NewDest(_, d, p), Errno::EINVAL) => format!(
            "the kernel refused real server {d} with forwarding {}: check that it is a normal host \
             address (not 0.0.0.0, broadcast or multicast) and that IPv6 servers are not mixed into an IPv4 service",
            p.fwd.proc_name()
        ),
        (Request::NewDest(_, d, p) | Request::SetDest(_, d, p), Errno::ERANGE) => format!(
            "the kernel refused weight {} / thresholds {}-{} for real server {d}: the weight must be 0..=2147483647 \
             and the lower threshold not above the upper",
            p.weight, p.l_thresh, p.u_thresh
        ),
        (_, Errno::EAFNOSUPPORT) => {
            "address family not supported by this kernel's IPVS (IPv6 needs CONFIG_IP_VS_IPV6)".into()
        }
        (_, Errno::ENOPROTOOPT) => "the IPVS module is being unloaded; retry".into(),
        (Request::NewDaemon(c), Errno::ENODEV) => {
            format!("sync daemon interface '{}' does not exist", c.mcast_ifn)
        }
        (Request::NewDaemon(_), Errno::EEXIST) => "the sync daemon is already running".into(),
        (Request::DelDaemon(_), Errno::ESRCH) => "no sync daemon with that state is running".into(),
        (Request::SetConfig(_), Errno::EINVAL) => {
            "the kernel refused the timeouts: values must be 0 (unchanged) or a number of seconds".into()
        }
        (_, Errno::ENOMEM) => "the kernel is out of memory".into(),
        _ => generic,
    }
}
