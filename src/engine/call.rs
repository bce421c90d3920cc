//! Calling a script function for a run: [`call`] hands the call its [`ItemScope`] as the
//! call's Rhai tag, where native functions read it from their `NativeCallContext`, and
//! bounds the call by the scope's deadline and operation limit.
//!
//! Rhai calls `on_progress` with the operation count only (no context, no tag), so the
//! two limits of the call running on a thread are kept, for exactly as long as the call
//! runs, in a thread-local private to this file and read only by [`exceeded`]. Run facts
//! (run id, script hash, deadline for native stages) travel in the tag alone.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

use rhai::{AST, CallFnOptions, Dynamic, Engine, EvalAltResult, FuncArgs, Scope};

use super::{DEADLINE_CHECK_EVERY, DEADLINE_TOKEN, OPERATIONS_TOKEN};
use crate::item_scope::ItemScope;
use crate::natives::settings;

/// The limits `on_progress` enforces on a call.
#[derive(Clone, Copy)]
struct Limits {
    deadline: Option<Instant>,
    max_operations: Option<u64>,
}

thread_local! {
    static LIMITS: Cell<Limits> = const {
        Cell::new(Limits { deadline: None, max_operations: None })
    };
}

/// Calls the script function `name` of `ast` with `args`, as the call of `scope`: native
/// functions see `scope` (see [`ItemScope::of`]); the call stops with
/// [`DEADLINE_TOKEN`] once `scope.deadline` passes and with [`OPERATIONS_TOKEN`] past
/// `scope.max_operations`. Top-level statements run first (imports, constants).
pub fn call(
    engine: &Engine,
    ast: &AST,
    name: &str,
    args: impl FuncArgs,
    scope: ItemScope,
) -> Result<Dynamic, Box<EvalAltResult>> {
    let limits = Limits {
        deadline: scope.deadline,
        max_operations: scope.max_operations,
    };
    let mut tag = settings::of_engine(engine);
    tag.scope = Arc::new(scope);
    let options = CallFnOptions::new().with_tag(tag);
    let _limits = LimitsGuard::install(limits);
    engine.call_fn_with_options::<Dynamic>(options, &mut Scope::new(), ast, name, args)
}

/// The value that ends the running call after `ops` operations, if one of its limits
/// is exceeded (the engine's `on_progress`).
pub(super) fn exceeded(ops: u64) -> Option<Dynamic> {
    if ops % DEADLINE_CHECK_EVERY != 0 {
        return None;
    }
    let limits = LIMITS.with(Cell::get);
    if limits.max_operations.is_some_and(|max| ops > max) {
        return Some(Dynamic::from(OPERATIONS_TOKEN));
    }
    match limits.deadline {
        Some(deadline) if Instant::now() >= deadline => Some(Dynamic::from(DEADLINE_TOKEN)),
        _ => None,
    }
}

/// Installs a call's limits on this thread; puts back the enclosing call's (a native
/// function may start another call) when dropped, panics included.
struct LimitsGuard(Limits);

impl LimitsGuard {
    fn install(limits: Limits) -> LimitsGuard {
        LimitsGuard(LIMITS.with(|l| l.replace(limits)))
    }
}

impl Drop for LimitsGuard {
    fn drop(&mut self) {
        LIMITS.with(|l| l.set(self.0));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use rhai::NativeCallContext;

    use super::*;
    use crate::engine::{EngineSettings, base_engine};

    fn is_token(err: &EvalAltResult, token: &str) -> bool {
        matches!(err, EvalAltResult::ErrorTerminated(t, _)
            if t.clone().into_string().ok().as_deref() == Some(token))
    }

    fn scope(run_id: &str, deadline: Instant) -> ItemScope {
        ItemScope {
            run_id: run_id.into(),
            deadline: Some(deadline),
            ..ItemScope::default()
        }
    }

    #[test]
    fn the_deadline_stops_an_infinite_loop() {
        let engine = base_engine(&EngineSettings::default());
        let ast = engine.compile("fn main() { loop { } }").unwrap();
        let soon = Instant::now() + Duration::from_millis(50);
        let err = call(&engine, &ast, "main", (), scope("r", soon)).unwrap_err();
        assert!(is_token(&err, DEADLINE_TOKEN), "{err}");
    }

    #[test]
    fn max_operations_stops_a_call_and_does_not_outlive_it() {
        let engine = base_engine(&EngineSettings::default());
        let count = "let i = 0; while i < 20000 { i += 1; } i";
        let ast = engine.compile(format!("fn main() {{ {count} }}")).unwrap();
        let limited = ItemScope {
            max_operations: Some(5_000),
            ..ItemScope::default()
        };
        let err = call(&engine, &ast, "main", (), limited).unwrap_err();
        assert!(is_token(&err, OPERATIONS_TOKEN), "{err}");
        // Neither an evaluation outside any call nor a later call is held to that limit.
        assert_eq!(engine.eval::<i64>(count).unwrap(), 20_000);
        let done = call(&engine, &ast, "main", (), ItemScope::default()).unwrap();
        assert_eq!(done.as_int().unwrap(), 20_000);
    }

    /// A call whose native function starts another call on the same thread (the nearest
    /// thing to two calls interleaved on one thread): each sees its own scope, the inner
    /// call's passed deadline stops only the inner call, and the outer call, resumed,
    /// sees its own scope and limits again.
    #[test]
    fn interleaved_calls_on_one_thread_each_see_their_own_scope() {
        type Seen = Vec<(String, Option<Instant>)>;
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let probe = {
            let seen = seen.clone();
            move |ctx: NativeCallContext| {
                let scope = ItemScope::of(&ctx);
                let mut seen = seen.lock().unwrap();
                seen.push((scope.run_id.clone(), scope.deadline));
            }
        };
        let mut inner_engine = base_engine(&EngineSettings::default());
        inner_engine.register_fn("probe", probe.clone());
        let inner_engine = Arc::new(inner_engine);
        let inner_ast = inner_engine
            .compile("fn main() { probe(); loop { } }")
            .unwrap();
        let passed = Instant::now() - Duration::from_millis(1);
        let mut outer_engine = base_engine(&EngineSettings::default());
        outer_engine.register_fn("probe", probe);
        outer_engine.register_fn("inner", move || -> bool {
            let err = call(
                &inner_engine,
                &inner_ast,
                "main",
                (),
                scope("inner", passed),
            )
            .expect_err("the inner call's deadline has passed");
            is_token(&err, DEADLINE_TOKEN)
        });
        let outer_ast = outer_engine
            .compile(
                "fn main() { probe(); let stopped = inner(); probe(); \
                 let i = 0; while i < 5000 { i += 1; } probe(); stopped }",
            )
            .unwrap();
        let later = Instant::now() + Duration::from_secs(3600);
        let stopped = call(&outer_engine, &outer_ast, "main", (), scope("outer", later))
            .expect("the outer call runs to its end");
        assert!(stopped.as_bool().unwrap(), "the inner call was not stopped");
        let seen = seen.lock().unwrap().clone();
        let expected = [
            ("outer", Some(later)),
            ("inner", Some(passed)),
            ("outer", Some(later)),
            ("outer", Some(later)),
        ];
        let expected: Vec<_> = expected.iter().map(|(r, d)| (r.to_string(), *d)).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_call_without_a_scope_sees_an_empty_one() {
        let mut engine = base_engine(&EngineSettings::default());
        engine.register_fn("run_id", |ctx: NativeCallContext| {
            ItemScope::of(&ctx).run_id.clone()
        });
        assert_eq!(engine.eval::<String>("run_id()").unwrap(), "");
        let ast = engine.compile("fn main() { run_id() }").unwrap();
        let later = Instant::now() + Duration::from_secs(60);
        let got = call(&engine, &ast, "main", (), scope("r-1", later)).unwrap();
        assert_eq!(got.into_string().unwrap(), "r-1");
        // The tag does not outlive the call.
        assert_eq!(engine.eval::<String>("run_id()").unwrap(), "");
    }
}
