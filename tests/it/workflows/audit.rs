//! `cxpipe audit export` and `cxpipe audit verify` on a ledger written by a real run:
//! every entry exported as a JSON line (filtered by tenant and time, to stdout or a store),
//! and verify failing with the first broken link after a row of the SQLite ledger is
//! edited, deleted or moved.

use std::path::Path;

use serde_json::Value;

use crate::harness::TestEnv;

const SCRIPT: &str = r#"
fn discover(ctx) {
    for i in 0..6 { ctx.emit(`rec-${i}`, #{ n: i }); }
}
fn process(ctx, item) {
    ctx.audit("RETENTION_APPLIED", #{ recordingId: ctx.item_key, days: 365 + item.n });
    #{ ok: true }
}
"#;

/// A ledger holding six audit entries written by a run of tenant `default`.
fn audited_env() -> TestEnv {
    let env = TestEnv::new();
    let script = env.write("audited.rhai", SCRIPT);
    let ran = env.run(&script, &[]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    env
}

fn state_args(env: &TestEnv) -> Vec<String> {
    vec!["--state".into(), env.state_dir().to_str().unwrap().into()]
}

fn audit(env: &TestEnv, args: &[&str]) -> crate::harness::Ran {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    let state = state_args(env);
    all.extend(state.iter().map(String::as_str));
    env.cxpipe(&all)
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Runs SQL against the test's SQLite ledger.
fn sql(env: &TestEnv, statements: &[&str]) {
    let path = env.state_dir().join("ledger.sqlite");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use sqlx::Connection as _;
            let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            for s in statements {
                sqlx::query(sqlx::AssertSqlSafe(s.to_string()))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            conn.close().await.unwrap();
        });
}

#[test]
fn audit_export_writes_every_entry_as_a_json_line_filtered_by_tenant_and_time() {
    let env = audited_env();
    let all = audit(&env, &["export"]);
    assert_eq!(all.code, 0, "{}", all.stderr);
    let entries = lines(&all.stdout);
    assert_eq!(entries.len(), 6);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1);
        assert_eq!(e["kind"], "RETENTION_APPLIED");
        assert_eq!(e["hash"].as_str().unwrap().len(), 64);
        assert!(e["time"].as_str().unwrap().ends_with('Z'), "{e}");
        if i > 0 {
            assert_eq!(
                e["prev_hash"],
                entries[i - 1]["hash"],
                "lines keep the chain"
            );
        }
    }
    let mut ids: Vec<&str> = entries
        .iter()
        .map(|e| e["data"]["recordingId"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["rec-0", "rec-1", "rec-2", "rec-3", "rec-4", "rec-5"]);

    let tenant = entries[0]["tenant"].as_str().unwrap().to_string();
    assert_eq!(
        lines(&audit(&env, &["export", "--tenant", &tenant]).stdout).len(),
        6
    );
    assert!(
        audit(&env, &["export", "--tenant", "someone-else"])
            .stdout
            .is_empty()
    );
    assert_eq!(
        lines(&audit(&env, &["export", "--since", "1h"]).stdout).len(),
        6
    );
    assert!(
        audit(&env, &["export", "--since", "2999-01-01"])
            .stdout
            .is_empty()
    );
    let bad = audit(&env, &["export", "--since", "last tuesday"]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("--since"), "{}", bad.stderr);

    // Into a store: one object with a manifest, never overwritten.
    let store = format!("fs://{}", env.path().join("exports").display());
    let to = audit(
        &env,
        &["export", "--to", &store, "--key", "audit/all.jsonl"],
    );
    assert_eq!(to.code, 0, "{}", to.stderr);
    let object = env.path().join("exports/audit/all.jsonl");
    assert_eq!(std::fs::read_to_string(&object).unwrap(), all.stdout);
    assert!(Path::new(&format!("{}.manifest.json", object.display())).exists());
    let again = audit(
        &env,
        &["export", "--to", &store, "--key", "audit/all.jsonl"],
    );
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
}

#[test]
fn audit_verify_passes_on_an_intact_chain_and_names_the_first_broken_link() {
    let cases: [(&str, &[&str], &str); 3] = [
        (
            "edited",
            &["UPDATE audit SET data = '{\"days\":1}' WHERE seq = 4"],
            "seq 4",
        ),
        ("removed", &["DELETE FROM audit WHERE seq = 3"], "seq 4"),
        (
            "reordered",
            &[
                "UPDATE audit SET seq = -1 WHERE seq = 2",
                "UPDATE audit SET seq = 2 WHERE seq = 5",
                "UPDATE audit SET seq = 5 WHERE seq = -1",
            ],
            "seq 2",
        ),
    ];
    for (what, statements, first_broken) in cases {
        let env = audited_env();
        let ok = audit(&env, &["verify"]);
        assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
        assert!(ok.stderr.contains("intact: 6 entries"), "{}", ok.stderr);
        sql(&env, statements);
        let broken = audit(&env, &["verify"]);
        assert_eq!(broken.code, 1, "{what}: {}{}", broken.stdout, broken.stderr);
        assert!(
            broken.stdout.starts_with("BROKEN audit entry ")
                && broken.stdout.contains(first_broken),
            "{what}: {}",
            broken.stdout
        );
        let json: Value = serde_json::from_str(&audit(&env, &["verify", "--json"]).stdout).unwrap();
        assert_eq!(
            json["broken"]["seq"].as_i64().unwrap().to_string(),
            first_broken[4..]
        );
    }
}

#[test]
fn audit_verify_with_an_anchor_catches_entries_cut_off_the_end() {
    let env = audited_env();
    let report: Value = serde_json::from_str(&audit(&env, &["verify", "--json"]).stdout).unwrap();
    let head = report["head_hash"].as_str().unwrap().to_string();
    assert_eq!(audit(&env, &["verify", "--anchor", &head]).code, 0);
    sql(&env, &["DELETE FROM audit WHERE seq = 6"]);
    assert_eq!(
        audit(&env, &["verify"]).code,
        0,
        "a chain cannot see its own tail cut"
    );
    let cut = audit(&env, &["verify", "--anchor", &head]);
    assert_eq!(cut.code, 1, "{}{}", cut.stdout, cut.stderr);
    assert!(cut.stdout.contains("MISSING anchor"), "{}", cut.stdout);
}
