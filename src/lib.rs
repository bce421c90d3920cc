//! cxpipe: contact-center data pipelines for NICE CXone. A native core (auth, rate limits,
//! retries, pagination, streamed byte flows, storage, ledger) wired by Rhai scripts.
//!
//! # Layout
//! - [`api`]: per-tenant API client: auth, rate budgets, retries, pagination, polling.
//! - [`cli`]: the command line, one file per subcommand.
//! - [`secret`]: secrets referenced from configuration; never printed.
//! - [`item_scope`]: the item a script call works on, for native stages on that thread.
//! - [`sim`]: the CXone simulator (`cxpipe sim`, tests, demo).

pub mod api;
pub mod cli;
pub mod item_scope;
pub mod secret;
pub mod sim;
