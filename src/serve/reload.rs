//! Hot reload for `cxpipe serve`: watches the config and every file each generation
//! imports (its script, local modules, stdlib modules on disk). An edited script or module
//! is compiled and checked; on success new items of the pipelines using it run on the new
//! generation while items already running finish on theirs; on failure the old generation
//! keeps serving and the error (`file:line:col`) is logged, counted and shown in `/status`.
//! A config edit reloads the whole runtime the same way: all or nothing.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use super::daemon::{
    Inner, ServeError, absolute, build_slots, schedule_entries, served, watched_paths,
};
use super::watch::{Changes, DEFAULT_DEBOUNCE, Watcher};
use crate::runtime::{Overrides, Runtime};

/// Starts the watcher and the task applying its batches.
pub(super) fn spawn(inner: &Arc<Inner>) -> Result<(), ServeError> {
    let paths = watched_paths(&inner.config_path, &inner.slots());
    let (mut watcher, mut changes) = Watcher::start(paths, DEFAULT_DEBOUNCE)?;
    let me = inner.clone();
    inner.tasks.spawn(async move {
        loop {
            let batch = tokio::select! {
                batch = changes.recv() => match batch {
                    Some(b) => b,
                    None => break,
                },
                _ = me.shutdown.cancelled() => break,
            };
            let inner = me.clone();
            // Compiling reads files and may take a moment: off the async threads.
            let applied = tokio::task::spawn_blocking(move || apply(&inner, &batch)).await;
            if let Err(e) = applied {
                tracing::error!(error = %e, "reload panicked; the previous generations keep serving");
            }
            let paths = watched_paths(&me.config_path, &me.slots());
            if let Err(e) = watcher.set_paths(paths) {
                tracing::warn!(error = %e, "watching the new generations' files");
            }
        }
    });
    Ok(())
}

/// Applies one batch of changed files.
fn apply(inner: &Arc<Inner>, batch: &Changes) {
    let changed: BTreeSet<PathBuf> = batch.paths.iter().map(|p| absolute(p)).collect();
    if changed.contains(&absolute(&inner.config_path)) {
        reload_config(inner);
        return;
    }
    let runtime = inner.runtime();
    let mut slots = inner.slots();
    for (key, slot) in slots.iter_mut() {
        let uses = |p: &PathBuf| {
            *p == absolute(&slot.script)
                || slot
                    .generation
                    .as_ref()
                    .is_some_and(|g| g.imports.contains_key(&p.to_string_lossy().to_string()))
        };
        if !changed.iter().any(uses) {
            continue;
        }
        match runtime.compile(&key.pipeline, &key.tenant) {
            Ok(generation) => {
                let same = slot
                    .generation
                    .as_ref()
                    .is_some_and(|g| g.hash == generation.hash);
                slot.reload_error = None;
                if !same {
                    tracing::info!(pipeline = %key.pipeline, tenant = %key.tenant,
                        script_hash = %generation.hash, "script reloaded");
                    slot.generation = Some(generation.clone());
                    slot.live.send_replace(Some(generation));
                    inner.metrics.reload(&key.pipeline, true);
                }
            }
            Err(e) => {
                tracing::error!(pipeline = %key.pipeline, tenant = %key.tenant, error = %e,
                    "reload failed; the previous generation keeps serving");
                slot.reload_error = Some(e.to_string());
                inner.metrics.reload(&key.pipeline, false);
            }
        }
    }
}

/// Loads and checks the edited config; swaps it in only when every part of it is valid.
fn reload_config(inner: &Arc<Inner>) {
    let loaded = Runtime::load(Some(&inner.config_path), Overrides::default())
        .map_err(|e| e.to_string())
        .map(Arc::new)
        .and_then(|rt| served(rt, inner.ledger.backend()).map_err(|e| e.to_string()));
    let new = match loaded {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(config = %inner.config_path.display(), error = %e,
                "config reload failed; the previous configuration keeps serving");
            *inner.config_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
            inner.metrics.reload("config", false);
            return;
        }
    };
    let runtime = new.runtime.clone();
    {
        let mut slots = inner.slots();
        let rebuilt = build_slots(&runtime, Some(&mut slots));
        *slots = rebuilt;
    }
    *inner.served.write().unwrap_or_else(|e| e.into_inner()) = new;
    *inner.config_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    inner.metrics.reload("config", true);
    let scheduler = inner.scheduler.clone();
    let entries = if inner.draining.load(std::sync::atomic::Ordering::Relaxed) {
        Vec::new()
    } else {
        schedule_entries(&runtime)
    };
    let handle = tokio::runtime::Handle::current();
    if let Err(e) = handle.block_on(scheduler.set_entries(entries)) {
        tracing::error!(error = %e, "updating the schedules after a config reload");
    }
    tracing::info!(config = %inner.config_path.display(), "config reloaded");
}
