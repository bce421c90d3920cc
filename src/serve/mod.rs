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
//! - `cluster`: a node among several on one ledger: registry heartbeat, drain, lease
//!   reaping, and runs started to help with (or take over) other nodes' work.
//! - [`daemon`]: the daemon: slots per pipeline × tenant, runs, shutdown; `host` is it as
//!   the routes see it, `reload` its hot reload.

mod cluster;
pub mod daemon;
mod host;
pub mod http;
pub mod metrics;
pub mod page;
mod reload;
pub mod schedule;
pub mod status;
pub mod watch;
pub mod webhook;
