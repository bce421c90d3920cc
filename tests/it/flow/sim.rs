//! Against the simulator: a 200 MB recording with connection resets, silent truncation and
//! presigned URLs that expire mid-transfer (scaled down from 60 s to 1 s so the test stays
//! short; gzip keeps the transfer slower than that) arrives intact with one `fetch(fn)` call
//! from the script.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cxpipe::sim::{SimConfig, SimServer, SizeDistribution};
use serde_json::Value;

use super::*;

const SIZE: u64 = 200_000_000;

async fn get_json(client: &reqwest::Client, url: &str, token: &str) -> Value {
    for _ in 0..20 {
        let resp = client.get(url).bearer_auth(token).send().await.unwrap();
        if resp.status().is_success() {
            return resp.json().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} kept failing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_recording_survives_resets_truncation_and_url_expiry() {
    let mut config = SimConfig::default().without_faults();
    config.recordings = 2;
    config.sizes = SizeDistribution {
        min: SIZE,
        max: SIZE,
        log_uniform: false,
    };
    config.archived_share = 0.0;
    config.expired_share = 0.0;
    config.mp3_share = 0.0;
    config.faults.url_ttl = Duration::from_secs(1);
    config.faults.abort_on_url_expiry = true;
    config.faults.reset_rate = 0.5;
    config.faults.truncate_rate = 0.3;
    let sim = SimServer::start(config).await.unwrap();
    let base = sim.base_url().trim_end_matches('/').to_string();
    let creds = sim.credentials().clone();
    let client = reqwest::Client::new();
    let token: Value = client
        .post(format!("{base}/api/v2/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", creds.client_id.as_str()),
            ("client_secret", creds.client_secret.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    let truth = get_json(
        &client,
        &format!("{base}/_sim/truth/recordings?offset=0&limit=1"),
        &token,
    )
    .await;
    let rec = &truth["recordings"][0];
    let id = rec["id"].as_str().unwrap().to_string();
    let combined = &rec["media"]["combined"];
    assert_eq!(combined["sizeBytes"].as_u64(), Some(SIZE));

    let calls = Arc::new(AtomicU64::new(0));
    let mut engine = engine();
    let (c, b, t) = (calls.clone(), base.clone(), token.clone());
    engine.register_fn("download_url", move || -> String {
        c.fetch_add(1, Ordering::SeqCst);
        let url = format!("{b}/api/v2/recording/{id}/download?channel=combined");
        let v =
            tokio::runtime::Handle::current().block_on(get_json(&reqwest::Client::new(), &url, &t));
        v["url"].as_str().unwrap().to_string()
    });
    let uri = memory_uri();
    let r = receipt(engine, format!(
        r#"fetch(|| download_url()).expect_size({SIZE}).audio_check().md5().gzip(1).write(storage("{uri}"), "rec.wav.gz")"#
    ))
    .await;
    assert_eq!(get_str(&r, "sha256"), combined["sha256"].as_str().unwrap());
    assert_eq!(get_str(&r, "md5"), combined["md5"].as_str().unwrap());
    assert_eq!(get_int(&r, "bytes_read"), SIZE as i64);
    assert_eq!(get_int(&r, "plaintext_size"), SIZE as i64);
    assert_eq!(get_str(&r, "audio"), "wav");
    let refreshes = get_int(&r, "url_refreshes");
    assert_eq!(
        calls.load(Ordering::SeqCst) as i64,
        refreshes + 1,
        "one fetch, refreshed by the function"
    );
    let stats = sim.stats();
    eprintln!(
        "200 MB: {} ms, {} attempts, {refreshes} refreshes, stats {stats}",
        get_int(&r, "duration_ms"),
        get_int(&r, "fetch_attempts")
    );
    assert!(
        get_int(&r, "fetch_attempts") > 1,
        "no fault hit the transfer"
    );
}
