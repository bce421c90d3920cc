//! Seed 000: offset/limit listing, policies, retention updates with 409 on legal hold,
//! archival jobs with webhook notification, duplicate recordings to deduplicate.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};

use super::support::{get_json, poll_until, quiet, receiver, send_json, signature_ok, token};

#[tokio::test]
async fn offset_limit_listing_covers_every_completed_recording_once_and_has_duplicates() {
    let sim = quiet(300).await;
    let token = token(&sim).await;
    let mut seen = HashSet::new();
    let mut signatures = HashSet::new();
    let mut duplicates = 0;
    let mut offset = 0;
    let total = loop {
        let (status, page) = get_json(
            &sim,
            &token,
            &format!("/api/v2/recordings?status=completed&limit=7&offset={offset}"),
        )
        .await;
        assert_eq!(status, 200);
        let items = page["items"].as_array().unwrap();
        for item in items {
            assert_eq!(item["status"], "completed");
            assert!(
                seen.insert(item["id"].as_str().unwrap().to_string()),
                "duplicate id"
            );
            let signature = format!(
                "{}:{}:{}:{}",
                item["agentId"], item["startTimestamp"], item["duration"], item["channelType"]
            );
            if !signatures.insert(signature) {
                duplicates += 1;
            }
        }
        if items.len() < 7 {
            break page["total"].as_u64().unwrap() as usize;
        }
        offset += 7;
        assert!(offset < 1000, "listing did not terminate");
    };
    assert_eq!(seen.len(), total);
    assert!(
        total > 250 && total < 300,
        "archived and expired are not completed: {total}"
    );
    assert!(
        duplicates > 0,
        "seed 000 needs duplicate recordings to deduplicate"
    );
}

#[tokio::test]
async fn policies_carry_frameworks_and_one_breaks_its_minimum() {
    let sim = quiet(1).await;
    let token = token(&sim).await;
    let (_, policies) = get_json(&sim, &token, "/api/v2/recordings/policies").await;
    let list: Vec<(String, u64)> = policies
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["regulatoryFramework"].as_str().unwrap().to_string(),
                p["retentionDays"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(list.contains(&("HIPAA".into(), 2190)) && list.contains(&("GDPR".into(), 90)));
    assert!(
        list.iter().any(|(f, d)| f == "PCI_DSS" && *d < 365),
        "{list:?}"
    );
}

#[tokio::test]
async fn retention_updates_apply_and_locked_recordings_answer_409() {
    let sim = quiet(200).await;
    let token = token(&sim).await;
    let (_, page) = get_json(&sim, &token, "/api/v2/recordings?limit=200").await;
    let ids: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    let (mut applied, mut conflicts) = (Vec::new(), 0);
    for id in &ids {
        let body = json!({ "retentionDays": 400, "archivalDestination": "arn:aws:s3:::x", "lifecycleTags": ["validated"] });
        match send_json(
            &sim,
            &token,
            Method::PUT,
            &format!("/api/v2/recordings/{id}/retention"),
            &body,
        )
        .await
        {
            (200, answer) => {
                assert_eq!(answer["status"], "APPLIED");
                applied.push(id.clone());
            }
            (409, answer) => {
                assert!(answer["message"].as_str().unwrap().contains("legal hold"));
                conflicts += 1;
            }
            (status, answer) => panic!("{status}: {answer}"),
        }
    }
    assert!(conflicts > 0 && !applied.is_empty());
    let (_, page) = get_json(&sim, &token, "/api/v2/recordings?limit=200").await;
    let updated = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == applied[0].as_str())
        .unwrap();
    assert_eq!(updated["currentRetentionDays"], 400);
    let bad = send_json(
        &sim,
        &token,
        Method::PUT,
        &format!("/api/v2/recordings/{}/retention", ids[0]),
        &json!({ "retentionDays": 0 }),
    )
    .await;
    assert_eq!(bad.0, 400);
}

#[tokio::test]
async fn archival_jobs_progress_to_completed_and_notify_a_signed_webhook() {
    let sim = quiet(5).await;
    let token = token(&sim).await;
    let hook = receiver(vec![]).await;
    let (_, page) = get_json(&sim, &token, "/api/v2/recordings?status=completed").await;
    let id = page["items"][0]["id"].as_str().unwrap().to_string();
    let body = json!({ "recordingId": id, "destination": "s3://archive", "webhookUrl": hook.url, "options": { "compress": true } });
    let (status, created) =
        send_json(&sim, &token, Method::POST, "/api/v2/archival/jobs", &body).await;
    assert_eq!((status, created["status"].as_str()), (202, Some("PENDING")));
    let job = created["jobId"].as_str().unwrap();
    let done = poll_until(&sim, &token, &format!("/api/v2/archival/jobs/{job}"), |b| {
        b["status"] == "COMPLETED"
    })
    .await;
    assert!(done["archivedSizeBytes"].as_u64().unwrap() > 0);
    let deliveries = hook.wait_for(1).await;
    let (headers, text) = &deliveries[0];
    let event: Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        (
            event["jobId"].as_str(),
            event["status"].as_str(),
            event["recordingId"].as_str()
        ),
        (Some(job), Some("COMPLETED"), Some(id.as_str()))
    );
    assert!(signature_ok(
        headers,
        text,
        &sim.credentials().webhook_secret
    ));
    let missing = send_json(
        &sim,
        &token,
        Method::POST,
        "/api/v2/archival/jobs",
        &json!({ "recordingId": id }),
    )
    .await;
    assert_eq!(missing.0, 400);
}
