//! The local control socket: protocol, daemon-side server and admin CLI client.
//!
//! - [`proto`]: JSON-lines `Request`/`Response` types.
//! - [`server`]: `serve(path, Arc<dyn Handler>)` for the daemon.
//! - [`client`]: blocking client used by the console and the admin CLI.
//! - [`session`]: pure running/candidate/saved config state with apply/save/revert rules.
//! - [`password`]: argon2id hashing and the login back-off.
//! - `fake`: in-memory daemon for tests (feature `testing`; never in the firmware).

pub mod client;
#[cfg(any(test, feature = "testing"))]
pub mod fake;
pub mod password;
pub mod proto;
pub mod server;
pub mod session;
