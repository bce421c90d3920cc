//! Cursor pagination: the response carries an opaque token at any field path
//! (`nextPageToken`, `pagination.next_page`), passed back in the query or the body. The
//! walk ends when the token is missing, null or empty; a repeated token is an error
//! rather than an endless loop.

use serde_json::{Value, json};

use super::{PageRequest, PageSpec};
use crate::api::json_path;

/// Position given by the server.
#[derive(Clone, Debug)]
pub struct CursorStyle {
    next: String,
    param: String,
    size_param: Option<String>,
    size: u64,
    last: Option<String>,
}

impl CursorStyle {
    /// Needs `next`; `param` defaults to the last segment of `next`.
    pub fn new(spec: &PageSpec, size: u64) -> Result<Self, String> {
        let next = spec
            .next
            .clone()
            .ok_or("style cursor needs `next`: the response field holding the next token")?;
        let param = spec
            .param
            .clone()
            .unwrap_or_else(|| next.rsplit('.').next().unwrap_or(&next).to_string());
        Ok(CursorStyle {
            next,
            param,
            size_param: spec.size_param.clone(),
            size,
            last: None,
        })
    }

    pub fn first(&mut self, request: &mut PageRequest) {
        if let Some(size_param) = &self.size_param {
            request.set_param(size_param, json!(self.size));
        }
    }

    pub fn advance(&mut self, request: &mut PageRequest, response: &Value) -> Result<bool, String> {
        let Some(token) = json_path::text(json_path::get(response, &self.next)) else {
            return Ok(false);
        };
        if self.last.as_deref() == Some(token.as_str()) {
            return Err(format!("the cursor at {} did not advance", self.next));
        }
        request.set_param(&self.param, json!(token));
        self.last = Some(token);
        Ok(true)
    }
}
