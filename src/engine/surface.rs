//! What scripts can call, read from the engine's own metadata (so it cannot drift from the
//! registrations): methods and their arities per receiver type, properties per type, and
//! the types that methods and properties return. Used by the static checks.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use rhai::Engine;

/// Receiver type that any value matches (a first parameter of type `Dynamic`).
const ANY: &str = "Dynamic";

/// Properties whose getter returns `Dynamic` (it may throw, e.g. when no API is
/// configured) but whose value always has one type when it does not throw. Checked against
/// the engine's types by a test, so a rename cannot leave a stale entry.
pub const DYNAMIC_PROPERTY_TYPES: &[(&str, &str, &str)] =
    &[("Ctx", "api", "Api"), ("Ctx", "store", "Store")];

/// One parsed signature: `name(a: A, b: B) -> R`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    /// Parameter types, references stripped (`&mut Ctx` → `Ctx`).
    pub params: Vec<String>,
    /// Return type (`()` when none is shown).
    pub returns: String,
}

/// Parses a signature as [`Engine::gen_fn_signatures`] writes it.
pub fn parse_signature(sig: &str) -> Option<Signature> {
    let open = sig.find('(')?;
    let name = sig[..open].trim().to_string();
    let mut depth = 0usize;
    let mut params = Vec::new();
    let mut current = String::new();
    let mut close = None;
    for (i, c) in sig[open + 1..].char_indices() {
        match c {
            '(' | '<' | '[' => depth += 1,
            ')' if depth == 0 => {
                close = Some(open + 1 + i);
                break;
            }
            ')' | '>' | ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                params.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        params.push(current);
    }
    let returns = close
        .and_then(|c| sig[c + 1..].split_once("->"))
        .map(|(_, r)| r.trim().to_string())
        .unwrap_or_else(|| "()".into());
    let params = params.iter().map(|p| param_type(p)).collect();
    Some(Signature {
        name,
        params,
        returns,
    })
}

/// The type of one parameter as a signature shows it (`c: &mut Ctx` → `Ctx`); a
/// parameter shown without a type (`x`, `_`) takes any value.
fn param_type(text: &str) -> String {
    match text.trim().split_once(": ") {
        Some((_, t)) => t
            .trim()
            .trim_start_matches("&mut ")
            .trim_start_matches('&')
            .trim()
            .to_string(),
        None => ANY.to_string(),
    }
}

/// A type as Rhai names it: `Result<T, Box<EvalAltResult>>` (with or without Rust paths)
/// is `T`, and a registered type is its registered name (`cxpipe::flow::rhai::Flow` →
/// `Flow`); other paths are cut to their last segment.
fn display_type(engine: &Engine, typ: &str) -> String {
    let typ = typ.trim();
    let inner = match typ.find("Result<") {
        Some(i)
            if typ.ends_with('>')
                && typ[..i]
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == ':') =>
        {
            first_type_argument(&typ[i + "Result<".len()..typ.len() - 1])
        }
        _ => typ,
    };
    let mapped = engine.map_type_name(inner);
    if mapped.contains('<') {
        mapped.to_string()
    } else {
        mapped.rsplit("::").next().unwrap_or(mapped).to_string()
    }
}

/// `A` of `A, B<C, D>`.
fn first_type_argument(args: &str) -> &str {
    let mut depth = 0usize;
    for (i, c) in args.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => return args[..i].trim(),
            _ => {}
        }
    }
    args.trim()
}

/// The script surface: methods, properties and return types by receiver type.
#[derive(Debug, Default)]
pub struct Surface {
    /// Type → method name → arities, the receiver not counted.
    methods: HashMap<String, BTreeMap<String, BTreeSet<usize>>>,
    /// Type → property name → its type.
    properties: HashMap<String, BTreeMap<String, String>>,
    /// (type, method, arity without receiver) → return type, when unambiguous.
    returns: HashMap<(String, String, usize), Option<String>>,
    /// Free function (name, arity) → return type, when unambiguous.
    free_returns: HashMap<(String, usize), Option<String>>,
    /// Types with an indexer: any property name may be meant (`stores.archive`).
    indexed: HashSet<String>,
    /// Every method name on any type (for checks where the receiver is unknown).
    all_methods: BTreeMap<String, BTreeSet<usize>>,
    /// The types registered by cxpipe (`Ctx`, `Api`, `Flow`, …), as Rhai names them.
    custom: HashSet<String>,
}

impl Surface {
    /// Reads the surface from `engine`'s registered functions (standard packages included).
    pub fn of(engine: &Engine) -> Surface {
        let mut s = Surface {
            custom: custom_types(engine),
            ..Surface::default()
        };
        let sigs: Vec<Signature> = engine
            .gen_fn_signatures(true)
            .iter()
            .filter_map(|sig| parse_signature(sig))
            .map(|sig| Signature {
                params: sig.params.iter().map(|p| display_type(engine, p)).collect(),
                returns: display_type(engine, &sig.returns),
                ..sig
            })
            .collect();
        for sig in &sigs {
            let returns = Some(sig.returns.clone());
            s.free_returns
                .entry((sig.name.clone(), sig.params.len()))
                .and_modify(|r| {
                    if *r != returns {
                        *r = None
                    }
                })
                .or_insert(returns);
        }
        for sig in sigs {
            let Some((receiver, rest)) = sig.params.split_first() else {
                continue;
            };
            if let Some(prop) = sig.name.strip_prefix("get$") {
                s.properties.entry(receiver.clone()).or_default().insert(
                    prop.to_string(),
                    property_type(receiver, prop, &sig.returns),
                );
                continue;
            }
            if let Some(prop) = sig.name.strip_prefix("set$") {
                s.properties
                    .entry(receiver.clone())
                    .or_default()
                    .entry(prop.to_string())
                    .or_insert_with(|| ANY.to_string());
                continue;
            }
            if sig.name.starts_with("index$get$") {
                s.indexed.insert(receiver.clone());
                continue;
            }
            s.methods
                .entry(receiver.clone())
                .or_default()
                .entry(sig.name.clone())
                .or_default()
                .insert(rest.len());
            s.all_methods
                .entry(sig.name.clone())
                .or_default()
                .insert(rest.len());
            let returns = Some(sig.returns.clone());
            s.returns
                .entry((receiver.clone(), sig.name.clone(), rest.len()))
                .and_modify(|r| {
                    if *r != returns {
                        *r = None
                    }
                })
                .or_insert(returns);
        }
        s
    }

    /// Whether `typ` is one of cxpipe's registered types, whose members are all known.
    /// Rhai's own types (maps, arrays, strings) are not: a map has any property.
    pub fn knows(&self, typ: &str) -> bool {
        self.custom.contains(typ)
    }

    /// Arities (receiver not counted) of method `name` on `typ`, including methods every
    /// value has; empty when there is none.
    pub fn method_arities(&self, typ: &str, name: &str) -> BTreeSet<usize> {
        [typ, ANY]
            .iter()
            .filter_map(|t| self.methods.get(*t)?.get(name))
            .flatten()
            .copied()
            .collect()
    }

    /// Arities (receiver not counted) of method `name` on any type.
    pub fn any_method_arities(&self, name: &str) -> Option<&BTreeSet<usize>> {
        self.all_methods.get(name)
    }

    /// Method names of `typ` itself (not those every value has).
    pub fn method_names(&self, typ: &str) -> impl Iterator<Item = &str> {
        self.methods
            .get(typ)
            .into_iter()
            .flat_map(|m| m.keys().map(String::as_str))
    }

    /// Every method name, on any type.
    pub fn all_method_names(&self) -> impl Iterator<Item = &str> {
        self.all_methods.keys().map(String::as_str)
    }

    /// Property names of `typ`.
    pub fn property_names(&self, typ: &str) -> impl Iterator<Item = &str> {
        self.properties
            .get(typ)
            .into_iter()
            .flat_map(|m| m.keys().map(String::as_str))
    }

    /// The type of property `name` of `typ`: `Some(Some(t))` when known, `Some(None)` when
    /// the property exists but its type is not known, `None` when there is no such property.
    pub fn property(&self, typ: &str, name: &str) -> Option<Option<&str>> {
        match self.properties.get(typ).and_then(|p| p.get(name)) {
            Some(t) => Some(Some(t.as_str()).filter(|t| self.knows(t))),
            None if self.indexed.contains(typ) => Some(None),
            None => None,
        }
    }

    /// The type returned by `typ.name(..)` with `arity` arguments, when known.
    pub fn method_returns(&self, typ: &str, name: &str, arity: usize) -> Option<&str> {
        self.returns
            .get(&(typ.to_string(), name.to_string(), arity))?
            .as_deref()
            .filter(|t| self.knows(t))
    }

    /// The type returned by free function `name` with `arity` arguments, when known.
    pub fn function_returns(&self, name: &str, arity: usize) -> Option<&str> {
        self.free_returns
            .get(&(name.to_string(), arity))?
            .as_deref()
            .filter(|t| self.knows(t))
    }
}

/// The display names of the custom types registered on `engine` (from its metadata).
fn custom_types(engine: &Engine) -> HashSet<String> {
    let json = engine.gen_fn_metadata_to_json(false).unwrap_or_default();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    value["customTypes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["displayName"].as_str().map(str::to_string))
        .collect()
}

/// The type of a property, from its getter's return type (or [`DYNAMIC_PROPERTY_TYPES`]).
fn property_type(receiver: &str, prop: &str, returns: &str) -> String {
    if returns == ANY
        && let Some((.., t)) = DYNAMIC_PROPERTY_TYPES
            .iter()
            .find(|(r, p, _)| *r == receiver && *p == prop)
    {
        return (*t).to_string();
    }
    returns.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        crate::registry::build_engine(
            &Default::default(),
            std::sync::Arc::new(crate::keys::KeyRing::empty()),
        )
    }

    #[test]
    fn signatures_parse_with_types() {
        let s = parse_signature("metric(c: &mut Ctx, name: &str, v: i64) -> ()").unwrap();
        assert_eq!(s.name, "metric");
        assert_eq!(s.params, ["Ctx", "str", "i64"]);
        assert_eq!(
            parse_signature("f(x, _)").unwrap().params,
            ["Dynamic", "Dynamic"]
        );
        assert_eq!(s.returns, "()");
        let s = parse_signature("g(a: Map<K, V>, b: i64) -> Flow").unwrap();
        assert_eq!(s.params.len(), 2);
        assert_eq!(s.returns, "Flow");
        assert_eq!(parse_signature("f()").unwrap().params.len(), 0);
    }

    #[test]
    fn types_are_shown_as_rhai_names_them() {
        let e = engine();
        for (raw, shown) in [
            (
                "core::result::Result<rhai::types::dynamic::Dynamic, alloc::boxed::Box<rhai::types::error::EvalAltResult>>",
                "Dynamic",
            ),
            ("Result<Dynamic, Box<EvalAltResult>>", "Dynamic"),
            (std::any::type_name::<crate::flow::Flow>(), "Flow"),
            ("Result<Pages, Box<EvalAltResult>>", "Pages"),
        ] {
            assert_eq!(display_type(&e, raw), shown, "{raw}");
        }
    }

    #[test]
    fn the_engine_surface_knows_ctx_and_its_members() {
        let s = Surface::of(&engine());
        assert!(s.knows("Ctx") && s.knows("Flow") && s.knows("Api"));
        assert!(!s.knows("Map") && !s.knows("Dynamic"));
        assert!(s.property("Ctx", "tenant").is_some());
        assert!(s.property("Ctx", "stor").is_none());
        assert!(!s.method_arities("Ctx", "emit").is_empty());
        assert_eq!(s.property("Ctx", "kv"), Some(Some("Kv")));
        assert_eq!(s.function_returns("fetch", 1), Some("Flow"));
        assert_eq!(s.method_returns("Flow", "md5", 0), Some("Flow"));
    }

    #[test]
    fn dynamic_property_types_name_registered_types_and_properties() {
        let s = Surface::of(&engine());
        for (receiver, prop, typ) in DYNAMIC_PROPERTY_TYPES {
            assert!(s.knows(typ), "{typ} is not a registered type with methods");
            assert_eq!(
                s.property(receiver, prop),
                Some(Some(*typ)),
                "{receiver}.{prop}"
            );
        }
    }
}
