//! Next-link pagination: the response carries the next page's URL (`_links.next` of the
//! real `/contacts/completed`, `links.next` of analytics); it is followed as given. The
//! walk ends when the link is missing, null or empty.

use serde_json::Value;

use super::{PageRequest, PageSpec};
use crate::api::json_path;
use crate::api::path::ApiPath;

/// Position given as a URL.
#[derive(Clone, Debug)]
pub struct NextLinkStyle {
    next: String,
    last: Option<String>,
}

impl NextLinkStyle {
    /// `next` defaults to `_links.next`.
    pub fn new(spec: &PageSpec) -> Self {
        NextLinkStyle {
            next: spec.next.clone().unwrap_or_else(|| "_links.next".into()),
            last: None,
        }
    }

    pub fn advance(&mut self, request: &mut PageRequest, response: &Value) -> Result<bool, String> {
        let link = json_path::get(response, &self.next);
        // HAL-style links are objects with an href.
        let link = match link {
            Some(Value::Object(map)) => map.get("href"),
            other => other,
        };
        let Some(link) = json_path::text(link) else {
            return Ok(false);
        };
        if self.last.as_deref() == Some(link.as_str()) {
            return Err(format!("the link at {} did not change", self.next));
        }
        request.target = ApiPath::Link(link.clone());
        request.query.clear();
        self.last = Some(link);
        Ok(true)
    }
}
