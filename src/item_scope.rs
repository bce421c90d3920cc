//! What the runner knows about the item a script call is working on, visible to native
//! stages on the same thread (manifests record the run and script; deadlines stop work).

use std::cell::RefCell;
use std::time::Instant;

/// The item a script call on this thread is processing.
#[derive(Clone, Debug, Default)]
pub struct ItemScope {
    pub run_id: String,
    pub pipeline: String,
    pub tenant: String,
    pub item_key: String,
    /// SHA-256 (hex) of the script generation running the call.
    pub script_hash: String,
    /// When the runner stops the call (the item's `item_timeout`).
    pub deadline: Option<Instant>,
    /// Most Rhai operations the call may run (the item's `max_operations`).
    pub max_operations: Option<u64>,
}

thread_local! {
    static CURRENT: RefCell<Option<ItemScope>> = const { RefCell::new(None) };
}

/// The scope of the call running on this thread, if any.
pub fn current() -> Option<ItemScope> {
    CURRENT.with(|c| c.borrow().clone())
}

/// The deadline of the call running on this thread, if any.
pub fn deadline() -> Option<Instant> {
    CURRENT.with(|c| c.borrow().as_ref().and_then(|s| s.deadline))
}

/// The deadline and operation limit of the call running on this thread.
pub fn limits() -> (Option<Instant>, Option<u64>) {
    CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .map(|s| (s.deadline, s.max_operations))
            .unwrap_or((None, None))
    })
}

/// Runs `f` with `scope` installed for this thread, restoring the previous one after.
pub fn with<R>(scope: ItemScope, f: impl FnOnce() -> R) -> R {
    let previous = CURRENT.with(|c| c.replace(Some(scope)));
    let out = f();
    CURRENT.with(|c| *c.borrow_mut() = previous);
    out
}
