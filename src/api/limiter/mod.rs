//! Rate budgets of one tenant: which endpoint family a path belongs to, and that family's
//! [`FamilyLimiter`]. Presets carry documented limits; configured families add to them.
//! Paths no family claims fall to the `default` family when one is configured, else to a
//! family per three-segment prefix (`/api/v2/recording`), so a 429 on one API slows that
//! API and not the whole tenant; with `adaptive = true` such a family learns its rate.
//!
//! # Layout
//! - `gcra.rs`: [`FamilyLimiter`], one family's schedule and pauses.
//! - `adaptive.rs`: the rate a family nobody configured learns from 429s and headers.
//! - `headers.rs`: `X-RateLimit-*`, `RateLimit-*` and `RateLimit-Policy` parsing.
//! - `share.rs`: [`BudgetShare`], budgets several nodes book from one store (the ledger).

mod adaptive;
mod gcra;
mod headers;
mod share;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub use gcra::FamilyLimiter;
pub use headers::ServerLimits;
pub use share::{BudgetShare, Grant, ShareError, ShareFuture, Update};

use share::Shared;

use crate::api::backoff::Backoff;
use crate::api::clock::Clock;
use crate::api::config::{FamilyConfig, Preset, RateLimitsConfig};

/// Name of the family that covers paths no other family claims.
pub const DEFAULT_FAMILY: &str = "default";

/// Every family of one tenant.
pub struct RateBudgets {
    /// `(pattern segments, family)`, longest pattern first.
    rules: Vec<(Vec<String>, Arc<FamilyLimiter>)>,
    default: Option<Arc<FamilyLimiter>>,
    /// Unmetered families made on first use, by path prefix.
    implicit: Mutex<HashMap<String, Arc<FamilyLimiter>>>,
    /// Whether implicit families learn their rate (`rate_limits.adaptive`).
    adaptive: bool,
    backoff: Backoff,
    clock: Arc<dyn Clock>,
    /// The store every family books from once [`RateBudgets::share`] attached one.
    share: Arc<OnceLock<Shared>>,
}

/// Segments of the prefix that names an implicit family.
const IMPLICIT_PREFIX_SEGMENTS: usize = 3;

impl RateBudgets {
    /// Builds the families from config (preset first, then configured families, which
    /// replace preset families of the same name).
    pub fn new(
        config: &RateLimitsConfig,
        backoff: Backoff,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let mut families: BTreeMap<String, FamilyConfig> = match config.preset {
            Some(preset) => preset_families(preset),
            None => BTreeMap::new(),
        };
        families.extend(config.families.clone());
        let share: Arc<OnceLock<Shared>> = Arc::default();
        let mut rules = Vec::new();
        let mut default = None;
        for (name, family) in &families {
            if family.requests == 0 || family.per.is_zero() {
                return Err(format!(
                    "rate family {name}: requests and per must be positive"
                ));
            }
            if family.per > Duration::from_secs(86_400) {
                return Err(format!("rate family {name}: per must be at most 1 day"));
            }
            let rate = Some((family.requests, family.per, family.burst.unwrap_or(1)));
            let limiter = Arc::new(FamilyLimiter::with_share(
                name,
                rate,
                false,
                backoff,
                clock.clone(),
                share.clone(),
            ));
            if name == DEFAULT_FAMILY {
                if !family.paths.is_empty() {
                    return Err(
                        "rate family default covers every other path; give it no paths".into(),
                    );
                }
                default = Some(limiter);
                continue;
            }
            if family.paths.is_empty() {
                return Err(format!("rate family {name} has no paths"));
            }
            for path in &family.paths {
                rules.push((segments(path), limiter.clone()));
            }
        }
        rules.sort_by_key(|(pattern, _)| std::cmp::Reverse(pattern.len()));
        Ok(RateBudgets {
            rules,
            default,
            implicit: Mutex::new(HashMap::new()),
            adaptive: config.adaptive,
            backoff,
            clock,
            share,
        })
    }

    /// Books every family of `tenant` (its configured budgets and learned rates) from
    /// `store`, shared with the other processes using it. Returns false when a store was
    /// attached before (the first one stays).
    pub fn share(&self, tenant: &str, store: Arc<dyn BudgetShare>) -> bool {
        self.share
            .set(Shared::new(store, tenant, self.clock.now()))
            .is_ok()
    }

    /// The family a request path (relative to the base URL, without query) belongs to.
    pub fn family_for(&self, path: &str) -> Arc<FamilyLimiter> {
        let path = segments(path);
        let configured = self.rules.iter().find(|(pattern, _)| {
            pattern.len() <= path.len()
                && pattern.iter().zip(&path).all(|(p, s)| p == "*" || p == s)
        });
        if let Some((_, family)) = configured {
            return family.clone();
        }
        if let Some(default) = &self.default {
            return default.clone();
        }
        let prefix = format!(
            "/{}",
            path[..path.len().min(IMPLICIT_PREFIX_SEGMENTS)].join("/")
        );
        let mut implicit = self.implicit.lock().expect("implicit families");
        implicit
            .entry(prefix)
            .or_insert_with_key(|name| {
                Arc::new(FamilyLimiter::with_share(
                    name,
                    None,
                    self.adaptive,
                    self.backoff,
                    self.clock.clone(),
                    self.share.clone(),
                ))
            })
            .clone()
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split('?')
        .next()
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The families a preset stands for.
pub fn preset_families(preset: Preset) -> BTreeMap<String, FamilyConfig> {
    let family = |paths: &[&str], requests, per_secs| FamilyConfig {
        paths: paths.iter().map(|p| p.to_string()).collect(),
        requests,
        per: Duration::from_secs(per_secs),
        burst: None,
    };
    let list = match preset {
        // REAL_CXONE.md: 150 per 5 minutes, 15 per 5 minutes, one call per 30 s.
        Preset::CxoneReal => vec![
            ("media-playback", family(&["/media-playback/v1"], 150, 300)),
            ("media-download", family(&["/media-download/v1"], 15, 300)),
            ("data-extraction", family(&["/data-extraction/v1"], 1, 30)),
        ],
        // Seed 002: the Recording API allows about 50 requests per minute per tenant.
        Preset::CxoneSeeds => vec![("recording", family(&["/api/v2/recording"], 50, 60))],
    };
    list.into_iter().map(|(n, f)| (n.to_string(), f)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::clock::TokioClock;

    fn budgets(toml_text: &str) -> Result<RateBudgets, String> {
        let config: RateLimitsConfig = toml::from_str(toml_text).unwrap();
        let backoff = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(8),
        };
        RateBudgets::new(&config, backoff, Arc::new(TokioClock))
    }

    #[test]
    fn paths_map_to_the_longest_matching_family() {
        let b = budgets(
            r#"
            preset = "cxone-real"
            [families]
            search = { paths = ["/api/v2/recording/search"], requests = 50, per = "1m" }
            download = { paths = ["/api/v2/recording/*/download"], requests = 20, per = "1m" }
            recording = { paths = ["/api/v2/recording"], requests = 100, per = "1m" }
            "#,
        )
        .unwrap();
        assert_eq!(b.family_for("/api/v2/recording/search").name(), "search");
        assert_eq!(
            b.family_for("/api/v2/recording/abc/download?channel=x")
                .name(),
            "download"
        );
        assert_eq!(b.family_for("/api/v2/recording/abc").name(), "recording");
        assert_eq!(
            b.family_for("/media-download/v1/status/9").name(),
            "media-download"
        );
        assert_eq!(
            b.family_for("/contacts/completed?top=5").name(),
            "/contacts/completed"
        );
        assert_eq!(
            b.family_for("/api/v2/media/recordings/1").name(),
            "/api/v2/media"
        );
        assert!(Arc::ptr_eq(
            &b.family_for("/api/v2/media/x"),
            &b.family_for("/api/v2/media/y")
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn implicit_families_learn_when_adaptive_is_on() {
        for (text, learns) in [("adaptive = true", true), ("", false)] {
            let b = budgets(text).unwrap();
            let family = b.family_for("/api/v2/media/x");
            family.acquire().await;
            family.succeeded();
            family.throttled(Some(Duration::from_secs(1)));
            assert_eq!(family.learned_rate().is_some(), learns, "{text:?}");
        }
        // Configured families never learn: their budget is the configured one.
        let b =
            budgets(r#"families = { x = { paths = ["/x"], requests = 1, per = "1s" } }"#).unwrap();
        let configured = b.family_for("/x/1");
        configured.throttled(Some(Duration::from_secs(1)));
        assert_eq!(configured.learned_rate(), None);
    }

    #[test]
    fn configured_families_replace_preset_ones_and_bad_ones_are_refused() {
        let b = budgets(
            r#"
            preset = "cxone-real"
            families = { media-playback = { paths = ["/mp"], requests = 1, per = "1s" } }
            "#,
        )
        .unwrap();
        assert_eq!(
            b.family_for("/media-playback/v1/contacts").name(),
            "/media-playback/v1/contacts"
        );
        let with_default =
            budgets(r#"families = { default = { requests = 5, per = "1s" } }"#).unwrap();
        assert_eq!(
            with_default.family_for("/anything/at/all").name(),
            DEFAULT_FAMILY
        );
        assert_eq!(b.family_for("/mp/x").name(), "media-playback");
        let err = budgets(r#"families = { x = { requests = 1, per = "1s" } }"#)
            .err()
            .unwrap();
        assert!(err.contains("no paths"), "{err}");
        let zero = budgets(r#"families = { x = { paths = ["/x"], requests = 0, per = "1s" } }"#);
        assert!(zero.is_err());
    }
}
