//! The api stages against a local CXone-like server: auth and token sharing, 401
//! handling, rate budgets and `Retry-After`, every pagination style, job polling, and the
//! `ctx.api` surface as scripts see it.

mod auth;
mod budgets;
mod hostile;
mod paginate;
mod poll;
mod real_stdlib;
mod script;
mod server;
mod shared_budgets;
mod sim;

use std::sync::Arc;

use cxpipe::api::{Api, SkippingClock, TenantConfig};
use server::{Behaviour, CLIENT_ID, CLIENT_SECRET, TestServer};

/// A server, a client for it on a skipping clock, and the folder holding the secret.
pub struct Setup {
    pub server: TestServer,
    pub api: Api,
    pub clock: Arc<SkippingClock>,
    pub _dir: tempfile::TempDir,
}

/// Tenant TOML for `base`; `extra` is appended (top-level keys or tables).
pub fn tenant_toml(base: &str, extra: &str) -> String {
    format!(
        r#"
        base_url = "{base}"
        max_retries = 4
        backoff_base = "100ms"
        backoff_max = "2s"
        auth = {{ kind = "client_credentials", token_url = "/api/v2/oauth/token", client_id = "{CLIENT_ID}", client_secret = {{ file = "secret.txt" }} }}
        {extra}
        "#
    )
}

/// Starts a server with `behaviour` and builds the `acme` tenant's client with `secret`.
pub async fn setup_with(behaviour: Behaviour, extra: &str, secret: &str) -> Setup {
    let server = TestServer::start(behaviour).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), format!("{secret}\n")).unwrap();
    let config: TenantConfig = toml::from_str(&tenant_toml(&server.base_url(), extra)).unwrap();
    let clock = Arc::new(SkippingClock::new());
    let api = Api::with_clock("acme", &config, dir.path(), clock.clone()).unwrap();
    Setup {
        server,
        api,
        clock,
        _dir: dir,
    }
}

pub async fn setup(behaviour: Behaviour) -> Setup {
    setup_with(behaviour, "", CLIENT_SECRET).await
}

/// A server holding `records` records, with one-hour tokens.
pub fn records(records: u64) -> Behaviour {
    Behaviour {
        records,
        token_ttl_secs: 3600,
        ..Behaviour::default()
    }
}

/// Runs a Rhai script with `api` in scope on a blocking thread, as the runner does.
pub async fn run_script<T: Clone + Send + Sync + 'static>(
    api: &Api,
    script: &str,
) -> Result<T, String> {
    run_script_with(api, script, ("unused", rhai::Dynamic::UNIT)).await
}

/// [`run_script`] with one more variable in scope.
pub async fn run_script_with<T: Clone + Send + Sync + 'static>(
    api: &Api,
    script: &str,
    (name, value): (&'static str, impl Into<rhai::Dynamic>),
) -> Result<T, String> {
    let api = api.clone();
    let script = script.to_string();
    let value: rhai::Dynamic = value.into();
    tokio::task::spawn_blocking(move || {
        let mut engine = rhai::Engine::new();
        cxpipe::api::register(&mut engine);
        let mut scope = rhai::Scope::new();
        scope.push("api", api);
        scope.push_dynamic(name, value);
        engine
            .eval_with_scope::<T>(&mut scope, &script)
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap()
}
