//! Seed 001: export jobs with payload validation, polling, and a checksum that matches the
//! downloaded media.

use reqwest::Method;
use serde_json::json;

use super::support::{client, poll_until, quiet, send_json, sha256_hex, token, truth};

fn payload(ids: &[&str], format: &str, jurisdiction: &str) -> serde_json::Value {
    json!({
        "interactions": ids, "format": format, "jurisdiction": jurisdiction,
        "dateRange": { "start": "2026-01-01T00:00:00Z", "end": "2026-11-21T00:00:00Z" },
        "includeMetadata": true, "complianceExport": true,
    })
}

#[tokio::test]
async fn export_jobs_complete_with_a_download_url_whose_sha256_is_the_checksum() {
    let sim = quiet(10).await;
    let token = token(&sim).await;
    let records = truth(&sim, 0, 10).await;
    let rec = records.iter().find(|r| r["status"] == "Available").unwrap();
    let id = rec["id"].as_str().unwrap();
    let (status, created) = send_json(
        &sim,
        &token,
        Method::POST,
        "/api/v1/recordings/export",
        &payload(&[id], "wav", "US-CA"),
    )
    .await;
    assert_eq!(status, 202, "{created}");
    let job = created["id"].as_str().unwrap();
    assert_eq!(created["jobId"], job);
    let done = poll_until(
        &sim,
        &token,
        &format!("/api/v1/recordings/export/{job}/status"),
        |b| b["state"] == "COMPLETED",
    )
    .await;
    assert_eq!(done["checksum"], rec["media"]["combined"]["sha256"]);
    let bytes = client()
        .get(done["downloadUrl"].as_str().unwrap())
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256_hex(&bytes), done["checksum"].as_str().unwrap());
    assert!(bytes.starts_with(b"RIFF") || (bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0));
}

#[tokio::test]
async fn export_payloads_are_validated_and_ogg_exports_fail() {
    let sim = quiet(3).await;
    let token = token(&sim).await;
    let id = truth(&sim, 0, 3)
        .await
        .into_iter()
        .find(|r| r["status"] == "Available")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let post = |body| {
        let (sim, token) = (&sim, &token);
        async move {
            send_json(sim, token, Method::POST, "/api/v1/recordings/export", &body)
                .await
                .0
        }
    };
    assert_eq!(post(payload(&[], "wav", "US-CA")).await, 400);
    assert_eq!(post(payload(&[&id], "flac", "US-CA")).await, 400);
    assert_eq!(post(payload(&[&id], "wav", "FR-XX")).await, 403);
    assert_eq!(post(payload(&["nope"], "wav", "US-CA")).await, 404);
    let (_, created) = send_json(
        &sim,
        &token,
        Method::POST,
        "/api/v1/recordings/export",
        &payload(&[&id], "ogg", "EU-DE"),
    )
    .await;
    let job = created["jobId"].as_str().unwrap();
    let failed = poll_until(
        &sim,
        &token,
        &format!("/api/v1/recordings/export/{job}/status"),
        |b| b["state"] == "FAILED",
    )
    .await;
    assert!(failed["errorMessage"].as_str().unwrap().contains("ogg"));
}
