//! A compiled, checked generation of a pipeline's script: the AST, its `OPTIONS` (with the
//! pipeline's overrides), every file it imports and a hash over all of them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::engine::{Script, ScriptError, check};
use crate::runner::PipelineOptions;

/// One compiled generation of a pipeline × tenant script.
#[derive(Clone, Debug)]
pub struct Generation {
    pub script: Arc<Script>,
    pub options: PipelineOptions,
    /// Every file it imports, stdlib included: absolute path or `embedded:NAME` → SHA-256.
    pub imports: Arc<BTreeMap<String, String>>,
    /// SHA-256 over the script and every import (changes when any of them does).
    pub hash: String,
}

impl Generation {
    /// Wraps a checked script; `concurrency` overrides its `OPTIONS`.
    pub fn new(script: Script, mut options: PipelineOptions, concurrency: Option<usize>) -> Self {
        if let Some(n) = concurrency {
            options.concurrency = n;
        }
        let mut h = Sha256::new();
        h.update(script.hash.as_bytes());
        for (name, hash) in script.imports.iter() {
            h.update(b"\n");
            h.update(name.as_bytes());
            h.update(b"=");
            h.update(hash.as_bytes());
        }
        Generation {
            imports: script.imports.clone(),
            script: Arc::new(script),
            options,
            hash: hex::encode(h.finalize()),
        }
    }
}

/// Compiles the script once, checks its hooks, calls and `OPTIONS`; returns the script
/// ready to run, or every problem found.
pub fn load_and_check(
    engine: &rhai::Engine,
    path: &Path,
) -> Result<(Script, PipelineOptions), Vec<String>> {
    let script = match Script::load(engine, path) {
        Ok(s) => s,
        Err(ScriptError::Invalid(d)) => return Err(vec![d.to_string()]),
        Err(e) => return Err(vec![e.to_string()]),
    };
    let mut problems: Vec<String> = check::check(engine, &script)
        .into_iter()
        .map(|d| d.to_string())
        .collect();
    let options = match script.options(engine) {
        Ok(map) => PipelineOptions::from_map(&map)
            .map_err(|errors| {
                // `check` already reported, where written, those of a literal `OPTIONS`.
                let located = |e: &String| {
                    let key = e.split(": ").next().unwrap_or(e);
                    problems.iter().any(|p| p.contains(&format!(" {key}: ")))
                };
                let new: Vec<String> = errors
                    .iter()
                    .filter(|e| !located(e))
                    .map(|e| format!("{}: {e}", script.label))
                    .collect();
                problems.extend(new);
            })
            .ok(),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    match options {
        Some(options) if problems.is_empty() => Ok((script, options)),
        _ => Err(problems),
    }
}
