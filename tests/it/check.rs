//! `cxpipe check` beyond unknown functions: members of known types, `OPTIONS`, the option
//! maps of `paginate`/`poll`; every problem at once, in line order, with `file:line:col`.

use crate::harness::TestEnv;

#[test]
fn check_reports_every_member_and_option_mistake_in_line_order() {
    let env = TestEnv::new();
    let script = env.write(
        "typos.rhai",
        "const OPTIONS = #{ concurency: 4, item_timeout: \"soon\" };\n\
         fn discover(ctx) {\n\
         \x20 for r in ctx.api.paginate(\"/x\", #{ style: \"offset\", sise: 10 }) { ctx.emit(r.id, r); }\n\
         }\n\
         fn process(ctx, item) {\n\
         \x20 let store = ctx.stor;\n\
         \x20 let flow = fetch(item.url).md5();\n\
         \x20 flow.sha265();\n\
         \x20 ctx.emit(item.id);\n\
         }\n",
    );
    let ran = env.cxpipe(&["check", script.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    let expected = [
        "typos.rhai:1:20: OPTIONS.concurency: unknown option `concurency`; did you mean `concurrency`?",
        "typos.rhai:1:49: OPTIONS.item_timeout:",
        "typos.rhai:3:55: unknown `paginate` option `sise`; did you mean `size`?",
        "typos.rhai:6:19: `Ctx` has no property `stor`; did you mean `store`?",
        "typos.rhai:8:8: `Flow` has no method `sha265`; did you mean `sha256`?",
        "typos.rhai:9:7: `Ctx.emit` takes 2 argument(s), found 1",
    ];
    assert_eq!(lines.len(), expected.len(), "{}", ran.stdout);
    for (line, want) in lines.iter().zip(expected) {
        let shown = line.rsplit_once('/').map_or(*line, |(_, l)| l);
        assert!(
            shown.starts_with(want),
            "want {want}\ngot  {line}\nall:\n{}",
            ran.stdout
        );
    }
}

#[test]
fn check_passes_every_shipped_script() {
    let env = TestEnv::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts");
    let mut scripts: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rhai"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 5, "{scripts:?}");
    let mut args = vec!["check"];
    args.extend(scripts.iter().map(String::as_str));
    let ran = env.cxpipe(&args);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
}
