//! Shared rate budgets: one `rate_budgets` row per tenant × family holding the shared
//! schedule (the theoretical arrival time after every slot booked so far), the latest
//! learned rate and when it was published. Each booking is one atomic upsert, so nodes
//! booking at once get disjoint slots on both backends. The limiter's side is
//! `crate::api::limiter` ([`BudgetShare`]).

use sqlx::Row;

use super::backend::with_pool;
use super::{DbContext, Ledger, LedgerError, now_ms};
use crate::api::limiter::{BudgetShare, Grant, ShareError, ShareFuture, Update};

impl Ledger {
    /// Books `count` slots `interval_us` apart for `tenant` × `family`: the first at
    /// `now_us` or after the last slot booked before, whichever is later. Returns the
    /// first slot and the published rate.
    pub async fn reserve_budget(
        &self,
        tenant: &str,
        family: &str,
        count: u32,
        interval_us: i64,
        now_us: i64,
    ) -> Result<Grant, LedgerError> {
        let span = i64::from(count).saturating_mul(interval_us.max(0));
        let doing =
            || format!("booking {count} slot(s) of rate budget {family} of tenant {tenant}");
        let row = with_pool!(&self.pool, |pool| {
            let row = sqlx::query(
                "INSERT INTO rate_budgets (tenant, family, tat_us, updated_at) \
                 VALUES ($1, $2, $3 + $4, $5) \
                 ON CONFLICT (tenant, family) DO UPDATE SET \
                 tat_us = (CASE WHEN rate_budgets.tat_us > $3 THEN rate_budgets.tat_us ELSE $3 END) + $4, \
                 updated_at = $5 \
                 RETURNING tat_us, rate, rate_at_us",
            )
            .bind(tenant)
            .bind(family)
            .bind(now_us)
            .bind(span)
            .bind(now_ms())
            .fetch_one(pool)
            .await
            .doing(doing)?;
            (
                row.get::<i64, _>(0),
                row.get::<Option<f64>, _>(1),
                row.get::<Option<i64>, _>(2),
            )
        });
        let (tat_us, rate, rate_at_us) = row;
        Ok(Grant {
            first_us: tat_us - span,
            learned: rate.zip(rate_at_us),
        })
    }

    /// Applies `update` to `tenant` × `family`: no slot before `not_before_us`, and a
    /// newly learned rate.
    pub async fn update_budget(
        &self,
        tenant: &str,
        family: &str,
        update: Update,
        now_us: i64,
    ) -> Result<(), LedgerError> {
        let doing = || format!("updating rate budget {family} of tenant {tenant}");
        let rate = update.rate.filter(|r| r.is_finite() && *r > 0.0);
        with_pool!(&self.pool, |pool| sqlx::query(
            "INSERT INTO rate_budgets (tenant, family, tat_us, rate, rate_at_us, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant, family) DO UPDATE SET \
             tat_us = CASE WHEN rate_budgets.tat_us > $3 THEN rate_budgets.tat_us ELSE $3 END, \
             rate = COALESCE($4, rate_budgets.rate), \
             rate_at_us = COALESCE($5, rate_budgets.rate_at_us), \
             updated_at = $6",
        )
        .bind(tenant)
        .bind(family)
        .bind(update.not_before_us.unwrap_or(0))
        .bind(rate)
        .bind(rate.map(|_| now_us))
        .bind(now_ms())
        .execute(pool)
        .await
        .map(|_| ())
        .doing(doing))
    }
}

fn share_error(tenant: &str, family: &str, e: LedgerError) -> ShareError {
    ShareError {
        tenant: tenant.to_string(),
        family: family.to_string(),
        message: e.to_string(),
    }
}

impl BudgetShare for Ledger {
    fn reserve<'a>(
        &'a self,
        tenant: &'a str,
        family: &'a str,
        count: u32,
        interval_us: i64,
        now_us: i64,
    ) -> ShareFuture<'a, Grant> {
        Box::pin(async move {
            self.reserve_budget(tenant, family, count, interval_us, now_us)
                .await
                .map_err(|e| share_error(tenant, family, e))
        })
    }

    fn update<'a>(
        &'a self,
        tenant: &'a str,
        family: &'a str,
        update: Update,
        now_us: i64,
    ) -> ShareFuture<'a, ()> {
        Box::pin(async move {
            self.update_budget(tenant, family, update, now_us)
                .await
                .map_err(|e| share_error(tenant, family, e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::contract::contract_tests;

    const T0: i64 = 1_800_000_000_000_000;

    contract_tests! {
        /// Two processes booking one family get consecutive, disjoint batches; a family or
        /// tenant of its own has its own schedule; an idle budget starts again at now.
        #[tokio::test]
        async fn bookings_from_two_processes_follow_one_schedule(db) {
            let a = &db.ledger;
            let b = db.reopen().await;
            let first = a.reserve_budget("acme", "search", 5, 1_000, T0).await.unwrap();
            assert_eq!(first, Grant { first_us: T0, learned: None });
            let second = b.reserve_budget("acme", "search", 5, 1_000, T0 + 10).await.unwrap();
            assert_eq!(second.first_us, T0 + 5_000);
            let third = a.reserve_budget("acme", "search", 2, 1_000, T0 + 20).await.unwrap();
            assert_eq!(third.first_us, T0 + 10_000);
            let other = b.reserve_budget("acme", "download", 1, 1_000, T0).await.unwrap();
            assert_eq!(other.first_us, T0);
            let globex = b.reserve_budget("globex", "search", 1, 1_000, T0).await.unwrap();
            assert_eq!(globex.first_us, T0);
            let later = a.reserve_budget("acme", "search", 1, 1_000, T0 + 60_000).await.unwrap();
            assert_eq!(later.first_us, T0 + 60_000);
        }

        /// Processes booking at the same time never get overlapping slots.
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_bookings_are_disjoint(db) {
            let mut handles = Vec::new();
            for _ in 0..4 {
                handles.push(db.reopen().await);
            }
            let tasks: Vec<_> = handles
                .into_iter()
                .map(|l| {
                    tokio::spawn(async move {
                        let mut firsts = Vec::new();
                        for _ in 0..10 {
                            firsts.push(l.reserve_budget("acme", "search", 3, 100, T0).await.unwrap().first_us);
                        }
                        l.close().await;
                        firsts
                    })
                })
                .collect();
            let mut firsts = Vec::new();
            for t in tasks {
                firsts.extend(t.await.unwrap());
            }
            firsts.sort();
            let expected: Vec<i64> = (0..40).map(|i| T0 + i * 300).collect();
            assert_eq!(firsts, expected);
        }

        /// A pause pushes the schedule (never pulls it back), a published rate reaches the
        /// other process with its time, and a pause alone keeps the rate.
        #[tokio::test]
        async fn pauses_and_learned_rates_reach_every_process(db) {
            let a = &db.ledger;
            let b = db.reopen().await;
            let pause = Update { not_before_us: Some(T0 + 2_000_000), rate: Some(19.5) };
            a.update_budget("acme", "search", pause, T0).await.unwrap();
            let seen = b.reserve_budget("acme", "search", 1, 1_000, T0).await.unwrap();
            assert_eq!(seen, Grant { first_us: T0 + 2_000_000, learned: Some((19.5, T0)) });
            let earlier = Update { not_before_us: Some(T0 + 1_000), rate: None };
            b.update_budget("acme", "search", earlier, T0 + 5).await.unwrap();
            let read = a.reserve_budget("acme", "search", 0, 1_000, T0 + 6).await.unwrap();
            assert_eq!(read, Grant { first_us: T0 + 2_001_000, learned: Some((19.5, T0)) });
            assert_eq!(db.count("rate_budgets").await, 1);
        }
    }
}
