//! The batched ledger writer: workers send item updates and audit events over a bounded
//! channel; one task writes whatever has queued up in a single transaction. A flush
//! waits until everything sent before it is durable.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::{ItemUpdate, Ledger, LedgerError};

/// The most messages written in one transaction.
const MAX_BATCH: usize = 2048;

/// An audit event waiting to be chained: pipeline, tenant, run id, kind, data (JSON).
pub type AuditEvent = (String, String, String, String, String);

enum Msg {
    Update(ItemUpdate),
    Audit(AuditEvent),
    Flush(oneshot::Sender<()>),
}

/// Handle to the writer task. Cheap to clone.
#[derive(Clone)]
pub struct LedgerWriter {
    tx: mpsc::Sender<Msg>,
    failure: Arc<Mutex<Option<String>>>,
}

impl LedgerWriter {
    /// Starts the writer task on the current runtime.
    pub fn spawn(ledger: Ledger) -> LedgerWriter {
        let (tx, rx) = mpsc::channel(8192);
        let failure = Arc::new(Mutex::new(None));
        tokio::spawn(write_loop(ledger, rx, failure.clone()));
        LedgerWriter { tx, failure }
    }

    /// Queues an item update (async callers).
    pub async fn update(&self, update: ItemUpdate) -> Result<(), LedgerError> {
        self.tx
            .send(Msg::Update(update))
            .await
            .map_err(|_| LedgerError::WriterGone)
    }

    /// Queues an item update from a blocking thread.
    pub fn update_blocking(&self, update: ItemUpdate) -> Result<(), LedgerError> {
        self.tx
            .blocking_send(Msg::Update(update))
            .map_err(|_| LedgerError::WriterGone)
    }

    /// Queues an audit event from a blocking thread.
    pub fn audit_blocking(&self, event: AuditEvent) -> Result<(), LedgerError> {
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
        match self.failure.lock().expect("writer failure lock").clone() {
            Some(msg) => Err(LedgerError::Invalid(format!(
                "an earlier write failed: {msg}"
            ))),
            None => Ok(()),
        }
    }
}

async fn write_loop(
    ledger: Ledger,
    mut rx: mpsc::Receiver<Msg>,
    failure: Arc<Mutex<Option<String>>>,
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
        let result = write_batch(&ledger, &updates, &audits).await;
        if let Err(err) = result {
            tracing::error!(error = %err, updates = updates.len(), "ledger write failed");
            failure
                .lock()
                .expect("writer failure lock")
                .get_or_insert(err.to_string());
        }
        updates.clear();
        audits.clear();
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

async fn write_batch(
    ledger: &Ledger,
    updates: &[ItemUpdate],
    audits: &[AuditEvent],
) -> Result<(), LedgerError> {
    if !updates.is_empty() {
        ledger.apply(updates).await?;
    }
    if !audits.is_empty() {
        ledger.append_audit(audits).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{AdmitItem, ItemFilter, ItemState};

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
            w.update(ItemUpdate {
                pipeline: "p".into(),
                tenant: "t".into(),
                key: format!("k{i}"),
                state: ItemState::Done,
                attempts: 1,
                next_at: None,
                result: Some("null".into()),
                last_error: None,
            })
            .await
            .unwrap();
        }
        w.flush().await.unwrap();
        let counts = l.count_items(&ItemFilter::default()).await.unwrap();
        assert_eq!(counts, vec![("done".to_string(), 500)]);
    }
}
