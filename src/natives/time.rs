//! Time for scripts: instants are milliseconds since the epoch (`now_ms`, `parse_time`,
//! `format_time`); durations are strings such as `"30s"` or `"250ms"` everywhere
//! (`backoff`, `older_than`, and every option that takes a duration).

use std::time::Duration;

use rhai::plugin::*;
use rhai::{Engine, EvalAltResult};

use super::thrown::Thrown;

/// Registers the time functions.
pub fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(time_functions).into());
}

/// Parses a script's duration string, naming the function and the expected form.
fn duration(function: &str, text: &str) -> Result<Duration, Box<EvalAltResult>> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        Thrown::new(format!(
            "{function}: {text:?} is not a duration ({e}); write e.g. \"30s\", \"5m\" or \"250ms\""
        ))
        .into()
    })
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[export_module]
mod time_functions {
    use super::*;

    /// Milliseconds since the Unix epoch, now (an instant, for `format_time` and
    /// `older_than`; durations are strings).
    ///
    /// ```rhai
    /// ctx.kv.set("started", now_ms());
    /// ```
    #[rhai_fn(name = "now_ms")]
    pub fn now_ms() -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    /// Parses an RFC 3339 time (`2024-01-15T00:00:00Z`) into milliseconds since the epoch.
    ///
    /// ```rhai
    /// let newer = parse_time("2024-01-16T08:00:00Z") > parse_time("2024-01-15T00:00:00Z");
    /// ```
    #[rhai_fn(name = "parse_time", return_raw)]
    pub fn parse_time(text: &str) -> Result<i64, Box<EvalAltResult>> {
        chrono::DateTime::parse_from_rfc3339(text.trim())
            .map(|t| t.timestamp_millis())
            .map_err(|e| {
                Thrown::new(format!(
                    "parse_time({text:?}): {e}; expected RFC 3339 like 2024-01-15T00:00:00Z"
                ))
                .into()
            })
    }

    /// Formats milliseconds since the epoch as RFC 3339 UTC with milliseconds.
    ///
    /// ```rhai
    /// let since = format_time(now_ms() - 86_400_000);   // a day ago
    /// ```
    #[rhai_fn(name = "format_time", return_raw)]
    pub fn format_time(ms: i64) -> Result<String, Box<EvalAltResult>> {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .ok_or_else(|| Thrown::new(format!("format_time({ms}): out of range")).into())
    }

    /// The delay before retry or poll number `n + 1`: `base` doubled `n` times, at most
    /// `max`, as a duration string (`"40000ms"`) for `ctx.defer` and the like.
    ///
    /// ```rhai
    /// return ctx.defer(backoff("5s", "60s", ctx.deferrals), "job still running");
    /// ```
    #[rhai_fn(name = "backoff", return_raw)]
    pub fn backoff(base: &str, max: &str, n: i64) -> Result<String, Box<EvalAltResult>> {
        let base = duration("backoff", base)?;
        let max = duration("backoff", max)?;
        let doublings = u32::try_from(n.clamp(0, 62)).unwrap_or(0);
        let delay = base
            .checked_mul(2_u32.saturating_pow(doublings.min(31)))
            .unwrap_or(max)
            .min(max);
        Ok(format!("{}ms", millis(delay)))
    }

    /// Whether the instant `since_ms` (milliseconds since the epoch, e.g. a `now_ms()`
    /// kept in `ctx.kv`) lies more than `duration` in the past.
    ///
    /// ```rhai
    /// let submitted = ctx.kv.get("job/submitted_ms") ?? now_ms();
    /// if older_than(submitted, "150s") { throw #{ message: "job timed out", retryable: false }; }
    /// ```
    #[rhai_fn(name = "older_than", return_raw)]
    pub fn older_than(since_ms: i64, duration: &str) -> Result<bool, Box<EvalAltResult>> {
        let limit = super::duration("older_than", duration)?;
        Ok(now_ms().saturating_sub(since_ms) > millis(limit))
    }

    /// Deprecated: durations are strings everywhere. Raises an error naming the
    /// replacements: `backoff(base, max, n)` for a growing delay, `older_than(since_ms,
    /// duration)` to test an age.
    ///
    /// ```rhai
    /// let delay = backoff("30s", "10m", 1);   // instead of parse_duration_ms("30s") * 2
    /// ```
    #[rhai_fn(name = "parse_duration_ms", return_raw)]
    pub fn parse_duration_ms(text: &str) -> Result<i64, Box<EvalAltResult>> {
        Err(Thrown::new(format!(
            "parse_duration_ms({text:?}) is deprecated: durations are strings such as \"30s\" \
             everywhere; use backoff(base, max, n) for a growing delay (e.g. \
             ctx.defer(backoff(\"5s\", \"60s\", ctx.deferrals), reason)) or older_than(since_ms, \
             duration) to test an age"
        ))
        .into())
    }
}

#[cfg(test)]
mod tests {
    fn engine() -> rhai::Engine {
        let mut engine = rhai::Engine::new();
        super::register(&mut engine);
        engine
    }

    #[test]
    fn times_round_trip() {
        let engine = engine();
        let ms: i64 = engine
            .eval(r#"parse_time("2024-01-15T00:00:00Z")"#)
            .unwrap();
        assert_eq!(ms, 1_705_276_800_000);
        let text: String = engine.eval("format_time(1705276800000)").unwrap();
        assert_eq!(text, "2024-01-15T00:00:00.000Z");
        assert!(engine.eval::<i64>(r#"parse_time("yesterday")"#).is_err());
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_names_bad_durations() {
        let engine = engine();
        let at = |n: i64| -> String {
            engine
                .eval(&format!(r#"backoff("5s", "60s", {n})"#))
                .unwrap()
        };
        assert_eq!(at(0), "5000ms");
        assert_eq!(at(2), "20000ms");
        assert_eq!(at(4), "60000ms");
        assert_eq!(at(1000), "60000ms");
        assert_eq!(at(-3), "5000ms");
        let err = engine
            .eval::<String>(r#"backoff("5 parsecs", "60s", 1)"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("backoff") && err.contains("5 parsecs"),
            "{err}"
        );
    }

    #[test]
    fn older_than_compares_an_instant_with_a_duration_string() {
        let engine = engine();
        assert!(
            engine
                .eval::<bool>(r#"older_than(now_ms() - 10_000, "5s")"#)
                .unwrap()
        );
        assert!(
            !engine
                .eval::<bool>(r#"older_than(now_ms() - 10_000, "1h")"#)
                .unwrap()
        );
    }

    #[test]
    fn parse_duration_ms_is_deprecated_with_its_replacements_named() {
        let err = engine()
            .eval::<i64>(r#"parse_duration_ms("1m")"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("deprecated") && err.contains("backoff(") && err.contains("older_than("),
            "{err}"
        );
    }
}
