//! The seed's verification plan against the booted image, part 3: operations
//! under steady call load. Restart: the daemon is killed (SIGKILL) and init
//! respawns it: zero failed calls. Drain: a server drained from the admin
//! interface gets no new calls once the kernel shows it drained, while the
//! calls it already had complete.

use appliance_tests::lab::booted::LabVm;
use appliance_tests::lab::rounds::{load_with_action, poll_kernel, Load};
use appliance_tests::lab::{self, evidence, LabOptions};
use std::time::Duration;

#[test]
fn lab_restart_and_drain() {
    if let Err(why) = lab::check_host() {
        appliance_tests::skip::skip(&why);
        return;
    }
    let mut lv = LabVm::boot(&LabOptions::default(), "uas.xml").expect("boot lab + appliance");
    let servers = lv.lab.server_addrs();

    // Restart under load.
    let load = Load {
        duration: Duration::from_secs(20),
        hold_ms: 1000,
        port: 5100,
        ..Load::default()
    };
    let (lan, wan, sipp, t_kill, (old, new)) =
        load_with_action(&mut lv, &load, "restart", Duration::from_secs(6), |lv| {
            lv.kill_daemon()
        })
        .expect("restart round");
    eprintln!("daemon pid {old} killed, respawned as {new}");
    eprintln!("{}", evidence::table(&evidence::per_server(&lan, &servers)));
    let failed: u64 = sipp.iter().map(|s| s.failed).sum();
    let created: u64 = sipp.iter().map(|s| s.created).sum();
    let incomplete = evidence::incomplete_calls_between(&wan, 0, u64::MAX);
    eprintln!(
        "FIGURE restart calls={created} failed={failed} incomplete={}",
        incomplete.len()
    );
    assert_eq!(failed, 0, "calls failed across a daemon restart: {sipp:?}");
    assert!(incomplete.is_empty(), "incomplete calls: {incomplete:?}");
    assert!(evidence::split_calls(&lan, &servers).is_empty());
    // Balancing went on after the restart: every server got new calls.
    for s in &servers {
        assert!(
            !evidence::new_calls_after(&lan, &servers, *s, t_kill).is_empty(),
            "no new calls reached {s} after the restart"
        );
    }

    // Drain server 2 in the middle of long calls.
    lv.wait_balancing(Duration::from_secs(60))
        .expect("balancing");
    let drained = servers[2];
    let load = Load {
        duration: Duration::from_secs(20),
        hold_ms: 5000,
        port: 5300,
        ..Load::default()
    };
    let (lan, wan, sipp, t_drain, out_at) =
        load_with_action(&mut lv, &load, "drain", Duration::from_secs(8), |lv| {
            let msg = lv.drain(2)?;
            eprintln!("drain: {}", msg.trim());
            poll_kernel(lv, 2, true, Duration::from_secs(30))
        })
        .expect("drain round");
    eprintln!("{}", evidence::table(&evidence::per_server(&lan, &servers)));
    let out_at = out_at.expect("the kernel shows the drained server at weight 0");
    let after = evidence::new_calls_after(&lan, &servers, drained, out_at);
    let before: Vec<String> = evidence::first_arrivals(&lan, &servers)
        .into_iter()
        .filter(|(_, (s, t))| *s == drained && *t < t_drain)
        .map(|(c, _)| c)
        .collect();
    // Completed on the drained server itself: a 200 to the BYE sent by it
    // (another server answering an unknown dialog's BYE does not count).
    let done: std::collections::BTreeSet<String> = evidence::completed_calls(
        &lan.iter()
            .filter(|p| *p.src.ip() == drained)
            .cloned()
            .collect::<Vec<_>>(),
    );
    let split = evidence::split_calls(&lan, &servers);
    let in_progress_at_drain = before
        .iter()
        .filter(|c| {
            // Still in the call when the drain came: its BYE went later.
            lan.iter()
                .any(|p| &p.call_id == *c && p.is_request("BYE") && p.ts_us >= t_drain)
        })
        .count();
    let unfinished: Vec<&String> = before.iter().filter(|c| !done.contains(*c)).collect();
    let failed: u64 = sipp.iter().map(|s| s.failed).sum();
    eprintln!(
        "FIGURE drain kernel_out_ms={} new_calls_after={} calls_before={} in_progress_at_drain={} \
         unfinished={} split={} sipp_failed={failed}",
        (out_at - t_drain) / 1000,
        after.len(),
        before.len(),
        in_progress_at_drain,
        unfinished.len(),
        split.len()
    );
    assert!(
        after.is_empty(),
        "new calls reached the drained server: {after:?}"
    );
    assert!(
        in_progress_at_drain > 0,
        "no call was in progress on the drained server"
    );
    assert!(
        split.is_empty(),
        "calls split across servers (in-dialog requests of a drained server's calls \
         must still reach it): {split:?}"
    );
    assert!(
        unfinished.is_empty(),
        "drained server's calls did not complete on it: {unfinished:?}"
    );
    assert_eq!(failed, 0, "{sipp:?}");
    let incomplete = evidence::incomplete_calls_between(&wan, 0, u64::MAX);
    assert!(incomplete.is_empty(), "incomplete calls: {incomplete:?}");
}
