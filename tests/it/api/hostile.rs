//! The api stages against a hostile server and hostile ids: ids that would rewrite a
//! request path, string paths such an id could have changed, cycling cursors and links,
//! absurd token lifetimes, stalls before headers, dripping bodies and cross-origin
//! redirects.

use rhai::module_resolvers::FileModuleResolver;

use super::{records, run_script, setup};

/// Ids a hostile server might hand out (all but the last are from issue 14).
fn hostile_ids() -> Vec<String> {
    let mut ids: Vec<String> = [
        "new\nline",
        "a/../../download",
        "..\\..\\x",
        "rec#frag",
        "rec?x=1&channel=evil",
        "nul\0byte",
        "%2e%2e",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    ids.push("é".repeat(1000) + "z".repeat(3000).as_str());
    ids
}

/// RFC 3986 unreserved characters kept, every other byte `%XX` (written independently of
/// the implementation).
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs `script` with the stdlib resolvable, `api` and `ids` in scope, on a blocking thread.
async fn run_with_stdlib(
    api: &cxpipe::api::Api,
    script: &str,
    ids: &[String],
) -> Result<rhai::Array, String> {
    let api = api.clone();
    let script = script.to_string();
    let ids: rhai::Array = ids.iter().map(|id| id.clone().into()).collect();
    tokio::task::spawn_blocking(move || {
        let mut engine = rhai::Engine::new();
        cxpipe::api::register(&mut engine);
        let stdlib = concat!(env!("CARGO_MANIFEST_DIR"), "/stdlib");
        engine.set_module_resolver(FileModuleResolver::new_with_path(stdlib));
        let mut scope = rhai::Scope::new();
        scope.push("api", api);
        scope.push("ids", ids);
        engine
            .eval_with_scope::<rhai::Array>(&mut scope, &script)
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdlib_modules_send_hostile_ids_as_one_encoded_segment() {
    let s = setup(records(0)).await;
    let ids = hostile_ids();
    let script = r#"
        import "cxone/recording_search" as rs;
        import "cxone/real/analytics" as analytics;
        import "cxone/real/media_download" as md;
        import "cxone/real/data_extraction" as dx;
        let out = [];
        for id in ids {
            out.push(rs::detail(api, id).seen);
            out.push(rs::download_url(api, id, "combined").seen);
            out.push(analytics::transcript(api, id)[0]);
            out.push(md::wait(api, id, #{ every: "1s" }).seen);
            out.push(dx::wait(api, id, #{ every: "1s" }));
        }
        out
    "#;
    let out: Vec<String> = run_with_stdlib(&s.api, script, &ids)
        .await
        .unwrap()
        .iter()
        .map(|d| d.to_string())
        .collect();
    let mut expected = Vec::new();
    for id in &ids {
        let id = encode(id);
        expected.extend([
            format!("/api/v2/recording/{id}"),
            format!("/api/v2/recording/{id}/download?channel=combined"),
            format!("/interaction-analytics-gateway/v2/segments/{id}/analyzed-transcript"),
            format!("/media-download/v1/status/{id}"),
            format!("/data-extraction/v1/jobs/{id}"),
        ]);
    }
    assert_eq!(out, expected);
    assert_eq!(out[0], "/api/v2/recording/new%0Aline");
    assert_eq!(
        out[6],
        "/api/v2/recording/a%2F..%2F..%2Fdownload/download?channel=combined"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_paths_an_id_could_have_rewritten_are_refused_unsent() {
    let s = setup(records(0)).await;
    for (id, problem) in [
        ("new\\nline", "control character"),
        ("..", "`..` segment"),
        ("a\\\\b", "backslash"),
        ("a#b", "`#`"),
        ("x?x=1", "`?`"),
        ("a%2Fb", "percent-encoded `/`"),
    ] {
        let script = format!(r#"api.get("/paths/" + "{id}" + "/download")"#);
        let err = run_script::<rhai::Dynamic>(&s.api, &script)
            .await
            .unwrap_err();
        assert!(
            err.contains(problem) && err.contains("array of segments"),
            "{id}: {err}"
        );
    }
    assert!(s.server.state.raw_paths.lock().unwrap().is_empty());
    assert_eq!(
        s.server
            .state
            .api_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_token_lifetimes_are_clamped_not_fatal() {
    for expires_in in [
        serde_json::json!(-5),
        serde_json::json!(0),
        serde_json::json!(1e30),
        serde_json::json!("abc"),
    ] {
        let s = setup(records(3)).await;
        *s.server.state.expires_in.lock().unwrap() = Some(expires_in.clone());
        for _ in 0..3 {
            let api = s.api.clone();
            // On a task of its own, so a panic shows as a failed join, not a dead test thread.
            let answer = tokio::spawn(async move {
                api.request(reqwest::Method::GET, "/records", None, None)
                    .await
            })
            .await;
            let answer = match answer {
                Ok(answer) => answer,
                Err(e) => panic!("expires_in {expires_in}: {e}"),
            };
            assert!(answer.is_ok(), "expires_in {expires_in}: {answer:?}");
        }
        assert_eq!(
            s.api.token_requests(),
            1,
            "expires_in {expires_in}: the clamped lifetime is reused, not re-requested per call"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_retry_after_is_cut_to_the_maximum_wait_not_fatal() {
    for value in ["1e30", "99999999999999999999", "inf"] {
        let s = setup(records(0)).await;
        *s.server.state.retry_after.lock().unwrap() = Some(value.into());
        let api = s.api.clone();
        let joined = tokio::spawn(async move {
            api.request(reqwest::Method::GET, "/throttled", None, None)
                .await
        })
        .await;
        let answer = match joined {
            Ok(answer) => answer,
            Err(e) => panic!("Retry-After {value}: {e}"),
        };
        assert!(answer.is_ok(), "Retry-After {value}: {answer:?}");
        // The skipping clock skipped the pause: at most the one-hour cap.
        assert!(
            s.clock.skipped() <= std::time::Duration::from_secs(3600 + 60),
            "Retry-After {value}: waited {:?}",
            s.clock.skipped()
        );
    }
}

/// Walks `options` over `/cycle` in Rhai; returns the error and the requests made.
async fn walk_cycle(options: &str) -> (String, u64) {
    let s = setup(records(0)).await;
    let script = format!(
        r#"let n = 0; for rec in api.paginate("/cycle", {options}) {{ n += 1; if n > 1000 {{ break; }} }} n"#
    );
    let err = run_script::<i64>(&s.api, &script).await.unwrap_err();
    let requests = s
        .server
        .state
        .api_requests
        .load(std::sync::atomic::Ordering::SeqCst);
    (err, requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cycling_cursors_links_and_pages_end_with_an_error_not_a_loop() {
    let (err, requests) = walk_cycle(
        r#"#{ style: "cursor", query: #{ kind: "cursor" }, items: "data", next: "nextPageToken", param: "pageToken" }"#,
    )
    .await;
    assert!(
        err.contains("page 4 would repeat the request of page 2") && err.contains("cycles"),
        "{err}"
    );
    assert_eq!(
        requests, 3,
        "A, B, then A again is refused before it is sent"
    );

    let (err, requests) =
        walk_cycle(r#"#{ style: "next_link", query: #{ kind: "link" }, items: "data" }"#).await;
    assert!(err.contains("would repeat the request of page"), "{err}");
    assert!(requests <= 3, "{requests} requests");

    let (err, requests) =
        walk_cycle(r#"#{ style: "offset", query: #{ kind: "same" }, items: "items", size: 2 }"#)
            .await;
    assert!(
        err.contains("page 2 has exactly the items of page 1"),
        "{err}"
    );
    assert_eq!(requests, 2);
}

/// Tight stall rules for the tests (5 attempts with `max_retries = 4`).
const STALL_RULES: &str =
    "header_timeout = \"1s\"\nmin_progress_bytes = 100\nmin_progress_window = \"1s\"";

/// Requests `path` and returns the error and how long it took.
async fn failing_request(s: &super::Setup, path: &str) -> (String, std::time::Duration) {
    let started = std::time::Instant::now();
    let err = s
        .api
        .request(reqwest::Method::GET, path, None, None)
        .await
        .unwrap_err();
    (err.to_string(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_call_stalled_before_headers_fails_within_the_header_timeout() {
    let s = super::setup_with(records(0), STALL_RULES, super::CLIENT_SECRET).await;
    let (err, took) = failing_request(&s, "/stall-headers").await;
    assert!(err.contains("no response headers within 1s"), "{err}");
    // Five attempts of one second each (backoff runs on the skipping clock).
    assert!(took >= std::time::Duration::from_secs(5), "{took:?}");
    assert!(took < std::time::Duration::from_secs(60), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_stalled_before_headers_fails_within_the_header_timeout() {
    let s = super::setup_with(records(3), STALL_RULES, super::CLIENT_SECRET).await;
    s.server
        .state
        .stall_token
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (err, took) = failing_request(&s, "/records").await;
    assert!(
        err.contains("token request") && err.contains("no response headers within 1s"),
        "{err}"
    );
    assert!(took >= std::time::Duration::from_secs(1), "{took:?}");
    assert!(took < std::time::Duration::from_secs(60), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_dripping_a_byte_at_a_time_fails_the_progress_rule() {
    let s = super::setup_with(records(0), STALL_RULES, super::CLIENT_SECRET).await;
    let (err, took) = failing_request(&s, "/drip").await;
    assert!(
        err.contains("body stalled") && err.contains("minimum of 100 bytes per 1s"),
        "{err}"
    );
    // Each attempt gets a few bytes in its first window, then fails; the whole drip
    // would take 15 s per attempt.
    assert!(took < std::time::Duration::from_secs(60), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_origin_is_refused_and_a_same_origin_one_followed() {
    let s = setup(records(0)).await;
    let other = super::server::TestServer::start(records(0)).await;
    *s.server.state.redirect_to.lock().unwrap() = Some(format!("{}/open", other.base_url()));
    let err = s
        .api
        .request(reqwest::Method::GET, "/redirect", None, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("refused a redirect") && err.contains(&other.base_url()),
        "{err}"
    );
    assert_eq!(
        other
            .state
            .open_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the other origin was never asked"
    );
    *s.server.state.redirect_to.lock().unwrap() = Some(format!("{}/open", s.server.base_url()));
    let answer = s
        .api
        .request(reqwest::Method::GET, "/redirect", None, None)
        .await
        .unwrap();
    assert_eq!(answer["answered_by"], "open");
}
