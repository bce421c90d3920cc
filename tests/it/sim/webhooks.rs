//! Seed 003 webhooks: registration, signed deliveries (HMAC-SHA256 over `timestamp.body`),
//! retries when the receiver fails, duplicates, and events for recordings leaving Processing.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::support::{
    client, control, quiet, receiver, send_json, signature_ok, small, start, token,
};

async fn register(sim: &cxpipe::sim::SimServer, token: &str, url: &str, secret: &str) -> Value {
    let body = json!({ "name": "MediaDownloadPipeline", "url": url, "events": ["media.recording.created", "media.transcript.completed"], "enabled": true, "signingSecret": secret });
    let (status, created) = send_json(sim, token, Method::POST, "/api/v2/webhooks", &body).await;
    assert_eq!(status, 201, "{created}");
    created
}

async fn replay(sim: &cxpipe::sim::SimServer, limit: usize) -> u64 {
    let answer: Value = client()
        .post(format!("{}/_sim/webhooks/replay", sim.base_url()))
        .json(&json!({ "offset": 0, "limit": limit }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["events"].as_u64().unwrap()
}

#[tokio::test]
async fn deliveries_are_signed_over_timestamp_dot_body_and_carry_event_ids() {
    let sim = quiet(6).await;
    let token = token(&sim).await;
    let hook = receiver(vec![]).await;
    let created = register(&sim, &token, &hook.url, "s3cr3t").await;
    let id = created["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("wh-"));
    let (_, listed) = super::support::get_json(&sim, &token, "/api/v2/webhooks").await;
    assert_eq!(listed[0]["id"], id.as_str());
    let events = replay(&sim, 6).await as usize;
    assert!(events >= 6, "{events}");
    let deliveries = hook.wait_for(events).await;
    assert_eq!(deliveries.len(), events);
    let mut ids = HashSet::new();
    for (headers, body) in &deliveries {
        assert!(signature_ok(headers, body, "s3cr3t"));
        assert!(!signature_ok(headers, body, "other"));
        let event: Value = serde_json::from_str(body).unwrap();
        assert!(ids.insert(event["eventId"].as_str().unwrap().to_string()));
        assert!(event["recordingId"].is_string() && event["callId"].is_string());
    }
    let path = format!("/api/v2/webhooks/{id}");
    assert_eq!(
        send_json(&sim, &token, Method::DELETE, &path, &Value::Null)
            .await
            .0,
        204
    );
    assert_eq!(
        send_json(&sim, &token, Method::DELETE, &path, &Value::Null)
            .await
            .0,
        404
    );
    let kinds: HashSet<String> = deliveries
        .iter()
        .map(|(_, b)| {
            serde_json::from_str::<Value>(b).unwrap()["eventType"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds.len(), 2);
}

#[tokio::test]
async fn failed_deliveries_are_retried_and_duplicates_repeat_the_event_id() {
    let sim = quiet(1).await;
    let token = token(&sim).await;
    let hook = receiver(vec![500]).await;
    register(&sim, &token, &hook.url, "k").await;
    control(&sim, json!({ "transcript_missing_rate": 1.0 })).await;
    assert_eq!(replay(&sim, 1).await, 1);
    let deliveries = hook.wait_for(2).await;
    assert_eq!(deliveries.len(), 2, "one failure, one retry");
    assert_eq!(
        deliveries[0].1, deliveries[1].1,
        "a retry resends the same event"
    );
    assert_eq!(sim.stats()["webhook_failures"], 1);

    control(&sim, json!({ "webhook_duplicate_rate": 1.0 })).await;
    replay(&sim, 1).await;
    let deliveries = hook.wait_for(4).await;
    assert_eq!(deliveries.len(), 4);
    assert_eq!(deliveries[2].1, deliveries[3].1);
}

#[tokio::test]
async fn recordings_leaving_processing_are_announced() {
    let mut config = small(5);
    config.processing_share = 1.0;
    config.archived_share = 0.0;
    config.expired_share = 0.0;
    config.processing_delay = Duration::from_millis(1500);
    let sim = start(config).await;
    let token = token(&sim).await;
    let hook = receiver(vec![]).await;
    register(&sim, &token, &hook.url, "k").await;
    let deliveries = hook.wait_for(5).await;
    let created: Vec<Value> = deliveries
        .iter()
        .map(|(_, b)| serde_json::from_str::<Value>(b).unwrap())
        .filter(|e| e["eventType"] == "media.recording.created")
        .collect();
    assert_eq!(created.len(), 5);
}

#[tokio::test]
async fn a_stopped_simulator_sends_no_more_events() {
    let mut config = small(3);
    config.processing_share = 1.0;
    config.archived_share = 0.0;
    config.expired_share = 0.0;
    config.processing_delay = Duration::from_millis(600);
    let sim = start(config).await;
    let token = token(&sim).await;
    let hook = receiver(vec![]).await;
    register(&sim, &token, &hook.url, "k").await;
    sim.shutdown().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(hook.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_receiver_slower_than_the_timeout_gets_the_event_again() {
    use super::support::SLOW;
    let sim = quiet(1).await;
    let token = token(&sim).await;
    let hook = receiver(vec![SLOW]).await;
    register(&sim, &token, &hook.url, "k").await;
    control(
        &sim,
        json!({ "transcript_missing_rate": 1.0, "webhook_timeout": "300ms" }),
    )
    .await;
    assert_eq!(replay(&sim, 1).await, 1);
    let deliveries = hook.wait_for(2).await;
    assert_eq!(
        deliveries.len(),
        2,
        "the slow answer counts as a failure and is retried"
    );
    assert_eq!(deliveries[0].1, deliveries[1].1);
    assert_eq!(sim.stats()["webhook_failures"], 1);
}
