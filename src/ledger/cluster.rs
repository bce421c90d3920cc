//! What several `cxpipe serve` nodes on one ledger coordinate through (docs/SCALE.md):
//! items admitted unowned for any node to claim, claims in batches with a lease time,
//! leases renewed by each run's heartbeat and taken over once expired, helper runs (a
//! node working on the items of a run another node leads), and the node registry behind
//! `/status` and `cxpipe node drain`.
//!
//! A lease without a lease time (`lease_until` NULL) is a single-process lease: it lasts
//! while its run is alive. A lease with one lasts until then, unless renewed.

use sqlx::Row;

use super::backend::{Backend, BeginWrite, with_pool};
use super::items::{AdmitItem, ResumableItem, resumable_items};
use super::state::process_owner;
use super::{DbContext, Ledger, LedgerError, now_ms};

/// The status of a helper run: working on items another node's run leads.
pub const STATUS_HELPING: &str = "helping";

/// Which items of `$1` × `$2` a run `$3` may claim at `$5` (ledger ms): unfinished, due by
/// `$4`, and not leased by a live run: unowned, or leased by another run whose lease time
/// passed, or (a lease without lease time) by a run that is not running any more or whose
/// heartbeat is older than `$6`.
const CLAIMABLE: &str = "pipeline = $1 AND tenant = $2
        AND state IN ('pending', 'leased', 'failed', 'deferred')
        AND (next_at IS NULL OR next_at <= $4)
        AND (lease_owner IS NULL OR (lease_owner <> $3 AND (
            (lease_until IS NOT NULL AND lease_until < $5)
            OR (lease_until IS NULL AND NOT EXISTS (
                SELECT 1 FROM runs r WHERE r.run_id = items.lease_owner
                AND r.status IN ('running', 'helping')
                AND COALESCE(r.heartbeat_at, r.started_at) >= $6)))))";

/// Claims a batch of [`CLAIMABLE`] items until `$8`, at most `$7`. The batch is picked
/// once, in a CTE (`{MATERIALIZED}` on PostgreSQL, with `{LOCK}` = `FOR UPDATE SKIP
/// LOCKED`): as an `IN (SELECT … LIMIT)` subquery the planner may run it again per row,
/// which claims more than the limit and costs quadratic time.
const CLAIM_SQL: &str = "WITH picked AS {MATERIALIZED} (
        SELECT item_key FROM items WHERE {CLAIMABLE}
        ORDER BY item_key LIMIT $7 {LOCK})
     UPDATE items SET lease_owner = $3, run_id = $3, lease_until = $8, updated_at = $5, \
     state = CASE WHEN next_at > $5 THEN state ELSE 'leased' END \
     FROM picked WHERE items.pipeline = $1 AND items.tenant = $2 \
     AND items.item_key = picked.item_key \
     RETURNING items.item_key, items.payload, items.attempts, items.next_at";

/// Returns expired leases, at most 1000 a round, passing over rows another transaction
/// holds (`{LOCK}`), so it never waits for a claim or a renewal.
const REAP_SQL: &str = "WITH expired AS {MATERIALIZED} (
        SELECT pipeline, tenant, item_key FROM items
        WHERE lease_until IS NOT NULL AND lease_until < $1
        AND state IN ('pending', 'leased', 'failed', 'deferred')
        LIMIT 1000 {LOCK})
     UPDATE items SET state = CASE WHEN state = 'leased' THEN 'pending' ELSE state END, \
     lease_owner = NULL, lease_until = NULL, updated_at = $1 \
     FROM expired WHERE items.pipeline = expired.pipeline AND items.tenant = expired.tenant \
     AND items.item_key = expired.item_key";

/// `sql` with the backend's row-claim clauses.
fn for_backend(sql: &str, backend: Backend) -> String {
    let (materialized, lock) = match backend {
        Backend::Sqlite => ("", ""),
        Backend::Postgres => ("MATERIALIZED", "FOR UPDATE SKIP LOCKED"),
    };
    sql.replace("{CLAIMABLE}", CLAIMABLE)
        .replace("{MATERIALIZED}", materialized)
        .replace("{LOCK}", lock)
}

/// How a claim is made: by which run, for how long, and what counts as due.
#[derive(Clone, Copy, Debug)]
pub struct Claim<'a> {
    pub run_id: &'a str,
    /// The lease time given to each claimed item (ledger ms).
    pub lease_until: i64,
    /// Items waiting (deferred, backing off) until no later than this are claimed too.
    pub due_before: i64,
    /// A run whose heartbeat is older than this is dead (ledger ms).
    pub alive_since: i64,
    pub limit: i64,
}

/// A node of the cluster as the registry knows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeRow {
    pub node: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub draining_at: Option<i64>,
    pub listen: Option<String>,
    pub version: String,
    /// Items this node's runs hold leases on now.
    pub leases: i64,
    /// Runs of this node in progress (leading or helping).
    pub runs: i64,
}

impl Ledger {
    /// Admits emitted items unowned (`pending`) for any node's run to claim: new keys are
    /// inserted, and existing ones that are unfinished and not under a live lease get the
    /// new payload. Returns the keys admitted, in batch order; duplicates in the batch
    /// count once.
    pub async fn admit_shared(
        &self,
        pipeline: &str,
        tenant: &str,
        run_id: &str,
        script_hash: &str,
        batch: &[AdmitItem],
    ) -> Result<Vec<String>, LedgerError> {
        let mut seen = std::collections::HashSet::with_capacity(batch.len());
        let unique: Vec<&AdmitItem> = batch.iter().filter(|i| seen.insert(&i.key)).collect();
        if unique.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = String::from(
            "INSERT INTO items (pipeline, tenant, run_id, script_hash, updated_at, item_key, \
             payload, state, attempts) VALUES ",
        );
        for i in 0..unique.len() {
            let k = 6 + 2 * i;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "($1, $2, $3, $4, $5, ${k}, ${}, 'pending', 0)",
                k + 1
            ));
        }
        sql.push_str(
            " ON CONFLICT (pipeline, tenant, item_key) DO UPDATE SET \
             payload = excluded.payload, updated_at = excluded.updated_at \
             WHERE items.state NOT IN ('done', 'skipped', 'quarantined') \
             AND (items.lease_owner IS NULL OR items.lease_until < excluded.updated_at) \
             RETURNING item_key",
        );
        let now = now_ms();
        let admitted: std::collections::HashSet<String> = with_pool!(&self.pool, |pool| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(pipeline)
                .bind(tenant)
                .bind(run_id)
                .bind(script_hash)
                .bind(now);
            for item in &unique {
                q = q.bind(&item.key).bind(&item.payload);
            }
            q.fetch_all(pool)
                .await
                .doing(|| {
                    format!(
                        "admitting {} shared items of {pipeline}/{tenant}",
                        unique.len()
                    )
                })?
                .iter()
                .map(|r| r.get(0))
                .collect()
        });
        Ok(unique
            .iter()
            .filter(|i| admitted.contains(&i.key))
            .map(|i| i.key.clone())
            .collect())
    }

    /// Claims up to `claim.limit` claimable items of `pipeline` × `tenant` for
    /// `claim.run_id` until `claim.lease_until` (see [`CLAIM_SQL`]). On PostgreSQL the
    /// batch is claimed `FOR UPDATE SKIP LOCKED`: concurrent claims get disjoint batches
    /// without waiting for each other. Returned in key order.
    pub async fn claim(
        &self,
        pipeline: &str,
        tenant: &str,
        claim: Claim<'_>,
    ) -> Result<Vec<ResumableItem>, LedgerError> {
        let sql = for_backend(CLAIM_SQL, self.backend());
        let claimed: Vec<ResumableItem> = with_pool!(&self.pool, |pool| sqlx::query(
            sqlx::AssertSqlSafe(sql.clone())
        )
        .bind(pipeline)
        .bind(tenant)
        .bind(claim.run_id)
        .bind(claim.due_before)
        .bind(now_ms())
        .bind(claim.alive_since)
        .bind(claim.limit)
        .bind(claim.lease_until)
        .fetch_all(pool)
        .await
        .doing(|| format!("claiming items of {pipeline}/{tenant}"))
        .map(|rows| resumable_items(&rows))?);
        Ok(claimed)
    }

    /// How many items of `pipeline` × `tenant` a new run could claim now (due within
    /// `due_before`; runs silent since before `alive_since` count as dead).
    pub async fn claimable(
        &self,
        pipeline: &str,
        tenant: &str,
        due_before: i64,
        alive_since: i64,
    ) -> Result<i64, LedgerError> {
        let sql = format!("SELECT COUNT(*) FROM items WHERE {CLAIMABLE}");
        with_pool!(&self.pool, |pool| Ok(sqlx::query_scalar::<_, i64>(
            sqlx::AssertSqlSafe(sql.clone())
        )
        .bind(pipeline)
        .bind(tenant)
        .bind("")
        .bind(due_before)
        .bind(now_ms())
        .bind(alive_since)
        .fetch_one(pool)
        .await
        .doing(|| format!(
            "counting the claimable items of {pipeline}/{tenant}"
        ))?))
    }

    /// Extends the lease time of every item `run_id` holds with one to `until`. Returns
    /// how many leases were renewed.
    pub async fn renew_leases(&self, run_id: &str, until: i64) -> Result<u64, LedgerError> {
        with_pool!(&self.pool, |pool| Ok(sqlx::query(
            "UPDATE items SET lease_until = $2 WHERE lease_owner = $1 AND lease_until IS NOT NULL \
             AND state IN ('pending', 'leased', 'failed', 'deferred')"
        )
        .bind(run_id)
        .bind(until)
        .execute(pool)
        .await
        .doing(|| format!("renewing the leases of run {run_id}"))?
        .rows_affected()))
    }

    /// Returns expired leases (see [`REAP_SQL`]): a leased item becomes `pending`, a failed
    /// or deferred one keeps its state and due time; all lose their owner. Returns how many.
    pub async fn reap_expired_leases(&self) -> Result<u64, LedgerError> {
        let sql = for_backend(REAP_SQL, self.backend());
        with_pool!(&self.pool, |pool| Ok(sqlx::query(sqlx::AssertSqlSafe(
            sql.clone()
        ))
        .bind(now_ms())
        .execute(pool)
        .await
        .doing(|| "returning expired leases".into())?
        .rows_affected()))
    }

    /// Items of `pipeline` × `tenant` still to be worked on in a cluster run: claimable
    /// now (due before `due_before`), or leased (by any run, live or not).
    pub async fn backlog(
        &self,
        pipeline: &str,
        tenant: &str,
        due_before: i64,
    ) -> Result<i64, LedgerError> {
        with_pool!(&self.pool, |pool| Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM items WHERE pipeline = $1 AND tenant = $2 \
             AND (state IN ('pending', 'leased') \
             OR (state IN ('failed', 'deferred') AND (next_at IS NULL OR next_at <= $3)))"
        )
        .bind(pipeline)
        .bind(tenant)
        .bind(due_before)
        .fetch_one(pool)
        .await
        .doing(|| format!("counting the backlog of {pipeline}/{tenant}"))?))
    }

    /// Items of `pipeline` × `tenant` written by runs other than `run_id` since `since`
    /// (ledger ms), by state: what other nodes did for a run this node leads.
    pub async fn finished_by_others(
        &self,
        pipeline: &str,
        tenant: &str,
        run_id: &str,
        since: i64,
    ) -> Result<Vec<(String, i64)>, LedgerError> {
        with_pool!(&self.pool, |pool| Ok(sqlx::query(
            "SELECT state, COUNT(*) FROM items WHERE pipeline = $1 AND tenant = $2 \
             AND updated_at >= $4 AND run_id IS NOT NULL AND run_id <> $3 \
             AND state IN ('done', 'skipped', 'quarantined') GROUP BY state"
        )
        .bind(pipeline)
        .bind(tenant)
        .bind(run_id)
        .bind(since)
        .fetch_all(pool)
        .await
        .doing(|| format!("counting what other nodes did for {pipeline}/{tenant}"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()))
    }

    /// Records a helper run: this process works on the items of `pipeline` × `tenant`
    /// that the live run `lead` discovers. Helper runs do not count as the pipeline's
    /// running run (that stays `lead`).
    pub async fn start_helper_run(
        &self,
        run_id: &str,
        pipeline: &str,
        tenant: &str,
        script_hash: &str,
    ) -> Result<(), LedgerError> {
        let now = now_ms();
        with_pool!(&self.pool, |pool| sqlx::query(
            "INSERT INTO runs (run_id, pipeline, tenant, script_hash, started_at, heartbeat_at, \
             owner, status) VALUES ($1, $2, $3, $4, $5, $5, $6, $7)"
        )
        .bind(run_id)
        .bind(pipeline)
        .bind(tenant)
        .bind(script_hash)
        .bind(now)
        .bind(process_owner())
        .bind(STATUS_HELPING)
        .execute(pool)
        .await
        .doing(|| format!("recording start of helper run {run_id}"))?
        .rows_affected());
        Ok(())
    }

    /// The live leading run of `pipeline` × `tenant`: `(run_id, heartbeat ms)`.
    pub async fn lead_run(
        &self,
        pipeline: &str,
        tenant: &str,
    ) -> Result<Option<(String, i64)>, LedgerError> {
        with_pool!(&self.pool, |pool| Ok(sqlx::query(
            "SELECT run_id, COALESCE(heartbeat_at, started_at) FROM runs \
             WHERE pipeline = $1 AND tenant = $2 AND status = 'running'"
        )
        .bind(pipeline)
        .bind(tenant)
        .fetch_optional(pool)
        .await
        .doing(|| format!("reading the running run of {pipeline}/{tenant}"))?
        .map(|r| (r.get(0), r.get(1)))))
    }

    /// Registers this process as node `node` (or proves it is alive): its heartbeat, its
    /// listen address. A node that registers again keeps its drain mark.
    pub async fn node_heartbeat(&self, node: &str, listen: &str) -> Result<(), LedgerError> {
        let now = now_ms();
        with_pool!(&self.pool, |pool| sqlx::query(
            "INSERT INTO nodes (node, started_at, heartbeat_at, listen, version) \
             VALUES ($1, $2, $2, $3, $4) ON CONFLICT (node) DO UPDATE SET \
             heartbeat_at = excluded.heartbeat_at, listen = excluded.listen"
        )
        .bind(node)
        .bind(now)
        .bind(listen)
        .bind(env!("CARGO_PKG_VERSION"))
        .execute(pool)
        .await
        .doing(|| format!("heartbeat of node {node}"))?
        .rows_affected());
        Ok(())
    }

    /// Forgets node `node` (it stopped cleanly).
    pub async fn node_gone(&self, node: &str) -> Result<(), LedgerError> {
        with_pool!(&self.pool, |pool| sqlx::query(
            "DELETE FROM nodes WHERE node = $1"
        )
        .bind(node)
        .execute(pool)
        .await
        .doing(|| format!("removing node {node}"))?
        .rows_affected());
        Ok(())
    }

    /// Forgets nodes silent since before `silent_since` (ledger ms): ones that died
    /// without leaving the registry. Returns how many.
    pub async fn prune_nodes(&self, silent_since: i64) -> Result<u64, LedgerError> {
        with_pool!(&self.pool, |pool| Ok(sqlx::query(
            "DELETE FROM nodes WHERE heartbeat_at < $1"
        )
        .bind(silent_since)
        .execute(pool)
        .await
        .doing(|| "pruning silent nodes".into())?
        .rows_affected()))
    }

    /// Marks `node` (every node when `None`) to drain: it takes no new work and lets what
    /// it runs finish. Returns the nodes marked.
    pub async fn drain_nodes(&self, node: Option<&str>) -> Result<Vec<String>, LedgerError> {
        with_pool!(&self.pool, |pool| {
            let mut tx = pool.begin_write("starting to mark nodes draining").await?;
            let marked: Vec<String> = sqlx::query(
                "UPDATE nodes SET draining_at = COALESCE(draining_at, $2) \
                 WHERE ($1 IS NULL OR node = $1) RETURNING node",
            )
            .bind(node)
            .bind(now_ms())
            .fetch_all(&mut *tx)
            .await
            .doing(|| "marking nodes draining".into())?
            .iter()
            .map(|r| r.get(0))
            .collect();
            tx.commit()
                .await
                .doing(|| "committing the drain marks".into())?;
            Ok(marked)
        })
    }

    /// Whether `node` is marked to drain.
    pub async fn node_draining(&self, node: &str) -> Result<bool, LedgerError> {
        with_pool!(&self.pool, |pool| Ok(sqlx::query_scalar::<_, Option<i64>>(
            "SELECT draining_at FROM nodes WHERE node = $1"
        )
        .bind(node)
        .fetch_optional(pool)
        .await
        .doing(|| format!("reading the drain mark of node {node}"))?
        .flatten()
        .is_some()))
    }

    /// Every registered node, with the leases and runs it holds now.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, LedgerError> {
        let now = now_ms();
        with_pool!(&self.pool, |pool| Ok(sqlx::query(
            "SELECT n.node, n.started_at, n.heartbeat_at, n.draining_at, n.listen, n.version, \
             (SELECT COUNT(*) FROM items i JOIN runs r ON r.run_id = i.lease_owner \
              WHERE r.owner = n.node AND i.lease_until >= $1 \
              AND i.state IN ('pending', 'leased', 'failed', 'deferred')), \
             (SELECT COUNT(*) FROM runs r WHERE r.owner = n.node \
              AND r.status IN ('running', 'helping')) \
             FROM nodes n ORDER BY n.node"
        )
        .bind(now)
        .fetch_all(pool)
        .await
        .doing(|| "listing nodes".into())?
        .iter()
        .map(|r| NodeRow {
            node: r.get(0),
            started_at: r.get(1),
            heartbeat_at: r.get(2),
            draining_at: r.get(3),
            listen: r.get(4),
            version: r.get(5),
            leases: r.get(6),
            runs: r.get(7),
        })
        .collect()))
    }
}

/// This process's node name in the registry (`host:pid`, as runs record their owner).
pub fn this_node() -> String {
    process_owner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::contract::contract_tests;
    use crate::ledger::{ItemState, ItemUpdate};

    fn batch(keys: &[&str]) -> Vec<AdmitItem> {
        keys.iter()
            .map(|k| AdmitItem {
                key: k.to_string(),
                payload: format!("\"{k}\""),
            })
            .collect()
    }

    fn claim(run: &str, lease_until: i64, limit: i64) -> Claim<'_> {
        Claim {
            run_id: run,
            lease_until,
            due_before: now_ms(),
            alive_since: now_ms() - 30_000,
            limit,
        }
    }

    fn keys(items: &[ResumableItem]) -> Vec<&str> {
        items.iter().map(|i| i.key.as_str()).collect()
    }

    fn done(key: &str) -> ItemUpdate {
        ItemUpdate {
            pipeline: "p".into(),
            tenant: "t".into(),
            key: key.into(),
            state: ItemState::Done,
            attempts: 1,
            next_at: None,
            result: None,
            last_error: None,
            script_hash: None,
        }
    }

    contract_tests! {
        #[tokio::test]
        async fn shared_items_are_claimed_once_until_their_lease_expires(db) {
            let l = &db.ledger;
            let admitted = l.admit_shared("p", "t", "lead", "h", &batch(&["a", "b", "c", "a"])).await.unwrap();
            assert_eq!(admitted, ["a", "b", "c"]);
            let far = now_ms() + 60_000;
            let alive_since = now_ms() - 30_000;
            assert_eq!(l.claimable("p", "t", now_ms(), alive_since).await.unwrap(), 3);
            let one = l.claim("p", "t", claim("n1", far, 2)).await.unwrap();
            assert_eq!(keys(&one), ["a", "b"]);
            let two = l.claim("p", "t", claim("n2", far, 5)).await.unwrap();
            assert_eq!(keys(&two), ["c"], "live leases are not claimed again");
            assert!(l.claim("p", "t", claim("n3", far, 5)).await.unwrap().is_empty());
            assert_eq!(l.claimable("p", "t", now_ms(), alive_since).await.unwrap(), 0);
            // n1's lease runs out (its node died): n3 takes its items over, and n1's late
            // result is refused by the fence.
            assert_eq!(l.renew_leases("n1", now_ms() - 1).await.unwrap(), 2);
            let taken = l.claim("p", "t", claim("n3", far, 5)).await.unwrap();
            assert_eq!(keys(&taken), ["a", "b"]);
            assert_eq!(l.write_batch_fenced(&[done("a")], &[], Some("n1")).await.unwrap(), 1);
            assert_eq!(l.write_batch_fenced(&[done("a")], &[], Some("n3")).await.unwrap(), 0);
            // A shared admission again leaves done and live-leased items alone.
            let again = l.admit_shared("p", "t", "lead2", "h", &batch(&["a", "b", "d"])).await.unwrap();
            assert_eq!(again, ["d"]);
            assert_eq!(l.backlog("p", "t", now_ms()).await.unwrap(), 3, "b, c leased; d pending");
        }

        /// A claim takes its limit and no more, however many items wait (an `IN (SELECT
        /// … LIMIT)` claim took 1,488 of 5,000 at once on PostgreSQL, in quadratic time).
        #[tokio::test]
        async fn a_claim_takes_at_most_its_limit_from_a_large_backlog(db) {
            let l = &db.ledger;
            let all: Vec<String> = (0..5000).map(|i| format!("k{i:05}")).collect();
            for chunk in all.chunks(500) {
                let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                l.admit_shared("p", "t", "lead", "h", &batch(&refs)).await.unwrap();
            }
            let far = now_ms() + 60_000;
            let claimed = l.claim("p", "t", claim("n1", far, 16)).await.unwrap();
            assert_eq!(claimed.len(), 16);
            assert_eq!(keys(&claimed), (0..16).map(|i| format!("k{i:05}")).collect::<Vec<_>>());
            let leased = db.count("items WHERE state = 'leased'").await;
            assert_eq!(leased, 16);
        }

        #[tokio::test]
        async fn renewed_leases_hold_and_expired_ones_are_reaped(db) {
            let l = &db.ledger;
            l.admit_shared("p", "t", "lead", "h", &batch(&["a", "b"])).await.unwrap();
            let soon = now_ms() + 60_000;
            l.claim("p", "t", claim("n1", soon, 1)).await.unwrap();
            l.claim("p", "t", claim("n2", soon, 1)).await.unwrap();
            assert_eq!(l.renew_leases("n1", now_ms() + 120_000).await.unwrap(), 1);
            assert_eq!(l.renew_leases("n2", now_ms() - 1).await.unwrap(), 1);
            assert_eq!(l.reap_expired_leases().await.unwrap(), 1, "only n2's lease expired");
            let back = l.claim("p", "t", claim("n3", soon, 5)).await.unwrap();
            assert_eq!(keys(&back), ["b"]);
        }

        #[tokio::test]
        async fn a_lease_without_lease_time_holds_while_its_run_lives(db) {
            let l = &db.ledger;
            l.start_run("solo", "p", "t", "h", 30_000).await.unwrap();
            l.admit("p", "t", "solo", "h", now_ms(), &batch(&["a"])).await.unwrap();
            let far = now_ms() + 60_000;
            assert!(l.claim("p", "t", claim("n1", far, 5)).await.unwrap().is_empty());
            l.finish_run("solo", "interrupted", "{}").await.unwrap();
            let taken = l.claim("p", "t", claim("n1", far, 5)).await.unwrap();
            assert_eq!(keys(&taken), ["a"], "a finished run's lease is over");
            // And a single-process lease never takes a live cluster lease.
            assert!(l.lease_unfinished("p", "t", "solo2", now_ms(), 5).await.unwrap().is_empty());
        }

        #[tokio::test]
        async fn nodes_register_drain_and_show_their_leases(db) {
            let l = &db.ledger;
            l.node_heartbeat("host:1", "127.0.0.1:1").await.unwrap();
            l.node_heartbeat("host:2", "127.0.0.1:2").await.unwrap();
            assert!(!l.node_draining("host:1").await.unwrap());
            assert_eq!(l.drain_nodes(Some("host:1")).await.unwrap(), ["host:1"]);
            assert!(l.node_draining("host:1").await.unwrap());
            l.node_heartbeat("host:1", "127.0.0.1:1").await.unwrap();
            assert!(l.node_draining("host:1").await.unwrap(), "a heartbeat keeps the mark");
            let nodes = l.nodes().await.unwrap();
            assert_eq!(nodes.len(), 2);
            assert_eq!((nodes[1].node.as_str(), nodes[1].draining_at), ("host:2", None));
            l.node_gone("host:2").await.unwrap();
            assert_eq!(l.nodes().await.unwrap().len(), 1);
            assert_eq!(l.prune_nodes(now_ms() - 60_000).await.unwrap(), 0, "host:1 is alive");
            assert_eq!(l.prune_nodes(now_ms() + 1).await.unwrap(), 1);
            assert!(l.nodes().await.unwrap().is_empty());
        }
    }
}
