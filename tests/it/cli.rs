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
        env.cxpipe(&["items", "--state", state, "ls", "--state", "quarantined"])
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
