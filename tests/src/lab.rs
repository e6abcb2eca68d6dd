//! The SIP lab: network namespaces wired around the appliance.
//!
//! ```text
//!   client ns (203.0.113.1 = WAN gateway, clients 203.0.113.100..)
//!        | veth "cl"
//!   switch ns:  bridge "brw" --- "tapw"  (appliance eth0, WAN)
//!               bridge "brl" --- "tapl"  (appliance eth1, LAN)
//!        | veth "s0".."sN"
//!   server ns i (198.51.100.11+i/24, default gw 198.51.100.1)
//! ```
//!
//! QEMU runs inside the switch namespace (`ip netns exec <switch> qemu ...`)
//! and attaches to the persistent taps `tapw`/`tapl` created here, so no
//! interface of the lab ever appears in the host namespace. Without a VM the
//! same attachment points can be filled by a plain Linux router namespace
//! ([`Appliance::Router`]) to test the wiring and the SIP scenarios alone.
//!
//! Every name carries the pid and a per-process counter, so tests run in
//! parallel; [`Lab`]'s `Drop` kills every process in the lab's namespaces and
//! deletes them, even on panic, and [`cleanup_stale`] removes leftovers of
//! crashed runs (namespaces whose pid is dead).

pub mod booted;
pub mod capture;
pub mod evidence;
pub mod frames;
pub mod ha;
pub mod ha_rounds;
pub mod interop;
pub mod keepalived;
pub mod pair;
pub mod pcap;
pub mod rfc5424;
pub mod rounds;

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Prefix of every namespace and scratch directory the lab creates.
pub const PREFIX: &str = "siplab-";
/// Appliance WAN address (eth0).
pub const APPLIANCE_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// Appliance LAN address (eth1): the servers' default gateway.
pub const APPLIANCE_LAN: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// WAN gateway, held by the client namespace.
pub const WAN_GATEWAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The virtual IP of the factory/demo service.
pub const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// SIP port everywhere in the lab.
pub const SIP_PORT: u16 = 5060;
/// Name of the WAN tap (inside the switch namespace) QEMU attaches to.
pub const WAN_TAP: &str = "tapw";
/// Name of the LAN tap (inside the switch namespace) QEMU attaches to.
pub const LAN_TAP: &str = "tapl";
/// Discard device a silent server's output is routed to (see [`Lab::set_server_silent`]).
const SINK: &str = "silent0";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Errors of the lab harness; the message names the command and its output.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A helper program could not be started at all.
    #[error("cannot run `{cmd}`: {source} (is it installed? run tests/setup-host.sh)")]
    Spawn {
        /// The command line.
        cmd: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A helper program exited with an error.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// Something did not happen within its time bound.
    #[error("timed out after {0:?}: {1}")]
    Timeout(Duration, String),
    /// A file of the lab could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Bad evidence (capture file, sipp statistics).
    #[error("{0}")]
    Evidence(String),
    /// The lab cannot run on this host (not root, tool missing).
    #[error("lab unavailable: {0}")]
    Unavailable(String),
}

/// Result alias for the lab.
pub type Result<T> = std::result::Result<T, LabError>;

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion; error (with stderr) unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = output(cmd)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError::Failed {
            cmd: describe(cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Runs a command to completion and returns its raw output, whatever the status.
pub fn output(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            cmd: describe(cmd),
            source,
        })
}

/// `ip <args>` in the host namespace.
pub fn ip(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args))
}

/// A command that runs `program` inside namespace `ns`.
pub fn ns_cmd(ns: &str, program: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, program]);
    c
}

/// Runs `program args` inside namespace `ns`; error unless it exits 0.
pub fn ns_run(ns: &str, program: &str, args: &[&str]) -> Result<String> {
    run(ns_cmd(ns, program).args(args))
}

/// Waits for a child at most `limit`, killing it (SIGKILL) when the time is up.
pub fn wait_bounded(child: &mut Child, limit: Duration, what: &str) -> Result<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Ok(st),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LabError::Timeout(limit, what.to_owned()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(source) => {
                return Err(LabError::Spawn {
                    cmd: what.to_owned(),
                    source,
                })
            }
        }
    }
}

/// Polls `cond` every 100 ms until it is true or `limit` passes.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LabError::Timeout(limit, what.to_owned()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the lab can run here: root, and the tools it drives exist.
/// Tests call this first and pass `Err` to [`crate::skip::skip`] (a failure in CI).
pub fn check_host() -> std::result::Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the SIP lab needs root (network namespaces, taps)".into());
    }
    for tool in ["ip", "tc", "sipp", "tcpdump"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            return Err(format!(
                "`{tool}` not found in PATH: run tests/setup-host.sh (packages iproute2, sip-tester, tcpdump)"
            ));
        }
    }
    Ok(())
}

/// What fills the appliance's place between the two bridges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appliance {
    /// Persistent taps `tapw`/`tapl` in the switch namespace, for QEMU.
    Vm,
    /// A plain Linux router namespace holding the appliance's addresses
    /// (no IPVS: the host kernel has none); for testing the lab itself.
    Router,
    /// Nothing: the caller attaches its own boxes ([`Lab::add_taps`],
    /// [`Lab::add_host`]), e.g. an HA pair or keepalived nodes.
    Nothing,
}

/// How to build the lab.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Number of SIP server namespaces (at least 3 for the tests).
    pub servers: usize,
    /// Number of client addresses 203.0.113.100.. in the client namespace.
    pub client_addrs: usize,
    /// What sits between the bridges.
    pub appliance: Appliance,
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            servers: 3,
            client_addrs: 4,
            appliance: Appliance::Vm,
        }
    }
}

/// One SIP server host of the lab.
#[derive(Debug, Clone)]
pub struct Server {
    /// Its namespace.
    pub ns: String,
    /// Its address (198.51.100.11 + index).
    pub addr: Ipv4Addr,
    /// Its interface inside its namespace.
    pub iface: String,
    /// The switch-side end of its veth (in the switch namespace).
    pub port: String,
}

impl Server {
    /// Its SIP address.
    pub fn sip(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.addr, SIP_PORT)
    }
}

/// A lab instance; dropping it tears everything down.
#[derive(Debug)]
pub struct Lab {
    /// Unique id: `siplab-<pid>-<n>`.
    pub id: String,
    /// The switch namespace (bridges, taps; QEMU runs here).
    pub switch_ns: String,
    /// The client namespace.
    pub client_ns: String,
    /// The router namespace, with [`Appliance::Router`].
    pub router_ns: Option<String>,
    /// The server hosts.
    pub servers: Vec<Server>,
    /// Client addresses (203.0.113.100..).
    pub clients: Vec<Ipv4Addr>,
    /// Scratch directory for captures and logs (removed on drop unless a
    /// panic is unwinding or SIPLAB_KEEP is set).
    pub dir: PathBuf,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
}

impl Lab {
    /// Builds the lab. Removes stale labs of dead processes first.
    pub fn new(opts: &LabOptions) -> Result<Lab> {
        if let Err(why) = check_host() {
            return Err(LabError::Unavailable(why));
        }
        cleanup_stale();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("{PREFIX}{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&id);
        fs::create_dir_all(&dir).map_err(|source| LabError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut lab = Lab {
            switch_ns: format!("{id}-sw"),
            client_ns: format!("{id}-c"),
            router_ns: None,
            servers: Vec::new(),
            clients: (0..opts.client_addrs.max(1))
                .map(|i| Ipv4Addr::new(203, 0, 113, 100 + i as u8))
                .collect(),
            id,
            dir,
            namespaces: Vec::new(),
            children: Vec::new(),
        };
        lab.build(opts)?;
        Ok(lab)
    }

    fn add_ns(&mut self, name: &str) -> Result<()> {
        ip(&["netns", "add", name])?;
        self.namespaces.push(name.to_owned());
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        // No IPv6 chatter (router solicitations) in the lab.
        let _ = ns_run(name, "sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        Ok(())
    }

    fn build(&mut self, opts: &LabOptions) -> Result<()> {
        let sw = self.switch_ns.clone();
        self.add_ns(&sw)?;
        for br in ["brw", "brl"] {
            ip(&[
                "-n",
                &sw,
                "link",
                "add",
                br,
                "type",
                "bridge",
                "forward_delay",
                "0",
                "stp_state",
                "0",
            ])?;
            ip(&["-n", &sw, "link", "set", br, "up"])?;
        }

        // Client side: the WAN gateway address plus the client addresses, and
        // no route beyond the WAN subnet.
        let cns = self.client_ns.clone();
        self.add_ns(&cns)?;
        self.veth(&cns, "cl", "brw")?;
        ip(&[
            "-n",
            &cns,
            "addr",
            "add",
            &format!("{WAN_GATEWAY}/24"),
            "dev",
            "eth0",
        ])?;
        for c in self.clients.clone() {
            ip(&["-n", &cns, "addr", "add", &format!("{c}/24"), "dev", "eth0"])?;
        }

        for i in 0..opts.servers {
            let ns = format!("{}-s{i}", self.id);
            self.add_ns(&ns)?;
            let port = format!("s{i}");
            self.veth(&ns, &port, "brl")?;
            let addr = Ipv4Addr::new(198, 51, 100, 11 + i as u8);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&[
                "-n",
                &ns,
                "route",
                "add",
                "default",
                "via",
                &APPLIANCE_LAN.to_string(),
            ])?;
            self.servers.push(Server {
                ns,
                addr,
                iface: "eth0".into(),
                port,
            });
        }

        match opts.appliance {
            Appliance::Vm => {
                for (tap, br) in [(WAN_TAP, "brw"), (LAN_TAP, "brl")] {
                    ip(&["-n", &sw, "tuntap", "add", "dev", tap, "mode", "tap"])?;
                    ip(&["-n", &sw, "link", "set", tap, "master", br, "up"])?;
                }
            }
            Appliance::Router => {
                let r = format!("{}-r", self.id);
                self.add_ns(&r)?;
                for (port, br, inner, addr) in [
                    (WAN_TAP, "brw", "eth0", APPLIANCE_WAN),
                    (LAN_TAP, "brl", "eth1", APPLIANCE_LAN),
                ] {
                    ip(&[
                        "-n", &sw, "link", "add", port, "type", "veth", "peer", "name", inner,
                        "netns", &r,
                    ])?;
                    ip(&["-n", &sw, "link", "set", port, "master", br, "up"])?;
                    ip(&["-n", &r, "addr", "add", &format!("{addr}/24"), "dev", inner])?;
                    ip(&["-n", &r, "link", "set", inner, "up"])?;
                }
                ns_run(&r, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
                self.router_ns = Some(r);
            }
            Appliance::Nothing => {}
        }
        Ok(())
    }

    /// Adds persistent taps `wan_tap` (on brw) and `lan_tap` (on brl) in the
    /// switch namespace for one more VM; names must be unique in the lab.
    pub fn add_taps(&self, wan_tap: &str, lan_tap: &str) -> Result<()> {
        let sw = &self.switch_ns;
        for (tap, br) in [(wan_tap, "brw"), (lan_tap, "brl")] {
            ip(&["-n", sw, "tuntap", "add", "dev", tap, "mode", "tap"])?;
            ip(&["-n", sw, "link", "set", tap, "master", br, "up"])?;
        }
        Ok(())
    }

    /// Adds a host namespace `<id>-<suffix>` attached to the bridges: one
    /// veth per entry, `(switch port name, bridge, inner name, address/prefix,
    /// MAC)`. Returns the namespace (removed with the lab).
    pub fn add_host(
        &mut self,
        suffix: &str,
        links: &[(&str, &str, &str, &str, &str)],
    ) -> Result<String> {
        let ns = format!("{}-{suffix}", self.id);
        self.add_ns(&ns)?;
        let sw = self.switch_ns.clone();
        for (port, br, inner, addr, mac) in links {
            ip(&[
                "-n", &sw, "link", "add", port, "type", "veth", "peer", "name", inner, "netns", &ns,
            ])?;
            ip(&["-n", &sw, "link", "set", port, "master", br, "up"])?;
            ip(&["-n", &ns, "link", "set", inner, "address", mac])?;
            ip(&["-n", &ns, "addr", "add", addr, "dev", inner])?;
            ip(&["-n", &ns, "link", "set", inner, "up"])?;
        }
        Ok(ns)
    }

    /// Blocks (or unblocks) a bridge port: the bridge stops forwarding to and
    /// from it while both ends keep their carrier, like a broken switch
    /// path or a partition (STP is off in the lab, so the state is ours).
    pub fn set_port_forwarding(&self, port: &str, forwarding: bool) -> Result<()> {
        // `bridge link set ... state` (AF_BRIDGE) sticks; `ip link set type
        // bridge_slave state` was reset to forwarding by the kernel.
        let state = if forwarding { "3" } else { "0" };
        run(Command::new("bridge").args([
            "-n",
            &self.switch_ns,
            "link",
            "set",
            "dev",
            port,
            "state",
            state,
        ]))?;
        let shown =
            run(Command::new("bridge").args(["-n", &self.switch_ns, "link", "show", "dev", port]))?;
        let want = if forwarding {
            "state forwarding"
        } else {
            "state disabled"
        };
        if shown.contains(want) {
            Ok(())
        } else {
            Err(LabError::Evidence(format!(
                "bridge port {port} is not in {want}: {shown}"
            )))
        }
    }

    /// Sets a switch port (tap or veth end in the switch namespace) up or down.
    pub fn set_port(&self, port: &str, up: bool) -> Result<()> {
        ip(&[
            "-n",
            &self.switch_ns,
            "link",
            "set",
            port,
            if up { "up" } else { "down" },
        ])
        .map(|_| ())
    }

    /// veth from the switch (`port`, enslaved to `bridge`) to `eth0` in `ns`.
    fn veth(&self, ns: &str, port: &str, bridge: &str) -> Result<()> {
        let sw = &self.switch_ns;
        ip(&[
            "-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        ip(&["-n", sw, "link", "set", port, "master", bridge, "up"])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        Ok(())
    }

    /// The VIP's SIP address.
    pub fn vip(&self) -> SocketAddrV4 {
        SocketAddrV4::new(VIP, SIP_PORT)
    }

    /// Server addresses, in order.
    pub fn server_addrs(&self) -> Vec<Ipv4Addr> {
        self.servers.iter().map(|s| s.addr).collect()
    }

    /// A file path in the lab's scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Starts `program args` in `ns` in the background, stdout/stderr to
    /// `<dir>/<log>`; the lab kills it on drop.
    pub fn spawn(&mut self, ns: &str, program: &str, args: &[&str], log: &str) -> Result<u32> {
        let child = self.spawn_child(ns, program, args, log)?;
        let pid = child.id();
        self.children.push((format!("{program} in {ns}"), child));
        Ok(pid)
    }

    /// Like [`Lab::spawn`] but hands the child to the caller (who must wait
    /// for it; the lab still kills everything left in its namespaces on drop).
    pub fn spawn_child(&self, ns: &str, program: &str, args: &[&str], log: &str) -> Result<Child> {
        let path = self.path(log);
        let f = fs::File::create(&path).map_err(|source| LabError::Io {
            path: path.clone(),
            source,
        })?;
        let f2 = f.try_clone().map_err(|source| LabError::Io {
            path: path.clone(),
            source,
        })?;
        let mut cmd = ns_cmd(ns, program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            // `ip netns exec` execs the program: the pid is the program's.
            ;
        cmd.spawn().map_err(|source| LabError::Spawn {
            cmd: describe(&cmd),
            source,
        })
    }

    /// Kills a process started with [`Lab::spawn`] (SIGKILL) and reaps it.
    pub fn kill(&mut self, pid: u32) {
        if let Some(pos) = self.children.iter().position(|(_, c)| c.id() == pid) {
            let (_, mut c) = self.children.remove(pos);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether a process started with [`Lab::spawn`] is still running.
    pub fn running(&mut self, pid: u32) -> bool {
        self.children
            .iter_mut()
            .find(|(_, c)| c.id() == pid)
            .map(|(_, c)| matches!(c.try_wait(), Ok(None)))
            .unwrap_or(false)
    }

    /// Takes a server's link down (`down == true`) or up again, inside its namespace.
    pub fn set_server_link(&self, server: usize, up: bool) -> Result<()> {
        let s = &self.servers[server];
        ip(&[
            "-n",
            &s.ns,
            "link",
            "set",
            &s.iface,
            if up { "up" } else { "down" },
        ])?;
        if up {
            // The default route went away with the link.
            let _ = ip(&[
                "-n",
                &s.ns,
                "route",
                "replace",
                "default",
                "via",
                &APPLIANCE_LAN.to_string(),
            ]);
        }
        Ok(())
    }

    /// Makes a server silent (or normal again): it still receives every
    /// packet (and still answers ARP, like a hung process or a firewall
    /// dropping its output), but nothing it sends leaves: its default route
    /// and the route to the appliance's LAN address point at an `ifb` device,
    /// which discards what it is given. Sends succeed locally, so the server
    /// process sees no error (blackhole routes made `sendto` fail with
    /// EINVAL, and sipp then crashed while aborting a call, so the "silent"
    /// server came back dead). The host kernel has neither netem nor tc
    /// actions, and a zero-length qdisc would also swallow ARP replies.
    pub fn set_server_silent(&self, server: usize, silent: bool) -> Result<()> {
        let s = &self.servers[server];
        let gw = APPLIANCE_LAN.to_string();
        if silent {
            if ip(&["-n", &s.ns, "link", "show", SINK]).is_err() {
                ip(&["-n", &s.ns, "link", "add", SINK, "type", "ifb"])?;
            }
            ip(&["-n", &s.ns, "link", "set", SINK, "up"])?;
            ip(&["-n", &s.ns, "route", "replace", "default", "dev", SINK])?;
            ip(&[
                "-n",
                &s.ns,
                "route",
                "replace",
                &format!("{gw}/32"),
                "dev",
                SINK,
            ])?;
        } else {
            ip(&[
                "-n",
                &s.ns,
                "route",
                "del",
                &format!("{gw}/32"),
                "dev",
                SINK,
            ])?;
            ip(&[
                "-n", &s.ns, "route", "replace", "default", "via", &gw, "dev", &s.iface,
            ])?;
        }
        Ok(())
    }

    /// Adds a route in the client namespace (only for router-mode wiring
    /// tests, where there is no VIP: the client reaches servers directly).
    pub fn client_route_to_servers(&self) -> Result<()> {
        ip(&[
            "-n",
            &self.client_ns,
            "route",
            "add",
            "198.51.100.0/24",
            "via",
            &APPLIANCE_WAN.to_string(),
        ])
        .map(|_| ())
    }

    fn teardown(&mut self) {
        for (_, mut c) in self.children.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.drain(..).rev() {
            remove_ns(&ns);
        }
        let keep = std::thread::panicking() || std::env::var_os("SIPLAB_KEEP").is_some();
        if keep {
            eprintln!("siplab: kept captures and logs in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Kills every process in a namespace and deletes it.
fn remove_ns(ns: &str) {
    for _ in 0..3 {
        let pids = ip(&["netns", "pids", ns]).unwrap_or_default();
        let pids: Vec<i32> = pids
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if pids.is_empty() {
            break;
        }
        for p in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = ip(&["netns", "del", ns]);
}

/// Removes labs left by crashed runs: namespaces named `siplab-<pid>-...`
/// whose pid is no longer alive (and their scratch directories).
pub fn cleanup_stale() {
    let list = ip(&["netns", "list"]).unwrap_or_default();
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if let Some(pid) = stale_pid(name) {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                remove_ns(name);
            }
        }
    }
    if let Ok(rd) = fs::read_dir(std::env::temp_dir()) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = stale_pid(&name) {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

fn stale_pid(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_names_parse() {
        assert_eq!(stale_pid("siplab-123-4-sw"), Some(123));
        assert_eq!(stale_pid("siplab-99-0"), Some(99));
        assert_eq!(stale_pid("other-123"), None);
        assert_eq!(stale_pid("siplab-x-1"), None);
    }
}
