//! Test harnesses for the appliance: the SIP lab (namespaces, bridges, sipp, captures).

pub mod lab;
pub mod sipp;
