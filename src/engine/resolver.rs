//! Resolves `import "path"`: the importing file's folder, the script's folder, `stdlib/`
//! beside the script's folder, folders from settings, then the embedded standard library.
//! Never caches, so a new script generation sees edited modules.

use std::path::{Path, PathBuf};

use rhai::{Engine, EvalAltResult, Module, Position, Scope, Shared};

type SharedModule = Shared<Module>;

use super::embedded;

/// The module resolver installed in every engine.
pub struct ScriptResolver {
    extra_dirs: Vec<PathBuf>,
}

impl ScriptResolver {
    pub fn new(extra_dirs: Vec<PathBuf>) -> Self {
        ScriptResolver { extra_dirs }
    }

    /// Folders to search for a module imported from `source` (a file path, if known).
    fn search_dirs(&self, source: Option<&str>) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(dir) = source.and_then(|s| Path::new(s).parent()) {
            dirs.push(dir.to_path_buf());
            if let Some(parent) = dir.parent() {
                dirs.push(parent.join("stdlib"));
            }
        }
        if let Some(root) = crate::engine::script::current_script_dir() {
            dirs.push(root.clone());
            if let Some(parent) = root.parent() {
                dirs.push(parent.join("stdlib"));
            }
        }
        dirs.extend(self.extra_dirs.iter().cloned());
        dirs
    }

    /// Finds the module's source: (label for errors, text).
    pub fn find(&self, source: Option<&str>, path: &str) -> Option<(String, String)> {
        let file = if path.ends_with(".rhai") {
            path.to_string()
        } else {
            format!("{path}.rhai")
        };
        for dir in self.search_dirs(source) {
            let candidate = dir.join(&file);
            if let Ok(text) = std::fs::read_to_string(&candidate) {
                return Some((candidate.to_string_lossy().into_owned(), text));
            }
        }
        embedded::stdlib(path).map(|text| (format!("<stdlib>/{file}"), text.to_string()))
    }
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
