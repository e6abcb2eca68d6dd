//! The one way a test says it cannot run here. In CI (`CI=true`) or with
//! `APPLIANCE_STRICT=1` (tests/run.sh --strict) a test that cannot run is a
//! failure, so this panics with the reason; elsewhere it prints the reason loudly
//! and the caller returns. Shared by the unit tests (`crate::test_skip`) and the
//! integration tests (included by path from tests/probe_common).
#![allow(dead_code)]

/// Whether a test that cannot run must fail: `CI=true` or `APPLIANCE_STRICT=1`.
pub fn strict_from_env() -> bool {
    let set = |k: &str, yes: &[&str]| std::env::var(k).is_ok_and(|v| yes.contains(&v.as_str()));
    set("CI", &["true", "1"]) || set("APPLIANCE_STRICT", &["1", "true"])
}

/// Reports that the calling test cannot run for `why`: panics in CI or strict mode,
/// otherwise prints a loud `SKIPPED` banner. The caller returns after it.
pub fn skip(why: &str) {
    skip_in(strict_from_env(), why);
}

/// [`skip`] with the mode given, so both modes can be tested without touching the
/// process environment. Returns the banner it printed.
pub fn skip_in(strict: bool, why: &str) -> String {
    if strict {
        panic!("test cannot run (a skip is a failure in CI / APPLIANCE_STRICT=1): {why}");
    }
    let banner = format!("\n********\nSKIPPED (passes here, FAILS in CI): {why}\n********");
    eprintln!("{banner}");
    banner
}

#[cfg(test)]
mod tests {
    use super::skip_in;

    #[test]
    fn lenient_mode_prints_the_reason_and_returns() {
        let b = skip_in(false, "sipp not installed");
        assert!(b.contains("SKIPPED"), "{b}");
        assert!(b.contains("sipp not installed"), "{b}");
    }

    #[test]
    #[should_panic(
        expected = "test cannot run (a skip is a failure in CI / APPLIANCE_STRICT=1): sipp not installed"
    )]
    fn strict_mode_fails_with_the_reason() {
        skip_in(true, "sipp not installed");
    }
}
