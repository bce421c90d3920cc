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

/// Sends `body` as JSON with a bearer token; answers (status, JSON body or Null).
pub async fn send_json(
    sim: &SimServer,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let response = client()
        .request(method, format!("{}{path}", sim.base_url()))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls `path` until `done(body)` holds (at most ~8 s).
pub async fn poll_until(
    sim: &SimServer,
    token: &str,
    path: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..160 {
        let (status, body) = get_json(sim, token, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        if done(&body) {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{path} never reached the expected state");
}

/// A webhook receiver on loopback that records (headers, body) and answers with the
/// statuses in `answers` in turn (then 200); [`SLOW`] answers 200 after a second.
pub struct Receiver {
    pub url: String,
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>>,
}

/// An answer for [`receiver`]: 200, but only after one second.
pub const SLOW: u16 = 0;

pub async fn receiver(answers: Vec<u16>) -> Receiver {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>> = Arc::default();
    let answers = Arc::new(Mutex::new(answers.into_iter()));
    let (seen2, answers2) = (seen.clone(), answers.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let (seen, answers) = (seen2.clone(), answers2.clone());
            async move {
                seen.lock().unwrap().push((headers, body));
                let status = answers.lock().unwrap().next().unwrap_or(200);
                if status == SLOW {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    return axum::http::StatusCode::OK;
                }
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, seen }
}

impl Receiver {
    /// Waits until at least `n` deliveries arrived (at most ~8 s); answers all so far.
    pub async fn wait_for(&self, n: usize) -> Vec<(axum::http::HeaderMap, String)> {
        for _ in 0..160 {
            if self.seen.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.seen.lock().unwrap().clone()
    }
}

/// Checks the simulator's webhook signature headers on a delivery.
pub fn signature_ok(headers: &axum::http::HeaderMap, body: &str, secret: &str) -> bool {
    use hmac::{Hmac, KeyInit, Mac};
    let timestamp = headers["nice-request-timestamp"].to_str().unwrap();
    let signature = hex::decode(headers["x-nice-signature"].to_str().unwrap()).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    mac.verify_slice(&signature).is_ok()
}
