//! Data-path and connection-sync sysctls for IPVS: set, read back, verify. See docs/ipvs.md
//! (data path) and docs/ha.md "Connection sync" for the reasons.
//!
//! Takes a sysctl root (normally `/proc/sys`) so tests can use a temporary directory.
//! All files are checked to exist before anything is written (all-or-nothing when the
//! ip_vs module is missing).

use std::path::{Path, PathBuf};

/// One sysctl the data path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Dotted name, e.g. `net.ipv4.vs.expire_nodest_conn`.
    pub key: &'static str,
    /// Value to write.
    pub value: &'static str,
    /// False when the file only exists with an optional kernel option.
    pub required: bool,
    /// One-line reason (also in docs/ipvs.md).
    pub why: &'static str,
}

/// The data-path settings, in the order they are applied.
pub const DATAPATH: &[Setting] = &[
    Setting {
        key: "net.ipv4.ip_forward",
        value: "1",
        required: true,
        why: "NAT (masquerading) forwards packets between WAN and LAN",
    },
    Setting {
        key: "net.ipv4.vs.expire_nodest_conn",
        value: "1",
        required: true,
        why: "UDP entries of a removed server expire at its next packet, so the flow is rescheduled instead of black-holed",
    },
    Setting {
        key: "net.ipv4.vs.expire_quiescent_template",
        value: "0",
        required: true,
        why: "pe sip templates (Call-ID -> server) of a weight-0 server are kept, so in-dialog requests (re-INVITE, BYE) of a drained server's calls still reach it; new calls have new Call-IDs, match no template and are never scheduled to weight 0 (1 sent a drained server's BYEs to other servers)",
    },
    Setting {
        key: "net.ipv4.vs.conntrack",
        value: "0",
        required: false,
        why: "IPVS NAT does not need netfilter conntrack and the appliance has no stateful firewall rules; 0 avoids double state and the conn_reuse 1 s stall",
    },
    Setting {
        key: "net.ipv4.vs.conn_reuse_mode",
        value: "1",
        required: true,
        why: "kernel default, set explicitly: reused TCP ports are rescheduled (no effect on UDP SIP)",
    },
];

/// Connection-sync settings (HA), applied before the sync daemons start because the kernel
/// reads `sync_ports` only when a daemon starts. See docs/ha.md "Connection sync".
pub const SYNC: &[Setting] = &[
    Setting {
        key: "net.ipv4.vs.sync_version",
        value: "1",
        required: true,
        why: "protocol v1 carries the persistence engine data (the pe sip Call-ID) and syncs templates of one-packet connections; v0 does neither",
    },
    Setting {
        key: "net.ipv4.vs.sync_ports",
        value: "1",
        required: true,
        why: "one master thread and one send buffer: every new sync entry pushes the previous (full) message out, so entries are not split across buffers that wait for the 2 s flush",
    },
    Setting {
        key: "net.ipv4.vs.sync_persist_mode",
        value: "1",
        required: true,
        why: "connections under a persistence template are not synced, only the templates: the backup re-creates the connection from the template, so only Call-ID -> server crosses the wire",
    },
    Setting {
        key: "net.ipv4.vs.sync_refresh_period",
        value: "0",
        required: true,
        why: "kernel default, set explicitly: a template is re-synced at each of its packets, which also pushes out the previous one-entry message at once",
    },
];

/// Why the sysctls could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    /// A required file does not exist.
    #[error("sysctl {key} does not exist ({path}); {hint}")]
    Missing {
        /// Dotted key.
        key: &'static str,
        /// File path.
        path: String,
        /// What to check.
        hint: &'static str,
    },
    /// Writing failed.
    #[error("cannot set sysctl {key}={value}: {err}")]
    Write {
        /// Dotted key.
        key: &'static str,
        /// Value.
        value: &'static str,
        /// OS error.
        err: std::io::Error,
    },
    /// The value read back differs.
    #[error("sysctl {key} reads back '{got}' after writing '{want}'")]
    Mismatch {
        /// Dotted key.
        key: &'static str,
        /// Wanted.
        want: &'static str,
        /// Read back.
        got: String,
    },
}

/// What [`apply_datapath_at`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SysctlReport {
    /// (key, old value, new value) for values that changed.
    pub changed: Vec<(String, String, String)>,
    /// Optional keys whose file does not exist (kernel option not built).
    pub skipped: Vec<String>,
}

fn path_of(root: &Path, key: &str) -> PathBuf {
    let mut p = root.to_path_buf();
    for part in key.split('.') {
        p.push(part);
    }
    p
}

/// Apply [`DATAPATH`] under `/proc/sys`.
pub fn apply_datapath() -> Result<SysctlReport, SysctlError> {
    apply_datapath_at(Path::new("/proc/sys"))
}

/// Apply [`DATAPATH`] under `root`, verifying each value by reading it back.
pub fn apply_datapath_at(root: &Path) -> Result<SysctlReport, SysctlError> {
    apply_at(root, DATAPATH)
}

/// Apply [`SYNC`] under `/proc/sys`.
pub fn apply_sync() -> Result<SysctlReport, SysctlError> {
    apply_at(Path::new("/proc/sys"), SYNC)
}

/// Apply `settings` under `root`: every required file is checked before anything is written,
/// then each value is written (only when it differs) and read back.
pub fn apply_at(root: &Path, settings: &[Setting]) -> Result<SysctlReport, SysctlError> {
    let mut report = SysctlReport::default();
    for s in settings {
        let p = path_of(root, s.key);
        if !p.exists() && s.required {
            let hint = if s.key.contains(".vs.") {
                "the IPVS module is not loaded or the kernel lacks CONFIG_IP_VS"
            } else {
                "is /proc mounted?"
            };
            return Err(SysctlError::Missing {
                key: s.key,
                path: p.display().to_string(),
                hint,
            });
        }
    }
    for s in settings {
        let p = path_of(root, s.key);
        if !p.exists() {
            report.skipped.push(s.key.to_owned());
            continue;
        }
        let old = std::fs::read_to_string(&p)
            .map(|v| v.trim().to_owned())
            .unwrap_or_default();
        if old != s.value {
            std::fs::write(&p, format!("{}\n", s.value)).map_err(|err| SysctlError::Write {
                key: s.key,
                value: s.value,
                err,
            })?;
        }
        let got = std::fs::read_to_string(&p)
            .map(|v| v.trim().to_owned())
            .map_err(|err| SysctlError::Write {
                key: s.key,
                value: s.value,
                err,
            })?;
        if got != s.value {
            return Err(SysctlError::Mismatch {
                key: s.key,
                want: s.value,
                got,
            });
        }
        if old != s.value {
            tracing::info!(key = s.key, old = %old, new = s.value, "sysctl set");
            report
                .changed
                .push((s.key.to_owned(), old, s.value.to_owned()));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_root(with_vs: bool, with_conntrack: bool) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        for s in DATAPATH {
            if (!with_vs && s.key.contains(".vs."))
                || (!with_conntrack && s.key.ends_with("conntrack"))
            {
                continue;
            }
            let p = path_of(d.path(), s.key);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, "0\n").expect("write");
        }
        d
    }

    #[test]
    fn sets_and_verifies_each_value() {
        let d = fake_root(true, true);
        std::fs::write(path_of(d.path(), "net.ipv4.vs.conn_reuse_mode"), "1\n").expect("w");
        std::fs::write(
            path_of(d.path(), "net.ipv4.vs.expire_quiescent_template"),
            "1\n",
        )
        .expect("w");
        let r = apply_datapath_at(d.path()).expect("apply");
        for s in DATAPATH {
            let v = std::fs::read_to_string(path_of(d.path(), s.key)).expect("read");
            assert_eq!(v.trim(), s.value, "{}", s.key);
        }
        let changed: Vec<&str> = r.changed.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            changed,
            vec![
                "net.ipv4.ip_forward",
                "net.ipv4.vs.expire_nodest_conn",
                "net.ipv4.vs.expire_quiescent_template"
            ]
        );
        // Idempotent.
        assert_eq!(apply_datapath_at(d.path()).expect("again").changed, vec![]);
    }

    #[test]
    fn missing_ipvs_changes_nothing() {
        let d = fake_root(false, false);
        let e = apply_datapath_at(d.path()).expect_err("no ip_vs");
        assert!(e.to_string().contains("CONFIG_IP_VS"), "{e}");
        let fwd = std::fs::read_to_string(path_of(d.path(), "net.ipv4.ip_forward")).expect("r");
        assert_eq!(fwd.trim(), "0", "nothing written before the check");
    }

    #[test]
    fn sync_settings_are_set_read_back_and_idempotent() {
        let d = tempfile::tempdir().expect("tempdir");
        for s in SYNC {
            let p = path_of(d.path(), s.key);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            // kernel defaults: version 1, ports 1, persist 0, refresh 0
            std::fs::write(&p, "0\n").expect("write");
        }
        std::fs::write(path_of(d.path(), "net.ipv4.vs.sync_ports"), "4\n").expect("w");
        let r = apply_at(d.path(), SYNC).expect("apply");
        for s in SYNC {
            let v = std::fs::read_to_string(path_of(d.path(), s.key)).expect("read");
            assert_eq!(v.trim(), s.value, "{}", s.key);
        }
        let changed: Vec<&str> = r.changed.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            changed,
            vec![
                "net.ipv4.vs.sync_version",
                "net.ipv4.vs.sync_ports",
                "net.ipv4.vs.sync_persist_mode"
            ]
        );
        assert_eq!(apply_at(d.path(), SYNC).expect("again").changed, vec![]);
    }

    #[test]
    fn sync_settings_without_ipvs_change_nothing() {
        let d = tempfile::tempdir().expect("tempdir");
        let e = apply_at(d.path(), SYNC).expect_err("no ip_vs");
        assert!(e.to_string().contains("CONFIG_IP_VS"), "{e}");
        assert!(std::fs::read_dir(d.path()).expect("dir").next().is_none());
    }

    #[test]
    fn optional_conntrack_is_skipped_when_absent() {
        let d = fake_root(true, false);
        let r = apply_datapath_at(d.path()).expect("apply");
        assert_eq!(r.skipped, vec!["net.ipv4.vs.conntrack".to_owned()]);
    }
}
