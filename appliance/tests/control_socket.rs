//! The control socket server and the admin CLI against the fake daemon.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use appliance::config::{AdminState, Config};
use appliance::control::proto::{Response, MAX_LINE};
use common::FakeService;

fn connect(d: &FakeService) -> (UnixStream, BufReader<UnixStream>) {
    let s = UnixStream::connect(&d.sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

fn ask(s: &mut UnixStream, r: &mut BufReader<UnixStream>, line: &[u8]) -> Response {
    s.write_all(line).unwrap();
    let mut out = String::new();
    r.read_line(&mut out).expect("read reply");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad reply {out:?}: {e}"))
}

fn error_text(r: Response) -> String {
    match r {
        Response::Error { message } => message,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn socket_is_private_and_survives_bad_requests() {
    let d = FakeService::start(Config::builtin_default(), true);
    let mode = std::fs::metadata(&d.sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let (mut s, mut r) = connect(&d);
    assert!(error_text(ask(&mut s, &mut r, b"this is not json\n")).starts_with("bad request:"));
    assert!(
        error_text(ask(&mut s, &mut r, b"{\"cmd\":\"format_disk\"}\n")).contains("unknown variant")
    );
    assert!(error_text(ask(&mut s, &mut r, b"\xff\xfe\n")).starts_with("bad request:"));
    // Same connection still works.
    assert!(matches!(
        ask(&mut s, &mut r, b"{\"cmd\":\"status\"}\n"),
        Response::Ok(_)
    ));
    let e = error_text(ask(
        &mut s,
        &mut r,
        br#"{"cmd":"server_action","service":"nope","server":"198.51.100.11:5060","action":{"op":"drain"}}
"#,
    ));
    assert!(e.contains("no service named 'nope'"), "{e}");
}

#[test]
fn overlong_request_is_refused_and_others_are_not_blocked() {
    let d = FakeService::start(Config::builtin_default(), true);
    // A client that sends half a line and stalls must not block anyone.
    let mut stalled = UnixStream::connect(&d.sock).unwrap();
    stalled.write_all(b"{\"cmd\":\"sta").unwrap();
    let (mut s, mut r) = connect(&d);
    assert!(matches!(
        ask(&mut s, &mut r, b"{\"cmd\":\"status\"}\n"),
        Response::Ok(_)
    ));
    // An over-long line gets an error, then the connection is closed.
    let (mut big, mut big_r) = connect(&d);
    let payload = vec![b'x'; MAX_LINE + 10];
    let _ = big.write_all(&payload);
    let mut out = String::new();
    big_r.read_line(&mut out).unwrap();
    assert!(out.contains("request longer than"), "{out}");
    let mut rest = String::new();
    assert_eq!(
        big_r.read_line(&mut rest).unwrap_or(0),
        0,
        "connection closed"
    );
    drop(stalled);
}

fn cli(d: &FakeService, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_appliance"))
        .args(args)
        .args(["--socket", &d.sock_str()])
        .output()
        .expect("run appliance");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn admin_cli_commands() {
    let d = FakeService::start(Config::builtin_default(), true);
    let (code, out, _) = cli(&d, &["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("Pool 3/3 up"), "{out}");
    let (code, out, _) = cli(&d, &["status", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("status json");
    assert_eq!(v["servers_up"], 3);
    let (_, out, _) = cli(&d, &["show", "servers", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("servers json");
    assert_eq!(v.as_array().map(Vec::len), Some(3));
    let (_, out, _) = cli(&d, &["show", "services"]);
    assert!(out.contains("203.0.113.10:5060"), "{out}");
    let (_, out, _) = cli(&d, &["show", "config", "saved"]);
    assert!(out.contains("hostname = \"sip-lb\""), "{out}");
    let (code, out, _) = cli(&d, &["drain", "sip", "198.51.100.12"]);
    assert_eq!(code, 0);
    assert!(out.contains("is draining now"), "{out}");
    assert_eq!(
        d.fake.state.lock().unwrap().session.running().services[0].servers[1].state,
        AdminState::Draining
    );
    let (_, out, _) = cli(&d, &["show", "diff"]);
    assert!(
        out.contains("no differences") && out.contains("not saved"),
        "{out}"
    );
    let (code, out, _) = cli(&d, &["save"]);
    assert_eq!(code, 0, "{out}");
    assert!(!d.fake.state.lock().unwrap().session.unsaved());
    let (code, _, _) = cli(&d, &["apply"]);
    assert_eq!(code, 0);
    let (code, out, _) = cli(&d, &["revert", "--from", "saved"]);
    assert_eq!(code, 0, "{out}");
    let (_, out, _) = cli(&d, &["logs", "-n", "3"]);
    assert_eq!(out.lines().count(), 3, "{out}");
    let (code, _, err) = cli(&d, &["drain", "nope", "198.51.100.12:5060"]);
    assert_eq!(code, 1);
    assert!(err.contains("no service named 'nope'"), "{err}");
    let (code, _, err) = cli(&d, &["show", "everything"]);
    assert_eq!(code, 2);
    assert!(err.contains("usage"), "{err}");
}

#[test]
fn cli_explains_an_absent_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nothing.sock");
    let out = Command::new(env!("CARGO_BIN_EXE_appliance"))
        .args(["status", "--socket", &sock.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the appliance daemon at")
            && err.contains("(is it running? are you root?)"),
        "{err}"
    );
}

#[test]
fn config_import_live_stages_applies_and_saves_through_the_daemon() {
    let d = FakeService::start(Config::builtin_default(), true);
    let dir = tempfile::tempdir().unwrap();
    let mut wanted = Config::builtin_default();
    wanted.hostname = appliance::config::model::bounded("imported-box");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, appliance::config::to_toml(&wanted)).unwrap();
    let run = |file: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_appliance"))
            .args(["config", "import"])
            .arg(file)
            .args(["--live", "--socket", &d.sock_str()])
            .output()
            .unwrap()
    };
    let out = run(&good);
    assert!(out.status.success(), "{out:?}");
    {
        let st = d.fake.state.lock().unwrap();
        assert_eq!(st.session.running().hostname.as_str(), "imported-box");
        assert_eq!(st.session.saved().hostname.as_str(), "imported-box");
        assert!(!st.session.unsaved() && !st.session.unapplied());
    }

    // A config the file-level validation refuses never reaches the daemon.
    let bad = dir.path().join("bad.toml");
    let mut broken = wanted.clone();
    broken.services[0].servers[0].port = 0;
    std::fs::write(&bad, appliance::config::to_toml(&broken)).unwrap();
    let out = run(&bad);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing was changed"), "{err}");
    let st = d.fake.state.lock().unwrap();
    assert_eq!(st.session.running().services[0].servers[0].port, 5060);
    assert!(!st.session.unapplied(), "candidate left staged");
}
