//! Fuzz the serial console: arbitrary keyboard input (lines, Ctrl-C, timeouts, garbage
//! bytes) drives the real menu against the fake daemon (feature `testing`, never in the
//! firmware), as a person at the serial port could. Release builds abort on panic, so any
//! panic or unbounded loop here is a console crash or hang.
#![no_main]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use appliance::config::Config;
use appliance::console::menu::{Daemon, Input, Menu, Port};
use appliance::control::fake::FakeDaemon;
use appliance::control::proto::{Reply, Request, Response};
use libfuzzer_sys::fuzz_target;

/// A terminal fed from the fuzz input; output is counted, not kept.
struct Keys {
    inputs: VecDeque<Input>,
    written: usize,
    reads: usize,
}

impl Keys {
    fn next(&mut self) -> Input {
        // Bound the session: a menu that keeps asking after the input ran out sees EOF,
        // and one that never stops asking is a hang the fuzzer reports as a timeout.
        self.reads += 1;
        self.inputs.pop_front().unwrap_or(Input::Eof)
    }
}

impl Port for Keys {
    fn write(&mut self, text: &str) {
        self.written += text.len();
    }
    fn read_line(&mut self, _secret: bool, _timeout: Option<Duration>) -> Input {
        self.next()
    }
    fn wait_key(&mut self, _timeout: Duration) -> Input {
        self.next()
    }
    fn pause(&mut self, _d: Duration) -> Input {
        Input::Timeout
    }
    fn clear(&mut self) {}
    fn shell(&mut self) -> Result<(), String> {
        Ok(())
    }
}

struct Direct(Arc<FakeDaemon>);

impl Daemon for Direct {
    fn call(&mut self, req: &Request) -> Result<Reply, String> {
        match self.0.handle_sync(req.clone()) {
            Response::Ok(r) => Ok(r),
            Response::Error { message } => Err(message),
        }
    }
}

/// Input bytes become key events: 0x03 Ctrl-C, 0x00 a timeout, `\n` ends a line, and
/// anything else (invalid UTF-8 included) is typed into the current line.
fn events(data: &[u8]) -> VecDeque<Input> {
    let mut out = VecDeque::new();
    let mut line = Vec::new();
    for &b in data {
        match b {
            0x03 => out.push_back(Input::Interrupt),
            0x00 => out.push_back(Input::Timeout),
            b'\n' => out.push_back(Input::Line(String::from_utf8_lossy(&std::mem::take(&mut line)).into_owned())),
            _ => line.push(b),
        }
    }
    if !line.is_empty() {
        out.push_back(Input::Line(String::from_utf8_lossy(&line).into_owned()));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let fake = Arc::new(FakeDaemon::new(Config::builtin_default()));
    // A first byte 0x01 starts the box in a store fault with no password known, so the
    // locked screen (whose only action is the typed erase word) takes the keys instead.
    let data = match data.split_first() {
        Some((0x01, rest)) => {
            fake.state.lock().unwrap().session.keep_password(
                "/nonexistent/appliance-fuzz/console-hash".into(),
                Some("both slots are corrupt"),
                "",
            );
            rest
        }
        _ => data,
    };
    // The first lines set the first-boot password, so the fuzzer reaches the menu quickly.
    let mut inputs: VecDeque<Input> = ["fuzz-password-1", "fuzz-password-1"]
        .into_iter()
        .map(|s| Input::Line(s.into()))
        .collect();
    inputs.extend(events(data));
    let keys = Keys {
        inputs,
        written: 0,
        reads: 0,
    };
    let mut menu = Menu::new(keys, Direct(fake));
    menu.run();
});
