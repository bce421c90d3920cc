//! State one run shares between its discover thread, workers and coordinator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;

use rhai::Dynamic;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::ledger::Ledger;
use crate::ledger::writer::LedgerWriter;

/// An item emitted by `discover`, on its way to admission.
pub struct Emitted {
    pub key: String,
    pub payload: String,
    pub value: Dynamic,
}

/// Everything a `ctx` reaches.
pub struct RunShared {
    pub pipeline: Arc<str>,
    pub tenant: Arc<str>,
    pub run_id: String,
    /// RFC 3339 UTC time the run started.
    pub started_at: String,
    pub script_hash: String,
    pub params: Dynamic,
    pub ledger: Ledger,
    pub writer: LedgerWriter,
    pub handle: Handle,
    /// Checkpoints committed by earlier runs (JSON text by name).
    pub committed: BTreeMap<String, String>,
    /// Checkpoints set during this run; committed only if it ends clean.
    pub pending_checkpoints: Mutex<BTreeMap<String, String>>,
    /// Present while `discover` (or an event handler) may emit.
    pub emitter: Mutex<Option<mpsc::Sender<Emitted>>>,
    pub metrics: Mutex<BTreeMap<String, f64>>,
    /// This tenant's API client (`()` when the run has none).
    pub api: Dynamic,
    /// The destination store (`()` when the run has none).
    pub store: Dynamic,
    /// Every store the pipeline grants by name (`ctx.stores.NAME`), as a map.
    pub stores: rhai::Map,
}

impl RunShared {
    /// Ends emitting: admission sees the end of its input.
    pub fn close_emitter(&self) {
        self.emitter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}
