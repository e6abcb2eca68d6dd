//! The pfSense-style serial console menu (a client of the control socket).
//!
//! Started by init on the serial port (`appliance console [--socket PATH]`). It holds
//! no state of its own: the daemon owns config, password hash and back-off, so a
//! crash or a pulled cable here never affects balancing; init simply respawns it.
//!
//! - [`menu`]: the menu logic over the [`menu::Port`] and [`menu::Daemon`] traits.
//! - [`screens`]: pure 80x24 rendering; [`fields`]: input parsers with messages.
//! - [`term`]: the real terminal (raw-ish line input via termios).
//!
//! First boot: an empty `console.password_hash` forces setting a password before
//! the menu appears (Ctrl-C cannot skip it), because the box ships with no shared
//! default password that could be left unchanged.

pub mod fields;
pub mod menu;
pub mod screens;
pub mod term;

use std::process::ExitCode;

use crate::control::client::Client;

/// Run the menu on the controlling terminal against the daemon at `socket` until the
/// terminal goes away (`appliance console`; init respawns it).
pub fn run(socket: &str, timing: menu::Timing) -> ExitCode {
    let term = term::Term::open();
    let mut m = menu::Menu::new(term, Client::new(socket));
    m.timing = timing;
    m.run();
    ExitCode::SUCCESS
}
