//! A rolling firmware upgrade of both boxes of an HA pair under call load, with no
//! failed call. Both boxes boot through GRUB from their own A/B boot disks
//! (tests/image/build-disk.sh) and form the pair (A master, B backup); sipp clients
//! place `uac_refresh.xml` calls (about 4 s each, in-dialog UPDATE/re-INVITE, then BYE)
//! at 20 new calls/s through the VIP for the whole upgrade, and the servers answer 481
//! to dialogs they do not know, so a misrouted request fails its call.
//!
//! 1. The backup (B) installs the signed bundle (test key, `firmware::signed_bundle`: the same
//!    image as version 0.2.0), reboots, returns as backup without taking the VIP and
//!    marks its new slot good (healthy and the peer heard).
//! 2. After a pause longer than a call, so every call in progress has been synced to B,
//!    the master (A) installs and reboots: its daemon resigns with priority 0, B takes
//!    over at once, A returns as backup and marks good.
//!
//! Asserted from sipp's statistics and the captures (client side, both LAN taps), not
//! from the boxes' reports: 0 failed calls, no call whose requests reached more than one
//! server, no 481, every call the master forwarded in its last 3 s before resigning seen
//! in a sync message on the backup's port, the master changed exactly once (A -> B, at A's reboot), no client
//! traffic through B before it nor through A after it; then both boxes run 0.2.0 from
//! slot B, marked good, read from the guests and from each boot disk's GRUB environment
//! on the host. `FIGURE ha_rolling_upgrade ...` prints the calls, the takeover time of
//! each step (none at the backup's reboot), each box's reboot-to-balancing and
//! reboot-to-marked-good times, the test's duration and the host load.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use appliance_tests::ensure_image;
use appliance_tests::firmware::{self, slot_good_and_next};
use appliance_tests::guest;
use appliance_tests::lab::booted::now_us;
use appliance_tests::lab::capture::Capture;
use appliance_tests::lab::frames::Frame;
use appliance_tests::lab::ha;
use appliance_tests::lab::ha_rounds::{finish_captures, start_captures, start_load, HaLoad};
use appliance_tests::lab::pair::{BoxId, DiskBoot, HaPair, VRID};
use appliance_tests::lab::pcap::{contains, udp_to, SipKind};
use appliance_tests::lab::{self};
use appliance_tests::skip::skip;

const NEW_VERSION: &str = "0.2.0";
/// A TCG box on a loaded host: reboot through GRUB to balancing.
const REBOOT_LIMIT: Duration = Duration::from_secs(300);
/// From balancing to the new slot marked good (the daemon checks on its tick).
const MARK_GOOD_LIMIT: Duration = Duration::from_secs(180);
/// After the backup is back: longer than a lab call (~4 s), so every call in progress
/// when the master reboots was set up while the backup was receiving the sync.
const SYNC_SETTLE: Duration = Duration::from_secs(10);
/// IPVS sync daemon port (kernel default).
const SYNC_PORT: u16 = 8848;
/// The master's last calls checked on the sync link: those it forwarded in this window
/// before its resignation.
const SYNC_CHECKED_US: u64 = 3_000_000;

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The guest's `appliance firmware status`.
fn guest_status(pair: &mut HaPair, id: BoxId) -> String {
    pair.guest(id, "appliance firmware status 2>&1")
        .unwrap_or_else(|e| panic!("box {id:?}: firmware status: {e}"))
}

/// Waits until box `id` shows `slot` holding `version`, good and first in the boot order.
fn wait_marked_good(pair: &mut HaPair, id: BoxId, slot: &str, version: &str) -> Duration {
    let t = Instant::now();
    let vm = pair.vm(id).expect("vm");
    guest::poll(
        vm,
        MARK_GOOD_LIMIT,
        Duration::from_secs(2),
        &format!("box {id:?}: slot {slot} ({version}) marked good"),
        |vm| {
            let s = vm.shell_ok("appliance firmware status 2>&1")?;
            Ok(slot_good_and_next(&s, slot, version).then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    t.elapsed()
}

/// Installs the bundle (/dev/vdc) into box `id`'s other slot; panics unless it went
/// into slot B on trial.
fn install(pair: &mut HaPair, id: BoxId) -> Duration {
    let t = Instant::now();
    let (out, rc) = pair
        .vm(id)
        .expect("vm")
        .shell_timeout(
            "appliance firmware install /dev/vdc 2>&1",
            Duration::from_secs(600),
        )
        .unwrap_or_else(|e| panic!("box {id:?}: install: {e}"));
    assert!(
        rc == 0 && out.contains(&format!("installed {NEW_VERSION} into slot B")),
        "box {id:?}: install failed (rc {rc}):\n{out}"
    );
    let st = guest_status(pair, id);
    assert!(
        firmware::slot_line(&st, "B").is_some_and(|l| l.contains("on trial")),
        "box {id:?}: slot B not on trial after the install:\n{st}"
    );
    t.elapsed()
}

/// Reboots box `id` into its new slot; returns (reboot instant µs, reboot to
/// balancing, balancing to marked good).
fn reboot_into_new(pair: &mut HaPair, id: BoxId) -> (u64, Duration, Duration) {
    let t = Instant::now();
    let t_us = pair.reboot(id).expect("reboot");
    pair.wait_rebooted(id, REBOOT_LIMIT)
        .unwrap_or_else(|e| panic!("box {id:?} did not come back from its reboot: {e}"));
    let up = t.elapsed();
    let cmdline = pair.guest(id, "cat /proc/cmdline").expect("cmdline");
    let version = pair
        .guest(id, "cat /etc/appliance/firmware-version")
        .expect("version");
    assert!(
        cmdline.contains("appliance.slot=B") && version.trim() == NEW_VERSION,
        "box {id:?} does not run the new slot: {cmdline} / {version}"
    );
    // It came back as backup: without preemption the peer keeps the VIP.
    let h = pair.holds(id).expect("holds");
    assert_eq!(
        h,
        (false, false),
        "box {id:?} came back holding (VIP, gateway)"
    );
    let good = wait_marked_good(pair, id, "B", NEW_VERSION);
    (t_us, up, good)
}

/// One step of the rolling upgrade: install on box `id`, reboot it into the new slot, and
/// the other box holds the VIP and the gateway afterwards. Returns (install time, reboot
/// instant µs, reboot to balancing, balancing to marked good).
fn upgrade(pair: &mut HaPair, id: BoxId) -> (Duration, u64, Duration, Duration) {
    let installed = install(pair, id);
    let (t, up, good) = reboot_into_new(pair, id);
    let other = id.other();
    assert_eq!(
        pair.holds(other).expect("holds"),
        (true, true),
        "box {other:?} is not master after box {id:?}'s upgrade"
    );
    (installed, t, up, good)
}

/// The longest silence of client SIP traffic on the client's wire in `[from, to)` (ms).
fn longest_silence_ms(wan: &[Frame], from: u64, to: u64) -> u64 {
    let ts: Vec<u64> = wan
        .iter()
        .filter(|f| f.ts_us >= from && f.ts_us < to)
        .filter(|f| matches!(&f.payload, appliance_tests::lab::frames::Payload::Sip(_)))
        .map(|f| f.ts_us)
        .collect();
    ts.windows(2)
        .map(|w| (w[1] - w[0]) / 1000)
        .max()
        .unwrap_or(0)
}

#[test]
fn ha_rolling_upgrade_under_load() {
    let started = Instant::now();
    let load_before = load_avg();
    if let Err(why) = lab::check_host().and_then(|()| firmware::host_tools()) {
        skip(&why);
        return;
    }
    let image = ensure_image().expect("dev image");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let boot_disk = firmware::boot_disk(&image, &d.join("boot.img"), "appliance.testshell=1")
        .expect("boot disk");
    let rootfs = firmware::versioned_rootfs(&image.initrd, d, NEW_VERSION).expect("rootfs");
    let bundle = firmware::signed_bundle(&image, &rootfs, NEW_VERSION, &d.join("new.bundle"))
        .expect("bundle");
    let bundle_disk = firmware::as_disk(
        &std::fs::read(&bundle).expect("read bundle"),
        &d.join("new.bundle.disk"),
    )
    .expect("bundle disk");
    let disks = DiskBoot {
        boot_disk,
        extra_disks: vec![bundle_disk],
    };
    let prepared_in = started.elapsed();
    let mut pair = HaPair::boot_from_disks(3, "uas.xml", &disks).expect("boot the pair");
    let booted_in = started.elapsed() - prepared_in;

    // The pair as formed: both on slot A through GRUB, A master, B backup, both good.
    let old_version = {
        let st = guest_status(&mut pair, BoxId::A);
        st.lines()
            .find_map(|l| l.strip_prefix("running: "))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no running version:\n{st}"))
    };
    assert_ne!(old_version, NEW_VERSION);
    for id in [BoxId::A, BoxId::B] {
        let cmdline = pair.guest(id, "cat /proc/cmdline").expect("cmdline");
        assert!(
            cmdline.contains("appliance.slot=A"),
            "box {id:?}: GRUB did not boot slot A: {cmdline}"
        );
        wait_marked_good(&mut pair, id, "A", &old_version);
    }
    assert_eq!(pair.holds(BoxId::A).expect("A"), (true, true), "A master");
    assert_eq!(pair.holds(BoxId::B).expect("B"), (false, false), "B backup");

    let (a, b) = (pair.spec(BoxId::A).clone(), pair.spec(BoxId::B).clone());
    let (wan, mut lans) = start_captures(&pair, "rolling").expect("captures");
    // The master's connection sync as it reaches the backup's port.
    let mut sync_cap = Capture::start_filtered(
        &pair.lab.switch_ns,
        &b.lan_tap,
        pair.lab.path("rolling-sync-B.pcap"),
        &["udp", "port", &SYNC_PORT.to_string()],
    )
    .expect("sync capture");
    let cap_start = now_us();
    let load = HaLoad::default();
    let uacs = start_load(&pair, &load, 900, "rolling").expect("load");
    std::thread::sleep(Duration::from_secs(8));

    // Step 1: the backup; step 2, once every call in progress is known to it, the master.
    let (install_b, t_b, up_b, good_b) = upgrade(&mut pair, BoxId::B);
    std::thread::sleep(SYNC_SETTLE);
    let (install_a, t_a, up_a, good_a) = upgrade(&mut pair, BoxId::A);
    std::thread::sleep(Duration::from_secs(8));

    for u in &uacs {
        u.soft_stop();
    }
    let mut sipp = Vec::new();
    for u in uacs {
        sipp.push(u.wait().expect("sipp client"));
    }
    let end = now_us();
    let (wf, lf) = finish_captures(wan, &mut lans).expect("captures");
    sync_cap.finish();
    let sync = udp_to(
        &std::fs::read(&sync_cap.file).expect("sync capture file"),
        SYNC_PORT,
    );

    let mut problems = Vec::new();
    // Masters on the wire: A until its reboot, then B, and nothing else.
    let changes = ha::master_changes(&wf, VRID, cap_start, end);
    let who: Vec<_> = changes.iter().map(|(_, s)| *s).collect();
    if who != vec![a.wan, b.wan] || changes.get(1).is_some_and(|(t, _)| *t < t_a) {
        problems.push(format!(
            "WAN masters in order {changes:?}: want {} then {} (after the master's reboot at {t_a})",
            a.wan, b.wan
        ));
    }
    let lan_changes = ha::master_changes(&lf, VRID, cap_start, end);
    let lw: Vec<_> = lan_changes.iter().map(|(_, s)| *s).collect();
    if lw != vec![a.lan, b.lan] {
        problems.push(format!(
            "LAN masters in order {lan_changes:?}: want {} then {}",
            a.lan, b.lan
        ));
    }
    // Step 1 moves nothing; step 2: A resigns, B takes over.
    let b_forwarded_early = ha::sip_via(&lf, b.lan_mac)
        .iter()
        .filter(|(t, _)| *t < t_a)
        .count();
    if b_forwarded_early > 0 {
        problems.push(format!(
            "the backup forwarded {b_forwarded_early} client frames before the master's reboot"
        ));
    }
    let resign = ha::resignations(&wf, VRID, t_a, end)
        .into_iter()
        .find(|(_, s)| *s == a.wan)
        .map(|(t, _)| t);
    let takeover = ha::first_advert_from(&wf, VRID, b.wan, t_a);
    let sw = ha::switchover(&lf, a.lan_mac, b.lan_mac, t_a, 2_000_000);
    if resign.is_none() {
        problems.push("no priority-0 advert from the master at its reboot".into());
    }
    if sw.old_after_settle > 0 {
        problems.push(format!(
            "{} client frames through A after the switch to B",
            sw.old_after_settle
        ));
    }
    // The last calls the master forwarded before it resigned reached the sync group too
    // (its last flush: nothing after the resignation would push their templates out).
    let resign_t = resign.unwrap_or(end);
    let last_forwarded: BTreeMap<&str, u64> = ha::sip_via(&lf, a.lan_mac)
        .into_iter()
        .filter(|(t, p)| {
            *t + SYNC_CHECKED_US >= resign_t
                && *t < resign_t
                && matches!(p.kind, SipKind::Request(_))
        })
        .fold(BTreeMap::new(), |mut m, (t, p)| {
            m.entry(p.call_id.as_str()).or_insert(t);
            m
        });
    let unsynced: Vec<&str> = last_forwarded
        .iter()
        .filter(|(cid, t)| {
            !sync
                .iter()
                .any(|(ts, msg)| *ts + 1_000 >= **t && contains(msg, cid.as_bytes()))
        })
        .map(|(cid, _)| *cid)
        .collect();
    if last_forwarded.is_empty() || !unsynced.is_empty() {
        problems.push(format!(
            "of the {} calls the master forwarded in the {} ms before it resigned, these never \
             reached the sync group: {unsynced:?}",
            last_forwarded.len(),
            SYNC_CHECKED_US / 1000
        ));
    }
    // Calls: sipp's count, and per call from the captures.
    let calls = ha::calls(
        &ha::sip_packets(&wf),
        &ha::sip_packets(&lf),
        &pair.lab.server_addrs(),
    );
    let at_a = ha::call_figures(&calls, t_a, 2_000_000, 5_000_000);
    let at_b = ha::call_figures(&calls, t_b, 2_000_000, 5_000_000);
    let created: u64 = sipp.iter().map(|s| s.created).sum();
    let successful: u64 = sipp.iter().map(|s| s.successful).sum();
    let failed: u64 = sipp.iter().map(|s| s.failed).sum();
    if failed > 0 || successful != created || created == 0 {
        problems.push(format!(
            "sipp: {created} calls created, {successful} successful, {failed} failed: {sipp:?}"
        ));
    }
    if !at_a.split_any.is_empty() || at_a.got_481 > 0 {
        problems.push(format!(
            "calls whose requests reached more than one server: {:?}; calls with a 481: {}",
            at_a.split_any, at_a.got_481
        ));
    }
    let ms = |v: Option<u64>, from: u64| {
        v.map(|t| (t.saturating_sub(from) / 1000).to_string())
            .unwrap_or_else(|| "none".into())
    };
    eprintln!(
        "FIGURE ha_rolling_upgrade calls_created={created} successful={successful} failed={failed} \
         captured_calls={} captured_incomplete={} split={} got_481={} \
         backup_step: master_changes=0 inflight={} longest_client_silence_ms={} \
         master_step: inflight={} inflight_split={} synced_last={} resign_ms={} takeover_ms={} \
         resign_to_takeover_ms={} lan_gap_ms={} longest_client_silence_ms={}",
        at_a.calls,
        at_a.calls - at_a.completed,
        at_a.split_any.len(),
        at_a.got_481,
        at_b.inflight,
        longest_silence_ms(&wf, t_b, t_a),
        at_a.inflight,
        at_a.inflight_split.len(),
        last_forwarded.len() - unsynced.len(),
        ms(resign, t_a),
        ms(takeover, t_a),
        match (resign, takeover) {
            (Some(r), Some(t)) => (t.saturating_sub(r) / 1000).to_string(),
            _ => "none".into(),
        },
        sw.gap_ms()
            .map(|g| g.to_string())
            .unwrap_or_else(|| "none".into()),
        longest_silence_ms(&wf, t_a, end),
    );
    for (id, install, up, good) in [
        ("B", install_b, up_b, good_b),
        ("A", install_a, up_a, good_a),
    ] {
        eprintln!(
            "FIGURE ha_rolling_upgrade_box box={id} install_s={:.1} reboot_to_balancing_s={:.1} \
             balancing_to_marked_good_s={:.1}",
            install.as_secs_f64(),
            up.as_secs_f64(),
            good.as_secs_f64()
        );
    }

    // Both boxes on the new version, marked good: the guests' view and the GRUB
    // environment of each boot disk read on the host.
    for id in [BoxId::A, BoxId::B] {
        let st = guest_status(&mut pair, id);
        if !slot_good_and_next(&st, "B", NEW_VERSION)
            || !st.contains(&format!("running: {NEW_VERSION}"))
        {
            problems.push(format!(
                "box {id:?} (guest): not on {NEW_VERSION} marked good:\n{st}"
            ));
        }
        let disk = pair.bx(id).boot_disk.clone().expect("boot disk");
        let host = firmware::host_status(Path::new(&disk), "B").expect("host status");
        // The old slot stays good: the way back.
        let old_ok = firmware::slot_line(&host, "A")
            .is_some_and(|l| l.contains(&old_version) && l.contains(" good "));
        if !slot_good_and_next(&host, "B", NEW_VERSION) || !old_ok {
            problems.push(format!(
                "box {id:?} (host, {}): want B = {NEW_VERSION} good and next, A = {old_version} good:\n{host}",
                disk.display()
            ));
        }
    }
    eprintln!(
        "FIGURE ha_rolling_upgrade_run duration_s={:.0} image_disk_bundle_s={:.0} pair_boot_s={:.0} \
         upgrade_s={:.0} load_before=\"{load_before}\" load_after=\"{}\"",
        started.elapsed().as_secs_f64(),
        prepared_in.as_secs_f64(),
        booted_in.as_secs_f64(),
        (started.elapsed() - prepared_in - booted_in).as_secs_f64(),
        load_avg()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
