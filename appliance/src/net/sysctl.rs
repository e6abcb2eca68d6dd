//! Router sysctls: each value is written and read back to verify.
//!
//! Choices for a NAT balancer (the appliance is the servers' default gateway):
//! - `ip_forward=1`: IPVS NAT forwards the servers' replies back to clients.
//! - `conf/<WAN>/forwarding=0` (after `ip_forward=1`, which sets every interface): a
//!   packet that arrives on WAN for an address that is not the box's own is not routed,
//!   so no WAN host reaches a LAN server except through a VIP. IPVS NAT is unaffected:
//!   it takes the client's packet at LOCAL_IN (the VIP is local) and sends it on with
//!   its own output route, and the servers' replies arrive on LAN, which forwards.
//!   `router.route_wan_to_lan` keeps WAN forwarding on (labs, benchmarks).
//! - `rp_filter`: strict (1) on WAN so a packet arriving there with a LAN (or any
//!   non-WAN) source is dropped, also when addressed to the box itself (a forged ICMP
//!   "from a server"); loose (2) on LAN and for new interfaces (the policy-routing option
//!   and asymmetric upstream routing need it), and WAN stays loose when the default
//!   route goes through LAN (clients would fail the strict check). The kernel uses
//!   max(all, iface), so `all` is 0 and every interface carries its own value.
//! - `send_redirects=0` on all/default/WAN/LAN: the servers and clients share no subnet
//!   with each other, but in NAT mode a redirect would tell a server to bypass the
//!   balancer and break the masquerading.
//! - `arp_ignore=1`/`arp_announce=2` when any service uses DR (answer ARP only for
//!   addresses on the asked interface and source ARP from the best local address, so the
//!   VIP is not advertised on the LAN); back to 0/0 otherwise.
//! - `promote_secondaries=1` on WAN/LAN: removing the primary address must not remove
//!   the VIPs and the new address during an address change.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use tracing::info;

use crate::config::{Config, Forwarding};

/// The real sysctl tree.
pub const PROC_SYS: &str = "/proc/sys";

/// A sysctl that could not be set or verified.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    /// Could not write the value.
    #[error("sysctl {key}: cannot write '{value}' to {path}: {source} (does the interface exist? running as root?)")]
    Write {
        /// Dotted key.
        key: String,
        /// Value.
        value: String,
        /// File.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// Could not read back.
    #[error("sysctl {key}: cannot read back {path}: {source}")]
    Read {
        /// Dotted key.
        key: String,
        /// File.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// Read back a different value.
    #[error("sysctl {key}: wrote '{wanted}' but the kernel reports '{got}'")]
    Mismatch {
        /// Dotted key.
        key: String,
        /// Wanted.
        wanted: String,
        /// Found.
        got: String,
    },
}

/// Result of applying the router sysctls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SysctlReport {
    /// Keys whose value was changed (`key=value`).
    pub changed: Vec<String>,
    /// Keys checked in total.
    pub checked: usize,
}

/// Access to a sysctl tree rooted at a directory (normally `/proc/sys`).
#[derive(Clone, Debug)]
pub struct Sysctl {
    root: PathBuf,
}

impl Sysctl {
    /// Sysctls under `root`.
    pub fn new(root: &Path) -> Sysctl {
        Sysctl {
            root: root.to_path_buf(),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        // Keys are written with '/' separators so interface names with dots stay intact.
        self.root.join(key)
    }

    /// Read a value (trimmed).
    pub fn get(&self, key: &str) -> Result<String, SysctlError> {
        let path = self.path(key);
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_owned())
            .map_err(|source| SysctlError::Read {
                key: key.into(),
                path,
                source,
            })
    }

    /// Set `key` to `value` unless it already has it; read back to verify. Returns
    /// whether it changed.
    pub fn set(&self, key: &str, value: &str) -> Result<bool, SysctlError> {
        if self.get(key)? == value {
            return Ok(false);
        }
        let path = self.path(key);
        let werr = |source| SysctlError::Write {
            key: key.into(),
            value: value.into(),
            path: path.clone(),
            source,
        };
        // No create: a missing file means a missing interface or feature, not a new key.
        let mut f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(werr)?;
        f.write_all(format!("{value}\n").as_bytes()).map_err(werr)?;
        drop(f);
        let got = self.get(key)?;
        if got != value {
            return Err(SysctlError::Mismatch {
                key: key.into(),
                wanted: value.into(),
                got,
            });
        }
        info!(key, value, "sysctl set");
        Ok(true)
    }

    /// `promote_secondaries=1` on the given interfaces.
    pub fn set_promote_secondaries(&self, ifaces: &[&str]) -> Result<usize, SysctlError> {
        let mut n = 0;
        for i in ifaces {
            n += usize::from(self.set(&format!("net/ipv4/conf/{i}/promote_secondaries"), "1")?);
        }
        Ok(n)
    }

    /// The full list of router settings for `cfg`, in the order they are applied.
    pub fn router_settings(cfg: &Config) -> Vec<(String, &'static str)> {
        let wan = cfg.wan.name.as_str();
        let lan = cfg.lan.name.as_str();
        let dr = cfg.services.iter().any(|s| s.forwarding == Forwarding::Dr);
        let mut v = vec![("net/ipv4/ip_forward".to_owned(), "1")];
        v.push((
            format!("net/ipv4/conf/{wan}/forwarding"),
            if cfg.router.route_wan_to_lan {
                "1"
            } else {
                "0"
            },
        ));
        let wan_rpf = if cfg.lan.gateway.is_some() { "2" } else { "1" };
        for (i, rpf) in [("all", "0"), ("default", "2"), (wan, wan_rpf), (lan, "2")] {
            v.push((format!("net/ipv4/conf/{i}/rp_filter"), rpf));
            v.push((format!("net/ipv4/conf/{i}/send_redirects"), "0"));
        }
        for i in ["all", wan, lan] {
            v.push((
                format!("net/ipv4/conf/{i}/arp_ignore"),
                if dr { "1" } else { "0" },
            ));
            v.push((
                format!("net/ipv4/conf/{i}/arp_announce"),
                if dr { "2" } else { "0" },
            ));
        }
        for i in [wan, lan] {
            v.push((format!("net/ipv4/conf/{i}/promote_secondaries"), "1"));
        }
        v
    }

    /// Apply [`Sysctl::router_settings`]; stops at the first failure.
    pub fn apply_router(&self, cfg: &Config) -> Result<SysctlReport, SysctlError> {
        let mut r = SysctlReport::default();
        for (k, v) in Self::router_settings(cfg) {
            r.checked += 1;
            if self.set(&k, v)? {
                r.changed.push(format!("{k}={v}"));
            }
        }
        Ok(r)
    }
}

/// Apply the router sysctls for `cfg` on the real `/proc/sys`.
pub fn apply_router(cfg: &Config) -> Result<SysctlReport, SysctlError> {
    Sysctl::new(Path::new(PROC_SYS)).apply_router(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_tree(cfg: &Config) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (k, _) in Sysctl::router_settings(cfg) {
            let p = d.path().join(&k);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            // Kernel defaults: forwarding off, strict rp_filter, redirects on.
            let v = if k.ends_with("rp_filter") || k.ends_with("send_redirects") {
                "1"
            } else {
                "0"
            };
            std::fs::write(p, format!("{v}\n")).unwrap();
        }
        d
    }

    #[test]
    fn router_sysctls_set_verified_and_idempotent() {
        let cfg = Config::builtin_default();
        let d = fake_tree(&cfg);
        let s = Sysctl::new(d.path());
        let r = s.apply_router(&cfg).unwrap();
        assert_eq!(s.get("net/ipv4/ip_forward").unwrap(), "1");
        assert_eq!(s.get("net/ipv4/conf/all/rp_filter").unwrap(), "0");
        assert_eq!(s.get("net/ipv4/conf/eth0/rp_filter").unwrap(), "1");
        assert_eq!(s.get("net/ipv4/conf/eth1/rp_filter").unwrap(), "2");
        assert_eq!(s.get("net/ipv4/conf/eth0/forwarding").unwrap(), "0");
        assert_eq!(s.get("net/ipv4/conf/eth0/send_redirects").unwrap(), "0");
        assert_eq!(
            s.get("net/ipv4/conf/eth1/promote_secondaries").unwrap(),
            "1"
        );
        // NAT only: ARP settings stay at 0, so they are not among the changes.
        assert!(!r.changed.iter().any(|c| c.contains("arp_")), "{r:?}");
        // ip_forward, 3 rp_filter (WAN was already strict), 4 send_redirects, 2
        // promote_secondaries (WAN forwarding was already 0).
        assert_eq!(r.changed.len(), 1 + 3 + 4 + 2, "{r:?}");
        let again = s.apply_router(&cfg).unwrap();
        assert!(again.changed.is_empty());
        assert_eq!(again.checked, r.checked);
    }

    #[test]
    fn wan_routing_and_reverse_path_follow_the_config() {
        let mut cfg = Config::builtin_default();
        cfg.router.route_wan_to_lan = true;
        cfg.wan.gateway = None;
        cfg.lan.gateway = Some(std::net::Ipv4Addr::new(198, 51, 100, 254));
        let d = fake_tree(&cfg);
        let s = Sysctl::new(d.path());
        s.apply_router(&cfg).unwrap();
        assert_eq!(s.get("net/ipv4/conf/eth0/forwarding").unwrap(), "1");
        // Default route via LAN: clients on WAN would fail a strict check.
        assert_eq!(s.get("net/ipv4/conf/eth0/rp_filter").unwrap(), "2");
    }

    #[test]
    fn dr_service_sets_arp_ignore_and_announce() {
        let mut cfg = Config::builtin_default();
        cfg.services[0].forwarding = Forwarding::Dr;
        let d = fake_tree(&cfg);
        let s = Sysctl::new(d.path());
        s.apply_router(&cfg).unwrap();
        assert_eq!(s.get("net/ipv4/conf/all/arp_ignore").unwrap(), "1");
        assert_eq!(s.get("net/ipv4/conf/eth0/arp_announce").unwrap(), "2");
    }

    #[test]
    fn missing_interface_is_a_clear_error() {
        let cfg = Config::builtin_default();
        let d = fake_tree(&cfg);
        std::fs::remove_dir_all(d.path().join("net/ipv4/conf/eth1")).unwrap();
        let e = Sysctl::new(d.path()).apply_router(&cfg).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("eth1"), "{msg}");
    }
}
