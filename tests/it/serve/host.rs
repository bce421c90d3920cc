//! A fake [`ServeHost`]: a real ledger in a temp dir, real metrics and verifiers, and
//! records of what the routes handed over or triggered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cxpipe::ledger::Ledger;
use cxpipe::secret::Secret;
use cxpipe::serve::http::{HandError, ServeHost, TriggerError, router};
use cxpipe::serve::metrics::Metrics;
use cxpipe::serve::status::StatusSnapshot;
use cxpipe::serve::webhook::{VerifiedEvent, Verifier, WebhookSettings};
use futures::future::BoxFuture;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub const SECRET: &str = "whsec-acme-test";
pub const TOKEN: &str = "run-now-token-1";
/// The body cap of the fake host's verifiers.
pub const MAX_BODY: usize = 4096;

pub struct FakeHost {
    pub metrics: Metrics,
    pub ledger: Ledger,
    verifiers: HashMap<(String, String), Arc<Verifier>>,
    /// (tenant, pipeline, event id) of every event handed over, in order.
    pub handed: Mutex<Vec<(String, String, String)>>,
    pub snapshot: StatusSnapshot,
    /// (pipeline, tenant) pairs configured.
    pub pairs: Vec<(String, String)>,
    /// (pipeline, tenant) of runs started and still live.
    pub live: Mutex<Vec<(String, String)>>,
    pub token: Option<Secret>,
    _dir: tempfile::TempDir,
}

impl FakeHost {
    /// Pipelines `download` and `transcripts` for tenants `acme` and `beta`; webhooks on
    /// `download` for both tenants.
    pub async fn new(snapshot: StatusSnapshot) -> FakeHost {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open_dir(dir.path()).await.unwrap();
        let mut verifiers = HashMap::new();
        for tenant in ["acme", "beta"] {
            let mut settings = WebhookSettings::new(Secret::new(SECRET));
            settings.max_body = MAX_BODY;
            verifiers.insert(
                (tenant.to_string(), "download".to_string()),
                Arc::new(Verifier::new(&settings)),
            );
        }
        let pairs = ["download", "transcripts"]
            .iter()
            .flat_map(|p| ["acme", "beta"].map(|t| (p.to_string(), t.to_string())))
            .collect();
        FakeHost {
            metrics: Metrics::new(),
            ledger,
            verifiers,
            handed: Mutex::new(Vec::new()),
            snapshot,
            pairs,
            live: Mutex::new(Vec::new()),
            token: Some(Secret::new(TOKEN)),
            _dir: dir,
        }
    }

    pub fn handed(&self) -> Vec<(String, String, String)> {
        self.handed.lock().unwrap().clone()
    }
}

impl ServeHost for FakeHost {
    fn status(&self) -> BoxFuture<'_, StatusSnapshot> {
        Box::pin(async move { self.snapshot.clone() })
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn metrics_text(&self) -> BoxFuture<'_, String> {
        Box::pin(async move {
            self.metrics
                .refresh_items(&self.ledger, &self.pairs)
                .await
                .unwrap();
            self.metrics.render()
        })
    }

    fn verifier(&self, tenant: &str, pipeline: &str) -> Option<Arc<Verifier>> {
        self.verifiers
            .get(&(tenant.to_string(), pipeline.to_string()))
            .cloned()
    }

    fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn hand_event(
        &self,
        tenant: &str,
        pipeline: &str,
        event: VerifiedEvent,
    ) -> BoxFuture<'static, Result<(), HandError>> {
        self.handed
            .lock()
            .unwrap()
            .push((tenant.into(), pipeline.into(), event.event_id));
        Box::pin(async { Ok(()) })
    }

    fn trigger_run(&self, pipeline: &str, tenant: &str) -> Result<(), TriggerError> {
        let key = (pipeline.to_string(), tenant.to_string());
        if !self.pairs.contains(&key) {
            return Err(TriggerError::Unknown {
                pipeline: key.0,
                tenant: key.1,
            });
        }
        let mut live = self.live.lock().unwrap();
        if live.contains(&key) {
            return Err(TriggerError::Busy {
                pipeline: key.0,
                tenant: key.1,
            });
        }
        live.push(key);
        Ok(())
    }

    fn bearer_token(&self) -> Option<Secret> {
        self.token.clone()
    }
}

/// Serves the routes over `host` on 127.0.0.1 (a free port); returns the base URL.
pub async fn serve(host: Arc<FakeHost>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(host);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// Hex HMAC-SHA256 of `"{timestamp}.{body}"`, as the simulator and CXone sign.
pub fn sign(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A request to `url` signed at `timestamp` with `secret`.
pub fn signed_post(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    timestamp: i64,
    body: &str,
) -> reqwest::RequestBuilder {
    let ts = timestamp.to_string();
    client
        .post(url)
        .header("Content-Type", "application/json")
        .header("Nice-Request-Timestamp", &ts)
        .header("X-Nice-Signature", sign(secret, &ts, body))
        .body(body.to_string())
}

/// Waits (at most 10 s) until `done` resolves to true.
pub async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    for _ in 0..1000 {
        if done().await {
            return;
        }
        if start.elapsed() > Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}
