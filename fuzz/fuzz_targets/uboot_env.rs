//! Fuzz the U-Boot environment codec and the A/B reader on top of it: a torn or hostile
//! environment block must never panic, and whatever decodes must encode back to itself.
#![no_main]

use appliance::firmware::disk::from_uboot_copies;
use appliance::firmware::ubootenv::{pick, Form, UbootEnv};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for form in [Form::Plain, Form::Redundant] {
        if let Ok(env) = UbootEnv::decode(data, form) {
            let again = env.encode(data.len(), form).expect("a decoded block fits its size");
            assert_eq!(UbootEnv::decode(&again, form), Ok(env));
        }
    }
    let (a, b) = data.split_at(data.len() / 2);
    let _ = pick(a, b);
    let mut two = vec![0u8; 2 * appliance::firmware::disk::UBOOT_ENV_SIZE as usize];
    let n = data.len().min(two.len());
    two[..n].copy_from_slice(&data[..n]);
    let _ = from_uboot_copies(&two);
});
