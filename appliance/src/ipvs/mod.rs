//! Kernel IPVS control over generic netlink: codec, transport and reconciler.

pub mod codec;
