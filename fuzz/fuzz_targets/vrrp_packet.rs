//! Fuzz the VRRP decoders: never panic; anything accepted re-encodes to the same bytes
//! (v3) and satisfies every rule the decoder claims to check.
//!
//! Run: `cd fuzz && cargo +nightly fuzz run vrrp_packet corpus/vrrp_packet seeds/vrrp_packet -- -max_total_time=60`
#![no_main]

use std::net::Ipv4Addr;

use appliance::vrrp::packet::{checksum_v3, parse_datagram, parse_ipv4, Advert};
use libfuzzer_sys::fuzz_target;

const SRC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const DST: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

fuzz_target!(|data: &[u8]| {
    // Raw-socket path: a whole IPv4 datagram.
    if let Ok((hdr, payload)) = parse_ipv4(data) {
        assert!(payload.len() <= data.len() - 20);
        if let Ok((h2, adv)) = parse_datagram(data) {
            assert_eq!(h2, hdr);
            assert_eq!(hdr.proto, 112);
            assert_eq!(Advert::decode(payload, hdr.src, hdr.dst), Ok(adv));
        }
    }
    // VRRP payload path.
    if let Ok(a) = Advert::decode(data, SRC, DST) {
        assert!(a.version == 2 || a.version == 3);
        assert_eq!(data[0] & 0x0f, 1);
        assert!(!a.addresses.is_empty());
        assert_eq!(a.addresses.len(), usize::from(data[3]));
        assert!(a.max_adver_int_cs > 0);
        if a.version == 3 {
            assert_eq!(data.len(), 8 + 4 * a.addresses.len());
            assert_eq!(checksum_v3(data, SRC, DST), a.checksum);
            let again = a.encode(SRC, DST);
            if data[4] & 0xf0 == 0 {
                assert_eq!(again, data);
            }
            let back = Advert::decode(&again, SRC, DST).expect("own encoding decodes");
            assert_eq!(
                Advert {
                    checksum: 0,
                    ..back
                },
                Advert { checksum: 0, ..a }
            );
        } else {
            assert_eq!(data.len(), 16 + 4 * a.addresses.len());
        }
    }
});
