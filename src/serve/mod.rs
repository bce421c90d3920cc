//! `cxpipe serve`: the long-running runtime's parts.
//!
//! # Layout
//! - [`webhook`]: verification of incoming webhook requests (HMAC, timestamp, body cap).
//! - [`metrics`]: the Prometheus metrics (`cxpipe_` prefix) and their text.
//! - [`status`]: the node's status as data (`/status`).
//! - [`page`]: the status page HTML (`/`).
//! - [`http`]: the routes and the [`http::ServeHost`] trait the daemon implements.

pub mod http;
pub mod metrics;
pub mod page;
pub mod status;
pub mod webhook;
