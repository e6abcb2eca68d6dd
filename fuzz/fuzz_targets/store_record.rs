//! Fuzz the store's slot decoder and slot choice: corrupt flash must never panic.
#![no_main]

use appliance::store::{decode_slot, pick};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (a, b) = data.split_at(data.len() / 2);
    let states = [decode_slot(a), decode_slot(b)];
    let _ = pick(states, &appliance::config::Config::builtin_default());
});
