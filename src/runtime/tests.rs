//! Runtime loading: every configuration problem at once with its position; generations
//! know the files they import.

use std::path::{Path, PathBuf};

use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

/// `line:` (1-based) of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

const SCRIPT: &str = "fn discover(ctx) { ctx.emit(\"a\", 1); }\nfn process(ctx, item) { }\n";

#[test]
fn every_pipeline_and_serve_problem_is_reported_at_once_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.rhai", SCRIPT);
    write(dir.path(), "k.key", &hex::encode([7u8; 32]));
    let text = r#"[storage.default]
uri = "memory://rt-errors"

[keys.archive]
file = "k.key"

[tenants.acme]
base_url = "http://127.0.0.1:9"
auth = { kind = "bearer", token = { env = "CXPIPE_TEST_UNSET" } }

[pipelines.typo]
script = "p.rhai"
schedul = "0 * * * * *"

[pipelines.timing]
script = "p.rhai"
schedule = "61 * * * * *"
time_zone = "Mars/Olympus"

[pipelines.refs]
script = "missing.rhai"
tenants = ["acme", "acmee"]
store = "defualt"
stores = ["nope"]
keys = ["archiv"]

[pipelines.variants]
script = "p.rhai"
[pipelines.variants.tenants.globex]
params = { a = 1 }

[serve]
listen = "nowhere"
"#;
    let path = write(dir.path(), "cxpipe.toml", text);
    let err = Runtime::load(Some(&path), Overrides::default())
        .err()
        .expect("a broken configuration loaded");
    let all = err.to_string();
    let p = path.display().to_string();
    let expect = |needle: &str, col: usize, message: &str| {
        let at = format!("{p}:{}:{col}: ", line_of(text, needle));
        assert!(
            err.0
                .iter()
                .any(|e| e.starts_with(&at) && e.contains(message)),
            "no `{at}…{message}` in:\n{all}"
        );
    };
    expect("schedul =", 1, "unknown field `schedul`");
    expect("schedul =", 1, "did you mean `schedule`?");
    expect("61 * * * * *", 12, "schedule \"61 * * * * *\"");
    expect("Mars/Olympus", 13, "time_zone \"Mars/Olympus\"");
    expect("missing.rhai", 10, "is not a file");
    expect("acmee", 11, "tenant \"acmee\": no [tenants.acmee]");
    expect("acmee", 11, "did you mean `acme`?");
    expect(
        "defualt",
        9,
        "no [storage.defualt] is configured (known: default)",
    );
    expect("nope", 11, "no [storage.nope]");
    expect(
        "[\"archiv\"]",
        9,
        "no [keys.archiv] is configured (known: archive)",
    );
    expect("globex", 21, "tenant \"globex\": no [tenants.globex]");
    expect("nowhere", 10, "[serve]: listen \"nowhere\"");
    assert_eq!(err.0.len(), 10, "{all}");
    // In file order.
    let lines: Vec<usize> = err
        .0
        .iter()
        .map(|e| e[p.len() + 1..].split(':').next().unwrap().parse().unwrap())
        .collect();
    assert!(lines.is_sorted(), "{all}");
}

#[test]
fn pipelines_serve_and_webhooks_parse_with_their_defaults() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.rhai", SCRIPT);
    let path = write(
        dir.path(),
        "cxpipe.toml",
        r#"[tenants.acme]
base_url = "http://127.0.0.1:9"
auth = { kind = "bearer", token = { env = "T" } }
webhook = { secret = { env = "ACME_HOOK" } }
[tenants.globex]
base_url = "http://127.0.0.1:9"
auth = { kind = "bearer", token = { env = "T" } }
[pipelines.dl]
script = "p.rhai"
schedule = "0 */5 * * * *"
time_zone = "Europe/Paris"
misfire = "run_once"
concurrency = 3
[pipelines.dl.tenants.acme]
params = { x = 1 }
[pipelines.dl.tenants.globex]
[pipelines.off]
script = "p.rhai"
enabled = false
[serve]
token = { env = "CXPIPE_TOKEN" }
"#,
    );
    let rt = Runtime::load(Some(&path), Overrides::default()).unwrap();
    let pairs: Vec<(String, String)> = rt.pipelines().into_iter().map(|(p, t, _)| (p, t)).collect();
    let pair = |p: &str, t: &str| (p.to_string(), t.to_string());
    assert_eq!(
        pairs,
        [
            pair("dl", "acme"),
            pair("dl", "globex"),
            pair("off", "acme"),
            pair("off", "globex")
        ]
    );
    let dl = rt.pipeline("dl").unwrap();
    assert_eq!(
        dl.schedule,
        Some(ScheduleSpec {
            cron: "0 */5 * * * *".into(),
            time_zone: "Europe/Paris".into()
        })
    );
    assert_eq!(dl.misfire, crate::config::pipeline::Misfire::RunOnce);
    assert!(!rt.pipeline("off").unwrap().enabled);
    assert_eq!(rt.params(dl, "acme").unwrap()["x"], 1);
    let serve = rt.serve_config();
    assert_eq!(serve.serve.listen.get_ref(), "127.0.0.1:8480");
    assert_eq!(serve.serve.grace, std::time::Duration::from_secs(30));
    assert!(serve.serve.token.is_some());
    let hook = &serve.webhooks["acme"];
    assert_eq!(hook.tolerance, std::time::Duration::from_secs(300));
    assert_eq!(hook.max_body, 1024 * 1024);
    assert!(!serve.webhooks.contains_key("globex"));
    // The webhook table is not part of the tenant's API configuration.
    assert!(rt.config().tenant("acme").unwrap().is_some());
    let err = rt.compile("dl", "initech").unwrap_err().to_string();
    assert!(err.contains("does not run for tenant \"initech\""), "{err}");
}

#[test]
fn a_generation_lists_every_file_it_imports_and_its_hash_follows_them() {
    let dir = tempfile::tempdir().unwrap();
    let helper = write(
        dir.path(),
        "scripts/lib/helper.rhai",
        "fn twice(x) { x * 2 }",
    );
    write(
        dir.path(),
        "scripts/p.rhai",
        "import \"lib/helper\" as h;\nimport \"cxone/recording_search\" as rs;\n\
         fn discover(ctx) { ctx.emit(\"a\", h::twice(1)); }\nfn process(ctx, item) { }\n",
    );
    let path = write(
        dir.path(),
        "cxpipe.toml",
        "[pipelines.p]\nscript = \"scripts/p.rhai\"\n",
    );
    let rt = Runtime::load(Some(&path), Overrides::default()).unwrap();
    let first = rt.compile("p", DEFAULT_TENANT).unwrap();
    let helper_abs = helper.canonicalize().unwrap().display().to_string();
    assert!(
        first.imports.contains_key(&helper_abs),
        "{:?}",
        first.imports
    );
    assert!(
        first
            .imports
            .contains_key("embedded:cxone/recording_search"),
        "{:?}",
        first.imports
    );
    std::fs::write(&helper, "fn twice(x) { x + x }").unwrap();
    let second = rt.compile("p", DEFAULT_TENANT).unwrap();
    assert_eq!(first.script.hash, second.script.hash);
    assert_ne!(
        first.hash, second.hash,
        "an edited import changes the generation"
    );
}

#[test]
fn a_pipeline_ring_holds_only_its_keys_and_names_the_line_to_add() {
    let mut ring = KeyRing::empty();
    ring.insert_raw("archive", [1; 32]);
    ring.insert_raw("other", [2; 32]);
    let granted = ring.granted("dl", &["archive".to_string()]);
    assert!(granted.get("archive").is_ok());
    let e = granted.get("other").unwrap_err().to_string();
    assert!(
        e.contains("key \"other\" is not granted to pipeline dl")
            && e.contains("keys = [\"other\"]")
            && e.contains("[pipelines.dl]"),
        "{e}"
    );
    let e = granted.get("absent").unwrap_err().to_string();
    assert!(e.contains("[keys.absent]"), "{e}");
}
