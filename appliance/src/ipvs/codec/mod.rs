//! Pure encoder/decoder for the kernel's "IPVS" generic-netlink family, version 1.
//!
//! The unit of work is the *generic-netlink payload*: the 4-byte genl header
//! (`cmd`, `version`, reserved u16) followed by netlink attributes. The outer
//! `nlmsghdr` (length, type = family id, flags, seq, pid) belongs to the transport.
//!
//! Constants come from the kernel's `include/uapi/linux/ip_vs.h`; the attribute
//! encodings (which are big-endian, which are native) from `net/netfilter/ipvs/ip_vs_ctl.c`.
//! Pitfalls honoured here:
//! - NEW/SET_SERVICE need SCHED_NAME, FLAGS, TIMEOUT and NETMASK or the kernel says EINVAL;
//! - PORT (service and dest) and NETMASK are big-endian (`__be16`/`__be32`), everything
//!   else (AF, PROTOCOL, FWMARK, WEIGHT, TIMEOUT, FLAGS...) is host order;
//! - ADDR is always 16 bytes (`union nf_inet_addr`); IPv4 sits in the first 4;
//! - strings are NUL-terminated (`NLA_NUL_STRING`);
//! - destination commands carry the (identifying) service nest too;
//! - the GET_INFO reply puts VERSION (1) and CONN_TAB_SIZE (2) at the top level, where
//!   the same numbers otherwise mean SERVICE and DEST: decoding depends on the command;
//! - SET_SERVICE *replaces* the persistence engine: leaving PE_NAME out removes it.
//!
//! All integers in host byte order are encoded with `to_ne_bytes`, like the kernel does;
//! the byte vectors in the tests are little-endian (x86-64, arm64, armv7 are all LE).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

mod attr;
mod message;
mod request;

pub use attr::*;
pub use message::*;
pub use request::*;

/// Generic netlink family name.
pub const FAMILY_NAME: &str = "IPVS";
/// Generic netlink family version.
pub const FAMILY_VERSION: u8 = 1;
/// Length of the generic netlink header.
pub const GENL_HDRLEN: usize = 4;
/// Netlink attribute header length.
pub(super) const NLA_HDRLEN: usize = 4;
/// Flag bits in `nla_type` (NLA_F_NESTED, NLA_F_NET_BYTEORDER) masked off when reading.
pub(super) const NLA_TYPE_MASK: u16 = 0x3fff;

/// `IPVS_CMD_*` command numbers.
#[allow(missing_docs)]
pub mod cmd {
    pub const NEW_SERVICE: u8 = 1;
    pub const SET_SERVICE: u8 = 2;
    pub const DEL_SERVICE: u8 = 3;
    pub const GET_SERVICE: u8 = 4;
    pub const NEW_DEST: u8 = 5;
    pub const SET_DEST: u8 = 6;
    pub const DEL_DEST: u8 = 7;
    pub const GET_DEST: u8 = 8;
    pub const NEW_DAEMON: u8 = 9;
    pub const DEL_DAEMON: u8 = 10;
    pub const GET_DAEMON: u8 = 11;
    pub const SET_CONFIG: u8 = 12;
    pub const GET_CONFIG: u8 = 13;
    pub const SET_INFO: u8 = 14;
    pub const GET_INFO: u8 = 15;
    pub const ZERO: u8 = 16;
    pub const FLUSH: u8 = 17;
}

/// Top-level attributes (`IPVS_CMD_ATTR_*`).
#[allow(missing_docs)]
pub mod cmd_attr {
    pub const SERVICE: u16 = 1;
    pub const DEST: u16 = 2;
    pub const DAEMON: u16 = 3;
    pub const TIMEOUT_TCP: u16 = 4;
    pub const TIMEOUT_TCP_FIN: u16 = 5;
    pub const TIMEOUT_UDP: u16 = 6;
}

/// Service nest attributes (`IPVS_SVC_ATTR_*`).
#[allow(missing_docs)]
pub mod svc_attr {
    pub const AF: u16 = 1;
    pub const PROTOCOL: u16 = 2;
    pub const ADDR: u16 = 3;
    pub const PORT: u16 = 4;
    pub const FWMARK: u16 = 5;
    pub const SCHED_NAME: u16 = 6;
    pub const FLAGS: u16 = 7;
    pub const TIMEOUT: u16 = 8;
    pub const NETMASK: u16 = 9;
    pub const STATS: u16 = 10;
    pub const PE_NAME: u16 = 11;
    pub const STATS64: u16 = 12;
}

/// Destination nest attributes (`IPVS_DEST_ATTR_*`).
#[allow(missing_docs)]
pub mod dest_attr {
    pub const ADDR: u16 = 1;
    pub const PORT: u16 = 2;
    pub const FWD_METHOD: u16 = 3;
    pub const WEIGHT: u16 = 4;
    pub const U_THRESH: u16 = 5;
    pub const L_THRESH: u16 = 6;
    pub const ACTIVE_CONNS: u16 = 7;
    pub const INACT_CONNS: u16 = 8;
    pub const PERSIST_CONNS: u16 = 9;
    pub const STATS: u16 = 10;
    pub const ADDR_FAMILY: u16 = 11;
    pub const STATS64: u16 = 12;
    pub const TUN_TYPE: u16 = 13;
    pub const TUN_PORT: u16 = 14;
    pub const TUN_FLAGS: u16 = 15;
}

/// Sync-daemon nest attributes (`IPVS_DAEMON_ATTR_*`).
#[allow(missing_docs)]
pub mod daemon_attr {
    pub const STATE: u16 = 1;
    pub const MCAST_IFN: u16 = 2;
    pub const SYNC_ID: u16 = 3;
    pub const SYNC_MAXLEN: u16 = 4;
    pub const MCAST_GROUP: u16 = 5;
    pub const MCAST_GROUP6: u16 = 6;
    pub const MCAST_PORT: u16 = 7;
    pub const MCAST_TTL: u16 = 8;
}

/// Statistics nest attributes (`IPVS_STATS_ATTR_*`).
#[allow(missing_docs)]
pub mod stats_attr {
    pub const CONNS: u16 = 1;
    pub const INPKTS: u16 = 2;
    pub const OUTPKTS: u16 = 3;
    pub const INBYTES: u16 = 4;
    pub const OUTBYTES: u16 = 5;
    pub const CPS: u16 = 6;
    pub const INPPS: u16 = 7;
    pub const OUTPPS: u16 = 8;
    pub const INBPS: u16 = 9;
    pub const OUTBPS: u16 = 10;
    pub const PAD: u16 = 11;
}

/// GET_INFO reply attributes (`IPVS_INFO_ATTR_*`), top level of a SET_INFO message.
#[allow(missing_docs)]
pub mod info_attr {
    pub const VERSION: u16 = 1;
    pub const CONN_TAB_SIZE: u16 = 2;
}

/// Virtual service flags (`IP_VS_SVC_F_*`).
#[allow(missing_docs)]
pub mod svc_flags {
    pub const PERSISTENT: u32 = 0x0001;
    /// Set by the kernel on every hashed service; ignored when comparing.
    pub const HASHED: u32 = 0x0002;
    pub const ONEPACKET: u32 = 0x0004;
    pub const SCHED1: u32 = 0x0008;
    pub const SCHED2: u32 = 0x0010;
    pub const SCHED3: u32 = 0x0020;
}

/// Sync daemon states (`IP_VS_STATE_*`).
#[allow(missing_docs)]
pub mod daemon_state {
    pub const MASTER: u32 = 1;
    pub const BACKUP: u32 = 2;
}

/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u16 = 6;
/// `IPPROTO_UDP`.
pub const IPPROTO_UDP: u16 = 17;
/// `IPPROTO_SCTP`.
pub const IPPROTO_SCTP: u16 = 132;
/// Kernel limit for scheduler names including the NUL.
pub const SCHEDNAME_MAXLEN: usize = 16;
/// Kernel limit for persistence engine names.
pub const PENAME_MAXLEN: usize = 16;
/// Kernel limit for interface names including the NUL.
pub const IFNAME_MAXLEN: usize = 16;

/// Controller (nlctrl) constants for resolving the family id.
#[allow(missing_docs)]
pub mod ctrl {
    /// `GENL_ID_CTRL`, the netlink message type of nlctrl.
    pub const GENL_ID_CTRL: u16 = 0x10;
    pub const CMD_GETFAMILY: u8 = 3;
    pub const CMD_NEWFAMILY: u8 = 1;
    pub const ATTR_FAMILY_ID: u16 = 1;
    pub const ATTR_FAMILY_NAME: u16 = 2;
}

/// Why bytes could not be decoded (or a value cannot be encoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Fewer bytes than a header or attribute announced.
    #[error("truncated IPVS netlink message: {0}")]
    Truncated(&'static str),
    /// An attribute had the wrong payload size.
    #[error("IPVS attribute {what} has {got} bytes, expected {want}")]
    BadLength {
        /// Attribute name.
        what: &'static str,
        /// Actual size.
        got: usize,
        /// Expected size.
        want: usize,
    },
    /// A string attribute was not valid UTF-8 / not NUL-terminated.
    #[error("IPVS attribute {0} is not a valid string")]
    BadString(&'static str),
    /// A required attribute was missing from a reply.
    #[error("IPVS reply is missing attribute {0}")]
    Missing(&'static str),
    /// The reply had an unexpected command.
    #[error("unexpected IPVS reply command {got}, expected {want}")]
    UnexpectedCmd {
        /// Command found.
        got: u8,
        /// Command expected.
        want: u8,
    },
    /// A name is too long for the kernel's fixed buffer.
    #[error("name '{name}' is too long for the kernel (at most {max} characters)")]
    NameTooLong {
        /// The name.
        name: String,
        /// Maximum characters.
        max: usize,
    },
    /// Unknown address family in a reply.
    #[error("unsupported address family {0} in IPVS reply")]
    Family(u16),
}

#[cfg(test)]
mod tests;
