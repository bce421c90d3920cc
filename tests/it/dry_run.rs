//! `cxpipe run --dry-run`: reads go through, mutating calls and store writes are recorded
//! and listed instead of made, the real ledger is left as it was (a later real run does
//! the work), checked against the simulator's own counters.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cxpipe::sim::{Faults, SimConfig};
use serde_json::Value;

use crate::harness::{Ran, Sim, TestEnv};

const RETENTION: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scripts/retention_lifecycle.rhai"
);
const POLICY_DAYS: u64 = 365;

fn write_config(env: &TestEnv, sim: &Sim) -> PathBuf {
    env.write("secrets/client_secret", &sim.credentials.client_secret);
    env.write(
        "cxpipe.toml",
        &format!(
            r#"
[tenants.sim]
base_url = "{}"
auth = {{ kind = "client_credentials", token_url = "/api/v2/oauth/token", client_id = "{}", client_secret = {{ file = "secrets/client_secret" }} }}
[tenants.sim.params]
poll_every = "300ms"
job_timeout = "60s"
[storage.default]
uri = "fs://{}"
"#,
            sim.base_url,
            sim.credentials.client_id,
            env.path().join("objects").display()
        ),
    )
}

fn run(env: &TestEnv, script: &Path, config: &Path, dry: bool) -> Ran {
    let mut extra = vec!["--config", config.to_str().unwrap(), "--tenant", "sim"];
    if dry {
        extra.push("--dry-run");
    }
    env.run(script, &extra)
}

/// Requests the simulator answered, by `METHOD /route`.
fn requests(sim: &Sim) -> serde_json::Map<String, Value> {
    sim.get_json("/_sim/stats")["requests"]
        .as_object()
        .unwrap()
        .clone()
}

fn mutating_requests(sim: &Sim) -> Vec<String> {
    requests(sim)
        .keys()
        .filter(|route| !route.starts_with("GET ") && route.as_str() != "POST /api/v2/oauth/token")
        .cloned()
        .collect()
}

fn truth(sim: &Sim) -> Vec<Value> {
    sim.get_json("/_sim/truth/retention?limit=1000")["recordings"]
        .as_array()
        .unwrap()
        .clone()
}

/// Ids of the completed recordings the lifecycle acts on (first of each duplicate group,
/// with a duration and a size), and those among them whose retention differs (a PUT).
fn eligible(truth: &[Value]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut groups = BTreeSet::new();
    let (mut acted, mut put) = (BTreeSet::new(), BTreeSet::new());
    for rec in truth.iter().filter(|r| r["status"] == "completed") {
        let id = rec["id"].as_str().unwrap().to_string();
        let group = rec["duplicateOf"].as_str().unwrap_or(&id).to_string();
        if !groups.insert(group) || rec["duration"] == 0 || rec["fileSize"] == 0 {
            continue;
        }
        if rec["initialRetentionDays"].as_u64() != Some(POLICY_DAYS) {
            put.insert(id.clone());
        }
        acted.insert(id);
    }
    (acted, put)
}

fn changes<'a>(out: &'a Value, kind: &str) -> Vec<&'a Value> {
    out["dry_run"]["changes"]
        .as_array()
        .expect("a dry run lists its changes")
        .iter()
        .filter(|c| c["kind"] == "api" && c["method"] == kind || c["kind"] == kind)
        .collect()
}

/// Regular files anywhere under `dir` (a store may make empty folders when it opens).
fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.path().is_dir() {
            true => files_under(&e.path()),
            false => 1,
        })
        .sum()
}

#[test]
fn dry_run_of_the_retention_lifecycle_changes_nothing_and_lists_its_puts_then_a_real_run_does_them()
{
    let sim = Sim::start(SimConfig {
        seed: 11,
        recordings: 40,
        processing_share: 0.0,
        faults: Faults {
            job_duration: Duration::from_millis(300),
            ..Faults::none()
        },
        ..SimConfig::default()
    });
    let env = TestEnv::new();
    let config = write_config(&env, &sim);
    let before = truth(&sim);
    let (acted, put) = eligible(&before);
    assert!(
        put.len() >= 5,
        "the dataset has retentions to change: {put:?}"
    );

    let dry = run(&env, Path::new(RETENTION), &config, true);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    let out = dry.json();
    assert_eq!(
        mutating_requests(&sim),
        Vec::<String>::new(),
        "nothing sent"
    );
    assert_eq!(truth(&sim), before, "no retention set, no job submitted");
    assert!(
        requests(&sim).contains_key("GET /api/v2/recordings"),
        "reads went through"
    );
    let puts: BTreeSet<String> = changes(&out, "PUT")
        .iter()
        .map(|c| {
            let path = c["path"].as_str().unwrap();
            let id = path
                .strip_prefix("/api/v2/recordings/")
                .and_then(|p| p.strip_suffix("/retention"))
                .unwrap_or_else(|| panic!("not a retention PUT: {c}"));
            assert!(
                c["body"]
                    .as_str()
                    .unwrap()
                    .contains("\"retentionDays\":365"),
                "{c}"
            );
            id.to_string()
        })
        .collect();
    assert_eq!(puts, put, "every retention PUT a real run would send, once");
    assert_eq!(
        changes(&out, "POST").len(),
        acted.len(),
        "one archival job each"
    );
    let writes: Vec<&str> = changes(&out, "write")
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    let run_id = out["summary"]["run_id"].as_str().unwrap();
    let report = format!("reports/retention/{run_id}.json");
    assert_eq!(
        writes,
        [report.clone(), format!("{report}.manifest.json")],
        "the governance report and its manifest"
    );
    assert_eq!(
        files_under(&env.path().join("objects")),
        0,
        "nothing stored"
    );
    assert!(
        !env.state_dir().join("ledger.sqlite").exists(),
        "the real ledger is not created by a dry run"
    );

    let real = run(&env, Path::new(RETENTION), &config, false);
    assert_eq!(real.code, 0, "{}\n{}", real.stdout, real.stderr);
    let after = truth(&sim);
    for rec in &after {
        let id = rec["id"].as_str().unwrap();
        let applied = rec["retentionApplied"].as_u64().unwrap();
        let attempted = applied + rec["retentionRefused"].as_u64().unwrap();
        assert_eq!(attempted, u64::from(put.contains(id)), "{rec}");
    }
    assert_eq!(real.json()["summary"]["emitted"], out["summary"]["emitted"]);

    // The dry run's ledger copy knows what the real run did: nothing left to change.
    let again = run(&env, Path::new(RETENTION), &config, true);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    let out = again.json();
    assert_eq!(changes(&out, "PUT").len(), 0, "{}", again.stdout);
    assert_eq!(changes(&out, "POST").len(), 0, "{}", again.stdout);
    assert_eq!(truth(&sim), after);
}

#[test]
fn dry_run_sends_queries_and_records_posts_and_store_writes() {
    let sim = Sim::start(SimConfig {
        recordings: 5,
        interactions: 5,
        ..SimConfig::default().without_faults()
    });
    let env = TestEnv::new();
    let config = write_config(&env, &sim);
    let script = env.write(
        "probe.rhai",
        r#"
fn discover(ctx) { ctx.emit("one", #{}); }
fn process(ctx, item) {
    let body = #{ "type": "interaction", filter: "", orderBy: "updatedTime desc", pageSize: 2 };
    let found = ctx.api.query("/api/v2/interactions/query", body);
    let answer = ctx.api.post("/api/v2/interactions/query", body);
    if !ctx.api.dry_run || answer.dry_run != true { throw `not a dry run: ${answer}`; }
    ctx.api.delete(["api", "v2", "webhooks", "w 1"]);
    let walked = 0;
    for ix in ctx.api.paginate("/api/v2/interactions/query", #{ method: "POST", style: "cursor",
            body: body, items: "interactions", next: "pagination.next_page",
            param: "page_token", param_in: "body" }) { walked += 1; }
    if walked != 5 { throw #{ message: `paginate walked ${walked} of 5`, retryable: false }; }
    ctx.store.write_json("index.json", #{ n: 1 });
    let receipt = from_json(#{ a: 1 }).sha256().write(ctx.store, "data/a.json");
    #{ found: type_of(found), stored: receipt.bytes_stored }
}
"#,
    );
    let ran = run(&env, &script, &config, true);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let out = ran.json();
    let routes = requests(&sim);
    assert_eq!(
        routes.get("POST /api/v2/interactions/query"),
        Some(&Value::from(1 + 3)),
        "the query and the 3 pages were sent, the post was not: {routes:?}"
    );
    let api: Vec<(String, String)> = out["dry_run"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "api")
        .map(|c| {
            (
                c["method"].as_str().unwrap().to_string(),
                c["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        api,
        [
            ("POST".into(), "/api/v2/interactions/query".into()),
            ("DELETE".into(), "/api/v2/webhooks/w%201".into())
        ]
    );
    let writes: BTreeSet<&str> = changes(&out, "write")
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        writes,
        BTreeSet::from([
            "index.json",
            "index.json.manifest.json",
            "data/a.json",
            "data/a.json.manifest.json"
        ])
    );
    assert_eq!(out["dry_run"]["counts"]["write"], 4);
    assert_eq!(
        files_under(&env.path().join("objects")),
        0,
        "nothing stored"
    );

    let human = env.cxpipe(&[
        "run",
        script.to_str().unwrap(),
        "--state",
        env.state_dir().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--tenant",
        "sim",
        "--dry-run",
    ]);
    assert_eq!(human.code, 0, "{}\n{}", human.stdout, human.stderr);
    assert!(
        human
            .stdout
            .contains("dry run: nothing was sent or stored; 6 change(s) would have been made"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("  DELETE /api/v2/webhooks/w%201"),
        "{}",
        human.stdout
    );
}
