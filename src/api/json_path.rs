//! Dotted field paths into JSON (`pagination.next_page`, `_links.next`, `jobStatus.status`):
//! read, take out, and write (creating objects on the way).

use serde_json::{Map, Value};

/// The value at `path`, if every step exists.
pub fn get<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .filter(|s| !s.is_empty())
        .try_fold(value, |v, key| match v {
            Value::Object(map) => map.get(key),
            Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
}

/// Takes the value at `path` out of `value`, leaving `null`.
pub fn take(value: &mut Value, path: &str) -> Option<Value> {
    let mut here = value;
    for key in path.split('.').filter(|s| !s.is_empty()) {
        here = match here {
            Value::Object(map) => map.get_mut(key)?,
            _ => return None,
        };
    }
    Some(here.take())
}

/// Writes `new` at `path`, replacing non-objects on the way with objects.
pub fn set(value: &mut Value, path: &str, new: Value) {
    let mut here = value;
    let keys: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    for (i, key) in keys.iter().enumerate() {
        if !here.is_object() {
            *here = Value::Object(Map::new());
        }
        let map = here.as_object_mut().expect("made an object above");
        if i + 1 == keys.len() {
            map.insert(key.to_string(), new);
            return;
        }
        here = map.entry(key.to_string()).or_insert(Value::Null);
    }
}

/// A scalar as text (`"abc"`, `42`, `true`); `None` for null, empty strings and containers.
pub fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn get_take_and_set_follow_dotted_paths() {
        let mut v =
            json!({"pagination": {"next_page": "abc"}, "data": [1, 2], "links": {"next": null}});
        assert_eq!(get(&v, "pagination.next_page"), Some(&json!("abc")));
        assert_eq!(get(&v, "data.1"), Some(&json!(2)));
        assert_eq!(text(get(&v, "links.next")), None);
        assert_eq!(take(&mut v, "data"), Some(json!([1, 2])));
        assert_eq!(v["data"], Value::Null);
        let mut body = json!({"filter": 1});
        set(&mut body, "pagination.page_token", json!("t"));
        set(&mut body, "page", json!(2));
        assert_eq!(
            body,
            json!({"filter": 1, "pagination": {"page_token": "t"}, "page": 2})
        );
        assert_eq!(text(Some(&json!(7))).as_deref(), Some("7"));
    }
}
