//! Two tenants in one `cxpipe serve`: one whose credentials the platform refuses, one that
//! works. The refused tenant's run fails with a clear, secret-free error in `/status`; the
//! other stores every recording; `/metrics` counts API traffic per tenant and endpoint
//! family, token requests under `family="token"`, and bytes written as the store holds
//! them. (That the refused tenant does not slow the other is timed in
//! `cargo bench --bench tenants`.)

use std::path::Path;
use std::time::Duration;

use cxpipe::sim::{SimConfig, SizeDistribution};

use super::daemon::{Served, TOKEN};
use super::prom;
use crate::harness::{Sim, TestEnv};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scripts/download_recordings.rhai"
);
const WRONG_SECRET: &str = "wrong-secret-7f3a9c";

/// Bytes of every object (and manifest) under `dir`, partial files left out.
fn stored_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.map(Result::unwrap) {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == ".cxpipe-partial") {
            continue;
        }
        if path.is_dir() {
            total += stored_bytes(&path);
        } else {
            total += entry.metadata().unwrap().len();
        }
    }
    total
}

/// Every file under `dir` with its size, for failure messages.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .map(Result::unwrap)
    {
        let path = entry.path();
        if path.is_dir() {
            out.extend(listing(&path));
        } else {
            out.push((path.display().to_string(), entry.metadata().unwrap().len()));
        }
    }
    out
}

fn tenant(name: &str, sim: &Sim, secret_file: &str) -> String {
    format!(
        "[tenants.{name}]\nbase_url = \"{}\"\n\
         auth = {{ kind = \"client_credentials\", token_url = \"/api/v2/oauth/token\", \
         client_id = \"{}\", client_secret = {{ file = \"{secret_file}\" }} }}\n\
         params = {{ processing_poll = \"1s\", prefix = \"{name}/\", report_prefix = \"{name}/reports/\" }}\n\n",
        sim.base_url, sim.credentials.client_id
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_with_wrong_credentials_fails_clearly_while_another_stores_everything() {
    let sim = Sim::start(SimConfig {
        seed: 11,
        recordings: 24,
        sizes: SizeDistribution {
            min: 20_000,
            max: 60_000,
            log_uniform: false,
        },
        processing_share: 0.0,
        archived_share: 0.0,
        expired_share: 0.0,
        newest_at: chrono::Utc::now().timestamp() - 600,
        span: Duration::from_secs(5 * 24 * 3600),
        ..SimConfig::default()
    });
    let env = TestEnv::new();
    env.write("secrets/serve_token", TOKEN);
    env.write("secrets/acme", &sim.credentials.client_secret);
    env.write("secrets/beta", WRONG_SECRET);
    let objects = env.path().join("objects");
    env.write(
        "cxpipe.toml",
        &format!(
            "[serve]\ntoken = {{ file = \"secrets/serve_token\" }}\ngrace = \"10s\"\n\n\
             [storage.default]\nuri = \"fs://{}\"\n\n{}{}\
             [pipelines.download]\nscript = \"{SCRIPT}\"\ntenants = [\"acme\", \"beta\"]\n",
            objects.display(),
            tenant("acme", &sim, "secrets/acme"),
            tenant("beta", &sim, "secrets/beta"),
        ),
    );
    let served = Served::start(&env);
    assert_eq!(served.run_now("download", "beta").await, 202);
    assert_eq!(served.run_now("download", "acme").await, 202);

    let beta = served
        .until("download", "beta", Duration::from_secs(60), |e| {
            e["last_run"].is_object()
        })
        .await;
    assert_eq!(beta["last_run"]["status"], "failed", "{beta:#}");
    let error = beta["last_run"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("beta") && !error.contains(WRONG_SECRET),
        "the error names the tenant and hides the secret: {error}"
    );
    let acme = served
        .until("download", "acme", Duration::from_secs(120), |e| {
            e["last_run"].is_object()
        })
        .await;
    assert_eq!(acme["last_run"]["status"], "completed", "{acme:#}");
    let counts = &acme["last_run"]["counts"];
    assert_eq!(
        counts["done"].as_u64().unwrap() + counts["skipped"].as_u64().unwrap(),
        24,
        "{acme:#}"
    );
    assert!(counts["done"].as_u64().unwrap() > 0, "{acme:#}");

    let text = served.get("/metrics").await.text().await.unwrap();
    let samples = prom::parse(&text);
    let sum = |name: &str, tenant: &str| -> f64 {
        samples
            .iter()
            .filter(|s| s.name == name && s.labels.get("tenant").is_some_and(|t| t == tenant))
            .map(|s| s.value)
            .sum()
    };
    let families: Vec<&str> = samples
        .iter()
        .filter(|s| s.name == "cxpipe_api_requests_total" && s.value > 0.0)
        .filter_map(|s| s.labels.get("family").map(String::as_str))
        .collect();
    assert!(!families.is_empty(), "{text}");
    assert!(
        !families.contains(&"all"),
        "API requests are counted per endpoint family, not under one label: {families:?}"
    );
    assert!(sum("cxpipe_api_requests_total", "acme") > 0.0, "{text}");
    assert_eq!(
        sum("cxpipe_api_requests_total", "beta"),
        0.0,
        "no API request goes out without a token:\n{text}"
    );
    let beta_tokens = prom::value(
        &samples,
        "cxpipe_token_requests_total",
        &[("tenant", "beta"), ("family", "token")],
    )
    .unwrap_or_else(|| panic!("no token requests of beta in\n{text}"));
    assert!(beta_tokens >= 1.0, "{text}");

    let acme_bytes = prom::value(
        &samples,
        "cxpipe_bytes_written_total",
        &[("pipeline", "download"), ("tenant", "acme")],
    )
    .unwrap_or_else(|| panic!("no bytes written for acme in\n{text}"));
    assert_eq!(
        acme_bytes as u64,
        stored_bytes(&objects.join("acme")),
        "bytes written agree with what the store holds: {:#?}",
        listing(&objects)
    );
    assert!(acme_bytes > 20_000.0, "{text}");
    // The refused tenant's run stored only its report.
    let beta_bytes = prom::value(
        &samples,
        "cxpipe_bytes_written_total",
        &[("pipeline", "download"), ("tenant", "beta")],
    )
    .unwrap_or(0.0);
    assert_eq!(
        beta_bytes as u64,
        stored_bytes(&objects.join("beta")),
        "{:#?}",
        listing(&objects)
    );
}
