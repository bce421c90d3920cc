//! The firing loop: sleeps (tokio time) until the earliest due entry, claims the fire in the
//! [`FireLog`] (so each scheduled time fires once, across restarts), then hands it to the
//! [`FireSink`]. It neither runs pipelines nor tracks runs: the sink starts them and says
//! when a key is busy.
//!
//! A fire is claimed before the sink is called: a crash between the two loses that one fire
//! rather than repeating it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Clock, Entry, FireKey, FireLog, Misfire};
use crate::ledger::LedgerError;

/// The longest single sleep: a wall-clock jump (NTP, suspend) is noticed within it.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// How many missed fires are counted at most on start (an every-second schedule after a
/// month of downtime is reported as "at least" this many).
const MISSED_COUNT_CAP: u64 = 100_000;

/// What the sink did with a fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FireOutcome {
    /// A run was started.
    Started,
    /// A run of the key was still going: this fire is skipped.
    SkippedBusy,
}

/// Starts runs. Called on the scheduler's task: it must not block (spawn the run).
pub trait FireSink: Send + Sync + 'static {
    fn fire(&self, key: &FireKey, scheduled: DateTime<Utc>) -> FireOutcome;
}

/// Counts of what happened to an entry's fires since this process scheduled it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FireStats {
    pub started: u64,
    pub skipped_busy: u64,
    /// Fires missed while the process was down and not run (per the misfire policy).
    pub missed: u64,
}

/// The state of one entry, for `/status`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct KeyStatus {
    pub key: FireKey,
    pub schedule: String,
    pub enabled: bool,
    pub next_fire: Option<DateTime<Utc>>,
    pub last_fire: Option<DateTime<Utc>>,
    pub stats: FireStats,
}

struct Slot {
    entry: Entry,
    /// The next scheduled time to fire; in the past for a pending misfire catch-up.
    next: Option<DateTime<Utc>>,
    last_fire: Option<DateTime<Utc>>,
    stats: FireStats,
}

struct Shared {
    log: Arc<dyn FireLog>,
    sink: Arc<dyn FireSink>,
    clock: Arc<dyn Clock>,
    slots: Mutex<BTreeMap<FireKey, Slot>>,
    changed: Notify,
}

/// Fires entries on their schedules. Cheap to clone; [`Scheduler::run`] drives it and
/// [`Scheduler::set_entries`] replaces the entries at any time.
#[derive(Clone)]
pub struct Scheduler {
    shared: Arc<Shared>,
}

impl Scheduler {
    pub fn new(log: Arc<dyn FireLog>, sink: Arc<dyn FireSink>, clock: Arc<dyn Clock>) -> Scheduler {
        Scheduler {
            shared: Arc::new(Shared {
                log,
                sink,
                clock,
                slots: Mutex::new(BTreeMap::new()),
                changed: Notify::new(),
            }),
        }
    }

    fn slots(&self) -> MutexGuard<'_, BTreeMap<FireKey, Slot>> {
        self.shared.slots.lock().expect("scheduler lock")
    }

    /// Replaces the entries (start and config reload). A key already scheduled keeps its
    /// last fire and counts (and its pending next fire while its schedule is unchanged); a
    /// new key reads its last fire from the log and applies its misfire policy to the fires
    /// missed since; a key no longer present is dropped (its fires stay in the log).
    pub async fn set_entries(&self, entries: Vec<Entry>) -> Result<(), LedgerError> {
        let new_keys: Vec<FireKey> = {
            let slots = self.slots();
            entries
                .iter()
                .filter(|e| !slots.contains_key(&e.key))
                .map(|e| e.key.clone())
                .collect()
        };
        let mut last_fires = BTreeMap::new();
        for key in new_keys {
            let last = self.shared.log.last_fire(&key).await?;
            last_fires.insert(key, last);
        }
        let now = self.shared.clock.now();
        let mut slots = self.slots();
        let mut old = std::mem::take(&mut *slots);
        for entry in entries {
            let slot = match old.remove(&entry.key) {
                Some(prev) => keep(prev, entry, now),
                None => {
                    let last = last_fires.get(&entry.key).copied().flatten();
                    start(entry, last, now)
                }
            };
            slots.insert(slot.entry.key.clone(), slot);
        }
        drop(slots);
        self.shared.changed.notify_one();
        Ok(())
    }

    /// The next fire of each enabled entry, by key.
    pub fn next_fires(&self) -> Vec<(FireKey, DateTime<Utc>)> {
        self.slots()
            .iter()
            .filter(|(_, s)| s.entry.enabled)
            .filter_map(|(k, s)| s.next.map(|t| (k.clone(), t)))
            .collect()
    }

    /// Every entry's state, by key.
    pub fn status(&self) -> Vec<KeyStatus> {
        self.slots()
            .iter()
            .map(|(k, s)| KeyStatus {
                key: k.clone(),
                schedule: s.entry.schedule.expr().to_string(),
                enabled: s.entry.enabled,
                next_fire: s.next.filter(|_| s.entry.enabled),
                last_fire: s.last_fire,
                stats: s.stats,
            })
            .collect()
    }

    /// Fires due entries until `stop` is cancelled.
    pub async fn run(&self, stop: CancellationToken) {
        loop {
            let now = self.shared.clock.now();
            for (key, at) in self.due(now) {
                self.fire(&key, at).await;
            }
            let earliest = self
                .slots()
                .values()
                .filter(|s| s.entry.enabled)
                .filter_map(|s| s.next)
                .min();
            let sleep = match earliest {
                Some(t) => (t - self.shared.clock.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(MAX_SLEEP),
                None => MAX_SLEEP,
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.shared.changed.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    fn due(&self, now: DateTime<Utc>) -> Vec<(FireKey, DateTime<Utc>)> {
        self.slots()
            .iter()
            .filter(|(_, s)| s.entry.enabled)
            .filter_map(|(k, s)| s.next.filter(|t| *t <= now).map(|t| (k.clone(), t)))
            .collect()
    }

    /// Claims and fires `key` at its scheduled time `at`, then moves its next fire on.
    async fn fire(&self, key: &FireKey, at: DateTime<Utc>) {
        let outcome = match self.shared.log.claim_fire(key, at).await {
            Ok(true) => Some(self.shared.sink.fire(key, at)),
            Ok(false) => {
                tracing::info!(pipeline = %key.pipeline, tenant = %key.tenant, scheduled = %at,
                    "schedule fire already claimed (by an earlier process or another node); not firing");
                None
            }
            Err(e) => {
                tracing::error!(pipeline = %key.pipeline, tenant = %key.tenant, scheduled = %at,
                    error = %e, "cannot claim the schedule fire in the ledger; not firing");
                None
            }
        };
        match outcome {
            Some(FireOutcome::Started) => {
                tracing::info!(pipeline = %key.pipeline, tenant = %key.tenant, scheduled = %at,
                    "schedule fired")
            }
            Some(FireOutcome::SkippedBusy) => {
                tracing::warn!(pipeline = %key.pipeline, tenant = %key.tenant, scheduled = %at,
                    "schedule fire skipped: the previous run is still going")
            }
            None => {}
        }
        let now = self.shared.clock.now();
        let mut slots = self.slots();
        let Some(slot) = slots.get_mut(key) else {
            return; // removed while firing
        };
        slot.last_fire = slot.last_fire.max(Some(at));
        match outcome {
            Some(FireOutcome::Started) => slot.stats.started += 1,
            Some(FireOutcome::SkippedBusy) => slot.stats.skipped_busy += 1,
            None => {}
        }
        // Unless replaced meanwhile, the next fire is the first one after both the fire
        // and now (fires that fell due while this one was late are not repeated).
        if slot.next == Some(at) {
            slot.next = slot.entry.schedule.next_after(at.max(now));
        }
    }
}

/// The slot of a key already scheduled, given its new entry.
fn keep(prev: Slot, entry: Entry, now: DateTime<Utc>) -> Slot {
    let unchanged = prev.entry.enabled && prev.entry.schedule == entry.schedule;
    let next = if unchanged && prev.next.is_some() {
        prev.next
    } else {
        let from = prev.last_fire.map_or(now, |l| l.max(now));
        entry.schedule.next_after(from)
    };
    Slot {
        entry,
        next,
        last_fire: prev.last_fire,
        stats: prev.stats,
    }
}

/// The slot of a key scheduled for the first time by this process, whose last recorded
/// fire is `last`: fires missed since are dropped or fired once, per the misfire policy.
fn start(entry: Entry, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Slot {
    let key = &entry.key;
    let mut stats = FireStats::default();
    let (missed, latest) = match last {
        Some(l) => entry.schedule.fires_between(l, now, MISSED_COUNT_CAP),
        None => (0, None),
    };
    let after = last.map_or(now, |l| l.max(now));
    let mut next = entry.schedule.next_after(after);
    if missed > 0 && entry.enabled {
        match entry.misfire {
            Misfire::Skip => {
                stats.missed = missed;
                tracing::warn!(pipeline = %key.pipeline, tenant = %key.tenant, missed,
                    capped = missed == MISSED_COUNT_CAP, last_fire = ?last,
                    "schedule fires missed while down; skipping them (misfire = skip)");
            }
            Misfire::RunOnce => {
                stats.missed = missed - 1;
                next = latest.or(next);
                tracing::warn!(pipeline = %key.pipeline, tenant = %key.tenant, missed,
                    capped = missed == MISSED_COUNT_CAP, last_fire = ?last,
                    "schedule fires missed while down; firing once now (misfire = run_once)");
            }
        }
    }
    Slot {
        entry,
        next,
        last_fire: last,
        stats,
    }
}
