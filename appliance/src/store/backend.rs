//! Store backends: a file or block device, and raw MTD flash.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::MAX_RECORD;
use super::{Slot, StoreError};

/// Slot size of the file/block-device backend (slot A at 0, slot B at 64 KiB).
pub const FILE_SLOT_SIZE: usize = 64 * 1024;

/// A medium holding two record slots. Implementations make `write` durable before returning.
pub trait Backend: Send {
    /// Human-readable name, e.g. `file:/var/lib/appliance/config.bin`.
    fn describe(&self) -> String;
    /// Bytes per slot.
    fn slot_size(&self) -> usize;
    /// True when a slot must be erased before it is written (flash).
    fn needs_erase(&self) -> bool;
    /// Read `buf.len()` bytes of `slot` from `offset`; never-written areas read as 0xFF.
    fn read(&mut self, slot: Slot, offset: usize, buf: &mut [u8]) -> Result<(), StoreError>;
    /// Put `slot` in the erased state (all 0xFF), durably.
    fn erase(&mut self, slot: Slot) -> Result<(), StoreError>;
    /// Write `data` at the start of `slot` and sync it to the medium.
    fn write(&mut self, slot: Slot, data: &[u8]) -> Result<(), StoreError>;
    /// Read the start of `slot` back from the medium itself, not from a cache (save's
    /// verification). MTD character devices have no page cache, so a plain read does.
    fn read_back(&mut self, slot: Slot, buf: &mut [u8]) -> Result<(), StoreError> {
        self.read(slot, 0, buf)
    }
}

// ---- file / block device ----------------------------------------------------

/// Byte-addressed random-access storage (a file, a block device, or a simulation).
pub trait Disk: Send {
    /// Human-readable name.
    fn describe(&self) -> String;
    /// Fill `buf` from `offset`; bytes past the end (or of a missing file) read as 0xFF.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Write `data` at `offset` (may be partial on power loss).
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Flush written data to the medium (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    /// Like [`Disk::read_at`], but from the medium rather than a cache of it (after `sync`).
    fn read_uncached(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.read_at(offset, buf)
    }
}

/// True for paths under `/dev`: there a missing store is a missing device, never a file to
/// create (devtmpfs is RAM: a file there would silently lose every save at the next boot).
pub fn is_device_path(path: &Path) -> bool {
    path.starts_with("/dev")
}

/// A regular file or a block device such as `/dev/vdb`.
#[derive(Debug)]
pub struct FileDisk {
    path: PathBuf,
    file: Option<File>,
}

impl FileDisk {
    /// Refer to `path`; it is opened on first use and created on first write.
    pub fn new(path: impl Into<PathBuf>) -> FileDisk {
        FileDisk {
            path: path.into(),
            file: None,
        }
    }

    fn open_rw(&mut self) -> io::Result<&File> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                if !dir.as_os_str().is_empty() && !dir.exists() && !is_device_path(dir) {
                    std::fs::create_dir_all(dir)?;
                }
            }
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(!is_device_path(&self.path))
                .truncate(false)
                .open(&self.path)?;
            self.file = Some(f);
        }
        // Just set above.
        self.file
            .as_ref()
            .ok_or_else(|| io::Error::other("file not open"))
    }
}

impl Disk for FileDisk {
    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        buf.fill(0xFF);
        let file = match &self.file {
            Some(f) => f,
            None => match File::open(&self.path) {
                Ok(f) => {
                    // Keep read-only handles out of `self.file`, which must be writable.
                    return read_fill(&f, offset, buf);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            },
        };
        read_fill(file, offset, buf)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.open_rw()?.write_all_at(data, offset)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.open_rw()?.sync_data()
    }

    /// A fresh descriptor, with the range's cached pages dropped first: BLKFLSBUF for a block
    /// device (writes back, then empties its buffer cache), `posix_fadvise(DONTNEED)` for a
    /// regular file (drops the range's pages, clean after `sync`). Not O_DIRECT: it needs
    /// block-aligned buffers, offsets and lengths and is refused by tmpfs and some other
    /// filesystems, while these two work on every file and block device. Where the kernel
    /// refuses (no CAP_SYS_ADMIN for BLKFLSBUF) the read still happens, with a warning.
    fn read_uncached(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        use std::os::unix::fs::FileTypeExt;
        buf.fill(0xFF);
        let f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let dropped = if f.metadata()?.file_type().is_block_device() {
            // SAFETY: BLKFLSBUF takes no argument; `f` is an open block device.
            unsafe { blkflsbuf(f.as_raw_fd()) }.map(drop)
        } else {
            // off_t is i64 here but may be narrower on other targets; 0 length = to the end.
            #[allow(clippy::useless_conversion)]
            let (off, len) = (
                offset.try_into().unwrap_or_default(),
                buf.len().try_into().unwrap_or_default(),
            );
            nix::fcntl::posix_fadvise(
                &f,
                off,
                len,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
            )
        };
        if let Err(e) = dropped {
            tracing::warn!(store = %self.describe(), error = %e, "cannot drop the cache before verifying; the read-back may come from the page cache");
        }
        read_fill(&f, offset, buf)
    }
}

nix::ioctl_none!(
    /// BLKFLSBUF: write back and drop a block device's buffer cache.
    blkflsbuf,
    0x12,
    97
);

fn read_fill(f: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break, // past the end: stays 0xFF
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Two fixed 64 KiB slots on a [`Disk`]: slot A at offset 0, slot B at 64 KiB.
#[derive(Debug)]
pub struct FileBackend<D: Disk = FileDisk> {
    disk: D,
}

impl FileBackend<FileDisk> {
    /// A file or block device at `path`.
    pub fn open(path: impl AsRef<Path>) -> FileBackend<FileDisk> {
        FileBackend {
            disk: FileDisk::new(path.as_ref()),
        }
    }
}

impl<D: Disk> FileBackend<D> {
    /// Over any disk (simulations).
    pub fn with_disk(disk: D) -> FileBackend<D> {
        FileBackend { disk }
    }

    fn base(slot: Slot) -> u64 {
        (slot.index() * FILE_SLOT_SIZE) as u64
    }

    fn io(&self, op: &'static str, slot: Slot, source: io::Error) -> StoreError {
        StoreError::Io {
            device: self.disk.describe(),
            op,
            slot,
            source,
        }
    }
}

impl<D: Disk> Backend for FileBackend<D> {
    fn describe(&self) -> String {
        self.disk.describe()
    }
    fn slot_size(&self) -> usize {
        FILE_SLOT_SIZE
    }
    fn needs_erase(&self) -> bool {
        false
    }
    fn read(&mut self, slot: Slot, offset: usize, buf: &mut [u8]) -> Result<(), StoreError> {
        if offset + buf.len() > FILE_SLOT_SIZE {
            return Err(self.io("read", slot, io::Error::other("read past the slot end")));
        }
        self.disk
            .read_at(Self::base(slot) + offset as u64, buf)
            .map_err(|e| self.io("read", slot, e))
    }
    fn erase(&mut self, slot: Slot) -> Result<(), StoreError> {
        let ff = vec![0xFF; FILE_SLOT_SIZE];
        self.disk
            .write_at(Self::base(slot), &ff)
            .map_err(|e| self.io("erase", slot, e))?;
        self.disk.sync().map_err(|e| self.io("sync", slot, e))
    }
    fn write(&mut self, slot: Slot, data: &[u8]) -> Result<(), StoreError> {
        if data.len() > FILE_SLOT_SIZE {
            return Err(StoreError::TooLarge {
                len: data.len(),
                slot: FILE_SLOT_SIZE,
            });
        }
        self.disk
            .write_at(Self::base(slot), data)
            .map_err(|e| self.io("write", slot, e))?;
        self.disk.sync().map_err(|e| self.io("sync", slot, e))
    }
    fn read_back(&mut self, slot: Slot, buf: &mut [u8]) -> Result<(), StoreError> {
        if buf.len() > FILE_SLOT_SIZE {
            return Err(self.io("read", slot, io::Error::other("read past the slot end")));
        }
        self.disk
            .read_uncached(Self::base(slot), buf)
            .map_err(|e| self.io("read", slot, e))
    }
}

// ---- MTD ---------------------------------------------------------------------

/// Geometry of a flash device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Total bytes.
    pub size: u64,
    /// Erase block size.
    pub erase_size: u32,
    /// Minimal write unit (1 on NOR and block2mtd).
    pub write_size: u32,
}

/// Raw flash: writes can only clear bits; erase sets whole blocks to 0xFF.
pub trait FlashDevice: Send {
    /// Human-readable name.
    fn describe(&self) -> String;
    /// Size, erase block and write unit.
    fn geometry(&self) -> Geometry;
    /// Read at `offset`.
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Erase `len` bytes from `offset` (both multiples of the erase size).
    fn erase(&mut self, offset: u64, len: u64) -> io::Result<()>;
    /// Program `data` at `offset` (a multiple of the write size); durable on return.
    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
}

/// `struct mtd_info_user` from linux/mtd/mtd-abi.h.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MtdInfoUser {
    /// MTD_NORFLASH (3), MTD_NANDFLASH (4), MTD_RAM (1), ...
    pub type_: u8,
    /// MTD_WRITEABLE (0x400), MTD_BIT_WRITEABLE (0x800), MTD_NO_ERASE (0x1000).
    pub flags: u32,
    /// Total size.
    pub size: u32,
    /// Erase block size.
    pub erasesize: u32,
    /// Write page size.
    pub writesize: u32,
    /// OOB bytes per page.
    pub oobsize: u32,
    /// Obsolete.
    pub padding: u64,
}

/// `struct erase_info_user` from linux/mtd/mtd-abi.h.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EraseInfoUser {
    /// Offset of the first byte to erase.
    pub start: u32,
    /// Bytes to erase.
    pub length: u32,
}

nix::ioctl_read!(
    /// MEMGETINFO: the MTD device's geometry.
    mem_get_info,
    b'M',
    1,
    MtdInfoUser
);
nix::ioctl_write_ptr!(
    /// MEMERASE: erase a range of erase blocks.
    mem_erase,
    b'M',
    2,
    EraseInfoUser
);

const MTD_NANDFLASH: u8 = 4;
const MTD_MLCNANDFLASH: u8 = 8;
const MTD_WRITEABLE: u32 = 0x400;

/// A real MTD character device, `/dev/mtdN`.
///
/// Each write or erase opens the device, acts and closes it: closing a
/// writable mtdchar handle calls `mtd_sync`, which flushes drivers that
/// cache (block2mtd writes through the page cache).
#[derive(Debug)]
pub struct MtdDevice {
    path: PathBuf,
    geo: Geometry,
}

impl MtdDevice {
    /// Open `path` and query its geometry with MEMGETINFO.
    pub fn open(path: impl AsRef<Path>) -> Result<MtdDevice, StoreError> {
        let path = path.as_ref().to_path_buf();
        let device = format!("mtd:{}", path.display());
        let open_err = |source| StoreError::Open {
            device: device.clone(),
            source,
        };
        let f = File::open(&path).map_err(open_err)?;
        let mut info = MtdInfoUser::default();
        // SAFETY: MEMGETINFO writes one mtd_info_user into `info`, which is a
        // valid, exclusively borrowed repr(C) struct of the kernel's layout.
        unsafe { mem_get_info(f.as_raw_fd(), &mut info) }
            .map_err(|e| open_err(io::Error::from(e)))?;
        if info.type_ == MTD_NANDFLASH || info.type_ == MTD_MLCNANDFLASH {
            return Err(StoreError::Unsupported {
                device,
                reason: "NAND flash needs bad-block handling, which this store does not do; use a NOR partition or UBI".into(),
            });
        }
        if info.flags & MTD_WRITEABLE == 0 {
            return Err(StoreError::Unsupported {
                device,
                reason: "the MTD partition is read-only; mark it writeable in the device tree or kernel command line".into(),
            });
        }
        Ok(MtdDevice {
            path,
            geo: Geometry {
                size: u64::from(info.size),
                erase_size: info.erasesize,
                write_size: info.writesize.max(1),
            },
        })
    }

    fn open_rw(&self) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).open(&self.path)
    }
}

impl FlashDevice for MtdDevice {
    fn describe(&self) -> String {
        format!(
            "mtd:{} (erase block {} bytes)",
            self.path.display(),
            self.geo.erase_size
        )
    }
    fn geometry(&self) -> Geometry {
        self.geo
    }
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        File::open(&self.path)?.read_exact_at(buf, offset)
    }
    fn erase(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let f = self.open_rw()?;
        let ei = EraseInfoUser {
            start: u32::try_from(offset).map_err(io::Error::other)?,
            length: u32::try_from(len).map_err(io::Error::other)?,
        };
        // SAFETY: MEMERASE reads one erase_info_user from the pointer, which
        // points at a live repr(C) struct of the kernel's layout.
        unsafe { mem_erase(f.as_raw_fd(), &ei) }.map_err(io::Error::from)?;
        drop(f); // close => mtd_sync
        Ok(())
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let f = self.open_rw()?;
        f.write_all_at(data, offset)?;
        drop(f); // close => mtd_sync
        Ok(())
    }
}

/// Two slots on raw flash, each in its own erase block(s).
#[derive(Debug)]
pub struct MtdBackend<F: FlashDevice> {
    dev: F,
    geo: Geometry,
    slot_size: usize,
}

impl<F: FlashDevice> MtdBackend<F> {
    /// Lay out two slots on `dev`; each slot is the smallest whole number of erase blocks that holds a maximal record.
    pub fn new(dev: F) -> Result<MtdBackend<F>, StoreError> {
        let geo = dev.geometry();
        if geo.erase_size == 0
            || geo.write_size == 0
            || !geo.erase_size.is_multiple_of(geo.write_size)
        {
            return Err(StoreError::Unsupported {
                device: dev.describe(),
                reason: format!(
                    "unusable flash geometry (erase size {}, write size {})",
                    geo.erase_size, geo.write_size
                ),
            });
        }
        let eb = geo.erase_size as usize;
        let slot_size = MAX_RECORD.div_ceil(eb) * eb;
        let need = 2 * slot_size as u64;
        if geo.size < need {
            return Err(StoreError::TooSmall {
                device: dev.describe(),
                size: geo.size,
                need,
                slot: slot_size,
            });
        }
        Ok(MtdBackend {
            dev,
            geo,
            slot_size,
        })
    }

    /// The underlying device (tests).
    pub fn device(&self) -> &F {
        &self.dev
    }

    fn base(&self, slot: Slot) -> u64 {
        (slot.index() * self.slot_size) as u64
    }

    fn io(&self, op: &'static str, slot: Slot, source: io::Error) -> StoreError {
        StoreError::Io {
            device: self.dev.describe(),
            op,
            slot,
            source,
        }
    }
}

impl<F: FlashDevice> Backend for MtdBackend<F> {
    fn describe(&self) -> String {
        self.dev.describe()
    }
    fn slot_size(&self) -> usize {
        self.slot_size
    }
    fn needs_erase(&self) -> bool {
        true
    }
    fn read(&mut self, slot: Slot, offset: usize, buf: &mut [u8]) -> Result<(), StoreError> {
        if offset + buf.len() > self.slot_size {
            return Err(self.io("read", slot, io::Error::other("read past the slot end")));
        }
        let at = self.base(slot) + offset as u64;
        self.dev.read(at, buf).map_err(|e| self.io("read", slot, e))
    }
    fn erase(&mut self, slot: Slot) -> Result<(), StoreError> {
        let at = self.base(slot);
        let len = self.slot_size as u64;
        self.dev
            .erase(at, len)
            .map_err(|e| self.io("erase", slot, e))
    }
    fn write(&mut self, slot: Slot, data: &[u8]) -> Result<(), StoreError> {
        if data.len() > self.slot_size {
            return Err(StoreError::TooLarge {
                len: data.len(),
                slot: self.slot_size,
            });
        }
        // Pad to whole write pages with 0xFF (programming 0xFF leaves erased bits alone).
        let ws = self.geo.write_size as usize;
        let mut buf = data.to_vec();
        buf.resize(data.len().div_ceil(ws) * ws, 0xFF);
        let at = self.base(slot);
        self.dev
            .write(at, &buf)
            .map_err(|e| self.io("write", slot, e))
    }
}
