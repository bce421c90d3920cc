//! Three `cxpipe serve` nodes on one PostgreSQL ledger share the recording download over
//! 5,000 recordings; the node leading the run is killed with SIGKILL mid-run. The others
//! take over its leases and its discovery: every recording is stored exactly once, and
//! the store, the ledger and the simulator agree, and the tenant's rate budget, shared
//! through the ledger, held across the nodes. Without `CXPIPE_TEST_POSTGRES_URL` the
//! test prints a loud SKIPPED line and passes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cxpipe::sim::{RateLimit, SimConfig, SizeDistribution};
use sqlx::Row;

use super::daemon::{Served, TOKEN, send_signal};
use crate::harness::{Sim, TestEnv};
use crate::ledger_postgres::{Schema, server_url};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scripts/download_recordings.rhai"
);
const RECORDINGS: usize = 5_000;
/// Requests a second the simulator's recordings API allows.
const RATE: u32 = 60;

/// Files under `dir` (recursively) whose name ends with `suffix`.
fn files(dir: &std::path::Path, suffix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .map(Result::unwrap)
    {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            out.insert(path.display().to_string());
        }
    }
    out
}

/// Writes the secrets and `cxpipe.toml` of a cluster serving the download pipeline for
/// tenant `acme` of `sim` (`tenant_extra` ends its table); returns the store's folder.
fn write_config(env: &TestEnv, sim: &Sim, tenant_extra: &str) -> std::path::PathBuf {
    env.write("secrets/serve_token", TOKEN);
    env.write("secrets/acme", &sim.credentials.client_secret);
    let objects = env.path().join("objects");
    env.write(
        "cxpipe.toml",
        &format!(
            "[serve]\ntoken = {{ file = \"secrets/serve_token\" }}\ngrace = \"5s\"\n\
             cluster = \"on\"\nlease = \"6s\"\nheartbeat = \"1s\"\n\n\
             [storage.default]\nuri = \"fs://{}\"\n\n\
             [tenants.acme]\nbase_url = \"{}\"\n\
             auth = {{ kind = \"client_credentials\", token_url = \"/api/v2/oauth/token\", \
             client_id = \"{}\", client_secret = {{ file = \"secrets/acme\" }} }}\n\
             {tenant_extra}\n\
             [pipelines.download]\nscript = \"{SCRIPT}\"\ntenants = [\"acme\"]\n",
            objects.display(),
            sim.base_url,
            sim.credentials.client_id,
        ),
    );
    objects
}

/// `n` serve nodes on `schema`, each logging to `node-I.log` in `env`.
fn start_nodes(env: &TestEnv, schema: &Schema, n: usize) -> Vec<Served> {
    let ledger = ["--ledger", schema.url.as_str()];
    (0..n)
        .map(|i| {
            let log = env.path().join(format!("node-{i}.log"));
            Served::start_with(env, &ledger, Some(&log))
        })
        .collect()
}

/// A small pool on the test's schema, to read the ledger as the nodes write it.
async fn pool(schema: &Schema) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&schema.url)
        .await
        .unwrap()
}

/// The last lines of each node's log, for failure messages.
fn tails(env: &TestEnv) -> String {
    let mut out = String::new();
    for i in 0..3 {
        let text =
            std::fs::read_to_string(env.path().join(format!("node-{i}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out.push_str(&format!("--- node {i}\n"));
        for line in &lines[lines.len().saturating_sub(15)..] {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

async fn scalar(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_a_run_and_finish_a_killed_leaders_work_exactly_once() {
    let Some(server) = server_url("three_nodes_share_a_run") else {
        return;
    };
    let schema = Schema::create(&server).await;
    // The recordings API allows 60 requests a second (a token bucket); the tenant's budget
    // says so, and the three nodes share it through the ledger.
    let mut faults = SimConfig::default().without_faults().faults;
    faults.rate_limits = BTreeMap::from([(
        "recordings".to_string(),
        RateLimit {
            requests: RATE,
            per: Duration::from_secs(1),
        },
    )]);
    let sim = Sim::start(SimConfig {
        seed: 12,
        recordings: RECORDINGS,
        sizes: SizeDistribution {
            min: 4_096,
            max: 8_192,
            log_uniform: false,
        },
        archived_share: 0.0,
        expired_share: 0.0,
        newest_at: chrono::Utc::now().timestamp() - 600,
        span: Duration::from_secs(5 * 24 * 3600),
        faults,
        ..SimConfig::default().without_faults()
    });
    let env = TestEnv::new();
    let objects = write_config(
        &env,
        &sim,
        &format!(
            "params = {{ processing_poll = \"1s\", page_size = 500 }}\n\
             [tenants.acme.rate_limits.families]\n\
             recordings = {{ paths = [\"/api/v2/recording/*\"], requests = {RATE}, per = \"1s\" }}\n"
        ),
    );
    let mut nodes = start_nodes(&env, &schema, 3);
    let pool = pool(&schema).await;
    assert_eq!(nodes[0].run_now("download", "acme").await, 202);
    let started = Instant::now();

    // Mid-run: a good share done, and the run led by one of the nodes.
    let deadline = Instant::now() + Duration::from_secs(240);
    let lead_owner = loop {
        let done = scalar(&pool, "SELECT COUNT(*) FROM items WHERE state = 'done'").await;
        let lead: Option<String> =
            sqlx::query_scalar("SELECT owner FROM runs WHERE status = 'running'")
                .fetch_optional(&pool)
                .await
                .unwrap();
        let helping = scalar(&pool, "SELECT COUNT(*) FROM runs WHERE status = 'helping'").await;
        if done >= 1_000 && helping >= 1 {
            break lead.expect("a leading run while items are done");
        }
        assert!(
            Instant::now() < deadline,
            "the run did not get going on several nodes: {done} done, {helping} helping\n{}",
            tails(&env)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lead_pid: u32 = lead_owner.rsplit(':').next().unwrap().parse().unwrap();
    let victim = nodes
        .iter()
        .position(|n| n.child.as_ref().is_some_and(|c| c.id() == lead_pid))
        .unwrap_or_else(|| panic!("the leading run's owner {lead_owner} is none of the nodes"));
    let lead_run: String = sqlx::query_scalar("SELECT run_id FROM runs WHERE status = 'running'")
        .fetch_one(&pool)
        .await
        .unwrap();
    send_signal(nodes[victim].child.as_ref().unwrap(), "KILL");
    let _ = nodes[victim].child.take().unwrap().wait();
    // What the dead node held when it died.
    let held: Vec<String> = sqlx::query(
        "SELECT i.item_key FROM items i JOIN runs r ON r.run_id = i.lease_owner \
         WHERE r.owner = $1 AND i.state IN ('leased', 'pending', 'failed', 'deferred')",
    )
    .bind(&lead_owner)
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect();

    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = scalar(
            &pool,
            "SELECT COUNT(*) FROM items WHERE state IN ('done', 'skipped')",
        )
        .await;
        let running = scalar(
            &pool,
            "SELECT COUNT(*) FROM runs WHERE status IN ('running', 'helping') \
             AND heartbeat_at > (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT - 3000",
        )
        .await;
        // The dead leader's run is retired by the node that takes its discovery over.
        let retired = scalar(
            &pool,
            &format!(
                "SELECT COUNT(*) FROM runs WHERE run_id = '{lead_run}' AND status <> 'running'"
            ),
        )
        .await;
        if done == RECORDINGS as i64 && running == 0 && retired == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the survivors did not finish: {done} of {RECORDINGS} done, {running} runs live, \
             dead leader's run retired: {retired}\n{}",
            tails(&env)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The ledger: every recording done once, nothing else left.
    let states: Vec<(String, i64)> =
        sqlx::query("SELECT state, COUNT(*) FROM items GROUP BY state ORDER BY state")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    // A recording the dead node stored before it could record so is found stored by the
    // node that takes it over: skipped as already archived, not fetched again.
    let count = |state: &str| {
        states
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(
        count("done") + count("skipped"),
        RECORDINGS as i64,
        "{states:?}"
    );
    assert!(count("skipped") <= 16, "{states:?}");
    let skipped_why: Vec<String> =
        sqlx::query_scalar("SELECT result FROM items WHERE state = 'skipped'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(
        skipped_why.iter().all(|r| r.contains("already archived")),
        "{skipped_why:?}"
    );
    // The dead node's leased items were finished by the other nodes.
    for key in &held {
        let by: String = sqlx::query_scalar(
            "SELECT r.owner FROM items i JOIN runs r ON r.run_id = i.run_id WHERE i.item_key = $1",
        )
        .bind(key)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_ne!(by, lead_owner, "{key} was finished by the node that died");
    }
    // Its discovery was taken over: a later run led the pipeline to the end.
    let later_leads = scalar(
        &pool,
        &format!(
            "SELECT COUNT(*) FROM runs WHERE run_id <> '{lead_run}' AND status = 'completed' \
             AND summary LIKE '%\"emitted\":{RECORDINGS}%'"
        ),
    )
    .await;
    assert!(
        later_leads >= 1,
        "no node led the pipeline after the leader died"
    );

    // The store: one object and one manifest per recording.
    let manifests = files(&objects, ".manifest.json");
    let media: BTreeSet<String> = files(&objects, "")
        .into_iter()
        .filter(|f| !f.ends_with(".json") && !f.contains(".cxpipe-partial"))
        .collect();
    assert_eq!(media.len(), RECORDINGS, "one object per recording");
    assert_eq!(
        manifests
            .iter()
            .filter(|m| !m.contains("/reports/"))
            .count(),
        RECORDINGS,
        "one manifest per object"
    );
    // The simulator: each recording streamed once, plus at most the streams the dead
    // node had in flight (cut by the kill, never stored).
    let stats = sim.get_json("/_sim/stats");
    let streams = stats["media_streams"].as_u64().unwrap();
    assert!(
        (RECORDINGS as u64..=RECORDINGS as u64 + 16).contains(&streams),
        "media streams {streams} for {RECORDINGS} recordings: {stats:#}"
    );
    // The shared budget held: three nodes together stayed within the server's rate. The
    // issue's bar is one 429 per window; this holds them to one per ten windows (it
    // measured 0 in 92). With a budget per node instead, the same run met 50 in 89: each
    // node paces at the whole rate and only 429 pauses hold the three back.
    let windows = started.elapsed().as_secs() + 1;
    let throttled = stats["throttled_429"].as_u64().unwrap();
    assert!(
        throttled * 10 <= windows,
        "{throttled} 429s in {windows} one-second windows: {stats:#}"
    );
    // /status of a survivor lists the nodes, the dead one with a stale heartbeat.
    let alive = nodes.iter().find(|n| n.child.is_some()).unwrap();
    let status = alive.status().await;
    let listed = status["nodes"].as_array().cloned().unwrap_or_default();
    assert!(listed.len() >= 2, "{status:#}");
    let dead = listed.iter().find(|n| n["node"] == lead_owner.as_str());
    if let Some(dead) = dead {
        assert!(
            dead["heartbeat_age_secs"].as_f64().unwrap() > 1.0,
            "{status:#}"
        );
        assert_eq!(dead["leases"], 0, "{status:#}");
    }
    pool.close().await;
    drop(nodes);
    schema.drop().await;
}

/// Two nodes share a slow run; one is drained with `cxpipe node drain`: it stops taking
/// items at once (those in flight finish), starts nothing new, says so on `/status`, and
/// the other node finishes the rest, each recording once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_takes_no_new_work_and_the_other_finishes_it() {
    const N: usize = 240;
    let Some(server) = server_url("a_drained_node_takes_no_new_work") else {
        return;
    };
    let schema = Schema::create(&server).await;
    let mut faults = SimConfig::default().without_faults().faults;
    // 64 KiB at 128 KiB/s: each item waits half a second on its stream.
    faults.media_bytes_per_sec = 128 * 1024;
    let sim = Sim::start(SimConfig {
        seed: 13,
        recordings: N,
        sizes: SizeDistribution {
            min: 64 * 1024,
            max: 64 * 1024,
            log_uniform: false,
        },
        archived_share: 0.0,
        expired_share: 0.0,
        newest_at: chrono::Utc::now().timestamp() - 600,
        span: Duration::from_secs(5 * 24 * 3600),
        faults,
        ..SimConfig::default().without_faults()
    });
    let env = TestEnv::new();
    let objects = write_config(&env, &sim, "params = { processing_poll = \"1s\" }\n");
    let nodes = start_nodes(&env, &schema, 2);
    let pool = pool(&schema).await;
    assert_eq!(nodes[0].run_now("download", "acme").await, 202);

    // Both nodes at work.
    let drained = nodes[1].status().await["node"]
        .as_str()
        .expect("a cluster node names itself on /status")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let leases = scalar(
            &pool,
            &format!(
                "SELECT COUNT(*) FROM items i JOIN runs r ON r.run_id = i.lease_owner \
                 WHERE r.owner = '{drained}' AND i.state = 'leased'"
            ),
        )
        .await;
        if leases > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 1 never took items\n{}",
            tails(&env)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ran = env.cxpipe(&["node", "drain", &drained, "--ledger", &schema.url]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.stdout.contains(&drained), "{}", ran.stdout);

    // Within a few heartbeats: draining, no run, no lease; and it refuses new runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = nodes[1].status().await;
        let entry = &status["pipelines"][0];
        let listed = status["nodes"].as_array().cloned().unwrap_or_default();
        let me = listed.iter().find(|n| n["node"] == drained.as_str());
        if status["draining"] == true
            && entry["running"].is_null()
            && me.is_some_and(|n| n["draining"] == true && n["leases"] == 0 && n["runs"] == 0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 1 did not drain: {status:#}\n{}",
            tails(&env)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(nodes[1].run_now("download", "acme").await, 409);
    let done_when_drained = scalar(
        &pool,
        &format!(
            "SELECT COUNT(*) FROM items i JOIN runs r ON r.run_id = i.run_id \
             WHERE r.owner = '{drained}' AND i.state IN ('done', 'skipped')"
        ),
    )
    .await;

    // The other node finishes everything.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let finished = scalar(&pool, "SELECT COUNT(*) FROM items WHERE state = 'done'").await;
        if finished == N as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{finished} of {N} done after the drain\n{}",
            tails(&env)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = scalar(
        &pool,
        &format!(
            "SELECT COUNT(*) FROM items i JOIN runs r ON r.run_id = i.run_id \
             WHERE r.owner = '{drained}' AND i.state IN ('done', 'skipped')"
        ),
    )
    .await;
    assert_eq!(
        after, done_when_drained,
        "the drained node finished nothing more"
    );
    let media = files(&objects, "")
        .into_iter()
        .filter(|f| !f.ends_with(".json"))
        .count();
    assert_eq!(media, N);
    // Items in flight at the drain finished there and were not fetched again (each item
    // done at its first attempt). A stream may still be counted twice when a request is
    // retried on a new connection after a transport error: at most one per item the
    // drained node had in hand.
    let streams = sim.get_json("/_sim/stats")["media_streams"]
        .as_u64()
        .unwrap();
    assert!(
        (N as u64..=N as u64 + 4).contains(&streams),
        "{streams} streams"
    );
    let again = scalar(&pool, "SELECT COUNT(*) FROM items WHERE attempts <> 1").await;
    assert_eq!(again, 0, "every item done at its first attempt");
    let listed = env.cxpipe(&["node", "ls", "--ledger", &schema.url]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with(drained.as_str()) && l.ends_with("draining")),
        "{}",
        listed.stdout
    );
    pool.close().await;
    drop(nodes);
    schema.drop().await;
}
