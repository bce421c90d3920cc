//! `cxpipe new` writes scripts that pass `cxpipe check` and never overwrites;
//! `cxpipe completions` prints a completion script.

use crate::harness::TestEnv;

#[test]
fn new_writes_a_minimal_pipeline_that_passes_check_and_says_what_next() {
    let env = TestEnv::new();
    let ran = env.cxpipe(&["new", "my_pipeline"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    // The test binary is a cargo build: the lines start `cargo run --` as pasted in the tree.
    for next in [
        "-- check my_pipeline.rhai",
        "-- run my_pipeline.rhai --sim",
        "-- run my_pipeline.rhai --config my_pipeline.toml --tenant sim",
    ] {
        assert!(ran.stdout.contains(next), "{next}:\n{}", ran.stdout);
    }
    let script = std::fs::read_to_string(env.path().join("my_pipeline.rhai")).unwrap();
    for shown in [
        "ctx.emit(",
        "ctx.skip(",
        "throw",
        "quarantined",
        "ctx.store.write_json(",
    ] {
        assert!(script.contains(shown), "{shown}:\n{script}");
    }
    let config = std::fs::read_to_string(env.path().join("my_pipeline.toml")).unwrap();
    assert!(config.contains("[tenants.sim]") && config.contains("[storage.default]"));
    let check = env.cxpipe(&["check", "my_pipeline.rhai"]);
    assert_eq!(check.code, 0, "{}\n{}", check.stdout, check.stderr);
}

#[test]
fn new_from_each_shipped_workflow_writes_a_script_that_passes_check() {
    let env = TestEnv::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts");
    let mut workflows: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "rhai").then(|| p.file_stem().unwrap().to_string_lossy().into())
        })
        .collect();
    workflows.sort();
    assert!(workflows.len() >= 5, "{workflows:?}");
    for workflow in &workflows {
        let name = format!("mine_{workflow}");
        let ran = env.cxpipe(&["new", &name, "--from", workflow]);
        assert_eq!(ran.code, 0, "{workflow}: {}\n{}", ran.stdout, ran.stderr);
        let written = std::fs::read_to_string(env.path().join(format!("{name}.rhai"))).unwrap();
        let shipped = std::fs::read_to_string(format!("{dir}/{workflow}.rhai")).unwrap();
        assert_eq!(written, shipped, "{workflow}");
        let check = env.cxpipe(&["check", &format!("{name}.rhai")]);
        assert_eq!(
            check.code, 0,
            "{workflow}: {}\n{}",
            check.stdout, check.stderr
        );
    }
    let unknown = env.cxpipe(&["new", "x", "--from", "no_such_workflow"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("download_recordings"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn new_refuses_to_overwrite_and_leaves_the_file_alone() {
    let env = TestEnv::new();
    env.write("mine.rhai", "// my work\n");
    let ran = env.cxpipe(&["new", "mine"]);
    assert_ne!(ran.code, 0, "{}", ran.stdout);
    assert!(ran.stderr.contains("already exists"), "{}", ran.stderr);
    assert_eq!(
        std::fs::read_to_string(env.path().join("mine.rhai")).unwrap(),
        "// my work\n"
    );
    assert!(!env.path().join("mine.toml").exists());

    // The example configuration is not overwritten either, and nothing is half-written.
    env.write("other.toml", "# mine\n");
    let ran = env.cxpipe(&["new", "other"]);
    assert_ne!(ran.code, 0, "{}", ran.stdout);
    assert!(!env.path().join("other.rhai").exists());
}

#[test]
fn completions_are_printed_for_each_shell() {
    let env = TestEnv::new();
    for shell in ["bash", "zsh", "fish"] {
        let ran = env.cxpipe(&["completions", shell]);
        assert_eq!(ran.code, 0, "{shell}: {}", ran.stderr);
        for sub in ["check", "run", "new", "completions"] {
            assert!(ran.stdout.contains(sub), "{shell} lacks {sub}");
        }
    }
}
