//! Wall-clock time for the control and observation paths (not the packet
//! path, which keeps its own monotonic clock).

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds (ms since 1970-01-01T00:00:00Z); 0 if the
/// system clock is set before 1970. Saturates at `u64::MAX` ms, which is
/// some 584 million years away.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_ms_is_after_2020_and_monotone_enough() {
        let a = unix_ms();
        assert!(a > 1_577_836_800_000, "{a}"); // 2020-01-01
        let b = unix_ms();
        assert!(b >= a || a - b < 1000);
    }
}
