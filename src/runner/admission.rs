//! Admission: leases unfinished items of earlier runs, then takes what `discover` emits,
//! drops repeated keys (the first emit of a key wins; the rest count as duplicates),
//! admits the rest through the ledger in batches and queues what this run must process.
//! Stops taking and queueing work as soon as the run is halted.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use rhai::Dynamic;
use tokio::sync::mpsc;

use super::due::{Wait, Waiting, due_in};
use super::shared::{Emitted, RunShared};
use super::stop::StopSignal;
use super::summary::Counters;
use super::worker::{WorkItem, WorkMsg};
use crate::ledger::{AdmitItem, LedgerError, now_ms};

/// Emitted items admitted to the ledger in one statement at most.
const ADMIT_BATCH: usize = 512;

/// How long from `at` (ledger ms) until it is due, zero when past.
pub(super) fn wait_until(at: Option<i64>) -> Duration {
    Duration::from_millis(at.map(|at| (at - now_ms()).max(0) as u64).unwrap_or(0))
}

/// Where admission hands items: the workers' queue, or the due-queue for ones not due yet.
pub struct Queues {
    pub work: mpsc::Sender<WorkMsg>,
    pub due: mpsc::UnboundedSender<Waiting>,
}

impl Queues {
    /// Queues `item` for the workers now, or in the due-queue until `delay` has passed
    /// (as a deferral: the run may leave it for the next one). False when halted.
    pub(super) async fn queue(&self, item: WorkItem, delay: Duration, halt: &StopSignal) -> bool {
        if !delay.is_zero() {
            let waiting = Waiting {
                due: due_in(delay),
                kind: Wait::Defer,
                item,
            };
            return self.due.send(waiting).is_ok() && !halt.is_stopped();
        }
        tokio::select! {
            sent = self.work.send(WorkMsg::Item(item)) => sent.is_ok() && !halt.is_stopped(),
            _ = halt.stopped() => false,
        }
    }
}

/// Keeps the first emit of each key of one discovery; counts the others as duplicates.
#[derive(Default)]
pub struct FirstEmitWins {
    seen: HashSet<String>,
}

impl FirstEmitWins {
    /// Removes from `batch` every key emitted before (in it or in an earlier batch);
    /// returns how many were removed.
    pub fn keep_first(&mut self, batch: &mut Vec<Emitted>) -> u64 {
        let before = batch.len();
        batch.retain(|e| self.seen.insert(e.key.clone()));
        (before - batch.len()) as u64
    }
}

/// See the module docs. With `shared` (a cluster's leading run), items are admitted
/// unowned and nothing is queued here: every node's run claims them (see
/// [`super::cluster`]), this one's too.
pub async fn admit_loop(
    shared: Arc<RunShared>,
    mut rx: mpsc::Receiver<Emitted>,
    queues: Queues,
    counters: Arc<Counters>,
    defer_max_wait: Duration,
    halt: StopSignal,
    cluster: bool,
) -> Result<(), LedgerError> {
    let (ledger, p, t, run) = (
        &shared.ledger,
        &*shared.pipeline,
        &*shared.tenant,
        &shared.run_id,
    );
    let due_before = now_ms() + defer_max_wait.as_millis() as i64;
    while !cluster && !halt.is_stopped() {
        let batch = ledger.lease_unfinished(p, t, run, due_before, 500).await?;
        if batch.is_empty() {
            break;
        }
        for item in batch {
            let json: serde_json::Value =
                serde_json::from_str(&item.payload).unwrap_or(serde_json::Value::Null);
            let value = rhai::serde::to_dynamic(json).unwrap_or(Dynamic::UNIT);
            counters.resumed.fetch_add(1, Relaxed);
            counters.outstanding.fetch_add(1, Relaxed);
            let wait = wait_until(item.next_at);
            let w = WorkItem {
                key: item.key,
                value,
                attempts: item.attempts,
                defers: 0,
            };
            if !queues.queue(w, wait, &halt).await {
                return Ok(());
            }
        }
    }
    let mut firsts = FirstEmitWins::default();
    let mut buf: Vec<Emitted> = Vec::with_capacity(ADMIT_BATCH);
    loop {
        let first = tokio::select! {
            e = rx.recv() => e,
            _ = halt.stopped() => None,
        };
        let Some(first) = first else { break };
        buf.push(first);
        while buf.len() < ADMIT_BATCH {
            match rx.try_recv() {
                Ok(e) => buf.push(e),
                Err(_) => break,
            }
        }
        counters.emitted.fetch_add(buf.len() as u64, Relaxed);
        counters
            .duplicates
            .fetch_add(firsts.keep_first(&mut buf), Relaxed);
        let items: Vec<AdmitItem> = buf
            .iter()
            .map(|e| AdmitItem {
                key: e.key.clone(),
                payload: e.payload.clone(),
            })
            .collect();
        if cluster {
            let admitted = ledger
                .admit_shared(p, t, run, &shared.script_hash, &items)
                .await?;
            buf.clear();
            counters.admitted.fetch_add(admitted.len() as u64, Relaxed);
            continue;
        }
        let due_before = now_ms().saturating_add(defer_max_wait.as_millis() as i64);
        let admitted = ledger
            .admit(p, t, run, &shared.script_hash, due_before, &items)
            .await?;
        // Keys are unique here, so each value is the one its first emit carried.
        let mut values: HashMap<String, Dynamic> =
            buf.drain(..).map(|e| (e.key, e.value)).collect();
        counters.admitted.fetch_add(admitted.len() as u64, Relaxed);
        counters
            .outstanding
            .fetch_add(admitted.len() as u64, Relaxed);
        for item in admitted {
            let value = values.remove(&item.key).unwrap_or(Dynamic::UNIT);
            // An item an earlier run deferred (or was backing off) waits until it is due.
            let wait = wait_until(item.next_at);
            let w = WorkItem {
                key: item.key,
                value,
                attempts: item.attempts,
                defers: 0,
            };
            if queues.work.is_closed() {
                return Err(LedgerError::Invalid(
                    "workers stopped before the queue drained".into(),
                ));
            }
            if !queues.queue(w, wait, &halt).await {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emitted(key: &str, n: i64) -> Emitted {
        Emitted {
            key: key.into(),
            payload: n.to_string(),
            value: Dynamic::from(n),
        }
    }

    #[test]
    fn the_first_emit_of_a_key_wins_within_and_across_batches() {
        let mut firsts = FirstEmitWins::default();
        let mut one = vec![emitted("a", 1), emitted("b", 2), emitted("a", 3)];
        assert_eq!(firsts.keep_first(&mut one), 1);
        let kept: Vec<_> = one
            .iter()
            .map(|e| (e.key.as_str(), e.payload.as_str()))
            .collect();
        assert_eq!(kept, [("a", "1"), ("b", "2")]);
        let mut two = vec![emitted("b", 4), emitted("c", 5)];
        assert_eq!(firsts.keep_first(&mut two), 1);
        assert_eq!(two.len(), 1);
        assert_eq!(two[0].key, "c");
    }
}
