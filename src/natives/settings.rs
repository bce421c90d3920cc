//! What native functions need from the configuration that built the engine (the
//! encryption keys scripts may name, whether `storage(...)` is allowed), carried in the
//! engine's default tag so that exported modules, which capture nothing, can read it.

use std::sync::Arc;

use rhai::{Dynamic, Engine, NativeCallContext};

use crate::keys::KeyRing;
use crate::storage::rhai::ScriptStores;

/// Settings native functions read at call time.
#[derive(Clone)]
pub struct NativeSettings {
    /// Keys `.encrypt(name)`, `.envelope(name)` and `.decrypt(name)` may name.
    pub keys: Arc<KeyRing>,
    /// Whether scripts may open stores of their own with `storage(...)`.
    pub stores: ScriptStores,
}

impl Default for NativeSettings {
    fn default() -> Self {
        NativeSettings {
            keys: Arc::new(KeyRing::empty()),
            stores: ScriptStores::Refused,
        }
    }
}

/// Changes the settings stored in `engine` (starting from the defaults).
pub fn update(engine: &mut Engine, change: impl FnOnce(&mut NativeSettings)) {
    let mut settings = engine
        .default_tag()
        .read_lock::<NativeSettings>()
        .map(|s| s.clone())
        .unwrap_or_default();
    change(&mut settings);
    engine.set_default_tag(Dynamic::from(settings));
}

/// The settings of the engine running this call (the defaults when none were stored).
pub fn of(ctx: &NativeCallContext) -> NativeSettings {
    ctx.tag()
        .and_then(|tag| tag.read_lock::<NativeSettings>().map(|s| s.clone()))
        .unwrap_or_default()
}
