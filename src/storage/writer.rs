//! [`ObjectWriter`]: writes one object in explicit chunks (8 MiB on object stores) with
//! `if_not_exists`, so an
//! object is either complete or absent. Any error aborts the upload (fs: the partial file in
//! `.cxpipe-partial/` is removed; S3/Azure/GCS: the uncommitted parts are dropped); the
//! object must then be written again from its first byte. In a dry run the bytes are only
//! hashed and counted ([`super::dry_run`]).

use bytes::Bytes;

use super::dry_run::DryRunObject;
use super::{StorageError, Store};

/// An object being written. Drop without [`close`](ObjectWriter::close) leaves nothing
/// visible, but call [`abort`](ObjectWriter::abort) to clean up promptly.
pub struct ObjectWriter {
    writer: Option<Target>,
    key: String,
    store: String,
    written: u64,
    /// The store handle the object was opened on, told the size once it is committed.
    counted: Option<Store>,
}

/// Where the bytes go.
enum Target {
    Store(opendal::Writer),
    DryRun(DryRunObject),
}

/// Result of closing a writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// The object is now visible with this many bytes.
    Stored(u64),
    /// Someone else created the key meanwhile; nothing was overwritten.
    Existed,
}

impl ObjectWriter {
    pub(super) async fn open(
        store: &Store,
        key: &str,
    ) -> Result<Option<ObjectWriter>, StorageError> {
        let result = store
            .operator()
            .writer_with(key)
            .chunk(store.chunk_size())
            .if_not_exists(true)
            .await;
        let writer = match result {
            Ok(w) => w,
            Err(e) if e.kind() == opendal::ErrorKind::ConditionNotMatch => return Ok(None),
            Err(source) => {
                return Err(StorageError::Op {
                    action: "creating",
                    key: key.to_string(),
                    store: store.describe(),
                    cause: Box::new(source),
                });
            }
        };
        Ok(Some(ObjectWriter {
            writer: Some(Target::Store(writer)),
            key: key.to_string(),
            store: store.describe(),
            written: 0,
            counted: Some(store.clone()),
        }))
    }

    /// A writer that records the object in a dry run instead of storing it.
    pub(super) fn dry_run(object: DryRunObject) -> ObjectWriter {
        ObjectWriter {
            writer: Some(Target::DryRun(object)),
            key: String::new(),
            store: String::new(),
            written: 0,
            counted: None,
        }
    }

    fn err(&self, action: &'static str, source: opendal::Error) -> StorageError {
        StorageError::Op {
            action,
            key: self.key.clone(),
            store: self.store.clone(),
            cause: Box::new(source),
        }
    }

    /// Appends bytes; on error the upload is aborted.
    pub async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        let n = data.len() as u64;
        let w = match self.writer.as_mut() {
            Some(Target::Store(w)) => w,
            Some(Target::DryRun(object)) => {
                object.write(&data);
                self.written += n;
                return Ok(());
            }
            None => return Err(self.err("writing", closed_error())),
        };
        if let Err(e) = w.write(data).await {
            self.abort().await;
            // A store that checks `if_not_exists` when a multi-part upload starts (GCS may)
            // reports a key created since `create` here rather than at close.
            if e.kind() == opendal::ErrorKind::ConditionNotMatch {
                return Err(StorageError::Exists {
                    key: self.key.clone(),
                    store: self.store.clone(),
                });
            }
            return Err(self.err("writing", e));
        }
        self.written += n;
        Ok(())
    }

    /// Commits the object; on error the upload is aborted and nothing is visible.
    pub async fn close(mut self) -> Result<Closed, StorageError> {
        let mut w = match self.writer.take() {
            Some(Target::Store(w)) => w,
            Some(Target::DryRun(object)) => return Ok(Closed::Stored(object.close())),
            None => return Err(self.err("closing", closed_error())),
        };
        match w.close().await {
            Ok(_) => {
                if let Some(store) = &self.counted {
                    store.committed(self.written);
                }
                Ok(Closed::Stored(self.written))
            }
            Err(e) if e.kind() == opendal::ErrorKind::ConditionNotMatch => {
                let _ = w.abort().await;
                Ok(Closed::Existed)
            }
            Err(e) => {
                if let Err(abort) = w.abort().await {
                    tracing::warn!(key = %self.key, store = %self.store, error = %abort, "abort after failed close");
                }
                Err(self.err("committing", e))
            }
        }
    }

    /// Drops everything written so far.
    pub async fn abort(&mut self) {
        if let Some(Target::Store(mut w)) = self.writer.take()
            && let Err(e) = w.abort().await
        {
            tracing::warn!(key = %self.key, store = %self.store, error = %e, "aborting a partial write");
        }
    }

    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.written
    }
}

fn closed_error() -> opendal::Error {
    opendal::Error::new(
        opendal::ErrorKind::Unexpected,
        "writer already closed or aborted",
    )
}
