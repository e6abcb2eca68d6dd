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
    /// Store used when `store` cannot be opened (e.g. block2mtd not attached); empty = none.
    pub store_fallback: String,
    /// Watchdog device path (empty = none).
    pub watchdog: String,
    /// Factory config file.
    pub factory: String,
    /// sysfs mount point holding class/leds and class/gpio (tests point it at a fake tree).
    pub sysfs_root: String,
    /// Serial console device for the menu.
    pub console: String,
    /// LED class devices to create through /dev/uleds (boards without LED hardware, e.g. QEMU).
    pub uleds: Vec<String>,
    /// Default role -> LED map, used when the operator's config has no `[[leds]]`.
    pub leds: Vec<super::LedBinding>,
    /// A/B firmware boot disk; `None` on boards without firmware slots.
    pub firmware: Option<FirmwareLayout>,
}

/// Boot disk layout of a board with A/B firmware slots (offsets: `firmware::disk`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirmwareLayout {
    /// The boot disk device as Linux names it (e.g. /dev/vdb), or an image file.
    pub disk: String,
    /// Size of each slot in MiB.
    pub slot_mib: u64,
    /// Space for the kernel at the end of a slot, in MiB; the rootfs starts the slot.
    pub kernel_mib: u64,
    /// The bootloader that counts boot attempts: `grub` (x86, GRUB environment block) or
    /// `uboot` (ARM, U-Boot environment read by the A/B boot script).
    #[serde(default)]
    pub bootloader: Bootloader,
}

/// The bootloader of a board with A/B slots; it decides the environment format on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bootloader {
    /// GRUB 2 (i386-pc), `grubenv` in a small FAT.
    #[default]
    Grub,
    /// U-Boot, two raw copies of a U-Boot environment.
    Uboot,
}

impl FirmwareLayout {
    /// Check the sizes make sense.
    pub fn check(&self) -> Result<(), String> {
        if self.disk.is_empty() {
            return Err("[firmware] disk is empty".into());
        }
        if self.kernel_mib == 0 || self.slot_mib <= self.kernel_mib || self.slot_mib > 4096 {
            return Err(format!(
                "[firmware] slot_mib {} must exceed kernel_mib {} (> 0) and be at most 4096",
                self.slot_mib, self.kernel_mib
            ));
        }
        Ok(())
    }
}

impl Default for Board {
    fn default() -> Self {
        Board {
            name: "generic".into(),
            store: DEFAULT_STORE.into(),
            store_fallback: String::new(),
            watchdog: DEFAULT_WATCHDOG.into(),
            factory: super::FACTORY_PATH.into(),
            sysfs_root: "/sys".into(),
            console: "/dev/console".into(),
            uleds: Vec::new(),
            leds: Vec::new(),
            firmware: None,
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

#[cfg(test)]
mod board_file_tests {
    use super::*;

    #[test]
    fn every_board_file_parses_with_known_keys() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../board");
        let mut seen = 0;
        for e in std::fs::read_dir(root).expect("board dir") {
            let p = e
                .expect("entry")
                .path()
                .join("rootfs-overlay/etc/appliance/board.toml");
            if !p.exists() {
                continue;
            }
            seen += 1;
            let text = std::fs::read_to_string(&p).expect("read");
            // Unknown keys are ignored at run time (forward compatibility), so check
            // here that every key is one we read: a typo would silently use a default.
            let v: toml::Table = toml::from_str(&text).expect("toml");
            for k in v.keys() {
                assert!(
                    [
                        "name",
                        "store",
                        "store_fallback",
                        "watchdog",
                        "factory",
                        "sysfs_root",
                        "console",
                        "uleds",
                        "leds",
                        "firmware"
                    ]
                    .contains(&k.as_str()),
                    "{}: unknown key '{k}'",
                    p.display()
                );
            }
            let b = Board::load(&p).expect("board file parses");
            assert!(!b.store.is_empty(), "{}", p.display());
            assert!(!b.leds.is_empty(), "{}: no LED map", p.display());
        }
        assert!(seen >= 3, "expected at least 3 boards, saw {seen}");
    }

    #[test]
    fn qemu_board_file_parses() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../board/qemu-x86_64/rootfs-overlay/etc/appliance/board.toml"
        );
        let b = Board::load(path).expect("board file parses");
        assert_eq!(b.store, "mtd:/dev/mtd0");
        assert_eq!(b.store_fallback, "file:/dev/vda");
        assert_eq!(b.uleds.len(), 4);
        assert_eq!(b.leds.len(), 4);
        assert!(b.leds.iter().all(|l| b.uleds.contains(&l.name.to_string())));
    }
}
