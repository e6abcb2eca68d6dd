//! Per-server probe state machine: scheduling, timeouts, rise/fall hysteresis,
//! reply-code policy, RTT and counters. Pure: time is passed in as `now` (a
//! `Duration` since any fixed origin), so tests drive it with a fake clock.
//!
//! Rules (documented in docs and the README):
//! - one probe in flight per server; the next one is sent `interval` after the
//!   previous was sent, or right away once the previous timed out;
//! - a final reply whose code is in `accept` is a success; any other final code,
//!   a timeout, ECONNREFUSED (ICMP port unreachable) or another socket error is a
//!   failure; 1xx replies, stale, spoofed and malformed datagrams change nothing;
//! - `Unknown -> Up` after ONE success (at boot or daemon restart, a server that
//!   answers should take calls at once; flapping is not yet a concern), `Unknown ->
//!   Down` after `fall` failures, `Down -> Up` after `rise` successes in a row,
//!   `Up -> Down` after `fall` failures in a row;
//! - after a refusal the next probe goes out `REFUSED_RETRY` later instead of
//!   `interval`, while the server is not yet down, so a closed port is out after
//!   about `fall * REFUSED_RETRY` (3 x 25 ms) from the first refusal;
//! - LAN link down: every server Down at once, probing paused; link up: probe now.

use std::time::Duration;

use super::Health;
use crate::config::{CodeRange, ProbeSettings};

/// Delay before re-probing after ECONNREFUSED while the server is not yet down.
pub const REFUSED_RETRY: Duration = Duration::from_millis(25);

/// Probe policy derived from [`ProbeSettings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Probing on; off means "always Up".
    pub enabled: bool,
    /// Time between two probe sends.
    pub interval: Duration,
    /// Time to wait for a final reply.
    pub timeout: Duration,
    /// Successes in a row to come up (from Down).
    pub rise: u8,
    /// Failures in a row to go down.
    pub fall: u8,
    /// Reply codes that mean alive.
    pub accept: Vec<CodeRange>,
    /// Re-probe delay after a refusal (see [`REFUSED_RETRY`]).
    pub refused_retry: Duration,
}

impl Policy {
    /// Derive the policy; zero values are raised to 1 (validation reports them).
    pub fn from_settings(s: &ProbeSettings) -> Self {
        let mut accept: Vec<CodeRange> = s.accept.iter().copied().collect();
        if accept.is_empty() {
            accept.push(CodeRange { lo: 200, hi: 299 });
        }
        Policy {
            enabled: s.enabled,
            interval: Duration::from_millis(u64::from(s.interval_ms.max(1))),
            timeout: Duration::from_millis(u64::from(s.timeout_ms.max(1))),
            rise: s.rise.max(1),
            fall: s.fall.max(1),
            accept,
            refused_retry: REFUSED_RETRY,
        }
    }

    /// True when `code` counts as alive.
    pub fn accepts(&self, code: u16) -> bool {
        self.accept.iter().any(|r| r.contains(code))
    }
}

/// How one probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A matching final reply.
    Reply {
        /// Status code.
        code: u16,
        /// Reason phrase.
        reason: String,
    },
    /// ICMP port unreachable (ECONNREFUSED on the connected socket).
    Refused,
    /// Another socket error (host/net unreachable, ...).
    Error(String),
}

/// Probe counters of one server (since it was added).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Probes sent.
    pub sent: u64,
    /// Final replies with an accepted code.
    pub ok: u64,
    /// Final replies with a code outside the accept list.
    pub bad_code: u64,
    /// Probes without a final reply in time.
    pub timeout: u64,
    /// ECONNREFUSED (closed port).
    pub refused: u64,
    /// Other socket errors.
    pub error: u64,
    /// Provisional (1xx) replies seen.
    pub provisional: u64,
    /// Well-formed replies for another transaction or from elsewhere (stale, spoofed).
    pub unmatched: u64,
    /// Datagrams that are not valid SIP replies.
    pub malformed: u64,
    /// ICMP errors that did not prove they answer our probe or come from the server
    /// (forged, or a quote too short to check); they never fail a probe.
    #[serde(default)]
    pub icmp_ignored: u64,
}

/// Round-trip times of final replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Rtt {
    /// Last measured RTT, microseconds.
    pub last_us: Option<u64>,
    /// EWMA (alpha 1/8, like TCP SRTT), microseconds.
    pub ewma_us: Option<u64>,
    /// Maximum seen, microseconds.
    pub max_us: Option<u64>,
    /// Every RTT seen, counted in buckets (the metrics histogram).
    #[serde(default)]
    pub hist: RttHistogram,
}

/// Upper bounds (inclusive, microseconds) of the RTT histogram's buckets; a last,
/// implicit bucket counts everything slower. A LAN server answers OPTIONS in well under a
/// millisecond; the top bound is the default probe timeout.
pub const RTT_BUCKETS_US: [u64; 8] = [250, 500, 1_000, 2_500, 5_000, 10_000, 50_000, 250_000];

/// Cumulative-ready RTT histogram: per-bucket counts (not cumulative), sum and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct RttHistogram {
    /// Count per bucket of [`RTT_BUCKETS_US`], then the overflow bucket.
    pub buckets: [u64; RTT_BUCKETS_US.len() + 1],
    /// Sum of all RTTs, microseconds.
    pub sum_us: u64,
    /// Number of RTTs.
    pub count: u64,
}

impl RttHistogram {
    /// Count one RTT.
    pub fn observe(&mut self, us: u64) {
        let i = RTT_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(RTT_BUCKETS_US.len());
        self.buckets[i] = self.buckets[i].saturating_add(1);
        self.sum_us = self.sum_us.saturating_add(us);
        self.count = self.count.saturating_add(1);
    }
}

impl Rtt {
    fn record(&mut self, rtt: Duration) {
        let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
        self.hist.observe(us);
        self.last_us = Some(us);
        self.ewma_us = Some(match self.ewma_us {
            None => us,
            Some(e) => (e.saturating_mul(7).saturating_add(us)) / 8,
        });
        self.max_us = Some(self.max_us.map_or(us, |m| m.max(us)));
    }
}

/// A health change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Previous health.
    pub from: Health,
    /// New health.
    pub to: Health,
    /// Why, for people: e.g. "3 failures in a row, last: timeout after 250 ms".
    pub reason: String,
}

/// What the I/O layer should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send OPTIONS with this CSeq now (the FSM already counts it as in flight).
    Send {
        /// CSeq number to use.
        cseq: u32,
    },
    /// Nothing to do before this time (a reply may still arrive).
    WaitUntil(Duration),
    /// Probing is paused (link down or probing disabled); wait for a command.
    Paused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    cseq: u32,
    sent_at: Duration,
}

/// The state machine of one real server.
#[derive(Debug, Clone)]
pub struct ServerFsm {
    policy: Policy,
    health: Health,
    ok_run: u32,
    fail_run: u32,
    in_flight: Option<InFlight>,
    next_send: Duration,
    last_sent: Option<Duration>,
    link_up: bool,
    cseq: u32,
    counters: Counters,
    rtt: Rtt,
    last_reason: String,
}

impl ServerFsm {
    /// A new server in `Unknown`; the first probe is due at `now`.
    pub fn new(policy: Policy, now: Duration) -> Self {
        ServerFsm {
            policy,
            health: Health::Unknown,
            ok_run: 0,
            fail_run: 0,
            in_flight: None,
            next_send: now,
            last_sent: None,
            link_up: true,
            cseq: 0,
            counters: Counters::default(),
            rtt: Rtt::default(),
            last_reason: "not probed yet".into(),
        }
    }

    /// Current health.
    pub fn health(&self) -> Health {
        self.health
    }
    /// Counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }
    /// RTT figures.
    pub fn rtt(&self) -> Rtt {
        self.rtt
    }
    /// Last outcome or transition reason, for people.
    pub fn last_reason(&self) -> &str {
        &self.last_reason
    }
    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
    /// CSeq of the probe in flight, if any; replies must carry it.
    pub fn in_flight_cseq(&self) -> Option<u32> {
        self.in_flight.map(|f| f.cseq)
    }

    /// Replace the policy (config change) without resetting health or counters.
    pub fn set_policy(&mut self, policy: Policy, now: Duration) -> Option<Transition> {
        let was_enabled = self.policy.enabled;
        self.policy = policy;
        if was_enabled && !self.policy.enabled {
            self.in_flight = None;
        }
        if !was_enabled && self.policy.enabled {
            self.next_send = now;
        }
        if let Some(last) = self.last_sent {
            // A shorter interval takes effect at once.
            self.next_send = self.next_send.min(last + self.policy.interval);
        }
        None
    }

    /// Advance time: expire the probe in flight, decide what to do next.
    pub fn poll(&mut self, now: Duration) -> (Action, Option<Transition>) {
        if !self.policy.enabled {
            let t = (self.health != Health::Up).then(|| {
                self.ok_run = 0;
                self.fail_run = 0;
                self.change(Health::Up, "probing disabled".into())
            });
            return (Action::Paused, t);
        }
        if !self.link_up {
            return (Action::Paused, None);
        }
        let mut event = None;
        if let Some(f) = self.in_flight {
            let deadline = f.sent_at + self.policy.timeout;
            if now < deadline {
                return (Action::WaitUntil(deadline), None);
            }
            self.in_flight = None;
            self.counters.timeout += 1;
            let ms = self.policy.timeout.as_millis();
            event = self.failure(format!("timeout after {ms} ms"));
            self.next_send = self.next_send.max(f.sent_at + self.policy.interval);
        }
        if now < self.next_send {
            return (Action::WaitUntil(self.next_send), event);
        }
        self.cseq = self.cseq.wrapping_add(1).max(1);
        self.in_flight = Some(InFlight {
            cseq: self.cseq,
            sent_at: now,
        });
        self.last_sent = Some(now);
        self.next_send = now + self.policy.interval;
        self.counters.sent += 1;
        (Action::Send { cseq: self.cseq }, event)
    }

    /// The probe in flight ended with `outcome` at `now`. Ignored when nothing is in
    /// flight (e.g. a late event after a timeout).
    pub fn on_outcome(&mut self, now: Duration, outcome: Outcome) -> Option<Transition> {
        let f = self.in_flight.take()?;
        match outcome {
            Outcome::Reply { code, reason } => {
                self.rtt.record(now.saturating_sub(f.sent_at));
                let text = format!("{code} {reason}").trim_end().to_string();
                if self.policy.accepts(code) {
                    self.counters.ok += 1;
                    self.success(text)
                } else {
                    self.counters.bad_code += 1;
                    self.failure(format!("replied {text}"))
                }
            }
            Outcome::Refused => {
                self.counters.refused += 1;
                let t = self.failure("port unreachable (ICMP, connection refused)".into());
                if self.health != Health::Down {
                    // Confirm quickly: a closed port answers within one RTT.
                    self.next_send = now + self.policy.refused_retry;
                }
                t
            }
            Outcome::Error(e) => {
                self.counters.error += 1;
                self.failure(e)
            }
        }
    }

    /// A matching 1xx arrived: keep waiting for the final reply.
    pub fn on_provisional(&mut self) {
        self.counters.provisional += 1;
    }

    /// A datagram for another transaction, or from elsewhere, arrived.
    pub fn on_unmatched(&mut self) {
        self.counters.unmatched += 1;
    }

    /// A datagram that is not a valid SIP reply arrived.
    pub fn on_malformed(&mut self) {
        self.counters.malformed += 1;
    }

    /// An ICMP error that cannot count against the server arrived (see `icmp`).
    pub fn on_icmp_ignored(&mut self) {
        self.counters.icmp_ignored += 1;
    }

    /// LAN link state changed.
    pub fn set_link(&mut self, up: bool, now: Duration) -> Option<Transition> {
        if up == self.link_up {
            return None;
        }
        self.link_up = up;
        self.in_flight = None;
        self.ok_run = 0;
        self.fail_run = 0;
        if up {
            self.next_send = now;
            self.last_reason = "LAN link up, probing".into();
            None
        } else if self.policy.enabled && self.health != Health::Down {
            Some(self.change(Health::Down, "LAN link down".into()))
        } else {
            self.last_reason = "LAN link down".into();
            None
        }
    }

    fn success(&mut self, text: String) -> Option<Transition> {
        self.fail_run = 0;
        self.ok_run = self.ok_run.saturating_add(1);
        let needed = match self.health {
            Health::Up => {
                self.last_reason = text;
                return None;
            }
            Health::Unknown => 1,
            Health::Down => u32::from(self.policy.rise),
        };
        if self.ok_run >= needed {
            let reason = if needed == 1 {
                text
            } else {
                format!("{} successes in a row, last: {text}", self.ok_run)
            };
            Some(self.change(Health::Up, reason))
        } else {
            self.last_reason = format!("{text} ({}/{needed} to come up)", self.ok_run);
            None
        }
    }

    fn failure(&mut self, text: String) -> Option<Transition> {
        self.ok_run = 0;
        self.fail_run = self.fail_run.saturating_add(1);
        let needed = u32::from(self.policy.fall);
        if self.health != Health::Down && self.fail_run >= needed {
            let reason = if needed == 1 {
                text
            } else {
                format!("{} failures in a row, last: {text}", self.fail_run)
            };
            Some(self.change(Health::Down, reason))
        } else {
            self.last_reason = text;
            None
        }
    }

    fn change(&mut self, to: Health, reason: String) -> Transition {
        let from = self.health;
        self.health = to;
        self.last_reason = reason.clone();
        Transition { from, to, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// Fixed timings for the tests (independent of the shipped defaults).
    fn policy() -> Policy {
        Policy::from_settings(&ProbeSettings {
            interval_ms: 200,
            timeout_ms: 250,
            rise: 2,
            fall: 3,
            ..Default::default()
        })
    }

    /// The shipped defaults meet the targets of the issue: a silent server out
    /// within about 1 s, a closed port within about 100 ms, few probes per second.
    #[test]
    fn shipped_defaults_meet_detection_targets() {
        let d = Policy::from_settings(&ProbeSettings::default());
        let f = u32::from(d.fall);
        // Worst case silent: the last answered probe just before the failure, the
        // next one up to `interval` later, then `fall` timeouts back to back.
        let silent_worst = d.interval + d.timeout * f;
        assert!(silent_worst <= ms(1000), "{silent_worst:?}");
        // Closed port: next probe within `interval`, refused in ~1 RTT, then
        // `fall - 1` fast retries.
        let closed_worst = d.interval + d.refused_retry * (f - 1) + ms(2);
        assert!(closed_worst <= ms(160), "{closed_worst:?}");
        let closed_median = d.interval / 2 + d.refused_retry * (f - 1);
        assert!(closed_median <= ms(110), "{closed_median:?}");
        assert!(d.interval >= ms(100), "no more than 10 probes/s per server");
        // Check the arithmetic against the state machine itself.
        let mut fsm = ServerFsm::new(d.clone(), ms(0));
        run(&mut fsm, 0, 999, |_| Some(ok()), 0);
        let down = run(&mut fsm, 1000, 3000, |_| None, 0);
        assert!(ms(down[0].0 - 1000) <= silent_worst, "{down:?}");
    }

    fn ok() -> Outcome {
        Outcome::Reply {
            code: 200,
            reason: "OK".into(),
        }
    }

    fn code(c: u16) -> Outcome {
        Outcome::Reply {
            code: c,
            reason: "X".into(),
        }
    }

    /// Drive the FSM with a fake clock: answer each probe after `rtt` with `answer`
    /// (None = silence) and return the transitions with their times.
    fn run(
        fsm: &mut ServerFsm,
        from: u64,
        until: u64,
        mut answer: impl FnMut(u64) -> Option<Outcome>,
        rtt: u64,
    ) -> Vec<(u64, Transition)> {
        let mut out = Vec::new();
        let mut t = from;
        let mut pending: Option<(u64, Outcome)> = None;
        while t <= until {
            if let Some((at, o)) = pending.take() {
                if at <= t {
                    if let Some(tr) = fsm.on_outcome(ms(at), o) {
                        out.push((at, tr));
                    }
                } else {
                    pending = Some((at, o));
                }
            }
            let (action, tr) = fsm.poll(ms(t));
            if let Some(tr) = tr {
                out.push((t, tr));
            }
            if let Action::Send { .. } = action {
                if let Some(o) = answer(t) {
                    pending = Some((t + rtt, o));
                }
            }
            t += 1;
        }
        out
    }

    #[test]
    fn first_probe_is_immediate_and_one_success_brings_unknown_up() {
        let mut f = ServerFsm::new(policy(), ms(1000));
        assert_eq!(f.poll(ms(1000)).0, Action::Send { cseq: 1 });
        assert_eq!(f.poll(ms(1001)).0, Action::WaitUntil(ms(1250)));
        let t = f.on_outcome(ms(1001), ok()).expect("transition");
        assert_eq!((t.from, t.to), (Health::Unknown, Health::Up));
        assert_eq!(t.reason, "200 OK");
        assert_eq!(f.poll(ms(1002)).0, Action::WaitUntil(ms(1200)));
        assert_eq!(f.poll(ms(1200)).0, Action::Send { cseq: 2 });
        assert_eq!(f.rtt().last_us, Some(1000));
    }

    #[test]
    fn silent_server_goes_down_after_fall_timeouts_within_a_second() {
        let mut f = ServerFsm::new(policy(), ms(0));
        let up = run(&mut f, 0, 1000, |_| Some(ok()), 1);
        assert_eq!(up.len(), 1);
        // The probe sent at t=1000 is never answered (the run above stops first).
        let down = run(&mut f, 1001, 3000, |_| None, 1);
        assert_eq!(down.len(), 1, "{down:?}");
        let (at, tr) = &down[0];
        assert_eq!(tr.to, Health::Down);
        assert!(tr
            .reason
            .starts_with("3 failures in a row, last: timeout after 250 ms"));
        // Probes at 1000, 1250, 1500 time out at 1250, 1500, 1750 -> down at 1750.
        assert_eq!(*at, 1750);
        // Silence goes on: one timeout every 250 ms, no further events.
        assert_eq!(f.counters().timeout, 8);
    }

    #[test]
    fn detection_latency_bounds_for_silence() {
        // Whatever the phase of the failure, a silent server is down 750..=950 ms
        // after it stops answering (interval 200, timeout 250, fall 3).
        for phase in (0..200).step_by(7) {
            let mut f = ServerFsm::new(policy(), ms(0));
            run(&mut f, 0, 999 + phase, |_| Some(ok()), 0);
            let dead_at = 1000 + phase;
            let down = run(&mut f, dead_at, 4000, |_| None, 0);
            let latency = down[0].0 - dead_at;
            assert!((750..=950).contains(&latency), "phase {phase}: {latency}");
        }
    }

    #[test]
    fn closed_port_goes_down_after_fast_retries() {
        let mut f = ServerFsm::new(policy(), ms(0));
        run(&mut f, 0, 999, |_| Some(ok()), 0);
        // The probe at 1000 is refused after 1 ms RTT, retried at +25 ms.
        let down = run(&mut f, 1000, 2000, |_| Some(Outcome::Refused), 1);
        assert_eq!(down.len(), 1);
        assert_eq!(down[0].0, 1000 + 1 + 26 + 26, "{down:?}");
        assert_eq!(down[0].1.to, Health::Down);
        // Once down, refusals are retried at the normal interval, not 40/s.
        let sent_before = f.counters().sent;
        run(&mut f, 2001, 3000, |_| Some(Outcome::Refused), 1);
        assert_eq!(f.counters().sent - sent_before, 5);
    }

    #[test]
    fn rise_needs_consecutive_successes_from_down() {
        let mut f = ServerFsm::new(policy(), ms(0));
        let d = run(&mut f, 0, 1000, |_| None, 0);
        assert_eq!(
            d[0].1.to,
            Health::Down,
            "Unknown -> Down after fall failures"
        );
        assert_eq!(d[0].1.from, Health::Unknown);
        assert_eq!(d[0].0, 750);
        // One success, then a failure, then two successes: Up only after the pair.
        let mut n = 0;
        let ev = run(
            &mut f,
            1001,
            3000,
            |_| {
                n += 1;
                match n {
                    1 => Some(ok()),
                    2 => Some(code(503)),
                    _ => Some(ok()),
                }
            },
            2,
        );
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev[0].1.to, Health::Up);
        assert_eq!(ev[0].1.reason, "2 successes in a row, last: 200 OK");
        assert_eq!(f.counters().bad_code, 1);
    }

    #[test]
    fn fall_needs_consecutive_failures() {
        let mut f = ServerFsm::new(policy(), ms(0));
        run(&mut f, 0, 500, |_| Some(ok()), 1);
        assert_eq!(f.health(), Health::Up);
        // fail, fail, ok, fail, fail, ok ... never three in a row: stays up.
        let mut n = 0;
        let ev = run(
            &mut f,
            501,
            5000,
            |_| {
                n += 1;
                if n % 3 == 0 {
                    Some(ok())
                } else {
                    Some(code(503))
                }
            },
            1,
        );
        assert!(ev.is_empty(), "{ev:?}");
        assert_eq!(f.health(), Health::Up);
    }

    #[test]
    fn reply_code_policy_lists_and_ranges() {
        let mut s = ProbeSettings::default();
        s.accept.clear();
        for r in ["2xx", "404", "405"] {
            s.accept.push(r.parse().expect("range")).expect("capacity");
        }
        let p = Policy::from_settings(&s);
        for c in [200, 204, 299, 404, 405] {
            assert!(p.accepts(c), "{c}");
        }
        for c in [100, 180, 300, 403, 406, 486, 500, 503, 603] {
            assert!(!p.accepts(c), "{c}");
        }
        // Default: any 2xx only; 503 and 404 mean down.
        let d = policy();
        assert!(d.accepts(200) && d.accepts(202));
        assert!(!d.accepts(404) && !d.accepts(503));
        let mut f = ServerFsm::new(p, ms(0));
        let ev = run(&mut f, 0, 100, |_| Some(code(404)), 1);
        assert_eq!(ev[0].1.to, Health::Up);
        let ev = run(&mut f, 101, 2000, |_| Some(code(503)), 1);
        assert_eq!(ev[0].1.to, Health::Down);
        assert!(
            ev[0].1.reason.ends_with("replied 503 X"),
            "{}",
            ev[0].1.reason
        );
    }

    #[test]
    fn empty_accept_list_means_2xx() {
        let mut s = ProbeSettings::default();
        s.accept.clear();
        let p = Policy::from_settings(&s);
        assert!(p.accepts(200) && !p.accepts(404));
    }

    #[test]
    fn late_reply_after_timeout_is_ignored() {
        let mut f = ServerFsm::new(policy(), ms(0));
        assert_eq!(f.poll(ms(0)).0, Action::Send { cseq: 1 });
        let (a, _) = f.poll(ms(250));
        // Timed out at 250 and the next probe (cseq 2) went out at once.
        assert_eq!(a, Action::Send { cseq: 2 });
        assert_eq!(f.counters().timeout, 1);
        assert_eq!(f.in_flight_cseq(), Some(2));
        // The I/O layer matches replies against in_flight_cseq, so a reply to cseq 1
        // is `unmatched`; the FSM only counts it.
        f.on_unmatched();
        assert_eq!(f.health(), Health::Unknown);
        // An outcome with nothing in flight changes nothing.
        let mut g = ServerFsm::new(policy(), ms(0));
        assert_eq!(g.on_outcome(ms(1), ok()), None);
        assert_eq!(g.counters().ok, 0);
    }

    #[test]
    fn provisional_does_not_stop_the_timeout() {
        let mut f = ServerFsm::new(policy(), ms(0));
        f.poll(ms(0));
        f.on_provisional();
        let (_, t) = f.poll(ms(250));
        assert_eq!(f.counters().timeout, 1);
        assert!(t.is_none());
    }

    #[test]
    fn rtt_last_ewma_max() {
        let mut f = ServerFsm::new(policy(), ms(0));
        f.poll(ms(0));
        f.on_outcome(ms(8), ok());
        f.poll(ms(200));
        f.on_outcome(ms(200) + Duration::from_micros(16_000), ok());
        let r = f.rtt();
        assert_eq!(r.last_us, Some(16_000));
        assert_eq!(r.max_us, Some(16_000));
        assert_eq!(r.ewma_us, Some((8_000 * 7 + 16_000) / 8));
    }

    #[test]
    fn link_down_marks_down_at_once_and_link_up_probes_now() {
        let mut f = ServerFsm::new(policy(), ms(0));
        run(&mut f, 0, 500, |_| Some(ok()), 1);
        let t = f.set_link(false, ms(501)).expect("transition");
        assert_eq!(
            (t.from, t.to, t.reason.as_str()),
            (Health::Up, Health::Down, "LAN link down")
        );
        assert_eq!(f.poll(ms(600)).0, Action::Paused);
        assert_eq!(f.set_link(false, ms(601)), None);
        assert_eq!(f.set_link(true, ms(700)), None);
        assert!(matches!(f.poll(ms(700)).0, Action::Send { .. }));
        // Still needs `rise` successes after the link returns.
        f.on_outcome(ms(701), ok());
        assert_eq!(f.health(), Health::Down);
        let ev = run(&mut f, 702, 1200, |_| Some(ok()), 1);
        assert_eq!(ev[0].1.to, Health::Up);
    }

    #[test]
    fn disabled_probing_means_up_and_no_probes() {
        let s = ProbeSettings {
            enabled: false,
            ..Default::default()
        };
        let mut f = ServerFsm::new(Policy::from_settings(&s), ms(0));
        let (a, t) = f.poll(ms(0));
        assert_eq!(a, Action::Paused);
        assert_eq!(t.map(|t| t.to), Some(Health::Up));
        assert_eq!(f.poll(ms(5000)), (Action::Paused, None));
        assert_eq!(f.counters().sent, 0);
        // Re-enabling probes at once and keeps health until evidence says otherwise.
        f.set_policy(policy(), ms(6000));
        assert!(matches!(f.poll(ms(6000)).0, Action::Send { .. }));
        assert_eq!(f.health(), Health::Up);
    }

    #[test]
    fn policy_change_keeps_state() {
        let mut f = ServerFsm::new(policy(), ms(0));
        run(&mut f, 0, 500, |_| Some(ok()), 1);
        let sent = f.counters().sent;
        let mut p = policy();
        p.interval = ms(1000);
        f.set_policy(p, ms(501));
        assert_eq!(f.health(), Health::Up);
        assert_eq!(f.counters().sent, sent);
        let mut p = policy();
        p.interval = ms(50);
        f.set_policy(p, ms(502));
        assert!(matches!(f.poll(ms(502)).0, Action::Send { .. }));
    }

    #[test]
    fn fall_one_and_rise_one() {
        let s = ProbeSettings {
            rise: 1,
            fall: 1,
            ..Default::default()
        };
        let mut f = ServerFsm::new(Policy::from_settings(&s), ms(0));
        let ev = run(&mut f, 0, 300, |_| Some(code(500)), 1);
        assert_eq!(ev[0].1.to, Health::Down);
        assert_eq!(ev[0].1.reason, "replied 500 X");
    }

    #[test]
    fn socket_errors_count_as_failures() {
        let mut f = ServerFsm::new(policy(), ms(0));
        let ev = run(
            &mut f,
            0,
            2000,
            |_| Some(Outcome::Error("host unreachable".into())),
            1,
        );
        assert_eq!(ev[0].1.to, Health::Down);
        assert_eq!(ev[0].0, 401, "third error (1, 201, 401 ms)");
        assert_eq!(ev.len(), 1);
        assert_eq!(f.counters().error, 10);
    }
}

#[cfg(test)]
mod hist_tests {
    use super::*;

    #[test]
    fn rtt_histogram_buckets_are_inclusive_upper_bounds() {
        let mut h = RttHistogram::default();
        for us in [0, 250, 251, 1_000, 250_000, 250_001, u64::MAX] {
            h.observe(us);
        }
        assert_eq!(h.buckets, [2, 1, 1, 0, 0, 0, 0, 1, 2]);
        assert_eq!(h.count, 7);
        // The sum saturates instead of wrapping.
        assert_eq!(h.sum_us, u64::MAX);
        let mut r = Rtt::default();
        r.record(Duration::from_micros(700));
        assert_eq!(r.hist.buckets[2], 1);
        assert_eq!((r.hist.count, r.hist.sum_us), (1, 700));
    }
}
