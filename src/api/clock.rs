//! The monotonic clock the API stages read and sleep on: tokio's by default (so paused
//! tokio time works), or a [`SkippingClock`] that jumps over waits, for tests that talk
//! to real sockets and must check long waits without spending them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A future returned by [`Clock::sleep_until`].
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A monotonic clock.
pub trait Clock: Send + Sync + 'static {
    /// Now, on this clock.
    fn now(&self) -> Instant;
    /// Resolves once [`Clock::now`] has reached `deadline`.
    fn sleep_until(&self, deadline: Instant) -> Sleep<'_>;
}

/// tokio's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep_until(&self, deadline: Instant) -> Sleep<'_> {
        Box::pin(tokio::time::sleep_until(deadline))
    }
}

/// A clock that runs in real time but skips every wait instantly, moving itself forward
/// by the time skipped. [`SkippingClock::skipped`] tells how much waiting was avoided.
#[derive(Debug, Default)]
pub struct SkippingClock {
    skipped: Mutex<Duration>,
}

impl SkippingClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Total time skipped so far.
    pub fn skipped(&self) -> Duration {
        *self.skipped.lock().expect("clock lock")
    }

    /// Moves the clock forward by `by` (as if that much time had passed).
    pub fn advance(&self, by: Duration) {
        *self.skipped.lock().expect("clock lock") += by;
    }
}

impl Clock for SkippingClock {
    fn now(&self) -> Instant {
        Instant::now() + self.skipped()
    }
    fn sleep_until(&self, deadline: Instant) -> Sleep<'_> {
        let mut skipped = self.skipped.lock().expect("clock lock");
        let now = Instant::now() + *skipped;
        if deadline > now {
            *skipped += deadline - now;
        }
        Box::pin(tokio::task::yield_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn skipping_clock_moves_forward_without_waiting() {
        let clock = SkippingClock::new();
        let start = clock.now();
        let real = std::time::Instant::now();
        clock.sleep_until(start + Duration::from_secs(3600)).await;
        assert!(clock.now() >= start + Duration::from_secs(3600));
        assert!(clock.skipped() >= Duration::from_secs(3599));
        assert!(real.elapsed() < Duration::from_secs(1));
    }
}
