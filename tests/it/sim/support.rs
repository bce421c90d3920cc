//! Helpers for the simulator tests: start a simulator, get a token, page through results.

use cxpipe::sim::{SimConfig, SimServer};
use serde_json::Value;

/// A quiet simulator (no faults) with `recordings` small recordings.
pub async fn quiet(recordings: usize) -> SimServer {
    start(small(recordings)).await
}

/// A fault-free configuration with small media, for fast tests.
pub fn small(recordings: usize) -> SimConfig {
    let mut config = SimConfig {
        recordings,
        interactions: recordings,
        transcripts: recordings,
        ..SimConfig::default()
    }
    .without_faults();
    config.sizes.min = 8_000;
    config.sizes.max = 300_000;
    config
}

pub async fn start(config: SimConfig) -> SimServer {
    SimServer::start(config).await.expect("simulator starts")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client builds")
}

/// A client-credentials token from the v2 endpoint.
pub async fn token(sim: &SimServer) -> String {
    let creds = sim.credentials();
    let response = client()
        .post(format!("{}/api/v2/oauth/token", sim.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", creds.client_id.as_str()),
            ("client_secret", creds.client_secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

/// GET with a bearer token; answers (status, JSON body or Null).
pub async fn get_json(sim: &SimServer, token: &str, path: &str) -> (u16, Value) {
    let response = client()
        .get(format!("{}{path}", sim.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// POST JSON to a `/_sim` endpoint.
pub async fn control(sim: &SimServer, patch: Value) -> reqwest::Response {
    client()
        .post(format!("{}/_sim/control", sim.base_url()))
        .json(&patch)
        .send()
        .await
        .unwrap()
}

/// Ground truth of recordings `offset..offset+limit`.
pub async fn truth(sim: &SimServer, offset: usize, limit: usize) -> Vec<Value> {
    let url = format!(
        "{}/_sim/truth/recordings?offset={offset}&limit={limit}",
        sim.base_url()
    );
    let body: Value = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["recordings"].as_array().unwrap().clone()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
