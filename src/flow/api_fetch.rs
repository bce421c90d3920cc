//! `ctx.api.fetch(path)`: a flow source reading an endpoint of the tenant's own API (seed
//! 003's `/media/recordings/{id}/content`), sent with the tenant's bearer token. The
//! transfer is the resumable one of [`super::fetch`] (`Range`, `Content-Range` checked); a
//! 401 invalidates the token and the next attempt carries a fresh one. The token never
//! enters Rhai.

use rhai::plugin::*;
use rhai::{Array, Engine, EvalAltResult};
use tokio::sync::mpsc;

use super::error::FlowError;
use super::fetch::{self, FetchOutcome, FetchPolicy, FetchState};
use super::source::SourceMsg;
use super::spec::{Flow, Source, UrlSource};
use crate::api::{Api, ApiPath};

/// Registers `api.fetch(path)` (a string or an array of segments).
pub fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(api_fetch_functions).into());
}

#[export_module]
mod api_fetch_functions {
    use super::*;

    /// Starts a flow from an endpoint of the tenant's API given as an array of segments,
    /// sent with its token (which never enters the script).
    ///
    /// ```rhai
    /// let id = "42";
    /// ctx.api.fetch(["api", "v2", "media", "recordings", id, "content"]).md5().write(ctx.store, `media/${id}`);
    /// ```
    #[rhai_fn(name = "fetch", pure, return_raw)]
    pub fn fetch_segments(api: &mut Api, path: Array) -> Result<Flow, Box<EvalAltResult>> {
        let path = crate::api::rhai::segments_path(&path)?;
        Ok(Flow::new(Source::Fetch(UrlSource::Api {
            api: api.clone(),
            path,
        })))
    }

    /// Starts a flow from an endpoint of the tenant's API given as a path string, sent
    /// with its token. Prefer an array of segments when the path holds ids.
    ///
    /// ```rhai
    /// ctx.api.fetch("/api/v2/media/recordings/42/content").sha256().write(ctx.store, "media/42");
    /// ```
    #[rhai_fn(name = "fetch", pure)]
    pub fn fetch_text(api: &mut Api, path: &str) -> Flow {
        Flow::new(Source::Fetch(UrlSource::Api {
            api: api.clone(),
            path: ApiPath::Text(path.to_string()),
        }))
    }
}

/// Downloads `path` of `api` into `tx`: each round asks the API for the URL and a current
/// token; a 401 refreshes the token (a failure when a fresh token is refused at its first
/// request, so a server that always refuses ends after `policy.tries`); any other refusal
/// is final.
pub async fn fetch_loop(
    api: &Api,
    path: &ApiPath,
    policy: &FetchPolicy,
    tx: &mpsc::Sender<SourceMsg>,
) -> Result<FetchState, FlowError> {
    let mut state = FetchState::default();
    // Requests made when the last token was refused.
    let mut refused_after: Option<u32> = None;
    loop {
        let (api_url, token, generation) =
            api.authorized_url(path)
                .await
                .map_err(|e| FlowError::Fetch {
                    url: format!("{path}"),
                    tries: state.attempts,
                    received: state.received,
                    reason: format!("getting a token for tenant {}: {e}", api.tenant()),
                    status: None,
                    retryable: e.retryable(),
                })?;
        let url = api_url.to_string();
        match fetch::transfer(&url, Some(token.expose()), &mut state, policy, tx).await? {
            FetchOutcome::Done => return Ok(state),
            FetchOutcome::Refresh { status } => {
                let refused = format!("the API refused the download with {status}");
                if status != 401 || !api.token_rejected(&api_url, generation).await {
                    return Err(fetch::give_up(&url, &state, refused, Some(status), false));
                }
                // An expired token is normal; a fresh one refused at its first request is a
                // failure.
                if refused_after.is_some_and(|n| state.attempts == n + 1) {
                    state.failures += 1;
                }
                refused_after = Some(state.attempts);
                if state.failures >= policy.tries {
                    return Err(fetch::give_up(&url, &state, refused, Some(status), true));
                }
                tracing::info!(
                    tenant = api.tenant(),
                    offset = state.offset,
                    "401 on a download; refreshing the token"
                );
                state.refreshes += 1;
            }
        }
    }
}
