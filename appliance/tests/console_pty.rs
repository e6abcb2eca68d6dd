//! Drive `appliance console` through a real pseudo-terminal against a fake daemon
//! served by the real control socket server.

mod common;

use std::time::Duration;

use appliance::config::{AdminState, Config};
use common::{Console, FakeService, PW};

const MENU: &str = "Enter an option: ";

#[test]
fn first_boot_forces_password_then_login_with_backoff() {
    let d = FakeService::start(Config::builtin_default(), false);
    let mut c = Console::spawn(&d.sock_str());
    c.expect("No console password is set (first boot)");
    c.expect("New password (8-128 characters): ");
    c.send("\x03"); // Ctrl-C cannot skip it
    c.expect("A password must be set before anything else.");
    c.expect("New password (8-128 characters): ");
    c.line("short");
    c.expect("the password must be 8 to 128 printable characters");
    c.expect("New password (8-128 characters): ");
    c.line("first-password");
    c.expect("Repeat the new password: ");
    c.line("first-password");
    let t = c.expect(MENU);
    assert!(t.contains("password changed and saved to flash"), "{t}");
    // The password never echoes.
    assert!(!c.transcript().contains("first-password"));
    assert!(d.fake.state.lock().unwrap().session.password_set());
    c.line("0");
    c.expect("Console locked.");
    c.expect("Password: ");
    c.line("wrong-password");
    c.expect("Wrong password. Wait 1 s");
    c.expect("Password: ");
    c.line("wrong-again");
    c.expect("Wrong password. Wait 2 s");
    c.expect("Password: ");
    c.line("first-password");
    c.expect(MENU);
    c.send("\x04"); // Ctrl-D = terminal gone
    let st = c.wait_exit();
    assert!(st.success(), "console must exit cleanly on Ctrl-D: {st:?}");
}

#[test]
fn every_main_menu_item_opens_and_returns() {
    let d = FakeService::start(Config::builtin_default(), true);
    let mut c = Console::spawn(&d.sock_str());
    c.login();
    let steps: &[(&str, &str, &str)] = &[
        ("1", "Live status, refreshed every 2 s", ""),
        ("2", "Interface option: ", "0"),
        ("3", "Service to edit (number), a, r or 0: ", "0"),
        ("4", "Server action: ", "0"),
        ("5", "Probing enabled y/n [y]: ", "\x03"),
        ("6", "Changes option: ", "0"),
        ("7", "Diagnostics option: ", "0"),
        ("8", "fake daemon started", ""),
        ("9", "Current password: ", "\x03"),
        (
            "10",
            "Type 'yes' to erase and reboot, anything else cancels: ",
            "no",
        ),
        ("11", "Power option: ", "0"),
        ("12", "Password: ", "not-the-password"),
        ("13", "Paste keepalived.conf now", "\x03"),
        ("14", "HA enabled y/n [n]: ", "\x03"),
    ];
    for (item, screen, leave) in steps {
        c.line(item);
        c.expect(screen);
        if leave.starts_with('\x03') {
            c.send(leave);
        } else {
            c.line(leave);
        }
        c.expect(MENU);
    }
    let t = c.transcript();
    assert!(t.contains("Cancelled; nothing changed."));
    assert!(t.contains("No shell."));
    let st = d.fake.state.lock().unwrap();
    assert!(
        st.actions.is_empty(),
        "nothing may be reset or rebooted: {:?}",
        st.actions
    );
    assert!(!st.session.unapplied() && !st.session.unsaved());
}

#[test]
fn garbage_bytes_line_editing_ctrl_c_and_long_lines() {
    let d = FakeService::start(Config::builtin_default(), true);
    let mut c = Console::spawn(&d.sock_str());
    c.login();
    // Invalid UTF-8, NUL, bell, escape sequence: never a crash, just "not an option".
    c.send_bytes(b"\xff\xfe\x80\x00\x07zz\x1b[A\r");
    c.expect("is not an option: enter a number from the menu");
    c.expect(MENU);
    // An arrow key is swallowed; the following "8" still selects the item.
    c.send_bytes(b"\x1b[B8\r");
    c.expect("Recent events (oldest first)");
    c.expect(MENU);
    // 5000 characters: truncated, refused, still alive.
    c.line(&"9".repeat(5000));
    c.expect("is not an option");
    c.expect(MENU);
    // Backspace and DEL edit the line: "ethX" <DEL> "9" -> eth9.
    c.line("2");
    c.expect("Interface option: ");
    c.line("1");
    c.expect("WAN interface name [eth0]: ");
    c.send("ethX\x7f9\r");
    c.expect("WAN address/prefix [203.0.113.2/24]: ");
    c.send("\x03"); // Ctrl-C in the middle of an edit
    c.expect("^C");
    c.expect(MENU);
    assert!(
        !d.fake.state.lock().unwrap().session.unapplied(),
        "an abandoned edit must change nothing"
    );
    // Complete the same edit, confirming this time.
    c.line("2");
    c.expect("Interface option: ");
    c.line("1");
    c.expect("WAN interface name [eth0]: ");
    c.send("ethX\x089\r");
    c.expect("WAN address/prefix [203.0.113.2/24]: ");
    c.line("");
    c.expect("WAN gateway or 'none' [203.0.113.1]: ");
    c.line("");
    c.expect("WAN MTU [1500]: ");
    c.line("");
    c.expect("WAN name: eth0 -> eth9");
    c.expect("Stage these changes in the candidate config (y/n): ");
    c.line("y");
    c.expect("Apply the candidate now (y/n): ");
    c.line("n");
    c.expect("Interface option: ");
    c.line("0");
    let t = c.expect(MENU);
    assert!(
        t.contains("changes: UNAPPLIED"),
        "header shows the pending change: {t}"
    );
    assert_eq!(
        d.fake
            .state
            .lock()
            .unwrap()
            .session
            .candidate()
            .wan
            .name
            .as_str(),
        "eth9"
    );
}

#[test]
fn closing_the_terminal_exits_cleanly_and_the_daemon_survives() {
    let d = FakeService::start(Config::builtin_default(), true);
    let mut c = Console::spawn(&d.sock_str());
    c.login();
    c.line("2");
    c.expect("Interface option: ");
    c.close_master();
    let st = c.wait_exit();
    assert!(st.success(), "console must exit 0 on hang-up, got {st:?}");
    // The daemon still answers another console.
    let mut c2 = Console::spawn(&d.sock_str());
    c2.login();
}

#[test]
fn idle_console_locks() {
    let mut cfg = Config::builtin_default();
    cfg.console.idle_lock_s = 2;
    let d = FakeService::start(cfg, true);
    let mut c = Console::spawn(&d.sock_str());
    c.login();
    c.expect("Console locked after 2 s without input.");
    c.expect("console is locked");
    c.login();
}

#[test]
fn drain_counts_down_live_and_shell_runs() {
    let d = FakeService::start(Config::builtin_default(), true);
    d.fake
        .state
        .lock()
        .unwrap()
        .remaining
        .insert("198.51.100.12:5060".parse().unwrap(), 2);
    let mut c = Console::spawn(&d.sock_str());
    c.login();
    c.line("4");
    c.expect("Server action: ");
    c.line("d");
    c.expect("Server number (0 = back): ");
    c.line("2");
    c.expect("Drain 198.51.100.12:5060 now (y/n): ");
    c.line("y");
    c.expect("Calls remaining on 198.51.100.12:5060: 2");
    c.expect("Calls remaining on 198.51.100.12:5060: 1");
    c.expect("Calls remaining on 198.51.100.12:5060: 0");
    c.expect("has no calls left");
    c.expect("Server action: ");
    c.line("0");
    let t = c.expect(MENU);
    assert!(t.contains("changes: UNSAVED"), "{t}");
    {
        let st = d.fake.state.lock().unwrap();
        assert_eq!(
            st.session.running().services[0].servers[1].state,
            AdminState::Draining
        );
    }
    // Live status refreshes until a key.
    c.line("1");
    c.expect("Live status, refreshed every 2 s");
    c.expect("Live status, refreshed every 2 s");
    c.line("");
    c.expect(MENU);
    // The shell needs the password and returns to the menu on exit.
    c.line("12");
    c.expect("Password: ");
    c.line(PW);
    c.expect("Starting /bin/sh");
    std::thread::sleep(Duration::from_millis(300));
    c.line("echo shell-says-$((6*7)); exit");
    c.expect("shell-says-42");
    c.expect(MENU);
    c.close_master();
    assert!(c.wait_exit().success());
}

#[test]
fn unreachable_daemon_is_explained_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("absent.sock");
    let mut c = Console::spawn_with(&sock.display().to_string(), &["--start-wait", "1"]);
    // At start a missing daemon is first waited for quietly (it may still be starting).
    c.expect("Waiting for the appliance daemon to start...");
    c.expect("cannot reach the appliance daemon at");
    c.expect("(is it running? are you root?)");
    c.expect("Retrying in 5 s (press Enter to retry now).");
    c.line("");
    c.expect("Retrying in 5 s");
    c.close_master();
    assert!(c.wait_exit().success());
}

#[test]
fn docs_show_the_current_main_menu() {
    let d = FakeService::start(Config::builtin_default(), true);
    let mut c = Console::spawn(&d.sock_str());
    c.login();
    let st = match d
        .fake
        .handle_sync(appliance::control::proto::Request::Status)
    {
        appliance::control::proto::Response::Ok(appliance::control::proto::Reply::Status(s)) => s,
        other => panic!("{other:?}"),
    };
    let screen = appliance::console::screens::main_menu(&st);
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/console.md"))
        .expect("docs/console.md exists");
    // The docs capture is the same render as the live console (modulo the version).
    let normalized = screen.replace(appliance::VERSION, "X.Y.Z");
    assert!(
        docs.contains(normalized.trim_end()),
        "docs/console.md is out of date; paste this screen:\n{normalized}"
    );
    assert!(c
        .transcript()
        .replace("\r\n", "\n")
        .contains(screen.trim_end()));
}
