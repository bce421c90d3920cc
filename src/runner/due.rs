//! The run's due-queue: items waiting for a due time (a deferral, or a retry's backoff)
//! are held by one timer task, not by a sleeping task each. Their state and `next_at` are
//! already in the ledger; the queue only hands them to the workers when they fall due.
//!
//! The run ends once nothing else is left to do and every waiting item is a deferral not
//! due within `defer_linger`: those are left `deferred` in the ledger for the next run (or
//! the daemon's wake at the earliest `next_at`). A retry is always waited for.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::stop::StopSignal;
use super::summary::Counters;
use super::worker::{WorkItem, WorkMsg};

/// Why an item waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Backing off before its next attempt: the run waits for it.
    Retry,
    /// Deferred by the script (or resumed deferred): may be left for the next run.
    Defer,
}

/// An item on its way into the due-queue.
pub struct Waiting {
    pub due: Instant,
    pub kind: Wait,
    pub item: WorkItem,
}

struct Entry(Waiting, u64);

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.0.due, self.1) == (other.0.due, other.1)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0.due, self.1).cmp(&(other.0.due, other.1))
    }
}

/// Waiting items, earliest due first (ties in arrival order).
#[derive(Default)]
pub struct DueQueue {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    retries: usize,
}

impl DueQueue {
    pub fn push(&mut self, w: Waiting) {
        self.seq += 1;
        if w.kind == Wait::Retry {
            self.retries += 1;
        }
        self.heap.push(Reverse(Entry(w, self.seq)));
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// When the earliest item falls due.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.0.due)
    }

    /// Takes the earliest item if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Waiting> {
        if self.next_due()? > now {
            return None;
        }
        let Reverse(Entry(w, _)) = self.heap.pop()?;
        if w.kind == Wait::Retry {
            self.retries -= 1;
        }
        Some(w)
    }

    /// True when every waiting item is a deferral due after `limit` (the run need not
    /// wait for any of them).
    pub fn only_deferrals_after(&self, limit: Instant) -> bool {
        self.retries == 0 && self.next_due().is_none_or(|due| due > limit)
    }

    /// Empties the queue, returning what it held.
    pub fn drain(&mut self) -> Vec<Waiting> {
        self.retries = 0;
        std::mem::take(&mut self.heap)
            .into_iter()
            .map(|Reverse(Entry(w, _))| w)
            .collect()
    }
}

/// How often the end condition is looked at while nothing arrives or falls due.
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// Feeds due items to the workers until the run no longer needs the queue: it is halted,
/// or intake is over (`intake_done`), every outstanding item waits here and none is due
/// within `linger`. Items it leaves are counted as no longer outstanding (deferrals as
/// `deferred`); they stay in the ledger as the worker or admission wrote them.
pub async fn due_loop(
    mut rx: mpsc::UnboundedReceiver<Waiting>,
    work: mpsc::Sender<WorkMsg>,
    counters: Arc<Counters>,
    intake_done: CancellationToken,
    halt: StopSignal,
    linger: Duration,
) {
    let mut queue = DueQueue::default();
    let mut closed = false;
    loop {
        while let Ok(w) = rx.try_recv() {
            queue.push(w);
        }
        let now = Instant::now();
        let everything_waits = counters.outstanding.load(Relaxed) == queue.len() as u64;
        if halt.is_stopped()
            || (intake_done.is_cancelled()
                && everything_waits
                && queue.only_deferrals_after(now + linger))
        {
            leave(&mut queue, &counters);
            return;
        }
        if closed && queue.is_empty() {
            return;
        }
        while let Some(w) = queue.pop_due(now) {
            tokio::select! {
                sent = work.send(WorkMsg::Item(w.item)) => if sent.is_err() { return },
                _ = halt.stopped() => {
                    counters.outstanding.fetch_sub(1, Relaxed);
                    break;
                }
            }
        }
        let wake = queue
            .next_due()
            .map_or(now + CHECK_EVERY, |due| due.min(now + CHECK_EVERY));
        tokio::select! {
            got = rx.recv(), if !closed => match got {
                Some(w) => queue.push(w),
                None => closed = true,
            },
            _ = tokio::time::sleep_until(wake) => {}
            _ = halt.stopped() => {}
        }
    }
}

/// Gives up the queued items: they stay as the ledger has them (deferred or backing off).
fn leave(queue: &mut DueQueue, counters: &Counters) {
    let left = queue.drain();
    if left.is_empty() {
        return;
    }
    let deferred = left.iter().filter(|w| w.kind == Wait::Defer).count() as u64;
    counters.deferred.fetch_add(deferred, Relaxed);
    counters.outstanding.fetch_sub(left.len() as u64, Relaxed);
    tracing::info!(
        left = left.len(),
        "items not due soon are left in the ledger for the next run"
    );
}

/// The instant `delay` from now (far in the future for a delay too long to represent).
pub fn due_in(delay: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(delay)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}
