//! Fuzz the metrics endpoint's request-head parser: never panic, stay bounded, and
//! accept only heads whose request line really is `TOKEN SP /PATH SP HTTP/1.x`.
//! Feeding the bytes in two pieces checks that an incomplete head never turns into
//! an answer the complete head would not give.
//!
//! Run: `cd fuzz && cargo +nightly fuzz run metrics_http corpus/metrics_http seeds/metrics_http -- -max_total_time=120`
#![no_main]

use appliance::metrics::http::{parse, route, Parsed, Status, MAX_HEAD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    match &whole {
        Parsed::Request(r) => {
            let line_end = data.iter().position(|b| *b == b'\n').expect("a head has a line end");
            assert!(line_end < MAX_HEAD);
            let line = &data[..line_end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            assert!(line.starts_with(r.method.as_bytes()));
            assert!(line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0"));
            assert!(r.path.starts_with('/'));
            assert!(r.path.bytes().all(|b| b.is_ascii_graphic() && b != b'?'));
            // Only GET or HEAD of /metrics is ever answered with metrics.
            if route(r) == Status::Ok {
                assert_eq!(r.path, "/metrics");
                assert!(r.method == "GET" || r.method == "HEAD");
            }
        }
        Parsed::Reject(_) => {}
        Parsed::Incomplete => assert!(data.len() < MAX_HEAD),
    }
    // A prefix of the input is either incomplete, or already decided the same way
    // (rejections may come early, e.g. binary junk or an oversized head).
    if data.len() > 1 {
        let cut = data.len() / 2;
        match (parse(&data[..cut]), &whole) {
            (Parsed::Incomplete, _) => {}
            (Parsed::Request(a), Parsed::Request(b)) => assert_eq!(&a, b),
            (Parsed::Reject(_), Parsed::Reject(_)) => {}
            (p, w) => panic!("prefix {p:?} but whole {w:?}"),
        }
    }
});
