//! What the booted box lets through from WAN, and SIP that real networks send. One VM:
//! 1. A large INVITE (4 KB of SDP) through the VIP arrives in IP fragments; every
//!    fragment of one INVITE reaches one server, calls spread over the servers by
//!    Call-ID and complete (the balancer sees the reassembled message).
//! 2. Forwarding is closed: a WAN host that routes the LAN prefix via the box reaches
//!    no server port (UDP 5060, UDP 9, TCP 22), while calls through the VIP work.
//! 3. Anti-spoofing: a datagram that arrives on WAN with a server's (LAN) source
//!    address is not balanced to any server.
//!
//! Evidence is from captures on the wires and sipp's own statistics.

use appliance_tests::lab::booted::LabVm;
use appliance_tests::lab::capture::Capture;
use appliance_tests::lab::{self, evidence, pcap, LabOptions, LAN_TAP};
use appliance_tests::sipp::{Uac, UacOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// One IPv4 header of a captured frame: (src, dst, id, more-fragments, offset, proto).
type IpHead = (Ipv4Addr, Ipv4Addr, u16, bool, u16, u8);

fn ip_heads(file: &std::path::Path) -> Vec<IpHead> {
    let data = std::fs::read(file).expect("read pcap");
    let (link, recs) = pcap::records(&data).expect("pcap");
    recs.iter()
        .filter_map(|r| {
            let (_, _, et, l3) = pcap::link_header(r.data, link)?;
            let h = r.data.get(l3..l3 + 20)?;
            if et != 0x0800 || h[0] >> 4 != 4 {
                return None;
            }
            let frag = u16::from_be_bytes([h[6], h[7]]);
            Some((
                Ipv4Addr::new(h[12], h[13], h[14], h[15]),
                Ipv4Addr::new(h[16], h[17], h[18], h[19]),
                u16::from_be_bytes([h[4], h[5]]),
                frag & 0x2000 != 0,
                frag & 0x1fff,
                h[9],
            ))
        })
        .collect()
}

/// Runs `f` on a thread inside network namespace `ns`.
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let fd = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("namespace thread panicked")
    })
}

/// A UDP datagram with a spoofed source, written whole through an IPPROTO_RAW socket
/// (the kernel fills in the IP checksum; a zero UDP checksum means none).
fn send_spoofed(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) {
    // SAFETY: plain socket(2); the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    let total = (20 + 8 + payload.len()) as u16;
    let mut pkt = vec![0x45, 0];
    pkt.extend_from_slice(&total.to_be_bytes());
    pkt.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    pkt.extend_from_slice(&src.ip().octets());
    pkt.extend_from_slice(&dst.ip().octets());
    pkt.extend_from_slice(&src.port().to_be_bytes());
    pkt.extend_from_slice(&dst.port().to_be_bytes());
    pkt.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    pkt.extend_from_slice(&[0, 0]);
    pkt.extend_from_slice(payload);
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(dst.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: pkt and `to` outlive the call; lengths are theirs.
    let n = unsafe {
        libc::sendto(
            fd,
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            (&to as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    assert_eq!(n, pkt.len() as isize, "raw send: {err}");
}

#[test]
fn lab_security_fragments_forwarding_spoofing() {
    if let Err(why) = lab::check_host() {
        appliance_tests::skip::skip(&why);
        return;
    }
    let lv = LabVm::boot(&LabOptions::default(), "uas.xml").expect("boot lab + appliance");
    let servers = lv.lab.server_addrs();
    let client = lv.lab.clients[0];

    // ---- 1. large, fragmented INVITEs through the VIP
    let frag = ["ip[6:2] & 0x3fff != 0"];
    let wan_frags = Capture::start_filtered(
        &lv.lab.client_ns,
        "eth0",
        lv.lab.path("wan-frags.pcap"),
        &frag,
    )
    .expect("WAN fragment capture");
    let lan_frags = Capture::start_filtered(
        &lv.lab.switch_ns,
        LAN_TAP,
        lv.lab.path("lan-frags.pcap"),
        &frag,
    )
    .expect("LAN fragment capture");
    let mut lan = lv.capture_lan("lan.pcap").expect("LAN capture");
    let calls = 12;
    let mut big = UacOptions::basic(&lv.lab, lv.lab.vip(), calls, 4);
    big.scenario = "uac_big.xml".into();
    big.hold_ms = 200;
    let st = Uac::run(&lv.lab, &big, "big-invite").expect("big INVITE calls");
    let lan_p = lan.stop().expect("LAN capture");
    let (mut wan_frags, mut lan_frags) = (wan_frags, lan_frags);
    wan_frags.finish();
    lan_frags.finish();
    eprintln!("big INVITE: {st:?}");
    assert_eq!(
        (st.successful, st.failed),
        (calls as u64, 0),
        "every call with a 4 KB INVITE completes through the VIP"
    );
    // The client's INVITEs really left in fragments towards the VIP.
    let wan_h = ip_heads(&wan_frags.file);
    let to_vip: BTreeSet<u16> = wan_h
        .iter()
        .filter(|h| h.0 == client && h.1 == *lv.lab.vip().ip())
        .map(|h| h.2)
        .collect();
    assert!(
        to_vip.len() >= calls as usize,
        "each INVITE is fragmented on WAN ({} fragmented datagrams seen)",
        to_vip.len()
    );
    // On LAN, every fragmented datagram (by IP id) went to exactly one server.
    let mut dests: BTreeMap<u16, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    let mut pieces = 0;
    for h in ip_heads(&lan_frags.file)
        .iter()
        .filter(|h| h.0 == client && servers.contains(&h.1))
    {
        dests.entry(h.2).or_default().insert(h.1);
        pieces += 1;
    }
    assert!(
        dests.len() >= calls as usize && pieces >= 3 * calls as usize,
        "the INVITEs reach the servers fragmented ({} datagrams, {pieces} fragments)",
        dests.len()
    );
    assert!(
        dests.values().all(|d| d.len() == 1),
        "fragments of one INVITE went to different servers: {dests:?}"
    );
    // Calls spread over the servers, each call's messages on one server (a BYE at
    // another server would be answered 481 and fail the call above).
    let per_call = evidence::split_calls(&lan_p, &servers);
    assert!(
        per_call.is_empty(),
        "calls split across servers: {per_call:?}"
    );
    let used: BTreeSet<Ipv4Addr> = dests.values().flatten().copied().collect();
    assert!(
        used.len() >= 2,
        "large INVITEs are balanced (servers used: {used:?})"
    );

    // ---- 2. nothing from WAN reaches a server except through the VIP
    lv.lab
        .client_route_to_servers()
        .expect("client route via the box");
    let mut direct = Capture::start_filtered(
        &lv.lab.switch_ns,
        LAN_TAP,
        lv.lab.path("lan-direct.pcap"),
        &["src", "host", &client.to_string()],
    )
    .expect("LAN capture of the client's packets");
    let target = lv.lab.servers[0].sip();
    let mut d = UacOptions::basic(&lv.lab, target, 2, 2);
    d.recv_timeout_ms = 3000;
    d.time_limit = Duration::from_secs(40);
    d.port = 5071;
    let ds = Uac::run(&lv.lab, &d, "direct").expect("direct calls run");
    let other = *target.ip();
    let (udp9, tcp22) = in_ns(&lv.lab.client_ns, || {
        let u = std::net::UdpSocket::bind((client, 0)).expect("bind");
        let udp = u.send_to(b"hello", (other, 9)).map(|_| ());
        let tcp = std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from((other, 22)),
            Duration::from_secs(3),
        )
        .map(|_| ());
        (udp, tcp)
    });
    eprintln!("direct: sipp {ds:?}, udp/9 {udp9:?}, tcp/22 {tcp22:?}");
    // Calls through the VIP still work right after.
    let mut v = UacOptions::basic(&lv.lab, lv.lab.vip(), 4, 4);
    v.port = 5072;
    v.local = lv.lab.clients[1];
    let vs = Uac::run(&lv.lab, &v, "vip-after").expect("VIP calls");
    std::thread::sleep(Duration::from_secs(1));
    direct.finish();
    let leaked: Vec<IpHead> = ip_heads(&direct.file)
        .into_iter()
        .filter(|h| h.0 == client && servers.contains(&h.1))
        .collect();
    assert_eq!(ds.successful, 0, "a direct call to a server went through");
    assert!(tcp22.is_err(), "TCP from WAN reached a server's port 22");
    assert!(
        leaked.is_empty(),
        "packets from the WAN client reached servers without a VIP: {leaked:?}"
    );
    assert_eq!(
        (vs.successful, vs.failed),
        (4, 0),
        "calls through the VIP still work"
    );

    // ---- 3. a LAN source arriving on WAN is dropped (not balanced to a server)
    let spoofed = servers[1];
    let mut spoof_cap = Capture::start_filtered(
        &lv.lab.switch_ns,
        LAN_TAP,
        lv.lab.path("lan-spoof.pcap"),
        &["src", "host", &spoofed.to_string()],
    )
    .expect("LAN capture of the spoofed source");
    let vip = lv.lab.vip();
    let options = format!(
        "OPTIONS sip:{vip} SIP/2.0\r\nVia: SIP/2.0/UDP {spoofed}:5060;branch=z9hG4bKspoof1\r\n\
         From: <sip:x@{spoofed}>;tag=1\r\nTo: <sip:{vip}>\r\nCall-ID: spoof-1@{spoofed}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    in_ns(&lv.lab.client_ns, || {
        for _ in 0..5 {
            send_spoofed(SocketAddrV4::new(spoofed, 5060), vip, options.as_bytes());
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    spoof_cap.finish();
    // Only the server's own packets (probe replies) carry its address on LAN; none
    // of them goes to another server.
    let balanced: Vec<IpHead> = ip_heads(&spoof_cap.file)
        .into_iter()
        .filter(|h| h.0 == spoofed && servers.contains(&h.1))
        .collect();
    assert!(
        balanced.is_empty(),
        "a datagram from WAN with a server's source was balanced: {balanced:?}"
    );
}
