//! Option checks behind `cxpipe check`: the keys and values of a literal `OPTIONS` map
//! (parsed by the runner's own [`PipelineOptions::from_map`]) and the keys of literal option
//! maps given to `paginate` and `poll` (the fields their specs accept, read from the specs'
//! `Deserialize` impls), each reported where it is written.

use rhai::{AST, ASTNode, Engine, Expr, Map, OptimizationLevel, Position, Stmt};
use serde::de::{self, Deserializer, Visitor};

use super::diagnostics::Diagnostic;
use super::suggest;
use crate::api::paginate::PageSpec;
use crate::api::poll::PollSpec;
use crate::runner::PipelineOptions;
use crate::runner::options::KEYS as OPTION_KEYS;

/// Checks the option maps of `source` (labelled `file`); a source that does not parse was
/// already reported by the compiler and is skipped here.
pub fn check_options(source: &str, file: &str, out: &mut Vec<Diagnostic>) {
    // Parsed again without optimisation: constant folding would merge literal maps into
    // values and lose the position of each key.
    let mut raw = Engine::new_raw();
    raw.set_optimization_level(OptimizationLevel::None);
    let Ok(ast) = raw.compile(source) else {
        return;
    };
    check_pipeline_options(&ast, file, out);
    check_call_options(&ast, file, out);
}

/// The top-level `const OPTIONS = #{ … }`: every key known, every constant value valid.
fn check_pipeline_options(ast: &AST, file: &str, out: &mut Vec<Diagnostic>) {
    for stmt in ast.statements() {
        let Stmt::Var(x, ..) = stmt else { continue };
        if x.0.name != "OPTIONS" {
            continue;
        }
        let Expr::Map(map, _) = &x.1 else { continue };
        for (key, value) in &map.0 {
            let name = key.name.as_str();
            if !OPTION_KEYS.contains(&name) {
                out.push(at(
                    file,
                    key.pos,
                    format!(
                        "OPTIONS.{name}: unknown option `{name}`{} (known: {})",
                        suggest::hint(name, OPTION_KEYS.iter().copied()),
                        OPTION_KEYS.join(", ")
                    ),
                ));
                continue;
            }
            let Some(value) = value.get_literal_value(None) else {
                continue;
            };
            let mut one = Map::new();
            one.insert(name.into(), value);
            if let Err(errors) = PipelineOptions::from_map(&one) {
                for e in errors {
                    out.push(at(file, value_pos(&map.0, name), e));
                }
            }
        }
    }
}

/// Where the value of `name` is written in a literal map.
fn value_pos(entries: &[(rhai::Ident, Expr)], name: &str) -> Position {
    entries
        .iter()
        .find(|(k, _)| k.name == name)
        .map(|(k, v)| {
            let p = v.position();
            if p.is_none() { k.pos } else { p }
        })
        .unwrap_or(Position::NONE)
}

/// `api.paginate(path, #{ … })` and `api.poll(path, #{ … })` (or the function forms):
/// every key of a literal options map must be a field of the spec.
fn check_call_options(ast: &AST, file: &str, out: &mut Vec<Diagnostic>) {
    let paginate = struct_fields::<PageSpec>();
    let poll = struct_fields::<PollSpec>();
    let mut found: Vec<(String, Vec<(String, Position)>)> = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        let (call, method) =
            match path.last() {
                Some(ASTNode::Expr(Expr::MethodCall(call, _))) => (call, true),
                Some(
                    ASTNode::Expr(Expr::FnCall(call, _)) | ASTNode::Stmt(Stmt::FnCall(call, _)),
                ) if call.namespace.is_empty() => (call, false),
                _ => return true,
            };
        let name = call.name.as_str();
        // `api.paginate(path, opts)` or `paginate(api, path, opts)`.
        let argc = if method { 2 } else { 3 };
        if (name == "paginate" || name == "poll")
            && call.args.len() == argc
            && let Some(Expr::Map(map, _)) = call.args.last()
        {
            let keys = map
                .0
                .iter()
                .map(|(k, _)| (k.name.to_string(), k.pos))
                .collect();
            found.push((name.to_string(), keys));
        }
        true
    });
    for (call, keys) in found {
        let fields = if call == "paginate" { paginate } else { poll };
        for (key, pos) in keys {
            if !fields.contains(&key.as_str()) {
                out.push(at(
                    file,
                    pos,
                    format!(
                        "unknown `{call}` option `{key}`{} (known: {})",
                        suggest::hint(&key, fields.iter().copied()),
                        fields.join(", ")
                    ),
                ));
            }
        }
    }
}

/// The field names a `#[derive(Deserialize)]` struct accepts, read from the list serde
/// hands to `deserialize_struct` (so they cannot drift from the struct).
fn struct_fields<T: de::DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields
}

/// A deserializer that only records the fields a struct asks for.
struct FieldProbe<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only structs are probed"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("probed"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
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

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(src: &str) -> Vec<String> {
        let mut out = Vec::new();
        check_options(src, "t.rhai", &mut out);
        out.into_iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn spec_fields_are_read_from_the_structs() {
        let fields = struct_fields::<PageSpec>();
        assert!(
            fields.contains(&"style") && fields.contains(&"size"),
            "{fields:?}"
        );
        assert!(struct_fields::<PollSpec>().contains(&"every"));
    }

    #[test]
    fn options_keys_and_values_are_checked_where_written() {
        let p = problems(
            "const OPTIONS = #{\n  concurency: 4,\n  item_timeout: \"ten minutes\",\n  max_attempts: 3,\n};\nfn discover(ctx) {}",
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("t.rhai:2:3: OPTIONS.concurency: unknown option `concurency`; did you mean `concurrency`?"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("t.rhai:3:17: OPTIONS.item_timeout:"),
            "{p:?}"
        );
    }

    #[test]
    fn paginate_and_poll_option_keys_are_checked() {
        let p = problems(
            "fn discover(ctx) {\n  for r in ctx.api.paginate(\"/x\", #{ style: \"offset\", sise: 10 }) {}\n  ctx.api.poll(\"/j\", #{ done: [\"ok\"], evry: \"1s\" });\n}",
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("t.rhai:2:55: unknown `paginate` option `sise`; did you mean `size`?"),
            "{p:?}"
        );
        assert!(
            p[1].contains("unknown `poll` option `evry`; did you mean `every`?"),
            "{p:?}"
        );
    }
}
