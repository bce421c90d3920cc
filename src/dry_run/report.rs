//! What a dry run would have changed: the JSON form (`"dry_run"` beside the summary in
//! `--json`) and a few human lines (counts, then the first changes).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Change;
use crate::terminal::escape;

/// Changes listed one per line in the human report; `--json` lists every one.
const SHOWN: usize = 100;

/// `{"changes": [...], "counts": {"PUT": n, "write": n, ...}}`.
pub fn to_json(changes: &[Change]) -> Value {
    json!({ "counts": counts(changes), "changes": changes })
}

/// How many changes of each kind: API calls by method, then `write` and `delete`.
fn counts(changes: &[Change]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for change in changes {
        let kind = match change {
            Change::Api { method, .. } => method.clone(),
            Change::Write { .. } => "write".into(),
            Change::Delete { .. } => "delete".into(),
        };
        *out.entry(kind).or_default() += 1;
    }
    out
}

/// One change as a line.
fn line(change: &Change) -> String {
    match change {
        Change::Api { method, path, body } => match body {
            Some(body) => format!("{method} {} {}", escape(path), escape(body)),
            None => format!("{method} {}", escape(path)),
        },
        Change::Write {
            store,
            key,
            bytes,
            sha256,
        } => format!(
            "write {} in {} ({bytes} bytes, sha256 {})",
            escape(key),
            escape(store),
            &sha256[..sha256.len().min(16)]
        ),
        Change::Delete { store, key } => format!("delete {} in {}", escape(key), escape(store)),
    }
}

/// The human report: says nothing was changed, then what would have been.
pub fn lines(changes: &[Change]) -> Vec<String> {
    if changes.is_empty() {
        return vec![
            "dry run: nothing would have changed (no mutating API call, no store write)".into(),
        ];
    }
    let counts: Vec<String> = counts(changes)
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    let mut out = vec![format!(
        "dry run: nothing was sent or stored; {} change(s) would have been made ({}):",
        changes.len(),
        counts.join(", ")
    )];
    out.extend(changes.iter().take(SHOWN).map(|c| format!("  {}", line(c))));
    if changes.len() > SHOWN {
        out.push(format!(
            "  … and {} more (--json lists every one)",
            changes.len() - SHOWN
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(id: u32) -> Change {
        Change::Api {
            method: "PUT".into(),
            path: format!("/api/v2/recordings/{id}/retention"),
            body: Some(r#"{"retentionDays":365}"#.into()),
        }
    }

    #[test]
    fn lines_count_each_kind_and_cut_long_lists() {
        let mut changes: Vec<Change> = (0..150).map(put).collect();
        changes.push(Change::Write {
            store: "fs:///out".into(),
            key: "reports/r.json".into(),
            bytes: 12,
            sha256: "ab".repeat(32),
        });
        let text = lines(&changes);
        assert_eq!(
            text[0],
            "dry run: nothing was sent or stored; 151 change(s) would have been made (PUT 150, write 1):"
        );
        assert_eq!(
            text[1],
            r#"  PUT /api/v2/recordings/0/retention {"retentionDays":365}"#
        );
        assert_eq!(text.len(), 1 + SHOWN + 1);
        assert!(text.last().unwrap().contains("51 more"), "{text:?}");
        let json = to_json(&changes);
        assert_eq!(json["counts"]["PUT"], 150);
        assert_eq!(json["changes"].as_array().unwrap().len(), 151);
        assert_eq!(json["changes"][150]["kind"], "write");
    }

    #[test]
    fn an_empty_dry_run_says_so() {
        assert!(lines(&[])[0].contains("nothing would have changed"));
    }
}
