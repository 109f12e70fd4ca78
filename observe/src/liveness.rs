//! Worker liveness from the slot table's heartbeats: the one place that
//! decides when a dataplane worker counts as stalled, for `/health` and
//! `tern_worker_up` alike. Imports nothing from the rest of the crate.

/// A worker whose heartbeat is older than this (ms) counts as stalled:
/// workers tick every 100 ms.
pub const STALE_MS: u64 = 2000;

/// How old heartbeat `heartbeat_ms` (Unix ms, 0 for never) is at Unix time
/// `now_ms`, ms; `None` if the worker never ticked. A heartbeat from the
/// future is 0 ms old.
pub fn heartbeat_age(heartbeat_ms: u64, now_ms: u64) -> Option<u64> {
    (heartbeat_ms != 0).then(|| now_ms.saturating_sub(heartbeat_ms))
}

/// Whether a worker with heartbeat `heartbeat_ms` (Unix ms, 0 for never)
/// is alive at Unix time `now_ms`: it ticked, at most [`STALE_MS`] ago.
pub fn is_alive(heartbeat_ms: u64, now_ms: u64) -> bool {
    heartbeat_age(heartbeat_ms, now_ms).is_some_and(|a| a <= STALE_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_after_two_seconds() {
        assert_eq!(heartbeat_age(0, 5000), None);
        assert!(!is_alive(0, 5000));
        assert!(is_alive(1000, 1000 + STALE_MS));
        assert!(!is_alive(1000, 1001 + STALE_MS));
        assert_eq!(heartbeat_age(9000, 5000), Some(0));
        assert!(is_alive(9000, 5000));
    }
}
