//! The update bundle: one file holding a signed manifest and the slot images.
//!
//! Layout (integers little-endian):
//! ```text
//! 0   magic "SLBFWBDL"            8 bytes
//! 8   manifest length M           u32, 1..=MAX_MANIFEST
//! 12  signature length S          u32, 0 (unsigned) or 64 (Ed25519)
//! 16  manifest                    M bytes, UTF-8 TOML (see Manifest)
//! ..  signature                   S bytes, Ed25519 over SIGNING_CONTEXT || manifest
//! ..  images                      in manifest order, exactly the sizes it lists, nothing after
//! ```
//! The signature covers the manifest, the manifest holds each image's SHA-256 and size, so one
//! flipped byte anywhere fails either the signature, a hash, or the framing. Everything is read
//! and checked in order, as a stream, before anything is written ([`read_head`], then
//! [`Head::verify`], then [`check_images`]); the parser trusts no manifest field before the
//! signature has been verified.

use std::io::Read;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::keys::{to_hex, Keyring};
use super::version::Version;

/// First bytes of every bundle.
pub const MAGIC: &[u8; 8] = b"SLBFWBDL";
/// Largest manifest accepted (a handful of images needs well under 1 KiB).
pub const MAX_MANIFEST: u32 = 16 * 1024;
/// Ed25519 signature length.
pub const SIG_LEN: u32 = 64;
/// Domain separation: a signature made for something else never verifies as a bundle.
pub const SIGNING_CONTEXT: &[u8] = b"sip-lb-appliance firmware bundle v1\0";
/// Manifest format written and accepted.
pub const FORMAT: u32 = 1;
/// Most images in one bundle.
pub const MAX_IMAGES: usize = 8;
/// Largest single image (slot partitions are far smaller).
pub const MAX_IMAGE_SIZE: u64 = 1 << 30;
/// Header length before the manifest.
pub const HEADER_LEN: usize = 16;

/// Why a bundle is refused. Nothing has been written when one of these is returned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    /// Not a bundle at all.
    #[error("not a firmware bundle (bad magic): build bundles with tests/image/build-bundle.sh or `appliance firmware bundle`")]
    BadMagic,
    /// The file ends before a part its header or manifest announces.
    #[error("the bundle is truncated: {what} needs {expected} bytes, the file has {got}; download it again")]
    Truncated {
        /// Which part is cut short.
        what: String,
        /// Bytes the part needs.
        expected: u64,
        /// Bytes there were.
        got: u64,
    },
    /// Header fields out of range.
    #[error("malformed bundle header: {0}")]
    Header(String),
    /// No signature at all.
    #[error("the bundle is unsigned: only bundles signed with a key in {keyring} are installed")]
    Unsigned {
        /// Keyring path shown to the operator.
        keyring: String,
    },
    /// A signature that no trusted key made.
    #[error("bad signature: the bundle was not signed by any of the {keys} trusted key(s), or it was altered after signing")]
    BadSignature {
        /// How many keys were tried.
        keys: usize,
    },
    /// The signed manifest does not parse (a signing-side bug or an unknown format).
    #[error("the signed manifest is invalid: {0}")]
    Manifest(String),
    /// Built for another board.
    #[error("the bundle is for board '{bundle}', this box is '{board}': use the bundle built for '{board}'")]
    WrongBoard {
        /// Compatible string in the bundle.
        bundle: String,
        /// This board's name.
        board: String,
    },
    /// Older than what runs.
    #[error("downgrade refused: the bundle is version {bundle}, this box runs {running}; add --force to install an older version")]
    Downgrade {
        /// Version in the bundle.
        bundle: String,
        /// Running version.
        running: String,
    },
    /// An image's bytes differ from the signed hash.
    #[error("image '{image}' is corrupt or tampered with: SHA-256 {got}, the signed manifest says {expected}")]
    HashMismatch {
        /// Image name.
        image: String,
        /// Hash in the manifest.
        expected: String,
        /// Hash of the bytes read.
        got: String,
    },
    /// Bytes after the last image.
    #[error("the bundle has {extra} or more bytes after its last image; it was altered or badly assembled")]
    TrailingData {
        /// At least this many extra bytes.
        extra: u64,
    },
    /// Reading the bundle failed.
    #[error("reading the bundle failed: {0}")]
    Io(String),
}

/// One image named by the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageEntry {
    /// What the image is for in a slot: `kernel` or `rootfs`.
    pub name: String,
    /// Exact length in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// The signed description of a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format, [`FORMAT`].
    pub format: u32,
    /// Firmware version the images carry.
    pub version: String,
    /// Board name (`name` in board.toml) the images are built for.
    pub compatible: String,
    /// Free text for people (build host, date); not interpreted.
    #[serde(default)]
    pub description: String,
    /// The images, in payload order.
    #[serde(rename = "image")]
    pub images: Vec<ImageEntry>,
}

/// Image names a slot understands.
pub const IMAGE_NAMES: &[&str] = &["kernel", "rootfs"];

impl Manifest {
    /// Parse and check the manifest's own rules (names, sizes, hashes, version syntax).
    pub fn parse(bytes: &[u8]) -> Result<Manifest, BundleError> {
        let text =
            std::str::from_utf8(bytes).map_err(|_| BundleError::Manifest("not UTF-8".into()))?;
        let m: Manifest = toml::from_str(text)
            .map_err(|e| BundleError::Manifest(e.to_string().trim_end().to_owned()))?;
        m.check().map_err(BundleError::Manifest)?;
        Ok(m)
    }

    /// Every rule a manifest must meet; the first broken one.
    pub fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "manifest format {} is not {FORMAT}; this firmware is too old for the bundle",
                self.format
            ));
        }
        Version::parse(&self.version)?;
        if self.compatible.is_empty() {
            return Err("compatible (the board name) is empty".into());
        }
        if self.images.is_empty() || self.images.len() > MAX_IMAGES {
            return Err(format!(
                "a bundle holds 1 to {MAX_IMAGES} images, this one {}",
                self.images.len()
            ));
        }
        for (i, img) in self.images.iter().enumerate() {
            if !IMAGE_NAMES.contains(&img.name.as_str()) {
                return Err(format!(
                    "image name '{}' is not one of {}",
                    img.name,
                    IMAGE_NAMES.join(", ")
                ));
            }
            if self.images[..i].iter().any(|o| o.name == img.name) {
                return Err(format!("image '{}' is listed twice", img.name));
            }
            if img.size == 0 || img.size > MAX_IMAGE_SIZE {
                return Err(format!(
                    "image '{}' size {} is not 1..={MAX_IMAGE_SIZE}",
                    img.name, img.size
                ));
            }
            if img.sha256.len() != 64
                || !img
                    .sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return Err(format!(
                    "image '{}' sha256 is not 64 lowercase hex digits",
                    img.name
                ));
            }
        }
        Ok(())
    }

    /// The manifest's version (checked by [`Manifest::check`]).
    pub fn version(&self) -> Version {
        Version::parse(&self.version).unwrap_or(Version {
            major: 0,
            minor: 0,
            patch: 0,
        })
    }

    /// Total payload length.
    pub fn payload_len(&self) -> u64 {
        self.images.iter().map(|i| i.size).sum()
    }

    /// The image called `name`.
    pub fn image(&self, name: &str) -> Option<&ImageEntry> {
        self.images.iter().find(|i| i.name == name)
    }
}

/// Header, raw manifest and signature, read but not yet trusted.
#[derive(Clone, Debug)]
pub struct Head {
    /// Manifest bytes exactly as signed.
    pub manifest_bytes: Vec<u8>,
    /// The signature, if the bundle carries one.
    pub signature: Option<[u8; 64]>,
}

/// What a bundle is checked against.
#[derive(Clone, Debug)]
pub struct Policy<'a> {
    /// Trusted keys.
    pub keyring: &'a Keyring,
    /// Keyring path for messages.
    pub keyring_path: &'a str,
    /// This board's name.
    pub board: &'a str,
    /// Running firmware version.
    pub running: Version,
    /// Allow a downgrade.
    pub force: bool,
}

/// A manifest whose signature verified and which fits this box.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The manifest.
    pub manifest: Manifest,
    /// Name of the key that signed it.
    pub signer: String,
}

fn read_full<R: Read>(
    r: &mut R,
    buf: &mut [u8],
    what: &str,
    before: u64,
) -> Result<(), BundleError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(BundleError::Truncated {
                    what: what.to_owned(),
                    expected: before + buf.len() as u64,
                    got: before + got as u64,
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(BundleError::Io(e.to_string())),
        }
    }
    Ok(())
}

/// Read the header, manifest and signature from the start of a bundle.
pub fn read_head<R: Read>(r: &mut R) -> Result<Head, BundleError> {
    let mut hdr = [0u8; HEADER_LEN];
    read_full(r, &mut hdr, "the header", 0)?;
    if &hdr[..8] != MAGIC {
        return Err(BundleError::BadMagic);
    }
    let mlen = u32::from_le_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]);
    let slen = u32::from_le_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]);
    if mlen == 0 || mlen > MAX_MANIFEST {
        return Err(BundleError::Header(format!(
            "manifest length {mlen} is not 1..={MAX_MANIFEST}"
        )));
    }
    if slen != 0 && slen != SIG_LEN {
        return Err(BundleError::Header(format!(
            "signature length {slen} is neither 0 nor {SIG_LEN}"
        )));
    }
    let mut manifest_bytes = vec![0u8; mlen as usize];
    read_full(r, &mut manifest_bytes, "the manifest", HEADER_LEN as u64)?;
    let signature = if slen == SIG_LEN {
        let mut s = [0u8; 64];
        read_full(
            r,
            &mut s,
            "the signature",
            HEADER_LEN as u64 + u64::from(mlen),
        )?;
        Some(s)
    } else {
        None
    };
    Ok(Head {
        manifest_bytes,
        signature,
    })
}

/// The bytes a signature covers.
pub fn signed_message(manifest: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_CONTEXT.len() + manifest.len());
    m.extend_from_slice(SIGNING_CONTEXT);
    m.extend_from_slice(manifest);
    m
}

impl Head {
    /// Offset of the first image.
    pub fn payload_offset(&self) -> u64 {
        HEADER_LEN as u64
            + self.manifest_bytes.len() as u64
            + if self.signature.is_some() { 64 } else { 0 }
    }

    /// Check the signature first, then parse the manifest and check board and version.
    pub fn verify(&self, policy: &Policy<'_>) -> Result<Verified, BundleError> {
        let sig = self
            .signature
            .as_ref()
            .ok_or_else(|| BundleError::Unsigned {
                keyring: policy.keyring_path.to_owned(),
            })?;
        let signer = policy
            .keyring
            .verify(&signed_message(&self.manifest_bytes), sig)
            .ok_or(BundleError::BadSignature {
                keys: policy.keyring.keys.len(),
            })?
            .to_owned();
        let manifest = Manifest::parse(&self.manifest_bytes)?;
        if manifest.compatible != policy.board {
            return Err(BundleError::WrongBoard {
                bundle: manifest.compatible,
                board: policy.board.to_owned(),
            });
        }
        let v = manifest.version();
        if v.is_downgrade_from(&policy.running) && !policy.force {
            return Err(BundleError::Downgrade {
                bundle: v.to_string(),
                running: policy.running.to_string(),
            });
        }
        Ok(Verified { manifest, signer })
    }
}

/// Stream each image through `sink(name, chunk)` while hashing it; then require the end of
/// the input. `sink` may write (install) or do nothing (verify only); the hashes are only
/// known at the end, so an installer must not switch slots before this returns `Ok`.
pub fn check_images<R: Read, E>(
    r: &mut R,
    manifest: &Manifest,
    payload_offset: u64,
    require_end: bool,
    mut sink: impl FnMut(&ImageEntry, &[u8]) -> Result<(), E>,
) -> Result<Result<(), E>, BundleError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut offset = payload_offset;
    for img in &manifest.images {
        let mut h = Sha256::new();
        let mut left = img.size;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            read_full(r, &mut buf[..n], &format!("image '{}'", img.name), offset)?;
            h.update(&buf[..n]);
            if let Err(e) = sink(img, &buf[..n]) {
                return Ok(Err(e));
            }
            offset += n as u64;
            left -= n as u64;
        }
        let got = to_hex(&h.finalize());
        if got != img.sha256 {
            return Err(BundleError::HashMismatch {
                image: img.name.clone(),
                expected: img.sha256.clone(),
                got,
            });
        }
    }
    if !require_end {
        return Ok(Ok(()));
    }
    let mut probe = [0u8; 4096];
    let mut extra = 0u64;
    loop {
        match r.read(&mut probe) {
            Ok(0) => break,
            Ok(n) => {
                extra += n as u64;
                if extra >= 4096 {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(BundleError::Io(e.to_string())),
        }
    }
    if extra > 0 {
        return Err(BundleError::TrailingData { extra });
    }
    Ok(Ok(()))
}

/// Verify a whole bundle read as a stream: header, signature, manifest, board, version,
/// every image hash and the exact length. Writes nothing.
pub fn verify_stream<R: Read>(r: &mut R, policy: &Policy<'_>) -> Result<Verified, BundleError> {
    verify_stream_opts(r, policy, true)
}

/// [`verify_stream`]; `require_end` false accepts anything after the signed length (a raw
/// device holding the bundle).
pub fn verify_stream_opts<R: Read>(
    r: &mut R,
    policy: &Policy<'_>,
    require_end: bool,
) -> Result<Verified, BundleError> {
    let head = read_head(r)?;
    let v = head.verify(policy)?;
    let Ok(()) = check_images(
        r,
        &v.manifest,
        head.payload_offset(),
        require_end,
        |_, _| Ok::<(), std::convert::Infallible>(()),
    )?;
    Ok(v)
}

/// [`verify_stream`] over a bundle held in memory (tests, fuzzing).
pub fn verify_bytes(mut bytes: &[u8], policy: &Policy<'_>) -> Result<Verified, BundleError> {
    verify_stream(&mut bytes, policy)
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// Build a bundle from images (name, bytes); signs with `key` unless it is `None`.
pub fn build(
    version: &str,
    compatible: &str,
    description: &str,
    images: &[(&str, &[u8])],
    key: Option<&ed25519_dalek::SigningKey>,
) -> Result<Vec<u8>, String> {
    use ed25519_dalek::Signer;
    let manifest = Manifest {
        format: FORMAT,
        version: version.to_owned(),
        compatible: compatible.to_owned(),
        description: description.to_owned(),
        images: images
            .iter()
            .map(|(name, b)| ImageEntry {
                name: (*name).to_owned(),
                size: b.len() as u64,
                sha256: sha256_hex(b),
            })
            .collect(),
    };
    manifest.check()?;
    let text = toml::to_string(&manifest).map_err(|e| e.to_string())?;
    if text.len() > MAX_MANIFEST as usize {
        return Err("manifest too large".into());
    }
    let mut out =
        Vec::with_capacity(HEADER_LEN + text.len() + 64 + manifest.payload_len() as usize);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(&(if key.is_some() { SIG_LEN } else { 0 }).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    if let Some(k) = key {
        out.extend_from_slice(&k.sign(&signed_message(text.as_bytes())).to_bytes());
    }
    for (_, b) in images {
        out.extend_from_slice(b);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firmware::keys::key_files;

    fn ring(seed: u8) -> Keyring {
        Keyring::parse(&key_files(&[seed; 32], "test").1, "ring").unwrap()
    }
    fn sk(seed: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
    }
    fn policy(ring: &Keyring) -> Policy<'_> {
        Policy {
            keyring: ring,
            keyring_path: "/etc/appliance/firmware-keys",
            board: "qemu-x86_64",
            running: Version::parse("0.2.0").unwrap(),
            force: false,
        }
    }
    fn kernel() -> Vec<u8> {
        (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect()
    }
    fn good(version: &str) -> Vec<u8> {
        build(
            version,
            "qemu-x86_64",
            "t",
            &[("kernel", &kernel()), ("rootfs", b"root!")],
            Some(&sk(1)),
        )
        .unwrap()
    }

    #[test]
    fn good_bundle_verifies_and_names_signer() {
        let r = ring(1);
        let v = verify_bytes(&good("0.3.0"), &policy(&r)).unwrap();
        assert_eq!(v.signer, "test");
        assert_eq!(v.manifest.version, "0.3.0");
        assert_eq!(v.manifest.image("rootfs").unwrap().size, 5);
        assert_eq!(
            v.manifest.image("kernel").unwrap().sha256,
            sha256_hex(&kernel())
        );
        // Same version again is a reinstall, allowed.
        verify_bytes(&good("0.2.0"), &policy(&r)).unwrap();
    }

    #[test]
    fn every_single_flipped_byte_is_refused() {
        let r = ring(1);
        let b = build(
            "0.3.0",
            "qemu-x86_64",
            "",
            &[("kernel", b"kkkkkkkk"), ("rootfs", b"rrrrrrr")],
            Some(&sk(1)),
        )
        .unwrap();
        // One bit per byte, a different bit each time (every verify costs a signature check).
        for i in 0..b.len() {
            let bit = 1u8 << (i % 8);
            let mut t = b.clone();
            t[i] ^= bit;
            assert!(
                verify_bytes(&t, &policy(&r)).is_err(),
                "byte {i} bit {bit:#x} accepted"
            );
        }
    }

    #[test]
    fn flips_in_each_part_give_the_matching_reason() {
        let r = ring(1);
        let b = good("0.3.0");
        let flip = |i: usize| {
            let mut t = b.clone();
            t[i] ^= 1;
            verify_bytes(&t, &policy(&r)).unwrap_err()
        };
        assert_eq!(flip(0), BundleError::BadMagic);
        assert!(matches!(
            flip(HEADER_LEN + 3),
            BundleError::BadSignature { keys: 1 }
        ));
        let mut r2 = &b[..];
        let head = read_head(&mut r2).unwrap();
        let sig_at = HEADER_LEN + head.manifest_bytes.len();
        assert!(matches!(flip(sig_at + 5), BundleError::BadSignature { .. }));
        let e = flip(head.payload_offset() as usize + 100);
        assert!(
            matches!(&e, BundleError::HashMismatch { image, .. } if image == "kernel"),
            "{e}"
        );
        let e = flip(b.len() - 1);
        assert!(
            matches!(&e, BundleError::HashMismatch { image, .. } if image == "rootfs"),
            "{e}"
        );
        assert!(e.to_string().contains("corrupt or tampered"));
    }

    #[test]
    fn truncated_anywhere_is_refused_as_truncated() {
        let r = ring(1);
        let b = good("0.3.0");
        for cut in [
            0,
            3,
            HEADER_LEN,
            HEADER_LEN + 10,
            b.len() - 70_010,
            b.len() - 1,
        ] {
            let e = verify_bytes(&b[..cut], &policy(&r)).unwrap_err();
            assert!(matches!(e, BundleError::Truncated { .. }), "cut {cut}: {e}");
            assert!(e.to_string().contains("truncated"), "{e}");
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(
            verify_bytes(&long, &policy(&r)).unwrap_err(),
            BundleError::TrailingData { extra: 1 }
        );
    }

    #[test]
    fn unsigned_wrong_key_other_board_and_downgrade() {
        let r = ring(1);
        let unsigned = build("0.3.0", "qemu-x86_64", "", &[("kernel", b"k")], None).unwrap();
        let e = verify_bytes(&unsigned, &policy(&r)).unwrap_err();
        assert!(matches!(e, BundleError::Unsigned { .. }));
        assert!(e.to_string().contains("unsigned"), "{e}");

        let other = build(
            "0.3.0",
            "qemu-x86_64",
            "",
            &[("kernel", b"k")],
            Some(&sk(2)),
        )
        .unwrap();
        assert!(matches!(
            verify_bytes(&other, &policy(&r)).unwrap_err(),
            BundleError::BadSignature { .. }
        ));
        // An empty keyring trusts nothing.
        let empty = Keyring::default();
        assert!(matches!(
            verify_bytes(&good("0.3.0"), &policy(&empty)).unwrap_err(),
            BundleError::BadSignature { keys: 0 }
        ));

        let arm = build(
            "0.3.0",
            "qemu-aarch64-virt",
            "",
            &[("kernel", b"k")],
            Some(&sk(1)),
        )
        .unwrap();
        let e = verify_bytes(&arm, &policy(&r)).unwrap_err();
        assert!(
            e.to_string()
                .contains("for board 'qemu-aarch64-virt', this box is 'qemu-x86_64'"),
            "{e}"
        );

        let old = good("0.1.9");
        let e = verify_bytes(&old, &policy(&r)).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        let mut forced = policy(&r);
        forced.force = true;
        verify_bytes(&old, &forced).unwrap();
    }

    #[test]
    fn header_and_manifest_rules() {
        let r = ring(1);
        let mut b = good("0.3.0");
        b[8..12].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            verify_bytes(&b, &policy(&r)).unwrap_err(),
            BundleError::Header(_)
        ));
        let mut b = good("0.3.0");
        b[8..12].copy_from_slice(&(MAX_MANIFEST + 1).to_le_bytes());
        assert!(matches!(
            verify_bytes(&b, &policy(&r)).unwrap_err(),
            BundleError::Header(_)
        ));
        let mut b = good("0.3.0");
        b[12..16].copy_from_slice(&32u32.to_le_bytes());
        assert!(matches!(
            verify_bytes(&b, &policy(&r)).unwrap_err(),
            BundleError::Header(_)
        ));

        for (images, why) in [
            (vec![("bootloader", &b"x"[..])], "not one of"),
            (vec![("kernel", &b"x"[..]), ("kernel", &b"y"[..])], "twice"),
            (vec![("kernel", &b""[..])], "size 0"),
            (vec![], "1 to 8 images"),
        ] {
            let e = build("0.3.0", "b", "", &images, None).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        assert!(build("0.3", "b", "", &[("kernel", b"x")], None)
            .unwrap_err()
            .contains("MAJOR"));

        // A manifest that is signed but breaks a rule is still refused after the signature.
        let text = "format = 2\nversion = \"0.3.0\"\ncompatible = \"qemu-x86_64\"\n[[image]]\nname = \"kernel\"\nsize = 1\nsha256 = \"00\"\n";
        let e = signed_raw(text, b"k");
        assert!(
            matches!(verify_bytes(&e, &policy(&r)).unwrap_err(), BundleError::Manifest(m) if m.contains("format 2"))
        );
        let e = signed_raw("version = 1", b"k");
        assert!(matches!(
            verify_bytes(&e, &policy(&r)).unwrap_err(),
            BundleError::Manifest(_)
        ));
    }

    fn signed_raw(manifest: &str, payload: &[u8]) -> Vec<u8> {
        use ed25519_dalek::Signer;
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
        out.extend_from_slice(&SIG_LEN.to_le_bytes());
        out.extend_from_slice(manifest.as_bytes());
        out.extend_from_slice(&sk(1).sign(&signed_message(manifest.as_bytes())).to_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn sink_error_stops_the_stream_and_sees_only_verified_order() {
        let b = good("0.3.0");
        let mut r = &b[..];
        let head = read_head(&mut r).unwrap();
        let m = Manifest::parse(&head.manifest_bytes).unwrap();
        let mut seen = 0usize;
        let out = check_images(&mut r, &m, head.payload_offset(), true, |img, chunk| {
            assert_eq!(img.name, "kernel");
            seen += chunk.len();
            Err("disk full")
        })
        .unwrap();
        assert_eq!(out, Err("disk full"));
        assert_eq!(seen, 64 * 1024);
    }
}
