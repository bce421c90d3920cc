//! Counters a run keeps while it goes, and the summary it reports at the end.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Log target of the errors a run's summary also reports (a failed `discover`, a
/// quarantined item). Commands that print the summary (`cxpipe run`, `cxpipe demo`)
/// leave these lines out of their default log, so each failure is said once.
pub const REPORTED_TARGET: &str = "cxpipe::run_outcome";

/// At most this many failures are listed in a summary (all are in the ledger).
const MAX_LISTED_FAILURES: usize = 100;

/// A metric sum as JSON: an integer when it is whole.
pub fn metric_value(sum: f64) -> serde_json::Value {
    if sum.fract() == 0.0 && sum.abs() < 9.0e15 {
        serde_json::Value::from(sum as i64)
    } else {
        serde_json::Value::from(sum)
    }
}

/// A ledger time (ms since the epoch) as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Live counters, updated by the admission task and the workers.
#[derive(Debug, Default)]
pub struct Counters {
    pub emitted: AtomicU64,
    /// Emits of a key already emitted in this discovery (the first emit wins).
    pub duplicates: AtomicU64,
    pub admitted: AtomicU64,
    pub resumed: AtomicU64,
    /// Items claimed from the ledger (a cluster run).
    pub claimed: AtomicU64,
    pub done: AtomicU64,
    pub skipped: AtomicU64,
    pub deferred: AtomicU64,
    pub quarantined: AtomicU64,
    /// Attempts that failed inside cxpipe itself (a panic); the items are left failed.
    pub failed: AtomicU64,
    pub retries: AtomicU64,
    pub deferrals: AtomicU64,
    /// Items admitted or resumed and not yet in a state this run leaves them in.
    pub outstanding: AtomicU64,
    /// Items a worker is handling right now.
    pub in_flight: AtomicU64,
    pub failures: Mutex<Vec<Failure>>,
    pub skip_reasons: Mutex<BTreeMap<String, u64>>,
}

/// A quarantined (or internally failed) item, as listed in a summary.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub key: String,
    pub attempts: i64,
    pub error: String,
}

impl Counters {
    pub fn add_failure(&self, failure: Failure) {
        let mut list = self.failures.lock().expect("failures lock");
        if list.len() < MAX_LISTED_FAILURES {
            list.push(failure);
        }
    }

    pub fn add_skip(&self, reason: &str) {
        *self
            .skip_reasons
            .lock()
            .expect("skip lock")
            .entry(reason.to_string())
            .or_insert(0) += 1;
    }

    /// Items in a final or parked state this run.
    pub fn finished(&self) -> u64 {
        self.done.load(Relaxed)
            + self.skipped.load(Relaxed)
            + self.quarantined.load(Relaxed)
            + self.failed.load(Relaxed)
            + self.deferred.load(Relaxed)
    }
}

/// What became of the checkpoints a run set (`ctx.set_checkpoint`): they are committed
/// only when the run ends clean.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CheckpointOutcome {
    /// The run set no checkpoint; there was nothing to commit.
    #[serde(rename = "none set")]
    NoneSet,
    /// The run ended clean and its checkpoints were committed.
    #[serde(rename = "committed")]
    Committed,
    /// Not committed: some item was quarantined or failed.
    #[serde(rename = "held back (failures)")]
    HeldBackFailures,
    /// Not committed: the run was interrupted.
    #[serde(rename = "held back (interrupted)")]
    HeldBackInterrupted,
    /// Not committed: `discover`, the ledger or the run itself failed.
    #[serde(rename = "held back (run failed)")]
    HeldBackRunFailed,
}

impl CheckpointOutcome {
    /// The outcome for a run that set checkpoints (`set`), was `interrupted`, ended with
    /// an `error`, or had quarantined/failed items (`failures`).
    pub fn of(set: bool, interrupted: bool, error: bool, failures: bool) -> CheckpointOutcome {
        match () {
            _ if !set => CheckpointOutcome::NoneSet,
            _ if interrupted => CheckpointOutcome::HeldBackInterrupted,
            _ if error => CheckpointOutcome::HeldBackRunFailed,
            _ if failures => CheckpointOutcome::HeldBackFailures,
            _ => CheckpointOutcome::Committed,
        }
    }

    /// True when checkpoints were committed.
    pub fn committed(self) -> bool {
        self == CheckpointOutcome::Committed
    }

    /// The words the summary prints.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointOutcome::NoneSet => "none set",
            CheckpointOutcome::Committed => "committed",
            CheckpointOutcome::HeldBackFailures => "held back (failures)",
            CheckpointOutcome::HeldBackInterrupted => "held back (interrupted)",
            CheckpointOutcome::HeldBackRunFailed => "held back (run failed)",
        }
    }
}

/// The end-of-run summary (`--json` prints it; `finish(ctx, summary)` receives it).
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub run_id: String,
    pub pipeline: String,
    pub tenant: String,
    pub script_hash: String,
    pub started_at: String,
    pub duration_ms: u64,
    /// `completed` (every item done, skipped or deferred), `completed_with_failures`
    /// (some quarantined or failed), `failed` (discover, the ledger or the run itself
    /// failed), or `interrupted` (Ctrl-C or SIGTERM; unfinished items were released).
    pub status: String,
    /// Emits by `discover` (including ones already done, and repeated keys).
    pub emitted: u64,
    /// Emits of a key this discovery had already emitted: the first emit wins, these are
    /// dropped.
    pub duplicates: u64,
    /// Emitted keys this run took on.
    pub admitted: u64,
    /// Emitted keys not taken on: done, skipped or quarantined by an earlier run, waiting
    /// until due, or already taken on as resumed.
    pub already_done: u64,
    /// Unfinished items from earlier runs taken on by this one.
    pub resumed: u64,
    /// Items this run claimed from the ledger (a cluster run: admitted by the leading
    /// run, left by earlier runs, or taken over from a node that died).
    #[serde(skip_serializing_if = "is_zero")]
    pub claimed: u64,
    /// What runs on other nodes finished of this pipeline × tenant while this run led it,
    /// by state (a cluster's leading run).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub other_nodes: BTreeMap<String, u64>,
    pub done: u64,
    pub skipped: u64,
    /// Items left deferred in the ledger for a later run.
    pub deferred: u64,
    pub quarantined: u64,
    /// Items whose attempt failed inside cxpipe (a panic); left failed for the next run.
    pub failed: u64,
    /// Item retries: attempts of `process` that failed and were tried again. HTTP retries
    /// inside one attempt are counted apart, in `metrics["api.retries"]`.
    pub retries: u64,
    pub deferrals: u64,
    /// Bytes of objects committed to the pipeline's stores (`ctx.store`, `ctx.stores`):
    /// data, manifests and documents.
    pub bytes_written: u64,
    /// Items of this pipeline × tenant waiting `deferred` in the ledger after the run (left
    /// by this run or earlier ones); the next run takes them up once due.
    pub deferred_left: u64,
    /// When the earliest unfinished item of this pipeline × tenant falls due (RFC 3339
    /// UTC), so a daemon can wake the pipeline then; none when nothing waits.
    pub next_due: Option<String>,
    pub skip_reasons: BTreeMap<String, u64>,
    pub failures: Vec<Failure>,
    /// Sums of `ctx.metric(name, value)`; whole numbers print as integers.
    pub metrics: BTreeMap<String, serde_json::Value>,
    /// What became of the checkpoints this run set: `none set`, `committed`, or
    /// `held back (failures|interrupted|run failed)`.
    pub checkpoint: CheckpointOutcome,
    /// `checkpoint == "committed"` (kept for scripts that read it).
    pub checkpoint_committed: bool,
    pub error: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::CheckpointOutcome;

    #[test]
    fn a_run_that_set_no_checkpoint_says_so_rather_than_not_committed() {
        let none = CheckpointOutcome::of(false, false, false, false);
        assert_eq!(serde_json::to_value(none).unwrap(), "none set");
        assert!(!none.committed());
        let held = CheckpointOutcome::of(true, false, false, true);
        assert_eq!(serde_json::to_value(held).unwrap(), "held back (failures)");
        assert_eq!(held.as_str(), "held back (failures)");
        assert!(CheckpointOutcome::of(true, false, false, false).committed());
        assert_eq!(
            CheckpointOutcome::of(true, true, true, true),
            CheckpointOutcome::HeldBackInterrupted
        );
    }
}
