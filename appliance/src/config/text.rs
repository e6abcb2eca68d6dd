//! The human-readable TOML form of the config.

use std::path::Path;

use super::{validate, Config, ConfigError};

/// Parse a TOML config (no semantic validation; call [`validate`] for that).
///
/// Errors carry line, column and the offending key, as reported by the TOML parser.
pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
    parse_named(text, "input")
}

/// Parse TOML, naming `origin` (usually the file path) in error messages.
pub fn parse_named(text: &str, origin: &str) -> Result<Config, ConfigError> {
    toml::from_str::<Config>(text).map_err(|e| ConfigError::Toml {
        origin: origin.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}

/// Write a config as TOML.
pub fn to_toml(c: &Config) -> String {
    // Serializing our own model cannot fail (no maps with non-string keys, no
    // unsupported types); the fallback keeps the signature infallible anyway.
    toml::to_string(c).unwrap_or_else(|e| format!("# cannot serialize config: {e}\n"))
}

/// Read a TOML file into a config, without validation.
pub fn read_file(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: origin.clone(),
        source,
    })?;
    parse_named(&text, &origin)
}

/// Load the image's factory configuration: parse and validate (errors refuse it, warnings are logged).
pub fn load_factory(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
    let path = path.as_ref();
    let c = read_file(path)?;
    let report = validate(&c);
    let origin = path.display().to_string();
    for w in &report.warnings {
        tracing::warn!(file = %origin, path = %w.path, "factory config: {}", w.message);
    }
    if !report.is_ok() {
        return Err(ConfigError::Invalid { origin, report });
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::*;

    const FACTORY: &str = include_str!("../../../rootfs-overlay/etc/appliance/factory.toml");

    #[test]
    fn committed_factory_toml_parses_validates_and_equals_builtin() {
        let c = from_toml(FACTORY).expect("factory.toml parses");
        let r = validate(&c);
        assert!(r.errors.is_empty() && r.warnings.is_empty(), "{r:#?}");
        assert_eq!(
            c,
            Config::builtin_default(),
            "factory.toml drifted from builtin_default"
        );
    }

    #[test]
    fn export_shows_the_ha_section() {
        // Disabled HA still shows its fields, so an operator sees what to fill in.
        let t = to_toml(&Config::builtin_default());
        for want in [
            "[ha]",
            "enabled = false",
            "vrid = 51",
            "priority = 100",
            "advert_interval_cs = 5",
            "preempt = false",
            "preempt_delay_s = 0",
            "sync_interface = \"\"",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
        let mut c = Config::builtin_default();
        c.lan.address = "198.51.100.2/24".parse().unwrap();
        c.ha.enabled = true;
        c.ha.lan_gateway = Some("198.51.100.1".parse().unwrap());
        c.ha.peer_wan = Some("203.0.113.3".parse().unwrap());
        c.ha.peer_lan = Some("198.51.100.3".parse().unwrap());
        let t = to_toml(&c);
        for want in [
            "lan_gateway = \"198.51.100.1\"",
            "peer_wan = \"203.0.113.3\"",
            "peer_lan = \"198.51.100.3\"",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
        assert_eq!(from_toml(&t).unwrap(), c);
        assert!(validate(&c).is_ok(), "{:#?}", validate(&c));
    }

    #[test]
    fn v1_ha_keys_are_refused_with_the_field_named() {
        // V1 exports only ever carried `peer` when someone set it by hand; say what is wrong.
        let bad = FACTORY.replacen("sync_interface = \"\"", "peer = \"198.51.100.2\"", 1);
        let e = from_toml(&bad).unwrap_err().to_string();
        assert!(
            e.contains("unknown field `peer`") && e.contains("peer_lan"),
            "{e}"
        );
        // V1's factory values (vrid 0, priority 0) still import while HA is off.
        let old = FACTORY.replacen("vrid = 51", "vrid = 0", 1).replacen(
            "priority = 100 ",
            "priority = 0 ",
            1,
        );
        let c = from_toml(&old).unwrap();
        assert_eq!((c.ha.vrid, c.ha.priority), (0, 0));
        assert!(validate(&c).is_ok());
    }

    #[test]
    fn load_factory_reads_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.toml");
        std::fs::write(&p, FACTORY).unwrap();
        assert_eq!(load_factory(&p).unwrap(), Config::builtin_default());
        let e = load_factory(dir.path().join("missing.toml")).unwrap_err();
        assert!(e.to_string().starts_with("cannot read "), "{e}");
        std::fs::write(&p, FACTORY.replace("port = 5060", "port = 0")).unwrap();
        let e = load_factory(&p).unwrap_err().to_string();
        assert!(
            e.contains("is not a valid config") && e.contains("port 0"),
            "{e}"
        );
    }

    #[test]
    fn round_trip_largest_config() {
        // The text form refuses prefixes > 32, which postcard can carry; clamp those.
        let mut c = crate::store::largest_config();
        c.wan.address.prefix = 32;
        c.lan.address.prefix = 32;
        if let Some(a) = c.management.address.as_mut() {
            a.prefix = 32;
        }
        for n in c.management.allow.iter_mut() {
            n.prefix = 32;
        }
        for s in c.services.iter_mut() {
            for r in s.probe.accept.iter_mut() {
                *r = CodeRange { lo: 100, hi: 699 };
            }
        }
        let t = to_toml(&c);
        assert_eq!(from_toml(&t).unwrap(), c);
    }

    #[test]
    fn syntax_error_names_line_column_and_key() {
        let bad = FACTORY.replacen("mtu = 1500", "mtu = \"big\"", 1);
        let e = from_toml(&bad).unwrap_err().to_string();
        assert!(e.contains("line ") && e.contains("column"), "{e}");
        assert!(e.contains("mtu"), "{e}");
        let bad = FACTORY.replacen("hostname =", "hostnme =", 1);
        let e = from_toml(&bad).unwrap_err().to_string();
        assert!(e.contains("unknown field `hostnme`"), "{e}");
        let e = from_toml("hostname = \"x\"\n[wan\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn bad_values_are_explained() {
        let bad = FACTORY.replacen("203.0.113.2/24", "203.0.113.2/99", 1);
        let e = from_toml(&bad).unwrap_err().to_string();
        assert!(e.contains("is not an IPv4 address with prefix"), "{e}");
        let long = "x".repeat(100);
        let bad = FACTORY.replacen(
            "hostname = \"sip-lb\"",
            &format!("hostname = \"{long}\""),
            1,
        );
        let e = from_toml(&bad).unwrap_err().to_string();
        assert!(e.contains("line"), "{e}");
        let bad = FACTORY.replacen("scheduler = \"rr\"", "scheduler = \"fifo\"", 1);
        let e = from_toml(&bad).unwrap_err().to_string();
        assert!(e.contains("fifo") && e.contains("wrr"), "{e}");
    }
}
