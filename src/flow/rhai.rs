//! The Rhai surface of flows: sources `fetch`, `from_json`, `from_jsonl`, `read`; stages;
//! sinks `write` and `discard` returning receipt maps. Only converts types and calls
//! [`super::sink`]; bytes never enter Rhai. Errors are catchable maps with `message`,
//! `status`, `retryable`, `request_id` and `bytes_received`.

use std::sync::Arc;

use rhai::{
    Array, Dynamic, Engine, EvalAltResult, FnPtr, FuncRegistration, Map, NativeCallContext,
    Position,
};

use super::codec::Codec;
use super::error::FlowError;
use super::sink;
use super::spec::{Flow, Source, Stage, UrlSource};
use crate::keys::KeyRing;
use crate::storage::Store;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// Registers flows, stages and sinks (stores come from [`crate::storage::rhai::register`]).
pub fn register(engine: &mut Engine, keys: Arc<KeyRing>) {
    super::api_fetch::register(engine);
    engine.register_type_with_name::<Flow>("Flow");
    register_sources(engine);
    register_stages(engine, keys.clone());
    register_sinks(engine, keys);
}

/// Converts a flow error into a structured, catchable script error.
pub fn to_rhai(err: FlowError) -> Box<EvalAltResult> {
    let mut map = Map::new();
    map.insert("message".into(), err.to_string().into());
    map.insert(
        "status".into(),
        err.status()
            .map(|s| Dynamic::from(s as i64))
            .unwrap_or(Dynamic::UNIT),
    );
    map.insert("retryable".into(), err.retryable().into());
    map.insert("request_id".into(), Dynamic::UNIT);
    if let FlowError::Fetch { received, .. } = &err {
        map.insert("bytes_received".into(), (*received as i64).into());
    }
    EvalAltResult::ErrorRuntime(Dynamic::from_map(map), Position::NONE).into()
}

fn invalid(msg: String) -> Box<EvalAltResult> {
    to_rhai(FlowError::Invalid(msg))
}

fn register_sources(engine: &mut Engine) {
    /// Starts a flow that downloads `url` (resumed with Range after resets and truncation).
    /// ```rhai
    /// let r = fetch("https://media.example/rec.wav").sha256().write(store, "rec.wav");
    /// ```
    fn fetch_url(url: &str) -> RhaiResult<Flow> {
        let url = check_url(url.to_string()).map_err(to_rhai)?;
        Ok(Flow::new(Source::Fetch(UrlSource::Fixed(url))))
    }
    engine.register_fn("fetch", fetch_url);

    /// Starts a flow whose URL comes from a function, called again when the URL expires.
    /// ```rhai
    /// let r = fetch(|| rs::download_url(ctx.api, id, "combined")).md5().write(ctx.store, key);
    /// ```
    fn fetch_fn(f: FnPtr) -> Flow {
        Flow::new(Source::Fetch(UrlSource::Function(f)))
    }
    engine.register_fn("fetch", fetch_fn);

    /// Starts a flow from a value serialized as JSON.
    /// ```rhai
    /// from_json(#{ id: 1, status: "closed" }).write(ctx.store, "interactions/1.json");
    /// ```
    fn from_json(value: Dynamic) -> RhaiResult<Flow> {
        let data = serde_json::to_vec(&value).map_err(|e| invalid(format!("from_json: {e}")))?;
        Ok(Flow::new(Source::Bytes {
            data: data.into(),
            kind: "json",
        }))
    }
    engine.register_fn("from_json", from_json);

    /// Starts a flow from an array, one JSON document per line.
    /// ```rhai
    /// from_jsonl(records).gzip(6).encrypt("archive").write(ctx.store, "batch.jsonl.gz.enc");
    /// ```
    fn from_jsonl(items: Array) -> RhaiResult<Flow> {
        let mut data = Vec::new();
        for item in &items {
            serde_json::to_writer(&mut data, item)
                .map_err(|e| invalid(format!("from_jsonl: {e}")))?;
            data.push(b'\n');
        }
        Ok(Flow::new(Source::Bytes {
            data: data.into(),
            kind: "jsonl",
        }))
    }
    engine.register_fn("from_jsonl", from_jsonl);

    /// Starts a flow reading an object of a store.
    /// ```rhai
    /// let r = read(ctx.store, "batch.enc").decrypt("archive").sha256().discard();
    /// ```
    fn read(store: Store, key: &str) -> Flow {
        Flow::new(Source::Read {
            store,
            key: key.to_string(),
        })
    }
    engine.register_fn("read", read);
}

fn register_stages(engine: &mut Engine, keys: Arc<KeyRing>) {
    /// Adds MD5 of the bytes at this point to the receipt.
    /// ```rhai
    /// fetch(url).md5().write(store, key).md5
    /// ```
    fn md5(f: &mut Flow) -> Flow {
        f.with(Stage::Md5)
    }
    engine.register_fn("md5", md5);

    /// Adds SHA-256 of the bytes at this point (always computed at the source otherwise).
    /// ```rhai
    /// fetch(url).sha256().write(store, key).sha256
    /// ```
    fn sha256(f: &mut Flow) -> Flow {
        f.with(Stage::Sha256)
    }
    engine.register_fn("sha256", sha256);

    /// Fails the flow unless exactly `n` bytes pass this point.
    /// ```rhai
    /// fetch(url).expect_size(rec.sizeBytes).write(store, key)
    /// ```
    fn expect_size(f: &mut Flow, n: i64) -> RhaiResult<Flow> {
        let n = u64::try_from(n).map_err(|_| invalid(format!("expect_size({n}): negative")))?;
        Ok(f.with(Stage::ExpectSize(n)))
    }
    engine.register_fn("expect_size", expect_size);

    /// Fails the flow unless the bytes at this point have this SHA-256 (hex).
    /// ```rhai
    /// fetch(url).expect_sha256(job.checksum).write(store, key)
    /// ```
    fn expect_sha256(f: &mut Flow, hex: &str) -> Flow {
        f.with(Stage::ExpectSha256(hex.to_ascii_lowercase()))
    }
    engine.register_fn("expect_sha256", expect_sha256);

    /// Fails the flow unless the bytes start like WAV (RIFF/WAVE), MP3 (frame sync or ID3) or OGG.
    /// ```rhai
    /// fetch(url).audio_check().write(store, key).audio   // "wav"
    /// ```
    fn audio_check(f: &mut Flow) -> Flow {
        f.with(Stage::AudioCheck)
    }
    engine.register_fn("audio_check", audio_check);

    /// Compresses with gzip at `level` (0..=9).
    /// ```rhai
    /// from_jsonl(rows).gzip(6).write(store, "rows.jsonl.gz")
    /// ```
    fn gzip(f: &mut Flow, level: i64) -> RhaiResult<Flow> {
        let l = Codec::Gzip.check_level(level).map_err(to_rhai)?;
        Ok(f.with(Stage::Compress(Codec::Gzip, l)))
    }
    engine.register_fn("gzip", gzip);

    /// Compresses with zstd at `level` (1..=22).
    /// ```rhai
    /// from_jsonl(rows).zstd(3).write(store, "rows.jsonl.zst")
    /// ```
    fn zstd(f: &mut Flow, level: i64) -> RhaiResult<Flow> {
        let l = Codec::Zstd.check_level(level).map_err(to_rhai)?;
        Ok(f.with(Stage::Compress(Codec::Zstd, l)))
    }
    engine.register_fn("zstd", zstd);

    let k = keys.clone();
    let encrypt = move |f: &mut Flow, name: &str| -> RhaiResult<Flow> {
        k.get(name).map_err(|e| to_rhai(e.into()))?;
        Ok(f.with(Stage::Encrypt(name.to_string())))
    };
    FuncRegistration::new("encrypt")
        .with_comments([
            "/// Encrypts with the configured key `name` (format in docs/FORMAT.md).",
            "/// ```rhai",
            r#"/// fetch(url).sha256().encrypt("archive").write(store, key)"#,
            "/// ```",
        ])
        .register_into_engine(engine, encrypt);

    let k = keys.clone();
    let envelope = move |f: &mut Flow, name: &str| -> RhaiResult<Flow> {
        let kek = k.get(name).map_err(|e| to_rhai(e.into()))?;
        if kek.passphrase().is_none() {
            return Err(invalid(format!(
                "envelope({name:?}): the seed-004 envelope derives its key with PBKDF2 from a \
                 passphrase; configure [keys.{name}] with passphrase_env, or use .encrypt({name:?})"
            )));
        }
        Ok(f.with(Stage::Envelope(name.to_string())))
    };
    FuncRegistration::new("envelope")
        .with_comments([
            "/// Encrypts into the seed-004 JSON envelope (`salt`, `nonce`, `ciphertext` in base64;",
            "/// PBKDF2-SHA256 480000 of the passphrase key `name`, stretched once per process;",
            "/// AES-256-GCM), for readers that expect it. Holds the object in memory (≤ 256 MiB).",
            "/// ```rhai",
            r#"/// from_jsonl(records).gzip(6).envelope("archive").write(ctx.store, "batch.json")"#,
            "/// ```",
        ])
        .register_into_engine(engine, envelope);

    let decrypt = move |f: &mut Flow, name: &str| -> RhaiResult<Flow> {
        keys.get(name).map_err(|e| to_rhai(e.into()))?;
        Ok(f.with(Stage::Decrypt(Some(name.to_string()))))
    };
    FuncRegistration::new("decrypt")
        .with_comments([
            "/// Decrypts an object written with `.encrypt(name)`.",
            "/// ```rhai",
            r#"/// read(store, key).decrypt("archive").sha256().discard()"#,
            "/// ```",
        ])
        .register_into_engine(engine, decrypt);

    /// Records source ids (or any facts) in the object's manifest.
    /// ```rhai
    /// fetch(url).meta(#{ recording_id: rec.recordingId }).write(store, key)
    /// ```
    fn meta(f: &mut Flow, m: Map) -> RhaiResult<Flow> {
        let value = serde_json::to_value(Dynamic::from_map(m))
            .map_err(|e| invalid(format!("meta: {e}")))?;
        let mut out = f.clone();
        if let serde_json::Value::Object(obj) = value {
            out.meta.extend(obj);
        }
        Ok(out)
    }
    engine.register_fn("meta", meta);

    /// Sets how many consecutive failed download attempts end the fetch (default 5).
    /// ```rhai
    /// fetch(url).tries(3).write(store, key)
    /// ```
    fn tries(f: &mut Flow, n: i64) -> RhaiResult<Flow> {
        let n = u32::try_from(n)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| invalid(format!("tries({n}): must be at least 1")))?;
        let mut out = f.clone();
        out.tries = n;
        Ok(out)
    }
    engine.register_fn("tries", tries);

    /// Sets the download's progress rule: each try must bring at least `bytes` per
    /// `window` (a duration such as `"15s"`), or it fails as stalled and counts as a try
    /// without progress (default 16 KiB per 15 s). Lower it for slow links; raise it to
    /// give up sooner on a server that drips.
    /// ```rhai
    /// fetch(url).min_progress(65536, "10s").write(store, key)
    /// ```
    fn min_progress(f: &mut Flow, bytes: i64, window: &str) -> RhaiResult<Flow> {
        let bytes = u64::try_from(bytes)
            .ok()
            .filter(|b| *b >= 1)
            .ok_or_else(|| {
                invalid(format!(
                    "min_progress({bytes}, ..): bytes must be at least 1"
                ))
            })?;
        let window = humantime::parse_duration(window.trim())
            .ok()
            .filter(|w| !w.is_zero() && *w <= std::time::Duration::from_secs(3600))
            .ok_or_else(|| {
                invalid(format!(
                    "min_progress(.., {window:?}): window must be a duration from 1ms to 1h, e.g. \"15s\""
                ))
            })?;
        let mut out = f.clone();
        out.min_progress = Some((bytes, window));
        Ok(out)
    }
    engine.register_fn("min_progress", min_progress);
}

fn register_sinks(engine: &mut Engine, keys: Arc<KeyRing>) {
    let k = keys.clone();
    let write =
        move |ctx: NativeCallContext, f: &mut Flow, store: Store, key: &str| -> RhaiResult<Map> {
            let flow = f.clone();
            with_url_fn(&ctx, &flow, |url_fn| {
                sink::write(&flow, &store, key, &k, url_fn)
            })
        };
    FuncRegistration::new("write")
        .with_comments([
            "/// Runs the flow into a new object `key` (never overwrites: an existing key returns a",
            "/// receipt with `existed: true`) and writes `KEY.manifest.json`. Returns the receipt:",
            "/// `key, existed, bytes_read, bytes_stored, sha256, md5, stored_sha256, duration_ms, ...`.",
            "/// ```rhai",
            r#"/// let r = fetch(url).md5().write(ctx.store, "recordings/1.wav");"#,
            "/// ctx.log(`stored ${r.bytes_stored} bytes, md5 ${r.md5}`);",
            "/// ```",
        ])
        .register_into_engine(engine, write);

    let discard = move |ctx: NativeCallContext, f: &mut Flow| -> RhaiResult<Map> {
        let flow = f.clone();
        with_url_fn(&ctx, &flow, |url_fn| sink::discard(&flow, &keys, url_fn))
    };
    FuncRegistration::new("discard")
        .with_comments([
            "/// Runs the flow for its checks and hashes only. Returns the receipt.",
            "/// ```rhai",
            r#"/// let ok = read(store, key).decrypt("archive").sha256().discard().sha256 == expected;"#,
            "/// ```",
        ])
        .register_into_engine(engine, discard);
}

fn with_url_fn(
    ctx: &NativeCallContext,
    flow: &Flow,
    run: impl FnOnce(sink::UrlFn<'_>) -> Result<serde_json::Map<String, serde_json::Value>, FlowError>,
) -> RhaiResult<Map> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(invalid("flows run only inside the cxpipe runtime".into()));
    }
    let result = match &flow.source {
        Source::Fetch(UrlSource::Function(fp)) => {
            let mut call = || -> Result<String, FlowError> {
                let v: Dynamic =
                    fp.call_within_context(ctx, ())
                        .map_err(|e| FlowError::UrlFunction {
                            message: e.to_string(),
                            retryable: crate::engine::thrown_retryable(&e),
                        })?;
                url_of(v)
            };
            run(Some(&mut call))
        }
        _ => run(None),
    };
    let map = result.map_err(to_rhai)?;
    rhai::serde::to_dynamic(map)?
        .try_cast::<Map>()
        .ok_or_else(|| invalid("receipt is not a map".into()))
}

/// Accepts absolute http(s) URLs only; the error never shows the query (signatures).
fn check_url(url: String) -> Result<String, FlowError> {
    match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(url),
        parsed => {
            // Never the query (signatures) nor user:password.
            let shown = match parsed {
                Ok(_) => super::error::redact_url(&url),
                Err(_) => {
                    let base = url.split('?').next().unwrap_or("");
                    match base.rsplit_once('@') {
                        Some((before, host)) => {
                            let scheme = before
                                .split_once("://")
                                .map(|(s, _)| format!("{s}://"))
                                .unwrap_or_default();
                            format!("{scheme}…@{host}")
                        }
                        None => base.to_string(),
                    }
                }
            };
            Err(FlowError::Invalid(format!(
                "fetch needs an absolute http(s) URL, got {shown:?}"
            )))
        }
    }
}

/// A URL from what the URL function returned: a string, or a map with `url`.
fn url_of(v: Dynamic) -> Result<String, FlowError> {
    if v.is_string() {
        return check_url(v.into_string().expect("string"));
    }
    if let Some(m) = v.clone().try_cast::<Map>()
        && let Some(u) = m.get("url")
        && u.is_string()
    {
        return check_url(u.clone().into_string().expect("string"));
    }
    Err(FlowError::UrlFunction {
        message: format!(
            "expected a URL string or a map with `url`, got {}",
            v.type_name()
        ),
        retryable: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_are_named_without_credentials_or_signatures() {
        for bad in [
            "ftp://user:pa55word@host/rec.wav?X-Amz-Signature=abc",
            "not a url user:pa55word@host?sig=abc",
            "//user:pa55word@host/x",
        ] {
            let e = check_url(bad.to_string()).unwrap_err().to_string();
            assert!(e.contains("absolute http(s) URL"), "{e}");
            assert!(!e.contains("pa55word") && !e.contains("abc"), "{e}");
        }
        assert!(check_url("https://media.example/a.wav?sig=1".into()).is_ok());
    }
}
