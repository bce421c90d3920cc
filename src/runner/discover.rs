//! Calls `discover` on a blocking thread under its own deadline (`OPTIONS.discover_timeout`),
//! and always closes the emit channel when it ends — returned, threw, panicked, or was
//! abandoned — so admission (and with it the run) can end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::EvalAltResult;

use super::shared::RunShared;
use super::stop::StopSignal;
use super::{RunRequest, call_hook, ctx, item_scope_for};
use crate::engine::{DEADLINE_TOKEN, format_eval_error};

/// How long past its deadline a `discover` stuck in a native call (where the deadline is
/// not checked) is waited for before the run gives up on it.
const OVERRUN: Duration = Duration::from_secs(10);

/// Closes the emit channel when dropped, however the discover thread ends.
struct CloseEmitter(Arc<RunShared>);

impl Drop for CloseEmitter {
    fn drop(&mut self) {
        self.0
            .emitter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

/// True when `err` is the engine stopping the call at its deadline.
fn hit_deadline(err: &EvalAltResult) -> bool {
    let mut cur = err;
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
    | EvalAltResult::ErrorInModule(_, inner, _) = cur
    {
        cur = inner;
    }
    matches!(cur, EvalAltResult::ErrorTerminated(token, _)
        if token.clone().into_string().ok().as_deref() == Some(DEADLINE_TOKEN))
}

/// Calls `discover`; returns its error, formatted, if any. Waits at most until the
/// deadline plus [`OVERRUN`], or the interrupt grace once the run is halted.
pub async fn run_discover(
    req: &RunRequest,
    shared: Arc<RunShared>,
    halt: &StopSignal,
) -> Option<String> {
    let close = CloseEmitter(shared.clone());
    if !req.script.has_fn("discover", 1) {
        return None;
    }
    let timeout = req.options.discover_timeout;
    let deadline = Instant::now() + timeout;
    let (engine, script) = (req.engine.clone(), req.script.clone());
    let scope = item_scope_for(&shared, "", Some(deadline), None);
    let ctx = ctx::Ctx {
        shared: shared.clone(),
        item_key: None,
        attempt: 0,
        deferrals: 0,
    };
    let span = tracing::error_span!("discover");
    let task = tokio::task::spawn_blocking(move || {
        let _span = span.enter();
        let _close = close;
        call_hook(&engine, &script, "discover", (ctx,), scope).map_err(|e| {
            if hit_deadline(&e) {
                format!(
                    "discover did not finish within discover_timeout ({}); raise \
                     OPTIONS.discover_timeout or make discover stop sooner",
                    humantime::format_duration(timeout)
                )
            } else {
                format_eval_error(&e, &script.label)
            }
        })
    });
    let abandon = async {
        tokio::select! {
            _ = tokio::time::sleep(timeout + OVERRUN) => format!(
                "discover did not return within discover_timeout ({}) and {}s more (stuck \
                 in a native call?); the run ends without it",
                humantime::format_duration(timeout),
                OVERRUN.as_secs()
            ),
            _ = async {
                halt.stopped().await;
                tokio::time::sleep(req.options.interrupt_grace).await;
            } => "discover did not stop within the interrupt grace".to_string(),
        }
    };
    let outcome = tokio::select! {
        joined = task => match joined {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(format!("discover failed: {e}")),
            Err(e) => Some(format!("discover panicked: {}", join_error_text(e))),
        },
        gave_up = abandon => {
            // The thread is left behind; its emits are refused from now on.
            shared.emitter.lock().unwrap_or_else(|e| e.into_inner()).take();
            Some(gave_up)
        }
    };
    if let Some(e) = &outcome {
        tracing::error!(target: super::summary::REPORTED_TARGET, error = %e, "discover failed");
    }
    outcome
}

/// The message of a panicked (or cancelled) blocking task.
pub fn join_error_text(err: tokio::task::JoinError) -> String {
    match err.try_into_panic() {
        Ok(panic) => super::worker::panic_text(&*panic),
        Err(err) => err.to_string(),
    }
}
