//! Schedule fires: which scheduled times of each pipeline × tenant have been fired. A fire is
//! claimed once per scheduled time (so a restart, or later several nodes, fire it once) and
//! the latest claim is the key's last fire. Rows older than [`FIRE_RETENTION_MS`] before the
//! newest claim are pruned; the last fire is always kept.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::backend::{BeginWrite, with_pool};
use super::state::process_owner;
use super::{DbContext, Ledger, LedgerError, now_ms};

/// How far behind a key's newest claim older claims are kept (one day).
pub const FIRE_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;

impl Ledger {
    /// The latest scheduled time fired for `pipeline` × `tenant`, if any.
    pub async fn last_fire(
        &self,
        pipeline: &str,
        tenant: &str,
    ) -> Result<Option<DateTime<Utc>>, LedgerError> {
        let ms: Option<i64> = with_pool!(&self.pool, |pool| sqlx::query(
            "SELECT MAX(fire_at) FROM schedule_fires WHERE pipeline = $1 AND tenant = $2",
        )
        .bind(pipeline)
        .bind(tenant)
        .fetch_one(pool)
        .await
        .doing(|| format!("reading the last schedule fire of {pipeline} for tenant {tenant}"))?
        .get(0));
        ms.map(|ms| {
            DateTime::from_timestamp_millis(ms).ok_or_else(|| {
                LedgerError::Invalid(format!(
                    "schedule fire of {pipeline} for tenant {tenant} has an impossible time {ms}"
                ))
            })
        })
        .transpose()
    }

    /// Claims the fire of `pipeline` × `tenant` scheduled at `fire_at`: true for the first
    /// claim of that time, false when it was claimed before (by this or another process).
    pub async fn claim_fire(
        &self,
        pipeline: &str,
        tenant: &str,
        fire_at: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        let at = fire_at.timestamp_millis();
        let doing =
            || format!("claiming the schedule fire of {pipeline} for tenant {tenant} at {fire_at}");
        with_pool!(&self.pool, |pool| {
            let mut tx = pool.begin_write(&doing()).await?;
            let inserted = sqlx::query(
                "INSERT INTO schedule_fires (pipeline, tenant, fire_at, node, claimed_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (pipeline, tenant, fire_at) DO NOTHING",
            )
            .bind(pipeline)
            .bind(tenant)
            .bind(at)
            .bind(process_owner())
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .doing(doing)?
            .rows_affected()
                == 1;
            if inserted {
                sqlx::query(
                    "DELETE FROM schedule_fires WHERE pipeline = $1 AND tenant = $2 AND fire_at < $3",
                )
                .bind(pipeline)
                .bind(tenant)
                .bind(at - FIRE_RETENTION_MS)
                .execute(&mut *tx)
                .await
                .doing(|| format!("pruning old schedule fires of {pipeline} for tenant {tenant}"))?;
            }
            tx.commit().await.doing(doing)?;
            Ok(inserted)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::contract::contract_tests;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    contract_tests! {
        #[tokio::test]
        async fn a_fire_is_claimed_once_per_key_and_time(db) {
            let l = &db.ledger;
            let t = at("2026-03-01T10:00:00Z");
            assert!(l.claim_fire("p", "acme", t).await.unwrap());
            assert!(!l.claim_fire("p", "acme", t).await.unwrap());
            // Another tenant, another pipeline, another time: each its own claim.
            assert!(l.claim_fire("p", "globex", t).await.unwrap());
            assert!(l.claim_fire("q", "acme", t).await.unwrap());
            let later = at("2026-03-01T10:00:02Z");
            assert!(l.claim_fire("p", "acme", later).await.unwrap());
            assert!(!l.claim_fire("p", "acme", later).await.unwrap());
            // A second handle on the same file (a restarted process) sees the claims.
            let again = db.reopen().await;
            assert!(!again.claim_fire("p", "acme", t).await.unwrap());
        }

        #[tokio::test]
        async fn the_last_fire_is_the_latest_claim_and_survives_pruning(db) {
            let l = &db.ledger;
            assert_eq!(l.last_fire("p", "acme").await.unwrap(), None);
            let first = at("2026-03-01T10:00:00Z");
            let second = at("2026-03-03T10:00:00Z");
            l.claim_fire("p", "acme", first).await.unwrap();
            assert_eq!(l.last_fire("p", "acme").await.unwrap(), Some(first));
            l.claim_fire("p", "acme", second).await.unwrap();
            assert_eq!(l.last_fire("p", "acme").await.unwrap(), Some(second));
            assert_eq!(l.last_fire("p", "globex").await.unwrap(), None);
            // The older claim, two days before the newest, was pruned.
            assert_eq!(db.count("schedule_fires").await, 1);
        }
    }
}
