//! U-Boot environment codec: a fixed-size block of CRC-32 (little-endian, over the data)
//! then `key=value` entries separated by NUL, ended by an empty entry and padded.
//! Boards built with `CONFIG_SYS_REDUNDAND_ENVIRONMENT` keep two copies, each with a flag
//! byte after the CRC; the copy with the newer flag wins (the rule U-Boot and fw_setenv use).
//! The A/B boot script reads and writes the plain form with `env import -c` / `env export -cs`.
//! Fuzzed: `fuzz/fuzz_targets/uboot_env.rs`.

/// Why a block cannot be read or written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UbootEnvError {
    /// The block is shorter than its header plus one terminator.
    #[error("a U-Boot environment block of {0} bytes is too short")]
    TooShort(usize),
    /// The CRC does not match: torn write, erased area or not an environment.
    #[error("the U-Boot environment's CRC-32 does not match (stored {stored:08x}, computed {computed:08x}): rewrite the environment")]
    BadCrc {
        /// CRC in the block.
        stored: u32,
        /// CRC of the data.
        computed: u32,
    },
    /// An entry without `=`, with an empty key, or not UTF-8.
    #[error("U-Boot environment entry {0} is not key=value text")]
    BadEntry(usize),
    /// The data runs to the end of the block without the empty terminating entry.
    #[error("the U-Boot environment has no terminator")]
    Unterminated,
    /// A key or value U-Boot would misread.
    #[error("'{0}' cannot go in a U-Boot environment: keys need no '=' or NUL, values no NUL")]
    BadText(String),
    /// Everything together is longer than the block.
    #[error("the variables need {0} bytes, more than the U-Boot environment block holds")]
    TooLong(usize),
    /// Neither redundant copy is valid.
    #[error("both copies of the U-Boot environment are invalid: {0}")]
    NoValidCopy(Box<UbootEnvError>),
}

/// Which on-disk form a block has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// CRC + data (one copy; `env export -c`, mkenvimage).
    Plain,
    /// CRC + flag byte + data (`CONFIG_SYS_REDUNDAND_ENVIRONMENT`, mkenvimage -r).
    Redundant,
}

impl Form {
    fn header(self) -> usize {
        match self {
            Form::Plain => 4,
            Form::Redundant => 5,
        }
    }
}

/// A decoded environment: variables in block order, and the redundant copy's flag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UbootEnv {
    /// Variables, in block order.
    pub vars: Vec<(String, String)>,
    /// Flag byte of a redundant copy (0 in the plain form).
    pub flag: u8,
}

fn crc32(data: &[u8]) -> u32 {
    crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(data)
}

impl UbootEnv {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Set `key` (kept in place if present, else appended).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), UbootEnvError> {
        if key.is_empty() || key.contains(['=', '\0']) {
            return Err(UbootEnvError::BadText(key.to_owned()));
        }
        if value.contains('\0') {
            return Err(UbootEnvError::BadText(value.to_owned()));
        }
        match self.vars.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value.to_owned(),
            None => self.vars.push((key.to_owned(), value.to_owned())),
        }
        Ok(())
    }

    /// Decode one block of the given form (its whole size is the environment size).
    pub fn decode(block: &[u8], form: Form) -> Result<UbootEnv, UbootEnvError> {
        let h = form.header();
        if block.len() < h + 2 {
            return Err(UbootEnvError::TooShort(block.len()));
        }
        let stored = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        let data = &block[h..];
        let computed = crc32(data);
        if stored != computed {
            return Err(UbootEnvError::BadCrc { stored, computed });
        }
        let mut env = UbootEnv {
            vars: Vec::new(),
            flag: if form == Form::Redundant { block[4] } else { 0 },
        };
        let mut rest = data;
        let mut n = 0;
        loop {
            let Some(end) = rest.iter().position(|&b| b == 0) else {
                return Err(UbootEnvError::Unterminated);
            };
            if end == 0 {
                return Ok(env);
            }
            let entry =
                std::str::from_utf8(&rest[..end]).map_err(|_| UbootEnvError::BadEntry(n))?;
            let (k, v) = entry.split_once('=').ok_or(UbootEnvError::BadEntry(n))?;
            if k.is_empty() {
                return Err(UbootEnvError::BadEntry(n));
            }
            // A repeated key: the later one wins, as `env import` does.
            env.vars.retain(|(kk, _)| kk != k);
            env.vars.push((k.to_owned(), v.to_owned()));
            rest = &rest[end + 1..];
            n += 1;
        }
    }

    /// Encode into a block of `size` bytes, padded with NUL like `env export` and mkenvimage.
    pub fn encode(&self, size: usize, form: Form) -> Result<Vec<u8>, UbootEnvError> {
        let h = form.header();
        let mut data = Vec::with_capacity(size);
        for (k, v) in &self.vars {
            data.extend_from_slice(k.as_bytes());
            data.push(b'=');
            data.extend_from_slice(v.as_bytes());
            data.push(0);
        }
        // The empty entry that ends the list (an empty environment is two NULs).
        data.push(0);
        if data.len() == 1 {
            data.push(0);
        }
        if h + data.len() > size {
            return Err(UbootEnvError::TooLong(h + data.len()));
        }
        data.resize(size - h, 0);
        let mut out = crc32(&data).to_le_bytes().to_vec();
        if form == Form::Redundant {
            out.push(self.flag);
        }
        out.extend_from_slice(&data);
        Ok(out)
    }
}

/// Of two redundant copies, the one U-Boot would load: the only valid one, or with both valid
/// the newer flag (a counter that wraps from 255 to 0; equal flags pick the first).
pub fn pick(first: &[u8], second: &[u8]) -> Result<(UbootEnv, usize), UbootEnvError> {
    match (
        UbootEnv::decode(first, Form::Redundant),
        UbootEnv::decode(second, Form::Redundant),
    ) {
        (Ok(a), Err(_)) => Ok((a, 0)),
        (Err(_), Ok(b)) => Ok((b, 1)),
        (Err(e), Err(_)) => Err(UbootEnvError::NoValidCopy(Box::new(e))),
        (Ok(a), Ok(b)) => {
            let second_newer = match (a.flag, b.flag) {
                (255, 0) => true,
                (0, 255) => false,
                (x, y) => y > x,
            };
            Ok(if second_newer { (b, 1) } else { (a, 0) })
        }
    }
}

/// The next redundant write: the copy to overwrite (the older one) and its new flag.
pub fn next_write(current: &UbootEnv, current_index: usize) -> (usize, u8) {
    (1 - current_index, current.flag.wrapping_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `printf 'ORDER=A B\nA_LEFT=3\n' > e.txt; mkenvimage -p 0 -s 32 -o e.bin e.txt` writes
    /// (u-boot-tools 2023.01); `-r` puts the flag byte 1 after the CRC.
    const PLAIN_32: [u8; 32] = [
        0x18, 0xc0, 0x0a, 0x81, b'O', b'R', b'D', b'E', b'R', b'=', b'A', b' ', b'B', 0, b'A',
        b'_', b'L', b'E', b'F', b'T', b'=', b'3', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    fn sample() -> UbootEnv {
        let mut e = UbootEnv::default();
        e.set("ORDER", "A B").unwrap();
        e.set("A_LEFT", "3").unwrap();
        e
    }

    #[test]
    fn plain_round_trip_matches_mkenvimage_bytes() {
        let b = sample().encode(32, Form::Plain).unwrap();
        assert_eq!(b, PLAIN_32);
        let e = UbootEnv::decode(&PLAIN_32, Form::Plain).unwrap();
        assert_eq!(e, sample());
        assert_eq!(e.get("ORDER"), Some("A B"));
        assert_eq!(e.encode(32, Form::Plain).unwrap(), PLAIN_32);
        // mkenvimage's default padding is 0xff: the CRC covers it, the terminator ends the list.
        let mut ff = PLAIN_32;
        ff[24..].fill(0xff);
        ff[..4].copy_from_slice(&[0x6d, 0xc0, 0x6c, 0xc5]);
        assert_eq!(UbootEnv::decode(&ff, Form::Plain).unwrap(), sample());
    }

    #[test]
    fn redundant_flag_byte_is_outside_the_crc() {
        let mut e = sample();
        e.flag = 7;
        let b = e.encode(33, Form::Redundant).unwrap();
        // Same data and CRC as the plain block, with the flag between them.
        assert_eq!(&b[..4], &PLAIN_32[..4]);
        assert_eq!(b[4], 7);
        assert_eq!(&b[5..], &PLAIN_32[4..]);
        assert_eq!(UbootEnv::decode(&b, Form::Redundant).unwrap(), e);
    }

    #[test]
    fn empty_environment_and_values_with_equals_and_newlines() {
        let b = UbootEnv::default().encode(16, Form::Plain).unwrap();
        assert_eq!(&b[4..6], &[0, 0]);
        assert_eq!(UbootEnv::decode(&b, Form::Plain).unwrap().vars, vec![]);
        let mut e = UbootEnv::default();
        e.set("bootcmd", "a=b; echo x\ny").unwrap();
        let d = UbootEnv::decode(&e.encode(64, Form::Plain).unwrap(), Form::Plain).unwrap();
        assert_eq!(d.get("bootcmd"), Some("a=b; echo x\ny"));
    }

    #[test]
    fn refuses_bad_crc_short_unterminated_and_bad_entries() {
        let mut b = PLAIN_32;
        b[10] ^= 1;
        assert!(matches!(
            UbootEnv::decode(&b, Form::Plain),
            Err(UbootEnvError::BadCrc { .. })
        ));
        assert_eq!(
            UbootEnv::decode(&[0; 5], Form::Plain),
            Err(UbootEnvError::TooShort(5))
        );
        // Erased flash: CRC of 0xff data never matches 0xffffffff.
        assert!(UbootEnv::decode(&[0xff; 64], Form::Plain).is_err());
        let with_crc = |data: &[u8]| {
            let mut v = crc32(data).to_le_bytes().to_vec();
            v.extend_from_slice(data);
            v
        };
        assert_eq!(
            UbootEnv::decode(&with_crc(b"A=1\0B=2"), Form::Plain),
            Err(UbootEnvError::Unterminated)
        );
        assert_eq!(
            UbootEnv::decode(&with_crc(b"A=1\0noequals\0\0"), Form::Plain),
            Err(UbootEnvError::BadEntry(1))
        );
        assert_eq!(
            UbootEnv::decode(&with_crc(b"=1\0\0"), Form::Plain),
            Err(UbootEnvError::BadEntry(0))
        );
        assert_eq!(
            UbootEnv::decode(&with_crc(b"A=\xff\0\0"), Form::Plain),
            Err(UbootEnvError::BadEntry(0))
        );
        // Later duplicates win.
        let e = UbootEnv::decode(&with_crc(b"A=1\0A=2\0\0"), Form::Plain).unwrap();
        assert_eq!(e.vars, vec![("A".to_owned(), "2".to_owned())]);
        let mut e = UbootEnv::default();
        assert!(e.set("A=B", "1").is_err());
        assert!(e.set("", "1").is_err());
        assert!(e.set("A", "x\0").is_err());
        e.set("BIG", &"x".repeat(40)).unwrap();
        assert!(matches!(
            e.encode(32, Form::Plain),
            Err(UbootEnvError::TooLong(_))
        ));
    }

    #[test]
    fn redundant_pick_follows_the_flag_counter() {
        let copy = |flag: u8, order: &str| {
            let mut e = UbootEnv::default();
            e.set("ORDER", order).unwrap();
            e.flag = flag;
            e.encode(64, Form::Redundant).unwrap()
        };
        let order = |(e, i): (UbootEnv, usize)| (e.get("ORDER").unwrap().to_owned(), i);
        assert_eq!(
            order(pick(&copy(1, "A B"), &copy(2, "B A")).unwrap()),
            ("B A".into(), 1)
        );
        assert_eq!(
            order(pick(&copy(3, "A B"), &copy(2, "B A")).unwrap()),
            ("A B".into(), 0)
        );
        assert_eq!(
            order(pick(&copy(255, "A B"), &copy(0, "B A")).unwrap()),
            ("B A".into(), 1)
        );
        assert_eq!(
            order(pick(&copy(0, "A B"), &copy(255, "B A")).unwrap()),
            ("A B".into(), 0)
        );
        let mut torn = copy(9, "B A");
        torn[20] ^= 0xff;
        assert_eq!(
            order(pick(&copy(1, "A B"), &torn).unwrap()),
            ("A B".into(), 0)
        );
        assert_eq!(
            order(pick(&torn, &copy(1, "A B")).unwrap()),
            ("A B".into(), 1)
        );
        assert!(matches!(
            pick(&torn, &[0xff; 64]),
            Err(UbootEnvError::NoValidCopy(_))
        ));
        let (cur, i) = pick(&copy(255, "A B"), &copy(254, "B A")).unwrap();
        assert_eq!(next_write(&cur, i), (1, 0));
    }
}
