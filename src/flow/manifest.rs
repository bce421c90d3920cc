//! The manifest sidecar written next to every stored object (`KEY.manifest.json`, format in
//! `docs/FORMAT.md`): what the object is, where it came from, and the hashes `verify`
//! checks.

use serde::{Deserialize, Serialize};

use super::manifest_mac::{self, Authenticity, ManifestMac};
use super::run::Outcome;
use super::spec::{Flow, Stage};
use crate::item_scope::ItemScope;
use crate::keys::KeyRing;
use crate::storage::{StorageError, Store, manifest_key};

/// Identifies the manifest format.
pub const FORMAT: &str = "cxpipe.manifest/1";

/// Size and hashes of one byte stream.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Digests {
    pub size: u64,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
}

/// Encryption facts (never the key).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Encryption {
    pub key_name: String,
    pub key_id: String,
    pub format_version: u8,
    pub algorithm: String,
    pub segment_size: u32,
}

/// One manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub key: String,
    /// `fetch`, `json`, `jsonl`, `read` plus the script's `.meta(map)` entries.
    pub source: serde_json::Map<String, serde_json::Value>,
    /// The bytes at the flow's SHA-256 tap (normally the source bytes).
    pub plaintext: Digests,
    /// The bytes stored.
    pub stored: Digests,
    /// Stages turning plaintext into stored bytes, e.g. `["gzip(1)", "encrypt(archive)"]`.
    pub transforms: Vec<String>,
    /// Every stage as chained.
    pub stages: Vec<String>,
    pub encryption: Option<Encryption>,
    pub run_id: Option<String>,
    pub pipeline: Option<String>,
    pub tenant: Option<String>,
    pub item_key: Option<String>,
    pub script_hash: Option<String>,
    pub written_at: String,
    pub cxpipe_version: String,
    /// HMAC of every other member when a key is configured (docs/FORMAT.md §3.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<ManifestMac>,
}

/// A manifest as loaded: its fields, and whether its MAC holds under the loaded keys.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub manifest: Manifest,
    pub authenticity: Authenticity,
}

impl Manifest {
    /// The manifest of a flow that stored `key` in the call of `scope` (its empty fields
    /// are left out).
    pub fn new(flow: &Flow, key: &str, outcome: &Outcome, scope: &ItemScope) -> Manifest {
        let mut source = flow.meta.clone();
        source.insert("kind".into(), flow.source.kind().into());
        let c = &outcome.chain;
        let plaintext = Digests {
            size: c.plaintext.size,
            sha256: c.plaintext.sha256.clone().unwrap_or_default(),
            md5: c.md5.clone(),
        };
        let stored = Digests {
            size: c.stored.size,
            sha256: c.stored.sha256.clone().unwrap_or_default(),
            md5: None,
        };
        Manifest {
            transforms: outcome
                .plan
                .stored_from_plaintext
                .iter()
                .map(Stage::label)
                .collect(),
            stages: outcome.plan.labels.clone(),
            encryption: outcome
                .plan
                .encryption
                .as_ref()
                .map(|(name, id)| Encryption {
                    key_name: name.clone(),
                    key_id: id.clone(),
                    format_version: super::crypt::VERSION,
                    algorithm: "AES-256-GCM-STREAM-BE32/HKDF-SHA256".into(),
                    segment_size: super::crypt::SEGMENT as u32,
                }),
            ..Manifest::plain(key, source, plaintext, stored, scope)
        }
    }

    /// The manifest of a document stored whole, as it is (`store.write_json`): no stages,
    /// no transforms, `source.kind` `write_json`, the size and SHA-256 of `data`.
    pub fn of_document(key: &str, data: &[u8], scope: &ItemScope) -> Manifest {
        use sha2::Digest as _;
        let digests = Digests {
            size: data.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(data)),
            md5: None,
        };
        let mut source = serde_json::Map::new();
        source.insert("kind".into(), "write_json".into());
        Manifest::plain(key, source, digests.clone(), digests, scope)
    }

    /// A manifest without stages, transforms or encryption, carrying the run facts of
    /// `scope` (its empty fields left out) and the time now.
    fn plain(
        key: &str,
        source: serde_json::Map<String, serde_json::Value>,
        plaintext: Digests,
        stored: Digests,
        scope: &ItemScope,
    ) -> Manifest {
        let pick = |f: fn(&ItemScope) -> &String| Some(f(scope)).filter(|s| !s.is_empty()).cloned();
        Manifest {
            format: FORMAT.into(),
            key: key.into(),
            source,
            plaintext,
            stored,
            transforms: Vec::new(),
            stages: Vec::new(),
            encryption: None,
            run_id: pick(|s| &s.run_id),
            pipeline: pick(|s| &s.pipeline),
            tenant: pick(|s| &s.tenant),
            item_key: pick(|s| &s.item_key),
            script_hash: pick(|s| &s.script_hash),
            written_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            cxpipe_version: env!("CARGO_PKG_VERSION").into(),
            mac: None,
        }
    }

    /// Adds the MAC when `keys` holds a key: the encryption key of the object, else the
    /// first configured key. It covers the manifest exactly as `verify` will parse it back
    /// from its stored text.
    pub fn seal(&mut self, keys: &KeyRing) {
        self.mac = None;
        let name = self.encryption.as_ref().map(|e| e.key_name.as_str());
        let Some(kek) = manifest_mac::signing_key(keys, name) else {
            return;
        };
        let text = serde_json::to_string(self).expect("manifest serializes");
        let parsed: serde_json::Value = serde_json::from_str(&text).expect("own JSON parses");
        self.mac = Some(manifest_mac::sign(&parsed, kek));
    }

    /// Writes the sidecar.
    pub async fn store(&self, store: &Store) -> Result<(), StorageError> {
        let json = serde_json::to_vec_pretty(self).expect("manifest serializes");
        store.put_manifest(&self.key, json.into()).await
    }

    /// Reads the sidecar of `key` and checks its MAC against `keys`; `None` when absent.
    pub async fn load_checked(
        store: &Store,
        key: &str,
        keys: &KeyRing,
    ) -> Result<Option<Loaded>, StorageError> {
        let mk = manifest_key(key);
        let Some(bytes) = store.read_small(&mk, crate::storage::MAX_JSON).await? else {
            return Ok(None);
        };
        let json_err = |e: serde_json::Error| StorageError::Json {
            key: mk.clone(),
            store: store.describe(),
            message: e.to_string(),
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(json_err)?;
        let authenticity = manifest_mac::check(&value, keys);
        let manifest = serde_json::from_value(value).map_err(json_err)?;
        Ok(Some(Loaded {
            manifest,
            authenticity,
        }))
    }

    /// Reads the sidecar of `key`; `None` when absent.
    pub async fn load(store: &Store, key: &str) -> Result<Option<Manifest>, StorageError> {
        let mk = manifest_key(key);
        let Some(bytes) = store.read_small(&mk, crate::storage::MAX_JSON).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StorageError::Json {
                key: mk,
                store: store.describe(),
                message: e.to_string(),
            })
    }
}
