//! `fetch` against a faulty media server: resets, truncation, 200-instead-of-206, expired
//! URLs refreshed through the script's function, giving up, deadlines.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cxpipe::storage::Store;

use super::server::{Faults, MediaServer};
use super::*;

async fn stored(uri: &str, key: &str) -> Bytes {
    Store::from_uri(uri)
        .unwrap()
        .read_small(key, 1 << 30)
        .await
        .unwrap()
        .expect("stored")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_resets_with_range_and_if_range() {
    let data = noise(3 * MB + 123, 1);
    let server = MediaServer::start(
        data.clone(),
        Faults {
            reset_every: Some(700_000),
            ..Faults::default()
        },
    )
    .await;
    let uri = memory_uri();
    let r = receipt(
        engine(),
        format!(
            r#"fetch("{}").md5().write(storage("{uri}"), "rec.wav")"#,
            server.sign()
        ),
    )
    .await;
    assert_eq!(get_str(&r, "sha256"), sha256_hex(&data));
    assert_eq!(get_str(&r, "md5"), hex::encode(md5::Md5::digest(&data)));
    assert_eq!(get_int(&r, "bytes_stored"), data.len() as i64);
    assert!(server.range_requests() >= 4, "{}", server.range_requests());
    assert_eq!(server.if_range_requests(), server.range_requests());
    assert_eq!(stored(&uri, "rec.wav").await, data);
}

async fn truncated(expect_size: bool) -> (MediaServer, Map, Bytes) {
    let data = noise(2 * MB, 2);
    let server = MediaServer::start(
        data.clone(),
        Faults {
            truncate_first_at: Some(MB as u64 / 2),
            ..Faults::default()
        },
    )
    .await;
    let uri = memory_uri();
    let check = if expect_size {
        format!(".expect_size({})", data.len())
    } else {
        String::new()
    };
    let r = receipt(
        engine(),
        format!(
            r#"fetch("{}"){check}.write(storage("{uri}"), "t.wav")"#,
            server.sign(),
        ),
    )
    .await;
    assert_eq!(stored(&uri, "t.wav").await, data);
    (server, r, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_truncated_body_is_resumed_using_the_expected_size() {
    let (server, r, data) = truncated(true).await;
    assert_eq!(get_str(&r, "sha256"), sha256_hex(&data));
    assert_eq!(server.range_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_without_length_is_confirmed_by_a_ranged_probe() {
    let (server, r, data) = truncated(false).await;
    assert_eq!(get_str(&r, "sha256"), sha256_hex(&data));
    assert_eq!(
        server.range_requests(),
        1,
        "the probe found the missing half"
    );
    let whole = noise(300_000, 9);
    let server = MediaServer::start(
        whole.clone(),
        Faults {
            no_length: true,
            ..Faults::default()
        },
    )
    .await;
    let r = receipt(engine(), format!(r#"fetch("{}").discard()"#, server.sign())).await;
    assert_eq!(get_str(&r, "sha256"), sha256_hex(&whole));
    assert_eq!(server.range_requests(), 1, "one probe answered 416");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_to_a_range_request_restarts_cleanly_from_zero() {
    let data = noise(5 * MB / 2, 3);
    let server = MediaServer::start(
        data.clone(),
        Faults {
            reset_every: Some(MB as u64),
            ignore_range_once: true,
            ..Faults::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("fs://{}", dir.path().display());
    let r = receipt(
        engine(),
        format!(
            r#"fetch("{}").sha256().encrypt("k").write(storage("{uri}"), "r.enc")"#,
            server.sign()
        ),
    )
    .await;
    assert_eq!(get_int(&r, "restarts"), 1);
    assert_eq!(get_int(&r, "bytes_read"), data.len() as i64);
    assert_eq!(get_str(&r, "sha256"), sha256_hex(&data));
    let back = receipt(
        engine(),
        format!(r#"read(storage("{uri}"), "r.enc").decrypt("k").sha256().discard()"#),
    )
    .await;
    assert_eq!(get_str(&back, "sha256"), sha256_hex(&data));
    let partial = std::fs::read_dir(dir.path().join(".cxpipe-partial"))
        .unwrap()
        .count();
    assert_eq!(partial, 0, "the aborted first upload left a partial file");
    let stored = std::fs::metadata(dir.path().join("r.enc")).unwrap().len();
    assert_eq!(stored as i64, get_int(&r, "bytes_stored"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_urls_are_refreshed_through_the_script_function() {
    let data = noise(4 * MB, 4);
    let server = MediaServer::start(
        data.clone(),
        Faults {
            reset_every: Some(512 * 1024),
            url_ttl: Some(Duration::from_millis(120)),
            chunk_delay: Some(Duration::from_millis(8)),
            ..Faults::default()
        },
    )
    .await;
    let calls = Arc::new(AtomicU64::new(0));
    let mut engine = engine();
    let (s, c) = (server.clone(), calls.clone());
    engine.register_fn("presign", move || {
        c.fetch_add(1, Ordering::SeqCst);
        s.sign()
    });
    let uri = memory_uri();
    let r = receipt(
        engine,
        format!(r#"fetch(|| presign()).md5().write(storage("{uri}"), "slow.wav")"#),
    )
    .await;
    assert_eq!(get_str(&r, "sha256"), sha256_hex(&data));
    assert!(
        server.forbidden() >= 1,
        "the URL never expired; test is not testing"
    );
    let refreshes = get_int(&r, "url_refreshes");
    assert!(refreshes >= 1);
    assert_eq!(calls.load(Ordering::SeqCst) as i64, refreshes + 1);
    assert_eq!(stored(&uri, "slow.wav").await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_up_after_the_configured_tries_saying_bytes_and_why() {
    let server = MediaServer::start(
        noise(1000, 5),
        Faults {
            always_status: Some(503),
            ..Faults::default()
        },
    )
    .await;
    let err = failure(
        engine(),
        format!(
            r#"fetch("{}").tries(2).write(storage("{}"), "x")"#,
            server.sign(),
            memory_uri()
        ),
    )
    .await;
    let msg = get_str(&err, "message");
    assert!(
        msg.contains("gave up after 2 tries with 0 bytes received"),
        "{msg}"
    );
    assert!(msg.contains("503"), "{msg}");
    assert!(!msg.contains("X-Amz-Signature"), "signature leaked: {msg}");
    assert_eq!(get_int(&err, "status"), 503);
    assert!(err["retryable"].as_bool().unwrap());
    assert_eq!(server.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_fixed_url_asks_for_a_function() {
    let server = MediaServer::start(
        noise(1000, 6),
        Faults {
            url_ttl: Some(Duration::ZERO),
            ..Faults::default()
        },
    )
    .await;
    // Signed first, used later: the URL is stale when it arrives.
    let url = server.sign();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let err = failure(engine(), format!(r#"fetch("{url}").discard()"#)).await;
    let msg = get_str(&err, "message");
    assert!(msg.contains("fetch(|| ...)"), "{msg}");
    assert_eq!(get_int(&err, "status"), 403);
    assert!(!err["retryable"].as_bool().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_item_deadline_stops_a_stalled_transfer() {
    let server = MediaServer::start(
        noise(2 * MB, 7),
        Faults {
            chunk_delay: Some(Duration::from_secs(5)),
            ..Faults::default()
        },
    )
    .await;
    let engine = engine();
    let script = format!(r#"fetch("{}").discard()"#, server.sign());
    let started = Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        let scope = cxpipe::item_scope::ItemScope {
            deadline: Some(Instant::now() + Duration::from_millis(200)),
            ..Default::default()
        };
        eval_in_scope(&engine, &script, scope)
    })
    .await
    .unwrap();
    let err = result.unwrap_err().to_string();
    assert!(err.contains("deadline"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_changed_mid_download_is_fetched_again_whole() {
    let (v1, v2) = (noise(2 * MB, 50), noise(2 * MB, 52));
    assert_ne!(v1, v2);
    let server = MediaServer::start(
        v1,
        Faults {
            truncate_first_at: Some(MB as u64 / 2),
            replace_after_first: Some(v2.clone()),
            // A cache that serves ranges of the new object despite the old If-Range.
            ignore_if_range: true,
            ..Faults::default()
        },
    )
    .await;
    let uri = memory_uri();
    let r = receipt(
        engine(),
        format!(
            r#"fetch("{}").expect_size({}).write(storage("{uri}"), "rec.wav")"#,
            server.sign(),
            v2.len()
        ),
    )
    .await;
    assert_eq!(
        get_str(&r, "sha256"),
        sha256_hex(&v2),
        "no splice of v1 and v2"
    );
    assert!(get_int(&r, "restarts") >= 1);
    assert_eq!(stored(&uri, "rec.wav").await, v2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_validator_a_download_restarts_unless_its_hash_is_checked() {
    let data = noise(2 * MB, 42);
    for hash_checked in [false, true] {
        let server = MediaServer::start(
            data.clone(),
            Faults {
                truncate_first_at: Some(MB as u64 / 2),
                no_validator: true,
                ..Faults::default()
            },
        )
        .await;
        let check = if hash_checked {
            format!(".expect_sha256(\"{}\")", sha256_hex(&data))
        } else {
            String::new()
        };
        let r = receipt(
            engine(),
            format!(
                r#"fetch("{}").expect_size({}){check}.discard()"#,
                server.sign(),
                data.len()
            ),
        )
        .await;
        assert_eq!(get_str(&r, "sha256"), sha256_hex(&data));
        let (ranges, restarts) = if hash_checked { (1, 0) } else { (0, 1) };
        assert_eq!(
            server.range_requests(),
            ranges,
            "hash_checked={hash_checked}"
        );
        assert_eq!(
            get_int(&r, "restarts"),
            restarts,
            "hash_checked={hash_checked}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_honours_range_runs_out_of_tries() {
    let server = MediaServer::start(
        // (A reset much earlier than this is lost in the server's write buffer.)
        noise(2 * MB, 43),
        Faults {
            reset_every: Some(700_000),
            ignore_range_always: true,
            ..Faults::default()
        },
    )
    .await;
    let script = format!(r#"fetch("{}").tries(3).discard()"#, server.sign());
    let err = tokio::time::timeout(Duration::from_secs(60), failure(engine(), script))
        .await
        .expect("the download kept restarting instead of giving up");
    let msg = get_str(&err, "message");
    assert!(msg.contains("gave up after 3 tries"), "{msg}");
    assert!(msg.contains("connection failed at byte"), "{msg}");
    assert!(server.requests() <= 6, "{}", server.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_expiring_with_400_is_refreshed_too() {
    let data = noise(MB, 44);
    let server = MediaServer::start(
        data.clone(),
        Faults {
            url_ttl: Some(Duration::ZERO),
            expired_status: Some(400),
            ..Faults::default()
        },
    )
    .await;
    let mut engine = engine();
    let calls = Arc::new(AtomicU64::new(0));
    // The first URL is stale when used; the next is signed far in the future.
    let stale = server.sign();
    let fresh = stale.replace("signed=", "signed=9999999");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let c = calls.clone();
    engine.register_fn("presign", move || match c.fetch_add(1, Ordering::SeqCst) {
        0 => stale.clone(),
        _ => fresh.clone(),
    });
    let r = receipt(engine, "fetch(|| presign()).discard()".to_string()).await;
    assert_eq!(get_str(&r, "sha256"), sha256_hex(&data));
    assert_eq!(get_int(&r, "url_refreshes"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_without_content_range_confirms_a_lengthless_end() {
    let whole = noise(300_000, 45);
    let server = MediaServer::start(
        whole.clone(),
        Faults {
            no_length: true,
            bare_416: true,
            ..Faults::default()
        },
    )
    .await;
    let r = receipt(engine(), format!(r#"fetch("{}").discard()"#, server.sign())).await;
    assert_eq!(get_str(&r, "sha256"), sha256_hex(&whole));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoded_body_is_refused_rather_than_miscounted() {
    let server = MediaServer::start(
        noise(1000, 46),
        Faults {
            content_encoding: Some("gzip"),
            ..Faults::default()
        },
    )
    .await;
    let err = failure(engine(), format!(r#"fetch("{}").discard()"#, server.sign())).await;
    let msg = get_str(&err, "message");
    assert!(msg.contains("encoded the body (gzip)"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_fresh_urls_are_asked_for_with_a_backoff_and_a_limit() {
    let server = MediaServer::start(
        noise(1000, 47),
        Faults {
            url_ttl: Some(Duration::ZERO),
            ..Faults::default()
        },
    )
    .await;
    // Every URL is stale by the time it is used.
    let stale = server.sign();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let calls = Arc::new(AtomicU64::new(0));
    let mut engine = engine();
    let c = calls.clone();
    engine.register_fn("presign", move || {
        c.fetch_add(1, Ordering::SeqCst);
        stale.clone()
    });
    let started = Instant::now();
    let err = failure(engine, "fetch(|| presign()).tries(3).discard()".into()).await;
    assert!(
        get_str(&err, "message").contains("refused with 403"),
        "{err:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3, "one call per try");
    // Two pauses before the 2nd and 3rd URL: at least 100 ms + 200 ms (jitter halves 200/400).
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "asked again without a pause: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_dripping_a_byte_a_second_fails_the_progress_rule() {
    // 40 bytes at one a second would finish after 40 s; the rule (16 KiB per 15 s) fails the
    // single try at the end of its first window.
    let server = MediaServer::start(
        noise(40, 9),
        Faults {
            drip: Some(Duration::from_secs(1)),
            ..Faults::default()
        },
    )
    .await;
    let engine = engine();
    let script = format!(r#"fetch("{}").tries(1).discard()"#, server.sign());
    let started = Instant::now();
    let result = tokio::task::spawn_blocking(move || engine.eval::<Dynamic>(&script))
        .await
        .unwrap();
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("body stalled") && err.contains("below the minimum of 16384 bytes per 15s"),
        "{err}"
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(14), "{took:?}");
    assert!(took < Duration::from_secs(39), "{took:?}");
}
