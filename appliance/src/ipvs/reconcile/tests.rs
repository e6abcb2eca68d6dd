//! Table-driven reconciler tests: desired + actual → operations.

use std::net::Ipv4Addr;

use super::*;
use crate::config::{bounded, Config, RealServer, Scheduler};
use crate::ipvs::codec::{DestEntry, Stats};

const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

fn rs(last: u8) -> DestKey {
    DestKey {
        addr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, last)),
        port: 5060,
    }
}

fn svc() -> ServiceKey {
    ServiceKey::udp(VIP, 5060)
}

fn all_up(_: &str, _: SocketAddrV4) -> Health {
    Health::Up
}

fn nat(w: u32) -> DestParams {
    dest_params(FwdMethod::Masq, w)
}

/// Apply ops to an in-memory table the way the kernel would (test double).
fn simulate(actual: &[ActualService], ops: &[TableOp]) -> Vec<ActualService> {
    let mut t: Vec<ActualService> = actual.to_vec();
    for op in ops {
        match op {
            TableOp::AddService { key, params } => t.push(ActualService {
                key: *key,
                params: params.clone(),
                stats: Stats::default(),
                dests: vec![],
            }),
            TableOp::EditService { key, params, .. } => {
                t.iter_mut().find(|s| s.key == *key).expect("svc").params = params.clone()
            }
            TableOp::DelService { key } => t.retain(|s| s.key != *key),
            TableOp::AddDest { svc, dest, params } => {
                let s = t.iter_mut().find(|s| s.key == *svc).expect("svc");
                s.dests.push(DestEntry {
                    key: *dest,
                    params: *params,
                    active_conns: 0,
                    inact_conns: 0,
                    persist_conns: 0,
                    stats: Stats::default(),
                });
            }
            TableOp::EditDest {
                svc, dest, params, ..
            } => {
                let s = t.iter_mut().find(|s| s.key == *svc).expect("svc");
                s.dests
                    .iter_mut()
                    .find(|d| d.key == *dest)
                    .expect("dest")
                    .params = *params;
            }
            TableOp::DelDest { svc, dest } => {
                let s = t.iter_mut().find(|s| s.key == *svc).expect("svc");
                s.dests.retain(|d| d.key != *dest);
            }
        }
    }
    t
}

/// The kernel table after a first sync of `cfg` with everyone up.
fn programmed(cfg: &Config) -> Vec<ActualService> {
    let d = desired(cfg, &all_up);
    simulate(&[], &plan(&d, &[]))
}

fn set_weight(t: &mut [ActualService], k: DestKey, w: u32) {
    t[0].dests
        .iter_mut()
        .find(|d| d.key == k)
        .expect("dest")
        .params
        .weight = w;
}

#[test]
fn sip_service_defaults_follow_the_pe_authors_recipe() {
    let d = desired(&Config::builtin_default(), &all_up);
    assert_eq!(d.len(), 1);
    let p = &d[0].params;
    assert_eq!(p.sched, "rr");
    assert_eq!(p.flags, svc_flags::PERSISTENT | svc_flags::ONEPACKET);
    assert_eq!(
        p.timeout,
        crate::config::Config::builtin_default().services[0].persistence_timeout
    );
    assert_eq!(p.netmask, 0, "granularity 0.0.0.0");
    assert_eq!(p.pe.as_deref(), Some("sip"), "lower-case pe name");
    assert!(d[0].dests.iter().all(|x| x.fwd == FwdMethod::Masq));
}

#[test]
fn pe_sip_only_with_the_persistent_flag() {
    let mut cfg = Config::builtin_default();
    cfg.services[0].persistence_timeout = 0;
    let p = service_params(&cfg.services[0]);
    assert_eq!(p.flags, svc_flags::ONEPACKET);
    assert_eq!(p.pe, None);
    cfg.services[0].persistence_timeout = 30;
    cfg.services[0].sip_persistence = false;
    cfg.services[0].one_packet = false;
    cfg.services[0].persistence_granularity = Ipv4Addr::new(255, 255, 255, 0);
    let p = service_params(&cfg.services[0]);
    assert_eq!(p.flags, svc_flags::PERSISTENT);
    assert_eq!(p.pe, None);
    assert_eq!(p.netmask, 0xffff_ff00);
}

#[test]
fn empty_kernel_gets_service_then_servers() {
    let d = desired(&Config::builtin_default(), &all_up);
    let ops = plan(&d, &[]);
    let want = vec![
        TableOp::AddService {
            key: svc(),
            params: d[0].params.clone(),
        },
        TableOp::AddDest {
            svc: svc(),
            dest: rs(11),
            params: nat(1),
        },
        TableOp::AddDest {
            svc: svc(),
            dest: rs(12),
            params: nat(1),
        },
        TableOp::AddDest {
            svc: svc(),
            dest: rs(13),
            params: nat(1),
        },
    ];
    assert_eq!(ops, want);
}

#[test]
fn restart_adopts_identical_table_with_no_ops() {
    let cfg = Config::builtin_default();
    let table = programmed(&cfg);
    assert_eq!(plan(&desired(&cfg, &all_up), &table), vec![]);
    // Health Unknown right after a restart must not touch any weight either, even one
    // that was quiesced by the previous daemon.
    let mut table2 = table.clone();
    set_weight(&mut table2, rs(12), 0);
    let unknown = |_: &str, _: SocketAddrV4| Health::Unknown;
    assert_eq!(plan(&desired(&cfg, &unknown), &table2), vec![]);
}

/// Drift cases: a hand edit of the kernel table and the repair we expect.
#[test]
fn drift_is_repaired() {
    let cfg = Config::builtin_default();
    let base = programmed(&cfg);
    let d = desired(&cfg, &all_up);
    type Edit = fn(&mut Vec<ActualService>);
    let cases: Vec<(&str, Edit, Vec<TableOp>)> = vec![
        (
            "weight changed by hand",
            |t| set_weight(t, rs(11), 7),
            vec![TableOp::EditDest {
                svc: svc(),
                dest: rs(11),
                params: nat(1),
                from: nat(7),
            }],
        ),
        (
            "destination removed by hand",
            |t| t[0].dests.retain(|d| d.key != rs(13)),
            vec![TableOp::AddDest {
                svc: svc(),
                dest: rs(13),
                params: nat(1),
            }],
        ),
        (
            "extra destination added by hand",
            |t| {
                let mut e = t[0].dests[0].clone();
                e.key = rs(99);
                t[0].dests.push(e);
            },
            vec![TableOp::DelDest {
                svc: svc(),
                dest: rs(99),
            }],
        ),
        (
            "forwarding switched to DR by hand",
            |t| t[0].dests[0].params.fwd = FwdMethod::Route,
            vec![TableOp::EditDest {
                svc: svc(),
                dest: rs(11),
                params: nat(1),
                from: dest_params(FwdMethod::Route, 1),
            }],
        ),
        (
            "pe removed by hand (the upper-case SIP trap leaves none)",
            |t| t[0].params.pe = None,
            vec![TableOp::EditService {
                key: svc(),
                params: service_params(&Config::builtin_default().services[0]),
                from: {
                    let mut p = service_params(&Config::builtin_default().services[0]);
                    p.pe = None;
                    p
                },
            }],
        ),
        (
            "foreign service added by hand",
            |t| {
                let mut s = t[0].clone();
                s.key = ServiceKey::udp(Ipv4Addr::new(203, 0, 113, 99), 5060);
                t.push(s);
            },
            vec![TableOp::DelService {
                key: ServiceKey::udp(Ipv4Addr::new(203, 0, 113, 99), 5060),
            }],
        ),
    ];
    for (name, edit, want) in cases {
        let mut t = base.clone();
        edit(&mut t);
        let ops = plan(&d, &t);
        assert_eq!(ops, want, "{name}");
        // And after repairing, nothing is left to do.
        assert_eq!(plan(&d, &simulate(&t, &ops)), vec![], "{name}: converges");
    }
}

#[test]
fn health_and_admin_state_table() {
    let mut cfg = Config::builtin_default();
    let base = programmed(&cfg);
    let down12 = |_: &str, a: SocketAddrV4| {
        if *a.ip() == Ipv4Addr::new(198, 51, 100, 12) {
            Health::Down
        } else {
            Health::Up
        }
    };
    // remove policy (default): delete, and re-add when healthy.
    assert_eq!(cfg.services[0].probe.on_failure, FailureAction::Remove);
    assert_eq!(
        plan(&desired(&cfg, &down12), &base),
        vec![TableOp::DelDest {
            svc: svc(),
            dest: rs(12),
        }]
    );
    let mut removed = base.clone();
    removed[0].dests.retain(|d| d.key != rs(12));
    assert_eq!(
        plan(&desired(&cfg, &all_up), &removed),
        vec![TableOp::AddDest {
            svc: svc(),
            dest: rs(12),
            params: nat(1),
        }]
    );
    // Unknown + remove policy + absent: stays out.
    let unknown = |_: &str, _: SocketAddrV4| Health::Unknown;
    assert_eq!(plan(&desired(&cfg, &unknown), &removed), vec![]);
    // weight-0 policy: quiesce, restore once healthy again.
    cfg.services[0].probe.on_failure = FailureAction::Weight0;
    assert_eq!(
        plan(&desired(&cfg, &down12), &base),
        vec![TableOp::EditDest {
            svc: svc(),
            dest: rs(12),
            params: nat(0),
            from: nat(1),
        }]
    );
    let mut quiesced = base.clone();
    set_weight(&mut quiesced, rs(12), 0);
    assert_eq!(
        plan(&desired(&cfg, &all_up), &quiesced),
        vec![TableOp::EditDest {
            svc: svc(),
            dest: rs(12),
            params: nat(1),
            from: nat(0),
        }]
    );
    // Unknown + weight0 + absent: weight 0.
    assert_eq!(
        plan(&desired(&cfg, &unknown), &removed),
        vec![TableOp::AddDest {
            svc: svc(),
            dest: rs(12),
            params: nat(0),
        }]
    );
    // Admin states.
    cfg.services[0].servers[0].state = AdminState::Draining;
    cfg.services[0].servers[2].state = AdminState::Disabled;
    assert_eq!(
        plan(&desired(&cfg, &all_up), &base),
        vec![
            TableOp::EditDest {
                svc: svc(),
                dest: rs(11),
                params: nat(0),
                from: nat(1),
            },
            TableOp::DelDest {
                svc: svc(),
                dest: rs(13),
            },
        ]
    );
    // Probing off: servers count as up whatever the prober says.
    let mut cfg2 = Config::builtin_default();
    cfg2.services[0].probe.enabled = false;
    let all_down = |_: &str, _: SocketAddrV4| Health::Down;
    assert_eq!(plan(&desired(&cfg2, &all_down), &base), vec![]);
}

/// Factory policy: an operator drain keeps the server at weight 0 (its Call-ID
/// templates stay valid, so its calls finish on it) while a health failure
/// removes it (its templates stop matching, so retransmissions move on); a
/// drained server that fails is removed too.
#[test]
fn drain_and_failure_are_different_kernel_treatments() {
    let mut cfg = Config::builtin_default();
    let base = programmed(&cfg);
    cfg.services[0].servers[0].state = AdminState::Draining;
    let down = |bad: u8| {
        move |_: &str, a: SocketAddrV4| {
            if a.ip().octets()[3] == bad {
                Health::Down
            } else {
                Health::Up
            }
        }
    };
    assert_eq!(
        plan(&desired(&cfg, &down(12)), &base),
        vec![
            TableOp::EditDest {
                svc: svc(),
                dest: rs(11),
                params: nat(0),
                from: nat(1),
            },
            TableOp::DelDest {
                svc: svc(),
                dest: rs(12),
            },
        ]
    );
    assert_eq!(
        plan(&desired(&cfg, &down(11)), &base),
        vec![TableOp::DelDest {
            svc: svc(),
            dest: rs(11),
        }]
    );
}

#[test]
fn raises_and_adds_come_before_lowering_and_removal() {
    // .11 dies, .12 comes back from weight 0, .13 is replaced by .14 in the config.
    let mut cfg = Config::builtin_default();
    // Weight-0 policy so that the failure lowers a weight (the default removes).
    cfg.services[0].probe.on_failure = FailureAction::Weight0;
    let mut table = programmed(&cfg);
    set_weight(&mut table, rs(12), 0);
    cfg.services[0].servers[2].address = Ipv4Addr::new(198, 51, 100, 14);
    let h = |_: &str, a: SocketAddrV4| {
        if *a.ip() == Ipv4Addr::new(198, 51, 100, 11) {
            Health::Down
        } else {
            Health::Up
        }
    };
    let ops = plan(&desired(&cfg, &h), &table);
    let want = vec![
        TableOp::EditDest {
            svc: svc(),
            dest: rs(12),
            params: nat(1),
            from: nat(0),
        },
        TableOp::AddDest {
            svc: svc(),
            dest: rs(14),
            params: nat(1),
        },
        TableOp::EditDest {
            svc: svc(),
            dest: rs(11),
            params: nat(0),
            from: nat(1),
        },
        TableOp::DelDest {
            svc: svc(),
            dest: rs(13),
        },
    ];
    assert_eq!(ops, want);
    // Invariant: after every prefix of the ops, the VIP keeps a server with weight > 0.
    for n in 0..=ops.len() {
        let t = simulate(&table, &ops[..n]);
        assert!(
            t[0].dests.iter().any(|d| d.params.weight > 0),
            "no live server after {n} ops"
        );
    }
}

#[test]
fn service_setting_changes_are_edited_in_place() {
    let mut cfg = Config::builtin_default();
    let table = programmed(&cfg);
    cfg.services[0].scheduler = Scheduler::Wrr;
    cfg.services[0].persistence_timeout = 120;
    let ops = plan(&desired(&cfg, &all_up), &table);
    assert_eq!(ops.len(), 1);
    match &ops[0] {
        TableOp::EditService { params, from, .. } => {
            assert_eq!(params.sched, "wrr");
            assert_eq!(params.timeout, 120);
            assert_eq!(from.sched, "rr");
        }
        other => panic!("expected EditService, got {other}"),
    }
}

#[test]
fn vip_change_adds_new_service_before_removing_old() {
    let mut cfg = Config::builtin_default();
    let table = programmed(&cfg);
    cfg.services[0].vip = Ipv4Addr::new(203, 0, 113, 11);
    let ops = plan(&desired(&cfg, &all_up), &table);
    assert!(matches!(ops.first(), Some(TableOp::AddService { .. })));
    assert_eq!(ops.last(), Some(&TableOp::DelService { key: svc() }));
    assert_eq!(ops.len(), 1 + 3 + 1);
}

#[test]
fn direct_routing_option() {
    let mut cfg = Config::builtin_default();
    let table = programmed(&cfg);
    cfg.services[0].forwarding = Forwarding::Dr;
    let ops = plan(&desired(&cfg, &all_up), &table);
    assert_eq!(ops.len(), 3);
    assert!(ops.iter().all(|o| matches!(o, TableOp::EditDest { params, .. } if params.fwd == FwdMethod::Route && params.weight == 1)));
}

/// A full 8 × 64 table (the config's capacity).
pub(crate) fn full_config() -> Config {
    let mut cfg = Config::builtin_default();
    let template = cfg.services[0].clone();
    cfg.services.clear();
    for s in 0..8u8 {
        let mut vs = template.clone();
        vs.name = bounded(&format!("sip{s}"));
        vs.vip = Ipv4Addr::new(203, 0, 113, 10 + s);
        vs.servers.clear();
        for i in 0..64u8 {
            let _ = vs.servers.push(RealServer {
                address: Ipv4Addr::new(198, 51, 100, 11 + i),
                port: 5060 + u16::from(s),
                weight: 1 + u32::from(i % 3),
                state: AdminState::Enabled,
            });
        }
        let _ = cfg.services.push(vs);
    }
    cfg
}

#[test]
fn full_table_from_empty_and_one_server_change() {
    let cfg = full_config();
    let d = desired(&cfg, &all_up);
    let ops = plan(&d, &[]);
    assert_eq!(ops.len(), 8 + 8 * 64);
    assert!(ops[..8]
        .iter()
        .all(|o| matches!(o, TableOp::AddService { .. })));
    let table = simulate(&[], &ops);
    assert_eq!(plan(&d, &table), vec![]);
    let mut cfg2 = cfg.clone();
    cfg2.services[3].servers[17].weight = 9;
    assert_eq!(plan(&desired(&cfg2, &all_up), &table).len(), 1);
}

#[test]
fn duplicates_in_config_are_programmed_once() {
    let mut cfg = Config::builtin_default();
    let dup = cfg.services[0].servers[0].clone();
    let _ = cfg.services[0].servers.push(dup);
    let svc_dup = cfg.services[0].clone();
    let _ = cfg.services.push(svc_dup);
    let d = desired(&cfg, &all_up);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].dests.len(), 3);
}
