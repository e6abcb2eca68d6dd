//! Configuration: the model, its validation, the TOML form and the keepalived.conf importer.

pub mod model;

pub use model::*;
