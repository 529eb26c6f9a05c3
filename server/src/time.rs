//! Wall-clock time, for record timestamps only: the protocol never orders by it (events are
//! ordered by their Lamport clock, elections by epochs and monotonic deadlines).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
