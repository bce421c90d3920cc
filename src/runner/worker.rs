//! The worker pool: `concurrency` blocking threads, each taking items from one bounded
//! queue, calling `process` under the item deadline, and recording what came of it:
//! done, skipped, deferred (re-queued later), failed (re-queued with backoff) or
//! quarantined after the last attempt.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, EvalAltResult};
use tokio::sync::mpsc;

use super::backoff::retry_delay;
use super::ctx::Ctx;
use super::outcome::Outcome;
use super::shared::RunShared;
use super::summary::{Counters, Failure};
use super::{PipelineOptions, RunRequest, call_hook, item_scope_for};
use crate::engine::{Script, format_eval_error};
use crate::item_scope;
use crate::ledger::{ItemState, ItemUpdate, now_ms};

/// An item on its way to a worker.
pub struct WorkItem {
    pub key: String,
    pub value: Dynamic,
    /// Attempts made before this one (by this or earlier runs).
    pub attempts: i64,
    /// Deferrals within this run.
    pub defers: u32,
}

pub enum WorkMsg {
    Item(WorkItem),
    Stop,
}

/// The ledger time `delay` from now, saturating (a script may defer for centuries).
fn due_at(delay: Duration) -> i64 {
    now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
}

/// Queues `item` now, or after `delay` from a timer task.
pub async fn send_after(tx: &mpsc::Sender<WorkMsg>, item: WorkItem, delay: Duration) {
    if delay.is_zero() {
        let _ = tx.send(WorkMsg::Item(item)).await;
    } else {
        let tx = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(WorkMsg::Item(item)).await;
        });
    }
}

/// The running pool.
pub struct Workers {
    tx: mpsc::Sender<WorkMsg>,
    threads: Vec<tokio::task::JoinHandle<()>>,
}

struct WorkerEnv {
    engine: Arc<Engine>,
    script: Arc<Script>,
    options: PipelineOptions,
    shared: Arc<RunShared>,
    counters: Arc<Counters>,
    tx: mpsc::Sender<WorkMsg>,
    rx: Mutex<mpsc::Receiver<WorkMsg>>,
}

impl Workers {
    pub fn start(req: &RunRequest, shared: Arc<RunShared>, counters: Arc<Counters>) -> Workers {
        let n = req.options.concurrency.max(1);
        let (tx, rx) = mpsc::channel(n * 4);
        let env = Arc::new(WorkerEnv {
            engine: req.engine.clone(),
            script: req.script.clone(),
            options: req.options.clone(),
            shared,
            counters,
            tx: tx.clone(),
            rx: Mutex::new(rx),
        });
        let threads = (0..n)
            .map(|_| {
                let env = env.clone();
                tokio::task::spawn_blocking(move || worker_loop(&env))
            })
            .collect();
        Workers { tx, threads }
    }

    pub fn sender(&self) -> mpsc::Sender<WorkMsg> {
        self.tx.clone()
    }

    /// Tells every worker to stop after its current item and waits for them.
    pub async fn stop(self) {
        for _ in &self.threads {
            let _ = self.tx.send(WorkMsg::Stop).await;
        }
        for t in self.threads {
            let _ = t.await;
        }
    }
}

fn worker_loop(env: &WorkerEnv) {
    loop {
        let msg = env.rx.lock().expect("work queue lock").blocking_recv();
        match msg {
            Some(WorkMsg::Item(item)) => handle(env, item),
            Some(WorkMsg::Stop) | None => return,
        }
    }
}

/// Whether a thrown error asks not to be retried (`#{ retryable: false, .. }`).
fn is_retryable(err: &EvalAltResult) -> bool {
    let mut cur = err;
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
    | EvalAltResult::ErrorInModule(_, inner, _) = cur
    {
        cur = inner;
    }
    match cur {
        EvalAltResult::ErrorRuntime(value, _) => value
            .read_lock::<rhai::Map>()
            .and_then(|m| m.get("retryable").and_then(|r| r.as_bool().ok()))
            .unwrap_or(true),
        _ => true,
    }
}

fn handle(env: &WorkerEnv, mut item: WorkItem) {
    let shared = &env.shared;
    let attempt = item.attempts + 1;
    let deadline = Instant::now() + env.options.item_timeout;
    let scope = item_scope_for(
        shared,
        &item.key,
        Some(deadline),
        Some(env.options.max_operations),
    );
    let ctx = Ctx {
        shared: shared.clone(),
        item_key: Some(item.key.as_str().into()),
        attempt,
        deferrals: item.defers as i64,
    };
    let call = || {
        call_hook(
            &env.engine,
            &env.script,
            "process",
            (ctx, item.value.clone()),
        )
    };
    // A panic in a native function fails the attempt instead of killing the worker (which
    // would leave the item unfinished and the run waiting for it).
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        item_scope::with(scope, call)
    }))
    .unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(format!("internal error while processing (please report): {what}").into())
    });
    let c = &env.counters;
    let mut update = ItemUpdate {
        pipeline: shared.pipeline.clone(),
        tenant: shared.tenant.clone(),
        key: item.key.clone(),
        state: ItemState::Done,
        attempts: attempt,
        next_at: None,
        result: None,
        last_error: None,
    };
    let mut requeue = None;
    match result {
        Ok(value) if value.is::<Outcome>() => match value.cast::<Outcome>() {
            Outcome::Skip(reason) => {
                update.state = ItemState::Skipped;
                update.attempts = item.attempts;
                update.result = Some(serde_json::json!({ "skipped": reason }).to_string());
                c.add_skip(&reason);
                c.skipped.fetch_add(1, Relaxed);
            }
            Outcome::Defer(delay, reason) => {
                update.state = ItemState::Deferred;
                update.attempts = item.attempts;
                update.next_at = Some(due_at(delay));
                update.result = Some(serde_json::json!({ "deferred": reason }).to_string());
                item.defers += 1;
                c.deferrals.fetch_add(1, Relaxed);
                if delay <= env.options.defer_max_wait && item.defers <= env.options.max_defers {
                    requeue = Some(delay);
                } else {
                    c.deferred.fetch_add(1, Relaxed);
                }
            }
        },
        Ok(value) => {
            let json = rhai::serde::from_dynamic::<serde_json::Value>(&value)
                .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
            update.result = Some(json.to_string());
            c.done.fetch_add(1, Relaxed);
        }
        Err(err) => {
            let message = format_eval_error(&err, &env.script.label);
            update.last_error = Some(message.clone());
            if attempt < env.options.max_attempts as i64 && is_retryable(&err) {
                let delay = retry_delay(
                    env.options.retry_backoff,
                    env.options.retry_backoff_max,
                    attempt as u32,
                );
                update.state = ItemState::Failed;
                update.next_at = Some(due_at(delay));
                tracing::warn!(item = %item.key, attempt, error = %message, "attempt failed; will retry");
                c.retries.fetch_add(1, Relaxed);
                item.attempts = attempt;
                requeue = Some(delay);
            } else {
                update.state = ItemState::Quarantined;
                tracing::error!(item = %item.key, attempt, error = %message, "item quarantined");
                c.add_failure(Failure {
                    key: item.key.clone(),
                    attempts: attempt,
                    error: message,
                });
                c.quarantined.fetch_add(1, Relaxed);
            }
        }
    }
    if shared.writer.update_blocking(update).is_err() {
        tracing::error!(item = %item.key, "ledger writer stopped; item state not recorded");
    }
    match requeue {
        Some(delay) => {
            let tx = env.tx.clone();
            shared
                .handle
                .spawn(async move { send_after(&tx, item, delay).await });
        }
        None => {
            c.outstanding.fetch_sub(1, Relaxed);
        }
    }
}
