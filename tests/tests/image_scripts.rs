//! Host-side checks of the image build scripts that need no kernel build.

use std::path::PathBuf;
use std::process::Command;

fn script(name: &str) -> PathBuf {
    appliance_tests::vm::repo_root()
        .join("tests/image")
        .join(name)
}

fn check_dotconfig(dotconfig: &str, fragments: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join(".config");
    std::fs::write(&cfg, dotconfig).expect("write .config");
    let mut cmd = Command::new("sh");
    cmd.arg(script("check-dotconfig.sh")).arg(&cfg);
    for (i, f) in fragments.iter().enumerate() {
        let p = dir.path().join(format!("frag{i}"));
        std::fs::write(&p, f).expect("write fragment");
        cmd.arg(p);
    }
    let out = cmd.output().expect("run check-dotconfig.sh");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

const DOTCONFIG: &str = "\
CONFIG_IP_VS=y
CONFIG_IP_VS_PE_SIP=y
# CONFIG_IPV6 is not set
CONFIG_SERIAL_8250_NR_UARTS=4
CONFIG_CMDLINE=\"console=ttyS0\"
";

#[test]
fn dotconfig_check_accepts_matching_fragments() {
    let frag = "# comment\n\nCONFIG_IP_VS=y\nCONFIG_IP_VS_PE_SIP=y\n# CONFIG_IPV6 is not set\n\
                # CONFIG_MODULES is not set\nCONFIG_SERIAL_8250_NR_UARTS=4\nCONFIG_CMDLINE=\"console=ttyS0\"\n";
    let (code, out) = check_dotconfig(DOTCONFIG, &[frag]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("all 6 fragment symbols match"), "{out}");
}

#[test]
fn dotconfig_check_reports_every_mismatch() {
    // Dropped symbol, wrong value, wanted off but on, later fragment overrides.
    let common = "CONFIG_MTD_CHAR=y\nCONFIG_SERIAL_8250_NR_UARTS=4\nCONFIG_IP_VS=y\n";
    let board = "CONFIG_SERIAL_8250_NR_UARTS=2\n# CONFIG_IP_VS_PE_SIP is not set\n";
    let (code, out) = check_dotconfig(DOTCONFIG, &[common, board]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("CONFIG_MTD_CHAR=y, .config has it unset/absent"),
        "{out}"
    );
    assert!(
        out.contains("CONFIG_SERIAL_8250_NR_UARTS=2, .config has CONFIG_SERIAL_8250_NR_UARTS=4"),
        "{out}"
    );
    assert!(
        out.contains("CONFIG_IP_VS_PE_SIP=n, .config has CONFIG_IP_VS_PE_SIP=y"),
        "{out}"
    );
    assert!(out.contains("3 mismatch(es)"), "{out}");
}

#[test]
fn dotconfig_check_rejects_garbage_lines() {
    let (code, out) = check_dotconfig(DOTCONFIG, &["CONFIG_IP_VS=y\nIP_VS=y\n"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unparseable line: IP_VS=y"), "{out}");
}

#[test]
fn shipped_fragments_parse_cleanly() {
    // Every line of the real fragments is a symbol, "is not set" or a comment.
    let root = appliance_tests::vm::repo_root();
    let frags = [
        root.join("board/common/linux.fragment"),
        root.join("board/qemu-x86_64/linux.fragment"),
    ];
    for f in &frags {
        let text = std::fs::read_to_string(f).expect("read fragment");
        for (i, line) in text.lines().enumerate() {
            let l = line.trim();
            let ok = l.is_empty()
                || (l.starts_with("CONFIG_") && l.contains('='))
                || (l.starts_with("# CONFIG_") && l.ends_with(" is not set"))
                || (l.starts_with('#') && !l.starts_with("# CONFIG_"));
            assert!(ok, "{}:{}: {line:?}", f.display(), i + 1);
        }
    }
}

/// run-qemu.sh's command line for a board (`--dry-run`: QEMU is not started).
fn dry_run(board: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (k, i) = (dir.path().join("kernel"), dir.path().join("initramfs.cpio"));
    std::fs::write(&k, b"k").expect("write kernel");
    std::fs::write(&i, b"i").expect("write initramfs");
    let out = Command::new("bash")
        .arg(script("run-qemu.sh"))
        .args(["--dry-run", "--board", board, "--testshell"])
        .arg("--kernel")
        .arg(&k)
        .arg("--initrd")
        .arg(&i)
        .arg("--disk")
        .arg(dir.path().join("store.img"))
        .args(["--serial1", "socket,path=/tmp/t1.sock"])
        .output()
        .expect("run run-qemu.sh");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn run_qemu_command_line_per_board() {
    // Needs the board's QEMU binary on PATH (tests/setup-host.sh installs both).
    let (code, x86) = dry_run("qemu-x86_64");
    assert_eq!(code, 0, "{x86}");
    for want in [
        "qemu-system-x86_64 ",
        "-machine pc ",
        "console=ttyS0",
        "-serial chardev:s1",
        "-device i6300esb",
    ] {
        assert!(x86.contains(want), "x86_64: {want:?} missing in {x86}");
    }
    let (code, arm) = dry_run("qemu-aarch64-virt");
    assert_eq!(code, 0, "{arm}");
    for want in [
        "qemu-system-aarch64 ",
        "-machine virt ",
        "-cpu cortex-a53 ",
        "console=ttyAMA0",
        "-device virtconsole",
        "-device i6300esb",
    ] {
        assert!(arm.contains(want), "aarch64: {want:?} missing in {arm}");
    }
    let (code, bad) = dry_run("riscv-board");
    assert_ne!(code, 0, "an unknown board must be refused: {bad}");
    assert!(bad.contains("unknown BOARD 'riscv-board'"), "{bad}");
}
