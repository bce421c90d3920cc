//! What a server says about its rate limit in response headers: `X-RateLimit-Limit`,
//! `-Remaining`, `-Reset` (the common de-facto form), the IETF draft's `RateLimit-Limit`,
//! `-Remaining`, `-Reset` and `RateLimit-Policy: 100;w=60`, and the later draft's
//! structured `RateLimit-Policy: "p";q=100;w=60` / `RateLimit: "p";r=5;t=30`. Parsing
//! only: what the limiter does with it is in `adaptive.rs` and `gcra.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

use crate::api::durations::MAX_SERVER_WAIT;

/// A reset value above this many seconds is a Unix time, not a delay (some servers send
/// `X-RateLimit-Reset: 1767225600`).
const EPOCH_THRESHOLD_SECS: u64 = 1_000_000_000;

/// Longest policy window believed (one day, like a configured family's `per`).
const MAX_POLICY_WINDOW_SECS: u64 = 86_400;

/// The rate-limit facts one response stated; `None` where it said nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ServerLimits {
    /// Requests allowed per window.
    pub limit: Option<u64>,
    /// Requests left in the current window.
    pub remaining: Option<u64>,
    /// Time until the current window resets.
    pub reset: Option<Duration>,
    /// The window's length, when a policy states it.
    pub window: Option<Duration>,
}

impl ServerLimits {
    /// Reads the headers of one response (`now` turns Unix-time resets into delays).
    pub fn parse(headers: &HeaderMap, now: SystemTime) -> ServerLimits {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let number = |name: &str| text(name).and_then(first_number);
        let mut limits = ServerLimits {
            limit: number("ratelimit-limit").or_else(|| number("x-ratelimit-limit")),
            remaining: number("ratelimit-remaining").or_else(|| number("x-ratelimit-remaining")),
            reset: number("ratelimit-reset")
                .or_else(|| number("x-ratelimit-reset"))
                .map(|n| reset_delay(n, now)),
            window: None,
        };
        if let Some(policy) = text("ratelimit-policy") {
            // The policy's quota and window belong together (its quota may differ from
            // `RateLimit-Limit`, which can be another policy's).
            if let Some((quota, window)) = parse_policy(policy) {
                limits.limit = Some(quota);
                limits.window = Some(window);
            }
        }
        if let Some(state) = text("ratelimit") {
            let item = state.split(',').next().unwrap_or("");
            limits.remaining = limits.remaining.or(param(item, "r"));
            limits.reset = limits
                .reset
                .or(param(item, "t").map(|n| reset_delay(n, now)));
        }
        limits
    }

    /// Whether the response said anything at all about the limit.
    pub fn is_empty(&self) -> bool {
        *self == ServerLimits::default()
    }
}

/// The leading integer of a header value (`"100"`, `"100, 100;w=60"`).
fn first_number(value: &str) -> Option<u64> {
    let digits: String = value
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// `RateLimit-Policy`: the first policy's quota and window, in either draft's syntax
/// (`100;w=60` or `"default";q=100;w=60`). Several policies: the one with the lowest rate
/// (requests spaced evenly at that rate keep within every one of them).
fn parse_policy(value: &str) -> Option<(u64, Duration)> {
    let mut best: Option<(u64, Duration)> = None;
    for item in value.split(',') {
        let quota = param(item, "q").or_else(|| first_number(item));
        let window = param(item, "w").map(|w| Duration::from_secs(w.min(MAX_POLICY_WINDOW_SECS)));
        if let (Some(q), Some(w)) = (quota, window)
            && q > 0
            && !w.is_zero()
        {
            let rate = q as f64 / w.as_secs_f64();
            if best.is_none_or(|(bq, bw)| rate < bq as f64 / bw.as_secs_f64()) {
                best = Some((q, w));
            }
        }
    }
    best
}

/// The integer parameter `name` of one structured-field item (`;name=123`).
fn param(item: &str, name: &str) -> Option<u64> {
    item.split(';').skip(1).find_map(|p| {
        let (key, value) = p.split_once('=')?;
        (key.trim() == name).then(|| first_number(value))?
    })
}

/// A reset number as a delay: seconds, or a Unix time when it is that large.
fn reset_delay(n: u64, now: SystemTime) -> Duration {
    let delay = if n >= EPOCH_THRESHOLD_SECS {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        Duration::from_secs(n).saturating_sub(now)
    } else {
        Duration::from_secs(n)
    };
    delay.min(MAX_SERVER_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&'static str, &str)]) -> ServerLimits {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, value.parse().unwrap());
        }
        ServerLimits::parse(&headers, UNIX_EPOCH + Duration::from_secs(2_000_000_000))
    }

    #[test]
    fn x_ratelimit_headers_with_a_delay_or_a_unix_time() {
        let l = parse(&[
            ("x-ratelimit-limit", "20"),
            ("x-ratelimit-remaining", "3"),
            ("x-ratelimit-reset", "1"),
        ]);
        assert_eq!(
            l,
            ServerLimits {
                limit: Some(20),
                remaining: Some(3),
                reset: Some(Duration::from_secs(1)),
                window: None,
            }
        );
        let epoch = parse(&[("x-ratelimit-reset", "2000000042")]);
        assert_eq!(epoch.reset, Some(Duration::from_secs(42)));
        assert!(parse(&[("x-ratelimit-limit", "lots")]).is_empty());
    }

    #[test]
    fn ietf_headers_and_both_policy_syntaxes() {
        let l = parse(&[
            ("ratelimit-limit", "100"),
            ("ratelimit-remaining", "0"),
            ("ratelimit-reset", "30"),
            ("ratelimit-policy", "100;w=60, 1000;w=3600"),
        ]);
        assert_eq!(l.remaining, Some(0));
        assert_eq!(l.reset, Some(Duration::from_secs(30)));
        // 1000 per hour (0.28/s) is stricter than 100 per minute (1.67/s).
        assert_eq!(l.limit, Some(1000));
        assert_eq!(l.window, Some(Duration::from_secs(3600)));
        let structured = parse(&[
            (
                "ratelimit-policy",
                "\"burst\";q=100;w=60, \"day\";q=1000;w=86400",
            ),
            ("ratelimit", "\"burst\";r=7;t=12"),
        ]);
        assert_eq!(structured.limit, Some(1000));
        assert_eq!(structured.window, Some(Duration::from_secs(86_400)));
        assert_eq!(structured.remaining, Some(7));
        assert_eq!(structured.reset, Some(Duration::from_secs(12)));
    }
}
