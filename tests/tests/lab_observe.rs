//! Remote syslog and time against real tools, in one booted image: Debian's rsyslog
//! (UDP and TCP inputs, raw messages to a file) receives the RFC 5424 messages of a
//! server failure and recovery, parsed strictly here; Debian's chrony (`local stratum`,
//! `-x`: it never touches the host clock) serves time, and the guest, which boots at
//! 1970, syncs to it. Then an unreachable TCP collector and an unreachable NTP server:
//! each shows a clear status, and probing is unaffected (the next failure is detected
//! as fast, and the reachable collector still gets every message).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use appliance_tests::lab::booted::{Failure, LabVm};
use appliance_tests::lab::rfc5424::{self, Message};
use appliance_tests::lab::{self, LabOptions};

/// The collector and time server host on LAN.
const OBS: &str = "198.51.100.50";
/// No host answers here (ARP fails): the unreachable collector and NTP server.
const NOBODY_SYSLOG: &str = "198.51.100.99";
const NOBODY_NTP: &str = "198.51.100.98";
/// How far the guest clock may be from the host's after sync (TCG and shell round trips).
const CLOCK_SLACK_S: i64 = 5;

fn host_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn in_path(tool: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).is_file())
}

/// Unix seconds of an RFC 3339 UTC timestamp (`...Z`, as the appliance sends them).
fn unix_of(ts: &str) -> Option<i64> {
    let n = |a: usize, b: usize| ts.get(a..b)?.parse::<i64>().ok();
    let (y, m, d) = (n(0, 4)?, n(5, 7)?, n(8, 10)?);
    let (hh, mm, ss) = (n(11, 13)?, n(14, 16)?, n(17, 19)?);
    if !ts.ends_with('Z') {
        return None;
    }
    // Days from civil (H. Hinnant).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

fn status(lv: &mut LabVm) -> serde_json::Value {
    let out = lv.guest("appliance status --json").expect("status --json");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("status --json: {e}: {out}"))
}

/// Every line the collector wrote: `(input, message)`, each parsed strictly.
fn received(path: &Path) -> Vec<(String, Message)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (input, raw) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("collector line without input name: {l:?}"));
            let m = rfc5424::parse(raw).unwrap_or_else(|e| panic!("not RFC 5424 ({e}): {raw:?}"));
            (input.to_string(), m)
        })
        .collect()
}

fn health<'a>(
    msgs: &'a [(String, Message)],
    input: &str,
    server: &str,
    state: &str,
) -> Option<&'a Message> {
    msgs.iter()
        .filter(|(i, _)| i == input)
        .map(|(_, m)| m)
        .find(|m| {
            m.msgid == "HEALTH"
                && m.param("slb@32473", "server") == Some(server)
                && m.param("slb@32473", "state") == Some(state)
        })
}

/// Writes the guest's config: the exported one without its `[syslog]`/`[ntp]` tail,
/// plus ours; then imports it live (apply + save).
fn configure(lv: &mut LabVm, collectors: &str, ntp: &str) {
    lv.guest("appliance config export /tmp/obs-base.toml >/dev/null")
        .expect("export");
    lv.guest("sed '/^\\[syslog\\]/,$d' /tmp/obs-base.toml > /tmp/obs.toml")
        .expect("strip");
    lv.guest(&format!(
        "printf '%s\\n' '' '[syslog]' 'facility = \"local0\"' 'collectors = [{collectors}]' '' '[ntp]' 'servers = [{ntp}]' 'poll_s = 16' >> /tmp/obs.toml"
    ))
    .expect("append");
    let out = lv
        .guest("appliance config import /tmp/obs.toml --live 2>&1")
        .expect("config import --live");
    eprintln!("observe: import: {}", out.trim());
}

fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn lab_syslog_and_ntp() {
    if let Err(why) = lab::check_host() {
        appliance_tests::skip::skip(&why);
        return;
    }
    for tool in ["rsyslogd", "chronyd"] {
        if !in_path(tool) {
            appliance_tests::skip::skip(&format!(
                "`{tool}` is not installed: run tests/setup-host.sh (packages rsyslog, chrony)"
            ));
            return;
        }
    }
    // A box whose clock was never set: the CMOS clock starts at the epoch.
    let mut lv = LabVm::boot_with(&LabOptions::default(), "uas.xml", |vo| {
        vo.rtc_base = Some("1970-01-01T00:00:00".into());
    })
    .expect("boot lab + appliance");

    // The collector / time host.
    let ns = lv
        .lab
        .add_host(
            "obs",
            &[(
                "obs0",
                "brl",
                "eth0",
                &format!("{OBS}/24"),
                "02:00:00:00:00:50",
            )],
        )
        .expect("observer host");
    let dir = lv.lab.dir.clone();
    let log = dir.join("remote.log");
    let rsyslog_conf = dir.join("rsyslog.conf");
    std::fs::write(
        &rsyslog_conf,
        format!(
            "global(workDirectory=\"{d}\")\n\
             module(load=\"imudp\")\nmodule(load=\"imtcp\")\n\
             input(type=\"imudp\" address=\"{OBS}\" port=\"514\")\n\
             input(type=\"imtcp\" address=\"{OBS}\" port=\"514\")\n\
             template(name=\"raw\" type=\"string\" string=\"%inputname% %rawmsg%\\n\")\n\
             *.* action(type=\"omfile\" file=\"{log}\" template=\"raw\")\n",
            d = dir.display(),
            log = log.display()
        ),
    )
    .expect("rsyslog.conf");
    let chrony_conf = dir.join("chrony.conf");
    std::fs::write(
        &chrony_conf,
        format!(
            "local stratum 8\nallow 198.51.100.0/24\nbindaddress {OBS}\ncmdport 0\npidfile {}/chronyd.pid\n",
            dir.display()
        ),
    )
    .expect("chrony.conf");
    let rs_pid = dir.join("rsyslogd.pid");
    let rs_conf = rsyslog_conf.display().to_string();
    let rs_pid = rs_pid.display().to_string();
    lv.lab
        .spawn(
            &ns,
            "rsyslogd",
            &["-n", "-f", &rs_conf, "-i", &rs_pid],
            "rsyslogd.log",
        )
        .expect("rsyslogd");
    let ch_conf = chrony_conf.display().to_string();
    lv.lab
        .spawn(
            &ns,
            "chronyd",
            &["-d", "-x", "-u", "root", "-f", &ch_conf],
            "chronyd.log",
        )
        .expect("chronyd");
    wait_for(
        Duration::from_secs(20),
        "rsyslog and chrony listening",
        || {
            let u = lab::ns_run(&ns, "ss", &["-Hlnu"]).unwrap_or_default();
            let t = lab::ns_run(&ns, "ss", &["-Hlnt"]).unwrap_or_default();
            (u.contains(&format!("{OBS}:514"))
                && u.contains(&format!("{OBS}:123"))
                && t.contains(&format!("{OBS}:514")))
            .then_some(())
        },
    );

    // Before any NTP server: the guest clock is in 1970 and status says NTP is off.
    let guest_now: i64 = lv
        .guest("date +%s")
        .expect("date")
        .trim()
        .parse()
        .expect("date +%s");
    eprintln!("observe: guest clock before sync: {guest_now}");
    assert!(
        guest_now < 946_684_800,
        "the guest should boot at 1970, has {guest_now}"
    );
    assert_eq!(status(&mut lv)["ntp"]["state"], "off");

    // Phase 1: UDP and TCP to rsyslog; NTP from chrony plus an unreachable server.
    configure(
        &mut lv,
        &format!("{{ address = \"{OBS}\" }}, {{ address = \"{OBS}\", transport = \"tcp\" }}"),
        &format!("\"{OBS}\", \"{NOBODY_NTP}\""),
    );
    let st = wait_for(Duration::from_secs(90), "NTP synced", || {
        let s = status(&mut lv);
        (s["ntp"]["state"] == "synced").then_some(s)
    });
    let host = host_now();
    let guest_now: i64 = lv
        .guest("date +%s")
        .expect("date")
        .trim()
        .parse()
        .expect("date +%s");
    eprintln!("observe: synced: {}", st["ntp"]);
    assert!(
        (guest_now - host).abs() <= CLOCK_SLACK_S,
        "guest clock {guest_now} vs host {host}"
    );
    assert_eq!(st["ntp"]["server"], OBS);
    let last = st["ntp"]["last_sync_unix"]
        .as_i64()
        .expect("last_sync_unix");
    assert!(
        (last - host).abs() <= 120,
        "last sync {last} vs host {host}"
    );
    // The unreachable server is named with its reason; the sync is unaffected.
    let nobody = st["ntp"]["servers"]
        .as_array()
        .and_then(|v| v.iter().find(|s| s["address"] == NOBODY_NTP).cloned())
        .expect("the unreachable NTP server in status");
    assert_eq!(nobody["state"], "error", "{nobody}");
    let why = nobody["error"].as_str().unwrap_or("");
    assert!(
        why.contains("no reply") || why.contains("unreachable"),
        "{why}"
    );
    // The status screen's words.
    let text = lv.guest("appliance status").expect("status");
    assert!(text.contains(&format!("Time: synced to {OBS}")), "{text}");
    // Log timestamps: 1970 before the sync, wall-clock after it (the daemon logs to kmsg).
    let dmesg = lv.guest("dmesg | grep -a 'NTP: clock'").expect("dmesg");
    let year = unix_of_year(host);
    assert!(
        dmesg
            .lines()
            .any(|l| l.contains("clock stepped") && l.contains(&format!("{year}-"))),
        "no wall-clock 'clock stepped' line in:\n{dmesg}"
    );
    let early = lv
        .guest("dmesg | grep -a 'appliance daemon starting' | head -1")
        .expect("dmesg");
    assert!(early.contains("1970-01-01T"), "{early}");

    // A server failure and recovery, in RFC 5424 at the collector, over UDP and TCP.
    let s0 = lv.lab.servers[0].sip().to_string();
    lv.fail_server(0, Failure::Killed).expect("kill server 0");
    let s0ip = lv.lab.servers[0].addr;
    lv.wait_weights(Duration::from_secs(20), "server 0 out", |k| {
        !k.dests.iter().any(|d| d.0 == s0ip && d.2 > 0)
    })
    .expect("server 0 out of the table");
    lv.restore_server(0, Failure::Killed)
        .expect("restart server 0");
    lv.wait_balancing(Duration::from_secs(30))
        .expect("balancing again");
    let msgs = wait_for(
        Duration::from_secs(30),
        "down and up at the collector",
        || {
            let m = received(&log);
            ["imudp", "imtcp"]
                .iter()
                .all(|i| health(&m, i, &s0, "down").is_some() && health(&m, i, &s0, "up").is_some())
                .then_some(m)
        },
    );
    eprintln!("observe: the collector received {} messages", msgs.len());
    let host = host_now();
    for input in ["imudp", "imtcp"] {
        for (state, pri) in [("down", 16 * 8 + 4), ("up", 16 * 8 + 5)] {
            let m = health(&msgs, input, &s0, state).expect("seen");
            eprintln!("observe: {input}: {m:?}");
            assert_eq!(m.pri, pri, "{m:?}");
            assert_eq!(
                (m.hostname.as_str(), m.app_name.as_str()),
                ("sip-lb", "appliance")
            );
            assert!(m.procid.parse::<u32>().is_ok(), "{m:?}");
            assert_eq!(m.param("slb@32473", "service"), Some("sip"));
            assert!(
                !m.param("slb@32473", "reason").unwrap_or("").is_empty(),
                "{m:?}"
            );
            assert_eq!(m.param("timeQuality", "isSynced"), Some("1"), "{m:?}");
            let t = m
                .timestamp
                .as_deref()
                .and_then(unix_of)
                .expect("a timestamp once synced");
            assert!(
                (t - host).abs() <= 120,
                "timestamp {t} vs host {host}: {m:?}"
            );
            assert!(m.msg.contains(&s0), "{m:?}");
        }
    }
    // The apply that configured syslog was sent before the clock was set: NILVALUE, unsynced.
    let apply = msgs
        .iter()
        .find(|(i, m)| {
            i == "imudp" && m.msgid == "CONFIG" && m.param("slb@32473", "action") == Some("apply")
        })
        .map(|(_, m)| m)
        .expect("the config apply event");
    assert_eq!(apply.param("slb@32473", "result"), Some("ok"));
    assert_eq!(apply.timestamp, None, "{apply:?}");
    assert_eq!(
        apply.param("timeQuality", "isSynced"),
        Some("0"),
        "{apply:?}"
    );

    // Phase 2: the TCP collector is a host that does not exist.
    configure(
        &mut lv,
        &format!(
            "{{ address = \"{OBS}\" }}, {{ address = \"{NOBODY_SYSLOG}\", transport = \"tcp\" }}"
        ),
        &format!("\"{OBS}\", \"{NOBODY_NTP}\""),
    );
    let s1 = lv.lab.servers[1].sip().to_string();
    let s1ip = lv.lab.servers[1].addr;
    let t0 = Instant::now();
    lv.fail_server(1, Failure::Killed).expect("kill server 1");
    lv.wait_weights(Duration::from_secs(20), "server 1 out", |k| {
        !k.dests.iter().any(|d| d.0 == s1ip && d.2 > 0)
    })
    .expect("server 1 out while a collector hangs");
    eprintln!(
        "observe: server 1 out of the table {:.1} s after its kill (collector hanging)",
        t0.elapsed().as_secs_f64()
    );
    lv.restore_server(1, Failure::Killed)
        .expect("restart server 1");
    lv.wait_balancing(Duration::from_secs(30))
        .expect("balancing again");
    let st = wait_for(
        Duration::from_secs(30),
        "the hanging collector reported",
        || {
            let s = status(&mut lv);
            let bad = s["syslog"]
                .as_array()?
                .iter()
                .find(|c| c["target"] == format!("tcp://{NOBODY_SYSLOG}:514"))?
                .clone();
            (bad["state"] == "error" && bad["dropped"].as_u64()? >= 1).then_some(s)
        },
    );
    eprintln!("observe: syslog status: {}", st["syslog"]);
    let cols = st["syslog"].as_array().expect("syslog status");
    let good = cols
        .iter()
        .find(|c| c["target"] == format!("udp://{OBS}:514"))
        .expect("udp collector");
    assert_eq!(good["state"], "ok", "{good}");
    assert_eq!(good["dropped"], 0, "{good}");
    let bad = cols
        .iter()
        .find(|c| c["target"] == format!("tcp://{NOBODY_SYSLOG}:514"))
        .expect("tcp collector");
    let why = bad["error"].as_str().unwrap_or("");
    assert!(
        why.contains("connect") && why.contains(NOBODY_SYSLOG),
        "{why}"
    );
    assert_eq!(st["ntp"]["state"], "synced", "{}", st["ntp"]);
    let text = lv.guest("appliance status").expect("status");
    assert!(
        text.contains(&format!("Syslog tcp://{NOBODY_SYSLOG}:514:")),
        "{text}"
    );
    // The reachable collector still got the second failure and recovery.
    wait_for(Duration::from_secs(30), "server 1 down/up over UDP", || {
        let m = received(&log);
        (health(&m, "imudp", &s1, "down").is_some() && health(&m, "imudp", &s1, "up").is_some())
            .then_some(())
    });
}

/// The UTC year of a unix time.
fn unix_of_year(t: i64) -> i64 {
    let mut y = 1970;
    while unix_of(&format!("{:04}-01-01T00:00:00Z", y + 1)).is_some_and(|s| s <= t) {
        y += 1;
    }
    y
}
