//! Rhai surface of storage: `storage(uri_or_map)` and the `Store` methods `size`, `exists`,
//! `list`, `read_json`, `write_json` (with its manifest), `describe`. Only converts types
//! and calls [`Store`]; every call ends by the deadline of the script call making it.
//! `storage(...)` opens arbitrary stores, so it is
//! refused unless the configuration allows it (`[scripts] allow_storage_uri = true`), and
//! never takes credentials from a script. Errors are the catchable maps of
//! [`crate::natives::thrown`].

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use crate::flow::manifest::Manifest;
use crate::natives::thrown::Thrown;

use super::{MAX_JSON, StorageConfig, StorageError, Store};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// Whether scripts may open stores of their own with `storage(...)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScriptStores {
    /// Only the stores the run hands in (`ctx.store`); `storage(...)` raises an error
    /// naming the switch that allows it.
    #[default]
    Refused,
    /// `storage(uri)` and `storage(#{...})` without credentials (`[scripts]
    /// allow_storage_uri = true`).
    Allowed,
}

/// `storage(...)` map fields that carry or point at credentials: never from scripts.
const SECRET_FIELDS: [&str; 6] = [
    "access_key_id",
    "secret_access_key",
    "session_token",
    "account_key",
    "token",
    "credential_path",
];

fn config_error(uri: &str, message: String) -> Box<EvalAltResult> {
    to_rhai(StorageError::Config {
        uri: uri.split('?').next().unwrap_or("").to_string(),
        message,
    })
}

fn refused(uri: &str) -> Box<EvalAltResult> {
    config_error(
        uri,
        "scripts cannot open stores by URI: use ctx.store (the config's [storage.NAME], chosen with --store), or set `[scripts] allow_storage_uri = true` in the config to allow storage(...)".into(),
    )
}

/// Registers the `Store` type and its methods, and `storage(...)` as `access` says.
pub fn register(engine: &mut Engine, access: ScriptStores) {
    engine.register_type_with_name::<Store>("Store");
    crate::natives::settings::update(engine, |s| s.stores = access);
    engine.register_global_module(exported_module!(storage_functions).into());
}

/// Refuses `storage(...)` naming `uri` unless the engine's configuration allows it.
fn allowed(ctx: &NativeCallContext, uri: &str) -> RhaiResult<()> {
    match crate::natives::settings::of(ctx).stores {
        ScriptStores::Allowed => Ok(()),
        ScriptStores::Refused => Err(refused(uri)),
    }
}

#[export_module]
mod storage_functions {
    use super::*;

    /// An object store (`ctx.store`, `ctx.stores.NAME`): filesystem, memory, S3, Azure
    /// Blob or GCS. Objects are written whole or not at all.
    pub type Store = super::Store;

    /// Opens a store from a URI: `fs:///dir`, `memory://name`, `s3://bucket/prefix?endpoint=..`,
    /// `azblob://container/prefix?endpoint=..&account_name=..`, `gcs://bucket/prefix`.
    /// Credentials come from the environment, never from scripts. Refused unless the
    /// config sets `[scripts] allow_storage_uri = true`; scripts normally use `ctx.store`.
    ///
    /// ```rhai
    /// let store = storage("fs:///srv/archive");
    /// ```
    #[rhai_fn(name = "storage", return_raw)]
    pub fn storage_uri(ctx: NativeCallContext, uri: &str) -> RhaiResult<Store> {
        allowed(&ctx, uri)?;
        Store::from_uri(uri).map_err(to_rhai)
    }

    /// Opens a store from a map with `uri` and optional `endpoint`, `region`, `path_style`,
    /// `account_name`, `anonymous`. Credentials come from the environment, never from
    /// scripts: `access_key_id`, `token` and the like are refused. Refused unless the
    /// config sets `[scripts] allow_storage_uri = true`.
    ///
    /// ```rhai
    /// let s3 = storage(#{ uri: "s3://archive/cx", endpoint: "http://127.0.0.1:9010" });
    /// ```
    #[rhai_fn(name = "storage", return_raw)]
    pub fn storage_map(ctx: NativeCallContext, map: Map) -> RhaiResult<Store> {
        let uri = map
            .get("uri")
            .and_then(|u| u.clone().into_string().ok())
            .unwrap_or_else(|| "storage(#{...})".into());
        allowed(&ctx, &uri)?;
        if let Some(field) = SECRET_FIELDS.iter().find(|f| map.contains_key(**f)) {
            return Err(config_error(
                "storage(#{...})",
                format!(
                    "`{field}` cannot come from a script: credentials belong in the config's [storage.NAME] or the standard environment variables"
                ),
            ));
        }
        // A short age would let a script delete the partial files of live writers.
        if map.contains_key("partial_max_age") {
            return Err(config_error(
                "storage(#{...})",
                "`partial_max_age` is set in the config's [storage.NAME] only".into(),
            ));
        }
        let cfg: StorageConfig =
            rhai::serde::from_dynamic(&Dynamic::from_map(map)).map_err(|e| {
                to_rhai(StorageError::Config {
                    uri: "storage(#{...})".into(),
                    message: e.to_string(),
                })
            })?;
        Store::from_config(&cfg, std::path::Path::new(".")).map_err(to_rhai)
    }

    /// Size of `key` in bytes, or -1 when it does not exist.
    ///
    /// ```rhai
    /// if ctx.store.size("recordings/42.wav") == 1024 { return ctx.skip("already archived"); }
    /// ```
    #[rhai_fn(name = "size", pure, return_raw)]
    pub fn size(ctx: NativeCallContext, store: &mut Store, key: &str) -> RhaiResult<i64> {
        let size = within(&ctx, store, "checking", key, |s, k| async move {
            s.size(&k).await
        })?;
        Ok(size.map(|s| s as i64).unwrap_or(-1))
    }

    /// Whether `key` exists.
    ///
    /// ```rhai
    /// if !ctx.store.exists("index.json") { ctx.store.write_json("index.json", #{}); }
    /// ```
    #[rhai_fn(name = "exists", pure, return_raw)]
    pub fn exists(ctx: NativeCallContext, store: &mut Store, key: &str) -> RhaiResult<bool> {
        Ok(within(&ctx, store, "checking", key, |s, k| async move {
            s.size(&k).await
        })?
        .is_some())
    }

    /// Keys under `prefix` (recursive, sorted), without manifests.
    ///
    /// ```rhai
    /// for key in ctx.store.list("recordings/") { ctx.log(key); }
    /// ```
    #[rhai_fn(name = "list", pure, return_raw)]
    pub fn list(ctx: NativeCallContext, store: &mut Store, prefix: &str) -> RhaiResult<Array> {
        let keys = within(&ctx, store, "listing", prefix, |s, p| async move {
            s.list(&p).await
        })?;
        Ok(keys.into_iter().map(Dynamic::from).collect())
    }

    /// Reads a JSON document (up to 16 MiB); `()` when absent.
    ///
    /// ```rhai
    /// let index = ctx.store.read_json("index.json") ?? #{};
    /// ```
    #[rhai_fn(name = "read_json", pure, return_raw)]
    pub fn read_json(ctx: NativeCallContext, store: &mut Store, key: &str) -> RhaiResult<Dynamic> {
        let read = |s: Store, k: String| async move { s.read_small(&k, MAX_JSON).await };
        let Some(bytes) = within(&ctx, store, "reading", key, read)? else {
            return Ok(Dynamic::UNIT);
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            to_rhai(StorageError::Json {
                key: key.to_string(),
                store: store.describe(),
                message: e.to_string(),
            })
        })?;
        rhai::serde::to_dynamic(value)
    }

    /// Writes a small JSON document, replacing any previous one atomically (for reports
    /// and indexes; archived objects go through `from_json(v).write(store, key)`). Its
    /// manifest (`KEY.manifest.json`: size, SHA-256, the run) is replaced after it, so
    /// `cxpipe verify` checks it like any other object.
    ///
    /// ```rhai
    /// ctx.store.write_json("reports/run.json", #{ done: 3 });
    /// ```
    #[rhai_fn(name = "write_json", pure, return_raw)]
    pub fn write_json(
        ctx: NativeCallContext,
        store: &mut Store,
        key: &str,
        value: Dynamic,
    ) -> RhaiResult<()> {
        let bytes: bytes::Bytes = serde_json::to_vec_pretty(&value)
            .map_err(|e| {
                to_rhai(StorageError::Json {
                    key: key.to_string(),
                    store: store.describe(),
                    message: e.to_string(),
                })
            })?
            .into();
        let document = bytes.clone();
        within(&ctx, store, "writing", key, move |s, k| async move {
            s.put(&k, document).await
        })?;
        let settings = crate::natives::settings::of(&ctx);
        let mut manifest = Manifest::of_document(key, &bytes, &settings.scope);
        manifest.seal(&settings.keys);
        // Not cut at the deadline: the document is committed and must get its manifest.
        let handle = tokio::runtime::Handle::try_current().map_err(|_| outside_runtime())?;
        handle.block_on(manifest.store(store)).map_err(to_rhai)
    }

    /// The store's URI without credentials.
    ///
    /// ```rhai
    /// ctx.log(ctx.store.describe());
    /// ```
    #[rhai_fn(name = "describe", pure)]
    pub fn describe(store: &mut Store) -> String {
        store.describe()
    }

    /// The store's URI without credentials (what `print` and string interpolation show).
    ///
    /// ```rhai
    /// ctx.log(`writing to ${ctx.store}`);
    /// ```
    #[rhai_fn(name = "to_string", pure)]
    pub fn to_string(store: &mut Store) -> String {
        store.describe()
    }
}

/// Converts a storage error into the catchable map of [`Thrown`].
pub fn to_rhai(err: StorageError) -> Box<EvalAltResult> {
    Thrown::new(err.to_string())
        .retryable(err.retryable())
        .into()
}

/// Runs a store call to completion, but no later than the deadline of the script call.
fn within<T, F, Fut>(
    ctx: &NativeCallContext,
    store: &Store,
    action: &'static str,
    key: &str,
    call: F,
) -> RhaiResult<T>
where
    F: FnOnce(Store, String) -> Fut,
    Fut: Future<Output = Result<T, StorageError>> + Send + 'static,
    T: Send + 'static,
{
    let handle = tokio::runtime::Handle::try_current().map_err(|_| outside_runtime())?;
    let deadline = crate::item_scope::ItemScope::of(ctx).deadline;
    super::block_within(&handle, deadline, store, action, key, call).map_err(to_rhai)
}

fn outside_runtime() -> Box<EvalAltResult> {
    to_rhai(StorageError::Config {
        uri: String::new(),
        message: "storage calls run only inside the cxpipe runtime".into(),
    })
}
