//! The local control socket: protocol, daemon-side server and admin CLI client.
