//! b. Probe cost: guest CPU per 1,000 health checks.

use super::*;

/// CPU seconds per 1,000 checks over an idle window.
#[derive(Debug, Clone)]
pub(super) struct Cost {
    pub(super) cpu_s: f64,
    pub(super) checks: usize,
    pub(super) window_s: f64,
}

impl Cost {
    pub(super) fn per_1000(&self) -> Option<f64> {
        (self.checks > 0).then(|| self.cpu_s * 1000.0 / self.checks as f64)
    }
}

pub(super) fn probe_cost(lv: &mut LabVm, pids: &[u32], secs: u64, tag: &str) -> Res<Cost> {
    let mut cap = lv.capture_lan(&format!("cost-{tag}.pcap")).map_err(err)?;
    let a = guest_ticks(lv, pids)?;
    let w0 = vm_now_us();
    std::thread::sleep(Duration::from_secs(secs));
    let b = guest_ticks(lv, pids)?;
    let w1 = vm_now_us();
    let packets = cap.stop().map_err(err)?;
    let checks = packets
        .iter()
        .filter(|p| {
            p.is_request("OPTIONS") && *p.src.ip() == APPLIANCE_LAN && p.ts_us >= w0 && p.ts_us < w1
        })
        .count();
    Ok(Cost {
        cpu_s: (b.saturating_sub(a)) as f64 / USER_HZ,
        checks,
        window_s: (w1 - w0) as f64 / 1e6,
    })
}

pub(super) fn vm_now_us() -> u64 {
    appliance_tests::lab::booted::now_us()
}
