//! Time for scripts: milliseconds since the epoch, RFC 3339 and duration parsing, formatting.

use rhai::{Engine, EvalAltResult};

/// Registers `now_ms`, `parse_time`, `format_time`.
pub fn register(engine: &mut Engine) {
    // Milliseconds since the Unix epoch, now.
    // ```rhai
    // let age_ms = now_ms() - parse_time(rec.createdDate);
    // ```
    engine.register_fn("now_ms", || chrono::Utc::now().timestamp_millis());
    // Parses an RFC 3339 time (`2024-01-15T00:00:00Z`) into milliseconds since the epoch.
    // ```rhai
    // let t = parse_time("2024-01-15T00:00:00Z");
    // ```
    engine.register_fn(
        "parse_time",
        |text: &str| -> Result<i64, Box<EvalAltResult>> {
            chrono::DateTime::parse_from_rfc3339(text.trim())
                .map(|t| t.timestamp_millis())
                .map_err(|e| {
                    format!(
                        "parse_time({text:?}): {e}; expected RFC 3339 like 2024-01-15T00:00:00Z"
                    )
                    .into()
                })
        },
    );
    // Parses a duration like "30s", "5m", "250ms" into milliseconds.
    // ```rhai
    // let delay = parse_duration_ms("30s") * 2;
    // ```
    engine.register_fn(
        "parse_duration_ms",
        |text: &str| -> Result<i64, Box<EvalAltResult>> {
            humantime::parse_duration(text.trim())
                .map(|d| d.as_millis() as i64)
                .map_err(|e| {
                    format!("parse_duration_ms({text:?}): {e}; expected e.g. \"30s\" or \"5m\"")
                        .into()
                })
        },
    );
    // Formats milliseconds since the epoch as RFC 3339 UTC with milliseconds.
    // ```rhai
    // let since = format_time(now_ms() - 86_400_000);
    // ```
    engine.register_fn(
        "format_time",
        |ms: i64| -> Result<String, Box<EvalAltResult>> {
            chrono::DateTime::from_timestamp_millis(ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .ok_or_else(|| format!("format_time({ms}): out of range").into())
        },
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_round_trip() {
        let mut engine = rhai::Engine::new();
        super::register(&mut engine);
        let ms: i64 = engine
            .eval(r#"parse_time("2024-01-15T00:00:00Z")"#)
            .unwrap();
        assert_eq!(ms, 1_705_276_800_000);
        let text: String = engine.eval("format_time(1705276800000)").unwrap();
        assert_eq!(text, "2024-01-15T00:00:00.000Z");
        assert!(engine.eval::<i64>(r#"parse_time("yesterday")"#).is_err());
        assert_eq!(
            engine.eval::<i64>(r#"parse_duration_ms("1m")"#).unwrap(),
            60_000
        );
    }
}
