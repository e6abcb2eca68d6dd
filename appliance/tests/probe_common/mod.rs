//! Shared harness for the prober tests and benchmark: sipp UAS processes and a
//! two-namespace lab (LB side 198.51.100.1, server side 198.51.100.11 on a veth pair,
//! no route out). Everything is cleaned up in Drop.
#![allow(dead_code)]

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use appliance::config::{Config, Ipv4Net, ProbeSettings, RealServer};
use appliance::probe::{Health, HealthEvent};
use tokio::sync::mpsc;

#[path = "../../src/test_skip.rs"]
mod test_skip;
#[allow(unused_imports)] // the probe benchmark (an example) includes this file too
pub use test_skip::skip;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Path of a sipp scenario under tests/sipp.
pub fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

/// Why the sipp tests cannot run here, if they cannot.
pub fn skip_reason(need_netns: bool) -> Option<String> {
    if Command::new("sipp").arg("-v").output().is_err() {
        return Some("sipp not installed (apt-get install sip-tester)".into());
    }
    if need_netns && !nix::unistd::geteuid().is_root() {
        return Some("network namespace tests need root".into());
    }
    None
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Two namespaces joined by a veth pair: `lb` (198.51.100.1/24) and `srv`
/// (198.51.100.11/24). No default routes, so nothing leaves the pair.
pub struct NetLab {
    /// LB-side namespace name.
    pub lb: String,
    /// Server-side namespace name.
    pub srv: String,
}

impl NetLab {
    /// Create the lab; unique names (pid + counter) so tests run in parallel.
    pub fn new() -> Result<NetLab, String> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let lab = NetLab {
            lb: format!("probe-{pid}-{n}-lb"),
            srv: format!("probe-{pid}-{n}-srv"),
        };
        run("ip", &["netns", "add", &lab.lb])?;
        run("ip", &["netns", "add", &lab.srv])?;
        run(
            "ip",
            &[
                "link", "add", "name", "lan0", "netns", &lab.lb, "type", "veth", "peer", "name",
                "srv0", "netns", &lab.srv,
            ],
        )?;
        for (ns, dev, addr) in [
            (&lab.lb, "lan0", "198.51.100.1/24"),
            (&lab.srv, "srv0", "198.51.100.11/24"),
        ] {
            run("ip", &["-n", ns, "addr", "add", addr, "dev", dev])?;
            run("ip", &["-n", ns, "link", "set", dev, "up"])?;
            run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        // Deleting a namespace also destroys its end of the veth pair.
        let _ = run("ip", &["netns", "del", &self.lb]);
        let _ = run("ip", &["netns", "del", &self.srv]);
    }
}

/// Where a test runs: loopback or a fresh namespace lab.
#[derive(Clone, Debug)]
pub struct Env {
    /// Address the prober binds (config lan.address).
    pub lan: Ipv4Addr,
    /// Server address and port sipp listens on.
    pub server: SocketAddrV4,
    /// Namespace of the server side (None = current namespace).
    pub srv_ns: Option<String>,
    /// Namespace the prober runs in.
    pub lb_ns: Option<String>,
}

/// A free UDP port on loopback (the socket is closed again; tiny race accepted).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral UDP port on loopback")
}

impl Env {
    /// Loopback: prober on 127.0.0.1, server on 127.0.0.1:<free port>.
    pub fn loopback() -> Env {
        Env {
            lan: Ipv4Addr::LOCALHOST,
            server: SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_udp_port()),
            srv_ns: None,
            lb_ns: None,
        }
    }

    /// Namespace lab: prober in `lab.lb`, server 198.51.100.11:5060 in `lab.srv`.
    pub fn netns(lab: &NetLab) -> Env {
        Env {
            lan: Ipv4Addr::new(198, 51, 100, 1),
            server: SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 11), 5060),
            srv_ns: Some(lab.srv.clone()),
            lb_ns: Some(lab.lb.clone()),
        }
    }

    /// A config with one service and this env's server, tuned by `f`.
    pub fn config(&self, f: impl FnOnce(&mut ProbeSettings)) -> Config {
        let mut c = Config::builtin_default();
        c.lan.address = Ipv4Net {
            addr: self.lan,
            prefix: if self.lan.is_loopback() { 8 } else { 24 },
        };
        let svc = &mut c.services[0];
        svc.servers.clear();
        let _ = svc.servers.push(RealServer {
            address: *self.server.ip(),
            port: self.server.port(),
            weight: 1,
            state: Default::default(),
        });
        f(&mut svc.probe);
        c
    }

    /// Start a sipp UAS with `scenario` on the server address.
    pub fn sipp(&self, scenario_name: &str, keys: &[(&str, &str)]) -> Sipp {
        Sipp::start(self, scenario_name, keys)
    }

    /// Run `body` on a thread whose network namespace is the prober's, with a
    /// current-thread tokio runtime (so every socket the prober opens lives there).
    pub fn run(self, body: fn(Env) -> Pin<Box<dyn Future<Output = ()>>>) {
        let ns = self.lb_ns.clone();
        let h = std::thread::spawn(move || {
            if let Some(ns) = ns {
                let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns file");
                nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(body(self));
        });
        if let Err(p) = h.join() {
            std::panic::resume_unwind(p);
        }
    }
}

/// A running sipp process; killed (and reaped) on drop, even when stopped.
pub struct Sipp {
    child: Child,
    /// Port it listens on.
    pub port: u16,
}

impl Sipp {
    fn start(env: &Env, name: &str, keys: &[(&str, &str)]) -> Sipp {
        let path = scenario(name);
        let ip = env.server.ip().to_string();
        let port = env.server.port().to_string();
        let mut args: Vec<String> = Vec::new();
        if let Some(ns) = &env.srv_ns {
            args.extend(["netns", "exec", ns, "sipp"].map(String::from));
        }
        args.extend(
            [
                "-sf",
                path.to_str().expect("utf8 path"),
                "-i",
                &ip,
                "-p",
                &port,
                "-nostdin",
                // Safety net: a leaked sipp exits on its own.
                "-timeout",
                "300s",
            ]
            .map(String::from),
        );
        for (k, v) in keys {
            args.extend(["-key".to_string(), k.to_string(), v.to_string()]);
        }
        let prog = if env.srv_ns.is_some() { "ip" } else { "sipp" };
        let child = Command::new(prog)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sipp");
        let s = Sipp {
            child,
            port: env.server.port(),
        };
        s.wait_listening();
        s
    }

    /// Process id.
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    fn wait_listening(&self) {
        // /proc/<pid>/net/udp shows the sockets of sipp's own namespace.
        let want = format!(":{:04X} ", self.port);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(t) = std::fs::read_to_string(format!("/proc/{}/net/udp", self.child.id())) {
                if t.lines().skip(1).any(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .is_some_and(|a| format!("{a} ").ends_with(&want))
                }) && Self::exe_is_sipp(self.child.id())
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "sipp did not start listening on port {} within 10 s",
            self.port
        );
    }

    fn exe_is_sipp(pid: u32) -> bool {
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.to_string_lossy().contains("sipp"))
            .unwrap_or(false)
    }

    /// Freeze the process (a hung server: socket open, no replies, no ICMP).
    pub fn stop(&self) {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    }

    /// Resume after [`Sipp::stop`].
    pub fn cont(&self) {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    }

    /// Kill and reap now (the port closes: ICMP port unreachable from now on).
    pub fn kill(mut self) {
        self.kill_inner();
    }

    fn kill_inner(&mut self) {
        let _ = nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        self.kill_inner();
    }
}

/// Wait for the next health event (bounded).
pub async fn next_event(
    rx: &mut mpsc::Receiver<HealthEvent>,
    within: Duration,
) -> Option<HealthEvent> {
    tokio::time::timeout(within, rx.recv()).await.ok().flatten()
}

/// Wait until an event with `health` arrives; returns it and the time it took.
pub async fn wait_for(
    rx: &mut mpsc::Receiver<HealthEvent>,
    health: Health,
    within: Duration,
) -> Result<(HealthEvent, Duration), String> {
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) if ev.health == health => return Ok((ev, start.elapsed())),
            Ok(Some(ev)) => seen.push(ev),
            Ok(None) => return Err(format!("event channel closed; saw {seen:?}")),
            Err(_) => return Err(format!("no {health:?} within {within:?}; saw {seen:?}")),
        }
    }
}
