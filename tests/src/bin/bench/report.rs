//! The markdown report and how hand-written sections are kept.

use super::*;

pub(super) struct Sizes {
    pub(super) appliance_bin: Option<u64>,
    pub(super) keepalived_bin: Option<u64>,
    pub(super) keepalived_extra: Option<u64>,
    pub(super) bzimage: Option<u64>,
    pub(super) initramfs: Option<u64>,
    pub(super) initramfs_gz: Option<u64>,
    pub(super) k_initramfs: Option<u64>,
    pub(super) k_initramfs_gz: Option<u64>,
    pub(super) kamailio_bin: Option<u64>,
    pub(super) kamailio_extra: Option<u64>,
    pub(super) m_initramfs: Option<u64>,
    pub(super) m_initramfs_gz: Option<u64>,
}

pub(super) fn sizes() -> Sizes {
    let root = vm::repo_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let build = root.join("build");
    Sizes {
        appliance_bin: file_size(&target.join("x86_64-unknown-linux-gnu/release/appliance")),
        keepalived_bin: file_size(Path::new("/usr/sbin/keepalived")),
        keepalived_extra: file_size(&build.join("keepalived/extra.cpio")),
        bzimage: file_size(&build.join("bzImage")),
        initramfs: file_size(&build.join("initramfs.cpio")),
        initramfs_gz: gzip_size(&build.join("initramfs.cpio")),
        k_initramfs: file_size(&build.join("keepalived/initramfs.cpio")),
        k_initramfs_gz: gzip_size(&build.join("keepalived/initramfs.cpio")),
        kamailio_bin: file_size(Path::new("/usr/sbin/kamailio")),
        kamailio_extra: file_size(&build.join("kamailio/extra.cpio")),
        m_initramfs: file_size(&build.join("kamailio/initramfs.cpio")),
        m_initramfs_gz: gzip_size(&build.join("kamailio/initramfs.cpio")),
    }
}

pub(super) fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "not measured".into())
}

pub(super) fn mp(v: &[f64]) -> String {
    match median_p99(v) {
        Some((m, p)) => format!("{} / {} (n={})", fmt_ms(m), fmt_ms(p), v.len()),
        None => "not measured".into(),
    }
}

pub(super) fn median(v: &[f64]) -> Option<f64> {
    median_p99(v).map(|(m, _)| m)
}

/// The seed's delay_loop 120, computed: the failure lands at a uniformly
/// random point of the check cycle (delay_loop + a passing check's run time,
/// keepalived re-arms after the check ends), then the failing check runs.
pub(super) fn model(delay_loop_s: f64, ok_ms: &[f64], fail_ms: &[f64]) -> Option<(f64, f64)> {
    let ok = median(ok_ms)?;
    let (fm, fp) = median_p99(fail_ms)?;
    let cycle = delay_loop_s * 1000.0 + ok;
    Some((0.5 * cycle + fm, 0.99 * cycle + fp))
}

/// The factory probe settings, as the image ships them.
pub(super) fn factory_probe() -> String {
    let f =
        std::fs::read_to_string(vm::repo_root().join("rootfs-overlay/etc/appliance/factory.toml"))
            .unwrap_or_default();
    let get = |k: &str| {
        f.lines()
            .find_map(|l| {
                let (a, b) = l.split_once('=')?;
                (a.trim() == k).then(|| b.split('#').next().unwrap_or("").trim().to_owned())
            })
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "probe every {} ms, timeout {} ms, fall {}, rise {}",
        get("interval_ms"),
        get("timeout_ms"),
        get("fall"),
        get("rise")
    )
}

/// Report cell of a detection median for one failure mode.
pub(super) fn det_median(d: Option<&Detection>, how: Failure) -> Option<f64> {
    median(&d.map(|d| d.ms(how)).unwrap_or_default())
}

/// A side's VIP limit text and median in one client mode.
pub(super) fn mode_of(r: &SideResult, t: Transport) -> Option<&Mode> {
    r.modes.iter().find(|m| m.transport == t)
}

pub(super) fn limit_cell(r: &SideResult, t: Transport, p: Route) -> (String, Option<f64>) {
    match mode_of(r, t).and_then(|m| m.limit(p)) {
        Some(l) => (l.text(), l.median()),
        None => ("not measured (see notes)".into(), None),
    }
}

pub(super) fn cpu_cell(r: &SideResult, t: Transport, p: Route) -> (String, Option<f64>) {
    let idle = r.idle_per_s.unwrap_or(0.0);
    match mode_of(r, t).and_then(|m| cpu_per_call(m, p, idle)) {
        Some((ms, sirq, n)) => (
            format!("{ms:.2} ms ({sirq:.2} ms softirq, n={n})"),
            Some(ms),
        ),
        None => ("not measured (see notes)".into(), None),
    }
}

pub(super) fn caught_cell(d: Option<&Detection>, how: Failure) -> (String, Option<f64>) {
    match d.and_then(|d| d.per_failure(how)) {
        Some((c, l, n)) => (
            format!("{c:.1} caught, {l:.1} never completed (n={n})"),
            Some(l),
        ),
        None => ("not measured (see notes)".into(), None),
    }
}

pub(super) fn report(
    args: &Args,
    ours: &SideResult,
    ka: &SideResult,
    km: &SideResult,
    sz: &Sizes,
    elapsed: Duration,
    load_start: &str,
) -> String {
    let mut s = String::new();
    let w = &mut s;
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let load = loadavg();
    let kam_ver = Command::new("/usr/sbin/kamailio")
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim_start_matches("version:").trim().to_owned())
        })
        .unwrap_or_else(|| "kamailio (version unknown)".into());

    let _ = writeln!(
        w,
        "# Benchmarks: the appliance side by side with the seed's setup and a Kamailio dispatcher\n"
    );
    let _ = writeln!(w, "- Date: {date}");
    let _ = writeln!(
        w,
        "- Machine: {cores} cores ({cpu}), guests under QEMU TCG (no KVM), 256 MiB, 1 vCPU; host load average \
         (1/5/15 min) at the start {load_start}, at the end {load} (shared build machine: compare columns of this run, \
         not runs)"
    );
    let _ = writeln!(
        w,
        "- Command: `{}` (total {:.0} s)",
        args.command,
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        w,
        "- All three in this one run, one after the other, on the same kernel (dev image bzImage), the same lab \
         (tests/src/lab: client namespace, 3 sipp UAS servers, taps into the VM), the same 1-vCPU guest and the same host: \
         **appliance** = dev image, factory config ({}); \
         **keepalived** = benchmark variant (tests/bench/build-keepalived-image.sh): Debian keepalived 2.2.7, \
         `persistence_engine sip`, MISC_CHECK running sipp `-m 1` (1 s receive timeout), delay_loop 1 measured, the seed's 120 computed; \
         **Kamailio** = benchmark variant (tests/bench/build-kamailio-image.sh): Debian {kam_ver}, a stateless proxy on the VIP, \
         dispatcher algorithm 0 (Call-ID hash), OPTIONS every 1 s to every server (`ds_ping_interval 1`, `ds_probing_mode 1`), \
         out after 1 failed ping (`ds_probing_threshold 1`), back after 2 (`ds_inactive_threshold 2`), a ping unanswered after \
         900 ms (tm `fr_timer 900`); settings and reasons in tests/bench/kamailio/kamailio.cfg.in and section c.",
        factory_probe()
    );
    let _ = writeln!(
        w,
        "- Benchmarks never fail on a number; anything that could not run says so below.\n"
    );

    // ---- ratios first
    let _ = writeln!(
        w,
        "## Ratios (other ÷ appliance; > 1 means the appliance is better)\n"
    );
    let _ = writeln!(
        w,
        "| Measure | Appliance | keepalived + sipp MISC_CHECK | Kamailio dispatcher | keepalived ÷ appliance | Kamailio ÷ appliance |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|");
    let rat = |o: Option<f64>, x: Option<f64>| match (x, o) {
        (Some(x), Some(o)) => ratio(x, o),
        _ => "n/a".into(),
    };
    let od = ours.detect.as_ref();
    let kd = ka.detect.as_ref();
    let md = km.detect.as_ref();
    for (how, label) in [
        (Failure::Silent, "silent server"),
        (Failure::Killed, "SIP port closed"),
    ] {
        let (o, k, m) = (
            det_median(od, how),
            det_median(kd, how),
            det_median(md, how),
        );
        let _ = writeln!(
            w,
            "| Failure detection, {label}, median (keepalived delay_loop 1, Kamailio ping 1 s) | {} | {} | {} | {} | {} |",
            opt(o, fmt_ms),
            opt(k, fmt_ms),
            opt(m, fmt_ms),
            rat(o.map(|o| o.max(1.0)), k),
            rat(o.map(|o| o.max(1.0)), m)
        );
    }
    let m120 = model(120.0, &ka.check_ok_ms, &ka.check_fail_ms);
    let o = det_median(od, Failure::Silent);
    let _ = writeln!(
        w,
        "| Failure detection, silent server, median, seed's delay_loop 120 (computed) | {} | {} | — | {} | — |",
        opt(o, fmt_ms),
        opt(m120.map(|m| m.0), fmt_ms),
        rat(o.map(|o| o.max(1.0)), m120.map(|m| m.0))
    );
    for (how, label) in [(Failure::Killed, "killed"), (Failure::Silent, "silent")] {
        let (oc, ol) = caught_cell(od, how);
        let (kc, kl) = caught_cell(kd, how);
        let (mc, ml) = caught_cell(md, how);
        let _ = writeln!(
            w,
            "| New calls per failure ({label}, {} calls/s): caught by the failure / never completed | {oc} | {kc} | {mc} | {} | {} |",
            args.load_rate,
            rat(ol.map(|v| v.max(0.1)), kl),
            rat(ol.map(|v| v.max(0.1)), ml)
        );
    }
    let oc = ours.cost.as_ref().and_then(Cost::per_1000);
    let kc = ka.cost.as_ref().and_then(Cost::per_1000);
    let mc = km.cost.as_ref().and_then(Cost::per_1000);
    let _ = writeln!(
        w,
        "| Probe cost, CPU s per 1,000 checks (in the VM) | {} | {} | {} | {} | {} |",
        opt(oc, |v| format!("{v:.3} s")),
        opt(kc, |v| format!("{v:.2} s")),
        opt(mc, |v| format!("{v:.3} s")),
        rat(oc, kc),
        rat(oc, mc)
    );
    let _ = writeln!(
        w,
        "| Resident memory (lab config, 1×3; summed VmRSS of every process) | {} | {} | {}{} | {} | {} |",
        opt(ours.rss_kib, |v| format!("{v} KiB")),
        opt(ka.rss_kib, |v| format!("{v} KiB")),
        opt(km.rss_kib, |v| format!("{v} KiB")),
        opt(km.pss_kib, |v| format!(" (PSS {v} KiB)")),
        rat(ours.rss_kib.map(|v| v as f64), ka.rss_kib.map(|v| v as f64)),
        rat(ours.rss_kib.map(|v| v as f64), km.rss_kib.map(|v| v as f64))
    );
    let _ = writeln!(
        w,
        "| Initramfs size (uncompressed) | {} | {} | {} | {} | {} |",
        opt(sz.initramfs, mib),
        opt(sz.k_initramfs, mib),
        opt(sz.m_initramfs, mib),
        rat(
            sz.initramfs.map(|v| v as f64),
            sz.k_initramfs.map(|v| v as f64)
        ),
        rat(
            sz.initramfs.map(|v| v as f64),
            sz.m_initramfs.map(|v| v as f64)
        )
    );
    let _ = writeln!(
        w,
        "| Boot to ready (QEMU start → VIP balancing over 3 servers) | {} | {} | {} | {} | {} |",
        opt(ours.ready_s, |v| format!("{v:.1} s")),
        opt(ka.ready_s, |v| format!("{v:.1} s")),
        opt(km.ready_s, |v| format!("{v:.1} s")),
        rat(ours.ready_s, ka.ready_s),
        rat(ours.ready_s, km.ready_s)
    );
    let ocm = ours.change.as_ref().and_then(|c| median(&c.out_ms));
    let kcm = ka.change.as_ref().and_then(|c| median(&c.out_ms));
    let _ = writeln!(
        w,
        "| Config change to IPVS applied (server to weight 0), median | {} | {} | not measured (no IPVS; see section e) | {} | — |",
        opt(ocm, fmt_ms),
        opt(kcm, fmt_ms),
        rat(ocm.map(|o| o.max(1.0)), kcm)
    );
    for t in [Transport::SocketPerCall, Transport::SingleSocket] {
        if !args.modes.contains(&t) {
            continue;
        }
        let (ot, om) = limit_cell(ours, t, Route::Vip);
        let (mt, mm) = limit_cell(km, t, Route::Vip);
        let (odt, odm) = limit_cell(ours, t, Route::Direct);
        let (mdt, mdm) = limit_cell(km, t, Route::Direct);
        let _ = writeln!(
            w,
            "| Highest call rate < 1 % failed via the VIP ({}), per-repetition range | {ot} | same kernel IPVS path as the appliance (not re-measured) | {mt} | — | {} (inverse: appliance ÷ Kamailio) |",
            mode_name(t),
            rat(mm, om)
        );
        let vr = |v: Option<f64>, d: Option<f64>| match (v, d) {
            (Some(v), Some(d)) if d > 0.0 => format!("{:.2}", v / d),
            _ => "n/a".into(),
        };
        let _ = writeln!(
            w,
            "| VIP ÷ direct (same VM routing; medians of the repetitions), {} | {} (direct {odt}) | — | {} (direct {mdt}) | — | — |",
            mode_name(t),
            vr(om, odm),
            vr(mm, mdm)
        );
        let (oc, ocv) = cpu_cell(ours, t, Route::Vip);
        let (mc, mcv) = cpu_cell(km, t, Route::Vip);
        let _ = writeln!(
            w,
            "| Guest CPU per call via the VIP at {} calls/s ({}) | {oc} | same kernel path | {mc} | — | {} |",
            args.fixed_rate,
            mode_name(t),
            rat(ocv, mcv)
        );
    }

    // ---- a. detection
    let _ = writeln!(w, "\n## a. Failure detection\n");
    let _ = writeln!(
        w,
        "Time from the failure to the **last new call (initial INVITE) that still reached the failed server**, from a \
         packet capture on the appliance's LAN attachment (independent of every balancer), under a socket-per-call \
         sipp load of {} calls/s to the VIP (round robin over 3 servers for the IPVS sides: the failed server's turn comes every ≈{:.0} ms, \
         which is the resolution; Kamailio hashes Call-IDs, so its turns are random with the same mean). Failure = `Killed`: the server's sipp is SIGKILLed (port closed, ICMP port unreachable); \
         `Silent`: the server's sipp SIGSTOPped (a hung server: datagrams queue unanswered, no ICMP; the host kernel has no netem). \
         Median / p99 (nearest rank; with n ≤ 100, p99 is the worst trial). \"Out\" = the failed server at weight 0 \
         or gone in /proc/net/ip_vs (IPVS sides), or not active in `kamcmd dispatcher.list` (Kamailio), polled over the serial shell \
         (≈ a shell round trip of resolution). *Caught* = new calls whose first INVITE reached the failed server between the failure and its \
         restore ({} ms of failure after \"out\"); *never completed* = of those, calls with no 200 to their BYE anywhere in the capture.\n",
        args.load_rate,
        3000.0 / args.load_rate as f64,
        1200
    );
    let _ = writeln!(w, "| Setup | Failure | Last new call after failure: median / p99 | Out: median / p99 | Not detected | New calls after out | Caught / never completed per failure |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    let mut rows = |name: &str, d: Option<&Detection>| {
        for how in [Failure::Killed, Failure::Silent] {
            match d {
                Some(d) => {
                    let _ = writeln!(
                        w,
                        "| {name} | {how:?} | {} | {} | {} | {} | {} |",
                        mp(&d.ms(how)),
                        mp(&d.kernel(how)),
                        d.undetected.iter().filter(|h| **h == how).count(),
                        d.late_calls
                            .iter()
                            .filter(|(h, _)| *h == how)
                            .map(|(_, n)| n)
                            .sum::<usize>(),
                        caught_cell(Some(d), how).0
                    );
                }
                None => {
                    let _ = writeln!(w, "| {name} | {how:?} | not measured (see notes) | | | | |");
                }
            }
        }
    };
    rows("appliance (defaults)", od);
    rows("keepalived MISC_CHECK, delay_loop 1", kd);
    if ka.detect_120.is_some() {
        rows(
            "keepalived MISC_CHECK, delay_loop 120 (real trials)",
            ka.detect_120.as_ref(),
        );
    }
    rows("Kamailio dispatcher, ping 1 s", md);
    let m1 = model(1.0, &ka.check_ok_ms, &ka.check_fail_ms);
    let _ = writeln!(
        w,
        "\nkeepalived at the seed's **delay_loop 120** is computed, not waited for (each trial would take minutes): \
         keepalived re-arms a checker `delay_loop` after its check ends, so a failure lands at a uniformly random point of a \
         cycle of delay_loop + one passing check, and is seen when the next (failing) check ends (MISC_CHECK retry defaults to 0). \
         Guest-timed MISC_CHECK runs: passing {}, failing {}. \
         Model: median = cycle/2 + failing check, p99 = 0.99·cycle + failing check (p99). \
         **delay_loop 120: median {}, p99 {}.** \
         The same model for delay_loop 1 gives median {} / p99 {}, to compare with the measured row above.",
        mp(&ka.check_ok_ms),
        mp(&ka.check_fail_ms),
        opt(m120.map(|m| m.0), fmt_ms),
        opt(m120.map(|m| m.1), fmt_ms),
        opt(m1.map(|m| m.0), fmt_ms),
        opt(m1.map(|m| m.1), fmt_ms),
    );
    let _ = writeln!(
        w,
        "\nKamailio: a ping goes to every server each second; an unanswered one ends after tm's `fr_timer` (900 ms), so a \
         failure is seen 0.9-1.9 s after it happens (port closed included: Kamailio does not read ICMP port-unreachable for \
         its UDP pings, so a closed port looks like a silent server). Its stateless forwarding keeps no call state: an INVITE \
         retransmission of a caught call hashes to the same dead server until the dispatcher marks it inactive, then to the \
         next active server (rescued if the client still retransmits)."
    );

    // ---- b. probe cost
    let _ = writeln!(w, "\n## b. Probe cost\n");
    let _ = writeln!(
        w,
        "Idle lab (no calls), in the VM: CPU time (utime+stime+cutime+cstime from /proc/PID/stat, 10 ms ticks) of the \
         appliance daemon (everything it does, not just probing) vs every keepalived process (parent + checker; the \
         checker's cutime/cstime include the sh/sipp children it reaps) vs every Kamailio process (its timer, UDP workers and \
         ctl processes; the pings are sent by its timer process through tm), over the same window; checks = SIP OPTIONS \
         requests from 198.51.100.1 in a LAN capture over that window.\n"
    );
    let _ = writeln!(
        w,
        "| Setup | Window | Checks | CPU | CPU s per 1,000 checks |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|");
    for (name, c) in [
        ("appliance (3 servers, factory interval)", &ours.cost),
        ("keepalived MISC_CHECK (3 servers, delay_loop 1)", &ka.cost),
        ("Kamailio dispatcher (3 servers, ping 1 s)", &km.cost),
    ] {
        match c {
            Some(c) => {
                let _ = writeln!(
                    w,
                    "| {name} | {:.1} s | {} | {:.2} s | {} |",
                    c.window_s,
                    c.checks,
                    c.cpu_s,
                    opt(c.per_1000(), |v| format!("{v:.3} s"))
                );
            }
            None => {
                let _ = writeln!(w, "| {name} | not measured (see notes) | | | |");
            }
        }
    }
    let _ = writeln!(
        w,
        "\nOutside the VM (host, release build) the probe helper measured 61 µs of CPU per in-process probe against \
         5.3 ms per forked `sipp -m 1` check (docs/probe.md, `cargo run --release -p appliance --example probe_bench`); \
         not repeated here. Inside the TCG VM every figure is larger, the ratio is what compares. Kamailio's figure has \
         10 ms ticks over few checks (3 per second): read it as an order of magnitude."
    );

    // ---- c. data path
    let _ = writeln!(w, "\n## c. Data path\n");
    let _ = writeln!(
        w,
        "sipp UAC, INVITE/ACK/BYE with no hold, {} s per step, from the client namespace, in two client modes: **socket per call** \
         (`-t un`, a new source port per call) and **one client socket** (`-t u1`, every call from one port: an SBC or proxy in \
         front, the main real-world case); the same sipp UAS servers. **VIP** = through IPVS on the appliance (NAT, one-packet \
         scheduling, pe sip persistence) or through Kamailio; **direct** = to server 198.51.100.11 routed through the same VM \
         without the balancer (the physical limit of this path). A step fails at ≥ 1 % failed calls (4 s receive timeout). \
         First a coarse ladder ({}), VIP and direct alternating, each path stopping at its first failure confirmed by an immediate repeat; then, for each path, \
         steps at most 10 % apart from its last passing to its first failing coarse rate, repeated {} times (Kamailio: once), VIP and \
         direct alternating, each repetition stopping at its first failure. A repetition's limit is its last passing rate; the \
         table gives the range over the repetitions (\"< X\" = a repetition failed at the lowest fine rate X; \"+\" = nothing failed). \
         Every step also reads the guest's /proc/stat, /proc/softirqs, /proc/net/softnet_stat and /proc/net/snmp over the serial \
         shell, and the host taps' tx_dropped (packets QEMU did not take from the tap in time). keepalived programs the same kernel \
         IPVS and does not touch packets, so its data path is not measured separately.\n",
        args.step_secs,
        args.rates
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        args.fine_reps
    );
    let _ = writeln!(w, "| Side | Client mode | VIP limit | Direct limit | VIP ÷ direct (medians) | Guest CPU per call at {} calls/s, VIP / direct (idle baseline subtracted) |", args.fixed_rate);
    let _ = writeln!(w, "|---|---|---|---|---|---|");
    for (name, r) in [("appliance", ours), ("Kamailio", km)] {
        for t in &args.modes {
            let (vt, vm) = limit_cell(r, *t, Route::Vip);
            let (dt, dm) = limit_cell(r, *t, Route::Direct);
            let (vc, _) = cpu_cell(r, *t, Route::Vip);
            let (dc, _) = cpu_cell(r, *t, Route::Direct);
            let ratio_txt = match (vm, dm) {
                (Some(v), Some(d)) if d > 0.0 => format!("{:.2}", v / d),
                _ => "n/a".into(),
            };
            let _ = writeln!(
                w,
                "| {name} | {} | {vt} | {dt} | {ratio_txt} | {vc} / {dc} |",
                mode_name(*t)
            );
        }
    }
    let _ = writeln!(
        w,
        "\nEvery step (guest busy and softirq share of the step's wall time, NET_RX softirqs per call, backlog drops in the guest, \
         UDP receive-buffer errors in the guest, tap drops on the host):\n"
    );
    let _ = writeln!(w, "| Side | Mode | Phase | Route | Rate | Created / failed | Busy % | Softirq % | NET_RX per call | Backlog drops | UDP rcvbuf errors | Tap drops |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, r) in [("appliance", ours), ("Kamailio", km)] {
        for m in &r.modes {
            let mut all: Vec<(String, Route, &Step)> = Vec::new();
            all.extend(m.coarse.iter().map(|(p, s)| ("coarse".to_owned(), *p, s)));
            all.extend(
                m.fine
                    .iter()
                    .map(|(p, r, s)| (format!("fine {}", r + 1), *p, s)),
            );
            all.extend(m.fixed.iter().map(|(p, s)| ("fixed".to_owned(), *p, s)));
            for (ph, p, s) in all {
                let d = s.d;
                let _ = writeln!(
                    w,
                    "| {name} | {} | {ph} | {p:?} | {} | {} / {} ({:.1} %) | {} | {} | {} | {} | {} | {} |",
                    match m.transport {
                        Transport::SocketPerCall => "un",
                        Transport::SingleSocket => "u1",
                    },
                    s.rate,
                    s.stats.created,
                    s.stats.failed,
                    s.failed_ratio() * 100.0,
                    opt(d, |d| format!("{:.0}", d.busy_pct())),
                    opt(d, |d| format!("{:.0}", d.softirq_pct())),
                    opt(d, |d| format!(
                        "{:.1}",
                        d.net_rx as f64 / s.stats.created.max(1) as f64
                    )),
                    opt(d, |d| d.backlog_drops.to_string()),
                    opt(d, |d| d.udp_rcvbuf.to_string()),
                    opt(d, |d| d.tap_drops.to_string()),
                );
            }
        }
    }
    let _ = writeln!(w, "\n### Persistence table size\n");
    let _ = writeln!(
        w,
        "The pe sip table holds one template per Call-ID for the persistence timeout (factory 120 s), so at R calls/s it holds \
         about 120·R entries. Here it is grown by one SIP OPTIONS per new Call-ID sent to the VIP from the client namespace \
         (2,000/s; each makes a template and is answered by a server), then a VIP step at {} calls/s (socket per call) runs \
         at once, well inside the templates' lifetime. Entries = lines of /proc/net/ip_vs_conn (templates and any non-one-packet \
         connections). Kernel hash table: CONFIG_IP_VS_TAB_BITS=12 (4,096 buckets).\n",
        args.fixed_rate
    );
    let _ = writeln!(w, "| Templates added | Table entries | Created / failed | Guest busy % | Softirq % | Guest CPU per call |");
    let _ = writeln!(w, "|---|---|---|---|---|---|");
    if let Some(base) = mode_of(ours, Transport::SocketPerCall)
        .and_then(|m| cpu_per_call(m, Route::Vip, ours.idle_per_s.unwrap_or(0.0)))
    {
        let _ = writeln!(
            w,
            "| 0 (fixed-rate steps above) | — | — | — | — | {:.2} ms |",
            base.0
        );
    }
    match &ours.growth {
        Some(g) => {
            for (n, seen, s) in &g.rows {
                let cpc = s.d.map(|d| {
                    (d.busy() as f64 - ours.idle_per_s.unwrap_or(0.0) * s.wall_s).max(0.0) * 10.0
                        / s.stats.created.max(1) as f64
                });
                let _ = writeln!(
                    w,
                    "| {n} | {seen} | {} / {} ({:.1} %) | {} | {} | {} |",
                    s.stats.created,
                    s.stats.failed,
                    s.failed_ratio() * 100.0,
                    opt(s.d, |d| format!("{:.0}", d.busy_pct())),
                    opt(s.d, |d| format!("{:.0}", d.softirq_pct())),
                    opt(cpc, |v| format!("{v:.2} ms"))
                );
            }
        }
        None => {
            let _ = writeln!(
                w,
                "| not measured | | | | | {} |",
                if args.templates.is_empty() {
                    "skipped (--templates 0)"
                } else {
                    "see notes"
                }
            );
        }
    }

    // ---- d. footprint
    let _ = writeln!(w, "\n## d. Footprint\n");
    let _ = writeln!(
        w,
        "| Item | Appliance | keepalived variant | Kamailio variant |"
    );
    let _ = writeln!(w, "|---|---|---|---|");
    let _ = writeln!(
        w,
        "| Daemon RSS, lab config (1 service × 3 servers) | {} | {} (all keepalived processes, summed VmRSS) | {} (all Kamailio processes, summed VmRSS: shared memory counted in each){} |",
        opt(ours.rss_kib, |v| format!("{v} KiB")),
        opt(ka.rss_kib, |v| format!("{v} KiB")),
        opt(km.rss_kib, |v| format!("{v} KiB")),
        opt(km.pss_kib, |v| format!("; PSS {v} KiB"))
    );
    let _ = writeln!(
        w,
        "| Daemon RSS, largest supported config (8 services × 64 servers, servers absent) | {} | not measured (it would be 512 sipp MISC_CHECK scripts per delay_loop) | not measured (the lab config only) |",
        opt(ours.rss_big_kib, |(v, d)| format!("{v} KiB ({d} destinations in the kernel table)"))
    );
    let _ = writeln!(
        w,
        "| Binary | {} (`appliance`, static, all functions) | {} (`keepalived`) + shared libraries; keepalived+sipp+libraries+scripts add {} | {} (`kamailio`) + modules and libraries; Kamailio+kamcmd+10 modules+libraries+config add {} |",
        opt(sz.appliance_bin, mib),
        opt(sz.keepalived_bin, mib),
        opt(sz.keepalived_extra, mib),
        opt(sz.kamailio_bin, mib),
        opt(sz.kamailio_extra, mib)
    );
    let _ = writeln!(
        w,
        "| Kernel (bzImage, shared) | {} | same | same |",
        opt(sz.bzimage, mib)
    );
    let _ = writeln!(
        w,
        "| Initramfs, uncompressed / gzip -6 | {} / {} | {} / {} | {} / {} |",
        opt(sz.initramfs, mib),
        opt(sz.initramfs_gz, mib),
        opt(sz.k_initramfs, mib),
        opt(sz.k_initramfs_gz, mib),
        opt(sz.m_initramfs, mib),
        opt(sz.m_initramfs_gz, mib)
    );
    let _ = writeln!(
        w,
        "| QEMU start → test shell / → VIP balancing over 3 servers | {} / {} | {} / {} | {} / {} (dispatcher lists all 3 active) |",
        opt(ours.shell_s, |v| format!("{v:.1} s")),
        opt(ours.ready_s, |v| format!("{v:.1} s")),
        opt(ka.shell_s, |v| format!("{v:.1} s")),
        opt(ka.ready_s, |v| format!("{v:.1} s")),
        opt(km.shell_s, |v| format!("{v:.1} s")),
        opt(km.ready_s, |v| format!("{v:.1} s"))
    );

    // ---- e. config change
    let _ = writeln!(w, "\n## e. Config change\n");
    let _ = writeln!(
        w,
        "Server 198.51.100.13 to weight 0 and back, under a socket-per-call load of 10 calls/s (1 s hold) to the VIP. \
         Timed inside the guest (/proc/uptime, 10 ms resolution) from issuing the change to /proc/net/ip_vs showing the new \
         weight. Appliance: `appliance drain sip 198.51.100.13:5060`, back with `appliance revert --from saved && appliance apply`. \
         keepalived: edit the weight in keepalived.conf, `kill -HUP` (reload), and back. Failed calls are sipp's count over the \
         whole load. Kamailio is not measured here: it has no kernel table to time, and its equivalent \
         (`kamcmd dispatcher.set_state`) acts on the next request by construction.\n"
    );
    let _ = writeln!(w, "| Setup | To weight 0: median / p99 | Back to 1: median / p99 | Not applied | Calls / failed |");
    let _ = writeln!(w, "|---|---|---|---|---|");
    for (name, c) in [("appliance", &ours.change), ("keepalived", &ka.change)] {
        match c {
            Some(c) => {
                let _ = writeln!(
                    w,
                    "| {name} | {} | {} | {} | {} / {} |",
                    mp(&c.out_ms),
                    mp(&c.back_ms),
                    c.not_applied,
                    c.calls,
                    c.failed
                );
            }
            None => {
                let _ = writeln!(w, "| {name} | not measured (see notes) | | | |");
            }
        }
    }

    // ---- notes
    let _ = writeln!(w, "\n{NOTES_HEADING}\n");
    let mut any = false;
    for (side, r) in [
        (Side::Ours, ours),
        (Side::Keepalived, ka),
        (Side::Kamailio, km),
    ] {
        for n in &r.notes {
            any = true;
            let _ = writeln!(w, "- {}: {n}", side.name());
        }
    }
    if !any {
        let _ = writeln!(w, "- Every measurement in sections a-e ran.");
    }
    let _ = writeln!(
        w,
        "- Silent = SIGSTOPped sipp, not the lab's blackhole routes (`Failure::Silent`): after those routes were \
         removed the server stayed unreachable for about 60 s in the VM lab, which made repeated trials impossible."
    );
    let _ = writeln!(
        w,
        "- TCG makes every in-VM figure slower than on hardware; compare the columns, not absolute values. Kamailio and IPVS \
         run on the same 1-vCPU guest kernel: the L7 proxy pays for user-space copies and SIP parsing in the same CPU budget in \
         which IPVS forwards in softirq."
    );
    s
}

/// The generated report's last heading; hand-written sections of the
/// existing file (those the generator does not produce) are kept before it.
pub(super) const NOTES_HEADING: &str = "## Notes and what could not run";

/// Headings (prefixes) the generator writes; every other `## ` section of
/// the existing file is hand-maintained and carried over.
pub(super) const GENERATED: [&str; 7] = [
    "## Ratios",
    "## a. ",
    "## b. ",
    "## c. ",
    "## d. ",
    "## e. ",
    NOTES_HEADING,
];

/// `generated` with the hand-written `## ` sections of `old` inserted
/// before the notes, in their order.
pub(super) fn merge_kept(generated: &str, old: &str) -> String {
    let mut kept = String::new();
    let mut keep = false;
    for l in old.lines() {
        if l.starts_with("## ") {
            keep = !GENERATED.iter().any(|g| l.starts_with(g));
        } else if l.starts_with("# ") {
            keep = false;
        }
        if keep {
            kept.push_str(l);
            kept.push('\n');
        }
    }
    if kept.is_empty() {
        return generated.to_owned();
    }
    match generated.find(&format!("\n{NOTES_HEADING}")) {
        Some(i) => format!(
            "{}\n{}{}",
            &generated[..i],
            kept.trim_end_matches('\n').to_owned() + "\n",
            &generated[i..]
        ),
        None => format!("{generated}\n{kept}"),
    }
}

pub(super) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
