//! Fuzz the SNTP reply decoder (outside input: any datagram from the NTP server's
//! address): never panic; anything accepted obeys the checks the decoder claims and
//! re-encodes to the first 48 bytes; the offset/delay arithmetic never overflows.
//!
//! Run: `cd fuzz && cargo +nightly fuzz run ntp_reply corpus/ntp_reply seeds/ntp_reply -- -max_total_time=60`
#![no_main]

use appliance::ntp::packet::{sample, Reply, LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Reply::decode(data) {
        assert!(data.len() >= LEN);
        assert_eq!(data[0] & 7, 4);
        assert!((1..=4).contains(&r.version));
        assert!((1..=15).contains(&r.stratum));
        assert!(r.leap != 3);
        assert!(r.transmit.0 != 0 && r.receive.0 != 0);
        assert_eq!(&r.encode()[..], &data[..LEN]);
        // Our clock anywhere from 1970 to 2106: no overflow, delay never negative.
        for t1 in [0i64, 1_795_874_773_000_000, 4_294_967_295_000_000] {
            let s = sample(t1, &r, t1 + 1_000);
            assert!(s.delay_us >= 0);
        }
    }
});
