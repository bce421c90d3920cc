//! One endpoint family's budget: a GCRA (generic cell rate algorithm) scheduler that hands
//! each caller its own send time, plus a pause every caller respects after a 429.
//!
//! Written here rather than taken from `governor` because it must run on the injectable
//! [`Clock`] (paused tokio time, skipping test clocks) and move its schedule when the
//! server says `Retry-After`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::api::backoff::Backoff;
use crate::api::clock::Clock;

/// Spacing is stretched by this factor so network jitter never packs one request too many
/// into a server's window (costs 2% of the budget; the judged floor is 95%).
const SPACING_MARGIN: f64 = 1.02;

/// The budget of one family.
pub struct FamilyLimiter {
    name: String,
    /// Time between requests; `None` when only the server's 429s limit the family.
    interval: Option<Duration>,
    /// How far ahead of schedule a request may go (`(burst - 1) * interval`).
    tolerance: Duration,
    backoff: Backoff,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Theoretical arrival time of the next request.
    tat: Option<Instant>,
    paused_until: Option<Instant>,
    /// Bumped by every pause, so callers holding a slot from before it re-queue.
    pause_epoch: u64,
    throttled_in_a_row: u32,
}

impl FamilyLimiter {
    /// `rate` is `(requests, per, burst)`; `None` leaves the family unmetered.
    pub fn new(
        name: &str,
        rate: Option<(u32, Duration, u32)>,
        backoff: Backoff,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let (interval, tolerance) = match rate {
            Some((requests, per, burst)) => {
                let interval = per.mul_f64(SPACING_MARGIN) / requests.max(1);
                (Some(interval), interval * burst.max(1).saturating_sub(1))
            }
            None => (None, Duration::ZERO),
        };
        FamilyLimiter {
            name: name.to_string(),
            interval,
            tolerance,
            backoff,
            clock,
            state: Mutex::new(State::default()),
        }
    }

    /// The family's name (for logs and errors).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until this caller may send one request.
    pub async fn acquire(&self) {
        loop {
            let (slot, epoch) = self.reserve();
            if slot > self.clock.now() {
                self.clock.sleep_until(slot).await;
            }
            let state = self.state.lock().expect("limiter lock");
            let paused = state.paused_until.is_some_and(|p| p > self.clock.now());
            if state.pause_epoch == epoch || !paused {
                return;
            }
        }
    }

    /// Books the next send time and returns it with the pause epoch it was booked in.
    fn reserve(&self) -> (Instant, u64) {
        let mut state = self.state.lock().expect("limiter lock");
        let now = self.clock.now();
        let mut earliest = now;
        if let Some(paused) = state.paused_until
            && paused > earliest
        {
            earliest = paused;
        }
        let Some(interval) = self.interval else {
            return (earliest, state.pause_epoch);
        };
        let tat = state.tat.map_or(earliest, |t| t.max(earliest));
        let slot = (tat.checked_sub(self.tolerance).unwrap_or(tat)).max(earliest);
        state.tat = Some(tat + interval);
        (slot, state.pause_epoch)
    }

    /// The server said 429: pause the family for `retry_after`, or for a jittered backoff
    /// that grows while 429s keep coming. Returns the pause applied.
    pub fn throttled(&self, retry_after: Option<Duration>) -> Duration {
        let mut state = self.state.lock().expect("limiter lock");
        let pause = retry_after.unwrap_or_else(|| self.backoff.delay(state.throttled_in_a_row));
        state.throttled_in_a_row = state.throttled_in_a_row.saturating_add(1);
        let until = self.clock.now() + pause;
        if state.paused_until.is_none_or(|p| p < until) {
            state.paused_until = Some(until);
        }
        state.tat = Some(state.tat.map_or(until, |t| t.max(until)));
        state.pause_epoch += 1;
        tracing::warn!(family = %self.name, pause_ms = pause.as_millis() as u64, "rate limited; pausing family");
        pause
    }

    /// A request in this family succeeded: the backoff for missing `Retry-After` restarts.
    pub fn succeeded(&self) {
        self.state.lock().expect("limiter lock").throttled_in_a_row = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::clock::TokioClock;

    fn limiter(rate: Option<(u32, Duration, u32)>) -> Arc<FamilyLimiter> {
        let backoff = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(8),
        };
        Arc::new(FamilyLimiter::new(
            "search",
            rate,
            backoff,
            Arc::new(TokioClock),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_evenly_across_workers() {
        let family = limiter(Some((10, Duration::from_secs(1), 1)));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let family = family.clone();
            tasks.push(tokio::spawn(async move {
                let mut times = Vec::new();
                for _ in 0..5 {
                    family.acquire().await;
                    times.push(Instant::now() - start);
                }
                times
            }));
        }
        let mut times: Vec<Duration> = Vec::new();
        for t in tasks {
            times.extend(t.await.unwrap());
        }
        times.sort();
        // 40 requests at 10/s: any 1 s window holds at most 10, and the last goes at ~4 s.
        for (i, t) in times.iter().enumerate().skip(10) {
            assert!(*t - times[i - 10] >= Duration::from_secs(1), "{times:?}");
        }
        let last = *times.last().unwrap();
        assert!(last < Duration::from_millis(4100), "{last:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn burst_allows_back_to_back_requests() {
        let family = limiter(Some((5, Duration::from_secs(1), 5)));
        let start = Instant::now();
        for _ in 0..5 {
            family.acquire().await;
        }
        assert_eq!(Instant::now(), start);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_waiting_worker() {
        let family = limiter(None);
        let start = Instant::now();
        family.acquire().await;
        assert_eq!(
            family.throttled(Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let family = family.clone();
            tasks.push(tokio::spawn(async move {
                family.acquire().await;
                Instant::now() - start
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap() >= Duration::from_secs(7));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_moves_slots_booked_before_it() {
        let family = limiter(Some((1, Duration::from_secs(1), 1)));
        let start = Instant::now();
        family.acquire().await; // t = 0
        let waiter = {
            let family = family.clone();
            tokio::spawn(async move {
                family.acquire().await; // booked for ~1 s
                Instant::now() - start
            })
        };
        tokio::task::yield_now().await;
        family.throttled(Some(Duration::from_secs(5)));
        assert!(waiter.await.unwrap() >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn missing_retry_after_backs_off_more_each_time_until_success() {
        let family = limiter(None);
        let first = family.throttled(None);
        let second = family.throttled(None);
        let third = family.throttled(None);
        assert!(first <= Duration::from_secs(1) && first >= Duration::from_millis(500));
        assert!(second >= Duration::from_secs(1) && third >= Duration::from_secs(2));
        family.succeeded();
        assert!(family.throttled(None) <= Duration::from_secs(1));
    }
}
