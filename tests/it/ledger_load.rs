//! The ledger under ordinary load (issue 14, defect 0): many workers writing items, kv and
//! audit events at once must never fail with "database is locked", run after run, and
//! every audit event must be in the ledger.

use crate::harness::TestEnv;

const BUSY: &str = r#"
const OPTIONS = #{ concurrency: 16, max_attempts: 1 };
fn discover(ctx) { for i in 0..1500 { ctx.emit(`rec-${ctx.params.round}-${i}`, i); } }
fn process(ctx, n) {
    ctx.kv.set(`seen-${ctx.params.round}-${n}`, n);
    ctx.audit("RECORDING_ARCHIVED", #{ n: n });
    ctx.kv.set(`seen-${ctx.params.round}-${n}`, n + 1);
    ctx.audit("MANIFEST_WRITTEN", #{ n: n });
    n
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_writers_never_lock_the_ledger_and_no_audit_event_is_lost() {
    let env = TestEnv::new();
    let script = env.write("busy.rhai", BUSY);
    for round in 0..4 {
        let ran = env.run(&script, &["--param", &format!("round={round}")]);
        assert!(
            !ran.stderr.contains("database is locked"),
            "round {round}: {}",
            ran.stderr
        );
        assert_eq!(ran.code, 0, "round {round}: {}", ran.stderr);
        let s = &ran.json()["summary"];
        assert_eq!(s["done"].as_u64(), Some(1500), "round {round}: {s}");
        let ledger = cxpipe::ledger::Ledger::open_dir(&env.state_dir())
            .await
            .unwrap();
        let audit = ledger
            .audit_of_run(s["run_id"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!(
            audit.len(),
            3000,
            "round {round}: every audit event is stored"
        );
        for pair in audit.windows(2) {
            assert_eq!(pair[1].prev_hash, pair[0].hash, "round {round}: chain");
        }
    }
}
