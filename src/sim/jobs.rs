//! Asynchronous jobs (archival, export, media download, data extraction): created now,
//! PENDING for the first third of their duration, then running, then COMPLETED or FAILED.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobPhase {
    Pending,
    Running,
    Completed,
    Failed,
}

/// One job: what was asked and when it ends.
#[derive(Debug)]
pub struct Job {
    pub id: String,
    pub kind: &'static str,
    pub request: Value,
    pub created: Instant,
    pub created_unix_ms: i64,
    pub duration: Duration,
    pub fails: bool,
}

impl Job {
    pub fn phase(&self, now: Instant) -> JobPhase {
        let elapsed = now.saturating_duration_since(self.created);
        if elapsed < self.duration / 3 {
            JobPhase::Pending
        } else if elapsed < self.duration {
            JobPhase::Running
        } else if self.fails {
            JobPhase::Failed
        } else {
            JobPhase::Completed
        }
    }

    /// When the job finished (or will), in milliseconds since the epoch.
    pub fn finished_unix_ms(&self) -> i64 {
        self.created_unix_ms + self.duration.as_millis() as i64
    }
}

/// All jobs of a simulator.
#[derive(Debug, Default)]
pub struct JobStore {
    counter: AtomicU64,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
}

impl JobStore {
    /// Creates a job whose id starts with `prefix`.
    pub fn create(
        &self,
        kind: &'static str,
        prefix: &str,
        request: Value,
        duration: Duration,
        fails: bool,
    ) -> Arc<Job> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let job = Arc::new(Job {
            id: format!("{prefix}{n:06}"),
            kind,
            request,
            created: Instant::now(),
            created_unix_ms: chrono::Utc::now().timestamp_millis(),
            duration,
            fails,
        });
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.id.clone(), job.clone());
        job
    }

    /// The job with this id and kind.
    pub fn get(&self, kind: &str, id: &str) -> Option<Arc<Job>> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .filter(|job| job.kind == kind)
            .cloned()
    }

    /// Every job of `kind`, oldest first.
    pub fn all(&self, kind: &str) -> Vec<Arc<Job>> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<Arc<Job>> = jobs.values().filter(|j| j.kind == kind).cloned().collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Jobs of `kind` not yet finished at `now`.
    pub fn active(&self, kind: &str, now: Instant) -> usize {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.values()
            .filter(|job| {
                job.kind == kind && matches!(job.phase(now), JobPhase::Pending | JobPhase::Running)
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_progress_from_pending_to_their_outcome() {
        let store = JobStore::default();
        let ok = store.create("export", "exp-", Value::Null, Duration::from_secs(3), false);
        let bad = store.create("export", "exp-", Value::Null, Duration::from_secs(3), true);
        let t = ok.created;
        assert_eq!(ok.phase(t), JobPhase::Pending);
        assert_eq!(ok.phase(t + Duration::from_secs(2)), JobPhase::Running);
        assert_eq!(ok.phase(t + Duration::from_secs(3)), JobPhase::Completed);
        assert_eq!(
            bad.phase(bad.created + Duration::from_secs(4)),
            JobPhase::Failed
        );
        assert!(store.get("export", &ok.id).is_some());
        assert!(store.get("archival", &ok.id).is_none());
        assert_eq!(store.active("export", t), 2);
        let all: Vec<String> = store.all("export").iter().map(|j| j.id.clone()).collect();
        assert_eq!(all, vec![ok.id.clone(), bad.id.clone()]);
        assert!(store.all("archival").is_empty());
    }
}
