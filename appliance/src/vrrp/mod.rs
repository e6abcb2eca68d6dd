//! VRRP version 3 (RFC 5798, IPv4) for the high-availability pair.
//!
//! `packet` is the pure codec, `group` the pure sync-group state machine driven by
//! explicit instants, `tasks` the thin I/O runner (raw sockets, gratuitous ARP, its own
//! OS thread and tokio runtime).

pub mod group;
pub mod packet;
