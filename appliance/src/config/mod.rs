//! Configuration: the model, its validation, the TOML form and the keepalived.conf importer.

pub mod board;
pub mod keepalived;
pub mod model;
pub mod text;
pub mod validate;

pub use model::*;
pub use text::{from_toml, load_factory, to_toml};
pub use validate::{validate, Problem, Report};

/// Default path of the image's factory configuration.
pub const FACTORY_PATH: &str = "/etc/appliance/factory.toml";

/// Errors of the config module (parsing, reading, validation).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML text could not be parsed into a config; `message` carries line, column and key.
    #[error("{origin}: {message}")]
    Toml {
        /// File name or "input".
        origin: String,
        /// The parser's message (includes line/column and a pointer at the bad key/value).
        message: String,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The config parsed but failed validation.
    #[error("{origin} is not a valid config ({} error(s)):\n{}", .report.errors.len(), .report.lines().join("\n"))]
    Invalid {
        /// File name or "input".
        origin: String,
        /// Every problem found.
        report: Report,
    },
}
