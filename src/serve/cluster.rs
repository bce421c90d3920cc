//! A `cxpipe serve` node among several on one ledger (docs/SCALE.md). Every heartbeat (at
//! most every second) it registers itself (`/status` lists the nodes), returns expired
//! leases, and starts a run of each pipeline × tenant that has claimable items and no run
//! here (the run helps the node that leads it, or leads it when no live node does: a dead
//! leader's run is taken over). `cxpipe node drain` marks a node in the ledger; the node then starts nothing,
//! stops its schedules, and asks its runs to stop taking items (items in flight finish
//! within their grace, the rest go back to the ledger for the other nodes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::daemon::{Inner, Trigger};
use super::schedule::FireKey;
use crate::ledger::now_ms;
use crate::runner::cluster::ClusterOptions;

/// A node silent this long (it died without leaving) is dropped from the registry; until
/// then `/status` shows it with its heartbeat age.
const NODE_FORGOTTEN_AFTER_MS: i64 = 24 * 3600 * 1000;

/// How often a node looks for work waiting in the ledger at most (its heartbeat when
/// that is shorter): a helper joins a new run within this.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Starts the node's loop; it ends at shutdown, removing the node from the registry.
pub(super) fn spawn(inner: &Arc<Inner>, addr: SocketAddr, opts: ClusterOptions) {
    let inner = inner.clone();
    let tasks = inner.tasks.clone();
    tasks.spawn(async move {
        tracing::info!(node = %inner.node, lease = ?opts.lease, "serving as a cluster node");
        loop {
            if let Err(e) = tick(&inner, &addr.to_string(), &opts).await {
                tracing::warn!(node = %inner.node, error = %e, "cluster heartbeat failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(opts.heartbeat.min(WATCH_EVERY)) => {}
                _ = inner.shutdown.cancelled() => break,
            }
        }
        if let Err(e) = inner.ledger.node_gone(&inner.node).await {
            tracing::warn!(node = %inner.node, error = %e, "leaving the node registry");
        }
    });
}

async fn tick(
    inner: &Arc<Inner>,
    listen: &str,
    opts: &ClusterOptions,
) -> Result<(), crate::ledger::LedgerError> {
    let ledger = &inner.ledger;
    ledger.node_heartbeat(&inner.node, listen).await?;
    if !inner.draining.load(Ordering::Relaxed) && ledger.node_draining(&inner.node).await? {
        drain(inner).await;
    }
    ledger
        .prune_nodes(now_ms() - NODE_FORGOTTEN_AFTER_MS)
        .await?;
    let reaped = ledger.reap_expired_leases().await?;
    if reaped > 0 {
        tracing::warn!(
            items = reaped,
            "leases expired (a node stopped renewing them); the items are claimable again"
        );
    }
    if inner.draining.load(Ordering::Relaxed) || inner.shutdown.is_cancelled() {
        return Ok(());
    }
    let idle: Vec<FireKey> = inner
        .slots()
        .iter()
        .filter(|(_, s)| s.running.is_none() && s.enabled && s.generation.is_some())
        .map(|(k, _)| k.clone())
        .collect();
    let now = now_ms();
    let alive_since = now - opts.lease.as_millis() as i64;
    for key in idle {
        let (p, t) = (&key.pipeline, &key.tenant);
        let claimable = ledger.claimable(p, t, now, alive_since).await?;
        let dead_lead = ledger
            .lead_run(p, t)
            .await?
            .is_some_and(|(_, beat)| beat < alive_since);
        if claimable > 0 || dead_lead {
            tracing::info!(pipeline = %p, tenant = %t, claimable, dead_lead,
                "work waits in the ledger; starting a run to take it");
            let _ = inner.launch(&key, Trigger::Resume);
        }
    }
    Ok(())
}

/// Stops taking new work: no schedule fires here, no new runs, and the runs in progress
/// stop taking items (what they hold goes back to the ledger).
async fn drain(inner: &Arc<Inner>) {
    inner.draining.store(true, Ordering::Relaxed);
    tracing::warn!(node = %inner.node, "draining: no new work starts on this node");
    if let Err(e) = inner.scheduler.set_entries(Vec::new()).await {
        tracing::error!(error = %e, "stopping the schedules of a draining node");
    }
    for slot in inner.slots().values() {
        if let Some(r) = &slot.running {
            r.stop.stop("the node is draining".to_string());
        }
    }
}
