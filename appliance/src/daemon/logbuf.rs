//! A bounded in-memory ring of recent log events for the console's "recent events" view.
//!
//! The box has no persistent log storage (the root is read-only in spirit), so the
//! operator's view of recent history is this ring plus the serial console output.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// How many events the ring keeps.
pub const CAPACITY: usize = 200;

/// One recorded log event.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogEntry {
    /// Seconds since the Unix epoch.
    pub unix_s: u64,
    /// Level name (ERROR, WARN, INFO).
    pub level: String,
    /// Module path of the emitter.
    pub target: String,
    /// Message followed by `key=value` fields.
    pub text: String,
}

/// Shared handle to the ring.
#[derive(Clone, Default)]
pub struct LogRing {
    inner: Arc<Mutex<VecDeque<LogEntry>>>,
}

impl LogRing {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append an entry, dropping the oldest when full.
    pub fn push(&self, e: LogEntry) {
        // A poisoned lock only means a panic elsewhere mid-push; the data is still usable.
        let mut q = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == CAPACITY {
            q.pop_front();
        }
        q.push_back(e);
    }

    /// The newest `n` entries, oldest first.
    pub fn recent(&self, n: usize) -> Vec<LogEntry> {
        let q = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let skip = q.len().saturating_sub(n);
        q.iter().skip(skip).cloned().collect()
    }
}

struct TextVisitor(String);

impl Visit for TextVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for LogRing {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        // Debug/trace chatter would push real events out of a small ring.
        if *meta.level() > Level::INFO {
            return;
        }
        let mut v = TextVisitor(String::new());
        event.record(&mut v);
        let unix_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.push(LogEntry {
            unix_s,
            level: meta.level().to_string(),
            target: meta.target().to_string(),
            text: v.0,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::prelude::*;

    #[test]
    fn ring_keeps_newest_and_formats_fields() {
        let ring = LogRing::new();
        let sub = tracing_subscriber::registry().with(ring.clone());
        tracing::subscriber::with_default(sub, || {
            for i in 0..(CAPACITY + 5) {
                tracing::info!(server = "198.51.100.11:5060", n = i, "server down");
            }
            tracing::debug!("not kept");
        });
        let all = ring.recent(usize::MAX);
        assert_eq!(all.len(), CAPACITY);
        assert!(all[0].text.contains("n=5"), "{:?}", all[0]);
        let last = ring.recent(1);
        assert_eq!(last.len(), 1);
        assert!(last[0].text.starts_with("server down"));
        assert!(last[0].text.contains("server=198.51.100.11:5060"));
        assert_eq!(last[0].level, "INFO");
    }
}
