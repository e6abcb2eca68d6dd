//! The metrics endpoint against the real tool: Debian's Prometheus runs in a lab
//! namespace on the LAN, scrapes the booted appliance, and the test reads what it
//! stored through Prometheus's HTTP API: the calls in flight (counted by the sipp
//! client) match the active calls, the weight and connection series carry
//! node_exporter's labels, and the server the test kills reports down. Bad input
//! from the same namespace: a source outside the allow list is reset before any
//! answer, malformed heads get 400, slow heads (slowloris) time out, and none of it
//! stops probing (the kill is detected meanwhile). One boot for all of it.

use appliance_tests::lab::booted::LabVm;
use appliance_tests::lab::{self, ns_cmd, LabOptions};
use appliance_tests::sipp::{Uac, UacOptions};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The Prometheus host on LAN (allowed to scrape).
const PROM: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 50);
/// A second address of the same host, outside the allow list.
const STRANGER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 51);
/// The appliance's LAN address, where management services listen by default.
const MGMT: Ipv4Addr = lab::APPLIANCE_LAN;
/// The metrics port (the config default).
const PORT: u16 = 9100;

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// Runs a command in the Prometheus namespace; (stdout, exit code).
fn in_ns(ns: &str, program: &str, args: &[&str]) -> (String, i32) {
    let out = ns_cmd(ns, program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} in {ns}: {e}"));
    (
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        out.status.code().unwrap_or(-1),
    )
}

/// An instant query through Prometheus's HTTP API: (labels JSON object, value) per series.
fn query(ns: &str, q: &str) -> Vec<(serde_json::Value, f64)> {
    let (body, code) = in_ns(
        ns,
        "curl",
        &[
            "-sS",
            "-m",
            "10",
            "-G",
            "http://127.0.0.1:9090/api/v1/query",
            "--data-urlencode",
            &format!("query={q}"),
        ],
    );
    assert_eq!(code, 0, "Prometheus API query {q}: {body}");
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{q}: {e}: {body}"));
    assert_eq!(v["status"], "success", "{q}: {body}");
    v["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let val = r["value"][1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN);
            (r["metric"].clone(), val)
        })
        .collect()
}

/// Polls `q` until `ok` holds (bounded), returning the last result.
fn wait_query(
    ns: &str,
    q: &str,
    limit: Duration,
    ok: impl Fn(&[(serde_json::Value, f64)]) -> bool,
) -> Vec<(serde_json::Value, f64)> {
    let deadline = Instant::now() + limit;
    loop {
        let r = query(ns, q);
        if ok(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{q}: not as expected within {limit:?}; last result {r:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs the misbehaving client; returns its `conn=i outcome=x after_ms=n` lines as (outcome, ms).
fn peer(ns: &str, script: &str, args: &[&str]) -> Vec<(String, u64)> {
    let mut all = vec![script];
    all.extend_from_slice(args);
    let (out, code) = in_ns(ns, "python3", &all);
    assert_eq!(code, 0, "http_peer.py {args:?}: {out}");
    parse_peer(&out)
}

fn parse_peer(out: &str) -> Vec<(String, u64)> {
    out.lines()
        .filter(|l| l.starts_with("conn="))
        .map(|l| {
            let f = |k: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .unwrap_or("")
                    .to_string()
            };
            (f("outcome="), f("after_ms=").parse().unwrap_or(u64::MAX))
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn metrics_scraped_by_prometheus() {
    if let Err(why) = lab::check_host() {
        appliance_tests::skip::skip(&why);
        return;
    }
    for tool in ["prometheus", "curl", "python3"] {
        if !which(tool) {
            appliance_tests::skip::skip(&format!(
                "`{tool}` not found: run tests/setup-host.sh (packages prometheus, curl, python3)"
            ));
            return;
        }
    }
    let mut lv = LabVm::boot(&LabOptions::default(), "uas.xml").expect("boot lab + appliance");
    let servers = lv.lab.server_addrs();

    // Metrics on, for the Prometheus host only: the operator's way, a config import.
    lv.guest("appliance config export /tmp/m.toml")
        .expect("export the config");
    lv.guest(&format!(
        "sed -i -e 's|^metrics_enabled = .*|metrics_enabled = true|' \
         -e 's|^allow = .*|allow = [\"{PROM}/32\"]|' /tmp/m.toml && \
         grep -q '^metrics_enabled = true' /tmp/m.toml && grep -q '{PROM}/32' /tmp/m.toml"
    ))
    .expect("edit [management] in the exported config");
    let out = lv
        .guest("appliance config import /tmp/m.toml --live 2>&1")
        .expect("import the config live");
    eprintln!("import: {out}");

    // The Prometheus host: one veth on the LAN bridge, two addresses.
    let ns = lv
        .lab
        .add_host(
            "prom",
            &[(
                "pm0",
                "brl",
                "eth0",
                &format!("{PROM}/24"),
                "02:00:00:00:50:01",
            )],
        )
        .expect("Prometheus namespace");
    lab::ip(&[
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{STRANGER}/24"),
        "dev",
        "eth0",
    ])
    .expect("second address");
    let cfg = lv.lab.path("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: appliance\n    static_configs:\n      \
             - targets: ['{MGMT}:{PORT}']\n"
        ),
    )
    .unwrap();
    let tsdb = lv.lab.path("prom-data");
    let cfg_arg = format!("--config.file={}", cfg.display());
    let tsdb_arg = format!("--storage.tsdb.path={}", tsdb.display());
    lv.lab
        .spawn(
            &ns,
            "prometheus",
            &[
                &cfg_arg,
                &tsdb_arg,
                "--web.listen-address=127.0.0.1:9090",
                "--storage.tsdb.retention.time=1h",
            ],
            "prometheus.log",
        )
        .expect("start Prometheus");
    // Prometheus opens its API a moment after it starts.
    lab::wait_until(Duration::from_secs(60), "Prometheus ready", || {
        in_ns(
            &ns,
            "curl",
            &["-sf", "-m", "2", "http://127.0.0.1:9090/-/ready"],
        )
        .1 == 0
    })
    .expect("Prometheus ready");
    let script = lv.lab.path("http_peer.py");
    std::fs::write(&script, include_str!("../tools/http_peer.py")).unwrap();
    let script = script.display().to_string();

    // Prometheus scrapes the box successfully.
    let t = Instant::now();
    let up = wait_query(&ns, "up{job=\"appliance\"}", Duration::from_secs(90), |r| {
        r.len() == 1 && r[0].1 == 1.0
    });
    eprintln!(
        "Prometheus target up after {:.1} s: {up:?}",
        t.elapsed().as_secs_f64()
    );
    let info = query(&ns, "appliance_build_info");
    assert_eq!(info.len(), 1, "{info:?}");
    assert!(
        info[0].0["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{info:?}"
    );

    // node_exporter's IPVS series with its labels, one per server, weight 1.
    let w = wait_query(
        &ns,
        "node_ipvs_backend_weight",
        Duration::from_secs(30),
        |r| r.len() == servers.len(),
    );
    for a in &servers {
        let s = w
            .iter()
            .find(|(m, _)| m["remote_address"] == a.to_string())
            .unwrap_or_else(|| panic!("no weight series for {a}: {w:?}"));
        assert_eq!(s.1, 1.0, "{s:?}");
        for (k, v) in [
            ("local_address", lab::VIP.to_string()),
            ("local_port", "5060".into()),
            ("remote_port", "5060".into()),
            ("proto", "UDP".into()),
            ("local_mark", String::new()),
        ] {
            // Prometheus drops labels with empty values.
            let got = s.0[k].as_str().unwrap_or("");
            assert_eq!(got, v, "label {k} of {s:?}");
        }
    }
    for m in [
        "node_ipvs_backend_connections_active",
        "node_ipvs_backend_connections_inactive",
        "appliance_ipvs_backend_persistence_templates",
    ] {
        let r = query(&ns, m);
        assert_eq!(r.len(), servers.len(), "{m}: {r:?}");
    }
    let h = query(&ns, "appliance_probe_rtt_seconds_count");
    assert!(
        h.len() == servers.len() && h.iter().all(|(_, v)| *v > 0.0),
        "{h:?}"
    );

    // Calls in flight: 40 calls held 25 s; once all are set up, sipp's count of calls in
    // flight and the box's active calls (persistence templates) must agree.
    let mut uac = UacOptions::basic(&lv.lab, lv.lab.vip(), 40, 10);
    uac.hold_ms = 25_000;
    uac.time_limit = Duration::from_secs(90);
    let client = Uac::start(&lv.lab, &uac, "metrics").expect("sipp client");
    std::thread::sleep(Duration::from_secs(10));
    let st = client.stats().expect("sipp stats");
    let in_flight = st.created - st.successful - st.failed;
    let calls = wait_query(
        &ns,
        "appliance_active_calls",
        Duration::from_secs(10),
        |r| r.len() == 1 && (r[0].1 - in_flight as f64).abs() <= 2.0,
    );
    let per_server = query(&ns, "sum(appliance_ipvs_backend_persistence_templates)");
    eprintln!(
        "FIGURE metrics calls_in_flight={in_flight} (sipp: {st:?}) active_calls={} templates_sum={:?}",
        calls[0].1, per_server
    );
    assert_eq!(in_flight, 40, "sipp should hold all 40 calls now: {st:?}");
    assert_eq!(per_server.first().map(|r| r.1), Some(calls[0].1));

    // Bad input while a server fails. A slowloris from the allowed address holds three
    // of the four connection slots (Prometheus keeps the fourth); ten from the stranger
    // are reset at once. Meanwhile server 1 is killed: probing must notice as usual.
    let slow_allowed = lv
        .lab
        .spawn_child(
            &ns,
            "python3",
            &[
                &script,
                "slow",
                &PROM.to_string(),
                &MGMT.to_string(),
                "9100",
                "3",
                "12",
            ],
            "slow-allowed.log",
        )
        .expect("slowloris (allowed source)");
    let stranger = peer(
        &ns,
        &script,
        &[
            "slow",
            &STRANGER.to_string(),
            &MGMT.to_string(),
            "9100",
            "10",
            "4",
        ],
    );
    eprintln!("stranger slowloris: {stranger:?}");
    assert_eq!(stranger.len(), 10, "{stranger:?}");
    for (what, ms) in &stranger {
        assert!(
            (what == "reset" || what == "closed-empty") && *ms < 2000,
            "a source outside the allow list got {what} after {ms} ms"
        );
    }
    let t_kill = Instant::now();
    lv.fail_server(1, appliance_tests::lab::booted::Failure::Killed)
        .expect("kill server 1");
    let dead = servers[1].to_string();
    let down_q = format!("appliance_server_up{{remote_address=\"{dead}\"}}");
    wait_query(&ns, &down_q, Duration::from_secs(20), |r| {
        r.len() == 1 && r[0].1 == 0.0
    });
    eprintln!(
        "FIGURE metrics server_down_seen_by_prometheus_ms={}",
        t_kill.elapsed().as_millis()
    );
    let state = query(
        &ns,
        &format!("appliance_server_health{{remote_address=\"{dead}\",state=\"down\"}}"),
    );
    assert_eq!(state.iter().map(|r| r.1).collect::<Vec<_>>(), vec![1.0]);
    let others = query(&ns, "appliance_server_up == 1");
    assert_eq!(others.len(), servers.len() - 1, "{others:?}");
    // The kernel agrees (read in the guest, not from the appliance): the server is out.
    lv.wait_weights(
        Duration::from_secs(10),
        "killed server out of the table",
        |s| !s.dests.iter().any(|(a, _, _)| *a == servers[1]),
    )
    .expect("kernel table without the killed server");
    let w = wait_query(
        &ns,
        "node_ipvs_backend_weight",
        Duration::from_secs(10),
        |r| r.len() == servers.len() - 1,
    );
    assert!(
        w.iter().all(|(m, _)| m["remote_address"] != dead.as_str()),
        "{w:?}"
    );
    let refused = query(
        &ns,
        &format!("appliance_probe_refused_total{{remote_address=\"{dead}\"}}"),
    );
    assert!(refused.first().is_some_and(|r| r.1 > 0.0), "{refused:?}");

    let out = slow_allowed
        .wait_with_output()
        .expect("slowloris (allowed source) ends");
    let allowed =
        parse_peer(&std::fs::read_to_string(lv.lab.path("slow-allowed.log")).unwrap_or_default());
    drop(out);
    eprintln!("allowed slowloris: {allowed:?}");
    assert_eq!(allowed.len(), 3, "{allowed:?}");
    for (what, ms) in &allowed {
        assert!(
            // The 5 s head timeout runs on the guest's clock, which drifts under TCG on a
            // loaded host (3.5 host seconds seen): the bound is loose, the answer is not.
            what == "status:408" && (2000..10000).contains(ms),
            "a slow head got {what} after {ms} ms (want 408 after the 5 s head timeout)"
        );
    }

    // Malformed and wrong requests from the allowed host get a refusal, never metrics.
    for (bytes, want) in [
        (&b"GARBAGE\r\n\r\n"[..], "status:400"),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            "status:400",
        ),
        (b"GET /metrics HTTP/9.9\r\n\r\n", "status:505"),
        (
            b"POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
            "status:405",
        ),
        (b"GET /etc/passwd HTTP/1.1\r\n\r\n", "status:404"),
    ] {
        let r = peer(
            &ns,
            &script,
            &[
                "raw",
                &PROM.to_string(),
                &MGMT.to_string(),
                "9100",
                &hex(bytes),
            ],
        );
        assert_eq!(
            r.first().map(|x| x.0.as_str()),
            Some(want),
            "{bytes:?}: {r:?}"
        );
    }
    let big = format!(
        "GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(6000)
    );
    let r = peer(
        &ns,
        &script,
        &[
            "raw",
            &PROM.to_string(),
            &MGMT.to_string(),
            "9100",
            &hex(big.as_bytes()),
        ],
    );
    assert!(
        matches!(
            r.first().map(|x| x.0.as_str()),
            Some("status:431") | Some("reset")
        ),
        "{r:?}"
    );
    let r = peer(
        &ns,
        &script,
        &[
            "raw",
            &STRANGER.to_string(),
            &MGMT.to_string(),
            "9100",
            &hex(b"GET /metrics HTTP/1.1\r\n\r\n"),
        ],
    );
    assert!(
        matches!(
            r.first().map(|x| x.0.as_str()),
            Some("reset") | Some("closed-empty")
        ),
        "stranger: {r:?}"
    );

    // Through all of it, scraping and probing went on: the target is still up and the
    // server comes back once restarted.
    lv.restore_server(1, appliance_tests::lab::booted::Failure::Killed)
        .expect("restart server 1");
    wait_query(&ns, &down_q, Duration::from_secs(20), |r| {
        r.len() == 1 && r[0].1 == 1.0
    });
    let up = query(&ns, "up{job=\"appliance\"}");
    assert_eq!(up.first().map(|r| r.1), Some(1.0), "{up:?}");
    let tr = query(
        &ns,
        &format!(
            "appliance_server_health_transitions_total{{remote_address=\"{dead}\",to=\"down\"}}"
        ),
    );
    assert!(tr.first().is_some_and(|r| r.1 >= 1.0), "{tr:?}");
    let _ = client.wait();
}
