//! What `process` returned: a result, `ctx.skip(reason)` or `ctx.defer(delay, reason)`.

use std::time::Duration;

/// A non-result outcome a script returns from `process`.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The item needs no work; final.
    Skip(String),
    /// Try again after `delay` (e.g. a recording still `Processing`); not an attempt.
    Defer(Duration, String),
}
