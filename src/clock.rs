//! Time and run ids, with the test overrides that make outputs exactly comparable.
//!
//! `LOOP_NOW=2026-01-01T00:00:00Z` fixes the clock (every reading returns it);
//! `LOOP_RUN_ID=NAME` fixes the id of the next run. Both exist for tests, like jj's test env.

use chrono::{DateTime, Utc};

#[derive(Clone, Debug)]
pub struct Clock {
    fixed: Option<DateTime<Utc>>,
}

impl Clock {
    pub fn from_env() -> Clock {
        // Records hold times as i64 nanoseconds: a fixed time outside 1677–2262 is ignored.
        let fixed = std::env::var("LOOP_NOW")
            .ok()
            .and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
            .filter(|t| t.timestamp_nanos_opt().is_some());
        Clock { fixed: fixed.map(|t| t.with_timezone(&Utc)) }
    }

    pub fn fixed(at: DateTime<Utc>) -> Clock {
        Clock { fixed: Some(at) }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.fixed.unwrap_or_else(Utc::now)
    }

    pub fn is_fixed(&self) -> bool {
        self.fixed.is_some()
    }
}

/// A new run id: `YYYYMMDD-HHMMSS-xxxxxx`, sortable by start time; the suffix keeps two runs
/// started in the same second apart.
pub fn new_run_id(clock: &Clock) -> String {
    if let Ok(id) = std::env::var("LOOP_RUN_ID") {
        if !id.is_empty() {
            return id;
        }
    }
    let now = clock.now();
    let mut h = blake3::Hasher::new();
    h.update(&std::process::id().to_le_bytes());
    h.update(&Utc::now().timestamp_nanos_opt().unwrap_or_default().to_le_bytes());
    let suffix: String = h.finalize().to_hex().chars().take(6).collect();
    format!("{}-{suffix}", now.format("%Y%m%d-%H%M%S"))
}
