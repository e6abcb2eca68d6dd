//! The seed's verification plan against the booted image, part 3: operations
//! under steady call load. Restart: the daemon is killed (SIGKILL) and init
//! respawns it: zero failed calls. Drain: a server drained from the admin
//! interface gets no new calls once the kernel shows it drained, while the
//! calls it already had complete. Removal: a server removed from the config
//! while its calls wait for its late 200 stays in the kernel at weight 0, so
//! the late replies leave de-NATed from the VIP and no packet with a LAN
//! source reaches the clients.

use appliance_tests::lab::booted::LabVm;
use appliance_tests::lab::rounds::{load_with_action, poll_kernel, Load};
use appliance_tests::lab::{self, evidence, LabOptions};
use appliance_tests::sipp::{Uac, UacOptions};
use std::net::Ipv4Addr;
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

    removal_while_replies_are_late(&mut lv, &servers);
}

/// Server 1 leaves the config (live import) while calls on it wait for its late 200.
fn removal_while_replies_are_late(lv: &mut LabVm, servers: &[Ipv4Addr]) {
    const LATE_MS: u32 = 5000;
    lv.switch_servers("uas_late.xml", LATE_MS)
        .expect("late-answering servers");
    let removed = servers[1];
    let vip = lv.lab.vip();
    let mut wan = lv.capture_wan("removal-wan.pcap").expect("WAN capture");
    let mut lanc = lv.capture_lan("removal-lan.pcap").expect("LAN capture");
    let mut opts = UacOptions::basic(&lv.lab, vip, 6, 3);
    opts.port = 5500;
    opts.recv_timeout_ms = LATE_MS + 4000;
    let uac = Uac::start(&lv.lab, &opts, "removal").expect("client");
    std::thread::sleep(Duration::from_millis(1500));
    // The running config without server 1, applied and saved through the daemon.
    let t_remove = appliance_tests::lab::booted::now_us();
    lv.guest(&format!(
        "appliance config export /tmp/rm-a.toml >/dev/null && \
         awk 'function flush() {{ if (buf != \"\" && buf !~ /\"{removed}\"/) printf \"%s\", buf; buf = \"\" }} \
              /^\\[/ {{ flush(); blk = ($0 == \"[[services.servers]]\") }} \
              {{ if (blk) buf = buf $0 \"\\n\"; else print }} END {{ flush() }}' \
             /tmp/rm-a.toml > /tmp/rm-b.toml && \
         ! grep -q '\"{removed}\"' /tmp/rm-b.toml && appliance config import --live /tmp/rm-b.toml"
    ))
    .expect("remove server 1 from the running config");
    let t_applied = appliance_tests::lab::booted::now_us();
    let k = lv.kernel_service().expect("kernel").expect("VIP service");
    let kept = k.dests.iter().find(|(a, _, _)| *a == removed).map(|d| d.2);
    let status = lv.guest("appliance status --json").expect("status");
    let ipvs_conn = lv.guest("cat /proc/net/ip_vs_conn").unwrap_or_default();
    eprintln!("after removal: {k:?}\n{ipvs_conn}");
    let sipp = uac.wait().expect("client run");
    std::thread::sleep(Duration::from_millis(500));
    let wan = wan.stop().expect("WAN packets");
    let lan = lanc.stop().expect("LAN packets");
    // Calls whose INVITE reached server 1 before the removal and whose 200 it sent after.
    let late: Vec<String> = evidence::first_arrivals(&lan, servers)
        .into_iter()
        .filter(|(_, (s, t))| *s == removed && *t < t_remove)
        .map(|(c, _)| c)
        .filter(|c| {
            lan.iter().any(|p| {
                &p.call_id == c
                    && *p.src.ip() == removed
                    && p.cseq_method == "INVITE"
                    && matches!(p.kind, appliance_tests::lab::pcap::SipKind::Response(200))
                    && p.ts_us >= t_applied
            })
        })
        .collect();
    let lan_net = |a: Ipv4Addr| a.octets()[..3] == removed.octets()[..3];
    let leaked: Vec<String> = wan
        .iter()
        .filter(|p| lan_net(*p.src.ip()))
        .map(|p| format!("{} -> {} {:?} {}", p.src, p.dst, p.kind, p.call_id))
        .collect();
    let late_from_vip = late
        .iter()
        .filter(|c| {
            wan.iter().any(|p| {
                &p.call_id == *c
                    && p.src == vip
                    && p.cseq_method == "INVITE"
                    && matches!(p.kind, appliance_tests::lab::pcap::SipKind::Response(200))
            })
        })
        .count();
    eprintln!(
        "FIGURE removal kernel_weight_after_apply={kept:?} apply_ms={} late_calls={} \
         late_200_from_vip={late_from_vip} leaked_lan_source={} sipp={sipp:?}",
        (t_applied - t_remove) / 1000,
        late.len(),
        leaked.len()
    );
    assert_eq!(
        kept,
        Some(0),
        "the removed server must stay in the kernel at weight 0 while its calls go on: {k:?}"
    );
    assert!(
        status.contains("\"draining\"") && status.contains(&removed.to_string()),
        "status shows no drain of {removed}: {status}"
    );
    assert!(
        !late.is_empty(),
        "no call on the removed server answered after the removal (nothing was tested)"
    );
    assert!(
        leaked.is_empty(),
        "LAN source addresses reached the clients: {leaked:?}"
    );
    assert_eq!(late_from_vip, late.len(), "late 200s not seen from the VIP");
    assert_eq!(sipp.failed, 0, "{sipp:?}");
}
