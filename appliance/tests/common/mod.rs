//! Shared harness: a fake daemon on a temp socket and the console on a pseudo-terminal.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use appliance::config::Config;
use appliance::control::fake::FakeDaemon;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// A fake daemon served by the real `control::server::serve` on a temp socket.
pub struct FakeService {
    pub fake: Arc<FakeDaemon>,
    pub sock: PathBuf,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FakeService {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub const PW: &str = "console-pw-1";

impl FakeService {
    pub fn start(config: Config, with_password: bool) -> FakeService {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("run/control.sock");
        let fake = Arc::new(FakeDaemon::new(config));
        if with_password {
            fake.state
                .lock()
                .unwrap()
                .session
                .set_password("", PW, std::time::Duration::ZERO)
                .expect("set password");
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (f2, s2) = (fake.clone(), sock.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let task = appliance::control::server::serve(&s2, f2).expect("serve");
                let _ = ready_tx.send(());
                let _ = stopped.await;
                task.abort();
            });
        });
        ready_rx.recv_timeout(T).expect("control socket ready");
        FakeService {
            fake,
            sock,
            _dir: dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn sock_str(&self) -> String {
        self.sock.display().to_string()
    }
}

/// The console binary running on a pty slave; we hold the master.
pub struct Console {
    master: Option<File>,
    child: Child,
    out: Vec<u8>,
    pos: usize,
}

pub const T: Duration = Duration::from_secs(20);

impl Console {
    pub fn spawn(sock: &str) -> Console {
        Console::spawn_with(sock, &[])
    }

    /// [`Console::spawn`] with extra console options.
    pub fn spawn_with(sock: &str, extra: &[&str]) -> Console {
        let ws = nix::pty::Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // Tests run in parallel: without CLOEXEC another test's child would inherit this
        // master and keep the terminal "open" after we close it. The lock closes the
        // window between openpty and fcntl against concurrent spawns.
        static SPAWN: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _g = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
        let pty = nix::pty::openpty(Some(&ws), None).expect("openpty");
        for fd in [&pty.master, &pty.slave] {
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .expect("cloexec");
        }
        let slave: OwnedFd = pty.slave;
        let child = Command::new(env!("CARGO_BIN_EXE_appliance"))
            .args(["console", "--socket", sock])
            .args(extra)
            .stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave))
            .env("TERM", "vt100")
            .env_remove("RUST_LOG")
            .spawn()
            .expect("spawn appliance console");
        Console {
            master: Some(File::from(pty.master)),
            child,
            out: Vec::new(),
            pos: 0,
        }
    }

    pub fn send(&mut self, s: &str) {
        self.send_bytes(s.as_bytes());
    }

    pub fn send_bytes(&mut self, b: &[u8]) {
        let m = self.master.as_mut().expect("master open");
        m.write_all(b).expect("write to pty");
    }

    /// Type a line (CR like a terminal's Enter key).
    pub fn line(&mut self, s: &str) {
        self.send(&format!("{s}\r"));
    }

    fn fill(&mut self, until: Instant) -> bool {
        let Some(m) = self.master.as_mut() else {
            return false;
        };
        let left = until.saturating_duration_since(Instant::now());
        let ms = left.as_millis().min(1000) as u16;
        let mut fds = [PollFd::new(m.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) if n > 0 => {
                let mut buf = [0u8; 4096];
                match m.read(&mut buf) {
                    Ok(0) | Err(_) => false,
                    Ok(n) => {
                        self.out.extend_from_slice(&buf[..n]);
                        true
                    }
                }
            }
            _ => true,
        }
    }

    /// Wait for `needle` after the last match; returns the text up to and including it.
    pub fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + T;
        loop {
            let hay = String::from_utf8_lossy(&self.out[self.pos..]).to_string();
            if let Some(i) = hay.find(needle) {
                let upto = &hay[..i + needle.len()];
                self.pos += upto.len();
                return upto.to_owned();
            }
            if Instant::now() >= deadline || !self.fill(deadline) {
                panic!(
                    "timed out waiting for {needle:?}; transcript since last match:\n{hay}\n--- full ---\n{}",
                    self.transcript()
                );
            }
        }
    }

    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.out).to_string()
    }

    pub fn close_master(&mut self) {
        self.master = None;
    }

    /// Wait for the console to exit (bounded).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + T;
        loop {
            // Keep draining output so the child never blocks on a full pty buffer.
            if self.master.is_some() {
                self.fill(Instant::now() + Duration::from_millis(50));
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            if Instant::now() >= deadline {
                panic!("console did not exit; transcript:\n{}", self.transcript());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Log in from the lock screen and wait for the main menu.
    pub fn login(&mut self) {
        self.expect("Password: ");
        self.line(PW);
        self.expect("Enter an option: ");
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
