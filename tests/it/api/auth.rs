//! Tokens: one request per lifetime for many workers, one refresh after a forced 401, no
//! loop on persistent 401s or bad credentials, and secrets never in errors.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use cxpipe::api::{Api, ApiError, TenantConfig};
use reqwest::Method;
use serde_json::json;

use super::server::{
    ACCESS_KEY_ID, ACCESS_KEY_SECRET, Behaviour, CLIENT_ID, CLIENT_SECRET, TestServer,
};
use super::{records, setup, setup_with};

/// `workers` concurrent tasks, `calls` requests each; returns how many failed.
async fn hammer(api: &Api, workers: usize, calls: usize) -> usize {
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let mut failed = 0;
            for _ in 0..calls {
                let query = json!({"offset": 0, "limit": 1});
                if api
                    .request(Method::GET, "/records", Some(&query), None)
                    .await
                    .is_err()
                {
                    failed += 1;
                }
            }
            failed
        }));
    }
    let mut failed = 0;
    for t in tasks {
        failed += t.await.unwrap();
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_workers_make_one_token_request_per_token_lifetime() {
    let s = setup(records(10)).await;
    assert_eq!(hammer(&s.api, 8, 10).await, 0);
    assert_eq!(s.server.state.token_requests.load(SeqCst), 1);
    s.clock.advance(Duration::from_secs(49 * 60));
    assert_eq!(hammer(&s.api, 8, 10).await, 0);
    assert_eq!(
        s.server.state.token_requests.load(SeqCst),
        1,
        "still before the 50-minute mark"
    );
    s.clock.advance(Duration::from_secs(2 * 60));
    assert_eq!(hammer(&s.api, 8, 10).await, 0);
    assert_eq!(
        s.server.state.token_requests.load(SeqCst),
        2,
        "refreshed once at 50 minutes"
    );
    assert_eq!(s.api.token_requests(), 2);
    assert_eq!(s.server.state.api_requests.load(SeqCst), 240);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forced_401_is_answered_with_one_refresh_for_all_workers() {
    let s = setup(records(10)).await;
    assert_eq!(hammer(&s.api, 8, 1).await, 0);
    s.server.revoke_tokens();
    assert_eq!(hammer(&s.api, 8, 5).await, 0);
    assert_eq!(s.server.state.token_requests.load(SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_401_fails_after_one_refresh_and_one_retry() {
    let behaviour = Behaviour {
        always_401: AtomicBool::new(true),
        ..records(10)
    };
    let s = setup(behaviour).await;
    let err = s
        .api
        .request(Method::GET, "/records", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(!err.retryable());
    assert_eq!(err.request_id(), Some("req-401"));
    assert_eq!(s.server.state.api_requests.load(SeqCst), 2);
    assert_eq!(s.server.state.token_requests.load(SeqCst), 2);
    let stats = s.api.stats();
    assert_eq!(
        (
            stats.requests,
            stats.refreshed_after_401,
            stats.token_requests
        ),
        (2, 1, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_credentials_fail_once_naming_tenant_and_token_url_without_the_secret() {
    let wrong = "wrong-secret-do-not-print";
    let s = setup_with(records(10), "", wrong).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let api = s.api.clone();
        tasks.push(tokio::spawn(async move {
            api.request(Method::GET, "/records", None, None)
                .await
                .unwrap_err()
        }));
    }
    for t in tasks {
        let err = t.await.unwrap();
        assert!(matches!(err, ApiError::Auth { .. }), "{err:?}");
        assert!(!err.retryable());
        let text = format!("{err} {err:?}");
        assert!(text.contains("acme"), "{text}");
        assert!(
            text.contains(&format!("{}/api/v2/oauth/token", s.server.base_url())),
            "{text}"
        );
        assert!(
            text.contains("invalid_client") && !text.contains(wrong),
            "{text}"
        );
    }
    assert_eq!(
        s.server.state.token_requests.load(SeqCst),
        1,
        "waiters share the failure"
    );
    assert_eq!(s.server.state.api_requests.load(SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_can_go_in_the_form_body_with_a_scope() {
    let server = TestServer::start(records(3)).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), CLIENT_SECRET).unwrap();
    let toml_text = format!(
        r#"
        base_url = "{}"
        [auth]
        kind = "client_credentials"
        token_url = "{}/api/v2/oauth/token"
        client_id = "client-7"
        client_secret = {{ file = "secret.txt" }}
        credentials_in = "body"
        scope = "recording:read"
        "#,
        server.base_url(),
        server.base_url()
    );
    let config: TenantConfig = toml::from_str(&toml_text).unwrap();
    let api = Api::new("acme", &config, dir.path()).unwrap();
    let page = api
        .request(
            Method::GET,
            "/records",
            Some(&json!({"offset": 0, "limit": 2})),
            None,
        )
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_static_bearer_token_is_final() {
    let server = TestServer::start(records(3)).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "not-a-valid-token").unwrap();
    let toml_text = format!(
        "base_url = \"{}\"\nauth = {{ kind = \"bearer\", token = {{ file = \"token\" }} }}",
        server.base_url()
    );
    let config: TenantConfig = toml::from_str(&toml_text).unwrap();
    let api = Api::new("acme", &config, dir.path()).unwrap();
    let err = api
        .request(Method::GET, "/records", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(!format!("{err}").contains("not-a-valid-token"));
    assert_eq!(server.state.api_requests.load(SeqCst), 1);
    assert_eq!(server.state.token_requests.load(SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_grant_discovers_the_token_endpoint_and_the_api_base() {
    let server = TestServer::start(records(20)).await;
    let dir = tempfile::tempdir().unwrap();
    for (file, value) in [
        ("client", CLIENT_SECRET),
        ("ak", ACCESS_KEY_ID),
        ("aks", ACCESS_KEY_SECRET),
    ] {
        std::fs::write(dir.path().join(file), value).unwrap();
    }
    let toml_text = format!(
        r#"
        [auth]
        kind = "password"
        issuer = "{}"
        client_id = "{CLIENT_ID}"
        client_secret = {{ file = "client" }}
        username = {{ file = "ak" }}
        password = {{ file = "aks" }}
        "#,
        server.base_url()
    );
    let config: TenantConfig = toml::from_str(&toml_text).unwrap();
    let api = Api::new("real", &config, dir.path()).unwrap();
    // `/records` below the discovered `api_endpoint` (which ends in /tenant-api).
    let page = api
        .request(
            Method::GET,
            "/records",
            Some(&json!({"offset": 0, "limit": 3})),
            None,
        )
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    api.request(
        Method::GET,
        "records",
        Some(&json!({"offset": 3, "limit": 3})),
        None,
    )
    .await
    .unwrap();
    assert_eq!(server.state.token_requests.load(SeqCst), 1);
    assert_eq!(server.state.api_requests.load(SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_tokens_are_renewed_by_refresh_token_then_by_password_if_refused() {
    let server = TestServer::start(records(20)).await;
    let dir = tempfile::tempdir().unwrap();
    for (file, value) in [
        ("client", CLIENT_SECRET),
        ("ak", ACCESS_KEY_ID),
        ("aks", ACCESS_KEY_SECRET),
    ] {
        std::fs::write(dir.path().join(file), value).unwrap();
    }
    let toml_text = format!(
        r#"
        base_url = "{0}/tenant-api"
        auth = {{ kind = "password", issuer = "{0}", client_id = "{CLIENT_ID}", client_secret = {{ file = "client" }}, username = {{ file = "ak" }}, password = {{ file = "aks" }} }}
        "#,
        server.base_url()
    );
    let config: TenantConfig = toml::from_str(&toml_text).unwrap();
    let clock = std::sync::Arc::new(cxpipe::api::SkippingClock::new());
    let api = Api::with_clock("real", &config, dir.path(), clock.clone()).unwrap();
    let get = || api.request(Method::GET, "/records", None, None);
    get().await.unwrap();
    clock.advance(Duration::from_secs(51 * 60));
    get().await.unwrap();
    let grants = |s: &TestServer| {
        (
            s.state.password_grants.load(SeqCst),
            s.state.refresh_grants.load(SeqCst),
        )
    };
    assert_eq!(
        grants(&server),
        (1, 1),
        "the second token came from the refresh token"
    );
    server.state.refuse_refresh.store(true, SeqCst);
    clock.advance(Duration::from_secs(51 * 60));
    get().await.unwrap();
    assert_eq!(
        grants(&server),
        (2, 1),
        "a refused refresh falls back to the password grant"
    );
    assert_eq!(server.state.token_requests.load(SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_password_grant_hides_every_secret() {
    let server = TestServer::start(records(1)).await;
    let dir = tempfile::tempdir().unwrap();
    for (file, value) in [
        ("client", CLIENT_SECRET),
        ("ak", ACCESS_KEY_ID),
        ("aks", "wrong-ak-secret"),
    ] {
        std::fs::write(dir.path().join(file), value).unwrap();
    }
    let toml_text = format!(
        r#"
        base_url = "{0}/tenant-api"
        auth = {{ kind = "password", issuer = "{0}", client_id = "{CLIENT_ID}", client_secret = {{ file = "client" }}, username = {{ file = "ak" }}, password = {{ file = "aks" }} }}
        "#,
        server.base_url()
    );
    let config: TenantConfig = toml::from_str(&toml_text).unwrap();
    let api = Api::new("real", &config, dir.path()).unwrap();
    let err = api
        .request(Method::GET, "/records", None, None)
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(
        text.contains("real") && text.contains("/auth/token") && text.contains("invalid_grant"),
        "{text}"
    );
    for secret in [CLIENT_SECRET, "wrong-ak-secret"] {
        assert!(!text.contains(secret), "{text}");
    }
}
