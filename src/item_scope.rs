//! The run and item a script call works on: handed to each call explicitly by
//! [`crate::engine::call`] (as the call's Rhai tag), read by native functions from their
//! `NativeCallContext` and passed on as plain values to `api`, `flow` and `storage`.
//! Nothing here lives in a thread-local or a global.

use std::sync::Arc;
use std::time::Instant;

use rhai::NativeCallContext;

/// The run facts of one script call: what manifests record and when its work must stop.
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

impl ItemScope {
    /// The scope of the script call running a native function: the one its caller handed
    /// to [`crate::engine::call`], or an empty scope (no run, no deadline) for a call made
    /// without one.
    pub fn of(ctx: &NativeCallContext) -> Arc<ItemScope> {
        crate::natives::settings::of(ctx).scope
    }
}
