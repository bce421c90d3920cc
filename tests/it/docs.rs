//! `cxpipe docs`: the committed reference is what the binary generates, and the editor
//! definition files hold the script surface.

use crate::harness::TestEnv;

#[test]
fn committed_scripting_reference_is_what_cxpipe_docs_generates() {
    let env = TestEnv::new();
    let out = env.path().join("SCRIPTING.md");
    let ran = env.cxpipe(&["docs", "--out", out.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    let generated = std::fs::read_to_string(&out).unwrap();
    let committed_path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/SCRIPTING.md");
    let committed = std::fs::read_to_string(committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/SCRIPTING.md differs from what `cxpipe docs` generates; regenerate it with \
         `cargo run -- docs` (writes docs/SCRIPTING.md) and commit the result"
    );
}

#[test]
fn definitions_hold_every_namespace_for_editors() {
    let env = TestEnv::new();
    let dir = env.path().join("defs");
    let ran = env.cxpipe(&["docs", "--definitions", dir.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    let mut all = String::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert!(
            path.to_string_lossy().ends_with(".d.rhai"),
            "{}",
            path.display()
        );
        all.push_str(&std::fs::read_to_string(&path).unwrap());
    }
    for needle in [
        "fn emit(",
        "fn paginate(",
        "fn write_json(",
        "fn sha256(",
        "fn backoff(",
        "get tenant(",
    ] {
        assert!(all.contains(needle), "definitions lack {needle}");
    }
    assert!(all.contains("```rhai"), "definitions carry no doc examples");
    // The reference is not written when definitions are asked for.
    assert!(!env.path().join("docs/SCRIPTING.md").exists());
}
