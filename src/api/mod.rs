//! The `api` stages (DESIGN.md §3): one client per tenant with auth, rate budgets,
//! retries, pagination and job polling, and the `ctx.api` surface scripts use.
//!
//! # Layout
//! - [`config`]: the `[tenants.NAME]` table.
//! - [`client`]: [`Api`], the request loop (budget → token → send → retry).
//! - [`path`]: [`ApiPath`], request paths built from percent-encoded segments.
//! - [`http`]: the HTTP client with header timeout, body progress rule and same-origin redirects.
//! - [`target`]: request URLs (base joining, same-origin rule, masking in messages).
//! - [`stats`]: [`ApiStats`] counters.
//! - [`dry_run`]: `--dry-run`: which calls change something, and what is recorded instead.
//! - [`auth`]: grants (client credentials, password + discovery, bearer) and the token cache.
//! - [`limiter`]: endpoint families and their GCRA budgets with 429 pauses.
//! - [`backoff`]: jittered exponential backoff and `Retry-After`.
//! - [`durations`]: server-stated durations clamped into range (never a panic).
//! - [`paginate`]: pagination styles and the lazy [`paginate::Pager`].
//! - [`pages`]: the Rhai iterator over a pager.
//! - [`poll`]: async job polling.
//! - [`json_path`]: dotted field paths into JSON.
//! - [`clock`]: the monotonic clock waits run on.
//! - [`error`]: the error type, [`ApiError`], and its script form.
//! - [`rhai`]: registration of `Api` for scripts.

pub mod auth;
pub mod backoff;
pub mod client;
pub mod clock;
pub mod config;
pub mod dry_run;
pub mod durations;
pub mod error;
pub mod http;
pub mod json_path;
pub mod limiter;
pub mod pages;
pub mod paginate;
pub mod path;
pub mod poll;
pub mod rhai;
pub mod stats;
pub mod target;

pub use client::Api;
pub use clock::{Clock, SkippingClock, TokioClock};
pub use config::TenantConfig;
pub use error::ApiError;
pub use path::ApiPath;
pub use rhai::register;
pub use stats::ApiStats;
