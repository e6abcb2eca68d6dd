//! VRRP version 3 (RFC 5798, IPv4) for the high-availability pair.
//!
//! `packet` is the pure codec, `group` the pure sync-group state machine driven by
//! explicit instants, `tasks` the thin I/O runner (raw sockets, gratuitous ARP, its own
//! OS thread and current-thread tokio runtime).
//!
//! Public API as in HA-SPEC.md "VRRP core", with these additions and choices:
//! - `Advert::max_adver_int_cs` holds centiseconds for both versions (a v2 advert's
//!   seconds are multiplied by 100); `Advert::v3(..)` builds one, `Advert::interval()`
//!   reads it. `parse_datagram` = `parse_ipv4` + protocol check + `Advert::decode`.
//! - `GroupStatus::counters` is [`group::Counters`]; `PeerSeen` also names the `member`.
//!   `GroupStatus.peer` is the most recently heard peer on any member.
//! - `Group::update(now, cfg) -> bool` applies a config change in place (false = needs
//!   a restart, which the runner does on `Control::Reconfigure`, carrying the faults
//!   reported by `Group::active_faults()` over). `Group::config()` returns the config.
//! - `Event`/`Action`/`Control`/`Notice` are exactly the spec's variants.
//! - Durations are exact to the nanosecond (Skew_Time is not truncated to centiseconds).
//! - A split brain ends after 3 silent intervals of the other master; while it lasts each
//!   advert from it is answered at once and the ARP burst repeats at most once a second.
//! - Runner: `tasks::Runner::spawn(GroupConfig, Box<dyn Addresses>) ->
//!   Result<(Runner, tokio::sync::mpsc::Receiver<Notice>), VrrpError>`; control with
//!   `Runner::control()` (an unbounded sender) or `Runner::send`; `Runner::stop()` resigns
//!   and joins (blocking). `Addresses::add/remove(&mut self, member, &[Ipv4Addr]) ->
//!   Result<(), AddressError>` where `AddressError = Box<dyn Error + Send + Sync>`.
//!   The sockets are opened in the network namespace of the thread calling `spawn`.
//!   Notices: a `Status` after every transition and at least once a second; the queue
//!   holds 256 (status notices are dropped first when the daemon does not read).
//!   `Runner` dropped without `stop()` still resigns, but nothing waits for it: on an
//!   orderly daemon exit call `stop()` (in `spawn_blocking`) before returning.
//! - Needs `socket2` (features = ["all"], already built as a tokio dependency) and the
//!   nix `uio` feature (sendmsg with IP_PKTINFO, so adverts leave from the own address
//!   while the socket stays unbound and keeps receiving 224.0.0.18).

pub mod group;
pub mod packet;
pub mod tasks;

pub use group::{
    Action, Event, FaultReason, Group, GroupConfig, GroupStatus, MemberConfig, PeerSeen, State,
};
pub use packet::{Advert, Ipv4Header, PacketError};
pub use tasks::{AddressError, Addresses, Control, Notice, Runner, VrrpError};
