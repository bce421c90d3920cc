//! Member checks behind `cxpipe check`: method calls and property reads on receivers whose
//! type is known (`ctx`, `ctx.api`, `ctx.store`, `ctx.kv`, flows, …), tracked through
//! `let` bindings and chains, against the engine's registrations ([`Surface`]). A receiver
//! of unknown type is checked by method name only; nothing is guessed.

use std::collections::{BTreeSet, HashMap, HashSet};

use rhai::{AST, ASTNode, Expr, Position, Stmt};

use super::diagnostics::Diagnostic;
use super::suggest;
use super::surface::Surface;

/// Parameter names whose type is known in any function: the runner's context.
const TYPED_PARAMS: &[(&str, &str)] = &[("ctx", "Ctx")];

/// Method names every value answers that the interpreter handles itself.
const INTRINSIC_METHODS: &[&str] = &[
    "call",
    "curry",
    "is_shared",
    "is_def_fn",
    "type_of",
    "to_string",
    "to_debug",
    "tag",
];

/// Checks every method call and property read of `ast` (labelled `file`).
pub fn check_members(surface: &Surface, ast: &AST, file: &str, out: &mut Vec<Diagnostic>) {
    // A script function `f(a, b)` can be called as `a.f(b)`.
    let mut script_methods: HashMap<String, BTreeSet<usize>> = HashMap::new();
    for f in ast.iter_functions() {
        if let Some(n) = f.params.len().checked_sub(1) {
            script_methods
                .entry(f.name.to_string())
                .or_default()
                .insert(n);
        }
    }
    let mut checker = Checker {
        surface,
        script_methods: &script_methods,
        file,
        vars: HashMap::new(),
        typed: HashSet::new(),
    };
    for f in ast.iter_functions() {
        let (name, arity) = (f.name, f.params.len());
        let one = ast.clone_functions_only_filtered(|_, _, _, n, a| n == name && a == arity);
        let params: Vec<&str> = f.params.to_vec();
        checker.vars = checker.bindings(&one, &params);
        one.walk(&mut |path: &[ASTNode]| {
            // A chain is checked from its root; the `Dot`s nested in it are reached from there.
            let nested = matches!(path.iter().rev().nth(1), Some(ASTNode::Expr(Expr::Dot(..))));
            if let Some(ASTNode::Expr(e @ Expr::Dot(..))) = path.last()
                && !nested
            {
                checker.expr_type(e, out);
            }
            true
        });
    }
    // Calls on receivers of unknown type: the method must exist on some type.
    let mut untyped = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        if let Some(ASTNode::Expr(Expr::MethodCall(call, pos))) = path.last()
            && !checker.typed.contains(pos)
        {
            untyped.push((call.name.to_string(), call.args.len(), *pos));
        }
        true
    });
    for (name, argc, pos) in untyped {
        if INTRINSIC_METHODS.contains(&name.as_str()) || script_methods.contains_key(&name) {
            continue;
        }
        if surface.any_method_arities(&name).is_none() {
            let hint = suggest::hint(
                &name,
                surface
                    .all_method_names()
                    .chain(script_methods.keys().map(String::as_str)),
            );
            out.push(at(
                file,
                pos,
                format!("call to unknown method `.{name}(..)` with {argc} argument(s){hint}"),
            ));
        }
    }
}

struct Checker<'a> {
    surface: &'a Surface,
    script_methods: &'a HashMap<String, BTreeSet<usize>>,
    file: &'a str,
    /// Variable → its type, when every binding of it in the function agrees.
    vars: HashMap<String, Option<String>>,
    /// Method calls already checked against their receiver's type.
    typed: HashSet<Position>,
}

impl Checker<'_> {
    /// The types of the variables of one function: each is known only when all of its
    /// bindings (parameter, `let`, assignments; loop variables are unknown) have one type.
    fn bindings(&mut self, ast: &AST, params: &[&str]) -> HashMap<String, Option<String>> {
        let typed = std::mem::take(&mut self.typed);
        let mut bound: Vec<(String, Option<Expr>)> = Vec::new();
        ast.walk(&mut |path: &[ASTNode]| {
            match path.last() {
                Some(ASTNode::Stmt(Stmt::Var(x, ..))) => {
                    bound.push((x.0.name.to_string(), Some(x.1.clone())));
                }
                Some(ASTNode::Stmt(Stmt::Assignment(x))) => {
                    if let Expr::Variable(v, ..) = &x.1.lhs {
                        let value = x.0.is_op_assignment().then_some(Expr::Unit(Position::NONE));
                        bound.push((v.1.to_string(), value.or(Some(x.1.rhs.clone()))));
                    }
                }
                Some(ASTNode::Stmt(Stmt::For(x, ..))) => {
                    bound.push((x.0.name.to_string(), None));
                    if let Some(counter) = &x.1 {
                        bound.push((counter.name.to_string(), None));
                    }
                }
                _ => {}
            }
            true
        });
        let mut types: HashMap<String, Option<String>> = params
            .iter()
            .map(|p| {
                let known = TYPED_PARAMS
                    .iter()
                    .find(|(name, _)| name == p)
                    .map(|(_, t)| (*t).to_string());
                ((*p).to_string(), known)
            })
            .collect();
        let mut scratch = Vec::new();
        // Bindings may use each other (`let api = ctx.api; let p = api.paginate(..)`);
        // a few rounds settle any realistic chain.
        for _ in 0..4 {
            self.vars = types.clone();
            let mut next: HashMap<String, Option<Option<String>>> = HashMap::new();
            for (name, value) in &bound {
                let t = value.as_ref().and_then(|e| self.expr_type(e, &mut scratch));
                next.entry(name.clone())
                    .and_modify(|prev| {
                        if *prev != Some(t.clone()) {
                            *prev = Some(None)
                        }
                    })
                    .or_insert(Some(t));
            }
            for (name, t) in next {
                let t = t.flatten();
                let merged = match types.get(&name) {
                    // A parameter rebound to another type is unknown.
                    Some(p) if params.contains(&name.as_str()) && *p != t => None,
                    _ => t,
                };
                types.insert(name, merged);
            }
        }
        self.typed = typed;
        types
    }

    /// The type of `e` when known; reports bad members met on the way.
    fn expr_type(&mut self, e: &Expr, out: &mut Vec<Diagnostic>) -> Option<String> {
        match e {
            Expr::Variable(v, ..) if v.2.is_empty() => self.vars.get(v.1.as_str()).cloned()?,
            Expr::Dot(bin, ..) => {
                let t = self.expr_type(&bin.lhs, out);
                self.member(t, &bin.rhs, out)
            }
            Expr::FnCall(call, ..) if call.namespace.is_empty() && call.op_token.is_none() => self
                .surface
                .function_returns(&call.name, call.args.len())
                .map(str::to_string),
            _ => None,
        }
    }

    /// The type of `rhs` applied to a receiver of type `receiver`; reports bad members.
    fn member(
        &mut self,
        receiver: Option<String>,
        rhs: &Expr,
        out: &mut Vec<Diagnostic>,
    ) -> Option<String> {
        let typ = receiver.filter(|t| self.surface.knows(t));
        match rhs {
            Expr::Property(p, pos) => {
                let typ = typ?;
                let name = p.2.as_str();
                match self.surface.property(&typ, name) {
                    Some(t) => t.map(str::to_string),
                    None => {
                        let hint = suggest::hint(name, self.surface.property_names(&typ));
                        let known: Vec<&str> = self.surface.property_names(&typ).collect();
                        out.push(at(
                            self.file,
                            *pos,
                            format!(
                                "`{typ}` has no property `{name}`{hint} (its properties: {})",
                                known.join(", ")
                            ),
                        ));
                        None
                    }
                }
            }
            Expr::MethodCall(call, pos) => {
                let typ = typ?;
                self.typed.insert(*pos);
                let (name, argc) = (call.name.as_str(), call.args.len());
                if INTRINSIC_METHODS.contains(&name) {
                    return None;
                }
                let mut arities = self.surface.method_arities(&typ, name);
                if let Some(script) = self.script_methods.get(name) {
                    arities.extend(script);
                }
                if arities.is_empty() {
                    let hint = suggest::hint(
                        name,
                        self.surface
                            .method_names(&typ)
                            .chain(self.surface.property_names(&typ)),
                    );
                    let hint = if hint.is_empty() {
                        let known: Vec<&str> = self.surface.method_names(&typ).collect();
                        format!(" (its methods: {})", known.join(", "))
                    } else {
                        hint
                    };
                    out.push(at(
                        self.file,
                        *pos,
                        format!("`{typ}` has no method `{name}`{hint}"),
                    ));
                    return None;
                }
                if !arities.contains(&argc) {
                    let takes: Vec<String> = arities.iter().map(usize::to_string).collect();
                    out.push(at(
                        self.file,
                        *pos,
                        format!(
                            "`{typ}.{name}` takes {} argument(s), found {argc}",
                            join_or(&takes)
                        ),
                    ));
                    return None;
                }
                self.surface
                    .method_returns(&typ, name, argc)
                    .map(str::to_string)
            }
            Expr::Dot(bin, ..) => {
                let t = self.member(typ, &bin.lhs, out);
                self.member(t, &bin.rhs, out)
            }
            Expr::Index(bin, ..) => {
                self.member(typ, &bin.lhs, out);
                None
            }
            _ => None,
        }
    }
}

/// `a`, `a or b`, `a, b or c`.
fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
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
