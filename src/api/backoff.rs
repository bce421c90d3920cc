//! Retry delays: the one jittered exponential backoff in cxpipe (HTTP retries, family
//! pauses after a 429 without `Retry-After`, download retries in `flow::fetch`, item
//! retries in `runner::backoff`), and `Retry-After` in both of its forms (delay in seconds,
//! or an HTTP date). Callers decide precedence: a server's `Retry-After` wins where given.

use std::time::{Duration, SystemTime};

use crate::api::durations::{MAX_SERVER_WAIT, clamp_seconds};

/// Exponential backoff with "equal jitter": attempt `n` waits between half and all of
/// `base * 2^n`, capped at `max`, so many workers retrying together spread out.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (0 = first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let full = self.ceiling(attempt);
        let half = full / 2;
        let spread = (full - half).as_micros() as u64;
        half + Duration::from_micros(if spread == 0 {
            0
        } else {
            rand::random_range(0..=spread)
        })
    }

    /// The longest delay [`Backoff::delay`] can return for `attempt`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(20));
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// Parses a `Retry-After` value: seconds, or an HTTP date compared with `now`. A date in
/// the past means "now" (zero); garbage, negative and non-finite values yield `None`; waits
/// longer than [`MAX_SERVER_WAIT`] are cut to it (with a warning), so no value can
/// overflow a clock.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else if let Ok(seconds) = value.parse::<f64>() {
        if !seconds.is_finite() || seconds < 0.0 {
            return None;
        }
        clamp_seconds(seconds, Duration::ZERO, MAX_SERVER_WAIT).0
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    if wait > MAX_SERVER_WAIT {
        tracing::warn!(
            retry_after = value,
            max_s = MAX_SERVER_WAIT.as_secs(),
            "Retry-After is absurdly long; waiting the maximum instead"
        );
        return Some(MAX_SERVER_WAIT);
    }
    Some(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_stay_jittered_and_capped() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        for attempt in 0..10 {
            let d = b.delay(attempt);
            let ceiling = b.ceiling(attempt);
            assert!(d >= ceiling / 2 && d <= ceiling, "{attempt}: {d:?}");
        }
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(30), Duration::from_secs(2));
        let distinct: std::collections::HashSet<_> = (0..20).map(|_| b.delay(4)).collect();
        assert!(distinct.len() > 1, "jitter varies the delay");
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(42));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(42))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(42));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        for absurd in ["1e30", "18446744073709551615", "99999999999999999999"] {
            assert_eq!(
                parse_retry_after(absurd, now),
                Some(MAX_SERVER_WAIT),
                "{absurd}"
            );
        }
        for bad in ["NaN", "inf", "-inf", "-0.5"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
        let far = httpdate::fmt_http_date(now + Duration::from_secs(10 * 365 * 86_400));
        assert_eq!(parse_retry_after(&far, now), Some(MAX_SERVER_WAIT));
    }
}
