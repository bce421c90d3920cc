//! Static checks behind `cxpipe check` and before every run: hooks present with the right
//! arity, every called function defined somewhere (script, import, native), members of
//! known types ([`super::check_members`]) and option maps ([`super::check_options`]);
//! every problem reported at once, in line order, with `file:line:col`.

use std::collections::{BTreeMap, HashMap, HashSet};

use rhai::{AST, Engine, Position};
use rhai::{ASTNode, Expr, Stmt};

use super::EngineSettings;
use super::check_members::check_members;
use super::check_options::check_options;
use super::diagnostics::Diagnostic;
use super::resolver::ScriptResolver;
use super::script::Script;
use super::surface::Surface;

/// Hooks the runner calls and their parameter lists.
pub const HOOKS: &[(&str, &[&str], bool)] = &[
    ("discover", &["ctx"], false),
    ("process", &["ctx", "item"], true),
    ("finish", &["ctx", "summary"], false),
    ("on_event", &["ctx", "event"], false),
];

/// Functions the interpreter handles itself rather than through registrations.
const INTRINSICS: &[&str] = &[
    "Fn",
    "call",
    "curry",
    "is_shared",
    "is_def_fn",
    "is_def_var",
    "type_of",
    "print",
    "debug",
    "eval",
];

/// Parses `name(a: A, b: B) -> R` into (name, arity).
fn parse_signature(sig: &str) -> Option<(String, usize)> {
    super::surface::parse_signature(sig).map(|s| (s.name, s.params.len()))
}

/// Names and arities the engine knows natively.
fn native_functions(engine: &Engine) -> HashMap<String, HashSet<usize>> {
    let mut out: HashMap<String, HashSet<usize>> = HashMap::new();
    for sig in engine.gen_fn_signatures(true) {
        if let Some((name, arity)) = parse_signature(&sig) {
            out.entry(name).or_default().insert(arity);
        }
    }
    out
}

/// Checks `script`; returns every problem found (empty when fine).
pub fn check(engine: &Engine, script: &Script) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let file = script.label.as_str();
    let defined: Vec<(String, usize)> = script
        .ast
        .iter_functions()
        .map(|f| (f.name.to_string(), f.params.len()))
        .collect();

    for (hook, params, required) in HOOKS {
        let found: Vec<usize> = defined
            .iter()
            .filter(|(n, _)| n == hook)
            .map(|(_, a)| *a)
            .collect();
        if found.is_empty() && *required {
            problems.push(Diagnostic::new(
                file,
                1,
                1,
                format!(
                    "missing hook `fn {hook}({})`: every pipeline must define it",
                    params.join(", ")
                ),
            ));
        } else if !found.is_empty() && !found.contains(&params.len()) {
            problems.push(Diagnostic::new(
                file,
                1,
                1,
                format!(
                    "hook `{hook}` takes {} parameter(s), found {}: write `fn {hook}({})`",
                    params.len(),
                    found[0],
                    params.join(", ")
                ),
            ));
        }
    }
    if !defined
        .iter()
        .any(|(n, _)| n == "discover" || n == "on_event")
    {
        problems.push(Diagnostic::new(
            file,
            1,
            1,
            "missing hook `fn discover(ctx)` (or `fn on_event(ctx, event)`): nothing would emit items",
        ));
    }

    let natives = native_functions(engine);
    let surface = Surface::of(engine);
    let mut visited = HashSet::new();
    // Imports are looked up again to check the modules' calls: from the script's folder,
    // as when it was compiled.
    let dir = std::path::Path::new(file)
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                p
            }
        })
        .map(std::path::Path::to_path_buf);
    let previous = super::script::set_script_dir(dir);
    check_calls(
        &Checked {
            engine,
            natives: &natives,
            surface: &surface,
        },
        &script.ast,
        file,
        &mut problems,
        &mut visited,
    );
    super::script::set_script_dir(previous);
    check_options(&script.source, file, &mut problems);
    // Line order, the script's own problems first, then those of its imports.
    problems.sort_by(|a, b| {
        (a.file != file, &a.file, a.line, a.col).cmp(&(b.file != file, &b.file, b.line, b.col))
    });
    problems.dedup();
    problems
}

/// What calls are checked against.
struct Checked<'a> {
    engine: &'a Engine,
    natives: &'a HashMap<String, HashSet<usize>>,
    surface: &'a Surface,
}

/// Every function an AST calls must exist: defined in it, imported, or native; methods
/// and properties are checked by [`check_members`]. Imported script modules are checked
/// the same way (each once).
fn check_calls(
    checked: &Checked,
    ast: &AST,
    file: &str,
    problems: &mut Vec<Diagnostic>,
    visited: &mut HashSet<String>,
) {
    let (engine, natives) = (checked.engine, checked.natives);
    check_members(checked.surface, ast, file, problems);
    let mut script_fns: HashMap<String, HashSet<usize>> = HashMap::new();
    for f in ast.iter_functions() {
        script_fns
            .entry(f.name.to_string())
            .or_default()
            .insert(f.params.len());
    }
    let modules = imported_modules(engine, ast, file);
    let mut variables = HashSet::new();
    ast.walk(&mut |path: &[ASTNode]| {
        if let Some(ASTNode::Expr(Expr::Variable(v, ..))) = path.last() {
            variables.insert(v.1.to_string());
        }
        true
    });

    let mut calls = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        match path.last() {
            Some(
                ASTNode::Expr(Expr::FnCall(call, pos)) | ASTNode::Stmt(Stmt::FnCall(call, pos)),
            ) if call.op_token.is_none() => {
                let ns = call
                    .namespace
                    .path
                    .iter()
                    .map(|i| i.name.to_string())
                    .collect::<Vec<_>>()
                    .join("::");
                calls.push((ns, call.name.to_string(), call.args.len(), *pos));
            }
            _ => {}
        }
        true
    });

    let known = |map: &HashMap<String, HashSet<usize>>, name: &str, arity: usize| {
        map.get(name)
            .is_some_and(|arities| arities.contains(&arity))
    };
    for (ns, name, arity, pos) in calls {
        if !name
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
            || INTRINSICS.contains(&name.as_str())
        {
            continue;
        }
        let ok = if ns.is_empty() {
            known(natives, &name, arity)
                || known(&script_fns, &name, arity)
                || variables.contains(&name)
        } else {
            match modules.get(&ns) {
                Some(m) => m
                    .functions
                    .as_ref()
                    .is_none_or(|fns| known(fns, &name, arity)),
                None => false,
            }
        };
        if !ok {
            let shown = if ns.is_empty() {
                name.clone()
            } else {
                format!("{ns}::{name}")
            };
            problems.push(at(
                file,
                pos,
                format!("call to unknown function `{shown}` with {arity} argument(s)"),
            ));
        }
    }

    for module in modules.into_values() {
        let Some((label, text)) = module.source else {
            continue;
        };
        if !visited.insert(label.clone()) {
            continue;
        }
        match engine.compile(&text) {
            Ok(module_ast) => {
                check_calls(checked, &module_ast, &label, problems, visited);
                check_options(&text, &label, problems);
            }
            Err(e) => problems.push(Diagnostic::new(
                &label,
                e.position().line().unwrap_or(0),
                e.position().position().unwrap_or(0),
                format!("syntax error: {}", e.err_type()),
            )),
        }
    }
}

fn at(file: &str, pos: Position, message: String) -> Diagnostic {
    Diagnostic::new(
        file,
        pos.line().unwrap_or(0),
        pos.position().unwrap_or(0),
        message,
    )
}

/// An imported module: its public functions (None if it did not resolve) and its source.
struct Imported {
    functions: Option<HashMap<String, HashSet<usize>>>,
    source: Option<(String, String)>,
}

/// Modules imported by `ast` (a file labelled `file`), by alias.
fn imported_modules(engine: &Engine, ast: &AST, file: &str) -> BTreeMap<String, Imported> {
    let mut imports = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        if let Some(ASTNode::Stmt(Stmt::Import(x, pos))) = path.last()
            && let Expr::StringConstant(s, ..) = &x.0
        {
            imports.push((x.1.name.to_string(), s.to_string(), *pos));
        }
        true
    });
    let finder = ScriptResolver::new(EngineSettings::default().stdlib_dirs);
    imports
        .into_iter()
        .map(|(alias, path, pos)| {
            let module = engine
                .module_resolver()
                .resolve(engine, Some(file), &path, pos)
                .ok();
            let functions = module.map(|m| {
                let mut out: HashMap<String, HashSet<usize>> = HashMap::new();
                for sig in m.gen_fn_signatures_with_mapper(Into::into) {
                    if let Some((n, a)) = parse_signature(&sig) {
                        out.entry(n).or_default().insert(a);
                    }
                }
                out
            });
            (
                alias,
                Imported {
                    functions,
                    source: finder.find(Some(file), &path).ok().flatten(),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(src: &str) -> Vec<String> {
        let engine = crate::registry::build_engine(
            &Default::default(),
            std::sync::Arc::new(crate::keys::KeyRing::empty()),
        );
        let script = Script::compile(&engine, "t.rhai", "t", src, None).unwrap();
        check(&engine, &script)
            .into_iter()
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn signatures_parse() {
        assert_eq!(
            parse_signature("abs(x: i64) -> i64"),
            Some(("abs".into(), 1))
        );
        assert_eq!(parse_signature("f() -> ()"), Some(("f".into(), 0)));
        assert_eq!(
            parse_signature("g(a: Map<K, V>, b: i64)"),
            Some(("g".into(), 2))
        );
    }

    #[test]
    fn a_clean_pipeline_has_no_problems() {
        let p = problems(
            "fn discover(ctx) { let x = [1,2]; x.push(3); abs(-1); }\nfn process(ctx, item) { helper(item) }\nfn helper(i) { i }",
        );
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn unknown_functions_and_bad_hooks_are_all_reported() {
        let p = problems(
            "fn discover(ctx) {\n  no_such_fn(1);\n}\nfn process(ctx) { }\nfn finish(a, b) { also_missing() }",
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("t.rhai:2:3: call to unknown function `no_such_fn`")),
            "{p:?}"
        );
        assert!(p.iter().any(|m| m.contains("also_missing")), "{p:?}");
        assert!(
            p.iter().any(|m| m.contains("hook `process` takes 2")),
            "{p:?}"
        );
    }

    /// A pipeline whose `process` body is `body` (starting on line 3).
    fn in_process(body: &str) -> Vec<String> {
        problems(&format!(
            "fn discover(ctx) {{ ctx.emit(\"a\", 1); }}\nfn process(ctx, item) {{\n{body}\n}}"
        ))
    }

    #[test]
    fn ctx_properties_are_checked_by_name_with_a_suggestion() {
        let p = in_process("  let s = ctx.stor;");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("t.rhai:3:15: `Ctx` has no property `stor`; did you mean `store`?"),
            "{p:?}"
        );
        assert!(in_process("  let s = ctx.store; let t = ctx.tenant;").is_empty());
    }

    #[test]
    fn flow_methods_are_checked_through_let_bindings_and_chains() {
        let p = in_process(
            "  let f = fetch(\"http://x\").md5();\n  f.sha265();\n  fetch(\"http://x\").sha256().gzipp(6);",
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("t.rhai:4:5: `Flow` has no method `sha265`; did you mean `sha256`?"),
            "{p:?}"
        );
        assert!(
            p[1].contains("`Flow` has no method `gzipp`; did you mean `gzip`?"),
            "{p:?}"
        );
    }

    #[test]
    fn arity_is_checked_without_counting_the_receiver() {
        let p = in_process("  ctx.emit(\"only a key\");\n  ctx.kv.get(\"k\", 1, 2);");
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("t.rhai:3:7: `Ctx.emit` takes 2 argument(s), found 1"),
            "{p:?}"
        );
        assert!(p[1].starts_with("t.rhai:4:10: `Kv.get` takes"), "{p:?}");
    }

    #[test]
    fn api_and_store_members_are_checked_and_helpers_taking_ctx_too() {
        let p = problems(
            "fn discover(ctx) { for r in ctx.api.paginat(\"/x\", #{ style: \"offset\" }) { ctx.emit(r.id, r); } }\n\
             fn process(ctx, item) { save(ctx, item) }\n\
             fn save(ctx, item) { let store = ctx.store; store.write_jsn(\"k\", item) }",
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].contains("`Api` has no method `paginat`; did you mean `paginate`?"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with(
                "t.rhai:3:51: `Store` has no method `write_jsn`; did you mean `write_json`?"
            ),
            "{p:?}"
        );
    }

    #[test]
    fn unknown_receivers_are_checked_by_method_name_only() {
        let p = in_process("  let m = item.data;\n  m.keys();\n  m.frobnicate(1);");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with(
                "t.rhai:5:5: call to unknown method `.frobnicate(..)` with 1 argument(s)"
            ),
            "{p:?}"
        );
        // A variable rebound to another type is no longer known: no guess, no error.
        assert!(
            in_process("  let x = ctx;\n  x = item;\n  x.anything_goes_here_maybe();").len() == 1
        );
    }

    #[test]
    fn every_problem_is_reported_in_line_order() {
        let p = problems(
            "const OPTIONS = #{ concurency: 2 };\nfn discover(ctx) {\n  ctx.emitt(\"a\", 1);\n  missing_fn();\n}\nfn process(ctx, item) { ctx.stor }",
        );
        let lines: Vec<&str> = p
            .iter()
            .map(|m| &m[..m[7..].find(':').unwrap() + 7])
            .collect();
        assert_eq!(
            lines,
            ["t.rhai:1", "t.rhai:3", "t.rhai:4", "t.rhai:6"],
            "{p:?}"
        );
    }

    #[test]
    fn the_shipped_scripts_pass() {
        let engine = crate::registry::build_engine(
            &Default::default(),
            std::sync::Arc::new(crate::keys::KeyRing::empty()),
        );
        for (name, src) in crate::engine::embedded::SCRIPTS {
            let script = Script::compile(&engine, name, name, src, None).unwrap();
            let p = check(&engine, &script);
            assert!(p.is_empty(), "{name}: {p:?}");
        }
    }
}
