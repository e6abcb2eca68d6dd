//! Userspace LED devices (`/dev/uleds`): real LED class devices for boards without
//! LED hardware, such as the QEMU dev image, so the LED-class backend is exercised.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// `LED_MAX_NAME_SIZE` from linux/uleds.h.
pub const NAME_SIZE: usize = 64;

/// Why a uleds device could not be created.
#[derive(Debug, thiserror::Error)]
pub enum UledsError {
    /// Name empty, too long or containing '/'.
    #[error("LED name '{0}' is invalid: use 1 to 63 characters without '/'")]
    Name(String),
    /// Opening or writing /dev/uleds failed.
    #[error("cannot create LED '{name}' through {path}: {source} (is CONFIG_LEDS_USER enabled?)")]
    Io {
        /// LED name.
        name: String,
        /// Device path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// Encode `struct uleds_user_dev { char name[64]; int max_brightness; }`.
pub fn encode(name: &str, max_brightness: i32) -> Result<[u8; NAME_SIZE + 4], UledsError> {
    if name.is_empty() || name.len() >= NAME_SIZE || name.contains('/') || name.contains('\0') {
        return Err(UledsError::Name(name.to_string()));
    }
    let mut buf = [0u8; NAME_SIZE + 4];
    buf[..name.len()].copy_from_slice(name.as_bytes());
    buf[NAME_SIZE..].copy_from_slice(&max_brightness.to_ne_bytes());
    Ok(buf)
}

/// Create LED `name` (max brightness 255); the LED exists while the returned file is open.
pub fn create(dev: &Path, name: &str) -> Result<File, UledsError> {
    let buf = encode(name, 255)?;
    let io = |source| UledsError::Io {
        name: name.to_string(),
        path: dev.display().to_string(),
        source,
    };
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .map_err(io)?;
    f.write_all(&buf).map_err(io)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_kernel_struct() {
        let b = encode("sip-lb:green:pool", 255).unwrap();
        assert_eq!(&b[..17], b"sip-lb:green:pool");
        assert!(b[17..NAME_SIZE].iter().all(|&x| x == 0));
        assert_eq!(i32::from_ne_bytes(b[NAME_SIZE..].try_into().unwrap()), 255);
    }

    #[test]
    fn rejects_bad_names() {
        assert!(encode("", 1).is_err());
        assert!(encode("a/b", 1).is_err());
        assert!(encode(&"x".repeat(64), 1).is_err());
        assert!(encode(&"x".repeat(63), 1).is_ok());
    }

    #[test]
    fn missing_device_is_a_clear_error() {
        let e = create(Path::new("/nonexistent/uleds"), "x").unwrap_err();
        assert!(e.to_string().contains("CONFIG_LEDS_USER"), "{e}");
    }
}
