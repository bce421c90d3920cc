//! Named encryption keys (`[keys.NAME]` in the configuration): each resolves to a 256-bit
//! key-encryption key (KEK) from an env var, a file, or a passphrase stretched once per
//! process. Scripts refer to keys by name only; key material never enters Rhai or logs.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::secret::{Secret, SecretError, SecretRef};

/// Default PBKDF2-SHA256 iteration count for passphrase keys.
pub const DEFAULT_PASSPHRASE_ITERATIONS: u32 = 600_000;
/// Fewer PBKDF2 iterations than this are refused: they make passphrase guessing cheap.
pub const MIN_PASSPHRASE_ITERATIONS: u32 = 100_000;

/// One `[keys.NAME]` table. Exactly one of `env`, `file` or `passphrase_env` is set.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Environment variable holding a raw 256-bit key, as 64 hex digits or base64.
    pub env: Option<String>,
    /// File holding a raw 256-bit key: 32 raw bytes, 64 hex digits or base64 (relative
    /// paths start at the configuration file's folder).
    pub file: Option<PathBuf>,
    /// Environment variable holding a passphrase; stretched with PBKDF2-HMAC-SHA256.
    pub passphrase_env: Option<String>,
    /// Salt for the passphrase stretch (default `cxpipe:NAME`).
    pub salt: Option<String>,
    /// PBKDF2 iterations for the passphrase stretch (default 600000).
    pub iterations: Option<u32>,
}

/// Error loading or finding a key. Names the key and its source, never its value.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key {name}: set exactly one of `env`, `file` or `passphrase_env`")]
    Source { name: String },
    #[error("key {name}: {source}")]
    Secret {
        name: String,
        #[source]
        source: SecretError,
    },
    #[error("key {name} from {origin}: expected 32 bytes (64 hex digits or base64), got {got}")]
    Format {
        name: String,
        origin: String,
        got: String,
    },
    #[error("key {name}: passphrase is empty")]
    EmptyPassphrase { name: String },
    #[error(
        "key {name}: {what} (use at least {MIN_PASSPHRASE_ITERATIONS} iterations and a non-empty salt; the default is {DEFAULT_PASSPHRASE_ITERATIONS} iterations and salt \"cxpipe:NAME\")"
    )]
    WeakStretch { name: String, what: String },
    #[error("no key named {0:?} is configured (add a [keys.{0}] table)")]
    Unknown(String),
    #[error(
        "key {name:?} is not granted to pipeline {pipeline} (granted: {granted}); add it to its \
         keys: `keys = [\"{name}\"]` in [pipelines.{pipeline}]{configure}"
    )]
    NotGranted {
        name: String,
        pipeline: String,
        granted: String,
        /// Also needed when no `[keys.NAME]` exists.
        configure: String,
    },
    #[error("{} keys are invalid: {}", .0.len(), .0.join("; "))]
    Many(Vec<String>),
}

/// A loaded key-encryption key. `Debug` shows only its id.
#[derive(Clone)]
pub struct Kek {
    bytes: [u8; 32],
    id: [u8; 8],
    passphrase: Option<Secret>,
}

impl Kek {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Kek {
        Kek {
            bytes,
            id: key_id(&bytes),
            passphrase: None,
        }
    }

    /// The key bytes; used only to derive per-object keys.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The 8-byte key id written in encrypted headers (not secret: an HMAC of a constant).
    pub fn id(&self) -> [u8; 8] {
        self.id
    }

    /// The passphrase this key was stretched from, for seed-004 envelopes.
    pub fn passphrase(&self) -> Option<&Secret> {
        self.passphrase.as_ref()
    }

    /// The key that authenticates manifests (docs/FORMAT.md §3.1):
    /// `HKDF-SHA256(salt = none, IKM = KEK, info = MANIFEST_MAC_INFO, L = 32)`. A different
    /// `info` from per-object encryption keys, so neither key says anything of the other.
    pub fn manifest_mac_key(&self) -> [u8; 32] {
        let mut okm = [0u8; 32];
        hkdf::Hkdf::<Sha256>::new(None, &self.bytes)
            .expand(MANIFEST_MAC_INFO, &mut okm)
            .expect("32 bytes is a valid HKDF length");
        okm
    }
}

/// HKDF `info` of the manifest MAC key (per-object encryption keys use
/// `cxpipe object key v1`).
pub const MANIFEST_MAC_INFO: &[u8] = b"cxpipe manifest mac v1";

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kek(id={})", hex::encode(self.id))
    }
}

/// `HMAC-SHA256(kek, "cxpipe key id v1")[..8]`: names a key without revealing it.
pub fn key_id(kek: &[u8; 32]) -> [u8; 8] {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(kek).expect("any key length");
    mac.update(b"cxpipe key id v1");
    let tag = mac.finalize().into_bytes();
    let mut id = [0u8; 8];
    id.copy_from_slice(&tag[..8]);
    id
}

/// The named keys of one configuration, or the part of them one pipeline is granted.
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    keys: BTreeMap<String, Kek>,
    /// Set on a pipeline's ring: its name and every configured key name (for errors).
    grant: Option<(String, Vec<String>)>,
}

impl KeyRing {
    /// A ring without keys.
    pub fn empty() -> KeyRing {
        KeyRing::default()
    }

    /// Loads every `[keys.NAME]` table; reports all broken keys at once.
    pub fn from_config(
        keys: &BTreeMap<String, KeyConfig>,
        config_dir: &Path,
    ) -> Result<KeyRing, KeyError> {
        let mut ring = KeyRing::empty();
        let mut errors = Vec::new();
        for (name, cfg) in keys {
            match load(name, cfg, config_dir) {
                Ok(kek) => {
                    ring.keys.insert(name.clone(), kek);
                }
                Err(err) => errors.push(err),
            }
        }
        match errors.len() {
            0 => Ok(ring),
            1 => Err(errors.remove(0)),
            _ => Err(KeyError::Many(
                errors.iter().map(ToString::to_string).collect(),
            )),
        }
    }

    /// Adds a raw key under `name` (used by `cxpipe demo` and tests).
    pub fn insert_raw(&mut self, name: &str, kek: [u8; 32]) {
        self.keys.insert(name.to_string(), Kek::from_bytes(kek));
    }

    /// Adds a passphrase key under `name`, stretched as configuration would.
    pub fn insert_passphrase(
        &mut self,
        name: &str,
        passphrase: &Secret,
        salt: &str,
        iterations: u32,
    ) {
        let bytes = stretch(passphrase, salt, iterations);
        let mut kek = Kek::from_bytes(bytes);
        kek.passphrase = Some(passphrase.clone());
        self.keys.insert(name.to_string(), kek);
    }

    /// The ring pipeline `pipeline` may use: only the keys named in `granted` (names not
    /// in this ring are left out; the configuration check reports them). Asking it for
    /// another key is an error naming the pipeline and the line to add.
    pub fn granted(&self, pipeline: &str, granted: &[String]) -> KeyRing {
        KeyRing {
            keys: self
                .keys
                .iter()
                .filter(|(n, _)| granted.contains(n))
                .map(|(n, k)| (n.clone(), k.clone()))
                .collect(),
            grant: Some((pipeline.to_string(), self.names())),
        }
    }

    /// The key named `name`.
    pub fn get(&self, name: &str) -> Result<&Kek, KeyError> {
        self.keys.get(name).ok_or_else(|| match &self.grant {
            None => KeyError::Unknown(name.to_string()),
            Some((pipeline, configured)) => KeyError::NotGranted {
                name: name.to_string(),
                pipeline: pipeline.clone(),
                granted: if self.keys.is_empty() {
                    "none".into()
                } else {
                    self.names().join(", ")
                },
                configure: if configured.iter().any(|c| c == name) {
                    String::new()
                } else {
                    format!(", and configure it in a [keys.{name}] table")
                },
            },
        })
    }

    /// The key whose id is `id`, with its name.
    pub fn by_id(&self, id: [u8; 8]) -> Option<(&str, &Kek)> {
        self.keys
            .iter()
            .find(|(_, k)| k.id == id)
            .map(|(n, k)| (n.as_str(), k))
    }

    /// Names of the loaded keys.
    pub fn names(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }

    /// Every loaded key, for trying envelopes.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Kek)> {
        self.keys.iter().map(|(n, k)| (n.as_str(), k))
    }
}

fn load(name: &str, cfg: &KeyConfig, dir: &Path) -> Result<Kek, KeyError> {
    let secret_err = |source| KeyError::Secret {
        name: name.to_string(),
        source,
    };
    match (&cfg.env, &cfg.file, &cfg.passphrase_env) {
        (Some(var), None, None) => {
            let value = SecretRef::Env(var.clone())
                .resolve(dir)
                .map_err(secret_err)?;
            parse_raw(name, &format!("env:{var}"), value.expose().as_bytes())
        }
        (None, Some(path), None) => {
            let path = dir.join(path);
            let bytes = std::fs::read(&path).map_err(|source| {
                secret_err(SecretError::File {
                    path: path.clone(),
                    source,
                })
            })?;
            parse_raw(name, &format!("file:{}", path.display()), &bytes)
        }
        (None, None, Some(var)) => {
            let salt = cfg.salt.clone().unwrap_or_else(|| format!("cxpipe:{name}"));
            let iterations = cfg.iterations.unwrap_or(DEFAULT_PASSPHRASE_ITERATIONS);
            let weak = |what: String| KeyError::WeakStretch {
                name: name.to_string(),
                what,
            };
            if iterations < MIN_PASSPHRASE_ITERATIONS {
                return Err(weak(format!("iterations = {iterations} is too few")));
            }
            if salt.is_empty() {
                return Err(weak("the salt is empty".into()));
            }
            let value = SecretRef::Env(var.clone())
                .resolve(dir)
                .map_err(secret_err)?;
            if value.expose().is_empty() {
                return Err(KeyError::EmptyPassphrase {
                    name: name.to_string(),
                });
            }
            let mut kek = Kek::from_bytes(stretch(&value, &salt, iterations));
            kek.passphrase = Some(value);
            Ok(kek)
        }
        _ => Err(KeyError::Source {
            name: name.to_string(),
        }),
    }
}

/// Parses a raw key: exactly 32 bytes, or 64 hex digits, or base64 of 32 bytes.
pub fn parse_raw(name: &str, origin: &str, raw: &[u8]) -> Result<Kek, KeyError> {
    if raw.len() == 32 && std::str::from_utf8(raw).is_err() {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(raw);
        return Ok(Kek::from_bytes(bytes));
    }
    let text = String::from_utf8_lossy(raw);
    let text = text.trim();
    let decoded = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).ok()
    } else {
        base64::engine::general_purpose::STANDARD.decode(text).ok()
    };
    let got = match &decoded {
        Some(d) => format!("{} bytes", d.len()),
        None => format!("{} characters that are neither hex nor base64", text.len()),
    };
    match decoded.and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok()) {
        Some(bytes) => Ok(Kek::from_bytes(bytes)),
        None => Err(KeyError::Format {
            name: name.to_string(),
            origin: origin.to_string(),
            got,
        }),
    }
}

/// PBKDF2-HMAC-SHA256, memoized per process so a passphrase is stretched once.
fn stretch(passphrase: &Secret, salt: &str, iterations: u32) -> [u8; 32] {
    static CACHE: OnceLock<Mutex<HashMap<[u8; 32], [u8; 32]>>> = OnceLock::new();
    // Length-prefixed fields: no passphrase/salt pair can collide with another.
    let mut id = Sha256::new();
    for field in [passphrase.expose().as_bytes(), salt.as_bytes()] {
        id.update((field.len() as u64).to_be_bytes());
        id.update(field);
    }
    id.update(iterations.to_be_bytes());
    let id: [u8; 32] = id.finalize().into();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(hit) = cache.lock().expect("key cache").get(&id) {
        return *hit;
    }
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(
        passphrase.expose().as_bytes(),
        salt.as_bytes(),
        iterations,
        &mut out,
    );
    cache.lock().expect("key cache").insert(id, out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(toml_text: &str) -> BTreeMap<String, KeyConfig> {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn hex_base64_and_raw_keys_load_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let raw = [0xA7u8; 32];
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        std::fs::write(dir.path().join("k.b64"), b64).unwrap();
        std::fs::write(dir.path().join("k.hex"), format!("{}\n", hex::encode(raw))).unwrap();
        std::fs::write(dir.path().join("k.bin"), raw).unwrap();
        let keys = table("[a]\nfile = \"k.hex\"\n[b]\nfile = \"k.b64\"\n[c]\nfile = \"k.bin\"\n");
        let ring = KeyRing::from_config(&keys, dir.path()).unwrap();
        for name in ["a", "b", "c"] {
            assert_eq!(ring.get(name).unwrap().bytes(), &raw, "{name}");
        }
        assert_eq!(ring.get("b").unwrap().id(), key_id(&raw));
        assert_eq!(ring.by_id(key_id(&raw)).unwrap().0, "a");
    }

    #[test]
    fn missing_env_names_key_and_variable() {
        let keys = table("[archive]\nenv = \"CXPIPE_KEYS_TEST_SURELY_UNSET\"\n");
        let err = KeyRing::from_config(&keys, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("archive") && err.contains("CXPIPE_KEYS_TEST_SURELY_UNSET"),
            "{err}"
        );
    }

    #[test]
    fn wrong_length_key_is_rejected_without_printing_it() {
        let err = parse_raw("short", "env:X", b"abcd1234")
            .unwrap_err()
            .to_string();
        assert!(err.contains("short") && err.contains("32 bytes"), "{err}");
        assert!(!err.contains("abcd1234"), "{err}");
    }

    #[test]
    fn two_sources_for_one_key_is_an_error() {
        let keys = table("[x]\nenv = \"A\"\npassphrase_env = \"B\"\n");
        assert!(matches!(
            KeyRing::from_config(&keys, Path::new(".")),
            Err(KeyError::Source { .. })
        ));
    }

    #[test]
    fn passphrase_is_stretched_with_pbkdf2_and_its_salt() {
        let mut ring = KeyRing::empty();
        let pass = Secret::new("correct horse");
        ring.insert_passphrase("p", &pass, "cxpipe:p", 1000);
        ring.insert_passphrase("q", &pass, "other", 1000);
        let mut expected = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"correct horse", b"cxpipe:p", 1000, &mut expected);
        assert_eq!(ring.get("p").unwrap().bytes(), &expected);
        assert_ne!(ring.get("q").unwrap().bytes(), &expected);
        assert!(!format!("{:?}", ring).contains("correct"));
    }

    #[test]
    fn every_broken_key_is_reported_at_once() {
        let keys = table("[a]\nenv = \"CXPIPE_KEYS_TEST_UNSET_1\"\n[b]\n");
        let err = KeyRing::from_config(&keys, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("2 keys are invalid"), "{err}");
        assert!(
            err.contains("CXPIPE_KEYS_TEST_UNSET_1") && err.contains("key b"),
            "{err}"
        );
    }

    #[test]
    fn key_ids_and_stretching_match_known_answers() {
        // Python: hmac.new(bytes(range(32)), b"cxpipe key id v1", sha256).digest()[:8]
        let kek: [u8; 32] = std::array::from_fn(|i| i as u8);
        assert_eq!(hex::encode(key_id(&kek)), "ff71f5a28d7c243e");
        // PBKDF2-HMAC-SHA256("password", "salt", 1) from RFC 7914 §11.
        assert_eq!(
            hex::encode(stretch(&Secret::new("password"), "salt", 1)),
            "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"
        );
    }

    #[test]
    fn weak_stretch_settings_are_refused() {
        // Checked before the passphrase is read, so no variable needs to be set.
        for (extra, want) in [
            ("iterations = 1000", "iterations = 1000 is too few"),
            ("salt = \"\"", "the salt is empty"),
        ] {
            let keys = table(&format!(
                "[weak]\npassphrase_env = \"CXPIPE_KEYS_TEST_PASS_UNSET\"\n{extra}\n"
            ));
            let err = KeyRing::from_config(&keys, Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(want) && err.contains("at least 100000"),
                "{err}"
            );
        }
    }

    #[test]
    fn unknown_key_names_the_key() {
        let err = KeyRing::empty().get("archive").unwrap_err().to_string();
        assert!(err.contains("archive"), "{err}");
    }
}
