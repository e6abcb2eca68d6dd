//! Fuzz control-socket request lines: decoding, the config session's handling and response
//! encoding. Release builds abort on panic, so any panic here is a daemon crash.
//!
//! The handler double lives here, not in the library, so it is never part of the firmware:
//! it runs the real `ConfigSession` (validation, apply/save bookkeeping, passwords, diffs)
//! over recorded side effects, and the real keepalived importer; requests that would touch
//! the network or power (ping, SIP OPTIONS, reboot...) are only decoded.
#![no_main]

use std::time::Duration;

use appliance::config::{validate, Config};
use appliance::control::proto::{Reply, Request, Response, Validation};
use appliance::control::server::{encode_response, parse_request_line};
use appliance::control::session::{ConfigSession, EffectError, Effects};
use libfuzzer_sys::fuzz_target;

/// Side effects recorded as counts only (the session's own state is what is fuzzed).
struct Recorded {
    saves: u64,
}

impl Effects for Recorded {
    fn validate(&self, c: &Config) -> Validation {
        Validation::from(&validate(c))
    }
    fn apply(&mut self, _c: &Config) -> Result<String, EffectError> {
        Ok("applied".into())
    }
    fn save(&mut self, _c: &Config) -> Result<u64, EffectError> {
        self.saves += 1;
        Ok(self.saves)
    }
}

fn dispatch(s: &mut ConfigSession<Recorded>, req: &Request, now: Duration) -> Response {
    if let Some(r) = s.handle(req, now) {
        return r;
    }
    match req {
        Request::ImportKeepalived { text } => {
            let r = appliance::config::keepalived::import_into(text, s.running());
            Response::Ok(Reply::Done {
                message: r.render(),
            })
        }
        _ => Response::error("not handled by the fuzz double"),
    }
}

fuzz_target!(|data: &[u8]| {
    let base = Config::builtin_default();
    let mut s = ConfigSession::new(base.clone(), base, Recorded { saves: 0 });
    // The smallest argon2 cost keeps password requests cheap; the code path is the same.
    s.set_hash_cost(8, 1);
    // Several lines per input, as one client connection sends them, so state carries over.
    for (i, line) in data.split(|b| *b == b'\n').take(16).enumerate() {
        let resp = match parse_request_line(line) {
            Ok(None) => continue,
            Ok(Some(req)) => dispatch(&mut s, &req, Duration::from_secs(i as u64 * 7)),
            Err(resp) => resp,
        };
        let _ = encode_response(&resp);
    }
});
