//! Fuzz the keepalived.conf importer: any input must give notes, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let r = appliance::config::keepalived::import(&text);
    let _ = r.render();
    let _ = r.ok_to_apply();
});
