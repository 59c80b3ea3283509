//! The wall clock: the one place driftwatch reads it (for `issued_at`, the idle watermark and
//! the HTTP API's freshness); the engine never does.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock now in epoch milliseconds.
pub fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
