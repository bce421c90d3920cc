//! Where the scheduler reads wall-clock time. Cron fires are wall-clock instants while tokio
//! sleeps on its own monotonic clock; [`TokioClock`] ties the two together so tests with
//! paused tokio time (`#[tokio::test(start_paused = true)]`) drive the schedule too.

use std::fmt::Debug;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// A source of the current wall-clock time.
pub trait Clock: Send + Sync + Debug + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock: what the daemon uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Wall-clock time that starts at a given instant and advances with tokio's clock (so with
/// paused time it moves only when tokio's time does). Create it inside a tokio runtime.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    start_wall: DateTime<Utc>,
    start: Instant,
}

impl TokioClock {
    pub fn starting_at(start_wall: DateTime<Utc>) -> TokioClock {
        TokioClock {
            start_wall,
            start: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.start.elapsed()).unwrap_or_default();
        self.start_wall + elapsed
    }
}
