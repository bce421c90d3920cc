//! The learned rate of a family nobody configured. Until the server pushes back the family
//! is unmetered. Rate-limit headers, when a server sends them, set the rate directly
//! (limit per window, less the spacing margin). Without headers the rate is learned from
//! 429s: the first one sets it to the successes seen per time until the pause ends (a
//! burst into a fixed window or a token bucket measures the server's rate); each later one
//! remembers the rate it appeared at (the ceiling) and drops to 97 % of it (or to the rate
//! the server actually admitted since the previous pause, if lower). While callers queue,
//! the rate climbs back to 97 % of the ceiling within seconds, then probes above it at
//! 0.1 % per second, so a 429 comes about once every 30 s of saturation, not every window.
//!
//! Pure arithmetic on instants handed in: `gcra.rs` owns the clock and the lock.

use std::time::Duration;

use tokio::time::Instant;

use super::headers::ServerLimits;

/// A 429 drops the rate to this share of the rate it appeared at.
const DECREASE: f64 = 0.97;
/// Below `DECREASE × ceiling`, the rate closes the gap over about this many seconds.
const RECOVER_SECS: f64 = 4.0;
/// Growth per second of saturation at or above `DECREASE × ceiling`.
const PROBE_PER_SEC: f64 = 0.001;
/// Growth per second of saturation while no ceiling is known.
const SEARCH_PER_SEC: f64 = 0.1;
/// One 429 cuts the rate by at most half.
const MAX_CUT: f64 = 0.5;
/// Probing this far above the ceiling without a 429: the server's limit went up; forget it.
const CEILING_FORGET: f64 = 1.05;
/// Longest gap credited to growth at once (a family idle for an hour does not jump).
const MAX_GROWTH_STEP: Duration = Duration::from_secs(5);
/// Slowest rate learned: one request per hour.
const MIN_RATE: f64 = 1.0 / 3600.0;
/// Header-stated rates are stretched by this margin, like configured ones.
const HEADER_MARGIN: f64 = 1.02;
/// A header-stated rate within this ratio of the current one changes nothing.
const HEADER_TOLERANCE: f64 = 0.005;

/// Where the current rate came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Learned from 429s.
    Throttles,
    /// Stated by the server's rate-limit headers.
    Headers,
    /// Adopted from another node through a shared budget.
    Shared,
}

/// The learned rate of one family (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct Estimator {
    /// Requests per second; `None` while nothing was learned.
    rate: Option<f64>,
    source: Option<Source>,
    /// The rate at which the last 429 appeared.
    ceiling: Option<f64>,
    first_request: Option<Instant>,
    /// Successes since the last pause ended (or since the first request).
    successes: u64,
    last_resume: Option<Instant>,
    last_growth: Option<Instant>,
    /// Longest reset a header stated (a window estimate when no policy names the window).
    longest_reset: Duration,
}

impl Estimator {
    /// Requests per second learned so far.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// Where the rate came from.
    #[cfg(test)]
    pub fn source(&self) -> Option<Source> {
        self.source
    }

    /// The spacing the rate stands for.
    pub fn interval(&self) -> Option<Duration> {
        self.rate
            .map(|r| Duration::from_secs_f64(1.0 / r.max(MIN_RATE)))
    }

    /// A caller books a slot at `now`; `saturated` when it must wait for the schedule
    /// (demand exceeds the rate, so the rate may grow).
    pub fn on_reserve(&mut self, now: Instant, saturated: bool) {
        self.first_request.get_or_insert(now);
        // Time paused after a 429 is not time spent sending.
        let dt = self
            .last_growth
            .max(self.last_resume)
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
            .min(MAX_GROWTH_STEP)
            .as_secs_f64();
        self.last_growth = Some(now);
        if !saturated || self.source == Some(Source::Headers) {
            return;
        }
        let Some(rate) = self.rate else {
            return;
        };
        let grown = match self.ceiling {
            Some(c) if rate < DECREASE * c => {
                rate + (DECREASE * c - rate) * (dt / RECOVER_SECS).min(1.0)
            }
            Some(c) => {
                let grown = rate * (1.0 + PROBE_PER_SEC * dt);
                if grown > c * CEILING_FORGET {
                    self.ceiling = None;
                }
                grown
            }
            None => rate * (1.0 + SEARCH_PER_SEC * dt),
        };
        self.rate = Some(grown);
    }

    /// A request succeeded.
    pub fn on_success(&mut self) {
        self.successes += 1;
    }

    /// A 429 at `now`, pausing the family for `pause`; `during_pause` when the family was
    /// already paused (a request sent before that pause: no new information). Returns
    /// whether the rate changed.
    pub fn on_throttled(&mut self, now: Instant, pause: Duration, during_pause: bool) -> bool {
        if during_pause || self.source == Some(Source::Headers) {
            return false;
        }
        let resume = now + pause;
        let since = |from: Instant| resume.saturating_duration_since(from).as_secs_f64();
        let successes = std::mem::take(&mut self.successes);
        let admitted = self
            .last_resume
            .map(|from| successes as f64 / since(from).max(f64::EPSILON));
        self.last_resume = Some(resume);
        let learned = match self.rate {
            None => {
                let span = since(self.first_request.unwrap_or(now)).max(pause.as_secs_f64());
                successes.max(1) as f64 / span.max(f64::EPSILON)
            }
            Some(rate) => {
                self.ceiling = Some(rate);
                let floor = rate * MAX_CUT;
                (rate * DECREASE).min(admitted.unwrap_or(f64::INFINITY).max(floor))
            }
        };
        self.rate = Some(learned.max(MIN_RATE));
        self.source = Some(Source::Throttles);
        true
    }

    /// Rate-limit headers of a response: a stated limit and window set the rate. Returns
    /// whether the rate changed.
    pub fn on_headers(&mut self, limits: &ServerLimits) -> bool {
        if let Some(reset) = limits.reset {
            self.longest_reset = self.longest_reset.max(reset);
        }
        let Some(limit) = limits.limit.filter(|l| *l > 0) else {
            return false;
        };
        let window = limits
            .window
            .unwrap_or(self.longest_reset)
            .max(Duration::from_secs(1));
        let stated = limit as f64 / window.as_secs_f64() / HEADER_MARGIN;
        if self.source == Some(Source::Headers)
            && self
                .rate
                .is_some_and(|r| (r - stated).abs() <= r * HEADER_TOLERANCE)
        {
            return false;
        }
        self.rate = Some(stated.max(MIN_RATE));
        self.source = Some(Source::Headers);
        self.ceiling = None;
        true
    }

    /// A rate another node learned (through a shared budget).
    pub fn adopt(&mut self, rate: f64) {
        if self.source == Some(Source::Headers) || !rate.is_finite() || rate <= 0.0 {
            return;
        }
        self.rate = Some(rate.max(MIN_RATE));
        self.source = Some(Source::Shared);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::clock::{Clock, SkippingClock};

    const MS: Duration = Duration::from_millis(1);

    /// A fixed window of `limit` per second (windows start at `t0`), driven by a caller
    /// that always has work: every request takes the next slot of the estimator's
    /// schedule. Returns (successes, 429s) per second over `seconds`.
    fn drive_fixed_window(limit: u64, seconds: u64) -> Vec<(u64, u64)> {
        let clock = SkippingClock::new();
        let t0 = clock.now();
        let mut est = Estimator::default();
        let mut per_window = vec![(0u64, 0u64); seconds as usize];
        let (mut window, mut used) = (0u64, 0u64);
        let mut next_slot = t0;
        let mut paused_until = t0;
        let end = t0 + Duration::from_secs(seconds);
        for _ in 0..10_000_000 {
            let now = clock.now();
            if now >= end {
                break;
            }
            est.on_reserve(now, true);
            let slot = next_slot.max(paused_until).max(now);
            clock.advance(slot - now);
            let now = clock.now();
            next_slot = now + est.interval().unwrap_or(MS);
            let index = (now - t0).as_secs();
            if index >= seconds {
                break;
            }
            if index != window {
                (window, used) = (index, 0);
            }
            if used < limit {
                used += 1;
                per_window[index as usize].0 += 1;
                est.on_success();
            } else {
                per_window[index as usize].1 += 1;
                let left = t0 + Duration::from_secs(index + 1) - now;
                let retry_after = Duration::from_secs(left.as_secs_f64().ceil().max(1.0) as u64);
                est.on_throttled(now, retry_after, paused_until > now);
                paused_until = now + retry_after;
            }
        }
        per_window
    }

    #[test]
    fn a_fixed_window_is_learned_to_over_90_percent_with_rare_429s() {
        let windows = drive_fixed_window(20, 180);
        let late = &windows[60..];
        let served: u64 = late.iter().map(|w| w.0).sum();
        let throttled: u64 = late.iter().map(|w| w.1).sum();
        let utilisation = served as f64 / (20.0 * late.len() as f64);
        assert!(
            utilisation >= 0.9,
            "utilisation {utilisation:.3}: {windows:?}"
        );
        assert!(
            throttled <= late.len() as u64 / 10,
            "{throttled} 429s in {} windows: {windows:?}",
            late.len()
        );
        assert!(late.iter().all(|w| w.1 <= 1), "{windows:?}");
    }

    #[test]
    fn the_first_429_after_a_burst_measures_the_window() {
        let clock = SkippingClock::new();
        let mut est = Estimator::default();
        let t = clock.now();
        est.on_reserve(t, false);
        for _ in 0..50 {
            est.on_success();
        }
        // 50 went through in 100 ms; the window ends 900 ms later (Retry-After: 1).
        clock.advance(Duration::from_millis(100));
        assert!(est.on_throttled(clock.now(), Duration::from_secs(1), false));
        let rate = est.rate().unwrap();
        assert!((45.0..=46.0).contains(&rate), "{rate}");
        // Stragglers answered during the pause change nothing.
        assert!(!est.on_throttled(clock.now(), Duration::from_secs(1), true));
        assert_eq!(est.rate(), Some(rate));
    }

    #[test]
    fn a_later_429_drops_below_the_rate_it_appeared_at_and_climbs_back() {
        let clock = SkippingClock::new();
        let mut est = Estimator::default();
        est.adopt(10.0);
        est.on_reserve(clock.now(), true);
        for _ in 0..100 {
            est.on_success();
        }
        clock.advance(Duration::from_secs(10));
        est.on_throttled(clock.now(), Duration::from_secs(1), false);
        assert!((est.rate().unwrap() - 9.7).abs() < 1e-9, "{:?}", est.rate());
        // Saturated for 60 s: back near the ceiling, never 5 % past it.
        for _ in 0..600 {
            clock.advance(Duration::from_millis(100));
            est.on_reserve(clock.now(), true);
        }
        let rate = est.rate().unwrap();
        assert!((9.9..10.5).contains(&rate), "{rate}");
        // Idle time does not grow the rate.
        clock.advance(Duration::from_secs(60));
        est.on_reserve(clock.now(), false);
        assert_eq!(est.rate(), Some(rate));
    }

    #[test]
    fn headers_set_the_rate_and_429s_do_not_move_it() {
        let mut est = Estimator::default();
        let limits = ServerLimits {
            limit: Some(100),
            remaining: Some(40),
            reset: Some(Duration::from_secs(20)),
            window: Some(Duration::from_secs(60)),
        };
        assert!(est.on_headers(&limits));
        let rate = est.rate().unwrap();
        assert!((rate - 100.0 / 60.0 / 1.02).abs() < 1e-9, "{rate}");
        assert!(!est.on_headers(&limits));
        assert!(!est.on_throttled(Instant::now(), Duration::from_secs(1), false));
        assert_eq!(est.source(), Some(Source::Headers));
        // Without a policy the window is the longest reset seen.
        let mut bare = Estimator::default();
        let mut limits = ServerLimits {
            window: None,
            reset: Some(Duration::from_secs(30)),
            ..limits
        };
        bare.on_headers(&limits);
        limits.reset = Some(Duration::from_secs(60));
        bare.on_headers(&limits);
        limits.reset = Some(Duration::from_secs(5));
        bare.on_headers(&limits);
        assert!((bare.rate().unwrap() - 100.0 / 60.0 / 1.02).abs() < 1e-9);
    }
}
