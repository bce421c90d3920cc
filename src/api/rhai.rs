//! The `ctx.api` surface scripts see: type `Api` with `get/post/put/patch/delete`,
//! `paginate` and `poll`. Only converts between Rhai and JSON and calls the native stage;
//! must run on a blocking thread of the tokio runtime (script calls do).

use std::future::Future;

use reqwest::Method;
use rhai::plugin::*;
use rhai::{Dynamic, Engine, EvalAltResult, Map};
use serde_json::Value;

use crate::api::client::Api;
use crate::api::pages::Pages;
use crate::api::paginate::{PageSpec, Pager};
use crate::api::poll::{PollSpec, poll};

/// Registers `Api`, `Pages` (iterable in `for`) and the `ctx.api` functions.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<Api>("Api");
    engine.register_type_with_name::<Pages>("Pages");
    engine.register_iterator_result::<Pages, Dynamic>();
    engine.register_global_module(exported_module!(api_functions).into());
}

/// Runs `fut` to completion on the current tokio runtime from a blocking thread.
pub fn block_on<F: Future>(fut: F) -> Result<F::Output, Box<EvalAltResult>> {
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| runtime_error("ctx.api was called outside the tokio runtime"))?;
    Ok(handle.block_on(fut))
}

fn runtime_error(message: &str) -> Box<EvalAltResult> {
    let mut map = Map::new();
    map.insert("message".into(), message.into());
    map.insert("status".into(), Dynamic::UNIT);
    map.insert("retryable".into(), false.into());
    map.insert("request_id".into(), Dynamic::UNIT);
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from_map(map),
        Position::NONE,
    ))
}

fn to_json(value: Dynamic, what: &str) -> Result<Value, Box<EvalAltResult>> {
    rhai::serde::from_dynamic::<Value>(&value)
        .map_err(|e| runtime_error(&format!("{what} cannot be sent as JSON: {e}")))
}

fn send(
    api: &Api,
    method: Method,
    path: &str,
    query: Option<Value>,
    body: Option<Value>,
) -> RhaiResult {
    let value = block_on(api.request(method, path, query.as_ref(), body.as_ref()))??;
    rhai::serde::to_dynamic(value)
}

fn spec<T: serde::de::DeserializeOwned>(map: Map, what: &str) -> Result<T, Box<EvalAltResult>> {
    let json = to_json(Dynamic::from_map(map), what)?;
    serde_json::from_value(json).map_err(|e| runtime_error(&format!("{what}: {e}")))
}

#[export_module]
mod api_functions {
    use super::*;

    /// The tenant this client talks to.
    ///
    /// ```rhai
    /// ctx.log(`talking to ${ctx.api.tenant}`);
    /// ```
    #[rhai_fn(get = "tenant", pure)]
    pub fn tenant(api: &mut Api) -> String {
        api.tenant().to_string()
    }

    /// `GET path`; returns the parsed JSON. Errors are maps
    /// `#{status, message, retryable, request_id}`.
    ///
    /// ```rhai
    /// let rec = ctx.api.get("/api/v2/recording/" + id);
    /// ```
    #[rhai_fn(name = "get", return_raw, pure)]
    pub fn get(api: &mut Api, path: &str) -> RhaiResult {
        send(api, Method::GET, path, None, None)
    }

    /// `GET path?query`; query values may be strings, numbers, booleans or arrays.
    ///
    /// ```rhai
    /// let url = ctx.api.get(`/api/v2/recording/${id}/download`, #{ channel: "combined" });
    /// try { ctx.api.get("/api/v2/recording/x", #{}) } catch (e) { if e.status == 404 { /* gone */ } }
    /// ```
    #[rhai_fn(name = "get", return_raw, pure)]
    pub fn get_with_query(api: &mut Api, path: &str, query: Map) -> RhaiResult {
        let query = to_json(Dynamic::from_map(query), "query")?;
        send(api, Method::GET, path, Some(query), None)
    }

    /// `POST path` with a JSON body.
    ///
    /// ```rhai
    /// let job = ctx.api.post("/api/v1/recordings/export", #{ interactions: ids, format: "wav" });
    /// ```
    #[rhai_fn(name = "post", return_raw, pure)]
    pub fn post(api: &mut Api, path: &str, body: Dynamic) -> RhaiResult {
        let body = to_json(body, "body")?;
        send(api, Method::POST, path, None, Some(body))
    }

    /// `PUT path` with a JSON body.
    ///
    /// ```rhai
    /// ctx.api.put(`/api/v2/recordings/${id}/retention`, #{ retentionDays: 365 });
    /// ```
    #[rhai_fn(name = "put", return_raw, pure)]
    pub fn put(api: &mut Api, path: &str, body: Dynamic) -> RhaiResult {
        let body = to_json(body, "body")?;
        send(api, Method::PUT, path, None, Some(body))
    }

    /// `PATCH path` with a JSON body.
    ///
    /// ```rhai
    /// ctx.api.patch(`/api/v2/interactions/${id}`, #{ customFields: #{ archival_status: "ARCHIVED" } });
    /// ```
    #[rhai_fn(name = "patch", return_raw, pure)]
    pub fn patch(api: &mut Api, path: &str, body: Dynamic) -> RhaiResult {
        let body = to_json(body, "body")?;
        send(api, Method::PATCH, path, None, Some(body))
    }

    /// `DELETE path`.
    ///
    /// ```rhai
    /// ctx.api.delete(`/api/v2/webhooks/${hook_id}`);
    /// ```
    #[rhai_fn(name = "delete", return_raw, pure)]
    pub fn delete(api: &mut Api, path: &str) -> RhaiResult {
        send(api, Method::DELETE, path, None, None)
    }

    /// A lazy walk over a paginated collection, for use in `for`. Keys: `style`
    /// (`offset`, `skip_top`, `page`, `cursor`, `next_link`), `method`, `query`, `body`,
    /// `items`, `next`, `param`, `size_param`, `size`, `param_in` (`query`|`body`),
    /// `start`, `total`, `max_pages`.
    ///
    /// ```rhai
    /// for rec in ctx.api.paginate("/api/v2/recording/search", #{
    ///     method: "POST", body: #{ filters: [] }, style: "cursor",
    ///     items: "data", next: "nextPageToken", param: "pageToken" }) {
    ///     ctx.emit(rec.recordingId, rec);
    /// }
    /// ```
    #[rhai_fn(name = "paginate", return_raw, pure)]
    pub fn paginate(api: &mut Api, path: &str, options: Map) -> Result<Pages, Box<EvalAltResult>> {
        let spec: PageSpec = spec(options, "paginate options")?;
        Ok(Pages::new(Pager::new(api, path, &spec)?))
    }

    /// Polls `path` until `field` is in `done` (returns the response), raising an error
    /// when it is in `failed` or `timeout` passes. Keys: `field` (dotted path, default
    /// `status`), `done`, `failed`, `every` (`5s`), `max_every`, `timeout` (`10m`),
    /// `reason`, `query`.
    ///
    /// ```rhai
    /// let job = ctx.api.poll(`/api/v2/archival/jobs/${id}`, #{
    ///     done: ["COMPLETED"], failed: ["FAILED"], every: "5s", timeout: "10m" });
    /// ```
    #[rhai_fn(name = "poll", return_raw, pure)]
    pub fn poll_job(api: &mut Api, path: &str, options: Map) -> RhaiResult {
        let spec: PollSpec = spec(options, "poll options")?;
        let value = block_on(poll(api, path, &spec))??;
        rhai::serde::to_dynamic(value)
    }
}
