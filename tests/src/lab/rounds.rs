//! Measured rounds on a booted lab, shared by the tests and the benchmarks
//! (failure detection and call-load figures): a server failure under steady call load (detection, calls
//! still steered to the dead server, collateral failures, return), a call
//! load with something happening in the middle (daemon restart, drain), and
//! call-rate stepping for data-path throughput.

use super::booted::{now_us, Failure, LabVm};
use super::evidence;
use super::pcap::SipPacket;
use super::Result;
use crate::sipp::{Transport, Uac, UacOptions, UacStats};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Steady load: a single-socket client and a socket-per-call client.
#[derive(Debug, Clone)]
pub struct Load {
    /// New calls per second from the single-socket client (client address 0).
    pub single_rate: u32,
    /// New calls per second from the socket-per-call client (client address 1).
    /// Keep `single_rate + per_call_rate` prime to the server count: with 4 + 2
    /// on 3 servers rr locked into a cycle where one client never met one server.
    pub per_call_rate: u32,
    /// Hold time of each call, ms.
    pub hold_ms: u32,
    /// How long new calls keep starting.
    pub duration: Duration,
    /// Base local port; each round should use its own.
    pub port: u16,
}

impl Default for Load {
    fn default() -> Self {
        Load {
            single_rate: 4,
            per_call_rate: 3,
            hold_ms: 500,
            duration: Duration::from_secs(30),
            port: 5100,
        }
    }
}

/// The running clients of a [`Load`].
pub struct Running {
    uacs: Vec<Uac>,
    /// When the load started (µs since the epoch).
    pub started_us: u64,
}

impl Load {
    /// Starts the clients; `tag` names their files.
    pub fn start(&self, lv: &LabVm, tag: &str) -> Result<Running> {
        let secs = self.duration.as_secs() as u32;
        let mut uacs = Vec::new();
        for (i, (rate, tr)) in [
            (self.single_rate, Transport::SingleSocket),
            (self.per_call_rate, Transport::SocketPerCall),
        ]
        .into_iter()
        .enumerate()
        {
            if rate == 0 {
                continue;
            }
            let mut o = UacOptions::basic(&lv.lab, lv.lab.vip(), rate * secs, rate);
            o.hold_ms = self.hold_ms;
            o.transport = tr;
            o.local = lv.lab.clients[i];
            o.port = self.port + (i as u16) * 1000;
            o.time_limit = self.duration
                + Duration::from_millis(self.hold_ms as u64)
                + Duration::from_secs(60);
            uacs.push(Uac::start(&lv.lab, &o, &format!("{tag}-{i}"))?);
        }
        Ok(Running {
            uacs,
            started_us: now_us(),
        })
    }
}

impl Running {
    /// Calls created, successful and failed so far, summed over the clients (sipp writes
    /// its statistics every second; a client that has not written yet counts nothing).
    pub fn totals(&self) -> UacStats {
        self.uacs
            .iter()
            .filter_map(|u| u.stats().ok())
            .fold(UacStats::default(), |a, s| UacStats {
                created: a.created + s.created,
                successful: a.successful + s.successful,
                failed: a.failed + s.failed,
                exit_code: None,
            })
    }

    /// Waits for every client to finish; their statistics in start order.
    pub fn wait(self) -> Result<Vec<UacStats>> {
        self.uacs.into_iter().map(|u| u.wait()).collect()
    }
}

/// What one failure round measured (all from captures and the kernel table
/// as read through the guest shell; nothing from the appliance's reports).
#[derive(Debug, Clone)]
pub struct FailureFigures {
    /// How the server failed.
    pub how: Failure,
    /// Milliseconds from the failure to the kernel table showing the server
    /// out (weight 0 or gone), as polled (upper bound; poll ≈ a shell round trip).
    pub kernel_out_ms: Option<u64>,
    /// Milliseconds from the failure to the last new call that still reached
    /// the dead server (0: none after the failure).
    pub steering_ms: u64,
    /// New calls that reached the dead server after the failure.
    pub new_calls_after_failure: usize,
    /// New calls that reached the dead server after the kernel showed it out.
    pub new_calls_after_out: usize,
    /// Calls started after the kernel showed the server out (until it was
    /// restored) that did not complete.
    pub failed_calls_after_out: Vec<String>,
    /// Calls whose first packet reached a live server and did not complete.
    pub failed_calls_on_live_servers: Vec<String>,
    /// Calls that did not complete and whose INVITE reached no server at all
    /// (lost in the appliance): collateral damage like the above.
    pub failed_calls_unrouted: Vec<String>,
    /// Calls that did not complete and had reached the dead server (in
    /// progress at the failure, or sent there before detection).
    pub failed_calls_on_dead_server: usize,
    /// New calls of the single-socket client (one UDP 5-tuple for all its
    /// calls) that reached the dead server before the failure: shows the
    /// stale-connection case was really exercised.
    pub single_socket_before: usize,
    /// New calls of the single-socket client that reached the dead server
    /// after the kernel showed it out (must be 0: no stale UDP connection
    /// entry may keep steering it there).
    pub single_socket_after_out: usize,
    /// Milliseconds from restoring the server to its first new call.
    pub return_ms: Option<u64>,
    /// New calls it got after being restored.
    pub calls_after_return: usize,
    /// Per-server table of the whole round.
    pub table: String,
    /// sipp client statistics.
    pub sipp: Vec<UacStats>,
}

/// Polls the kernel table until `server`'s state matches `out` (weight 0 /
/// absent when `out`, weight > 0 otherwise); returns the instant (µs) or None
/// when `limit` passes.
pub fn poll_kernel(
    lv: &mut LabVm,
    server: usize,
    out: bool,
    limit: Duration,
) -> Result<Option<u64>> {
    let addr = lv.lab.servers[server].addr;
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let s = lv.kernel_service()?;
        let w = s
            .as_ref()
            .and_then(|s| s.dests.iter().find(|d| d.0 == addr))
            .map(|d| d.2)
            .unwrap_or(0);
        if (w <= 0) == out {
            return Ok(Some(now_us()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(None)
}

/// One failure round on server `server`: steady load for `pre`, failure,
/// `down` of outage, restore, load continues to the end of `load.duration`.
pub fn failure_round(
    lv: &mut LabVm,
    server: usize,
    how: Failure,
    load: &Load,
    pre: Duration,
    down: Duration,
) -> Result<FailureFigures> {
    let servers = lv.lab.server_addrs();
    let dead = servers[server];
    let tag = format!("{how:?}").to_lowercase();
    let mut lan = lv.capture_lan(&format!("lan-{tag}.pcap"))?;
    let mut wan = lv.capture_wan(&format!("wan-{tag}.pcap"))?;
    let run = load.start(lv, &tag)?;
    std::thread::sleep(pre);
    let t0 = lv.fail_server(server, how)?;
    let out_at = poll_kernel(lv, server, true, down)?;
    let elapsed = Duration::from_micros(now_us().saturating_sub(t0));
    std::thread::sleep(down.saturating_sub(elapsed));
    let t1 = lv.restore_server(server, how)?;
    if let Some(pid) = lv.uas[server] {
        if !lv.lab.running(pid) {
            return Err(super::LabError::Evidence(format!(
                "the sipp server on {dead} died during the {how:?} outage (harness fault, \
                 see uas-{server}-errors.log in {})",
                lv.lab.dir.display()
            )));
        }
    }
    let _ = poll_kernel(lv, server, false, Duration::from_secs(60))?;
    let sipp = run.wait()?;
    let lan_p = lan.stop()?;
    let wan_p = wan.stop()?;
    let single = (load.single_rate > 0).then(|| lv.lab.clients[0]);
    Ok(analyse_failure(
        how, &lan_p, &wan_p, &servers, dead, single, t0, out_at, t1, sipp,
    ))
}

#[allow(clippy::too_many_arguments)]
fn analyse_failure(
    how: Failure,
    lan: &[SipPacket],
    wan: &[SipPacket],
    servers: &[std::net::Ipv4Addr],
    dead: std::net::Ipv4Addr,
    single: Option<std::net::Ipv4Addr>,
    t0: u64,
    out_at: Option<u64>,
    t1: u64,
    sipp: Vec<UacStats>,
) -> FailureFigures {
    let after_fail = evidence::new_calls_after(lan, servers, dead, t0);
    let during: Vec<_> = after_fail.iter().filter(|(_, t)| *t < t1).collect();
    let after_out = out_at
        .map(|o| during.iter().filter(|(_, t)| *t >= o).count())
        .unwrap_or(during.len());
    let steering_ms = during.last().map(|(_, t)| (t - t0) / 1000).unwrap_or(0);
    let failed_calls_after_out = out_at
        .map(|o| evidence::incomplete_calls_between(wan, o, t1))
        .unwrap_or_default();
    let done: BTreeSet<String> = evidence::completed_calls(wan);
    let arrivals = evidence::first_arrivals(lan, servers);
    let failed_calls_on_live_servers = arrivals
        .iter()
        .filter(|(c, (s, _))| *s != dead && !done.contains(*c))
        .map(|(c, _)| c.clone())
        .collect();
    let failed_calls_on_dead_server = arrivals
        .iter()
        .filter(|(c, (s, _))| *s == dead && !done.contains(*c))
        .count();
    let failed_calls_unrouted = evidence::incomplete_calls_between(wan, 0, u64::MAX)
        .into_iter()
        .filter(|c| !arrivals.contains_key(c))
        .collect();
    let returned = evidence::new_calls_after(lan, servers, dead, t1);
    let (single_socket_before, single_socket_after_out) = match single {
        Some(c) => {
            let p = evidence::from_client(lan, c);
            let before = evidence::first_arrivals(&p, servers)
                .values()
                .filter(|(s, t)| *s == dead && *t < t0)
                .count();
            let from = out_at.unwrap_or(t0);
            let after = evidence::new_calls_after(&p, servers, dead, from)
                .iter()
                .filter(|(_, t)| *t < t1)
                .count();
            (before, after)
        }
        None => (0, 0),
    };
    FailureFigures {
        how,
        kernel_out_ms: out_at.map(|o| (o - t0) / 1000),
        steering_ms,
        new_calls_after_failure: during.len(),
        new_calls_after_out: after_out,
        failed_calls_after_out,
        failed_calls_on_live_servers,
        failed_calls_unrouted,
        failed_calls_on_dead_server,
        single_socket_before,
        single_socket_after_out,
        return_ms: returned.first().map(|(_, t)| (t - t1) / 1000),
        calls_after_return: returned.len(),
        table: evidence::table(&evidence::per_server(lan, servers)),
        sipp,
    }
}

/// What [`load_with_action`] returns: LAN capture, WAN capture, sipp
/// statistics, the action's instant (µs since the epoch), the action's result.
pub type ActionRound<T> = (Vec<SipPacket>, Vec<SipPacket>, Vec<UacStats>, u64, T);

/// A load with an action in its middle (daemon restart, drain): returns the
/// captures (LAN, WAN), the sipp statistics and the action's instant (µs).
pub fn load_with_action<T>(
    lv: &mut LabVm,
    load: &Load,
    tag: &str,
    at: Duration,
    action: impl FnOnce(&mut LabVm) -> Result<T>,
) -> Result<ActionRound<T>> {
    let mut lan = lv.capture_lan(&format!("lan-{tag}.pcap"))?;
    let mut wan = lv.capture_wan(&format!("wan-{tag}.pcap"))?;
    let run = load.start(lv, tag)?;
    std::thread::sleep(at);
    let t = now_us();
    let r = action(lv)?;
    let sipp = run.wait()?;
    Ok((lan.stop()?, wan.stop()?, sipp, t, r))
}

/// One step of a call-rate ramp.
#[derive(Debug, Clone)]
pub struct RateStep {
    /// Offered new calls per second.
    pub rate: u32,
    /// sipp's statistics.
    pub stats: UacStats,
}

impl RateStep {
    /// Failed calls as a fraction of created calls.
    pub fn failure_ratio(&self) -> f64 {
        if self.stats.created == 0 {
            1.0
        } else {
            self.stats.failed as f64 / self.stats.created as f64
        }
    }
}

/// Data-path throughput: runs `secs` seconds of socket-per-call load at each
/// rate in turn towards `target` (the VIP, or a server directly for the
/// physical limit); stops after the first step with ≥ 1% failed calls.
pub fn rate_steps(
    lv: &LabVm,
    target: std::net::SocketAddrV4,
    rates: &[u32],
    secs: u32,
    tag: &str,
) -> Result<Vec<RateStep>> {
    let mut out = Vec::new();
    for (i, &rate) in rates.iter().enumerate() {
        let mut o = UacOptions::basic(&lv.lab, target, rate * secs, rate);
        o.hold_ms = 0;
        o.transport = Transport::SocketPerCall;
        o.port = 20000 + (i as u16) * 10;
        o.recv_timeout_ms = 4000;
        o.time_limit = Duration::from_secs(secs as u64 + 60);
        let stats = Uac::run(&lv.lab, &o, &format!("{tag}-rate{rate}"))?;
        let step = RateStep { rate, stats };
        let bad = step.failure_ratio() >= 0.01;
        out.push(step);
        if bad {
            break;
        }
    }
    Ok(out)
}
