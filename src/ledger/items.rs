//! Item rows: admission (insert or re-lease what is not final), resumption of unfinished
//! items, batched state updates, and the queries behind `cxpipe items`.

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::backend::{Backend, BeginWrite, with_pool};
use super::{DbContext, ItemState, Ledger, LedgerError, now_ms};

/// An item emitted by `discover`: its key and JSON payload.
#[derive(Clone, Debug)]
pub struct AdmitItem {
    pub key: String,
    pub payload: String,
}

/// An emitted item this run must process: attempts so far and when it is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    pub key: String,
    pub attempts: i64,
    pub next_at: Option<i64>,
}

/// An item the run must process: admitted now, or left unfinished by an earlier run.
#[derive(Clone, Debug)]
pub struct ResumableItem {
    pub key: String,
    pub payload: String,
    pub attempts: i64,
    pub next_at: Option<i64>,
}

/// What waits in the ledger for a pipeline × tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// Items in state `deferred`.
    pub deferred: u64,
    /// When the earliest unfinished item falls due (ledger ms).
    pub next_due: Option<i64>,
}

/// A state change of one item, written by the batched writer.
#[derive(Clone, Debug)]
pub struct ItemUpdate {
    pub pipeline: Arc<str>,
    pub tenant: Arc<str>,
    pub key: String,
    pub state: ItemState,
    pub attempts: i64,
    pub next_at: Option<i64>,
    pub result: Option<String>,
    pub last_error: Option<String>,
    /// The hash of the script generation that processed this attempt (kept when `None`).
    pub script_hash: Option<String>,
}

/// An item as stored, for `cxpipe items`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ItemRow {
    pub pipeline: String,
    pub tenant: String,
    pub key: String,
    pub state: String,
    pub attempts: i64,
    pub next_at: Option<i64>,
    pub script_hash: Option<String>,
    pub payload: Option<String>,
    pub result: Option<String>,
    pub last_error: Option<String>,
    pub run_id: Option<String>,
    pub updated_at: i64,
}

const ROW_COLUMNS: &str = "pipeline, tenant, item_key, state, attempts, next_at, script_hash, \
                           payload, result, last_error, run_id, updated_at";

fn item_row<R: Row>(r: &R) -> ItemRow
where
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    ItemRow {
        pipeline: r.get(0),
        tenant: r.get(1),
        key: r.get(2),
        state: r.get(3),
        attempts: r.get(4),
        next_at: r.get(5),
        script_hash: r.get(6),
        payload: r.get(7),
        result: r.get(8),
        last_error: r.get(9),
        run_id: r.get(10),
        updated_at: r.get(11),
    }
}

/// The items a lease or claim returned (`item_key, payload, attempts, next_at`), in key
/// order: `RETURNING` has no order in PostgreSQL, so batches are handed out in key order
/// everywhere.
pub(super) fn resumable_items<R: Row>(rows: &[R]) -> Vec<ResumableItem>
where
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let mut items: Vec<ResumableItem> = rows
        .iter()
        .map(|r| ResumableItem {
            key: r.get(0),
            payload: r
                .get::<Option<String>, _>(1)
                .unwrap_or_else(|| "null".into()),
            attempts: r.get(2),
            next_at: r.get(3),
        })
        .collect();
    items.sort_by(|a, b| a.key.cmp(&b.key));
    items
}

/// Which items a listing or retry applies to.
#[derive(Clone, Debug, Default)]
pub struct ItemFilter {
    pub pipeline: Option<String>,
    pub tenant: Option<String>,
    pub state: Option<ItemState>,
    pub key: Option<String>,
}

impl ItemFilter {
    /// SQL `WHERE` clause with `$N` placeholders starting at `first`, and its values.
    fn clause(&self, first: usize) -> (String, Vec<String>) {
        let mut parts = Vec::new();
        let mut values = Vec::new();
        let fields = [
            ("pipeline", self.pipeline.clone()),
            ("tenant", self.tenant.clone()),
            ("state", self.state.map(|s| s.as_str().to_string())),
            ("item_key", self.key.clone()),
        ];
        for (column, value) in fields {
            if let Some(v) = value {
                parts.push(format!("{column} = ${}", first + values.len()));
                values.push(v);
            }
        }
        let clause = if parts.is_empty() {
            "1 = 1".to_string()
        } else {
            parts.join(" AND ")
        };
        (clause, values)
    }
}

/// Writing item updates inside the caller's write transaction.
pub(crate) trait ApplyUpdates {
    /// Writes `updates`. With a `fence` (the id of the run that leased the items), an
    /// update is written only while no other run has leased the item since: a run whose
    /// items were taken over (its heartbeat went stale) cannot overwrite the newer
    /// attempt's result. Every lease sets `run_id` with `lease_owner`, so the latest lease
    /// is `run_id`. Returns how many updates the fence refused; each is logged.
    async fn apply_updates(
        &mut self,
        updates: &[ItemUpdate],
        fence: Option<&str>,
    ) -> Result<u64, LedgerError>;
}

macro_rules! impl_apply_updates {
    ($($conn:ty),*) => {$(
        impl ApplyUpdates for $conn {
            async fn apply_updates(
                &mut self,
                updates: &[ItemUpdate],
                fence: Option<&str>,
            ) -> Result<u64, LedgerError> {
                let now = now_ms();
                let mut refused = 0;
                for u in updates {
                    // A deferred or failed item stays leased by its run (which re-queues it
                    // itself); later runs take it over because they lease only what another
                    // run owns.
                    let lease_owner_kept = !u.state.is_final();
                    let written = sqlx::query(
                        "UPDATE items SET state = $4, attempts = $5, next_at = $6, \
                         result = COALESCE($7, result), last_error = $8, updated_at = $9, \
                         lease_owner = CASE WHEN $10 = 1 THEN lease_owner ELSE NULL END, \
                         lease_until = CASE WHEN $10 = 1 THEN lease_until ELSE NULL END, \
                         script_hash = COALESCE($11, script_hash) \
                         WHERE pipeline = $1 AND tenant = $2 AND item_key = $3 \
                         AND ($12 IS NULL OR run_id = $12)",
                    )
                    .bind(&*u.pipeline)
                    .bind(&*u.tenant)
                    .bind(&u.key)
                    .bind(u.state.as_str())
                    .bind(u.attempts)
                    .bind(u.next_at)
                    .bind(&u.result)
                    .bind(&u.last_error)
                    .bind(now)
                    .bind(lease_owner_kept as i64)
                    .bind(&u.script_hash)
                    .bind(fence)
                    .execute(&mut *self)
                    .await
                    .doing(|| format!("updating item {}", u.key))?
                    .rows_affected();
                    if written == 0
                        && let Some(run) = fence
                    {
                        refused += 1;
                        tracing::warn!(
                            item = %crate::terminal::escape(&u.key),
                            state = u.state.as_str(),
                            run_id = run,
                            "item result not written: another run has leased the item \
                             since (this run's lease was taken over)"
                        );
                    }
                }
                Ok(refused)
            }
        }
    )*};
}
impl_apply_updates!(sqlx::SqliteConnection, sqlx::PgConnection);

/// Leases a batch of unfinished items, picked once in a CTE (`{MATERIALIZED}` and `{LOCK}`
/// are the backend's; see `cluster::CLAIM_SQL` for why not `IN (SELECT … LIMIT)`).
const LEASE_UNFINISHED_SQL: &str = "WITH picked AS {MATERIALIZED} (
        SELECT item_key FROM items WHERE pipeline = $1 AND tenant = $2
        AND state IN ('pending', 'leased', 'failed', 'deferred')
        AND (lease_owner IS NULL OR lease_owner <> $3)
        AND (lease_until IS NULL OR lease_until < $5)
        AND (next_at IS NULL OR next_at <= $4)
        ORDER BY item_key LIMIT $6 {LOCK})
     UPDATE items SET lease_owner = $3, run_id = $3, \
     updated_at = $5, state = CASE WHEN next_at > $5 THEN state ELSE 'leased' END \
     FROM picked WHERE items.pipeline = $1 AND items.tenant = $2 \
     AND items.item_key = picked.item_key \
     RETURNING items.item_key, items.payload, items.attempts, items.next_at";

impl Ledger {
    /// Admits emitted items for `run_id`: inserts new keys and re-leases existing keys that
    /// are not final, not already leased by this run, and not waiting (deferred or backing
    /// off) past `due_before`. Returns what this run must process, in emission order;
    /// duplicates in the batch count once.
    pub async fn admit(
        &self,
        pipeline: &str,
        tenant: &str,
        run_id: &str,
        script_hash: &str,
        due_before: i64,
        batch: &[AdmitItem],
    ) -> Result<Vec<Admitted>, LedgerError> {
        let mut seen = HashSet::with_capacity(batch.len());
        let unique: Vec<&AdmitItem> = batch.iter().filter(|i| seen.insert(&i.key)).collect();
        if unique.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = String::from(
            "INSERT INTO items (pipeline, tenant, lease_owner, run_id, script_hash, updated_at, \
             item_key, payload, state, attempts) VALUES ",
        );
        for i in 0..unique.len() {
            let k = 7 + 2 * i;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "($1, $2, $3, $3, $4, $5, ${k}, ${}, 'leased', 0)",
                k + 1
            ));
        }
        sql.push_str(
            " ON CONFLICT (pipeline, tenant, item_key) DO UPDATE SET \
             state = CASE WHEN items.next_at > excluded.updated_at THEN items.state \
             ELSE 'leased' END, \
             payload = excluded.payload, lease_owner = excluded.lease_owner, lease_until = NULL, \
             run_id = excluded.run_id, script_hash = excluded.script_hash, \
             updated_at = excluded.updated_at \
             WHERE items.state NOT IN ('done', 'skipped', 'quarantined') \
             AND (items.lease_owner IS NULL OR items.lease_owner <> excluded.lease_owner) \
             AND (items.lease_until IS NULL OR items.lease_until < excluded.updated_at) \
             AND (items.next_at IS NULL OR items.next_at <= $6) \
             RETURNING item_key, attempts, next_at",
        );
        let now = now_ms();
        let mut admitted: std::collections::HashMap<String, (i64, Option<i64>)> =
            with_pool!(&self.pool, |pool| {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(pipeline)
                    .bind(tenant)
                    .bind(run_id)
                    .bind(script_hash)
                    .bind(now)
                    .bind(due_before);
                for item in &unique {
                    q = q.bind(&item.key).bind(&item.payload);
                }
                q.fetch_all(pool)
                    .await
                    .doing(|| format!("admitting {} items of {pipeline}/{tenant}", unique.len()))?
                    .iter()
                    .map(|r| (r.get(0), (r.get(1), r.get(2))))
                    .collect()
            });
        Ok(unique
            .iter()
            .filter_map(|i| {
                admitted.remove(&i.key).map(|(attempts, next_at)| Admitted {
                    key: i.key.clone(),
                    attempts,
                    next_at,
                })
            })
            .collect())
    }

    /// Adds emitted items as `pending` (no owner) for the next run to take up; a key
    /// already in the ledger, in any state, is left as it is. Returns how many were added.
    pub async fn admit_pending(
        &self,
        pipeline: &str,
        tenant: &str,
        script_hash: &str,
        batch: &[AdmitItem],
    ) -> Result<u64, LedgerError> {
        with_pool!(&self.pool, |pool| {
            let mut tx = pool.begin_write("starting to admit pending items").await?;
            let mut added = 0;
            for item in batch {
                let done = sqlx::query(
                    "INSERT INTO items (pipeline, tenant, item_key, payload, state, attempts, \
                     script_hash, updated_at) VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6) \
                     ON CONFLICT (pipeline, tenant, item_key) DO NOTHING",
                )
                .bind(pipeline)
                .bind(tenant)
                .bind(&item.key)
                .bind(&item.payload)
                .bind(script_hash)
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .doing(|| format!("admitting pending item {} of {pipeline}/{tenant}", item.key))?;
                added += done.rows_affected();
            }
            tx.commit().await.doing(|| {
                format!(
                    "committing {} pending items of {pipeline}/{tenant}",
                    batch.len()
                )
            })?;
            Ok(added)
        })
    }

    /// Leases up to `limit` unfinished items left by earlier runs (pending, leased by a dead
    /// run, failed awaiting retry, or deferred until no later than `due_before`). One not
    /// due yet keeps its state (deferred, failed) until processed, so a run that leaves it
    /// leaves it as it was. On PostgreSQL the batch is claimed `FOR UPDATE SKIP LOCKED`:
    /// rows another transaction is claiming are passed over, not waited for or taken twice.
    pub async fn lease_unfinished(
        &self,
        pipeline: &str,
        tenant: &str,
        run_id: &str,
        due_before: i64,
        limit: i64,
    ) -> Result<Vec<ResumableItem>, LedgerError> {
        let (materialized, lock) = match self.backend() {
            Backend::Sqlite => ("", ""),
            Backend::Postgres => ("MATERIALIZED", "FOR UPDATE SKIP LOCKED"),
        };
        let sql = LEASE_UNFINISHED_SQL
            .replace("{MATERIALIZED}", materialized)
            .replace("{LOCK}", lock);
        let leased: Vec<ResumableItem> = with_pool!(&self.pool, |pool| sqlx::query(
            sqlx::AssertSqlSafe(sql.clone())
        )
        .bind(pipeline)
        .bind(tenant)
        .bind(run_id)
        .bind(due_before)
        .bind(now_ms())
        .bind(limit)
        .fetch_all(pool)
        .await
        .doing(|| format!("leasing unfinished items of {pipeline}/{tenant}"))
        .map(|rows| resumable_items(&rows))?);
        Ok(leased)
    }

    /// How many items of `pipeline` × `tenant` wait deferred, and when the earliest
    /// unfinished one (pending, failed or deferred) falls due, in ledger ms.
    pub async fn waiting(&self, pipeline: &str, tenant: &str) -> Result<Waiting, LedgerError> {
        // SUM is NUMERIC in PostgreSQL: cast back to BIGINT.
        let (deferred, next_due): (i64, Option<i64>) = with_pool!(&self.pool, |pool| {
            let row = sqlx::query(
                "SELECT CAST(COALESCE(SUM(CASE WHEN state = 'deferred' THEN 1 ELSE 0 END), 0) \
                 AS BIGINT), MIN(COALESCE(next_at, updated_at)) FROM items \
                 WHERE pipeline = $1 AND tenant = $2 \
                 AND state IN ('pending', 'failed', 'deferred')",
            )
            .bind(pipeline)
            .bind(tenant)
            .fetch_one(pool)
            .await
            .doing(|| format!("reading the waiting items of {pipeline}/{tenant}"))?;
            (row.get(0), row.get(1))
        });
        Ok(Waiting {
            deferred: deferred.max(0) as u64,
            next_due,
        })
    }

    /// When the earliest unfinished item of `pipeline` × `tenant` (pending, failed or
    /// deferred) falls due, in ledger ms; `None` when nothing waits. A daemon wakes the
    /// pipeline then.
    pub async fn next_due(&self, pipeline: &str, tenant: &str) -> Result<Option<i64>, LedgerError> {
        Ok(self.waiting(pipeline, tenant).await?.next_due)
    }

    /// Writes a batch of state changes in one transaction, whoever holds the items' leases
    /// (for tools and tests; a run's workers write through a fenced [`super::writer::LedgerWriter`]).
    pub async fn apply(&self, updates: &[ItemUpdate]) -> Result<(), LedgerError> {
        with_pool!(&self.pool, |pool| {
            let mut tx = pool.begin_write("starting item update").await?;
            tx.apply_updates(updates, None).await?;
            tx.commit()
                .await
                .doing(|| format!("committing {} item updates", updates.len()))
        })
    }

    /// Hands every item this run still holds back for the next run: leased ones become
    /// pending, and failed or deferred ones keep their due time but lose their owner.
    /// Returns how many were released. Used when a run is interrupted.
    pub async fn release_run(
        &self,
        pipeline: &str,
        tenant: &str,
        run_id: &str,
    ) -> Result<u64, LedgerError> {
        with_pool!(&self.pool, |pool| Ok(sqlx::query(
            "UPDATE items SET state = CASE WHEN state = 'leased' THEN 'pending' ELSE state END, \
             lease_owner = NULL, lease_until = NULL, updated_at = $4 \
             WHERE pipeline = $1 AND tenant = $2 AND lease_owner = $3 \
             AND state IN ('pending', 'leased', 'failed', 'deferred')",
        )
        .bind(pipeline)
        .bind(tenant)
        .bind(run_id)
        .bind(now_ms())
        .execute(pool)
        .await
        .doing(|| format!("releasing the items of run {run_id}"))?
        .rows_affected()))
    }

    /// Lists items matching `filter`, newest first, at most `limit`.
    pub async fn list_items(
        &self,
        filter: &ItemFilter,
        limit: i64,
    ) -> Result<Vec<ItemRow>, LedgerError> {
        let (clause, values) = filter.clause(1);
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM items WHERE {clause} ORDER BY updated_at DESC, item_key \
             LIMIT ${}",
            values.len() + 1
        );
        with_pool!(&self.pool, |pool| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for v in &values {
                q = q.bind(v);
            }
            let rows = q
                .bind(limit)
                .fetch_all(pool)
                .await
                .doing(|| "listing items".into())?;
            Ok(rows.iter().map(item_row).collect())
        })
    }

    /// Counts items by state for `filter` (its `state` is ignored).
    pub async fn count_items(
        &self,
        filter: &ItemFilter,
    ) -> Result<Vec<(String, i64)>, LedgerError> {
        let filter = ItemFilter {
            state: None,
            ..filter.clone()
        };
        let (clause, values) = filter.clause(1);
        let sql = format!(
            "SELECT state, COUNT(*) FROM items WHERE {clause} GROUP BY state ORDER BY state"
        );
        with_pool!(&self.pool, |pool| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for v in &values {
                q = q.bind(v);
            }
            let rows = q.fetch_all(pool).await.doing(|| "counting items".into())?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    /// Puts matching items back to `pending` with no attempts, so the next run processes
    /// them again. Returns how many changed.
    pub async fn retry_items(&self, filter: &ItemFilter) -> Result<u64, LedgerError> {
        let (clause, values) = filter.clause(2);
        let sql = format!(
            "UPDATE items SET state = 'pending', attempts = 0, next_at = NULL, lease_owner = NULL, lease_until = NULL, \
             last_error = NULL, updated_at = $1 WHERE {clause}"
        );
        with_pool!(&self.pool, |pool| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now_ms());
            for v in &values {
                q = q.bind(v);
            }
            let done = q.execute(pool).await.doing(|| "retrying items".into())?;
            Ok(done.rows_affected())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::contract::contract_tests;

    fn batch(keys: &[&str]) -> Vec<AdmitItem> {
        keys.iter()
            .map(|k| AdmitItem {
                key: k.to_string(),
                payload: "{}".into(),
            })
            .collect()
    }

    fn update(key: &str, state: ItemState) -> ItemUpdate {
        ItemUpdate {
            pipeline: "p".into(),
            tenant: "t".into(),
            key: key.into(),
            state,
            attempts: 1,
            next_at: None,
            result: None,
            last_error: None,
            script_hash: None,
        }
    }

    contract_tests! {
        #[tokio::test]
        async fn done_items_are_never_admitted_again(db) {
            let l = &db.ledger;
            let keys = |v: Vec<Admitted>| v.into_iter().map(|a| a.key).collect::<Vec<_>>();
            let first = l
                .admit("p", "t", "r1", "h", now_ms(), &batch(&["a", "b", "a"]))
                .await
                .unwrap();
            assert_eq!(keys(first), ["a", "b"]);
            // Same run re-emitting: nothing new.
            assert!(
                l.admit("p", "t", "r1", "h", now_ms(), &batch(&["a"]))
                    .await
                    .unwrap()
                    .is_empty()
            );
            l.apply(&[update("a", ItemState::Done)]).await.unwrap();
            let second = l
                .admit("p", "t", "r2", "h", now_ms(), &batch(&["a", "b"]))
                .await
                .unwrap();
            assert_eq!(keys(second), ["b"]);
        }

        #[tokio::test]
        async fn a_deferred_item_is_not_taken_again_by_its_run_nor_early_by_the_next(db) {
            let l = &db.ledger;
            l.admit("p", "t", "r1", "h", now_ms(), &batch(&["a"]))
                .await
                .unwrap();
            let later = now_ms() + 3_600_000;
            l.apply(&[ItemUpdate {
                next_at: Some(later),
                ..update("a", ItemState::Deferred)
            }])
            .await
            .unwrap();
            // The run that deferred it re-queues it itself: re-emitting or leasing must not.
            assert!(
                l.admit("p", "t", "r1", "h", now_ms(), &batch(&["a"]))
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert!(
                l.lease_unfinished("p", "t", "r1", i64::MAX, 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
            // A later run takes it only once it is due within that run's wait.
            assert!(
                l.admit("p", "t", "r2", "h", now_ms(), &batch(&["a"]))
                    .await
                    .unwrap()
                    .is_empty()
            );
            let due = l
                .admit("p", "t", "r2", "h", later, &batch(&["a"]))
                .await
                .unwrap();
            assert_eq!(
                due,
                vec![Admitted {
                    key: "a".into(),
                    attempts: 1,
                    next_at: Some(later)
                }]
            );
        }

        #[tokio::test]
        async fn unfinished_items_are_leased_by_the_next_run_once(db) {
            let l = &db.ledger;
            l.admit("p", "t", "r1", "h", now_ms(), &batch(&["a", "b", "c"]))
                .await
                .unwrap();
            l.apply(&[update("a", ItemState::Done)]).await.unwrap();
            let got = l
                .lease_unfinished("p", "t", "r2", now_ms(), 10)
                .await
                .unwrap();
            let keys: Vec<_> = got.iter().map(|i| i.key.as_str()).collect();
            assert_eq!(keys, ["b", "c"]);
            assert!(
                l.lease_unfinished("p", "t", "r2", now_ms(), 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }

        #[tokio::test]
        async fn retry_puts_quarantined_items_back(db) {
            let l = &db.ledger;
            l.admit("p", "t", "r1", "h", now_ms(), &batch(&["a"]))
                .await
                .unwrap();
            l.apply(&[update("a", ItemState::Quarantined)])
                .await
                .unwrap();
            let f = ItemFilter {
                state: Some(ItemState::Quarantined),
                ..Default::default()
            };
            assert_eq!(l.retry_items(&f).await.unwrap(), 1);
            assert_eq!(
                l.admit("p", "t", "r2", "h", now_ms(), &batch(&["a"]))
                    .await
                    .unwrap()
                    .len(),
                1
            );
        }

        /// A run whose lease was taken over (its heartbeat went stale and another run
        /// leased its items) cannot write over the newer attempt's result, before or after
        /// that attempt finished; the newer run's own writes go through.
        #[tokio::test]
        async fn a_taken_over_run_cannot_overwrite_the_newer_attempt(db) {
            let l = &db.ledger;
            l.admit("p", "t", "r1", "h", now_ms(), &batch(&["a", "b"]))
                .await
                .unwrap();
            let taken = l.lease_unfinished("p", "t", "r2", now_ms(), 10).await.unwrap();
            assert_eq!(taken.len(), 2);
            let stale = |key: &str| ItemUpdate {
                result: Some("\"stale\"".into()),
                ..update(key, ItemState::Done)
            };
            // r1 finishes "a" after r2 took it but before r2 finished it.
            assert_eq!(l.write_batch_fenced(&[stale("a")], &[], Some("r1")).await.unwrap(), 1);
            let newer = |key: &str| ItemUpdate {
                result: Some("\"newer\"".into()),
                ..update(key, ItemState::Done)
            };
            assert_eq!(
                l.write_batch_fenced(&[newer("a"), newer("b")], &[], Some("r2"))
                    .await
                    .unwrap(),
                0
            );
            // r1 finishes "b" (as failed) after r2 finished it.
            let failed = ItemUpdate {
                last_error: Some("late".into()),
                ..update("b", ItemState::Failed)
            };
            assert_eq!(l.write_batch_fenced(&[failed], &[], Some("r1")).await.unwrap(), 1);
            for key in ["a", "b"] {
                let filter = ItemFilter {
                    key: Some(key.into()),
                    ..Default::default()
                };
                let row = l.list_items(&filter, 1).await.unwrap().remove(0);
                assert_eq!(
                    (row.state.as_str(), row.result.as_deref(), row.run_id.as_deref()),
                    ("done", Some("\"newer\""), Some("r2")),
                    "{key}"
                );
            }
        }

        /// Several claimers of one run (on two handles, as two processes) leasing batches
        /// at once get disjoint batches that together hold every item once.
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_lease_claims_take_each_item_once(db) {
            const ITEMS: usize = 400;
            let keys: Vec<String> = (0..ITEMS).map(|i| format!("k{i:04}")).collect();
            let items: Vec<AdmitItem> = keys
                .iter()
                .map(|k| AdmitItem {
                    key: k.clone(),
                    payload: "{}".into(),
                })
                .collect();
            db.ledger.admit_pending("p", "t", "h", &items).await.unwrap();
            let mut tasks = Vec::new();
            for claimer in 0..4 {
                let l = if claimer % 2 == 0 { db.ledger.clone() } else { db.reopen().await };
                tasks.push(tokio::spawn(async move {
                    let run = "r1";
                    let mut mine = Vec::new();
                    // Bounded: every round takes at least one item until none is left.
                    for _ in 0..ITEMS {
                        let batch = l.lease_unfinished("p", "t", run, now_ms(), 7).await?;
                        if batch.is_empty() {
                            break;
                        }
                        let done: Vec<ItemUpdate> = batch
                            .iter()
                            .map(|i| ItemUpdate {
                                pipeline: "p".into(),
                                tenant: "t".into(),
                                key: i.key.clone(),
                                state: ItemState::Done,
                                attempts: 1,
                                next_at: None,
                                result: Some(format!("{claimer}")),
                                last_error: None,
                                script_hash: None,
                            })
                            .collect();
                        let refused = l.write_batch_fenced(&done, &[], Some(run)).await?;
                        assert_eq!(refused, 0, "claimer {claimer} lost an item it had leased");
                        mine.extend(batch.into_iter().map(|i| i.key));
                    }
                    Ok::<_, LedgerError>(mine)
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap().expect("a lease claim failed"));
            }
            all.sort();
            assert_eq!(all, keys, "every item claimed exactly once");
            let counts = db.ledger.count_items(&ItemFilter::default()).await.unwrap();
            assert_eq!(counts, vec![("done".to_string(), ITEMS as i64)]);
        }
    }
}
