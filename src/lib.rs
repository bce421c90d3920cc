//! cxpipe: contact-center data pipelines for NICE CXone. A native core (auth, rate limits,
//! retries, pagination, streamed byte flows, storage, ledger) wired by Rhai scripts.
//!
//! # Layout
//! - [`api`]: per-tenant API client: auth, rate budgets, retries, pagination, polling.
//! - [`cli`]: the command line, one file per subcommand.
//! - [`config`]: `cxpipe.toml`: tenants, stores, keys, params; built with every error at once.
//! - [`dry_run`]: `run --dry-run`: records the changes a run would make instead of making them.
//! - [`engine`]: the Rhai engine, module resolution, script generations, checks, diagnostics.
//! - [`registry`]: builds the engine with every native namespace registered.
//! - [`runner`]: one run of a pipeline: discover → admission → worker pool → finish.
//! - [`natives`]: small native helpers for scripts (time).
//! - [`ledger`]: the SQLite ledger of runs, items, checkpoints, kv and audit.
//! - [`serve`]: `cxpipe serve`: scheduler, file watcher, webhooks, metrics, status and the HTTP routes.
//! - [`secret`]: secrets referenced from configuration; never printed.
//! - [`item_scope`]: the run and item a script call works on, handed to it explicitly.
//! - [`log_limit`]: folds floods of identical log lines into one summary line.
//! - [`sim`]: the CXone simulator (`cxpipe sim`, tests, demo).
//! - [`flow`]: streamed byte flows: fetch, hash, compress, encrypt, write.
//! - [`storage`]: object stores (fs, memory, s3, azblob, gcs) and manifests.
//! - [`keys`]: named encryption keys from configuration.
//! - [`terminal`]: escaping of outside text printed to a terminal.

pub mod api;
pub mod cli;
pub mod config;
pub mod dry_run;
pub mod engine;
pub mod flow;
pub mod item_scope;
pub mod keys;
pub mod ledger;
pub mod log_limit;
pub mod natives;
pub mod registry;
pub mod runner;
pub mod runtime;
pub mod secret;
pub mod serve;
pub mod sim;
pub mod storage;
pub mod terminal;
