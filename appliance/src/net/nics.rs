//! The network ports present on the box, read from sysfs: name, MAC, link, driver.
//!
//! The console shows this list so that an operator can tell which port is which
//! before assigning WAN and LAN (a new box's first question).

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Where the kernel lists network interfaces.
pub const SYSFS_NET: &str = "/sys/class/net";

/// One network interface as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    /// Kernel name (eth0).
    pub name: String,
    /// Hardware address, lower case with colons; empty when it has none.
    pub mac: String,
    /// Carrier: `Some(true)` link up, `Some(false)` down or administratively down, `None` unknown.
    pub link_up: Option<bool>,
    /// Kernel driver of the device (virtio_net, igb...); `None` for virtual interfaces.
    pub driver: Option<String>,
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

/// The interfaces under `root` (normally [`SYSFS_NET`]), sorted by name, without loopback.
/// Unreadable entries are skipped; a missing `root` gives an empty list.
pub fn list(root: &Path) -> Vec<Nic> {
    let Ok(rd) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out: Vec<Nic> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let dir = e.path();
            // Interfaces are (links to) directories; sysfs also keeps files here (bonding_masters).
            if !dir.is_dir() {
                return None;
            }
            // Loopback is type 772 (ARPHRD_LOOPBACK); it is never a port.
            if name == "lo" || read_trim(&dir.join("type")).as_deref() == Some("772") {
                return None;
            }
            let mac = read_trim(&dir.join("address")).unwrap_or_default();
            // `carrier` cannot be read while the interface is down: that is "down".
            let link_up = match read_trim(&dir.join("operstate")).as_deref() {
                Some("up") => Some(true),
                Some("down" | "lowerlayerdown" | "notpresent") => Some(false),
                _ => match read_trim(&dir.join("carrier")).as_deref() {
                    Some("1") => Some(true),
                    Some("0") => Some(false),
                    _ => None,
                },
            };
            let driver = std::fs::read_link(dir.join("device/driver"))
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
            Some(Nic {
                name,
                mac,
                link_up,
                driver,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(root: &Path, name: &str, files: &[(&str, &str)], driver: Option<&str>) {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for (f, v) in files {
            std::fs::write(d.join(f), format!("{v}\n")).unwrap();
        }
        if let Some(drv) = driver {
            let target = root.parent().unwrap().join("drivers").join(drv);
            std::fs::create_dir_all(&target).unwrap();
            std::fs::create_dir_all(d.join("device")).unwrap();
            std::os::unix::fs::symlink(&target, d.join("device/driver")).unwrap();
        }
    }

    #[test]
    fn lists_ports_with_mac_link_and_driver_and_skips_loopback() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("net");
        port(
            &root,
            "eth1",
            &[
                ("address", "52:54:00:00:00:02"),
                ("operstate", "down"),
                ("type", "1"),
            ],
            Some("virtio_net"),
        );
        port(
            &root,
            "eth0",
            &[
                ("address", "52:54:00:00:00:01"),
                ("operstate", "up"),
                ("type", "1"),
            ],
            Some("igb"),
        );
        port(
            &root,
            "lo",
            &[("address", "00:00:00:00:00:00"), ("type", "772")],
            None,
        );
        port(
            &root,
            "dummy0",
            &[
                ("address", "aa:bb:cc:dd:ee:ff"),
                ("operstate", "unknown"),
                ("carrier", "1"),
            ],
            None,
        );
        std::fs::write(root.join("bonding_masters"), "\n").unwrap();
        let l = list(&root);
        let names: Vec<&str> = l.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["dummy0", "eth0", "eth1"]);
        assert_eq!(
            l[1],
            Nic {
                name: "eth0".into(),
                mac: "52:54:00:00:00:01".into(),
                link_up: Some(true),
                driver: Some("igb".into()),
            }
        );
        assert_eq!(
            (l[2].link_up, l[2].driver.as_deref()),
            (Some(false), Some("virtio_net"))
        );
        // A virtual interface with operstate "unknown" falls back to its carrier.
        assert_eq!((l[0].link_up, l[0].driver.as_deref()), (Some(true), None));
    }

    #[test]
    fn a_missing_sysfs_gives_an_empty_list() {
        assert!(list(Path::new("/nonexistent/sys/class/net")).is_empty());
    }
}
