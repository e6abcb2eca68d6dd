//! Fuzz the firmware bundle reader: any bytes (a download, a file on a USB stick) must give
//! a clear refusal, never a panic or a huge allocation.
#![no_main]

use appliance::firmware::bundle::{verify_bytes, Manifest, Policy};
use appliance::firmware::keys::Keyring;
use appliance::firmware::version::Version;
use libfuzzer_sys::fuzz_target;

// The dev image's test key, so signed seeds get past the signature into the manifest and images.
const RING: &str = include_str!("../../tests/image/dev-overlay/etc/appliance/firmware-keys");

fuzz_target!(|data: &[u8]| {
    let ring = Keyring::parse(RING, "ring").expect("test keyring parses");
    let policy = Policy {
        keyring: &ring,
        keyring_path: "ring",
        board: "qemu-x86_64",
        running: Version { major: 0, minor: 1, patch: 0 },
        force: false,
    };
    let _ = verify_bytes(data, &policy);
    // The manifest parser is only reached through a valid signature above: fuzz it directly too.
    let _ = Manifest::parse(data);
});
