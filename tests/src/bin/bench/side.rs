//! The lab and VM of each side (appliance, keepalived, Kamailio) and their boot.

use super::*;

/// One side of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Ours,
    Keepalived,
    Kamailio,
}

impl Side {
    pub(super) fn name(self) -> &'static str {
        match self {
            Side::Ours => "appliance",
            Side::Keepalived => "keepalived",
            Side::Kamailio => "kamailio",
        }
    }
}

/// Builds the lab, starts the sipp servers, boots `image` on the lab's taps
/// and waits until `side` balances the VIP over every server (the kernel
/// table for the IPVS sides, Kamailio's dispatcher list for Kamailio).
/// Returns the booted lab and (QEMU start → test shell, QEMU start → VIP
/// ready) in s.
pub(super) fn boot(image: Image, side: Side) -> Res<(LabVm, f64, f64)> {
    let mut lab = Lab::new(&LabOptions::default()).map_err(err)?;
    let mut uas = Vec::new();
    for i in 0..lab.servers.len() {
        uas.push(Some(
            sipp::start_uas(&mut lab, i, "uas.xml", 1000).map_err(err)?,
        ));
    }
    // CONFIG_HZ of the kernel (kernel.config beside the bzImage), for the
    // lab's reading of /proc/net/ip_vs timeouts.
    let hz = std::fs::read_to_string(image.kernel.with_file_name("kernel.config"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("CONFIG_HZ=")?.trim().parse().ok())
        })
        .ok_or("no CONFIG_HZ in kernel.config beside the bzImage")?;
    let mut vo = VmOptions::new(image);
    vo.wan_tap = Some(WAN_TAP.into());
    vo.lan_tap = Some(LAN_TAP.into());
    vo.netns = Some(lab.switch_ns.clone());
    vo.hard_timeout = Duration::from_secs(3000);
    let vm = Vm::boot(vo).map_err(err)?;
    let mut lv = LabVm {
        vm,
        uas,
        uas_scenario: "uas.xml".into(),
        uas_hold_ms: 1000,
        hz,
        lab,
    };
    let shell = lv.vm.wait_shell(BOOT_TIMEOUT).map_err(err)?.as_secs_f64();
    if side == Side::Kamailio {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let f = kam_flags(&mut lv)?;
            if f.len() == lv.lab.servers.len() && f.iter().all(|(_, fl)| fl.starts_with('A')) {
                break;
            }
            if Instant::now() > deadline {
                let why = guest(
                    &mut lv,
                    "kamcmd dispatcher.list 2>&1 | tail -5; ps | grep -c kamailio; dmesg | tail -15",
                    Duration::from_secs(30),
                )
                .unwrap_or_else(|e| e);
                return Err(format!(
                    "Kamailio's dispatcher did not list every server active within {READY_TIMEOUT:?}: {f:?}; guest: {why}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    } else {
        lv.wait_balancing(READY_TIMEOUT).map_err(err)?;
    }
    let ready = lv.vm.started().elapsed().as_secs_f64();
    Ok((lv, shell, ready))
}

/// Kamailio's dispatcher state per destination, from `kamcmd dispatcher.list`
/// in the guest: (address, FLAGS) with FLAGS `AP` = active (probing), `IP` =
/// inactive, `TP` = trying, `D*` = disabled.
pub(super) fn kam_flags(lv: &mut LabVm) -> Res<Vec<(Ipv4Addr, String)>> {
    let out = guest(
        lv,
        "kamcmd dispatcher.list 2>&1 | grep -E 'URI:|FLAGS:' || true",
        Duration::from_secs(30),
    )?;
    Ok(parse_kam_flags(&out))
}

/// Pairs each `URI: sip:A:P` line with the `FLAGS:` line after it.
pub(super) fn parse_kam_flags(text: &str) -> Vec<(Ipv4Addr, String)> {
    let mut v = Vec::new();
    let mut uri: Option<Ipv4Addr> = None;
    for l in text.lines().map(str::trim) {
        if let Some(u) = l.strip_prefix("URI:") {
            uri = u
                .trim()
                .trim_start_matches("sip:")
                .split(':')
                .next()
                .and_then(|a| a.parse().ok());
        } else if let Some(f) = l.strip_prefix("FLAGS:") {
            if let Some(a) = uri.take() {
                v.push((a, f.trim().to_owned()));
            }
        }
    }
    v
}

/// Polls until `side` shows `server` out (`out`) or back in; returns the
/// instant (µs) or None when `limit` passes. IPVS sides: the kernel table
/// (weight 0 or absent). Kamailio: the dispatcher's flags (not active).
pub(super) fn poll_out(
    lv: &mut LabVm,
    side: Side,
    server: usize,
    out: bool,
    limit: Duration,
) -> Res<Option<u64>> {
    if side != Side::Kamailio {
        return poll_kernel(lv, server, out, limit).map_err(err);
    }
    let addr = lv.lab.servers[server].addr;
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let f = kam_flags(lv)?;
        let active = f
            .iter()
            .find(|(a, _)| *a == addr)
            .is_some_and(|(_, fl)| fl.starts_with('A'));
        if active != out {
            return Ok(Some(vm_now_us()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(None)
}

/// A socket-per-call client load to the VIP that runs until dropped.
pub(super) fn background_load(lv: &LabVm, rate: u32, port: u16, tag: &str) -> Res<Uac> {
    let mut o = UacOptions::basic(&lv.lab, lv.lab.vip(), rate * 3600, rate);
    o.transport = Transport::SocketPerCall;
    o.local = lv.lab.clients[1];
    o.port = port;
    o.hold_ms = 500;
    o.time_limit = Duration::from_secs(3600);
    Uac::start(&lv.lab, &o, tag).map_err(err)
}
