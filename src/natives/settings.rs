//! What native functions need at call time, carried in the Rhai tag so that exported
//! modules, which capture nothing, can read it: the configuration that built the engine
//! (the encryption keys scripts may name, whether `storage(...)` is allowed), kept in the
//! engine's default tag, and the [`ItemScope`] of the call, which [`crate::engine::call`]
//! adds to that tag for each call.

use std::sync::Arc;

use rhai::{Dynamic, Engine, NativeCallContext};

use crate::item_scope::ItemScope;
use crate::keys::KeyRing;
use crate::storage::rhai::ScriptStores;

/// Settings native functions read at call time.
#[derive(Clone)]
pub struct NativeSettings {
    /// Keys `.encrypt(name)`, `.envelope(name)` and `.decrypt(name)` may name.
    pub keys: Arc<KeyRing>,
    /// Whether scripts may open stores of their own with `storage(...)`.
    pub stores: ScriptStores,
    /// The run and item of the call: empty in the engine's default tag, set per call.
    pub scope: Arc<ItemScope>,
}

impl Default for NativeSettings {
    fn default() -> Self {
        NativeSettings {
            keys: Arc::new(KeyRing::empty()),
            stores: ScriptStores::Refused,
            scope: Arc::default(),
        }
    }
}

/// Changes the settings stored in `engine` (starting from the defaults).
pub fn update(engine: &mut Engine, change: impl FnOnce(&mut NativeSettings)) {
    let mut settings = of_engine(engine);
    change(&mut settings);
    engine.set_default_tag(Dynamic::from(settings));
}

/// The settings stored in `engine` (the defaults when none were stored).
pub fn of_engine(engine: &Engine) -> NativeSettings {
    engine
        .default_tag()
        .read_lock::<NativeSettings>()
        .map(|s| s.clone())
        .unwrap_or_default()
}

/// The settings of the engine running this call, with the call's scope (the defaults
/// when none were stored).
pub fn of(ctx: &NativeCallContext) -> NativeSettings {
    ctx.tag()
        .and_then(|tag| tag.read_lock::<NativeSettings>().map(|s| s.clone()))
        .unwrap_or_default()
}
