//! The run of each side: boots once and takes every measurement in order.

use super::*;

/// Everything measured on one side; `None` fields say why in `notes`.
#[derive(Debug, Default)]
pub(super) struct SideResult {
    pub(super) shell_s: Option<f64>,
    pub(super) ready_s: Option<f64>,
    pub(super) rss_kib: Option<u64>,
    pub(super) rss_big_kib: Option<(u64, u32)>,
    pub(super) cost: Option<Cost>,
    pub(super) detect: Option<Detection>,
    pub(super) detect_120: Option<Detection>,
    /// Duration of a failing / passing MISC_CHECK run (ms), guest-timed.
    pub(super) check_fail_ms: Vec<f64>,
    pub(super) check_ok_ms: Vec<f64>,
    pub(super) change: Option<Change>,
    /// Data path per client mode.
    pub(super) modes: Vec<Mode>,
    /// Guest busy ticks per second with no calls.
    pub(super) idle_per_s: Option<f64>,
    /// Data path with a grown persistence table.
    pub(super) growth: Option<Growth>,
    /// Proportional set size (shared pages split between processes), KiB.
    pub(super) pss_kib: Option<u64>,
    pub(super) notes: Vec<String>,
}

pub(super) fn note<T>(r: &mut SideResult, what: &str, v: Res<T>) -> Option<T> {
    match v {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("bench: {what} could not run: {e}");
            let first = e
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(300)
                .collect::<String>();
            r.notes.push(format!("{what}: could not run: {first}"));
            None
        }
    }
}

/// Runs a guest timing of one MISC_CHECK invocation; returns (ms, exit code).
pub(super) fn time_check(lv: &mut LabVm, server: Ipv4Addr, port: u16) -> Res<(f64, i32)> {
    let out = guest(
        lv,
        &format!(
            "t0=$(cut -d' ' -f1 /proc/uptime); /etc/keepalived/script.sh {server} {port}; rc=$?; \
             t1=$(cut -d' ' -f1 /proc/uptime); echo \"C $t0 $t1 $rc\""
        ),
        Duration::from_secs(60),
    )?;
    let l = out
        .lines()
        .find(|l| l.starts_with("C "))
        .ok_or(format!("no timing line: {out}"))?;
    let f: Vec<f64> = l[2..]
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    if f.len() != 3 {
        return Err(format!("bad timing line {l}"));
    }
    Ok(((f[1] - f[0]) * 1000.0, f[2] as i32))
}

pub(super) fn run_ours(args: &Args, r: &mut SideResult) -> Res<()> {
    let image = vm::ensure_image().map_err(err)?;
    let (mut lv, shell, ready) = boot(image, Side::Ours)?;
    r.shell_s = Some(shell);
    r.ready_s = Some(ready);
    eprintln!("bench: appliance ready {ready:.1} s after QEMU start");
    if let Some((rate, reps)) = args.tap_ab {
        lv.route_wan_to_lan().map_err(err)?;
        tap_ab(&mut lv, args, rate, reps)?;
        if !args.templates.is_empty() {
            let g = table_growth(
                &mut lv,
                &args.templates,
                args.fixed_rate,
                args.step_secs.max(8),
            )?;
            for (n, seen, s) in &g.rows {
                println!(
                    "templates {n}: table {seen} entries; {} / {} failed; busy {} % softirq {} %; wall {:.1} s",
                    s.stats.created,
                    s.stats.failed,
                    opt(s.d, |d| format!("{:.0}", d.busy_pct())),
                    opt(s.d, |d| format!("{:.0}", d.softirq_pct())),
                    s.wall_s
                );
            }
        }
        return Ok(());
    }
    let pid = lv
        .daemon_pid()
        .map_err(err)?
        .ok_or("no appliance daemon in the guest")?;
    let pids = [pid];
    r.rss_kib = note(r, "daemon RSS", guest_rss_kib(&mut lv, &pids));
    r.cost = note(
        r,
        "probe cost",
        probe_cost(&mut lv, &pids, args.cost_secs, "ours"),
    );
    r.detect = note(
        r,
        "failure detection",
        detection(
            &mut lv,
            Side::Ours,
            args,
            args.trials,
            Duration::from_secs(20),
            "ours",
            |_, _| Ok(()),
        ),
    );
    // Config change: drain (weight 0 at once) and back (revert the candidate
    // to the saved config, apply).
    let target = lv.lab.servers[2].sip();
    let saved = guest(&mut lv, "appliance save", Duration::from_secs(60));
    if let Err(e) = &saved {
        r.notes.push(format!(
            "appliance save before the config-change trials failed: {e}"
        ));
    }
    r.change = note(
        r,
        "config change",
        config_change(
            &mut lv,
            args.changes,
            10,
            &format!("appliance drain sip {target}"),
            "appliance revert --from saved && appliance apply",
            "ours",
        ),
    );
    // The appliance routes nothing from WAN to LAN unless told to (a lab-only setting);
    // the direct path needs it.
    lv.route_wan_to_lan().map_err(err)?;
    run_data_path(&mut lv, args, r, "ours", args.fine_reps)?;
    if !args.templates.is_empty() {
        r.growth = note(
            r,
            "data path with a grown persistence table",
            table_growth(
                &mut lv,
                &args.templates,
                args.fixed_rate,
                args.step_secs.max(8),
            ),
        );
    }
    r.rss_big_kib = note(r, "daemon RSS at 8×64", rss_big(&mut lv));
    Ok(())
}

/// The data path in every client mode, with the client routed to the
/// servers through the VM for the direct path; an idle baseline first.
pub(super) fn run_data_path(
    lv: &mut LabVm,
    args: &Args,
    r: &mut SideResult,
    tag: &str,
    reps: usize,
) -> Res<()> {
    lv.lab.client_route_to_servers().map_err(err)?;
    r.idle_per_s = note(r, "idle guest CPU baseline", idle_busy_per_s(lv, 5));
    for &mode in &args.modes {
        if let Some(m) = note(
            r,
            &format!("data path ({})", mode_name(mode)),
            data_mode(
                lv,
                mode,
                &args.rates,
                args.step_secs,
                reps,
                args.fixed_rate,
                2,
                tag,
            ),
        ) {
            r.modes.push(m);
        }
    }
    Ok(())
}

/// Host tap queue (txqueuelen of both taps: packets waiting for QEMU to
/// read them) at the default 1000 against 10000, alternating in one boot,
/// VIP and direct, one client socket; prints a markdown table to stdout.
pub(super) fn tap_ab(lv: &mut LabVm, args: &Args, rate: u32, reps: usize) -> Res<()> {
    lv.lab.client_route_to_servers().map_err(err)?;
    let set = |lv: &LabVm, q: u32| -> Res<()> {
        for tap in [WAN_TAP, LAN_TAP] {
            let st = Command::new("ip")
                .args(["-n", &lv.lab.switch_ns, "link", "set", tap, "txqueuelen"])
                .arg(q.to_string())
                .status()
                .map_err(err)?;
            if !st.success() {
                return Err(format!("ip link set {tap} txqueuelen {q}: {st}"));
            }
        }
        Ok(())
    };
    // Does a direct call (client → server 1, routed, not to the VIP) touch
    // IPVS? The server's replies come from a real server's address and port,
    // so the out hook may hand them to pe sip's conn_out (a template each).
    let lines = |lv: &mut LabVm| -> Res<u64> {
        let o = guest(lv, "wc -l < /proc/net/ip_vs_conn", Duration::from_secs(120))?;
        o.trim()
            .parse::<u64>()
            .map_err(|_| format!("ip_vs_conn lines: {o}"))
    };
    let before = lines(lv)?;
    let s = one_step(
        lv,
        Route::Direct,
        100,
        5,
        Transport::SocketPerCall,
        "direct-templates",
    )?;
    let after = lines(lv)?;
    println!(
        "direct step (socket per call, 100 calls/s): {} calls; /proc/net/ip_vs_conn lines {before} -> {after}",
        s.stats.created
    );
    let mut out = String::from(
        "| Rep | Route | Tap txqueuelen | Rate | Created / failed | Guest busy % | Softirq % | Tap drops |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in 0..reps {
        for route in [Route::Vip, Route::Direct] {
            for q in [1000u32, 10000] {
                set(lv, q)?;
                let s = one_step(
                    lv,
                    route,
                    rate,
                    args.step_secs,
                    Transport::SingleSocket,
                    &format!("tapab{r}-{route:?}-q{q}-{rate}"),
                )?;
                let _ = writeln!(
                    out,
                    "| {} | {route:?} | {q} | {rate} | {} / {} ({:.1} %) | {} | {} | {} |",
                    r + 1,
                    s.stats.created,
                    s.stats.failed,
                    s.failed_ratio() * 100.0,
                    opt(s.d, |d| format!("{:.0}", d.busy_pct())),
                    opt(s.d, |d| format!("{:.0}", d.softirq_pct())),
                    opt(s.d, |d| d.tap_drops.to_string()),
                );
            }
        }
    }
    set(lv, 1000)?;
    println!("{out}");
    Ok(())
}

pub(super) fn run_kamailio(args: &Args, r: &mut SideResult) -> Res<()> {
    let script = vm::repo_root().join("tests/bench/build-kamailio-image.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("SKIP_DEV_BUILD", "1")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed ({})", script.display(), out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut l = text.lines().filter(|l| !l.trim().is_empty());
    let (Some(k), Some(i)) = (l.next(), l.next()) else {
        return Err(format!("{} printed no image paths", script.display()));
    };
    let image = Image {
        kernel: PathBuf::from(k.trim()),
        initrd: PathBuf::from(i.trim()),
        board: appliance_tests::Board::X86_64,
    };
    let (mut lv, shell, ready) = boot(image, Side::Kamailio)?;
    r.shell_s = Some(shell);
    r.ready_s = Some(ready);
    eprintln!("bench: kamailio ready {ready:.1} s after QEMU start");
    let pids = guest_pids(&mut lv, "/usr/sbin/kamailio")?;
    if pids.is_empty() {
        return Err("no kamailio process in the guest".into());
    }
    std::thread::sleep(Duration::from_secs(3));
    r.rss_kib = note(r, "kamailio RSS", guest_rss_kib(&mut lv, &pids));
    r.pss_kib = note(r, "kamailio PSS", guest_pss_kib(&mut lv, &pids));
    r.cost = note(
        r,
        "probe cost",
        probe_cost(&mut lv, &pids, args.cost_secs, "kamailio"),
    );
    r.detect = note(
        r,
        "failure detection",
        detection(
            &mut lv,
            Side::Kamailio,
            args,
            args.trials,
            Duration::from_secs(30),
            "kamailio",
            |_, _| Ok(()),
        ),
    );
    // One repetition near the limit: Kamailio's own limit, not the kernel's.
    run_data_path(&mut lv, args, r, "kamailio", 1)?;
    Ok(())
}

pub(super) fn rss_big(lv: &mut LabVm) -> Res<(u64, u32)> {
    let factory =
        std::fs::read_to_string(vm::repo_root().join("rootfs-overlay/etc/appliance/factory.toml"))
            .map_err(err)?;
    let big = big_config(&factory)?;
    guest_write(lv, "/tmp/big.toml", &big)?;
    guest(
        lv,
        "appliance config check /tmp/big.toml",
        Duration::from_secs(60),
    )?;
    guest(
        lv,
        "appliance config import /tmp/big.toml",
        Duration::from_secs(60),
    )?;
    lv.kill_daemon().map_err(err)?;
    // Wait until the kernel has all 8 services, then let the prober run.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let n = guest(
            lv,
            "grep -c '^UDP' /proc/net/ip_vs || true",
            Duration::from_secs(60),
        )?;
        if n.trim().parse::<u32>().unwrap_or(0) >= 8 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "8 services not in the kernel table after 180 s (have {})",
                n.trim()
            ));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    std::thread::sleep(Duration::from_secs(10));
    let pid = lv.daemon_pid().map_err(err)?.ok_or("daemon gone")?;
    let dests = guest(
        lv,
        "grep -cE -- '-> [0-9A-F]{8}:' /proc/net/ip_vs || true",
        Duration::from_secs(60),
    )?;
    let dests = dests.trim().parse::<u32>().unwrap_or(0);
    eprintln!("bench: 8×64 config running, {dests} kernel destinations");
    Ok((guest_rss_kib(lv, &[pid])?, dests))
}

pub(super) fn run_keepalived(args: &Args, r: &mut SideResult) -> Res<()> {
    let script = vm::repo_root().join("tests/bench/build-keepalived-image.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("SKIP_DEV_BUILD", "1")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed ({})", script.display(), out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut l = text.lines().filter(|l| !l.trim().is_empty());
    let (Some(k), Some(i)) = (l.next(), l.next()) else {
        return Err(format!("{} printed no image paths", script.display()));
    };
    let image = Image {
        kernel: PathBuf::from(k.trim()),
        initrd: PathBuf::from(i.trim()),
        board: vm::Board::X86_64,
    };
    let (mut lv, shell, ready) = boot(image, Side::Keepalived)?;
    r.shell_s = Some(shell);
    r.ready_s = Some(ready);
    eprintln!("bench: keepalived ready {ready:.1} s after QEMU start");
    let pids = guest_pids(&mut lv, "/usr/sbin/keepalived")?;
    if pids.is_empty() {
        return Err("no keepalived process in the guest".into());
    }
    // Let the checkers settle into their loop.
    std::thread::sleep(Duration::from_secs(3));
    r.rss_kib = note(r, "keepalived RSS", guest_rss_kib(&mut lv, &pids));
    r.cost = note(
        r,
        "probe cost",
        probe_cost(&mut lv, &pids, args.cost_secs, "keepalived"),
    );
    let dead = lv.lab.servers[1].addr;
    let mut fails = Vec::new();
    r.detect = note(
        r,
        "failure detection (delay_loop 1)",
        detection(
            &mut lv,
            Side::Keepalived,
            args,
            args.trials,
            Duration::from_secs(30),
            "keepalived-dl1",
            |lv, _| {
                // How long a failing check runs, timed in the guest (own port).
                if fails.len() < 6 {
                    let (ms, rc) = time_check(lv, dead, 5197)?;
                    if rc != 0 {
                        fails.push(ms);
                    }
                }
                Ok(())
            },
        ),
    );
    r.check_fail_ms = fails;
    let live = lv.lab.servers[0].addr;
    for _ in 0..5 {
        if let Some((ms, 0)) = note(r, "check timing", time_check(&mut lv, live, 5198)) {
            r.check_ok_ms.push(ms);
        }
    }
    // Config change: weight 0 and back by editing keepalived.conf + SIGHUP.
    let conf = "/etc/keepalived/keepalived.conf";
    let s3 = lv.lab.servers[2].addr;
    let hup = "kill -HUP $(cat /run/keepalived.pid 2>/dev/null || pidof keepalived | tr \" \" \"\\n\" | sort -n | head -1)";
    r.change = note(
        r,
        "config change",
        config_change(
            &mut lv,
            args.changes,
            10,
            &format!("sed -i '/real_server {s3} /,/weight/ s/weight 1/weight 0/' {conf} && {hup}"),
            &format!("sed -i '/real_server {s3} /,/weight/ s/weight 0/weight 1/' {conf} && {hup}"),
            "keepalived",
        ),
    );
    if args.dl120_trials > 0 {
        let switched = guest(
            &mut lv,
            &format!("cp /etc/keepalived/keepalived-dl120.conf {conf} && {hup}"),
            Duration::from_secs(30),
        );
        if note(r, "switch to delay_loop 120", switched).is_some() {
            std::thread::sleep(Duration::from_secs(5));
            r.detect_120 = note(
                r,
                "failure detection (delay_loop 120, real trials)",
                detection(
                    &mut lv,
                    Side::Keepalived,
                    args,
                    args.dl120_trials,
                    Duration::from_secs(150),
                    "keepalived-dl120",
                    |_, _| Ok(()),
                ),
            );
        }
    }
    Ok(())
}
