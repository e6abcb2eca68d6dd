//! Simulated media for tests and benchmarks: a disk (overwrite semantics) and a
//! NOR-like flash (writes clear bits only, erase sets blocks to 0xFF), both
//! with an optional write budget that simulates a power cut mid-write.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use super::backend::{Disk, FlashDevice, Geometry};

#[derive(Debug)]
struct Inner {
    image: Vec<u8>,
    erase_size: u32,
    /// Bytes that may still be written before the simulated power cut.
    budget: Option<usize>,
    /// Bytes written since the last `reset_counters`.
    written: usize,
    /// Erase operations since the last `reset_counters`.
    erases: usize,
    /// A write was cut short; later syncs fail until the budget is reset.
    tripped: bool,
    /// Writes that tried to set a 0 bit back to 1 without an erase (flash misuse).
    violations: usize,
}

/// Shared simulated storage; clones see the same bytes (a "reboot" keeps the medium).
#[derive(Clone, Debug)]
pub struct SimMedium {
    inner: Arc<Mutex<Inner>>,
}

fn cut() -> io::Error {
    io::Error::other("simulated power cut")
}

impl SimMedium {
    /// A medium of `size` bytes filled with `fill`, with erase blocks of `erase_size`.
    pub fn new(size: usize, erase_size: u32, fill: u8) -> SimMedium {
        SimMedium {
            inner: Arc::new(Mutex::new(Inner {
                image: vec![fill; size],
                erase_size,
                budget: None,
                written: 0,
                erases: 0,
                violations: 0,
                tripped: false,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not hide the medium from the others.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of all bytes.
    pub fn image(&self) -> Vec<u8> {
        self.lock().image.clone()
    }
    /// Replace all bytes (same size).
    pub fn set_image(&self, img: &[u8]) {
        let mut g = self.lock();
        g.image.clear();
        g.image.extend_from_slice(img);
    }
    /// Allow only `n` more written bytes (None = unlimited, i.e. power restored).
    pub fn set_budget(&self, n: Option<usize>) {
        let mut g = self.lock();
        g.budget = n;
        g.tripped = false;
    }
    /// Bytes written since the last reset.
    pub fn written(&self) -> usize {
        self.lock().written
    }
    /// Erases since the last reset.
    pub fn erases(&self) -> usize {
        self.lock().erases
    }
    /// Flash-rule violations (programming a 0 bit to 1).
    pub fn violations(&self) -> usize {
        self.lock().violations
    }
    /// Zero the counters.
    pub fn reset_counters(&self) {
        let mut g = self.lock();
        g.written = 0;
        g.erases = 0;
        g.violations = 0;
    }

    fn write(&self, offset: u64, data: &[u8], flash: bool) -> io::Result<()> {
        let mut g = self.lock();
        let off = usize::try_from(offset).map_err(io::Error::other)?;
        if off + data.len() > g.image.len() {
            return Err(io::Error::other("write past the end of the medium"));
        }
        let (n, interrupted) = match g.budget {
            Some(b) if b < data.len() => (b, true),
            _ => (data.len(), false),
        };
        for (i, &byte) in data[..n].iter().enumerate() {
            let old = g.image[off + i];
            if flash {
                if byte & !old != 0 {
                    g.violations += 1;
                }
                g.image[off + i] = old & byte;
            } else {
                g.image[off + i] = byte;
            }
        }
        g.written += n;
        if let Some(b) = g.budget.as_mut() {
            *b -= n;
        }
        if interrupted {
            g.tripped = true;
            return Err(cut());
        }
        Ok(())
    }
}

/// A simulated disk or file: writes overwrite, unwritten bytes keep stale contents.
#[derive(Clone, Debug)]
pub struct SimDisk(pub SimMedium);

impl Disk for SimDisk {
    fn describe(&self) -> String {
        "sim-disk".into()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let g = self.0.lock();
        buf.fill(0xFF);
        let off = usize::try_from(offset).map_err(io::Error::other)?;
        if off < g.image.len() {
            let n = buf.len().min(g.image.len() - off);
            buf[..n].copy_from_slice(&g.image[off..off + n]);
        }
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write(offset, data, false)
    }
    fn sync(&mut self) -> io::Result<()> {
        if self.0.lock().tripped {
            return Err(cut());
        }
        Ok(())
    }
}

/// A [`SimDisk`] whose first `sync` stalls (a worn card's fdatasync): the daemon's
/// tests prove a slow save never stalls the event loop. Tests only.
#[derive(Clone, Debug)]
pub struct SlowDisk {
    disk: SimDisk,
    stall: Option<std::time::Duration>,
}

impl SlowDisk {
    /// A disk on `medium` whose first sync takes `stall`.
    pub fn new(medium: SimMedium, stall: std::time::Duration) -> SlowDisk {
        SlowDisk {
            disk: SimDisk(medium),
            stall: Some(stall),
        }
    }
}

impl Disk for SlowDisk {
    fn describe(&self) -> String {
        "slow-sim-disk".into()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.disk.read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.disk.write_at(offset, data)
    }
    fn sync(&mut self) -> io::Result<()> {
        if let Some(d) = self.stall.take() {
            std::thread::sleep(d);
        }
        self.disk.sync()
    }
}

/// A simulated NOR flash: program clears bits only, erase works on whole aligned blocks.
#[derive(Clone, Debug)]
pub struct SimFlash(pub SimMedium);

impl FlashDevice for SimFlash {
    fn describe(&self) -> String {
        "sim-flash".into()
    }
    fn geometry(&self) -> Geometry {
        let g = self.0.lock();
        Geometry {
            size: g.image.len() as u64,
            erase_size: g.erase_size,
            write_size: 1,
        }
    }
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let g = self.0.lock();
        let off = usize::try_from(offset).map_err(io::Error::other)?;
        let src = g
            .image
            .get(off..off + buf.len())
            .ok_or_else(|| io::Error::other("read past the end of the flash"))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn erase(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let mut g = self.0.lock();
        let es = u64::from(g.erase_size);
        if !offset.is_multiple_of(es)
            || !len.is_multiple_of(es)
            || offset + len > g.image.len() as u64
        {
            return Err(io::Error::from_raw_os_error(nix::libc::EINVAL));
        }
        if g.budget == Some(0) {
            return Err(cut());
        }
        let (a, b) = (offset as usize, (offset + len) as usize);
        g.image[a..b].fill(0xFF);
        g.erases += 1;
        Ok(())
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write(offset, data, true)
    }
}
