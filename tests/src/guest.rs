//! Guest-side checks for the integrated-daemon VM tests, read through the ttyS1
//! test shell from the kernel's own files (/proc, /sys, dmesg), not from the
//! appliance's reports: daemon pid, log lines, boot-to-ready time, IPVS table,
//! LED class devices and the watchdog state.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::lab::{Appliance, Lab, LabOptions, LAN_TAP, WAN_TAP};
use crate::vm::{Image, Vm, VmError, VmOptions};

/// The daemon's "ready" log line (daemon/mod.rs).
pub const READY_LINE: &str = "appliance daemon ready";
/// The daemon's first log line.
pub const STARTING_LINE: &str = "appliance daemon starting";
/// Board LED names (board/qemu-x86_64/rootfs-overlay/etc/appliance/board.toml).
pub const LED_STATUS: &str = "sip-lb:green:status";
/// Pool health LED.
pub const LED_POOL: &str = "sip-lb:green:pool";
/// HA role LED.
pub const LED_HA: &str = "sip-lb:amber:ha";
/// Activity LED.
pub const LED_ACTIVITY: &str = "sip-lb:green:activity";

/// Error for a guest condition that did not hold (as a [`VmError`] so tests use one `?`).
pub fn fail(msg: impl Into<String>) -> VmError {
    VmError::Io(msg.into())
}

/// A lab (namespaces, bridges, taps; no sipp started) and VM options that put
/// the appliance's eth0/eth1 on the lab's taps. The caller keeps the lab alive
/// longer than the VM (declare the lab first so it drops last).
pub fn lab_with_taps(image: Image) -> Result<(Lab, VmOptions), VmError> {
    let lab = Lab::new(&LabOptions {
        servers: 3,
        client_addrs: 1,
        appliance: Appliance::Vm,
    })
    .map_err(|e| fail(format!("cannot build the lab: {e}")))?;
    let mut vo = VmOptions::new(image);
    vo.wan_tap = Some(WAN_TAP.into());
    vo.lan_tap = Some(LAN_TAP.into());
    vo.netns = Some(lab.switch_ns.clone());
    Ok((lab, vo))
}

/// Poll `cond` every `every` until it returns `Some`, or fail after `limit`.
pub fn poll<T>(
    vm: &mut Vm,
    limit: Duration,
    every: Duration,
    what: &str,
    mut cond: impl FnMut(&mut Vm) -> Result<Option<T>, VmError>,
) -> Result<T, VmError> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = cond(vm)? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            let tail = vm.shell_ok("dmesg | tail -n 40").unwrap_or_default();
            return Err(fail(format!(
                "timed out after {limit:?} waiting for {what}\nguest dmesg tail:\n{tail}"
            )));
        }
        std::thread::sleep(every);
    }
}

/// Pid of the running `appliance daemon`, if any (from /proc, not from the appliance).
pub fn daemon_pid(vm: &mut Vm) -> Result<Option<u32>, VmError> {
    let out = vm.shell_ok(
        "for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null); \
         case \"$c\" in *appliance\\ daemon*) s=$(sed -n 's/^State:[[:space:]]*//p' $p/status); \
         echo \"${p#/proc/} $s\";; esac; done; true",
    )?;
    // Skip zombies (a killed daemon not reaped yet by init).
    Ok(out
        .lines()
        .filter(|l| !l.contains("Z (zombie)"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .next())
}

/// Wait until a daemon with a pid other than `old` runs; returns it.
pub fn wait_new_daemon(vm: &mut Vm, old: u32, limit: Duration) -> Result<u32, VmError> {
    poll(
        vm,
        limit,
        Duration::from_millis(200),
        "init to respawn the daemon",
        |vm| Ok(daemon_pid(vm)?.filter(|p| *p != old)),
    )
}

/// The whole kernel log.
pub fn dmesg(vm: &mut Vm) -> Result<String, VmError> {
    vm.shell_ok("dmesg")
}

/// How many lines of the kernel log contain `needle`.
pub fn dmesg_count(vm: &mut Vm, needle: &str) -> Result<usize, VmError> {
    Ok(dmesg(vm)?.lines().filter(|l| l.contains(needle)).count())
}

/// Wait until at least `n` kernel log lines contain `needle`.
pub fn wait_dmesg_count(
    vm: &mut Vm,
    needle: &str,
    n: usize,
    limit: Duration,
) -> Result<(), VmError> {
    poll(
        vm,
        limit,
        Duration::from_millis(300),
        &format!("{n} log line(s) with {needle:?}"),
        |vm| Ok((dmesg_count(vm, needle)? >= n).then_some(())),
    )
}

/// The log of the most recent daemon instance (from its "starting" line on).
pub fn last_daemon_log(vm: &mut Vm) -> Result<String, VmError> {
    let d = dmesg(vm)?;
    let start = d.rfind(STARTING_LINE).unwrap_or(0);
    Ok(d[start..].to_string())
}

/// Boot-to-ready: QEMU start to the daemon's first "ready" log line, from the
/// line's kernel timestamp and the guest uptime read in the same command
/// (so shell polling latency does not count). Waits up to `limit`.
pub fn boot_to_ready(vm: &mut Vm, limit: Duration) -> Result<Duration, VmError> {
    // printk.time only changes how records are printed: every record carries its stamp.
    let cmd = format!(
        "echo Y > /sys/module/printk/parameters/time; cat /proc/uptime; \
         dmesg | grep -F '{READY_LINE}' | head -n 1"
    );
    poll(
        vm,
        limit,
        Duration::from_millis(250),
        "the daemon's ready line",
        |vm| {
            let out = vm.shell_ok(&cmd)?;
            let host = vm.started().elapsed();
            let mut lines = out.lines();
            let uptime: Option<f64> = lines
                .next()
                .and_then(|l| l.split_whitespace().next())
                .and_then(|u| u.parse().ok());
            let stamp = lines.next().and_then(kmsg_time);
            Ok(match (uptime, stamp) {
                (Some(u), Some(t)) if u >= t => {
                    Some(host.saturating_sub(Duration::from_secs_f64(u - t)))
                }
                _ => None,
            })
        },
    )
}

/// Kernel timestamp (seconds) of a dmesg line "[   12.345678] ...".
pub fn kmsg_time(line: &str) -> Option<f64> {
    let rest = line.trim_start().strip_prefix('[')?;
    let end = rest.find(']')?;
    rest[..end].trim().parse().ok()
}

/// /proc/net/ip_vs.
pub fn ip_vs(vm: &mut Vm) -> Result<String, VmError> {
    vm.shell_ok("cat /proc/net/ip_vs")
}

/// Median of some durations (zero if empty).
pub fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s.get(s.len() / 2).copied().unwrap_or_default()
}

/// State of one LED class device as the kernel shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Led {
    /// No such device (daemon not running or not created yet).
    Missing,
    /// trigger none, brightness 0.
    Off,
    /// trigger none, brightness > 0.
    On,
    /// trigger timer with delay_on/delay_off in ms.
    Blink(u32, u32),
    /// Anything else (raw text).
    Other(String),
}

/// Fast blink: no server up, or a fault.
pub const FAST: Led = Led::Blink(100, 100);
/// Slow blink: degraded pool.
pub const SLOW: Led = Led::Blink(1000, 1000);
/// Booting blink.
pub const BOOTING: Led = Led::Blink(500, 500);

/// Shell line printing "NAME TRIGGER DELAY_ON/DELAY_OFF BRIGHTNESS" per LED.
pub const LED_SCRIPT: &str = "for l in /sys/class/leds/*; do [ -e \"$l/trigger\" ] || continue; \
     t=$(sed 's/.*\\[\\(.*\\)\\].*/\\1/' \"$l/trigger\"); d=-; \
     [ -r \"$l/delay_on\" ] && d=\"$(cat \"$l/delay_on\")/$(cat \"$l/delay_off\")\"; \
     echo \"${l##*/} $t $d $(cat \"$l/brightness\")\"; done";

/// Parse the output of [`LED_SCRIPT`].
pub fn parse_leds(out: &str) -> BTreeMap<String, Led> {
    let mut m = BTreeMap::new();
    for l in out.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let [name, trigger, delay, bright] = f.as_slice() else {
            continue;
        };
        let b: u32 = bright.parse().unwrap_or(0);
        let led = match *trigger {
            "none" if b > 0 => Led::On,
            "none" => Led::Off,
            "timer" => match delay.split_once('/') {
                Some((on, off)) => match (on.parse(), off.parse()) {
                    (Ok(on), Ok(off)) => Led::Blink(on, off),
                    _ => Led::Other(l.to_string()),
                },
                None => Led::Other(l.to_string()),
            },
            _ => Led::Other(l.to_string()),
        };
        m.insert(name.to_string(), led);
    }
    m
}

/// All LED class devices and their states.
pub fn leds(vm: &mut Vm) -> Result<BTreeMap<String, Led>, VmError> {
    Ok(parse_leds(&vm.shell_ok(LED_SCRIPT)?))
}

/// State of LED `name`.
pub fn led(vm: &mut Vm, name: &str) -> Result<Led, VmError> {
    Ok(leds(vm)?.remove(name).unwrap_or(Led::Missing))
}

/// Wait until LED `name` shows `want`; returns how long it took.
pub fn wait_led(vm: &mut Vm, name: &str, want: Led, limit: Duration) -> Result<Duration, VmError> {
    let t0 = Instant::now();
    let mut last = Led::Missing;
    let r = poll(
        vm,
        limit,
        Duration::from_millis(300),
        &format!("LED {name} to show {want:?}"),
        |vm| {
            last = led(vm, name)?;
            Ok((last == want).then_some(()))
        },
    );
    match r {
        Ok(()) => Ok(t0.elapsed()),
        Err(e) => Err(fail(format!("{e}\nLED {name} last showed {last:?}"))),
    }
}

/// /sys/class/watchdog/watchdog0/{state,timeout}.
pub fn watchdog_state(vm: &mut Vm) -> Result<(String, u32), VmError> {
    let out = vm.shell_ok(
        "cat /sys/class/watchdog/watchdog0/state /sys/class/watchdog/watchdog0/timeout",
    )?;
    let mut l = out.lines();
    let state = l.next().unwrap_or("").trim().to_string();
    let timeout = l.next().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
    Ok((state, timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_led_lines_and_kmsg_times() {
        let m = parse_leds(
            "sip-lb:green:status none - 255\nsip-lb:green:pool timer 100/100 0\n\
             sip-lb:amber:ha none - 0\nx weird\n",
        );
        assert_eq!(m["sip-lb:green:status"], Led::On);
        assert_eq!(m["sip-lb:green:pool"], FAST);
        assert_eq!(m["sip-lb:amber:ha"], Led::Off);
        assert!(!m.contains_key("x"));
        assert_eq!(kmsg_time("[    3.250000] x"), Some(3.25));
        assert_eq!(kmsg_time("no stamp"), None);
        assert_eq!(
            median(&[
                Duration::from_secs(3),
                Duration::from_secs(1),
                Duration::from_secs(2)
            ]),
            Duration::from_secs(2)
        );
    }
}
