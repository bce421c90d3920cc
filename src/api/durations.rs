//! Durations a server (or a script) states, made total: any number becomes a [`Duration`]
//! within set bounds instead of a panic ("cannot convert float seconds to Duration") or an
//! `Instant` overflow. Callers log when a value was out of range.

use std::time::Duration;

/// Longest wait a `Retry-After` (or a family pause) may ask for. The item deadline and
/// `max_retries` still apply; this only keeps absurd values from overflowing a clock.
pub const MAX_SERVER_WAIT: Duration = Duration::from_secs(3600);

/// Token lifetime assumed for an `expires_in` of zero, negative or garbage.
pub const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// Longest token lifetime believed (24 h); longer ones are refreshed at this pace.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Longest interval or timeout a poll declaration may state.
pub const MAX_POLL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Whether `seconds` had to be clamped, and to which bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clamped {
    InRange,
    /// Not a finite positive number: the fallback was used.
    ToMin,
    /// Larger than the maximum: the maximum was used.
    ToMax,
}

/// `seconds` as a duration of at most `max`: non-finite, zero or negative values (and
/// positive ones too small to be a nanosecond) give `fallback`. A small positive value is
/// kept as stated: a server may really issue short-lived tokens.
pub fn clamp_seconds(seconds: f64, fallback: Duration, max: Duration) -> (Duration, Clamped) {
    if !seconds.is_finite() || seconds <= 0.0 {
        return (fallback, Clamped::ToMin);
    }
    if seconds >= max.as_secs_f64() {
        return (max, Clamped::ToMax);
    }
    match Duration::try_from_secs_f64(seconds) {
        Ok(d) if !d.is_zero() => (d, Clamped::InRange),
        _ => (fallback, Clamped::ToMin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_gives_a_duration_in_range() {
        let (min, max) = (Duration::from_secs(60), Duration::from_secs(86_400));
        let cases = [
            (-5.0, min, Clamped::ToMin),
            (0.0, min, Clamped::ToMin),
            (-0.0, min, Clamped::ToMin),
            (f64::NAN, min, Clamped::ToMin),
            (f64::INFINITY, min, Clamped::ToMin),
            (f64::NEG_INFINITY, min, Clamped::ToMin),
            (1e-300, min, Clamped::ToMin),
            (1e30, max, Clamped::ToMax),
            (f64::MAX, max, Clamped::ToMax),
            (3600.0, Duration::from_secs(3600), Clamped::InRange),
            (90.5, Duration::from_millis(90_500), Clamped::InRange),
            (2.0, Duration::from_secs(2), Clamped::InRange),
        ];
        for (seconds, want, how) in cases {
            assert_eq!(clamp_seconds(seconds, min, max), (want, how), "{seconds}");
        }
    }
}
