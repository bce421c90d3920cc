//! The library runtime: everything a run needs, built from `cxpipe.toml` in one validating
//! pass, so `run`, `demo`, `bench`, `verify`, `decrypt` and `serve` share one path and the
//! command line only parses arguments and prints.
//!
//! - [`Runtime::load`]: tenants, stores, keys, `[pipelines.NAME]` and `[serve]`, every
//!   problem at once with `file:line:col`; [`Runtime::check`] also compiles every
//!   pipeline × tenant script and opens every store and tenant client (`cxpipe config check`,
//!   and what a reload validates).
//! - [`Runtime::compile`] → [`Generation`]; [`Runtime::run_request`] → a
//!   [`RunRequest`] whose engine reaches only the stores and keys its pipeline grants.
//! - [`Runtime::for_script`]: `cxpipe run SCRIPT`, a one-pipeline runtime named after the
//!   script's stem (ledgers written before pipelines existed keep their identity).

pub mod generation;
pub mod spec;
pub mod suggest;
pub mod tools;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rhai::{Dynamic, Engine};
use serde_json::{Map, Value};

pub use generation::{Generation, load_and_check};
pub use spec::{PipelineSpec, ScheduleSpec};

use crate::api::Api;
use crate::config::serve::{ServeConfig, WebhookConfig};
use crate::config::{Config, ConfigError, DEFAULT_STORE};
use crate::engine::EngineSettings;
use crate::keys::KeyRing;
use crate::ledger::Ledger;
use crate::registry::build_engine;
use crate::runner::RunRequest;
use crate::storage::Store;

/// The tenant a run uses when the configuration has no `[tenants]`.
pub const DEFAULT_TENANT: &str = "default";

/// What the command line adds over the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--param k=v`: over every other layer of `ctx.params`.
    pub params: Map<String, Value>,
}

/// Why a pipeline could not be compiled or a run assembled.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no pipeline {name:?} is configured (known: {known}){hint}")]
    UnknownPipeline {
        name: String,
        known: String,
        hint: String,
    },
    #[error(
        "pipeline {pipeline} does not run for tenant {tenant:?} (its tenants: {tenants}); add \
         it to `tenants` in [pipelines.{pipeline}]"
    )]
    TenantNotServed {
        pipeline: String,
        tenant: String,
        tenants: String,
    },
    #[error(
        "pipeline {pipeline} runs for several tenants ({tenants}); choose one with --tenant NAME"
    )]
    TenantNeeded { pipeline: String, tenants: String },
    #[error("{} has {} problem(s):\n{}", .script.display(), .problems.len(), .problems.join("\n"))]
    Script {
        script: PathBuf,
        problems: Vec<String>,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// `[serve]` and each tenant's webhook settings, for the daemon.
#[derive(Clone, Debug, Default)]
pub struct ServeSettings {
    pub serve: ServeConfig,
    pub webhooks: BTreeMap<String, WebhookConfig>,
}

/// Tenants, stores, keys and pipelines of one configuration, validated.
pub struct Runtime {
    config: Config,
    settings: EngineSettings,
    keys: Arc<KeyRing>,
    pipelines: BTreeMap<String, PipelineSpec>,
    engines: BTreeMap<String, Arc<Engine>>,
    overrides: Overrides,
    apis: Mutex<BTreeMap<String, Api>>,
}

impl Runtime {
    /// Loads `config` (none: an empty configuration) in one validating pass; every problem
    /// is reported at once, `file:line:col` first, in file order.
    pub fn load(config: Option<&Path>, overrides: Overrides) -> Result<Runtime, ConfigError> {
        let (config, mut errors) = match config {
            Some(path) => Config::load_lenient(path)?,
            None => (Config::default(), Vec::new()),
        };
        let mut pipelines = BTreeMap::new();
        for (name, p) in &config.file.pipelines {
            pipelines.insert(name.clone(), spec::check(name, p, &config, &mut errors));
        }
        if let Some(serve) = &config.file.serve
            && let Err(e) = serve.listen.get_ref().parse::<std::net::SocketAddr>()
        {
            errors.push(format!(
                "{}: [serve]: listen {:?}: {e} (write an address and port, e.g. \"127.0.0.1:8480\")",
                config.at(serve.listen.span()),
                serve.listen.get_ref()
            ));
        }
        config.sort_problems(&mut errors);
        let keys = config.keys().unwrap_or_else(|e| {
            errors.extend(e.0);
            KeyRing::empty()
        });
        if !errors.is_empty() {
            return Err(ConfigError(errors));
        }
        let mut runtime = Runtime {
            settings: EngineSettings::with_scripts(&config.file.scripts),
            config,
            keys: Arc::new(keys),
            pipelines: BTreeMap::new(),
            engines: BTreeMap::new(),
            overrides,
            apis: Mutex::default(),
        };
        for spec in pipelines.into_values() {
            runtime.add_pipeline(spec);
        }
        Ok(runtime)
    }

    /// `cxpipe run SCRIPT`: the configuration plus one pipeline named after the script's
    /// stem, for `tenant`, writing to `store` (or the default store), with every key.
    pub fn for_script(
        config: Option<&Path>,
        script: &Path,
        tenant: &str,
        store: Option<&str>,
        overrides: Overrides,
    ) -> Result<(Runtime, String), ConfigError> {
        let mut runtime = Runtime::load(config, overrides)?;
        let name = script
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "script".into());
        if let Some(store) = store {
            runtime.config.store(store)?;
        }
        runtime.add_pipeline(PipelineSpec {
            name: name.clone(),
            script: script.to_path_buf(),
            tenants: Some(vec![tenant.to_string()]),
            variants: BTreeMap::new(),
            schedule: None,
            params: Map::new(),
            store: store.map(str::to_string),
            stores: Vec::new(),
            keys: None,
            concurrency: None,
            misfire: Default::default(),
            enabled: true,
        });
        Ok((runtime, name))
    }

    fn add_pipeline(&mut self, spec: PipelineSpec) {
        let keys = match &spec.keys {
            None => self.keys.clone(),
            Some(granted) => Arc::new(self.keys.granted(&spec.name, granted)),
        };
        let engine = build_engine(&self.settings, keys);
        self.engines.insert(spec.name.clone(), Arc::new(engine));
        self.pipelines.insert(spec.name.clone(), spec);
    }

    /// The configuration as loaded.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every configured key (for `verify` and `decrypt`).
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    /// The pipeline named `name`.
    pub fn pipeline(&self, name: &str) -> Result<&PipelineSpec, RuntimeError> {
        self.pipelines.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.pipelines.keys().map(String::as_str).collect();
            RuntimeError::UnknownPipeline {
                name: name.to_string(),
                known: if known.is_empty() {
                    "none; add a [pipelines.NAME] table".into()
                } else {
                    known.join(", ")
                },
                hint: suggest::did_you_mean(name, &known),
            }
        })
    }

    /// The tenants `spec` runs for: its list, or every configured tenant (`"*"`), or
    /// `default` when the configuration has none.
    pub fn tenants_of(&self, spec: &PipelineSpec) -> Vec<String> {
        match &spec.tenants {
            Some(list) => list.clone(),
            None if self.config.file.tenants.is_empty() => vec![DEFAULT_TENANT.to_string()],
            None => self.config.file.tenants.keys().cloned().collect(),
        }
    }

    /// Every (pipeline, tenant) pair with its spec, enabled or not.
    pub fn pipelines(&self) -> Vec<(String, String, &PipelineSpec)> {
        self.pipelines
            .values()
            .flat_map(|spec| {
                self.tenants_of(spec)
                    .into_iter()
                    .map(move |t| (spec.name.clone(), t, spec))
            })
            .collect()
    }

    /// `[serve]` (defaults when absent) and each tenant's webhook settings.
    pub fn serve_config(&self) -> ServeSettings {
        ServeSettings {
            serve: self.config.file.serve.clone().unwrap_or_default(),
            webhooks: self.config.file.webhooks.clone(),
        }
    }

    /// The tenant's check: `pipeline` must run for it.
    fn spec_for(&self, pipeline: &str, tenant: &str) -> Result<&PipelineSpec, RuntimeError> {
        let spec = self.pipeline(pipeline)?;
        if spec.tenants.is_some() && !spec.serves(tenant) {
            return Err(RuntimeError::TenantNotServed {
                pipeline: pipeline.to_string(),
                tenant: tenant.to_string(),
                tenants: self.tenants_of(spec).join(", "),
            });
        }
        Ok(spec)
    }

    /// Compiles and checks the script `pipeline` runs for `tenant`.
    pub fn compile(&self, pipeline: &str, tenant: &str) -> Result<Arc<Generation>, RuntimeError> {
        let spec = self.spec_for(pipeline, tenant)?;
        let script = spec.script_for(tenant, &self.config);
        let engine = &self.engines[pipeline];
        let (compiled, options) =
            load_and_check(engine, &script).map_err(|problems| RuntimeError::Script {
                script: script.clone(),
                problems,
            })?;
        Ok(Arc::new(Generation::new(
            compiled,
            options,
            spec.concurrency,
        )))
    }

    /// `ctx.params` of `pipeline` for `tenant`: global, tenant, pipeline, variant, then
    /// command-line parameters, each over the previous.
    pub fn params(
        &self,
        spec: &PipelineSpec,
        tenant: &str,
    ) -> Result<Map<String, Value>, ConfigError> {
        let mut params = self.config.file.params.clone();
        if let Some((_, tenant_params)) = self
            .config
            .tenant(tenant)
            .map_err(|e| ConfigError(vec![format!("{}: {e}", self.config.label())]))?
        {
            params.extend(tenant_params);
        }
        params.extend(spec.params.clone());
        if let Some(v) = spec.variants.get(tenant) {
            params.extend(v.params.clone());
        }
        params.extend(self.overrides.params.clone());
        Ok(params)
    }

    /// The tenant's API client (one per tenant, shared by its runs), or `None` when the
    /// configuration has no tenants.
    pub fn api(&self, tenant: &str) -> Result<Option<Api>, ConfigError> {
        if let Some(api) = self.apis.lock().expect("api cache").get(tenant) {
            return Ok(Some(api.clone()));
        }
        let label = self.config.label();
        match self.config.tenant(tenant) {
            Ok(Some((cfg, _))) => {
                let api = Api::new(tenant, &cfg, &self.config.dir)
                    .map_err(|e| ConfigError(vec![format!("{label}: {e}")]))?;
                self.apis
                    .lock()
                    .expect("api cache")
                    .insert(tenant.to_string(), api.clone());
                Ok(Some(api))
            }
            Ok(None) if self.config.file.tenants.is_empty() => Ok(None),
            Ok(None) => {
                let known: Vec<&str> = self
                    .config
                    .file
                    .tenants
                    .keys()
                    .map(String::as_str)
                    .collect();
                Err(ConfigError(vec![format!(
                    "{label}: no [tenants.{tenant}] (known: {}){}; pass --tenant NAME",
                    known.join(", "),
                    suggest::did_you_mean(tenant, &known)
                )]))
            }
            Err(e) => Err(ConfigError(vec![format!("{label}: {e}")])),
        }
    }

    /// The store behind `ctx.store` for `spec`: its `store`, else `default`, else the only one.
    fn main_store(&self, spec: &PipelineSpec) -> Result<Option<Store>, ConfigError> {
        let storage = &self.config.file.storage;
        let name = match &spec.store {
            Some(s) => Some(s.clone()),
            None if storage.contains_key(DEFAULT_STORE) => Some(DEFAULT_STORE.to_string()),
            None if storage.len() == 1 => storage.keys().next().cloned(),
            None => None,
        };
        name.map(|n| self.config.store(&n)).transpose()
    }

    /// Assembles a run of `pipeline` for `tenant` on `generation`: its engine holds only the
    /// keys the pipeline grants, `ctx.store` and `ctx.stores` only its stores.
    pub fn run_request(
        &self,
        pipeline: &str,
        tenant: &str,
        generation: &Generation,
        ledger: Ledger,
        progress: bool,
    ) -> Result<RunRequest, RuntimeError> {
        let spec = self.spec_for(pipeline, tenant)?;
        let mut errors = Vec::new();
        let params = self.params(spec, tenant).unwrap_or_else(|e| {
            errors.extend(e.0.clone());
            Map::new()
        });
        let api = self.api(tenant).unwrap_or_else(|e| {
            errors.extend(e.0.clone());
            None
        });
        if let Some(api) = &api {
            // Budgets are booked through the ledger, so processes sharing it (serve nodes
            // on one PostgreSQL, runs on one SQLite file) stay within the limits together.
            api.share_budgets(Arc::new(ledger.clone()));
        }
        let store = self.main_store(spec).unwrap_or_else(|e| {
            errors.extend(e.0.clone());
            None
        });
        let bytes_written = Arc::default();
        let store = store.map(|s| s.counting_into(Arc::clone(&bytes_written)));
        let mut stores = rhai::Map::new();
        for name in &spec.stores {
            match self.config.store(name) {
                Ok(s) => {
                    let s = s.counting_into(Arc::clone(&bytes_written));
                    stores.insert(name.as_str().into(), Dynamic::from(s));
                }
                Err(e) => errors.extend(e.0),
            }
        }
        if !errors.is_empty() {
            return Err(ConfigError(errors).into());
        }
        Ok(RunRequest {
            engine: self.engines[pipeline].clone(),
            script: generation.script.clone(),
            options: generation.options.clone(),
            pipeline: pipeline.to_string(),
            tenant: tenant.to_string(),
            params,
            ledger,
            api: api.map(Dynamic::from).unwrap_or(Dynamic::UNIT),
            store: store.map(Dynamic::from).unwrap_or(Dynamic::UNIT),
            stores,
            progress,
            generations: None,
            item_observer: None,
            bytes_written,
            counters: Arc::default(),
            cluster: None,
        })
    }

    /// Everything [`Runtime::load`] does not: compiles every enabled pipeline × tenant
    /// script, opens every store and builds every tenant's client. Returns every problem.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for name in self.config.file.storage.keys() {
            if let Err(e) = self.config.store(name) {
                problems.extend(e.0);
            }
        }
        for tenant in self.config.file.tenants.keys() {
            if let Err(e) = self.api(tenant) {
                problems.extend(e.0);
            }
        }
        for (pipeline, tenant, _) in self.pipelines() {
            if let Err(e) = self.compile(&pipeline, &tenant) {
                problems.push(format!("pipeline {pipeline} for tenant {tenant}: {e}"));
            }
        }
        problems
    }
}

/// The validation a reload runs: loads `path` and checks it; every problem at once.
pub fn check_config(path: &Path) -> Result<Runtime, ConfigError> {
    let runtime = Runtime::load(Some(path), Overrides::default())?;
    let problems = runtime.check();
    if problems.is_empty() {
        Ok(runtime)
    } else {
        Err(ConfigError(problems))
    }
}

/// `cxpipe run SCRIPT` in one call: the one-pipeline runtime of [`Runtime::for_script`],
/// the script compiled and checked, and its run assembled.
pub fn script_request(
    config: Option<&Path>,
    script: &Path,
    tenant: &str,
    store: Option<&str>,
    params: Map<String, Value>,
    ledger: Ledger,
    progress: bool,
) -> Result<RunRequest, RuntimeError> {
    let (runtime, pipeline) =
        Runtime::for_script(config, script, tenant, store, Overrides { params })?;
    let generation = runtime.compile(&pipeline, tenant)?;
    runtime.run_request(&pipeline, tenant, &generation, ledger, progress)
}

/// `cxpipe run --pipeline NAME [--tenant T]`: the configured pipeline for `tenant` (or its
/// only tenant), compiled and assembled.
pub fn pipeline_request(
    config: Option<&Path>,
    pipeline: &str,
    tenant: Option<&str>,
    params: Map<String, Value>,
    ledger: Ledger,
    progress: bool,
) -> Result<RunRequest, RuntimeError> {
    let runtime = Runtime::load(config, Overrides { params })?;
    let spec = runtime.pipeline(pipeline)?;
    let tenant = match tenant {
        Some(t) => t.to_string(),
        None => match runtime.tenants_of(spec).as_slice() {
            [only] => only.clone(),
            many => {
                return Err(RuntimeError::TenantNeeded {
                    pipeline: pipeline.to_string(),
                    tenants: many.join(", "),
                });
            }
        },
    };
    let generation = runtime.compile(pipeline, &tenant)?;
    runtime.run_request(pipeline, &tenant, &generation, ledger, progress)
}

#[cfg(test)]
mod tests;
