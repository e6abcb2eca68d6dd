//! Parsing of the whole command line: normalising, help, usage errors, callers' invocations.

use super::*;

fn parses(line: &str) -> Result<Appliance, (String, ExitCode)> {
    parse(
        &line
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>(),
    )
}

#[test]
fn normalise_splits_equals_and_moves_stdin_behind_double_dash() {
    let n = |v: &[&str]| normalise(&argv(v));
    assert_eq!(
        n(&["config", "import", "f", "--store=file:/x=y"]),
        argv(&["config", "import", "f", "--store", "file:/x=y"])
    );
    assert_eq!(
        n(&["config", "import", "-", "--store", "s"]),
        argv(&["config", "import", "--store", "s", "--", "-"])
    );
    assert_eq!(
        n(&["config", "check", "-"]),
        argv(&["config", "check", "--", "-"])
    );
    // After an explicit `--` nothing is touched; `-` joins the positionals there.
    assert_eq!(
        n(&["config", "check", "-", "--", "--a=b"]),
        argv(&["config", "check", "--", "-", "--a=b"])
    );
    // Short options and plain words stay as they are.
    assert_eq!(
        n(&["logs", "-n", "5", "x=y"]),
        argv(&["logs", "-n", "5", "x=y"])
    );
    assert_eq!(n(&[]), Vec::<String>::new());
}

#[test]
fn stdin_and_equals_forms_reach_the_commands() {
    let Ok(Appliance {
        command: Some(Command::Config(c)),
        ..
    }) = parses("config import - --store=file:/tmp/s.bin")
    else {
        panic!("config import - did not parse");
    };
    assert_eq!(
        c.command,
        config::Sub::Import(config::Import {
            file: "-".into(),
            live: false,
            store: Some("file:/tmp/s.bin".into()),
            lock: None,
            socket: None,
        })
    );
    assert!(matches!(
        parses("config check -"),
        Ok(Appliance { command: Some(Command::Config(config::Args { command: config::Sub::Check(config::Check { file }) })), .. }) if file == "-"
    ));
}

#[test]
fn version_and_no_command() {
    assert_eq!(
        parses("--version").map(|a| (a.version, a.command)),
        Ok((true, None))
    );
    assert_eq!(
        parses("version").map(|a| a.command),
        Ok(Some(Command::Version(Version {})))
    );
    assert_eq!(run(&[]), ExitCode::from(2));
    assert!(usage().contains("factory-reset"), "{}", usage());
}

/// Every command path has its own help, on stdout with status 0, for each trigger.
#[test]
fn every_command_has_help() {
    for cmd in [
        "",
        "daemon",
        "console",
        "status",
        "show",
        "drain",
        "apply",
        "save",
        "revert",
        "logs",
        "config",
        "config check",
        "config export",
        "config import",
        "config import-keepalived",
        "factory-reset",
        "probe",
        "ipvs",
        "ipvs show",
        "ipvs sync",
        "ipvs info",
        "ipvs timeouts",
        "ipvs sysctl",
        "ipvs bench",
        "ipvs raw",
        "ipvs raw set-weight",
        "ipvs raw add-dest",
        "ipvs raw del-dest",
        "ipvs raw add-service",
        "ipvs raw del-service",
        "ipvs raw dump-hex",
        "ipvs raw sip-ping",
        "net",
        "net apply",
        "net show",
        "leds",
        "leds test-uleds",
        "version",
    ] {
        for trigger in ["--help", "-h", "help"] {
            let line = format!("{cmd} {trigger}");
            match parses(&line) {
                Err((text, code)) => {
                    assert_eq!(code, ExitCode::SUCCESS, "{line}: {text}");
                    let usage = format!("Usage: appliance {cmd}").trim_end().to_owned();
                    assert!(text.contains(&usage), "{line}: {text}");
                }
                Ok(a) => panic!("{line}: parsed as {a:?}"),
            }
        }
    }
}

/// A usage error exits 2 and its message names the offending word.
#[test]
fn usage_errors_name_the_problem() {
    for (line, says) in [
        ("frobnicate", "frobnicate"),
        ("status --bogus", "--bogus"),
        ("config", "subcommand"),
        ("config frob", "frob"),
        ("config check", "file"),
        ("config export --store", "--store"),
        ("config import a.toml b.toml", "b.toml"),
        ("drain sip", "server"),
        ("drain sip 198.51.100.1:0", "198.51.100.1:0"),
        ("logs -n 0", "1 to 10000"),
        ("logs -n x", "1 to 10000"),
        ("revert --from later", "'running' or 'saved'"),
        ("console --start-wait 4000", "0 to 3600"),
        ("probe", "target"),
        ("probe 198.51.100.1 --count 0", "between 1 and 100000"),
        ("ipvs frob", "frob"),
        ("ipvs timeouts --udp x", "--udp"),
        (
            "ipvs raw set-weight 203.0.113.10:5060 198.51.100.11 7",
            "198.51.100.11",
        ),
        (
            "ipvs raw set-weight 203.0.113.10:5060 198.51.100.11:5060 heavy",
            "heavy",
        ),
        ("net", "subcommand"),
        ("net apply --config", "--config"),
        ("net show --dry-run", "--dry-run"),
        ("leds test-uleds", "names"),
        ("factory-reset --now", "--now"),
        ("daemon --bogus", "--bogus"),
        ("version extra", "extra"),
    ] {
        match parses(line) {
            Err((text, code)) => {
                assert_eq!(code, ExitCode::from(2), "{line}: {text}");
                assert!(
                    text.contains(says),
                    "{line}: {text:?} does not name {says:?}"
                );
            }
            Ok(a) => panic!("{line}: parsed as {a:?}"),
        }
    }
    // Errors found after parsing (words checked by the command) are usage errors too.
    assert_eq!(run(&argv(&["show", "everything"])), ExitCode::from(2));
}

#[test]
fn usage_error_text_points_at_the_command() {
    assert_eq!(
        command_path(&argv(&["config", "import", "a", "b"])),
        "config import"
    );
    assert_eq!(command_path(&argv(&["drain", "sip", "--json"])), "drain");
    assert_eq!(command_path(&argv(&["frob", "x"])), "");
    let t = usage_error_text("config import", "Unrecognized argument: b");
    assert!(
        t.starts_with("appliance config import: Unrecognized argument: b\nusage: appliance config import [--live]"),
        "{t}"
    );
    assert!(
        t.ends_with("Run appliance config import --help for more information."),
        "{t}"
    );
    let t = usage_error_text("", "Unrecognized argument: frob");
    assert!(
        t.starts_with("appliance: Unrecognized argument: frob\nusage: appliance [--version]"),
        "{t}"
    );
}

/// Every `appliance ...` invocation in the QEMU tests, image scripts, init files, docs and
/// README (found with grep; placeholders filled in) still parses.
#[test]
fn callers_invocations_parse() {
    for line in [
        // rootfs-overlay/etc/inittab, tests/image scripts
        "daemon",
        "console",
        "net apply",
        // tests/src, tests/tests
        "status",
        "status --json",
        "show servers",
        "show services",
        "show config",
        "show config saved",
        "show diff",
        "apply",
        "save",
        "revert --from saved",
        "logs -n 50",
        "logs -n 3",
        "drain sip 198.51.100.13:5060",
        "drain sip 198.51.100.12",
        "config export",
        "config export /tmp/lab-base.toml",
        "config check /tmp/a.toml",
        "config check /tmp/b.toml",
        "config import /tmp/a.toml",
        "config import /tmp/lab.toml",
        "config import /tmp/slow.toml",
        "config import /tmp/big.toml",
        "config check /tmp/big.toml",
        "config import /tmp/t.toml --store file:/tmp/disk.img",
        "config export /tmp/disk.export.toml --store file:/tmp/disk.img",
        "config import /tmp/good.toml --live --socket /tmp/c.sock",
        "factory-reset --yes",
        "factory-reset -y --store file:/tmp/s.bin --lock /tmp/l --socket /tmp/c.sock",
        "ipvs show",
        "ipvs show --json --config /etc/appliance/factory.toml",
        "ipvs sync",
        "ipvs sync --config /tmp/c.toml --json",
        "ipvs info",
        "ipvs timeouts --udp 120",
        "ipvs timeouts --tcp 900 --tcpfin 120 --udp 300",
        "ipvs sysctl",
        "ipvs sysctl --root /tmp/sys",
        "ipvs bench --rounds 3",
        "ipvs raw sip-ping 203.0.113.10:5060 call-one@test",
        "ipvs raw set-weight 203.0.113.10:5060 198.51.100.11:5060 7",
        "ipvs raw dump-hex",
        "ipvs raw del-service 203.0.113.10:5060",
        "ipvs raw del-dest 203.0.113.10:5060 198.51.100.12:5060",
        "ipvs raw add-service 203.0.113.10:5060 --pe SIP",
        "ipvs raw add-service 203.0.113.10:5060 --sched wrr --pe sip --timeout 300",
        "ipvs raw add-dest 203.0.113.10:5060 198.51.100.99:5060 1",
        "leds test-uleds status,pool,ha,activity",
        "probe 198.51.100.11:5060",
        "probe 198.51.100.11 --count 3 --interval 100 --timeout 500 --from 198.51.100.1 --json",
        // tests/image/build-bundle.sh, build-disk.sh, tests/tests/firmware_update.rs, docs/firmware.md
        "firmware status",
        "firmware install /dev/vdg",
        "firmware install /tmp/b.bundle --force --keyring /tmp/k --board-file /tmp/b.toml --disk /tmp/d.img --booted A",
        "firmware rollback",
        "firmware mark-good --booted B --disk /tmp/d.img",
        "firmware verify out.bundle --keyring release-2026.pub --board qemu-x86_64",
        "firmware keygen release-2026",
        "firmware bundle --key /tmp/t.key --version 1.2.0 --board qemu-x86_64 -o /tmp/o --description x kernel=/tmp/k rootfs=/tmp/r",
        "firmware bundle --unsigned --version 1.2.0 --board qemu-x86_64 -o /tmp/o kernel=/tmp/k",
        "firmware grub-cfg --board-file /tmp/b.toml",
        "firmware make-disk --board-file /tmp/b.toml -o /tmp/d --boot-img /tmp/b --core-img /tmp/c --env-part /tmp/e --version 0.1.0 kernel=/tmp/k rootfs=/tmp/r",
        // tests/tests/firmware_rollback.rs, buildroot-ext/scripts (post-image, update-boot-scripts)
        "firmware install /dev/vdc --no-activate",
        "firmware activate",
        "firmware grub-cfg --board-file /tmp/b.toml --root PARTUUID=51b10ad2-0 --locked",
        "firmware uboot-script --board-file /tmp/b.toml --uboot-disk virtio:1 --root /dev/vdb --console ttyAMA0",
        "firmware slot-image --board-file /tmp/b.toml -o /tmp/s.img kernel=/tmp/k rootfs=/tmp/r",
        "firmware env-image --board-file /tmp/b.toml -o /tmp/e.img --version 1.0.0 --boot-script /tmp/boot.scr --append x kernel=/tmp/k rootfs=/tmp/r",
        // README, docs, ARCHITECTURE.md
        "daemon --dry-run --config /tmp/f.toml",
        "daemon --dry-run --config /tmp/f.toml --board /tmp/b.toml --socket /tmp/s",
        "console --start-wait 5",
        "console --socket /tmp/c.sock --start-wait 0",
        "config import-keepalived /etc/keepalived/keepalived.conf",
        "config import-keepalived /tmp/k.conf --apply --store file:/tmp/s.bin",
        "config import /tmp/f.toml --live",
        "config import /tmp/f.toml --store file:/tmp/disk.img",
        "net apply --config /tmp/f.toml --dry-run",
        "net show --config /tmp/f.toml",
        "net show",
        "version",
        "--version",
        // appliance/tests: every control command takes --json and --socket anywhere
        "show servers --json --socket /tmp/c.sock",
        "revert --from saved --socket /tmp/c.sock",
        "drain sip 198.51.100.12 --socket /tmp/c.sock",
        "logs -n 3 --socket /tmp/c.sock",
        "apply --json --socket /tmp/c.sock",
        "save --socket /tmp/c.sock",
        "status --socket /tmp/c.sock --json",
    ] {
        if let Err((text, _)) = parses(line) {
            panic!("appliance {line}: {text}");
        }
    }
}

/// `firmware` commands: build-disk.sh's empty `--append ""` parses, each has its help, and a
/// usage error is exit 2 naming the command.
#[test]
fn firmware_commands_parse_with_help_and_usage_errors() {
    let a = parse(&argv(&[
        "firmware",
        "make-disk",
        "-o",
        "/tmp/d",
        "--boot-img",
        "b",
        "--core-img",
        "c",
        "--env-part",
        "e",
        "--append",
        "",
        "kernel=k",
        "rootfs=r",
    ]))
    .unwrap();
    let Some(Command::Firmware(f)) = a.command else {
        panic!("{a:?}")
    };
    let firmware::Sub::MakeDisk(m) = f.command else {
        panic!("{f:?}")
    };
    assert_eq!((m.append.as_str(), m.images.len()), ("", 2));
    for sub in [
        "status",
        "install",
        "rollback",
        "mark-good",
        "verify",
        "keygen",
        "bundle",
        "grub-cfg",
        "make-disk",
        "activate",
        "uboot-script",
        "env-image",
        "slot-image",
    ] {
        let (text, code) = parses(&format!("firmware {sub} --help")).unwrap_err();
        assert_eq!(code, ExitCode::SUCCESS, "{sub}: {text}");
        assert!(
            text.starts_with(&format!("Usage: appliance firmware {sub}")),
            "{sub}: {text}"
        );
    }
    let (text, code) = parses("firmware help").unwrap_err();
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(
        text.contains("install") && text.contains("make-disk"),
        "{text}"
    );
    for bad in [
        "firmware",
        "firmware frob",
        "firmware install",
        "firmware install a b",
        "firmware keygen",
    ] {
        let (text, code) = parses(bad).unwrap_err();
        assert_eq!(code, ExitCode::from(USAGE_EXIT), "{bad}: {text}");
    }
    assert_eq!(
        command_path(&argv(&["firmware", "install"])),
        "firmware install"
    );
}
