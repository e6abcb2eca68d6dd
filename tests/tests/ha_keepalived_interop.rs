//! VRRP interop with keepalived (Debian 2.2.7, `vrrp_version 3`): the
//! appliance and keepalived elect the higher priority in both directions,
//! each takes over when the other stops (orderly or crash), and each accepts
//! the other's adverts. Judged from captures on both links and keepalived's
//! log (see `appliance_tests::lab::interop` for the steps).
//!
//! keepalived runs a sync group of a WAN instance (the VIP) and a LAN
//! instance (the servers' gateway 198.51.100.1), mirroring the appliance's
//! two-member group: the product's NAT config needs the LAN router, so a
//! WAN-only peer would not be the configuration anyone deploys.
//!
//! `ha_lab_keepalived_baseline` runs the same sequence with keepalived on
//! both sides and no VM: it proves the harness (namespaces, captures, frame
//! decoding, log checks) independently of the appliance.

use appliance_tests::lab::interop::{self, ApplianceSubject, KeepalivedSubject, Params};
use appliance_tests::lab::keepalived::{KeepalivedConf, KeepalivedNode};
use appliance_tests::lab::pair::{BoxId, BoxSpec, HaPair, LAB_ADVERT_CS, LAN_GATEWAY, VRID};
use appliance_tests::lab::{self, Appliance, Lab, LabOptions, VIP};
use appliance_tests::skip::skip;

fn params() -> Params {
    Params {
        vrid: VRID,
        advert_cs: LAB_ADVERT_CS,
        vip: VIP,
        lan_vip: LAN_GATEWAY,
        subject_priority: 150,
    }
}

fn keepalived_available() -> Result<(), String> {
    lab::check_host()?;
    let ok = std::process::Command::new("keepalived")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).contains("Keepalived v2"))
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err("keepalived 2.x not found: run tests/setup-host.sh (package keepalived)".into())
    }
}

fn peer(lab: &mut Lab) -> KeepalivedNode {
    let b = BoxSpec::of(BoxId::B);
    KeepalivedNode::add(lab, "k", b.wan, b.lan, b.wan_mac, b.lan_mac).expect("keepalived peer")
}

#[test]
fn ha_lab_keepalived_baseline() {
    if let Err(why) = keepalived_available() {
        skip(&why);
        return;
    }
    let mut lab = Lab::new(&LabOptions {
        servers: 1,
        client_addrs: 1,
        appliance: Appliance::Nothing,
    })
    .expect("lab");
    let a = BoxSpec::of(BoxId::A);
    let mut x = KeepalivedNode::add(&mut lab, "x", a.wan, a.lan, a.wan_mac, a.lan_mac)
        .expect("stand-in node");
    let mut k = peer(&mut lab);
    // The appliance's defaults: priority 150, no preemption.
    let conf = KeepalivedConf {
        router_id: "lab-x".into(),
        vrid: VRID,
        priority: 150,
        advert_cs: LAB_ADVERT_CS,
        start_master: false,
        nopreempt: true,
        wan_vip: VIP,
        lan_vip: Some(LAN_GATEWAY),
    };
    x.start(&mut lab, &conf).expect("start stand-in");
    let mut subject = KeepalivedSubject { lab, node: x, conf };
    let r = interop::run(&mut subject, &mut k, &params()).expect("interop sequence");
    eprintln!("{}", r.figure_line("keepalived-baseline"));
    assert!(r.problems.is_empty(), "{}", r.problems.join("\n"));
}

#[test]
fn ha_keepalived_interop() {
    if let Err(why) = keepalived_available() {
        skip(&why);
        return;
    }
    // Box A only; keepalived plays box B.
    let mut pair = HaPair::boot_boxes(3, "uas.xml", &[BoxId::A]).expect("boot box A");
    // Adverts run under SCHED_RR so a busy box does not make its peer take over: read the
    // policy (field 41, 2 = SCHED_RR) and rt_priority (field 40) of the thread named `vrrp`.
    let sched = pair
        .guest(
            BoxId::A,
            "for i in $(seq 20); do o=$(for t in /proc/[0-9]*/task/*; do \
               [ \"$(cat $t/comm 2>/dev/null)\" = vrrp ] && cut -d' ' -f40,41 $t/stat; done); \
             [ -n \"$o\" ] && break; sleep 1; done; echo \"$o\"",
        )
        .expect("read the VRRP thread's scheduling");
    assert_eq!(
        sched.trim(),
        "10 2",
        "the VRRP thread should run under SCHED_RR at real-time priority 10 (fields 40 and 41 of its stat)"
    );
    let mut k = peer(&mut pair.lab);
    let mut subject = ApplianceSubject { pair, id: BoxId::A };
    let r = interop::run(&mut subject, &mut k, &params()).expect("interop sequence");
    eprintln!("{}", r.figure_line("appliance-keepalived"));
    assert!(r.problems.is_empty(), "{}", r.problems.join("\n"));
}
