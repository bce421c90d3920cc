//! The real dialect: completed contacts (skip/top and `_links.next`), media playback,
//! bulk media download, data extraction (one active job, 30-second result URL), analytics.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::support::{
    client, control, get_json, poll_until, quiet, send_json, small, start, token,
};

async fn get_url(token: &str, url: &str) -> Value {
    let response = client().get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn completed_contacts_follow_next_links_to_every_closed_contact_once() {
    let sim = quiet(90).await;
    let token = token(&sim).await;
    let mut url = format!(
        "{}/contacts/completed?top=10&orderBy=lastUpdateTime%20asc",
        sim.base_url()
    );
    let (mut seen, mut total, mut last) = (HashSet::new(), 0, String::new());
    for _ in 0..50 {
        let page = get_url(&token, &url).await;
        total = page["totalRecords"].as_u64().unwrap();
        assert!(page["lastPollTime"].is_string());
        for c in page["completedContacts"].as_array().unwrap() {
            assert!(seen.insert(c["contactId"].as_u64().unwrap()));
            let updated = c["lastUpdateTime"].as_str().unwrap().to_string();
            assert!(updated >= last);
            last = updated;
        }
        match page["_links"]["next"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen.len() as u64, total);
    assert!(total > 60, "{total}");
    let since = get_url(
        &token,
        &format!(
            "{}/contacts/completed?top=1000&updatedSince={}",
            sim.base_url(),
            last.replace(':', "%3A")
        ),
    )
    .await;
    assert_eq!(
        since["totalRecords"], 0,
        "nothing updated after the newest update"
    );
    let (_, skipped) = get_json(&sim, &token, "/contacts/completed?skip=5&top=5").await;
    let (_, whole) = get_json(&sim, &token, "/contacts/completed?top=10").await;
    assert_eq!(
        skipped["completedContacts"][0],
        whole["completedContacts"][5]
    );
}

#[tokio::test]
async fn media_playback_gives_a_playable_link_and_is_rate_limited() {
    let sim = quiet(10).await;
    let token = token(&sim).await;
    let truth = super::support::truth(&sim, 0, 10).await;
    let index = truth
        .iter()
        .position(|r| r["status"] == "Available")
        .unwrap();
    let contact = 700_000_000 + index;
    let path = format!(
        "/media-playback/v1/contacts?acd-call-id={contact}&media-type=voice-only&isDownload=true"
    );
    let (status, body) = get_json(&sim, &token, &path).await;
    assert_eq!(status, 200, "{body}");
    let voice = &body["interactions"][0];
    assert_eq!(
        voice["data"]["participantDataList"][0]["participantType"],
        "AGENT"
    );
    let media = client()
        .get(voice["data"]["fileToPlayUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        media.len() as u64,
        truth[index]["sizeBytes"].as_u64().unwrap()
    );

    control(
        &sim,
        json!({ "rate_limits": { "media-playback": { "requests": 1, "per": "5m" } } }),
    )
    .await;
    assert_eq!(get_json(&sim, &token, &path).await.0, 200);
    let throttled = client()
        .get(format!("{}{path}", sim.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(throttled.status(), 429);
    assert!(throttled.headers().contains_key("retry-after"));
    let body: Value = throttled.json().await.unwrap();
    assert!(body["message"].is_string() && body["route"].is_string());
}

#[tokio::test]
async fn bulk_media_download_reports_entities_and_serves_files() {
    let sim = quiet(10).await;
    let token = token(&sim).await;
    let ids: Vec<String> = (0..10)
        .map(|i| (700_000_000 + i).to_string())
        .chain(["1".to_string()])
        .collect();
    let (status, created) = send_json(
        &sim,
        &token,
        Method::POST,
        "/media-download/v1/contacts",
        &json!({ "entityIds": ids }),
    )
    .await;
    assert_eq!(status, 202);
    let request = created["requestId"].as_str().unwrap();
    let done = poll_until(
        &sim,
        &token,
        &format!("/media-download/v1/status/{request}"),
        |b| b["status"] == "COMPLETED",
    )
    .await;
    let entities = done["entities"].as_array().unwrap();
    assert_eq!(entities.len(), 11);
    assert!(
        entities
            .iter()
            .any(|e| e["status"] == "FAILED" && e["entityId"] == "1")
    );
    let files = get_url(&token, done["downloadLocation"].as_str().unwrap()).await;
    let first = &files["files"][0];
    let bytes = client()
        .get(first["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.len() as u64, first["sizeBytes"].as_u64().unwrap());
    let too_many: Vec<String> = (0..101).map(|i| i.to_string()).collect();
    assert_eq!(
        send_json(
            &sim,
            &token,
            Method::POST,
            "/media-download/v1/contacts",
            &json!({ "entityIds": too_many })
        )
        .await
        .0,
        400
    );
}

#[tokio::test]
async fn data_extraction_allows_one_active_job_and_its_result_url_expires() {
    let mut config = small(40);
    config.faults.extraction_url_ttl = Duration::from_millis(1100);
    let sim = start(config).await;
    let token = token(&sim).await;
    let job = json!({ "entityName": "recording-interaction-metadata", "version": 7, "startDate": "2020-01-01T00:00:00Z", "endDate": "2030-01-01T00:00:00Z" });
    let (status, created) =
        send_json(&sim, &token, Method::POST, "/data-extraction/v1/jobs", &job).await;
    assert_eq!(status, 202);
    assert_eq!(
        send_json(&sim, &token, Method::POST, "/data-extraction/v1/jobs", &job)
            .await
            .0,
        409
    );
    let id = created["jobId"].as_str().unwrap();
    let done = poll_until(
        &sim,
        &token,
        &format!("/data-extraction/v1/jobs/{id}"),
        |b| b["jobStatus"]["status"] == "SUCCEEDED",
    )
    .await;
    let url = done["jobStatus"]["result"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let csv = client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let contacts: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    let unique: HashSet<&&str> = contacts.iter().collect();
    assert!(
        unique.len() > 20 && unique.len() < contacts.len(),
        "rows repeat per segment"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(client().get(&url).send().await.unwrap().status(), 403);

    control(&sim, json!({ "extraction_interval": "1h" })).await;
    let throttled = client()
        .post(format!("{}/data-extraction/v1/jobs", sim.base_url()))
        .bearer_auth(&token)
        .json(&job)
        .send()
        .await
        .unwrap();
    assert_eq!(
        throttled.status(),
        429,
        "jobs are spaced by extraction_interval"
    );
    assert!(
        throttled.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 3000
    );
    assert_eq!(
        send_json(
            &sim,
            &token,
            Method::POST,
            "/data-extraction/v1/jobs",
            &json!({ "entityName": "x" })
        )
        .await
        .0,
        400
    );
}

#[tokio::test]
async fn analytics_segments_page_by_cursor_and_transcripts_have_blocks() {
    let sim = quiet(60).await;
    let token = token(&sim).await;
    let mut url = format!(
        "{}/interaction-analytics-gateway/v2/segments/analyzed?pageSize=7",
        sim.base_url()
    );
    let (mut seen, mut total) = (Vec::new(), 0);
    for _ in 0..30 {
        let page = get_url(&token, &url).await;
        total = page["totalRecords"].as_u64().unwrap();
        seen.extend(
            page["interactions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["segmentId"].as_str().unwrap().to_string()),
        );
        match page["links"]["next"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen.len() as u64, total);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), seen.len());
    let (status, transcript) = get_json(
        &sim,
        &token,
        &format!(
            "/interaction-analytics-gateway/v2/segments/{}/analyzed-transcript",
            seen[0]
        ),
    )
    .await;
    assert_eq!(status, 200);
    let block = &transcript["transcriptBlocks"][0];
    assert!(block["text"].is_string() && block["voiceMetadata"]["confidence"].is_number());
}
