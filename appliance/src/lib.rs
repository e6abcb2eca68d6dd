//! SIP load-balancer appliance: library behind the multi-call `appliance` binary.
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod config;
pub mod console;
pub mod control;
pub mod daemon;
pub mod ipvs;
pub mod leds;
pub mod net;
pub mod ntp;
pub mod probe;
pub mod store;
pub mod syslog;
#[cfg(test)]
mod test_skip;
pub mod vrrp;
pub mod watchdog;

/// Firmware version shown on the console and in `appliance version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
