//! `cxpipe.toml`: tenants, stores, keys and default script parameters, written once by a
//! user and shared by `run`, `demo`, `verify`, `decrypt` (and later `serve`). Parsed as data,
//! then built into runtime values with every problem reported at once.
//!
//! ```toml
//! [params]                       # defaults for ctx.params (overridden per tenant, then --param)
//! retention_days = 90
//!
//! [tenants.acme]                 # see docs/API.md for every field
//! base_url = "https://api.example.com"
//! auth = { kind = "client_credentials", token_url = "/api/v2/oauth/token", client_id = "cxpipe",
//!          client_secret = { env = "ACME_CLIENT_SECRET" } }
//! params = { channel = "combined" }
//!
//! [storage.default]              # ctx.store (choose another with --store NAME)
//! uri = "fs:///var/lib/cxpipe/objects"
//!
//! [keys.archive]                 # .encrypt("archive")
//! file = "keys/archive.key"
//!
//! [pipelines.download]           # see docs/CONFIG.md and [`crate::runtime`]
//! script = "scripts/download_recordings.rhai"
//! tenants = ["acme"]
//! keys = ["archive"]
//! ```

pub mod pipeline;
pub mod serve;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::api::{Api, TenantConfig};
use crate::keys::{KeyConfig, KeyRing};
use crate::storage::{StorageConfig, Store};
use pipeline::PipelineConfig;
use serve::{ServeConfig, WebhookConfig};

/// A tenant's API configuration and its own script parameters.
pub type TenantEntry = (TenantConfig, Map<String, Value>);

/// The store `ctx.store` uses when `--store` is not given.
pub const DEFAULT_STORE: &str = "default";

/// The file as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Default script parameters (`ctx.params`).
    #[serde(default)]
    pub params: Map<String, Value>,
    /// Tenants by name: a `[tenants.NAME]` table for the API client, plus an optional
    /// `params` table merged over the top-level `[params]`.
    #[serde(default)]
    pub tenants: BTreeMap<String, toml::Table>,
    /// Object stores by name.
    #[serde(default)]
    pub storage: BTreeMap<String, StorageConfig>,
    /// Encryption keys by name.
    #[serde(default)]
    pub keys: BTreeMap<String, KeyConfig>,
    /// What scripts may reach beyond their run's stores (`allow_storage_uri`).
    #[serde(default)]
    pub scripts: crate::engine::ScriptsConfig,
    /// Pipelines by name (`[pipelines.NAME]`).
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineConfig>,
    /// `cxpipe serve` settings.
    #[serde(default)]
    pub serve: Option<ServeConfig>,
    /// Each tenant's `[tenants.T.webhook]` (taken out of `tenants` when parsed).
    #[serde(skip)]
    pub webhooks: BTreeMap<String, WebhookConfig>,
}

/// A loaded configuration: the parsed file and its folder (relative paths start there).
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub file: ConfigFile,
    pub dir: PathBuf,
    pub path: Option<PathBuf>,
    /// The file's text, for positions of problems found after parsing.
    pub text: Arc<str>,
}

/// What a run needs from the configuration, built and validated.
pub struct RunSetup {
    pub api: Option<Api>,
    pub store: Option<Store>,
    pub keys: Arc<KeyRing>,
    pub params: Map<String, Value>,
}

/// Every problem found in a configuration, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    /// Reads and parses `path`, reporting every problem at once as `file:line:col: …`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let (config, errors) = Config::load_lenient(path)?;
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError(errors))
        }
    }

    /// Reads and parses `path`, keeping every entry that parsed: the configuration and the
    /// problems found (`file:line:col: …`, in file order). `Err` only when the file cannot
    /// be read or is not TOML at all.
    pub fn load_lenient(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(vec![format!("cannot read config {}: {e}", path.display())])
        })?;
        let (file, errors) = parse::config_file(&text, &path.display().to_string())?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let config = Config {
            file,
            dir,
            path: Some(path.to_path_buf()),
            text: text.into(),
        };
        Ok((config, errors))
    }

    /// `file:line:col` of byte range `span` of the file (`file` alone when unknown).
    pub fn at(&self, span: std::ops::Range<usize>) -> String {
        if span.is_empty() && span.start == 0 {
            return self.label();
        }
        format!(
            "{}:{}",
            self.label(),
            parse::line_col(&self.text, span.start)
        )
    }

    /// Sorts `file:line:col: …` problems into file order.
    pub fn sort_problems(&self, problems: &mut [String]) {
        parse::sort_problems(&self.label(), problems);
    }

    pub(crate) fn label(&self) -> String {
        self.path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "config".into())
    }

    /// The `[storage.NAME]` store.
    pub fn store(&self, name: &str) -> Result<Store, ConfigError> {
        let label = self.label();
        let cfg = self.file.storage.get(name).ok_or_else(|| {
            let known: Vec<_> = self.file.storage.keys().cloned().collect();
            ConfigError(vec![format!(
                "{label}: no [storage.{name}] (known: {})",
                known.join(", ")
            )])
        })?;
        Store::from_config(cfg, &self.dir)
            .map_err(|e| ConfigError(vec![format!("{label}: [storage.{name}]: {e}")]))
    }

    /// Every `[keys.NAME]`, loaded.
    pub fn keys(&self) -> Result<KeyRing, ConfigError> {
        KeyRing::from_config(&self.file.keys, &self.dir)
            .map_err(|e| ConfigError(vec![format!("{}: {e}", self.label())]))
    }

    /// The tenant's API configuration and its `params` table.
    pub fn tenant(&self, name: &str) -> Result<Option<TenantEntry>, String> {
        let Some(table) = self.file.tenants.get(name) else {
            return Ok(None);
        };
        let mut table = table.clone();
        table.remove("webhook");
        let params = match table.remove("params") {
            None => Map::new(),
            Some(v) => serde_json::to_value(v)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .ok_or_else(|| format!("[tenants.{name}.params] must be a table"))?,
        };
        let api: TenantConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e| format!("[tenants.{name}]: {e}"))?;
        Ok(Some((api, params)))
    }

    /// Builds what a run of `tenant` needs; `store` names a `[storage.NAME]` (default
    /// `default`, or the only store). `cli_params` win over tenant and global params.
    pub fn setup(
        &self,
        tenant: &str,
        store: Option<&str>,
        cli_params: Map<String, Value>,
    ) -> Result<RunSetup, ConfigError> {
        let mut errors = Vec::new();
        let label = self.label();
        let mut params = self.file.params.clone();
        let api = match self.tenant(tenant) {
            Ok(Some((cfg, tenant_params))) => {
                params.extend(tenant_params);
                match Api::new(tenant, &cfg, &self.dir) {
                    Ok(api) => Some(api),
                    Err(e) => {
                        errors.push(format!("{label}: {e}")); // the error names the tenant
                        None
                    }
                }
            }
            Ok(None) if !self.file.tenants.is_empty() => {
                let known: Vec<_> = self.file.tenants.keys().cloned().collect();
                errors.push(format!(
                    "{label}: no [tenants.{tenant}] (known: {}); pass --tenant NAME",
                    known.join(", ")
                ));
                None
            }
            Ok(None) => None,
            Err(e) => {
                errors.push(format!("{label}: {e}"));
                None
            }
        };
        params.extend(cli_params);
        let store_name = match store {
            Some(s) => Some(s.to_string()),
            None if self.file.storage.contains_key(DEFAULT_STORE) => {
                Some(DEFAULT_STORE.to_string())
            }
            None if self.file.storage.len() == 1 => self.file.storage.keys().next().cloned(),
            None => None,
        };
        let store = match store_name.map(|name| self.store(&name)) {
            None => None,
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                errors.extend(e.0);
                None
            }
        };
        let keys = self.keys().unwrap_or_else(|e| {
            errors.extend(e.0);
            KeyRing::empty()
        });
        if errors.is_empty() {
            Ok(RunSetup {
                api,
                store,
                keys: Arc::new(keys),
                params,
            })
        } else {
            Err(ConfigError(errors))
        }
    }
}

/// Section-by-section parsing: a bad entry is reported with its position and parsing
/// goes on, so one unknown field does not hide the next problem.
mod parse {
    use std::collections::BTreeMap;

    use serde::de::DeserializeOwned;
    use toml::Spanned;
    use toml::de::{DeTable, DeValue, ValueDeserializer};

    use super::{ConfigError, ConfigFile, WebhookConfig};
    use crate::api::TenantConfig;

    const SECTIONS: &[&str] = &[
        "params",
        "tenants",
        "storage",
        "keys",
        "scripts",
        "pipelines",
        "serve",
    ];

    /// `line:col` (1-based) of byte `offset` in `text`.
    pub(super) fn line_col(text: &str, offset: usize) -> String {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("{line}:{col}")
    }

    /// `label:line:col: what: message` for an error at `span` (or at `fallback`).
    fn located(
        label: &str,
        text: &str,
        span: Option<std::ops::Range<usize>>,
        fallback: usize,
        what: &str,
        message: &str,
    ) -> String {
        let at = line_col(text, span.map_or(fallback, |s| s.start));
        format!(
            "{label}:{at}: {what}: {message}{}",
            did_you_mean_field(message)
        )
    }

    /// ` (did you mean `x`?)` for serde's "unknown field `y`, expected one of …" when a
    /// known field is close.
    fn did_you_mean_field(message: &str) -> String {
        let Some(rest) = message.strip_prefix("unknown field `") else {
            return String::new();
        };
        let Some((field, expected)) = rest.split_once('`') else {
            return String::new();
        };
        let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        crate::runtime::suggest::did_you_mean(field, &known)
    }

    /// Sorts `label:line:col: …` problems into file order.
    pub(super) fn sort_problems(label: &str, errors: &mut [String]) {
        errors.sort_by_key(|e| {
            let at = e.strip_prefix(label).unwrap_or(e);
            let mut parts = at.trim_start_matches(':').splitn(3, ':');
            let line = parts.next().and_then(|l| l.parse::<usize>().ok());
            let col = parts.next().and_then(|c| c.parse::<usize>().ok());
            (line, col)
        });
    }

    /// Deserializes one value, keeping its position for the error.
    fn value<T: DeserializeOwned>(
        label: &str,
        text: &str,
        what: &str,
        v: Spanned<DeValue<'_>>,
        errors: &mut Vec<String>,
    ) -> Option<T> {
        let start = v.span().start;
        T::deserialize(ValueDeserializer::from(v))
            .map_err(|e| errors.push(located(label, text, e.span(), start, what, e.message())))
            .ok()
    }

    /// Deserializes every entry of a `[section.NAME]` table on its own.
    fn entries<T: DeserializeOwned>(
        label: &str,
        text: &str,
        section: &str,
        v: Spanned<DeValue<'_>>,
        errors: &mut Vec<String>,
    ) -> BTreeMap<String, T> {
        let start = v.span().start;
        let DeValue::Table(table) = v.into_inner() else {
            let msg = "must be a table of named entries";
            errors.push(located(
                label,
                text,
                None,
                start,
                &format!("[{section}]"),
                msg,
            ));
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for (name, entry) in table {
            let what = format!("[{section}.{}]", name.get_ref());
            if let Some(parsed) = value(label, text, &what, entry, errors) {
                out.insert(name.into_inner().into_owned(), parsed);
            }
        }
        out
    }

    /// Checks each `[tenants.NAME]` (less its `params` and `webhook` tables) as the API
    /// client will read it; parses each `[tenants.NAME.webhook]`.
    fn check_tenants(
        label: &str,
        text: &str,
        v: Spanned<DeValue<'_>>,
        errors: &mut Vec<String>,
    ) -> BTreeMap<String, WebhookConfig> {
        let mut webhooks = BTreeMap::new();
        let DeValue::Table(tenants) = v.into_inner() else {
            return webhooks;
        };
        for (name, tenant) in tenants {
            let span = tenant.span();
            let DeValue::Table(table) = tenant.into_inner() else {
                continue;
            };
            let mut api = DeTable::new();
            for (k, v) in table {
                match k.get_ref().as_ref() {
                    "params" => {}
                    "webhook" => {
                        let what = format!("[tenants.{}.webhook]", name.get_ref());
                        if let Some(hook) = value::<WebhookConfig>(label, text, &what, v, errors) {
                            webhooks.insert(name.get_ref().to_string(), hook);
                        }
                    }
                    _ => {
                        api.insert(k, v);
                    }
                }
            }
            let what = format!("[tenants.{}]", name.get_ref());
            let api = Spanned::new(span, DeValue::Table(api));
            let _ = value::<TenantConfig>(label, text, &what, api, errors);
        }
        webhooks
    }

    /// Parses `text` (the file `label`) into a [`ConfigFile`] of the entries that parsed,
    /// and every problem found (in file order); `Err` when `text` is not TOML.
    pub fn config_file(text: &str, label: &str) -> Result<(ConfigFile, Vec<String>), ConfigError> {
        let root = DeTable::parse(text).map_err(|e| {
            let start = e.span().map_or(0, |s| s.start);
            ConfigError(vec![format!(
                "{label}:{}: {}",
                line_col(text, start),
                e.message()
            )])
        })?;
        let mut errors = Vec::new();
        let mut file = ConfigFile::default();
        for (key, v) in root.into_inner() {
            match key.get_ref().as_ref() {
                "params" => {
                    file.params = value(label, text, "[params]", v, &mut errors).unwrap_or_default()
                }
                "tenants" => {
                    file.tenants = entries(label, text, "tenants", v.clone(), &mut errors);
                    file.webhooks = check_tenants(label, text, v, &mut errors);
                }
                "storage" => file.storage = entries(label, text, "storage", v, &mut errors),
                "keys" => file.keys = entries(label, text, "keys", v, &mut errors),
                "scripts" => {
                    file.scripts =
                        value(label, text, "[scripts]", v, &mut errors).unwrap_or_default()
                }
                "pipelines" => file.pipelines = entries(label, text, "pipelines", v, &mut errors),
                "serve" => file.serve = value(label, text, "[serve]", v, &mut errors),
                other => errors.push(located(
                    label,
                    text,
                    Some(key.span()),
                    0,
                    &format!("unknown section `{other}`"),
                    &format!(
                        "expected one of {}{}",
                        SECTIONS.join(", "),
                        crate::runtime::suggest::did_you_mean(other, SECTIONS)
                    ),
                )),
            }
        }
        sort_problems(label, &mut errors);
        Ok((file, errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("cxpipe.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[tokio::test]
    async fn a_full_config_builds_and_params_layer() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("k.key"), hex::encode([7u8; 32])).unwrap();
        let path = write(
            dir.path(),
            r#"
[params]
a = 1
b = 1
[tenants.acme]
base_url = "http://127.0.0.1:9"
auth = { kind = "client_credentials", token_url = "/api/v2/oauth/token", client_id = "id", client_secret = { file = "secret" } }
params = { b = 2, c = 2 }
[storage.default]
uri = "memory://cfgtest"
[keys.archive]
file = "k.key"
"#,
        );
        let cfg = Config::load(&path).unwrap();
        let mut cli = Map::new();
        cli.insert("c".into(), 3.into());
        let setup = cfg.setup("acme", None, cli).unwrap();
        assert!(setup.api.is_some() && setup.store.is_some());
        assert!(setup.keys.get("archive").is_ok());
        assert_eq!(
            Value::Object(setup.params),
            serde_json::json!({ "a": 1, "b": 2, "c": 3 })
        );
    }

    #[tokio::test]
    async fn every_problem_is_reported_at_once_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            r#"
[tenants.acme]
base_url = "http://127.0.0.1:9"
auth = { kind = "client_credentials", token_url = "/t", client_id = "id", client_secret = { env = "CXPIPE_TEST_UNSET_SECRET" } }
[keys.archive]
env = "CXPIPE_TEST_UNSET_KEY"
"#,
        );
        let Err(err) = Config::load(&path)
            .unwrap()
            .setup("other", Some("nowhere"), Map::new())
        else {
            panic!("a broken config built");
        };
        let text = err.to_string();
        assert_eq!(err.0.len(), 3, "{text}");
        assert!(
            text.contains("no [tenants.other]") && text.contains("acme"),
            "{text}"
        );
        assert!(text.contains("no [storage.nowhere] (known: )"), "{text}");
        assert!(text.contains("CXPIPE_TEST_UNSET_KEY"), "{text}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "[params]\nx = \n");
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("cxpipe.toml:2:"), "{err}");
    }

    #[test]
    fn every_unknown_field_and_section_is_reported_together_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            r#"[storage.default]
uri = "memory://x"
urii = "typo"

[storag.other]
uri = "memory://y"

[keys.archive]
file = "k.key"
colour = "blue"

[tenants.acme]
base_url = "http://127.0.0.1:9"
auth = { kind = "bearer", token = { env = "T" } }
surprise = 1
"#,
        );
        let err = Config::load(&path).unwrap_err();
        let text = err.to_string();
        let p = path.display().to_string();
        assert!(
            text.contains(&format!("{p}:3:1: [storage.default]: unknown field `urii`")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{p}:5:2: unknown section `storag`")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{p}:10:1: [keys.archive]: unknown field `colour`")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{p}:15:1: [tenants.acme]: unknown field `surprise`"
            )),
            "{text}"
        );
        assert_eq!(err.0.len(), 4, "{text}");
    }
}
