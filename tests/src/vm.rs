//! The appliance image booted in QEMU (TCG), driven through its serial ports.
//!
//! A [`Vm`] is one QEMU process started through `tests/image/run-qemu.sh` (the
//! single owner of the QEMU command line). Both serial ports are unix sockets in
//! a per-VM temp dir: ttyS0 is the operator console (menu), ttyS1 the root test
//! shell that exists only with `appliance.testshell=1`. Every byte read is kept
//! in a transcript that is dumped to stderr when a wait fails or a test panics.
//! QEMU is killed by a hard timeout, by `Drop`, and (PR_SET_PDEATHSIG) if the
//! thread that booted it dies, so keep a `Vm` in the thread that created it.
//! Set `APPLIANCE_VM_LOG_DIR` to keep every transcript (CI artifacts).

use std::fmt;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use regex::bytes::Regex;

/// Default bound for one `shell()` command.
pub const SHELL_TIMEOUT: Duration = Duration::from_secs(60);
/// Default hard limit on a VM's lifetime; QEMU is SIGKILLed when it passes.
pub const VM_HARD_TIMEOUT: Duration = Duration::from_secs(900);
/// How long QEMU may take to connect its serial sockets after spawning.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a transcript an error message shows (the tail).
const TRANSCRIPT_TAIL: usize = 16 * 1024;

static VM_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Error from the VM harness. Debug prints like Display so failed tests that
/// return `Result<_, VmError>` show the transcript readably.
pub enum VmError {
    /// The image could not be built or is missing.
    Image(String),
    /// QEMU could not be started or did not connect its serial ports.
    Spawn(String),
    /// A wait on a serial port ran out of time.
    Timeout {
        /// What was awaited.
        what: String,
        /// Serial port name.
        port: String,
        /// Tail of that port's transcript.
        transcript: String,
    },
    /// QEMU exited (or closed the port) while something was awaited.
    Exited {
        /// What was awaited.
        what: String,
        /// Serial port name.
        port: String,
        /// Tail of that port's transcript.
        transcript: String,
    },
    /// An I/O error talking to QEMU or the file system.
    Io(String),
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmError::Image(m) => write!(f, "image: {m}"),
            VmError::Spawn(m) => write!(f, "starting QEMU: {m}"),
            VmError::Timeout { what, port, transcript } => write!(
                f,
                "timed out waiting for {what} on {port}\n--- {port} transcript (tail) ---\n{transcript}\n--- end {port} ---"
            ),
            VmError::Exited { what, port, transcript } => write!(
                f,
                "QEMU exited or closed {port} while waiting for {what}\n--- {port} transcript (tail) ---\n{transcript}\n--- end {port} ---"
            ),
            VmError::Io(m) => write!(f, "I/O: {m}"),
        }
    }
}

impl fmt::Debug for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for VmError {}

/// The dev image's boards (tests/image/boards.sh holds the facts the scripts use).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Board {
    /// `qemu-x86_64`: qemu-system-x86_64 -M pc, console ttyS0, test shell ttyS1.
    X86_64,
    /// `qemu-aarch64-virt`: qemu-system-aarch64 -M virt -cpu cortex-a53, console
    /// ttyAMA0 (PL011), test shell on the virtio console hvc0.
    Aarch64Virt,
}

impl Board {
    /// The board directory name (`BOARD=` of the image scripts).
    pub fn name(self) -> &'static str {
        match self {
            Board::X86_64 => "qemu-x86_64",
            Board::Aarch64Virt => "qemu-aarch64-virt",
        }
    }

    /// The QEMU system emulator binary.
    pub fn qemu(self) -> &'static str {
        match self {
            Board::X86_64 => "qemu-system-x86_64",
            Board::Aarch64Virt => "qemu-system-aarch64",
        }
    }

    /// The guest's console tty (the operator menu).
    pub fn console_tty(self) -> &'static str {
        match self {
            Board::X86_64 => "ttyS0",
            Board::Aarch64Virt => "ttyAMA0",
        }
    }

    /// The guest's test shell tty.
    pub fn test_tty(self) -> &'static str {
        match self {
            Board::X86_64 => "ttyS1",
            Board::Aarch64Virt => "hvc0",
        }
    }
}

/// Paths of a built image.
#[derive(Clone, Debug)]
pub struct Image {
    /// Kernel (bzImage on x86_64, Image on aarch64).
    pub kernel: PathBuf,
    /// Initramfs (cpio, maybe gzipped).
    pub initrd: PathBuf,
    /// The board it was built for.
    pub board: Board,
}

/// Repository root (the workspace containing this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Build the x86_64 image once per test process (tests/image/build-image.sh, which
/// also serializes concurrent processes with a file lock) and return its
/// paths. Fails, never skips, if QEMU is not installed.
pub fn ensure_image() -> Result<Image, VmError> {
    ensure_image_for(Board::X86_64)
}

/// [`ensure_image`] for any board.
pub fn ensure_image_for(board: Board) -> Result<Image, VmError> {
    static X86: OnceLock<Result<Image, String>> = OnceLock::new();
    static ARM: OnceLock<Result<Image, String>> = OnceLock::new();
    let cell = match board {
        Board::X86_64 => &X86,
        Board::Aarch64Virt => &ARM,
    };
    cell.get_or_init(|| build_image(board))
        .clone()
        .map_err(VmError::Image)
}

fn build_image(board: Board) -> Result<Image, String> {
    let qemu_ok = Command::new(board.qemu())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !qemu_ok {
        return Err(format!(
            "{} is not installed or does not run; run tests/setup-host.sh",
            board.qemu()
        ));
    }
    // A prebuilt image (for side-by-side figures against an image built elsewhere):
    // APPLIANCE_IMAGE_DIR holds the kernel, initramfs.cpio and kernel.config.
    if let Ok(dir) = std::env::var("APPLIANCE_IMAGE_DIR") {
        let dir = PathBuf::from(dir);
        let kernel = dir.join(match board {
            Board::X86_64 => "bzImage",
            Board::Aarch64Virt => "Image",
        });
        let initrd = dir.join("initramfs.cpio");
        if !kernel.is_file() || !initrd.is_file() {
            return Err(format!(
                "APPLIANCE_IMAGE_DIR={}: no {} and initramfs.cpio there",
                dir.display(),
                kernel.display()
            ));
        }
        eprintln!(
            "appliance-tests: NOT building: using the prebuilt {} image in {} (APPLIANCE_IMAGE_DIR)",
            board.name(),
            dir.display()
        );
        return Ok(Image {
            kernel,
            initrd,
            board,
        });
    }
    let script = repo_root().join("tests/image/build-image.sh");
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .env("BOARD", board.name())
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}); its log is above",
            script.display(),
            out.status
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines().filter(|l| !l.trim().is_empty());
    let (Some(kernel), Some(initrd)) = (lines.next(), lines.next()) else {
        return Err(format!(
            "{} printed no kernel/initramfs paths: {stdout:?}",
            script.display()
        ));
    };
    eprintln!(
        "appliance-tests: {} image ready in {:.1} s: {kernel} {initrd}",
        board.name(),
        started.elapsed().as_secs_f64()
    );
    Ok(Image {
        kernel: PathBuf::from(kernel.trim()),
        initrd: PathBuf::from(initrd.trim()),
        board,
    })
}

/// What to boot and how. `VmOptions::new(image)` gives a VM with no NICs, a
/// fresh blank store disk and the test shell on ttyS1.
#[derive(Clone, Debug)]
pub struct VmOptions {
    /// Kernel and initramfs.
    pub image: Image,
    /// Config store disk (raw). None: a fresh 1 MiB blank (0xFF) disk in the
    /// VM's temp dir, kept across [`Vm::power_cycle`]/[`Vm::reboot_with_same_disk`].
    pub store_disk_path: Option<PathBuf>,
    /// Existing tap device for eth0 (WAN).
    pub wan_tap: Option<String>,
    /// Existing tap device for eth1 (LAN).
    pub lan_tap: Option<String>,
    /// MAC for eth0 (run-qemu.sh default if None).
    pub wan_mac: Option<String>,
    /// MAC for eth1 (run-qemu.sh default if None).
    pub lan_mac: Option<String>,
    /// Network namespace QEMU runs in (where the taps live).
    pub netns: Option<String>,
    /// Extra kernel command line arguments.
    pub extra_cmdline: Vec<String>,
    /// Enable the ttyS1 root shell (`appliance.testshell=1`). ttyS1 is
    /// connected either way, so a test can check that it stays silent.
    pub testshell: bool,
    /// Make QEMU exit instead of rebooting the guest (incl. watchdog resets).
    pub no_reboot: bool,
    /// Guest RAM, QEMU syntax.
    pub memory: String,
    /// Hard limit on the VM's lifetime; QEMU is SIGKILLed after it.
    pub hard_timeout: Duration,
    /// Connect QEMU's HMP monitor (for [`Vm::monitor`], e.g. `set_link`).
    pub monitor: bool,
    /// Boot this A/B boot disk through GRUB (tests/image/build-disk.sh) instead of the
    /// image's kernel; its command line comes from the disk, so `testshell` and
    /// `extra_cmdline` must be baked into it.
    pub boot_disk: Option<PathBuf>,
    /// More raw disks, read-only, after the store (and boot) disk.
    pub extra_disks: Vec<PathBuf>,
    /// Start the guest's CMOS clock here (e.g. `1970-01-01T00:00:00`) instead of the
    /// host's time: a box without a set clock, for the NTP tests.
    pub rtc_base: Option<String>,
    /// Bound for one [`Vm::shell`] command ([`SHELL_TIMEOUT`] by default).
    pub shell_timeout: Duration,
}

impl VmOptions {
    /// Defaults for booting `image`.
    pub fn new(image: Image) -> Self {
        VmOptions {
            image,
            store_disk_path: None,
            wan_tap: None,
            lan_tap: None,
            wan_mac: None,
            lan_mac: None,
            netns: None,
            extra_cmdline: Vec::new(),
            testshell: true,
            no_reboot: false,
            memory: "256M".into(),
            hard_timeout: VM_HARD_TIMEOUT,
            monitor: false,
            boot_disk: None,
            extra_disks: Vec::new(),
            rtc_base: None,
            shell_timeout: SHELL_TIMEOUT,
        }
    }
}

/// What to look for in serial output.
#[derive(Clone, Debug)]
pub enum Pattern {
    /// Exact bytes.
    Literal(String),
    /// A regular expression over the raw bytes.
    Regex(Regex),
}

impl Pattern {
    /// Regex pattern from a literal written in a test (panics if invalid,
    /// which is a bug in the test, not outside input).
    pub fn re(re: &str) -> Pattern {
        match Regex::new(re) {
            Ok(r) => Pattern::Regex(r),
            Err(e) => panic!("invalid test regex {re:?}: {e}"),
        }
    }

    fn describe(&self) -> String {
        match self {
            Pattern::Literal(s) => format!("{s:?}"),
            Pattern::Regex(r) => format!("/{}/", r.as_str()),
        }
    }

    /// (start, end, capture groups) of the first match in `hay`.
    fn find(&self, hay: &[u8]) -> Option<(usize, usize, Vec<String>)> {
        match self {
            Pattern::Literal(s) => {
                let needle = s.as_bytes();
                if needle.is_empty() {
                    return Some((0, 0, vec![String::new()]));
                }
                hay.windows(needle.len())
                    .position(|w| w == needle)
                    .map(|p| (p, p + needle.len(), vec![s.clone()]))
            }
            Pattern::Regex(r) => r.captures(hay).map(|c| {
                let whole = c.get(0).map(|m| (m.start(), m.end())).unwrap_or((0, 0));
                let groups = c
                    .iter()
                    .map(|m| {
                        m.map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
                            .unwrap_or_default()
                    })
                    .collect();
                (whole.0, whole.1, groups)
            }),
        }
    }
}

impl From<&str> for Pattern {
    fn from(s: &str) -> Self {
        Pattern::Literal(s.to_string())
    }
}

impl From<String> for Pattern {
    fn from(s: String) -> Self {
        Pattern::Literal(s)
    }
}

impl From<Regex> for Pattern {
    fn from(r: Regex) -> Self {
        Pattern::Regex(r)
    }
}

#[derive(Default)]
struct SerialBuf {
    data: Vec<u8>,
    closed: bool,
}

type Shared = Arc<(Mutex<SerialBuf>, Condvar)>;

/// One serial port: a transcript filled by a reader thread, a cursor for
/// expect-style waits, and a writer.
pub struct Serial {
    name: String,
    buf: Shared,
    writer: UnixStream,
    pos: usize,
    reader: Option<JoinHandle<()>>,
    /// Set when a wait fails, so the VM dumps its transcripts on drop.
    failed: Arc<AtomicBool>,
}

impl Serial {
    fn new(name: &str, stream: UnixStream, failed: Arc<AtomicBool>) -> Result<Serial, VmError> {
        let mut rd = stream
            .try_clone()
            .map_err(|e| VmError::Io(format!("{name}: clone socket: {e}")))?;
        let buf: Shared = Arc::new((Mutex::new(SerialBuf::default()), Condvar::new()));
        let shared = Arc::clone(&buf);
        let reader = thread::Builder::new()
            .name(format!("serial-{name}"))
            .spawn(move || {
                let mut chunk = [0u8; 4096];
                loop {
                    let n = match rd.read(&mut chunk) {
                        Ok(0) | Err(_) => 0,
                        Ok(n) => n,
                    };
                    let (lock, cv) = &*shared;
                    let mut b = lock.lock().unwrap_or_else(|p| p.into_inner());
                    if n == 0 {
                        b.closed = true;
                        cv.notify_all();
                        return;
                    }
                    b.data.extend_from_slice(&chunk[..n]);
                    cv.notify_all();
                }
            })
            .map_err(|e| VmError::Io(format!("{name}: reader thread: {e}")))?;
        Ok(Serial {
            name: name.to_string(),
            buf,
            writer: stream,
            pos: 0,
            reader: Some(reader),
            failed,
        })
    }

    /// Port name (ttyS0, ttyS1).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Send raw bytes to the guest.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), VmError> {
        self.writer
            .write_all(bytes)
            .and_then(|_| self.writer.flush())
            .map_err(|e| VmError::Io(format!("write to {}: {e}", self.name)))
    }

    /// Wait until `pattern` appears after the cursor; move the cursor past the
    /// match and return the matched text.
    pub fn wait_for(
        &mut self,
        pattern: impl Into<Pattern>,
        timeout: Duration,
    ) -> Result<String, VmError> {
        self.wait_for_match(pattern, timeout)
            .map(|mut g| g.swap_remove(0))
    }

    /// Like [`Serial::wait_for`] but returns the whole match followed by the
    /// regex capture groups (empty string for a group that did not take part).
    pub fn wait_for_match(
        &mut self,
        pattern: impl Into<Pattern>,
        timeout: Duration,
    ) -> Result<Vec<String>, VmError> {
        self.wait_inner(pattern.into(), timeout, true)
    }

    /// The wait; `mark_failed` false for polls whose timeouts are expected.
    fn wait_inner(
        &mut self,
        pattern: Pattern,
        timeout: Duration,
        mark_failed: bool,
    ) -> Result<Vec<String>, VmError> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.buf;
        let mut b = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let from = self.pos.min(b.data.len());
            if let Some((_, end, groups)) = pattern.find(&b.data[from..]) {
                self.pos = from + end;
                return Ok(groups);
            }
            let transcript = || tail(&b.data);
            if mark_failed && (b.closed || Instant::now() >= deadline) {
                self.failed.store(true, Ordering::Relaxed);
            }
            if b.closed {
                return Err(VmError::Exited {
                    what: pattern.describe(),
                    port: self.name.clone(),
                    transcript: transcript(),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(VmError::Timeout {
                    what: pattern.describe(),
                    port: self.name.clone(),
                    transcript: transcript(),
                });
            }
            b = cv
                .wait_timeout(b, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Whether `pattern` occurs anywhere after the cursor right now (no wait,
    /// cursor unchanged).
    pub fn contains(&self, pattern: impl Into<Pattern>) -> bool {
        let pattern = pattern.into();
        let b = self.buf.0.lock().unwrap_or_else(|p| p.into_inner());
        let from = self.pos.min(b.data.len());
        pattern.find(&b.data[from..]).is_some()
    }

    /// Everything received so far (lossy UTF-8).
    pub fn transcript(&self) -> String {
        let b = self.buf.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&b.data).into_owned()
    }

    /// Move the cursor to the end of what was received so far.
    pub fn skip_to_end(&mut self) {
        let b = self.buf.0.lock().unwrap_or_else(|p| p.into_inner());
        self.pos = b.data.len();
    }
}

fn tail(data: &[u8]) -> String {
    let start = data.len().saturating_sub(TRANSCRIPT_TAIL);
    String::from_utf8_lossy(&data[start..]).into_owned()
}

/// A running QEMU with the appliance image.
pub struct Vm {
    opts: VmOptions,
    dir: Option<tempfile::TempDir>,
    disk: PathBuf,
    child: Option<Child>,
    watchdog: Option<(Sender<()>, JoinHandle<()>)>,
    console: Serial,
    test: Serial,
    started: Instant,
    boot_no: u32,
    shell_seq: u64,
    failed: Arc<AtomicBool>,
    monitor: Option<UnixStream>,
}

impl Vm {
    /// Start QEMU with `opts` (the image must be built: see [`ensure_image`]).
    pub fn boot(opts: VmOptions) -> Result<Vm, VmError> {
        let n = VM_COUNTER.fetch_add(1, Ordering::Relaxed);
        // Short path: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix(&format!("vm-{}-{n}-", std::process::id()))
            .tempdir_in("/tmp")
            .map_err(|e| VmError::Io(format!("create VM temp dir: {e}")))?;
        Self::start(opts, dir, 0)
    }

    /// Boot with a given store disk (created blank if missing).
    pub fn boot_with_disk(disk: impl Into<PathBuf>, mut opts: VmOptions) -> Result<Vm, VmError> {
        opts.store_disk_path = Some(disk.into());
        Self::boot(opts)
    }

    fn start(opts: VmOptions, dir: tempfile::TempDir, boot_no: u32) -> Result<Vm, VmError> {
        let disk = opts
            .store_disk_path
            .clone()
            .unwrap_or_else(|| dir.path().join("store.img"));
        let sock0 = dir.path().join(format!("ttyS0-{boot_no}.sock"));
        let sock1 = dir.path().join(format!("ttyS1-{boot_no}.sock"));
        let bind = |p: &Path| {
            UnixListener::bind(p).map_err(|e| VmError::Io(format!("bind {}: {e}", p.display())))
        };
        let (l0, l1) = (bind(&sock0)?, bind(&sock1)?);
        let sockm = dir.path().join(format!("mon-{boot_no}.sock"));
        let lm = if opts.monitor {
            Some(bind(&sockm)?)
        } else {
            None
        };
        let qemu_log = dir.path().join(format!("qemu-{boot_no}.log"));
        let log_file = File::create(&qemu_log)
            .map_err(|e| VmError::Io(format!("create {}: {e}", qemu_log.display())))?;
        let log_file2 = log_file
            .try_clone()
            .map_err(|e| VmError::Io(format!("dup log fd: {e}")))?;

        let mut cmd = Command::new("bash");
        let board = opts.image.board;
        cmd.arg(repo_root().join("tests/image/run-qemu.sh"))
            .args(["--board", board.name()])
            .args(["--timeout", "0"]); // we enforce our own hard timeout
        if let Some(b) = &opts.boot_disk {
            cmd.arg("--boot-disk").arg(b);
        } else {
            cmd.arg("--kernel")
                .arg(&opts.image.kernel)
                .arg("--initrd")
                .arg(&opts.image.initrd);
        }
        for d in &opts.extra_disks {
            cmd.arg("--extra-disk").arg(d);
        }
        cmd.arg("--disk")
            .arg(&disk)
            .arg("--memory")
            .arg(&opts.memory)
            .arg("--serial0")
            .arg(format!("socket,path={}", sock0.display()))
            .arg("--serial1")
            .arg(format!("socket,path={}", sock1.display()));
        if opts.testshell && opts.boot_disk.is_none() {
            cmd.arg("--testshell");
        }
        if opts.monitor {
            cmd.arg("--monitor")
                .arg(format!("socket,path={}", sockm.display()));
        }
        if opts.no_reboot {
            cmd.arg("--no-reboot");
        }
        for (flag, val) in [
            ("--wan-tap", &opts.wan_tap),
            ("--lan-tap", &opts.lan_tap),
            ("--wan-mac", &opts.wan_mac),
            ("--lan-mac", &opts.lan_mac),
            ("--netns", &opts.netns),
        ] {
            if let Some(v) = val {
                cmd.arg(flag).arg(v);
            }
        }
        if let Some(base) = &opts.rtc_base {
            cmd.arg("--rtc-base").arg(base);
        }
        if !opts.extra_cmdline.is_empty() && opts.boot_disk.is_none() {
            cmd.arg("--append").arg(opts.extra_cmdline.join(" "));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(log_file2));
        // SAFETY: prctl is async-signal-safe; it only sets a flag on the child.
        // The script execs QEMU (same pid), and the death signal survives exec,
        // so QEMU dies with the test process even if Drop never runs.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| VmError::Spawn(format!("run-qemu.sh: {e}")))?;

        let accept = |l: &UnixListener, child: &mut Child, name: &str| {
            accept_from_qemu(l, child, name, &qemu_log)
        };
        let s0 = match accept(&l0, &mut child, board.console_tty()) {
            Ok(s) => s,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let s1 = match accept(&l1, &mut child, board.test_tty()) {
            Ok(s) => s,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let monitor = match lm.as_ref().map(|l| accept(l, &mut child, "monitor")) {
            None => None,
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let watchdog = spawn_watchdog(child.id(), opts.hard_timeout);
        let failed = Arc::new(AtomicBool::new(false));
        let (console, test) = match (
            Serial::new(board.console_tty(), s0, Arc::clone(&failed)),
            Serial::new(board.test_tty(), s1, Arc::clone(&failed)),
        ) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        Ok(Vm {
            opts,
            dir: Some(dir),
            disk,
            child: Some(child),
            watchdog: Some(watchdog),
            console,
            test,
            started,
            boot_no,
            shell_seq: 0,
            failed,
            monitor,
        })
    }

    /// Runs one HMP monitor command (needs [`VmOptions::monitor`]) and
    /// returns its output (up to the next `(qemu)` prompt, bounded by 10 s).
    pub fn monitor(&mut self, cmd: &str) -> Result<String, VmError> {
        let Some(m) = self.monitor.as_mut() else {
            return Err(VmError::Io(
                "the QEMU monitor needs VmOptions.monitor = true".into(),
            ));
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        m.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| VmError::Io(format!("monitor: {e}")))?;
        // Drain what is pending (the banner, an old prompt) first.
        loop {
            match m.read(&mut chunk) {
                Ok(0) => return Err(VmError::Io("monitor closed".into())),
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => return Err(VmError::Io(format!("monitor: {e}"))),
            }
        }
        m.write_all(format!("{cmd}\n").as_bytes())
            .map_err(|e| VmError::Io(format!("monitor: {e}")))?;
        loop {
            match m.read(&mut chunk) {
                Ok(0) => return Err(VmError::Io("monitor closed".into())),
                Ok(n) => {
                    got.extend_from_slice(&chunk[..n]);
                    if got.ends_with(b"(qemu) ") {
                        let text = String::from_utf8_lossy(&got).replace('\r', "");
                        // Drop the echoed command (with escape sequences) and the prompt.
                        let body: Vec<&str> =
                            text.lines().filter(|l| !l.contains("(qemu)")).collect();
                        return Ok(body.join("\n"));
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(VmError::Io(format!("monitor: {e}"))),
            }
            if Instant::now() >= deadline {
                return Err(VmError::Io(format!(
                    "monitor command {cmd:?}: no prompt within 10 s; got {:?}",
                    String::from_utf8_lossy(&got)
                )));
            }
        }
    }

    /// When QEMU was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The config store disk image this VM uses.
    pub fn disk_path(&self) -> &Path {
        &self.disk
    }

    /// Change the bound of one [`Vm::shell`] command (kept across power cuts):
    /// the emulated Cortex-A53 on a busy host needs more than [`SHELL_TIMEOUT`].
    pub fn set_shell_timeout(&mut self, limit: Duration) {
        self.opts.shell_timeout = limit;
    }

    /// The options this VM was booted with.
    pub fn options(&self) -> &VmOptions {
        &self.opts
    }

    /// The operator console (ttyS0).
    pub fn console(&mut self) -> &mut Serial {
        &mut self.console
    }

    /// The test shell port (ttyS1).
    pub fn test_port(&mut self) -> &mut Serial {
        &mut self.test
    }

    /// Wait for `pattern` on the console (ttyS0).
    pub fn wait_for(
        &mut self,
        pattern: impl Into<Pattern>,
        timeout: Duration,
    ) -> Result<String, VmError> {
        self.console.wait_for(pattern, timeout)
    }

    /// Send bytes to the console (ttyS0).
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), VmError> {
        self.console.send(bytes)
    }

    /// Wait until the ttyS1 test shell answers; returns the time since QEMU
    /// was started (boot-to-shell). Pokes the shell every 0.5 s because bytes
    /// sent before init opens ttyS1 may be lost.
    pub fn wait_shell(&mut self, timeout: Duration) -> Result<Duration, VmError> {
        if !self.opts.testshell {
            return Err(VmError::Io(
                "wait_shell needs VmOptions.testshell = true".into(),
            ));
        }
        self.shell_seq += 1;
        let marker = format!("@@READY-{}-{}@@", self.boot_no, self.shell_seq);
        // Quote-split so the typed command (if echoed) never matches.
        let (a, b) = marker.split_at(4);
        let cmd = format!("echo '{a}''{b}'\n");
        let deadline = Instant::now() + timeout;
        loop {
            self.test.send(cmd.as_bytes())?;
            let left = deadline.saturating_duration_since(Instant::now());
            let last = left <= Duration::from_millis(500);
            let poll = left.min(Duration::from_millis(500));
            match self
                .test
                .wait_inner(Pattern::from(marker.as_str()), poll, last)
            {
                Ok(_) => return Ok(self.started.elapsed()),
                Err(VmError::Timeout { .. }) if Instant::now() < deadline => continue,
                Err(VmError::Timeout { transcript, .. }) => {
                    self.failed.store(true, Ordering::Relaxed);
                    return Err(VmError::Timeout {
                        what: format!(
                            "test shell on {} ({} tail:\n{})",
                            self.test.name(),
                            self.console.name(),
                            tail(self.console.transcript().as_bytes())
                        ),
                        port: self.test.name().into(),
                        transcript,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Run `cmd` in the ttyS1 root shell; returns (output with stdout and
    /// stderr interleaved, `\r` removed; exit status). Bounded by
    /// [`SHELL_TIMEOUT`]. Call [`Vm::wait_shell`] once after boot first.
    pub fn shell(&mut self, cmd: &str) -> Result<(String, i32), VmError> {
        self.shell_timeout(cmd, self.opts.shell_timeout)
    }

    /// [`Vm::shell`] with an explicit timeout. `cmd` is one shell line
    /// (no newlines; keep it under the 4 KiB tty line limit).
    pub fn shell_timeout(
        &mut self,
        cmd: &str,
        timeout: Duration,
    ) -> Result<(String, i32), VmError> {
        self.shell_seq += 1;
        let id = format!("{}-{}", self.boot_no, self.shell_seq);
        // Markers are split by quotes in what we type, so only the shell's
        // output can match them, whether or not the tty echoes.
        // One line: the guest side is a read/eval loop, and `$?` must be the
        // status of `cmd`, passed quoted to eval so any shell text is fine.
        let quoted = cmd.replace('\'', r"'\''");
        let line =
            format!("echo '@@BEG''IN-{id}@@'; eval '{quoted}'; echo \"@@E\"\"ND-{id}@@ $?\"\n");
        if cmd.contains('\n') {
            return Err(VmError::Io(format!(
                "shell command must be a single line (use ';'): {cmd:?}"
            )));
        }
        self.test.send(line.as_bytes())?;
        let re = Pattern::re(&format!(
            r"@@BEGIN-{id}@@\r?\n((?s:.*?))@@END-{id}@@ (\d+)\r?\n"
        ));
        let groups = self.test.wait_for_match(re, timeout)?;
        let out = groups.get(1).cloned().unwrap_or_default().replace('\r', "");
        let code = groups
            .get(2)
            .and_then(|c| c.parse::<i32>().ok())
            .unwrap_or(-1);
        Ok((out, code))
    }

    /// Run `cmd` and require exit status 0; returns its output.
    pub fn shell_ok(&mut self, cmd: &str) -> Result<String, VmError> {
        let (out, code) = self.shell(cmd)?;
        if code != 0 {
            self.failed.store(true, Ordering::Relaxed);
            return Err(VmError::Io(format!(
                "guest command {cmd:?} exited with {code}; output:\n{out}"
            )));
        }
        Ok(out)
    }

    fn stop_watchdog(&mut self) {
        if let Some((tx, handle)) = self.watchdog.take() {
            let _ = tx.send(());
            let _ = handle.join();
        }
    }

    /// Kill QEMU at once (SIGKILL): a power cut as far as the guest knows.
    pub fn kill(&mut self) {
        // Stop the watchdog before reaping, so it can never signal a reused pid.
        self.stop_watchdog();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Wait up to `timeout` for QEMU to exit by itself (guest poweroff, or
    /// reboot with `no_reboot`). On timeout QEMU keeps running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(child) = self.child.as_mut() else {
                return Err(VmError::Io("QEMU was already killed or reaped".into()));
            };
            // try_wait reaps, so stop the watchdog first once it has exited;
            // here we only poll the status without reaping via waitid.
            if exited_without_reaping(child.id()) {
                self.stop_watchdog();
                let mut child = self.child.take().expect("checked above");
                return child
                    .wait()
                    .map_err(|e| VmError::Io(format!("wait for QEMU: {e}")));
            }
            if Instant::now() >= deadline {
                return Err(VmError::Timeout {
                    what: "QEMU to exit".into(),
                    port: self.console.name().into(),
                    transcript: tail(self.console.transcript().as_bytes()),
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Power-cut this VM (SIGKILL) and boot a new one with the same store
    /// disk and options. Transcripts start afresh.
    pub fn power_cycle(mut self) -> Result<Vm, VmError> {
        self.power_cut()?;
        Ok(self)
    }

    /// [`Vm::power_cycle`] in place, for a VM held in a struct (e.g. the lab's).
    pub fn power_cut(&mut self) -> Result<(), VmError> {
        self.kill();
        let mut opts = self.opts.clone();
        opts.store_disk_path = Some(self.disk.clone());
        let dir = self
            .dir
            .take()
            .ok_or_else(|| VmError::Io("VM temp dir already released".into()))?;
        *self = Vm::start(opts, dir, self.boot_no + 1)?;
        Ok(())
    }

    /// Orderly reboot through QEMU exit: wait (bounded) for the guest to shut
    /// down after it was told to reboot, with `no_reboot` set, then boot again
    /// with the same disk. Without `no_reboot` QEMU restarts the guest in place
    /// and this is not needed: just keep waiting on the same `Vm`.
    pub fn reboot_with_same_disk(mut self, shutdown_timeout: Duration) -> Result<Vm, VmError> {
        if self.opts.no_reboot {
            self.wait_exit(shutdown_timeout)?;
        }
        self.power_cycle()
    }

    fn dump_transcripts(&self, why: &str) {
        eprintln!(
            "=== VM boot {} {why}: ttyS0 transcript ===\n{}\n=== ttyS1 transcript ===\n{}\n=== end ===",
            self.boot_no,
            self.console.transcript(),
            self.test.transcript()
        );
        if let Some(dir) = &self.dir {
            let log = dir.path().join(format!("qemu-{}.log", self.boot_no));
            if let Ok(s) = std::fs::read_to_string(&log) {
                if !s.trim().is_empty() {
                    eprintln!("=== QEMU stderr ===\n{s}\n=== end ===");
                }
            }
        }
    }

    fn save_logs(&self) {
        // For CI artifacts: APPLIANCE_VM_LOG_DIR keeps every transcript.
        let Some(dir) = std::env::var_os("APPLIANCE_VM_LOG_DIR") else {
            return;
        };
        let dir = PathBuf::from(dir);
        if std::fs::create_dir_all(&dir).is_err() {
            return;
        }
        let tag = self
            .dir
            .as_ref()
            .and_then(|d| {
                d.path()
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "vm".into());
        let _ = std::fs::write(
            dir.join(format!("{tag}-boot{}-ttyS0.log", self.boot_no)),
            self.console.transcript(),
        );
        let _ = std::fs::write(
            dir.join(format!("{tag}-boot{}-ttyS1.log", self.boot_no)),
            self.test.transcript(),
        );
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if thread::panicking() {
            self.dump_transcripts("at test failure");
        } else if self.failed.load(Ordering::Relaxed) {
            self.dump_transcripts("after a failed wait or command");
        }
        self.save_logs();
        self.kill();
        // Reader threads see EOF once QEMU is gone.
        for s in [&mut self.console, &mut self.test] {
            if let Some(h) = s.reader.take() {
                let _ = h.join();
            }
        }
    }
}

fn accept_from_qemu(
    l: &UnixListener,
    child: &mut Child,
    name: &str,
    qemu_log: &Path,
) -> Result<UnixStream, VmError> {
    l.set_nonblocking(true)
        .map_err(|e| VmError::Io(format!("{name}: nonblocking: {e}")))?;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)
                    .map_err(|e| VmError::Io(format!("{name}: blocking: {e}")))?;
                return Ok(s);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(VmError::Io(format!("{name}: accept: {e}"))),
        }
        let log = || std::fs::read_to_string(qemu_log).unwrap_or_default();
        if let Ok(Some(status)) = child.try_wait() {
            return Err(VmError::Spawn(format!(
                "QEMU exited ({status}) before connecting {name}; its output:\n{}",
                log()
            )));
        }
        if Instant::now() >= deadline {
            return Err(VmError::Spawn(format!(
                "QEMU did not connect {name} within {CONNECT_TIMEOUT:?}; its output:\n{}",
                log()
            )));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILL `pid` unless told to stand down before `limit`.
fn spawn_watchdog(pid: u32, limit: Duration) -> (Sender<()>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<()>();
    let handle = thread::spawn(move || {
        if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!(
                "appliance-tests: VM hard timeout ({limit:?}) reached, killing QEMU pid {pid}"
            );
            // SAFETY: plain kill(2). The pid is still our unreaped child
            // (reaping only happens after this thread is stopped), so it
            // cannot have been reused.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    });
    (tx, handle)
}

/// Whether child `pid` has exited, leaving it a zombie (WNOWAIT) so the pid
/// stays ours until `Child::wait` reaps it.
fn exited_without_reaping(pid: u32) -> bool {
    // SAFETY: waitid only writes into the zeroed siginfo we pass.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        rc == 0 && info.si_pid() != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Serial, UnixStream, Arc<AtomicBool>) {
        let (a, b) = UnixStream::pair().expect("socketpair");
        let failed = Arc::new(AtomicBool::new(false));
        (
            Serial::new("ttyT", a, Arc::clone(&failed)).expect("serial"),
            b,
            failed,
        )
    }

    #[test]
    fn wait_for_consumes_in_order_and_captures() {
        let (mut s, mut peer, failed) = pair();
        peer.write_all(b"boot\r\nmenu> @@END-1@@ 7\r\nmenu> ")
            .unwrap();
        assert_eq!(
            s.wait_for("menu> ", Duration::from_secs(5)).unwrap(),
            "menu> "
        );
        let g = s
            .wait_for_match(Pattern::re(r"@@END-1@@ (\d+)"), Duration::from_secs(5))
            .unwrap();
        assert_eq!(g, vec!["@@END-1@@ 7".to_string(), "7".to_string()]);
        // The first "menu> " was consumed: only the second one is left.
        assert!(s.contains("menu> "));
        s.wait_for("menu> ", Duration::from_secs(5)).unwrap();
        assert!(!s.contains("menu> "));
        assert!(!failed.load(Ordering::Relaxed));
    }

    #[test]
    fn timeout_reports_transcript_and_marks_failure() {
        let (mut s, mut peer, failed) = pair();
        peer.write_all(b"kernel says hello\n").unwrap();
        let err = s
            .wait_for("never printed", Duration::from_millis(200))
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, VmError::Timeout { .. }), "{msg}");
        assert!(msg.contains("kernel says hello"), "{msg}");
        assert!(msg.contains("\"never printed\""), "{msg}");
        assert!(failed.load(Ordering::Relaxed));
    }

    #[test]
    fn closed_port_fails_fast_as_exited() {
        let (mut s, peer, _) = pair();
        drop(peer);
        let started = Instant::now();
        let err = s.wait_for("x", Duration::from_secs(30)).unwrap_err();
        assert!(matches!(err, VmError::Exited { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn send_reaches_peer() {
        let (mut s, mut peer, _) = pair();
        s.send(b"1\r").unwrap();
        let mut buf = [0u8; 2];
        peer.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"1\r");
    }
}
