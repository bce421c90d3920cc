//! [`ApiStats`]: counters of what a tenant's client has done, for metrics and summaries.

use std::sync::atomic::AtomicU64;

/// What this client has done so far (for metrics and run summaries).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApiStats {
    /// HTTP requests sent to the API (token requests not included).
    pub requests: u64,
    /// Requests retried after a 429, 5xx or transport error.
    pub retries: u64,
    /// 429 answers (each paused its family).
    pub throttled: u64,
    /// 401 answers that led to a token refresh.
    pub refreshed_after_401: u64,
    /// Token requests made for this tenant's credentials.
    pub token_requests: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
    pub refreshed_after_401: AtomicU64,
}
