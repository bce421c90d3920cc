//! Tenant isolation in `cxpipe serve` (issue 10): how much a tenant whose credentials the
//! platform refuses slows another tenant's run in the same process. The real binary serves
//! the seed-002 download pipeline for `acme` (good credentials) against an in-process
//! simulator without faults; in the "noisy" case it also serves `beta`, whose secret is
//! wrong, on a schedule that fires every second, so its runs fail and start again for the
//! whole of acme's run. Alternates quiet and noisy rounds (`BENCH_ROUNDS`, default 3) on
//! fresh state each time and reports the median of acme's run time (`duration_ms` from
//! `/status`) in each case and their ratio, with `BENCH_RECORDINGS` recordings (default
//! 300). The bar: the noisy run at most 10 % slower.
//! Run: `cargo bench --bench tenants` (or `--profile dev`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cxpipe::sim::{SimConfig, SimServer, SizeDistribution};

const TOKEN: &str = "bench-token-0123456789abcdef";

struct Serve {
    child: Child,
    url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tenant(name: &str, base_url: &str, client_id: &str, secret_file: &str) -> String {
    format!(
        "[tenants.{name}]\nbase_url = \"{base_url}\"\n\
         auth = {{ kind = \"client_credentials\", token_url = \"/api/v2/oauth/token\", \
         client_id = \"{client_id}\", client_secret = {{ file = \"{secret_file}\" }} }}\n\
         params = {{ prefix = \"{name}/\" }}\n\n"
    )
}

/// Starts `cxpipe serve` in `dir` for acme, and beta on a 1 s schedule when `noisy`.
fn serve(dir: &Path, sim: &SimServer, noisy: bool) -> Serve {
    let creds = sim.credentials();
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    std::fs::write(dir.join("acme"), &creds.client_secret).unwrap();
    std::fs::write(dir.join("beta"), "not-the-secret").unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/download_recordings.rhai");
    let mut config = format!(
        "[serve]\ntoken = {{ file = \"token\" }}\n\n[storage.default]\nuri = \"fs://{}\"\n\n{}",
        dir.join("objects").display(),
        tenant("acme", sim.base_url(), &creds.client_id, "acme"),
    );
    config += &format!(
        "[pipelines.download]\nscript = \"{}\"\ntenants = [\"acme\"]\n\n",
        script.display()
    );
    if noisy {
        config += &tenant("beta", sim.base_url(), &creds.client_id, "beta");
        config += &format!(
            "[pipelines.noise]\nscript = \"{}\"\ntenants = [\"beta\"]\nschedule = \"* * * * * *\"\n",
            script.display()
        );
    }
    std::fs::write(dir.join("cxpipe.toml"), config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cxpipe"))
        .current_dir(dir)
        .args(["serve", "--config", "cxpipe.toml", "--state", "state"])
        .args(["--listen", "127.0.0.1:0"])
        .env("CXPIPE_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cxpipe serve starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                let _ = tx.send(url.trim_end_matches('/').to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("serve prints its URL");
    Serve { child, url }
}

/// Runs acme's download once and returns its `duration_ms` and how many beta runs ended
/// meanwhile.
async fn acme_run(client: &reqwest::Client, serve: &Serve) -> (u64, u64) {
    let started = client
        .post(format!("{}/pipelines/download/run?tenant=acme", serve.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let status: serde_json::Value = client
            .get(format!("{}/status", serve.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let pipelines = status["pipelines"].as_array().unwrap();
        let acme = pipelines
            .iter()
            .find(|p| p["tenant"] == "acme")
            .expect("acme");
        if let Some(ms) = acme["last_run"]["duration_ms"].as_u64() {
            assert_eq!(acme["last_run"]["status"], "completed", "{acme}");
            let metrics = client
                .get(format!("{}/metrics", serve.url))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let beta_runs = metrics
                .lines()
                .find(|l| {
                    l.starts_with("cxpipe_run_duration_seconds_count")
                        && l.contains("tenant=\"beta\"")
                })
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .unwrap_or(0.0) as u64;
            return (ms, beta_runs);
        }
        assert!(Instant::now() < deadline, "acme's run did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let env_usize = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: a number")))
            .unwrap_or(default)
    };
    let recordings = env_usize("BENCH_RECORDINGS", 300);
    let rounds = env_usize("BENCH_ROUNDS", 3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let sim = rt
        .block_on(SimServer::start(
            SimConfig {
                seed: 12,
                recordings,
                sizes: SizeDistribution {
                    min: 50_000,
                    max: 200_000,
                    log_uniform: false,
                },
                processing_share: 0.0,
                archived_share: 0.0,
                expired_share: 0.0,
                newest_at: chrono::Utc::now().timestamp() - 600,
                span: Duration::from_secs(5 * 24 * 3600),
                ..SimConfig::default()
            }
            .without_faults(),
        ))
        .expect("simulator starts");
    let client = reqwest::Client::new();
    let (mut quiet, mut noisy, mut beta_runs) = (Vec::new(), Vec::new(), 0);
    for round in 0..rounds {
        for noise in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let served = serve(dir.path(), &sim, noise);
            let (ms, betas) = rt.block_on(acme_run(&client, &served));
            drop(served);
            eprintln!(
                "round {}: {} acme run {ms} ms{}",
                round + 1,
                if noise { "noisy" } else { "quiet" },
                if noise {
                    format!(" ({betas} failed beta runs meanwhile)")
                } else {
                    String::new()
                }
            );
            if noise {
                noisy.push(ms);
                beta_runs += betas;
            } else {
                quiet.push(ms);
            }
        }
    }
    rt.block_on(sim.shutdown());
    let (q, n) = (median(quiet), median(noisy));
    let ratio = n as f64 / q as f64;
    println!(
        "tenant isolation, {recordings} recordings, {rounds} rounds: acme's run median \
         {q} ms alone, {n} ms beside a refused tenant firing every second \
         ({beta_runs} failed runs of it in all); ratio {ratio:.3} ({})",
        if ratio <= 1.10 {
            "within the 10 % bar"
        } else {
            "OVER the 10 % bar"
        }
    );
}
