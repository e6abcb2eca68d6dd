//! Fuzz the SIP reply parser and matcher: never panic, and never report a final or
//! provisional reply unless every matching field really is the expected one.
//!
//! Run: `cd fuzz && cargo +nightly fuzz run sip_reply corpus/sip_reply seeds/sip_reply -- -max_total_time=120`
#![no_main]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use appliance::probe::packet::{classify, parse_reply, Expected, ReplyVerdict};
use libfuzzer_sys::fuzz_target;

const BRANCH: &str = "z9hG4bKabc123";
const CALL_ID: &str = "cid-1@198.51.100.1";

fuzz_target!(|data: &[u8]| {
    let peer = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 11), 5060);
    let exp = Expected {
        branch: BRANCH.into(),
        call_id: CALL_ID.into(),
        cseq: 7,
        peer,
    };
    let v = classify(data, SocketAddr::V4(peer), &exp);
    match &v {
        ReplyVerdict::Final { code, .. } | ReplyVerdict::Provisional { code } => {
            // Independent re-check of every field the verdict relied on.
            let r = parse_reply(data).expect("a matched reply parses");
            assert_eq!(r.code, *code);
            assert!((100..=699).contains(code));
            assert_eq!(r.top_via.branch.as_deref(), Some(BRANCH));
            assert_eq!(r.call_id, CALL_ID);
            assert_eq!((r.cseq, r.cseq_method.as_str()), (7, "OPTIONS"));
            assert!(data[..8].eq_ignore_ascii_case(b"SIP/2.0 "));
            let text = String::from_utf8_lossy(data);
            assert!(text.contains(BRANCH) && text.contains(CALL_ID));
        }
        ReplyVerdict::Unmatched(_) | ReplyVerdict::Malformed(_) => {}
    }
    // The same bytes from any other address are never a reply to us.
    let other = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 12), 5060));
    assert!(matches!(
        classify(data, other, &exp),
        ReplyVerdict::Unmatched(appliance::probe::packet::Mismatch::WrongSource)
    ));
});
