//! Byte flows (DESIGN.md §3): a source (`fetch`, JSON, a stored object) through taps
//! (hashes, checks) and transforms (compression, encryption) into a sink, streamed with
//! bounded memory. Bytes never enter Rhai.
//!
//! # Layout
//! - [`spec`]: `Flow`, `Source`, `Stage`: what scripts build.
//! - [`chain`]: stages compiled for one thread; [`tap`], [`codec`], [`crypt`], [`audio`],
//!   [`md5_thread`] (MD5 of source bytes beside the flow's thread).
//! - [`error`]: the `FlowError` type.
//! - [`fetch`]: resumable HTTP download; [`api_fetch`]: the same from a tenant API endpoint
//!   with its token; [`source`]: async producers for every source.
//! - [`run`]: runs a flow into a sink (store, discard, local writer); [`sink`]: `write`/`discard` with receipts; [`manifest`]: sidecars;
//!   [`manifest_mac`]: their MACs.
//! - [`rhai`]: the script surface; [`verify`]: re-check stored objects; [`envelope`]: seed-004 envelopes.

pub mod api_fetch;
pub mod audio;
pub mod chain;
pub mod codec;
pub mod crypt;
pub mod envelope;
pub mod error;
pub mod fetch;
pub mod manifest;
pub mod manifest_mac;
pub mod md5_thread;
pub mod rhai;
pub mod run;
pub mod sink;
pub mod source;
pub mod spec;
pub mod tap;
pub mod transform;
pub mod verify;

pub use error::{CryptoError, FlowError};
pub use spec::{Flow, Source, Stage, UrlSource};
