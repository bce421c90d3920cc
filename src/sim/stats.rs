//! Counters behind `GET /_sim/stats`: requests per route and status, tokens issued, 429s,
//! 401s, 5xx, media bytes, cut streams, refused URLs, webhook deliveries.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

/// One counter per observable event; cheap to bump from any task.
#[derive(Debug, Default)]
pub struct Stats {
    routes: Mutex<BTreeMap<String, u64>>,
    statuses: Mutex<BTreeMap<u16, u64>>,
    pub tokens_issued: AtomicU64,
    pub throttled: AtomicU64,
    pub unauthorized: AtomicU64,
    pub server_errors: AtomicU64,
    pub media_bytes: AtomicU64,
    pub media_streams: AtomicU64,
    pub resets: AtomicU64,
    pub truncations: AtomicU64,
    pub urls_refused: AtomicU64,
    pub webhook_deliveries: AtomicU64,
    pub webhook_failures: AtomicU64,
}

/// Adds one to an atomic counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    /// Counts a request to `route` (e.g. `GET /api/v2/recording/{id}`) answered with `status`.
    pub fn record(&self, route: &str, status: u16) {
        if let Ok(mut routes) = self.routes.lock() {
            *routes.entry(route.to_string()).or_default() += 1;
        }
        if let Ok(mut statuses) = self.statuses.lock() {
            *statuses.entry(status).or_default() += 1;
        }
        match status {
            401 => bump(&self.unauthorized),
            429 => bump(&self.throttled),
            500..=599 => bump(&self.server_errors),
            _ => {}
        }
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.clear();
        }
        if let Ok(mut statuses) = self.statuses.lock() {
            statuses.clear();
        }
        for counter in self.counters() {
            counter.1.store(0, Ordering::Relaxed);
        }
    }

    fn counters(&self) -> [(&'static str, &AtomicU64); 11] {
        [
            ("tokens_issued", &self.tokens_issued),
            ("throttled_429", &self.throttled),
            ("unauthorized_401", &self.unauthorized),
            ("server_errors_5xx", &self.server_errors),
            ("media_bytes_served", &self.media_bytes),
            ("media_streams", &self.media_streams),
            ("resets", &self.resets),
            ("truncations", &self.truncations),
            ("urls_refused", &self.urls_refused),
            ("webhook_deliveries", &self.webhook_deliveries),
            ("webhook_failures", &self.webhook_failures),
        ]
    }

    /// The JSON served by `GET /_sim/stats`.
    pub fn to_json(&self) -> Value {
        let routes = self.routes.lock().map(|r| r.clone()).unwrap_or_default();
        let statuses: BTreeMap<String, u64> = self
            .statuses
            .lock()
            .map(|s| s.iter().map(|(k, v)| (k.to_string(), *v)).collect())
            .unwrap_or_default();
        let mut out = json!({ "requests": routes, "statuses": statuses });
        for (name, counter) in self.counters() {
            out[name] = json!(counter.load(Ordering::Relaxed));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_routes_and_status_classes_and_resets() {
        let stats = Stats::default();
        stats.record("GET /a", 200);
        stats.record("GET /a", 429);
        stats.record("POST /b", 503);
        let json = stats.to_json();
        assert_eq!(json["requests"]["GET /a"], 2);
        assert_eq!(json["throttled_429"], 1);
        assert_eq!(json["server_errors_5xx"], 1);
        assert_eq!(json["statuses"]["200"], 1);
        stats.reset();
        assert_eq!(stats.to_json()["throttled_429"], 0);
        assert_eq!(stats.to_json()["requests"], serde_json::json!({}));
    }
}
