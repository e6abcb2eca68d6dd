//! Prometheus metrics over HTTP: `GET /metrics` on the management address.
//!
//! `render` turns a [`Snapshot`] of daemon state into the text exposition (pure),
//! `http` parses request heads (pure, fuzzed), and `server` is the thin tokio listener
//! with the source filter and the connection, size and time bounds.

pub mod http;
pub mod render;
pub mod server;

pub use render::{render, Snapshot};
pub use server::{Binding, Endpoint, MetricsError, SnapshotFn};

use crate::config::Config;

/// Where the endpoint should listen for `c`, or None when metrics are off (or the
/// dedicated interface has no address, which validation refuses).
pub fn binding(c: &Config) -> Option<Binding> {
    let m = &c.management;
    if !m.metrics_enabled {
        return None;
    }
    let ip = m.listen_addr(c)?;
    Some(Binding {
        addr: std::net::SocketAddrV4::new(ip, m.metrics_port),
        allow: m.allow.iter().copied().collect(),
    })
}
