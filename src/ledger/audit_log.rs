//! Reading the audit hash chain back: filtered pages for `cxpipe audit export`, and a walk
//! over the whole chain for `cxpipe audit verify` that names the first broken link. Appending
//! lives with the other writes in `state.rs`.

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::backend::with_pool;
use super::state::audit_hash;
use super::{AuditEntry, DbContext, Ledger, LedgerError};

/// Rows read per query while walking the chain.
const WALK_PAGE: i64 = 1000;

/// Which audit entries to read. Empty fields match everything.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub tenant: Option<String>,
    pub pipeline: Option<String>,
    /// Only entries at or after this time (milliseconds since the epoch).
    pub since_ms: Option<i64>,
}

/// What is wrong with a link of the chain.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum LinkProblem {
    /// Sequence numbers must run 1, 2, 3, …: an entry was removed (or inserted).
    SeqGap { expected_seq: i64 },
    /// The entry does not point at the hash of the entry before it (removed or reordered).
    PrevHashMismatch { expected: String, found: String },
    /// The entry's content does not hash to its stored hash (edited).
    HashMismatch { computed: String, stored: String },
}

/// The first link that does not hold.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BrokenLink {
    /// Sequence number of the entry where the chain breaks.
    pub seq: i64,
    /// 1-based position of that entry in sequence order.
    pub position: u64,
    #[serde(flatten)]
    pub problem: LinkProblem,
}

impl std::fmt::Display for BrokenLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "audit entry seq {} (position {}): ",
            self.seq, self.position
        )?;
        match &self.problem {
            LinkProblem::SeqGap { expected_seq } => write!(
                f,
                "expected seq {expected_seq}: an entry was removed, inserted or reordered"
            ),
            LinkProblem::PrevHashMismatch { expected, found } => write!(
                f,
                "prev_hash is {found} but the entry before hashes to {expected}: \
                 an entry was removed or reordered"
            ),
            LinkProblem::HashMismatch { computed, stored } => write!(
                f,
                "content hashes to {computed} but the stored hash is {stored}: the entry was edited"
            ),
        }
    }
}

/// The result of walking the chain.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ChainReport {
    /// Entries checked (up to and including a broken one).
    pub entries: u64,
    /// Sequence number and hash of the last entry, when the chain holds.
    pub head_seq: Option<i64>,
    pub head_hash: Option<String>,
    /// Whether an entry with the anchor hash asked for was found (`None`: none asked for).
    pub anchor_found: Option<bool>,
    pub broken: Option<BrokenLink>,
}

impl ChainReport {
    /// The chain holds and contains the anchor when one was asked for.
    pub fn ok(&self) -> bool {
        self.broken.is_none() && self.anchor_found != Some(false)
    }
}

/// An audit row as stored, its data still the text that was hashed. Read from
/// `SELECT seq, at, pipeline, tenant, run_id, kind, data, prev_hash, hash`.
struct StoredEntry {
    seq: i64,
    at: i64,
    fields: [String; 4],
    data: String,
    prev_hash: String,
    hash: String,
}

fn stored_of<R: Row>(r: &R) -> StoredEntry
where
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    StoredEntry {
        seq: r.get(0),
        at: r.get(1),
        fields: [r.get(2), r.get(3), r.get(4), r.get(5)],
        data: r.get(6),
        prev_hash: r.get(7),
        hash: r.get(8),
    }
}

pub(super) fn entry_of<R: Row>(r: &R) -> AuditEntry
where
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let StoredEntry {
        seq,
        at,
        fields: [pipeline, tenant, run_id, kind],
        data,
        prev_hash,
        hash,
    } = stored_of(r);
    AuditEntry {
        seq,
        at,
        pipeline,
        tenant,
        run_id,
        kind,
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
        prev_hash,
        hash,
    }
}

impl Ledger {
    /// Up to `limit` entries with `seq > after_seq` matching `filter`, in chain order.
    pub async fn audit_page(
        &self,
        filter: &AuditFilter,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, LedgerError> {
        with_pool!(&self.pool, |pool| Ok(sqlx::query(
            "SELECT seq, at, pipeline, tenant, run_id, kind, data, prev_hash, hash FROM audit \
             WHERE seq > $1 AND ($2 IS NULL OR tenant = $2) AND ($3 IS NULL OR pipeline = $3) \
             AND ($4 IS NULL OR at >= $4) ORDER BY seq LIMIT $5",
        )
        .bind(after_seq)
        .bind(filter.tenant.as_deref())
        .bind(filter.pipeline.as_deref())
        .bind(filter.since_ms)
        .bind(limit)
        .fetch_all(pool)
        .await
        .doing(|| format!("reading audit entries after seq {after_seq}"))?
        .iter()
        .map(entry_of)
        .collect()))
    }

    /// Walks the whole chain in sequence order, recomputing every hash, and stops at the
    /// first link that does not hold. `anchor` is a hash recorded earlier (say, the head
    /// printed by an earlier verify): it must still be in the chain, which catches entries
    /// cut off the end.
    pub async fn verify_audit(&self, anchor: Option<&str>) -> Result<ChainReport, LedgerError> {
        let mut report = ChainReport {
            anchor_found: anchor.map(|_| false),
            ..ChainReport::default()
        };
        let (mut last_seq, mut prev_hash) = (0i64, String::new());
        loop {
            let rows: Vec<StoredEntry> = with_pool!(&self.pool, |pool| {
                sqlx::query(
                "SELECT seq, at, pipeline, tenant, run_id, kind, data, prev_hash, hash FROM audit \
                 WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(last_seq)
            .bind(WALK_PAGE)
            .fetch_all(pool)
            .await
            .doing(|| format!("reading the audit chain after seq {last_seq}"))?
            .iter()
            .map(stored_of)
            .collect()
            });
            if rows.is_empty() {
                break;
            }
            for r in rows {
                let (seq, stored_prev, stored_hash) = (r.seq, r.prev_hash, r.hash);
                report.entries += 1;
                let problem = if seq != last_seq + 1 {
                    Some(LinkProblem::SeqGap {
                        expected_seq: last_seq + 1,
                    })
                } else if stored_prev != prev_hash {
                    Some(LinkProblem::PrevHashMismatch {
                        expected: prev_hash.clone(),
                        found: stored_prev.clone(),
                    })
                } else {
                    let f = &r.fields;
                    let computed = audit_hash(
                        &stored_prev,
                        seq,
                        r.at,
                        [&f[0], &f[1], &f[2], &f[3]],
                        &r.data,
                    );
                    (computed != stored_hash).then(|| LinkProblem::HashMismatch {
                        computed,
                        stored: stored_hash.clone(),
                    })
                };
                if let Some(problem) = problem {
                    report.broken = Some(BrokenLink {
                        seq,
                        position: report.entries,
                        problem,
                    });
                    return Ok(report);
                }
                if anchor == Some(stored_hash.as_str()) {
                    report.anchor_found = Some(true);
                }
                last_seq = seq;
                prev_hash = stored_hash;
            }
        }
        if report.entries > 0 {
            report.head_seq = Some(last_seq);
            report.head_hash = Some(prev_hash);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::contract::contract_tests;

    fn ev(tenant: &str, kind: &str) -> (String, String, String, String, String) {
        (
            "p".into(),
            tenant.into(),
            "r".into(),
            kind.into(),
            format!("{{\"kind\":\"{kind}\"}}"),
        )
    }

    async fn fill(l: &Ledger, n: usize) {
        let events: Vec<_> = (0..n)
            .map(|i| ev(if i % 2 == 0 { "a" } else { "b" }, &format!("K{i}")))
            .collect();
        l.append_audit(&events).await.unwrap();
    }

    contract_tests! {
        #[tokio::test]
        async fn an_intact_chain_verifies_and_reports_its_head(db) {
            let l = &db.ledger;
            assert!(l.verify_audit(None).await.unwrap().ok(), "an empty chain holds");
            fill(l, 5).await;
            let report = l.verify_audit(None).await.unwrap();
            assert!(report.ok(), "{report:?}");
            assert_eq!((report.entries, report.head_seq), (5, Some(5)));
            let head = report.head_hash.unwrap();
            let anchored = l.verify_audit(Some(&head)).await.unwrap();
            assert_eq!(anchored.anchor_found, Some(true));
        }

        #[tokio::test]
        async fn an_edited_entry_is_named(db) {
            let l = &db.ledger;
            fill(l, 5).await;
            db.exec("UPDATE audit SET data = '{\"kind\":\"forged\"}' WHERE seq = 3",
            )
            .await;
            let broken = l.verify_audit(None).await.unwrap().broken.unwrap();
            assert_eq!(broken.seq, 3);
            assert!(matches!(broken.problem, LinkProblem::HashMismatch { .. }));
            assert!(broken.to_string().contains("edited"), "{broken}");
        }

        #[tokio::test]
        async fn a_removed_entry_is_named(db) {
            let l = &db.ledger;
            fill(l, 5).await;
            db.exec("DELETE FROM audit WHERE seq = 2").await;
            let broken = l.verify_audit(None).await.unwrap().broken.unwrap();
            assert_eq!((broken.seq, broken.position), (3, 2));
            assert_eq!(broken.problem, LinkProblem::SeqGap { expected_seq: 2 });
            // The first entry removed: the new first one points at a hash that is gone.
            db.exec("DELETE FROM audit").await;
            fill(l, 3).await;
            db.exec("DELETE FROM audit WHERE seq = 1").await;
            assert_eq!(l.verify_audit(None).await.unwrap().broken.unwrap().seq, 2);
        }

        #[tokio::test]
        async fn reordered_entries_are_named_even_with_their_seqs_renumbered(db) {
            let l = &db.ledger;
            fill(l, 5).await;
            // Swap entries 2 and 4 wholesale (their seq numbers follow their new places).
            db.exec("UPDATE audit SET seq = -2 WHERE seq = 2").await;
            db.exec("UPDATE audit SET seq = 2 WHERE seq = 4").await;
            db.exec("UPDATE audit SET seq = 4 WHERE seq = -2").await;
            let broken = l.verify_audit(None).await.unwrap().broken.unwrap();
            assert_eq!(broken.seq, 2);
            assert!(matches!(
                broken.problem,
                LinkProblem::PrevHashMismatch { .. }
            ));
        }

        #[tokio::test]
        async fn entries_cut_off_the_end_are_caught_by_an_anchor(db) {
            let l = &db.ledger;
            fill(l, 4).await;
            let head = l.verify_audit(None).await.unwrap().head_hash.unwrap();
            db.exec("DELETE FROM audit WHERE seq = 4").await;
            let report = l.verify_audit(Some(&head)).await.unwrap();
            assert!(report.broken.is_none());
            assert_eq!(report.anchor_found, Some(false));
            assert!(!report.ok());
        }

        #[tokio::test]
        async fn pages_filter_by_tenant_pipeline_and_time(db) {
            let l = &db.ledger;
            fill(l, 6).await;
            let all = l.audit_page(&AuditFilter::default(), 0, 100).await.unwrap();
            assert_eq!(all.len(), 6);
            let a = AuditFilter {
                tenant: Some("a".into()),
                ..AuditFilter::default()
            };
            let page = l.audit_page(&a, 0, 2).await.unwrap();
            assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 3]);
            let next = l.audit_page(&a, 3, 2).await.unwrap();
            assert_eq!(next.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![5]);
            let other = AuditFilter {
                pipeline: Some("q".into()),
                ..AuditFilter::default()
            };
            assert!(l.audit_page(&other, 0, 10).await.unwrap().is_empty());
            db.exec("UPDATE audit SET at = 1000 WHERE seq <= 4").await;
            let recent = AuditFilter {
                since_ms: Some(2000),
                ..AuditFilter::default()
            };
            let got = l.audit_page(&recent, 0, 10).await.unwrap();
            assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![5, 6]);
            assert_eq!(got[0].data["kind"], "K4");
        }
    }
}
