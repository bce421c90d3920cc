//! The Rhai engine: one shared [`rhai::Engine`] per configuration with our limits, module
//! resolution, logging hooks and the per-call deadline; [`call`] runs a script function
//! with its run scope; scripts compiled into self-contained generations ([`Script`]);
//! diagnostics with `file:line:col`.

mod call;
pub mod check;
mod check_members;
mod check_options;
pub mod diagnostics;
pub mod docs;
pub mod embedded;
pub mod resolver;
pub mod sandbox;
pub mod script;
pub mod suggest;
pub mod surface;

use std::path::PathBuf;

use rhai::Engine;

pub use call::call;
pub use diagnostics::{Diagnostic, format_eval_error, thrown_retryable};
pub use sandbox::ScriptsConfig;
pub use script::{Script, ScriptError};

/// How often (in Rhai operations) the deadline is checked.
const DEADLINE_CHECK_EVERY: u64 = 1024;

/// Settings of the engine that are not per script.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Extra folders searched for imports after the script's folder (and its `../stdlib`).
    pub stdlib_dirs: Vec<PathBuf>,
    /// What scripts may reach beyond what their run hands them (`[scripts]`).
    pub scripts: ScriptsConfig,
}

impl Default for EngineSettings {
    fn default() -> Self {
        let stdlib_dirs = std::env::var_os("CXPIPE_STDLIB")
            .map(|v| std::env::split_paths(&v).collect())
            .unwrap_or_default();
        EngineSettings {
            stdlib_dirs,
            scripts: ScriptsConfig::default(),
        }
    }
}

impl EngineSettings {
    /// The default settings with the configuration's `[scripts]` table.
    pub fn with_scripts(scripts: &ScriptsConfig) -> EngineSettings {
        EngineSettings {
            scripts: scripts.clone(),
            ..EngineSettings::default()
        }
    }
}

/// Value returned by `on_progress` when the item's deadline has passed.
pub const DEADLINE_TOKEN: &str = "item deadline exceeded (item_timeout)";

/// Value returned by `on_progress` when a call ran more operations than allowed.
pub const OPERATIONS_TOKEN: &str = "operation limit exceeded (max_operations)";

/// Builds an engine with cxpipe's safety limits and logging. Callers register the native
/// namespaces (ctx, api, flow, storage) on the result.
pub fn base_engine(settings: &EngineSettings) -> Engine {
    let mut engine = Engine::new();
    engine.set_strict_variables(true);
    engine.disable_symbol("eval");
    engine.set_max_call_levels(64);
    engine.set_max_expr_depths(128, 64);
    engine.set_max_string_size(16 * 1024 * 1024);
    engine.set_max_array_size(1_000_000);
    engine.set_max_map_size(100_000);
    engine.set_max_modules(256);
    // Operations are limited per call through `on_progress` (the item's `max_operations`),
    // not engine-wide, so `discover` over millions of records is not cut short.
    engine.set_max_operations(0);
    engine.on_progress(call::exceeded);
    engine.on_print(|text| tracing::info!(target: "cxpipe::script", "{text}"));
    engine.on_debug(|text, source, pos| {
        tracing::debug!(target: "cxpipe::script", source = source.unwrap_or(""), line = pos.line(), "{text}")
    });
    engine.set_module_resolver(resolver::ScriptResolver::new(settings.stdlib_dirs.clone()));
    engine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_is_disabled_and_variables_are_strict() {
        let engine = base_engine(&EngineSettings::default());
        assert!(engine.compile("eval(\"1\")").is_err());
        assert!(engine.compile("fn f() { undefined_var }").is_err());
    }
}
