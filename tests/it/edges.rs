//! The first-user rough edges of issue 13, item 7, each shown gone: documents written with
//! `store.write_json` pass `cxpipe verify` (and a tampered one is reported); a failing
//! run says its error once.

use std::path::{Path, PathBuf};

use crate::harness::{Ran, TestEnv};

/// The arguments of a command line cxpipe printed, after the program that starts it: the
/// test binary is a cargo build, so `cargo run --` (or `cargo run --release --`).
pub fn cxpipe_args(line: &str) -> Vec<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let start = match words.as_slice() {
        ["cargo", "run", "--", ..] => 3,
        ["cargo", "run", "--release", "--", ..] => 4,
        _ => panic!("not a cargo run line: {line}"),
    };
    words[start..].iter().map(|w| w.to_string()).collect()
}

/// A config with a folder store `objects/` and a key (so manifests carry a MAC).
fn store_and_key_config(env: &TestEnv) -> PathBuf {
    env.write("k.hex", &hex::encode([0x42u8; 32]));
    env.write(
        "cxpipe.toml",
        &format!(
            "[storage.default]\nuri = \"fs://{}\"\n\n[keys.k]\nfile = \"k.hex\"\n",
            env.path().join("objects").display()
        ),
    )
}

fn run_with(env: &TestEnv, script: &Path, config: &Path) -> Ran {
    env.run(script, &["--config", config.to_str().unwrap()])
}

fn verify(env: &TestEnv, config: &Path) -> Ran {
    let uri = format!("fs://{}", env.path().join("objects").display());
    env.cxpipe(&["verify", &uri, "--config", config.to_str().unwrap()])
}

#[test]
fn documents_written_with_write_json_pass_verify_and_a_tampered_one_is_reported() {
    let env = TestEnv::new();
    let config = store_and_key_config(&env);
    // Each item writes its own document; `finish` replaces the same report every run.
    let script = env.write(
        "docs.rhai",
        r#"
fn discover(ctx) { for i in 1..=3 { ctx.emit(`d${i}`, #{ n: i }); } }
fn process(ctx, item) { ctx.store.write_json(`docs/${ctx.item_key}.json`, item); }
fn finish(ctx, summary) {
    ctx.store.write_json("reports/last.json", #{ run_id: summary.run_id, done: summary.done });
    summary
}
"#,
    );
    for run in 1..=2 {
        let ran = run_with(&env, &script, &config);
        assert_eq!(ran.code, 0, "run {run}: {}\n{}", ran.stdout, ran.stderr);
        let checked = verify(&env, &config);
        assert_eq!(
            checked.code, 0,
            "run {run}: verify must pass:\n{}\n{}",
            checked.stdout, checked.stderr
        );
        assert!(
            checked
                .stderr
                .contains("verified 4 objects: 4 ok, 0 problems"),
            "run {run}: {}",
            checked.stderr
        );
    }
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.path().join("objects/docs/d2.json.manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["source"]["kind"], "write_json", "{manifest}");
    assert_eq!(manifest["item_key"], "d2", "{manifest}");
    assert!(
        manifest["mac"].is_object(),
        "a key is configured: {manifest}"
    );

    let doc = env.path().join("objects/docs/d2.json");
    let text = std::fs::read_to_string(&doc).unwrap();
    std::fs::write(&doc, text.replace('2', "7")).unwrap();
    let checked = verify(&env, &config);
    assert_eq!(checked.code, 1, "{}\n{}", checked.stdout, checked.stderr);
    let problems: Vec<&str> = checked.stdout.lines().collect();
    assert!(
        problems.len() == 1
            && problems[0].starts_with("MISMATCH docs/d2.json: ")
            && problems[0].contains("stored sha256 differs from manifest"),
        "only the edited document is reported: {problems:?}\n{}",
        checked.stderr
    );
}

/// `cxpipe ARGS` with the default log filter (the harness quiets logs with `CXPIPE_LOG`).
fn default_logs(env: &TestEnv, args: &[&str]) -> Ran {
    env.command()
        .env_remove("CXPIPE_LOG")
        .env_remove("CXPIPE_LOG_FORMAT")
        .args(args)
        .output()
        .expect("run cxpipe")
        .into()
}

#[test]
fn a_failed_discover_and_a_quarantined_item_are_each_said_once() {
    let env = TestEnv::new();
    let state = env.state_dir();
    let state = state.to_str().unwrap();
    let broken = env.write(
        "broken.rhai",
        "fn discover(ctx) { throw \"no recordings for you\"; }\nfn process(ctx, item) { item }\n",
    );
    let quarantining = env.write(
        "quarantining.rhai",
        "const OPTIONS = #{ max_attempts: 1 };\n\
         fn discover(ctx) { ctx.emit(\"a\", 1); ctx.emit(\"b\", 2); }\n\
         fn process(ctx, item) { if item == 1 { throw \"item a is bad\"; } item }\n",
    );
    for (script, error) in [
        (&broken, "no recordings for you"),
        (&quarantining, "item a is bad"),
    ] {
        let script = script.to_str().unwrap();
        let ran = default_logs(&env, &["run", script, "--state", state]);
        assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
        assert_eq!(
            ran.stdout.matches(error).count(),
            1,
            "the summary says it: {}",
            ran.stdout
        );
        assert!(
            !ran.stderr.contains(error),
            "the default log does not say it again: {}",
            ran.stderr
        );
        // Asked for logs, they have it too (a log shipper's filter, or `--log warn`).
        std::fs::remove_dir_all(state).unwrap();
        let logged = default_logs(&env, &["run", script, "--state", state, "--log", "warn"]);
        assert_eq!(logged.code, 1, "{}", logged.stderr);
        assert!(logged.stderr.contains(error), "{}", logged.stderr);
        std::fs::remove_dir_all(state).unwrap();
    }
}

#[test]
fn every_argument_of_items_ls_show_and_retry_has_help() {
    let env = TestEnv::new();
    for action in ["ls", "show", "retry"] {
        let help = env.cxpipe(&["items", action, "--help"]);
        assert_eq!(help.code, 0, "{}", help.stderr);
        // Argument and option lines: `  <KEY>  text`, `  --json  text`; a line of its own
        // without text is an argument without help.
        let bare: Vec<&str> = help
            .stdout
            .lines()
            .filter(|l| {
                let t = l.trim();
                (t.starts_with('-') || t.starts_with('<') || t.starts_with('['))
                    && !t.contains("  ")
            })
            .collect();
        assert!(bare.is_empty(), "items {action}: no help for {bare:?}");
    }
    let ls = env.cxpipe(&["items", "ls", "--help"]);
    assert!(
        ls.stdout.contains("most recently changed first"),
        "{}",
        ls.stdout
    );
}

/// Kills the process when dropped (a simulator a test started).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_demo_config_says_how_to_run_its_pipeline_against_a_simulator_of_ones_own() {
    use std::io::BufRead as _;
    let env = TestEnv::new();
    let demo = env.cxpipe(&[
        "demo",
        "--dir",
        "demo",
        "--recordings",
        "4",
        "--faults",
        "none",
    ]);
    assert_eq!(demo.code, 0, "{}\n{}", demo.stdout, demo.stderr);
    assert!(demo.stdout.contains("cxpipe.toml"), "{}", demo.stdout);
    let config = env.path().join("demo/cxpipe.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let gone = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("base_url = "))
        .expect("a base_url")
        .trim_matches('"')
        .to_string();
    let commands: Vec<Vec<String>> = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("#   "))
        .map(cxpipe_args)
        .collect();
    assert_eq!(commands.len(), 2, "a sim and a run line:\n{text}");
    let (sim, run) = (&commands[0], &commands[1]);
    assert_eq!(sim[0], "sim", "{text}");
    assert_eq!(run[0], "run", "{text}");

    // The simulator as the header says, on a free port instead of its example one.
    let mut sim_args: Vec<&str> = sim.iter().map(String::as_str).collect();
    let port = sim_args.iter().position(|a| *a == "--port").unwrap();
    sim_args[port + 1] = "0";
    sim_args.push("--json");
    let mut child = env
        .command()
        .args(&sim_args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _sim = Killed(child);
    // The first line, or end of file when the simulator failed to start.
    let mut first = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut first)
        .unwrap();
    let details: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first:?}"));
    let base_url = details["base_url"]
        .as_str()
        .unwrap_or_else(|| panic!("{details}"));
    std::fs::write(&config, text.replace(&gone, base_url)).unwrap();

    // The header's run line, with a fresh ledger so every recording is looked at again.
    let fresh = env.path().join("fresh-state");
    let mut run_args: Vec<&str> = run.iter().map(String::as_str).collect();
    let state = run_args.iter().position(|a| *a == "--state").unwrap();
    run_args[state + 1] = fresh.to_str().unwrap();
    run_args.push("--json");
    let again = env.cxpipe(&run_args);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    let summary = &again.json()["summary"];
    assert_eq!(summary["emitted"].as_u64(), Some(4), "{summary}");
    assert_eq!(summary["quarantined"].as_u64(), Some(0), "{summary}");
}
