//! The batched ledger writer: workers send item updates and audit events over a bounded
//! channel; one task writes whatever has queued up in a single transaction. A flush
//! waits until everything sent before it is durable.
//!
//! A busy database is retried with backoff. A batch that still cannot be written is never
//! dropped quietly: each lost audit event is logged in full, the writer refuses further
//! writes, [`LedgerWriter::failed`] fires so the run stops, and every later flush fails
//! with the counts of what was lost.
//!
//! A run's writer is fenced by its run id ([`LedgerWriter::spawn_for_run`]): an update of an
//! item another run has leased since is refused and logged, not written over the newer
//! attempt's result.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{AuditEvent, ItemUpdate, Ledger, LedgerError};

/// The most messages written in one transaction.
const MAX_BATCH: usize = 2048;

/// Tries of one batch while the database answers busy, and the backoff between them
/// (each try also waits up to the connection's busy timeout for the lock).
const WRITE_TRIES: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

enum Msg {
    Update(ItemUpdate),
    Audit(AuditEvent),
    Flush(oneshot::Sender<()>),
}

/// What the writer task and its handles share.
#[derive(Default)]
struct WriterState {
    /// Why writing stopped, once it has.
    cause: Mutex<Option<String>>,
    lost_updates: AtomicUsize,
    lost_audits: AtomicUsize,
    failed: CancellationToken,
}

impl WriterState {
    fn error(&self) -> Option<LedgerError> {
        let cause = self
            .cause
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        Some(LedgerError::WriteFailed {
            lost_updates: self.lost_updates.load(SeqCst),
            lost_audits: self.lost_audits.load(SeqCst),
            cause,
        })
    }

    /// Counts and logs what could not be written; the audit events in full, so nothing
    /// auditable disappears without a trace.
    fn lose(&self, updates: &[ItemUpdate], audits: &[AuditEvent]) {
        self.lost_updates.fetch_add(updates.len(), SeqCst);
        self.lost_audits.fetch_add(audits.len(), SeqCst);
        for u in updates {
            tracing::error!(item = %crate::terminal::escape(&u.key), state = u.state.as_str(), "item state not written to the ledger");
        }
        for (pipeline, tenant, run_id, kind, data) in audits {
            tracing::error!(
                pipeline,
                tenant,
                run_id,
                kind,
                data,
                "audit event not written to the ledger"
            );
        }
    }
}

/// Handle to the writer task. Cheap to clone.
#[derive(Clone)]
pub struct LedgerWriter {
    tx: mpsc::Sender<Msg>,
    state: Arc<WriterState>,
}

impl LedgerWriter {
    /// Starts the writer task on the current runtime. Its updates are written whoever holds
    /// the items' leases.
    pub fn spawn(ledger: Ledger) -> LedgerWriter {
        Self::start(ledger, None)
    }

    /// Starts the writer of run `run_id`: an item update is written only while no other run
    /// has leased the item since (a run taken over cannot overwrite the newer attempt).
    pub fn spawn_for_run(ledger: Ledger, run_id: &str) -> LedgerWriter {
        Self::start(ledger, Some(run_id.into()))
    }

    fn start(ledger: Ledger, fence: Option<Arc<str>>) -> LedgerWriter {
        let (tx, rx) = mpsc::channel(8192);
        let state = Arc::new(WriterState::default());
        tokio::spawn(write_loop(ledger, fence, rx, state.clone()));
        LedgerWriter { tx, state }
    }

    fn refuse_if_failed(&self) -> Result<(), LedgerError> {
        match self.state.error() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Queues an item update (async callers).
    pub async fn update(&self, update: ItemUpdate) -> Result<(), LedgerError> {
        self.refuse_if_failed()?;
        self.tx
            .send(Msg::Update(update))
            .await
            .map_err(|_| LedgerError::WriterGone)
    }

    /// Queues an item update from a blocking thread.
    pub fn update_blocking(&self, update: ItemUpdate) -> Result<(), LedgerError> {
        self.refuse_if_failed()?;
        self.tx
            .blocking_send(Msg::Update(update))
            .map_err(|_| LedgerError::WriterGone)
    }

    /// Queues an audit event from a blocking thread.
    pub fn audit_blocking(&self, event: AuditEvent) -> Result<(), LedgerError> {
        self.refuse_if_failed()?;
        self.tx
            .blocking_send(Msg::Audit(event))
            .map_err(|_| LedgerError::WriterGone)
    }

    /// Waits until everything queued before this call is written; fails if any write failed.
    pub async fn flush(&self) -> Result<(), LedgerError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Msg::Flush(done))
            .await
            .map_err(|_| LedgerError::WriterGone)?;
        wait.await.map_err(|_| LedgerError::WriterGone)?;
        self.refuse_if_failed()
    }

    /// Fires when a write has failed for good (the run must stop).
    pub fn failed(&self) -> CancellationToken {
        self.state.failed.clone()
    }
}

async fn write_loop(
    ledger: Ledger,
    fence: Option<Arc<str>>,
    mut rx: mpsc::Receiver<Msg>,
    state: Arc<WriterState>,
) {
    let mut updates = Vec::new();
    let mut audits = Vec::new();
    let mut waiters = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut count = 0;
        while let Some(msg) = next.take() {
            match msg {
                Msg::Update(u) => updates.push(u),
                Msg::Audit(a) => audits.push(a),
                Msg::Flush(w) => waiters.push(w),
            }
            count += 1;
            if count < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if state.failed.is_cancelled() {
            // Sent before the sender could see the failure: not written either.
            state.lose(&updates, &audits);
        } else if !(updates.is_empty() && audits.is_empty())
            && let Err(err) = write_with_retry(&ledger, fence.as_deref(), &updates, &audits).await
        {
            tracing::error!(
                error = %err,
                updates = updates.len(),
                audits = audits.len(),
                "ledger write failed; the run stops"
            );
            *state.cause.lock().unwrap_or_else(|e| e.into_inner()) = Some(err.to_string());
            state.lose(&updates, &audits);
            state.failed.cancel();
        }
        updates.clear();
        audits.clear();
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

/// Writes one batch, trying again with backoff while the database is busy.
async fn write_with_retry(
    ledger: &Ledger,
    fence: Option<&str>,
    updates: &[ItemUpdate],
    audits: &[AuditEvent],
) -> Result<(), LedgerError> {
    let mut delay = FIRST_BACKOFF;
    let mut tries = 1;
    loop {
        match ledger.write_batch_fenced(updates, audits, fence).await {
            Ok(_refused) => return Ok(()),
            Err(err) if err.is_busy() && tries < WRITE_TRIES => {
                tracing::warn!(error = %err, tries, "ledger busy; writing the batch again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_BACKOFF);
                tries += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{AdmitItem, ItemFilter, ItemState};
    use sqlx::Connection;

    fn done(key: &str) -> ItemUpdate {
        ItemUpdate {
            pipeline: "p".into(),
            tenant: "t".into(),
            key: key.into(),
            state: ItemState::Done,
            attempts: 1,
            next_at: None,
            result: Some("null".into()),
            last_error: None,
            script_hash: None,
        }
    }

    fn event(kind: &str) -> AuditEvent {
        ("p".into(), "t".into(), "r".into(), kind.into(), "{}".into())
    }

    #[tokio::test]
    async fn flush_makes_queued_updates_visible() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open_dir(dir.path()).await.unwrap();
        let items: Vec<_> = (0..500)
            .map(|i| AdmitItem {
                key: format!("k{i}"),
                payload: "1".into(),
            })
            .collect();
        l.admit("p", "t", "r", "h", crate::ledger::now_ms(), &items)
            .await
            .unwrap();
        let w = LedgerWriter::spawn(l.clone());
        for i in 0..500 {
            w.update(done(&format!("k{i}"))).await.unwrap();
        }
        w.flush().await.unwrap();
        let counts = l.count_items(&ItemFilter::default()).await.unwrap();
        assert_eq!(counts, vec![("done".to_string(), 500)]);
    }

    /// Another process holding the write lock for a while (longer than the busy timeout).
    async fn hold_write_lock(path: &std::path::Path) -> sqlx::SqliteConnection {
        let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap();
        other
    }

    #[tokio::test]
    async fn a_busy_ledger_is_written_again_until_the_lock_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let l = Ledger::open_file_with(&path, Duration::from_millis(20))
            .await
            .unwrap();
        let mut other = hold_write_lock(&path).await;
        let w = LedgerWriter::spawn(l.clone());
        tokio::task::spawn_blocking({
            let w = w.clone();
            move || w.audit_blocking(event("HELD")).unwrap()
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
        w.flush()
            .await
            .expect("the batch is written once the lock is free");
        assert_eq!(l.audit_of_run("r").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_write_that_keeps_failing_stops_the_writer_loudly_with_what_was_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let l = Ledger::open_file_with(&path, Duration::from_millis(5))
            .await
            .unwrap();
        let _other = hold_write_lock(&path).await;
        let w = LedgerWriter::spawn(l.clone());
        let failed = w.failed();
        let blocking = w.clone();
        tokio::task::spawn_blocking(move || blocking.audit_blocking(event("A")).unwrap())
            .await
            .unwrap();
        let err = w.flush().await.unwrap_err().to_string();
        assert!(failed.is_cancelled(), "the run is told to stop");
        assert!(
            err.contains("0 item update(s) and 1 audit event(s) could not be written")
                && err.contains("database is locked"),
            "{err}"
        );
        let refused = w.update(done("k2")).await.unwrap_err().to_string();
        assert!(refused.contains("could not be written"), "{refused}");
    }
}
