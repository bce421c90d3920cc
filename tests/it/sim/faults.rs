//! Hostility: rate limits with `Retry-After` (both forms), injected 5xx, resets and silent
//! truncation, run-time control.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::support::{client, control, get_json, quiet, token, truth};

async fn search_until_throttled(sim: &cxpipe::sim::SimServer, token: &str) -> reqwest::Response {
    for _ in 0..10 {
        let response = client()
            .get(format!("{}/api/v2/recording/search", sim.base_url()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            return response;
        }
        assert_eq!(response.status(), 200);
    }
    panic!("never throttled");
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_in_seconds_or_http_date() {
    let sim = quiet(3).await;
    let token = token(&sim).await;
    let limits = json!({ "rate_limits": { "search": { "requests": 2, "per": "60s" } }, "retry_after": "seconds" });
    assert_eq!(control(&sim, limits).await.status(), 200);
    let throttled = search_until_throttled(&sim, &token).await;
    let secs: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&secs), "{secs}");
    let body: Value = throttled.json().await.unwrap();
    assert!(body["message"].is_string() && body["route"].is_string());

    assert_eq!(
        control(&sim, json!({ "retry_after": "http-date" }))
            .await
            .status(),
        200
    );
    let throttled = search_until_throttled(&sim, &token).await;
    let date =
        httpdate::parse_http_date(throttled.headers()["retry-after"].to_str().unwrap()).unwrap();
    assert!(date > SystemTime::now());
    assert!(sim.stats()["throttled_429"].as_u64().unwrap() >= 2);
    // Other families are not affected.
    let records = truth(&sim, 0, 1).await;
    let (status, _) = get_json(
        &sim,
        &token,
        &format!("/api/v2/recording/{}", records[0]["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn injected_server_errors_are_counted() {
    let sim = quiet(3).await;
    let token = token(&sim).await;
    control(&sim, json!({ "error_rate": 1.0 })).await;
    for _ in 0..3 {
        let (status, _) = get_json(&sim, &token, "/api/v2/recording/search").await;
        assert!([500, 502, 503].contains(&status), "{status}");
    }
    assert_eq!(sim.stats()["server_errors_5xx"], 3);
}

async fn media_url(sim: &cxpipe::sim::SimServer, token: &str) -> (String, u64) {
    let records = truth(sim, 0, 10).await;
    let rec = records.iter().find(|r| r["status"] == "Available").unwrap();
    let (_, link) = get_json(
        sim,
        token,
        &format!("/api/v2/recording/{}/download", rec["id"].as_str().unwrap()),
    )
    .await;
    (
        link["url"].as_str().unwrap().to_string(),
        link["sizeBytes"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn resets_break_the_body_and_truncation_ends_it_short_without_length() {
    let sim = quiet(10).await;
    let token = token(&sim).await;
    let (url, size) = media_url(&sim, &token).await;
    control(&sim, json!({ "reset_rate": 1.0 })).await;
    let response = client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.bytes().await.is_err(),
        "a reset surfaces as a body error"
    );

    control(&sim, json!({ "reset_rate": 0.0, "truncate_rate": 1.0 })).await;
    let response = client().get(&url).send().await.unwrap();
    assert!(response.headers().get("content-length").is_none());
    let body = response.bytes().await.unwrap();
    assert!(
        (body.len() as u64) < size,
        "silently short: {} of {size}",
        body.len()
    );
    let stats = sim.stats();
    assert_eq!(
        (stats["resets"].as_u64(), stats["truncations"].as_u64()),
        (Some(1), Some(1))
    );
}

#[tokio::test]
async fn control_rejects_unknown_or_out_of_range_knobs_and_reports_current_ones() {
    let sim = quiet(1).await;
    assert_eq!(
        control(&sim, json!({ "eror_rate": 0.5 })).await.status(),
        400
    );
    assert_eq!(
        control(&sim, json!({ "error_rate": 2.0 })).await.status(),
        400
    );
    let current: Value = client()
        .get(format!("{}/_sim/control", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(current["error_rate"], 0.0);
    let changed: Value = control(&sim, json!({ "token_ttl": "5m" }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(changed["token_ttl"], "5m");
}

#[tokio::test]
async fn injected_throttling_and_latency_follow_their_knobs_and_stats_reset() {
    let sim = quiet(2).await;
    let token = token(&sim).await;
    control(&sim, json!({ "throttle_rate": 1.0 })).await;
    let response = client()
        .get(format!("{}/api/v2/recording/search", sim.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    control(&sim, json!({ "throttle_rate": 0.0, "latency": "300ms" })).await;
    let started = std::time::Instant::now();
    assert_eq!(
        get_json(&sim, &token, "/api/v2/recording/search").await.0,
        200
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    let stats: Value = client()
        .post(format!("{}/_sim/stats/reset", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["throttled_429"], 0);
    assert_eq!(stats["requests"], json!({}));
}
