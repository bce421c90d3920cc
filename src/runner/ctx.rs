//! The `ctx` object scripts receive, and the `Kv` and `Outcome` types it hands out. Only
//! converts values and forwards to the run's shared state; no logic of its own.

use std::sync::Arc;

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

/// Registers `Ctx`, `Kv` and `Outcome` with the engine.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<Ctx>("Ctx");
    engine.register_type_with_name::<Kv>("Kv");
    engine.register_type_with_name::<Outcome>("Outcome");

    engine.register_get("tenant", |c: &mut Ctx| {
        ImmutableString::from(&*c.shared.tenant)
    });
    engine.register_get("pipeline", |c: &mut Ctx| {
        ImmutableString::from(&*c.shared.pipeline)
    });
    engine.register_get("run_id", |c: &mut Ctx| c.shared.run_id.clone());
    engine.register_get("started_at", |c: &mut Ctx| c.shared.started_at.clone());
    engine.register_get("params", |c: &mut Ctx| c.shared.params.clone());
    engine.register_get("api", |c: &mut Ctx| -> RhaiResult<Dynamic> {
        if c.shared.api.is_unit() {
            Err("ctx.api: this run has no tenant API configured (pass --config with a [tenants.NAME] table)"
                .into())
        } else {
            Ok(c.shared.api.clone())
        }
    });
    engine.register_get("store", |c: &mut Ctx| -> RhaiResult<Dynamic> {
        if c.shared.store.is_unit() {
            Err(
                "ctx.store: this run has no storage configured (add [storage] to the config)"
                    .into(),
            )
        } else {
            Ok(c.shared.store.clone())
        }
    });
    engine.register_type_with_name::<GrantedStores>("Stores");
    engine.register_get("stores", |c: &mut Ctx| GrantedStores {
        shared: c.shared.clone(),
    });
    // `ctx.stores.NAME` falls back to this indexer (Rhai's property-to-indexer fallback).
    engine.register_indexer_get(|s: &mut GrantedStores, name: &str| -> RhaiResult<Dynamic> {
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
    });
    engine.register_get("kv", |c: &mut Ctx| Kv {
        shared: c.shared.clone(),
    });
    engine.register_get("item_key", |c: &mut Ctx| match &c.item_key {
        Some(k) => Dynamic::from(k.to_string()),
        None => Dynamic::UNIT,
    });
    engine.register_get("attempt", |c: &mut Ctx| c.attempt);
    engine.register_get("deferrals", |c: &mut Ctx| c.deferrals);

    engine.register_fn("emit", Ctx::emit);
    engine.register_fn("checkpoint", Ctx::checkpoint);
    engine.register_fn("set_checkpoint", Ctx::set_checkpoint);
    engine.register_fn("audit", Ctx::audit);
    engine.register_fn("metric", |c: &mut Ctx, name: &str, v: i64| {
        c.metric(name, v as f64)
    });
    engine.register_fn("metric", |c: &mut Ctx, name: &str, v: f64| {
        c.metric(name, v)
    });
    engine.register_fn("metric", |c: &mut Ctx, name: &str| c.metric(name, 1.0));
    engine.register_fn("log", |c: &mut Ctx, msg: &str| c.log("info", msg));
    engine.register_fn("log", |c: &mut Ctx, level: &str, msg: &str| {
        c.log(level, msg)
    });
    engine.register_fn("skip", |_: &mut Ctx, reason: &str| {
        Outcome::Skip(reason.to_string())
    });
    engine.register_fn(
        "defer",
        |_: &mut Ctx, delay: Dynamic, reason: &str| -> RhaiResult<Outcome> {
            let d = parse_duration(&delay).map_err(|e| format!("ctx.defer delay: {e}"))?;
            Ok(Outcome::Defer(d, reason.to_string()))
        },
    );

    engine.register_fn("get", Kv::get);
    engine.register_fn("set", Kv::set);
    engine.register_fn("delete", Kv::delete);
    engine.register_fn("keys", Kv::keys);
}

/// `ctx.stores`: the stores a pipeline grants, by name.
#[derive(Clone)]
pub struct GrantedStores {
    shared: Arc<RunShared>,
}
