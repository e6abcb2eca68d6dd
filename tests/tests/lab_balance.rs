//! The seed's verification plan against the booted image, part 1: spread
//! (single-socket and socket-per-call clients), persistence by Call-ID past
//! the persistence timeout with session-timer refreshes, NAT (replies and
//! server-sent BYEs leave with the VIP as source). One VM for all, to keep
//! TCG time down. Assertions use only packet captures and sipp's results.

use appliance_tests::lab::booted::LabVm;
use appliance_tests::lab::{self, evidence, LabOptions};
use appliance_tests::sipp::{Transport, Uac, UacOptions};
use std::time::Duration;

/// Persistence timeout the test asks for (short, so refreshes must matter).
const SHORT_PERSISTENCE: u32 = 8;

#[test]
fn lab_spread_persistence_nat() {
    if let Err(why) = lab::check_host() {
        appliance_tests::skip::skip(&why);
        return;
    }
    let mut lv = LabVm::boot(&LabOptions::default(), "uas.xml").expect("boot lab + appliance");
    let servers = lv.lab.server_addrs();

    // Short persistence timeout through the appliance's own config path.
    let want = SHORT_PERSISTENCE * lv.hz;
    match lv.set_config_keys(&[("persistence_timeout", &SHORT_PERSISTENCE.to_string())]) {
        Ok(()) => lv
            .wait_weights(
                Duration::from_secs(120),
                "short persistence timeout applied",
                |s| s.persistence_jiffies() == Some(want) && s.dests.iter().all(|d| d.2 > 0),
            )
            .expect("config change applied"),
        Err(e) => eprintln!(
            "WARNING: could not shorten the persistence timeout ({e}); using the kernel's"
        ),
    }
    lv.wait_balancing(Duration::from_secs(60))
        .expect("balancing");
    let persistence = lv
        .persistence_s()
        .expect("read ip_vs")
        .expect("the VIP's service is persistent");
    assert!(
        persistence <= 30,
        "persistence timeout {persistence} s: too long for the refresh check (config change failed?)"
    );
    eprintln!("lab: persistence timeout {persistence} s");

    let mut lan = lv.capture_lan("lan.pcap").expect("LAN capture");
    let mut wan = lv.capture_wan("wan.pcap").expect("WAN capture");

    // 1. Spread, single socket (sipp's default, like an SBC in front).
    let n = 30;
    let mut a = UacOptions::basic(&lv.lab, lv.lab.vip(), n, 5);
    a.hold_ms = 300;
    let sa = Uac::run(&lv.lab, &a, "spread-single").expect("single-socket load");
    // 2. Spread, a socket per call, from another client address.
    let mut b = a.clone();
    b.transport = Transport::SocketPerCall;
    b.local = lv.lab.clients[1];
    let sb = Uac::run(&lv.lab, &b, "spread-per-call").expect("socket-per-call load");

    // 3. Session-timer refreshes keep calls on one server past the
    //    persistence timeout: gaps of 5/8 of it, calls of 2.5 times it.
    let gap_ms = persistence * 1000 * 5 / 8;
    let mut c = UacOptions::basic(&lv.lab, lv.lab.vip(), 6, 2);
    c.scenario = "uac_refresh.xml".into();
    c.hold_ms = gap_ms;
    c.local = lv.lab.clients[2];
    c.time_limit = Duration::from_millis(gap_ms as u64 * 4 + 60_000);
    let mut d = c.clone();
    d.transport = Transport::SocketPerCall;
    d.local = lv.lab.clients[3];
    let uc = Uac::start(&lv.lab, &c, "refresh-single").expect("refresh load");
    let ud = Uac::start(&lv.lab, &d, "refresh-per-call").expect("refresh load");
    let (sc, sd) = (uc.wait().expect("refresh"), ud.wait().expect("refresh"));

    let lan_p = lan.stop().expect("LAN capture");
    let wan_p = wan.stop().expect("WAN capture");

    eprintln!("sipp: single {sa:?}\nsipp: per-call {sb:?}\nsipp: refresh {sc:?} / {sd:?}");
    for (name, s, want) in [
        ("single", &sa, n),
        ("per-call", &sb, n),
        ("refresh-single", &sc, 6),
        ("refresh-per-call", &sd, 6),
    ] {
        assert_eq!((s.successful, s.failed), (want as u64, 0), "{name}: {s:?}");
    }

    let mut report = String::new();
    for (name, client) in [
        ("single socket", lv.lab.clients[0]),
        ("socket per call", lv.lab.clients[1]),
    ] {
        let p = evidence::from_client(&lan_p, client);
        let t = evidence::per_server(&p, &servers);
        let counts: Vec<usize> = t.values().map(|t| t.new_calls.len()).collect();
        report.push_str(&format!(
            "{name}: calls per server {counts:?}\n{}",
            evidence::table(&t)
        ));
        assert_eq!(
            counts.iter().sum::<usize>(),
            n as usize,
            "{name}: {counts:?}"
        );
        assert!(
            evidence::max_spread(&counts) <= 1,
            "{name}: rr spread must be equal within 1, got {counts:?}"
        );
    }
    eprintln!("{report}");

    // Persistence: no call reached two servers; each refresh call's 7
    // client packets (INVITE, ACK, UPDATE, INVITE, ACK, UPDATE, BYE) all
    // reached one server, and the calls outlived the persistence timeout.
    let split = evidence::split_calls(&lan_p, &servers);
    assert!(split.is_empty(), "calls split across servers: {split:?}");
    for client in [lv.lab.clients[2], lv.lab.clients[3]] {
        let p = evidence::from_client(&lan_p, client);
        let t = evidence::per_server(&p, &servers);
        let calls: usize = t.values().map(|t| t.new_calls.len()).sum();
        let pkts: usize = t.values().map(|t| t.packets).sum();
        assert_eq!(calls, 6, "{}", evidence::table(&t));
        assert_eq!(pkts, 6 * 7, "{}", evidence::table(&t));
        let starts = evidence::call_starts(&p);
        for (call, start) in starts {
            let last = p
                .iter()
                .filter(|x| x.call_id == call)
                .map(|x| x.ts_us)
                .max()
                .unwrap_or(start);
            assert!(
                last - start > persistence as u64 * 1_000_000,
                "call {call} lasted {} ms, not past the {persistence} s persistence timeout",
                (last - start) / 1000
            );
        }
    }

    // NAT: everything the clients receive from port 5060 comes from the VIP.
    let srcs = evidence::sources_towards_clients(&wan_p);
    eprintln!("sources of SIP packets reaching clients: {srcs:?}");
    assert!(!srcs.is_empty());
    assert_eq!(
        srcs.keys().copied().collect::<Vec<_>>(),
        vec![lab::VIP],
        "{srcs:?}"
    );

    // Control: without a refresh inside the persistence timeout the call's
    // next request is scheduled afresh and lands on another server (the
    // seed's warning), so the check above can fail.
    let mut lan = lv.capture_lan("lan-control.pcap").expect("LAN capture");
    let mut f = UacOptions::basic(&lv.lab, lv.lab.vip(), 1, 1);
    f.scenario = "uac_refresh.xml".into();
    f.hold_ms = persistence * 1000 + 3000;
    f.recv_timeout_ms = 3000;
    f.port = 5070;
    f.time_limit = Duration::from_millis(f.hold_ms as u64 * 4 + 60_000);
    let sf = Uac::run(&lv.lab, &f, "control").expect("control call");
    let cp = lan.stop().expect("LAN capture");
    let split = evidence::split_calls(&cp, &servers);
    eprintln!(
        "control (gap {} ms > timeout): sipp {sf:?}, split {split:?}",
        f.hold_ms
    );
    assert_eq!(
        split.len(),
        1,
        "a call idle past the persistence timeout should move"
    );

    // A server that hangs up itself: its BYE reaches the client from the VIP.
    lv.switch_servers("uas_bye.xml", 500)
        .expect("restart servers");
    lv.wait_balancing(Duration::from_secs(60))
        .expect("balancing");
    let mut wan = lv.capture_wan("wan-bye.pcap").expect("WAN capture");
    let mut e = UacOptions::basic(&lv.lab, lv.lab.vip(), 6, 3);
    e.scenario = "uac_peer_bye.xml".into();
    let se = Uac::run(&lv.lab, &e, "peer-bye").expect("peer BYE load");
    let wp = wan.stop().expect("WAN capture");
    assert_eq!((se.successful, se.failed), (6, 0), "{se:?}");
    let byes: Vec<_> = wp.iter().filter(|p| p.is_request("BYE")).collect();
    assert!(
        byes.len() >= 6,
        "server BYEs seen by the client: {}",
        byes.len()
    );
    assert!(
        byes.iter().all(|p| *p.src.ip() == lab::VIP),
        "server BYE not from the VIP: {:?}",
        byes.iter().map(|p| p.src).collect::<Vec<_>>()
    );
}
