//! The daemon: loads config, applies network and IPVS state, runs probers and serves control.

pub mod logbuf;
