//! SIP OPTIONS health probing with rise/fall hysteresis.
