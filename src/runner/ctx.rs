//! The `ctx` object scripts receive, and the `Kv` and `Outcome` types it hands out. Only
//! converts values and forwards to the run's shared state; no logic of its own.

use std::sync::Arc;

use rhai::plugin::*;
use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString};

use super::options::parse_duration;
use super::outcome::Outcome;
use super::shared::{Emitted, RunShared};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// The context passed to every hook.
#[derive(Clone)]
pub struct Ctx {
    pub shared: Arc<RunShared>,
    /// The item being processed (`process` only).
    pub item_key: Option<Arc<str>>,
    /// 1-based attempt number of this `process` call.
    pub attempt: i64,
    /// Times this item was deferred earlier in this run (for backoff of re-polls).
    pub deferrals: i64,
}

/// Small durable state for a pipeline × tenant (`ctx.kv`).
#[derive(Clone)]
pub struct Kv {
    shared: Arc<RunShared>,
}

fn to_json(value: &Dynamic) -> RhaiResult<serde_json::Value> {
    rhai::serde::from_dynamic(value)
        .map_err(|e| format!("value cannot be stored as JSON: {e}").into())
}

fn from_json_text(text: &str) -> RhaiResult<Dynamic> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("stored value is not JSON: {e}"))?;
    rhai::serde::to_dynamic(v)
}

fn key_text(key: &Dynamic) -> RhaiResult<String> {
    if key.is_unit() {
        return Err("an item key cannot be ()".into());
    }
    let text = key.to_string();
    if text.is_empty() {
        Err("an item key cannot be empty".into())
    } else {
        Ok(text)
    }
}

impl Ctx {
    fn emit(&mut self, key: Dynamic, item: Dynamic) -> RhaiResult<()> {
        if self.item_key.is_some() {
            // Workers emitting into the queue they drain could block each other forever.
            return Err(
                "ctx.emit is only available in discover and on_event, not in process".into(),
            );
        }
        let key = key_text(&key)?;
        let payload = to_json(&item)?.to_string();
        let sender = self.shared.emitter.lock().expect("emitter lock").clone();
        let Some(sender) = sender else {
            return Err("ctx.emit is only available in discover and on_event".into());
        };
        sender
            .blocking_send(Emitted {
                key,
                payload,
                value: item,
            })
            .map_err(|_| "the run is stopping; emit refused".into())
    }

    fn checkpoint(&mut self, name: &str) -> RhaiResult<Dynamic> {
        match self.shared.committed.get(name) {
            Some(text) => from_json_text(text),
            None => Ok(Dynamic::UNIT),
        }
    }

    fn set_checkpoint(&mut self, name: &str, value: Dynamic) -> RhaiResult<()> {
        let text = to_json(&value)?.to_string();
        self.shared
            .pending_checkpoints
            .lock()
            .expect("checkpoint lock")
            .insert(name.to_string(), text);
        Ok(())
    }

    fn audit(&mut self, kind: &str, data: Dynamic) -> RhaiResult<()> {
        let mut json = to_json(&data)?;
        if let (Some(key), serde_json::Value::Object(map)) = (&self.item_key, &mut json) {
            map.entry("item_key")
                .or_insert_with(|| key.to_string().into());
        }
        let s = &self.shared;
        s.writer
            .audit_blocking((
                s.pipeline.to_string(),
                s.tenant.to_string(),
                s.run_id.clone(),
                kind.to_string(),
                json.to_string(),
            ))
            .map_err(|e| e.to_string().into())
    }

    fn metric(&mut self, name: &str, value: f64) {
        *self
            .shared
            .metrics
            .lock()
            .expect("metrics lock")
            .entry(name.to_string())
            .or_insert(0.0) += value;
    }

    fn log(&mut self, level: &str, message: &str) {
        let (pipeline, item) = (
            &*self.shared.pipeline,
            self.item_key.as_deref().unwrap_or(""),
        );
        match level {
            "error" => tracing::error!(target: "cxpipe::script", pipeline, item, "{message}"),
            "warn" => tracing::warn!(target: "cxpipe::script", pipeline, item, "{message}"),
            "debug" => tracing::debug!(target: "cxpipe::script", pipeline, item, "{message}"),
            _ => tracing::info!(target: "cxpipe::script", pipeline, item, "{message}"),
        }
    }
}

impl Kv {
    fn block<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, crate::ledger::LedgerError>>,
    ) -> RhaiResult<T> {
        self.shared
            .handle
            .block_on(f)
            .map_err(|e| e.to_string().into())
    }

    fn get(&mut self, key: &str) -> RhaiResult<Dynamic> {
        let s = self.shared.clone();
        match self.block(s.ledger.kv_get(&s.pipeline, &s.tenant, key))? {
            Some(text) => from_json_text(&text),
            None => Ok(Dynamic::UNIT),
        }
    }

    fn set(&mut self, key: &str, value: Dynamic) -> RhaiResult<()> {
        let text = to_json(&value)?.to_string();
        let s = self.shared.clone();
        self.block(s.ledger.kv_set(&s.pipeline, &s.tenant, key, &text))
    }

    fn delete(&mut self, key: &str) -> RhaiResult<bool> {
        let s = self.shared.clone();
        self.block(s.ledger.kv_delete(&s.pipeline, &s.tenant, key))
    }

    fn keys(&mut self, prefix: &str) -> RhaiResult<rhai::Array> {
        let s = self.shared.clone();
        Ok(self
            .block(s.ledger.kv_keys(&s.pipeline, &s.tenant, prefix))?
            .into_iter()
            .map(Dynamic::from)
            .collect())
    }
}

/// Registers `Ctx`, `Kv`, `Stores` and `Outcome` with the engine.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<Ctx>("Ctx");
    engine.register_type_with_name::<Kv>("Kv");
    engine.register_type_with_name::<Outcome>("Outcome");
    engine.register_type_with_name::<GrantedStores>("Stores");
    engine.register_global_module(exported_module!(ctx_functions).into());
}

/// `ctx.stores.NAME`: the store `name`, or an error naming the granted ones.
fn granted_store(s: &GrantedStores, name: &str) -> RhaiResult<Dynamic> {
    match s.shared.stores.get(name) {
        Some(store) => Ok(store.clone()),
        None => {
            let granted: Vec<&str> = s.shared.stores.keys().map(|k| k.as_str()).collect();
            Err(format!(
                "ctx.stores.{name}: pipeline {} is not granted a store named {name:?} \
                     (granted: {}); add it to `stores` in its [pipelines.{}] table",
                s.shared.pipeline,
                if granted.is_empty() {
                    "none".to_string()
                } else {
                    granted.join(", ")
                },
                s.shared.pipeline,
            )
            .into())
        }
    }
}

/// The `ctx`, `ctx.kv` and `ctx.stores` surface.
#[export_module]
mod ctx_functions {
    use super::*;

    /// The context every hook receives: the run's identity (`tenant`, `pipeline`,
    /// `run_id`), its parameters, API client, stores and durable state, and the item's
    /// attempt; `emit`, checkpoints, audit, metrics, logging and the outcomes `skip` and
    /// `defer`.
    pub type Ctx = super::Ctx;

    /// Small durable state for a pipeline × tenant (`ctx.kv`): JSON-able values by key,
    /// kept in the ledger across runs.
    pub type Kv = super::Kv;

    /// The stores a pipeline is granted, by name (`ctx.stores.NAME`).
    pub type Stores = super::GrantedStores;

    /// What `process` returns to say an item is not done yet or needs no work:
    /// `ctx.skip(reason)` or `ctx.defer(delay, reason)`. Any other value means done.
    pub type Outcome = super::Outcome;

    /// The tenant this run works for (the config's `[tenants.NAME]`).
    ///
    /// ```rhai
    /// ctx.log(`archiving for ${ctx.tenant}`);
    /// ```
    #[rhai_fn(get = "tenant", pure)]
    pub fn tenant(c: &mut Ctx) -> ImmutableString {
        ImmutableString::from(&*c.shared.tenant)
    }

    /// The pipeline's name (the script's file stem unless the config names it).
    ///
    /// ```rhai
    /// let prefix = `${ctx.pipeline}/${ctx.tenant}/`;
    /// ```
    #[rhai_fn(get = "pipeline", pure)]
    pub fn pipeline(c: &mut Ctx) -> ImmutableString {
        ImmutableString::from(&*c.shared.pipeline)
    }

    /// This run's id (also in the summary, the ledger and the audit log).
    ///
    /// ```rhai
    /// ctx.store.write_json(`reports/${ctx.run_id}.json`, #{ pipeline: ctx.pipeline });
    /// ```
    #[rhai_fn(get = "run_id", pure)]
    pub fn run_id(c: &mut Ctx) -> String {
        c.shared.run_id.clone()
    }

    /// When this run started, RFC 3339 UTC.
    ///
    /// ```rhai
    /// let started = parse_time(ctx.started_at);
    /// ```
    #[rhai_fn(get = "started_at", pure)]
    pub fn started_at(c: &mut Ctx) -> String {
        c.shared.started_at.clone()
    }

    /// The pipeline's parameters (`[pipelines.NAME.params]` and `--param k=v`), a map;
    /// an absent key reads as `()`.
    ///
    /// ```rhai
    /// let days = ctx.params.retention_days ?? 30;
    /// ```
    #[rhai_fn(get = "params", pure)]
    pub fn params(c: &mut Ctx) -> Dynamic {
        c.shared.params.clone()
    }

    /// The tenant's API client (`Api`); an error when the run has no tenant configured.
    ///
    /// ```rhai
    /// let rec = ctx.api.get(["api", "v2", "recording", "42"]);
    /// ```
    #[rhai_fn(get = "api", pure, return_raw)]
    pub fn api(c: &mut Ctx) -> RhaiResult<Dynamic> {
        if c.shared.api.is_unit() {
            Err("ctx.api: this run has no tenant API configured (pass --config with a [tenants.NAME] table)"
                .into())
        } else {
            Ok(c.shared.api.clone())
        }
    }

    /// The run's store (`Store`, the config's `[storage.NAME]` chosen with `--store`); an
    /// error when none is configured.
    ///
    /// ```rhai
    /// ctx.store.write_json("reports/last.json", #{ at: format_time(now_ms()) });
    /// ```
    #[rhai_fn(get = "store", pure, return_raw)]
    pub fn store(c: &mut Ctx) -> RhaiResult<Dynamic> {
        if c.shared.store.is_unit() {
            Err(
                "ctx.store: this run has no storage configured (add [storage] to the config)"
                    .into(),
            )
        } else {
            Ok(c.shared.store.clone())
        }
    }

    /// The stores the pipeline is granted by name (`stores` in its `[pipelines.NAME]`
    /// table): `ctx.stores.NAME` or `ctx.stores["NAME"]`.
    ///
    /// ```rhai
    /// let archive = ctx.stores.archive;
    /// ```
    #[rhai_fn(get = "stores", pure)]
    pub fn stores(c: &mut Ctx) -> Stores {
        GrantedStores {
            shared: c.shared.clone(),
        }
    }

    /// The granted store `name` (`Store`); an error naming the granted stores otherwise.
    /// `ctx.stores.NAME` falls back to this indexer.
    ///
    /// ```rhai
    /// let archive = ctx.stores["archive"];
    /// ```
    #[rhai_fn(index_get, pure, return_raw)]
    pub fn store_named(s: &mut Stores, name: &str) -> RhaiResult<Dynamic> {
        granted_store(s, name)
    }

    /// Small durable state for this pipeline × tenant (`Kv`), kept in the ledger.
    ///
    /// ```rhai
    /// let seen = ctx.kv.get("last_seen") ?? "1970-01-01T00:00:00Z";
    /// ```
    #[rhai_fn(get = "kv", pure)]
    pub fn kv(c: &mut Ctx) -> Kv {
        Kv {
            shared: c.shared.clone(),
        }
    }

    /// The key of the item being processed; `()` outside `process`.
    ///
    /// ```rhai
    /// ctx.log(`working on ${ctx.item_key}`);
    /// ```
    #[rhai_fn(get = "item_key", pure)]
    pub fn item_key(c: &mut Ctx) -> Dynamic {
        match &c.item_key {
            Some(k) => Dynamic::from(k.to_string()),
            None => Dynamic::UNIT,
        }
    }

    /// The 1-based attempt number of this `process` call.
    ///
    /// ```rhai
    /// if ctx.attempt > 1 { ctx.log("warn", `attempt ${ctx.attempt}`); }
    /// ```
    #[rhai_fn(get = "attempt", pure)]
    pub fn attempt(c: &mut Ctx) -> i64 {
        c.attempt
    }

    /// How many times this item was deferred earlier in this run (for growing re-polls).
    ///
    /// ```rhai
    /// return ctx.defer(backoff("5s", "5m", ctx.deferrals), "still processing");
    /// ```
    #[rhai_fn(get = "deferrals", pure)]
    pub fn deferrals(c: &mut Ctx) -> i64 {
        c.deferrals
    }

    /// Queues an item with key `key` (a string or number, not empty) and payload `item`
    /// (any JSON-able value) for `process`. In `discover` and `on_event` only. The first
    /// emit of a key in a discovery wins; items already done are not processed again.
    ///
    /// ```rhai
    /// ctx.emit("rec-1", #{ recordingId: "rec-1", sizeBytes: 1024 });
    /// ```
    #[rhai_fn(name = "emit", pure, return_raw)]
    pub fn emit(c: &mut Ctx, key: Dynamic, item: Dynamic) -> RhaiResult<()> {
        c.emit(key, item)
    }

    /// The committed checkpoint `name` (from the last clean run); `()` when absent.
    ///
    /// ```rhai
    /// let since = ctx.checkpoint("newest") ?? "2024-01-01T00:00:00Z";
    /// ```
    #[rhai_fn(name = "checkpoint", pure, return_raw)]
    pub fn checkpoint(c: &mut Ctx, name: &str) -> RhaiResult<Dynamic> {
        c.checkpoint(name)
    }

    /// Sets checkpoint `name` to `value` (JSON-able); committed only when the run ends
    /// clean (no quarantined or failed item, not interrupted).
    ///
    /// ```rhai
    /// ctx.set_checkpoint("newest", "2024-01-16T08:00:00Z");
    /// ```
    #[rhai_fn(name = "set_checkpoint", pure, return_raw)]
    pub fn set_checkpoint(c: &mut Ctx, name: &str, value: Dynamic) -> RhaiResult<()> {
        c.set_checkpoint(name, value)
    }

    /// Appends an entry of kind `kind` with `data` (a map; `item_key` is added in
    /// `process`) to the hash-chained audit log.
    ///
    /// ```rhai
    /// ctx.audit("retention_changed", #{ recordingId: "rec-1", days: 365 });
    /// ```
    #[rhai_fn(name = "audit", pure, return_raw)]
    pub fn audit(c: &mut Ctx, kind: &str, data: Dynamic) -> RhaiResult<()> {
        c.audit(kind, data)
    }

    /// Adds `value` to the run's metric `name` (summed; in the summary's `metrics`).
    ///
    /// ```rhai
    /// ctx.metric("bytes", 1024);
    /// ```
    #[rhai_fn(name = "metric", pure)]
    pub fn metric_int(c: &mut Ctx, name: &str, value: i64) {
        c.metric(name, value as f64)
    }

    /// Adds a decimal `value` to the run's metric `name`.
    ///
    /// ```rhai
    /// ctx.metric("seconds", 1.5);
    /// ```
    #[rhai_fn(name = "metric", pure)]
    pub fn metric_float(c: &mut Ctx, name: &str, value: f64) {
        c.metric(name, value)
    }

    /// Adds 1 to the run's metric `name`.
    ///
    /// ```rhai
    /// ctx.metric("cache_hits");
    /// ```
    #[rhai_fn(name = "metric", pure)]
    pub fn metric_one(c: &mut Ctx, name: &str) {
        c.metric(name, 1.0)
    }

    /// Logs `message` at level info, with the pipeline and item.
    ///
    /// ```rhai
    /// ctx.log("listing recordings");
    /// ```
    #[rhai_fn(name = "log", pure)]
    pub fn log_info(c: &mut Ctx, message: &str) {
        c.log("info", message)
    }

    /// Logs `message` at `level`: `error`, `warn`, `info` or `debug`.
    ///
    /// ```rhai
    /// ctx.log("warn", "media not ready yet");
    /// ```
    #[rhai_fn(name = "log", pure)]
    pub fn log_at(c: &mut Ctx, level: &str, message: &str) {
        c.log(level, message)
    }

    /// An outcome for `process` to return: the item is done without work, for `reason`
    /// (counted in the summary's `skip_reasons`).
    ///
    /// ```rhai
    /// return ctx.skip("already archived");
    /// ```
    #[rhai_fn(name = "skip", pure)]
    pub fn skip(_c: &mut Ctx, reason: &str) -> Outcome {
        Outcome::Skip(reason.to_string())
    }

    /// An outcome for `process` to return: try the item again after `delay` (a duration
    /// string such as `"30s"`), for `reason`. Within the run when the delay ends within
    /// `OPTIONS.defer_max_wait`, else in a later run.
    ///
    /// ```rhai
    /// return ctx.defer("30s", "media still processing");
    /// ```
    #[rhai_fn(name = "defer", pure, return_raw)]
    pub fn defer(_c: &mut Ctx, delay: Dynamic, reason: &str) -> RhaiResult<Outcome> {
        let d = parse_duration(&delay).map_err(|e| format!("ctx.defer delay: {e}"))?;
        Ok(Outcome::Defer(d, reason.to_string()))
    }

    /// The value stored under `key` (JSON-able); `()` when absent.
    ///
    /// ```rhai
    /// let state = ctx.kv.get("job/rec-1") ?? #{ step: "new" };
    /// ```
    #[rhai_fn(name = "get", pure, return_raw)]
    pub fn kv_get(kv: &mut Kv, key: &str) -> RhaiResult<Dynamic> {
        kv.get(key)
    }

    /// Stores `value` (JSON-able) under `key`, durably.
    ///
    /// ```rhai
    /// ctx.kv.set("job/rec-1", #{ step: "submitted", at_ms: now_ms() });
    /// ```
    #[rhai_fn(name = "set", pure, return_raw)]
    pub fn kv_set(kv: &mut Kv, key: &str, value: Dynamic) -> RhaiResult<()> {
        kv.set(key, value)
    }

    /// Removes `key`; whether it existed.
    ///
    /// ```rhai
    /// ctx.kv.delete("job/rec-1");
    /// ```
    #[rhai_fn(name = "delete", pure, return_raw)]
    pub fn kv_delete(kv: &mut Kv, key: &str) -> RhaiResult<bool> {
        kv.delete(key)
    }

    /// The keys starting with `prefix`, sorted.
    ///
    /// ```rhai
    /// for key in ctx.kv.keys("job/") { ctx.kv.delete(key); }
    /// ```
    #[rhai_fn(name = "keys", pure, return_raw)]
    pub fn kv_keys(kv: &mut Kv, prefix: &str) -> RhaiResult<rhai::Array> {
        kv.keys(prefix)
    }
}

/// `ctx.stores`: the stores a pipeline grants, by name.
#[derive(Clone)]
pub struct GrantedStores {
    shared: Arc<RunShared>,
}
