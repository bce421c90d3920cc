//! [`TokenCache`]: one bearer token shared by every worker of every client with the same
//! credentials, refreshed at 5/6 of its lifetime (the 50-minute mark of a 60-minute token)
//! on a monotonic clock, with exactly one token request in flight at a time.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

use crate::api::clock::Clock;
use crate::api::error::ApiError;
use crate::secret::Secret;

/// A token as the token endpoint gave it.
#[derive(Clone, Debug)]
pub struct Token {
    pub access: Secret,
    pub lifetime: Duration,
    /// A refresh token, when the grant issues one (the password grant does).
    pub refresh: Option<Secret>,
}

/// Caches one token; see the module docs.
pub struct TokenCache {
    clock: Arc<dyn Clock>,
    state: tokio::sync::Mutex<State>,
    /// Token requests started.
    attempts: AtomicU64,
    /// Token requests finished (read before queueing, to spot a failure that happened
    /// while this caller waited).
    finished: AtomicU64,
}

#[derive(Default)]
struct State {
    token: Option<Cached>,
    /// Bumped per new token, so a 401 only discards the token it was answered with.
    generation: u64,
    last_error: Option<ApiError>,
    /// When the credentials were last refused outright (non-retryable error).
    refused_at: Option<Instant>,
}

/// How long refused credentials are answered from the cache instead of asking again, so
/// bad credentials cost one token request, not one per worker or retry.
pub const REFUSAL_COOLDOWN: Duration = Duration::from_secs(60);

struct Cached {
    access: Secret,
    refresh_at: Instant,
    expires_at: Instant,
}

/// `now + d`, or (for a lifetime no clock can reach) about a century ahead.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

static SHARED: LazyLock<Mutex<HashMap<String, Weak<TokenCache>>>> = LazyLock::new(Default::default);

impl TokenCache {
    /// A cache of its own (for tests); clients use [`TokenCache::shared`].
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        TokenCache {
            clock,
            state: tokio::sync::Mutex::new(State::default()),
            attempts: AtomicU64::new(0),
            finished: AtomicU64::new(0),
        }
    }

    /// The process-wide cache for `key` (endpoint, client id and a hash of the secrets), so
    /// clients built with the same credentials share one token.
    pub fn shared(key: &str, clock: Arc<dyn Clock>) -> Arc<TokenCache> {
        let mut map = SHARED.lock().expect("token cache registry");
        map.retain(|_, cache| cache.strong_count() > 0);
        if let Some(cache) = map.get(key).and_then(Weak::upgrade) {
            return cache;
        }
        let cache = Arc::new(TokenCache::new(clock));
        map.insert(key.to_string(), Arc::downgrade(&cache));
        cache
    }

    /// Token requests made so far through this cache.
    pub fn requests(&self) -> u64 {
        self.attempts.load(Ordering::SeqCst)
    }

    /// The current token and its generation, calling `fetch` when it is missing or due for
    /// refresh. Callers queued behind a failed request get that failure instead of
    /// requesting again; a failed refresh falls back to the old token while it is valid.
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<(Secret, u64), ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Token, ApiError>>,
    {
        let seen = self.finished.load(Ordering::SeqCst);
        let mut state = self.state.lock().await;
        let now = self.clock.now();
        if let Some(token) = &state.token
            && now < token.refresh_at
        {
            return Ok((token.access.clone(), state.generation));
        }
        if let Some(err) = &state.last_error {
            let shared = self.finished.load(Ordering::SeqCst) > seen;
            let cooling = state
                .refused_at
                .is_some_and(|at| now < at + REFUSAL_COOLDOWN);
            if shared || cooling {
                return Err(err.clone());
            }
        }
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let fetched = fetch().await;
        self.finished.fetch_add(1, Ordering::SeqCst);
        match fetched {
            Ok(token) => {
                let now = self.clock.now();
                state.generation += 1;
                state.last_error = None;
                state.refused_at = None;
                state.token = Some(Cached {
                    access: token.access.clone(),
                    refresh_at: later(now, token.lifetime / 6 * 5),
                    expires_at: later(now, token.lifetime),
                });
                tracing::debug!(
                    lifetime_s = token.lifetime.as_secs(),
                    "obtained a new access token"
                );
                Ok((token.access, state.generation))
            }
            Err(err) => {
                state.last_error = Some(err.clone());
                state.refused_at = (!err.retryable()).then(|| self.clock.now());
                match &state.token {
                    Some(old) if err.retryable() && self.clock.now() < old.expires_at => {
                        tracing::warn!(error = %err, "token refresh failed; using the current token until it expires");
                        Ok((old.access.clone(), state.generation))
                    }
                    _ => Err(err),
                }
            }
        }
    }

    /// Drops the token of `generation` after the server rejected it (a newer token, fetched
    /// meanwhile by another worker, is kept).
    pub async fn invalidate(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state.generation == generation {
            state.token = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::clock::TokioClock;

    fn token(value: &str, secs: u64) -> Token {
        Token {
            access: Secret::new(value),
            lifetime: Duration::from_secs(secs),
            refresh: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_request_and_refresh_at_five_sixths() {
        let cache = Arc::new(TokenCache::new(Arc::new(TokioClock)));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let cache = cache.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get(|| async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(token("t1", 3600))
                    })
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().0.expose(), "t1");
        }
        assert_eq!(cache.requests(), 1);
        tokio::time::sleep(Duration::from_secs(49 * 60)).await;
        let (t, _) = cache.get(|| async { Ok(token("t2", 3600)) }).await.unwrap();
        assert_eq!((t.expose(), cache.requests()), ("t1", 1));
        tokio::time::sleep(Duration::from_secs(61)).await; // past the 50-minute mark
        let (t, _) = cache.get(|| async { Ok(token("t2", 3600)) }).await.unwrap();
        assert_eq!((t.expose(), cache.requests()), ("t2", 2));
    }

    #[tokio::test(start_paused = true)]
    async fn invalidate_only_drops_the_rejected_generation() {
        let cache = TokenCache::new(Arc::new(TokioClock));
        let (_, g1) = cache.get(|| async { Ok(token("a", 60)) }).await.unwrap();
        cache.invalidate(g1).await;
        let (b, g2) = cache.get(|| async { Ok(token("b", 60)) }).await.unwrap();
        cache.invalidate(g1).await; // a late 401 for the old token
        let (still_b, _) = cache.get(|| async { Ok(token("c", 60)) }).await.unwrap();
        assert_eq!((b.expose(), still_b.expose()), ("b", "b"));
        assert!(g2 > g1);
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_behind_a_failed_request_share_its_error() {
        let cache = Arc::new(TokenCache::new(Arc::new(TokioClock)));
        let rejected = || async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err::<Token, _>(ApiError::Auth {
                tenant: "acme".into(),
                token_url: "http://x/token".into(),
                status: Some(401),
                message: "invalid_client".into(),
                retryable: false,
            })
        };
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let cache = cache.clone();
            tasks.push(tokio::spawn(
                async move { cache.get(rejected).await.is_err() },
            ));
        }
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(cache.requests(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn refused_credentials_are_not_retried_until_the_cooldown_ends() {
        let cache = TokenCache::new(Arc::new(TokioClock));
        let refuse = || async {
            Err::<Token, _>(ApiError::Auth {
                tenant: "acme".into(),
                token_url: "u".into(),
                status: Some(401),
                message: "invalid_client".into(),
                retryable: false,
            })
        };
        assert!(cache.get(refuse).await.is_err());
        assert!(cache.get(refuse).await.is_err());
        assert_eq!(cache.requests(), 1);
        tokio::time::sleep(REFUSAL_COOLDOWN).await;
        let (t, _) = cache.get(|| async { Ok(token("ok", 60)) }).await.unwrap();
        assert_eq!((t.expose(), cache.requests()), ("ok", 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_keeps_the_valid_token() {
        let cache = TokenCache::new(Arc::new(TokioClock));
        cache.get(|| async { Ok(token("a", 60)) }).await.unwrap();
        tokio::time::sleep(Duration::from_secs(55)).await;
        let (t, _) = cache
            .get(|| async {
                Err(ApiError::Auth {
                    tenant: "acme".into(),
                    token_url: "u".into(),
                    status: Some(503),
                    message: "down".into(),
                    retryable: true,
                })
            })
            .await
            .unwrap();
        assert_eq!(t.expose(), "a");
    }
}
