//! Runs a pipeline once: resumes unfinished items, calls `discover` on a blocking thread
//! while admission (through the ledger) feeds a bounded pool of `process` workers, retries
//! and quarantines failures, commits checkpoints only after a clean run, then `finish`.
//! A halted run (interrupted, or its ledger writes failing) stops starting items, lets the
//! ones in flight finish within `interrupt_grace`, releases the rest for the next run and
//! ends without committing its checkpoints.
//!
//! # Layout
//! - [`options`]: `const OPTIONS` → [`PipelineOptions`].
//! - [`ctx`]: the `ctx` object of the scripts.
//! - `discover`: the `discover` call under its deadline.
//! - `admission`: emitted items → ledger → work queue (the first emit of a key wins).
//! - `worker`: one `process` call and what its outcome does to the item.
//! - [`event`]: [`deliver_event`], an event through `on_event` into pending items.
//! - `due`: the one timer that holds waiting items (deferred, backing off) until due, and
//!   decides when only deferrals not due soon are left (the run then ends without them).
//! - [`cluster`]: runs that share a pipeline's items with other nodes (lead, helper).
//! - [`stop`]: [`StopSignal`], how a run is asked to end early.
//! - [`summary`], [`progress`], [`backoff`], [`outcome`], [`shared`].

mod admission;
pub mod backoff;
pub mod cluster;
pub mod ctx;
mod discover;
mod due;
pub mod event;
pub mod options;
pub mod outcome;
pub mod progress;
pub mod shared;
pub mod stop;
pub mod summary;
#[cfg(test)]
mod tests;
mod worker;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, EvalAltResult};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::engine::{Script, format_eval_error};
use crate::item_scope::ItemScope;
use crate::ledger::writer::LedgerWriter;
use crate::ledger::{Ledger, LedgerError};

pub use event::{EventOutcome, deliver_event};
pub use options::PipelineOptions;
use shared::{Emitted, RunShared};
pub use stop::StopSignal;
use summary::{CheckpointOutcome, Counters, Summary};
use worker::Workers;

/// How often a run proves it is alive, and when a silent one counts as dead (killed).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
const RUN_STALE_AFTER: Duration = Duration::from_secs(30);

/// The status of a run that was interrupted.
pub const STATUS_INTERRUPTED: &str = "interrupted";

/// Stops a background task when the run ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where a run hears of newer generations of its script (`cxpipe serve`'s hot reload).
pub type GenerationWatch = tokio::sync::watch::Receiver<Option<Arc<crate::runtime::Generation>>>;

/// Called with the duration of every `process` call.
pub type ItemObserver = Arc<dyn Fn(Duration) + Send + Sync>;

/// Everything one run needs.
pub struct RunRequest {
    pub engine: Arc<Engine>,
    pub script: Arc<Script>,
    pub options: PipelineOptions,
    /// The pipeline's name: with `tenant`, the ledger identity of the run, its items and
    /// its checkpoints (two pipelines running one script keep apart).
    pub pipeline: String,
    pub tenant: String,
    pub params: serde_json::Map<String, serde_json::Value>,
    pub ledger: Ledger,
    /// The tenant's API client as a script value, or `()`.
    pub api: Dynamic,
    /// The destination store as a script value, or `()`.
    pub store: Dynamic,
    /// The stores the pipeline grants by name (`ctx.stores.NAME`).
    pub stores: rhai::Map,
    /// Draw a progress bar (when stderr is a terminal).
    pub progress: bool,
    /// Newer generations of the script, published by `cxpipe serve`'s hot reload: items
    /// started after a new one arrives run on it; items already running finish on theirs.
    pub generations: Option<GenerationWatch>,
    /// Told how long each `process` call took (`cxpipe serve`'s item duration metric).
    pub item_observer: Option<ItemObserver>,
    /// Bytes committed by the run's stores (the runtime opens them counting into it;
    /// `cxpipe serve` reads it while the run goes on). Ends up in `summary.bytes_written`.
    pub bytes_written: Arc<std::sync::atomic::AtomicU64>,
    /// The run's live counters (done, skipped, …), fresh for each request; `cxpipe serve`
    /// shows them for a run in progress.
    pub counters: Arc<Counters>,
    /// Share the pipeline's items with runs on other nodes (`cxpipe serve` on a
    /// PostgreSQL ledger): lead when no other node runs the pipeline, else help.
    pub cluster: Option<cluster::ClusterOptions>,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunReport {
    pub summary: Summary,
    /// What `finish(ctx, summary)` returned (the summary itself when there is no `finish`).
    pub report: serde_json::Value,
}

impl RunReport {
    /// True when nothing failed: no quarantined item, `discover` and `finish` succeeded.
    pub fn ok(&self) -> bool {
        self.summary.status == "completed"
    }

    /// True when the run was interrupted (its unfinished items were released).
    pub fn interrupted(&self) -> bool {
        self.summary.status == STATUS_INTERRUPTED
    }
}

/// Errors that stop a run before or outside the scripts.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("run task failed: {0}")]
    Task(String),
    #[error("{script} defines no `on_event(ctx, event)`; add one to take events for this pipeline")]
    NoEventHook { script: String },
    #[error("on_event of {script} failed: {error}")]
    Event { script: String, error: String },
}

/// Calls hook `name` of `script` with a fresh Rhai scope, as the call of `scope` (its
/// run facts and limits; see [`crate::engine::call`]).
pub(crate) fn call_hook(
    engine: &Engine,
    script: &Script,
    name: &str,
    args: impl rhai::FuncArgs,
    scope: ItemScope,
) -> Result<Dynamic, Box<EvalAltResult>> {
    crate::engine::call(engine, &script.ast, name, args, scope)
}

/// Runs the pipeline to completion.
pub async fn run(req: RunRequest) -> Result<RunReport, RunError> {
    run_until(req, StopSignal::new()).await
}

/// Runs the pipeline to completion, or until `interrupt` fires (see the module docs).
/// Everything it logs, on any thread, is inside a `run` span (tenant, pipeline, run_id);
/// a worker's lines also inside an `item` span (item_key, attempt). The spans are at
/// ERROR level so that any filter that lets a line through keeps its context (the default
/// filter is `warn`).
pub async fn run_until(req: RunRequest, interrupt: StopSignal) -> Result<RunReport, RunError> {
    let run_id = uuid::Uuid::new_v4().to_string();
    let span = tracing::error_span!(
        "run",
        tenant = %req.tenant,
        pipeline = %req.pipeline,
        run_id = %run_id
    );
    run_in_span(req, interrupt, run_id).instrument(span).await
}

async fn run_in_span(
    req: RunRequest,
    interrupt: StopSignal,
    run_id: String,
) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let pipeline: Arc<str> = req.pipeline.as_str().into();
    let tenant: Arc<str> = req.tenant.as_str().into();
    let role = start(&req, &run_id).await?;
    let heartbeat = AbortOnDrop(tokio::spawn({
        let (ledger, run_id, cluster) = (req.ledger.clone(), run_id.clone(), req.cluster.clone());
        let every = cluster.as_ref().map_or(HEARTBEAT_EVERY, |c| c.heartbeat);
        async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = ledger.heartbeat(&run_id).await {
                    tracing::warn!(error = %e, "run heartbeat failed");
                }
                if let Some(c) = &cluster {
                    let until = crate::ledger::now_ms() + c.lease.as_millis() as i64;
                    if let Err(e) = ledger.renew_leases(&run_id, until).await {
                        tracing::warn!(error = %e, "renewing the run's item leases failed");
                    }
                }
            }
        }
        .in_current_span()
    }));
    let committed = req.ledger.checkpoints(&pipeline, &tenant).await?;
    let writer = LedgerWriter::spawn_for_run(req.ledger.clone(), &run_id);
    // Halts the run's work: an interrupt, or a ledger that can no longer be written.
    let halt = StopSignal::new();
    let _halter = AbortOnDrop(tokio::spawn({
        let (halt, interrupt, failed) = (halt.clone(), interrupt.clone(), writer.failed());
        async move {
            tokio::select! {
                _ = interrupt.stopped() => {
                    halt.stop(interrupt.reason().unwrap_or_else(|| "interrupted".into()));
                }
                _ = failed.cancelled() => halt.stop("the ledger could not be written"),
            }
        }
    }));
    let (emit_tx, emit_rx) = mpsc::channel::<Emitted>(1024);
    let shared = new_shared(&req, run_id.clone(), writer.clone(), committed, emit_tx)?;
    let counters = req.counters.clone();
    let progress = progress::Progress::start(req.progress, pipeline.to_string(), counters.clone());
    tracing::info!(run_id, %pipeline, %tenant, "run started");

    let (due_tx, due_rx) = mpsc::unbounded_channel();
    let workers = Workers::start(
        &req,
        shared.clone(),
        counters.clone(),
        halt.clone(),
        due_tx.clone(),
    );
    let intake_done = tokio_util::sync::CancellationToken::new();
    let due_queue = AbortOnDrop(tokio::spawn(
        due::due_loop(
            due_rx,
            workers.sender(),
            counters.clone(),
            intake_done.clone(),
            halt.clone(),
            req.options.defer_linger,
        )
        .in_current_span(),
    ));
    let admission_done = tokio_util::sync::CancellationToken::new();
    let claims = req.cluster.clone().map(|opts| {
        tokio::spawn(
            cluster::claim_loop(
                shared.clone(),
                opts,
                role,
                admission::Queues {
                    work: workers.sender(),
                    due: due_tx.clone(),
                },
                counters.clone(),
                req.options.concurrency,
                req.options.defer_max_wait,
                admission_done.clone(),
                halt.clone(),
            )
            .in_current_span(),
        )
    });
    let admission = tokio::spawn(
        admission::admit_loop(
            shared.clone(),
            emit_rx,
            admission::Queues {
                work: workers.sender(),
                due: due_tx,
            },
            counters.clone(),
            req.options.defer_max_wait,
            halt.clone(),
            role != cluster::Role::Solo,
        )
        .in_current_span(),
    );
    let discover_error = match role {
        cluster::Role::Helper => {
            shared.close_emitter();
            None
        }
        _ => discover::run_discover(&req, shared.clone(), &halt).await,
    };
    let admission_joined = admission.await;
    admission_done.cancel();
    let mut admission_error = match admission_joined {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("admission failed: {e}")),
        Err(e) => Some(format!(
            "admission failed: {}",
            discover::join_error_text(e)
        )),
    };
    if let Some(claims) = claims {
        let claimed = match claims.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("claiming items failed: {e}")),
            Err(e) => Some(format!(
                "claiming items failed: {}",
                discover::join_error_text(e)
            )),
        };
        admission_error = admission_error.or(claimed);
    }
    intake_done.cancel();
    if let Some(err) = &admission_error {
        tracing::error!(error = %err, "admission failed");
        halt.stop(err.clone());
    }
    let grace = req.options.interrupt_grace;
    let workers_error = wait_for_items(&counters, || workers.alive(), &halt, grace).await;
    if let Some(err) = &workers_error {
        tracing::error!(error = %err, "workers failed");
        halt.stop(err.clone());
    }
    drop(due_queue);
    // Idle workers stop at once; after a halt, ones still busy are left behind.
    let linger = if halt.is_stopped() {
        Duration::from_secs(1)
    } else {
        Duration::MAX
    };
    workers.stop(linger).await;
    let flushed = writer.flush().await;
    progress.finish();

    let interrupted = interrupt.is_stopped();
    let error = if interrupted {
        interrupt.reason()
    } else {
        (flushed.as_ref().err().map(|e| e.to_string()))
            .or(workers_error)
            .or(admission_error)
            .or(discover_error)
    };
    // Whatever this run still holds (deferred items it left, or everything unfinished
    // after a halt) is handed back for the next run.
    let released = req.ledger.release_run(&pipeline, &tenant, &run_id).await?;
    if halt.is_stopped() {
        tracing::warn!(
            released,
            reason = halt.reason().unwrap_or_default(),
            "run halted; unfinished items released for the next run"
        );
    }
    let waiting = req.ledger.waiting(&pipeline, &tenant).await?;
    let other_nodes = match role {
        cluster::Role::Lead => {
            let since = crate::ledger::now_ms() - started.elapsed().as_millis() as i64;
            req.ledger
                .finished_by_others(&pipeline, &tenant, &run_id, since)
                .await?
                .into_iter()
                .map(|(state, n)| (state, n.max(0) as u64))
                .collect()
        }
        _ => std::collections::BTreeMap::new(),
    };
    let failed = counters.quarantined.load(Relaxed)
        + counters.failed.load(Relaxed)
        + other_nodes.get("quarantined").copied().unwrap_or(0);
    let clean = error.is_none() && failed == 0;
    let mut pending = std::mem::take(
        &mut *shared
            .pending_checkpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    if role == cluster::Role::Helper && !pending.is_empty() {
        tracing::warn!(
            checkpoints = ?pending.keys().collect::<Vec<_>>(),
            "checkpoints set while helping another node's run are not committed; set them \
             in discover, which only the leading run calls"
        );
        pending.clear();
    }
    if clean && !pending.is_empty() {
        req.ledger
            .commit_checkpoints(&pipeline, &tenant, &run_id, &pending)
            .await?;
    }
    record_api_stats(&shared);
    let checkpoint = CheckpointOutcome::of(
        !pending.is_empty(),
        interrupted,
        error.is_some(),
        failed > 0,
    );
    let mut summary = build_summary(&shared, &counters, started, checkpoint, error);
    summary.deferred_left = waiting.deferred;
    summary.next_due = waiting.next_due.and_then(summary::rfc3339_ms);
    summary.bytes_written = req.bytes_written.load(Relaxed);
    summary.other_nodes = other_nodes;
    if interrupted {
        summary.status = STATUS_INTERRUPTED.into();
    } else if !clean && summary.error.is_none() {
        summary.status = "completed_with_failures".into();
    }
    // An interrupted run ends now, as does a helper; `finish` reports the others.
    let report = if interrupted || role == cluster::Role::Helper {
        serde_json::to_value(&summary).unwrap_or_default()
    } else {
        run_finish(&req, shared.clone(), &mut summary).await
    };
    let flushed_after_finish = writer.flush().await;
    drop(heartbeat);
    let summary_json = serde_json::to_string(&summary).unwrap_or_default();
    req.ledger
        .finish_run(&run_id, &summary.status, &summary_json)
        .await?;
    // A ledger write that failed for good fails the run (what it lost was logged in full).
    flushed.and(flushed_after_finish)?;
    tracing::info!(run_id, status = %summary.status, done = summary.done, "run finished");
    Ok(RunReport { summary, report })
}

/// Records the start of the run in the ledger and decides its part: a run without
/// `cluster` is alone on its pipeline × tenant (another live run makes it fail busy); a
/// cluster run leads when no other run is the pipeline's running run, and helps that run
/// otherwise.
async fn start(req: &RunRequest, run_id: &str) -> Result<cluster::Role, RunError> {
    let Some(opts) = &req.cluster else {
        req.ledger
            .start_run(
                run_id,
                &req.pipeline,
                &req.tenant,
                &req.script.hash,
                RUN_STALE_AFTER.as_millis() as i64,
            )
            .await?;
        return Ok(cluster::Role::Solo);
    };
    let stale_ms = opts.lease.as_millis() as i64;
    match (req.ledger)
        .start_run(
            run_id,
            &req.pipeline,
            &req.tenant,
            &req.script.hash,
            stale_ms,
        )
        .await
    {
        Ok(()) => {
            tracing::info!(run_id, "leading the pipeline's run in the cluster");
            Ok(cluster::Role::Lead)
        }
        Err(LedgerError::Busy { run_id: lead, .. }) => {
            req.ledger
                .start_helper_run(run_id, &req.pipeline, &req.tenant, &req.script.hash)
                .await?;
            tracing::info!(run_id, lead, "helping the run another node leads");
            Ok(cluster::Role::Helper)
        }
        Err(e) => Err(e.into()),
    }
}

/// The state a run (or one event delivery, `run_id` then naming it) shares with its hooks.
pub(crate) fn new_shared(
    req: &RunRequest,
    run_id: String,
    writer: LedgerWriter,
    committed: std::collections::BTreeMap<String, String>,
    emit_tx: mpsc::Sender<Emitted>,
) -> Result<Arc<RunShared>, RunError> {
    let params = rhai::serde::to_dynamic(serde_json::Value::Object(req.params.clone()))
        .map_err(|e| RunError::Task(format!("params: {e}")))?;
    Ok(Arc::new(RunShared {
        pipeline: req.pipeline.as_str().into(),
        tenant: req.tenant.as_str().into(),
        run_id,
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        script_hash: req.script.hash.clone(),
        params,
        ledger: req.ledger.clone(),
        writer,
        handle: tokio::runtime::Handle::current(),
        committed,
        pending_checkpoints: Mutex::new(Default::default()),
        emitter: Mutex::new(Some(emit_tx)),
        metrics: Mutex::new(Default::default()),
        api: req.api.clone(),
        store: req.store.clone(),
        stores: req.stores.clone(),
    }))
}

/// Waits until every item this run took on is finished. Once the run is halted, waits
/// only for the items in flight, at most `grace`. Fails instead of hanging when no worker
/// is left alive to finish the rest.
async fn wait_for_items(
    c: &Counters,
    alive: impl Fn() -> usize,
    halt: &StopSignal,
    grace: Duration,
) -> Option<String> {
    let mut halted_at: Option<Instant> = None;
    loop {
        let outstanding = c.outstanding.load(Relaxed);
        if outstanding == 0 {
            return None;
        }
        if halt.is_stopped() {
            let since = *halted_at.get_or_insert_with(Instant::now);
            if c.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0
                || since.elapsed() >= grace
            {
                return None;
            }
        }
        if alive() == 0 {
            return Some(format!(
                "every worker stopped with {outstanding} item(s) unfinished; they are released \
                 for the next run"
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(crate) fn item_scope_for(
    shared: &RunShared,
    key: &str,
    deadline: Option<Instant>,
    max_operations: Option<u64>,
) -> ItemScope {
    ItemScope {
        run_id: shared.run_id.clone(),
        pipeline: shared.pipeline.to_string(),
        tenant: shared.tenant.to_string(),
        item_key: key.to_string(),
        script_hash: shared.script_hash.clone(),
        deadline,
        max_operations,
    }
}

/// Adds the tenant client's request counters to the run's metrics (`api.requests`, ...).
fn record_api_stats(shared: &RunShared) {
    let Some(api) = shared.api.clone().try_cast::<crate::api::Api>() else {
        return;
    };
    let stats = api.stats();
    let mut metrics = shared.metrics.lock().unwrap_or_else(|e| e.into_inner());
    for (name, value) in [
        ("api.requests", stats.requests),
        ("api.retries", stats.retries),
        ("api.throttled_429", stats.throttled),
        ("api.refreshed_after_401", stats.refreshed_after_401),
        ("api.token_requests", stats.token_requests),
    ] {
        metrics.insert(name.to_string(), value as f64);
    }
}

fn build_summary(
    shared: &RunShared,
    c: &Counters,
    started: Instant,
    checkpoint: CheckpointOutcome,
    error: Option<String>,
) -> Summary {
    let emitted = c.emitted.load(Relaxed);
    let duplicates = c.duplicates.load(Relaxed);
    let admitted = c.admitted.load(Relaxed);
    Summary {
        run_id: shared.run_id.clone(),
        pipeline: shared.pipeline.to_string(),
        tenant: shared.tenant.to_string(),
        script_hash: shared.script_hash.clone(),
        started_at: shared.started_at.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
        status: if error.is_some() {
            "failed".into()
        } else {
            "completed".into()
        },
        emitted,
        duplicates,
        admitted,
        already_done: emitted.saturating_sub(duplicates + admitted),
        resumed: c.resumed.load(Relaxed),
        claimed: c.claimed.load(Relaxed),
        other_nodes: Default::default(),
        done: c.done.load(Relaxed),
        skipped: c.skipped.load(Relaxed),
        deferred: c.deferred.load(Relaxed),
        quarantined: c.quarantined.load(Relaxed),
        failed: c.failed.load(Relaxed),
        retries: c.retries.load(Relaxed),
        deferrals: c.deferrals.load(Relaxed),
        bytes_written: 0,
        deferred_left: 0,
        next_due: None,
        skip_reasons: c
            .skip_reasons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        failures: c.failures.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        metrics: shared
            .metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), summary::metric_value(*v)))
            .collect(),
        checkpoint,
        checkpoint_committed: checkpoint.committed(),
        error,
    }
}

/// Adds `error` to the summary's, after the run's own error when it had one (a `finish`
/// that fails after a failed `discover` must not hide why the run failed).
fn add_error(summary: &mut Summary, error: String) {
    summary.error = Some(match summary.error.take() {
        Some(earlier) => format!("{earlier}; then {error}"),
        None => error,
    });
}

/// Calls `finish(ctx, summary)` if defined; returns its value as JSON (or the summary).
async fn run_finish(
    req: &RunRequest,
    shared: Arc<RunShared>,
    summary: &mut Summary,
) -> serde_json::Value {
    let summary_json = serde_json::to_value(&*summary).unwrap_or_default();
    if !req.script.has_fn("finish", 2) {
        return summary_json;
    }
    let (engine, script) = (req.engine.clone(), req.script.clone());
    let arg = rhai::serde::to_dynamic(&summary_json).unwrap_or(Dynamic::UNIT);
    let scope = item_scope_for(&shared, "", None, None);
    let ctx = ctx::Ctx {
        shared,
        item_key: None,
        attempt: 0,
        deferrals: 0,
    };
    let span = tracing::error_span!("finish");
    let result = tokio::task::spawn_blocking(move || {
        let _span = span.enter();
        call_hook(&engine, &script, "finish", (ctx, arg), scope)
            .map_err(|e| format_eval_error(&e, &script.label))
            .and_then(|v| {
                rhai::serde::from_dynamic::<serde_json::Value>(&v).map_err(|e| e.to_string())
            })
    })
    .await;
    match result {
        Ok(Ok(serde_json::Value::Null)) => summary_json,
        Ok(Ok(value)) => value,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "finish failed");
            summary.status = "failed".into();
            add_error(summary, format!("finish failed: {e}"));
            serde_json::to_value(&*summary).unwrap_or_default()
        }
        Err(e) => {
            summary.status = "failed".into();
            add_error(summary, format!("finish panicked: {e}"));
            serde_json::to_value(&*summary).unwrap_or_default()
        }
    }
}
