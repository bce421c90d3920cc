//! The storage side of `--dry-run` (see [`crate::dry_run`]): an object "written" in a
//! dry run is consumed and hashed (SHA-256), then recorded with its size instead of
//! being stored; small puts, manifests and deletes are recorded the same way.

use sha2::{Digest, Sha256};

use crate::dry_run::{Change, DryRun};

/// An object being written in a dry run: counts and hashes, stores nothing.
pub struct DryRunObject {
    dry: DryRun,
    store: String,
    key: String,
    hasher: Sha256,
    bytes: u64,
}

impl DryRunObject {
    pub fn new(dry: DryRun, store: String, key: String) -> DryRunObject {
        DryRunObject {
            dry,
            store,
            key,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    pub fn write(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
    }

    /// Records the object that would have been stored; returns its size.
    pub fn close(self) -> u64 {
        self.dry.record(Change::Write {
            store: self.store,
            key: self.key,
            bytes: self.bytes,
            sha256: hex::encode(self.hasher.finalize()),
        });
        self.bytes
    }
}

/// Records a whole-object put of `data` at `key`.
pub fn record_put(dry: &DryRun, store: &str, key: &str, data: &[u8]) {
    let mut object = DryRunObject::new(dry.clone(), store.to_string(), key.to_string());
    object.write(data);
    object.close();
}

/// Records a delete of `key`.
pub fn record_delete(dry: &DryRun, store: &str, key: &str) {
    dry.record(Change::Delete {
        store: store.to_string(),
        key: key.to_string(),
    });
}
