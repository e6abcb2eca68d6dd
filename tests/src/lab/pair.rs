//! An HA pair: two appliance images booted in QEMU on the same lab bridges.
//!
//! ```text
//!   client ns ── brw ──┬── tapwa (box A eth0, 203.0.113.2)   ┬── tapwb (box B eth0, 203.0.113.3)
//!                      │        VIP 203.0.113.10 on the VRRP master
//!   servers   ── brl ──┴── tapla (box A eth1, 198.51.100.2)  ┴── taplb (box B eth1, 198.51.100.3)
//!                               gateway 198.51.100.1 on the VRRP master
//! ```
//!
//! Each box boots with its own config already in its store disk, written on
//! the host before boot with the very `appliance` binary the image carries
//! (`appliance config import FILE --store file:DISK`), so no box ever runs
//! the factory config (which would claim .1/.2 and the VIP on both). Failures
//! are injected from outside (QEMU killed, daemon SIGKILLed through the test
//! shell, cable pulled: switch port down and the NIC's carrier off through
//! the QEMU monitor, orderly reboot); what happened is read from captures.

use super::booted::{now_us, parse_ip_vs, BOOT_TIMEOUT, READY_TIMEOUT};
use super::frames::Mac;
use super::keepalived::has_addr;
use super::{Appliance, Lab, LabError, LabOptions, Result, SIP_PORT, VIP};
use crate::guest;
use crate::sipp;
use crate::vm::{ensure_image, repo_root, Image, Vm, VmOptions};
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// VRRP virtual router id of the lab pair (HA-SPEC: 51).
pub const VRID: u8 = 51;
/// The servers' default gateway, a virtual address on LAN held by the master.
pub const LAN_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// Advert interval of the lab pair, centiseconds. The product default is 5
/// (50 ms); two TCG guests sharing two host cores with sipp stall for more
/// than the 3 × 50 ms master-down interval, which would make the backup
/// take over spuriously, so the lab uses 200 ms (master down ≈ 0.7 s).
/// Measured (tests/bench/ha-soak.sh, docs/benchmarks.md section h): 9
/// spurious takeovers in 10 minutes at 5 cs on the loaded shared host.
pub const LAB_ADVERT_CS: u16 = 20;

/// Which box of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BoxId {
    /// Box A (priority 150).
    A,
    /// Box B (priority 100).
    B,
}

impl BoxId {
    /// The other box.
    pub fn other(self) -> BoxId {
        match self {
            BoxId::A => BoxId::B,
            BoxId::B => BoxId::A,
        }
    }

    fn index(self) -> usize {
        match self {
            BoxId::A => 0,
            BoxId::B => 1,
        }
    }
}

/// Which side of a box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// eth0, client side.
    Wan,
    /// eth1, server side.
    Lan,
}

/// Addresses, MACs, taps and priority of one box (HA-SPEC "Lab").
#[derive(Debug, Clone)]
pub struct BoxSpec {
    /// Which box.
    pub id: BoxId,
    /// Hostname in its config.
    pub hostname: String,
    /// WAN address (eth0).
    pub wan: Ipv4Addr,
    /// LAN address (eth1).
    pub lan: Ipv4Addr,
    /// eth0 MAC.
    pub wan_mac: Mac,
    /// eth1 MAC.
    pub lan_mac: Mac,
    /// VRRP priority.
    pub priority: u8,
    /// Its WAN tap in the switch namespace.
    pub wan_tap: String,
    /// Its LAN tap in the switch namespace.
    pub lan_tap: String,
}

impl BoxSpec {
    /// The spec of box `id`.
    pub fn of(id: BoxId) -> BoxSpec {
        let (n, last, prio) = match id {
            BoxId::A => ("a", 2, 150),
            BoxId::B => ("b", 3, 100),
        };
        let m = |side: u8| Mac([0x52, 0x54, 0x00, 0x00, 0x0a + id.index() as u8, side]);
        BoxSpec {
            id,
            hostname: format!("sip-lb-{n}"),
            wan: Ipv4Addr::new(203, 0, 113, last),
            lan: Ipv4Addr::new(198, 51, 100, last),
            wan_mac: m(1),
            lan_mac: m(2),
            priority: prio,
            wan_tap: format!("tapw{n}"),
            lan_tap: format!("tapl{n}"),
        }
    }

    /// The box's HA settings as the `[ha]` TOML section (HA-SPEC field names).
    pub fn ha_section(&self, advert_cs: u16) -> String {
        format!(
            "[ha]\nenabled = true\nvrid = {VRID}\npriority = {}\nadvert_interval_cs = {advert_cs}\n\
             preempt = false\npreempt_delay_s = 0\nlan_gateway = \"{LAN_GATEWAY}\"\n\
             sync_interface = \"\"\n",
            self.priority
        )
    }

    /// The box's full config: the factory config with this box's hostname,
    /// WAN and LAN addresses and `[ha]` section.
    pub fn config_toml(&self, factory: &str, advert_cs: u16) -> Result<String> {
        rewrite_config(
            factory,
            &self.hostname,
            &format!("{}/24", self.wan),
            &format!("{}/24", self.lan),
            &self.ha_section(advert_cs),
        )
    }
}

/// Rewrites a config TOML text: `hostname`, `address` in `[wan]` and `[lan]`,
/// and the whole `[ha]` section. Errors when a key or section is missing, so
/// a changed factory file cannot silently leave a box on factory addresses.
pub fn rewrite_config(
    text: &str,
    hostname: &str,
    wan: &str,
    lan: &str,
    ha: &str,
) -> Result<String> {
    let mut out = String::new();
    let mut section = String::new();
    let mut seen = (false, false, false, false);
    let mut in_ha = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            section = t.to_owned();
            in_ha = t == "[ha]";
            if in_ha {
                seen.3 = true;
                out.push_str(ha);
                continue;
            }
        } else if in_ha {
            // Every key of the old [ha] section goes; comments and blank lines stay.
            if t.is_empty() || t.starts_with('#') {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        let key = t.split('=').next().unwrap_or("").trim();
        let replaced = match (section.as_str(), key) {
            ("", "hostname") => {
                seen.0 = true;
                Some(format!("hostname = \"{hostname}\""))
            }
            ("[wan]", "address") => {
                seen.1 = true;
                Some(format!("address = \"{wan}\""))
            }
            ("[lan]", "address") => {
                seen.2 = true;
                Some(format!("address = \"{lan}\""))
            }
            _ => None,
        };
        out.push_str(replaced.as_deref().unwrap_or(line));
        out.push('\n');
    }
    if !seen.3 {
        out.push('\n');
        out.push_str(ha);
        seen.3 = true;
    }
    match seen {
        (true, true, true, true) => Ok(out),
        _ => Err(LabError::Evidence(format!(
            "the factory config lacks hostname / [wan] address / [lan] address (found {seen:?})"
        ))),
    }
}

/// The `appliance` binary the image carries (build-image.sh leaves its
/// staging root next to the kernel), to write store disks on the host.
pub fn image_appliance_bin(image: &Image) -> PathBuf {
    image
        .kernel
        .parent()
        .map(|d| d.join("rootfs/usr/sbin/appliance"))
        .unwrap_or_else(|| PathBuf::from("build/rootfs/usr/sbin/appliance"))
}

/// The factory config shipped in the image.
pub fn factory_toml() -> Result<String> {
    let p = repo_root().join("rootfs-overlay/etc/appliance/factory.toml");
    fs::read_to_string(&p).map_err(|source| LabError::Io { path: p, source })
}

/// Checks a config with the image's binary (`appliance config check FILE`);
/// Err(message) when it is rejected: e.g. a firmware without HA support.
pub fn check_config(bin: &Path, toml: &Path) -> Result<std::result::Result<(), String>> {
    let out = super::output(Command::new(bin).args(["config", "check"]).arg(toml))?;
    if out.status.success() {
        Ok(Ok(()))
    } else {
        Ok(Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// Writes `toml` into a fresh store disk at `disk` (1 MiB of 0xFF, like
/// erased flash) with the image's `appliance` binary, then reads it back
/// (`config export`) and checks the hostname round-tripped.
pub fn write_store(bin: &Path, disk: &Path, toml: &Path, hostname: &str) -> Result<()> {
    fs::write(disk, vec![0xffu8; 1 << 20]).map_err(|source| LabError::Io {
        path: disk.to_owned(),
        source,
    })?;
    let spec = format!("file:{}", disk.display());
    super::run(
        Command::new(bin)
            .args(["config", "import"])
            .arg(toml)
            .args(["--store", &spec]),
    )?;
    let back = disk.with_extension("export.toml");
    super::run(
        Command::new(bin)
            .args(["config", "export"])
            .arg(&back)
            .args(["--store", &spec]),
    )?;
    let text = fs::read_to_string(&back).map_err(|source| LabError::Io {
        path: back.clone(),
        source,
    })?;
    if !text.contains(&format!("hostname = \"{hostname}\"")) {
        return Err(LabError::Evidence(format!(
            "store {} does not read back with hostname {hostname}:\n{text}",
            disk.display()
        )));
    }
    Ok(())
}

/// Boxes booted through GRUB from an A/B boot disk instead of `-kernel`.
#[derive(Debug, Clone)]
pub struct DiskBoot {
    /// The boot disk every box gets a copy of (tests/image/build-disk.sh with
    /// `APPEND=appliance.testshell=1`).
    pub boot_disk: PathBuf,
    /// Read-only disks after the store and boot disks (/dev/vdc...), e.g. bundles.
    pub extra_disks: Vec<PathBuf>,
}

/// How a pair boots: which boxes, the advert interval, each QEMU's lifetime, the image.
#[derive(Debug, Clone)]
pub struct PairBoot {
    /// The boxes powered on, in this order (the first up becomes master).
    pub which: Vec<BoxId>,
    /// VRRP advert interval, centiseconds.
    pub advert_cs: u16,
    /// Each QEMU's hard lifetime.
    pub vm_lifetime: Duration,
    /// Another image than the dev image (see [`HaPair::boot_image`]).
    pub variant: Option<Image>,
    /// Boot through GRUB from A/B boot disks instead of `-kernel`.
    pub disks: Option<DiskBoot>,
}

impl Default for PairBoot {
    fn default() -> Self {
        PairBoot {
            which: vec![BoxId::A, BoxId::B],
            advert_cs: LAB_ADVERT_CS,
            vm_lifetime: Duration::from_secs(1500),
            variant: None,
            disks: None,
        }
    }
}

/// One box of the pair.
pub struct HaBox {
    /// Its addresses, MACs, taps.
    pub spec: BoxSpec,
    /// The running VM (None while powered off).
    pub vm: Option<Vm>,
    /// Its store disk.
    pub disk: PathBuf,
    /// Its own A/B boot disk when it boots through GRUB ([`HaPair::boot_from_disks`]).
    pub boot_disk: Option<PathBuf>,
    opts: VmOptions,
    /// The kernel's boot id before an orderly reboot (to see the new boot).
    boot_id: Option<String>,
}

/// Two appliances on one lab. Field order matters: the VMs are dropped
/// (QEMU killed) before the lab's namespaces go.
pub struct HaPair {
    /// Box A and box B.
    pub boxes: [HaBox; 2],
    /// The sipp server pid per server.
    pub uas: Vec<Option<u32>>,
    /// The namespaces, captures and processes.
    pub lab: Lab,
}

/// Boots one box's VM (returns at once; wait with [`HaPair::wait_up`]).
fn boot_vm(opts: &VmOptions) -> Result<Vm> {
    Ok(Vm::boot(opts.clone())?)
}

impl HaPair {
    /// Builds the lab, writes each box's config into its store, starts a
    /// sipp server (`uas_scenario`) on every server namespace and boots box A,
    /// then box B (so A, priority 150, is master: without preemption the
    /// first box up wins). Returns once both test shells answer and both
    /// kernels balance the VIP.
    pub fn boot(servers: usize, uas_scenario: &str) -> Result<HaPair> {
        Self::boot_boxes(servers, uas_scenario, &[BoxId::A, BoxId::B])
    }

    /// Like [`HaPair::boot`] but only `which` boxes are powered on (the
    /// others are prepared and can be [`HaPair::power_on`]ed later).
    pub fn boot_boxes(servers: usize, uas_scenario: &str, which: &[BoxId]) -> Result<HaPair> {
        Self::boot_opts(
            servers,
            uas_scenario,
            &PairBoot {
                which: which.to_vec(),
                ..PairBoot::default()
            },
        )
    }

    /// Like [`HaPair::boot_boxes`] with the advert interval (centiseconds) and each
    /// QEMU's hard lifetime chosen (benchmarks: the product default 5 cs, long soaks).
    pub fn boot_with(
        servers: usize,
        uas_scenario: &str,
        which: &[BoxId],
        advert_cs: u16,
        vm_lifetime: Duration,
    ) -> Result<HaPair> {
        Self::boot_image(servers, uas_scenario, which, advert_cs, vm_lifetime, None)
    }

    /// Like [`HaPair::boot_with`] on another image (benchmarks: the keepalived
    /// pair variant of tests/bench/build-keepalived-image.sh), each box booted
    /// with `kabench.box=a|b` on its kernel command line to pick its files.
    /// `None`: the dev image, no extra command line.
    pub fn boot_image(
        servers: usize,
        uas_scenario: &str,
        which: &[BoxId],
        advert_cs: u16,
        vm_lifetime: Duration,
        variant: Option<Image>,
    ) -> Result<HaPair> {
        Self::boot_opts(
            servers,
            uas_scenario,
            &PairBoot {
                which: which.to_vec(),
                advert_cs,
                vm_lifetime,
                variant,
                disks: None,
            },
        )
    }

    /// Like [`HaPair::boot`] with both boxes booted through GRUB, each from its own
    /// copy of the A/B boot disk `disks.boot_disk` (built with the test shell on its
    /// command line), with `disks.extra_disks` attached read-only (e.g. a bundle).
    pub fn boot_from_disks(servers: usize, uas_scenario: &str, disks: &DiskBoot) -> Result<HaPair> {
        Self::boot_opts(
            servers,
            uas_scenario,
            &PairBoot {
                disks: Some(disks.clone()),
                ..PairBoot::default()
            },
        )
    }

    /// Builds the lab and boots the pair as `how` says (see [`HaPair::boot_boxes`]).
    pub fn boot_opts(servers: usize, uas_scenario: &str, how: &PairBoot) -> Result<HaPair> {
        let PairBoot {
            which,
            advert_cs,
            vm_lifetime,
            variant,
            disks,
        } = how.clone();
        let lab = Lab::new(&LabOptions {
            servers,
            client_addrs: 4,
            appliance: Appliance::Nothing,
        })?;
        let tag_boxes = variant.is_some();
        let image = match variant {
            Some(i) => i,
            None => ensure_image()?,
        };
        let bin = image_appliance_bin(&image);
        let factory = factory_toml()?;
        let mut boxes = Vec::new();
        for id in [BoxId::A, BoxId::B] {
            let spec = BoxSpec::of(id);
            lab.add_taps(&spec.wan_tap, &spec.lan_tap)?;
            let toml = lab.path(&format!("{}.toml", spec.hostname));
            let text = spec.config_toml(&factory, advert_cs)?;
            fs::write(&toml, &text).map_err(|source| LabError::Io {
                path: toml.clone(),
                source,
            })?;
            if let Err(why) = check_config(&bin, &toml)? {
                return Err(LabError::Unavailable(format!(
                    "the image's firmware rejects the HA config {}: {why}",
                    toml.display()
                )));
            }
            let disk = lab.path(&format!("{}-store.img", spec.hostname));
            write_store(&bin, &disk, &toml, &spec.hostname)?;
            let mut vo = VmOptions::new(image.clone());
            vo.wan_tap = Some(spec.wan_tap.clone());
            vo.lan_tap = Some(spec.lan_tap.clone());
            vo.wan_mac = Some(spec.wan_mac.to_string());
            vo.lan_mac = Some(spec.lan_mac.to_string());
            vo.netns = Some(lab.switch_ns.clone());
            vo.store_disk_path = Some(disk.clone());
            vo.hard_timeout = vm_lifetime;
            vo.monitor = true;
            let mut boot_disk = None;
            if let Some(d) = &disks {
                let own = lab.path(&format!("{}-boot.img", spec.hostname));
                fs::copy(&d.boot_disk, &own).map_err(|source| LabError::Io {
                    path: own.clone(),
                    source,
                })?;
                vo.boot_disk = Some(own.clone());
                vo.extra_disks = d.extra_disks.clone();
                boot_disk = Some(own);
            }
            if tag_boxes {
                vo.extra_cmdline.push(format!(
                    "kabench.box={}",
                    spec.hostname.trim_start_matches("sip-lb-")
                ));
            }
            boxes.push(HaBox {
                spec,
                vm: None,
                disk,
                boot_disk,
                opts: vo,
                boot_id: None,
            });
        }
        let mut it = boxes.into_iter();
        let (Some(a), Some(b)) = (it.next(), it.next()) else {
            return Err(LabError::Evidence("two boxes expected".into()));
        };
        let mut pair = HaPair {
            boxes: [a, b],
            uas: vec![None; servers],
            lab,
        };
        for i in 0..servers {
            pair.uas[i] = Some(sipp::start_uas(&mut pair.lab, i, uas_scenario, 1000)?);
        }
        // One after the other, in the order given: without preemption the
        // first box up becomes master, so booting A first makes the
        // starting roles deterministic (A master, B backup).
        for id in &which {
            let vm = boot_vm(&pair.boxes[id.index()].opts)?;
            pair.boxes[id.index()].vm = Some(vm);
            pair.wait_up(*id, BOOT_TIMEOUT)?;
        }
        Ok(pair)
    }

    /// Box `id`.
    pub fn bx(&mut self, id: BoxId) -> &mut HaBox {
        &mut self.boxes[id.index()]
    }

    /// Box `id`'s spec.
    pub fn spec(&self, id: BoxId) -> &BoxSpec {
        &self.boxes[id.index()].spec
    }

    /// Box `id`'s running VM.
    pub fn vm(&mut self, id: BoxId) -> Result<&mut Vm> {
        self.boxes[id.index()]
            .vm
            .as_mut()
            .ok_or_else(|| LabError::Evidence(format!("box {id:?} is powered off")))
    }

    /// Runs a command in box `id`'s test shell; error unless it exits 0.
    pub fn guest(&mut self, id: BoxId, cmd: &str) -> Result<String> {
        Ok(self.vm(id)?.shell_ok(cmd)?)
    }

    /// Waits until box `id`'s test shell answers and its kernel's IPVS table
    /// balances the VIP over every server (both boxes program it).
    pub fn wait_up(&mut self, id: BoxId, limit: Duration) -> Result<()> {
        let t = self.vm(id)?.wait_shell(limit)?;
        eprintln!(
            "pair: box {id:?} test shell up {:.1} s after QEMU start",
            t.as_secs_f64()
        );
        let servers = self.lab.server_addrs();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let t = self.guest(id, "cat /proc/net/ip_vs")?;
            let ok = parse_ip_vs(&t, VIP, SIP_PORT).is_some_and(|s| {
                servers
                    .iter()
                    .all(|a| s.dests.iter().any(|(d, _, w)| d == a && *w > 0))
            });
            if ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let dmesg = self.guest(id, "dmesg | tail -40").unwrap_or_default();
                return Err(LabError::Timeout(
                    READY_TIMEOUT,
                    format!(
                        "box {id:?}: VIP balancing over every server\n{t}\ndmesg tail:\n{dmesg}"
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Which of the VIP (on eth0) and the LAN gateway (on eth1) box `id`
    /// holds, from `ip -4 addr` in its shell.
    pub fn holds(&mut self, id: BoxId) -> Result<(bool, bool)> {
        let out = self.guest(id, "ip -4 -o addr show")?;
        Ok((has_addr(&out, VIP), has_addr(&out, LAN_GATEWAY)))
    }

    /// Power cut: QEMU killed. Returns the instant (µs since the epoch).
    pub fn power_off(&mut self, id: BoxId) -> u64 {
        if let Some(mut vm) = self.boxes[id.index()].vm.take() {
            vm.kill();
        }
        now_us()
    }

    /// Boots box `id` again with its store disk (returns once QEMU runs;
    /// wait with [`HaPair::wait_up`]).
    pub fn power_on(&mut self, id: BoxId) -> Result<()> {
        if self.boxes[id.index()].vm.is_some() {
            return Err(LabError::Evidence(format!("box {id:?} is already on")));
        }
        let vm = boot_vm(&self.boxes[id.index()].opts)?;
        self.boxes[id.index()].vm = Some(vm);
        Ok(())
    }

    /// SIGKILLs box `id`'s daemon (no orderly stop) and waits until init has
    /// respawned it. Returns (instant of the kill, old pid, new pid).
    pub fn kill_daemon(&mut self, id: BoxId) -> Result<(u64, u32, u32)> {
        let vm = self.vm(id)?;
        let old = guest::daemon_pid(vm)?
            .ok_or_else(|| LabError::Evidence(format!("box {id:?}: no daemon running")))?;
        vm.shell_ok(&format!("kill -9 {old}"))?;
        let t = now_us();
        let new = guest::wait_new_daemon(vm, old, Duration::from_secs(30))?;
        Ok((t, old, new))
    }

    /// Pulls (or plugs back) box `id`'s cable on `side`: the switch port
    /// goes down and the guest NIC loses carrier (QEMU `set_link`), like a
    /// real unplugged cable. Returns the instant.
    pub fn cable(&mut self, id: BoxId, side: Side, connected: bool) -> Result<u64> {
        let (tap, netdev) = match side {
            Side::Wan => (self.spec(id).wan_tap.clone(), "wan"),
            Side::Lan => (self.spec(id).lan_tap.clone(), "lan"),
        };
        let onoff = if connected { "on" } else { "off" };
        if connected {
            self.vm(id)?
                .monitor(&format!("set_link {netdev} {onoff}"))?;
            self.lab.set_port(&tap, true)?;
        } else {
            self.lab.set_port(&tap, false)?;
            self.vm(id)?
                .monitor(&format!("set_link {netdev} {onoff}"))?;
        }
        Ok(now_us())
    }

    /// Orderly reboot of box `id` (`reboot` in its shell: init stops the
    /// daemon with SIGTERM first). Returns the instant; the box comes back
    /// by itself (wait with [`HaPair::wait_rebooted`]).
    pub fn reboot(&mut self, id: BoxId) -> Result<u64> {
        let boot_id = self.guest(id, "cat /proc/sys/kernel/random/boot_id")?;
        self.boxes[id.index()].boot_id = Some(boot_id.trim().to_owned());
        let vm = self.vm(id)?;
        vm.test_port().send(b"reboot\n")?;
        Ok(now_us())
    }

    /// After [`HaPair::reboot`]: waits until the shell answers from a new
    /// boot (another kernel boot id), then as [`HaPair::wait_up`].
    pub fn wait_rebooted(&mut self, id: BoxId, limit: Duration) -> Result<()> {
        let old = self.boxes[id.index()].boot_id.take().unwrap_or_default();
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // The old shell may still answer while the old system shuts down,
            // and a command may die with it: only the new boot id counts.
            let vm = self.vm(id)?;
            let poll = left.min(Duration::from_secs(10));
            let answered = vm
                .wait_shell(poll)
                .and_then(|_| vm.shell_timeout("cat /proc/sys/kernel/random/boot_id", poll));
            if let Ok((out, 0)) = answered {
                if !out.trim().is_empty() && out.trim() != old {
                    break;
                }
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout(
                    limit,
                    format!("box {id:?} to boot again"),
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        self.wait_up(id, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_differ_and_follow_the_spec() {
        let (a, b) = (BoxSpec::of(BoxId::A), BoxSpec::of(BoxId::B));
        assert_eq!(a.wan, Ipv4Addr::new(203, 0, 113, 2));
        assert_eq!(b.lan, Ipv4Addr::new(198, 51, 100, 3));
        assert_eq!((a.priority, b.priority), (150, 100));
        assert_ne!(a.wan_mac, b.wan_mac);
        assert_ne!(a.lan_mac, b.lan_mac);
        assert_ne!(a.wan_tap, b.wan_tap);
        assert_eq!(BoxId::A.other(), BoxId::B);
    }

    #[test]
    fn rewrites_the_shipped_factory_config() {
        let f = factory_toml().unwrap();
        let t = BoxSpec::of(BoxId::B).config_toml(&f, 20).unwrap();
        assert!(t.contains("hostname = \"sip-lb-b\""), "{t}");
        assert!(t.contains("address = \"203.0.113.3/24\""), "{t}");
        assert!(t.contains("address = \"198.51.100.3/24\""), "{t}");
        assert!(!t.contains("198.51.100.1/24"), "{t}");
        assert!(t.contains("lan_gateway = \"198.51.100.1\""), "{t}");
        assert!(t.contains("priority = 100\n"), "{t}");
        assert_eq!(t.matches("[ha]").count(), 1, "{t}");
        assert_eq!(t.matches("enabled = true\nvrid").count(), 1, "{t}");
        // Service sections after [ha] are untouched.
        assert!(t.contains("vip = \"203.0.113.10\""), "{t}");
        assert!(rewrite_config("x = 1\n", "h", "w", "l", "[ha]\n").is_err());
    }
}
