//! Firmware version numbers: `MAJOR.MINOR.PATCH`, compared numerically (the downgrade rule).

use std::cmp::Ordering;
use std::fmt;

/// A firmware version, `MAJOR.MINOR.PATCH` with decimal parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Incompatible changes.
    pub major: u32,
    /// New features.
    pub minor: u32,
    /// Fixes.
    pub patch: u32,
}

impl Version {
    /// Parse `MAJOR.MINOR.PATCH` (decimal, no sign, no suffix).
    pub fn parse(s: &str) -> Result<Version, String> {
        let bad =
            || format!("version '{s}' is not MAJOR.MINOR.PATCH with decimal numbers (e.g. 1.4.0)");
        let mut it = s.split('.');
        let mut part = || -> Result<u32, String> {
            let p = it.next().ok_or_else(bad)?;
            if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let v = Version {
            major: part()?,
            minor: part()?,
            patch: part()?,
        };
        if it.next().is_some() {
            return Err(bad());
        }
        Ok(v)
    }

    /// True when installing `self` over `running` goes backwards.
    pub fn is_downgrade_from(&self, running: &Version) -> bool {
        self.cmp(running) == Ordering::Less
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_numerically() {
        let v = |s| Version::parse(s).unwrap();
        assert_eq!(v("1.10.0").to_string(), "1.10.0");
        assert!(v("1.9.9") < v("1.10.0"));
        assert!(v("0.1.0").is_downgrade_from(&v("0.2.0")));
        assert!(!v("0.2.0").is_downgrade_from(&v("0.2.0")));
        assert!(!v("1.0.0").is_downgrade_from(&v("0.99.99")));
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "1.2.x",
            "1.-2.3",
            "+1.2.3",
            "1.2.3-rc1",
            "1..3",
            "9999999999.0.0",
        ] {
            let e = Version::parse(bad).unwrap_err();
            assert!(e.contains("MAJOR.MINOR.PATCH"), "{bad}: {e}");
        }
    }
}
