//! The sinks scripts call: [`write`] (a new object plus its manifest) and [`discard`]
//! (checks only), each returning a [`receipt`] of what happened.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::error::FlowError;
use super::fetch::FetchPolicy;
use super::manifest::Manifest;
use super::run::{self, Outcome, Sink};
use super::spec::Flow;
use crate::item_scope::ItemScope;
use crate::keys::KeyRing;
use crate::storage::{StorageError, Store, manifest_key};

/// A fresh-URL function for `fetch(fn)` flows.
pub type UrlFn<'a> = Option<&'a mut dyn FnMut() -> Result<String, FlowError>>;

/// Attempts at writing one object: a retryable storage error (a failed part upload, a
/// commit the server refused with 5xx) aborts the upload and runs the flow again from its
/// source's first byte, this many times in all.
pub const WRITE_ATTEMPTS: u32 = 3;
/// Pause before the second attempt; doubled before each later one.
const WRITE_RETRY_DELAY: Duration = Duration::from_millis(500);

/// Runs `flow` into a new object `key` of `store` and writes its manifest. An existing key
/// is left alone: the receipt says `existed: true` and nothing is fetched. A retryable
/// storage error restarts the whole flow (see [`WRITE_ATTEMPTS`]); nothing partial is
/// ever visible. `scope` is the call's: the work stops at its deadline, and the manifest
/// records its run, pipeline, tenant, item and script hash.
pub fn write(
    flow: &Flow,
    store: &Store,
    key: &str,
    keys: &KeyRing,
    mut url_fn: UrlFn<'_>,
    scope: &ItemScope,
) -> Result<Map<String, Value>, FlowError> {
    let deadline = scope.deadline;
    crate::storage::check_key(key)?;
    let mut attempt = 1;
    let outcome = loop {
        let sink = Sink::Store {
            store: store.clone(),
            key: key.to_string(),
        };
        let url_fn = url_fn.as_mut().map(|f| &mut **f as &mut dyn FnMut() -> _);
        match run::run(flow, sink, keys, url_fn, policy(deadline)) {
            Err(FlowError::Storage(e)) if e.retryable() && attempt < WRITE_ATTEMPTS => {
                let delay = WRITE_RETRY_DELAY * 2u32.pow(attempt - 1);
                if deadline.is_some_and(|d| Instant::now() + delay >= d) {
                    return Err(FlowError::Storage(e));
                }
                tracing::warn!(
                    store = %store.describe(), key, attempt, error = %e,
                    "storage failed mid-flow; any upload was aborted, starting again from the first byte"
                );
                std::thread::sleep(delay);
                attempt += 1;
            }
            // Someone else created the key while this flow was writing: theirs stays.
            Err(FlowError::Storage(StorageError::Exists { .. })) => break None,
            other => break Some(other?),
        }
    };
    let Some(outcome) = outcome.filter(|o| !o.existed) else {
        tracing::info!(store = %store.describe(), key, "object exists; not overwritten");
        let handle = tokio::runtime::Handle::current();
        let size = crate::storage::block_within(
            &handle,
            deadline,
            store,
            "checking",
            key,
            |s, k| async move { s.size(&k).await },
        )?;
        let mut r = Map::new();
        r.insert("key".into(), key.into());
        r.insert("existed".into(), true.into());
        r.insert("bytes_stored".into(), size.unwrap_or(0).into());
        r.insert("manifest".into(), manifest_key(key).into());
        r.insert("write_attempts".into(), attempt.into());
        return Ok(r);
    };
    let mut manifest = Manifest::new(flow, key, &outcome, scope);
    manifest.seal(keys);
    // Not cut at the deadline: the object is committed and must get its manifest.
    tokio::runtime::Handle::current().block_on(manifest.store(store))?;
    tracing::info!(
        store = %store.describe(), key,
        bytes = outcome.chain.stored.size,
        ms = outcome.duration.as_millis() as u64,
        "object stored"
    );
    let mut r = receipt(Some(key), &outcome);
    r.insert("write_attempts".into(), attempt.into());
    Ok(r)
}

/// Runs `flow` for its checks and hashes only, stopping at `deadline`.
pub fn discard(
    flow: &Flow,
    keys: &KeyRing,
    url_fn: UrlFn<'_>,
    deadline: Option<Instant>,
) -> Result<Map<String, Value>, FlowError> {
    let outcome = run::run(flow, Sink::Discard, keys, url_fn, policy(deadline))?;
    Ok(receipt(None, &outcome))
}

fn policy(deadline: Option<Instant>) -> FetchPolicy {
    FetchPolicy {
        deadline,
        ..FetchPolicy::default()
    }
}

/// The receipt map of a finished flow.
pub fn receipt(key: Option<&str>, o: &Outcome) -> Map<String, Value> {
    let c = &o.chain;
    let v = json!({
        "key": key,
        "existed": false,
        "bytes_read": o.bytes_read,
        "bytes_stored": c.stored.size,
        "plaintext_size": c.plaintext.size,
        "sha256": c.plaintext.sha256,
        "md5": c.md5,
        "stored_sha256": c.stored.sha256,
        "audio": c.audio,
        "encrypted_with": o.plan.encryption.as_ref().map(|(n, _)| n.clone()),
        "duration_ms": o.duration.as_millis() as u64,
        "fetch_attempts": o.fetch.attempts,
        "url_refreshes": o.fetch.refreshes,
        "restarts": o.fetch.restarts,
        "manifest": key.map(manifest_key),
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!("json! object"),
    }
}
