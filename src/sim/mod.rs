//! The CXone simulator (DESIGN.md §8): every endpoint of the five seed guides and the real
//! dialect, served from a dataset derived on demand from a seed, with generated audio and
//! adjustable hostility. Used by `cxpipe sim`, `cxpipe demo` and the tests.
//!
//! # Layout
//! - [`config`]: [`SimConfig`] (dataset shape) and [`Faults`] (run-time knobs).
//! - `dataset`, `media`: records and audio derived from `(seed, index)`.
//! - `search`: the seed-002 filter/sort/cursor model.
//! - `state`, `gate`, `limiter`, `tokens`, `presign`, `stats`: shared state, the request
//!   middleware (counting, rate limits, injected errors), token and URL checks, counters.
//! - `media_stream`: `Range` and stream faults. `jobs`: async jobs. `hashes`: digest memo.
//! - `routes`: one file per seed guide or dialect, plus `/_sim` endpoints.
//! - `server`: [`SimServer`].

mod api_error;
pub mod config;
mod credentials;
mod dataset;
mod duration_serde;
mod gate;
mod hashes;
mod interactions;
mod jobs;
mod limiter;
mod media;
mod media_stream;
mod presign;
mod rng;
mod routes;
mod search;
mod server;
mod state;
mod stats;
mod tokens;
mod transcripts;
mod webhooks;

pub use config::{Faults, RateLimit, RetryAfterForm, SimConfig, SizeDistribution};
pub use credentials::SimCredentials;
pub use server::SimServer;

/// Error starting or steering a simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("binding the simulator to {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid simulator configuration: {0}")]
    Config(String),
}

/// The ids of the first `n` recordings of the dataset `config` describes (for a config that
/// names recordings, such as the compliance request `cxpipe run --sim` writes).
pub fn recording_ids(config: &SimConfig, n: usize) -> Vec<String> {
    let dataset = dataset::Dataset::new(config);
    (0..dataset.len().min(n))
        .map(|i| dataset.recording(i).id)
        .collect()
}
