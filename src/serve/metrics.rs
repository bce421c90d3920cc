//! The daemon's Prometheus metrics (`cxpipe_` prefix) on `prometheus-client`: items by
//! state (read from the ledger), retries, API traffic per tenant and family, bytes, run and
//! item durations, reloads and webhook outcomes. Recording and rendering only; the daemon
//! decides when to record.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::ApiStats;
use crate::ledger::{ItemFilter, ItemState, Ledger, LedgerError};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ItemLabels {
    pipeline: String,
    tenant: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabels {
    pipeline: String,
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    tenant: String,
    family: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    pipeline: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    tenant: String,
    pipeline: String,
    outcome: String,
}

fn run_histogram() -> Histogram {
    // 0.5 s .. about 2.3 h
    Histogram::new(exponential_buckets(0.5, 2.0, 15))
}

fn item_histogram() -> Histogram {
    // 10 ms .. about 5.5 min
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

/// Every metric of a `cxpipe serve` node. Cheap to share (`Arc`); all methods take `&self`.
pub struct Metrics {
    registry: Registry,
    items: Family<ItemLabels, Gauge>,
    item_retries: Family<PipelineLabels, Counter>,
    bytes: Family<PipelineLabels, Counter>,
    api_requests: Family<ApiLabels, Counter>,
    api_retries: Family<ApiLabels, Counter>,
    api_throttled: Family<ApiLabels, Counter>,
    token_requests: Family<ApiLabels, Counter>,
    token_refreshes_after_401: Family<ApiLabels, Counter>,
    run_duration: Family<PipelineLabels, Histogram, fn() -> Histogram>,
    item_duration: Family<PipelineLabels, Histogram, fn() -> Histogram>,
    reloads: Family<ReloadLabels, Counter>,
    webhooks: Family<WebhookLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn pl(pipeline: &str, tenant: &str) -> PipelineLabels {
    PipelineLabels {
        pipeline: pipeline.into(),
        tenant: tenant.into(),
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cxpipe");
        let m = Metrics {
            items: Family::default(),
            item_retries: Family::default(),
            bytes: Family::default(),
            api_requests: Family::default(),
            api_retries: Family::default(),
            api_throttled: Family::default(),
            token_requests: Family::default(),
            token_refreshes_after_401: Family::default(),
            run_duration: Family::new_with_constructor(run_histogram as fn() -> Histogram),
            item_duration: Family::new_with_constructor(item_histogram as fn() -> Histogram),
            reloads: Family::default(),
            webhooks: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("items", "Items in the ledger by state", m.items.clone());
        r.register(
            "item_retries",
            "Item attempts retried",
            m.item_retries.clone(),
        );
        r.register("bytes_written", "Bytes written to stores", m.bytes.clone());
        r.register("api_requests", "API requests sent", m.api_requests.clone());
        r.register("api_retries", "API requests retried", m.api_retries.clone());
        r.register("api_throttled", "API 429 answers", m.api_throttled.clone());
        r.register(
            "token_requests",
            "Token requests made",
            m.token_requests.clone(),
        );
        r.register(
            "token_refreshes_after_401",
            "Token refreshes after a 401 answer",
            m.token_refreshes_after_401.clone(),
        );
        r.register(
            "run_duration_seconds",
            "Duration of finished runs",
            m.run_duration.clone(),
        );
        r.register(
            "item_duration_seconds",
            "Duration of processed items",
            m.item_duration.clone(),
        );
        r.register(
            "reloads",
            "Script and config reloads by outcome",
            m.reloads.clone(),
        );
        r.register(
            "webhook_requests",
            "Webhook requests by outcome",
            m.webhooks.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Sets the item gauges of pipeline × tenant to `counts` (states absent are 0).
    pub fn set_items(&self, pipeline: &str, tenant: &str, counts: &[(ItemState, i64)]) {
        for state in ItemState::ALL {
            let n = counts
                .iter()
                .filter(|(s, _)| *s == state)
                .map(|(_, n)| *n)
                .sum();
            self.items
                .get_or_create(&ItemLabels {
                    pipeline: pipeline.into(),
                    tenant: tenant.into(),
                    state: state.as_str().into(),
                })
                .set(n);
        }
    }

    /// Reads the item counts of each pipeline × tenant from the ledger into the gauges.
    pub async fn refresh_items(
        &self,
        ledger: &Ledger,
        pairs: &[(String, String)],
    ) -> Result<(), LedgerError> {
        for (pipeline, tenant) in pairs {
            let filter = ItemFilter {
                pipeline: Some(pipeline.clone()),
                tenant: Some(tenant.clone()),
                ..ItemFilter::default()
            };
            let counts = ledger
                .count_items(&filter)
                .await?
                .into_iter()
                .map(|(s, n)| Ok((s.parse::<ItemState>()?, n)))
                .collect::<Result<Vec<_>, LedgerError>>()?;
            self.set_items(pipeline, tenant, &counts);
        }
        Ok(())
    }

    pub fn item_retried(&self, pipeline: &str, tenant: &str, n: u64) {
        self.item_retries
            .get_or_create(&pl(pipeline, tenant))
            .inc_by(n);
    }

    pub fn bytes_written(&self, pipeline: &str, tenant: &str, n: u64) {
        self.bytes.get_or_create(&pl(pipeline, tenant)).inc_by(n);
    }

    /// Adds what a tenant's API client did for an API family since the last call.
    pub fn add_api(&self, tenant: &str, family: &str, delta: &ApiStats) {
        let labels = ApiLabels {
            tenant: tenant.into(),
            family: family.into(),
        };
        self.api_requests
            .get_or_create(&labels)
            .inc_by(delta.requests);
        self.api_retries
            .get_or_create(&labels)
            .inc_by(delta.retries);
        self.api_throttled
            .get_or_create(&labels)
            .inc_by(delta.throttled);
        self.token_requests
            .get_or_create(&labels)
            .inc_by(delta.token_requests);
        self.token_refreshes_after_401
            .get_or_create(&labels)
            .inc_by(delta.refreshed_after_401);
    }

    pub fn observe_run(&self, pipeline: &str, tenant: &str, seconds: f64) {
        self.run_duration
            .get_or_create(&pl(pipeline, tenant))
            .observe(seconds);
    }

    pub fn observe_item(&self, pipeline: &str, tenant: &str, seconds: f64) {
        self.item_duration
            .get_or_create(&pl(pipeline, tenant))
            .observe(seconds);
    }

    pub fn reload(&self, pipeline: &str, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.reloads
            .get_or_create(&ReloadLabels {
                pipeline: pipeline.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts a webhook request's outcome (`accepted` or a rejection's label).
    pub fn webhook(&self, tenant: &str, pipeline: &str, outcome: &str) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                tenant: tenant.into(),
                pipeline: pipeline.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Every metric in the text exposition format (OpenMetrics text, which Prometheus'
    /// text parser reads: counters end in `_total`, the text ends with `# EOF`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_the_cxpipe_prefix_and_labels() {
        let m = Metrics::new();
        m.set_items(
            "dl",
            "acme",
            &[(ItemState::Done, 7), (ItemState::Failed, 2)],
        );
        m.webhook("acme", "dl", "accepted");
        m.webhook("acme", "dl", "accepted");
        m.reload("dl", false);
        m.observe_run("dl", "acme", 3.0);
        m.add_api(
            "acme",
            "media",
            &ApiStats {
                requests: 10,
                throttled: 1,
                ..ApiStats::default()
            },
        );
        let text = m.render();
        for line in [
            r#"cxpipe_items{pipeline="dl",tenant="acme",state="done"} 7"#,
            r#"cxpipe_items{pipeline="dl",tenant="acme",state="pending"} 0"#,
            r#"cxpipe_webhook_requests_total{tenant="acme",pipeline="dl",outcome="accepted"} 2"#,
            r#"cxpipe_reloads_total{pipeline="dl",outcome="failed"} 1"#,
            r#"cxpipe_api_requests_total{tenant="acme",family="media"} 10"#,
            r#"cxpipe_api_throttled_total{tenant="acme",family="media"} 1"#,
            r#"cxpipe_run_duration_seconds_count{pipeline="dl",tenant="acme"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }

    #[tokio::test]
    async fn item_gauges_follow_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open_dir(dir.path()).await.unwrap();
        let items: Vec<_> = (0..3)
            .map(|i| crate::ledger::AdmitItem {
                key: format!("k{i}"),
                payload: "{}".into(),
            })
            .collect();
        ledger
            .admit("dl", "acme", "run-1", "hash", i64::MAX, &items)
            .await
            .unwrap();
        let m = Metrics::new();
        m.refresh_items(&ledger, &[("dl".into(), "acme".into())])
            .await
            .unwrap();
        let text = m.render();
        let line = r#"cxpipe_items{pipeline="dl",tenant="acme",state="done"} 0"#;
        assert!(text.lines().any(|l| l == line), "{text}");
        let admitted: i64 = text
            .lines()
            .filter(|l| l.starts_with(r#"cxpipe_items{pipeline="dl",tenant="acme""#))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
            .sum();
        assert_eq!(admitted, 3, "{text}");
    }
}
