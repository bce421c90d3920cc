//! Shared state of one running simulator: dataset, credentials, fault knobs, counters,
//! token store, rate limiter, URL signer, digest cache and the clock since start.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::api_error::ApiError;
use super::config::{Faults, SimConfig};
use super::credentials::SimCredentials;
use super::dataset::Dataset;
use super::hashes::DigestCache;
use super::jobs::JobStore;
use super::limiter::Limiter;
use super::presign::UrlSigner;
use super::rng::{derive, unit};
use super::stats::Stats;
use super::tokens::TokenStore;
use super::webhooks::WebhookRegistry;

/// State shared by every handler.
#[derive(Debug)]
pub struct SimState {
    pub dataset: Dataset,
    pub credentials: SimCredentials,
    pub stats: Stats,
    pub tokens: TokenStore,
    pub limiter: Limiter,
    pub signer: UrlSigner,
    pub digests: DigestCache,
    pub jobs: JobStore,
    pub webhooks: WebhookRegistry,
    /// Client for webhook deliveries.
    pub http: reqwest::Client,
    /// Retention days set through `PUT /api/v2/recordings/{id}/retention`, by index.
    pub retention: Mutex<HashMap<usize, u32>>,
    /// Retention PUTs answered per recording index (for `/_sim/truth/retention`).
    pub retention_calls: Mutex<HashMap<usize, RetentionCalls>>,
    /// Custom-field values set on interactions: (interaction index, field id) → value.
    pub custom_fields: Mutex<HashMap<(usize, String), String>>,
    /// When the last data-extraction job was created.
    pub last_extraction: Mutex<Option<Instant>>,
    /// Bodies received by the seed-001 legal-hold endpoint, in arrival order.
    pub legal_hold: Mutex<Vec<serde_json::Value>>,
    faults: RwLock<Arc<Faults>>,
    started: Instant,
    /// How far `POST /_sim/clock/advance` moved the simulator's clock ahead (ms).
    advanced_ms: AtomicU64,
    rolls: AtomicU64,
    stopped: AtomicBool,
    base_url: OnceLock<String>,
}

impl SimState {
    pub fn new(config: &SimConfig) -> Self {
        let credentials = SimCredentials::from_seed(config.seed);
        SimState {
            dataset: Dataset::new(config),
            signer: UrlSigner::new(
                format!(
                    "{:016x}{:016x}",
                    derive(config.seed, 0, 301),
                    derive(config.seed, 1, 301)
                )
                .as_bytes(),
            ),
            credentials,
            stats: Stats::default(),
            tokens: TokenStore::new(config.seed),
            limiter: Limiter::default(),
            digests: DigestCache::default(),
            jobs: JobStore::default(),
            webhooks: WebhookRegistry::default(),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_default(),
            retention: Mutex::default(),
            retention_calls: Mutex::default(),
            custom_fields: Mutex::default(),
            last_extraction: Mutex::default(),
            legal_hold: Mutex::default(),
            faults: RwLock::new(Arc::new(config.faults.clone())),
            started: Instant::now(),
            advanced_ms: AtomicU64::new(0),
            rolls: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            base_url: OnceLock::new(),
        }
    }

    /// The current fault knobs.
    pub fn faults(&self) -> Arc<Faults> {
        self.faults
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the fault knobs (rate-limit buckets start afresh).
    pub fn set_faults(&self, faults: Faults) {
        *self.faults.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(faults);
        self.limiter.reset();
    }

    /// Time since the simulator started, plus however far its clock was advanced.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed() + Duration::from_millis(self.advanced_ms.load(Ordering::Relaxed))
    }

    /// Moves the simulator's clock ahead by `by` (e.g. so `Processing` recordings become
    /// ready in a test without waiting).
    pub fn advance_clock(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.advanced_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// A deterministic sequence of draws in `[0, 1)`; true with probability `rate`.
    pub fn roll(&self, rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        let n = self.rolls.fetch_add(1, Ordering::Relaxed);
        unit(derive(self.dataset.seed(), n, 401)) < rate
    }

    /// A draw in `[0, 1)` from the same sequence.
    pub fn draw(&self) -> f64 {
        let n = self.rolls.fetch_add(1, Ordering::Relaxed);
        unit(derive(self.dataset.seed(), n, 401))
    }

    /// Marks the simulator stopped: background work (webhook deliveries) stops sending.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    pub fn set_base_url(&self, url: String) {
        let _ = self.base_url.set(url);
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        self.base_url
            .get()
            .map(String::as_str)
            .unwrap_or("http://127.0.0.1")
    }
}

/// Retention PUTs one recording received: applied, or refused under legal hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionCalls {
    pub applied: u32,
    pub refused: u32,
}

/// Extractor that admits a request only with a valid, unexpired bearer token.
pub struct Authed;

impl FromRequestParts<Arc<SimState>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<SimState>,
    ) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        state
            .tokens
            .check(value, Instant::now())
            .map(|()| Authed)
            .map_err(ApiError::Unauthorized)
    }
}
