//! The lab with the appliance image booted in QEMU between its bridges.
//!
//! [`LabVm::boot`] builds the lab, boots the VM in the switch namespace on the
//! lab's taps, starts a sipp server on every server namespace and waits until
//! the kernel's IPVS table (read through the VM's test shell, not through the
//! appliance) balances the VIP over every server. Failure injection, config
//! changes through the appliance CLI, and daemon restarts are helpers here;
//! conclusions come from captures ([`super::evidence`]).

use super::capture::Capture;
use super::{Lab, LabError, LabOptions, Result, LAN_TAP, VIP};
use crate::sipp;
use crate::vm::{ensure_image_for, Board, Vm, VmOptions};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Boot bound under TCG.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// How long the appliance may take to program IPVS after boot or a restart.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

impl From<crate::vm::VmError> for LabError {
    fn from(e: crate::vm::VmError) -> Self {
        LabError::Evidence(format!("VM: {e}"))
    }
}

/// How a server is taken out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Its sipp process is killed: the port closes (ICMP port unreachable).
    Killed,
    /// Its link goes down.
    LinkDown,
    /// It receives everything but nothing it sends leaves.
    Silent,
    /// Its sipp process is stopped (SIGSTOP): a hung server. Datagrams queue
    /// in its socket unanswered, no ICMP; restoring sends SIGCONT, and it
    /// then answers what queued meanwhile.
    Hung,
}

impl Failure {
    /// All failure modes, in test order.
    pub const ALL: [Failure; 3] = [Failure::Killed, Failure::LinkDown, Failure::Silent];
}

/// One IPVS virtual service as the kernel shows it in /proc/net/ip_vs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelService {
    /// The service line (`UDP  CB00710A:13C4 rr persistent 60 ...`).
    pub line: String,
    /// Real servers and their weights.
    pub dests: Vec<(Ipv4Addr, u16, i64)>,
}

impl KernelService {
    /// The persistence timeout as /proc shows it: in kernel jiffies (see
    /// [`LabVm::hz`]), if persistent.
    pub fn persistence_jiffies(&self) -> Option<u32> {
        let mut w = self.line.split_whitespace();
        w.position(|t| t == "persistent")?;
        w.next()?.parse().ok()
    }
}

fn hex_addr(s: &str) -> Option<(Ipv4Addr, u16)> {
    let (a, p) = s.split_once(':')?;
    let a = u32::from_str_radix(a, 16).ok()?;
    let p = u16::from_str_radix(p, 16).ok()?;
    Some((Ipv4Addr::from(a), p))
}

/// Parses /proc/net/ip_vs; returns the service for `vip:port` if present.
pub fn parse_ip_vs(text: &str, vip: Ipv4Addr, port: u16) -> Option<KernelService> {
    let mut found: Option<KernelService> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("-> ") {
            if let Some(svc) = found.as_mut() {
                let mut w = rest.split_whitespace();
                let (Some(addr), Some(_fwd), Some(weight)) = (w.next(), w.next(), w.next()) else {
                    continue;
                };
                if let (Some((a, p)), Ok(wt)) = (hex_addr(addr), weight.parse()) {
                    svc.dests.push((a, p, wt));
                }
            }
        } else if t.starts_with("UDP") || t.starts_with("TCP") {
            if found.is_some() {
                break;
            }
            let key = t.split_whitespace().nth(1).and_then(hex_addr);
            if key == Some((vip, port)) {
                found = Some(KernelService {
                    line: t.to_owned(),
                    dests: Vec::new(),
                });
            }
        }
    }
    found
}

/// Now, microseconds since the epoch (the captures' clock).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The lab with a booted appliance. Field order matters: the VM is dropped
/// (QEMU killed) before the lab's namespaces go.
pub struct LabVm {
    /// The VM (test shell on ttyS1/hvc0, console on ttyS0/ttyAMA0).
    pub vm: Vm,
    /// The sipp server pid per server (None while stopped).
    pub uas: Vec<Option<u32>>,
    /// The scenario the servers run.
    pub uas_scenario: String,
    /// Servers' `-d` hold time (for `uas_bye.xml`).
    pub uas_hold_ms: u32,
    /// The guest kernel's CONFIG_HZ (/proc/net/ip_vs shows timeouts in jiffies).
    pub hz: u32,
    /// The namespaces, captures and processes.
    pub lab: Lab,
}

/// CONFIG_HZ of the built kernel, from the `kernel.config` build-image.sh
/// leaves next to the bzImage.
fn kernel_hz(kernel: &std::path::Path) -> Result<u32> {
    let cfg = kernel.with_file_name("kernel.config");
    let text = std::fs::read_to_string(&cfg).map_err(|source| LabError::Io {
        path: cfg.clone(),
        source,
    })?;
    text.lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ=")?.trim().parse().ok())
        .ok_or_else(|| LabError::Evidence(format!("{}: no CONFIG_HZ", cfg.display())))
}

impl LabVm {
    /// Builds the lab, boots the image on its taps, starts sipp servers
    /// running `uas_scenario` and waits until the VIP balances over all of
    /// them (kernel table, up to [`READY_TIMEOUT`]).
    pub fn boot(opts: &LabOptions, uas_scenario: &str) -> Result<LabVm> {
        Self::boot_full(Board::X86_64, opts, uas_scenario, |_| {})
    }

    /// [`LabVm::boot`] with the image of `board`.
    pub fn boot_on(board: Board, opts: &LabOptions, uas_scenario: &str) -> Result<LabVm> {
        Self::boot_full(board, opts, uas_scenario, |_| {})
    }

    /// [`LabVm::boot`] with a last word on the VM's options (e.g. `rtc_base`).
    pub fn boot_with(
        opts: &LabOptions,
        uas_scenario: &str,
        tweak: impl FnOnce(&mut VmOptions),
    ) -> Result<LabVm> {
        Self::boot_full(Board::X86_64, opts, uas_scenario, tweak)
    }

    fn boot_full(
        board: Board,
        opts: &LabOptions,
        uas_scenario: &str,
        tweak: impl FnOnce(&mut VmOptions),
    ) -> Result<LabVm> {
        let t0 = Instant::now();
        let lab = Lab::new(opts)?;
        eprintln!(
            "lab: namespaces, bridges and taps ready after {:.1} s; checking the image...",
            t0.elapsed().as_secs_f64()
        );
        let image = ensure_image_for(board)?;
        eprintln!(
            "lab: image ready after {:.1} s; booting the appliance in QEMU (TCG: about a minute)...",
            t0.elapsed().as_secs_f64()
        );
        let hz = kernel_hz(&image.kernel)?;
        let mut vo = VmOptions::new(image);
        vo.wan_tap = Some(super::WAN_TAP.into());
        vo.lan_tap = Some(LAN_TAP.into());
        vo.netns = Some(lab.switch_ns.clone());
        vo.hard_timeout = Duration::from_secs(1500);
        tweak(&mut vo);
        let vm = Vm::boot(vo)?;
        let mut lv = LabVm {
            vm,
            uas: vec![None; lab.servers.len()],
            uas_scenario: uas_scenario.into(),
            uas_hold_ms: 1000,
            hz,
            lab,
        };
        let t = lv.vm.wait_shell(BOOT_TIMEOUT)?;
        eprintln!(
            "lab: test shell up {:.1} s after QEMU start",
            t.as_secs_f64()
        );
        for i in 0..lv.lab.servers.len() {
            lv.start_server(i)?;
        }
        eprintln!(
            "lab: {} SIP servers (sipp) started; waiting for the appliance to balance over them...",
            lv.lab.servers.len()
        );
        lv.wait_balancing(READY_TIMEOUT)?;
        eprintln!(
            "lab: VIP balancing over {} servers {:.1} s after QEMU start",
            lv.lab.servers.len(),
            lv.vm.started().elapsed().as_secs_f64()
        );
        Ok(lv)
    }

    /// Runs a command in the guest's root shell; error unless it exits 0.
    pub fn guest(&mut self, cmd: &str) -> Result<String> {
        Ok(self.vm.shell_ok(cmd)?)
    }

    /// The VIP's service in the kernel table, if any.
    pub fn kernel_service(&mut self) -> Result<Option<KernelService>> {
        let t = self.guest("cat /proc/net/ip_vs")?;
        Ok(parse_ip_vs(&t, VIP, super::SIP_PORT))
    }

    /// The VIP's persistence timeout in seconds, from the kernel table.
    pub fn persistence_s(&mut self) -> Result<Option<u32>> {
        let hz = self.hz.max(1);
        Ok(self
            .kernel_service()?
            .and_then(|s| s.persistence_jiffies())
            .map(|j| j / hz))
    }

    /// Waits until the kernel's VIP service satisfies `ok`.
    pub fn wait_weights(
        &mut self,
        limit: Duration,
        what: &str,
        ok: impl Fn(&KernelService) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + limit;
        let mut last = None;
        loop {
            let s = self.kernel_service()?;
            if s.as_ref().is_some_and(&ok) {
                return Ok(());
            }
            last = s.or(last);
            if Instant::now() >= deadline {
                let dmesg = self.guest("dmesg | tail -40").unwrap_or_default();
                return Err(LabError::Timeout(
                    limit,
                    format!("{what}; kernel IPVS service: {last:?}\nguest dmesg tail:\n{dmesg}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Lets the box route WAN to LAN (`router.route_wan_to_lan`, off by default), so
    /// clients can call the servers directly through it (the benchmark's direct path).
    /// Restarts the daemon and waits until it has applied the option and balances again.
    pub fn route_wan_to_lan(&mut self) -> Result<()> {
        self.set_config_keys(&[("route_wan_to_lan", "true")])?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let v = self.guest("cat /proc/sys/net/ipv4/conf/eth0/forwarding")?;
            if v.trim() == "1" {
                break;
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout(
                    Duration::from_secs(120),
                    "the daemon to turn on WAN forwarding".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        self.wait_balancing(Duration::from_secs(120))
    }

    /// Waits until every lab server is in the VIP's table with weight > 0.
    pub fn wait_balancing(&mut self, limit: Duration) -> Result<()> {
        let servers = self.lab.server_addrs();
        self.wait_weights(limit, "VIP balancing over every server", |s| {
            servers
                .iter()
                .all(|a| s.dests.iter().any(|(d, _, w)| d == a && *w > 0))
        })
    }

    /// Starts (again) the sipp server of server `i`.
    pub fn start_server(&mut self, i: usize) -> Result<()> {
        let sc = self.uas_scenario.clone();
        let pid = sipp::start_uas(&mut self.lab, i, &sc, self.uas_hold_ms)?;
        self.uas[i] = Some(pid);
        Ok(())
    }

    /// Restarts every server with another scenario.
    pub fn switch_servers(&mut self, scenario: &str, hold_ms: u32) -> Result<()> {
        self.uas_scenario = scenario.into();
        self.uas_hold_ms = hold_ms;
        for i in 0..self.uas.len() {
            if let Some(p) = self.uas[i].take() {
                self.lab.kill(p);
            }
            self.start_server(i)?;
        }
        Ok(())
    }

    /// Takes server `i` out in the given way; returns the instant (µs since
    /// the epoch) right after the failure took effect.
    pub fn fail_server(&mut self, i: usize, how: Failure) -> Result<u64> {
        match how {
            Failure::Killed => {
                if let Some(p) = self.uas[i].take() {
                    self.lab.kill(p);
                }
            }
            Failure::LinkDown => self.lab.set_server_link(i, false)?,
            Failure::Silent => self.lab.set_server_silent(i, true)?,
            Failure::Hung => self.signal_server(i, nix::sys::signal::Signal::SIGSTOP)?,
        }
        Ok(now_us())
    }

    /// Sends `sig` to server `i`'s sipp.
    fn signal_server(&self, i: usize, sig: nix::sys::signal::Signal) -> Result<()> {
        let pid = self.uas[i]
            .ok_or_else(|| LabError::Evidence(format!("server {i} has no sipp running")))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig)
            .map_err(|e| LabError::Evidence(format!("{sig} to server {i}'s sipp ({pid}): {e}")))
    }

    /// Replaces server `i`'s sipp (killed, or stopped) with a fresh one: a
    /// failed server restarted, with nothing of what queued while it was
    /// hung. Returns the instant (µs).
    pub fn restart_server(&mut self, i: usize) -> Result<u64> {
        if let Some(p) = self.uas[i].take() {
            // SIGKILL also ends a stopped process.
            self.lab.kill(p);
        }
        self.start_server(i)?;
        Ok(now_us())
    }

    /// Undoes [`LabVm::fail_server`]; returns the instant it took effect.
    pub fn restore_server(&mut self, i: usize, how: Failure) -> Result<u64> {
        match how {
            Failure::Killed => self.start_server(i)?,
            Failure::LinkDown => self.lab.set_server_link(i, true)?,
            Failure::Silent => self.lab.set_server_silent(i, false)?,
            Failure::Hung => self.signal_server(i, nix::sys::signal::Signal::SIGCONT)?,
        }
        Ok(now_us())
    }

    /// Pid of the appliance daemon in the guest, if running.
    pub fn daemon_pid(&mut self) -> Result<Option<u32>> {
        let out = self.guest(
            "for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null); \
             case \"$c\" in *appliance\\ daemon*) echo ${p#/proc/};; esac; done; true",
        )?;
        Ok(out.split_whitespace().filter_map(|p| p.parse().ok()).next())
    }

    /// Kills the daemon (SIGKILL: no orderly stop) and waits until init has
    /// respawned it (a new pid). Returns (old pid, new pid).
    pub fn kill_daemon(&mut self) -> Result<(u32, u32)> {
        let old = self
            .daemon_pid()?
            .ok_or_else(|| LabError::Evidence("no appliance daemon running in the guest".into()))?;
        self.guest(&format!("kill -9 {old}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(new) = self.daemon_pid()? {
                if new != old {
                    return Ok((old, new));
                }
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout(
                    Duration::from_secs(30),
                    "init to respawn the appliance daemon".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Changes top-level `key = value` lines of the service config: takes the
    /// config the daemon exports (`appliance config export`), falling back to
    /// the factory file, rewrites the keys with sed, imports it with
    /// `appliance config import` and restarts the daemon so it applies.
    pub fn set_config_keys(&mut self, keys: &[(&str, &str)]) -> Result<()> {
        let mut sed = String::new();
        for (k, v) in keys {
            sed.push_str(&format!(" -e 's/^{k} *=.*/{k} = {v}/'"));
        }
        self.guest(
            "appliance config export /tmp/lab-base.toml >/dev/null 2>&1 \
             || cp /etc/appliance/factory.toml /tmp/lab-base.toml",
        )?;
        self.guest(&format!("sed{sed} /tmp/lab-base.toml > /tmp/lab.toml"))?;
        for (k, v) in keys {
            let got = self.guest(&format!("grep -c '^{k} = {v}$' /tmp/lab.toml || true"))?;
            if got.trim() == "0" {
                return Err(LabError::Evidence(format!(
                    "the exported config has no line `{k} = ...` to change"
                )));
            }
        }
        let (out, code) = self
            .vm
            .shell("appliance config import /tmp/lab.toml 2>&1")?;
        if code != 0 {
            return Err(LabError::Failed {
                cmd: "appliance config import /tmp/lab.toml (in the guest)".into(),
                status: format!("exit {code}"),
                stderr: out,
            });
        }
        self.kill_daemon()?;
        Ok(())
    }

    /// Drains server `i` of service `sip` through the admin CLI in the guest
    /// (`appliance drain SERVICE ADDR:PORT`, the console's control request).
    pub fn drain(&mut self, i: usize) -> Result<String> {
        let target = self.lab.servers[i].sip();
        let cmd = format!("appliance drain sip {target} 2>&1");
        let (out, code) = self.vm.shell(&cmd)?;
        if code != 0 {
            return Err(LabError::Failed {
                cmd: format!("{cmd} (in the guest)"),
                status: format!("exit {code}"),
                stderr: out,
            });
        }
        Ok(out)
    }

    /// Starts a capture on the appliance's LAN attachment (what it sends to
    /// and receives from the servers).
    pub fn capture_lan(&self, name: &str) -> Result<Capture> {
        Capture::start(&self.lab.switch_ns, LAN_TAP, self.lab.path(name))
    }

    /// Starts a capture in the client namespace (what the clients see).
    pub fn capture_wan(&self, name: &str) -> Result<Capture> {
        Capture::start(&self.lab.client_ns, "eth0", self.lab.path(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_ip_vs() {
        let t = "IP Virtual Server version 1.2.1 (size=4096)\n\
                 Prot LocalAddress:Port Scheduler Flags\n  \
                 -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n\
                 UDP  C0000201:13C4 rr\n  \
                 -> C6336415:13C4      Masq    1      0          0\n\
                 UDP  CB00710A:13C4 rr persistent 8 ops\n  \
                 -> C633640B:13C4      Masq    1      0          3\n  \
                 -> C633640C:13C4      Masq    0      0          0\n";
        let s = parse_ip_vs(t, VIP, 5060).unwrap();
        assert_eq!(s.persistence_jiffies(), Some(8));
        assert_eq!(
            s.dests,
            vec![
                (Ipv4Addr::new(198, 51, 100, 11), 5060, 1),
                (Ipv4Addr::new(198, 51, 100, 12), 5060, 0)
            ]
        );
        assert!(parse_ip_vs(t, Ipv4Addr::new(192, 0, 2, 9), 5060).is_none());
    }
}
