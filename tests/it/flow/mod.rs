//! Flows end to end through the Rhai surface: fetch with resets, truncation, refresh and
//! restarts; checks; encryption round trips; the `decrypt` and `verify` commands.

mod cli;
mod fetch;
mod kat;
mod sandbox;
mod script;
pub mod server;
mod sim;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use cxpipe::keys::KeyRing;
use cxpipe::storage::rhai::ScriptStores;
use rhai::{Dynamic, Engine, Map};
use sha2::{Digest, Sha256};

pub const MB: usize = 1024 * 1024;

/// Deterministic pseudo-random bytes (incompressible, like audio).
pub fn noise(len: usize, seed: u64) -> Bytes {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out.into()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A memory store name no other test uses.
pub fn memory_uri() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("memory://flow-test-{}", N.fetch_add(1, Ordering::SeqCst))
}

/// Keys `k` (raw) for tests.
pub fn test_keys() -> KeyRing {
    let mut keys = KeyRing::empty();
    keys.insert_raw("k", [0x42; 32]);
    keys
}

/// An engine with the flow surface, the test keys and `storage(uri)` allowed.
pub fn engine() -> Engine {
    let mut engine = Engine::new();
    cxpipe::storage::rhai::register(&mut engine, ScriptStores::Allowed);
    cxpipe::flow::rhai::register(&mut engine, Arc::new(test_keys()));
    engine
}

/// Evaluates `script` on a blocking thread, as the runner does. Errors come back as the
/// thrown value (a map for flow errors) or the error text.
pub async fn eval(engine: Engine, script: String) -> Result<Dynamic, Dynamic> {
    tokio::task::spawn_blocking(move || {
        engine.eval::<Dynamic>(&script).map_err(|e| match *e {
            rhai::EvalAltResult::ErrorRuntime(v, _) => v,
            other => Dynamic::from(other.to_string()),
        })
    })
    .await
    .unwrap()
}

/// Evaluates `script` on this (blocking) thread as the body of a script function called
/// with `scope`, the way the runner calls hooks: native stages see its run facts and
/// deadline.
pub fn eval_in_scope(
    engine: &Engine,
    script: &str,
    scope: cxpipe::item_scope::ItemScope,
) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
    let ast = engine
        .compile(format!("fn main() {{\n{script}\n}}"))
        .expect("the test script compiles");
    cxpipe::engine::call(engine, &ast, "main", (), scope)
}

/// The receipt map of a successful script.
pub async fn receipt(engine: Engine, script: String) -> Map {
    match eval(engine, script).await {
        Ok(v) => v.try_cast::<Map>().expect("receipt map"),
        Err(e) => panic!("script failed: {e}"),
    }
}

/// The error map a failing script threw.
pub async fn failure(engine: Engine, script: String) -> Map {
    match eval(engine, script).await {
        Ok(v) => panic!("script succeeded: {v}"),
        Err(e) => e.try_cast::<Map>().expect("error map"),
    }
}

pub fn get_str(m: &Map, k: &str) -> String {
    m.get(k)
        .unwrap_or_else(|| panic!("no {k} in {m:?}"))
        .to_string()
}

pub fn get_int(m: &Map, k: &str) -> i64 {
    m.get(k)
        .unwrap_or_else(|| panic!("no {k} in {m:?}"))
        .as_int()
        .unwrap()
}
