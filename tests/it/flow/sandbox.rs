//! The script sandbox through the real binary: imports stay inside the script's folder and
//! the stdlib folders; `storage(uri)` is refused unless the config allows it, and never
//! takes credentials from a script.

use crate::harness::{Ran, TestEnv};

/// `cxpipe run SCRIPT --config CONFIG` with a ledger of its own in `state`.
fn run_with(env: &TestEnv, script: &str, config: &str, state: &str) -> Ran {
    let state = env.path().join(state).display().to_string();
    env.cxpipe(&[
        "run",
        script,
        "--config",
        config,
        "--state",
        &state,
        "--json",
        "--no-progress",
    ])
}

/// A pipeline at `scripts/p.rhai` whose only item runs `process_body`.
fn pipeline(env: &TestEnv, top: &str, process_body: &str) -> String {
    env.write(
        "scripts/p.rhai",
        &format!(
            "{top}\nconst OPTIONS = #{{ max_attempts: 1 }};\n\
             fn discover(ctx) {{ ctx.emit(\"a\", #{{ n: 1 }}); }}\n\
             fn process(ctx, item) {{ {process_body} }}\n"
        ),
    )
    .display()
    .to_string()
}

#[test]
fn imports_cannot_leave_the_script_folder() {
    let env = TestEnv::new();
    // Both targets exist, so only the sandbox stops them.
    env.write("outside.rhai", "fn leak() { \"outside\" }");
    let absolute = env.write("abs/secret.rhai", "fn leak() { \"absolute\" }");
    let absolute = absolute.with_extension("");
    let cases = [
        ("\"../outside\"".to_string(), "`..` is refused"),
        (
            format!("{:?}", absolute.display().to_string()),
            "absolute paths are refused",
        ),
    ];
    for (import, why) in cases {
        let script = pipeline(&env, &format!("import {import} as o;"), "o::leak()");
        let ran = env.cxpipe(&["check", &script]);
        assert_eq!(ran.code, 1, "{import}: {}\n{}", ran.stdout, ran.stderr);
        assert!(
            ran.stdout.contains(&format!("import {import}: {why}")),
            "{import}: {}",
            ran.stdout
        );
        let ran = env.run(std::path::Path::new(&script), &[]);
        assert_eq!(ran.code, 2, "{import}: {}\n{}", ran.stdout, ran.stderr);
        assert!(ran.stderr.contains(why), "{import}: {}", ran.stderr);
    }
    // Modules beside the script and in stdlib/ beside its folder still resolve.
    env.write("scripts/lib/helper.rhai", "fn twice(x) { x * 2 }");
    env.write("stdlib/shared.rhai", "fn one() { 1 }");
    let script = pipeline(
        &env,
        "import \"lib/helper\" as h;\nimport \"shared\" as s;",
        "h::twice(s::one())",
    );
    let ran = env.cxpipe(&["check", &script]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
}

#[cfg(unix)]
#[test]
fn a_symlinked_module_leading_outside_is_refused() {
    let env = TestEnv::new();
    let target = env.write("private/secret.rhai", "fn leak() { 1 }");
    std::fs::create_dir_all(env.path().join("scripts")).unwrap();
    std::os::unix::fs::symlink(&target, env.path().join("scripts/link.rhai")).unwrap();
    let script = pipeline(&env, "import \"link\" as o;", "o::leak()");
    let ran = env.cxpipe(&["check", &script]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.contains("outside") && ran.stdout.contains("symlink"),
        "{}",
        ran.stdout
    );
}

#[test]
fn storage_uris_are_refused_unless_the_config_allows_them() {
    let env = TestEnv::new();
    // Stands for /etc: a folder the pipeline was never given.
    env.write("etc/passwd", "root:x:0:0\n");
    let etc = env.path().join("etc").display().to_string();
    let script = pipeline(
        &env,
        "",
        &format!("read(storage(\"fs://{etc}\"), \"passwd\").discard().sha256"),
    );

    env.write("refused.toml", "[params]\n");
    let ran = run_with(&env, &script, "refused.toml", "state1");
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let error = ran.json()["summary"]["failures"][0]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("scripts cannot open stores by URI")
            && error.contains("[scripts] allow_storage_uri = true")
            && error.contains("ctx.store"),
        "{error}"
    );

    env.write("allowed.toml", "[scripts]\nallow_storage_uri = true\n");
    let ran = run_with(&env, &script, "allowed.toml", "state2");
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(ran.json()["summary"]["done"], 1);
}

#[test]
fn credentials_never_come_from_scripts() {
    let env = TestEnv::new();
    env.write("allowed.toml", "[scripts]\nallow_storage_uri = true\n");
    for field in ["access_key_id", "token", "credential_path"] {
        let script = pipeline(
            &env,
            "",
            &format!("storage(#{{ uri: \"s3://b/p\", {field}: #{{ env: \"HOME\" }} }}).describe()"),
        );
        let ran = run_with(&env, &script, "allowed.toml", &format!("state-{field}"));
        assert_eq!(ran.code, 1, "{field}: {}\n{}", ran.stdout, ran.stderr);
        let error = ran.json()["summary"]["failures"][0]["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            error.contains(&format!("`{field}` cannot come from a script")),
            "{field}: {error}"
        );
    }
}
