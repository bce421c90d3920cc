//! Event intake: [`deliver_event`] calls the script's `on_event(ctx, event)` on a blocking
//! thread, under the limits of `discover` (`OPTIONS.discover_timeout`), and admits what it
//! emits to the ledger as `pending` items of the pipeline × tenant. It processes nothing:
//! the next run (or the daemon's wake) takes them up. The first emit of a key wins; a key
//! already in the ledger (in any state) is counted as a duplicate and left as it is, so a
//! repeated delivery of one event admits nothing new.

use std::time::Instant;

use rhai::Dynamic;
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::admission::FirstEmitWins;
use super::shared::Emitted;
use super::{RunError, RunRequest, call_hook, ctx, item_scope_for, new_shared};
use crate::engine::format_eval_error;
use crate::ledger::AdmitItem;
use crate::ledger::writer::LedgerWriter;

/// What one delivered event did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EventOutcome {
    /// `ctx.emit` calls of `on_event`.
    pub emitted: u64,
    /// Keys new to the ledger, now `pending` for the next run.
    pub admitted: u64,
    /// Emits of a key emitted before in this call or already in the ledger.
    pub duplicates: u64,
}

/// Delivers `event` to the pipeline of `req` (see the module docs).
pub async fn deliver_event(
    req: &RunRequest,
    event: serde_json::Value,
) -> Result<EventOutcome, RunError> {
    if !req.script.has_fn("on_event", 2) {
        return Err(RunError::NoEventHook {
            script: req.script.label.clone(),
        });
    }
    let event_id = format!("event-{}", uuid::Uuid::new_v4());
    let span = tracing::error_span!(
        "event",
        pipeline = %req.pipeline,
        tenant = %req.tenant,
        run_id = %event_id
    );
    deliver_in(req, event, event_id).instrument(span).await
}

async fn deliver_in(
    req: &RunRequest,
    event: serde_json::Value,
    event_id: String,
) -> Result<EventOutcome, RunError> {
    let writer = LedgerWriter::spawn(req.ledger.clone());
    let committed = req.ledger.checkpoints(&req.pipeline, &req.tenant).await?;
    let (emit_tx, mut emit_rx) = mpsc::channel::<Emitted>(1024);
    let shared = new_shared(req, event_id.clone(), writer.clone(), committed, emit_tx)?;
    let timeout = req.options.discover_timeout;
    let scope = item_scope_for(&shared, "", Some(Instant::now() + timeout), None);
    let ctx = ctx::Ctx {
        shared: shared.clone(),
        item_key: None,
        attempt: 0,
        deferrals: 0,
    };
    let (engine, script) = (req.engine.clone(), req.script.clone());
    let arg = rhai::serde::to_dynamic(&event).unwrap_or(Dynamic::UNIT);
    let call_span = tracing::Span::current();
    let call = tokio::task::spawn_blocking(move || {
        let _span = call_span.enter();
        let result = call_hook(&engine, &script, "on_event", (ctx, arg), scope);
        // Ends the intake below, however the call ended.
        shared
            .emitter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        result.map_err(|e| format_eval_error(&e, &script.label))
    });
    let mut emits = Vec::new();
    while let Some(e) = emit_rx.recv().await {
        emits.push(e);
    }
    let called = call.await.map_err(|e| {
        RunError::Task(format!("on_event: {}", super::discover::join_error_text(e)))
    })?;
    let flushed = writer.flush().await;
    if let Err(error) = called {
        return Err(RunError::Event {
            script: req.script.label.clone(),
            error,
        });
    }
    flushed?;
    let mut outcome = EventOutcome {
        emitted: emits.len() as u64,
        duplicates: FirstEmitWins::default().keep_first(&mut emits),
        ..EventOutcome::default()
    };
    let items: Vec<AdmitItem> = emits
        .into_iter()
        .map(|e| AdmitItem {
            key: e.key,
            payload: e.payload,
        })
        .collect();
    let admitted = req
        .ledger
        .admit_pending(&req.pipeline, &req.tenant, &req.script.hash, &items)
        .await?;
    outcome.admitted = admitted;
    outcome.duplicates += items.len() as u64 - admitted;
    tracing::info!(
        emitted = outcome.emitted,
        admitted = outcome.admitted,
        duplicates = outcome.duplicates,
        "event delivered"
    );
    Ok(outcome)
}
