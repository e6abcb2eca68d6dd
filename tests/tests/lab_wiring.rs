//! The lab without the appliance: a plain router namespace between the
//! bridges. Proves the wiring, the sipp scenarios and the capture-based
//! evidence before any VM is involved (the host kernel has no IPVS, so
//! clients call the servers directly through the router).

use appliance_tests::lab::{self, capture::Capture, evidence, Appliance, Lab, LabOptions};
use appliance_tests::sipp::{self, Transport, Uac, UacOptions};
use std::time::Duration;

fn lab_or_skip() -> Option<Lab> {
    if let Err(why) = lab::check_host() {
        appliance_tests::skip::skip(&why);
        return None;
    }
    let opts = LabOptions {
        appliance: Appliance::Router,
        ..LabOptions::default()
    };
    Some(Lab::new(&opts).expect("build lab"))
}

#[test]
fn lab_wiring_router_sipp_and_evidence() {
    let Some(mut lab) = lab_or_skip() else {
        return;
    };
    let names = vec![lab.switch_ns.clone(), lab.client_ns.clone()];

    // The client namespace has no route out of the WAN subnet.
    let routes = lab::ns_run(&lab.client_ns, "ip", &["-4", "route", "show"]).unwrap();
    assert!(
        !routes.contains("default"),
        "client has a default route: {routes}"
    );
    lab.client_route_to_servers().unwrap();

    // Server 1 hangs up itself; the others wait for the client's BYE.
    for i in 0..lab.servers.len() {
        let sc = if i == 1 { "uas_bye.xml" } else { "uas.xml" };
        sipp::start_uas(&mut lab, i, sc, 300).unwrap();
    }
    let lan = Capture::start(&lab.switch_ns, lab::LAN_TAP, lab.path("lan.pcap")).unwrap();
    let mut wan = Capture::start(&lab.client_ns, "eth0", lab.path("wan.pcap")).unwrap();
    let mut lan = lan;

    // Server 0: single socket, basic calls. Server 2: socket per call with
    // session-timer refreshes. Server 1: the server sends BYE.
    let mut a = UacOptions::basic(&lab, lab.servers[0].sip(), 6, 10);
    a.hold_ms = 200;
    let mut b = UacOptions::basic(&lab, lab.servers[2].sip(), 4, 10);
    b.scenario = "uac_refresh.xml".into();
    b.hold_ms = 300;
    b.transport = Transport::SocketPerCall;
    b.local = lab.clients[1];
    let mut c = UacOptions::basic(&lab, lab.servers[1].sip(), 3, 10);
    c.scenario = "uac_peer_bye.xml".into();
    c.local = lab.clients[2];
    let ua = Uac::start(&lab, &a, "a").unwrap();
    let ub = Uac::start(&lab, &b, "b").unwrap();
    let uc = Uac::start(&lab, &c, "c").unwrap();
    let (sa, sb, sc) = (ua.wait().unwrap(), ub.wait().unwrap(), uc.wait().unwrap());
    assert_eq!((sa.successful, sa.failed), (6, 0), "{sa:?}");
    assert_eq!((sb.successful, sb.failed), (4, 0), "{sb:?}");
    assert_eq!((sc.successful, sc.failed), (3, 0), "{sc:?}");

    let lan_pkts = lan.stop().unwrap();
    let wan_pkts = wan.stop().unwrap();
    let servers = lab.server_addrs();
    let t = evidence::per_server(&lan_pkts, &servers);
    eprintln!("{}", evidence::table(&t));
    assert_eq!(t[&servers[0]].new_calls.len(), 6);
    assert_eq!(t[&servers[1]].new_calls.len(), 3);
    assert_eq!(t[&servers[2]].new_calls.len(), 4);
    // Basic call: INVITE, ACK, BYE. Refresh call: INVITE, ACK, UPDATE,
    // INVITE, ACK, UPDATE, BYE. Peer-BYE call: INVITE, ACK, 200 (to BYE).
    assert_eq!(t[&servers[0]].packets, 6 * 3);
    assert_eq!(t[&servers[2]].packets, 4 * 7);
    assert_eq!(t[&servers[1]].packets, 3 * 3);
    assert!(evidence::split_calls(&lan_pkts, &servers).is_empty());
    // Socket per call: 4 distinct source ports from client 2.
    let ports: std::collections::BTreeSet<u16> = lan_pkts
        .iter()
        .filter(|p| p.src.ip() == &lab.clients[1])
        .map(|p| p.src.port())
        .collect();
    assert_eq!(ports.len(), 4, "{ports:?}");
    // Without NAT, replies reach the clients from the servers' own addresses.
    let srcs = evidence::sources_towards_clients(&wan_pkts);
    assert!(srcs.keys().all(|a| servers.contains(a)), "{srcs:?}");
    assert_eq!(evidence::completed_calls(&wan_pkts).len(), 6 + 4 + 3);

    drop(lab);
    let left = lab::ip(&["netns", "list"]).unwrap();
    for n in names {
        assert!(!left.contains(&n), "namespace {n} left behind");
    }
}

#[test]
fn lab_wiring_failure_modes_are_observable() {
    let Some(mut lab) = lab_or_skip() else {
        return;
    };
    lab.client_route_to_servers().unwrap();
    for i in 0..3 {
        sipp::start_uas(&mut lab, i, "uas.xml", 0).unwrap();
    }
    // Silent server: what reaches it is still captured at the LAN side, its
    // answers are not; the client's calls fail on timeout.
    lab.set_server_silent(0, true).unwrap();
    let mut lan = Capture::start(&lab.switch_ns, lab::LAN_TAP, lab.path("lan.pcap")).unwrap();
    let mut o = UacOptions::basic(&lab, lab.servers[0].sip(), 2, 10);
    o.recv_timeout_ms = 1500;
    o.time_limit = Duration::from_secs(30);
    let s = Uac::run(&lab, &o, "silent").unwrap();
    assert_eq!(s.failed, 2, "{s:?}");
    lab.set_server_silent(0, false).unwrap();
    // Silence must not have hurt the server process: it answers again.
    let mut o3 = UacOptions::basic(&lab, lab.servers[0].sip(), 1, 10);
    o3.port = 5064;
    let s3 = Uac::run(&lab, &o3, "silent-back").unwrap();
    assert_eq!((s3.successful, s3.failed), (1, 0), "{s3:?}");
    // Link down: nothing reaches it, calls fail.
    lab.set_server_link(1, false).unwrap();
    let mut o1 = UacOptions::basic(&lab, lab.servers[1].sip(), 1, 10);
    o1.recv_timeout_ms = 1500;
    o1.port = 5062;
    let s1 = Uac::run(&lab, &o1, "down").unwrap();
    assert_eq!(s1.failed, 1, "{s1:?}");
    lab.set_server_link(1, true).unwrap();
    // Back up: calls succeed again.
    let mut o2 = UacOptions::basic(&lab, lab.servers[1].sip(), 2, 10);
    o2.port = 5063;
    let s2 = Uac::run(&lab, &o2, "up").unwrap();
    assert_eq!((s2.successful, s2.failed), (2, 0), "{s2:?}");
    let p = lan.stop().unwrap();
    let t = evidence::per_server(&p, &lab.server_addrs());
    eprintln!("{}", evidence::table(&t));
    assert_eq!(t[&lab.servers[0].addr].new_calls.len(), 3);
    // Only the call after the silence got answers (200 to INVITE, 200 to BYE).
    assert_eq!(t[&lab.servers[0].addr].replies, 2);
    // The link-down call's INVITE may wait in the router's ARP queue and
    // arrive once the link is back; the two later calls complete.
    assert!(t[&lab.servers[1].addr].new_calls.len() >= 2);
    assert_eq!(evidence::completed_calls(&p).len(), 3);
}

#[test]
fn lab_uas_answers_481_to_unknown_dialogs() {
    // A request the balancer sends to the wrong server must fail the call
    // visibly (HA tests count such calls): uas.xml answers 481 to in-dialog
    // BYE, UPDATE and re-INVITE of a dialog it never saw (also after a stray ACK).
    let Some(mut lab) = lab_or_skip() else {
        return;
    };
    lab.client_route_to_servers().unwrap();
    sipp::start_uas(&mut lab, 0, "uas.xml", 300).unwrap();
    let mut cap = Capture::start(&lab.client_ns, "eth0", lab.path("stray.pcap")).unwrap();
    for (i, sc) in [
        "uac_stray_bye.xml",
        "uac_stray_update.xml",
        "uac_stray_reinvite.xml",
        "uac_stray_ack_update.xml",
    ]
    .into_iter()
    .enumerate()
    {
        let mut o = UacOptions::basic(&lab, lab.servers[0].sip(), 2, 10);
        o.scenario = sc.into();
        o.port = 5200 + i as u16;
        o.recv_timeout_ms = 3000;
        let st = Uac::run(&lab, &o, &format!("stray-{i}")).unwrap();
        assert_eq!((st.successful, st.failed), (2, 0), "{sc}: {st:?}");
    }
    // A normal call still works after the strays.
    let mut o = UacOptions::basic(&lab, lab.servers[0].sip(), 2, 10);
    o.scenario = "uac_refresh.xml".into();
    o.hold_ms = 100;
    o.port = 5210;
    let st = Uac::run(&lab, &o, "after-stray").unwrap();
    assert_eq!((st.successful, st.failed), (2, 0), "{st:?}");
    let p = cap.stop().unwrap();
    let n481 = p
        .iter()
        .filter(|p| p.kind == appliance_tests::lab::pcap::SipKind::Response(481))
        .count();
    assert!(n481 >= 8, "captured {n481} 481 responses, want at least 8");
}
