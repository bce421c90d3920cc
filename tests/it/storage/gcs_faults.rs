//! What only the `gcs://` backend does, on the GCS JSON API test server: a resumable upload
//! that the server fails mid-way is cancelled and written again from the first byte (and
//! leaves nothing when it keeps failing), reads retry past server errors, listings cross pages, and a rejected token is a clear error without the
//! token in it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use cxpipe::flow::Stage;

use super::gcs;
use super::{blocking, write, write_in};
use crate::flow::{MB, noise, sha256_hex, test_keys};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_mid_upload_restarts_the_write_from_the_first_byte() {
    let (store, gcs, _dir) = gcs::store().await;
    let keys = Arc::new(test_keys());
    // 20 MiB go up as 8 + 8 + 4 MiB chunks of one resumable session; the second fails.
    gcs.fail_chunks.lock().unwrap().push(2);
    let data = noise(20 * MB, 31);
    let (s, k, d) = (store.clone(), keys.clone(), data.clone());
    let receipt =
        blocking(move || write(&s, "rec/big.wav", &d, vec![Stage::Sha256], &k).unwrap()).await;
    assert_eq!(receipt["write_attempts"], 2);
    assert_eq!(receipt["sha256"], sha256_hex(&data));
    let stored = store.read_small("rec/big.wav", 1 << 30).await.unwrap();
    assert_eq!(
        stored.unwrap(),
        data,
        "the second attempt stored every byte once"
    );
    assert_eq!(
        gcs.chunks_received(),
        2 + 3,
        "two chunks failed, three stored"
    );
    assert_eq!(gcs.open_sessions(), 0, "the failed session was cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_keeps_failing_leaves_nothing_after_the_last_attempt() {
    let (store, gcs, _dir) = gcs::store().await;
    let keys = Arc::new(test_keys());
    gcs.fail_chunks.lock().unwrap().extend(1..=100);
    let data = noise(20 * MB, 32);
    let (s, k) = (store.clone(), keys.clone());
    let err = blocking(move || write(&s, "rec/big.wav", &data, vec![], &k).unwrap_err()).await;
    assert!(err.retryable(), "a 503 is worth retrying later: {err}");
    assert!(err.to_string().contains("rec/big.wav"), "{err}");
    assert_eq!(
        gcs.chunks_received(),
        cxpipe::flow::sink::WRITE_ATTEMPTS,
        "each attempt failed at its first chunk"
    );
    assert_eq!(store.size("rec/big.wav").await.unwrap(), None);
    assert!(store.list("").await.unwrap().is_empty());
    assert_eq!(gcs.open_sessions(), 0, "every failed session was cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_retry_server_errors_and_listings_cross_pages() {
    let (store, gcs, _dir) = gcs::store().await;
    let names: Vec<String> = (0..8).map(|i| format!("calls/2026/{i:02}.json")).collect();
    for n in &names {
        store
            .put(n, bytes::Bytes::from(format!("{{\"n\":\"{n}\"}}")))
            .await
            .unwrap();
    }
    store
        .put("other/x.json", bytes::Bytes::from_static(b"{}"))
        .await
        .unwrap();
    // The server's pages hold three entries: eight objects take three pages.
    assert_eq!(store.list("calls/").await.unwrap(), names);
    assert_eq!(store.list("").await.unwrap().len(), 9);

    gcs.fail_reads.store(2, Ordering::SeqCst);
    let body = store.read_small(&names[3], 1024).await.unwrap().unwrap();
    assert_eq!(&body[..], format!("{{\"n\":\"{}\"}}", names[3]).as_bytes());
    assert_eq!(
        gcs.fail_reads.load(Ordering::SeqCst),
        0,
        "both faults were hit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_names_the_store_and_hides_the_token() {
    let (_gcs, endpoint) = gcs::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = gcs::open(&endpoint, "p", Some("ya29.wrong-token-value"), dir.path());
    let err = store.size("a.bin").await.unwrap_err().to_string();
    assert!(err.contains("gcs://cxpipe-test/p"), "{err}");
    assert!(
        err.contains("401") || err.contains("Login Required"),
        "{err}"
    );
    assert!(!err.contains("wrong-token"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_reply_is_lost_is_recognised_and_gets_its_manifest() {
    let (store, gcs, _dir) = gcs::store().await;
    let keys = Arc::new(test_keys());
    gcs.lose_final_reply.store(true, Ordering::SeqCst);
    let data = noise(9 * MB, 33);
    let (s, k, d) = (store.clone(), keys.clone(), data.clone());
    let receipt = blocking(move || write(&s, "rec/a.wav", &d, vec![Stage::Md5], &k).unwrap()).await;
    assert_eq!(receipt["existed"], false, "the object is this flow's own");
    assert_eq!(receipt["write_attempts"], 1, "nothing was uploaded twice");
    assert_eq!(receipt["sha256"], sha256_hex(&data));
    let (s, k) = (store.clone(), keys.clone());
    let report = blocking(move || cxpipe::flow::verify::verify(&s, "", &k).unwrap()).await;
    assert_eq!(report.ok, ["rec/a.wav"], "{:?}", report.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_created_while_uploading_wins_whenever_the_store_checks() {
    for check_at_start in [false, true] {
        let (store, gcs, _dir) = gcs::store().await;
        let keys = Arc::new(test_keys());
        gcs.check_at_start.store(check_at_start, Ordering::SeqCst);
        // OpenDAL's GCS writer starts the session when its third 8 MiB chunk arrives: with
        // 30 MiB that is mid-flow, before the writer is closed.
        *gcs.race_on_start.lock().unwrap() = Some(format!("{}rec/a.wav", gcs::prefix_of(&store)));
        let data = noise(30 * MB, 34);
        let (s, k) = (store.clone(), keys.clone());
        let receipt = blocking(move || write(&s, "rec/a.wav", &data, vec![], &k).unwrap()).await;
        assert_eq!(receipt["existed"], true, "check_at_start={check_at_start}");
        let now = store.read_small("rec/a.wav", 1024).await.unwrap().unwrap();
        assert_eq!(&now[..], b"the other writer's object");
        assert_eq!(store.size("rec/a.wav.manifest.json").await.unwrap(), None);
        assert_eq!(gcs.open_sessions(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_store_sends_no_credentials() {
    let (gcs, endpoint) = gcs::start().await;
    gcs.anonymous.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let store = gcs::open(&endpoint, "public", None, dir.path());
    store
        .put("a.json", bytes::Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(store.list("").await.unwrap(), ["a.json"]);
    assert!(gcs.unsigned.load(Ordering::SeqCst) >= 2);
}

#[test]
fn a_gcs_store_without_credentials_says_what_to_configure() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_gcs, endpoint) = rt.block_on(gcs::start());
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::harness::cxpipe_bin())
        .args([
            "verify",
            &format!("gcs://{}/p?endpoint={endpoint}", gcs::BUCKET),
        ])
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env("HOME", home.path())
        // No GCE metadata server either: a closed loopback port answers at once.
        .env("GCE_METADATA_HOST", "127.0.0.1:1")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("no credentials could be loaded for this store")
            && stderr.contains("credential_path or token"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_is_not_restarted_past_the_item_deadline() {
    let (store, gcs, _dir) = gcs::store().await;
    let keys = Arc::new(test_keys());
    gcs.fail_chunks.lock().unwrap().extend(1..=100);
    let data = noise(20 * MB, 36);
    let (s, k) = (store.clone(), keys.clone());
    let err = blocking(move || {
        // Less time left than the 0.5 s pause before a second run.
        let scope = cxpipe::item_scope::ItemScope {
            deadline: Some(std::time::Instant::now() + std::time::Duration::from_millis(400)),
            ..Default::default()
        };
        write_in(&s, "rec/big.wav", &data, vec![], &k, &scope)
    })
    .await
    .unwrap_err();
    // The storage error itself, not a deadline hit after a pointless pause and rerun.
    assert!(matches!(err, cxpipe::flow::FlowError::Storage(_)), "{err}");
    assert!(err.to_string().contains("injected chunk fault"), "{err}");
    assert_eq!(gcs.chunks_received(), 1, "one run, no restart: {err}");
    assert_eq!(store.size("rec/big.wav").await.unwrap(), None);
}
