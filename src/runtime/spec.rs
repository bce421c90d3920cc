//! [`PipelineSpec`]: a `[pipelines.NAME]` table checked against the rest of the
//! configuration (tenants, stores and keys it names exist; the schedule and time zone
//! parse), every problem reported with its `file:line:col`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::suggest::did_you_mean;
use crate::config::Config;
use crate::config::pipeline::{Misfire, PipelineConfig, TenantSelect, Variant};

/// A pipeline's schedule: a cron expression with seconds, read in a time zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleSpec {
    pub cron: String,
    /// IANA name (`UTC` by default).
    pub time_zone: String,
}

/// One pipeline, checked.
#[derive(Clone, Debug)]
pub struct PipelineSpec {
    pub name: String,
    /// The script, relative to the working folder (config-relative paths resolved).
    pub script: PathBuf,
    /// `None`: every configured tenant (`"*"`).
    pub tenants: Option<Vec<String>>,
    /// Per-tenant script or params.
    pub variants: BTreeMap<String, Variant>,
    pub schedule: Option<ScheduleSpec>,
    pub params: Map<String, Value>,
    /// The `[storage.NAME]` behind `ctx.store` (`None`: `default`, or the only store).
    pub store: Option<String>,
    /// `ctx.stores.NAME`.
    pub stores: Vec<String>,
    /// The keys its scripts may use; `None` (for `cxpipe run SCRIPT`): every key.
    pub keys: Option<Vec<String>>,
    pub concurrency: Option<usize>,
    pub misfire: Misfire,
    pub enabled: bool,
}

impl PipelineSpec {
    /// Whether it runs for `tenant`.
    pub fn serves(&self, tenant: &str) -> bool {
        self.tenants
            .as_ref()
            .is_none_or(|t| t.iter().any(|x| x == tenant))
    }

    /// The script `tenant` runs (its variant's, or the pipeline's).
    pub fn script_for(&self, tenant: &str, config: &Config) -> PathBuf {
        match self.variants.get(tenant).and_then(|v| v.script.as_ref()) {
            Some(s) => config.dir.join(s),
            None => self.script.clone(),
        }
    }
}

/// Checks `[pipelines.NAME]`; pushes `file:line:col: [pipelines.NAME]: …` problems.
pub fn check(
    name: &str,
    p: &PipelineConfig,
    config: &Config,
    errors: &mut Vec<String>,
) -> PipelineSpec {
    let file = &config.file;
    let what = format!("[pipelines.{name}]");
    let mut problem = |span: std::ops::Range<usize>, message: String| {
        errors.push(format!("{}: {what}: {message}", config.at(span)));
    };
    let script = config.dir.join(p.script.get_ref());
    if !script.is_file() {
        problem(
            p.script.span(),
            format!("script {} is not a file", script.display()),
        );
    }
    let tenant_names: Vec<&str> = file.tenants.keys().map(String::as_str).collect();
    let store_names: Vec<&str> = file.storage.keys().map(String::as_str).collect();
    let key_names: Vec<&str> = file.keys.keys().map(String::as_str).collect();
    let unknown = |kind: &str, n: &str, names: &[&str]| {
        format!(
            "no [{kind}.{n}] is configured (known: {}){}",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            },
            did_you_mean(n, names)
        )
    };
    let (tenants, variants) = match &p.tenants {
        None => (None, BTreeMap::new()),
        Some(v) => match TenantSelect::from_value(v.get_ref()) {
            Ok(TenantSelect::All) => (None, BTreeMap::new()),
            Ok(TenantSelect::List(list)) => (Some(list), BTreeMap::new()),
            Ok(TenantSelect::Variants(map)) => (Some(map.keys().cloned().collect()), map),
            Err(e) => {
                problem(v.span(), e);
                (Some(Vec::new()), BTreeMap::new())
            }
        },
    };
    for t in tenants.iter().flatten() {
        if !file.tenants.contains_key(t) {
            let span = p.tenants.as_ref().map(|v| v.span()).unwrap_or(0..0);
            problem(
                span,
                format!("tenant {t:?}: {}", unknown("tenants", t, &tenant_names)),
            );
        }
    }
    for (t, v) in &variants {
        if let Some(s) = &v.script
            && !config.dir.join(s).is_file()
        {
            let span = p.tenants.as_ref().map(|v| v.span()).unwrap_or(0..0);
            problem(
                span,
                format!(
                    "[pipelines.{name}.tenants.{t}]: script {} is not a file",
                    config.dir.join(s).display()
                ),
            );
        }
    }
    let mut name_list = |list: &[toml::Spanned<String>], kind: &str, names: &[&str]| {
        let mut out = Vec::new();
        for s in list {
            if !names.contains(&s.get_ref().as_str()) {
                problem(s.span(), unknown(kind, s.get_ref(), names));
            }
            out.push(s.get_ref().clone());
        }
        out
    };
    let store = p
        .store
        .as_ref()
        .map(|s| name_list(std::slice::from_ref(s), "storage", &store_names).remove(0));
    let stores = name_list(&p.stores, "storage", &store_names);
    let keys = name_list(&p.keys, "keys", &key_names);
    let time_zone = match &p.time_zone {
        None => "UTC".to_string(),
        Some(tz) => {
            if let Err(e) = tz.get_ref().parse::<chrono_tz::Tz>() {
                problem(
                    tz.span(),
                    format!(
                        "time_zone {:?}: {e} (use an IANA name such as \"Europe/Paris\" or \"UTC\")",
                        tz.get_ref()
                    ),
                );
            }
            tz.get_ref().clone()
        }
    };
    let schedule = match &p.schedule {
        None => {
            if let Some(tz) = &p.time_zone {
                problem(tz.span(), "time_zone without a schedule".into());
            }
            None
        }
        Some(cron) => {
            if let Err(e) = parse_cron(cron.get_ref()) {
                problem(cron.span(), e);
            }
            Some(ScheduleSpec {
                cron: cron.get_ref().clone(),
                time_zone,
            })
        }
    };
    let concurrency = p.concurrency.as_ref().map(|c| {
        if *c.get_ref() == 0 {
            problem(c.span(), "concurrency must be at least 1".into());
        }
        *c.get_ref()
    });
    PipelineSpec {
        name: name.to_string(),
        script,
        tenants,
        variants,
        schedule,
        params: p.params.clone(),
        store,
        stores,
        keys: Some(keys),
        concurrency,
        misfire: p.misfire,
        enabled: p.enabled,
    }
}

/// Parses a cron expression with seconds (six or seven fields).
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    use croner::parser::{CronParser, Seconds};
    CronParser::builder()
        .seconds(Seconds::Required)
        .build()
        .parse(expr)
        .map_err(|e| {
            format!(
                "schedule {expr:?}: {e} (six fields with seconds first, e.g. \"0 */15 * * * *\")"
            )
        })
}
