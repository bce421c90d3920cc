//! Turns Rhai errors into `file:line:col: message` lines with the call chain.

use std::fmt;

use rhai::{EvalAltResult, Position};

/// One problem in a script, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
    /// Innermost call last: `fn_name (file:line:col)`.
    pub chain: Vec<String>,
}

impl Diagnostic {
    pub fn new(file: &str, line: usize, col: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_string(),
            line,
            col,
            message: message.into(),
            chain: Vec::new(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.col, self.message
            )?;
        }
        for frame in self.chain.iter().rev() {
            write!(f, "\n    in {frame}")?;
        }
        Ok(())
    }
}

fn located(source: &str, pos: Position) -> String {
    format!(
        "{source}:{}:{}",
        pos.line().unwrap_or(0),
        pos.position().unwrap_or(0)
    )
}

/// Walks nested function-call and module errors down to the cause, collecting the chain.
pub fn diagnostic_from_eval(err: &EvalAltResult, default_source: &str) -> Diagnostic {
    let mut source = default_source.to_string();
    let mut chain = Vec::new();
    let mut cur = err;
    loop {
        match cur {
            EvalAltResult::ErrorInFunctionCall(name, fn_source, inner, pos) => {
                chain.push(format!("{name}() called at {}", located(&source, *pos)));
                if !fn_source.is_empty() {
                    source = fn_source.clone();
                }
                cur = inner;
            }
            EvalAltResult::ErrorInModule(path, inner, pos) => {
                chain.push(format!("import {path:?} at {}", located(&source, *pos)));
                source = path.clone();
                cur = inner;
            }
            _ => break,
        }
    }
    let pos = cur.position();
    let message = match cur {
        EvalAltResult::ErrorTerminated(token, _) => token
            .clone()
            .into_string()
            .unwrap_or_else(|_| token.to_string()),
        EvalAltResult::ErrorParsing(p, _) => format!("syntax error: {p}"),
        EvalAltResult::ErrorRuntime(value, _) if value.is_map() => thrown_map(value),
        other => {
            let text = other.to_string();
            let suffix = format!(" ({pos})");
            text.strip_suffix(&suffix)
                .map(str::to_string)
                .unwrap_or(text)
        }
    };
    Diagnostic {
        file: source,
        line: pos.line().unwrap_or(0),
        col: pos.position().unwrap_or(0),
        message,
        chain,
    }
}

/// A thrown map (`#{ message, status, request_id, .. }`, as native stages raise them) as
/// one readable line.
fn thrown_map(value: &rhai::Dynamic) -> String {
    let map = value.read_lock::<rhai::Map>().expect("checked is_map");
    let field = |name: &str| {
        map.get(name)
            .filter(|v| !v.is_unit())
            .map(|v| v.to_string())
    };
    let mut text = field("message").unwrap_or_else(|| value.to_string());
    if let Some(status) = field("status") {
        text = format!("{text} (HTTP {status})");
    }
    if let Some(id) = field("request_id") {
        text = format!("{text} [request {id}]");
    }
    text
}

/// Whether a script error may succeed if tried again: a thrown map says so with
/// `retryable` (native stages set it; `throw #{ retryable: false, .. }` in scripts); any
/// other error (a thrown string, a type error) counts as retryable.
pub fn thrown_retryable(err: &EvalAltResult) -> bool {
    let mut cur = err;
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
    | EvalAltResult::ErrorInModule(_, inner, _) = cur
    {
        cur = inner;
    }
    match cur {
        EvalAltResult::ErrorRuntime(value, _) => value
            .read_lock::<rhai::Map>()
            .and_then(|m| m.get("retryable").and_then(|r| r.as_bool().ok()))
            .unwrap_or(true),
        _ => true,
    }
}

/// Formats an evaluation error for users and the ledger.
pub fn format_eval_error(err: &EvalAltResult, default_source: &str) -> String {
    diagnostic_from_eval(err, default_source).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_errors_name_file_line_and_chain() {
        let engine = rhai::Engine::new();
        let mut ast = engine
            .compile("fn inner() {\n  throw \"boom\";\n}\nfn outer() { inner() }")
            .unwrap();
        ast.set_source("x.rhai");
        let err = engine
            .call_fn::<()>(&mut rhai::Scope::new(), &ast, "outer", ())
            .unwrap_err();
        let text = format_eval_error(&err, "x.rhai");
        assert!(text.starts_with("x.rhai:2:3: "), "{text}");
        assert!(text.contains("boom"), "{text}");
        assert!(text.contains("inner() called at x.rhai:4"), "{text}");
    }

    #[test]
    fn thrown_maps_show_their_message_and_status() {
        let engine = rhai::Engine::new();
        let err = engine
            .run(r#"throw #{ message: "no such recording", status: 404, retryable: false, request_id: () };"#)
            .unwrap_err();
        assert_eq!(
            format_eval_error(&err, "y.rhai"),
            "y.rhai:1:1: no such recording (HTTP 404)"
        );
    }
}
