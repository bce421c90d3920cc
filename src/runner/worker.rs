//! The worker pool: `concurrency` blocking threads, each taking items from one bounded
//! queue, calling `process` under the item deadline, and recording what came of it:
//! done, skipped, deferred (handed to the due-queue), failed (handed to the due-queue with
//! its backoff) or quarantined after the last attempt. A panic anywhere in handling an item fails that
//! attempt and the worker goes on; once the run is halted, queued items are not started
//! (they stay leased and the run releases them).

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine};
use tokio::sync::mpsc;

use super::backoff::retry_delay;
use super::ctx::Ctx;
use super::due::{Wait, Waiting, due_in};
use super::outcome::Outcome;
use super::shared::RunShared;
use super::stop::StopSignal;
use super::summary::{Counters, Failure};
use super::{GenerationWatch, PipelineOptions, RunRequest, call_hook, item_scope_for};
use crate::engine::{Script, format_eval_error};
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

/// The running pool.
pub struct Workers {
    tx: mpsc::Sender<WorkMsg>,
    threads: Vec<tokio::task::JoinHandle<()>>,
}

struct WorkerEnv {
    engine: Arc<Engine>,
    script: Arc<Script>,
    /// Newer generations published by a reload (see [`RunRequest::generations`]).
    generations: Option<GenerationWatch>,
    item_observer: Option<super::ItemObserver>,
    options: PipelineOptions,
    shared: Arc<RunShared>,
    counters: Arc<Counters>,
    halt: StopSignal,
    /// Where items that wait (deferred, backing off) go.
    due: mpsc::UnboundedSender<Waiting>,
    rx: Mutex<mpsc::Receiver<WorkMsg>>,
}

impl Workers {
    pub fn start(
        req: &RunRequest,
        shared: Arc<RunShared>,
        counters: Arc<Counters>,
        halt: StopSignal,
        due: mpsc::UnboundedSender<Waiting>,
    ) -> Workers {
        let n = req.options.concurrency.max(1);
        let (tx, rx) = mpsc::channel(n * 4);
        let env = Arc::new(WorkerEnv {
            engine: req.engine.clone(),
            script: req.script.clone(),
            generations: req.generations.clone(),
            item_observer: req.item_observer.clone(),
            options: req.options.clone(),
            shared,
            counters,
            halt,
            due,
            rx: Mutex::new(rx),
        });
        let threads = (0..n)
            .map(|_| {
                let env = env.clone();
                // The worker's lines belong to the run (this span) and, per call, to
                // the item (see `handle`).
                let span = tracing::Span::current();
                tokio::task::spawn_blocking(move || span.in_scope(|| worker_loop(&env)))
            })
            .collect();
        Workers { tx, threads }
    }

    pub fn sender(&self) -> mpsc::Sender<WorkMsg> {
        self.tx.clone()
    }

    /// Worker threads still running (a thread that died is not).
    pub fn alive(&self) -> usize {
        self.threads.iter().filter(|t| !t.is_finished()).count()
    }

    /// Tells every worker to stop after its current item and waits for them, at most
    /// `limit` (a worker stuck in a native call is left behind rather than waited for).
    pub async fn stop(self, limit: Duration) {
        let stopping = async {
            for _ in &self.threads {
                let _ = self.tx.send(WorkMsg::Stop).await;
            }
            for t in self.threads {
                if let Err(e) = t.await {
                    tracing::error!(error = %e, "a worker thread died");
                }
            }
        };
        if tokio::time::timeout(limit, stopping).await.is_err() {
            tracing::warn!(
                waited_s = limit.as_secs(),
                "workers still busy after the grace; leaving them behind"
            );
        }
    }
}

/// Counts an item as in flight while alive, even if handling it panics.
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn enter(c: &'a Counters) -> Self {
        c.in_flight.fetch_add(1, SeqCst);
        InFlight(c)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

fn worker_loop(env: &WorkerEnv) {
    loop {
        let msg = env
            .rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .blocking_recv();
        match msg {
            Some(WorkMsg::Item(item)) => {
                // In flight before the halt check: a run halted after the check waits for
                // this item (it sees it in flight), never releases it while it runs.
                let in_flight = InFlight::enter(&env.counters);
                if env.halt.is_stopped() {
                    // Not started: it stays leased by this run, which releases it at the end.
                    drop(in_flight);
                    env.counters.outstanding.fetch_sub(1, Relaxed);
                    continue;
                }
                handle(env, item);
            }
            Some(WorkMsg::Stop) | None => return,
        }
    }
}

/// The message of a panic payload.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// What handling an item decided: the state to write and whether to queue it again.
struct Step {
    update: ItemUpdate,
    requeue: Option<(Duration, Wait)>,
}

fn handle(env: &WorkerEnv, mut item: WorkItem) {
    let (key, attempts) = (item.key.clone(), item.attempts);
    let span = tracing::error_span!(
        "item",
        item_key = %crate::terminal::escape(&key),
        attempt = attempts + 1
    );
    let _span = span.enter();
    // A panic outside the script call (bookkeeping) must not kill the worker or leave the
    // item unaccounted for: it fails the attempt like a thrown error would.
    let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decide(env, &mut item)))
        .unwrap_or_else(|panic| failed_by_panic(env, &key, attempts, &panic_text(&*panic)));
    record(env, item, step);
}

/// The attempt failed because handling it panicked: the item is left failed (leased by
/// this run, so the next run takes it) and listed among the run's failures.
fn failed_by_panic(env: &WorkerEnv, key: &str, attempts: i64, what: &str) -> Step {
    let error = format!("internal error while handling the item (please report): {what}");
    tracing::error!(item = %crate::terminal::escape(key), error = %error, "worker failed");
    let c = &env.counters;
    c.failed.fetch_add(1, Relaxed);
    c.add_failure(Failure {
        key: key.to_string(),
        attempts: attempts + 1,
        error: error.clone(),
    });
    Step {
        update: ItemUpdate {
            pipeline: env.shared.pipeline.clone(),
            tenant: env.shared.tenant.clone(),
            key: key.to_string(),
            state: ItemState::Failed,
            attempts: attempts + 1,
            next_at: None,
            result: None,
            last_error: Some(error),
            script_hash: None,
        },
        requeue: None,
    }
}

/// Writes the step's state and queues the item again or counts it as finished.
fn record(env: &WorkerEnv, item: WorkItem, step: Step) {
    let shared = &env.shared;
    if let Err(e) = shared.writer.update_blocking(step.update) {
        // The writer has stopped the run (and logged what it could not write).
        tracing::error!(item = %crate::terminal::escape(&item.key), error = %e, "item state not recorded");
    }
    match step.requeue {
        Some((delay, kind)) if !env.halt.is_stopped() => {
            let waiting = Waiting {
                due: due_in(delay),
                kind,
                item,
            };
            if env.due.send(waiting).is_err() {
                // The queue has ended (the run is ending): the ledger keeps the item.
                env.counters.outstanding.fetch_sub(1, Relaxed);
            }
        }
        _ => {
            env.counters.outstanding.fetch_sub(1, Relaxed);
        }
    }
}

/// The script an item starting now runs on, and its hash: the newest generation a
/// reload published, else the run's own script.
fn current_script(env: &WorkerEnv) -> (Arc<Script>, String) {
    let newest = env.generations.as_ref().and_then(|g| g.borrow().clone());
    match newest {
        Some(g) => (g.script.clone(), g.hash.clone()),
        None => (env.script.clone(), env.shared.script_hash.clone()),
    }
}

fn decide(env: &WorkerEnv, item: &mut WorkItem) -> Step {
    let shared = &env.shared;
    let attempt = item.attempts + 1;
    let deadline = Instant::now() + env.options.item_timeout;
    let (script, script_hash) = current_script(env);
    let mut scope = item_scope_for(
        shared,
        &item.key,
        Some(deadline),
        Some(env.options.max_operations),
    );
    scope.script_hash = script_hash.clone();
    let ctx = Ctx {
        shared: shared.clone(),
        item_key: Some(item.key.as_str().into()),
        attempt,
        deferrals: item.defers as i64,
    };
    let call = || {
        let arg = item.value.clone();
        call_hook(&env.engine, &script, "process", (ctx, arg), scope)
    };
    // A panic in a native function fails the attempt instead of killing the worker (which
    // would leave the item unfinished and the run waiting for it).
    let started = Instant::now();
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).unwrap_or_else(|panic| {
            let what = panic_text(&*panic);
            Err(format!("internal error while processing (please report): {what}").into())
        });
    if let Some(observe) = &env.item_observer {
        observe(started.elapsed());
    }
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
        script_hash: Some(script_hash),
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
                    requeue = Some((delay, Wait::Defer));
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
            let message = format_eval_error(&err, &script.label);
            update.last_error = Some(message.clone());
            if attempt < env.options.max_attempts as i64 && crate::engine::thrown_retryable(&err) {
                let delay = retry_delay(
                    env.options.retry_backoff,
                    env.options.retry_backoff_max,
                    attempt as u32,
                );
                update.state = ItemState::Failed;
                update.next_at = Some(due_at(delay));
                tracing::warn!(item = %crate::terminal::escape(&item.key), attempt, error = %message, "attempt failed; will retry");
                c.retries.fetch_add(1, Relaxed);
                item.attempts = attempt;
                requeue = Some((delay, Wait::Retry));
            } else {
                update.state = ItemState::Quarantined;
                tracing::error!(target: super::summary::REPORTED_TARGET, item = %crate::terminal::escape(&item.key), attempt, error = %message, "item quarantined");
                c.add_failure(Failure {
                    key: item.key.clone(),
                    attempts: attempt,
                    error: message,
                });
                c.quarantined.fetch_add(1, Relaxed);
            }
        }
    }
    Step { update, requeue }
}
