//! Storage backends (memory, fs, GCS on an in-process JSON API server, and S3/Azure test
//! servers when running): round trips with encryption, `verify`, no overwrite, nothing
//! partial after a failure, tamper detection. S3 and Azure tests skip with a notice when
//! their server is absent, and fail under CI=true.

pub mod gcs;
mod gcs_faults;
mod hardening;
mod servers;

use std::sync::Arc;

use bytes::Bytes;
use cxpipe::flow::codec::Codec;
use cxpipe::flow::{Flow, FlowError, Source, Stage};
use cxpipe::keys::KeyRing;
use cxpipe::storage::Store;

use crate::flow::{MB, noise, sha256_hex, test_keys};

/// Every backend available here, each with a fresh prefix.
async fn backends() -> Vec<(String, Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let fs = Store::from_uri(&format!("fs://{}", dir.path().join("fs").display())).unwrap();
    let mut all = vec![
        (
            "memory".to_string(),
            Store::from_uri(&crate::flow::memory_uri()).unwrap(),
            None,
        ),
        ("fs".to_string(), fs, Some(dir)),
    ];
    let (gcs, _, gcs_dir) = gcs::store().await;
    all.push(("gcs".into(), gcs, Some(gcs_dir)));
    if let Some((s, d)) = servers::s3().await {
        all.push(("s3".into(), s, Some(d)));
    }
    if let Some((s, d)) = servers::azure().await {
        all.push(("azblob".into(), s, Some(d)));
    }
    all
}

fn source(data: &Bytes) -> Source {
    Source::Bytes {
        data: data.clone(),
        kind: "test",
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

fn write(
    store: &Store,
    key: &str,
    data: &Bytes,
    stages: Vec<Stage>,
    keys: &KeyRing,
) -> Result<serde_json::Map<String, serde_json::Value>, FlowError> {
    write_in(store, key, data, stages, keys, &Default::default())
}

/// [`write`] for the call of `scope` (its deadline, its run facts in the manifest).
fn write_in(
    store: &Store,
    key: &str,
    data: &Bytes,
    stages: Vec<Stage>,
    keys: &KeyRing,
    scope: &cxpipe::item_scope::ItemScope,
) -> Result<serde_json::Map<String, serde_json::Value>, FlowError> {
    let flow = Flow {
        stages,
        ..Flow::new(source(data))
    };
    cxpipe::flow::sink::write(&flow, store, key, keys, None, scope)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_round_trip_and_verify_on_every_backend() {
    let keys = Arc::new(test_keys());
    for (name, store, _dir) in backends().await {
        let data = noise(300_000, 21);
        let big = noise(9 * MB, 22);
        let (s, k, d, b) = (store.clone(), keys.clone(), data.clone(), big.clone());
        let (r, back) = blocking(move || {
            let stages = vec![
                Stage::Md5,
                Stage::Compress(Codec::Gzip, 1),
                Stage::Encrypt("k".into()),
            ];
            let r = write(&s, "rec/a.wav.gz.enc", &d, stages, &k).unwrap();
            write(&s, "rec/big.wav", &b, vec![Stage::Md5], &k).unwrap();
            let back = Flow {
                stages: vec![
                    Stage::Decrypt(Some("k".into())),
                    Stage::Decompress(Codec::Gzip),
                    Stage::Sha256,
                ],
                ..Flow::new(Source::Read {
                    store: s.clone(),
                    key: "rec/a.wav.gz.enc".into(),
                })
            };
            (
                r,
                cxpipe::flow::sink::discard(&back, &k, None, None).unwrap(),
            )
        })
        .await;
        assert_eq!(r["sha256"], sha256_hex(&data), "{name}");
        assert_eq!(
            back["sha256"],
            sha256_hex(&data),
            "{name}: decrypt restores the plaintext"
        );
        let stored = store
            .read_small("rec/big.wav", 1 << 30)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored, big, "{name}: 9 MiB object spans two 8 MiB chunks");
        assert_eq!(
            store.list("rec/").await.unwrap(),
            ["rec/a.wav.gz.enc", "rec/big.wav"],
            "{name}"
        );
        let (s, k) = (store.clone(), keys.clone());
        let report = blocking(move || cxpipe::flow::verify::verify(&s, "", &k).unwrap()).await;
        assert!(report.problems.is_empty(), "{name}: {:?}", report.problems);
        assert_eq!(report.ok.len(), 2, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_is_never_overwritten_on_any_backend() {
    let keys = Arc::new(test_keys());
    for (name, store, _dir) in backends().await {
        let (s, k) = (store.clone(), keys.clone());
        let (first, second) = blocking(move || {
            let a = write(&s, "x.bin", &Bytes::from_static(b"first"), vec![], &k).unwrap();
            let b = write(&s, "x.bin", &Bytes::from_static(b"second!"), vec![], &k).unwrap();
            (a, b)
        })
        .await;
        assert_eq!(first["existed"], false, "{name}");
        assert_eq!(second["existed"], true, "{name}");
        let now = store.read_small("x.bin", 100).await.unwrap().unwrap();
        assert_eq!(&now[..], b"first", "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_failing_midway_leaves_nothing_on_any_backend() {
    let keys = Arc::new(test_keys());
    for (name, store, _dir) in backends().await {
        let data = noise(10 * MB, 23);
        let (s, k) = (store.clone(), keys.clone());
        let err = blocking(move || {
            write(
                &s,
                "partial.bin",
                &data,
                vec![Stage::ExpectSize(9 * MB as u64)],
                &k,
            )
            .unwrap_err()
        })
        .await;
        assert!(matches!(err, FlowError::Size { .. }), "{name}: {err}");
        assert_eq!(store.size("partial.bin").await.unwrap(), None, "{name}");
        assert!(store.list("").await.unwrap().is_empty(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_decrypt_detect_tampering_on_every_backend() {
    use cxpipe::flow::crypt::{HEADER_LEN as HEADER, SEGMENT};
    const SEG: usize = SEGMENT + 16;
    type Edit = fn(&mut Vec<u8>);
    let edits: [(&str, Edit); 4] = [
        ("flipped", |b| b[HEADER + 5000] ^= 0x01),
        ("truncated", |b| b.truncate(b.len() - 100)),
        ("swapped", |b| {
            let first = b[HEADER..HEADER + SEG].to_vec();
            b.copy_within(HEADER + SEG..HEADER + 2 * SEG, HEADER);
            b[HEADER + SEG..HEADER + 2 * SEG].copy_from_slice(&first);
        }),
        ("header", |b| b[30] ^= 0x10),
    ];
    let keys = Arc::new(test_keys());
    for (name, store, _dir) in backends().await {
        let data = noise(3 * SEGMENT + 999, 24);
        for (what, edit) in edits {
            let key = format!("t-{what}.enc");
            let (s, k, d, kk) = (store.clone(), keys.clone(), data.clone(), key.clone());
            blocking(move || write(&s, &kk, &d, vec![Stage::Encrypt("k".into())], &k).unwrap())
                .await;
            let mut bytes = store
                .read_small(&key, 1 << 20)
                .await
                .unwrap()
                .unwrap()
                .to_vec();
            edit(&mut bytes);
            store.delete(&key).await.unwrap();
            store.put(&key, bytes.into()).await.unwrap();

            let (s, k, kk) = (store.clone(), keys.clone(), key.clone());
            let decrypted = blocking(move || {
                let back = Flow {
                    stages: vec![Stage::Decrypt(Some("k".into()))],
                    ..Flow::new(Source::Read { store: s, key: kk })
                };
                cxpipe::flow::sink::discard(&back, &k, None, None)
            })
            .await;
            assert!(decrypted.is_err(), "{name}: decrypt accepted {what}");
        }
        for keys in [Arc::new(KeyRing::empty()), keys.clone()] {
            let s = store.clone();
            let report =
                blocking(move || cxpipe::flow::verify::verify(&s, "", &keys).unwrap()).await;
            let mut named: Vec<&str> = report
                .problems
                .iter()
                .map(|p| p.split_once(": ").map_or(p.as_str(), |(k, _)| k))
                .collect();
            named.sort();
            assert_eq!(
                named,
                [
                    "t-flipped.enc",
                    "t-header.enc",
                    "t-swapped.enc",
                    "t-truncated.enc"
                ],
                "{name}: {:?}",
                report.problems
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_created_during_a_write_is_not_overwritten() {
    for (name, store, _dir) in backends().await {
        let mut w = store.create("race.bin").await.unwrap().expect("absent");
        w.write(Bytes::from_static(b"late writer")).await.unwrap();
        store
            .put("race.bin", Bytes::from_static(b"early"))
            .await
            .unwrap();
        let closed = w.close().await.unwrap();
        let now = store.read_small("race.bin", 100).await.unwrap().unwrap();
        assert_eq!(closed, cxpipe::storage::Closed::Existed, "{name}");
        assert_eq!(&now[..], b"early", "{name}: the first object stays");
    }
}
