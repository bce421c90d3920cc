//! [`ApiStats`]: counters of what a tenant's client has done, in total and per endpoint
//! family, for metrics and summaries.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What this client has done so far (for metrics and run summaries).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApiStats {
    /// HTTP requests sent to the API (token requests not included).
    pub requests: u64,
    /// Requests retried after a 429, 5xx or transport error.
    pub retries: u64,
    /// 429 answers (each paused its family).
    pub throttled: u64,
    /// 401 answers that led to a token refresh.
    pub refreshed_after_401: u64,
    /// Token requests made for this tenant's credentials.
    pub token_requests: u64,
}

impl ApiStats {
    /// What happened between `earlier` and `self` (counters that went backwards, as after
    /// a client was rebuilt, count from zero).
    pub fn since(&self, earlier: &ApiStats) -> ApiStats {
        let d = |now: u64, then: u64| if now >= then { now - then } else { now };
        ApiStats {
            requests: d(self.requests, earlier.requests),
            retries: d(self.retries, earlier.retries),
            throttled: d(self.throttled, earlier.throttled),
            refreshed_after_401: d(self.refreshed_after_401, earlier.refreshed_after_401),
            token_requests: d(self.token_requests, earlier.token_requests),
        }
    }
}

/// Name under which token requests are reported by [`crate::api::Api::family_stats`].
pub const TOKEN_FAMILY: &str = "token";

/// Name that stands for every family past the first [`MAX_FAMILIES`] a client has seen.
pub const OTHER_FAMILY: &str = "other";

/// Families a client keeps counters for by name, so metric labels stay bounded even when
/// implicit families are named after server paths.
pub const MAX_FAMILIES: usize = 32;

/// Something a client counts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Count {
    Request,
    Retry,
    Throttled,
    RefreshedAfter401,
}

#[derive(Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    retries: AtomicU64,
    throttled: AtomicU64,
    refreshed_after_401: AtomicU64,
}

impl Counters {
    fn add(&self, what: Count) {
        let counter = match what {
            Count::Request => &self.requests,
            Count::Retry => &self.retries,
            Count::Throttled => &self.throttled,
            Count::RefreshedAfter401 => &self.refreshed_after_401,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// These counters as [`ApiStats`], with `token_requests` as given.
    fn snapshot(&self, token_requests: u64) -> ApiStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ApiStats {
            requests: load(&self.requests),
            retries: load(&self.retries),
            throttled: load(&self.throttled),
            refreshed_after_401: load(&self.refreshed_after_401),
            token_requests,
        }
    }
}

/// A tenant's counters, in total and per endpoint family.
#[derive(Default)]
pub(crate) struct ClientCounters {
    total: Counters,
    families: Mutex<BTreeMap<String, Arc<Counters>>>,
}

impl ClientCounters {
    /// The counters of family `name` (those of [`OTHER_FAMILY`] once [`MAX_FAMILIES`]
    /// names are taken).
    pub fn family(&self, name: &str) -> Arc<Counters> {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let name = if families.contains_key(name) || families.len() < MAX_FAMILIES {
            name
        } else {
            OTHER_FAMILY
        };
        families.entry(name.to_string()).or_default().clone()
    }

    /// Counts `what` for `family` and in the total.
    pub fn add(&self, family: &Counters, what: Count) {
        self.total.add(what);
        family.add(what);
    }

    /// The totals, with `token_requests` as given.
    pub fn total(&self, token_requests: u64) -> ApiStats {
        self.total.snapshot(token_requests)
    }

    /// Every family's counters so far, by name, then token requests as
    /// [`TOKEN_FAMILY`].
    pub fn by_family(&self, token_requests: u64) -> Vec<(String, ApiStats)> {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(String, ApiStats)> = families
            .iter()
            .map(|(name, c)| (name.clone(), c.snapshot(0)))
            .collect();
        out.push((
            TOKEN_FAMILY.to_string(),
            ApiStats {
                token_requests,
                ..ApiStats::default()
            },
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_go_to_the_family_and_the_total_and_family_names_are_bounded() {
        let c = ClientCounters::default();
        let media = c.family("media");
        c.add(&media, Count::Request);
        c.add(&media, Count::Throttled);
        let search = c.family("search");
        c.add(&search, Count::Request);
        assert_eq!(c.total(3).requests, 2);
        assert_eq!(c.total(3).token_requests, 3);
        let by = c.by_family(3);
        assert_eq!(by[0].0, "media");
        assert_eq!((by[0].1.requests, by[0].1.throttled), (1, 1));
        assert_eq!(by[1].0, "search");
        assert_eq!(by.last().unwrap().0, TOKEN_FAMILY);
        assert_eq!(by.last().unwrap().1.token_requests, 3);

        for i in 0..MAX_FAMILIES * 2 {
            let f = c.family(&format!("/recordings/{i}"));
            c.add(&f, Count::Request);
        }
        let by = c.by_family(0);
        assert_eq!(by.len(), MAX_FAMILIES + 2, "families, other, token");
        let other = by.iter().find(|(n, _)| n == OTHER_FAMILY).unwrap();
        assert_eq!(
            other.1.requests,
            (MAX_FAMILIES * 2 - (MAX_FAMILIES - 2)) as u64
        );
        // A family seen before the cap keeps its own name.
        c.add(&c.family("media"), Count::Request);
        let by = c.by_family(0);
        let media = by.iter().find(|(n, _)| n == "media").unwrap();
        assert_eq!(media.1.requests, 2);
    }

    #[test]
    fn since_counts_from_zero_after_a_reset() {
        let before = ApiStats {
            requests: 10,
            retries: 2,
            ..ApiStats::default()
        };
        let later = ApiStats {
            requests: 15,
            retries: 2,
            ..ApiStats::default()
        };
        assert_eq!(later.since(&before).requests, 5);
        assert_eq!(later.since(&before).retries, 0);
        let rebuilt = ApiStats {
            requests: 3,
            ..ApiStats::default()
        };
        assert_eq!(rebuilt.since(&before).requests, 3);
    }
}
