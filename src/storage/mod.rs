//! Destinations and sources of objects: a [`Store`] wraps an OpenDAL `Operator` built from
//! a URI or a `[storage.NAME]` table (`fs`, `memory`, `s3`, `azblob`, `gcs`). Writes are
//! whole-object or nothing (see [`writer`]); every archived object has a manifest sidecar
//! (`KEY.manifest.json`) that listings hide. A store in a `--dry-run` reads as usual and
//! records its writes instead of making them ([`dry_run`]).

mod config;
mod deadline;
mod dry_run;
mod names;
mod partials;
pub mod rhai;
mod writer;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::TryStreamExt;

use crate::dry_run::DryRun;

pub use config::StorageConfig;
pub use deadline::block_within;
pub use names::{MAX_KEY_BYTES, MAX_SEGMENT_BYTES, check_key, check_prefix, check_read_key};
pub use partials::DEFAULT_PARTIAL_MAX_AGE;
pub use writer::{Closed, ObjectWriter};

/// Chunk size of multi-part writes to object stores (S3 parts, Azure blocks, GCS 256 KiB
/// multiples).
pub const CHUNK: usize = 8 * 1024 * 1024;
/// Chunk size of `fs` and `memory` writes: no part-size rules there, so less memory.
pub const LOCAL_CHUNK: usize = 1024 * 1024;
/// Suffix of manifest sidecars.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";
/// Folder (inside an `fs` root) where partial files live until they are complete.
pub const PARTIAL_DIR: &str = ".cxpipe-partial";
/// Largest JSON document `read_json` loads.
pub const MAX_JSON: u64 = 16 * 1024 * 1024;

/// Error from a storage operation; says what was done to which key of which store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage {uri}: {message}")]
    Config { uri: String, message: String },
    /// The OpenDAL error is shown in full here (it carries its own causes), so it is not
    /// also exposed as `source()`: error chains would print it twice.
    /// Capability-bearing query values (a resumable upload's `upload_id`, signatures) in the
    /// request URIs OpenDAL attaches are redacted.
    #[error("{action} {key:?} in {store}: {}{}", redact_query_secrets(&cause.to_string()), hint(store, cause))]
    Op {
        action: &'static str,
        key: String,
        store: String,
        cause: Box<opendal::Error>,
    },
    #[error("{key:?} already exists in {store}")]
    Exists { key: String, store: String },
    #[error("invalid key {key:?}: {reason}")]
    Key { key: String, reason: &'static str },
    #[error("{action} {key:?} in {store}: the item's deadline passed (item_timeout)")]
    Deadline {
        action: &'static str,
        key: String,
        store: String,
    },
    #[error("{key:?} in {store} is not valid JSON: {message}")]
    Json {
        key: String,
        store: String,
        message: String,
    },
    #[error("{key:?} in {store} is {size} bytes, more than the {limit}-byte limit")]
    TooLarge {
        key: String,
        store: String,
        size: u64,
        limit: u64,
    },
}

impl StorageError {
    /// Whether retrying the operation later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            // A local I/O error that no retry can fix (an invalid or over-long file name, a
            // NUL byte, a file where a folder should be, denied): OpenDAL marks every
            // unclassified I/O error temporary, so it is decided here from the cause.
            StorageError::Op { cause, .. } if io_cause(cause).is_some_and(io_permanent) => false,
            // Unexpected covers resets and 5xx after OpenDAL's own retries; it also covers
            // "no credential could be loaded", which may be a metadata server's hiccup.
            StorageError::Op { cause, .. } => {
                cause.is_temporary()
                    || matches!(
                        cause.kind(),
                        opendal::ErrorKind::Unexpected | opendal::ErrorKind::RateLimited
                    )
            }
            StorageError::Deadline { .. } => true,
            _ => false,
        }
    }
}

/// The `std::io::Error` behind an OpenDAL error (local file systems), if any.
fn io_cause(e: &opendal::Error) -> Option<&std::io::Error> {
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = c.source();
    }
    None
}

/// I/O errors that the same call would meet again: the name, the path or the permissions
/// are wrong, not the moment. Network kinds (refused, reset) are not listed: a server
/// may come back.
fn io_permanent(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        InvalidInput
            | InvalidFilename
            | NotADirectory
            | IsADirectory
            | DirectoryNotEmpty
            | PermissionDenied
            | ReadOnlyFilesystem
            | FileTooLarge
            | TooManyLinks
            | CrossesDevices
            | Unsupported
    )
}

/// Query parameters whose values let their holder act without credentials.
const SECRET_PARAMS: [&str; 6] = [
    "upload_id=",
    "X-Amz-Signature=",
    "X-Amz-Security-Token=",
    "X-Goog-Signature=",
    "sig=",
    "access_token=",
];

/// `text` with the values of [`SECRET_PARAMS`] replaced by `REDACTED`.
fn redact_query_secrets(text: &str) -> String {
    let mut out = text.to_string();
    for param in SECRET_PARAMS {
        let mut from = 0;
        while let Some(i) = out[from..].find(param) {
            let start = from + i + param.len();
            let len = out[start..]
                .find(['&', ' ', ',', '}', '"', '\'', '\n'])
                .unwrap_or(out.len() - start);
            out.replace_range(start..start + len, "REDACTED");
            from = start + "REDACTED".len();
        }
    }
    out
}

/// No credential could be loaded for signing (none configured, or their source failed).
fn missing_credentials(e: &opendal::Error) -> bool {
    e.to_string().contains("failed to load signing credential")
}

/// What to do about an error whose cause the user can fix in the config.
fn hint(store: &str, e: &opendal::Error) -> String {
    if !missing_credentials(e) {
        return String::new();
    }
    let how = match store.split("://").next().unwrap_or("") {
        "s3" => "access_key_id + secret_access_key, or AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY",
        "azblob" => "account_key, or AZURE_STORAGE_KEY",
        "gcs" => {
            "credential_path or token, or GOOGLE_APPLICATION_CREDENTIALS, or anonymous = true for a public bucket or an emulator"
        }
        _ => "the scheme's credentials",
    };
    format!(
        " (no credentials could be loaded for this store; if none are configured, set {how}; see docs/CONFIG.md#stores)"
    )
}

/// Attempts of a read-side operation on a temporary error.
const READ_RETRIES: usize = 4;

/// The two views of one store.
struct Operators {
    /// For writes: no retry layer, since a retried write can lose buffered data; a failed
    /// write is aborted and the object restarted instead.
    write: opendal::Operator,
    /// For reads, stats, listings and deletes: retried on temporary errors (a reset
    /// mid-response from an object store), with jittered backoff.
    read: opendal::Operator,
}

/// An object store. Cheap to clone; the Rhai type `Store`.
#[derive(Clone)]
pub struct Store {
    ops: Arc<Operators>,
    desc: Arc<str>,
    chunk: usize,
    /// `fs` only: stale partial files to remove before the first write.
    partials: Option<Arc<partials::PartialSweep>>,
    /// Set for `--dry-run`: writes and deletes are recorded here, not made.
    dry_run: Option<DryRun>,
    /// Bytes of objects committed through this handle and its clones (see
    /// [`Store::counting_into`]).
    committed: Arc<AtomicU64>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Store({})", self.desc)
    }
}

impl Store {
    /// A store from a URI such as `fs:///data/out`, `memory://test`,
    /// `s3://bucket/prefix?endpoint=http://127.0.0.1:9010&region=us-east-1`.
    /// Credentials come from the environment (see `StorageConfig`).
    pub fn from_uri(uri: &str) -> Result<Store, StorageError> {
        Store::from_config(&StorageConfig::uri(uri), std::path::Path::new("."))
    }

    /// A store from a `[storage.NAME]` table; relative paths start at `config_dir`.
    pub fn from_config(
        cfg: &StorageConfig,
        config_dir: &std::path::Path,
    ) -> Result<Store, StorageError> {
        let (op, desc) = cfg.build(config_dir)?;
        let local = matches!(op.info().scheme(), "fs" | "memory");
        // Each store gets its own HTTP connection pool: OpenDAL's process-wide default client
        // keeps connections whose tasks belong to the runtime that opened them, and a later
        // runtime (each test, each daemon reload) cannot use them.
        let op = if local {
            op
        } else {
            let transport = opendal::HttpTransporter::new(
                opendal_http_transport_reqwest::ReqwestTransport::new(reqwest::Client::new()),
            );
            op.with_context(opendal::OperationContext::new().with_http_transport(transport))
        };
        // Local file systems have no transient network errors to ride out, and OpenDAL
        // marks every unclassified I/O error temporary (an invalid file name would be tried
        // again and again), so only remote stores get the retry layer.
        let reads = if local {
            op.clone()
        } else {
            op.clone().layer(
                opendal::layers::RetryLayer::new()
                    .with_jitter()
                    .with_max_times(READ_RETRIES),
            )
        };
        let partials = cfg
            .partial_dir(config_dir)?
            .map(|(dir, max_age)| Arc::new(partials::PartialSweep::new(dir, max_age)));
        Ok(Store {
            ops: Arc::new(Operators {
                write: op,
                read: reads,
            }),
            desc: desc.into(),
            chunk: if local { LOCAL_CHUNK } else { CHUNK },
            partials,
            dry_run: None,
            committed: Arc::default(),
        })
    }

    /// This store, adding the size of every object it commits (data, manifests and
    /// documents; not dry runs) to `counter`: a run's bytes written.
    pub fn counting_into(&self, counter: Arc<AtomicU64>) -> Store {
        Store {
            committed: counter,
            ..self.clone()
        }
    }

    /// Counts `n` committed bytes.
    pub(crate) fn committed(&self, n: u64) {
        self.committed.fetch_add(n, Ordering::Relaxed);
    }

    /// This store in a dry run: reads as usual; writes are consumed and hashed, then
    /// recorded in `dry` (key, size, SHA-256) instead of stored; deletes are recorded.
    pub fn with_dry_run(&self, dry: DryRun) -> Store {
        Store {
            dry_run: Some(dry),
            ..self.clone()
        }
    }

    /// The store's URI without credentials or query.
    pub fn describe(&self) -> String {
        self.desc.to_string()
    }

    fn op_err(&self, action: &'static str, key: &str) -> impl Fn(opendal::Error) -> StorageError {
        let store = self.describe();
        let key = key.to_string();
        move |source| StorageError::Op {
            action,
            key: key.clone(),
            store: store.clone(),
            cause: Box::new(source),
        }
    }

    /// Size of `key` in bytes, or `None` when it does not exist.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        check_read_key(key)?;
        match self.ops.read.stat(key).await {
            Ok(meta) => Ok(Some(meta.content_length())),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.op_err("checking", key)(e)),
        }
    }

    /// Every object key under `prefix` (recursive), without manifests or partial files.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        check_prefix(prefix)?;
        let entries = self
            .ops
            .read
            .list_with(prefix)
            .recursive(true)
            .await
            .map_err(self.op_err("listing", prefix))?;
        let mut keys: Vec<String> = entries
            .into_iter()
            .filter(|e| e.metadata().mode().is_file())
            .map(|e| e.path().to_string())
            .filter(|p| !p.ends_with(MANIFEST_SUFFIX) && !p.starts_with(PARTIAL_DIR))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Keys under `prefix` that have a manifest (the manifest's object may be missing).
    pub async fn manifested(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        check_prefix(prefix)?;
        let entries = self
            .ops
            .read
            .list_with(prefix)
            .recursive(true)
            .await
            .map_err(self.op_err("listing", prefix))?;
        let mut keys: Vec<String> = entries
            .into_iter()
            .filter(|e| e.metadata().mode().is_file())
            .filter_map(|e| e.path().strip_suffix(MANIFEST_SUFFIX).map(str::to_string))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Reads a small object whole; `None` when absent, error past `limit` bytes.
    pub async fn read_small(&self, key: &str, limit: u64) -> Result<Option<Bytes>, StorageError> {
        let Some(size) = self.size(key).await? else {
            return Ok(None);
        };
        if size > limit {
            return Err(StorageError::TooLarge {
                key: key.to_string(),
                store: self.describe(),
                size,
                limit,
            });
        }
        let buf = self
            .ops
            .read
            .read(key)
            .await
            .map_err(self.op_err("reading", key))?;
        Ok(Some(buf.to_bytes()))
    }

    /// Replaces `key` with `data` in one atomic write (small documents such as reports).
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        check_key(key)?;
        self.put_unchecked(key, data).await
    }

    /// Replaces the manifest sidecar of the object `key` with `data`.
    pub async fn put_manifest(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        check_key(key)?;
        self.put_unchecked(&manifest_key(key), data).await
    }

    async fn put_unchecked(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        if let Some(dry) = &self.dry_run {
            dry_run::record_put(dry, &self.desc, key, &data);
            return Ok(());
        }
        self.sweep_partials().await;
        let n = data.len() as u64;
        self.ops
            .write
            .write(key, data)
            .await
            .map_err(self.op_err("writing", key))?;
        self.committed(n);
        Ok(())
    }

    /// Removes stale partial files once per store, before its first write (`fs` only).
    async fn sweep_partials(&self) {
        if let Some(sweep) = &self.partials {
            sweep.run_once().await;
        }
    }

    /// Deletes `key` (absent is fine).
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_read_key(key)?;
        if let Some(dry) = &self.dry_run {
            dry_run::record_delete(dry, &self.desc, key);
            return Ok(());
        }
        self.ops
            .read
            .delete(key)
            .await
            .map_err(self.op_err("deleting", key))
    }

    /// The object's bytes as a stream of chunks.
    pub async fn read_stream(
        &self,
        key: &str,
    ) -> Result<impl futures::Stream<Item = Result<Bytes, StorageError>> + Send + use<>, StorageError>
    {
        check_read_key(key)?;
        let reader = self
            .ops
            .read
            .reader_with(key)
            .chunk(1024 * 1024)
            .await
            .map_err(self.op_err("opening", key))?;
        let stream = reader
            .into_bytes_stream(..)
            .await
            .map_err(self.op_err("reading", key))?;
        let store = self.describe();
        let key = key.to_string();
        Ok(stream.map_err(move |e| StorageError::Op {
            action: "reading",
            key: key.clone(),
            store: store.clone(),
            cause: Box::new(opendal::Error::new(
                opendal::ErrorKind::Unexpected,
                e.to_string(),
            )),
        }))
    }

    /// Starts writing `key`; `None` when it already exists (nothing is overwritten).
    pub async fn create(&self, key: &str) -> Result<Option<ObjectWriter>, StorageError> {
        check_key(key)?;
        if self.size(key).await?.is_some() {
            return Ok(None);
        }
        if let Some(dry) = &self.dry_run {
            let object = dry_run::DryRunObject::new(dry.clone(), self.describe(), key.into());
            return Ok(Some(ObjectWriter::dry_run(object)));
        }
        self.sweep_partials().await;
        ObjectWriter::open(self, key).await
    }

    pub(crate) fn operator(&self) -> &opendal::Operator {
        &self.ops.write
    }

    /// The explicit chunk size of this store's writes.
    pub fn chunk_size(&self) -> usize {
        self.chunk
    }
}

/// The manifest key of `key`.
pub fn manifest_key(key: &str) -> String {
    format!("{key}{MANIFEST_SUFFIX}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_and_signatures_are_redacted_from_errors() {
        let cause = opendal::Error::new(opendal::ErrorKind::Unexpected, "chunk failed")
            .with_context(
                "uri",
                "http://h/upload/storage/v1/b/x/o?uploadType=resumable&upload_id=ABCsecret9",
            )
            .with_context("presigned", "https://s3/k?X-Amz-Signature=deadbeef&x=1");
        let e = StorageError::Op {
            action: "writing",
            key: "k".into(),
            store: "gcs://x".into(),
            cause: Box::new(cause),
        };
        let text = e.to_string();
        assert!(
            !text.contains("ABCsecret9") && !text.contains("deadbeef"),
            "{text}"
        );
        assert!(text.contains("upload_id=REDACTED"), "{text}");
        assert!(text.contains("X-Amz-Signature=REDACTED&x=1"), "{text}");
    }

    #[test]
    fn missing_credentials_get_a_hint() {
        let op = |store: &str, cause: opendal::Error| StorageError::Op {
            action: "listing",
            key: String::new(),
            store: store.into(),
            cause: Box::new(cause),
        };
        let signing = || {
            opendal::Error::new(opendal::ErrorKind::Unexpected, "signing http request")
                .set_source(anyhow::anyhow!("failed to load signing credential"))
        };
        let e = op("gcs://b/p", signing());
        let text = e.to_string();
        assert!(text.contains("set credential_path or token"), "{text}");
        assert!(text.contains("docs/CONFIG.md#stores"), "{text}");
        assert!(
            op("s3://b/p", signing())
                .to_string()
                .contains("AWS_ACCESS_KEY_ID")
        );
        assert!(
            std::error::Error::source(&e).is_none(),
            "the cause is printed once, in the message"
        );

        let flaky = op(
            "gcs://b/p",
            opendal::Error::new(opendal::ErrorKind::Unexpected, "connection reset").set_temporary(),
        );
        assert!(flaky.retryable());
        assert!(!flaky.to_string().contains("credentials"));
    }

    #[tokio::test]
    async fn local_errors_that_would_recur_are_permanent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::from_uri(&format!("fs://{}", dir.path().display())).unwrap();
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let long = "x".repeat(5000);
        // The raw operator: `check_key` would refuse these names before any call.
        for bad in ["a\0b", long.as_str(), "file/under-a-file"] {
            let cause = store.operator().stat(bad).await.unwrap_err();
            let e = StorageError::Op {
                action: "checking",
                key: bad.chars().take(20).collect(),
                store: store.describe(),
                cause: Box::new(cause),
            };
            assert!(!e.retryable(), "{e}");
        }
        let reset = opendal::Error::new(opendal::ErrorKind::Unexpected, "reset")
            .set_source(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
            .set_temporary();
        let e = StorageError::Op {
            action: "reading",
            key: "k".into(),
            store: "s3://b".into(),
            cause: Box::new(reset),
        };
        assert!(e.retryable(), "network errors stay retryable");
    }

    #[test]
    fn object_stores_write_8_mib_chunks_and_local_stores_1_mib() {
        let s3 = Store::from_uri("s3://bucket/p?endpoint=http://127.0.0.1:9").unwrap();
        assert_eq!(s3.chunk_size(), 8 * 1024 * 1024);
        let az =
            Store::from_uri("azblob://c/p?endpoint=http://127.0.0.1:9/a&account_name=a").unwrap();
        assert_eq!(az.chunk_size(), 8 * 1024 * 1024);
        let dir = tempfile::tempdir().unwrap();
        let fs = Store::from_uri(&format!("fs://{}", dir.path().display())).unwrap();
        assert_eq!(fs.chunk_size(), LOCAL_CHUNK);
        assert_eq!(
            Store::from_uri("memory://c").unwrap().chunk_size(),
            LOCAL_CHUNK
        );
    }

    #[tokio::test]
    async fn a_dry_run_store_reads_but_records_its_writes_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let real = Store::from_uri(&format!("fs://{}", dir.path().display())).unwrap();
        real.put("kept", Bytes::from_static(b"old")).await.unwrap();
        let dry = DryRun::new();
        let store = real.with_dry_run(dry.clone());
        assert_eq!(
            store.size("kept").await.unwrap(),
            Some(3),
            "reads go through"
        );
        store
            .put("r.json", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        store
            .put_manifest("o.wav", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        store.delete("kept").await.unwrap();
        let mut writer = store.create("o.wav").await.unwrap().expect("absent key");
        writer.write(Bytes::from_static(b"ab")).await.unwrap();
        writer.write(Bytes::from_static(b"c")).await.unwrap();
        assert_eq!(writer.close().await.unwrap(), Closed::Stored(3));
        assert!(
            store.create("kept").await.unwrap().is_none(),
            "existing keys stay"
        );
        assert_eq!(
            real.list("").await.unwrap(),
            ["kept"],
            "nothing written or deleted"
        );
        let changes = dry.changes();
        let keys: Vec<String> = changes
            .iter()
            .map(|c| match c {
                crate::dry_run::Change::Write { key, bytes, .. } => format!("write {key} {bytes}"),
                crate::dry_run::Change::Delete { key, .. } => format!("delete {key}"),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            keys,
            [
                "write r.json 2",
                "write o.wav.manifest.json 2",
                "delete kept",
                "write o.wav 3"
            ]
        );
        let crate::dry_run::Change::Write { sha256, .. } = &changes[3] else {
            unreachable!()
        };
        assert_eq!(
            sha256,
            &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"abc"))
        );
    }

    #[tokio::test]
    async fn memory_store_lists_without_manifests_and_sizes_absent_keys() {
        let store = Store::from_uri("memory://storage-mod-test").unwrap();
        store
            .put("a/1.wav", Bytes::from_static(b"abc"))
            .await
            .unwrap();
        store
            .put_manifest("a/1.wav", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        store.put("b/2.wav", Bytes::from_static(b"")).await.unwrap();
        assert_eq!(store.list("").await.unwrap(), ["a/1.wav", "b/2.wav"]);
        assert_eq!(store.list("a/").await.unwrap(), ["a/1.wav"]);
        assert_eq!(store.size("a/1.wav").await.unwrap(), Some(3));
        assert_eq!(store.size("nope").await.unwrap(), None);
        let again = Store::from_uri("memory://storage-mod-test").unwrap();
        assert_eq!(
            again.size("b/2.wav").await.unwrap(),
            Some(0),
            "same name, same store"
        );
    }
}
