//! Time: an in-service SNTP client (RFC 4330) keeps the system clock right.
//!
//! `packet` is the pure codec (fuzzed), `client` the pure decisions (best sample,
//! step or slew, sync state), `tasks` the UDP I/O and the clock calls. Why in the
//! service rather than BusyBox `ntpd`: the daemon then knows, for status and syslog,
//! which server it synced to, the offset, and why each server failed, without a hook
//! script, a second supervised process, or parsing another program's output.

pub mod client;
pub mod packet;
pub mod tasks;

pub use client::NtpStatus;
pub use tasks::Ntp;
