//! Static checks behind `cxpipe check` and before every run: hooks present with the right
//! arity, and every called function defined somewhere (script, import, native), each
//! problem reported with `file:line:col`.

use std::collections::{BTreeMap, HashMap, HashSet};

use rhai::{AST, Engine, Position};
use rhai::{ASTNode, Expr, Stmt};

use super::EngineSettings;
use super::diagnostics::Diagnostic;
use super::resolver::ScriptResolver;
use super::script::Script;

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
    let open = sig.find('(')?;
    let name = sig[..open].trim().to_string();
    let mut depth = 0usize;
    let (mut commas, mut any) = (0usize, false);
    for c in sig[open + 1..].chars() {
        match c {
            '(' | '<' | '[' => depth += 1,
            ')' if depth == 0 => break,
            ')' | '>' | ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => commas += 1,
            c if !c.is_whitespace() => any = true,
            _ => {}
        }
    }
    Some((name, if any { commas + 1 } else { 0 }))
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
        engine,
        &natives,
        &script.ast,
        file,
        &mut problems,
        &mut visited,
    );
    super::script::set_script_dir(previous);
    problems
}

/// Every function an AST calls must exist: defined in it, imported, or native. Imported
/// script modules are checked the same way (each once).
fn check_calls(
    engine: &Engine,
    natives: &HashMap<String, HashSet<usize>>,
    ast: &AST,
    file: &str,
    problems: &mut Vec<Diagnostic>,
    visited: &mut HashSet<String>,
) {
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
                calls.push((ns, call.name.to_string(), call.args.len(), *pos, false));
            }
            Some(ASTNode::Expr(Expr::MethodCall(call, pos))) => {
                calls.push((
                    String::new(),
                    call.name.to_string(),
                    call.args.len() + 1,
                    *pos,
                    true,
                ));
            }
            _ => {}
        }
        true
    });

    let known = |map: &HashMap<String, HashSet<usize>>, name: &str, arity: usize, method: bool| {
        map.get(name)
            .is_some_and(|arities| method || arities.contains(&arity))
    };
    for (ns, name, arity, pos, method) in calls {
        if !name
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
            || INTRINSICS.contains(&name.as_str())
        {
            continue;
        }
        let ok = if ns.is_empty() {
            known(natives, &name, arity, method)
                || known(&script_fns, &name, arity, method)
                || (!method && variables.contains(&name))
        } else {
            match modules.get(&ns) {
                Some(m) => m
                    .functions
                    .as_ref()
                    .is_none_or(|fns| known(fns, &name, arity, false)),
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
            Ok(module_ast) => check_calls(engine, natives, &module_ast, &label, problems, visited),
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
        let engine = crate::engine::base_engine(&Default::default());
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
}
