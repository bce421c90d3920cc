//! Rhai surface of storage: `storage(uri_or_map)` and the `Store` methods `size`, `exists`,
//! `list`, `read_json`, `write_json`, `describe`. Only converts types and calls [`Store`].

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map, Position};

use super::{MAX_JSON, StorageConfig, StorageError, Store};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// Registers the `Store` type, `storage(...)` and its methods.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<Store>("Store");

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
    /// `account_name`, and credentials as `#{ env: "VAR" }` references.
    /// ```rhai
    /// let s3 = storage(#{ uri: "s3://archive/cx", endpoint: "http://127.0.0.1:9010" });
    /// ```
    fn storage_map(map: Map) -> RhaiResult<Store> {
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

    /// Size of `key` in bytes, or -1 when it does not exist.
    /// ```rhai
    /// if store.size(key) == rec.sizeBytes { return ctx.skip("already archived"); }
    /// ```
    fn size(store: &mut Store, key: &str) -> RhaiResult<i64> {
        let size = block_on(store.size(key))?;
        Ok(size.map(|s| s as i64).unwrap_or(-1))
    }
    engine.register_fn("size", size);

    /// Whether `key` exists.
    /// ```rhai
    /// if !store.exists("index.json") { store.write_json("index.json", #{}); }
    /// ```
    fn exists(store: &mut Store, key: &str) -> RhaiResult<bool> {
        Ok(block_on(store.size(key))?.is_some())
    }
    engine.register_fn("exists", exists);

    /// Keys under `prefix` (recursive, sorted), without manifests.
    /// ```rhai
    /// for key in store.list("recordings/") { print(key); }
    /// ```
    fn list(store: &mut Store, prefix: &str) -> RhaiResult<Array> {
        let keys = block_on(store.list(prefix))?;
        Ok(keys.into_iter().map(Dynamic::from).collect())
    }
    engine.register_fn("list", list);

    /// Reads a JSON document (up to 16 MiB); `()` when absent.
    /// ```rhai
    /// let index = store.read_json("index.json") ?? #{};
    /// ```
    fn read_json(store: &mut Store, key: &str) -> RhaiResult<Dynamic> {
        let Some(bytes) = block_on(store.read_small(key, MAX_JSON))? else {
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
        block_on(store.put(key, bytes.into()))
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

fn block_on<T>(fut: impl Future<Output = Result<T, StorageError>>) -> RhaiResult<T> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| {
        to_rhai(StorageError::Config {
            uri: String::new(),
            message: "storage calls run only inside the cxpipe runtime".into(),
        })
    })?;
    handle.block_on(fut).map_err(to_rhai)
}
