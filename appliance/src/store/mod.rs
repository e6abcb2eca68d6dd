//! Flash-safe A/B configuration store (postcard + CRC-32 records).
//!
//! Two slots, A and B. Each holds one record:
//!
//! ```text
//! offset size field
//!      0    4 magic "SLBC"
//!      4    2 format version (u16 LE) = 1
//!      6    2 reserved, 0
//!      8    8 generation (u64 LE), 1 for the first save, +1 per save
//!     16    4 payload length (u32 LE)
//!     20    n payload = postcard(Envelope::V3(config)); V1 and V2 records still load (migrated)
//!   20+n    4 CRC-32 (ISO-HDLC) over bytes 0..20+n, LE
//! ```
//!
//! Save writes the slot that does not hold the newest valid record, syncs it,
//! reads it back and verifies it; only then is the save reported. Load takes the
//! valid slot with the highest generation. A power cut at any point therefore
//! leaves the previous record intact in the other slot.

pub mod backend;
pub mod lock;
pub mod record;
pub mod shared;
#[cfg(test)]
mod sim;

use std::fmt;

pub use backend::{Backend, FileBackend, FlashDevice, MtdBackend, MtdDevice};
pub use record::{
    decode_slot, encode_envelope, encode_record, largest_config, pick, ConfigV1, ConfigV2,
    Envelope, HaSettingsV1, SlotState, CRC_LEN, FORMAT_VERSION, HEADER_LEN, MAGIC, MAX_PAYLOAD,
    MAX_RECORD,
};

use crate::config::Config;

/// One of the two record slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// First slot (lower offset).
    A,
    /// Second slot.
    B,
}

impl Slot {
    /// Index 0 or 1.
    pub fn index(self) -> usize {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::A => "A",
            Slot::B => "B",
        })
    }
}

/// Where a loaded config came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Slot A held the newest valid record.
    SlotA,
    /// Slot B held the newest valid record.
    SlotB,
    /// The store is empty (erased/new): factory defaults.
    Empty,
    /// Neither slot holds a valid record although something was written: factory defaults.
    BothCorrupt,
}

/// The result of [`Store::load`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The stored config, or the factory config for `Empty`/`BothCorrupt`.
    pub config: Config,
    /// Generation of the record loaded (0 for factory defaults).
    pub generation: u64,
    /// Where it came from.
    pub origin: Origin,
    /// What was found in each slot, e.g. "slot B: CRC mismatch" (for logs and the console).
    pub notes: Vec<String>,
}

/// Errors of the config store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The daemon started on a store it could not load; saving would overwrite it.
    #[error("the config store has a fault ({0}); a save now would overwrite what it holds, so it is refused: fix or replace the medium, or erase it with a factory reset")]
    Fault(String),
    /// The store spec is not `file:/path` or `mtd:/dev/mtdN`.
    #[error("store spec '{0}' is invalid; use file:/path/to/config.bin or mtd:/dev/mtdN")]
    Spec(String),
    /// The device or file could not be opened or queried.
    #[error("cannot open config store {device}: {source}")]
    Open {
        /// Device or file.
        device: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The device cannot hold two slots.
    #[error(
        "config store {device} is too small: {size} bytes, need {need} (two slots of {slot} bytes)"
    )]
    TooSmall {
        /// Device or file.
        device: String,
        /// Its size.
        size: u64,
        /// Bytes needed.
        need: u64,
        /// Slot size.
        slot: usize,
    },
    /// Unsupported MTD flash type.
    #[error("config store {device}: {reason}")]
    Unsupported {
        /// Device.
        device: String,
        /// Why.
        reason: String,
    },
    /// Reading, writing, erasing or syncing failed.
    #[error("config store {device}: {op} of slot {slot} failed: {source}")]
    Io {
        /// Device or file.
        device: String,
        /// "read", "write", "erase", "sync".
        op: &'static str,
        /// Slot.
        slot: Slot,
        /// OS error.
        source: std::io::Error,
    },
    /// The record does not fit a slot (cannot happen with the model's capacities).
    #[error("config record of {len} bytes does not fit a {slot}-byte slot")]
    TooLarge {
        /// Record size.
        len: usize,
        /// Slot size.
        slot: usize,
    },
    /// The config could not be encoded.
    #[error("cannot encode config: {0}")]
    Encode(String),
    /// The record read back after writing is not what was written.
    #[error("config store {device}: slot {slot} did not verify after writing ({why}); the previous config is still intact in slot {}; the flash may be worn out", .slot.other())]
    Verify {
        /// Device or file.
        device: String,
        /// Slot written.
        slot: Slot,
        /// What differed.
        why: String,
    },
}

/// The A/B config store over one backend.
pub struct Store {
    backend: Box<dyn Backend>,
    factory: Config,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend.describe())
            .finish()
    }
}

impl Store {
    /// Open a store from a spec: `file:/path` (file or block device) or `mtd:/dev/mtdN`.
    ///
    /// Factory defaults for an empty store are [`Config::builtin_default`] until
    /// [`Store::with_factory`] sets the image's factory config.
    pub fn open(spec: &str) -> Result<Store, StoreError> {
        let backend: Box<dyn Backend> = if let Some(p) = spec.strip_prefix("file:") {
            if p.is_empty() {
                return Err(StoreError::Spec(spec.to_owned()));
            }
            let path = std::path::Path::new(p);
            if backend::is_device_path(path) && !path.exists() {
                return Err(StoreError::Open {
                    device: spec.to_owned(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "the device does not exist (a store under /dev is never created as a file); check 'store' in the board file and that the device's driver is loaded",
                    ),
                });
            }
            Box::new(FileBackend::open(p))
        } else if let Some(p) = spec.strip_prefix("mtd:") {
            if p.is_empty() {
                return Err(StoreError::Spec(spec.to_owned()));
            }
            Box::new(MtdBackend::new(MtdDevice::open(p)?)?)
        } else {
            return Err(StoreError::Spec(spec.to_owned()));
        };
        Ok(Store::with_backend(backend))
    }

    /// A store over any backend (tests, simulations).
    pub fn with_backend(backend: Box<dyn Backend>) -> Store {
        Store {
            backend,
            factory: Config::builtin_default(),
        }
    }

    /// Use `factory` as the config returned for an empty or corrupt store.
    pub fn with_factory(mut self, factory: Config) -> Store {
        self.factory = factory;
        self
    }

    /// Human-readable description of the medium, e.g. `mtd:/dev/mtd0 (erase block 65536)`.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// Size of one slot in bytes.
    pub fn slot_size(&self) -> usize {
        self.backend.slot_size()
    }

    /// Read and decode one slot; `Err` only for I/O errors (bad contents are `Corrupt`).
    fn read_slot(&mut self, slot: Slot) -> Result<SlotState, StoreError> {
        let mut header = [0u8; HEADER_LEN];
        self.backend.read(slot, 0, &mut header)?;
        let len = match record::header_payload_len(&header, self.backend.slot_size()) {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(SlotState::Erased),
            Err(why) => return Ok(SlotState::Corrupt(why)),
        };
        let mut buf = vec![0u8; HEADER_LEN + len + CRC_LEN];
        self.backend.read(slot, 0, &mut buf)?;
        Ok(decode_slot(&buf))
    }

    /// Both slots; an unreadable slot counts as corrupt, unless both are unreadable.
    fn read_both(&mut self) -> Result<[SlotState; 2], StoreError> {
        match (self.read_slot(Slot::A), self.read_slot(Slot::B)) {
            (Err(e), Err(_)) => Err(e),
            (a, b) => {
                let fix = |r: Result<SlotState, StoreError>| {
                    r.unwrap_or_else(|e| SlotState::Corrupt(format!("unreadable: {e}")))
                };
                Ok([fix(a), fix(b)])
            }
        }
    }

    /// Load the newest valid config; factory defaults when there is none.
    ///
    /// Never fails because of slot contents; corrupt slots are reported in
    /// `notes` and left untouched until the next save. Fails only when the
    /// medium cannot be read at all (e.g. permission denied).
    pub fn load(&mut self) -> Result<Loaded, StoreError> {
        let states = self.read_both()?;
        let loaded = record::pick(states, &self.factory);
        let dev = self.backend.describe();
        match loaded.origin {
            Origin::Empty => tracing::info!(
                store = %dev,
                "config store is empty (new or erased): using factory defaults"
            ),
            Origin::BothCorrupt => tracing::error!(
                store = %dev, notes = ?loaded.notes,
                "config store holds no valid record: using factory defaults; the slots are kept until the next save"
            ),
            Origin::SlotA | Origin::SlotB => tracing::info!(
                store = %dev, generation = loaded.generation, origin = ?loaded.origin,
                "config loaded"
            ),
        }
        Ok(loaded)
    }

    /// Save `config` as a new generation; returns the generation once it is on the medium and verified.
    ///
    /// The caller validates the config first (the store stores what it is given).
    pub fn save(&mut self, config: &Config) -> Result<u64, StoreError> {
        let states = self.read_both()?;
        let (target, generation) = record::next_target(&states);
        let rec = encode_record(config, generation)?;
        let slot_size = self.backend.slot_size();
        if rec.len() > slot_size {
            return Err(StoreError::TooLarge {
                len: rec.len(),
                slot: slot_size,
            });
        }
        if self.backend.needs_erase() {
            self.backend.erase(target)?;
        }
        self.backend.write(target, &rec)?;
        let mut back = vec![0u8; rec.len()];
        // From the medium, not the page cache: a device that lost the write must fail here.
        self.backend.read_back(target, &mut back)?;
        let dev = self.backend.describe();
        if back != rec {
            let at = back.iter().zip(&rec).position(|(a, b)| a != b).unwrap_or(0);
            return Err(StoreError::Verify {
                device: dev,
                slot: target,
                why: format!("first difference at byte {at} of {}", rec.len()),
            });
        }
        match decode_slot(&back) {
            SlotState::Valid { generation: g, .. } if g == generation => {}
            other => {
                return Err(StoreError::Verify {
                    device: dev,
                    slot: target,
                    why: format!("read back as {}", other.describe()),
                })
            }
        }
        tracing::info!(store = %dev, slot = %target, generation, bytes = rec.len(), "config saved");
        Ok(generation)
    }

    /// Erase both slots (factory reset): the next load returns factory defaults.
    ///
    /// The older slot is erased first so that a power cut in between leaves the
    /// newest config, never an older one.
    pub fn erase(&mut self) -> Result<(), StoreError> {
        let states = self.read_both()?;
        let (older, _) = record::next_target(&states);
        self.backend.erase(older)?;
        self.backend.erase(older.other())?;
        tracing::warn!(store = %self.backend.describe(), "config store erased (factory reset)");
        Ok(())
    }
}

#[cfg(test)]
mod tests;
