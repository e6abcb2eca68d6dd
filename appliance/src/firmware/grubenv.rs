//! GRUB environment block codec: exactly 1024 bytes, `# GRUB Environment Block\n`, then
//! `KEY=VALUE\n` lines, padded with `#`. GRUB's `load_env` / `save_env` read and write the
//! same block, so boot order and try counters pass between the bootloader and the box.

/// Size of a GRUB environment block.
pub const BLOCK_LEN: usize = 1024;
/// The block's first line.
pub const HEADER: &str = "# GRUB Environment Block\n";

/// Why a block cannot be read or written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    /// Wrong length or header: not an environment block.
    #[error("not a GRUB environment block ({0}); rebuild the boot disk or restore the block")]
    NotABlock(String),
    /// A key or value GRUB would escape or misread.
    #[error("'{0}' cannot go in the GRUB environment: keys are [A-Za-z0-9_], values printable ASCII without '\\'")]
    BadText(String),
    /// Everything together is longer than the block.
    #[error("the variables need {0} bytes, more than a GRUB environment block holds")]
    TooLong(usize),
}

/// Variables of an environment block, in block order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Env {
    vars: Vec<(String, String)>,
}

fn key_ok(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn value_ok(v: &str) -> bool {
    v.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\')
}

impl Env {
    /// Decode a block. Lines GRUB would skip (comments, padding) are skipped.
    pub fn decode(block: &[u8]) -> Result<Env, EnvError> {
        if block.len() != BLOCK_LEN {
            return Err(EnvError::NotABlock(format!(
                "{} bytes, not {BLOCK_LEN}",
                block.len()
            )));
        }
        if !block.starts_with(HEADER.as_bytes()) {
            return Err(EnvError::NotABlock("missing header".into()));
        }
        let mut env = Env::default();
        for line in block[HEADER.len()..].split(|&b| b == b'\n') {
            if line.first().is_none_or(|&b| b == b'#') {
                continue;
            }
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            if let Some((k, v)) = line.split_once('=') {
                if key_ok(k) && value_ok(v) {
                    env.vars.retain(|(kk, _)| kk != k);
                    env.vars.push((k.to_owned(), v.to_owned()));
                }
            }
        }
        Ok(env)
    }

    /// Encode into a block.
    pub fn encode(&self) -> Result<[u8; BLOCK_LEN], EnvError> {
        let mut text = String::from(HEADER);
        for (k, v) in &self.vars {
            text.push_str(k);
            text.push('=');
            text.push_str(v);
            text.push('\n');
        }
        if text.len() > BLOCK_LEN {
            return Err(EnvError::TooLong(text.len()));
        }
        let mut out = [b'#'; BLOCK_LEN];
        out[..text.len()].copy_from_slice(text.as_bytes());
        Ok(out)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Set `key` (kept in place if present, else appended).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), EnvError> {
        if !key_ok(key) {
            return Err(EnvError::BadText(key.to_owned()));
        }
        if !value_ok(value) {
            return Err(EnvError::BadText(value.to_owned()));
        }
        match self.vars.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value.to_owned(),
            None => self.vars.push((key.to_owned(), value.to_owned())),
        }
        Ok(())
    }

    /// All variables in order.
    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_matches_grub_editenv_layout() {
        let mut e = Env::default();
        e.set("ORDER", "A B").unwrap();
        e.set("A_OK", "1").unwrap();
        e.set("ORDER", "B A").unwrap();
        let b = e.encode().unwrap();
        // What `grub-editenv F create; grub-editenv F set ORDER="B A" A_OK=1` writes.
        let mut want = b"# GRUB Environment Block\nORDER=B A\nA_OK=1\n".to_vec();
        want.resize(BLOCK_LEN, b'#');
        assert_eq!(&b[..], &want[..]);
        assert_eq!(Env::decode(&b).unwrap(), e);
        assert_eq!(e.get("ORDER"), Some("B A"));
    }

    #[test]
    fn refuses_non_blocks_bad_text_and_overflow() {
        assert!(matches!(
            Env::decode(&[b'#'; 1023]),
            Err(EnvError::NotABlock(_))
        ));
        assert!(matches!(
            Env::decode(&[0xff; BLOCK_LEN]),
            Err(EnvError::NotABlock(_))
        ));
        let mut e = Env::default();
        assert!(e.set("A-B", "1").is_err());
        assert!(e.set("A", "x\ny").is_err());
        assert!(e.set("A", "x\\y").is_err());
        e.set("BIG", &"x".repeat(1000)).unwrap();
        assert!(matches!(e.encode(), Err(EnvError::TooLong(_))));
        // Garbage lines inside a valid block are skipped, like GRUB does.
        let mut b = [b'#'; BLOCK_LEN];
        let t = b"# GRUB Environment Block\n\xff\xfe=1\nno_equals\nK=v\n";
        b[..t.len()].copy_from_slice(t);
        assert_eq!(
            Env::decode(&b).unwrap().vars(),
            &[("K".to_owned(), "v".to_owned())]
        );
    }
}
