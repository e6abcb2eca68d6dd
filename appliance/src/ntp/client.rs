//! The SNTP client's decisions (pure, fake-clock tested): which sample to trust,
//! whether to step or slew the clock, when the clock counts as unsynced, and the
//! status shown by `status --json` and the console.

use std::net::Ipv4Addr;

use super::packet::Sample;

/// Offsets at or above this are stepped (set at once); smaller ones are slewed.
pub const STEP_THRESHOLD_US: i64 = 128_000;
/// Rounds in a row without any usable reply after which a synced clock counts as unsynced.
pub const UNSYNC_AFTER_ROUNDS: u32 = 4;

/// What to do to the system clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adjust {
    /// Nothing (no usable sample).
    None,
    /// Set the clock: add this many microseconds at once.
    Step(i64),
    /// Slew the clock gradually by this many microseconds.
    Slew(i64),
}

/// One server's last result, for status.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, Default)]
pub struct ServerStatus {
    /// Server address.
    pub address: String,
    /// "ok", "error" or "pending" (not asked yet).
    pub state: String,
    /// Why the last request failed, in words.
    #[serde(default)]
    pub error: Option<String>,
    /// Stratum of the last good reply.
    #[serde(default)]
    pub stratum: Option<u8>,
    /// Offset measured by the last good reply, milliseconds.
    #[serde(default)]
    pub offset_ms: Option<f64>,
    /// Round-trip delay of the last good reply, milliseconds.
    #[serde(default)]
    pub delay_ms: Option<f64>,
}

/// The clock's sync state for `status --json` (and metrics).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, Default)]
pub struct NtpStatus {
    /// "off" (no server configured), "unsynced" or "synced".
    pub state: String,
    /// The server the clock was last synced to.
    #[serde(default)]
    pub server: Option<String>,
    /// The offset corrected at the last sync, milliseconds.
    #[serde(default)]
    pub offset_ms: Option<f64>,
    /// Wall-clock time of the last sync, seconds since the epoch.
    #[serde(default)]
    pub last_sync_unix: Option<u64>,
    /// Successful syncs since the settings last changed.
    pub syncs: u64,
    /// Clock steps since the settings last changed.
    pub steps: u64,
    /// Per-server results.
    pub servers: Vec<ServerStatus>,
}

/// The client's state across rounds.
#[derive(Clone, Debug)]
pub struct Client {
    status: NtpStatus,
    failed_rounds: u32,
}

impl Client {
    /// A client for `servers` (none = off).
    pub fn new(servers: &[Ipv4Addr]) -> Client {
        Client {
            status: NtpStatus {
                state: if servers.is_empty() {
                    "off"
                } else {
                    "unsynced"
                }
                .into(),
                servers: servers
                    .iter()
                    .map(|a| ServerStatus {
                        address: a.to_string(),
                        state: "pending".into(),
                        ..ServerStatus::default()
                    })
                    .collect(),
                ..NtpStatus::default()
            },
            failed_rounds: 0,
        }
    }

    /// The status now.
    pub fn status(&self) -> &NtpStatus {
        &self.status
    }

    /// True when synced.
    pub fn synced(&self) -> bool {
        self.status.state == "synced"
    }

    /// One round's results (one per server, in config order) at local time `now_unix_us`
    /// (before any adjustment). Picks the reply with the lowest delay (ties: lower stratum,
    /// then config order) and says how to adjust the clock.
    pub fn on_round(
        &mut self,
        now_unix_us: i64,
        results: &[(Ipv4Addr, Result<Sample, String>)],
    ) -> Adjust {
        let mut best: Option<(Ipv4Addr, Sample)> = None;
        for (addr, r) in results {
            let Some(st) = self
                .status
                .servers
                .iter_mut()
                .find(|s| s.address == addr.to_string())
            else {
                continue;
            };
            match r {
                Ok(s) => {
                    st.state = "ok".into();
                    st.error = None;
                    st.stratum = Some(s.stratum);
                    st.offset_ms = Some(s.offset_us as f64 / 1000.0);
                    st.delay_ms = Some(s.delay_us as f64 / 1000.0);
                    let better =
                        best.is_none_or(|(_, b)| (s.delay_us, s.stratum) < (b.delay_us, b.stratum));
                    if better {
                        best = Some((*addr, *s));
                    }
                }
                Err(e) => {
                    st.state = "error".into();
                    st.error = Some(e.clone());
                }
            }
        }
        let Some((addr, s)) = best else {
            self.failed_rounds = self.failed_rounds.saturating_add(1);
            if self.synced() && self.failed_rounds >= UNSYNC_AFTER_ROUNDS {
                self.status.state = "unsynced".into();
            }
            return Adjust::None;
        };
        self.failed_rounds = 0;
        self.status.state = "synced".into();
        self.status.server = Some(addr.to_string());
        self.status.offset_ms = Some(s.offset_us as f64 / 1000.0);
        self.status.syncs += 1;
        let after = now_unix_us.saturating_add(s.offset_us);
        self.status.last_sync_unix = Some((after.max(0) / 1_000_000) as u64);
        if s.offset_us.abs() >= STEP_THRESHOLD_US {
            self.status.steps += 1;
            Adjust::Step(s.offset_us)
        } else {
            Adjust::Slew(s.offset_us)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 60);
    const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 61);

    fn ok(offset_us: i64, delay_us: i64, stratum: u8) -> Result<Sample, String> {
        Ok(Sample {
            offset_us,
            delay_us,
            stratum,
        })
    }

    #[test]
    fn off_without_servers_and_pending_before_the_first_round() {
        assert_eq!(Client::new(&[]).status().state, "off");
        let c = Client::new(&[A, B]);
        assert_eq!(c.status().state, "unsynced");
        assert_eq!(c.status().servers[1].state, "pending");
    }

    #[test]
    fn boot_at_1970_steps_then_small_offsets_slew() {
        let mut c = Client::new(&[A, B]);
        let now = 20_000_000; // 20 s after the epoch
        let off = 1_795_874_753_000_000;
        let adj = c.on_round(
            now,
            &[(A, ok(off, 900, 8)), (B, Err("no reply within 1 s".into()))],
        );
        assert_eq!(adj, Adjust::Step(off));
        let st = c.status();
        assert_eq!(st.state, "synced");
        assert_eq!(st.server.as_deref(), Some("198.51.100.60"));
        assert_eq!(st.last_sync_unix, Some(1_795_874_773));
        assert_eq!((st.syncs, st.steps), (1, 1));
        assert_eq!(st.servers[1].state, "error");
        assert_eq!(st.servers[1].error.as_deref(), Some("no reply within 1 s"));
        let adj = c.on_round(
            1_795_874_837_000_000,
            &[(A, ok(-2_000, 900, 8)), (B, Err("x".into()))],
        );
        assert_eq!(adj, Adjust::Slew(-2_000));
        assert_eq!(c.status().steps, 1);
        assert_eq!(
            c.on_round(0, &[(A, ok(STEP_THRESHOLD_US, 1, 8))]),
            Adjust::Step(STEP_THRESHOLD_US)
        );
        assert_eq!(
            c.on_round(0, &[(A, ok(-STEP_THRESHOLD_US + 1, 1, 8))]),
            Adjust::Slew(-STEP_THRESHOLD_US + 1)
        );
    }

    #[test]
    fn the_lowest_delay_wins_then_the_lower_stratum() {
        let mut c = Client::new(&[A, B]);
        assert_eq!(
            c.on_round(0, &[(A, ok(500, 5_000, 2)), (B, ok(700, 1_000, 3))]),
            Adjust::Slew(700)
        );
        assert_eq!(c.status().server.as_deref(), Some("198.51.100.61"));
        assert_eq!(
            c.on_round(0, &[(A, ok(500, 1_000, 2)), (B, ok(700, 1_000, 3))]),
            Adjust::Slew(500)
        );
    }

    #[test]
    fn unsynced_only_after_several_failed_rounds() {
        let mut c = Client::new(&[A]);
        c.on_round(0, &[(A, ok(10, 1, 8))]);
        for _ in 0..UNSYNC_AFTER_ROUNDS - 1 {
            assert_eq!(c.on_round(0, &[(A, Err("no reply".into()))]), Adjust::None);
            assert!(c.synced());
        }
        c.on_round(0, &[(A, Err("no reply".into()))]);
        assert_eq!(c.status().state, "unsynced");
        // The last sync stays on record.
        assert_eq!(c.status().server.as_deref(), Some("198.51.100.60"));
        // Unknown servers in results are ignored.
        assert_eq!(c.on_round(0, &[(B, ok(1, 1, 1))]), Adjust::None);
    }
}
