//! A compiled script generation: source, self-contained AST (imports resolved once, at
//! compile time), content hash and the `OPTIONS` constant.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{AST, Engine, Map, Scope};
use sha2::{Digest, Sha256};

use super::diagnostics::{Diagnostic, diagnostic_from_eval};

thread_local! {
    static SCRIPT_DIR: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// The folder of the script being compiled on this thread (import resolution starts there).
pub fn current_script_dir() -> Option<PathBuf> {
    SCRIPT_DIR.with(|d| d.borrow().clone())
}

/// Sets the folder of the script being compiled or checked on this thread; returns the
/// previous one, to be restored.
pub fn set_script_dir(dir: Option<PathBuf>) -> Option<PathBuf> {
    SCRIPT_DIR.with(|d| d.replace(dir))
}

/// Why a script could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot read script {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostic),
}

/// One compiled generation of a pipeline script.
#[derive(Clone, Debug)]
pub struct Script {
    /// Path shown in diagnostics.
    pub label: String,
    /// Pipeline name: the file stem.
    pub name: String,
    pub source: Arc<str>,
    pub ast: Arc<AST>,
    /// SHA-256 of the source (hex).
    pub hash: String,
    /// Every module its imports loaded (nested ones too): absolute path, or
    /// `embedded:NAME` for the built-in stdlib → SHA-256 of its text.
    pub imports: Arc<BTreeMap<String, String>>,
}

impl Script {
    /// Reads and compiles the script at `path`.
    pub fn load(engine: &Engine, path: &Path) -> Result<Script, ScriptError> {
        let source = std::fs::read_to_string(path).map_err(|source| ScriptError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "script".into());
        let dir = path.parent().map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        });
        Self::compile(engine, &path.to_string_lossy(), &name, &source, dir)
    }

    /// Compiles `source`; `dir` is where its imports are looked up first.
    pub fn compile(
        engine: &Engine,
        label: &str,
        name: &str,
        source: &str,
        dir: Option<&Path>,
    ) -> Result<Script, ScriptError> {
        let previous = set_script_dir(dir.map(Path::to_path_buf));
        let (compiled, imports) = super::resolver::track_imports(|| {
            engine.compile_into_self_contained(&Scope::new(), source)
        });
        set_script_dir(previous);
        let mut ast =
            compiled.map_err(|e| ScriptError::Invalid(diagnostic_from_eval(&e, label)))?;
        ast.set_source(label);
        Ok(Script {
            label: label.to_string(),
            name: name.to_string(),
            source: source.into(),
            ast: Arc::new(ast),
            hash: hex::encode(Sha256::digest(source.as_bytes())),
            imports: Arc::new(imports),
        })
    }

    /// Whether the script defines `name` with exactly `arity` parameters.
    pub fn has_fn(&self, name: &str, arity: usize) -> bool {
        self.ast
            .iter_functions()
            .any(|f| f.name == name && f.params.len() == arity)
    }

    /// The script's `OPTIONS` constant (an empty map when absent).
    pub fn options(&self, engine: &Engine) -> Result<Map, ScriptError> {
        let mut scope = Scope::new();
        engine
            .run_ast_with_scope(&mut scope, &self.ast)
            .map_err(|e| ScriptError::Invalid(diagnostic_from_eval(&e, &self.label)))?;
        match scope.get_value::<rhai::Dynamic>("OPTIONS") {
            None => Ok(Map::new()),
            Some(v) => v.try_cast::<Map>().ok_or_else(|| {
                ScriptError::Invalid(Diagnostic::new(
                    &self.label,
                    0,
                    0,
                    "OPTIONS must be a map, e.g. `const OPTIONS = #{ concurrency: 8 };`",
                ))
            }),
        }
    }
}
