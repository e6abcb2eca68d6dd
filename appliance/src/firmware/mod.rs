//! Firmware updates: signed bundles (`bundle`, `keys`, `version`) installed into the
//! inactive A/B slot, with the bootloader's boot counter bringing back the old slot when
//! the new one never becomes healthy.

pub mod bundle;
pub mod disk;
pub mod fetch;
pub mod grubenv;
pub mod install;
pub mod keys;
pub mod ops;
pub mod slots;
pub mod trial;
pub mod ubootenv;
pub mod version;

/// Optional file in the root filesystem naming the image's firmware version; an image build
/// may set it (e.g. from the release tag) without rebuilding the binary.
pub const VERSION_FILE: &str = "/etc/appliance/firmware-version";

/// The running firmware version: [`VERSION_FILE`] when it holds a valid version, else the
/// binary's own.
pub fn running_version() -> version::Version {
    let fallback = || {
        version::Version::parse(crate::VERSION).unwrap_or(version::Version {
            major: 0,
            minor: 0,
            patch: 0,
        })
    };
    match std::fs::read_to_string(VERSION_FILE) {
        Ok(t) => version::Version::parse(t.trim()).unwrap_or_else(|e| {
            tracing::warn!(file = VERSION_FILE, error = %e, "ignoring the firmware version file");
            fallback()
        }),
        Err(_) => fallback(),
    }
}

/// Firmware changes (install, rollback, mark good, the daemon's mark) are made one at a time:
/// each reads, changes and writes the environment block under this lock.
pub fn change_lock() -> Result<crate::store::lock::StoreLock, String> {
    let dir = if std::path::Path::new("/run/appliance").is_dir() {
        "/run/appliance"
    } else {
        "/tmp"
    };
    let path = format!("{dir}/firmware.lock");
    crate::store::lock::StoreLock::try_acquire(std::path::Path::new(&path)).map_err(|e| match e {
        crate::store::lock::LockError::Held { .. } => format!(
            "another firmware install, rollback or mark-good is running (lock {path}); wait for it"
        ),
        e => e.to_string(),
    })
}
