//! Item retry delays: the shared [`Backoff`] with item attempts counted from 1.

use std::time::Duration;

use crate::api::backoff::Backoff;

/// Delay before attempt `attempt + 1` (attempt ≥ 1): `base · 2^(attempt-1)`, capped, then
/// jittered into [50%, 100%] so retries of many items spread out.
pub fn retry_delay(base: Duration, cap: Duration, attempt: u32) -> Duration {
    Backoff { base, max: cap }.delay(attempt.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_stay_jittered_and_capped() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(1);
        for attempt in 1..=10 {
            let d = retry_delay(base, cap, attempt);
            let full = (base * 2u32.pow(attempt - 1)).min(cap);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
    }
}
