//! Page-number pagination: `page`/`pageSize` in the query or the JSON body (seed 002's
//! search). The walk ends on a short page or when `total` records have been seen.

use serde_json::{Value, json};

use super::{PageRequest, PageSpec, total_reached};

/// Position counted in pages.
#[derive(Clone, Debug)]
pub struct PageNumberStyle {
    param: String,
    size_param: String,
    size: u64,
    page: u64,
    seen: u64,
    total: Option<String>,
}

impl PageNumberStyle {
    /// `page`/`pageSize` from page 1 unless the spec says otherwise.
    pub fn new(spec: &PageSpec, size: u64) -> Self {
        PageNumberStyle {
            param: spec.param.clone().unwrap_or_else(|| "page".into()),
            size_param: spec.size_param.clone().unwrap_or_else(|| "pageSize".into()),
            size,
            page: spec.start.unwrap_or(1),
            seen: 0,
            total: spec.total.clone(),
        }
    }

    pub fn first(&mut self, request: &mut PageRequest) {
        request.set_param(&self.param, json!(self.page));
        request.set_param(&self.size_param, json!(self.size));
    }

    pub fn advance(&mut self, request: &mut PageRequest, response: &Value, count: usize) -> bool {
        self.seen += count as u64;
        if (count as u64) < self.size || total_reached(response, self.total.as_deref(), self.seen) {
            return false;
        }
        self.page += 1;
        request.set_param(&self.param, json!(self.page));
        true
    }
}
