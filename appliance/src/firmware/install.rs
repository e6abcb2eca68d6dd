//! An install into the other slot, from a file, a raw device or a URL: the whole bundle is
//! verified in a first pass that writes nothing (for a URL, the first download), then read a
//! second time, hashed while it is written, read back and compared, and only then does the
//! slot boot next on trial. A failure in the first pass leaves the disk untouched; one in the
//! second leaves the target slot unbootable and the running slot primary.

use std::io::{BufReader, Read};
use std::time::Instant;

use super::bundle::{self, Policy, Verified};
use super::disk::{self, Disk, Layout};
use super::fetch;
use super::slots::{self, Slot};

/// Where a bundle comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file or a raw device (a USB stick written with dd).
    File(String),
    /// `http://` or `https://`.
    Url(String),
}

impl Source {
    /// A URL when it starts with `http://` or `https://`, else a path.
    pub fn parse(s: &str) -> Source {
        if fetch::is_url(s) {
            Source::Url(s.to_owned())
        } else {
            Source::File(s.to_owned())
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) | Source::Url(p) => f.write_str(p),
        }
    }
}

/// What an install reports while it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A new step, in words ("verifying ...", "writing ...").
    Step(String),
    /// Image bytes done of `total` in the current step.
    Bytes {
        /// Done so far.
        done: u64,
        /// The images' total.
        total: u64,
    },
}

/// A finished install.
#[derive(Clone, Debug, PartialEq)]
pub struct Installed {
    /// The version now in `slot`.
    pub version: String,
    /// The slot written; it boots next, on trial.
    pub slot: Slot,
    /// Image bytes written.
    pub bytes: u64,
    /// Seconds from start to switch.
    pub secs: f64,
}

/// Everything an install needs besides the source.
pub struct Target<'a> {
    /// Boot disk layout.
    pub layout: Layout,
    /// The running slot (the other one is written).
    pub booted: Slot,
    /// Keys, board and version rules.
    pub policy: Policy<'a>,
    /// Download limits for a URL.
    pub fetch: fetch::Options,
    /// Boot the new slot next, on trial (false: stage it; the running slot keeps booting
    /// until `firmware activate`).
    pub activate: bool,
}

/// True for a raw device (a USB stick written with dd): it ends on a sector boundary, so
/// its tail after the signed length is not part of the bundle.
pub fn is_device(path: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

/// The largest bundle that can fit `layout`'s slots: a larger download is refused early.
pub fn max_bundle(layout: &Layout) -> u64 {
    layout.slot_mib * 1024 * 1024 + u64::from(bundle::MAX_MANIFEST) + 1024
}

/// Open `src` for one pass; the bool says whether the bundle must end at its signed length.
fn open(src: &Source, t: &Target<'_>) -> Result<(Box<dyn Read>, bool), String> {
    match src {
        Source::File(p) => {
            let f = std::fs::File::open(p).map_err(|e| format!("{p}: {e}"))?;
            Ok((
                Box::new(BufReader::with_capacity(64 * 1024, f)),
                !is_device(p),
            ))
        }
        Source::Url(u) => {
            let mut o = t.fetch.clone();
            o.max_bytes = o.max_bytes.min(max_bundle(&t.layout));
            let d = fetch::get(u, &o).map_err(|e| e.to_string())?;
            Ok((Box::new(BufReader::with_capacity(64 * 1024, d)), true))
        }
    }
}

/// Shows progress every 5 % of `total`.
struct Meter<'p> {
    total: u64,
    done: u64,
    shown: Option<u64>,
    report: &'p mut dyn FnMut(&Progress),
}

impl Meter<'_> {
    fn add(&mut self, n: usize) {
        self.done += n as u64;
        let pct = self.done * 100 / self.total.max(1);
        if self.shown.is_none_or(|s| pct >= s + 5) || self.done == self.total {
            self.shown = Some(pct);
            (self.report)(&Progress::Bytes {
                done: self.done,
                total: self.total,
            });
        }
    }
}

/// Pass 1: the whole bundle checked as a stream; nothing is written.
pub fn verify(
    src: &Source,
    t: &Target<'_>,
    report: &mut dyn FnMut(&Progress),
) -> Result<Verified, String> {
    report(&Progress::Step(format!("verifying {src}")));
    let (mut r, require_end) = open(src, t)?;
    let head = bundle::read_head(&mut r).map_err(|e| e.to_string())?;
    let v = head.verify(&t.policy).map_err(|e| e.to_string())?;
    let mut m = Meter {
        total: v.manifest.payload_len(),
        done: 0,
        shown: None,
        report,
    };
    let Ok(()) = bundle::check_images(
        &mut r,
        &v.manifest,
        head.payload_offset(),
        require_end,
        |_, chunk| {
            m.add(chunk.len());
            Ok::<(), std::convert::Infallible>(())
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(v)
}

/// Verify, write the other slot, read it back and make it boot next on trial (or stage it,
/// see [`Target::activate`]). Takes the firmware change lock.
pub fn install(
    src: &Source,
    t: &Target<'_>,
    report: &mut dyn FnMut(&Progress),
) -> Result<Installed, String> {
    let _lock = super::change_lock()?;
    let t0 = Instant::now();
    let target = t.booted.other();
    let v = verify(src, t, report)?;
    for img in &v.manifest.images {
        let (_, room) = t
            .layout
            .area(target, &img.name)
            .ok_or_else(|| format!("no area for '{}'", img.name))?;
        if img.size > room {
            return Err(format!(
                "image '{}' ({} bytes) is larger than its slot area ({room} bytes)",
                img.name, img.size
            ));
        }
    }
    if v.manifest.image("kernel").is_none() || v.manifest.image("rootfs").is_none() {
        return Err("a slot needs both a kernel and a rootfs image; this bundle lacks one".into());
    }
    let disk = Disk::open(t.layout.clone())?;
    let mut env = disk.read_env()?;
    slots::begin_install(&mut env, target).map_err(|e| e.to_string())?;
    disk.write_env(&env)?;
    tracing::info!(slot = %target, version = %v.manifest.version, signer = %v.signer, source = %src, "firmware install started");
    let failed = |e: String| {
        format!(
            "{e}; slot {target} is left unbootable, slot {} still boots",
            t.booted
        )
    };
    report(&Progress::Step(format!(
        "writing version {} into slot {target} (signed by '{}')",
        v.manifest.version, v.signer
    )));
    // Pass 2: read again, hashing while writing; a source changed since pass 1 fails here.
    let (mut r, require_end) = open(src, t).map_err(failed)?;
    let head = bundle::read_head(&mut r).map_err(|e| failed(e.to_string()))?;
    let v2 = head.verify(&t.policy).map_err(|e| failed(e.to_string()))?;
    if v2.manifest != v.manifest {
        return Err(failed(format!("{src} changed during the install")));
    }
    let mut m = Meter {
        total: v.manifest.payload_len(),
        done: 0,
        shown: None,
        report,
    };
    let mut writers: Vec<(String, disk::AreaWriter<'_>)> = Vec::new();
    let res = bundle::check_images(
        &mut r,
        &v.manifest,
        head.payload_offset(),
        require_end,
        |img, chunk| {
            if writers.last().is_none_or(|(n, _)| *n != img.name) {
                writers.push((img.name.clone(), disk.area_writer(target, &img.name)?));
            }
            let (_, w) = writers.last_mut().ok_or("no writer")?;
            w.write(chunk)?;
            m.add(chunk.len());
            Ok::<(), String>(())
        },
    );
    res.map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(failed)?;
    let mut sectors = std::collections::HashMap::new();
    for (name, w) in writers {
        sectors.insert(name, w.finish().map_err(failed)?);
    }
    disk.sync().map_err(failed)?;
    for img in &v.manifest.images {
        let got = disk
            .hash_area(target, &img.name, img.size)
            .map_err(failed)?;
        if got != img.sha256 {
            return Err(failed(format!(
                "read-back of '{}' in slot {target} does not match (SHA-256 {got}): the medium may be failing",
                img.name
            )));
        }
    }
    let (Some(&k), Some(&rf)) = (sectors.get("kernel"), sectors.get("rootfs")) else {
        return Err(failed("the kernel or rootfs was not written".into()));
    };
    if t.activate {
        slots::finish_install(&mut env, target, &v.manifest.version, k, rf)
    } else {
        slots::stage_install(&mut env, target, &v.manifest.version, k, rf)
    }
    .map_err(|e| failed(e.to_string()))?;
    disk.write_env(&env).map_err(failed)?;
    if t.activate {
        tracing::info!(slot = %target, version = %v.manifest.version, source = %src, "firmware installed; boots next on trial");
    } else {
        tracing::info!(slot = %target, version = %v.manifest.version, source = %src, "firmware staged; the running slot keeps booting");
    }
    Ok(Installed {
        version: v.manifest.version.clone(),
        slot: target,
        bytes: v.manifest.payload_len(),
        secs: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
#[path = "install_tests.rs"]
pub(crate) mod tests_support;
