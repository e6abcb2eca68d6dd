//! Commands in the guest: pids, CPU ticks, RSS, timed config changes.

use super::*;

/// Runs a guest command with a long bound; error unless it exits 0.
pub(super) fn guest(lv: &mut LabVm, cmd: &str, limit: Duration) -> Res<String> {
    let (out, code) = lv.vm.shell_timeout(cmd, limit).map_err(err)?;
    if code != 0 {
        return Err(format!("guest `{cmd}` exited {code}: {}", out.trim()));
    }
    Ok(out)
}

/// Pids in the guest whose /proc/PID/cmdline contains `needle`.
pub(super) fn guest_pids(lv: &mut LabVm, needle: &str) -> Res<Vec<u32>> {
    let out = guest(
        lv,
        &format!(
            "for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null); \
             case \"$c\" in *'{needle}'*) echo ${{p#/proc/}};; esac; done; true"
        ),
        Duration::from_secs(60),
    )?;
    Ok(out
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// utime+stime+cutime+cstime (clock ticks) of guest processes, summed.
pub(super) fn guest_ticks(lv: &mut LabVm, pids: &[u32]) -> Res<u64> {
    let mut total = 0;
    for p in pids {
        let s = guest(lv, &format!("cat /proc/{p}/stat"), Duration::from_secs(30))?;
        let rest = s
            .rsplit_once(')')
            .map(|(_, r)| r)
            .ok_or(format!("/proc/{p}/stat unreadable: {s}"))?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After "comm)": state ppid pgrp session tty tpgid flags minflt
        // cminflt majflt cmajflt utime stime cutime cstime.
        for i in 11..=14 {
            total += f
                .get(i)
                .and_then(|v| v.parse::<i64>().ok())
                .ok_or(format!("/proc/{p}/stat field {i}: {s}"))? as u64;
        }
    }
    Ok(total)
}

/// VmRSS in KiB, summed over guest processes.
pub(super) fn guest_rss_kib(lv: &mut LabVm, pids: &[u32]) -> Res<u64> {
    guest_kib_sum(lv, pids, "VmRSS", |p| {
        format!("grep VmRSS /proc/{p}/status")
    })
}

/// Summed proportional set size (smaps_rollup) of guest processes, KiB.
pub(super) fn guest_pss_kib(lv: &mut LabVm, pids: &[u32]) -> Res<u64> {
    guest_kib_sum(lv, pids, "Pss", |p| {
        format!("grep '^Pss:' /proc/{p}/smaps_rollup")
    })
}

/// The second field (kB) of one `/proc` line per process, summed over `pids`.
fn guest_kib_sum(
    lv: &mut LabVm,
    pids: &[u32],
    what: &str,
    cmd: impl Fn(u32) -> String,
) -> Res<u64> {
    let mut total = 0;
    for &p in pids {
        let s = guest(lv, &cmd(p), Duration::from_secs(30))?;
        total += s
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(format!("{what} of {p}: {s}"))?;
    }
    Ok(total)
}

/// The guest's clock ticks per second (USER_HZ; 100 on Linux x86).
pub(super) const USER_HZ: f64 = 100.0;

/// The /proc/net/ip_vs destination key of a server (`C633640D:13C4`).
pub(super) fn ipvs_key(a: Ipv4Addr, port: u16) -> String {
    format!("{:08X}:{:04X}", u32::from(a), port)
}

/// Runs `cmd` in the guest and then polls /proc/net/ip_vs (in the guest, no
/// serial round trips) until `want` (an extended regex) matches; returns the
/// guest-measured milliseconds (/proc/uptime, 10 ms resolution) or None when
/// it never matched within the bound.
pub(super) fn timed_change(lv: &mut LabVm, cmd: &str, want: &str) -> Res<Option<f64>> {
    let line = format!(
        "t0=$(cut -d' ' -f1 /proc/uptime); {cmd} >/dev/null 2>&1; n=0; \
         until grep -qE '{want}' /proc/net/ip_vs || [ $n -ge 3000 ]; do n=$((n+1)); done; \
         t1=$(cut -d' ' -f1 /proc/uptime); echo \"T $t0 $t1 $n\""
    );
    let out = guest(lv, &line, Duration::from_secs(180))?;
    let l = out
        .lines()
        .find(|l| l.starts_with("T "))
        .ok_or(format!("no timing line from the guest: {out}"))?;
    let f: Vec<f64> = l[2..]
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    if f.len() != 3 {
        return Err(format!("bad timing line: {l}"));
    }
    if f[2] >= 3000.0 {
        return Ok(None);
    }
    Ok(Some((f[1] - f[0]) * 1000.0))
}
