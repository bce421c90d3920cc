//! Seed 003: media recording detail, bearer-authorised content with `Range`, transcript
//! segments (shuffled, late, missing), archived media with transcripts kept.

use serde_json::{Value, json};

use super::support::{client, control, get_json, quiet, sha256_hex, token, truth};

async fn with_segments(sim: &cxpipe::sim::SimServer, token: &str, min: u64, status: &str) -> Value {
    for rec in truth(sim, 0, 200)
        .await
        .into_iter()
        .filter(|r| r["status"] == status)
    {
        let (_, detail) = get_json(
            sim,
            token,
            &format!("/api/v2/media/recordings/{}", rec["id"].as_str().unwrap()),
        )
        .await;
        if detail["totalTranscriptSegments"].as_u64().unwrap() >= min {
            return detail;
        }
    }
    panic!("no {status} recording with {min}+ segments");
}

#[tokio::test]
async fn content_serves_ranges_with_the_bearer_token_and_matches_truth() {
    let sim = quiet(20).await;
    let token = token(&sim).await;
    let rec = truth(&sim, 0, 20)
        .await
        .into_iter()
        .find(|r| r["status"] == "Available")
        .unwrap();
    let url = format!(
        "{}/api/v2/media/recordings/{}/content",
        sim.base_url(),
        rec["id"].as_str().unwrap()
    );
    assert_eq!(client().get(&url).send().await.unwrap().status(), 401);
    let whole = client()
        .get(&url)
        .bearer_auth(&token)
        .header("Range", "bytes=0-")
        .send()
        .await
        .unwrap();
    assert_eq!(whole.status(), 206);
    let total = rec["sizeBytes"].as_u64().unwrap();
    assert_eq!(
        whole.headers()["content-range"],
        format!("bytes 0-{}/{total}", total - 1).as_str()
    );
    let bytes = whole.bytes().await.unwrap();
    assert_eq!(
        sha256_hex(&bytes),
        rec["media"]["combined"]["sha256"].as_str().unwrap()
    );
    let tail = client()
        .get(&url)
        .bearer_auth(&token)
        .header("Range", "bytes=1000-")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(tail, bytes[1000..]);
    let (_, detail) = get_json(
        &sim,
        &token,
        &format!("/api/v2/media/recordings/{}", rec["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(
        (
            detail["status"].as_str(),
            detail["storageLocation"].as_str()
        ),
        (Some("available"), Some("active"))
    );
}

#[tokio::test]
async fn archived_recordings_keep_their_transcripts_but_media_is_404() {
    let sim = quiet(200).await;
    let token = token(&sim).await;
    let detail = with_segments(&sim, &token, 1, "Archived").await;
    assert_eq!(
        (
            detail["status"].as_str(),
            detail["storageLocation"].as_str()
        ),
        (Some("archived"), Some("cold"))
    );
    let id = detail["id"].as_str().unwrap();
    assert_eq!(
        get_json(
            &sim,
            &token,
            &format!("/api/v2/media/recordings/{id}/content")
        )
        .await
        .0,
        404
    );
    let transcript = detail["transcriptIds"][0].as_str().unwrap();
    assert_eq!(
        get_json(
            &sim,
            &token,
            &format!("/api/v2/media/transcripts/{transcript}")
        )
        .await
        .0,
        200
    );
}

#[tokio::test]
async fn transcript_segments_assemble_by_call_and_can_be_late_or_missing() {
    let sim = quiet(200).await;
    let token = token(&sim).await;
    let detail = with_segments(&sim, &token, 3, "Available").await;
    let total = detail["totalTranscriptSegments"].as_u64().unwrap();
    let ids: Vec<String> = detail["transcriptIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len() as u64, total);
    let mut indexes = Vec::new();
    for id in &ids {
        let (status, seg) =
            get_json(&sim, &token, &format!("/api/v2/media/transcripts/{id}")).await;
        assert_eq!(status, 200);
        assert_eq!(
            (&seg["callId"], seg["totalSegments"].as_u64()),
            (&detail["callId"], Some(total))
        );
        assert!(!seg["utterances"].as_array().unwrap().is_empty());
        indexes.push(seg["segmentIndex"].as_u64().unwrap());
    }
    indexes.sort();
    assert_eq!(indexes, (0..total).collect::<Vec<_>>());

    // Late segments appear `transcript_late_delay` (±50%) after the simulator started.
    control(
        &sim,
        json!({ "transcript_late_rate": 1.0, "transcript_late_delay": "1h" }),
    )
    .await;
    let id = detail["id"].as_str().unwrap();
    let (_, now) = get_json(&sim, &token, &format!("/api/v2/media/recordings/{id}")).await;
    assert!(
        now["transcriptIds"].as_array().unwrap().is_empty(),
        "late segments are not listed yet"
    );
    assert_eq!(
        get_json(
            &sim,
            &token,
            &format!("/api/v2/media/transcripts/{}", ids[0])
        )
        .await
        .0,
        404
    );
    control(&sim, json!({ "transcript_late_delay": "1ms" })).await;
    assert_eq!(
        get_json(
            &sim,
            &token,
            &format!("/api/v2/media/transcripts/{}", ids[0])
        )
        .await
        .0,
        200
    );

    control(&sim, json!({ "transcript_missing_rate": 1.0 })).await;
    assert_eq!(
        get_json(
            &sim,
            &token,
            &format!("/api/v2/media/transcripts/{}", ids[0])
        )
        .await
        .0,
        404
    );
}
