//! Request targets: joining a path to the tenant's base URL (or accepting an absolute URL
//! on the same origin only, so the token is never sent elsewhere), adding the query, and
//! showing a URL in messages with credential-like query values masked.

use reqwest::Url;
use serde_json::Value;

use crate::api::path::ApiPath;

/// The full URL for `path` (relative to `base`, or absolute on `base`'s origin) plus
/// `query` (a map; arrays repeat the key, nulls are left out).
pub fn resolve(base: &Url, path: &ApiPath, query: Option<&Value>) -> Result<Url, String> {
    if let ApiPath::Text(text) = path {
        crate::api::path::check_text(text)?;
    }
    let absolute = matches!(path, ApiPath::Text(_) | ApiPath::Link(_));
    let path = path.as_str();
    let mut url = if absolute && (path.starts_with("http://") || path.starts_with("https://")) {
        let url = Url::parse(path).map_err(|e| e.to_string())?;
        if url.origin() != base.origin() {
            return Err(format!(
                "absolute URL is not on the tenant's origin {}",
                base.origin().ascii_serialization()
            ));
        }
        url
    } else {
        let joined = format!(
            "{}/{}",
            base.as_str().trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        Url::parse(&joined).map_err(|e| e.to_string())?
    };
    match query {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in map {
                match value {
                    Value::Null => {}
                    Value::Array(items) => {
                        for item in items {
                            pairs.append_pair(key, &query_text(item));
                        }
                    }
                    other => {
                        pairs.append_pair(key, &query_text(other));
                    }
                }
            }
        }
        Some(other) => return Err(format!("query must be a map, not {other}")),
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    Ok(url)
}

/// The path of `url` below `base`'s path (what rate families are matched against).
pub fn relative_path(base: &Url, url: &Url) -> String {
    let base_path = base.path().trim_end_matches('/');
    let path = url.path();
    path.strip_prefix(base_path).unwrap_or(path).to_string()
}

fn query_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Query keys whose values are masked in messages (presigned signatures, tokens, keys).
const SENSITIVE_QUERY_KEYS: [&str; 6] = ["sig", "token", "key", "secret", "password", "credential"];

/// Path and query for messages and logs: the origin is the tenant's, and values of
/// credential-like query parameters (`Signature`, `AWSAccessKeyId`, `pageToken`…) are `***`.
pub fn display_path(url: &Url) -> String {
    if url.query().is_none() {
        return url.path().to_string();
    }
    let pairs: Vec<String> = url
        .query_pairs()
        .map(|(key, value)| {
            let lower = key.to_ascii_lowercase();
            if SENSITIVE_QUERY_KEYS.iter().any(|s| lower.contains(s)) {
                format!("{key}=***")
            } else {
                format!("{key}={value}")
            }
        })
        .collect();
    format!("{}?{}", url.path(), pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_join_the_base_and_queries_are_added() {
        let base = Url::parse("http://h:1/inContactAPI/").unwrap();
        let url = resolve(
            &base,
            &"/contacts/completed".into(),
            Some(&json!({"top": 5, "ids": [1, 2], "x": null})),
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "http://h:1/inContactAPI/contacts/completed?ids=1&ids=2&top=5"
        );
        assert_eq!(relative_path(&base, &url), "/contacts/completed");
        let next = resolve(
            &base,
            &ApiPath::Link("http://h:1/inContactAPI/contacts/completed?skip=5".into()),
            None,
        )
        .unwrap();
        assert_eq!(next.query(), Some("skip=5"));
        assert!(
            resolve(&base, &"http://elsewhere/steal".into(), None)
                .unwrap_err()
                .contains("origin")
        );
        assert!(resolve(&base, &"/x".into(), Some(&json!([1]))).is_err());
    }

    #[test]
    fn segment_paths_stay_below_the_base() {
        let base = Url::parse("http://h:1/inContactAPI/").unwrap();
        let path = ApiPath::from_segments(["recording", "../../x?y=1#z", "download"]).unwrap();
        let url = resolve(&base, &path, Some(&json!({"channel": "combined"}))).unwrap();
        assert_eq!(
            url.as_str(),
            "http://h:1/inContactAPI/recording/..%2F..%2Fx%3Fy%3D1%23z/download?channel=combined"
        );
        let absolute = ApiPath::from_segments(["http://elsewhere"]).unwrap();
        assert_eq!(
            resolve(&base, &absolute, None).unwrap().as_str(),
            "http://h:1/inContactAPI/http%3A%2F%2Felsewhere"
        );
    }

    #[test]
    fn messages_mask_credential_like_query_values() {
        let url = Url::parse(
            "http://h/media-store/r/1.wav?AWSAccessKeyId=AK&Expires=9&Signature=abc&channel=combined",
        )
        .unwrap();
        assert_eq!(
            display_path(&url),
            "/media-store/r/1.wav?AWSAccessKeyId=***&Expires=9&Signature=***&channel=combined"
        );
        assert_eq!(display_path(&Url::parse("http://h/a/b").unwrap()), "/a/b");
    }
}
