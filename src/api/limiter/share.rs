//! Budgets shared by several processes (nodes) through one store, the ledger: one
//! schedule per tenant × family that every node books its send times from, in small
//! batches so the store is asked once per batch, not per request; 429 pauses and learned
//! rates are written there too, so every node follows them. The store is behind
//! [`BudgetShare`] (implemented by `crate::ledger::Ledger`); the limiter's side is in
//! `gcra.rs`. Times are microseconds since the Unix epoch (the nodes' clocks are assumed
//! to agree to well under a request interval, as NTP gives).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Slots booked at once: about this much of the family's time.
pub const BATCH_SPAN: Duration = Duration::from_millis(500);
/// Most slots booked at once.
pub const MAX_BATCH: u32 = 32;

/// What a store answered to a booking.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Grant {
    /// The first slot booked, µs since the Unix epoch; the others follow it at the
    /// interval asked for.
    pub first_us: i64,
    /// The rate (requests per second) a node last published for the family, with when it
    /// was published (µs since the epoch).
    pub learned: Option<(f64, i64)>,
}

/// A change one node tells the others.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Update {
    /// No slot before this time (µs since the epoch): the end of a 429's pause.
    pub not_before_us: Option<i64>,
    /// A learned rate (requests per second).
    pub rate: Option<f64>,
}

/// Why the shared store could not be used (the limiter then schedules locally).
#[derive(Debug, thiserror::Error)]
#[error("sharing the rate budget {family} of tenant {tenant}: {message}")]
pub struct ShareError {
    pub tenant: String,
    pub family: String,
    pub message: String,
}

/// A future returned by a [`BudgetShare`].
pub type ShareFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ShareError>> + Send + 'a>>;

/// A store several nodes book a family's send times from.
pub trait BudgetShare: Send + Sync + 'static {
    /// Books `count` slots `interval_us` apart, the first at `now_us` or after every slot
    /// booked before (by any node), whichever is later. `count = 0` books nothing and
    /// reads what was published.
    fn reserve<'a>(
        &'a self,
        tenant: &'a str,
        family: &'a str,
        count: u32,
        interval_us: i64,
        now_us: i64,
    ) -> ShareFuture<'a, Grant>;

    /// Applies `update` to the family's shared budget (at `now_us`).
    fn update<'a>(
        &'a self,
        tenant: &'a str,
        family: &'a str,
        update: Update,
        now_us: i64,
    ) -> ShareFuture<'a, ()>;
}

/// The share a tenant's families use, with the tenant's name, and where the limiter's
/// clock stands on the shared timeline (so paused and skipping test clocks map too).
#[derive(Clone)]
pub struct Shared {
    pub store: Arc<dyn BudgetShare>,
    pub tenant: String,
    anchor: Instant,
    anchor_us: i64,
}

impl Shared {
    /// `now` on the limiter's clock is the wall clock's now.
    pub fn new(store: Arc<dyn BudgetShare>, tenant: &str, now: Instant) -> Shared {
        let anchor_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        Shared {
            store,
            tenant: tenant.to_string(),
            anchor: now,
            anchor_us,
        }
    }

    /// `at` (on the limiter's clock) in µs since the Unix epoch.
    pub fn to_us(&self, at: Instant) -> i64 {
        match at.checked_duration_since(self.anchor) {
            Some(after) => self.anchor_us.saturating_add(after.as_micros() as i64),
            None => self
                .anchor_us
                .saturating_sub((self.anchor - at).as_micros() as i64),
        }
    }

    /// A time in µs since the Unix epoch on the limiter's clock (never before `now`).
    pub fn to_instant(&self, us: i64, now: Instant) -> Instant {
        let ahead = us.saturating_sub(self.to_us(now)).max(0) as u64;
        now + Duration::from_micros(ahead)
    }
}

/// How many slots to book at once at `interval`.
pub fn batch_size(interval: Duration) -> u32 {
    if interval.is_zero() {
        return MAX_BATCH;
    }
    ((BATCH_SPAN.as_secs_f64() / interval.as_secs_f64()) as u32).clamp(1, MAX_BATCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_about_half_a_second_within_bounds() {
        assert_eq!(batch_size(Duration::from_millis(50)), 10);
        assert_eq!(batch_size(Duration::from_secs(30)), 1);
        assert_eq!(batch_size(Duration::from_micros(10)), MAX_BATCH);
        assert_eq!(batch_size(Duration::ZERO), MAX_BATCH);
    }
}
