//! Where the scheduler records fires: the ledger in the daemon ([`Ledger::claim_fire`],
//! [`Ledger::last_fire`]), or memory in tests and for runs without a ledger.

use std::collections::BTreeSet;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::FireKey;
use crate::ledger::{Ledger, LedgerError};

/// The record of fires that makes each scheduled time fire once, across restarts.
pub trait FireLog: Send + Sync + 'static {
    /// The latest scheduled time fired for `key`.
    fn last_fire<'a>(
        &'a self,
        key: &'a FireKey,
    ) -> BoxFuture<'a, Result<Option<DateTime<Utc>>, LedgerError>>;

    /// True for the first claim of `key` at `at`; false when it was fired before.
    fn claim_fire<'a>(
        &'a self,
        key: &'a FireKey,
        at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool, LedgerError>>;
}

impl FireLog for Ledger {
    fn last_fire<'a>(
        &'a self,
        key: &'a FireKey,
    ) -> BoxFuture<'a, Result<Option<DateTime<Utc>>, LedgerError>> {
        Box::pin(Ledger::last_fire(self, &key.pipeline, &key.tenant))
    }

    fn claim_fire<'a>(
        &'a self,
        key: &'a FireKey,
        at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool, LedgerError>> {
        Box::pin(Ledger::claim_fire(self, &key.pipeline, &key.tenant, at))
    }
}

/// Fires kept in memory (lost when the process ends).
#[derive(Debug, Default)]
pub struct MemoryFireLog {
    fires: Mutex<BTreeSet<(FireKey, DateTime<Utc>)>>,
}

impl MemoryFireLog {
    /// Records `key` as fired at `at` (tests: a fire of an earlier process).
    pub fn record(&self, key: FireKey, at: DateTime<Utc>) {
        self.fires.lock().expect("fire log lock").insert((key, at));
    }
}

impl FireLog for MemoryFireLog {
    fn last_fire<'a>(
        &'a self,
        key: &'a FireKey,
    ) -> BoxFuture<'a, Result<Option<DateTime<Utc>>, LedgerError>> {
        let fires = self.fires.lock().expect("fire log lock");
        let last = fires
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, at)| *at)
            .max();
        Box::pin(std::future::ready(Ok(last)))
    }

    fn claim_fire<'a>(
        &'a self,
        key: &'a FireKey,
        at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool, LedgerError>> {
        let fresh = self
            .fires
            .lock()
            .expect("fire log lock")
            .insert((key.clone(), at));
        Box::pin(std::future::ready(Ok(fresh)))
    }
}
