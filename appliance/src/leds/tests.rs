//! LED logic against a fake sysfs tree (both backends).

use std::time::{Duration, Instant};

use super::*;
use crate::config::bounded;

fn summary(up: usize, total: usize) -> PoolSummary {
    PoolSummary {
        up,
        total,
        fault: false,
        booting: false,
        ha: HaLed::Disabled,
    }
}

#[test]
fn patterns_follow_pool_health() {
    assert_eq!(pattern_for(summary(3, 3)), Pattern::On);
    assert_eq!(pattern_for(summary(2, 3)), SLOW_BLINK);
    assert_eq!(pattern_for(summary(0, 3)), FAST_BLINK);
    assert_eq!(pattern_for(summary(0, 0)), FAST_BLINK);
    assert_eq!(
        pattern_for(PoolSummary {
            fault: true,
            ..summary(3, 3)
        }),
        FAST_BLINK
    );
    assert_eq!(
        pattern_for(PoolSummary {
            booting: true,
            ..summary(0, 3)
        }),
        BOOT_BLINK
    );
    // The three blink speeds are distinguishable.
    assert_ne!(BOOT_BLINK, SLOW_BLINK);
    assert_ne!(BOOT_BLINK, FAST_BLINK);
}

#[test]
fn roles_map_to_patterns() {
    let ok = summary(3, 3);
    assert_eq!(role_pattern(LedRole::Status, ok, false, false), Pattern::On);
    assert_eq!(role_pattern(LedRole::Status, ok, true, false), FAST_BLINK);
    assert_eq!(role_pattern(LedRole::Pool, ok, true, false), FAST_BLINK);
    assert_eq!(role_pattern(LedRole::Ha, ok, false, false), Pattern::Off);
    let ha = |h: HaLed| role_pattern(LedRole::Ha, PoolSummary { ha: h, ..ok }, false, false);
    assert_eq!(ha(HaLed::Master), Pattern::On);
    assert_eq!(ha(HaLed::Backup), SLOW_BLINK);
    assert_eq!(ha(HaLed::Fault), FAST_BLINK);
    assert_eq!(ha(HaLed::SplitBrain), SPLIT_BRAIN_BLINK);
    for other in [Pattern::On, SLOW_BLINK, FAST_BLINK, BOOT_BLINK] {
        assert_ne!(
            SPLIT_BRAIN_BLINK, other,
            "split brain must look unlike any other state"
        );
    }
    // the HA role never borrows the pool's state, nor the pool LED the HA role
    assert_eq!(
        role_pattern(
            LedRole::Ha,
            PoolSummary {
                ha: HaLed::Master,
                ..summary(0, 3)
            },
            true,
            false
        ),
        Pattern::On
    );
    assert_eq!(
        role_pattern(
            LedRole::Pool,
            PoolSummary {
                ha: HaLed::Fault,
                ..ok
            },
            false,
            false
        ),
        Pattern::On
    );
    assert_eq!(
        role_pattern(LedRole::Activity, ok, false, true),
        ACTIVITY_BLINK
    );
    assert_eq!(
        role_pattern(LedRole::Activity, ok, false, false),
        Pattern::Off
    );
    let boot = PoolSummary {
        booting: true,
        ..ok
    };
    assert_eq!(
        role_pattern(LedRole::Status, boot, false, false),
        BOOT_BLINK
    );
}

/// A kernel-like LED class device in a fake tree.
fn fake_class_led(root: &Path, name: &str, triggers: &str) -> PathBuf {
    let d = root.join("class/leds").join(name);
    std::fs::create_dir_all(&d).unwrap();
    for (f, v) in [
        ("brightness", "0"),
        ("max_brightness", "255"),
        ("trigger", triggers),
        ("delay_on", "0"),
        ("delay_off", "0"),
    ] {
        std::fs::write(d.join(f), v).unwrap();
    }
    d
}

fn class_binding(role: LedRole, name: &str) -> LedBinding {
    LedBinding {
        role,
        backend: LedBackend::Class,
        name: bounded(name),
        gpio: 0,
        active_low: false,
    }
}

fn rd(p: PathBuf) -> String {
    std::fs::read_to_string(p).unwrap().trim().to_owned()
}

#[test]
fn class_led_uses_timer_trigger_and_steady_states() {
    let t = tempfile::tempdir().unwrap();
    let d = fake_class_led(t.path(), "pool", "[none] timer heartbeat");
    let s = fake_class_led(t.path(), "status", "[none] timer");
    let mut leds = Leds::open(
        &[
            class_binding(LedRole::Pool, "pool"),
            class_binding(LedRole::Status, "status"),
        ],
        t.path(),
    )
    .unwrap();
    assert_eq!(leds.len(), 2);

    leds.show_all(
        PoolSummary {
            booting: true,
            ..summary(0, 3)
        },
        false,
        false,
    )
    .unwrap();
    assert_eq!(rd(d.join("trigger")), "timer");
    assert_eq!(rd(d.join("delay_on")), "500");
    assert_eq!(rd(d.join("delay_off")), "500");

    leds.show_all(summary(3, 3), false, false).unwrap();
    assert_eq!(rd(d.join("trigger")), "none");
    assert_eq!(rd(d.join("brightness")), "255");
    assert_eq!(rd(s.join("brightness")), "255");

    leds.show_all(summary(2, 3), false, false).unwrap();
    assert_eq!(rd(d.join("trigger")), "timer");
    assert_eq!(rd(d.join("delay_on")), "1000");
    assert_eq!(rd(s.join("trigger")), "none", "status stays steady");

    leds.show_all(summary(0, 3), false, false).unwrap();
    assert_eq!(rd(d.join("delay_on")), "100");
    assert_eq!(rd(d.join("delay_off")), "100");

    leds.show(LedRole::Pool, Pattern::Off).unwrap();
    assert_eq!(rd(d.join("trigger")), "none");
    assert_eq!(rd(d.join("brightness")), "0");
}

#[test]
fn missing_led_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let e = Leds::open(&[class_binding(LedRole::Pool, "nope")], t.path())
        .err()
        .expect("must fail");
    let msg = e.to_string();
    assert!(msg.contains("nope") && msg.contains("class/leds"), "{msg}");
}

/// Wait (bounded) until `path` has held both values.
async fn sees_toggling(path: &Path, a: &str, b: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut saw_a, mut saw_b) = (false, false);
    while Instant::now() < deadline && !(saw_a && saw_b) {
        let v = std::fs::read_to_string(path).unwrap_or_default();
        saw_a |= v.trim() == a;
        saw_b |= v.trim() == b;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    saw_a && saw_b
}

#[tokio::test]
async fn class_led_without_timer_blinks_in_software() {
    let t = tempfile::tempdir().unwrap();
    let d = fake_class_led(t.path(), "act", "[none] heartbeat");
    let mut leds = Leds::open(&[class_binding(LedRole::Activity, "act")], t.path()).unwrap();
    leds.show(LedRole::Activity, ACTIVITY_BLINK).unwrap();
    assert!(sees_toggling(&d.join("brightness"), "0", "255").await);
    leds.show(LedRole::Activity, Pattern::On).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(rd(d.join("brightness")), "255", "blink task stopped");
}

fn fake_gpio(root: &Path, n: u32) -> PathBuf {
    let g = root.join("class/gpio");
    std::fs::create_dir_all(&g).unwrap();
    std::fs::write(g.join("export"), "").unwrap();
    let d = g.join(format!("gpio{n}"));
    std::fs::create_dir_all(&d).unwrap();
    for f in ["direction", "value", "active_low"] {
        std::fs::write(d.join(f), "").unwrap();
    }
    d
}

fn gpio_binding(role: LedRole, gpio: u32, active_low: bool) -> LedBinding {
    LedBinding {
        role,
        backend: LedBackend::Gpio,
        name: bounded(""),
        gpio,
        active_low,
    }
}

#[tokio::test]
async fn gpio_led_active_low_steady_and_blinking() {
    let t = tempfile::tempdir().unwrap();
    let d = fake_gpio(t.path(), 17);
    let mut leds = Leds::open(&[gpio_binding(LedRole::Pool, 17, true)], t.path()).unwrap();
    assert_eq!(rd(d.join("active_low")), "1");
    assert_eq!(rd(d.join("direction")), "low");
    leds.show_all(summary(3, 3), false, false).unwrap();
    assert_eq!(rd(d.join("value")), "1");
    leds.show_all(summary(0, 3), false, false).unwrap();
    assert!(sees_toggling(&d.join("value"), "0", "1").await);
    leds.show(LedRole::Pool, Pattern::Off).unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(rd(d.join("value")), "0", "blink task stopped");
}

#[test]
fn gpio_blink_outside_runtime_is_an_error_not_a_panic() {
    let t = tempfile::tempdir().unwrap();
    fake_gpio(t.path(), 4);
    let mut leds = Leds::open(&[gpio_binding(LedRole::Pool, 4, false)], t.path()).unwrap();
    let e = leds.show(LedRole::Pool, SLOW_BLINK).unwrap_err();
    assert!(matches!(e, LedError::NoRuntime(_)), "{e}");
}

#[test]
fn gpio_export_that_does_not_appear_is_reported() {
    let t = tempfile::tempdir().unwrap();
    let g = t.path().join("class/gpio");
    std::fs::create_dir_all(&g).unwrap();
    std::fs::write(g.join("export"), "").unwrap();
    let e = Leds::open(&[gpio_binding(LedRole::Status, 99, false)], t.path())
        .err()
        .expect("must fail");
    assert_eq!(rd(g.join("export")), "99", "export was requested");
    assert!(e.to_string().contains("did not appear"), "{e}");
}
