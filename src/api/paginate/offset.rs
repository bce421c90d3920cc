//! Offset pagination: `offset`/`limit` (seed 000) and `skip`/`top` (the real
//! `/contacts/completed`). The walk ends on a short page or when `total` is reached.

use serde_json::{Value, json};

use super::{PageRequest, PageSpec, total_reached};

/// Position counted in records.
#[derive(Clone, Debug)]
pub struct OffsetStyle {
    param: String,
    size_param: String,
    size: u64,
    offset: u64,
    total: Option<String>,
}

impl OffsetStyle {
    /// `offset`/`limit` or `skip`/`top` unless the spec names the parameters.
    pub fn new(spec: &PageSpec, size: u64, param: &str, size_param: &str) -> Self {
        OffsetStyle {
            param: spec.param.clone().unwrap_or_else(|| param.to_string()),
            size_param: spec
                .size_param
                .clone()
                .unwrap_or_else(|| size_param.to_string()),
            size,
            offset: spec.start.unwrap_or(0),
            total: spec.total.clone(),
        }
    }

    pub fn first(&mut self, request: &mut PageRequest) {
        request.set_param(&self.param, json!(self.offset));
        request.set_param(&self.size_param, json!(self.size));
    }

    pub fn advance(&mut self, request: &mut PageRequest, response: &Value, count: usize) -> bool {
        self.offset += count as u64;
        if (count as u64) < self.size || total_reached(response, self.total.as_deref(), self.offset)
        {
            return false;
        }
        request.set_param(&self.param, json!(self.offset));
        true
    }
}
