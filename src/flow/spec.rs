//! What a flow is before it runs: a [`Source`] and a list of [`Stage`]s, built by scripts
//! (or the CLI) and checked when the flow starts.

use std::path::PathBuf;

use bytes::Bytes;

use super::codec::Codec;
use crate::storage::Store;

/// Where a flow's bytes come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// An HTTP(S) download, resumed and refreshed as needed.
    Fetch(UrlSource),
    /// Bytes built in memory from script values (`from_json`, `from_jsonl`).
    Bytes { data: Bytes, kind: &'static str },
    /// An object of a store.
    Read { store: Store, key: String },
    /// A local file (CLI only).
    File(PathBuf),
}

/// The URL of a fetch: fixed, or a script function returning a fresh one.
#[derive(Clone, Debug)]
pub enum UrlSource {
    Fixed(String),
    Function(rhai::FnPtr),
    /// An endpoint of the tenant's API (`ctx.api.fetch(path)`): sent with the tenant's
    /// bearer token, refreshed after a 401.
    Api {
        api: crate::api::Api,
        path: crate::api::ApiPath,
    },
}

impl Source {
    /// Short name for manifests and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Fetch(_) => "fetch",
            Source::Bytes { kind, .. } => kind,
            Source::Read { .. } => "read",
            Source::File(_) => "file",
        }
    }
}

/// One stage, in the order the script chained it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    Md5,
    Sha256,
    ExpectSize(u64),
    ExpectSha256(String),
    AudioCheck,
    Compress(Codec, i32),
    Decompress(Codec),
    /// Encrypt with the named key.
    Encrypt(String),
    /// Decrypt with the named key, or (`None`) whichever loaded key the header names.
    Decrypt(Option<String>),
    /// Seal into a seed-004 JSON envelope with the named passphrase key.
    Envelope(String),
}

impl Stage {
    /// Whether the stage changes bytes (the others observe them).
    pub fn is_transform(&self) -> bool {
        matches!(
            self,
            Stage::Compress(..)
                | Stage::Decompress(_)
                | Stage::Encrypt(_)
                | Stage::Decrypt(_)
                | Stage::Envelope(_)
        )
    }

    /// How the stage appears in manifests, e.g. `gzip(1)` or `encrypt(archive)`.
    pub fn label(&self) -> String {
        match self {
            Stage::Md5 => "md5".into(),
            Stage::Sha256 => "sha256".into(),
            Stage::ExpectSize(n) => format!("expect_size({n})"),
            Stage::ExpectSha256(_) => "expect_sha256".into(),
            Stage::AudioCheck => "audio_check".into(),
            Stage::Compress(c, l) => format!("{}({l})", c.name()),
            Stage::Decompress(Codec::Gzip) => "gunzip".into(),
            Stage::Decompress(Codec::Zstd) => "unzstd".into(),
            Stage::Encrypt(k) => format!("encrypt({k})"),
            Stage::Decrypt(Some(k)) => format!("decrypt({k})"),
            Stage::Decrypt(None) => "decrypt".into(),
            Stage::Envelope(k) => format!("envelope({k})"),
        }
    }
}

/// A flow: a source, its stages, and how hard to try.
#[derive(Clone, Debug)]
pub struct Flow {
    pub source: Source,
    pub stages: Vec<Stage>,
    /// Consecutive failed fetch attempts without progress before giving up.
    pub tries: u32,
    /// The fetch body's progress rule (`.min_progress(bytes, window)`): at least this many
    /// bytes per window, or the try fails as stalled. `None`: the process-wide default.
    pub min_progress: Option<(u64, std::time::Duration)>,
    /// Source ids and other facts recorded in the manifest (`.meta(map)`).
    pub meta: serde_json::Map<String, serde_json::Value>,
}

/// Default for [`Flow::tries`].
pub const DEFAULT_TRIES: u32 = 5;

impl Flow {
    pub fn new(source: Source) -> Flow {
        Flow {
            source,
            stages: Vec::new(),
            tries: DEFAULT_TRIES,
            min_progress: None,
            meta: serde_json::Map::new(),
        }
    }

    /// This flow with one more stage.
    pub fn with(&self, stage: Stage) -> Flow {
        let mut f = self.clone();
        f.stages.push(stage);
        f
    }
}
