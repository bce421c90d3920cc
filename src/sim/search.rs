//! The seed-002 recording search model: filters (`field`/`operator`/`value`), one sort
//! key, and cursor tokens. Records are never materialised: fields are derived per index.

use std::cmp::Ordering;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::dataset::{Dataset, parse_time_ms};

/// A filter as clients send it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    pub field: String,
    #[serde(default = "eq")]
    pub operator: String,
    pub value: Value,
}

fn eq() -> String {
    "eq".to_string()
}

/// A sort key as clients send it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sort {
    pub field: String,
    #[serde(default = "asc")]
    pub direction: String,
}

fn asc() -> String {
    "asc".to_string()
}

/// What to search for (carried inside cursor tokens, so a token alone continues a search).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchQuery {
    pub filters: Vec<Filter>,
    pub sort: Vec<Sort>,
}

/// A field value derived from a record.
#[derive(Debug, PartialEq, PartialOrd)]
enum FieldValue {
    Number(f64),
    Text(String),
}

/// The fields that can be filtered and sorted on.
const FIELDS: [&str; 10] = [
    "status",
    "createdDate",
    "agentId",
    "recordingId",
    "direction",
    "channelType",
    "durationSeconds",
    "sizeBytes",
    "fileFormat",
    "mediaType",
];

fn field_value(ds: &Dataset, index: usize, field: &str, elapsed: Duration) -> FieldValue {
    match field {
        "status" => FieldValue::Text(ds.status_of(index, elapsed).as_str().to_string()),
        "createdDate" => FieldValue::Number(ds.created_ms(index) as f64),
        "agentId" => FieldValue::Number((100_000 + ds.agent_of(index)) as f64),
        "recordingId" => FieldValue::Text(ds.recording(index).id),
        "direction" => FieldValue::Text(ds.direction_of(index).to_string()),
        "channelType" => FieldValue::Text(ds.channel_type_of(index).to_string()),
        "durationSeconds" => FieldValue::Number(ds.duration_of(index) as f64),
        "sizeBytes" => FieldValue::Number(ds.combined_size(index) as f64),
        "fileFormat" => FieldValue::Text(ds.format_of(index).extension().to_string()),
        _ => FieldValue::Text(ds.format_of(index).content_type().to_string()),
    }
}

fn operand(field: &str, value: &Value) -> Option<FieldValue> {
    match value {
        Value::Number(n) => Some(FieldValue::Number(n.as_f64()?)),
        Value::String(s) if field == "createdDate" => {
            Some(FieldValue::Number(parse_time_ms(s)? as f64))
        }
        Value::String(s) if matches!(field, "agentId" | "durationSeconds" | "sizeBytes") => {
            Some(FieldValue::Number(s.parse().ok()?))
        }
        Value::String(s) => Some(FieldValue::Text(s.clone())),
        _ => None,
    }
}

fn compare(a: &FieldValue, b: &FieldValue) -> Option<Ordering> {
    match (a, b) {
        (FieldValue::Text(x), FieldValue::Text(y)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
        (FieldValue::Number(x), FieldValue::Number(y)) => x.partial_cmp(y),
        _ => None,
    }
}

/// A validated search, ready to run against a dataset.
#[derive(Debug)]
pub struct CompiledSearch {
    filters: Vec<(String, String, Vec<FieldValue>)>,
    sort_field: String,
    descending: bool,
}

impl SearchQuery {
    /// Validates fields, operators and values; the error names the bad part.
    pub fn compile(&self) -> Result<CompiledSearch, String> {
        let mut filters = Vec::new();
        for f in &self.filters {
            if !FIELDS.contains(&f.field.as_str()) {
                return Err(format!(
                    "unknown filter field {:?} (known: {})",
                    f.field,
                    FIELDS.join(", ")
                ));
            }
            let op = f.operator.to_lowercase();
            let values: Vec<&Value> = match (&op[..], &f.value) {
                ("in", Value::Array(items)) => items.iter().collect(),
                ("in", _) => {
                    return Err(format!("operator in on {} needs an array value", f.field));
                }
                ("eq" | "ne" | "gt" | "gte" | "lt" | "lte", v) => vec![v],
                _ => return Err(format!("unknown operator {:?} on {}", f.operator, f.field)),
            };
            let operands = values
                .into_iter()
                .map(|v| {
                    operand(&f.field, v).ok_or_else(|| format!("bad value {v} for {}", f.field))
                })
                .collect::<Result<Vec<_>, _>>()?;
            filters.push((f.field.clone(), op, operands));
        }
        let (sort_field, descending) = match self.sort.first() {
            None => ("createdDate".to_string(), false),
            Some(s) if FIELDS.contains(&s.field.as_str()) => {
                match s.direction.to_lowercase().as_str() {
                    "asc" => (s.field.clone(), false),
                    "desc" => (s.field.clone(), true),
                    other => {
                        return Err(format!("sort direction must be asc or desc, got {other:?}"));
                    }
                }
            }
            Some(s) => return Err(format!("unknown sort field {:?}", s.field)),
        };
        Ok(CompiledSearch {
            filters,
            sort_field,
            descending,
        })
    }

    /// Encodes a cursor continuing this search at `cursor`.
    pub fn token(&self, cursor: Cursor, page_size: usize) -> String {
        let cursor = serde_json::json!({ "q": self, "next": cursor.next, "after": cursor.after, "pageSize": page_size });
        URL_SAFE_NO_PAD.encode(cursor.to_string())
    }

    /// Decodes a cursor into (query, where to resume, page size).
    pub fn from_token(token: &str) -> Result<(SearchQuery, Cursor, usize), String> {
        let raw = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| "nextPageToken is not valid".to_string())?;
        let value: Value =
            serde_json::from_slice(&raw).map_err(|_| "nextPageToken is not valid".to_string())?;
        let query = serde_json::from_value(value["q"].clone())
            .map_err(|_| "nextPageToken is not valid".to_string())?;
        let next = value["next"].as_u64().ok_or("nextPageToken is not valid")? as usize;
        let page_size = value["pageSize"]
            .as_u64()
            .ok_or("nextPageToken is not valid")? as usize;
        let after = value["after"].as_u64().map(|a| a as usize);
        Ok((query, Cursor { next, after }, page_size))
    }
}

/// Where a search resumes: after record `after` when the order is by creation (a keyset
/// cursor, stable while statuses change), else at position `next` among the matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub next: usize,
    pub after: Option<usize>,
}

/// One page of results: record indexes, where to resume when more remain, the match count
/// and the position of the first result among all matches.
#[derive(Debug)]
pub struct Page {
    pub indexes: Vec<usize>,
    pub next: Option<Cursor>,
    pub total: usize,
    pub start: usize,
}

impl CompiledSearch {
    fn matches(&self, ds: &Dataset, index: usize, elapsed: Duration) -> bool {
        self.filters.iter().all(|(field, op, operands)| {
            let value = field_value(ds, index, field, elapsed);
            let ord = |x: &FieldValue| compare(&value, x);
            match op.as_str() {
                "eq" => ord(&operands[0]) == Some(Ordering::Equal),
                "ne" => ord(&operands[0]) != Some(Ordering::Equal),
                "gt" => ord(&operands[0]) == Some(Ordering::Greater),
                "gte" => matches!(ord(&operands[0]), Some(Ordering::Greater | Ordering::Equal)),
                "lt" => ord(&operands[0]) == Some(Ordering::Less),
                "lte" => matches!(ord(&operands[0]), Some(Ordering::Less | Ordering::Equal)),
                _ => operands.iter().any(|x| ord(x) == Some(Ordering::Equal)),
            }
        })
    }

    /// All matching indexes in result order. Creation order is index order, so the common
    /// sort needs no sorting at all.
    fn ordered_matches(&self, ds: &Dataset, elapsed: Duration) -> Vec<usize> {
        let mut hits: Vec<usize> = (0..ds.len())
            .filter(|&i| self.matches(ds, i, elapsed))
            .collect();
        if self.sort_field != "createdDate" {
            let keys: Vec<FieldValue> = hits
                .iter()
                .map(|&i| field_value(ds, i, &self.sort_field, elapsed))
                .collect();
            let mut order: Vec<usize> = (0..hits.len()).collect();
            order.sort_by(|&a, &b| {
                compare(&keys[a], &keys[b])
                    .unwrap_or(Ordering::Equal)
                    .then(hits[a].cmp(&hits[b]))
            });
            hits = order.into_iter().map(|k| hits[k]).collect();
        }
        if self.descending {
            hits.reverse();
        }
        hits
    }

    /// The page resuming at `cursor`.
    pub fn page(&self, ds: &Dataset, cursor: Cursor, page_size: usize, elapsed: Duration) -> Page {
        let hits = self.ordered_matches(ds, elapsed);
        let keyset = self.sort_field == "createdDate";
        let start = match cursor.after.filter(|_| keyset) {
            Some(after) if self.descending => hits.partition_point(|&i| i >= after),
            Some(after) => hits.partition_point(|&i| i <= after),
            None => cursor.next,
        };
        let end = (start + page_size).min(hits.len());
        let indexes = hits
            .get(start..end)
            .map(<[usize]>::to_vec)
            .unwrap_or_default();
        let next = (end < hits.len()).then(|| Cursor {
            next: end,
            after: indexes.last().copied().filter(|_| keyset),
        });
        Page {
            indexes,
            next,
            total: hits.len(),
            start,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::config::SimConfig;
    use serde_json::json;

    fn ds() -> Dataset {
        Dataset::new(
            &SimConfig {
                recordings: 300,
                ..SimConfig::default()
            }
            .without_faults(),
        )
    }

    #[test]
    fn filters_narrow_and_sort_orders() {
        let ds = ds();
        let all = SearchQuery::default().compile().unwrap().page(
            &ds,
            Cursor::default(),
            1000,
            Duration::ZERO,
        );
        assert_eq!(all.total, 300);
        assert_eq!(all.indexes[..3], [0, 1, 2]);
        let cutoff = crate::sim::dataset::rfc3339_ms(ds.created_ms(100));
        let query: SearchQuery = serde_json::from_value(json!({
            "filters": [{ "field": "createdDate", "operator": "gte", "value": cutoff }],
            "sort": [{ "field": "createdDate", "direction": "desc" }],
        }))
        .unwrap();
        let page = query
            .compile()
            .unwrap()
            .page(&ds, Cursor::default(), 10, Duration::ZERO);
        assert_eq!(page.total, 200);
        assert_eq!(page.indexes[0], 299);
        assert_eq!(
            page.next,
            Some(Cursor {
                next: 10,
                after: Some(290)
            })
        );
        let by_size: SearchQuery = serde_json::from_value(
            json!({ "sort": [{ "field": "sizeBytes", "direction": "asc" }] }),
        )
        .unwrap();
        let page = by_size
            .compile()
            .unwrap()
            .page(&ds, Cursor::default(), 300, Duration::ZERO);
        let sizes: Vec<u64> = page.indexes.iter().map(|&i| ds.combined_size(i)).collect();
        assert!(sizes.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn status_filter_is_case_insensitive_and_unknowns_are_errors() {
        let ds = ds();
        let query: SearchQuery = serde_json::from_value(
            json!({ "filters": [{ "field": "status", "operator": "eq", "value": "available" }] }),
        )
        .unwrap();
        let page = query
            .compile()
            .unwrap()
            .page(&ds, Cursor::default(), 1000, Duration::ZERO);
        assert!(page.total > 200 && page.total < 300, "{}", page.total);
        let bad: SearchQuery =
            serde_json::from_value(json!({ "filters": [{ "field": "colour", "value": 1 }] }))
                .unwrap();
        assert!(bad.compile().unwrap_err().contains("colour"));
    }

    #[test]
    fn creation_order_cursors_survive_status_changes() {
        let config = SimConfig {
            recordings: 200,
            processing_share: 0.5,
            archived_share: 0.0,
            expired_share: 0.0,
            ..SimConfig::default()
        };
        let ds = Dataset::new(&config);
        let query: SearchQuery = serde_json::from_value(
            json!({ "filters": [{ "field": "status", "value": "Available" }] }),
        )
        .unwrap();
        let search = query.compile().unwrap();
        let first = search.page(&ds, Cursor::default(), 10, Duration::ZERO);
        let last = *first.indexes.last().unwrap();
        // Later every recording is available: the cursor continues right after `last`.
        let second = search.page(&ds, first.next.unwrap(), 10, Duration::from_secs(3600));
        assert_eq!(second.indexes[0], last + 1);
    }

    #[test]
    fn tokens_round_trip() {
        let query = SearchQuery {
            filters: vec![],
            sort: vec![Sort {
                field: "sizeBytes".into(),
                direction: "desc".into(),
            }],
        };
        let cursor = Cursor {
            next: 40,
            after: Some(7),
        };
        let token = query.token(cursor, 20);
        assert_eq!(
            SearchQuery::from_token(&token).unwrap(),
            (query, cursor, 20)
        );
        assert!(SearchQuery::from_token("garbage!").is_err());
    }
}
