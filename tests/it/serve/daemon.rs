//! `cxpipe serve` end to end: the real binary serving pipelines from a config, driven over
//! HTTP, by schedules, by file edits and by signals, checked from the ledger.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use sqlx::Row;

use super::prom;
use crate::harness::{Ran, TestEnv};

pub const TOKEN: &str = "serve-token-0123456789";

/// A `cxpipe serve` child and the URL it listens on; killed when dropped.
pub struct Served {
    pub child: Option<Child>,
    pub url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Served {
    /// Starts `cxpipe serve --config cxpipe.toml --state state --listen 127.0.0.1:0` in
    /// `env` and waits (bounded) for the URL it prints.
    pub fn start(env: &TestEnv) -> Served {
        let state = env.state_dir();
        Served::start_with(env, &["--state", state.to_str().unwrap()], None)
    }

    /// [`Served::start`] with `ledger` (`--state DIR` or `--ledger URL`) instead, its log
    /// written to the file `log` when given (a long run logs more than a pipe holds).
    pub fn start_with(env: &TestEnv, ledger: &[&str], log: Option<&std::path::Path>) -> Served {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("creating the log")),
            None => Stdio::piped(),
        };
        let mut child = env
            .command()
            .env("CXPIPE_LOG", "cxpipe=info")
            .args([
                "serve",
                "--config",
                "cxpipe.toml",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(ledger)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start cxpipe serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                    let _ = tx.send(url.trim_end_matches('/').to_string());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => Served {
                child: Some(child),
                url,
            },
            Err(_) => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "serve printed no URL; stderr:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    /// Sends `signal` and waits (bounded) for the process to exit.
    pub async fn stop(&mut self, signal: &str, limit: Duration) -> Ran {
        let child = self.child.take().expect("running");
        send_signal(&child, signal);
        let waited = tokio::time::timeout(
            limit,
            tokio::task::spawn_blocking(move || child.wait_with_output()),
        )
        .await
        .expect("serve exited in time");
        waited.unwrap().unwrap().into()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(format!("{}{path}", self.url)).await.unwrap()
    }

    pub async fn status(&self) -> serde_json::Value {
        self.get("/status").await.json().await.unwrap()
    }

    /// The `/status` entry of pipeline × tenant.
    pub async fn entry(&self, pipeline: &str, tenant: &str) -> serde_json::Value {
        let status = self.status().await;
        status["pipelines"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|p| p["pipeline"] == pipeline && p["tenant"] == tenant)
                    .cloned()
            })
            .unwrap_or_else(|| panic!("no {pipeline}/{tenant} in {status:#}"))
    }

    /// Polls `/status` (bounded) until `pred` holds for pipeline × tenant.
    pub async fn until(
        &self,
        pipeline: &str,
        tenant: &str,
        limit: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let entry = self.entry(pipeline, tenant).await;
            if pred(&entry) {
                return entry;
            }
            assert!(Instant::now() < deadline, "status never matched: {entry:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `POST /pipelines/{pipeline}/run?tenant=T` with the bearer token.
    pub async fn run_now(&self, pipeline: &str, tenant: &str) -> reqwest::StatusCode {
        reqwest::Client::new()
            .post(format!(
                "{}/pipelines/{pipeline}/run?tenant={tenant}",
                self.url
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status()
    }
}

pub fn send_signal(child: &Child, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} failed");
}

/// Writes `cxpipe.toml` with `[serve]` (token from a file), a store under `objects/`, and
/// `body` (pipelines, tenants).
pub fn write_config(env: &TestEnv, body: &str) {
    env.write("secrets/serve_token", TOKEN);
    let objects = env.path().join("objects");
    env.write(
        "cxpipe.toml",
        &format!(
            "[serve]\ntoken = {{ file = \"secrets/serve_token\" }}\ngrace = \"10s\"\n\n\
             [storage.default]\nuri = \"fs://{}\"\n\n{body}",
            objects.display()
        ),
    );
}

/// The ledger's rows of `sql` (a read-only query), for assertions.
pub async fn query(env: &TestEnv, sql: &str) -> Vec<sqlx::sqlite::SqliteRow> {
    let url = format!(
        "sqlite://{}?mode=ro",
        env.state_dir().join("ledger.sqlite").display()
    );
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows
}

/// Items done per pipeline, from the ledger.
pub async fn done(env: &TestEnv, pipeline: &str) -> i64 {
    let rows = query(
        env,
        &format!("SELECT COUNT(*) FROM items WHERE pipeline = '{pipeline}' AND state = 'done'"),
    )
    .await;
    rows[0].get(0)
}

/// Waits (bounded) until the ledger holds more than `n` done items of `pipeline`.
pub async fn until_done_more_than(env: &TestEnv, pipeline: &str, n: i64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while done(env, pipeline).await <= n {
        assert!(
            Instant::now() < deadline,
            "fewer than {n} items done in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A script of `n` items whose `process` burns a little CPU and returns `VERSION`.
fn slow_script(n: usize, version: i64) -> String {
    format!(
        "const OPTIONS = #{{ concurrency: 2 }};\n\
         fn discover(ctx) {{ for i in 0..{n} {{ ctx.emit(`k${{i}}`, i); }} }}\n\
         fn process(ctx, item) {{ let x = 0; for j in 0..20000 {{ x += j; }} #{{ v: {version} }} }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_run_shows_in_status_the_page_and_metrics_that_agree_with_the_ledger() {
    let env = TestEnv::new();
    env.write("count.rhai", &slow_script(60, 1));
    write_config(&env, "[pipelines.count]\nscript = \"count.rhai\"\n");
    let served = Served::start(&env);

    // Without the token, nothing starts.
    let refused = reqwest::Client::new()
        .post(format!("{}/pipelines/count/run?tenant=default", served.url))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(served.run_now("count", "default").await, 202);
    let entry = served
        .until("count", "default", Duration::from_secs(60), |e| {
            e["last_run"]["status"] == "completed"
        })
        .await;
    assert_eq!(entry["last_run"]["counts"]["done"], 60, "{entry:#}");
    assert!(entry["script_hash"].as_str().is_some_and(|h| h.len() == 64));

    let metrics = served.get("/metrics").await.text().await.unwrap();
    let samples = prom::parse(&metrics);
    let labels = [
        ("pipeline", "count"),
        ("tenant", "default"),
        ("state", "done"),
    ];
    let in_metrics = prom::value(&samples, "cxpipe_items", &labels)
        .unwrap_or_else(|| panic!("no cxpipe_items done in:\n{metrics}"));
    assert_eq!(in_metrics as i64, done(&env, "count").await);
    assert_eq!(in_metrics as i64, 60);
    let timed = prom::value(
        &samples,
        "cxpipe_item_duration_seconds_count",
        &[("pipeline", "count"), ("tenant", "default")],
    );
    assert_eq!(timed, Some(60.0), "every process call is timed:\n{metrics}");

    let page = served.get("/").await.text().await.unwrap();
    assert!(
        page.contains("count") && page.contains("completed"),
        "{page}"
    );
    assert_eq!(served.get("/healthz").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_edited_mid_run_serves_new_items_and_loses_or_repeats_none() {
    let env = TestEnv::new();
    let script = env.write("flow.rhai", &slow_script(1000, 1));
    write_config(&env, "[pipelines.flow]\nscript = \"flow.rhai\"\n");
    let served = Served::start(&env);
    let old_hash = served.entry("flow", "default").await["script_hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(served.run_now("flow", "default").await, 202);
    until_done_more_than(&env, "flow", 100, Duration::from_secs(60)).await;
    // /status shows the run in progress with its own counts so far.
    let entry = served.entry("flow", "default").await;
    let live = entry["running"]["counts"]["done"].as_u64().unwrap_or(0);
    assert!((1..=1000).contains(&live), "{entry:#}");
    assert!(
        entry["running"]["run_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{entry:#}"
    );

    // A syntax error saved mid-run: the old generation keeps serving, /status says where.
    std::fs::write(&script, "fn process(ctx, item) { let = ; }\n").unwrap();
    let entry = served
        .until("flow", "default", Duration::from_secs(20), |e| {
            e["reload_error"].is_string()
        })
        .await;
    let error = entry["reload_error"].as_str().unwrap();
    assert!(
        error.contains("flow.rhai:1:"),
        "the error names file and line: {error}"
    );
    assert_eq!(
        entry["script_hash"],
        old_hash.as_str(),
        "the old generation serves"
    );
    let before_edit = done(&env, "flow").await;

    // Then a good edit: new items run on it.
    std::fs::write(&script, slow_script(1000, 2)).unwrap();
    let entry = served
        .until("flow", "default", Duration::from_secs(20), |e| {
            e["reload_error"].is_null() && e["script_hash"] != old_hash.as_str()
        })
        .await;
    let new_hash = entry["script_hash"].as_str().unwrap().to_string();
    let entry = served
        .until("flow", "default", Duration::from_secs(120), |e| {
            e["last_run"]["status"] == "completed"
        })
        .await;
    assert_eq!(entry["last_run"]["counts"]["done"], 1000, "{entry:#}");

    let rows = query(
        &env,
        "SELECT script_hash, result, COUNT(*) FROM items WHERE pipeline = 'flow' \
         AND state = 'done' GROUP BY script_hash, result",
    )
    .await;
    let mut by_hash = std::collections::BTreeMap::new();
    for r in &rows {
        let (hash, result, n): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
        let v: serde_json::Value = serde_json::from_str(&result).unwrap();
        let expected = if hash == old_hash { 1 } else { 2 };
        assert!(
            hash == old_hash || hash == new_hash,
            "items carry a hash of a generation that served: {hash}"
        );
        assert_eq!(v["v"], expected, "each item's result matches its hash");
        *by_hash.entry(hash).or_insert(0) += n;
    }
    let total: i64 = by_hash.values().sum();
    assert_eq!(total, 1000, "no item lost or repeated: {by_hash:?}");
    assert!(
        by_hash.get(&old_hash).copied().unwrap_or(0) >= before_edit,
        "items done before the edit keep the old hash: {by_hash:?}"
    );
    assert!(
        by_hash.get(&new_hash).copied().unwrap_or(0) > 0,
        "items after the edit ran on the new generation: {by_hash:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_module_reloads_the_script_that_imports_it() {
    let env = TestEnv::new();
    env.write("stdlib/helper.rhai", "fn tag() { \"one\" }\n");
    env.write(
        "uses.rhai",
        "import \"helper\" as h;\nfn discover(ctx) { ctx.emit(\"a\", h::tag()); }\n\
         fn process(ctx, item) { item }\n",
    );
    write_config(&env, "[pipelines.uses]\nscript = \"uses.rhai\"\n");
    let served = Served::start(&env);
    let first = served.entry("uses", "default").await["script_hash"].clone();
    assert!(first.is_string(), "compiled at start");
    env.write("stdlib/helper.rhai", "fn tag() { \"two\" }\n");
    served
        .until("uses", "default", Duration::from_secs(20), |e| {
            e["script_hash"].is_string() && e["script_hash"] != first
        })
        .await;
    // A broken module keeps the last good generation and says where it broke.
    env.write("stdlib/helper.rhai", "fn tag( { \n");
    let entry = served
        .until("uses", "default", Duration::from_secs(20), |e| {
            e["reload_error"].is_string()
        })
        .await;
    assert!(
        entry["reload_error"].as_str().unwrap().contains("helper"),
        "{entry:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_every_two_seconds_schedule_fires_on_time_never_overlaps_and_a_restart_does_not_refire()
{
    let env = TestEnv::new();
    env.write(
        "tick.rhai",
        "fn discover(ctx) { ctx.emit(ctx.run_id, 1); }\nfn process(ctx, item) { item }\n",
    );
    write_config(
        &env,
        "[pipelines.tick]\nscript = \"tick.rhai\"\nschedule = \"*/2 * * * * *\"\n",
    );
    let mut served = Served::start(&env);
    let next = served.entry("tick", "default").await["next_fire"].clone();
    assert!(next.is_string(), "the next fire is shown: {next}");
    tokio::time::sleep(Duration::from_millis(7_000)).await;
    let ran = served.stop("TERM", Duration::from_secs(30)).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);

    let fires = query(
        &env,
        "SELECT fire_at FROM schedule_fires WHERE pipeline = 'tick' ORDER BY fire_at",
    )
    .await;
    let fires: Vec<i64> = fires.iter().map(|r| r.get(0)).collect();
    assert!((3..=4).contains(&fires.len()), "fires in 7 s: {fires:?}");
    for pair in fires.windows(2) {
        assert_eq!(pair[1] - pair[0], 2_000, "every 2 s: {fires:?}");
    }
    assert!(
        fires.iter().all(|f| f % 2_000 == 0),
        "on even seconds: {fires:?}"
    );
    let runs = query(
        &env,
        "SELECT started_at, finished_at FROM runs WHERE pipeline = 'tick' ORDER BY started_at",
    )
    .await;
    let runs: Vec<(i64, i64)> = runs.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        runs.len(),
        fires.len(),
        "one run per fire: {runs:?} {fires:?}"
    );
    for pair in runs.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "runs never overlap: {runs:?}");
    }

    // A restart fires nothing already fired: the next fire is a new instant.
    let mut served = Served::start(&env);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let ran = served.stop("TERM", Duration::from_secs(30)).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let after = query(
        &env,
        "SELECT fire_at, COUNT(*) FROM schedule_fires WHERE pipeline = 'tick' GROUP BY fire_at",
    )
    .await;
    assert!(
        after.iter().all(|r| r.get::<i64, _>(1) == 1),
        "each instant fired once"
    );
    let runs_after = query(&env, "SELECT COUNT(*) FROM runs WHERE pipeline = 'tick'").await;
    assert_eq!(
        runs_after[0].get::<i64, _>(0) as usize,
        after.len(),
        "one run per fire across the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_then_a_restart_finishes_every_item_once() {
    let env = TestEnv::new();
    env.write("many.rhai", &slow_script(2000, 1));
    write_config(&env, "[pipelines.many]\nscript = \"many.rhai\"\n");
    let mut served = Served::start(&env);
    assert_eq!(served.run_now("many", "default").await, 202);
    until_done_more_than(&env, "many", 50, Duration::from_secs(60)).await;
    let ran = served.stop("TERM", Duration::from_secs(60)).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let before = done(&env, "many").await;
    assert!(before < 2000, "stopped mid-run");
    let leased = query(&env, "SELECT COUNT(*) FROM items WHERE state = 'leased'").await;
    assert_eq!(
        leased[0].get::<i64, _>(0),
        0,
        "unfinished items were released"
    );

    // The next start resumes on its own and finishes the rest.
    let mut served = Served::start(&env);
    served
        .until("many", "default", Duration::from_secs(120), |e| {
            e["last_run"]["status"] == "completed"
        })
        .await;
    assert_eq!(done(&env, "many").await, 2000);
    let ran = served.stop("TERM", Duration::from_secs(60)).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let twice = query(&env, "SELECT COUNT(*) FROM items WHERE attempts != 1").await;
    assert_eq!(twice[0].get::<i64, _>(0), 0, "no item was attempted twice");
    let runs = query(
        &env,
        "SELECT summary FROM runs WHERE pipeline = 'many' AND summary IS NOT NULL",
    )
    .await;
    let processed: i64 = runs
        .iter()
        .map(|r| {
            let s: serde_json::Value = serde_json::from_str(&r.get::<String, _>(0)).unwrap();
            s["done"].as_i64().unwrap_or(0)
        })
        .sum();
    assert_eq!(
        processed, 2000,
        "each item processed once across both processes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_asking_for_a_store_its_pipeline_does_not_grant_gets_a_clear_error() {
    let env = TestEnv::new();
    env.write(
        "greedy.rhai",
        "const OPTIONS = #{ max_attempts: 1 };\nfn discover(ctx) { ctx.emit(\"a\", 1); }\n\
         fn process(ctx, item) { ctx.stores.secret_archive; item }\n",
    );
    write_config(&env, "[pipelines.greedy]\nscript = \"greedy.rhai\"\n");
    let served = Served::start(&env);
    assert_eq!(served.run_now("greedy", "default").await, 202);
    let entry = served
        .until("greedy", "default", Duration::from_secs(60), |e| {
            e["last_run"]["status"].is_string()
        })
        .await;
    assert_eq!(entry["last_run"]["counts"]["quarantined"], 1, "{entry:#}");
    let rows = query(
        &env,
        "SELECT last_error FROM items WHERE pipeline = 'greedy'",
    )
    .await;
    let error: String = rows[0].get(0);
    assert!(
        error.contains("not granted a store named \"secret_archive\""),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_event_delivered_twice_is_processed_once_and_forgeries_are_refused() {
    let sim = crate::harness::Sim::start(cxpipe::sim::SimConfig {
        recordings: 1,
        ..Default::default()
    });
    let env = TestEnv::new();
    env.write("secrets/client_secret", &sim.credentials.client_secret);
    env.write("secrets/hook", "whsec-e2e");
    env.write(
        "hooked.rhai",
        "fn discover(ctx) { }\n\
         fn on_event(ctx, event) { ctx.emit(event.recordingId, event); }\n\
         fn process(ctx, item) { item.recordingId }\n",
    );
    write_config(
        &env,
        &format!(
            r#"
[tenants.acme]
base_url = "{}"
auth = {{ kind = "client_credentials", token_url = "/api/v2/oauth/token", client_id = "{}", client_secret = {{ file = "secrets/client_secret" }} }}
[tenants.acme.webhook]
secret = {{ file = "secrets/hook" }}
max_body = 2048

[pipelines.hooked]
script = "hooked.rhai"
tenants = ["acme"]
"#,
            sim.base_url, sim.credentials.client_id
        ),
    );
    let served = Served::start(&env);
    let client = reqwest::Client::new();
    let url = format!("{}/hooks/acme/hooked", served.url);
    let body = serde_json::json!({ "eventId": "evt-1", "recordingId": "rec-1" }).to_string();
    let now = super::host::now_secs();
    let post = |secret: &str, ts: i64, body: &str| {
        super::host::signed_post(&client, &url, secret, ts, body)
    };
    assert_eq!(
        post("whsec-e2e", now, &body).send().await.unwrap().status(),
        202
    );
    // The sender retries (a lost ack): acknowledged, not processed again.
    assert_eq!(
        post("whsec-e2e", now + 1, &body)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        post("wrong-secret", now, &body)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        post("whsec-e2e", now - 3_600, &body)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let big = serde_json::json!({ "eventId": "evt-2", "pad": "x".repeat(4096) }).to_string();
    assert_eq!(
        post("whsec-e2e", now, &big).send().await.unwrap().status(),
        413
    );

    let entry = served
        .until("hooked", "acme", Duration::from_secs(60), |e| {
            e["last_run"]["counts"]["done"] == 1
        })
        .await;
    assert_eq!(entry["last_run"]["status"], "completed", "{entry:#}");
    let rows = query(
        &env,
        "SELECT item_key, result FROM items WHERE pipeline = 'hooked'",
    )
    .await;
    assert_eq!(rows.len(), 1, "the duplicate delivery emitted nothing new");
    assert_eq!(rows[0].get::<String, _>(0), "rec-1");
    let events = query(
        &env,
        "SELECT COUNT(*) FROM webhook_events WHERE handed_at IS NOT NULL",
    )
    .await;
    assert_eq!(events[0].get::<i64, _>(0), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_edit_reloads_all_or_nothing() {
    let env = TestEnv::new();
    env.write("a.rhai", &slow_script(5, 1));
    write_config(&env, "[pipelines.a]\nscript = \"a.rhai\"\n");
    let served = Served::start(&env);
    served.entry("a", "default").await;

    // A good edit adds a pipeline.
    write_config(
        &env,
        "[pipelines.a]\nscript = \"a.rhai\"\n\n[pipelines.b]\nscript = \"a.rhai\"\n",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = served.status().await;
        let names: Vec<&str> = status["pipelines"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["pipeline"].as_str())
            .collect();
        if names.contains(&"b") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pipeline b never appeared: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A broken edit keeps the previous config serving and says where it broke.
    write_config(&env, "[pipelines.a]\nscript = \"a.rhai\"\nconcurrenc = 2\n");
    let entry = served
        .until("b", "default", Duration::from_secs(20), |e| {
            e["reload_error"].is_string()
        })
        .await;
    assert!(
        entry["reload_error"]
            .as_str()
            .unwrap()
            .contains("cxpipe.toml:"),
        "{entry:#}"
    );
    assert_eq!(served.run_now("b", "default").await, 202, "b still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_items_left_by_a_run_are_taken_up_when_they_fall_due() {
    let env = TestEnv::new();
    env.write(
        "later.rhai",
        "const OPTIONS = #{ defer_linger: \"1s\" };\n\
         fn discover(ctx) { ctx.emit(\"a\", 1); }\n\
         fn process(ctx, item) {\n\
           if ctx.kv.get(\"deferred\") == () { ctx.kv.set(\"deferred\", true); return ctx.defer(\"4s\", \"not yet\"); }\n\
           item\n\
         }\n",
    );
    write_config(&env, "[pipelines.later]\nscript = \"later.rhai\"\n");
    let served = Served::start(&env);
    assert_eq!(served.run_now("later", "default").await, 202);
    // The first run ends with the item deferred; nothing is asked again, yet serve wakes
    // the pipeline when it falls due and a second run finishes it.
    let entry = served
        .until("later", "default", Duration::from_secs(30), |e| {
            e["last_run"]["counts"]["done"] == 1
        })
        .await;
    assert_eq!(entry["last_run"]["status"], "completed", "{entry:#}");
    let runs = query(&env, "SELECT COUNT(*) FROM runs WHERE pipeline = 'later'").await;
    assert_eq!(
        runs[0].get::<i64, _>(0),
        2,
        "the deferral ended the first run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_asked_of_a_pipeline_whose_script_never_compiled_is_refused_with_the_reason() {
    let env = TestEnv::new();
    env.write("broken.rhai", "fn process(ctx, item) { let = ; }\n");
    write_config(&env, "[pipelines.broken]\nscript = \"broken.rhai\"\n");
    let served = Served::start(&env);
    let response = reqwest::Client::new()
        .post(format!(
            "{}/pipelines/broken/run?tenant=default",
            served.url
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "not_runnable", "{body:#}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("broken.rhai:1:"),
        "the reason names file and line: {body:#}"
    );
    // An unknown pipeline is still a 404.
    assert_eq!(served.run_now("nothing", "default").await, 404);
}
