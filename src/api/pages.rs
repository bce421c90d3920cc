//! [`Pages`]: what `ctx.api.paginate(...)` returns to scripts. A `for` loop over it
//! fetches each page only when the previous one is used up; only one page is held.

use rhai::{Dynamic, EvalAltResult};
use serde_json::Value;

use crate::api::paginate::Pager;

/// A lazy walk over a collection; each `for` loop starts from the first page.
#[derive(Clone)]
pub struct Pages {
    pager: Pager,
}

impl Pages {
    pub fn new(pager: Pager) -> Self {
        Pages { pager }
    }
}

impl IntoIterator for Pages {
    type Item = Result<Dynamic, Box<EvalAltResult>>;
    type IntoIter = PagesIter;

    fn into_iter(self) -> PagesIter {
        PagesIter {
            pager: self.pager,
            page: Vec::new().into_iter(),
            finished: false,
        }
    }
}

/// The iterator behind a `for` loop over [`Pages`].
pub struct PagesIter {
    pager: Pager,
    page: std::vec::IntoIter<Value>,
    finished: bool,
}

impl PagesIter {
    /// Items of the current page not yet handed out (never more than one page).
    pub fn buffered(&self) -> usize {
        self.page.len()
    }
}

impl Iterator for PagesIter {
    type Item = Result<Dynamic, Box<EvalAltResult>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.page.next() {
                return Some(rhai::serde::to_dynamic(item));
            }
            if self.finished {
                return None;
            }
            let fetched = match crate::api::rhai::block_on(self.pager.next_page()) {
                Ok(fetched) => fetched,
                Err(err) => {
                    self.finished = true;
                    return Some(Err(err));
                }
            };
            match fetched {
                Ok(Some(items)) => self.page = items.into_iter(),
                Ok(None) => self.finished = true,
                Err(err) => {
                    self.finished = true;
                    return Some(Err(err.into()));
                }
            }
        }
    }
}
