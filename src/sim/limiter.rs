//! Per-family rate limits as token buckets: `requests` burst, refilled evenly over `per`.
//! A refused request learns how long until one token is back (for `Retry-After`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::config::RateLimit;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by endpoint family.
#[derive(Debug, Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    /// Takes one token from `family`'s bucket; `Err(wait)` when empty. Families without a
    /// limit always pass.
    pub fn take(
        &self,
        limits: &BTreeMap<String, RateLimit>,
        family: &str,
        now: Instant,
    ) -> Result<(), Duration> {
        let Some(limit) = limits.get(family) else {
            return Ok(());
        };
        let capacity = limit.requests as f64;
        let per_token = limit.per.as_secs_f64() / capacity;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(family.to_string()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() / per_token;
        bucket.tokens = (bucket.tokens + refill).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) * per_token))
        }
    }

    /// Forgets all buckets (after the limits change).
    pub fn reset(&self) {
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_refuses_then_refills() {
        let limits = BTreeMap::from([(
            "search".to_string(),
            RateLimit {
                requests: 3,
                per: Duration::from_secs(3),
            },
        )]);
        let limiter = Limiter::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.take(&limits, "search", t0).unwrap();
        }
        let wait = limiter.take(&limits, "search", t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        limiter
            .take(&limits, "search", t0 + Duration::from_secs(1))
            .unwrap();
        limiter.take(&limits, "other", t0).unwrap();
    }
}
