//! SIP load-balancer appliance: library behind the multi-call `appliance` binary.
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod console;
pub mod control;
pub mod daemon;
pub mod firmware;
pub mod ipvs;
pub mod leds;
pub mod metrics;
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
/// `APPLIANCE_VERSION` at build time overrides the crate version (test bundles need images of
/// several versions from one tree).
pub const VERSION: &str = match option_env!("APPLIANCE_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};
