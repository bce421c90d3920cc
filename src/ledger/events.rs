//! Webhook events received by `cxpipe serve`: recorded once per (tenant, pipeline, event
//! id) and committed before the sender is acknowledged, then marked handed once the
//! pipeline's `on_event` has taken them. Events acknowledged but not yet handed survive a
//! crash and are handed by the next start.

use sqlx::Row;

use super::backend::{BeginWrite, with_pool};
use super::{DbContext, Ledger, LedgerError, now_ms};

/// A recorded webhook event that has not been handed to its pipeline yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub event_id: String,
    /// When it was received, ms since the epoch.
    pub received_at: i64,
    /// The request body as received (JSON text).
    pub body: String,
}

impl Ledger {
    /// Records an event for tenant × pipeline unless its id was recorded before. Returns
    /// true when it is new, false for a replay. The row is committed when this returns, so
    /// the sender may be acknowledged.
    pub async fn record_event_once(
        &self,
        tenant: &str,
        pipeline: &str,
        event_id: &str,
        body: &str,
    ) -> Result<bool, LedgerError> {
        let doing = || format!("recording webhook event {event_id} for {pipeline} of {tenant}");
        with_pool!(&self.pool, |pool| {
            let mut tx = pool.begin_write(&doing()).await?;
            let inserted = sqlx::query(
                "INSERT INTO webhook_events (tenant, pipeline, event_id, received_at, body) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, pipeline, event_id) DO NOTHING",
            )
            .bind(tenant)
            .bind(pipeline)
            .bind(event_id)
            .bind(now_ms())
            .bind(body)
            .execute(&mut *tx)
            .await
            .doing(doing)?
            .rows_affected();
            tx.commit().await.doing(doing)?;
            Ok(inserted == 1)
        })
    }

    /// The events of tenant × pipeline recorded but not yet handed, oldest first, at most
    /// `limit`.
    pub async fn unhanded_events(
        &self,
        tenant: &str,
        pipeline: &str,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, LedgerError> {
        with_pool!(&self.pool, |pool| Ok(sqlx::query(
            "SELECT event_id, received_at, body FROM webhook_events \
             WHERE tenant = $1 AND pipeline = $2 AND handed_at IS NULL \
             ORDER BY received_at, event_id LIMIT $3",
        )
        .bind(tenant)
        .bind(pipeline)
        .bind(limit)
        .fetch_all(pool)
        .await
        .doing(|| format!("listing unhanded webhook events of {pipeline} for {tenant}"))?
        .iter()
        .map(|r| StoredEvent {
            event_id: r.get(0),
            received_at: r.get(1),
            body: r.get(2),
        })
        .collect()))
    }

    /// Marks an event handed to its pipeline (its `on_event` admitted what it emitted).
    /// Returns false when no such unhanded event exists.
    pub async fn mark_event_handed(
        &self,
        tenant: &str,
        pipeline: &str,
        event_id: &str,
    ) -> Result<bool, LedgerError> {
        let doing =
            || format!("marking webhook event {event_id} of {pipeline} for {tenant} handed");
        with_pool!(&self.pool, |pool| {
            let mut tx = pool.begin_write(&doing()).await?;
            let changed = sqlx::query(
                "UPDATE webhook_events SET handed_at = $1 \
                 WHERE tenant = $2 AND pipeline = $3 AND event_id = $4 AND handed_at IS NULL",
            )
            .bind(now_ms())
            .bind(tenant)
            .bind(pipeline)
            .bind(event_id)
            .execute(&mut *tx)
            .await
            .doing(doing)?
            .rows_affected();
            tx.commit().await.doing(doing)?;
            Ok(changed == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::ledger::contract::contract_tests;

    contract_tests! {
        #[tokio::test]
        async fn an_event_id_is_recorded_once_per_tenant_and_pipeline(db) {
            let ledger = &db.ledger;
            assert!(
                ledger
                    .record_event_once("acme", "dl", "e1", "{}")
                    .await
                    .unwrap()
            );
            assert!(
                !ledger
                    .record_event_once("acme", "dl", "e1", "{}")
                    .await
                    .unwrap()
            );
            // The same id for another pipeline or tenant is another event.
            assert!(
                ledger
                    .record_event_once("acme", "tr", "e1", "{}")
                    .await
                    .unwrap()
            );
            assert!(
                ledger
                    .record_event_once("beta", "dl", "e1", "{}")
                    .await
                    .unwrap()
            );
        }

        #[tokio::test]
        async fn a_recorded_event_survives_a_reopen_until_it_is_handed(db) {
            {
                let ledger = &db.ledger;
                ledger
                    .record_event_once("acme", "dl", "e1", r#"{"eventId":"e1"}"#)
                    .await
                    .unwrap();
                ledger
                    .record_event_once("acme", "dl", "e2", r#"{"eventId":"e2"}"#)
                    .await
                    .unwrap();
                ledger.close().await;
            }
            let ledger = db.reopen().await;
            let pending = ledger.unhanded_events("acme", "dl", 10).await.unwrap();
            let ids: Vec<_> = pending.iter().map(|e| e.event_id.as_str()).collect();
            assert_eq!(ids, ["e1", "e2"]);
            assert_eq!(pending[0].body, r#"{"eventId":"e1"}"#);
            assert!(ledger.mark_event_handed("acme", "dl", "e1").await.unwrap());
            assert!(!ledger.mark_event_handed("acme", "dl", "e1").await.unwrap());
            let pending = ledger.unhanded_events("acme", "dl", 10).await.unwrap();
            assert_eq!(pending.len(), 1);
            assert_eq!(pending[0].event_id, "e2");
            assert!(
                ledger
                    .unhanded_events("beta", "dl", 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
            // A handed event is still a replay when delivered again.
            assert!(
                !ledger
                    .record_event_once("acme", "dl", "e1", "{}")
                    .await
                    .unwrap()
            );
        }
    }
}
