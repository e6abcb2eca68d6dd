//! SIP OPTIONS health probing with rise/fall hysteresis.
//!
//! Sans-IO layout: `packet` (request building, reply parsing and matching),
//! `health` (per-server state machine, fake-clock testable), `icmp` (which queued
//! ICMP errors may count against a server), `tasks` (tokio I/O,
//! one connected UDP socket per server), `once` (one blocking OPTIONS for diagnostics).

use std::net::SocketAddrV4;

pub mod health;
pub mod icmp;
pub mod once;
pub mod packet;
pub mod tasks;

pub use health::{Counters, Policy, Rtt};
pub use once::{options_once, options_once_from, ProbeError, ProbeReply};
pub use tasks::{monotonic_ms, Heartbeat, Prober, ProberHandle, ServerProbeStats};

/// Health of one real server as seen by the prober.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not yet decided (just started, or probing disabled has not been evaluated).
    Unknown,
    /// Passed `rise` consecutive probes.
    Up,
    /// Failed `fall` consecutive probes (or its link is down).
    Down,
}

/// A health transition, sent to the reconciler, LEDs and console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthEvent {
    /// Name of the virtual service the server belongs to.
    pub service: crate::config::Name,
    /// The real server.
    pub server: SocketAddrV4,
    /// New health.
    pub health: Health,
    /// Human-readable reason, e.g. "3 timeouts" or "503 Service Unavailable".
    pub reason: String,
}
