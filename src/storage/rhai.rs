//! Rhai surface of storage: `storage(uri_or_map)` and the `Store` methods `size`, `exists`,
//! `list`, `read_json`, `write_json`, `describe`. Only converts types and calls [`Store`];
//! every call ends by the item's deadline. `storage(...)` opens arbitrary stores, so it is
//! refused unless the configuration allows it (`[scripts] allow_storage_uri = true`), and
//! never takes credentials from a script.

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map, Position};

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
    register_storage(engine, access);
    register_methods(engine);
}

fn register_storage(engine: &mut Engine, access: ScriptStores) {
    if access == ScriptStores::Refused {
        /// Refused: scripts write to `ctx.store` unless the config sets
        /// `[scripts] allow_storage_uri = true`.
        /// ```rhai
        /// let store = ctx.store;
        /// ```
        fn storage_uri_refused(uri: &str) -> RhaiResult<Store> {
            Err(refused(uri))
        }
        engine.register_fn("storage", storage_uri_refused);
        /// Refused: see `storage(uri)`.
        /// ```rhai
        /// let store = ctx.store;
        /// ```
        fn storage_map_refused(map: Map) -> RhaiResult<Store> {
            let uri = map
                .get("uri")
                .and_then(|u| u.clone().into_string().ok())
                .unwrap_or_else(|| "storage(#{...})".into());
            Err(refused(&uri))
        }
        engine.register_fn("storage", storage_map_refused);
        return;
    }

    /// Opens a store from a URI: `fs:///dir`, `memory://name`, `s3://bucket/prefix?endpoint=..`,
    /// `azblob://container/prefix?endpoint=..&account_name=..`, `gcs://bucket/prefix`.
    /// Credentials come from the environment, never from scripts.
    /// ```rhai
    /// let store = storage("fs:///srv/archive");
    /// ```
    fn storage_uri(uri: &str) -> RhaiResult<Store> {
        Store::from_uri(uri).map_err(to_rhai)
    }
    engine.register_fn("storage", storage_uri);

    /// Opens a store from a map with `uri` and optional `endpoint`, `region`, `path_style`,
    /// `account_name`, `anonymous`. Credentials come from the environment, never from
    /// scripts: `access_key_id`, `token` and the like are refused.
    /// ```rhai
    /// let s3 = storage(#{ uri: "s3://archive/cx", endpoint: "http://127.0.0.1:9010" });
    /// ```
    fn storage_map(map: Map) -> RhaiResult<Store> {
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
    engine.register_fn("storage", storage_map);
}

fn register_methods(engine: &mut Engine) {
    /// Size of `key` in bytes, or -1 when it does not exist.
    /// ```rhai
    /// if store.size(key) == rec.sizeBytes { return ctx.skip("already archived"); }
    /// ```
    fn size(store: &mut Store, key: &str) -> RhaiResult<i64> {
        let size = within(
            store,
            "checking",
            key,
            |s, k| async move { s.size(&k).await },
        )?;
        Ok(size.map(|s| s as i64).unwrap_or(-1))
    }
    engine.register_fn("size", size);

    /// Whether `key` exists.
    /// ```rhai
    /// if !store.exists("index.json") { store.write_json("index.json", #{}); }
    /// ```
    fn exists(store: &mut Store, key: &str) -> RhaiResult<bool> {
        Ok(within(
            store,
            "checking",
            key,
            |s, k| async move { s.size(&k).await },
        )?
        .is_some())
    }
    engine.register_fn("exists", exists);

    /// Keys under `prefix` (recursive, sorted), without manifests.
    /// ```rhai
    /// for key in store.list("recordings/") { print(key); }
    /// ```
    fn list(store: &mut Store, prefix: &str) -> RhaiResult<Array> {
        let keys = within(
            store,
            "listing",
            prefix,
            |s, p| async move { s.list(&p).await },
        )?;
        Ok(keys.into_iter().map(Dynamic::from).collect())
    }
    engine.register_fn("list", list);

    /// Reads a JSON document (up to 16 MiB); `()` when absent.
    /// ```rhai
    /// let index = store.read_json("index.json") ?? #{};
    /// ```
    fn read_json(store: &mut Store, key: &str) -> RhaiResult<Dynamic> {
        let read = |s: Store, k: String| async move { s.read_small(&k, MAX_JSON).await };
        let Some(bytes) = within(store, "reading", key, read)? else {
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
    engine.register_fn("read_json", read_json);

    /// Writes a small JSON document, replacing any previous one atomically (for reports
    /// and indexes; archived objects go through `from_json(v).write(store, key)`).
    /// ```rhai
    /// store.write_json("reports/run.json", summary);
    /// ```
    fn write_json(store: &mut Store, key: &str, value: Dynamic) -> RhaiResult<()> {
        let bytes = serde_json::to_vec_pretty(&value).map_err(|e| {
            to_rhai(StorageError::Json {
                key: key.to_string(),
                store: store.describe(),
                message: e.to_string(),
            })
        })?;
        within(store, "writing", key, move |s, k| async move {
            s.put(&k, bytes.into()).await
        })
    }
    engine.register_fn("write_json", write_json);

    /// The store's URI without credentials.
    /// ```rhai
    /// print(store.describe());
    /// ```
    fn describe(store: &mut Store) -> String {
        store.describe()
    }
    engine.register_fn("describe", describe);
    engine.register_fn("to_string", describe);
}

/// Converts a storage error into a catchable script error map.
pub fn to_rhai(err: StorageError) -> Box<EvalAltResult> {
    let mut map = Map::new();
    map.insert("message".into(), err.to_string().into());
    map.insert("status".into(), Dynamic::UNIT);
    map.insert("retryable".into(), err.retryable().into());
    map.insert("request_id".into(), Dynamic::UNIT);
    EvalAltResult::ErrorRuntime(Dynamic::from_map(map), Position::NONE).into()
}

/// Runs a store call to completion, but no later than the item's deadline.
fn within<T, F, Fut>(store: &Store, action: &'static str, key: &str, call: F) -> RhaiResult<T>
where
    F: FnOnce(Store, String) -> Fut,
    Fut: Future<Output = Result<T, StorageError>> + Send + 'static,
    T: Send + 'static,
{
    let handle = tokio::runtime::Handle::try_current().map_err(|_| {
        to_rhai(StorageError::Config {
            uri: String::new(),
            message: "storage calls run only inside the cxpipe runtime".into(),
        })
    })?;
    super::block_within(&handle, store, action, key, call).map_err(to_rhai)
}
