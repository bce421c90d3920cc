//! The registry of native namespaces exposed to scripts: one place that builds the engine
//! a run uses, with every module registered.

use std::sync::Arc;

use rhai::Engine;

use crate::engine::{EngineSettings, base_engine};
use crate::keys::KeyRing;

/// Builds the engine for runs and checks: limits, resolver, and every native namespace.
/// `keys` are the encryption keys scripts may name in `.encrypt(name)` / `.decrypt(name)`.
pub fn build_engine(settings: &EngineSettings, keys: Arc<KeyRing>) -> Engine {
    let mut engine = base_engine(settings);
    crate::runner::ctx::register(&mut engine);
    crate::natives::time::register(&mut engine);
    crate::api::register(&mut engine);
    let stores = if settings.scripts.allow_storage_uri {
        crate::storage::rhai::ScriptStores::Allowed
    } else {
        crate::storage::rhai::ScriptStores::Refused
    };
    crate::storage::rhai::register(&mut engine, stores);
    crate::flow::rhai::register(&mut engine, keys);
    engine
}
