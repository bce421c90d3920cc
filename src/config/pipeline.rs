//! `[pipelines.NAME]` of the configuration: which script runs for which tenants, with
//! which parameters, stores, keys, schedule and concurrency. Parsed as data here; checked
//! against the rest of the file by [`crate::runtime`] (stores, keys and tenants named must
//! exist), and the schedule and time zone are checked by parsing them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

/// One `[pipelines.NAME]` table as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// The script (relative paths start at the configuration file's folder).
    pub script: Spanned<PathBuf>,
    /// The tenants it runs for: `"*"` (default), a list, or one table per tenant with its
    /// variant (`[pipelines.NAME.tenants.T]`, overriding `params` or `script`).
    pub tenants: Option<Spanned<toml::Value>>,
    /// Cron expression with seconds (`"0 */15 * * * *"`); none: runs only when asked.
    pub schedule: Option<Spanned<String>>,
    /// IANA time zone the schedule is read in (default `UTC`).
    pub time_zone: Option<Spanned<String>>,
    /// Parameters over the tenant's and the global ones (`ctx.params`).
    #[serde(default)]
    pub params: Map<String, Value>,
    /// The `[storage.NAME]` behind `ctx.store` (default `default`, or the only store).
    pub store: Option<Spanned<String>>,
    /// Further `[storage.NAME]` stores, reachable as `ctx.stores.NAME`.
    #[serde(default)]
    pub stores: Vec<Spanned<String>>,
    /// The only `[keys.NAME]` that `.encrypt(NAME)` / `.decrypt(NAME)` may use.
    #[serde(default)]
    pub keys: Vec<Spanned<String>>,
    /// Worker count, over the script's `OPTIONS.concurrency`.
    pub concurrency: Option<Spanned<usize>>,
    /// What a schedule does after downtime: `skip` (default) or `run_once`.
    #[serde(default)]
    pub misfire: Misfire,
    /// `false` keeps the pipeline configured but never run (default `true`).
    #[serde(default = "enabled_default")]
    pub enabled: bool,
}

fn enabled_default() -> bool {
    true
}

/// What a schedule does with the fires it missed while cxpipe was not running.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// Missed fires are dropped; the next one is waited for.
    #[default]
    Skip,
    /// One run starts at once for all the missed fires.
    RunOnce,
}

/// `tenants = "*"`, `tenants = ["a", "b"]` or `[pipelines.NAME.tenants.T]` tables.
#[derive(Clone, Debug)]
pub enum TenantSelect {
    /// `"*"` (the default): every `[tenants.NAME]` (or the tenant a run names).
    All,
    /// These tenants.
    List(Vec<String>),
    /// These tenants, each with its variant.
    Variants(BTreeMap<String, Variant>),
}

impl TenantSelect {
    /// Reads the `tenants` value of a pipeline.
    pub fn from_value(value: &toml::Value) -> Result<TenantSelect, String> {
        const SHAPE: &str =
            "`tenants` is \"*\", a list of tenant names, or [pipelines.NAME.tenants.T] tables";
        match value {
            toml::Value::String(s) if s == "*" => Ok(TenantSelect::All),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or(SHAPE.to_string()))
                .collect::<Result<_, _>>()
                .map(TenantSelect::List),
            toml::Value::Table(table) => {
                let mut out = BTreeMap::new();
                for (tenant, v) in table {
                    let variant = Variant::deserialize(v.clone())
                        .map_err(|e| format!("[tenants.{tenant}]: {}", e.message()))?;
                    out.insert(tenant.clone(), variant);
                }
                Ok(TenantSelect::Variants(out))
            }
            _ => Err(SHAPE.to_string()),
        }
    }
}

/// `[pipelines.NAME.tenants.T]`: what differs for one tenant.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Another script for this tenant.
    pub script: Option<PathBuf>,
    /// Parameters over the pipeline's.
    #[serde(default)]
    pub params: Map<String, Value>,
}
