//! The command line itself: help, version, unknown commands.

use crate::harness::cxpipe_bin;

#[test]
fn version_prints_the_crate_version() {
    let out = std::process::Command::new(cxpipe_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn items_ls_without_a_ledger_says_so_and_creates_nothing() {
    let env = crate::harness::TestEnv::new();
    let missing = env.path().join("no-such-state");
    let ran = env.cxpipe(&["items", "--state", missing.to_str().unwrap(), "ls"]);
    assert_eq!(ran.code, 2, "{}", ran.stdout);
    assert!(
        ran.stderr.contains("no ledger in") && ran.stderr.contains("no-such-state"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("cxpipe run SCRIPT --state"),
        "{}",
        ran.stderr
    );
    assert!(!missing.exists(), "nothing was created");
}

#[test]
fn ids_with_terminal_escapes_are_printed_escaped_by_items_and_the_summary() {
    let env = crate::harness::TestEnv::new();
    let script = env.write(
        "hostile.rhai",
        "const OPTIONS = #{ max_attempts: 1 };\n\
         fn discover(ctx) { ctx.emit(\"id\\x1b[2J\\nFAKE LINE\\x00\", 1); }\n\
         fn process(ctx, item) { throw \"server said \\x1b[31mred\\r\"; }\n",
    );
    let state = env.state_dir();
    let state = state.to_str().unwrap();
    let ran = env.cxpipe(&["run", script.to_str().unwrap(), "--state", state]);
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    let printed = [
        ran.stdout,
        env.cxpipe(&["items", "--state", state, "ls"]).stdout,
        env.cxpipe(&["items", "--state", state, "ls", "--status", "quarantined"])
            .stdout,
    ];
    for out in &printed {
        assert!(
            !out.contains('\u{1b}') && !out.contains('\0'),
            "raw escape: {out:?}"
        );
        assert!(!out.contains("\nFAKE LINE"), "forged line: {out:?}");
        assert!(out.contains("id\\u{1b}[2J\\nFAKE LINE\\0"), "{out:?}");
    }
    assert!(printed[0].contains("red\\r"), "{:?}", printed[0]);
}

/// A ledger with one done item (`good`) and one quarantined (`bad`); returns its folder.
fn ledger_with_good_and_bad(env: &crate::harness::TestEnv) -> String {
    let script = env.write(
        "mixed.rhai",
        "const OPTIONS = #{ max_attempts: 1 };\n\
         fn discover(ctx) { ctx.emit(\"good\", 1); ctx.emit(\"bad\", 2); }\n\
         fn process(ctx, item) { if item == 2 { throw \"no\"; } }\n",
    );
    let state = env.state_dir().to_str().unwrap().to_string();
    let ran = env.cxpipe(&["run", script.to_str().unwrap(), "--state", &state]);
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    state
}

#[test]
fn items_state_is_the_ledger_folder_before_or_after_the_action_and_status_filters() {
    let env = crate::harness::TestEnv::new();
    let state = ledger_with_good_and_bad(&env);
    let before = env.cxpipe(&["items", "--state", &state, "ls"]);
    let after = env.cxpipe(&["items", "ls", "--state", &state]);
    assert_eq!(after.code, 0, "{}", after.stderr);
    assert_eq!(before.stdout, after.stdout);
    assert!(after.stdout.contains("/good") && after.stdout.contains("/bad"));

    let filtered = env.cxpipe(&["items", "ls", "--state", &state, "--status", "quarantined"]);
    assert_eq!(filtered.code, 0, "{}", filtered.stderr);
    assert!(filtered.stdout.contains("/bad"), "{}", filtered.stdout);
    assert!(!filtered.stdout.contains("/good"), "{}", filtered.stdout);

    let retried = env.cxpipe(&[
        "items",
        "retry",
        "--state",
        &state,
        "--status",
        "quarantined",
    ]);
    assert_eq!(retried.code, 0, "{}", retried.stderr);
    assert!(
        retried.stdout.starts_with("1 item(s)"),
        "{}",
        retried.stdout
    );
}

#[test]
fn the_old_state_filter_spelling_gets_an_error_that_names_status() {
    let env = crate::harness::TestEnv::new();
    let ran = env.cxpipe(&["items", "retry", "--state", "quarantined"]);
    let stderr = &ran.stderr;
    assert_eq!(ran.code, 2, "{stderr}");
    assert!(
        stderr.contains("--state names the ledger folder")
            && stderr.contains("--status quarantined"),
        "{stderr}"
    );
    assert!(
        !env.path().join("quarantined").exists(),
        "nothing was created"
    );

    let bad = env.cxpipe(&["items", "ls", "--status", "broken"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("quarantined"),
        "lists the states: {}",
        bad.stderr
    );
}

#[test]
fn items_ls_has_a_header_row_and_show_and_retry_arguments_have_help() {
    let env = crate::harness::TestEnv::new();
    let state = ledger_with_good_and_bad(&env);
    let ls = env.cxpipe(&["items", "ls", "--state", &state]);
    let header = ls.stdout.lines().nth(1).unwrap_or_default();
    for column in ["STATE", "ATTEMPTS", "KEY", "LAST ERROR"] {
        assert!(header.contains(column), "{}", ls.stdout);
    }
    for (action, arg) in [("show", "<KEY>"), ("retry", "[KEYS]...")] {
        let help = env.cxpipe(&["items", action, "--help"]);
        let line = help
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(arg))
            .unwrap_or_else(|| panic!("{}", help.stdout));
        assert!(
            line.trim().len() > arg.len() + 5,
            "{arg} has no help: {}",
            help.stdout
        );
    }
}

#[test]
fn a_run_without_finish_or_checkpoint_prints_one_summary_that_says_none_set() {
    let env = crate::harness::TestEnv::new();
    let script = env.write(
        "plain.rhai",
        "fn discover(ctx) { ctx.emit(\"a\", 1); }\nfn process(ctx, item) { item }\n",
    );
    let ran = env.run(&script, &[]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let out = ran.json();
    assert_eq!(out["summary"]["checkpoint"], "none set", "{out}");
    assert_eq!(out["summary"]["checkpoint_committed"], false, "{out}");
    assert!(
        out.get("report").is_none(),
        "no finish, no second copy: {out}"
    );

    let human = env.cxpipe(&[
        "run",
        script.to_str().unwrap(),
        "--state",
        env.state_dir().to_str().unwrap(),
    ]);
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert!(
        human.stdout.contains("checkpoint none set"),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("item retries 0"), "{}", human.stdout);
    assert!(!human.stdout.contains("report:"), "{}", human.stdout);
}

#[test]
fn a_checkpoint_held_back_by_a_failure_says_why_and_a_finish_report_is_printed() {
    let env = crate::harness::TestEnv::new();
    let script = env.write(
        "cursor.rhai",
        "const OPTIONS = #{ max_attempts: 1 };\n\
         fn discover(ctx) { ctx.emit(\"a\", 1); ctx.set_checkpoint(\"since\", 5); }\n\
         fn process(ctx, item) { throw \"no\"; }\n\
         fn finish(ctx, summary) { #{ mine: summary.checkpoint } }\n",
    );
    let ran = env.run(&script, &[]);
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    let out = ran.json();
    assert_eq!(
        out["summary"]["checkpoint"], "held back (failures)",
        "{out}"
    );
    assert_eq!(out["report"]["mine"], "held back (failures)", "{out}");
}

#[test]
fn a_tenant_config_error_names_the_tenant_once() {
    let env = crate::harness::TestEnv::new();
    let config = env.write(
        "cxpipe.toml",
        "[tenants.sim]\nbase_url = \"not a url\"\n\
         auth = { kind = \"bearer\", token = { file = \"token.txt\" } }\n",
    );
    env.write("token.txt", "t");
    let script = env.write("s.rhai", "fn discover(ctx) {}\nfn process(ctx, item) {}\n");
    let ran = env.cxpipe(&[
        "run",
        script.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--tenant",
        "sim",
        "--state",
        env.state_dir().to_str().unwrap(),
    ]);
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("tenant sim: invalid configuration"),
        "{}",
        ran.stderr
    );
    assert_eq!(
        ran.stderr.matches("tenant sim").count(),
        1,
        "{}",
        ran.stderr
    );
}

#[test]
fn bench_orchestration_runs_a_configured_pipeline_per_size_and_reports_each() {
    let env = crate::harness::TestEnv::new();
    let ran = env.cxpipe(&[
        "bench",
        "orchestration",
        "--items",
        "50",
        "--items",
        "200",
        "--concurrency",
        "2",
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let rows: Vec<serde_json::Value> = ran
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows[0]["items"], 50, "{}", ran.stdout);
    assert_eq!(rows[1]["items"], 200, "{}", ran.stdout);
    assert!(rows[1]["items_per_sec"].as_f64().unwrap() > 0.0);
    assert!(rows[2]["rss_ratio_largest_to_smallest"].is_number());
}
