//! [`CycleGuard`]: notices a server whose pagination goes round in circles. Every page
//! request is remembered (a hash of method, target, query and body), so a cursor or next
//! link that comes back to any earlier one (A, B, A, B…) is caught, however long the cycle;
//! for offset and page-number styles, whose requests always differ, a non-empty page whose
//! items repeat an earlier page's is caught instead. Memory is bounded: after
//! [`MAX_TRACKED`] pages, new ones are no longer remembered (`max_pages` still applies).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::Value;

use super::PageRequest;

/// Pages remembered per walk (a hash and a page number each: about 2 MB at most).
pub const MAX_TRACKED: usize = 100_000;

/// What a walk has requested and received so far.
#[derive(Clone, Debug, Default)]
pub struct CycleGuard {
    /// Hash of a page request → the page it fetched (or will fetch).
    requests: HashMap<u64, u64>,
    /// Hash of a page's items → the page; only for styles that compute their positions.
    pages: Option<HashMap<u64, u64>>,
}

impl CycleGuard {
    /// `compare_pages` for offset and page-number styles (their requests never repeat).
    pub fn new(compare_pages: bool) -> Self {
        CycleGuard {
            requests: HashMap::new(),
            pages: compare_pages.then(HashMap::new),
        }
    }

    /// An error when `request` (for page `page`) repeats an earlier page's request.
    pub fn check_request(&self, request: &PageRequest, page: u64) -> Result<(), String> {
        match self.requests.get(&request_hash(request)) {
            Some(&earlier) => Err(format!(
                "page {page} would repeat the request of page {earlier}: the server's \
                 pagination cycles (its cursor or next link came back to one already used), so \
                 the walk stops with this error instead of looping forever; nothing was \
                 skipped, but the walk is incomplete. Check that `next` and `param` name the \
                 right fields, else report the server"
            )),
            None => Ok(()),
        }
    }

    /// Remembers `request` as page `page`'s (while under [`MAX_TRACKED`]).
    pub fn record_request(&mut self, request: &PageRequest, page: u64) {
        if self.requests.len() < MAX_TRACKED {
            self.requests.insert(request_hash(request), page);
        }
    }

    /// An error when the non-empty `items` of page `page` repeat an earlier page's; else
    /// the hash to [`CycleGuard::record_page`].
    pub fn check_page(&self, items: &[Value], page: u64) -> Result<Option<u64>, String> {
        let Some(pages) = &self.pages else {
            return Ok(None);
        };
        if items.is_empty() {
            return Ok(None);
        }
        let hash = value_hash(items);
        match pages.get(&hash) {
            Some(&earlier) => Err(format!(
                "page {page} has exactly the items of page {earlier}: the server keeps \
                 returning the same page whatever the position asked, so the walk stops with \
                 this error instead of looping forever. Check that `param` and `size_param` \
                 name the parameters the server reads"
            )),
            None => Ok(Some(hash)),
        }
    }

    /// Remembers a page's items hash from [`CycleGuard::check_page`].
    pub fn record_page(&mut self, hash: Option<u64>, page: u64) {
        if let (Some(pages), Some(hash)) = (&mut self.pages, hash)
            && pages.len() < MAX_TRACKED
        {
            pages.insert(hash, page);
        }
    }
}

fn request_hash(request: &PageRequest) -> u64 {
    let mut hasher = DefaultHasher::new();
    request.method.as_str().hash(&mut hasher);
    request.target.as_str().hash(&mut hasher);
    serde_json::to_string(&request.query)
        .unwrap_or_default()
        .hash(&mut hasher);
    serde_json::to_string(&request.body)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

fn value_hash(items: &[Value]) -> u64 {
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(items)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::paginate::Location;
    use serde_json::json;

    fn request(token: &str) -> PageRequest {
        let mut query = serde_json::Map::new();
        query.insert("pageToken".into(), json!(token));
        PageRequest {
            method: reqwest::Method::GET,
            target: "/x".into(),
            query,
            body: None,
            location: Location::Query,
        }
    }

    #[test]
    fn a_request_seen_any_number_of_pages_ago_is_a_cycle() {
        let mut guard = CycleGuard::new(false);
        for (page, token) in ["A", "B", "C"].iter().enumerate() {
            guard
                .check_request(&request(token), page as u64 + 1)
                .unwrap();
            guard.record_request(&request(token), page as u64 + 1);
        }
        let err = guard.check_request(&request("A"), 4).unwrap_err();
        assert!(
            err.contains("page 4 would repeat the request of page 1"),
            "{err}"
        );
    }

    #[test]
    fn a_repeated_non_empty_page_is_a_cycle_for_computed_positions() {
        let mut guard = CycleGuard::new(true);
        let page = [json!({"id": 1})];
        let hash = guard.check_page(&page, 1).unwrap();
        guard.record_page(hash, 1);
        assert!(guard.check_page(&[], 2).unwrap().is_none());
        let err = guard.check_page(&page, 3).unwrap_err();
        assert!(
            err.contains("page 3 has exactly the items of page 1"),
            "{err}"
        );
        assert!(
            CycleGuard::new(false)
                .check_page(&page, 1)
                .unwrap()
                .is_none()
        );
    }
}
