//! [`StorageConfig`]: a store as a URI plus optional scheme-specific fields, built into an
//! OpenDAL `Operator`. Credentials come only from `SecretRef`s or the standard environment
//! variables, never from the URI.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use opendal::Operator;
use serde::Deserialize;

use super::{PARTIAL_DIR, StorageError};
use crate::secret::{Secret, SecretRef};

/// A `[storage.NAME]` table, or the map given to `storage(#{...})` in scripts.
///
/// URIs: `fs:///abs/dir` (or `fs://rel/dir`), `memory://NAME`, `s3://BUCKET/PREFIX`,
/// `azblob://CONTAINER/PREFIX`, `gcs://BUCKET/PREFIX`. Query parameters `endpoint`,
/// `region`, `path_style`, `account_name` are accepted as shorthands for the fields below.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Where objects live (see above).
    pub uri: String,
    /// Service endpoint, e.g. `http://127.0.0.1:9010` (S3),
    /// `http://127.0.0.1:10000/devstoreaccount1` (Azure) or `http://127.0.0.1:4443` (a GCS
    /// emulator). Default: the public cloud.
    pub endpoint: Option<String>,
    /// S3 region (default `AWS_REGION`, else `us-east-1`).
    pub region: Option<String>,
    /// S3 path-style addressing (default true); false uses virtual-host style.
    pub path_style: Option<bool>,
    /// S3 access key id (default env `AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<SecretRef>,
    /// S3 secret access key (default env `AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: Option<SecretRef>,
    /// S3 session token (default env `AWS_SESSION_TOKEN` when set).
    pub session_token: Option<SecretRef>,
    /// Azure storage account (default env `AZURE_STORAGE_ACCOUNT`).
    pub account_name: Option<String>,
    /// Azure account key (default env `AZURE_STORAGE_KEY`).
    pub account_key: Option<SecretRef>,
    /// GCS service-account JSON file (default env `GOOGLE_APPLICATION_CREDENTIALS`, then
    /// gcloud's application-default credentials, then the GCE metadata server).
    pub credential_path: Option<PathBuf>,
    /// GCS OAuth2 access token (e.g. from `gcloud auth print-access-token`), used before any
    /// other GCS credential.
    pub token: Option<SecretRef>,
    /// GCS without credentials: requests are not signed (public buckets, emulators).
    pub anonymous: Option<bool>,
    /// `fs` only: partial files (in `ROOT/.cxpipe-partial/`) untouched for longer than this
    /// are left by killed processes and removed before the store's first write, e.g.
    /// `"6h"` (default `"24h"`; keep it far above the longest `item_timeout`).
    pub partial_max_age: Option<String>,
}

struct Parsed {
    scheme: String,
    authority: String,
    root: String,
    query: BTreeMap<String, String>,
}

impl StorageConfig {
    /// A config holding only a URI.
    pub fn uri(uri: &str) -> StorageConfig {
        StorageConfig {
            uri: uri.to_string(),
            ..StorageConfig::default()
        }
    }

    fn err(&self, message: impl Into<String>) -> StorageError {
        StorageError::Config {
            uri: self.uri.split('?').next().unwrap_or("").to_string(),
            message: message.into(),
        }
    }

    fn parse(&self) -> Result<Parsed, StorageError> {
        let (scheme, rest) = self
            .uri
            .split_once("://")
            .ok_or_else(|| self.err("expected SCHEME://..., e.g. fs:///data/out"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut q = BTreeMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            q.insert(k.to_string(), v.to_string());
        }
        let (authority, root) = match scheme {
            "fs" => (String::new(), path.to_string()),
            _ => {
                let (a, r) = path.split_once('/').unwrap_or((path, ""));
                (a.to_string(), format!("/{}", r.trim_matches('/')))
            }
        };
        Ok(Parsed {
            scheme: scheme.to_ascii_lowercase(),
            authority,
            root,
            query: q,
        })
    }

    fn secret(
        &self,
        field: &Option<SecretRef>,
        env: &str,
        dir: &Path,
    ) -> Result<Option<Secret>, StorageError> {
        match field {
            Some(r) => r
                .resolve(dir)
                .map(Some)
                .map_err(|e| self.err(e.to_string())),
            None => Ok(std::env::var(env).ok().map(Secret::new)),
        }
    }

    /// A field of another scheme is a mistake (a typo'd URI, a copied block): say which.
    fn check_fields_apply(&self, p: &Parsed) -> Result<(), StorageError> {
        let scheme = p.scheme.as_str();
        let fields: [(&str, bool, &[&str]); 12] = [
            (
                "endpoint",
                self.endpoint.is_some(),
                &["s3", "azblob", "gcs"],
            ),
            ("region", self.region.is_some(), &["s3"]),
            ("path_style", self.path_style.is_some(), &["s3"]),
            ("access_key_id", self.access_key_id.is_some(), &["s3"]),
            (
                "secret_access_key",
                self.secret_access_key.is_some(),
                &["s3"],
            ),
            ("session_token", self.session_token.is_some(), &["s3"]),
            ("account_name", self.account_name.is_some(), &["azblob"]),
            ("account_key", self.account_key.is_some(), &["azblob"]),
            ("credential_path", self.credential_path.is_some(), &["gcs"]),
            ("token", self.token.is_some(), &["gcs"]),
            ("anonymous", self.anonymous.is_some(), &["gcs"]),
            ("partial_max_age", self.partial_max_age.is_some(), &["fs"]),
        ];
        for (name, set, schemes) in fields {
            if (set || p.query.contains_key(name)) && !schemes.contains(&scheme) {
                return Err(self.err(format!(
                    "{name} does not apply to {scheme}:// stores (it is for {})",
                    schemes.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// An `fs` store's partial-file folder and how old a file there may grow before it is
    /// taken for a killed writer's leftover; `None` for other schemes.
    pub(crate) fn partial_dir(
        &self,
        dir: &Path,
    ) -> Result<Option<(PathBuf, std::time::Duration)>, StorageError> {
        let p = self.parse()?;
        if p.scheme != "fs" {
            return Ok(None);
        }
        let max_age = match &self.partial_max_age {
            None => super::DEFAULT_PARTIAL_MAX_AGE,
            Some(text) => humantime::parse_duration(text)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    self.err(format!(
                        "partial_max_age = {text:?}: expected a duration such as \"24h\" or \"90m\""
                    ))
                })?,
        };
        Ok(Some((dir.join(&p.root).join(PARTIAL_DIR), max_age)))
    }

    /// Builds the operator and a description without secrets.
    pub(crate) fn build(&self, dir: &Path) -> Result<(Operator, String), StorageError> {
        opendal::init_default_registry();
        let p = self.parse()?;
        let mut q = p.query.clone();
        let mut take = |k: &str| q.remove(k);
        let endpoint = self.endpoint.clone().or_else(|| take("endpoint"));
        let region = self.region.clone().or_else(|| take("region"));
        let path_style = match (self.path_style, take("path_style")) {
            (Some(b), _) => b,
            (None, Some(v)) => v != "false",
            (None, None) => true,
        };
        let account = self.account_name.clone().or_else(|| take("account_name"));
        if let Some(k) = q.keys().next() {
            return Err(self.err(format!(
                "unknown query parameter {k:?} (credentials belong in env vars or the config)"
            )));
        }
        let base = self.uri.split('?').next().unwrap_or("").to_string();
        let desc = match &endpoint {
            Some(e) => format!("{base} (endpoint {e})"),
            None => base,
        };
        self.check_fields_apply(&p)?;
        let map_err = |e: opendal::Error| self.err(e.to_string());
        let op = match p.scheme.as_str() {
            "fs" => {
                if p.root.is_empty() {
                    return Err(self.err("fs needs a folder: fs:///abs/dir or fs://rel/dir"));
                }
                let root = dir.join(&p.root);
                std::fs::create_dir_all(&root)
                    .map_err(|e| self.err(format!("creating {}: {e}", root.display())))?;
                let root_s = root.to_string_lossy().to_string();
                let partial = root.join(PARTIAL_DIR).to_string_lossy().to_string();
                let b = opendal::services::Fs::default()
                    .root(&root_s)
                    .atomic_write_dir(&partial);
                Operator::new(b).map_err(map_err)?
            }
            "memory" => memory_operator(&p.authority).map_err(map_err)?,
            "s3" => {
                if p.authority.is_empty() {
                    return Err(self.err("s3 needs a bucket: s3://BUCKET/PREFIX"));
                }
                let region = region
                    .or_else(|| std::env::var("AWS_REGION").ok())
                    .unwrap_or_else(|| "us-east-1".into());
                let mut b = opendal::services::S3::default()
                    .bucket(&p.authority)
                    .root(&p.root)
                    .region(&region)
                    .disable_config_load();
                if let Some(e) = endpoint
                    .clone()
                    .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
                {
                    b = b.endpoint(&e);
                }
                if !path_style {
                    b = b.enable_virtual_host_style();
                }
                let id = self.secret(&self.access_key_id, "AWS_ACCESS_KEY_ID", dir)?;
                let key = self.secret(&self.secret_access_key, "AWS_SECRET_ACCESS_KEY", dir)?;
                match (id, key) {
                    (Some(id), Some(key)) => {
                        b = b.access_key_id(id.expose()).secret_access_key(key.expose());
                    }
                    (None, None) => {}
                    _ => return Err(self.err("set both the S3 access key id and secret key")),
                }
                if let Some(t) = self.secret(&self.session_token, "AWS_SESSION_TOKEN", dir)? {
                    b = b.session_token(t.expose());
                }
                Operator::new(b).map_err(map_err)?
            }
            "azblob" => {
                if p.authority.is_empty() {
                    return Err(self.err("azblob needs a container: azblob://CONTAINER/PREFIX"));
                }
                let account = account
                    .or_else(|| std::env::var("AZURE_STORAGE_ACCOUNT").ok())
                    .ok_or_else(|| self.err("set account_name or AZURE_STORAGE_ACCOUNT"))?;
                let endpoint =
                    endpoint.unwrap_or_else(|| format!("https://{account}.blob.core.windows.net"));
                let mut b = opendal::services::Azblob::default()
                    .container(&p.authority)
                    .root(&p.root)
                    .endpoint(&endpoint)
                    .account_name(&account);
                if let Some(k) = self.secret(&self.account_key, "AZURE_STORAGE_KEY", dir)? {
                    b = b.account_key(k.expose());
                }
                Operator::new(b).map_err(map_err)?
            }
            "gcs" => {
                if p.authority.is_empty() {
                    return Err(self.err("gcs needs a bucket: gcs://BUCKET/PREFIX"));
                }
                let mut b = opendal::services::Gcs::default()
                    .bucket(&p.authority)
                    .root(&p.root);
                if let Some(e) = &endpoint {
                    b = b.endpoint(e);
                }
                let cred = self
                    .credential_path
                    .as_ref()
                    .map(|c| dir.join(c))
                    .or_else(|| {
                        std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from)
                    });
                if let Some(c) = cred {
                    b = b.credential_path(&c.to_string_lossy());
                }
                let token = match &self.token {
                    Some(r) => Some(r.resolve(dir).map_err(|e| self.err(e.to_string()))?),
                    None => None,
                };
                match (token, self.anonymous.unwrap_or(false)) {
                    (Some(_), true) => {
                        return Err(self.err("gcs: set either token or anonymous = true, not both"));
                    }
                    (Some(t), false) => b = b.token(t.expose().to_string()),
                    (None, true) => b = b.skip_signature(),
                    (None, false) => {}
                }
                Operator::new(b).map_err(map_err)?
            }
            other => {
                return Err(self.err(format!(
                    "unknown scheme {other:?} (use fs, memory, s3, azblob or gcs)"
                )));
            }
        };
        Ok((op, desc))
    }
}

/// One in-memory operator per name, shared by the whole process.
fn memory_operator(name: &str) -> opendal::Result<Operator> {
    static STORES: OnceLock<Mutex<HashMap<String, Operator>>> = OnceLock::new();
    let mut stores = STORES
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .expect("memory stores");
    if let Some(op) = stores.get(name) {
        return Ok(op.clone());
    }
    let op = Operator::new(opendal::services::Memory::default())?;
    stores.insert(name.to_string(), op.clone());
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_scheme_and_query_are_rejected_with_hints() {
        let e = StorageConfig::uri("ftp://x/y")
            .build(Path::new("."))
            .unwrap_err();
        assert!(e.to_string().contains("unknown scheme"), "{e}");
        let e = StorageConfig::uri("s3://b/p?secret=abc")
            .build(Path::new("."))
            .unwrap_err();
        assert!(e.to_string().contains("unknown query parameter"), "{e}");
        assert!(!e.to_string().contains("abc"), "{e}");
    }

    #[test]
    fn descriptions_carry_endpoint_but_no_secrets() {
        let cfg: StorageConfig = toml::from_str(
            "uri = \"s3://bucket/pre\"\nendpoint = \"http://127.0.0.1:9\"\naccess_key_id = { env = \"CXPIPE_TEST_UNSET_A\" }\n",
        )
        .unwrap();
        let err = cfg.build(Path::new(".")).unwrap_err().to_string();
        assert!(err.contains("CXPIPE_TEST_UNSET_A"), "{err}");
        let (_, desc) = StorageConfig::uri("s3://bucket/pre?endpoint=http://127.0.0.1:9")
            .build(Path::new("."))
            .unwrap();
        assert_eq!(desc, "s3://bucket/pre (endpoint http://127.0.0.1:9)");
    }

    #[test]
    fn fs_root_is_created_relative_to_the_config_dir() {
        let dir = tempfile::tempdir().unwrap();
        StorageConfig::uri("fs://out/rec")
            .build(dir.path())
            .unwrap();
        assert!(dir.path().join("out/rec").is_dir());
    }

    #[test]
    fn fields_of_another_scheme_are_rejected() {
        let cfg: StorageConfig =
            toml::from_str("uri = \"fs:///tmp/x\"\nregion = \"eu-west-1\"").unwrap();
        let e = cfg.build(Path::new(".")).unwrap_err().to_string();
        assert!(
            e.contains("region does not apply to fs:// stores (it is for s3)"),
            "{e}"
        );
        let cfg: StorageConfig = toml::from_str("uri = \"s3://b/p\"\nanonymous = true").unwrap();
        let e = cfg.build(Path::new(".")).unwrap_err().to_string();
        assert!(e.contains("anonymous does not apply to s3://"), "{e}");
    }

    #[test]
    fn gcs_takes_a_token_or_anonymous_but_not_both() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "ya29.secret-token").unwrap();
        let cfg: StorageConfig = toml::from_str(
            "uri = \"gcs://bucket/p\"\ntoken = { file = \"tok\" }\nanonymous = true",
        )
        .unwrap();
        let e = cfg.build(dir.path()).unwrap_err().to_string();
        assert!(e.contains("either token or anonymous"), "{e}");
        assert!(!e.contains("ya29"), "{e}");
        let cfg: StorageConfig = toml::from_str(
            "uri = \"gcs://bucket/p\"\nendpoint = \"http://127.0.0.1:9\"\ntoken = { file = \"tok\" }",
        )
        .unwrap();
        let (_, desc) = cfg.build(dir.path()).unwrap();
        assert_eq!(desc, "gcs://bucket/p (endpoint http://127.0.0.1:9)");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(toml::from_str::<StorageConfig>("uri = \"fs:///x\"\npassword = \"p\"").is_err());
    }
}
