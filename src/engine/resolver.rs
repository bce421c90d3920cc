//! Resolves `import "path"`: the importing file's folder, the script's folder, `stdlib/`
//! beside the script's folder, folders from settings, then the embedded standard library.
//! Never caches, so a new script generation sees edited modules.
//!
//! Imports stay inside those folder trees: a path that is absolute or climbs with `..` is
//! refused, and a file found through a symlink that leads outside its tree is refused too
//! (paths are canonicalized and checked for containment).
//!
//! Every module loaded while a script compiles is recorded ([`track_imports`]): its
//! absolute path (or `embedded:NAME` for the built-in stdlib) and a hash of its text, so a
//! generation knows which files to watch and when it is stale.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use rhai::{Dynamic, Engine, EvalAltResult, Map, Module, Position, Scope, Shared};

type SharedModule = Shared<Module>;

use super::embedded;

thread_local! {
    static IMPORTS: RefCell<Option<BTreeMap<String, String>>> = const { RefCell::new(None) };
}

/// Runs `f` (a compilation on this thread) and returns what it returned with every module
/// the resolver loaded meanwhile: absolute path or `embedded:NAME` → SHA-256 of its text.
pub fn track_imports<T>(f: impl FnOnce() -> T) -> (T, BTreeMap<String, String>) {
    let previous = IMPORTS.with(|i| i.replace(Some(BTreeMap::new())));
    let out = f();
    let imports = IMPORTS.with(|i| i.replace(previous)).unwrap_or_default();
    (out, imports)
}

/// Records a loaded module when a compilation on this thread is tracking imports.
fn record_import(name: String, text: &str) {
    IMPORTS.with(|i| {
        if let Some(map) = i.borrow_mut().as_mut() {
            map.insert(name, hex::encode(Sha256::digest(text.as_bytes())));
        }
    });
}

/// The module resolver installed in every engine.
pub struct ScriptResolver {
    extra_dirs: Vec<PathBuf>,
}

/// Why an import was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("import {path:?}: {reason}")]
pub struct ImportRefused {
    pub path: String,
    pub reason: String,
}

/// A folder to look in and the tree an import found there must stay inside.
struct SearchDir {
    dir: PathBuf,
    root: PathBuf,
}

impl ScriptResolver {
    pub fn new(extra_dirs: Vec<PathBuf>) -> Self {
        ScriptResolver { extra_dirs }
    }

    /// The trees imports may come from: the script's folder, `stdlib/` beside it, and the
    /// configured folders.
    fn roots(&self) -> Vec<PathBuf> {
        let mut roots = Vec::new();
        if let Some(root) = crate::engine::script::current_script_dir() {
            roots.push(root.clone());
            if let Some(parent) = root.parent() {
                roots.push(parent.join("stdlib"));
            }
        }
        roots.extend(self.extra_dirs.iter().cloned());
        roots
    }

    /// Folders to search for a module imported from `source` (a file path, if known).
    fn search_dirs(&self, source: Option<&str>) -> Vec<SearchDir> {
        let roots = self.roots();
        let mut dirs = Vec::new();
        // The importing file's folder and `stdlib/` beside it count only inside a tree.
        if let Some(dir) = source.and_then(|s| Path::new(s).parent()) {
            let mut near = vec![dir.to_path_buf()];
            if let Some(parent) = dir.parent() {
                near.push(parent.join("stdlib"));
            }
            for d in near {
                if let Some(root) = containing_root(&d, &roots) {
                    dirs.push(SearchDir { dir: d, root });
                }
            }
        }
        dirs.extend(roots.into_iter().map(|r| SearchDir {
            dir: r.clone(),
            root: r,
        }));
        dirs
    }

    /// Finds the module's source: (label for errors, text); `Err` when the import is
    /// refused (absolute, `..`, or leading outside its tree).
    pub fn find(
        &self,
        source: Option<&str>,
        path: &str,
    ) -> Result<Option<(String, String)>, ImportRefused> {
        check_import_path(path)?;
        let file = if path.ends_with(".rhai") {
            path.to_string()
        } else {
            format!("{path}.rhai")
        };
        for SearchDir { dir, root } in self.search_dirs(source) {
            let candidate = dir.join(&file);
            if !candidate.is_file() {
                continue;
            }
            let (Ok(real), Ok(real_root)) = (candidate.canonicalize(), root.canonicalize()) else {
                continue;
            };
            if !real.starts_with(&real_root) {
                return Err(ImportRefused {
                    path: path.to_string(),
                    reason: format!(
                        "{} leads to {}, outside {} (through a symlink); imports must stay inside the script's folder or the stdlib folders",
                        candidate.display(),
                        real.display(),
                        real_root.display()
                    ),
                });
            }
            if let Ok(text) = std::fs::read_to_string(&candidate) {
                record_import(real.to_string_lossy().into_owned(), &text);
                return Ok(Some((candidate.to_string_lossy().into_owned(), text)));
            }
        }
        Ok(embedded::stdlib(path).map(|text| {
            let name = path.strip_suffix(".rhai").unwrap_or(path);
            record_import(format!("embedded:{name}"), text);
            (format!("<stdlib>/{file}"), text.to_string())
        }))
    }
}

/// Refuses import paths that are absolute or climb out with `..`.
pub fn check_import_path(path: &str) -> Result<(), ImportRefused> {
    let refuse = |reason: &str| {
        Err(ImportRefused {
            path: path.to_string(),
            reason: reason.to_string(),
        })
    };
    if path.is_empty() || path.contains(['\0', '\\']) {
        return refuse("module paths are `/`-separated names, e.g. \"cxone/recording_search\"");
    }
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {
                return refuse(
                    "absolute paths are refused: import by a path relative to the script's folder or stdlib/",
                );
            }
            Component::ParentDir => {
                return refuse(
                    "`..` is refused: imports stay inside the script's folder and the stdlib folders (move the module beside the script or into stdlib/)",
                );
            }
            Component::CurDir | Component::Normal(_) => {}
        }
    }
    Ok(())
}

/// The root among `roots` that holds `dir`, compared canonically.
fn containing_root(dir: &Path, roots: &[PathBuf]) -> Option<PathBuf> {
    let real = dir.canonicalize().ok()?;
    roots
        .iter()
        .find(|r| r.canonicalize().is_ok_and(|root| real.starts_with(root)))
        .cloned()
}

impl rhai::ModuleResolver for ScriptResolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<SharedModule, Box<EvalAltResult>> {
        let (label, text) = self
            .find(source, path)
            .map_err(|refused| {
                let mut map = Map::new();
                map.insert("message".into(), refused.to_string().into());
                Box::new(EvalAltResult::ErrorRuntime(Dynamic::from_map(map), pos))
            })?
            .ok_or_else(|| Box::new(EvalAltResult::ErrorModuleNotFound(path.to_string(), pos)))?;
        let mut ast = engine
            .compile(&text)
            .map_err(|e| Box::new(EvalAltResult::ErrorInModule(label.clone(), e.into(), pos)))?;
        ast.set_source(label.as_str());
        let mut module = Module::eval_ast_as_new(Scope::new(), &ast, engine)
            .map_err(|e| Box::new(EvalAltResult::ErrorInModule(label.clone(), e, pos)))?;
        module.set_id(label);
        Ok(module.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_and_climbing_paths_are_refused() {
        for bad in ["../outside", "/etc/passwd", "a/../../b", "", "a\\b", "x\0"] {
            assert!(check_import_path(bad).is_err(), "{bad:?}");
        }
        for good in ["cxone/recording_search", "./helper", "lib.rhai"] {
            assert!(check_import_path(good).is_ok(), "{good:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_out_of_the_script_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let scripts = dir.path().join("scripts");
        std::fs::create_dir_all(&scripts).unwrap();
        std::fs::write(dir.path().join("secret.rhai"), "fn f() { 1 }").unwrap();
        std::fs::write(scripts.join("inside.rhai"), "fn g() { 2 }").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.rhai"), scripts.join("link.rhai"))
            .unwrap();
        let resolver = ScriptResolver::new(Vec::new());
        let source = scripts.join("main.rhai");
        let source = source.to_str();
        // Without a script being compiled, only the importing file's folder is searched,
        // and only inside a tree: none here.
        assert_eq!(resolver.find(source, "inside").unwrap(), None);
        let prev = crate::engine::script::set_script_dir(Some(scripts.clone()));
        let found = resolver.find(source, "inside").unwrap().unwrap();
        assert!(found.1.contains("fn g"));
        let e = resolver.find(source, "link").unwrap_err().to_string();
        assert!(e.contains("outside") && e.contains("symlink"), "{e}");
        crate::engine::script::set_script_dir(prev);
    }
}
