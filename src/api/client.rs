//! [`Api`]: one tenant's client. A request waits for its family's budget, carries the
//! cached token, and is retried on 429 (pausing the family), 5xx and transport errors with
//! jittered backoff; a 401 refreshes the token and retries once. Responses are JSON,
//! read up to a size cap. A client handle may carry a deadline ([`Api::within`]): retries
//! that would wait past it stop early.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::{Method, Url};
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::api::auth::{Authenticator, error_message};
use crate::api::backoff::{Backoff, parse_retry_after};
use crate::api::clock::{Clock, TokioClock};
use crate::api::config::TenantConfig;
use crate::api::dry_run;
use crate::api::durations::MAX_SERVER_WAIT;
use crate::api::error::ApiError;
use crate::api::http::{HttpClient, StallRules, redirect_policy};
use crate::api::limiter::{BudgetShare, FamilyLimiter, RateBudgets};
use crate::api::path::ApiPath;
use crate::api::stats::{ApiStats, ClientCounters, Count, Counters};
use crate::api::target;
use crate::dry_run::DryRun;
use crate::secret::Secret;

/// One tenant's API client; cheap to clone (shared state behind an `Arc`).
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
    /// Set for `--dry-run`: mutating calls are recorded here, not sent.
    dry_run: Option<DryRun>,
    /// Retries (and polls) that would wait past this stop early: the deadline of the
    /// script call this handle serves (see [`Api::within`]).
    deadline: Option<Instant>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("tenant", &self.inner.tenant)
            .finish_non_exhaustive()
    }
}

struct Inner {
    tenant: String,
    base: OnceCell<Url>,
    http: HttpClient,
    auth: Authenticator,
    budgets: RateBudgets,
    backoff: Backoff,
    max_retries: u32,
    max_response_bytes: u64,
    clock: Arc<dyn Clock>,
    counters: ClientCounters,
}

/// How one attempt ended, when it did not succeed.
enum Failure {
    Unauthorized(ApiError),
    /// 429: pause the family (for `Retry-After` when given).
    Throttled(ApiError, Option<Duration>),
    /// A retryable answer whose `Retry-After` asks for at least this long (503 and kin).
    RetryAfter(ApiError, Duration),
    Other(ApiError),
}

impl Api {
    /// Builds the client for `tenant`; `config_dir` anchors secret files. Reports every
    /// configuration problem at once.
    pub fn new(tenant: &str, config: &TenantConfig, config_dir: &Path) -> Result<Api, ApiError> {
        Api::with_clock(tenant, config, config_dir, Arc::new(TokioClock))
    }

    /// [`Api::new`] on a given clock (tests use a [`crate::api::SkippingClock`]).
    pub fn with_clock(
        tenant: &str,
        config: &TenantConfig,
        config_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Api, ApiError> {
        let mut problems = Vec::new();
        let base = OnceCell::new();
        if let Some(text) = &config.base_url {
            match Url::parse(text) {
                Ok(url) => base.set(url).expect("fresh cell"),
                Err(e) => problems.push(format!("base_url {text:?}: {e}")),
            }
        }
        if config.backoff_base > config.backoff_max {
            problems.push("backoff_base is longer than backoff_max".into());
        }
        if config.backoff_max > MAX_SERVER_WAIT {
            problems.push(format!(
                "backoff_max is longer than {}s",
                MAX_SERVER_WAIT.as_secs()
            ));
        }
        if config.read_timeout.is_zero()
            || config.connect_timeout.is_zero()
            || config.header_timeout.is_zero()
            || config.min_progress_window.is_zero()
        {
            problems.push(
                "connect_timeout, read_timeout, header_timeout and min_progress_window must \
                 be positive"
                    .into(),
            );
        }
        if config.min_progress_bytes == 0 {
            problems.push("min_progress_bytes must be at least 1".into());
        }
        let backoff = Backoff {
            base: config.backoff_base,
            max: config.backoff_max,
        };
        let auth = Authenticator::new(
            tenant,
            &config.auth,
            config.base_url.as_deref(),
            config_dir,
            clock.clone(),
        )
        .map_err(|e| match e {
            ApiError::Config { message, .. } => problems.push(message),
            other => problems.push(other.to_string()),
        });
        let budgets = RateBudgets::new(&config.rate_limits, backoff, clock.clone())
            .map_err(|message| problems.push(message));
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .redirect(redirect_policy())
            .user_agent(concat!("cxpipe/", env!("CARGO_PKG_VERSION")))
            .build()
            .map(|client| HttpClient {
                client,
                rules: StallRules {
                    header_timeout: config.header_timeout,
                    min_progress_bytes: config.min_progress_bytes,
                    min_progress_window: config.min_progress_window,
                },
            })
            .map_err(|e| problems.push(format!("cannot build the HTTP client: {e}")));
        let (Ok(auth), Ok(budgets), Ok(http), true) = (auth, budgets, http, problems.is_empty())
        else {
            return Err(ApiError::Config {
                tenant: tenant.to_string(),
                message: problems.join("; "),
            });
        };
        Ok(Api {
            inner: Arc::new(Inner {
                tenant: tenant.to_string(),
                base,
                http,
                auth,
                budgets,
                backoff,
                max_retries: config.max_retries,
                max_response_bytes: config.max_response_bytes,
                clock,
                counters: ClientCounters::default(),
            }),
            dry_run: None,
            deadline: None,
        })
    }

    /// This client (same token, budgets and counters) in a dry run: mutating calls
    /// (POST, PUT, PATCH, DELETE) are recorded in `dry` and answered `{"dry_run": true}`
    /// without being sent; reads and [`Api::query`] calls are sent.
    pub fn with_dry_run(&self, dry: DryRun) -> Api {
        Api {
            dry_run: Some(dry),
            ..self.clone()
        }
    }

    /// This client (same token, budgets, counters and dry run) bounded by `deadline`,
    /// the deadline of the item it works for: a retry, a discovery retry or a poll that
    /// would wait past it returns the last error instead. `None`: no bound beyond the
    /// retry policy. Native functions bind the deadline of the script call they serve.
    pub fn within(&self, deadline: Option<Instant>) -> Api {
        Api {
            deadline,
            ..self.clone()
        }
    }

    /// The deadline this handle works to (see [`Api::within`]).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether this client is in a dry run.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run.is_some()
    }

    /// The tenant's name.
    pub fn tenant(&self) -> &str {
        &self.inner.tenant
    }

    /// Counters of requests, retries, 429s, refreshes and token requests so far.
    pub fn stats(&self) -> ApiStats {
        self.inner.counters.total(self.token_requests())
    }

    /// [`Api::stats`] per endpoint family (the rate family each request went through),
    /// with token requests as the family [`crate::api::stats::TOKEN_FAMILY`].
    pub fn family_stats(&self) -> Vec<(String, ApiStats)> {
        self.inner.counters.by_family(self.token_requests())
    }

    /// Token requests made so far for this tenant's credentials.
    pub fn token_requests(&self) -> u64 {
        self.inner.auth.token_requests()
    }

    /// Books this tenant's rate budgets (configured and learned) from `store`, shared with
    /// every other process that uses it, so they stay within the server's limits together.
    /// Returns false when a store was attached before (the first one stays).
    pub fn share_budgets(&self, store: Arc<dyn BudgetShare>) -> bool {
        self.inner.budgets.share(&self.inner.tenant, store)
    }

    /// The clock this client waits on.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Sends `method path` (relative to the base URL, or an absolute URL on the same
    /// origin) with optional query map and JSON body; returns the parsed JSON (`null` for
    /// an empty body). Retries stop early when this handle's deadline would pass.
    /// In a dry run a mutating call is recorded instead (see [`Api::with_dry_run`]).
    pub async fn request(
        &self,
        method: Method,
        path: impl Into<ApiPath>,
        query: Option<&Value>,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let path = path.into();
        if let Some(dry) = &self.dry_run
            && dry_run::is_mutating(&method)
        {
            let url = self.url(&path, query).await?;
            let shown = target::display_path(&url);
            return Ok(dry_run::pretend(dry, &method, &shown, body));
        }
        self.send(method, path, query, body).await
    }

    /// A read-only query: like [`Api::request`], but sent even in a dry run, whatever its
    /// method (a search sent by POST, a page of a paginated walk).
    pub async fn query(
        &self,
        method: Method,
        path: impl Into<ApiPath>,
        query: Option<&Value>,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        self.send(method, path.into(), query, body).await
    }

    #[tracing::instrument(name = "api", skip_all, fields(tenant = %self.inner.tenant, %method, path = tracing::field::Empty))]
    async fn send(
        &self,
        method: Method,
        path: ApiPath,
        query: Option<&Value>,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let inner = &self.inner;
        let url = self.url(&path, query).await?;
        let base = self.base().await?;
        let family = inner.budgets.family_for(&target::relative_path(base, &url));
        let counted = inner.counters.family(family.name());
        let shown = target::display_path(&url);
        tracing::Span::current().record("path", shown.as_str());
        let mut retries = 0;
        let mut refreshed = false;
        loop {
            family.acquire().await;
            let outcome = match inner.auth.bearer(&inner.http).await {
                Ok((token, generation)) => {
                    match self
                        .attempt(
                            &method,
                            &url,
                            &shown,
                            token.expose(),
                            body,
                            (&family, &counted),
                        )
                        .await
                    {
                        Err(Failure::Unauthorized(err)) if !refreshed => {
                            refreshed = true;
                            if inner.auth.rejected(generation).await {
                                inner.counters.add(&counted, Count::RefreshedAfter401);
                                tracing::info!(tenant = %inner.tenant, path = %shown, "401; refreshing the token and retrying once");
                                continue;
                            }
                            Err(Failure::Other(err))
                        }
                        other => other,
                    }
                }
                Err(err) => Err(Failure::Other(err)),
            };
            // `wait`: our own sleep before retrying; `pause`: the family pause the next
            // `acquire` will wait out. Both count against the item's deadline.
            let (err, wait, pause) = match outcome {
                Ok(value) => {
                    family.succeeded();
                    return Ok(value);
                }
                Err(Failure::Throttled(err, retry_after)) => {
                    inner.counters.add(&counted, Count::Throttled);
                    let pause = family.throttled(retry_after);
                    (err, None, Some(pause))
                }
                Err(Failure::Unauthorized(err)) => return Err(err),
                Err(Failure::RetryAfter(err, at_least)) => {
                    (err, Some(inner.backoff.delay(retries).max(at_least)), None)
                }
                Err(Failure::Other(err)) if err.retryable() => {
                    (err, Some(inner.backoff.delay(retries)), None)
                }
                Err(Failure::Other(err)) => return Err(err),
            };
            if retries >= inner.max_retries || self.past_deadline(wait.or(pause)) {
                return Err(err);
            }
            retries += 1;
            inner.counters.add(&counted, Count::Retry);
            tracing::warn!(tenant = %inner.tenant, path = %shown, retry = retries, error = %err, "retrying");
            if let Some(wait) = wait {
                let until = inner.clock.now() + wait;
                inner.clock.sleep_until(until).await;
            }
        }
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        shown: &str,
        token: &str,
        body: Option<&Value>,
        (family, counted): (&FamilyLimiter, &Counters),
    ) -> Result<Value, Failure> {
        let inner = &self.inner;
        let error_context = |message: String| ApiError::Transport {
            tenant: inner.tenant.clone(),
            method: method.to_string(),
            path: shown.to_string(),
            message,
        };
        let mut request = inner
            .http
            .client
            .request(method.clone(), url.clone())
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        inner.counters.add(counted, Count::Request);
        let mut response = inner.http.send(request).await.map_err(|stall| {
            Failure::Other(if stall.is_redirect() {
                ApiError::Usage {
                    tenant: inner.tenant.clone(),
                    what: format!("{method} {shown}"),
                    message: stall.describe(),
                }
            } else {
                error_context(stall.describe())
            })
        })?;
        let status = response.status().as_u16();
        tracing::debug!(tenant = %inner.tenant, %method, path = %shown, status, "response");
        family.observe(response.headers());
        if (200..300).contains(&status) {
            let bytes = self.read_capped(&mut response, method, shown).await?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).map_err(|e| {
                Failure::Other(ApiError::Decode {
                    tenant: inner.tenant.clone(),
                    method: method.to_string(),
                    path: shown.to_string(),
                    message: format!("response is not JSON: {e}"),
                })
            });
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let mut request_id = header_request_id(response.headers());
        let text = self
            .read_capped(&mut response, method, shown)
            .await
            .map(|b| String::from_utf8_lossy(&b[..b.len().min(64 * 1024)]).into_owned())
            .unwrap_or_default();
        if request_id.is_none() {
            request_id = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
                ["requestId", "request_id"]
                    .iter()
                    .find_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_string))
            });
        }
        let err = ApiError::Status {
            tenant: inner.tenant.clone(),
            method: method.to_string(),
            path: shown.to_string(),
            status,
            message: error_message(&text, status),
            request_id,
        };
        Err(match status {
            401 => Failure::Unauthorized(err),
            429 => Failure::Throttled(err, retry_after),
            _ => match retry_after {
                Some(at_least) if err.retryable() => Failure::RetryAfter(err, at_least),
                _ => Failure::Other(err),
            },
        })
    }

    async fn read_capped(
        &self,
        response: &mut reqwest::Response,
        method: &Method,
        shown: &str,
    ) -> Result<Vec<u8>, Failure> {
        let inner = &self.inner;
        let cap = inner.max_response_bytes;
        let too_large = || {
            Failure::Other(ApiError::TooLarge {
                tenant: inner.tenant.clone(),
                method: method.to_string(),
                path: shown.to_string(),
                limit: cap,
            })
        };
        if response.content_length().is_some_and(|n| n > cap) {
            return Err(too_large());
        }
        let read = inner
            .http
            .read_to_end(response, cap)
            .await
            .map_err(|stall| {
                Failure::Other(ApiError::Transport {
                    tenant: inner.tenant.clone(),
                    method: method.to_string(),
                    path: shown.to_string(),
                    message: stall.describe(),
                })
            })?;
        read.ok_or_else(too_large)
    }

    async fn base(&self) -> Result<&Url, ApiError> {
        let inner = &self.inner;
        inner
            .base
            .get_or_try_init(|| async {
                // Discovery (token, openid- and cxone-configuration) is retried like any
                // request: a 5xx or a reset on the first call must not fail the run.
                let mut retries = 0;
                let text = loop {
                    match inner.auth.discover_base(&inner.http).await {
                        Ok(text) => break text,
                        Err(err) if err.retryable() && retries < inner.max_retries => {
                            let wait = inner.backoff.delay(retries);
                            if self.past_deadline(Some(wait)) {
                                return Err(err);
                            }
                            retries += 1;
                            tracing::warn!(tenant = %inner.tenant, retry = retries, error = %err, "discovering the API base failed; retrying");
                            let until = inner.clock.now() + wait;
                            inner.clock.sleep_until(until).await;
                        }
                        Err(err) => return Err(err),
                    }
                };
                tracing::info!(tenant = %inner.tenant, base = %text, "discovered the API base URL");
                Url::parse(&text).map_err(|e| ApiError::Config {
                    tenant: inner.tenant.clone(),
                    message: format!("discovered api_endpoint {text:?}: {e}"),
                })
            })
            .await
    }

    /// The full URL of `path` on this tenant's API, for a download the flow makes itself
    /// (`ctx.api.fetch(path)`), with the token to send and its generation.
    pub async fn authorized_url(&self, path: &ApiPath) -> Result<(Url, Secret, u64), ApiError> {
        let url = self.url(path, None).await?;
        let (token, generation) = self.inner.auth.bearer(&self.inner.http).await?;
        Ok((url, token, generation))
    }

    /// A download of `url` answered 401 to the token of `generation`: the next
    /// [`Api::authorized_url`] gets a fresh one. Returns whether refreshing can help.
    pub async fn token_rejected(&self, url: &Url, generation: u64) -> bool {
        let helps = self.inner.auth.rejected(generation).await;
        if helps {
            let family = match self.base().await {
                Ok(base) => self
                    .inner
                    .budgets
                    .family_for(&target::relative_path(base, url))
                    .name()
                    .to_string(),
                Err(_) => crate::api::stats::OTHER_FAMILY.to_string(),
            };
            let counted = self.inner.counters.family(&family);
            self.inner.counters.add(&counted, Count::RefreshedAfter401);
        }
        helps
    }

    /// Whether waiting `wait` would overrun this handle's deadline: then the last error is
    /// returned instead.
    fn past_deadline(&self, wait: Option<Duration>) -> bool {
        self.deadline
            .is_some_and(|deadline| Instant::now() + wait.unwrap_or_default() >= deadline)
    }

    /// The full URL for `path` (plus `query`); see [`target::resolve`].
    async fn url(&self, path: &ApiPath, query: Option<&Value>) -> Result<Url, ApiError> {
        let base = self.base().await?;
        target::resolve(base, path, query).map_err(|message| ApiError::Usage {
            tenant: self.inner.tenant.clone(),
            what: "building the request URL".into(),
            message,
        })
    }
}

fn header_request_id(headers: &reqwest::header::HeaderMap) -> Option<String> {
    [
        "x-request-id",
        "request-id",
        "x-correlation-id",
        "x-amzn-requestid",
    ]
    .iter()
    .find_map(|name| headers.get(*name)?.to_str().ok().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configuration_problem_is_reported_at_once() {
        let config: TenantConfig = toml::from_str(
            r#"
            base_url = "not a url"
            backoff_base = "1m"
            backoff_max = "1s"
            auth = { kind = "password", issuer = "https://idp", client_id = "c",
                     client_secret = { env = "CXPIPE_TEST_UNSET_CLIENT" },
                     username = { file = "missing-user" }, password = { env = "CXPIPE_TEST_UNSET_PW" } }
            rate_limits = { families = { x = { requests = 1, per = "1s" } } }
            "#,
        )
        .unwrap();
        let err = Api::new("acme", &config, Path::new("/nonexistent")).unwrap_err();
        let text = err.to_string();
        for expected in [
            "tenant acme",
            "base_url",
            "backoff_base",
            "CXPIPE_TEST_UNSET_CLIENT",
            "missing-user",
            "CXPIPE_TEST_UNSET_PW",
            "rate family x has no paths",
        ] {
            assert!(text.contains(expected), "{expected} missing from: {text}");
        }
    }
}
