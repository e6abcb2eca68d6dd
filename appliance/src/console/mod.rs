//! The pfSense-style serial console menu (a client of the control socket).
