//! Rate budgets and retries: `Retry-After` in both forms (on a skipping clock, so no real
//! waiting), backoff when it is missing, a family budget that uses the server's window
//! without tripping it (short real windows), 5xx retries with a cap, the size cap.

use std::sync::Mutex;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use cxpipe::api::{Api, ApiError, TenantConfig};
use reqwest::Method;
use serde_json::json;

use super::server::{Behaviour, CLIENT_SECRET, TestServer};
use super::{records, setup, setup_with, tenant_toml};

fn throttling_once(value: &str) -> Behaviour {
    Behaviour {
        retry_after: Mutex::new(Some(value.to_string())),
        ..records(1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_in_seconds_pauses_then_retries() {
    let s = setup(throttling_once("7")).await;
    let real = Instant::now();
    let body = s
        .api
        .request(Method::GET, "/throttled", None, None)
        .await
        .unwrap();
    assert_eq!(body, json!({"ok": true}));
    let waited = s.clock.skipped();
    assert!(
        waited >= Duration::from_millis(6_900) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    assert!(real.elapsed() < Duration::from_secs(2));
    assert_eq!(s.server.state.api_requests.load(SeqCst), 2);
    assert_eq!((s.api.stats().throttled, s.api.stats().retries), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_as_an_http_date_is_honoured() {
    let s = setup(throttling_once("date:30")).await;
    s.api
        .request(Method::GET, "/throttled", None, None)
        .await
        .unwrap();
    let waited = s.clock.skipped();
    // The date has one-second resolution and the request took a moment.
    assert!(
        waited >= Duration::from_secs(28) && waited <= Duration::from_secs(31),
        "{waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_without_retry_after_backs_off_with_jitter() {
    let s = setup(throttling_once("")).await;
    s.api
        .request(Method::GET, "/throttled", None, None)
        .await
        .unwrap();
    let waited = s.clock.skipped();
    // backoff_base = 100ms: the first pause is 50..=100 ms.
    assert!(
        waited >= Duration::from_millis(45) && waited <= Duration::from_millis(110),
        "{waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_with_retry_after_waits_at_least_that_long() {
    let behaviour = Behaviour {
        throttle_status: 503,
        ..throttling_once("9")
    };
    let s = setup(behaviour).await;
    s.api
        .request(Method::GET, "/throttled", None, None)
        .await
        .unwrap();
    let waited = s.clock.skipped();
    assert!(
        waited >= Duration::from_millis(8_900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    let stats = s.api.stats();
    assert_eq!(
        (stats.throttled, stats.retries),
        (0, 1),
        "a 503 is not a 429"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_up_to_the_cap_then_reported() {
    let behaviour = Behaviour {
        page_failures: 100,
        ..records(10)
    };
    let s = setup(behaviour).await;
    let err = s
        .api
        .request(Method::GET, "/records", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert!(err.retryable());
    assert_eq!(
        s.server.state.api_requests.load(SeqCst),
        5,
        "1 attempt + max_retries 4"
    );
    let stats = s.api.stats();
    assert_eq!((stats.requests, stats.retries, stats.throttled), (5, 4, 0));
    let waited = s.clock.skipped();
    assert!(
        waited >= Duration::from_millis(700) && waited <= Duration::from_millis(1500),
        "{waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_over_the_size_cap_are_refused() {
    let s = setup_with(records(1000), "max_response_bytes = 1000", CLIENT_SECRET).await;
    let query = json!({"offset": 0, "limit": 500});
    let err = s
        .api
        .request(Method::GET, "/records", Some(&query), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::TooLarge { limit: 1000, .. }),
        "{err:?}"
    );
    let small = json!({"offset": 0, "limit": 2});
    assert!(
        s.api
            .request(Method::GET, "/records", Some(&small), None)
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_urls_on_other_origins_never_get_the_token() {
    let s = setup(records(1)).await;
    let err = s
        .api
        .request(Method::GET, "http://127.0.0.2:9/records", None, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Usage { .. }), "{err:?}");
    assert_eq!(s.server.state.api_requests.load(SeqCst), 0);
}

/// 10 requests per 500 ms window on the server and in the tenant's budget; 8 workers make
/// 5 × 10 calls. Real time, about 2.5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_family_budget_uses_the_window_without_tripping_it() {
    let (allowed, window) = (10u64, Duration::from_millis(500));
    let behaviour = Behaviour {
        window: Some((allowed, window)),
        ..records(1)
    };
    let server = TestServer::start(behaviour).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), CLIENT_SECRET).unwrap();
    let extra = "[rate_limits]\nfamilies = { limited = { paths = [\"/limited\"], requests = 10, per = \"500ms\" } }";
    let config: TenantConfig = toml::from_str(&tenant_toml(&server.base_url(), extra)).unwrap();
    let api = Api::new("acme", &config, dir.path()).unwrap();
    // Warm the token so the first window is not shortened by the token request.
    api.request(Method::GET, "/records", None, None)
        .await
        .unwrap();
    let started = Instant::now();
    let calls = 5 * allowed as usize;
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            for _ in (worker..calls).step_by(8) {
                api.request(Method::GET, "/limited", None, None)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let allowed_rate = allowed as f64 / window.as_secs_f64();
    let utilisation = calls as f64 / elapsed.as_secs_f64() / allowed_rate;
    let throttled = server.state.throttled.load(SeqCst);
    assert!(throttled <= 1, "{throttled} 429s");
    assert!(
        utilisation >= 0.9,
        "utilisation {utilisation:.3} over {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_at_the_item_deadline() {
    let behaviour = Behaviour {
        page_failures: 100,
        ..records(10)
    };
    let server = TestServer::start(behaviour).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), CLIENT_SECRET).unwrap();
    let text = tenant_toml(&server.base_url(), "")
        .replace("backoff_base = \"100ms\"", "backoff_base = \"10s\"")
        .replace("backoff_max = \"2s\"", "backoff_max = \"10s\"");
    let config: TenantConfig = toml::from_str(&text).unwrap();
    let clock = std::sync::Arc::new(cxpipe::api::SkippingClock::new());
    let api = Api::with_clock("acme", &config, dir.path(), clock.clone()).unwrap();
    let err = api
        .within(Some(Instant::now() + Duration::from_secs(3)))
        .request(Method::GET, "/records", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(503));
    // A 5..10 s backoff cannot fit in a 3 s deadline: one attempt, no wait.
    assert_eq!(server.state.api_requests.load(SeqCst), 1);
    assert_eq!(clock.skipped(), Duration::ZERO);
}

/// Two handles of one client, each with its own deadline, driven concurrently on one
/// thread from async code (as a webhook handler would, with no script call around it):
/// each keeps its own deadline.
#[tokio::test(flavor = "current_thread")]
async fn handles_interleaved_on_one_thread_keep_their_own_deadlines() {
    let behaviour = Behaviour {
        page_failures: 100,
        ..records(10)
    };
    let server = TestServer::start(behaviour).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), CLIENT_SECRET).unwrap();
    let text = tenant_toml(&server.base_url(), "")
        .replace("backoff_base = \"100ms\"", "backoff_base = \"10s\"")
        .replace("backoff_max = \"2s\"", "backoff_max = \"10s\"");
    let config: TenantConfig = toml::from_str(&text).unwrap();
    let clock = std::sync::Arc::new(cxpipe::api::SkippingClock::new());
    let api = Api::with_clock("acme", &config, dir.path(), clock.clone()).unwrap();
    let bounded = api.within(Some(Instant::now() + Duration::from_secs(3)));
    let unbounded = api.within(None);
    let (page_a, page_b) = (json!({"page": "a"}), json!({"page": "b"}));
    let (bounded, unbounded) = tokio::join!(
        bounded.request(Method::GET, "/records", Some(&page_a), None),
        unbounded.request(Method::GET, "/records", Some(&page_b), None),
    );
    assert_eq!(bounded.unwrap_err().status(), Some(503));
    assert_eq!(unbounded.unwrap_err().status(), Some(503));
    // The bounded handle tried once (a 5..10 s backoff cannot fit in 3 s); the unbounded
    // one tried 1 + max_retries (4) times, waiting out its backoffs on the skipping clock.
    assert_eq!(server.state.api_requests.load(SeqCst), 1 + 5);
    assert_eq!(api.stats().retries, 4);
    assert!(
        clock.skipped() >= Duration::from_secs(4 * 5),
        "{:?}",
        clock.skipped()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_beyond_the_item_deadline_is_not_waited_for() {
    let s = setup(throttling_once("3600")).await;
    let err = s
        .api
        .within(Some(Instant::now() + Duration::from_secs(600)))
        .request(Method::GET, "/throttled", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(429));
    assert!(err.retryable());
    assert_eq!(s.clock.skipped(), Duration::ZERO);
}
