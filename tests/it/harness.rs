//! Shared helpers for the integration tests.

use std::path::PathBuf;

/// Path of the `cxpipe` binary built for these tests.
pub fn cxpipe_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cxpipe"))
}
