//! Pagination: a small declaration ([`PageSpec`]) picks a [`Style`]; a [`Pager`] fetches
//! one page at a time, only when asked. A failed page keeps its place: asking again
//! re-requests the same page (and each request is already retried by the client). A server
//! whose pagination cycles (a cursor or link returning to an earlier one, a page repeating
//! an earlier page) ends the walk with an error ([`cycle`]), never an endless loop.
//!
//! # Styles
//! - `offset` and `skip_top`: [`offset::OffsetStyle`]
//! - `page`: [`page_number::PageNumberStyle`]
//! - `cursor`: [`cursor::CursorStyle`]
//! - `next_link`: [`next_link::NextLinkStyle`]

pub mod cursor;
pub mod cycle;
pub mod next_link;
pub mod offset;
pub mod page_number;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::api::client::Api;
use crate::api::error::ApiError;
use crate::api::json_path;
use crate::api::path::ApiPath;

/// How to walk a collection, as scripts declare it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageSpec {
    /// `offset`, `skip_top`, `page`, `cursor` or `next_link`.
    pub style: StyleName,
    /// HTTP method (default `GET`).
    #[serde(default)]
    pub method: Option<String>,
    /// Query parameters sent with every page.
    #[serde(default)]
    pub query: Option<Value>,
    /// JSON body sent with every page (position fields are added to it).
    #[serde(default)]
    pub body: Option<Value>,
    /// Path of the items array in a response; the response itself when it is an array.
    #[serde(default)]
    pub items: Option<String>,
    /// `cursor`: path of the next token; `next_link`: path of the next URL (default
    /// `_links.next`).
    #[serde(default)]
    pub next: Option<String>,
    /// Name of the position parameter (`offset`, `skip`, `page`, or the cursor's name).
    #[serde(default)]
    pub param: Option<String>,
    /// Name of the page size parameter (`limit`, `top`, `pageSize`; optional for cursors).
    #[serde(default)]
    pub size_param: Option<String>,
    /// Page size (default 100).
    #[serde(default)]
    pub size: Option<u64>,
    /// Where position and size go: `query` or `body` (default: `body` when the method is
    /// not GET and a body is given, else `query`). Body names may be dotted paths.
    #[serde(default)]
    pub param_in: Option<Location>,
    /// First offset (default 0) or first page number (default 1).
    #[serde(default)]
    pub start: Option<u64>,
    /// Path of a total count in the response; the walk stops once it is reached.
    #[serde(default)]
    pub total: Option<String>,
    /// Stops after this many pages.
    #[serde(default)]
    pub max_pages: Option<u64>,
}

/// The pagination styles.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StyleName {
    Offset,
    SkipTop,
    Page,
    Cursor,
    NextLink,
}

/// Where position parameters are sent.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    Query,
    Body,
}

/// One page request, changed by the style between pages.
#[derive(Clone, Debug)]
pub struct PageRequest {
    pub method: Method,
    /// The script's path, or (after a next link) the link the server gave.
    pub target: ApiPath,
    pub query: Map<String, Value>,
    pub body: Option<Value>,
    pub location: Location,
}

impl PageRequest {
    /// Sets a position parameter where the spec says it goes.
    pub fn set_param(&mut self, name: &str, value: Value) {
        match self.location {
            Location::Query => {
                self.query.insert(name.to_string(), value);
            }
            Location::Body => json_path::set(self.body.get_or_insert(Value::Null), name, value),
        }
    }
}

/// A pagination style.
#[derive(Clone, Debug)]
pub enum Style {
    Offset(offset::OffsetStyle),
    Page(page_number::PageNumberStyle),
    Cursor(cursor::CursorStyle),
    NextLink(next_link::NextLinkStyle),
}

impl Style {
    fn first(&mut self, request: &mut PageRequest) {
        match self {
            Style::Offset(s) => s.first(request),
            Style::Page(s) => s.first(request),
            Style::Cursor(s) => s.first(request),
            Style::NextLink(_) => {}
        }
    }

    /// Prepares the next page's request; `Ok(false)` when the walk is over.
    fn advance(
        &mut self,
        request: &mut PageRequest,
        response: &Value,
        count: usize,
    ) -> Result<bool, String> {
        match self {
            Style::Offset(s) => Ok(s.advance(request, response, count)),
            Style::Page(s) => Ok(s.advance(request, response, count)),
            Style::Cursor(s) => s.advance(request, response),
            Style::NextLink(s) => s.advance(request, response),
        }
    }
}

/// Walks a collection page by page.
#[derive(Clone)]
pub struct Pager {
    api: Api,
    style: Style,
    items: Option<String>,
    next: Option<PageRequest>,
    max_pages: Option<u64>,
    pages: u64,
    cycles: cycle::CycleGuard,
}

impl Pager {
    /// Checks `spec` and prepares the first request (nothing is sent yet).
    pub fn new(api: &Api, path: impl Into<ApiPath>, spec: &PageSpec) -> Result<Pager, ApiError> {
        let path = path.into();
        let usage = |message: String| ApiError::Usage {
            tenant: api.tenant().to_string(),
            what: format!("paginating {path}"),
            message,
        };
        let method_text = spec.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
        let method = Method::from_bytes(method_text.as_bytes())
            .map_err(|_| usage(format!("unknown method {method_text}")))?;
        let query = match &spec.query {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(other) => return Err(usage(format!("query must be a map, not {other}"))),
        };
        let location = spec
            .param_in
            .unwrap_or(if method != Method::GET && spec.body.is_some() {
                Location::Body
            } else {
                Location::Query
            });
        let size = spec.size.unwrap_or(100);
        if size == 0 {
            return Err(usage("size must be at least 1".into()));
        }
        let mut style = match spec.style {
            StyleName::Offset => {
                Style::Offset(offset::OffsetStyle::new(spec, size, "offset", "limit"))
            }
            StyleName::SkipTop => {
                Style::Offset(offset::OffsetStyle::new(spec, size, "skip", "top"))
            }
            StyleName::Page => Style::Page(page_number::PageNumberStyle::new(spec, size)),
            StyleName::Cursor => {
                Style::Cursor(cursor::CursorStyle::new(spec, size).map_err(usage)?)
            }
            StyleName::NextLink => Style::NextLink(next_link::NextLinkStyle::new(spec)),
        };
        let mut request = PageRequest {
            method,
            target: path,
            query,
            body: spec.body.clone(),
            location,
        };
        style.first(&mut request);
        let mut cycles = cycle::CycleGuard::new(matches!(style, Style::Offset(_) | Style::Page(_)));
        cycles.record_request(&request, 1);
        Ok(Pager {
            api: api.clone(),
            style,
            items: spec.items.clone(),
            next: Some(request),
            max_pages: spec.max_pages,
            pages: 0,
            cycles,
        })
    }

    /// Pages fetched so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Fetches the next page's items; `Ok(None)` once the walk is over. After an error the
    /// same page is requested again by the next call.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Value>>, ApiError> {
        let Some(request) = &self.next else {
            return Ok(None);
        };
        let query = (!request.query.is_empty()).then(|| Value::Object(request.query.clone()));
        // A page is a read-only query whatever its method: sent even in a dry run.
        let mut response = self
            .api
            .query(
                request.method.clone(),
                &request.target,
                query.as_ref(),
                request.body.as_ref(),
            )
            .await?;
        let page = self.pages + 1;
        let usage = |message: String| ApiError::Usage {
            tenant: self.api.tenant().to_string(),
            what: format!("page {page} of {}", request.target),
            message,
        };
        let count = match &self.items {
            Some(path) => json_path::get(&response, path).map(|v| v.as_array().map(Vec::len)),
            None => Some(response.as_array().map(Vec::len)),
        };
        let count = match count {
            Some(Some(n)) => n,
            Some(None) => return Err(usage("the items are not an array".into())),
            None if self.items.is_some() => 0,
            None => {
                return Err(usage(
                    "the response is not an array; declare `items`".into(),
                ));
            }
        };
        let mut following = request.clone();
        let more = self
            .style
            .advance(&mut following, &response, count)
            .map_err(usage)?;
        let items = match &self.items {
            Some(path) => json_path::take(&mut response, path),
            None => Some(response),
        };
        let items = match items {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        let capped = self.max_pages.is_some_and(|m| page >= m);
        let content = self.cycles.check_page(&items, page).map_err(usage)?;
        if more && !capped {
            self.cycles
                .check_request(&following, page + 1)
                .map_err(usage)?;
            self.cycles.record_request(&following, page + 1);
        }
        self.cycles.record_page(content, page);
        self.pages = page;
        self.next = (more && !capped).then_some(following);
        tracing::debug!(
            tenant = self.api.tenant(),
            page,
            items = items.len(),
            more,
            "page fetched"
        );
        Ok(Some(items))
    }
}

/// Whether a walk with a total count has reached it.
pub(crate) fn total_reached(response: &Value, total: Option<&str>, seen: u64) -> bool {
    total
        .and_then(|path| json_path::get(response, path))
        .and_then(Value::as_u64)
        .is_some_and(|total| seen >= total)
}
