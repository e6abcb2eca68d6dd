//! Board facts from `/etc/appliance/board.toml` (store device, watchdog device, LEDs).
//!
//! Tolerant: a missing file or missing keys give defaults, unknown keys are ignored,
//! so one firmware runs on boards with older or newer board files.

use std::path::Path;

use serde::Deserialize;

use super::ConfigError;

/// Default location of the board file.
pub const BOARD_PATH: &str = "/etc/appliance/board.toml";
/// Store used when the board file does not name one.
pub const DEFAULT_STORE: &str = "file:/var/lib/appliance/config.bin";
/// Watchdog device used when the board file does not name one.
pub const DEFAULT_WATCHDOG: &str = "/dev/watchdog";

/// Hardware facts of the board the firmware runs on.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Board {
    /// Board name for the console banner.
    pub name: String,
    /// Config store spec, `file:/path` or `mtd:/dev/mtdN`.
    pub store: String,
    /// Watchdog device path (empty = none).
    pub watchdog: String,
    /// Factory config file.
    pub factory: String,
    /// Root of the LED class devices (for tests and unusual boards).
    pub leds_root: String,
    /// Serial console device for the menu.
    pub console: String,
}

impl Default for Board {
    fn default() -> Self {
        Board {
            name: "generic".into(),
            store: DEFAULT_STORE.into(),
            watchdog: DEFAULT_WATCHDOG.into(),
            factory: super::FACTORY_PATH.into(),
            leds_root: "/sys/class/leds".into(),
            console: "/dev/console".into(),
        }
    }
}

impl Board {
    /// Parse board TOML (missing keys take defaults, unknown keys are ignored).
    pub fn from_toml(text: &str, origin: &str) -> Result<Board, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Toml {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })
    }

    /// Read the board file; a missing file gives the defaults.
    pub fn load(path: impl AsRef<Path>) -> Result<Board, ConfigError> {
        let path = path.as_ref();
        match std::fs::read_to_string(path) {
            Ok(t) => Board::from_toml(&t, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(path = %path.display(), "no board file, using defaults");
                Ok(Board::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Like [`Board::load`] but never fails: problems are logged and defaults used.
    pub fn load_or_default(path: impl AsRef<Path>) -> Board {
        Board::load(path).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "board file unusable, using defaults");
            Board::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_keys_default_unknown_ignored() {
        let b = Board::from_toml("store = \"mtd:/dev/mtd0\"\nfuture_key = 1\n", "t").unwrap();
        assert_eq!(b.store, "mtd:/dev/mtd0");
        assert_eq!(b.watchdog, DEFAULT_WATCHDOG);
        let e = Board::from_toml("store = 5\n", "board.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("board.toml: ") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn missing_file_gives_defaults() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            Board::load(d.path().join("nope.toml")).unwrap(),
            Board::default()
        );
        assert_eq!(Board::default().store, DEFAULT_STORE);
    }
}
