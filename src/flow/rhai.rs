//! The Rhai surface of flows: sources `fetch`, `from_json`, `from_jsonl`, `read`; stages;
//! sinks `write` and `discard` returning receipt maps. Only converts types and calls
//! [`super::sink`]; bytes never enter Rhai. Errors are the catchable maps of
//! [`crate::natives::thrown`], with `bytes_received` for downloads.

use std::sync::Arc;

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, EvalAltResult, FnPtr, Map, NativeCallContext};

use super::codec::Codec;
use super::error::FlowError;
use super::sink;
use super::spec::{Flow, Source, Stage, UrlSource};
use crate::item_scope::ItemScope;
use crate::keys::KeyRing;
use crate::natives::settings;
use crate::natives::thrown::Thrown;
use crate::storage::Store;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// Registers flows, stages and sinks (stores come from [`crate::storage::rhai::register`]);
/// `keys` are the keys `.encrypt(name)`, `.envelope(name)` and `.decrypt(name)` may name.
pub fn register(engine: &mut Engine, keys: Arc<KeyRing>) {
    super::api_fetch::register(engine);
    engine.register_type_with_name::<Flow>("Flow");
    settings::update(engine, |s| s.keys = keys);
    engine.register_global_module(exported_module!(flow_functions).into());
}

/// Converts a flow error into the catchable map of [`Thrown`] (with `bytes_received` for
/// downloads).
pub fn to_rhai(err: FlowError) -> Box<EvalAltResult> {
    let mut thrown = Thrown::new(err.to_string())
        .status(err.status())
        .retryable(err.retryable());
    if let FlowError::Fetch { received, .. } = &err {
        thrown = thrown.with("bytes_received", *received as i64);
    }
    thrown.into()
}

fn invalid(msg: String) -> Box<EvalAltResult> {
    to_rhai(FlowError::Invalid(msg))
}

/// The key ring of the engine running this call.
fn keys_of(ctx: &NativeCallContext) -> Arc<KeyRing> {
    settings::of(ctx).keys
}

#[export_module]
mod flow_functions {
    use super::*;

    /// A streaming transfer: a source (`fetch`, `from_json`, `from_jsonl`, `read`,
    /// `ctx.api.fetch`), stages (hashes, checks, compression, encryption) and a sink
    /// (`write`, `discard`) that returns a receipt map. Bytes never enter the script.
    pub type Flow = super::Flow;

    /// Starts a flow that downloads `url` (resumed with Range after resets and truncation).
    ///
    /// ```rhai
    /// let r = fetch("https://media.example/rec.wav").sha256().write(ctx.store, "rec.wav");
    /// ```
    #[rhai_fn(name = "fetch", return_raw)]
    pub fn fetch_url(url: &str) -> RhaiResult<Flow> {
        let url = check_url(url.to_string()).map_err(to_rhai)?;
        Ok(Flow::new(Source::Fetch(UrlSource::Fixed(url))))
    }

    /// Starts a flow whose URL comes from a function (returning a URL string or a map
    /// with `url`), called again when the URL expires.
    ///
    /// ```rhai
    /// let id = "42";
    /// let r = fetch(|| ctx.api.get(["api", "v2", "recording", id, "download"]).url)
    ///     .md5().write(ctx.store, `recordings/${id}.wav`);
    /// ```
    #[rhai_fn(name = "fetch")]
    pub fn fetch_fn(f: FnPtr) -> Flow {
        Flow::new(Source::Fetch(UrlSource::Function(f)))
    }

    /// Starts a flow from a value serialized as JSON.
    ///
    /// ```rhai
    /// from_json(#{ id: 1, status: "closed" }).write(ctx.store, "interactions/1.json");
    /// ```
    #[rhai_fn(name = "from_json", return_raw)]
    pub fn from_json(value: Dynamic) -> RhaiResult<Flow> {
        let data = serde_json::to_vec(&value).map_err(|e| invalid(format!("from_json: {e}")))?;
        Ok(Flow::new(Source::Bytes {
            data: data.into(),
            kind: "json",
        }))
    }

    /// Starts a flow from an array, one JSON document per line.
    ///
    /// ```rhai
    /// let records = [#{ id: 1 }, #{ id: 2 }];
    /// from_jsonl(records).gzip(6).encrypt("archive").write(ctx.store, "batch.jsonl.gz.enc");
    /// ```
    #[rhai_fn(name = "from_jsonl", return_raw)]
    pub fn from_jsonl(items: Array) -> RhaiResult<Flow> {
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

    /// Starts a flow reading an object of a store.
    ///
    /// ```rhai
    /// let r = read(ctx.store, "batch.enc").decrypt("archive").sha256().discard();
    /// ```
    #[rhai_fn(name = "read")]
    pub fn read(store: Store, key: &str) -> Flow {
        Flow::new(Source::Read {
            store,
            key: key.to_string(),
        })
    }

    /// Adds MD5 of the bytes at this point to the receipt (`md5`).
    ///
    /// ```rhai
    /// let md5 = fetch("https://media.example/rec.wav").md5().write(ctx.store, "rec.wav").md5;
    /// ```
    #[rhai_fn(name = "md5", pure)]
    pub fn md5(f: &mut Flow) -> Flow {
        f.with(Stage::Md5)
    }

    /// Adds SHA-256 of the bytes at this point to the receipt (the source's SHA-256 is
    /// always computed).
    ///
    /// ```rhai
    /// let sha = fetch("https://media.example/rec.wav").sha256().write(ctx.store, "rec.wav").sha256;
    /// ```
    #[rhai_fn(name = "sha256", pure)]
    pub fn sha256(f: &mut Flow) -> Flow {
        f.with(Stage::Sha256)
    }

    /// Fails the flow unless exactly `n` bytes pass this point.
    ///
    /// ```rhai
    /// fetch("https://media.example/rec.wav").expect_size(1024).write(ctx.store, "rec.wav");
    /// ```
    #[rhai_fn(name = "expect_size", pure, return_raw)]
    pub fn expect_size(f: &mut Flow, n: i64) -> RhaiResult<Flow> {
        let n = u64::try_from(n).map_err(|_| invalid(format!("expect_size({n}): negative")))?;
        Ok(f.with(Stage::ExpectSize(n)))
    }

    /// Fails the flow unless the bytes at this point have this SHA-256 (hex).
    ///
    /// ```rhai
    /// let checksum = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    /// fetch("https://media.example/rec.wav").expect_sha256(checksum).write(ctx.store, "rec.wav");
    /// ```
    #[rhai_fn(name = "expect_sha256", pure)]
    pub fn expect_sha256(f: &mut Flow, hex: &str) -> Flow {
        f.with(Stage::ExpectSha256(hex.to_ascii_lowercase()))
    }

    /// Fails the flow unless the bytes start like WAV (RIFF/WAVE), MP3 (frame sync or
    /// ID3) or OGG; the receipt's `audio` names the format.
    ///
    /// ```rhai
    /// let format = fetch("https://media.example/rec.wav").audio_check().write(ctx.store, "rec.wav").audio;
    /// ```
    #[rhai_fn(name = "audio_check", pure)]
    pub fn audio_check(f: &mut Flow) -> Flow {
        f.with(Stage::AudioCheck)
    }

    /// Compresses with gzip at `level` (0..=9).
    ///
    /// ```rhai
    /// from_jsonl([#{ id: 1 }]).gzip(6).write(ctx.store, "rows.jsonl.gz");
    /// ```
    #[rhai_fn(name = "gzip", pure, return_raw)]
    pub fn gzip(f: &mut Flow, level: i64) -> RhaiResult<Flow> {
        let l = Codec::Gzip.check_level(level).map_err(to_rhai)?;
        Ok(f.with(Stage::Compress(Codec::Gzip, l)))
    }

    /// Compresses with zstd at `level` (1..=22).
    ///
    /// ```rhai
    /// from_jsonl([#{ id: 1 }]).zstd(3).write(ctx.store, "rows.jsonl.zst");
    /// ```
    #[rhai_fn(name = "zstd", pure, return_raw)]
    pub fn zstd(f: &mut Flow, level: i64) -> RhaiResult<Flow> {
        let l = Codec::Zstd.check_level(level).map_err(to_rhai)?;
        Ok(f.with(Stage::Compress(Codec::Zstd, l)))
    }

    /// Encrypts with the configured key `name` (`[keys.NAME]`; format in docs/FORMAT.md).
    ///
    /// ```rhai
    /// fetch("https://media.example/rec.wav").sha256().encrypt("archive").write(ctx.store, "rec.wav.enc");
    /// ```
    #[rhai_fn(name = "encrypt", pure, return_raw)]
    pub fn encrypt(ctx: NativeCallContext, f: &mut Flow, name: &str) -> RhaiResult<Flow> {
        keys_of(&ctx).get(name).map_err(|e| to_rhai(e.into()))?;
        Ok(f.with(Stage::Encrypt(name.to_string())))
    }

    /// Encrypts into the seed-004 JSON envelope (`salt`, `nonce`, `ciphertext` in base64;
    /// PBKDF2-SHA256 480000 of the passphrase key `name`, stretched once per process;
    /// AES-256-GCM), for readers that expect it. Holds the object in memory (≤ 256 MiB).
    ///
    /// ```rhai
    /// from_jsonl([#{ id: 1 }]).gzip(6).envelope("archive").write(ctx.store, "batch.json");
    /// ```
    #[rhai_fn(name = "envelope", pure, return_raw)]
    pub fn envelope(ctx: NativeCallContext, f: &mut Flow, name: &str) -> RhaiResult<Flow> {
        let keys = keys_of(&ctx);
        let kek = keys.get(name).map_err(|e| to_rhai(e.into()))?;
        if kek.passphrase().is_none() {
            return Err(invalid(format!(
                "envelope({name:?}): the seed-004 envelope derives its key with PBKDF2 from a \
                 passphrase; configure [keys.{name}] with passphrase_env, or use .encrypt({name:?})"
            )));
        }
        Ok(f.with(Stage::Envelope(name.to_string())))
    }

    /// Decrypts an object written with `.encrypt(name)`.
    ///
    /// ```rhai
    /// let r = read(ctx.store, "rec.wav.enc").decrypt("archive").sha256().discard();
    /// ```
    #[rhai_fn(name = "decrypt", pure, return_raw)]
    pub fn decrypt(ctx: NativeCallContext, f: &mut Flow, name: &str) -> RhaiResult<Flow> {
        keys_of(&ctx).get(name).map_err(|e| to_rhai(e.into()))?;
        Ok(f.with(Stage::Decrypt(Some(name.to_string()))))
    }

    /// Records source ids (or any facts) in the object's manifest.
    ///
    /// ```rhai
    /// fetch("https://media.example/rec.wav").meta(#{ recording_id: "42" }).write(ctx.store, "rec.wav");
    /// ```
    #[rhai_fn(name = "meta", pure, return_raw)]
    pub fn meta(f: &mut Flow, m: Map) -> RhaiResult<Flow> {
        let value = serde_json::to_value(Dynamic::from_map(m))
            .map_err(|e| invalid(format!("meta: {e}")))?;
        let mut out = f.clone();
        if let serde_json::Value::Object(obj) = value {
            out.meta.extend(obj);
        }
        Ok(out)
    }

    /// Sets how many consecutive failed download attempts end the fetch (default 5).
    ///
    /// ```rhai
    /// fetch("https://media.example/rec.wav").tries(3).write(ctx.store, "rec.wav");
    /// ```
    #[rhai_fn(name = "tries", pure, return_raw)]
    pub fn tries(f: &mut Flow, n: i64) -> RhaiResult<Flow> {
        let n = u32::try_from(n)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| invalid(format!("tries({n}): must be at least 1")))?;
        let mut out = f.clone();
        out.tries = n;
        Ok(out)
    }

    /// Sets the download's progress rule: each try must bring at least `bytes` per
    /// `window` (a duration such as `"15s"`), or it fails as stalled and counts as a try
    /// without progress (default 16 KiB per 15 s). Lower it for slow links; raise it to
    /// give up sooner on a server that drips.
    ///
    /// ```rhai
    /// fetch("https://media.example/rec.wav").min_progress(65536, "10s").write(ctx.store, "rec.wav");
    /// ```
    #[rhai_fn(name = "min_progress", pure, return_raw)]
    pub fn min_progress(f: &mut Flow, bytes: i64, window: &str) -> RhaiResult<Flow> {
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

    /// Runs the flow into a new object `key` (never overwrites: an existing key returns a
    /// receipt with `existed: true`) and writes `KEY.manifest.json`. Returns the receipt:
    /// `key, existed, bytes_read, bytes_stored, sha256, md5, stored_sha256, duration_ms, ...`.
    ///
    /// ```rhai
    /// let r = fetch("https://media.example/rec.wav").md5().write(ctx.store, "recordings/1.wav");
    /// ctx.log(`stored ${r.bytes_stored} bytes, md5 ${r.md5}`);
    /// ```
    #[rhai_fn(name = "write", pure, return_raw)]
    pub fn write(ctx: NativeCallContext, f: &mut Flow, store: Store, key: &str) -> RhaiResult<Map> {
        let flow = f.clone();
        let keys = keys_of(&ctx);
        let scope = ItemScope::of(&ctx);
        with_url_fn(&ctx, &flow, |url_fn| {
            sink::write(&flow, &store, key, &keys, url_fn, &scope)
        })
    }

    /// Runs the flow for its checks and hashes only. Returns the receipt.
    ///
    /// ```rhai
    /// let expected = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    /// let ok = read(ctx.store, "rec.wav.enc").decrypt("archive").sha256().discard().sha256 == expected;
    /// ```
    #[rhai_fn(name = "discard", pure, return_raw)]
    pub fn discard(ctx: NativeCallContext, f: &mut Flow) -> RhaiResult<Map> {
        let flow = f.clone();
        let keys = keys_of(&ctx);
        let deadline = ItemScope::of(&ctx).deadline;
        with_url_fn(&ctx, &flow, |url_fn| {
            sink::discard(&flow, &keys, url_fn, deadline)
        })
    }
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
