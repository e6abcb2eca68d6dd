//! The integrated daemon on the real image: configured over the
//! serial console and persisted across a power cut, respawned by init without
//! touching IPVS, and a store that survives power cuts in the middle of saves.
//! Boot-to-ready is printed as a figure (`BENCH ...`), never asserted.
//!
//! Needs qemu-system-x86_64 (fails without). The console test also needs root
//! and iproute2/sipp/tcpdump for the lab's taps (tests/setup-host.sh) and prints
//! a skip without them (a failure in CI), like the lab tests. CUT_ITERATIONS sets the
//! number of power cuts (default 20).

use std::time::{Duration, Instant};

use appliance_tests::checks::{self, has, NEW_HOST, PW};
use appliance_tests::console::{ConsoleDriver, PASSWORD};
use appliance_tests::guest::{self, fail};
use appliance_tests::{ensure_image, Vm, VmError, VmOptions};

const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// Wait until the IPVS table stops changing (probes settled); returns it.
fn settled_ip_vs(vm: &mut Vm) -> Result<String, VmError> {
    let mut last = String::new();
    guest::poll(
        vm,
        Duration::from_secs(60),
        Duration::from_secs(2),
        "a stable IPVS table with the VIP",
        |vm| {
            let t = guest::ip_vs(vm)?;
            let stable = t == last && t.contains("CB00710A:13C4");
            last = t.clone();
            Ok(stable.then_some(t))
        },
    )
}

#[test]
fn console_change_persists_and_daemon_respawn_keeps_ipvs() -> Result<(), VmError> {
    if let Err(why) = appliance_tests::lab::check_host() {
        appliance_tests::skip::skip(&why);
        return Ok(());
    }
    let image = ensure_image()?;
    // The lab gives the VM its eth0/eth1 (taps) so that apply can configure them.
    let (_lab, opts) = guest::lab_with_taps(image)?;
    let mut vm = Vm::boot(opts)?;
    let shell = vm.wait_shell(BOOT_TIMEOUT)?;
    let ready1 = guest::boot_to_ready(&mut vm, READY_TIMEOUT)?;
    has("first boot", &guest::ip_vs(&mut vm)?, "CB00710A:13C4")?;

    let t = Instant::now();
    checks::first_boot_console(&mut vm)?;
    eprintln!(
        "console session (password, bad values, Ctrl-C, 2 changes) took {:.1} s",
        t.elapsed().as_secs_f64()
    );
    checks::console_change_persisted(&mut vm, "after save")?;

    // Kill the daemon: init respawns it, the IPVS table stays as it was and the
    // new instance adopts it with no change.
    let before = settled_ip_vs(&mut vm)?;
    let old = guest::daemon_pid(&mut vm)?.ok_or_else(|| fail("no daemon running"))?;
    let readies = guest::dmesg_count(&mut vm, guest::READY_LINE)?;
    let killed = Instant::now();
    vm.shell_ok(&format!("kill -9 {old}"))?;
    let new = guest::wait_new_daemon(&mut vm, old, Duration::from_secs(60))?;
    guest::wait_dmesg_count(&mut vm, guest::READY_LINE, readies + 1, READY_TIMEOUT)?;
    eprintln!(
        "daemon pid {old} killed; respawned as pid {new}, ready again after {:.1} s",
        killed.elapsed().as_secs_f64()
    );
    let log = guest::last_daemon_log(&mut vm)?;
    has("respawned daemon log", &log, "service restarted by init")?;
    has(
        "respawned daemon log",
        &log,
        "IPVS table adopted at start changes=0",
    )?;
    has("respawned daemon log", &log, "store SlotA generation")
        .or_else(|_| has("respawned daemon log", &log, "store SlotB generation"))?;
    // Probes of the new instance have run; the table is still the same.
    std::thread::sleep(Duration::from_secs(3));
    let after = guest::ip_vs(&mut vm)?;
    if after != before {
        return Err(fail(format!(
            "IPVS table changed across the respawn:\nbefore:\n{before}\nafter:\n{after}"
        )));
    }
    checks::console_change_persisted(&mut vm, "after respawn")?;

    // Power cut, boot again on the same disk.
    let mut vm = vm.power_cycle()?;
    let shell2 = vm.wait_shell(BOOT_TIMEOUT)?;
    let ready2 = guest::boot_to_ready(&mut vm, READY_TIMEOUT)?;
    checks::console_change_persisted(&mut vm, "after power cut")?;
    {
        let mut c = ConsoleDriver::new(vm.console());
        c.expect(format!("{NEW_HOST} (appliance "))?;
        // A wrong password is refused with a back-off; the right one opens the menu.
        c.login("not-the-password")?;
        c.expect("Wrong password. Wait ")?;
        c.answer(PASSWORD, PW)?;
        let h = c.main_menu()?;
        if h.hostname != NEW_HOST || h.changes != "none" {
            return Err(fail(format!("header after power cut:\n{}", h.text)));
        }
        c.choose("0")?;
        c.expect("Console locked.")?;
    }
    let t = Instant::now();
    store_fault_keeps_the_console_password(&mut vm)?;
    eprintln!(
        "store fault under a respawned daemon: it keeps the last console password ({:.1} s)",
        t.elapsed().as_secs_f64()
    );
    // The console sat at its password prompt while the daemon was killed and respawned: the
    // password typed now reaches the new daemon (the dead connection is replaced) and opens
    // the menu, whose header shows the factory hostname the faulty store left running.
    {
        let mut c = ConsoleDriver::new(vm.console());
        c.answer(PASSWORD, PW)?;
        let h = c.main_menu()?;
        if h.hostname != "sip-lb" {
            return Err(fail(format!(
                "header after the respawn under a store fault:\n{}",
                h.text
            )));
        }
        c.choose("0")?;
        c.expect("Console locked.")?;
    }
    eprintln!(
        "BENCH boot_to_ready_ms={} boot_to_test_shell_ms={} (boot 1, lab taps)",
        ready1.as_millis(),
        shell.as_millis()
    );
    eprintln!(
        "BENCH boot_to_ready_ms={} boot_to_test_shell_ms={} (boot 2, stored config)",
        ready2.as_millis(),
        shell2.as_millis()
    );
    Ok(())
}

/// Both store slots destroyed under a running daemon, which is then killed: the respawned
/// daemon finds the store faulty and runs the factory config (no password), yet it keeps the
/// last known console password (kept in tmpfs, 0600) and admits nobody without it.
fn store_fault_keeps_the_console_password(vm: &mut Vm) -> Result<(), VmError> {
    // Random bytes over the whole 1 MiB store are neither erased flash (all 0xFF or all 0)
    // nor a record: both slots read as corrupt.
    vm.shell_ok("dd if=/dev/urandom of=/dev/mtd0 bs=65536 count=16 2>/dev/null; sync; true")?;
    let old = guest::daemon_pid(vm)?.ok_or_else(|| fail("no daemon running"))?;
    let readies = guest::dmesg_count(vm, guest::READY_LINE)?;
    vm.shell_ok(&format!("kill -9 {old}"))?;
    guest::wait_new_daemon(vm, old, Duration::from_secs(60))?;
    guest::wait_dmesg_count(vm, guest::READY_LINE, readies + 1, READY_TIMEOUT)?;
    let log = guest::last_daemon_log(vm)?;
    has("daemon log", &log, "both config store slots are corrupt")?;
    has(
        "daemon log",
        &log,
        "the console stays locked with the last known password",
    )?;
    has(
        "kept password file",
        &vm.shell_ok("stat -c '%a %s' /run/appliance/console-hash")?,
        "600 ",
    )?;
    // What the console asks the daemon before it offers a prompt: a password is set (the
    // last known one) and the login is not blocked, although the factory config has none.
    let status: String = vm
        .shell_ok("appliance status --json")?
        .split_whitespace()
        .collect();
    has(
        "status under the store fault",
        &status,
        "\"password_set\":true",
    )?;
    has(
        "status under the store fault",
        &status,
        "\"login_blocked\":null",
    )?;
    has(
        "status under the store fault",
        &status,
        "\"hostname\":\"sip-lb\"",
    )?;
    Ok(())
}

/// What the store held when the guest came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Found {
    A,
    B,
    Factory,
}

/// Store export without its first (origin comment) line.
fn export_body(out: &str) -> (String, String) {
    let (first, rest) = out.split_once('\n').unwrap_or((out, ""));
    (first.to_string(), rest.to_string())
}

/// Write /tmp/a.toml and /tmp/b.toml in the guest (/tmp is lost at every boot).
/// A and B differ in hostname, weights and size (B has 40 more servers, so its
/// record spans more of the flash page).
fn write_a_b(vm: &mut Vm) -> Result<(), VmError> {
    vm.shell_ok(
        "sed -e 's/^hostname = .*/hostname = \"cut-a\"/' -e 's/^weight = 1/weight = 2/' \
         /etc/appliance/factory.toml > /tmp/a.toml",
    )?;
    vm.shell_ok(
        "{ sed -e 's/^hostname = .*/hostname = \"cut-b\"/' -e 's/^weight = 1/weight = 3/' \
         /etc/appliance/factory.toml; i=20; while [ $i -lt 60 ]; do \
         printf '[[services.servers]]\\naddress = \"198.51.100.%d\"\\nport = 5060\\nweight = 1\\n' $i; \
         i=$((i+1)); done; } > /tmp/b.toml",
    )?;
    Ok(())
}

#[test]
fn power_cut_mid_save_keeps_old_or_new_config() -> Result<(), VmError> {
    let iterations: usize = std::env::var("CUT_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let image = ensure_image()?;
    let mut vm = Vm::boot(VmOptions::new(image))?;
    vm.wait_shell(BOOT_TIMEOUT)?;
    let mut readies = vec![guest::boot_to_ready(&mut vm, READY_TIMEOUT)?];

    let (factory_head, factory) = export_body(&vm.shell_ok("appliance config export")?);
    if !factory_head.contains("factory defaults") {
        return Err(fail(format!("fresh store is not empty: {factory_head}")));
    }
    write_a_b(&mut vm)?;
    let a_bytes = vm.shell_ok("appliance config check /tmp/a.toml && wc -c < /tmp/a.toml")?;
    let b_bytes = vm.shell_ok("appliance config check /tmp/b.toml && wc -c < /tmp/b.toml")?;
    // Canonical exports of A and B, then back to empty for the first cut.
    vm.shell_ok("appliance config import /tmp/a.toml")?;
    let (_, a) = export_body(&vm.shell_ok("appliance config export")?);
    vm.shell_ok("appliance config import /tmp/b.toml")?;
    let (_, b) = export_body(&vm.shell_ok("appliance config export")?);
    vm.shell_ok("appliance factory-reset --yes")?;
    let (head, now) = export_body(&vm.shell_ok("appliance config export")?);
    if now != factory || !head.contains("factory defaults") {
        return Err(fail(format!(
            "factory reset did not empty the store: {head}"
        )));
    }
    eprintln!(
        "power-cut test: A {} bytes of TOML, B {} bytes; {iterations} cuts",
        a_bytes.lines().last().unwrap_or("").trim(),
        b_bytes.lines().last().unwrap_or("").trim()
    );

    // Cheap pseudo-random delays (no extra crate): xorshift seeded by the clock.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    let mut rnd = move |lo: u64, hi: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        lo + seed % (hi - lo)
    };

    let mut ever_saved = false;
    let mut before = Found::Factory;
    let mut total_seen = 0;
    let (mut got_a, mut got_b, mut got_factory, mut newer_than_seen) = (0, 0, 0, 0);
    let mut torn_notes = 0;
    for i in 0..iterations {
        // Alternate imports in the background; each completed save prints a line.
        vm.test_port().skip_to_end();
        vm.test_port().send(
            b"(n=0; while [ $n -lt 400 ]; do appliance config import /tmp/a.toml >/dev/null 2>&1 \
              && echo \"@@SA\"\"VED-A $n@@\"; appliance config import /tmp/b.toml >/dev/null 2>&1 \
              && echo \"@@SA\"\"VED-B $n@@\"; n=$((n+1)); done) &\n",
        )?;
        // Cut at a random moment inside a save cycle: after the k-th completed
        // save, at a random offset within one cycle (so the cut lands in the
        // erase/write/verify phase as often as that phase lasts).
        let started = Instant::now();
        let k = rnd(1, 30) as u32;
        for _ in 0..k {
            vm.test_port()
                .wait_for("@@SAVED-", Duration::from_secs(60))?;
        }
        let cycle = started.elapsed() / k;
        std::thread::sleep(Duration::from_micros(rnd(0, cycle.as_micros() as u64 + 1)));
        let delay = started.elapsed();
        vm.kill();
        let transcript = vm.test_port().transcript();
        let seen: Vec<char> = transcript
            .match_indices("@@SAVED-")
            .filter_map(|(p, _)| transcript[p + 8..].chars().next())
            .collect();
        let last_seen = seen.last().copied();
        ever_saved |= last_seen.is_some();

        vm = vm.power_cycle()?;
        vm.wait_shell(BOOT_TIMEOUT)?;
        readies.push(guest::boot_to_ready(&mut vm, READY_TIMEOUT)?);
        write_a_b(&mut vm)?;
        let (head, body) = export_body(&vm.shell_ok("appliance config export")?);
        let found = if body == a {
            Found::A
        } else if body == b {
            Found::B
        } else if body == factory && head.contains("factory defaults") {
            Found::Factory
        } else {
            return Err(fail(format!(
                "cut {i}: store holds neither A, B nor factory defaults ({head}):\n{body}"
            )));
        };
        // A slot left half-written by the cut shows as "corrupt" in the store notes.
        let notes = vm.shell_ok("dmesg | grep -F 'note=slot' || true")?;
        if notes.contains("corrupt") {
            torn_notes += 1;
            eprintln!("cut {i}: store notes:\n{}", notes.trim_end());
        }
        // The daemon runs what the store holds.
        let want_host = match found {
            Found::A => "cut-a",
            Found::B => "cut-b",
            Found::Factory => "sip-lb",
        };
        let running = vm.shell_ok("appliance show config")?;
        has(
            &format!("cut {i}: daemon's running config"),
            &running,
            &format!("hostname = \"{want_host}\""),
        )?;
        match found {
            Found::A => got_a += 1,
            Found::B => got_b += 1,
            Found::Factory => {
                if ever_saved {
                    return Err(fail(format!(
                        "cut {i}: a save had completed (seen {seen:?}) but the store came back \
                         empty ({head})"
                    )));
                }
                got_factory += 1;
            }
        }
        // What the last save known to be complete left (or the store before
        // this cut); anything else is the save that was in flight at the cut.
        let confirmed = match last_seen {
            Some('A') => Found::A,
            Some('B') => Found::B,
            _ => before,
        };
        if found != confirmed {
            newer_than_seen += 1;
        }
        before = found;
        total_seen += seen.len();
        eprintln!(
            "cut {i}: after {} ms, {} save(s) seen complete (last {:?}); store: {found:?} ({})",
            delay.as_millis(),
            seen.len(),
            last_seen,
            head.trim_start_matches("# ")
        );
    }
    // Guard against a loop that never ran (the test would prove nothing).
    if total_seen < iterations {
        return Err(fail(format!(
            "only {total_seen} saves completed over {iterations} cuts: the save loop did not run"
        )));
    }
    eprintln!(
        "FIGURE power_cut_mid_save: {iterations} cuts during {total_seen} completed saves -> \
         A {got_a}, B {got_b}, factory {got_factory}; {newer_than_seen} boot(s) found the save \
         that was in flight at the cut (the others the last confirmed one); {torn_notes} boot(s) found a torn (corrupt) slot"
    );
    let med = guest::median(&readies);
    eprintln!(
        "BENCH boot_to_ready_ms median={} over {} boots (no NICs), min={} max={}",
        med.as_millis(),
        readies.len(),
        readies
            .iter()
            .min()
            .copied()
            .unwrap_or_default()
            .as_millis(),
        readies
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_millis()
    );
    Ok(())
}
