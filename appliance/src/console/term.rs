//! The real terminal behind [`Port`]: raw-ish line input on stdin, output on stdout.
//!
//! Canonical mode, echo and signal keys are off so that Ctrl-C arrives as byte 0x03
//! (back to the menu) instead of killing us. Line editing is ours: backspace/DEL,
//! Ctrl-U, CR/LF/CRLF, escape sequences swallowed, control bytes ignored, over-long
//! lines truncated, invalid UTF-8 replaced. EOF, Ctrl-D on an empty line, EIO or a
//! failed write mean the terminal is gone.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::termios::{self, InputFlags, LocalFlags, SetArg, SpecialCharacterIndices, Termios};

use crate::console::menu::{Input, Port};

/// Longest input line kept; further bytes are dropped (a pasted keepalived line is far shorter).
pub const MAX_INPUT: usize = 1024;

enum Byte {
    B(u8),
    Timeout,
    Eof,
}

/// stdin/stdout as a console terminal.
pub struct Term {
    saved: Option<Termios>,
    tty: bool,
    dumb: bool,
    lost: bool,
    pending: VecDeque<u8>,
    skip_lf: bool,
}

fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the whole process (we never close it).
    unsafe { BorrowedFd::borrow_raw(0) }
}

fn ignore_signals() {
    // SAFETY: installing SIG_IGN has no handler code to be unsafe in.
    for s in [
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTSTP,
        Signal::SIGHUP,
    ] {
        let _ = unsafe { signal(s, SigHandler::SigIgn) };
    }
}

fn raw(t: &Termios) -> Termios {
    let mut r = t.clone();
    r.local_flags
        .remove(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG | LocalFlags::IEXTEN);
    // No XON/XOFF (Ctrl-S would freeze the screen), no CR->NL mapping (we handle both).
    r.input_flags
        .remove(InputFlags::IXON | InputFlags::ICRNL | InputFlags::INLCR | InputFlags::IGNCR);
    r.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
    r.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
    r
}

impl Term {
    /// Take over stdin/stdout. Works on a pipe too (no raw mode, no echo).
    pub fn open() -> Term {
        ignore_signals();
        let saved = termios::tcgetattr(stdin_fd()).ok();
        if let Some(t) = &saved {
            if let Err(e) = termios::tcsetattr(stdin_fd(), SetArg::TCSANOW, &raw(t)) {
                tracing::warn!(error = %e, "cannot set raw mode; input editing may be odd");
            }
        }
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb" || t.is_empty());
        Term {
            tty: saved.is_some(),
            saved,
            dumb,
            lost: false,
            pending: VecDeque::new(),
            skip_lf: false,
        }
    }

    fn echo(&mut self, s: &str) {
        if self.tty {
            self.write(s);
        }
    }

    fn next_byte(&mut self, deadline: Option<Instant>) -> Byte {
        if self.lost {
            return Byte::Eof;
        }
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Byte::B(b);
            }
            let timeout = match deadline {
                None => PollTimeout::NONE,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Byte::Timeout;
                    }
                    // Cap each wait so huge idle timeouts never overflow poll's i32.
                    let ms = left.as_millis().clamp(1, 60_000) as u16;
                    PollTimeout::from(ms)
                }
            };
            let mut fds = [PollFd::new(stdin_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(_) => {
                    self.lost = true;
                    return Byte::Eof;
                }
            }
            let mut buf = [0u8; 512];
            match nix::unistd::read(stdin_fd(), &mut buf) {
                Ok(0) => {
                    self.lost = true;
                    return Byte::Eof;
                }
                Ok(n) => self.pending.extend(&buf[..n]),
                Err(Errno::EINTR) | Err(Errno::EAGAIN) => continue,
                // EIO: the other side of the terminal is gone (hang-up, pty master closed).
                Err(_) => {
                    self.lost = true;
                    return Byte::Eof;
                }
            }
        }
    }

    /// Swallow the rest of an escape sequence (arrow keys, function keys).
    fn swallow_escape(&mut self) {
        let soon = || Some(Instant::now() + Duration::from_millis(30));
        let Byte::B(b) = self.next_byte(soon()) else {
            return;
        };
        if b != b'[' && b != b'O' {
            return;
        }
        for _ in 0..16 {
            match self.next_byte(soon()) {
                Byte::B(x) if (0x40..=0x7e).contains(&x) => return,
                Byte::B(_) => {}
                _ => return,
            }
        }
    }

    fn drain_pending(&mut self) {
        self.pending.clear();
        let _ = termios::tcflush(stdin_fd(), termios::FlushArg::TCIFLUSH);
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(stdin_fd(), SetArg::TCSANOW, t);
        }
    }
}

impl Port for Term {
    fn write(&mut self, text: &str) {
        if self.lost {
            return;
        }
        let mut bytes = text.as_bytes();
        let out = io::stdout();
        while !bytes.is_empty() {
            match nix::unistd::write(out.as_fd(), bytes) {
                Ok(0) => {
                    self.lost = true;
                    return;
                }
                Ok(n) => bytes = &bytes[n..],
                Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
                Err(_) => {
                    self.lost = true;
                    return;
                }
            }
        }
    }

    fn read_line(&mut self, secret: bool, timeout: Option<Duration>) -> Input {
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let deadline = timeout.map(|t| Instant::now() + t);
            let b = match self.next_byte(deadline) {
                Byte::B(b) => b,
                Byte::Timeout => return Input::Timeout,
                Byte::Eof => return Input::Eof,
            };
            let after_cr = std::mem::replace(&mut self.skip_lf, false);
            match b {
                b'\n' if after_cr => {}
                b'\r' | b'\n' => {
                    self.skip_lf = b == b'\r';
                    self.echo("\n");
                    let s = String::from_utf8_lossy(&buf);
                    return Input::Line(s.chars().filter(|c| !c.is_control()).collect());
                }
                0x03 => {
                    self.echo("^C\n");
                    return Input::Interrupt;
                }
                0x04 if buf.is_empty() => return Input::Eof,
                0x08 | 0x7f => {
                    if buf.pop().is_some() && !secret {
                        self.echo("\x08 \x08");
                    }
                }
                0x15 => {
                    if !secret {
                        let n = buf.len();
                        self.echo(&"\x08 \x08".repeat(n));
                    }
                    buf.clear();
                }
                0x1b => self.swallow_escape(),
                b if b < 0x20 => {}
                b => {
                    if buf.len() < MAX_INPUT {
                        buf.push(b);
                        if !secret {
                            let shown = if b.is_ascii_graphic() || b == b' ' {
                                char::from(b)
                            } else {
                                '?'
                            };
                            self.echo(&shown.to_string());
                        }
                    }
                }
            }
        }
    }

    fn wait_key(&mut self, timeout: Duration) -> Input {
        let r = match self.next_byte(Some(Instant::now() + timeout)) {
            Byte::B(0x03) => Input::Interrupt,
            Byte::B(0x04) => Input::Eof,
            Byte::B(_) => Input::Line(String::new()),
            Byte::Timeout => return Input::Timeout,
            Byte::Eof => return Input::Eof,
        };
        // A key press may be CR LF or an escape sequence: drop the rest.
        std::thread::sleep(Duration::from_millis(20));
        self.drain_pending();
        self.skip_lf = false;
        r
    }

    fn pause(&mut self, d: Duration) -> Input {
        let deadline = Instant::now() + d;
        loop {
            match self.next_byte(Some(deadline)) {
                Byte::B(_) => {}
                Byte::Timeout => {
                    self.drain_pending();
                    return Input::Timeout;
                }
                Byte::Eof => return Input::Eof,
            }
        }
    }

    fn clear(&mut self) {
        if self.dumb {
            self.write("\n\n");
        } else {
            self.write("\x1b[H\x1b[2J");
        }
    }

    fn shell(&mut self) -> Result<(), String> {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(stdin_fd(), SetArg::TCSANOW, t);
        }
        let mut cmd = std::process::Command::new("/bin/sh");
        // SAFETY: only async-signal-safe calls (sigaction) between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                for s in [
                    Signal::SIGINT,
                    Signal::SIGQUIT,
                    Signal::SIGTSTP,
                    Signal::SIGHUP,
                ] {
                    let _ = signal(s, SigHandler::SigDfl);
                }
                Ok(())
            });
        }
        let r = cmd
            .status()
            .map(|_| ())
            .map_err(|e| format!("cannot start /bin/sh: {e}"));
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(stdin_fd(), SetArg::TCSANOW, &raw(t));
        }
        self.pending.clear();
        r
    }
}
