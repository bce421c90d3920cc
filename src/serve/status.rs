//! The node's status as data: each pipeline × tenant with its script hash, last reload
//! error, next fire, running run and last run. Served as JSON at `/status` and rendered as
//! HTML by [`super::page`]; the daemon builds it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Everything `/status` reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusSnapshot {
    /// When this node started.
    pub started_at: Option<DateTime<Utc>>,
    /// The cxpipe version serving.
    pub version: String,
    pub pipelines: Vec<PipelineStatus>,
    /// This node's name in the cluster (`host:pid`), when it runs as one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// True once `cxpipe node drain` marked this node: it starts no new work.
    #[serde(default)]
    pub draining: bool,
    /// Every node on the ledger, with its heartbeat and the leases it holds (a cluster).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeStatus>,
}

/// A node of the cluster as the ledger's registry knows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: String,
    pub listen: Option<String>,
    pub version: String,
    pub started_at: Option<DateTime<Utc>>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// Seconds since its last heartbeat.
    pub heartbeat_age_secs: f64,
    pub draining: bool,
    /// Items it holds leases on now.
    pub leases: i64,
    /// Its runs in progress (leading or helping).
    pub runs: i64,
}

/// One pipeline × tenant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineStatus {
    pub pipeline: String,
    pub tenant: String,
    /// The hash of the generation serving new items.
    pub script_hash: Option<String>,
    /// The last failed reload, `file:line:col: message`, until a reload succeeds.
    pub reload_error: Option<String>,
    pub next_fire: Option<DateTime<Utc>>,
    pub running: Option<RunningRun>,
    pub last_run: Option<LastRun>,
}

/// A run in progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunningRun {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub counts: RunCounts,
}

/// The summary of the last finished run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastRun {
    pub run_id: String,
    /// `completed`, `failed`, `interrupted`, ...
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    pub counts: RunCounts,
    /// Why the run failed, when it did (the summary's `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Items of a run by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunCounts {
    pub done: u64,
    pub skipped: u64,
    pub deferred: u64,
    pub failed: u64,
    pub quarantined: u64,
}

impl RunCounts {
    /// `(label, count)` in display order.
    pub fn labelled(&self) -> [(&'static str, u64); 5] {
        [
            ("done", self.done),
            ("skipped", self.skipped),
            ("deferred", self.deferred),
            ("failed", self.failed),
            ("quarantined", self.quarantined),
        ]
    }
}
