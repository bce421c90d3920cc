//! Runs, checkpoints, key-value state and the audit hash chain.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::backend::{BeginWrite, TxLock, TxLocks, with_pool};
use super::items::ApplyUpdates;
use super::{DbContext, ItemUpdate, Ledger, LedgerError, now_ms};

/// One audit event as stored: `hash = SHA-256(prev_hash ‖ canonical JSON of the entry)`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: i64,
    pub pipeline: String,
    pub tenant: String,
    pub run_id: String,
    pub kind: String,
    pub data: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of an audit entry given the previous hash. serde_json maps are ordered by key,
/// so `data` serialises canonically.
pub fn audit_hash(prev_hash: &str, seq: i64, at: i64, fields: [&str; 4], data: &str) -> String {
    let canonical = serde_json::json!({
        "seq": seq, "at": at, "pipeline": fields[0], "tenant": fields[1],
        "run_id": fields[2], "kind": fields[3], "data": data,
    });
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(canonical.to_string().as_bytes());
    hex::encode(h.finalize())
}

/// `host:pid` of this process, recorded with each run it starts.
pub(super) fn process_owner() -> String {
    format!("{}:{}", host_name(), std::process::id())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}

/// True when `owner` (`host:pid`) is a process on this host that no longer exists (Linux;
/// elsewhere only the heartbeat decides).
fn owner_is_dead(owner: &str) -> bool {
    let Some((host, pid)) = owner.rsplit_once(':') else {
        return false;
    };
    let proc_root = std::path::Path::new("/proc/self");
    host == host_name()
        && proc_root.exists()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// An audit event waiting to be chained: pipeline, tenant, run id, kind, data (JSON).
pub type AuditEvent = (String, String, String, String, String);

/// Appending to the audit chain inside the caller's write transaction.
pub(crate) trait AppendAudit {
    /// Chains `events` after the current head. The chain lock ([`TxLock::AuditChain`]) is
    /// held from reading the head to the commit, so two writers (two processes, or two
    /// nodes on one PostgreSQL) never link after the same head: the chain cannot fork.
    async fn append_audit_events(&mut self, events: &[AuditEvent]) -> Result<(), LedgerError>;
}

macro_rules! impl_append_audit {
    ($($conn:ty),*) => {$(
        impl AppendAudit for $conn {
            async fn append_audit_events(
                &mut self,
                events: &[AuditEvent],
            ) -> Result<(), LedgerError> {
                if events.is_empty() {
                    return Ok(());
                }
                self.lock(TxLock::AuditChain).await?;
                let last = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
                    .fetch_optional(&mut *self)
                    .await
                    .doing(|| "reading audit head".into())?;
                let (mut seq, mut prev) = last
                    .map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1)))
                    .unwrap_or((0, String::new()));
                for (pipeline, tenant, run_id, kind, data) in events {
                    seq += 1;
                    let at = now_ms();
                    let hash = audit_hash(&prev, seq, at, [pipeline, tenant, run_id, kind], data);
                    sqlx::query(
                        "INSERT INTO audit (seq, at, pipeline, tenant, run_id, kind, data, \
                         prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind(seq)
                    .bind(at)
                    .bind(pipeline)
                    .bind(tenant)
                    .bind(run_id)
                    .bind(kind)
                    .bind(data)
                    .bind(&prev)
                    .bind(&hash)
                    .execute(&mut *self)
                    .await
                    .doing(|| format!("appending audit event {kind}"))?;
                    prev = hash;
                }
                Ok(())
            }
        }
    )*};
}
impl_append_audit!(sqlx::SqliteConnection, sqlx::PgConnection);

impl Ledger {
    /// Records the start of a run, refusing while another run of the same pipeline × tenant
    /// is alive (heartbeat newer than `stale_ms`); a run whose heartbeat is older (its process
    /// was killed) is marked `abandoned` and its items are taken over.
    pub async fn start_run(
        &self,
        run_id: &str,
        pipeline: &str,
        tenant: &str,
        script_hash: &str,
        stale_ms: i64,
    ) -> Result<(), LedgerError> {
        let now = now_ms();
        let me = process_owner();
        with_pool!(&self.pool, |pool| {
            let mut tx = pool.begin_write("starting run claim").await?;
            let running = sqlx::query(
                "SELECT run_id, COALESCE(heartbeat_at, started_at), owner FROM runs \
                 WHERE pipeline = $1 AND tenant = $2 AND status = 'running'",
            )
            .bind(pipeline)
            .bind(tenant)
            .fetch_all(&mut *tx)
            .await
            .doing(|| format!("checking runs of {pipeline}/{tenant}"))?;
            for row in &running {
                let (other, beat, owner): (String, i64, Option<String>) =
                    (row.get(0), row.get(1), row.get(2));
                if beat < now - stale_ms || owner.as_deref().is_some_and(owner_is_dead) {
                    sqlx::query(
                        "UPDATE runs SET status = 'abandoned', finished_at = $2 WHERE run_id = $1",
                    )
                    .bind(&other)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .doing(|| format!("retiring run {other}"))?;
                }
            }
            let live = sqlx::query(
                "SELECT run_id FROM runs WHERE pipeline = $1 AND tenant = $2 AND status = 'running'",
            )
            .bind(pipeline)
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await
            .doing(|| format!("checking runs of {pipeline}/{tenant}"))?;
            let busy = |other: String| LedgerError::Busy {
                pipeline: pipeline.into(),
                tenant: tenant.into(),
                run_id: other,
                stale_secs: stale_ms / 1000,
            };
            if let Some(row) = live {
                return Err(busy(row.get(0)));
            }
            let inserted = sqlx::query(
                "INSERT INTO runs (run_id, pipeline, tenant, script_hash, started_at, heartbeat_at, owner, status) \
                 VALUES ($1, $2, $3, $4, $5, $5, $6, 'running')",
            )
            .bind(run_id)
            .bind(pipeline)
            .bind(tenant)
            .bind(script_hash)
            .bind(now)
            .bind(&me)
            .execute(&mut *tx)
            .await;
            match inserted {
                // The unique index on running runs: another process claimed it first.
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    return Err(busy("unknown".into()));
                }
                other => other.doing(|| format!("recording start of run {run_id}"))?,
            };
            tx.commit()
                .await
                .doing(|| format!("committing start of run {run_id}"))
        })
    }

    /// Proves the run is alive (see [`Ledger::start_run`]).
    pub async fn heartbeat(&self, run_id: &str) -> Result<(), LedgerError> {
        with_pool!(&self.pool, |pool| sqlx::query(
            "UPDATE runs SET heartbeat_at = $2 WHERE run_id = $1"
        )
        .bind(run_id)
        .bind(now_ms())
        .execute(pool)
        .await
        .doing(|| format!("heartbeat of run {run_id}"))?
        .rows_affected());
        Ok(())
    }

    /// Records the end of a run with its status and summary JSON.
    pub async fn finish_run(
        &self,
        run_id: &str,
        status: &str,
        summary: &str,
    ) -> Result<(), LedgerError> {
        with_pool!(&self.pool, |pool| sqlx::query(
            "UPDATE runs SET finished_at = $2, status = $3, summary = $4 WHERE run_id = $1",
        )
        .bind(run_id)
        .bind(now_ms())
        .bind(status)
        .bind(summary)
        .execute(pool)
        .await
        .doing(|| format!("recording end of run {run_id}"))?
        .rows_affected());
        Ok(())
    }

    /// Committed checkpoints of a pipeline × tenant, as JSON text by name.
    pub async fn checkpoints(
        &self,
        pipeline: &str,
        tenant: &str,
    ) -> Result<BTreeMap<String, String>, LedgerError> {
        with_pool!(&self.pool, |pool| Ok(sqlx::query(
            "SELECT name, value FROM checkpoints WHERE pipeline = $1 AND tenant = $2"
        )
        .bind(pipeline)
        .bind(tenant)
        .fetch_all(pool)
        .await
        .doing(|| format!("reading checkpoints of {pipeline}/{tenant}"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()))
    }

    /// Commits a run's checkpoints (JSON text by name) in one transaction.
    pub async fn commit_checkpoints(
        &self,
        pipeline: &str,
        tenant: &str,
        run_id: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<(), LedgerError> {
        with_pool!(&self.pool, |pool| {
            let mut tx = pool.begin_write("starting checkpoint commit").await?;
            for (name, value) in values {
                sqlx::query(
                    "INSERT INTO checkpoints (pipeline, tenant, name, value, run_id, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (pipeline, tenant, name) \
                     DO UPDATE SET value = excluded.value, run_id = excluded.run_id, \
                     updated_at = excluded.updated_at",
                )
                .bind(pipeline)
                .bind(tenant)
                .bind(name)
                .bind(value)
                .bind(run_id)
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .doing(|| format!("writing checkpoint {name}"))?;
            }
            tx.commit().await.doing(|| "committing checkpoints".into())
        })
    }

    /// Reads a key-value entry (JSON text).
    pub async fn kv_get(
        &self,
        pipeline: &str,
        tenant: &str,
        key: &str,
    ) -> Result<Option<String>, LedgerError> {
        with_pool!(&self.pool, |pool| Ok(sqlx::query(
            "SELECT value FROM kv WHERE pipeline = $1 AND tenant = $2 AND k = $3"
        )
        .bind(pipeline)
        .bind(tenant)
        .bind(key)
        .fetch_optional(pool)
        .await
        .doing(|| format!("reading kv {key}"))?
        .map(|r| r.get(0))))
    }

    /// Writes a key-value entry (JSON text).
    pub async fn kv_set(
        &self,
        pipeline: &str,
        tenant: &str,
        key: &str,
        value: &str,
    ) -> Result<(), LedgerError> {
        with_pool!(&self.pool, |pool| sqlx::query(
            "INSERT INTO kv (pipeline, tenant, k, value, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (pipeline, tenant, k) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at",
        )
        .bind(pipeline)
        .bind(tenant)
        .bind(key)
        .bind(value)
        .bind(now_ms())
        .execute(pool)
        .await
        .doing(|| format!("writing kv {key}"))?
        .rows_affected());
        Ok(())
    }

    /// Deletes a key-value entry; true if it existed.
    pub async fn kv_delete(
        &self,
        pipeline: &str,
        tenant: &str,
        key: &str,
    ) -> Result<bool, LedgerError> {
        let deleted = with_pool!(&self.pool, |pool| sqlx::query(
            "DELETE FROM kv WHERE pipeline = $1 AND tenant = $2 AND k = $3"
        )
        .bind(pipeline)
        .bind(tenant)
        .bind(key)
        .execute(pool)
        .await
        .doing(|| format!("deleting kv {key}"))?
        .rows_affected());
        Ok(deleted > 0)
    }

    /// Keys starting with `prefix`, in order.
    pub async fn kv_keys(
        &self,
        pipeline: &str,
        tenant: &str,
        prefix: &str,
    ) -> Result<Vec<String>, LedgerError> {
        with_pool!(&self.pool, |pool| Ok(sqlx::query(
            "SELECT k FROM kv WHERE pipeline = $1 AND tenant = $2 \
             AND substr(k, 1, length($3)) = $3 ORDER BY k",
        )
        .bind(pipeline)
        .bind(tenant)
        .bind(prefix)
        .fetch_all(pool)
        .await
        .doing(|| format!("listing kv {prefix}*"))?
        .iter()
        .map(|r| r.get(0))
        .collect()))
    }

    /// Appends audit events to the hash chain in one transaction.
    pub async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), LedgerError> {
        with_pool!(&self.pool, |pool| {
            let mut tx = pool.begin_write("starting audit append").await?;
            tx.append_audit_events(events).await?;
            tx.commit().await.doing(|| "committing audit events".into())
        })
    }

    /// Writes item updates and audit events together in one transaction: both or neither.
    pub async fn write_batch(
        &self,
        updates: &[ItemUpdate],
        events: &[AuditEvent],
    ) -> Result<(), LedgerError> {
        self.write_batch_fenced(updates, events, None).await?;
        Ok(())
    }

    /// [`Ledger::write_batch`] for run `fence`: an update is written only while that run
    /// still holds the item's lease (see [`ApplyUpdates`]). Returns how many updates the
    /// fence refused.
    pub async fn write_batch_fenced(
        &self,
        updates: &[ItemUpdate],
        events: &[AuditEvent],
        fence: Option<&str>,
    ) -> Result<u64, LedgerError> {
        with_pool!(&self.pool, |pool| {
            let mut tx = pool.begin_write("starting a ledger write").await?;
            let refused = tx.apply_updates(updates, fence).await?;
            tx.append_audit_events(events).await?;
            tx.commit().await.doing(|| {
                format!(
                    "committing {} item update(s) and {} audit event(s)",
                    updates.len(),
                    events.len()
                )
            })?;
            Ok(refused)
        })
    }

    /// Audit events of a run, in order.
    pub async fn audit_of_run(&self, run_id: &str) -> Result<Vec<AuditEntry>, LedgerError> {
        with_pool!(&self.pool, |pool| Ok(sqlx::query(
            "SELECT seq, at, pipeline, tenant, run_id, kind, data, prev_hash, hash FROM audit \
             WHERE run_id = $1 ORDER BY seq",
        )
        .bind(run_id)
        .fetch_all(pool)
        .await
        .doing(|| format!("reading audit of run {run_id}"))?
        .iter()
        .map(super::audit_log::entry_of)
        .collect()))
    }

    /// The id of the live run of pipeline × tenant, if one is recorded as running.
    pub async fn running_run(
        &self,
        pipeline: &str,
        tenant: &str,
    ) -> Result<Option<String>, LedgerError> {
        with_pool!(&self.pool, |pool| Ok(sqlx::query(
            "SELECT run_id FROM runs WHERE pipeline = $1 AND tenant = $2 AND status = 'running'",
        )
        .bind(pipeline)
        .bind(tenant)
        .fetch_optional(pool)
        .await
        .doing(|| format!("reading the running run of {pipeline}/{tenant}"))?
        .map(|r| r.get(0))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::contract::contract_tests;

    contract_tests! {
        #[tokio::test]
        async fn audit_entries_chain_their_hashes(db) {
            let l = &db.ledger;
            let ev = |k: &str| {
                (
                    "p".to_string(),
                    "t".to_string(),
                    "r".to_string(),
                    k.to_string(),
                    "{}".to_string(),
                )
            };
            l.append_audit(&[ev("A"), ev("B")]).await.unwrap();
            let got = l.audit_of_run("r").await.unwrap();
            assert_eq!(got.len(), 2);
            assert_eq!(got[1].prev_hash, got[0].hash);
            let again = audit_hash(&got[0].prev_hash, 1, got[0].at, ["p", "t", "r", "A"], "{}");
            assert_eq!(again, got[0].hash);
        }

        #[tokio::test]
        async fn one_live_run_per_pipeline_and_tenant_and_stale_ones_are_taken_over(db) {
            let l = &db.ledger;
            l.start_run("r1", "p", "t", "h", 60_000).await.unwrap();
            let err = l.start_run("r2", "p", "t", "h", 60_000).await.unwrap_err();
            assert!(err.to_string().contains("run r1"), "{err}");
            l.start_run("other-tenant", "p", "t2", "h", 60_000)
                .await
                .unwrap();
            // r1 stops beating (killed): after the stale period a new run takes over.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            l.start_run("r3", "p", "t", "h", 10).await.unwrap();
            l.finish_run("r3", "completed", "{}").await.unwrap();
            l.start_run("r4", "p", "t", "h", 60_000).await.unwrap();
        }

        #[tokio::test]
        async fn kv_round_trips_and_lists_by_prefix(db) {
            let l = &db.ledger;
            l.kv_set("p", "t", "seg/1", "1").await.unwrap();
            l.kv_set("p", "t", "seg/2", "2").await.unwrap();
            l.kv_set("p", "t", "other", "3").await.unwrap();
            assert_eq!(
                l.kv_keys("p", "t", "seg/").await.unwrap(),
                ["seg/1", "seg/2"]
            );
            assert!(l.kv_delete("p", "t", "seg/1").await.unwrap());
            assert_eq!(l.kv_get("p", "t", "seg/1").await.unwrap(), None);
            assert_eq!(
                l.kv_get("p", "t", "seg/2").await.unwrap().as_deref(),
                Some("2")
            );
        }

        /// Several writers on two handles (as two processes would) append audit events, claim
        /// runs and write kv at once: none may fail with "database is locked", and the chain
        /// has every event exactly once, linked in order.
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_writers_never_see_a_locked_database_and_the_chain_holds(db) {
            const WRITERS: usize = 8;
            const BATCHES: usize = 25;
            let a = db.ledger.clone();
            let b = db.reopen().await;
            let mut tasks = Vec::new();
            for w in 0..WRITERS {
                let l = if w % 2 == 0 { a.clone() } else { b.clone() };
                tasks.push(tokio::spawn(async move {
                    let pipeline = format!("p{w}");
                    for i in 0..BATCHES {
                        let run = format!("run-{w}-{i}");
                        l.start_run(&run, &pipeline, "t", "h", 60_000).await?;
                        let events: Vec<AuditEvent> = (0..4)
                            .map(|n| {
                                let data = format!("{{\"n\":{n}}}");
                                (pipeline.clone(), "t".into(), run.clone(), "E".into(), data)
                            })
                            .collect();
                        l.append_audit(&events).await?;
                        l.kv_set(&pipeline, "t", &format!("k{i}"), "1").await?;
                        l.write_batch(&[], &events[..1]).await?;
                        l.finish_run(&run, "completed", "{}").await?;
                    }
                    Ok::<_, LedgerError>(())
                }));
            }
            for t in tasks {
                t.await.unwrap().expect("a concurrent write failed");
            }
            let rows = a.audit_page(&Default::default(), 0, 10_000).await.unwrap();
            assert_eq!(rows.len(), WRITERS * BATCHES * 5);
            let mut prev = String::new();
            for (i, r) in rows.iter().enumerate() {
                assert_eq!(r.seq, i as i64 + 1, "sequence has no gap");
                assert_eq!(r.prev_hash, prev, "entry {} links to the one before", i + 1);
                prev = r.hash.clone();
            }
            let report = b.verify_audit(None).await.unwrap();
            assert!(report.ok(), "{report:?}");
        }
    }
}
