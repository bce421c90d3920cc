//! Presigned media: whole and ranged downloads match the ground truth, expired or tampered
//! URLs are refused, media appears once `Processing` ends, same seed → same bytes.

use std::time::Duration;

use serde_json::Value;

use super::support::{client, get_json, quiet, sha256_hex, small, start, token, truth};

/// A download URL for recording `index` (by truth order) and channel.
async fn link(sim: &cxpipe::sim::SimServer, token: &str, id: &str, channel: &str) -> Value {
    let (status, body) = get_json(
        sim,
        token,
        &format!("/api/v2/recording/{id}/download?channel={channel}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn first_available(records: &[Value]) -> &Value {
    records
        .iter()
        .find(|r| r["status"] == "Available")
        .expect("an available recording")
}

#[tokio::test]
async fn whole_download_matches_truth_size_and_sha256_and_is_valid_audio() {
    let sim = quiet(40).await;
    let token = token(&sim).await;
    let records = truth(&sim, 0, 40).await;
    let mut formats = std::collections::HashSet::new();
    for rec in records
        .iter()
        .filter(|r| r["status"] == "Available")
        .take(12)
    {
        let id = rec["id"].as_str().unwrap();
        let url = link(&sim, &token, id, "combined").await["url"]
            .as_str()
            .unwrap()
            .to_string();
        let response = client().get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["accept-ranges"], "bytes");
        let bytes = response.bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, rec["sizeBytes"].as_u64().unwrap());
        assert_eq!(sha256_hex(&bytes), rec["media"]["combined"]["sha256"]);
        match rec["format"].as_str().unwrap() {
            "wav" => assert!(bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WAVE"),
            _ => assert!(bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0),
        }
        formats.insert(rec["format"].clone());
    }
    assert_eq!(formats.len(), 2, "both WAV and MP3 are served");
    assert!(sim.stats()["media_bytes_served"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn range_requests_return_the_right_bytes_and_content_range() {
    let sim = quiet(10).await;
    let token = token(&sim).await;
    let records = truth(&sim, 0, 10).await;
    let rec = first_available(&records);
    let url = link(&sim, &token, rec["id"].as_str().unwrap(), "combined").await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let whole = client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let total = whole.len();
    let cases = [
        ("bytes=0-99".to_string(), 0, 100),
        (format!("bytes={}-", total - 1000), total - 1000, total),
        ("bytes=-500".to_string(), total - 500, total),
        ("bytes=70000-140000".to_string(), 70_000, 140_001),
    ];
    for (range, start, end) in cases {
        let response = client()
            .get(&url)
            .header("Range", &range)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 206, "{range}");
        let expected = format!("bytes {start}-{}/{total}", end - 1);
        assert_eq!(response.headers()["content-range"], expected.as_str());
        assert_eq!(
            response.bytes().await.unwrap(),
            whole[start..end],
            "{range}"
        );
    }
    let beyond = client()
        .get(&url)
        .header("Range", format!("bytes={total}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 416);
    assert_eq!(
        beyond.headers()["content-range"],
        format!("bytes */{total}").as_str()
    );

    let etag = client().head(&url).send().await.unwrap().headers()["etag"]
        .to_str()
        .unwrap()
        .to_string();
    let resumed = client()
        .get(&url)
        .header("Range", "bytes=10-")
        .header("If-Range", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 206);
    let stale = client()
        .get(&url)
        .header("Range", "bytes=10-")
        .header("If-Range", "\"old\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200, "a changed object is sent whole");
}

#[tokio::test]
async fn expired_or_tampered_presigned_urls_are_refused() {
    let mut config = small(5);
    config.faults.url_ttl = Duration::from_millis(1100);
    let sim = start(config).await;
    let token = token(&sim).await;
    let records = truth(&sim, 0, 5).await;
    let id = first_available(&records)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let url = link(&sim, &token, &id, "combined").await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let tampered = url.replace("/combined.", "/agent.");
    let refused = client().get(&tampered).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("SignatureDoesNotMatch")
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = client().get(&url).send().await.unwrap();
    assert_eq!(expired.status(), 403);
    assert!(
        expired
            .text()
            .await
            .unwrap()
            .contains("Request has expired")
    );
    let fresh = link(&sim, &token, &id, "combined").await["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(client().get(&fresh).send().await.unwrap().status(), 200);
    assert_eq!(sim.stats()["urls_refused"], 2);
}

#[tokio::test]
async fn processing_media_is_missing_until_available_and_archived_media_stays_missing() {
    let mut config = small(60);
    config.processing_share = 0.4;
    config.processing_delay = Duration::from_secs(3);
    config.expired_share = 0.1;
    let sim = start(config).await;
    let token = token(&sim).await;
    let records = truth(&sim, 0, 60).await;
    let processing = records
        .iter()
        .find(|r| r["status"] == "Processing")
        .expect("a processing recording");
    let id = processing["id"].as_str().unwrap().to_string();
    let url = link(&sim, &token, &id, "combined").await["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(client().get(&url).send().await.unwrap().status(), 404);
    let path = format!("/api/v2/recording/{id}");
    super::support::poll_until(&sim, &token, &path, |d| d["status"] == "Available").await;
    assert_eq!(client().get(&url).send().await.unwrap().status(), 200);

    let expired = records
        .iter()
        .find(|r| r["status"] == "Expired")
        .expect("an expired recording");
    let url = link(&sim, &token, expired["id"].as_str().unwrap(), "combined").await["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        client().get(&url).send().await.unwrap().status(),
        404,
        "purged media is gone"
    );
}

#[tokio::test]
async fn the_same_seed_serves_the_same_bytes() {
    let (a, b) = (quiet(4).await, quiet(4).await);
    let (ta, tb) = (token(&a).await, token(&b).await);
    let id = first_available(&truth(&a, 0, 4).await)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ua = link(&a, &ta, &id, "combined").await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let ub = link(&b, &tb, &id, "combined").await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let ba = client()
        .get(ua)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let bb = client()
        .get(ub)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(ba, bb);
}

#[tokio::test]
async fn a_download_slower_than_its_url_is_cut_when_the_url_expires() {
    let mut config = small(3);
    config.sizes.min = 64 << 20;
    config.sizes.max = 64 << 20;
    config.archived_share = 0.0;
    config.expired_share = 0.0;
    config.faults.url_ttl = Duration::from_millis(1500);
    let sim = start(config).await;
    let token = token(&sim).await;
    let id = truth(&sim, 0, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let url = link(&sim, &token, &id, "combined").await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let mut response = client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.chunk().await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(2700)).await;
    let mut received = 0u64;
    let outcome = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received += chunk.len() as u64,
            Ok(None) => break Ok(received),
            Err(err) => break Err(err),
        }
    };
    assert!(
        outcome.is_err(),
        "the transfer must break once the URL expired ({received} bytes after the pause)"
    );
}
