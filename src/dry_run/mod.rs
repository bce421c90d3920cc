//! `cxpipe run --dry-run`: a run whose reads go through while nothing changes anywhere.
//! A [`DryRun`] recorder is attached to the run's [`Api`] (mutating calls are recorded, not
//! sent: `crate::api::dry_run`) and stores (writes are consumed and hashed, not stored:
//! `crate::storage::dry_run`); the run works on a throwaway copy of the ledger
//! ([`ledger`]), so items, checkpoints, kv and audit entries of the real ledger stay as
//! they were and a later real run still does the work. [`report`] prints what would have
//! changed.

pub mod ledger;
pub mod report;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rhai::Dynamic;
use serde::Serialize;

use crate::api::Api;
use crate::runner::RunRequest;
use crate::storage::Store;

/// One change a dry run did not make.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A mutating API call (POST, PUT, PATCH, DELETE) that was not sent.
    Api {
        method: String,
        /// Path and query, with credential-like query values masked.
        path: String,
        /// The JSON body, compact and cut to a few hundred characters.
        #[serde(skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
    /// An object (or manifest) that was not written.
    Write {
        store: String,
        key: String,
        bytes: u64,
        sha256: String,
    },
    /// An object that was not deleted.
    Delete { store: String, key: String },
}

/// Records the changes of one dry run; cheap to clone (shared list).
#[derive(Clone, Debug, Default)]
pub struct DryRun {
    changes: Arc<Mutex<Vec<Change>>>,
}

impl DryRun {
    pub fn new() -> DryRun {
        DryRun::default()
    }

    /// Remembers a change that was not made.
    pub fn record(&self, change: Change) {
        tracing::info!(change = ?change, "dry run: not applied");
        self.changes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(change);
    }

    /// Every change recorded so far, in the order the run asked for them.
    pub fn changes(&self) -> Vec<Change> {
        self.changes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Makes `request` a dry run: its API client and stores record instead of changing,
    /// and deferred items are not waited for within the run (what comes after a deferral
    /// usually depends on a change that was not made); they end the run `deferred`.
    /// The ledger is the caller's to replace (see [`ledger::throwaway_copy`]).
    pub fn attach(&self, request: &mut RunRequest) {
        request.api = self.wrap(std::mem::take(&mut request.api));
        request.store = self.wrap(std::mem::take(&mut request.store));
        for value in request.stores.values_mut() {
            *value = self.wrap(std::mem::take(value));
        }
        request.options.defer_max_wait = Duration::ZERO;
    }

    /// `value` with this recorder attached when it is an [`Api`] or a [`Store`].
    fn wrap(&self, value: Dynamic) -> Dynamic {
        if value.is::<Api>() {
            Dynamic::from(value.cast::<Api>().with_dry_run(self.clone()))
        } else if value.is::<Store>() {
            Dynamic::from(value.cast::<Store>().with_dry_run(self.clone()))
        } else {
            value
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn attach_wraps_the_api_and_every_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::from_uri(&format!("fs://{}", dir.path().display())).unwrap();
        let mut stores = rhai::Map::new();
        stores.insert("archive".into(), Dynamic::from(store.clone()));
        let ledger = crate::ledger::Ledger::open_dir(dir.path()).await.unwrap();
        let engine = rhai::Engine::new();
        let script =
            crate::engine::Script::compile(&engine, "t", "t", "fn process(ctx, item) {}", None);
        let mut request = RunRequest {
            engine: Arc::new(engine),
            script: Arc::new(script.unwrap()),
            options: Default::default(),
            pipeline: "t".into(),
            tenant: "t".into(),
            params: Default::default(),
            ledger,
            api: Dynamic::UNIT,
            store: Dynamic::from(store),
            stores,
            progress: false,
            generations: None,
            item_observer: None,
            bytes_written: Default::default(),
            counters: Default::default(),
            cluster: None,
        };
        let dry = DryRun::new();
        dry.attach(&mut request);
        assert_eq!(request.options.defer_max_wait, Duration::ZERO);
        for value in [request.store.clone(), request.stores["archive"].clone()] {
            let store = value.cast::<Store>();
            store
                .put("k", bytes::Bytes::from_static(b"abc"))
                .await
                .unwrap();
            assert_eq!(store.size("k").await.unwrap(), None, "nothing stored");
        }
        assert_eq!(dry.changes().len(), 2);
    }
}
