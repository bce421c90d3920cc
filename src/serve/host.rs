//! The daemon as the HTTP routes see it ([`ServeHost`]): status, metrics, webhook events
//! handed to `on_event`, manual runs; and what a start picks up from the ledger
//! (unfinished items, events acknowledged but never handed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::DateTime;
use futures::future::BoxFuture;

use super::daemon::{Inner, Trigger};
use super::http::{HandError, ServeHost, TriggerError};
use super::metrics::Metrics;
use super::schedule::FireKey;
use super::status::{NodeStatus, PipelineStatus, RunCounts, RunningRun, StatusSnapshot};
use super::webhook::{VerifiedEvent, Verifier};
use crate::ledger::{ItemFilter, Ledger};
use crate::runner::summary::Counters;
use crate::secret::Secret;

/// Unfinished states: a start (or the end of a run) resumes a pipeline holding any.
const UNFINISHED: &[&str] = &["pending", "leased", "failed"];

/// The most unhanded events a start hands per pipeline × tenant at once.
const UNHANDED_BATCH: i64 = 10_000;

pub(super) struct Host(pub Arc<Inner>);

impl ServeHost for Host {
    fn status(&self) -> BoxFuture<'_, StatusSnapshot> {
        Box::pin(async move { snapshot(&self.0).await })
    }

    fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    fn metrics_text(&self) -> BoxFuture<'_, String> {
        Box::pin(async move {
            let inner = &self.0;
            let pairs: Vec<(String, String)> = inner
                .slots()
                .keys()
                .map(|k| (k.pipeline.clone(), k.tenant.clone()))
                .collect();
            if let Err(e) = inner.metrics.refresh_items(&inner.ledger, &pairs).await {
                tracing::warn!(error = %e, "reading item counts for /metrics");
            }
            add_api_deltas(inner);
            add_bytes_written(inner);
            inner.metrics.render()
        })
    }

    fn verifier(&self, tenant: &str, pipeline: &str) -> Option<Arc<Verifier>> {
        let key = FireKey::new(pipeline, tenant);
        if !self.0.slots().contains_key(&key) {
            return None;
        }
        let served = self.0.served.read().unwrap_or_else(|e| e.into_inner());
        served.verifiers.get(tenant).cloned()
    }

    fn ledger(&self) -> &Ledger {
        &self.0.ledger
    }

    fn hand_event(
        &self,
        tenant: &str,
        pipeline: &str,
        event: VerifiedEvent,
    ) -> BoxFuture<'static, Result<(), HandError>> {
        let inner = self.0.clone();
        let key = FireKey::new(pipeline, tenant);
        Box::pin(async move {
            let failed = |reason: String| HandError {
                tenant: key.tenant.clone(),
                pipeline: key.pipeline.clone(),
                event_id: event.event_id.clone(),
                reason,
            };
            hand(&inner, &key, &event.event_id, event.json.clone())
                .await
                .map_err(failed)
        })
    }

    fn trigger_run(&self, pipeline: &str, tenant: &str) -> Result<(), TriggerError> {
        self.0
            .launch(&FireKey::new(pipeline, tenant), Trigger::Manual)
    }

    fn bearer_token(&self) -> Option<Secret> {
        let served = self.0.served.read().unwrap_or_else(|e| e.into_inner());
        served.token.clone()
    }
}

/// Gives `event` to the `on_event` of pipeline × tenant on its current generation, then
/// starts (or queues) a run for what it emitted.
async fn hand(
    inner: &Arc<Inner>,
    key: &FireKey,
    event_id: &str,
    event: serde_json::Value,
) -> Result<(), String> {
    let generation = inner
        .slots()
        .get(key)
        .and_then(|s| s.generation.clone())
        .ok_or_else(|| "the pipeline has no script that compiles".to_string())?;
    let request = inner
        .runtime()
        .run_request(
            &key.pipeline,
            &key.tenant,
            &generation,
            inner.ledger.clone(),
            false,
        )
        .map_err(|e| e.to_string())?;
    let outcome = crate::runner::deliver_event(&request, event)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(pipeline = %key.pipeline, tenant = %key.tenant, event_id,
        admitted = outcome.admitted, duplicates = outcome.duplicates, "webhook event handed");
    if outcome.admitted > 0 {
        let _ = inner.launch(key, Trigger::Event);
    }
    Ok(())
}

/// Adds to the metrics what each tenant's API client did, per endpoint family, since the
/// last scrape.
fn add_api_deltas(inner: &Inner) {
    let runtime = inner.runtime();
    let tenants: BTreeSet<String> = inner.slots().keys().map(|k| k.tenant.clone()).collect();
    let mut seen = inner.api_seen.lock().unwrap_or_else(|e| e.into_inner());
    for tenant in tenants {
        let Ok(Some(api)) = runtime.api(&tenant) else {
            continue;
        };
        for (family, now) in api.family_stats() {
            let key = (tenant.clone(), family);
            let before = seen.get(&key).copied().unwrap_or_default();
            inner.metrics.add_api(&tenant, &key.1, &now.since(&before));
            seen.insert(key, now);
        }
    }
}

/// Adds to the metrics the bytes each running run committed since the last scrape (a
/// finished run's last bytes are added when it ends).
fn add_bytes_written(inner: &Inner) {
    let mut slots = inner.slots();
    for (key, slot) in slots.iter_mut() {
        if let Some(running) = slot.running.as_mut() {
            let bytes = running.new_bytes();
            inner
                .metrics
                .bytes_written(&key.pipeline, &key.tenant, bytes);
        }
    }
}

/// The status of every pipeline × tenant.
async fn snapshot(inner: &Arc<Inner>) -> StatusSnapshot {
    let next: BTreeMap<FireKey, _> = inner.scheduler.next_fires().into_iter().collect();
    let config_error = inner
        .config_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut pipelines: Vec<PipelineStatus> = inner
        .slots()
        .iter()
        .map(|(key, slot)| PipelineStatus {
            pipeline: key.pipeline.clone(),
            tenant: key.tenant.clone(),
            script_hash: slot.generation.as_ref().map(|g| g.hash.clone()),
            reload_error: slot.reload_error.clone().or_else(|| config_error.clone()),
            next_fire: next.get(key).copied(),
            running: slot.running.as_ref().map(|r| RunningRun {
                run_id: String::new(),
                started_at: r.started_at,
                counts: live_counts(&r.counters),
            }),
            last_run: slot.last.clone(),
        })
        .collect();
    // The id of a run in progress, from the ledger.
    for p in pipelines.iter_mut() {
        let Some(running) = p.running.as_mut() else {
            continue;
        };
        if let Ok(Some(run_id)) = inner.ledger.running_run(&p.pipeline, &p.tenant).await {
            running.run_id = run_id;
        }
    }
    let clustered = inner
        .served
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .cluster
        .is_some();
    let nodes = if clustered {
        node_statuses(inner).await
    } else {
        Vec::new()
    };
    StatusSnapshot {
        started_at: Some(inner.started_at),
        version: env!("CARGO_PKG_VERSION").to_string(),
        pipelines,
        node: clustered.then(|| inner.node.clone()),
        draining: inner.draining.load(std::sync::atomic::Ordering::Relaxed),
        nodes,
    }
}

/// The nodes of the ledger's registry, for `/status`.
async fn node_statuses(inner: &Arc<Inner>) -> Vec<NodeStatus> {
    let rows = match inner.ledger.nodes().await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "listing the cluster's nodes");
            return Vec::new();
        }
    };
    let now = crate::ledger::now_ms();
    rows.into_iter()
        .map(|n| NodeStatus {
            heartbeat_age_secs: (now - n.heartbeat_at).max(0) as f64 / 1000.0,
            started_at: DateTime::from_timestamp_millis(n.started_at),
            heartbeat_at: DateTime::from_timestamp_millis(n.heartbeat_at),
            draining: n.draining_at.is_some(),
            node: n.node,
            listen: n.listen,
            version: n.version,
            leases: n.leases,
            runs: n.runs,
        })
        .collect()
}

/// What a run in progress has done so far.
fn live_counts(c: &Counters) -> RunCounts {
    let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    RunCounts {
        done: n(&c.done),
        skipped: n(&c.skipped),
        deferred: n(&c.deferred),
        quarantined: n(&c.quarantined),
        failed: n(&c.failed),
    }
}

/// What a start picks up: events acknowledged but never handed (a crash between the ack
/// and `on_event`), and pipelines whose items a previous process left unfinished.
pub(super) async fn resume(inner: &Arc<Inner>) {
    let keys: Vec<FireKey> = inner.slots().keys().cloned().collect();
    for key in keys {
        match inner
            .ledger
            .unhanded_events(&key.tenant, &key.pipeline, UNHANDED_BATCH)
            .await
        {
            Ok(events) => {
                for e in events {
                    let json = serde_json::from_str(&e.body).unwrap_or(serde_json::Value::Null);
                    match hand(inner, &key, &e.event_id, json).await {
                        Ok(()) => {
                            if let Err(err) = inner
                                .ledger
                                .mark_event_handed(&key.tenant, &key.pipeline, &e.event_id)
                                .await
                            {
                                tracing::warn!(error = %err, "marking a resumed event handed");
                            }
                        }
                        Err(err) => tracing::warn!(pipeline = %key.pipeline, tenant = %key.tenant,
                            event_id = %e.event_id, error = %err, "webhook event stays unhanded"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing unhanded webhook events"),
        }
        let filter = ItemFilter {
            pipeline: Some(key.pipeline.clone()),
            tenant: Some(key.tenant.clone()),
            ..ItemFilter::default()
        };
        let unfinished = match inner.ledger.count_items(&filter).await {
            Ok(counts) => counts
                .iter()
                .any(|(state, n)| *n > 0 && UNFINISHED.contains(&state.as_str())),
            Err(e) => {
                tracing::warn!(error = %e, "reading unfinished items");
                false
            }
        };
        if unfinished {
            tracing::info!(pipeline = %key.pipeline, tenant = %key.tenant,
                "unfinished items from an earlier process; resuming");
            let _ = inner.launch(&key, Trigger::Resume);
        }
        if let Ok(Some(due)) = inner.ledger.next_due(&key.pipeline, &key.tenant).await {
            inner.wake_at_ms(&key, due);
        }
    }
}
