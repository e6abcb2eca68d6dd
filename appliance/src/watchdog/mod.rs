//! Hardware watchdog: kicked only while the critical tasks are alive.
