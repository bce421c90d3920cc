//! `cxpipe serve`: the long-running runtime.
//!
//! # Layout
//! - [`schedule`]: fires pipelines on their cron schedules (misfire policy, fires claimed
//!   once in the ledger).
//! - [`watch`]: reports edits of the config and of every file a generation imports.
//! - [`webhook`]: verification of incoming webhook requests (HMAC, timestamp, body cap).
//! - [`metrics`]: the Prometheus metrics (`cxpipe_` prefix) and their text.
//! - [`status`]: the node's status as data (`/status`).
//! - [`page`]: the status page HTML (`/`).
//! - [`http`]: the routes and the [`http::ServeHost`] trait the daemon implements.

pub mod http;
pub mod metrics;
pub mod page;
pub mod schedule;
pub mod status;
pub mod watch;
pub mod webhook;
