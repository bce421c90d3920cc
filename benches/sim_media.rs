//! Media serving throughput of the simulator on loopback: one 512 MiB WAV downloaded by a
//! fast client (reqwest, streamed, bytes counted and dropped), once on one connection and
//! once on four at a time. Prints MB/s (10^6 bytes per second).
//!
//! Run: `cargo bench --bench sim_media` (release). `SIM_BENCH_MIB` changes the size.

use std::time::Instant;

use cxpipe::sim::{SimConfig, SimServer};
use futures::StreamExt;
use serde_json::Value;

async fn download(client: &reqwest::Client, url: &str) -> u64 {
    let response = client.get(url).send().await.expect("media request");
    assert!(response.status().is_success(), "{}", response.status());
    let mut stream = response.bytes_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        total += chunk.expect("media body").len() as u64;
    }
    total
}

async fn media_url(sim: &SimServer, client: &reqwest::Client) -> (String, u64) {
    let creds = sim.credentials();
    let token: Value = client
        .post(format!("{}/api/v2/oauth/token", sim.base_url()))
        .basic_auth(&creds.client_id, Some(&creds.client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token JSON");
    let token = token["access_token"].as_str().expect("access_token");
    let truth: Value = client
        .get(format!("{}/_sim/truth/recordings?limit=0", sim.base_url()))
        .send()
        .await
        .expect("truth")
        .json()
        .await
        .expect("truth JSON");
    assert_eq!(truth["total"], 1);
    let search: Value = client
        .get(format!("{}/api/v2/recording/search", sim.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("search JSON");
    let id = search["recordings"][0]["recordingId"]
        .as_str()
        .expect("recordingId");
    let link: Value = client
        .get(format!(
            "{}/api/v2/recording/{id}/download?channel=combined",
            sim.base_url()
        ))
        .bearer_auth(token)
        .send()
        .await
        .expect("download URL")
        .json()
        .await
        .expect("download JSON");
    (
        link["url"].as_str().expect("url").to_string(),
        link["sizeBytes"].as_u64().expect("sizeBytes"),
    )
}

fn main() {
    let mib: u64 = std::env::var("SIM_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut config = SimConfig {
            recordings: 1,
            ..SimConfig::default()
        }
        .without_faults();
        config.sizes.min = mib << 20;
        config.sizes.max = mib << 20;
        config.mp3_share = 0.0;
        config.archived_share = 0.0;
        config.expired_share = 0.0;
        let sim = SimServer::start(config).await.expect("simulator");
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let (url, size) = media_url(&sim, &client).await;

        let started = Instant::now();
        let got = download(&client, &url).await;
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(got, size);
        println!(
            "sim_media: 1 stream  x {size} B: {:.0} MB/s ({secs:.2} s)",
            size as f64 / secs / 1e6
        );

        let started = Instant::now();
        let downloads = (0..4).map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { download(&client, &url).await })
        });
        let mut total = 0;
        for task in downloads {
            total += task.await.expect("download task");
        }
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(total, 4 * size);
        println!(
            "sim_media: 4 streams x {size} B: {:.0} MB/s aggregate ({secs:.2} s)",
            total as f64 / secs / 1e6
        );
        sim.shutdown().await;
    });
}
