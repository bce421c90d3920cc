//! cxpipe: contact-center data pipelines for NICE CXone. A native core (auth, rate limits,
//! retries, pagination, streamed byte flows, storage, ledger) wired by Rhai scripts.
//!
//! # Layout
//! - [`cli`]: the command line, one file per subcommand.
//! - [`secret`]: secrets referenced from configuration; never printed.
//! - [`item_scope`]: the item a script call works on, for native stages on that thread.
//! - [`flow`]: streamed byte flows: fetch, hash, compress, encrypt, write.
//! - [`storage`]: object stores (fs, memory, s3, azblob, gcs) and manifests.
//! - [`keys`]: named encryption keys from configuration.
//! - [`sim`]: the CXone simulator (`cxpipe sim`, tests, demo).

pub mod cli;
pub mod flow;
pub mod item_scope;
pub mod keys;
pub mod secret;
pub mod sim;
pub mod storage;
