//! `/_sim/truth`: ground truth per recording, the same for the same seed.

use super::support::{quiet, small, start, truth};

#[tokio::test]
async fn truth_pages_cover_the_dataset_with_digests_per_channel() {
    let sim = quiet(30).await;
    let first = truth(&sim, 0, 20).await;
    let rest = truth(&sim, 20, 20).await;
    assert_eq!((first.len(), rest.len()), (20, 10));
    for rec in first.iter().chain(&rest) {
        let channels = rec["availableChannels"].as_array().unwrap();
        assert_eq!(rec["media"].as_object().unwrap().len(), channels.len());
        assert_eq!(rec["media"]["combined"]["sizeBytes"], rec["sizeBytes"]);
        assert_eq!(
            rec["media"]["combined"]["sha256"].as_str().unwrap().len(),
            64
        );
        assert_eq!(rec["media"]["combined"]["md5"].as_str().unwrap().len(), 32);
    }
}

#[tokio::test]
async fn same_seed_gives_the_same_dataset_and_another_seed_does_not() {
    let a = quiet(12).await;
    let b = quiet(12).await;
    let mut other = small(12);
    other.seed = 99;
    let c = start(other).await;
    let (ta, tb, tc) = (
        truth(&a, 0, 12).await,
        truth(&b, 0, 12).await,
        truth(&c, 0, 12).await,
    );
    assert_eq!(ta, tb);
    assert_ne!(ta[0]["id"], tc[0]["id"]);
    assert_ne!(
        ta[0]["media"]["combined"]["sha256"],
        tc[0]["media"]["combined"]["sha256"]
    );
    assert_eq!(a.credentials(), b.credentials());
}

#[tokio::test]
async fn transcript_and_interaction_truth_follow_knobs_and_client_writes() {
    use super::support::{control, send_json, token};
    let sim = quiet(40).await;
    let client = super::support::client();
    let url = |kind: &str| format!("{}/_sim/truth/{kind}?offset=0&limit=40", sim.base_url());
    let body: serde_json::Value = client
        .get(url("transcripts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let segments: Vec<serde_json::Value> = body["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["segments"].as_array().unwrap().clone())
        .collect();
    assert!(!segments.is_empty() && segments.iter().all(|s| s["state"] == "published"));
    control(&sim, serde_json::json!({ "transcript_missing_rate": 1.0 })).await;
    let body: serde_json::Value = client
        .get(url("transcripts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        body["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["segments"].as_array().unwrap().clone())
            .all(|s| s["state"] == "missing")
    );

    let token = token(&sim).await;
    let body: serde_json::Value = client
        .get(url("interactions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let closed = body["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["status"] == "closed")
        .unwrap()
        .clone();
    assert_eq!(closed["archival_status"], serde_json::Value::Null);
    let id = closed["id"].as_str().unwrap();
    let path = format!("/api/v2/interactions/{id}/custom-fields/cf-archival-status");
    send_json(
        &sim,
        &token,
        reqwest::Method::PUT,
        &path,
        &serde_json::json!({ "value": "archived" }),
    )
    .await;
    let body: serde_json::Value = client
        .get(url("interactions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let after = body["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap();
    assert_eq!(after["archival_status"], "archived");
}
