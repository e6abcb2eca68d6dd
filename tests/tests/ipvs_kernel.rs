//! Real-kernel IPVS tests inside the QEMU dev image (the host kernel has no IPVS).
//!
//! Drives `appliance ipvs ...` through the ttyS1 test shell and checks the kernel's own
//! view in /proc/net/ip_vs and /proc/net/ip_vs_conn. Needs qemu-system-x86_64
//! (tests/setup-host.sh); fails, never skips, without.

use std::time::Duration;

use appliance_tests::{ensure_image, Vm, VmError, VmOptions};

const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

// 203.0.113.10:5060 and 198.51.100.11..13:5060 as /proc/net/ip_vs prints them.
const VIP_HEX: &str = "CB00710A:13C4";
const RS_HEX: [&str; 3] = ["C633640B:13C4", "C633640C:13C4", "C633640D:13C4"];

fn boot() -> Result<Vm, VmError> {
    let image = ensure_image()?;
    // These tests drive the IPVS layer by hand; the daemon would reconcile the table
    // back under their feet, so it stays off (the daemon's own VM tests cover it).
    let mut opts = VmOptions::new(image);
    opts.extra_cmdline.push("appliance.daemon=off".into());
    let mut vm = Vm::boot(opts)?;
    vm.wait_shell(BOOT_TIMEOUT)?;
    Ok(vm)
}

fn has(what: &str, hay: &str, needle: &str) {
    assert!(
        hay.contains(needle),
        "{what}: expected {needle:?} in:\n{hay}"
    );
}

fn dest_line(table: &str, rs: &str) -> Option<String> {
    table
        .lines()
        .find(|l| l.contains(&format!("-> {rs}")))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[test]
fn ipvs_sync_adopt_drift_and_errors_on_the_real_kernel() -> Result<(), VmError> {
    let mut vm = boot()?;

    // Data-path sysctls: set and verified by the appliance, re-read here.
    vm.shell_ok("appliance ipvs sysctl")?;
    for (k, v) in [
        ("net/ipv4/ip_forward", "1"),
        ("net/ipv4/vs/expire_nodest_conn", "1"),
        ("net/ipv4/vs/expire_quiescent_template", "0"),
        ("net/ipv4/vs/conn_reuse_mode", "1"),
    ] {
        assert_eq!(vm.shell_ok(&format!("cat /proc/sys/{k}"))?.trim(), v, "{k}");
    }

    // First sync from an empty table (built-in demo config: 1 service, 3 servers).
    let out = vm.shell_ok("appliance ipvs sync 2>&1")?;
    has(
        "first sync",
        &out,
        "verified: 1 service(s), 3 server(s), 4 change(s)",
    );
    let table = vm.shell_ok("cat /proc/net/ip_vs")?;
    // The kernel prints "ops " then "persistent <timeout in jiffies> <netmask hex>".
    let svc_line = table
        .lines()
        .find(|l| l.starts_with(&format!("UDP  {VIP_HEX} rr ops  persistent ")))
        .unwrap_or_else(|| panic!("service line missing:\n{table}"));
    let f: Vec<&str> = svc_line.split_whitespace().collect();
    let jiffies: u64 = f[5].parse().expect("timeout number");
    assert!(
        jiffies > 0 && jiffies.is_multiple_of(120),
        "120 s persistence (factory default): {svc_line}"
    );
    assert_eq!(f[6], "00000000", "granularity 0.0.0.0: {svc_line}");
    for rs in RS_HEX {
        assert_eq!(
            dest_line(&table, rs).as_deref(),
            Some(format!("-> {rs} Masq 1 0 0").as_str()),
            "{table}"
        );
    }
    // /proc/net/ip_vs does not print the pe; our genl dump does (PE_NAME attribute).
    let show = vm.shell_ok("appliance ipvs show 2>&1")?;
    has(
        "show",
        &show,
        "UDP 203.0.113.10:5060 rr persistent 120 mask 0.0.0.0 ops pe sip  [sip]",
    );

    // Traffic: one SIP datagram makes a pe sip template keyed by the Call-ID.
    vm.shell_ok("ip addr add 203.0.113.10/32 dev lo")?;
    vm.shell_ok("appliance ipvs raw sip-ping 203.0.113.10:5060 call-one@test")?;
    let conns = vm.shell_ok("cat /proc/net/ip_vs_conn")?;
    eprintln!("ip_vs_conn after one SIP datagram:\n{conns}");
    has("pe sip template", &conns, "sip call-one@test");

    // Restart adoption: a second sync changes nothing, the table text is identical and
    // the template (and its Call-ID pinning) survives.
    let before = vm.shell_ok("cat /proc/net/ip_vs")?;
    let out = vm.shell_ok("appliance ipvs sync 2>&1")?;
    has(
        "second sync",
        &out,
        "verified: 1 service(s), 3 server(s), 0 change(s)",
    );
    assert_eq!(
        vm.shell_ok("cat /proc/net/ip_vs")?,
        before,
        "table untouched"
    );
    has(
        "template kept",
        &vm.shell_ok("cat /proc/net/ip_vs_conn")?,
        "sip call-one@test",
    );

    // Capture raw kernel replies as codec test vectors.
    let hex = vm.shell_ok("appliance ipvs raw dump-hex")?;
    eprintln!("CAPTURED genl payloads (kernel 6.1, x86_64):\n{hex}");
    has("dump-hex", &hex, "GET_SERVICE ");

    // Drift: weight changed, a server deleted and a foreign one added by hand.
    vm.shell_ok("appliance ipvs raw set-weight 203.0.113.10:5060 198.51.100.11:5060 7")?;
    vm.shell_ok("appliance ipvs raw del-dest 203.0.113.10:5060 198.51.100.12:5060")?;
    vm.shell_ok("appliance ipvs raw add-dest 203.0.113.10:5060 198.51.100.99:5060 1")?;
    let drifted = vm.shell_ok("cat /proc/net/ip_vs")?;
    assert!(dest_line(&drifted, RS_HEX[1]).is_none(), "{drifted}");
    let out = vm.shell_ok("appliance ipvs sync 2>&1")?;
    has("repair", &out, "3 change(s)");
    has("repair", &out, "change server 198.51.100.11:5060");
    has("repair", &out, "add server 198.51.100.12:5060");
    has("repair", &out, "remove server 198.51.100.99:5060");
    let repaired = vm.shell_ok("cat /proc/net/ip_vs")?;
    for rs in RS_HEX {
        assert_eq!(
            dest_line(&repaired, rs)
                .as_deref()
                .map(|l| l.starts_with(&format!("-> {rs} Masq 1 "))),
            Some(true),
            "{repaired}"
        );
    }
    assert!(
        !repaired.contains("C6336463"),
        "foreign server removed:\n{repaired}"
    );

    // The upper-case "SIP" trap: a clear error, nothing claimed.
    vm.shell_ok("appliance ipvs raw del-service 203.0.113.10:5060")?;
    let (out, code) = vm.shell("appliance ipvs raw add-service 203.0.113.10:5060 --pe SIP 2>&1")?;
    assert_ne!(code, 0, "{out}");
    has(
        "SIP error",
        &out,
        "the kernel rejected persistence engine 'SIP'; it must be lower-case 'sip' and needs CONFIG_IP_VS_PE_SIP",
    );
    assert!(!out.contains("not unicast"), "{out}");
    assert!(
        !vm.shell_ok("cat /proc/net/ip_vs")?.contains(VIP_HEX),
        "service must not exist"
    );

    // Timeouts and info over genl.
    let t = vm.shell_ok("appliance ipvs timeouts --udp 120")?;
    has("timeouts", &t, "Timeout (tcp tcpfin udp): ");
    assert!(t.trim().ends_with(" 120"), "{t}");
    has(
        "info",
        &vm.shell_ok("appliance ipvs info")?,
        "IPVS version 1.2.1",
    );
    Ok(())
}

#[test]
fn ipvs_apply_benchmark_in_vm() -> Result<(), VmError> {
    let mut vm = boot()?;
    let (out, code) = vm.shell_timeout(
        "appliance ipvs bench --rounds 3 2>&1",
        Duration::from_secs(600),
    )?;
    assert_eq!(code, 0, "{out}");
    for line in out.lines().filter(|l| l.starts_with("bench")) {
        eprintln!("BENCH ipvs (TCG, no KVM) {line}");
    }
    has("bench", &out, "bench full 8x64 from empty: ops=520");
    has("bench", &out, "bench one-server change: ops=1");
    has("bench", &out, "bench no-op sync (adopt): ops=0");
    assert!(
        !vm.shell_ok("cat /proc/net/ip_vs")?.contains("UDP"),
        "bench cleans up"
    );
    Ok(())
}
