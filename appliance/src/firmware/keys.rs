//! Ed25519 keys for bundles: the box's keyring of trusted public keys and the builder's
//! secret signing key, both plain text files with hex keys.
//!
//! Keyring (`/etc/appliance/firmware-keys`, baked into the image): one key a line,
//! `<64 hex digits> [name]`; `#` starts a comment. Signing key: one line of 64 hex digits
//! (the 32-byte seed), other lines comments.

use ed25519_dalek::{Signature, SigningKey, Verifier, VerifyingKey};

/// Where the image keeps the public keys it trusts.
pub const KEYRING_PATH: &str = "/etc/appliance/firmware-keys";

/// A trusted public key with the name the keyring gives it.
#[derive(Clone, Debug)]
pub struct TrustedKey {
    /// Name from the keyring line (or the key's first hex digits).
    pub name: String,
    /// The public key.
    pub key: VerifyingKey,
}

/// The public keys a box accepts bundles from.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    /// Keys in file order.
    pub keys: Vec<TrustedKey>,
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of an exact-length hex string (either case).
pub fn from_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let nib = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = nib(s[2 * i])? << 4 | nib(s[2 * i + 1])?;
    }
    Some(out)
}

impl Keyring {
    /// Parse keyring text; every bad line is an error naming its line number.
    pub fn parse(text: &str, origin: &str) -> Result<Keyring, String> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (hex, name) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let bad = |why: &str| {
                format!(
                    "{origin} line {}: {why}; each line is a public key as 64 hex digits and an optional name",
                    n + 1
                )
            };
            let bytes = from_hex::<32>(hex).ok_or_else(|| bad("not 64 hex digits"))?;
            let key = VerifyingKey::from_bytes(&bytes)
                .map_err(|_| bad("not a valid Ed25519 public key"))?;
            let name = match name.trim() {
                "" => hex[..16].to_owned(),
                n => n.to_owned(),
            };
            keys.push(TrustedKey { name, key });
        }
        Ok(Keyring { keys })
    }

    /// Read the keyring file.
    pub fn load(path: &std::path::Path) -> Result<Keyring, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read the firmware keyring {}: {e}; the image must carry the public key(s) bundles are signed with",
                path.display()
            )
        })?;
        Keyring::parse(&text, &path.display().to_string())
    }

    /// The name of the first key whose signature over `msg` verifies.
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> Option<&str> {
        let sig = Signature::from_bytes(sig);
        self.keys
            .iter()
            .find(|k| k.key.verify(msg, &sig).is_ok())
            .map(|k| k.name.as_str())
    }
}

/// Parse a secret signing key file (the 32-byte seed as 64 hex digits).
pub fn parse_signing_key(text: &str, origin: &str) -> Result<SigningKey, String> {
    let mut seeds = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty());
    let line = seeds.next().ok_or_else(|| {
        format!("{origin}: no key in the file; make one with `appliance firmware keygen NAME`")
    })?;
    if seeds.next().is_some() {
        return Err(format!(
            "{origin}: more than one key line; a signing key file holds one key"
        ));
    }
    let seed = from_hex::<32>(line)
        .ok_or_else(|| format!("{origin}: the key is not 64 hex digits; make one with `appliance firmware keygen NAME`"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Text of a new signing key file and its public keyring line, from a 32-byte seed.
pub fn key_files(seed: &[u8; 32], name: &str) -> (String, String) {
    let sk = SigningKey::from_bytes(seed);
    let secret = format!(
        "# sip-lb appliance firmware signing key '{name}' (SECRET: keep it off the boxes and out of version control)\n{}\n",
        to_hex(seed)
    );
    let public = format!("{} {name}\n", to_hex(sk.verifying_key().as_bytes()));
    (secret, public)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer;

    #[test]
    fn hex_round_trip_and_rejects() {
        let b = [0u8, 1, 0xab, 0xff];
        assert_eq!(to_hex(&b), "0001abff");
        assert_eq!(from_hex::<4>("0001ABff"), Some(b));
        assert_eq!(from_hex::<4>("0001abf"), None);
        assert_eq!(from_hex::<4>("0001abfg"), None);
    }

    #[test]
    fn keyring_parses_names_comments_and_refuses_bad_lines() {
        let (secret, public) = key_files(&[7; 32], "release-2026");
        let ring = Keyring::parse(&format!("# trusted\n\n{public}"), "ring").unwrap();
        assert_eq!(ring.keys.len(), 1);
        assert_eq!(ring.keys[0].name, "release-2026");
        let sk = parse_signing_key(&secret, "k").unwrap();
        let sig = sk.sign(b"msg").to_bytes();
        assert_eq!(ring.verify(b"msg", &sig), Some("release-2026"));
        assert_eq!(ring.verify(b"msh", &sig), None);
        let e = Keyring::parse("# x\nabcd\n", "ring").unwrap_err();
        assert!(e.starts_with("ring line 2: not 64 hex digits"), "{e}");
        assert!(parse_signing_key("# nothing\n", "k")
            .unwrap_err()
            .contains("keygen"));
        assert!(parse_signing_key(&format!("{secret}{secret}"), "k").is_err());
    }
}
