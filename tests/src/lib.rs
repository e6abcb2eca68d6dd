//! Test harness for the appliance image: boots the dev image in QEMU (TCG) and
//! drives its serial ports. Used by the boot tests in `tests/tests/` and by the
//! SIP lab harness.

pub mod vm;

pub use vm::{
    ensure_image, ensure_image_for, Board, Image, Pattern, Serial, Vm, VmError, VmOptions,
};

pub mod lab;
pub mod sipp;

pub mod console;

pub mod guest;

/// How a test that cannot run here reports it (fails in CI); the appliance crate's
/// helper, shared by path so the rule lives in one file.
#[path = "../../appliance/src/test_skip.rs"]
pub mod skip;

pub mod checks;

pub mod firmware;
