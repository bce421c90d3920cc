//! Seed 002 routes: search pagination (token and page styles), filters, sort, detail and
//! download URLs.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use super::support::{client, get_json, quiet, small, start, token};

/// Follows `nextPageToken` from a first request; answers every recordingId in order.
async fn all_by_token(sim: &cxpipe::sim::SimServer, token: &str, first_body: Value) -> Vec<String> {
    let url = format!("{}/api/v2/recording/search", sim.base_url());
    let mut ids = Vec::new();
    let mut body = first_body;
    for _ in 0..200 {
        let page: Value = client()
            .get(&url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.extend(
            page["recordings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["recordingId"].as_str().unwrap().to_string()),
        );
        match page["nextPageToken"].as_str() {
            Some(next) => body = json!({ "pageToken": next }),
            None => return ids,
        }
    }
    panic!("pagination did not terminate");
}

#[tokio::test]
async fn token_pagination_covers_every_record_exactly_once() {
    let sim = quiet(257).await;
    let token = token(&sim).await;
    let ids = all_by_token(&sim, &token, json!({ "pageSize": 20 })).await;
    assert_eq!(ids.len(), 257);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 257);
    let desc = all_by_token(
        &sim,
        &token,
        json!({ "pageSize": 50, "sort": [{ "field": "createdDate", "direction": "desc" }] }),
    )
    .await;
    let mut reversed = ids.clone();
    reversed.reverse();
    assert_eq!(desc, reversed);
}

#[tokio::test]
async fn page_number_pagination_covers_every_record_exactly_once() {
    let sim = quiet(101).await;
    let token = token(&sim).await;
    let mut ids = HashSet::new();
    let mut pages = 0;
    for page in 1..=20 {
        let (status, body) = get_json(
            &sim,
            &token,
            &format!("/api/v2/recording/search?page={page}&pageSize=25"),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["totalCount"], 101);
        assert_eq!(body["totalPages"], 5);
        let records = body["recordings"].as_array().unwrap();
        if records.is_empty() {
            break;
        }
        pages += 1;
        for r in records {
            assert!(
                ids.insert(r["recordingId"].as_str().unwrap().to_string()),
                "duplicate"
            );
        }
    }
    assert_eq!((pages, ids.len()), (5, 101));
}

#[tokio::test]
async fn filters_work_in_get_body_post_body_and_query() {
    let mut config = small(120);
    config.processing_share = 0.5;
    config.processing_delay = Duration::from_secs(3600);
    let sim = start(config).await;
    let token = token(&sim).await;
    let url = format!("{}/api/v2/recording/search", sim.base_url());
    let filter = json!({ "filters": [{ "field": "status", "operator": "eq", "value": "Available" }], "pageSize": 1000 });
    let via_get: Value = client()
        .get(&url)
        .bearer_auth(&token)
        .json(&filter)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let via_post: Value = client()
        .post(&url)
        .bearer_auth(&token)
        .json(&filter)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (_, via_query) = get_json(
        &sim,
        &token,
        "/api/v2/recording/search?status=Available&pageSize=1000",
    )
    .await;
    let available = via_get["totalCount"].as_u64().unwrap();
    assert!(available > 20 && available < 110, "{available}");
    assert_eq!(via_post["totalCount"], available);
    assert_eq!(via_query["totalCount"], available);
    assert!(
        via_get["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "Available")
    );
    let (_, everything) = get_json(&sim, &token, "/api/v2/recording/search?pageSize=1000").await;
    assert!(
        everything["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["status"] == "Processing")
    );

    let cutoff = everything["recordings"][60]["createdDate"]
        .as_str()
        .unwrap()
        .to_string();
    let recent = json!({ "filters": [{ "field": "createdDate", "operator": "gte", "value": cutoff }], "pageSize": 1000 });
    let recent: Value = client()
        .post(&url)
        .bearer_auth(&token)
        .json(&recent)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(recent["totalCount"], 60);
}

#[tokio::test]
async fn bad_search_input_is_a_400() {
    let sim = quiet(5).await;
    let token = token(&sim).await;
    for path in [
        "/api/v2/recording/search?pageSize=0",
        "/api/v2/recording/search?pageSize=5000",
        "/api/v2/recording/search?pageToken=garbage",
        "/api/v2/recording/search?sort=colour:asc",
    ] {
        assert_eq!(get_json(&sim, &token, path).await.0, 400, "{path}");
    }
}

#[tokio::test]
async fn detail_and_download_url_follow_channels_and_lifecycle() {
    let mut config = small(200);
    config.archived_share = 0.1;
    let sim = start(config).await;
    let token = token(&sim).await;
    let (_, page) = get_json(&sim, &token, "/api/v2/recording/search?pageSize=200").await;
    let records = page["recordings"].as_array().unwrap();
    let one = &records[0];
    let id = one["recordingId"].as_str().unwrap();
    let (status, detail) = get_json(&sim, &token, &format!("/api/v2/recording/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(&detail, one);
    assert_eq!(
        get_json(
            &sim,
            &token,
            "/api/v2/recording/00000000-0000-4000-8000-000000000000"
        )
        .await
        .0,
        404
    );

    let (status, link) = get_json(
        &sim,
        &token,
        &format!("/api/v2/recording/{id}/download?channel=combined"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(link["sizeBytes"], one["sizeBytes"]);
    assert!(link["url"].as_str().unwrap().contains("Signature="));

    let mono = records
        .iter()
        .find(|r| {
            r["availableChannels"].as_array().unwrap().len() == 1 && r["status"] == "Available"
        })
        .unwrap();
    let mono_id = mono["recordingId"].as_str().unwrap();
    let (_, silent) = get_json(
        &sim,
        &token,
        &format!("/api/v2/recording/{mono_id}/download?channel=caller"),
    )
    .await;
    assert!(
        silent["sizeBytes"].as_u64().unwrap() <= 44,
        "absent channel is an empty file: {silent}"
    );
    assert_eq!(
        get_json(
            &sim,
            &token,
            &format!("/api/v2/recording/{mono_id}/download?channel=left")
        )
        .await
        .0,
        400
    );

    let archived = records.iter().find(|r| r["status"] == "Archived").unwrap();
    let archived_id = archived["recordingId"].as_str().unwrap();
    assert_eq!(
        get_json(
            &sim,
            &token,
            &format!("/api/v2/recording/{archived_id}/download")
        )
        .await
        .0,
        404
    );
}
