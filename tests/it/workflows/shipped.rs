//! `cxpipe check scripts/*.rhai`: every shipped script compiles and passes the checks.

use crate::harness::TestEnv;

#[test]
fn every_shipped_script_passes_check() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let mut scripts: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rhai"))
        .map(|p| p.to_str().unwrap().to_string())
        .collect();
    scripts.sort();
    assert!(
        scripts.iter().any(|s| s.ends_with("/export_contacts.rhai")) && scripts.len() >= 6,
        "{scripts:?}"
    );
    let mut args = vec!["check"];
    args.extend(scripts.iter().map(String::as_str));
    let ran = TestEnv::new().cxpipe(&args);
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    for script in &scripts {
        assert!(
            ran.stdout.contains(&format!("{script}: ok")),
            "{script}:\n{}",
            ran.stdout
        );
    }
}
