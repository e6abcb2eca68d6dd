//! The seed's verification plan against the booted image, part 2: a server
//! fails in three ways (process killed, link down, silent) under steady load
//! from a single-socket and a socket-per-call client; after the kernel shows
//! it out no new call reaches it and every new call completes; calls on the
//! other servers are unaffected (single-socket client included: it had
//! calls on the server before and gets none after); once back it gets calls
//! again. Figures per failure are printed (`FIGURE ...` lines) for the
//! benchmarks.

use appliance_tests::lab::booted::{Failure, LabVm};
use appliance_tests::lab::rounds::{failure_round, Load};
use appliance_tests::lab::{self, LabOptions};
use std::time::Duration;

#[test]
fn lab_failure_and_return() {
    if let Err(why) = lab::check_host() {
        appliance_tests::skip::skip(&why);
        return;
    }
    let mut lv = LabVm::boot(&LabOptions::default(), "uas.xml").expect("boot lab + appliance");
    let mut problems = Vec::new();
    for (round, how) in Failure::ALL.into_iter().enumerate() {
        lv.wait_balancing(Duration::from_secs(60))
            .expect("all servers balanced before the round");
        let load = Load {
            duration: Duration::from_secs(32),
            port: 5100 + round as u16 * 100,
            ..Load::default()
        };
        let f = failure_round(
            &mut lv,
            1,
            how,
            &load,
            Duration::from_secs(6),
            Duration::from_secs(12),
        )
        .expect("failure round");
        eprintln!("--- {how:?} ---\n{}", f.table);
        eprintln!(
            "FIGURE failure={how:?} kernel_out_ms={:?} steering_ms={} new_calls_after_failure={} \
             new_calls_after_out={} failed_after_out={} failed_on_live={} failed_unrouted={} \
             failed_on_dead={} \
             single_socket_before={} single_socket_after_out={} return_ms={:?} \
             calls_after_return={} sipp={:?}",
            f.kernel_out_ms,
            f.steering_ms,
            f.new_calls_after_failure,
            f.new_calls_after_out,
            f.failed_calls_after_out.len(),
            f.failed_calls_on_live_servers.len(),
            f.failed_calls_unrouted.len(),
            f.failed_calls_on_dead_server,
            f.single_socket_before,
            f.single_socket_after_out,
            f.return_ms,
            f.calls_after_return,
            f.sipp
        );
        if f.kernel_out_ms.is_none() {
            problems.push(format!("{how:?}: the kernel never took the server out"));
        }
        if f.new_calls_after_out != 0 {
            problems.push(format!(
                "{how:?}: {} new calls reached the dead server after it was out",
                f.new_calls_after_out
            ));
        }
        if !f.failed_calls_unrouted.is_empty() {
            problems.push(format!(
                "{how:?}: calls failed without reaching any server: {:?}",
                f.failed_calls_unrouted
            ));
        }
        if f.single_socket_before == 0 {
            problems.push(format!(
                "{how:?}: the single-socket client had no calls on the server before it failed \
                 (the stale-connection case was not exercised)"
            ));
        }
        if f.single_socket_after_out != 0 {
            problems.push(format!(
                "{how:?}: {} new single-socket calls reached the dead server after it was out",
                f.single_socket_after_out
            ));
        }
        if !f.failed_calls_after_out.is_empty() {
            problems.push(format!(
                "{how:?}: new calls failed after detection: {:?}",
                f.failed_calls_after_out
            ));
        }
        if !f.failed_calls_on_live_servers.is_empty() {
            problems.push(format!(
                "{how:?}: calls on live servers failed: {:?}",
                f.failed_calls_on_live_servers
            ));
        }
        if f.calls_after_return == 0 {
            problems.push(format!(
                "{how:?}: the server got no calls after it came back"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
