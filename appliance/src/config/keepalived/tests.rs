//! Importer tests over the corpus in tests/data/keepalived.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::*;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/keepalived");

fn file(name: &str) -> ImportResult {
    import_file(format!("{DATA}/{name}"), &Config::builtin_default()).expect("corpus file readable")
}

fn has(r: &ImportResult, sev: Severity, line: usize, needle: &str) -> bool {
    r.notes
        .iter()
        .any(|n| n.severity == sev && n.line == line && n.message.contains(needle))
}

#[track_caller]
fn assert_note(r: &ImportResult, sev: Severity, line: usize, needle: &str) {
    assert!(
        has(r, sev, line, needle),
        "no {sev:?} note at line {line} containing {needle:?}; notes:\n{}",
        r.notes
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn seed_sample_as_printed() {
    let r = file("seed-xms.conf");
    assert_eq!(r.services, 1);
    let s = &r.config.services[0];
    assert_eq!(s.vip, Ipv4Addr::new(192, 168, 49, 16));
    assert_eq!(s.port, 5060);
    assert_eq!(s.scheduler, Scheduler::Rr);
    assert_eq!(s.forwarding, Forwarding::Nat);
    assert_eq!(s.persistence_timeout, 60);
    assert!(s.sip_persistence);
    assert!(!s.one_packet, "the seed has no ops");
    assert_eq!(
        s.persistence_granularity,
        Ipv4Addr::BROADCAST,
        "ipvsadm default netmask"
    );
    assert_eq!(s.probe.interval_ms, 120_000);
    assert_eq!(s.probe.on_failure, FailureAction::Remove);
    let servers: Vec<_> = s
        .servers
        .iter()
        .map(|x| (x.address.to_string(), x.port, x.weight))
        .collect();
    assert_eq!(
        servers,
        vec![
            ("192.168.49.7".to_string(), 5060, 1),
            ("192.168.49.17".to_string(), 5060, 1)
        ]
    );
    // Line numbers are the file's (blank lines included).
    assert_note(
        &r,
        Severity::Info,
        7,
        "delay_loop 120 s mapped to probe interval 120000 ms",
    );
    assert_note(&r, Severity::Info, 7, "default is 100 ms");
    assert_note(&r, Severity::Info, 13, "nat_mask not needed");
    assert_note(
        &r,
        Severity::Info,
        19,
        "persistence engine 'SIP' imported as sip",
    );
    assert_note(
        &r,
        Severity::Info,
        28,
        "local probe port 5080 is not needed",
    );
    assert_note(
        &r,
        Severity::Info,
        40,
        "script /home/xms/script.sh replaced",
    );
    // The seed's addresses are not on the demo subnets: validation says so, and so do the lab-finding warnings.
    assert!(r.report.errors.iter().any(|p| p
        .message
        .contains("VIP 192.168.49.16 is not on the WAN subnet")));
    assert!(r.report.errors.iter().any(|p| p
        .message
        .contains("192.168.49.7:5060 in service sip is not on the LAN subnet")));
    assert!(r
        .report
        .warnings
        .iter()
        .any(|p| p.message.contains("one-packet scheduling is off")));
    assert!(r
        .report
        .warnings
        .iter()
        .any(|p| p.message.contains("granularity 255.255.255.255")));
    assert!(r
        .report
        .warnings
        .iter()
        .any(|p| p.message.contains("persistence timeout 60 s is below 90 s")));
    assert!(!r.ok_to_apply());
    // Interfaces are kept from the base config.
    assert_eq!(r.config.wan, Config::builtin_default().wan);
    assert!(r
        .notes
        .iter()
        .any(|n| n.message.contains("only the services are replaced")));
    let text = r.render();
    assert!(
        text.contains("vip = \"192.168.49.16\"") && text.contains("NOT applicable"),
        "{text}"
    );
}

#[test]
fn seed_sample_on_matching_base_is_applicable_after_fixes() {
    // With a base config on the seed's subnet and ops + granularity added, the import is clean of errors.
    let text = std::fs::read_to_string(format!("{DATA}/seed-xms.conf")).unwrap();
    let fixed = text.replace(
        "pe SIP",
        "pe SIP\n    ops\n    persistence_granularity 0.0.0.0",
    );
    let mut base = Config::builtin_default();
    base.wan.address = "192.168.49.2/24".parse().unwrap();
    base.wan.gateway = Some(Ipv4Addr::new(192, 168, 49, 1));
    base.lan.address = "192.168.50.1/24".parse().unwrap();
    let r = import_into(&fixed, &base);
    // The servers are on the VIP's subnet in the seed (single-subnet set-up): still an error here.
    assert!(
        r.report
            .errors
            .iter()
            .all(|p| p.message.contains("not on the LAN subnet")),
        "{:#?}",
        r.report
    );
    base.lan.address = "192.168.49.1/24".parse().unwrap();
    base.wan.address = "192.168.48.2/23".parse().unwrap();
    let r = import_into(&fixed, &base);
    assert!(
        r.report
            .errors
            .iter()
            .any(|p| p.message.contains("overlapping")),
        "{:#?}",
        r.report
    );
}

#[test]
fn documented_lvs_examples() {
    let r = file("lvs-doc-examples.conf");
    assert_note(
        &r,
        Severity::Unmapped,
        3,
        "global_defs (lines 3-9) not imported",
    );
    assert_note(
        &r,
        Severity::Info,
        11,
        "VRRP settings imported into [ha] with ha.enabled = false",
    );
    assert_note(
        &r,
        Severity::Info,
        11,
        "Before enabling, fix: ha.lan_gateway is not set",
    );
    assert_note(&r, Severity::Info, 12, "state not imported");
    assert!(!r.config.ha.enabled);
    assert_eq!((r.config.ha.vrid, r.config.ha.priority), (51, 100));
    assert_note(
        &r,
        Severity::Unmapped,
        21,
        "virtual_server_group SIP_GROUP (lines 21-24) is not supported",
    );
    assert_note(&r, Severity::Error, 32, "protocol TCP is not supported");
    assert_note(
        &r,
        Severity::Unmapped,
        33,
        "sorry_server 198.51.100.250 80 not imported",
    );
    assert_note(
        &r,
        Severity::Unmapped,
        37,
        "HTTP_GET (lines 37-45) replaced",
    );
    // The UDP service with the new spellings.
    assert_eq!(r.services, 1, "TCP and fwmark services are not imported");
    let s = &r.config.services[0];
    assert_eq!(s.vip, Ipv4Addr::new(203, 0, 113, 10));
    assert_eq!(s.scheduler, Scheduler::Wrr);
    assert_eq!(s.persistence_timeout, KEEPALIVED_DEFAULT_PERSISTENCE);
    assert_note(&r, Severity::Info, 55, "keepalived's default 360 s");
    assert_eq!(s.persistence_granularity, Ipv4Addr::UNSPECIFIED);
    assert!(s.sip_persistence && s.one_packet);
    assert_eq!(s.probe.interval_ms, 2000);
    assert_eq!(s.probe.timeout_ms, 2000, "misc_timeout 2");
    assert_eq!(s.probe.fall, 3, "TCP_CHECK retry 2 => fall 3");
    assert_eq!(
        s.probe.on_failure,
        FailureAction::Weight0,
        "inhibit_on_failure everywhere"
    );
    assert_note(
        &r,
        Severity::Info,
        59,
        "alpha is how the appliance always works",
    );
    assert_note(&r, Severity::Unmapped, 60, "quorum is not supported");
    assert_note(&r, Severity::Unmapped, 61, "hysteresis");
    assert_note(
        &r,
        Severity::Unmapped,
        75,
        "TCP_CHECK (lines 75-78) replaced",
    );
    assert_note(
        &r,
        Severity::Info,
        84,
        "the script probed 198.51.100.99, not the real server",
    );
    assert_note(&r, Severity::Unmapped, 85, "misc_dynamic not imported");
    assert_note(
        &r,
        Severity::Info,
        81,
        "weight 0 imported as state \"draining\"",
    );
    assert_eq!(s.servers[2].state, AdminState::Draining);
    assert_note(
        &r,
        Severity::Unmapped,
        91,
        "fwmark virtual servers are not supported",
    );
    // TCP service error blocks applying even though the remaining service validates.
    assert!(r.report.is_ok(), "{:#?}", r.report);
    assert!(!r.ok_to_apply());
}

#[test]
fn include_is_followed_from_files() {
    let r = file("include/main.conf");
    assert_eq!(r.services, 2, "{:#?}", r.notes);
    assert_eq!(r.config.services[1].scheduler, Scheduler::Lc);
    assert!(r.config.services[1].sip_persistence, "PE Sip in any case");
    let bogus = r
        .notes
        .iter()
        .find(|n| n.message.contains("unknown keyword 'bogus_keyword'"))
        .expect("unknown keyword reported");
    assert_eq!(bogus.line, 13);
    assert!(
        bogus
            .file
            .as_deref()
            .unwrap_or("")
            .ends_with("20-sip2.conf"),
        "{bogus:?}"
    );
    assert_note(&r, Severity::Error, 3, "cannot read included file");
    assert!(!r.ok_to_apply());
    // Without the missing include the result is clean.
    let text = std::fs::read_to_string(format!("{DATA}/include/main.conf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("main.conf"),
        text.replace("include missing-file.conf", ""),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    for f in ["10-sip.conf", "20-sip2.conf"] {
        let t = std::fs::read_to_string(format!("{DATA}/include/conf.d/{f}")).unwrap();
        let t = t.replace("    bogus_keyword 17\n", "");
        std::fs::write(dir.path().join("conf.d").join(f), t).unwrap();
    }
    let r = import_file(dir.path().join("main.conf"), &Config::builtin_default()).unwrap();
    assert!(r.ok_to_apply(), "{}", r.render());
    assert!(r.report.warnings.is_empty(), "{:#?}", r.report.warnings);
}

#[test]
fn include_in_pasted_text_is_reported() {
    let r = import("include /etc/keepalived/conf.d/*.conf\n");
    assert_note(&r, Severity::Error, 1, "cannot be followed in pasted text");
    assert_eq!(r.services, 0);
    assert!(r
        .report
        .errors
        .iter()
        .any(|p| p.message.contains("no virtual service")));
}

#[test]
fn include_loop_is_stopped() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("a.conf"), "include b.conf\n").unwrap();
    std::fs::write(d.path().join("b.conf"), "include a.conf\n").unwrap();
    let r = import_file(d.path().join("a.conf"), &Config::builtin_default()).unwrap();
    assert!(r
        .notes
        .iter()
        .any(|n| n.message.contains("nested more than 8 levels")));
}

#[test]
fn malformed_unclosed_block() {
    let r = file("malformed-unclosed.conf");
    assert_note(
        &r,
        Severity::Error,
        1,
        "block 'virtual_server' opened here is never closed",
    );
    assert!(!r.ok_to_apply());
}

#[test]
fn malformed_stray_close() {
    let r = file("malformed-stray-close.conf");
    assert_note(&r, Severity::Error, 5, "unexpected '}' with no open block");
    assert!(!r.ok_to_apply());
}

#[test]
fn malformed_values() {
    let r = file("malformed-values.conf");
    assert_note(&r, Severity::Error, 2, "lb_algo needs a value");
    assert_note(
        &r,
        Severity::Error,
        3,
        "delay_loop needs a whole number (seconds between checks), got 'fast'",
    );
    assert_note(
        &r,
        Severity::Error,
        7,
        "real_server 198.51.100.11: missing port",
    );
    assert_note(
        &r,
        Severity::Error,
        11,
        "weight needs a whole number (weight), got 'heavy'",
    );
    assert_note(&r, Severity::Error, 13, "unterminated quoted string");
    assert_note(
        &r,
        Severity::Error,
        17,
        "'2001:db8::1' is not an IPv4 address",
    );
    assert!(!r.ok_to_apply());
}

#[test]
fn braces_comments_and_quotes_tokenize() {
    let r = import(
        "virtual_server 203.0.113.10 5060{ # comment {\n protocol UDP ! another }\n persistence_timeout 120\n pe sip\n ops\n persistence_granularity 0.0.0.0\n inhibit_on_failure\n real_server 198.51.100.11 5060 { weight 2 }\n}\n",
    );
    assert_eq!(r.services, 1, "{}", r.render());
    assert_eq!(r.config.services[0].servers[0].weight, 2);
    assert!(r.ok_to_apply(), "{}", r.render());
    // Brace on its own line.
    let r = import("virtual_server 203.0.113.10 5060\n{\n protocol UDP\n}\n");
    assert_eq!(r.services, 1, "{}", r.render());
}

#[test]
fn pe_without_persistence_is_refused() {
    let r = import("virtual_server 203.0.113.10 5060 {\n protocol UDP\n pe sip\n ops\n real_server 198.51.100.11 5060 {\n }\n}\n");
    assert_note(
        &r,
        Severity::Info,
        3,
        "keepalived silently drops the engine",
    );
    assert!(r.report.errors.iter().any(|p| p
        .message
        .contains("SIP persistence engine needs persistence")));
    assert!(!r.ok_to_apply());
}

#[test]
fn unknown_keywords_everywhere_are_reported_with_lines() {
    let r = import("frobnicate 1\nvirtual_server 203.0.113.10 5060 {\n wibble\n real_server 198.51.100.11 5060 {\n  wobble 2\n  MISC_CHECK {\n   zap\n  }\n }\n}\n");
    assert_note(
        &r,
        Severity::Unmapped,
        1,
        "unknown top-level keyword 'frobnicate'",
    );
    assert_note(&r, Severity::Unmapped, 3, "unknown keyword 'wibble'");
    assert_note(&r, Severity::Unmapped, 5, "unknown keyword 'wobble'");
    assert_note(
        &r,
        Severity::Unmapped,
        7,
        "unknown keyword 'zap' in MISC_CHECK",
    );
}

#[test]
fn too_many_servers_and_services() {
    let mut t = String::new();
    for v in 0..10 {
        t.push_str(&format!(
            "virtual_server 203.0.113.{} 5060 {{\n protocol UDP\n",
            10 + v
        ));
        t.push_str(" real_server 198.51.100.11 5060 {\n }\n}\n");
    }
    let r = import(&t);
    assert_eq!(r.services, MAX_SERVICES);
    assert!(r
        .notes
        .iter()
        .any(|n| n.severity == Severity::Error && n.message.contains("at most 8")));
    let mut t = String::from("virtual_server 203.0.113.10 5060 {\n protocol UDP\n");
    for i in 0..70 {
        t.push_str(&format!(
            " real_server 198.51.100.{} 5060 {{\n }}\n",
            10 + i
        ));
    }
    t.push_str("}\n");
    let r = import(&t);
    assert!(r
        .notes
        .iter()
        .any(|n| n.severity == Severity::Error && n.message.contains("more than 64 real servers")));
}

/// Deterministic random-input harness (the cargo-fuzz target in fuzz/ runs the same entry point).
#[test]
fn random_inputs_never_panic() {
    let words = [
        "virtual_server",
        "real_server",
        "{",
        "}",
        "\"",
        "!",
        "#",
        "include",
        "weight",
        "pe",
        "SIP",
        "lb_algo",
        "persistence_timeout",
        "MISC_CHECK",
        "misc_path",
        "203.0.113.10",
        "5060",
        "\n",
        " ",
        "ops",
        "x",
        "99999999999",
        "-1",
        "\u{0}",
        "é",
        "virtual_server_group",
        "retry",
        "delay_loop",
        "protocol",
        "UDP",
        "TCP",
        // VRRP side ([ha]).
        "vrrp_instance",
        "virtual_ipaddress",
        "unicast_peer",
        "virtual_router_id",
        "priority",
        "advert_int",
        "nopreempt",
        "preempt_delay",
        "global_defs",
        "lvs_sync_daemon",
        "lvs_sync_daemon_interface",
        "interface",
        "eth0",
        "198.51.100.3",
        "203.0.113.10/24",
        "0.05",
        "NaN",
        "1e309",
    ];
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let iterations = 20_000;
    for _ in 0..iterations {
        let n = (next() % 60) as usize;
        let mut s = String::new();
        for _ in 0..n {
            if next() % 5 == 0 {
                s.push(char::from_u32((next() % 0x250) as u32).unwrap_or('?'));
            } else {
                s.push_str(words[(next() % words.len() as u64) as usize]);
                if next() % 2 == 0 {
                    s.push(' ');
                }
            }
        }
        let r = import(&s);
        let _ = r.render();
    }
}

#[test]
fn vrrp_pair_maps_to_ha_with_notes() {
    // Box A of the HA-SPEC lab: the LAN address moved off the servers' gateway.
    let mut base = Config::builtin_default();
    base.lan.address = "198.51.100.2/24".parse().unwrap();
    let r = import_file(format!("{DATA}/vrrp-pair.conf"), &base).expect("corpus file readable");
    let h = &r.config.ha;
    assert!(!h.enabled, "HA is imported switched off");
    assert_eq!((h.vrid, h.priority, h.advert_interval_cs), (51, 150, 5));
    assert_eq!((h.preempt, h.preempt_delay_s), (false, 30));
    assert_eq!(h.peer_wan, Some(Ipv4Addr::new(203, 0, 113, 3)));
    assert_eq!(h.lan_gateway, Some(Ipv4Addr::new(198, 51, 100, 254)));
    assert_eq!(h.peer_lan, Some(Ipv4Addr::new(198, 51, 100, 3)));
    assert_eq!(h.sync_interface.as_str(), "eth1");
    for (sev, line, needle) in [
        (
            Severity::Unmapped,
            3,
            "apart from the sync daemon interface",
        ),
        (
            Severity::Info,
            5,
            "lvs_sync_daemon eth1 imported as ha.sync_interface",
        ),
        (Severity::Unmapped, 5, "options 'id 51' not imported"),
        (Severity::Unmapped, 8, "always act as one group"),
        (
            Severity::Info,
            15,
            "VRRP settings imported into [ha] with ha.enabled = false",
        ),
        (Severity::Info, 16, "state not imported"),
        (
            Severity::Info,
            20,
            "advert_int 0.05 s imported as ha.advert_interval_cs = 5",
        ),
        (Severity::Info, 22, "preempt_delay imported"),
        (Severity::Unmapped, 23, "VRRPv3 (RFC 5798) has none"),
        (Severity::Info, 27, "unicast_src_ip not imported"),
        (
            Severity::Info,
            29,
            "unicast_peer 203.0.113.3 imported as ha.peer_wan",
        ),
        (Severity::Unmapped, 31, "track_interface not imported"),
        (
            Severity::Unmapped,
            36,
            "virtual address 203.0.113.99 not imported",
        ),
        (
            Severity::Unmapped,
            38,
            "'garp_master_delay' in vrrp_instance",
        ),
        (Severity::Info, 41, "is the LAN router"),
        (Severity::Info, 41, "virtual_router_id 52 is not used"),
        (
            Severity::Info,
            48,
            "unicast_peer 198.51.100.3 imported as ha.peer_lan",
        ),
        (Severity::Unmapped, 49, "an appliance pair has one peer"),
        (
            Severity::Info,
            52,
            "198.51.100.254 imported as ha.lan_gateway",
        ),
        (Severity::Unmapped, 53, "the LAN router holds one address"),
        (Severity::Unmapped, 57, "neither the WAN subnet"),
    ] {
        assert_note(&r, sev, line, needle);
    }
    // Nothing left to fix: the import applies, and enabling HA validates.
    assert!(
        !has(&r, Severity::Info, 15, "Before enabling"),
        "{:#?}",
        r.notes
    );
    assert!(r.ok_to_apply(), "{}", r.render());
    let mut on = r.config.clone();
    on.ha.enabled = true;
    assert!(validate(&on).is_ok(), "{:#?}", validate(&on));
    // The TOML result shows the [ha] table.
    assert!(r.render().contains("lan_gateway = \"198.51.100.254\""));
}

#[test]
fn vrrp_values_out_of_range_and_preempt_default() {
    let text = "vrrp_instance X {\n interface eth0\n virtual_router_id 300\n priority 256\n advert_int fast\n virtual_ipaddress {\n  203.0.113.10\n }\n}\n";
    let r = import(text);
    assert_note(
        &r,
        Severity::Error,
        3,
        "virtual_router_id 300 is out of range 1-255",
    );
    assert_note(&r, Severity::Error, 4, "priority 256 is out of range 1-254");
    assert_note(
        &r,
        Severity::Error,
        5,
        "advert_int 'fast' is not a number of seconds",
    );
    // keepalived preempts unless told not to.
    assert!(r.config.ha.preempt);
    assert_note(&r, Severity::Info, 1, "imported as ha.preempt = true");
    assert!(!r.ok_to_apply());
    // Without VRRP blocks the base [ha] is kept untouched.
    let mut base = Config::builtin_default();
    base.ha.vrid = 77;
    let r = import_into("virtual_server 203.0.113.10 5060 {\n}\n", &base);
    assert_eq!(r.config.ha.vrid, 77);
}

#[test]
fn deep_nesting_is_refused_with_its_line() {
    // 20,000 nested blocks used to overflow the parser's stack (and the tree's drop).
    let mut text = String::from("virtual_server 192.0.2.1 5060 {\n");
    text.push_str(&"x {\n".repeat(20_000));
    text.push_str(&"}\n".repeat(20_001));
    let r = import(&text);
    let deep: Vec<_> = r
        .notes
        .iter()
        .filter(|n| n.message.contains("nests more than"))
        .collect();
    assert_eq!(deep.len(), 1, "{:#?}", deep);
    assert_eq!(deep[0].severity, Severity::Error);
    // Line 1 opens depth 1, so the block on line MAX_NESTING + 1 is the first too deep.
    assert_eq!(deep[0].line, MAX_NESTING + 1);
    assert!(deep[0].message.contains("'x'"), "{}", deep[0].message);
    assert!(!r.ok_to_apply());
    // The braces still balance: nothing after the deep block is reported as stray.
    assert!(!r.notes.iter().any(|n| n.message.contains("unexpected '}'")));

    // Unclosed deep nesting (pasted junk) is reported as such, not as a crash.
    let r = import(&"{".repeat(20_000));
    assert!(r
        .notes
        .iter()
        .any(|n| n.message.contains("nests more than")));
    assert!(r.notes.iter().any(|n| n.message.contains("never closed")));

    // Nesting at the limit is accepted by the parser.
    let mut ok = String::new();
    for i in 0..MAX_NESTING {
        ok.push_str(&format!("b{i} {{\n"));
    }
    ok.push_str(&"}\n".repeat(MAX_NESTING));
    let r = import(&ok);
    assert!(!r
        .notes
        .iter()
        .any(|n| n.message.contains("nests more than")));
}

#[test]
fn include_fan_out_is_bounded_in_count_and_size() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("conf.d")).unwrap();
    for i in 0..MAX_INCLUDE_FILES + 10 {
        std::fs::write(d.path().join(format!("conf.d/{i:04}.conf")), "! empty\n").unwrap();
    }
    std::fs::write(
        d.path().join("main.conf"),
        "include conf.d/*.conf\ninclude conf.d/*.conf\n",
    )
    .unwrap();
    let r = import_file(d.path().join("main.conf"), &Config::builtin_default()).unwrap();
    let hits: Vec<_> = r
        .notes
        .iter()
        .filter(|n| {
            n.message
                .contains(&format!("more than {MAX_INCLUDE_FILES} files"))
        })
        .collect();
    assert_eq!(hits.len(), 1, "reported once: {:#?}", r.notes);
    assert_eq!(hits[0].line, 1);
    assert!(!r.ok_to_apply());

    // Total size: each file is below the limit, together they exceed it.
    let d = tempfile::tempdir().unwrap();
    let chunk = "! padding padding padding padding padding padding padding padding\n"
        .repeat(1 + 1024 * 1024 / 66);
    for i in 0..5 {
        std::fs::write(d.path().join(format!("{i}.conf")), &chunk).unwrap();
    }
    std::fs::write(d.path().join("main.conf"), "include ?.conf\n").unwrap();
    let r = import_file(d.path().join("main.conf"), &Config::builtin_default()).unwrap();
    assert!(
        r.notes.iter().any(|n| n.line == 1
            && n.message.contains("larger than")
            && n.message.contains("in all")),
        "{:#?}",
        r.notes
    );
    assert!(!r.ok_to_apply());
}

#[test]
fn include_wildcard_is_linear_and_correct() {
    use super::wildcard;
    assert!(wildcard(b"*.conf", b"10-sip.conf"));
    assert!(wildcard(b"1?-*.conf", b"10-sip.conf"));
    assert!(!wildcard(b"*.conf", b"10-sip.cfg"));
    assert!(wildcard(b"*", b""));
    assert!(!wildcard(b"?", b""));
    assert!(wildcard(b"a*b*c", b"aXXbYYc"));
    assert!(!wildcard(b"a*b*c", b"aXXbYY"));
    // A pattern of many stars used to recurse per star with exponential back-tracking.
    let pat = "*a".repeat(50_000);
    assert!(!wildcard(pat.as_bytes(), "a".repeat(200).as_bytes()));
}

/// An in-memory file tree: the importer reads includes only through [`Includes`].
struct MemFs(BTreeMap<PathBuf, String>);

impl Includes for MemFs {
    fn list(&self, dir: &Path) -> Vec<PathBuf> {
        self.0
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect()
    }
    fn size(&self, path: &Path) -> Option<u64> {
        self.0.get(path).map(|t| t.len() as u64)
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.0
            .get(path)
            .map(|t| t.clone().into_bytes())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }
}

#[test]
fn includes_are_read_through_the_given_reader_with_wildcards() {
    let fs = MemFs(BTreeMap::from([
        (
            PathBuf::from("/etc/k/keepalived.conf"),
            "include conf.d/*.conf\ninclude missing.conf\n".to_string(),
        ),
        (
            PathBuf::from("/etc/k/conf.d/a.conf"),
            "virtual_server 203.0.113.10 5060 {\n protocol UDP\n real_server 198.51.100.11 5060 {\n }\n}\n"
                .to_string(),
        ),
        (PathBuf::from("/etc/k/conf.d/b.txt"), "garbage {".to_string()),
    ]));
    let r = import_with("/etc/k/keepalived.conf", &Config::builtin_default(), &fs).unwrap();
    assert_eq!(r.services, 1, "{:#?}", r.notes);
    assert_eq!(r.config.services[0].vip, Ipv4Addr::new(203, 0, 113, 10));
    assert!(
        r.notes.iter().any(|n| n.severity == Severity::Error
            && n.message
                .contains("cannot read included file /etc/k/missing.conf")),
        "{:#?}",
        r.notes
    );
    // The .txt file did not match the wildcard, so its unbalanced brace is never seen.
    assert!(!r
        .notes
        .iter()
        .any(|n| n.file.as_deref() == Some("/etc/k/conf.d/b.txt")));
}
