//! a. Failure detection: how fast each side takes a failed server out, and the calls it costs.

use super::*;

/// One failure-detection trial.
#[derive(Debug, Clone)]
pub(super) struct Trial {
    pub(super) how: Failure,
    /// Failure instant (µs, host clock = capture clock).
    pub(super) t0: u64,
    /// Kernel table showed the server out (µs), polled through the shell.
    pub(super) out_at: Option<u64>,
    /// Server restored (µs).
    pub(super) t1: u64,
}

/// Detection results of one side/setting.
#[derive(Debug, Clone, Default)]
pub(super) struct Detection {
    /// Per failure mode: ms from failure to the last new INVITE that reached
    /// the dead server (capture evidence), one value per detected trial.
    pub(super) steering_ms: Vec<(Failure, f64)>,
    /// Per failure mode: ms from failure to the kernel showing it out (polled).
    pub(super) kernel_ms: Vec<(Failure, f64)>,
    /// Trials where the kernel never showed the server out within the bound.
    pub(super) undetected: Vec<Failure>,
    /// Per failure mode: new calls that reached the dead server after the
    /// kernel showed it out.
    pub(super) late_calls: Vec<(Failure, usize)>,
    /// Per trial: (failure mode, new calls caught by the failure = first
    /// INVITE reached the failed server between failure and restore, of
    /// those the calls never completed = no 200 to their BYE in the capture).
    pub(super) caught: Vec<(Failure, usize, usize)>,
}

impl Detection {
    pub(super) fn ms(&self, how: Failure) -> Vec<f64> {
        self.steering_ms
            .iter()
            .filter(|(h, _)| *h == how)
            .map(|(_, v)| *v)
            .collect()
    }
    /// Mean caught and lost (never completed) new calls per failure.
    pub(super) fn per_failure(&self, how: Failure) -> Option<(f64, f64, usize)> {
        let v: Vec<_> = self.caught.iter().filter(|c| c.0 == how).collect();
        (!v.is_empty()).then(|| {
            let n = v.len() as f64;
            (
                v.iter().map(|c| c.1 as f64).sum::<f64>() / n,
                v.iter().map(|c| c.2 as f64).sum::<f64>() / n,
                v.len(),
            )
        })
    }
    pub(super) fn kernel(&self, how: Failure) -> Vec<f64> {
        self.kernel_ms
            .iter()
            .filter(|(h, _)| *h == how)
            .map(|(_, v)| *v)
            .collect()
    }
}

/// Takes server `i` out: `Killed` = its sipp SIGKILLed (port closed);
/// `Silent` = its sipp SIGSTOPped (a hung server: datagrams queue, nothing
/// is answered, no ICMP). Returns the instant (µs).
pub(super) fn fail(lv: &mut LabVm, i: usize, how: Failure) -> Res<u64> {
    match how {
        Failure::Silent => signal_uas(lv, i, nix::sys::signal::Signal::SIGSTOP),
        other => lv.fail_server(i, other).map_err(err),
    }
}

/// Undoes [`fail`]: SIGCONT, or a new sipp for a killed one.
pub(super) fn restore(lv: &mut LabVm, i: usize, how: Failure) -> Res<u64> {
    match how {
        Failure::Silent => signal_uas(lv, i, nix::sys::signal::Signal::SIGCONT),
        other => lv.restore_server(i, other).map_err(err),
    }
}

/// Sends `sig` to server `i`'s sipp; returns the instant (µs).
pub(super) fn signal_uas(lv: &LabVm, i: usize, sig: nix::sys::signal::Signal) -> Res<u64> {
    let pid = lv.uas[i].ok_or("server not running")?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).map_err(err)?;
    Ok(appliance_tests::lab::booted::now_us())
}

/// `trials` rounds of {killed, silent} on server 1 under a socket-per-call
/// load to the VIP, one capture on the appliance's LAN attachment for all.
pub(super) fn detection(
    lv: &mut LabVm,
    side: Side,
    args: &Args,
    trials: usize,
    detect_limit: Duration,
    tag: &str,
    mut after_out: impl FnMut(&mut LabVm, Failure) -> Res<()>,
) -> Res<Detection> {
    let server = 1;
    let servers = lv.lab.server_addrs();
    let dead = servers[server];
    let mut cap = lv.capture_lan(&format!("detect-{tag}.pcap")).map_err(err)?;
    let load = background_load(lv, args.load_rate, 5200, &format!("detect-{tag}"))?;
    std::thread::sleep(Duration::from_secs(3));
    let mut done = Vec::new();
    for t in 0..trials {
        for how in [Failure::Killed, Failure::Silent] {
            // Back in and settled (ICMP rate-limit bucket refilled, see docs/probe.md).
            poll_out(lv, side, server, false, Duration::from_secs(60))?;
            std::thread::sleep(Duration::from_millis(2500));
            let t0 = fail(lv, server, how)?;
            let out_at = poll_out(lv, side, server, true, detect_limit)?;
            if out_at.is_some() {
                after_out(lv, how)?;
            }
            std::thread::sleep(Duration::from_millis(1200));
            let t1 = restore(lv, server, how)?;
            let back = poll_out(lv, side, server, false, Duration::from_secs(30))?;
            eprintln!(
                "bench: {tag} trial {}/{trials} {how:?}: back in after {}; kernel out after {}",
                t + 1,
                back.map(|b| format!("{} ms", (b - t1) / 1000))
                    .unwrap_or_else(|| "NEVER (30 s)".into()),
                out_at
                    .map(|o| format!("{} ms", (o - t0) / 1000))
                    .unwrap_or_else(|| "NEVER".into())
            );
            done.push(Trial {
                how,
                t0,
                out_at,
                t1,
            });
        }
    }
    poll_out(lv, side, server, false, Duration::from_secs(60))?;
    drop(load);
    let packets = cap.stop().map_err(err)?;
    Ok(analyse_detection(
        &packets,
        &servers,
        dead,
        &done,
        args.load_rate,
    ))
}

/// Calls whose first INVITE reached `server` at or after `after_us`. Unlike
/// `evidence::new_calls_after` (client addresses only, as IPVS NAT keeps
/// them), it counts every INVITE: a proxy such as Kamailio forwards from its
/// own LAN address. Health checks are OPTIONS, so they never count.
pub(super) fn new_calls_after(
    packets: &[SipPacket],
    servers: &[Ipv4Addr],
    server: Ipv4Addr,
    after_us: u64,
) -> Vec<(String, u64)> {
    let mut first: std::collections::BTreeMap<&str, (Ipv4Addr, u64)> = Default::default();
    for p in packets.iter().filter(|p| {
        p.is_request("INVITE") && p.cseq_method == "INVITE" && servers.contains(p.dst.ip())
    }) {
        let e = first.entry(&p.call_id).or_insert((*p.dst.ip(), p.ts_us));
        if p.ts_us < e.1 {
            *e = (*p.dst.ip(), p.ts_us);
        }
    }
    let mut v: Vec<(String, u64)> = first
        .into_iter()
        .filter(|(_, (s, t))| *s == server && *t >= after_us)
        .map(|(c, (_, t))| (c.to_owned(), t))
        .collect();
    v.sort_by_key(|(_, t)| *t);
    v
}

pub(super) fn analyse_detection(
    packets: &[SipPacket],
    servers: &[Ipv4Addr],
    dead: Ipv4Addr,
    trials: &[Trial],
    rate: u32,
) -> Detection {
    let _ = rate;
    let mut d = Detection::default();
    let completed = evidence::completed_calls(packets);
    for tr in trials {
        let during: Vec<(String, u64)> = new_calls_after(packets, servers, dead, tr.t0)
            .into_iter()
            .filter(|(_, t)| *t < tr.t1)
            .collect();
        let lost = during
            .iter()
            .filter(|(c, _)| !completed.contains(c))
            .count();
        d.caught.push((tr.how, during.len(), lost));
        match tr.out_at {
            None => d.undetected.push(tr.how),
            Some(o) => {
                let last = during.last().map(|(_, t)| *t).unwrap_or(tr.t0);
                d.steering_ms
                    .push((tr.how, (last.saturating_sub(tr.t0)) as f64 / 1000.0));
                d.kernel_ms.push((tr.how, (o - tr.t0) as f64 / 1000.0));
                d.late_calls
                    .push((tr.how, during.iter().filter(|(_, t)| *t >= o).count()));
            }
        }
    }
    d
}
