//! `cxpipe demo`, the README's first command, end to end: it finishes, stores encrypted
//! recordings, and the verify and decrypt commands it prints work.

use crate::harness::TestEnv;

#[test]
fn the_demo_runs_and_its_printed_commands_verify_and_decrypt() {
    let env = TestEnv::new();
    let ran = env.cxpipe(&["demo", "--dir", "demo", "--recordings", "8"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains(": completed"), "{}", ran.stdout);
    let command_after = |label: &str| -> Vec<String> {
        let mut lines = ran.stdout.lines().skip_while(|l| !l.starts_with(label));
        lines
            .next()
            .unwrap_or_else(|| panic!("no {label:?} in:\n{}", ran.stdout));
        let line = lines.next().unwrap().trim().to_string();
        crate::edges::cxpipe_args(&line)
    };
    let verify = command_after("verify every object");
    let out = env.cxpipe(&verify.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    let decrypt = command_after("decrypt one recording");
    let out = env.cxpipe(&decrypt.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let restored = std::fs::read(env.path().join(decrypt.last().unwrap())).unwrap();
    assert!(restored.starts_with(b"RIFF") || restored.starts_with(b"ID3") || restored[0] == 0xff);

    // A second demo finds nothing new to download.
    let again = env.cxpipe(&["demo", "--dir", "demo", "--recordings", "8", "--json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let summary = &again.json()["summary"];
    assert_eq!(summary["done"].as_u64(), Some(0), "{summary}");
}

#[test]
fn the_demo_summary_names_item_retries_and_http_retries_apart() {
    let env = TestEnv::new();
    let ran = env.cxpipe(&["demo", "--dir", "demo", "--recordings", "4"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let line = ran
        .stdout
        .lines()
        .find(|l| l.contains("item retries"))
        .unwrap_or_else(|| panic!("no item retries in:\n{}", ran.stdout));
    assert!(line.contains("HTTP retries "), "{line}");
    assert!(!line.contains(", retries"), "{line}");
}
