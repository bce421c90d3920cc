//! The sinks scripts call: [`write`] (a new object plus its manifest) and [`discard`]
//! (checks only), each returning a [`receipt`] of what happened.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::error::FlowError;
use super::fetch::FetchPolicy;
use super::manifest::Manifest;
use super::run::{self, Outcome, Sink};
use super::spec::{Flow, Source, Stage};
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
    // Only an object that was there before this write may be one a stopped run left
    // without its manifest; one another writer created meanwhile gets theirs from them.
    let found_before = outcome.as_ref().is_some_and(|o| o.existed_before);
    let Some(outcome) = outcome.filter(|o| !o.existed) else {
        let handle = tokio::runtime::Handle::current();
        let sizes = crate::storage::block_within(
            &handle,
            deadline,
            store,
            "checking",
            key,
            |s, k| async move {
                let manifest = s.size(&manifest_key(&k)).await?;
                Ok((s.size(&k).await?, manifest))
            },
        )?;
        if let (true, Some(_), None) = (found_before, sizes.0, sizes.1) {
            return restore_manifest(flow, store, key, keys, url_fn, scope, attempt);
        }
        tracing::info!(store = %store.describe(), key, "object exists; not overwritten");
        let mut r = Map::new();
        r.insert("key".into(), key.into());
        r.insert("existed".into(), true.into());
        r.insert("bytes_stored".into(), sizes.0.unwrap_or(0).into());
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

/// The object `key` exists without its manifest: a run was stopped between the object's
/// commit and its manifest's. The object is never trusted as it is: `flow` runs again into
/// nothing (its checks included), the object is read back through the inverse of the
/// flow's transforms, and only when the two plaintexts agree in size and SHA-256 is the
/// manifest written (receipt `existed: true, manifest_restored: true`). Otherwise the
/// error names the object and what to do; nothing is overwritten.
fn restore_manifest(
    flow: &Flow,
    store: &Store,
    key: &str,
    keys: &KeyRing,
    url_fn: UrlFn<'_>,
    scope: &ItemScope,
    attempt: u32,
) -> Result<Map<String, Value>, FlowError> {
    let orphan = |reason: String| FlowError::Orphan {
        key: key.to_string(),
        store: store.describe(),
        reason,
    };
    tracing::warn!(
        store = %store.describe(), key,
        "object exists without its manifest (a run stopped between the two); checking it against its source"
    );
    let fresh = run::run(flow, Sink::Discard, keys, url_fn, policy(scope.deadline))?;
    let inverse = fresh
        .plan
        .stored_from_plaintext
        .iter()
        .rev()
        .map(|stage| match stage {
            Stage::Compress(codec, _) => Ok(Stage::Decompress(*codec)),
            Stage::Encrypt(name) => Ok(Stage::Decrypt(Some(name.clone()))),
            other => Err(orphan(format!(
                "its flow's stage {} cannot be undone to compare the object with its source",
                other.label()
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut back = Flow::new(Source::Read {
        store: store.clone(),
        key: key.to_string(),
    });
    back.stages = std::iter::once(Stage::Sha256).chain(inverse).collect();
    let read = match run::run(&back, Sink::Discard, keys, None, policy(scope.deadline)) {
        Ok(read) => read,
        Err(e) if e.retryable() => return Err(e),
        Err(e) => return Err(orphan(format!("reading it back failed: {e}"))),
    };
    let (got, want) = (&read.chain.stored, &fresh.chain.plaintext);
    if got.size != want.size || got.sha256 != want.sha256 {
        return Err(orphan(format!(
            "its content ({} bytes, SHA-256 {}) is not what the source gives now ({} bytes, SHA-256 {})",
            got.size,
            got.sha256.as_deref().unwrap_or("?"),
            want.size,
            want.sha256.as_deref().unwrap_or("?"),
        )));
    }
    let mut outcome = fresh;
    outcome.chain.stored = read.chain.plaintext;
    let mut manifest = Manifest::new(flow, key, &outcome, scope);
    manifest.seal(keys);
    tokio::runtime::Handle::current().block_on(manifest.store(store))?;
    tracing::info!(store = %store.describe(), key, "object matches its source; manifest restored");
    let mut r = receipt(Some(key), &outcome);
    r.insert("existed".into(), true.into());
    r.insert("manifest_restored".into(), true.into());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::codec::Codec;

    fn ring() -> KeyRing {
        let mut r = KeyRing::empty();
        r.insert_raw("archive", [7; 32]);
        r
    }

    fn flow(data: &[u8], stages: Vec<Stage>) -> Flow {
        let mut f = Flow::new(Source::Bytes {
            data: bytes::Bytes::copy_from_slice(data),
            kind: "test",
        });
        f.stages = stages;
        f
    }

    fn fs_store(dir: &tempfile::TempDir) -> Store {
        Store::from_uri(&format!("fs://{}", dir.path().display())).unwrap()
    }

    fn gzip_then_encrypt(data: &[u8]) -> Flow {
        flow(
            data,
            vec![
                Stage::Sha256,
                Stage::Compress(Codec::Gzip, 6),
                Stage::Encrypt("archive".into()),
            ],
        )
    }

    /// Writes `data` gzipped and encrypted with `archive` of `keys` to `key`.
    fn write_archive(
        store: &Store,
        key: &str,
        data: &[u8],
        keys: &KeyRing,
    ) -> Result<Map<String, Value>, FlowError> {
        write(
            &gzip_then_encrypt(data),
            store,
            key,
            keys,
            None,
            &ItemScope::default(),
        )
    }

    #[test]
    fn an_object_left_without_its_manifest_gets_one_only_after_it_is_checked() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _g = rt.enter();
        let dir = tempfile::tempdir().unwrap();
        let store = fs_store(&dir);
        let data = vec![42u8; 200_000];
        let first = write_archive(&store, "a/x.bin", &data, &ring()).unwrap();
        assert_eq!(first["existed"], false);
        rt.block_on(store.delete(&manifest_key("a/x.bin"))).unwrap();

        let again = write_archive(&store, "a/x.bin", &data, &ring()).unwrap();
        assert_eq!(again["existed"], true);
        assert_eq!(again["manifest_restored"], true);
        assert_eq!(again["stored_sha256"], first["stored_sha256"]);
        let m = rt
            .block_on(Manifest::load(&store, "a/x.bin"))
            .unwrap()
            .expect("restored");
        assert_eq!(
            Some(m.stored.sha256),
            first["stored_sha256"].as_str().map(String::from)
        );
        assert_eq!(m.plaintext.size, data.len() as u64);
        assert!(m.encryption.is_some());

        // With its manifest back, a third write checks nothing and restores nothing.
        let third = write_archive(&store, "a/x.bin", &data, &ring()).unwrap();
        assert_eq!(third["existed"], true);
        assert!(third.get("manifest_restored").is_none());
    }

    #[test]
    fn an_object_without_manifest_that_differs_from_its_source_is_named_and_left_alone() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _g = rt.enter();
        let dir = tempfile::tempdir().unwrap();
        let store = fs_store(&dir);
        rt.block_on(store.put(
            "a/y.wav",
            bytes::Bytes::from_static(b"someone else's bytes"),
        ))
        .unwrap();
        let f = flow(b"the source's bytes", vec![Stage::Sha256]);
        let err = write(&f, &store, "a/y.wav", &ring(), None, &ItemScope::default()).unwrap_err();
        assert!(matches!(err, FlowError::Orphan { .. }), "{err}");
        assert!(!err.retryable());
        let text = err.to_string();
        assert!(
            text.contains("a/y.wav") && text.contains("without its manifest"),
            "{text}"
        );
        let kept = rt
            .block_on(store.read_small("a/y.wav", 1024))
            .unwrap()
            .unwrap();
        assert_eq!(&kept[..], b"someone else's bytes");
        let manifest = rt.block_on(store.size(&manifest_key("a/y.wav"))).unwrap();
        assert_eq!(manifest, None);
    }

    #[test]
    fn an_object_without_manifest_under_a_key_it_cannot_be_opened_with_is_refused() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _g = rt.enter();
        let dir = tempfile::tempdir().unwrap();
        let store = fs_store(&dir);
        let data = b"payload".repeat(1000);
        write_archive(&store, "a/z.bin", &data, &ring()).unwrap();
        rt.block_on(store.delete(&manifest_key("a/z.bin"))).unwrap();
        let mut other = KeyRing::empty();
        other.insert_raw("archive", [8; 32]);
        let err = write_archive(&store, "a/z.bin", &data, &other).unwrap_err();
        assert!(matches!(err, FlowError::Orphan { .. }), "{err}");
    }
}
