//! The registry of native namespaces exposed to scripts: one place that builds the engine
//! a run uses, with every module registered.

use rhai::Engine;

use crate::engine::{EngineSettings, base_engine};

/// Builds the engine for runs and checks: limits, resolver, and every native namespace.
pub fn build_engine(settings: &EngineSettings) -> Engine {
    let mut engine = base_engine(settings);
    crate::runner::ctx::register(&mut engine);
    crate::natives::time::register(&mut engine);
    engine
}
