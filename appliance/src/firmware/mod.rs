//! Firmware updates: signed bundles (`bundle`, `keys`, `version`) installed into the
//! inactive A/B slot, with the bootloader's boot counter bringing back the old slot when
//! the new one never becomes healthy.

pub mod bundle;
pub mod cli;
pub mod disk;
pub mod grubenv;
pub mod keys;
pub mod slots;
pub mod trial;
pub mod version;

pub use cli::cli;
