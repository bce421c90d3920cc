//! The `ctx.api` surface scripts see: type `Api` with `get/post/put/patch/delete`,
//! `query` (a read-only POST, sent in a dry run too), `dry_run`, `paginate` and `poll` (each taking a path string or an array of segments), and
//! `path_segment`. Only converts between Rhai and JSON and calls the native stage, bound by
//! the deadline of the script call; must run on a blocking thread of the tokio runtime
//! (script calls do).

use std::future::Future;

use reqwest::Method;
use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};
use serde_json::Value;

use crate::api::client::Api;
use crate::api::pages::Pages;
use crate::api::paginate::{PageSpec, Pager};
use crate::api::path::{ApiPath, encode_segment};
use crate::api::poll::{PollSpec, poll};
use crate::item_scope::ItemScope;
use crate::natives::thrown::Thrown;

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
    Thrown::new(message).into()
}

fn to_json(value: Dynamic, what: &str) -> Result<Value, Box<EvalAltResult>> {
    rhai::serde::from_dynamic::<Value>(&value)
        .map_err(|e| runtime_error(&format!("{what} cannot be sent as JSON: {e}")))
}

/// `api` bound by the deadline of the script call `ctx` belongs to.
pub(crate) fn bound(ctx: &NativeCallContext, api: &Api) -> Api {
    api.within(ItemScope::of(ctx).deadline)
}

fn send(
    ctx: &NativeCallContext,
    api: &Api,
    method: Method,
    path: ApiPath,
    query: Option<Value>,
    body: Option<Value>,
) -> RhaiResult {
    let api = bound(ctx, api);
    let value = block_on(api.request(method, path, query.as_ref(), body.as_ref()))??;
    rhai::serde::to_dynamic(value)
}

/// `POST path` as a read-only query: sent even in a dry run.
fn send_query(ctx: &NativeCallContext, api: &Api, path: ApiPath, body: Value) -> RhaiResult {
    let value = block_on(bound(ctx, api).query(Method::POST, path, None, Some(&body)))??;
    rhai::serde::to_dynamic(value)
}

/// The text of one path segment as a script gave it: a string, a character or an integer.
fn segment_text(value: &Dynamic) -> Result<String, String> {
    if let Some(text) = value.read_lock::<rhai::ImmutableString>() {
        return Ok(text.to_string());
    }
    if let Ok(c) = value.as_char() {
        return Ok(c.to_string());
    }
    if let Ok(n) = value.as_int() {
        return Ok(n.to_string());
    }
    Err(format!(
        "a path segment must be a string or an integer, not {} ({value:?})",
        value.type_name()
    ))
}

/// The path made of the script's `segments`, each encoded as one segment.
pub(crate) fn segments_path(segments: &Array) -> Result<ApiPath, Box<EvalAltResult>> {
    let texts = segments
        .iter()
        .enumerate()
        .map(|(index, value)| {
            segment_text(value).map_err(|message| format!("path segment {index}: {message}"))
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(ApiPath::from_segments)
        .map_err(|message| runtime_error(&format!("invalid path: {message}")))?;
    Ok(texts)
}

fn text_path(path: &str) -> ApiPath {
    ApiPath::Text(path.to_string())
}

fn spec<T: serde::de::DeserializeOwned>(map: Map, what: &str) -> Result<T, Box<EvalAltResult>> {
    let json = to_json(Dynamic::from_map(map), what)?;
    serde_json::from_value(json).map_err(|e| runtime_error(&format!("{what}: {e}")))
}

#[export_module]
mod api_functions {
    use super::*;

    /// The tenant's API client (`ctx.api`): requests carry its token (never visible to
    /// scripts), are rate-limited, and retried on 429/5xx. Errors are the catchable map
    /// `#{ message, status, retryable, request_id }`.
    pub type Api = super::Api;

    /// A lazy walk over a paginated collection (`ctx.api.paginate`), for use in `for`.
    pub type Pages = super::Pages;

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
    pub fn get(ctx: NativeCallContext, api: &mut Api, path: &str) -> RhaiResult {
        send(&ctx, api, Method::GET, text_path(path), None, None)
    }

    /// `GET path?query`; query values may be strings, numbers, booleans or arrays.
    ///
    /// ```rhai
    /// let url = ctx.api.get(`/api/v2/recording/${id}/download`, #{ channel: "combined" });
    /// try { ctx.api.get("/api/v2/recording/x", #{}) } catch (e) { if e.status == 404 { /* gone */ } }
    /// ```
    #[rhai_fn(name = "get", return_raw, pure)]
    pub fn get_with_query(
        ctx: NativeCallContext,
        api: &mut Api,
        path: &str,
        query: Map,
    ) -> RhaiResult {
        let query = to_json(Dynamic::from_map(query), "query")?;
        send(&ctx, api, Method::GET, text_path(path), Some(query), None)
    }

    /// `POST path` with a JSON body.
    ///
    /// ```rhai
    /// let job = ctx.api.post("/api/v1/recordings/export", #{ interactions: ids, format: "wav" });
    /// ```
    #[rhai_fn(name = "post", return_raw, pure)]
    pub fn post(ctx: NativeCallContext, api: &mut Api, path: &str, body: Dynamic) -> RhaiResult {
        let body = to_json(body, "body")?;
        send(&ctx, api, Method::POST, text_path(path), None, Some(body))
    }

    /// `POST path` with a JSON body, for a read-only query such as a search: unlike
    /// `post`, it is sent in a `--dry-run` too (where `post`, `put`, `patch` and `delete`
    /// are only recorded and answer `#{ dry_run: true }`). Pages of `paginate` are always
    /// sent.
    ///
    /// ```rhai
    /// let found = ctx.api.query("/api/v2/interactions/query", #{ filter: "status = closed" });
    /// ```
    #[rhai_fn(name = "query", return_raw, pure)]
    pub fn query(ctx: NativeCallContext, api: &mut Api, path: &str, body: Dynamic) -> RhaiResult {
        let body = to_json(body, "body")?;
        send_query(&ctx, api, text_path(path), body)
    }

    /// `query` (a read-only `POST`, sent in a dry run too) to a path of segments.
    ///
    /// ```rhai
    /// let found = ctx.api.query(["api", "v2", "interactions", "query"], #{ filter: "" });
    /// ```
    #[rhai_fn(name = "query", return_raw, pure)]
    pub fn query_segments(
        ctx: NativeCallContext,
        api: &mut Api,
        segments: Array,
        body: Dynamic,
    ) -> RhaiResult {
        let body = to_json(body, "body")?;
        send_query(&ctx, api, segments_path(&segments)?, body)
    }

    /// True in a `--dry-run`: mutating calls are recorded, not sent, and answer
    /// `#{ dry_run: true }`; store writes are hashed, not stored.
    ///
    /// ```rhai
    /// if ctx.api.dry_run { ctx.log("dry run: nothing will change"); }
    /// ```
    #[rhai_fn(get = "dry_run", pure)]
    pub fn dry_run(api: &mut Api) -> bool {
        api.is_dry_run()
    }

    /// `PUT path` with a JSON body.
    ///
    /// ```rhai
    /// ctx.api.put(`/api/v2/recordings/${id}/retention`, #{ retentionDays: 365 });
    /// ```
    #[rhai_fn(name = "put", return_raw, pure)]
    pub fn put(ctx: NativeCallContext, api: &mut Api, path: &str, body: Dynamic) -> RhaiResult {
        let body = to_json(body, "body")?;
        send(&ctx, api, Method::PUT, text_path(path), None, Some(body))
    }

    /// `PATCH path` with a JSON body.
    ///
    /// ```rhai
    /// ctx.api.patch(`/api/v2/interactions/${id}`, #{ customFields: #{ archival_status: "ARCHIVED" } });
    /// ```
    #[rhai_fn(name = "patch", return_raw, pure)]
    pub fn patch(ctx: NativeCallContext, api: &mut Api, path: &str, body: Dynamic) -> RhaiResult {
        let body = to_json(body, "body")?;
        send(&ctx, api, Method::PATCH, text_path(path), None, Some(body))
    }

    /// `DELETE path`.
    ///
    /// ```rhai
    /// ctx.api.delete(`/api/v2/webhooks/${hook_id}`);
    /// ```
    #[rhai_fn(name = "delete", return_raw, pure)]
    pub fn delete(ctx: NativeCallContext, api: &mut Api, path: &str) -> RhaiResult {
        send(&ctx, api, Method::DELETE, text_path(path), None, None)
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
    pub fn paginate(
        ctx: NativeCallContext,
        api: &mut Api,
        path: &str,
        options: Map,
    ) -> Result<Pages, Box<EvalAltResult>> {
        let spec: PageSpec = spec(options, "paginate options")?;
        Ok(Pages::new(Pager::new(
            &bound(&ctx, api),
            text_path(path),
            &spec,
        )?))
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
    pub fn poll_job(ctx: NativeCallContext, api: &mut Api, path: &str, options: Map) -> RhaiResult {
        let spec: PollSpec = spec(options, "poll options")?;
        let value = block_on(poll(&bound(&ctx, api), text_path(path), &spec))??;
        rhai::serde::to_dynamic(value)
    }

    /// `GET` a path given as an array of segments (strings or integers); each segment is
    /// percent-encoded as exactly one path segment, so an id holding `/`, `..`, `?`, `#`,
    /// `%`, `\` or control characters cannot change which resource is addressed. An empty,
    /// `.` or `..` segment is refused.
    ///
    /// ```rhai
    /// let rec = ctx.api.get(["api", "v2", "recording", id]);
    /// ```
    #[rhai_fn(name = "get", return_raw, pure)]
    pub fn get_segments(ctx: NativeCallContext, api: &mut Api, segments: Array) -> RhaiResult {
        send(
            &ctx,
            api,
            Method::GET,
            segments_path(&segments)?,
            None,
            None,
        )
    }

    /// `GET` a path of segments with a query map (the query never goes in the segments).
    ///
    /// ```rhai
    /// let url = ctx.api.get(["api", "v2", "recording", id, "download"], #{ channel: "combined" });
    /// ```
    #[rhai_fn(name = "get", return_raw, pure)]
    pub fn get_segments_with_query(
        ctx: NativeCallContext,
        api: &mut Api,
        segments: Array,
        query: Map,
    ) -> RhaiResult {
        let query = to_json(Dynamic::from_map(query), "query")?;
        send(
            &ctx,
            api,
            Method::GET,
            segments_path(&segments)?,
            Some(query),
            None,
        )
    }

    /// `POST` a JSON body to a path of segments.
    ///
    /// ```rhai
    /// ctx.api.post(["api", "v2", "recording", id, "tags"], #{ tags: ["archived"] });
    /// ```
    #[rhai_fn(name = "post", return_raw, pure)]
    pub fn post_segments(
        ctx: NativeCallContext,
        api: &mut Api,
        segments: Array,
        body: Dynamic,
    ) -> RhaiResult {
        let body = to_json(body, "body")?;
        send(
            &ctx,
            api,
            Method::POST,
            segments_path(&segments)?,
            None,
            Some(body),
        )
    }

    /// `PUT` a JSON body to a path of segments.
    ///
    /// ```rhai
    /// ctx.api.put(["api", "v2", "recordings", id, "retention"], #{ retentionDays: 365 });
    /// ```
    #[rhai_fn(name = "put", return_raw, pure)]
    pub fn put_segments(
        ctx: NativeCallContext,
        api: &mut Api,
        segments: Array,
        body: Dynamic,
    ) -> RhaiResult {
        let body = to_json(body, "body")?;
        send(
            &ctx,
            api,
            Method::PUT,
            segments_path(&segments)?,
            None,
            Some(body),
        )
    }

    /// `PATCH` a JSON body to a path of segments.
    ///
    /// ```rhai
    /// ctx.api.patch(["api", "v2", "interactions", id], #{ customFields: #{ archived: true } });
    /// ```
    #[rhai_fn(name = "patch", return_raw, pure)]
    pub fn patch_segments(
        ctx: NativeCallContext,
        api: &mut Api,
        segments: Array,
        body: Dynamic,
    ) -> RhaiResult {
        let body = to_json(body, "body")?;
        send(
            &ctx,
            api,
            Method::PATCH,
            segments_path(&segments)?,
            None,
            Some(body),
        )
    }

    /// `DELETE` a path of segments.
    ///
    /// ```rhai
    /// ctx.api.delete(["api", "v2", "webhooks", hook_id]);
    /// ```
    #[rhai_fn(name = "delete", return_raw, pure)]
    pub fn delete_segments(ctx: NativeCallContext, api: &mut Api, segments: Array) -> RhaiResult {
        send(
            &ctx,
            api,
            Method::DELETE,
            segments_path(&segments)?,
            None,
            None,
        )
    }

    /// `paginate` over a path of segments.
    ///
    /// ```rhai
    /// for c in ctx.api.paginate(["inContactAPI", "services", "v32.0", "contacts", "completed"],
    ///                           #{ style: "next_link", items: "completedContacts" }) {
    ///     ctx.emit(`${c.contactId}`, c);
    /// }
    /// ```
    #[rhai_fn(name = "paginate", return_raw, pure)]
    pub fn paginate_segments(
        ctx: NativeCallContext,
        api: &mut Api,
        segments: Array,
        options: Map,
    ) -> Result<Pages, Box<EvalAltResult>> {
        let spec: PageSpec = spec(options, "paginate options")?;
        Ok(Pages::new(Pager::new(
            &bound(&ctx, api),
            segments_path(&segments)?,
            &spec,
        )?))
    }

    /// `poll` a path of segments.
    ///
    /// ```rhai
    /// let job = ctx.api.poll(["api", "v2", "archival", "jobs", job_id], #{
    ///     done: ["COMPLETED"], failed: ["FAILED"] });
    /// ```
    #[rhai_fn(name = "poll", return_raw, pure)]
    pub fn poll_segments(
        ctx: NativeCallContext,
        api: &mut Api,
        segments: Array,
        options: Map,
    ) -> RhaiResult {
        let spec: PollSpec = spec(options, "poll options")?;
        let value = block_on(poll(&bound(&ctx, api), segments_path(&segments)?, &spec))??;
        rhai::serde::to_dynamic(value)
    }

    /// `value` (a string or an integer) percent-encoded as one URL path segment: everything
    /// outside `A-Z a-z 0-9 - . _ ~` becomes `%XX`. An empty, `.` or `..` value is an error.
    /// Prefer passing an array of segments to `ctx.api`; this is for building other URLs.
    ///
    /// ```rhai
    /// let seg = path_segment("a/b?c");   // "a%2Fb%3Fc"
    /// let n = path_segment(42);          // "42"
    /// ```
    #[rhai_fn(name = "path_segment", return_raw)]
    pub fn path_segment(value: Dynamic) -> Result<String, Box<EvalAltResult>> {
        segment_text(&value)
            .and_then(|text| encode_segment(&text))
            .map_err(|message| runtime_error(&format!("path_segment: {message}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let mut engine = Engine::new();
        register(&mut engine);
        engine
    }

    #[test]
    fn path_segment_encodes_one_segment() {
        let engine = engine();
        let out: String = engine
            .eval(r#"path_segment("new\nline/../?x=1#f") + "|" + path_segment(42)"#)
            .unwrap();
        assert_eq!(out, "new%0Aline%2F..%2F%3Fx%3D1%23f|42");
        for bad in [r#""..""#, r#""""#, "1.5", "()"] {
            assert!(
                engine
                    .eval::<String>(&format!("path_segment({bad})"))
                    .is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn segment_arrays_become_encoded_paths() {
        let array: Array = vec!["api".into(), Dynamic::from_int(7), "a b/c".into()];
        let path = segments_path(&array).unwrap();
        assert_eq!(path, ApiPath::Segments("/api/7/a%20b%2Fc".into()));
        let array: Array = vec!["api".into(), "..".into()];
        let err = segments_path(&array).unwrap_err().to_string();
        assert!(err.contains("segment 1") && err.contains(".."), "{err}");
    }
}
