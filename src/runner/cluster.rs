//! Cluster runs (docs/SCALE.md): several `cxpipe serve` nodes on one ledger share a
//! pipeline × tenant's items. The node whose run is the pipeline's running run *leads*:
//! its `discover` admits items unowned. Every node's run, the lead's included, *claims*
//! them from the ledger in small batches with a lease time, renewed by the run's
//! heartbeat; a node that dies stops renewing, and once its leases expire the other nodes
//! claim its items. A node that finds the pipeline led elsewhere *helps*: it claims and
//! processes items but does not discover, finish or commit checkpoints.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use rhai::Dynamic;

use super::admission::{Queues, wait_until};
use super::shared::RunShared;
use super::stop::StopSignal;
use super::summary::Counters;
use super::worker::WorkItem;
use crate::ledger::cluster::Claim;
use crate::ledger::{LedgerError, now_ms};

/// How a cluster run claims and holds items.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// How long a claimed item stays leased without a renewal; a run that stops
    /// renewing (its node died) has its items taken over this long after its last
    /// renewal. Also how long a silent leading run counts as alive.
    pub lease: Duration,
    /// How often a run renews its leases and proves it is alive.
    pub heartbeat: Duration,
    /// Items claimed per ledger round trip, at most.
    pub claim_batch: usize,
    /// A helper run with nothing claimed and nothing in hand for this long ends (the
    /// node starts another when claimable items appear).
    pub idle: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            claim_batch: 16,
            idle: Duration::from_secs(2),
        }
    }
}

/// What part a run plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The only process on the pipeline × tenant: admission leases what it admits.
    Solo,
    /// The cluster's running run: discovers, claims, finishes.
    Lead,
    /// Claims and processes the items a run on another node leads.
    Helper,
}

/// How long an empty claim waits before the next.
const POLL: Duration = Duration::from_millis(200);
/// How often a run with its hands full looks again for room (no ledger call).
const ROOM_CHECK: Duration = Duration::from_millis(10);

/// Claims items for this run while it has room for a batch of them (twice its
/// concurrency in hand; a full run looks again every few milliseconds, an empty claim
/// waits [`POLL`]),
/// and queues them. Returns when the run's part is over: for the lead, once its
/// admission ended, it holds nothing and the ledger has no unfinished due item left; for
/// a helper, once it held nothing and claimed nothing for `opts.idle`. Returns at once
/// when the run is halted.
#[allow(clippy::too_many_arguments)]
pub async fn claim_loop(
    shared: Arc<RunShared>,
    opts: ClusterOptions,
    role: Role,
    queues: Queues,
    counters: Arc<Counters>,
    concurrency: usize,
    defer_max_wait: Duration,
    admission_done: tokio_util::sync::CancellationToken,
    halt: StopSignal,
) -> Result<(), LedgerError> {
    let (ledger, p, t) = (&shared.ledger, &*shared.pipeline, &*shared.tenant);
    let room_for = (concurrency.max(1) * 2) as u64;
    // Claim once this much room is free (a batch's worth, at most half the hand), so a
    // busy run makes one ledger round trip per batch, not one per finished item; the
    // other half keeps its workers busy meanwhile.
    let batch = (opts.claim_batch.max(1) as u64).min(room_for / 2).max(1);
    let mut idle_since = Instant::now();
    while !halt.is_stopped() {
        let held = counters.outstanding.load(Relaxed);
        if room_for - held.min(room_for) >= batch || held == 0 {
            let now = now_ms();
            let claim = Claim {
                run_id: &shared.run_id,
                lease_until: now + opts.lease.as_millis() as i64,
                due_before: now + defer_max_wait.as_millis() as i64,
                alive_since: now - opts.lease.as_millis() as i64,
                limit: (room_for - held).min(opts.claim_batch.max(1) as u64) as i64,
            };
            let batch = ledger.claim(p, t, claim).await?;
            if !batch.is_empty() {
                idle_since = Instant::now();
                for item in batch {
                    let json: serde_json::Value =
                        serde_json::from_str(&item.payload).unwrap_or(serde_json::Value::Null);
                    counters.claimed.fetch_add(1, Relaxed);
                    counters.outstanding.fetch_add(1, Relaxed);
                    let w = WorkItem {
                        key: item.key,
                        value: rhai::serde::to_dynamic(json).unwrap_or(Dynamic::UNIT),
                        attempts: item.attempts,
                        defers: 0,
                    };
                    if !queues.queue(w, wait_until(item.next_at), &halt).await {
                        return Ok(());
                    }
                }
                continue;
            }
        }
        if held > 0 && room_for - held.min(room_for) < batch {
            idle_since = Instant::now();
            tokio::select! {
                _ = tokio::time::sleep(ROOM_CHECK) => {}
                _ = halt.stopped() => {}
            }
            continue;
        }
        if held > 0 {
            idle_since = Instant::now();
        } else {
            let over = match role {
                Role::Lead => {
                    admission_done.is_cancelled() && {
                        let due_before = now_ms() + defer_max_wait.as_millis() as i64;
                        ledger.backlog(p, t, due_before).await? == 0
                    }
                }
                Role::Helper | Role::Solo => idle_since.elapsed() >= opts.idle,
            };
            if over {
                return Ok(());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = halt.stopped() => {}
        }
    }
    Ok(())
}
