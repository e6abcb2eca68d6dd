//! Kernel IPVS control over generic netlink: codec, transport and reconciler.

pub mod codec;
pub mod model;
pub mod reconcile;
