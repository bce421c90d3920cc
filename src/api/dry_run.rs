//! The API side of `--dry-run` (see [`crate::dry_run`]): which calls change something
//! (every method but GET, HEAD and OPTIONS), what is recorded of one (method, masked path,
//! a short body), and the answer a script gets instead: `{"dry_run": true}`. Read-only
//! queries sent by POST (searches) go through `Api::query` instead and are sent.

use reqwest::Method;
use serde_json::{Value, json};

use crate::dry_run::{Change, DryRun};

/// Characters of a request body kept in the record.
const BODY_CHARS: usize = 300;

/// Whether `method` asks the server to change something.
pub fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// `body` as compact JSON, cut to [`BODY_CHARS`] characters (`…` marks a cut).
pub fn summarize_body(body: &Value) -> String {
    let text = body.to_string();
    match text.char_indices().nth(BODY_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

/// Records the call that was not sent and returns what the script gets instead.
pub fn pretend(dry: &DryRun, method: &Method, shown_path: &str, body: Option<&Value>) -> Value {
    dry.record(Change::Api {
        method: method.to_string(),
        path: shown_path.to_string(),
        body: body.map(summarize_body),
    });
    json!({ "dry_run": true })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_are_not_mutating() {
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(!is_mutating(&m), "{m}");
        }
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(is_mutating(&m), "{m}");
        }
    }

    #[test]
    fn long_bodies_are_cut_on_a_character_boundary() {
        let body = json!({ "note": "é".repeat(400) });
        let text = summarize_body(&body);
        assert_eq!(text.chars().count(), BODY_CHARS + 1);
        assert!(text.ends_with('…'));
        assert_eq!(summarize_body(&json!({"a": 1})), r#"{"a":1}"#);
    }
}
