//! Status LEDs: pure pattern logic plus LED-class and sysfs-GPIO backends.
