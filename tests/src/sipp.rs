//! sipp (Debian package sip-tester) as SIP servers and clients in lab
//! namespaces. Scenarios live in `tests/sipp/`:
//! - `uas.xml`: server; OPTIONS → 200; INVITE/ACK, in-dialog re-INVITE and
//!   UPDATE (session-timer refreshes), BYE → 200; in-dialog requests of an
//!   unknown dialog → 481.
//! - `uas_bye.xml`: server that hangs up itself after `-d` ms.
//! - `uac.xml`: client INVITE/ACK/hold/BYE.
//! - `uac_refresh.xml`: client with session timers, three refreshes
//!   (UPDATE, re-INVITE, UPDATE) `-d` ms apart, BYE after another `-d`.
//! - `uac_peer_bye.xml`: client waiting for the server's BYE.
//! - `uac_stray_{bye,update,reinvite,ack_update}.xml`: an in-dialog request for a
//!   dialog the server never saw; `uas.xml` must answer 481 (so a request
//!   the balancer sends to the wrong server fails the call visibly).
//!
//! The client's statistics (successful/failed calls) come from sipp's own
//! `-trace_stat` CSV; where calls went comes from packet captures
//! ([`crate::lab::capture`]).

use crate::lab::{self, Lab, LabError, Result};
use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// Path of a scenario file shipped in `tests/sipp/`.
pub fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sipp")
        .join(name)
}

/// How the client's calls use UDP sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Every call from one socket (sipp `-t u1`, its default): an SBC or
    /// proxy in front of the servers.
    SingleSocket,
    /// A new socket, hence source port, per call (sipp `-t un`).
    SocketPerCall,
}

/// Starts a sipp server with `scenario_file` on server `index` (port 5060);
/// returns its pid once it is bound (bounded by 10 s). `hold_ms` is sipp's
/// `-d` (only used by `uas_bye.xml`).
pub fn start_uas(lab: &mut Lab, index: usize, scenario_file: &str, hold_ms: u32) -> Result<u32> {
    let s = lab.servers[index].clone();
    let sf = scenario(scenario_file);
    let log = format!("uas-{index}.log");
    let err = lab.path(&format!("uas-{index}-errors.log"));
    let pid = lab.spawn(
        &s.ns,
        "sipp",
        &[
            "-sf",
            &sf.to_string_lossy(),
            "-i",
            &s.addr.to_string(),
            "-p",
            "5060",
            "-d",
            &hold_ms.to_string(),
            "-nostdin",
            "-trace_err",
            "-error_file",
            &err.to_string_lossy(),
            // Each probe or call is a sipp "call"; never stop on a count.
            "-max_recv_loops",
            "10000",
        ],
        &log,
    )?;
    let ns = s.ns.clone();
    let bound = lab::wait_until(Duration::from_secs(10), "sipp server to bind", || {
        lab::ns_run(&ns, "ss", &["-Hlun", "sport = :5060"])
            .map(|o| !o.trim().is_empty())
            .unwrap_or(false)
    });
    if bound.is_err() && !lab.running(pid) {
        let text = fs::read_to_string(lab.path(&log)).unwrap_or_default();
        return Err(LabError::Failed {
            cmd: format!("sipp server on {}", s.addr),
            status: "exited".into(),
            stderr: text.trim().to_owned(),
        });
    }
    bound.map(|_| pid)
}

/// A client load.
#[derive(Debug, Clone)]
pub struct UacOptions {
    /// Scenario file name in `tests/sipp/`.
    pub scenario: String,
    /// Total calls (`-m`).
    pub calls: u32,
    /// New calls per second (`-r`).
    pub rate: u32,
    /// Hold time in ms (`-d`, the scenario's `<pause/>`).
    pub hold_ms: u32,
    /// Socket use.
    pub transport: Transport,
    /// Local address (one of the lab's client addresses).
    pub local: Ipv4Addr,
    /// Local port (the single socket's, or the first with a socket per call).
    pub port: u16,
    /// Where the calls go (the VIP, or a server directly).
    pub target: SocketAddrV4,
    /// Per-message receive timeout: a call waiting longer fails (`-recv_timeout`).
    pub recv_timeout_ms: u32,
    /// Hard wall-clock bound for the whole run; sipp is killed after it.
    pub time_limit: Duration,
}

impl UacOptions {
    /// `calls` basic calls at `rate`/s, 500 ms hold, from the first client
    /// address, to `target`.
    pub fn basic(lab: &Lab, target: SocketAddrV4, calls: u32, rate: u32) -> Self {
        let secs = calls / rate.max(1) + 30;
        Self {
            scenario: "uac.xml".into(),
            calls,
            rate,
            hold_ms: 500,
            transport: Transport::SingleSocket,
            local: lab.clients[0],
            port: 5061,
            target,
            recv_timeout_ms: 8000,
            time_limit: Duration::from_secs(secs as u64),
        }
    }
}

/// Outcome of a client run, from sipp's statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UacStats {
    /// Calls created.
    pub created: u64,
    /// Calls that completed their scenario.
    pub successful: u64,
    /// Calls that failed (timeouts, unexpected messages, retransmissions).
    pub failed: u64,
    /// sipp's exit code (0: all calls succeeded, 1: some failed), if it exited.
    pub exit_code: Option<i32>,
}

/// A running sipp client.
#[derive(Debug)]
pub struct Uac {
    child: Option<Child>,
    /// sipp's `-trace_stat` CSV file.
    pub stat_file: PathBuf,
    /// sipp's error log.
    pub err_file: PathBuf,
    /// When it started.
    pub started: Instant,
    opts: UacOptions,
}

impl Uac {
    /// Starts a client in the lab's client namespace; `tag` names its files.
    pub fn start(lab: &Lab, opts: &UacOptions, tag: &str) -> Result<Uac> {
        let stat_file = lab.path(&format!("uac-{tag}.csv"));
        let err_file = lab.path(&format!("uac-{tag}-errors.log"));
        let sf = scenario(&opts.scenario);
        let mut args: Vec<String> = vec![
            opts.target.to_string(),
            "-sf".into(),
            sf.to_string_lossy().into_owned(),
            "-i".into(),
            opts.local.to_string(),
            "-p".into(),
            opts.port.to_string(),
            "-m".into(),
            opts.calls.to_string(),
            "-r".into(),
            opts.rate.to_string(),
            "-d".into(),
            opts.hold_ms.to_string(),
            "-recv_timeout".into(),
            opts.recv_timeout_ms.to_string(),
            "-nostdin".into(),
            "-trace_stat".into(),
            "-stf".into(),
            stat_file.to_string_lossy().into_owned(),
            "-fd".into(),
            "1".into(),
            "-trace_err".into(),
            "-error_file".into(),
            err_file.to_string_lossy().into_owned(),
        ];
        if opts.transport == Transport::SocketPerCall {
            // sipp refuses -t un unless its socket budget fits the fd limit.
            args.extend(["-t", "un", "-max_socket", "2000"].map(String::from));
        }
        let argv: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let child = lab.spawn_child(&lab.client_ns, "sipp", &argv, &format!("uac-{tag}.log"))?;
        Ok(Uac {
            child: Some(child),
            stat_file,
            err_file,
            started: Instant::now(),
            opts: opts.clone(),
        })
    }

    /// Asks sipp to stop creating calls and exit once the running calls
    /// are done (SIGUSR1); wait for it with [`Uac::wait`].
    pub fn soft_stop(&self) {
        if let Some(c) = &self.child {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGUSR1,
            );
        }
    }

    /// Statistics so far (sipp writes a row every second).
    pub fn stats(&self) -> Result<UacStats> {
        parse_stats(&fs::read_to_string(&self.stat_file).unwrap_or_default())
    }

    /// Waits for sipp to finish all its calls (bounded by the options'
    /// time limit, then killed) and returns the final statistics.
    pub fn wait(mut self) -> Result<UacStats> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| LabError::Evidence("sipp client already waited for".into()))?;
        let left = self.opts.time_limit.saturating_sub(self.started.elapsed());
        let st = lab::wait_bounded(&mut child, left, "sipp client to finish its calls")?;
        let mut s = self.stats()?;
        s.exit_code = st.code();
        if !matches!(st.code(), Some(0) | Some(1)) {
            let errs = fs::read_to_string(&self.err_file).unwrap_or_default();
            return Err(LabError::Failed {
                cmd: "sipp client".into(),
                status: st.to_string(),
                stderr: errs.lines().take(20).collect::<Vec<_>>().join("\n"),
            });
        }
        Ok(s)
    }

    /// Runs a client to completion.
    pub fn run(lab: &Lab, opts: &UacOptions, tag: &str) -> Result<UacStats> {
        Uac::start(lab, opts, tag)?.wait()
    }
}

impl Drop for Uac {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Parses the last row of a sipp `-trace_stat` CSV (`;`-separated).
pub fn parse_stats(csv: &str) -> Result<UacStats> {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Ok(UacStats::default());
    };
    let Some(last) = lines.next_back() else {
        return Ok(UacStats::default());
    };
    let names: Vec<&str> = header.split(';').collect();
    let vals: Vec<&str> = last.split(';').collect();
    let get = |name: &str| -> Result<u64> {
        let i = names
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| LabError::Evidence(format!("sipp statistics lack column {name}")))?;
        vals.get(i)
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| LabError::Evidence(format!("sipp statistics: bad {name} value")))
    };
    Ok(UacStats {
        created: get("TotalCallCreated")?,
        successful: get("SuccessfulCall(C)")?,
        failed: get("FailedCall(C)")?,
        exit_code: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_from_last_row() {
        let csv = "StartTime;TotalCallCreated;SuccessfulCall(C);FailedCall(C);\n\
                   t;1;0;0;\n\
                   t;10;8;2;\n";
        assert_eq!(
            parse_stats(csv).unwrap(),
            UacStats {
                created: 10,
                successful: 8,
                failed: 2,
                exit_code: None
            }
        );
        assert_eq!(parse_stats("").unwrap(), UacStats::default());
        assert!(parse_stats("A;B\n1;2\n").is_err());
    }

    #[test]
    fn scenarios_exist() {
        for s in [
            "uas.xml",
            "uas_bye.xml",
            "uac.xml",
            "uac_refresh.xml",
            "uac_peer_bye.xml",
            "uac_stray_bye.xml",
            "uac_stray_update.xml",
            "uac_stray_reinvite.xml",
            "uac_stray_ack_update.xml",
        ] {
            assert!(scenario(s).is_file(), "{s}");
        }
    }
}
