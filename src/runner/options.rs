//! `const OPTIONS` of a pipeline script, validated into [`PipelineOptions`].

use std::time::Duration;

use rhai::{Dynamic, Map};

/// The keys `OPTIONS` accepts (`cxpipe check` suggests the nearest for a misspelt one).
pub const KEYS: &[&str] = &[
    "concurrency",
    "max_attempts",
    "retry_backoff",
    "retry_backoff_max",
    "item_timeout",
    "discover_timeout",
    "interrupt_grace",
    "max_operations",
    "defer_max_wait",
    "max_defers",
    "defer_linger",
];

/// Run settings a script declares in `const OPTIONS = #{ ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineOptions {
    /// Items processed at once (worker threads).
    pub concurrency: usize,
    /// Attempts before an item is quarantined.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt (jittered), capped at `retry_backoff_max`.
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// Deadline of one `process` call.
    pub item_timeout: Duration,
    /// Deadline of the `discover` call (a loop there fails the run instead of running on).
    pub discover_timeout: Duration,
    /// On Ctrl-C or SIGTERM, how long items already running may take to finish before
    /// the run ends anyway (their items are released for the next run).
    pub interrupt_grace: Duration,
    /// Most Rhai operations one `process` call may run (a runaway loop fails the item).
    pub max_operations: u64,
    /// A deferred item is re-tried within the run when its delay ends within this long of
    /// the deferral (and the run is still going then, see `defer_linger`); otherwise it
    /// stays deferred in the ledger for the next run.
    pub defer_max_wait: Duration,
    /// Deferrals of one item within a run before it is left for the next run.
    pub max_defers: u32,
    /// Once nothing else is left to do, how long the run waits for deferred items to fall
    /// due; when none is due within this long, the run ends and leaves them `deferred` in
    /// the ledger for the next run (the summary says how many and when the first is due).
    pub defer_linger: Duration,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            concurrency: 4,
            max_attempts: 3,
            retry_backoff: Duration::from_secs(1),
            retry_backoff_max: Duration::from_secs(300),
            item_timeout: Duration::from_secs(600),
            discover_timeout: Duration::from_secs(3600),
            interrupt_grace: Duration::from_secs(10),
            max_operations: 500_000_000,
            defer_max_wait: Duration::from_secs(300),
            max_defers: 50,
            defer_linger: Duration::from_secs(10),
        }
    }
}

/// Parses a duration given as `"10s"`, `"5m"`, `"250ms"` or a number of seconds.
pub fn parse_duration(value: &Dynamic) -> Result<Duration, String> {
    if let Ok(secs) = value.as_int() {
        return u64::try_from(secs)
            .map(Duration::from_secs)
            .map_err(|_| format!("{secs} is negative"));
    }
    if let Ok(secs) = value.as_float() {
        return Duration::try_from_secs_f64(secs).map_err(|e| e.to_string());
    }
    let text = value
        .clone()
        .into_string()
        .map_err(|t| format!("expected a duration like \"10s\", found {t}"))?;
    humantime::parse_duration(text.trim()).map_err(|e| format!("{text:?}: {e}"))
}

impl PipelineOptions {
    /// Builds options from the script's map, reporting every bad entry at once.
    pub fn from_map(map: &Map) -> Result<PipelineOptions, Vec<String>> {
        let mut o = PipelineOptions::default();
        let mut errors = Vec::new();
        for (name, value) in map {
            let positive = |v: &Dynamic| match v.as_int() {
                Ok(n) if n > 0 => Ok(n as u64),
                _ => Err(format!("expected a positive integer, found {v}")),
            };
            let result: Result<(), String> = match name.as_str() {
                "concurrency" => positive(value).map(|n| o.concurrency = n.min(1024) as usize),
                "max_attempts" => positive(value).map(|n| o.max_attempts = n.min(1000) as u32),
                "max_defers" => positive(value).map(|n| o.max_defers = n.min(100_000) as u32),
                "max_operations" => positive(value).map(|n| o.max_operations = n),
                "retry_backoff" => parse_duration(value).map(|d| o.retry_backoff = d),
                "retry_backoff_max" => parse_duration(value).map(|d| o.retry_backoff_max = d),
                "item_timeout" => parse_duration(value).map(|d| o.item_timeout = d),
                "discover_timeout" => parse_duration(value).map(|d| o.discover_timeout = d),
                "interrupt_grace" => parse_duration(value).map(|d| o.interrupt_grace = d),
                "defer_max_wait" => parse_duration(value).map(|d| o.defer_max_wait = d),
                "defer_linger" => parse_duration(value).map(|d| o.defer_linger = d),
                other => Err(format!(
                    "unknown option `{other}` (known: {})",
                    KEYS.join(", ")
                )),
            };
            if let Err(e) = result {
                errors.push(format!("OPTIONS.{name}: {e}"));
            }
        }
        if errors.is_empty() {
            Ok(o)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_key_is_accepted() {
        for key in KEYS {
            let accepted = [Dynamic::from("1s"), Dynamic::from(1_i64)]
                .into_iter()
                .any(|v| {
                    let mut map = Map::new();
                    map.insert((*key).into(), v);
                    PipelineOptions::from_map(&map).is_ok()
                });
            assert!(accepted, "OPTIONS.{key} is listed but not accepted");
        }
    }

    #[test]
    fn options_parse_and_report_every_error() {
        let engine = rhai::Engine::new();
        let map: Map = engine
            .eval(
                "#{ concurrency: 8, item_timeout: \"2s\", retry_backoff: \"10ms\", \
                 discover_timeout: \"90s\", interrupt_grace: 3 }",
            )
            .unwrap();
        let o = PipelineOptions::from_map(&map).unwrap();
        assert_eq!(
            (o.concurrency, o.item_timeout, o.retry_backoff),
            (8, Duration::from_secs(2), Duration::from_millis(10))
        );
        assert_eq!(
            (o.discover_timeout, o.interrupt_grace),
            (Duration::from_secs(90), Duration::from_secs(3))
        );
        let bad: Map = engine.eval("#{ concurrency: 0, speed: 1 }").unwrap();
        assert_eq!(PipelineOptions::from_map(&bad).unwrap_err().len(), 2);
    }
}
