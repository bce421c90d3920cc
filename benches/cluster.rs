//! Scale-out of `cxpipe serve` on one PostgreSQL ledger (issue 12): items per second with
//! 1, 2 and 3 nodes on the same work. The real binary serves the seed-002 download
//! pipeline against an in-process simulator without faults and without rate limits whose
//! media streams are capped per stream (`BENCH_STREAM_KIB_S`, default 64 KiB/s: about a
//! second per recording), so an item waits on the network rather than on CPU. Each round
//! starts N nodes on a fresh database (created, and dropped after, on the server
//! `CXPIPE_TEST_POSTGRES_URL` names), waits until every node is registered, asks node 0 to
//! run now, and times from the run-now to every recording done or skipped in the ledger.
//! Node counts alternate (1,2,3 then 3,2,1) over `BENCH_ROUNDS` rounds (default 2); the
//! table gives medians, the ratios to one node, and where the limit is: database
//! transactions per item (the database's `pg_stat_database` commit + rollback delta, minus
//! the bench's own queries), the claim batch, the nodes' CPU (user + system from
//! `/proc/PID/stat`), the machine's busy share (`/proc/stat`) and when each node finished
//! its first item. `BENCH_RECORDINGS` (default 600, ~64 KiB each), `BENCH_CONCURRENCY`
//! (workers per node, default 16), `BENCH_CLAIM_BATCH` (default 16) and
//! `BENCH_HEARTBEAT_MS` (default 500; a node starts helping on its next heartbeat after
//! items appear; the lease is 10 s) change the work. The aim: at least 2.5× at
//! three nodes. Results: docs/PERFORMANCE.md.
//! Run: `export CXPIPE_TEST_POSTGRES_URL="$(bash .ci/postgres.sh)"` then
//! `cargo bench --profile dev --bench cluster`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cxpipe::sim::{SimConfig, SimServer, SizeDistribution};
use sqlx::{Connection, PgConnection, Row};

const TOKEN: &str = "bench-token-0123456789abcdef";
const NODE_COUNTS: [usize; 3] = [1, 2, 3];

/// What the bench was asked to do.
struct Params {
    recordings: usize,
    rounds: usize,
    concurrency: usize,
    claim_batch: usize,
    heartbeat_ms: usize,
    stream_bytes_per_sec: u64,
}

/// A `cxpipe serve` node; killed when dropped.
struct Node {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A database of its own for one round, dropped (with its connections) afterwards.
struct Database {
    server: String,
    name: String,
    url: String,
}

impl Database {
    async fn create(server: &str) -> Database {
        let name = format!("cxpipe_bench_{}", uuid::Uuid::new_v4().simple());
        admin(server, &format!("CREATE DATABASE {name}")).await;
        let mut url = reqwest::Url::parse(server)
            .unwrap_or_else(|e| panic!("CXPIPE_TEST_POSTGRES_URL is not a URL: {e}"));
        url.set_path(&name);
        Database {
            server: server.to_string(),
            url: url.to_string(),
            name,
        }
    }

    async fn drop(self) {
        admin(
            &self.server,
            &format!("DROP DATABASE {} WITH (FORCE)", self.name),
        )
        .await;
    }
}

async fn admin(server: &str, sql: &str) {
    let mut conn = PgConnection::connect(server)
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", redact(server)));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "(not a URL)".to_string(),
    }
}

/// Writes the nodes' shared configuration into `dir`.
fn write_config(dir: &Path, sim: &SimServer, params: &Params) {
    let creds = sim.credentials();
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    std::fs::write(dir.join("acme"), &creds.client_secret).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/download_recordings.rhai");
    let config = format!(
        "[serve]\ntoken = {{ file = \"token\" }}\ngrace = \"5s\"\n\
         cluster = \"on\"\nlease = \"10s\"\n\
         heartbeat = \"{heartbeat}ms\"\nclaim_batch = {batch}\n\n\
         [storage.default]\nuri = \"fs://{objects}\"\n\n\
         [tenants.acme]\nbase_url = \"{base}\"\n\
         auth = {{ kind = \"client_credentials\", token_url = \"/api/v2/oauth/token\", \
         client_id = \"{client}\", client_secret = {{ file = \"acme\" }} }}\n\
         params = {{ page_size = 500 }}\n\n\
         [pipelines.download]\nscript = \"{script}\"\ntenants = [\"acme\"]\n\
         concurrency = {concurrency}\n",
        batch = params.claim_batch,
        heartbeat = params.heartbeat_ms,
        objects = dir.join("objects").display(),
        base = sim.base_url(),
        client = creds.client_id,
        script = script.display(),
        concurrency = params.concurrency,
    );
    std::fs::write(dir.join("cxpipe.toml"), config).unwrap();
}

/// Starts node `i` in `dir` on the ledger at `ledger`; its log goes to `node-I.log`.
fn start_node(dir: &Path, i: usize, ledger: &str) -> Node {
    let log = dir.join(format!("node-{i}.log"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_cxpipe"))
        .current_dir(dir)
        .args(["serve", "--config", "cxpipe.toml"])
        .args(["--state", &format!("state-{i}")])
        .args(["--ledger", ledger])
        .args(["--listen", "127.0.0.1:0"])
        .env("CXPIPE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
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
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("node {i} did not print its URL\n{}", tail(&log)));
    Node { child, url, log }
}

/// The last lines of a node's log, for failure messages.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "--- {}\n{}",
        log.display(),
        lines[lines.len().saturating_sub(20)..].join("\n")
    )
}

fn tails(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| tail(&n.log))
        .collect::<Vec<_>>()
        .join("\n")
}

/// CPU seconds (user + system) a live process has used, from `/proc/PID/stat`.
fn process_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat: {e}"));
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// The machine's (busy, total) CPU ticks over all cores, from `/proc/stat`.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    let total: u64 = cpu.iter().sum();
    // idle + iowait are the idle ticks.
    (total - cpu[3] - cpu.get(4).copied().unwrap_or(0), total)
}

/// The database's committed + rolled-back transactions so far, as its statistics show
/// them (one transaction on `conn` itself). A backend flushes its counts at most once a
/// second while busy, ten seconds after going idle, and when it exits.
async fn transactions(conn: &mut PgConnection, db: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT (xact_commit + xact_rollback)::BIGINT FROM pg_stat_database WHERE datname = $1",
    )
    .bind(db)
    .fetch_one(&mut *conn)
    .await
    .expect("reading pg_stat_database")
}

/// The database's transaction count once every other connection has ended (their
/// backends flush their counts on exit): read until it stops moving, bounded.
async fn settled_transactions(url: &str, db: &str) -> i64 {
    let mut conn = PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", redact(url)));
    let mut last = transactions(&mut conn, db).await;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = transactions(&mut conn, db).await;
        // Our own reads may add one each.
        if now - last <= 1 {
            break;
        }
        last = now;
    }
    let _ = conn.close().await;
    last
}

/// One round's measurements.
struct Round {
    nodes: usize,
    secs: f64,
    transactions: i64,
    node_cpu_secs: f64,
    machine_busy: f64,
    per_node: Vec<i64>,
    /// Seconds from the run-now to each node's first finished item.
    first_done: Vec<f64>,
    skipped: i64,
}

impl Round {
    fn items_per_sec(&self, recordings: usize) -> f64 {
        recordings as f64 / self.secs
    }
}

async fn round(server: &str, sim: &SimServer, params: &Params, n: usize) -> Round {
    let db = Database::create(server).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), sim, params);
    let mut nodes: Vec<Node> = (0..n).map(|i| start_node(dir.path(), i, &db.url)).collect();
    let mut conn = PgConnection::connect(&db.url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", redact(&db.url)));
    // Every node registered (and so claiming) before the run starts.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let registered: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM nodes")
            .fetch_one(&mut conn)
            .await
            .unwrap_or(0);
        if registered == n as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{registered} of {n} nodes registered\n{}",
            tails(&nodes)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The bench's own transactions from here on, subtracted from the database's count.
    // Nodes flush their counts at most once a second (ten seconds when a connection is
    // idle), so this undercounts what they did before by at most those unflushed seconds
    // of idle heartbeats (a few transactions a second per node).
    let before = transactions(&mut conn, &db.name).await;
    let mut queries = 1u64;
    let cpu_before: Vec<f64> = nodes
        .iter()
        .map(|n| process_cpu_secs(n.child.id()))
        .collect();
    let machine_before = machine_ticks();

    let client = reqwest::Client::new();
    let started = Instant::now();
    let started_ms = chrono::Utc::now().timestamp_millis();
    let answer = client
        .post(format!(
            "{}/pipelines/download/run?tenant=acme",
            nodes[0].url
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("run-now answers");
    assert_eq!(answer.status(), 202, "run-now on node 0");
    let deadline = started + Duration::from_secs(1800);
    let (finished, skipped) = loop {
        queries += 1;
        let row = sqlx::query(
            "SELECT COUNT(*) FILTER (WHERE state IN ('done', 'skipped')), \
             COUNT(*) FILTER (WHERE state = 'skipped') FROM items",
        )
        .fetch_one(&mut conn)
        .await
        .expect("counting items");
        let (finished, skipped): (i64, i64) = (row.get(0), row.get(1));
        if finished >= params.recordings as i64 {
            break (started.elapsed(), skipped);
        }
        assert!(
            Instant::now() < deadline,
            "{finished} of {} recordings finished after {:?}\n{}",
            params.recordings,
            started.elapsed(),
            tails(&nodes)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let machine_after = machine_ticks();
    let node_cpu_secs: f64 = nodes
        .iter()
        .zip(&cpu_before)
        .map(|(n, before)| process_cpu_secs(n.child.id()) - before)
        .sum();
    // Which node finished how many items (a run's owner is "host:pid").
    let pids: Vec<u32> = nodes.iter().map(|n| n.child.id()).collect();
    queries += 1;
    let owners: Vec<(String, i64, i64)> = sqlx::query(
        "SELECT r.owner, COUNT(*), MIN(i.updated_at) FROM items i \
         JOIN runs r ON r.run_id = i.run_id \
         WHERE i.state IN ('done', 'skipped') GROUP BY r.owner",
    )
    .fetch_all(&mut conn)
    .await
    .expect("items per node")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect();
    // (items, seconds from the run-now to the first) per node.
    let (per_node, first_done): (Vec<i64>, Vec<f64>) = pids
        .iter()
        .map(|pid| {
            let pid = pid.to_string();
            let mine = owners
                .iter()
                .filter(|(o, _, _)| o.rsplit(':').next() == Some(pid.as_str()));
            mine.fold((0, f64::INFINITY), |(n, first), (_, c, at)| {
                (n + c, first.min((at - started_ms) as f64 / 1000.0))
            })
        })
        .unzip();
    assert_eq!(
        per_node.iter().sum::<i64>(),
        params.recordings as i64,
        "every finished item belongs to one of the nodes: {owners:?}"
    );
    nodes.clear();
    let _ = conn.close().await;
    let after = settled_transactions(&db.url, &db.name).await;
    db.drop().await;
    let busy = (machine_after.0 - machine_before.0) as f64;
    let total = (machine_after.1 - machine_before.1).max(1) as f64;
    Round {
        nodes: n,
        secs: finished.as_secs_f64(),
        transactions: after - before - queries as i64,
        node_cpu_secs,
        machine_busy: busy / total,
        per_node,
        first_done,
        skipped,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 0 {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

fn main() {
    let Some(server) = std::env::var("CXPIPE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!(
            "SKIPPED the cluster bench: it needs PostgreSQL; set CXPIPE_TEST_POSTGRES_URL, \
             e.g. export CXPIPE_TEST_POSTGRES_URL=\"$(bash .ci/postgres.sh)\""
        );
        return;
    };
    let env_usize = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: a number")))
            .unwrap_or(default)
    };
    let params = Params {
        recordings: env_usize("BENCH_RECORDINGS", 600),
        rounds: env_usize("BENCH_ROUNDS", 2).max(1),
        concurrency: env_usize("BENCH_CONCURRENCY", 16).max(1),
        claim_batch: env_usize("BENCH_CLAIM_BATCH", 16).max(1),
        heartbeat_ms: env_usize("BENCH_HEARTBEAT_MS", 500).clamp(1, 3333),
        stream_bytes_per_sec: env_usize("BENCH_STREAM_KIB_S", 64).max(1) as u64 * 1024,
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!(
        "{} recordings of ~64 KiB at {} KiB/s per stream, {} workers per node, claim batch \
         {}, heartbeat {} ms, {} rounds; load average before: {}",
        params.recordings,
        params.stream_bytes_per_sec / 1024,
        params.concurrency,
        params.claim_batch,
        params.heartbeat_ms,
        params.rounds,
        load.trim()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut config = SimConfig {
        seed: 12,
        recordings: params.recordings,
        sizes: SizeDistribution {
            min: 60_000,
            max: 70_000,
            log_uniform: false,
        },
        archived_share: 0.0,
        expired_share: 0.0,
        newest_at: chrono::Utc::now().timestamp() - 600,
        span: Duration::from_secs(5 * 24 * 3600),
        ..SimConfig::default()
    }
    .without_faults();
    config.faults.media_bytes_per_sec = params.stream_bytes_per_sec;
    let sim = rt
        .block_on(SimServer::start(config))
        .expect("simulator starts");

    let mut rounds: Vec<Round> = Vec::new();
    for r in 0..params.rounds {
        let mut order = NODE_COUNTS.to_vec();
        if r % 2 == 1 {
            order.reverse();
        }
        for n in order {
            let result = rt.block_on(round(&server, &sim, &params, n));
            eprintln!(
                "round {}: {n} node(s): {:.1} s, {:.1} items/s, {:.2} transactions/item, \
                 node CPU {:.1} s ({:.1} ms/item), machine busy {:.0} %, items per node {:?}, \
                 first item done per node at {:.1?} s, {} skipped",
                r + 1,
                result.secs,
                result.items_per_sec(params.recordings),
                result.transactions as f64 / params.recordings as f64,
                result.node_cpu_secs,
                1000.0 * result.node_cpu_secs / params.recordings as f64,
                100.0 * result.machine_busy,
                result.per_node,
                result.first_done,
                result.skipped,
            );
            rounds.push(result);
        }
    }
    rt.block_on(sim.shutdown());

    let of = |n: usize, f: &dyn Fn(&Round) -> f64| {
        median(rounds.iter().filter(|r| r.nodes == n).map(f).collect())
    };
    let recordings = params.recordings as f64;
    let one = of(1, &|r| r.items_per_sec(params.recordings));
    println!(
        "\ncluster scale-out: {} recordings of ~64 KiB, {} KiB/s per stream, {} workers per \
         node, claim batch {}, heartbeat {} ms, medians of {} rounds",
        params.recordings,
        params.stream_bytes_per_sec / 1024,
        params.concurrency,
        params.claim_batch,
        params.heartbeat_ms,
        params.rounds
    );
    println!(
        "| nodes | seconds | items/s | vs 1 node | transactions/item | node CPU ms/item | \
         node CPU s/s | machine busy | last node's first item | fewest–most items per node |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for n in NODE_COUNTS {
        let secs = of(n, &|r| r.secs);
        let rate = of(n, &|r| r.items_per_sec(params.recordings));
        let share = rounds
            .iter()
            .filter(|r| r.nodes == n)
            .map(|r| {
                format!(
                    "{}–{}",
                    r.per_node.iter().min().unwrap(),
                    r.per_node.iter().max().unwrap()
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "| {n} | {secs:.1} | {rate:.1} | {:.2}× | {:.2} | {:.1} | {:.2} | {:.0} % | {:.1} s | \
             {share} |",
            rate / one,
            of(n, &|r| r.transactions as f64 / recordings),
            of(n, &|r| 1000.0 * r.node_cpu_secs / recordings),
            of(n, &|r| r.node_cpu_secs / r.secs),
            of(n, &|r| 100.0 * r.machine_busy),
            of(n, &|r| r.first_done.iter().copied().fold(0.0, f64::max)),
        );
    }
    let three = of(3, &|r| r.items_per_sec(params.recordings)) / one;
    println!(
        "ratio 2/1: {:.2}×, 3/1: {three:.2}× ({}); load average after: {}",
        of(2, &|r| r.items_per_sec(params.recordings)) / one,
        if three >= 2.5 {
            "meets the 2.5× aim"
        } else {
            "BELOW the 2.5× aim"
        },
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
