//! e. Config change: how long a change takes to reach the kernel table.

use super::*;

#[derive(Debug, Clone, Default)]
pub(super) struct Change {
    pub(super) out_ms: Vec<f64>,
    pub(super) back_ms: Vec<f64>,
    pub(super) not_applied: usize,
    pub(super) calls: u64,
    pub(super) failed: u64,
}

/// `n` config changes (server 3 to weight 0 and back) under a socket-per-call
/// load; guest-timed until /proc/net/ip_vs shows the new weight.
pub(super) fn config_change(
    lv: &mut LabVm,
    n: usize,
    rate: u32,
    out_cmd: &str,
    back_cmd: &str,
    tag: &str,
) -> Res<Change> {
    let key = ipvs_key(lv.lab.servers[2].addr, 5060);
    let w0 = format!("{key} +Masq +0 ");
    let w1 = format!("{key} +Masq +1 ");
    let secs = (n as u32) * 12 + 10;
    let mut o = UacOptions::basic(&lv.lab, lv.lab.vip(), rate * secs, rate);
    o.transport = Transport::SocketPerCall;
    o.local = lv.lab.clients[2];
    o.port = 5400;
    o.hold_ms = 1000;
    o.time_limit = Duration::from_secs(secs as u64 + 120);
    let uac = Uac::start(&lv.lab, &o, &format!("change-{tag}")).map_err(err)?;
    let started = Instant::now();
    let mut c = Change::default();
    std::thread::sleep(Duration::from_secs(3));
    for i in 0..n {
        match timed_change(lv, out_cmd, &w0)? {
            Some(ms) => c.out_ms.push(ms),
            None => c.not_applied += 1,
        }
        std::thread::sleep(Duration::from_secs(2));
        match timed_change(lv, back_cmd, &w1)? {
            Some(ms) => c.back_ms.push(ms),
            None => c.not_applied += 1,
        }
        eprintln!(
            "bench: {tag} change {}/{n}: out {:?} back {:?}",
            i + 1,
            c.out_ms.last(),
            c.back_ms.last()
        );
        std::thread::sleep(Duration::from_secs(2));
        if started.elapsed() > Duration::from_secs(secs as u64 - 4) {
            break;
        }
    }
    let st = uac.wait().map_err(err)?;
    c.calls = st.created;
    c.failed = st.failed;
    Ok(c)
}
