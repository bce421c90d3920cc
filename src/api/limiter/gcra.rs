//! One endpoint family's budget: a GCRA (generic cell rate algorithm) scheduler that hands
//! each caller its own send time, plus a pause every caller respects after a 429. A family
//! nobody configured learns its rate (`adaptive.rs`); with a shared store attached, send
//! times are booked from the schedule every node shares (`share.rs`).
//!
//! Written here rather than taken from `governor` because it must run on the injectable
//! [`Clock`] (paused tokio time, skipping test clocks) and move its schedule when the
//! server says `Retry-After`.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use tokio::time::Instant;

use super::adaptive::Estimator;
use super::headers::ServerLimits;
use super::share::{Shared, Update, batch_size};
use crate::api::backoff::Backoff;
use crate::api::clock::Clock;

/// Spacing is stretched by this factor so network jitter never packs one request too many
/// into a server's window (costs 2% of the budget; the judged floor is 95%).
const SPACING_MARGIN: f64 = 1.02;

/// How often an unmetered family of a shared budget looks for a rate another node learned.
const SHARED_RATE_POLL: Duration = Duration::from_secs(10);

/// Header resets are whole seconds (rounded up): once a rate is known, a `Remaining: 0`
/// pauses for the reset less this much, so a family paced at the server's rate does not
/// lose the next window.
const RESET_GRANULARITY: Duration = Duration::from_secs(1);

/// The budget of one family.
pub struct FamilyLimiter {
    name: String,
    /// How far ahead of schedule a request may go (`(burst - 1) * interval`).
    tolerance: Duration,
    backoff: Backoff,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// The tenant's shared budget store, once one is attached ([`super::RateBudgets::share`]).
    share: Arc<OnceLock<Shared>>,
    /// One booking from the shared store at a time.
    booking: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    /// Time between requests; `None` while only the server's 429s limit the family.
    interval: Option<Duration>,
    /// The learned rate of a family nobody configured.
    estimator: Option<Estimator>,
    /// Theoretical arrival time of the next request.
    tat: Option<Instant>,
    paused_until: Option<Instant>,
    /// Bumped by every pause, so callers holding a slot from before it re-queue.
    pause_epoch: u64,
    throttled_in_a_row: u32,
    /// Slots booked from the shared budget and not handed out yet.
    batch: Option<Batch>,
    /// When an unmetered shared family last read the shared rate.
    last_poll: Option<Instant>,
    /// Publication time (µs since the epoch) of the last shared rate seen or published.
    shared_rate_at: i64,
}

/// Slots of the shared schedule this node holds: `left` of them from `next`, `interval` apart.
struct Batch {
    next: Instant,
    interval: Duration,
    left: u32,
}

impl State {
    fn earliest(&self, now: Instant) -> Instant {
        self.paused_until.map_or(now, |p| p.max(now))
    }

    /// A caller got `slot` at `now`: the learned rate may grow (it had to wait).
    fn learn(&mut self, now: Instant, slot: Instant) {
        if let Some(est) = &mut self.estimator {
            est.on_reserve(now, slot > now);
            self.interval = est.interval();
        }
    }

    /// Starts a pause until `until` (slots booked before it re-queue).
    fn pause(&mut self, until: Instant) {
        if self.paused_until.is_none_or(|p| p < until) {
            self.paused_until = Some(until);
        }
        self.tat = Some(self.tat.map_or(until, |t| t.max(until)));
        self.pause_epoch += 1;
        // Shared slots booked before the pause would all go at its end.
        self.batch = None;
    }

    /// Adopts a rate another node published after the last one seen.
    fn adopt(&mut self, learned: Option<(f64, i64)>) {
        let Some((rate, at)) = learned else {
            return;
        };
        if at <= self.shared_rate_at {
            return;
        }
        self.shared_rate_at = at;
        if let Some(est) = &mut self.estimator {
            est.adopt(rate);
            self.interval = est.interval();
        }
    }
}

impl FamilyLimiter {
    /// `rate` is `(requests, per, burst)`; `None` leaves the family to learn its rate
    /// from the server (see `adaptive.rs`), or unmetered when `adaptive` is false.
    pub fn new(
        name: &str,
        rate: Option<(u32, Duration, u32)>,
        backoff: Backoff,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::with_share(name, rate, true, backoff, clock, Arc::default())
    }

    /// [`FamilyLimiter::new`] with the tenant's shared budget cell.
    pub(super) fn with_share(
        name: &str,
        rate: Option<(u32, Duration, u32)>,
        adaptive: bool,
        backoff: Backoff,
        clock: Arc<dyn Clock>,
        share: Arc<OnceLock<Shared>>,
    ) -> Self {
        let mut state = State::default();
        let mut tolerance = Duration::ZERO;
        match rate {
            Some((requests, per, burst)) => {
                let interval = per.mul_f64(SPACING_MARGIN) / requests.max(1);
                state.interval = Some(interval);
                tolerance = interval * burst.max(1).saturating_sub(1);
            }
            None if adaptive => state.estimator = Some(Estimator::default()),
            None => {}
        }
        FamilyLimiter {
            name: name.to_string(),
            tolerance,
            backoff,
            clock,
            state: Mutex::new(state),
            share,
            booking: tokio::sync::Mutex::new(()),
        }
    }

    /// The family's name (for logs and errors).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rate the family learned (requests per second), if it learns and has learned.
    pub fn learned_rate(&self) -> Option<f64> {
        let state = self.state.lock().expect("limiter lock");
        state.estimator.as_ref().and_then(Estimator::rate)
    }

    /// Waits until this caller may send one request.
    pub async fn acquire(&self) {
        loop {
            let (slot, epoch) = match self.share.get() {
                Some(shared) => self.reserve_shared(shared).await,
                None => self.reserve(),
            };
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
        let earliest = state.earliest(now);
        let Some(interval) = state.interval else {
            state.learn(now, earliest);
            return (earliest, state.pause_epoch);
        };
        let tat = state.tat.map_or(earliest, |t| t.max(earliest));
        let slot = (tat.checked_sub(self.tolerance).unwrap_or(tat)).max(earliest);
        state.tat = Some(tat + interval);
        state.learn(now, slot);
        (slot, state.pause_epoch)
    }

    /// [`FamilyLimiter::reserve`] from the shared schedule: a slot of the batch this node
    /// holds, else a new batch booked from the store (one booking at a time). When the
    /// store fails, the local schedule stands in (and says so).
    async fn reserve_shared(&self, shared: &Shared) -> (Instant, u64) {
        if let Some(taken) = self.take_from_batch() {
            return taken;
        }
        let unmetered = self.state.lock().expect("limiter lock").interval.is_none();
        if unmetered {
            self.poll_shared_rate(shared).await;
            return self.reserve();
        }
        let _booking = self.booking.lock().await;
        if let Some(taken) = self.take_from_batch() {
            return taken;
        }
        let Some(interval) = self.state.lock().expect("limiter lock").interval else {
            return self.reserve();
        };
        let count = batch_size(interval);
        let interval_us = interval.as_micros().max(1) as i64;
        let now_us = shared.to_us(self.clock.now());
        let booked = shared
            .store
            .reserve(&shared.tenant, &self.name, count, interval_us, now_us)
            .await;
        let grant = match booked {
            Ok(grant) => grant,
            Err(e) => {
                tracing::warn!(family = %self.name, error = %e, "shared rate budget unavailable; scheduling this request locally");
                return self.reserve();
            }
        };
        let mut state = self.state.lock().expect("limiter lock");
        let now = self.clock.now();
        let first = shared.to_instant(grant.first_us, now);
        state.adopt(grant.learned);
        state.batch = Some(Batch {
            next: first + interval,
            interval,
            left: count - 1,
        });
        let slot = (first.checked_sub(self.tolerance).unwrap_or(first)).max(state.earliest(now));
        state.learn(now, slot);
        (slot, state.pause_epoch)
    }

    /// The next slot of the held batch, if any is left.
    fn take_from_batch(&self) -> Option<(Instant, u64)> {
        let mut state = self.state.lock().expect("limiter lock");
        let now = self.clock.now();
        let earliest = state.earliest(now);
        let batch = state.batch.as_mut().filter(|b| b.left > 0)?;
        let next = batch.next;
        batch.next += batch.interval;
        batch.left -= 1;
        let slot = (next.checked_sub(self.tolerance).unwrap_or(next)).max(earliest);
        state.learn(now, slot);
        Some((slot, state.pause_epoch))
    }

    /// An unmetered family of a shared budget reads, now and then, whether another node
    /// learned a rate. Never waits: when a booking is under way, it goes on unmetered.
    async fn poll_shared_rate(&self, shared: &Shared) {
        {
            let mut state = self.state.lock().expect("limiter lock");
            let now = self.clock.now();
            if state.estimator.is_none()
                || state
                    .last_poll
                    .is_some_and(|t| now.saturating_duration_since(t) < SHARED_RATE_POLL)
            {
                return;
            }
            state.last_poll = Some(now);
        }
        let Ok(_booking) = self.booking.try_lock() else {
            return;
        };
        let now_us = shared.to_us(self.clock.now());
        match shared
            .store
            .reserve(&shared.tenant, &self.name, 0, 0, now_us)
            .await
        {
            Ok(grant) => self
                .state
                .lock()
                .expect("limiter lock")
                .adopt(grant.learned),
            Err(e) => {
                tracing::warn!(family = %self.name, error = %e, "cannot read the shared rate budget")
            }
        }
    }

    /// Tells the other nodes (in the background; a failure is logged, the local budget
    /// holds regardless).
    fn publish(&self, update: Update) {
        let Some(shared) = self.share.get().cloned() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let family = self.name.clone();
        let now_us = shared.to_us(self.clock.now());
        runtime.spawn(async move {
            if let Err(e) = shared
                .store
                .update(&shared.tenant, &family, update, now_us)
                .await
            {
                tracing::warn!(%family, error = %e, "cannot publish to the shared rate budget");
            }
        });
    }

    /// The server said 429: pause the family for `retry_after`, or for a jittered backoff
    /// that grows while 429s keep coming. Returns the pause applied.
    pub fn throttled(&self, retry_after: Option<Duration>) -> Duration {
        let mut state = self.state.lock().expect("limiter lock");
        let now = self.clock.now();
        let during_pause = state.paused_until.is_some_and(|p| p > now);
        let pause = retry_after.unwrap_or_else(|| self.backoff.delay(state.throttled_in_a_row));
        state.throttled_in_a_row = state.throttled_in_a_row.saturating_add(1);
        state.pause(now + pause);
        let shared = self.share.get();
        let mut update = Update {
            // A 429 answered during a pause adds nothing the others do not know.
            not_before_us: shared
                .filter(|_| !during_pause)
                .map(|s| s.to_us(now + pause)),
            rate: None,
        };
        if let Some(est) = &mut state.estimator
            && est.on_throttled(now, pause, during_pause)
        {
            update.rate = est.rate();
            state.interval = est.interval();
            state.shared_rate_at = shared.map_or(0, |s| s.to_us(now));
        }
        let learned = state.estimator.as_ref().and_then(Estimator::rate);
        drop(state);
        tracing::warn!(family = %self.name, pause_ms = pause.as_millis() as u64, learned_rate = learned, "rate limited; pausing family");
        if update != Update::default() {
            self.publish(update);
        }
        pause
    }

    /// Rate-limit headers of a response in this family: a family that learns adopts a
    /// stated limit per window, and pauses when `Remaining` reaches 0.
    pub fn observe(&self, headers: &HeaderMap) {
        if self.state.lock().expect("limiter lock").estimator.is_none() {
            return;
        }
        let limits = ServerLimits::parse(headers, SystemTime::now());
        if limits.is_empty() {
            return;
        }
        let mut state = self.state.lock().expect("limiter lock");
        let now = self.clock.now();
        let had_rate = state.interval.is_some();
        let shared = self.share.get();
        let mut update = Update::default();
        if let Some(est) = &mut state.estimator
            && est.on_headers(&limits)
        {
            update.rate = est.rate();
            state.interval = est.interval();
            state.shared_rate_at = shared.map_or(0, |s| s.to_us(now));
            tracing::debug!(family = %self.name, rate = update.rate, "rate stated by the server's headers");
        }
        if limits.remaining == Some(0)
            && let Some(reset) = limits.reset
        {
            let pause = if had_rate {
                reset.saturating_sub(RESET_GRANULARITY)
            } else {
                reset
            };
            if !pause.is_zero() && state.paused_until.is_none_or(|p| p < now + pause) {
                state.pause(now + pause);
                update.not_before_us = shared.map(|s| s.to_us(now + pause));
            }
        }
        drop(state);
        if update != Update::default() {
            self.publish(update);
        }
    }

    /// A request in this family succeeded: the backoff for missing `Retry-After` restarts.
    pub fn succeeded(&self) {
        let mut state = self.state.lock().expect("limiter lock");
        state.throttled_in_a_row = 0;
        if let Some(est) = &mut state.estimator {
            est.on_success();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::clock::TokioClock;
    use crate::api::limiter::share::{BudgetShare, Grant, ShareFuture};

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
    async fn a_family_nobody_configured_paces_at_the_rate_it_learned() {
        let family = limiter(None);
        let start = Instant::now();
        // A burst of 20 in the first 100 ms, then a 429 until the window ends at 1 s.
        for _ in 0..20 {
            family.acquire().await;
            family.succeeded();
        }
        tokio::time::advance(Duration::from_millis(100)).await;
        family.throttled(Some(Duration::from_millis(900)));
        let mut times = Vec::new();
        for _ in 0..10 {
            family.acquire().await;
            times.push(Instant::now() - start);
        }
        // 20 per second learned: spaced about 50 ms from the pause's end (growing a
        // little while callers queue), not all at once.
        assert!(times[0] >= Duration::from_secs(1), "{times:?}");
        let spacing = times[9] - times[0];
        assert!(
            spacing >= Duration::from_millis(400) && spacing <= Duration::from_millis(460),
            "{times:?}"
        );
        let learned = family.learned_rate().unwrap();
        assert!((20.0..23.0).contains(&learned), "{learned}");
    }

    #[tokio::test(start_paused = true)]
    async fn stated_limits_set_the_rate_and_an_empty_window_pauses() {
        let family = limiter(None);
        let mut headers = HeaderMap::new();
        headers.insert("ratelimit-limit", "10".parse().unwrap());
        headers.insert("ratelimit-remaining", "0".parse().unwrap());
        headers.insert("ratelimit-reset", "3".parse().unwrap());
        headers.insert("ratelimit-policy", "10;w=1".parse().unwrap());
        let start = Instant::now();
        family.observe(&headers);
        let mut times = Vec::new();
        for _ in 0..11 {
            family.acquire().await;
            times.push(Instant::now() - start);
        }
        // Nothing before the window resets; then 10 per second (less the 2 % margin).
        assert!(times[0] >= Duration::from_secs(3), "{times:?}");
        let ten = times[10] - times[0];
        assert!(
            ten >= Duration::from_millis(1000) && ten <= Duration::from_millis(1030),
            "{times:?}"
        );
        // A configured family keeps its configured budget whatever the headers say.
        let configured = limiter(Some((1, Duration::from_secs(1), 1)));
        configured.observe(&headers);
        assert_eq!(configured.learned_rate(), None);
        let before = Instant::now();
        configured.acquire().await;
        configured.acquire().await;
        assert!(Instant::now() - before >= Duration::from_secs(1));
    }

    /// An in-memory shared store that behaves as the ledger's: one schedule per family.
    #[derive(Default)]
    struct MemoryShare {
        tat_us: Mutex<i64>,
        learned: Mutex<Option<(f64, i64)>>,
        bookings: std::sync::atomic::AtomicU64,
    }

    /// A limiter of `share` (a node of its own).
    fn node(share: &Arc<MemoryShare>, rate: Option<(u32, Duration, u32)>) -> Arc<FamilyLimiter> {
        let backoff = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(8),
        };
        let cell = Arc::new(OnceLock::new());
        let store: Arc<dyn BudgetShare> = share.clone();
        let _ = cell.set(Shared::new(store, "acme", Instant::now()));
        Arc::new(FamilyLimiter::with_share(
            "search",
            rate,
            true,
            backoff,
            Arc::new(TokioClock),
            cell,
        ))
    }

    impl BudgetShare for MemoryShare {
        fn reserve<'a>(
            &'a self,
            _tenant: &'a str,
            _family: &'a str,
            count: u32,
            interval_us: i64,
            now_us: i64,
        ) -> ShareFuture<'a, Grant> {
            Box::pin(async move {
                self.bookings
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut tat = self.tat_us.lock().unwrap();
                let first = (*tat).max(now_us);
                *tat = first + i64::from(count) * interval_us;
                Ok(Grant {
                    first_us: first,
                    learned: *self.learned.lock().unwrap(),
                })
            })
        }

        fn update<'a>(
            &'a self,
            _tenant: &'a str,
            _family: &'a str,
            update: Update,
            now_us: i64,
        ) -> ShareFuture<'a, ()> {
            Box::pin(async move {
                let mut tat = self.tat_us.lock().unwrap();
                *tat = (*tat).max(update.not_before_us.unwrap_or(0));
                if let Some(rate) = update.rate {
                    *self.learned.lock().unwrap() = Some((rate, now_us));
                }
                Ok(())
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn nodes_sharing_a_budget_stay_within_it_together_booking_in_batches() {
        let share = Arc::new(MemoryShare::default());
        let rate = Some((10, Duration::from_secs(1), 1));
        let nodes = [node(&share, rate), node(&share, rate)];
        let start = Instant::now();
        let mut tasks = Vec::new();
        for family in &nodes {
            for _ in 0..4 {
                let family = family.clone();
                tasks.push(tokio::spawn(async move {
                    let mut times = Vec::new();
                    for _ in 0..10 {
                        family.acquire().await;
                        times.push(Instant::now() - start);
                    }
                    times
                }));
            }
        }
        let mut times: Vec<Duration> = Vec::new();
        for t in tasks {
            times.extend(t.await.unwrap());
        }
        times.sort();
        // 80 requests from two nodes at 10/s together: any 1 s holds at most 10.
        for (i, t) in times.iter().enumerate().skip(10) {
            assert!(*t - times[i - 10] >= Duration::from_secs(1), "{times:?}");
        }
        let last = *times.last().unwrap();
        assert!(last < Duration::from_millis(8_300), "{last:?}");
        // Slots are booked about half a second (5 slots) at a time, not one by one.
        let bookings = share.bookings.load(std::sync::atomic::Ordering::SeqCst);
        assert!(bookings <= 80 / 4, "{bookings} bookings for 80 requests");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_one_node_learns_and_its_pause_reach_the_other() {
        let share = Arc::new(MemoryShare::default());
        let (a, b) = (node(&share, None), node(&share, None));
        let start = Instant::now();
        for _ in 0..20 {
            a.acquire().await;
            a.succeeded();
        }
        tokio::time::advance(Duration::from_millis(100)).await;
        a.throttled(Some(Duration::from_millis(900)));
        // The publication runs in the background; give it a moment of (paused) time.
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(share.learned.lock().unwrap().is_some());
        // b has sent nothing of its own: its first request looks up the shared rate.
        b.acquire().await;
        let learned = b.learned_rate().unwrap();
        assert!((19.0..21.0).contains(&learned), "{learned}");
        // Its next ones book from the shared schedule, after a's pause.
        b.acquire().await;
        assert!(Instant::now() - start >= Duration::from_secs(1));
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
