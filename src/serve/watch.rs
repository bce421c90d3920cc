//! Watches a set of files (the config and every file a generation imports) and reports
//! debounced batches of the ones that changed through a tokio channel. It watches the parent
//! directories and filters by name, so a file that an editor replaces by writing a temporary
//! file and renaming it over is seen, and still seen after. It does not read or compile
//! anything: the daemon does that with the paths it is given.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use notify_debouncer_full::notify::event::{AccessKind, AccessMode, ModifyKind};
use notify_debouncer_full::notify::{self, EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, DebouncedEvent, Debouncer, RecommendedCache};
use tokio::sync::mpsc;

/// The quiet time that ends a burst of changes, unless configured otherwise.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(250);

/// How many change batches may wait unread before the watcher waits for the reader.
const CHANNEL_CAPACITY: usize = 16;

/// A file set that cannot be watched, naming the file or directory and why.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("watch: {path} names no file (it has no file name)")]
    NoFileName { path: PathBuf },
    #[error("watch: cannot watch {path}: its directory {dir} cannot be opened: {source}")]
    Resolve {
        path: PathBuf,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("watch: cannot watch directory {dir}: {source}")]
    Watch {
        dir: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("watch: cannot start the file watcher: {source}")]
    Start {
        #[source]
        source: notify::Error,
    },
}

/// One debounced batch: the files of the set that changed, each once, sorted, spelled as
/// they were given to the watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changes {
    pub paths: Vec<PathBuf>,
}

/// The watched files (their path with the directory resolved → the path as given) and the
/// directories holding them.
#[derive(Debug, Default)]
struct WatchSet {
    files: HashMap<PathBuf, PathBuf>,
    dirs: HashSet<PathBuf>,
}

impl WatchSet {
    fn resolve(paths: impl IntoIterator<Item = PathBuf>) -> Result<WatchSet, WatchError> {
        let mut set = WatchSet::default();
        for path in paths {
            let name = path
                .file_name()
                .ok_or_else(|| WatchError::NoFileName { path: path.clone() })?;
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let dir = std::fs::canonicalize(parent).map_err(|source| WatchError::Resolve {
                path: path.clone(),
                dir: parent.to_path_buf(),
                source,
            })?;
            set.files.insert(dir.join(name), path);
            set.dirs.insert(dir);
        }
        Ok(set)
    }

    /// Adds to `out` the files of the set that `event` touches.
    fn collect(&self, event: &DebouncedEvent, out: &mut BTreeSet<PathBuf>) {
        if event.need_rescan() {
            // Events were lost: any file may have changed.
            out.extend(self.files.values().cloned());
            return;
        }
        // Opening or reading a file (the daemon compiling it, which also updates its access
        // time) is not a change; nor is any other metadata change (`touch` alone does not
        // reload: a content change always comes with a write, create or rename).
        match event.kind {
            EventKind::Access(kind) if kind != AccessKind::Close(AccessMode::Write) => return,
            EventKind::Modify(ModifyKind::Metadata(_)) => return,
            _ => {}
        }
        out.extend(
            event
                .paths
                .iter()
                .filter_map(|p| self.files.get(p))
                .cloned(),
        );
    }
}

/// Watches a set of files; changes arrive on the receiver returned by [`Watcher::start`].
/// Dropping the watcher stops it and closes that channel.
pub struct Watcher {
    debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    set: Arc<Mutex<WatchSet>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("files", &self.paths())
            .finish()
    }
}

impl Watcher {
    /// Starts watching `paths` (their directories must exist; the files need not). A batch
    /// is sent once no change has been seen for `debounce`. Call inside a tokio runtime.
    pub fn start(
        paths: impl IntoIterator<Item = PathBuf>,
        debounce: Duration,
    ) -> Result<(Watcher, mpsc::Receiver<Changes>), WatchError> {
        let set = WatchSet::resolve(paths)?;
        let (raw_tx, raw_rx) = mpsc::unbounded_channel();
        let mut debouncer =
            notify_debouncer_full::new_debouncer(debounce, None, move |r: DebounceEventResult| {
                // The receiver is gone only when the watcher is shutting down.
                let _ = raw_tx.send(r);
            })
            .map_err(|source| WatchError::Start { source })?;
        for dir in &set.dirs {
            debouncer
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|source| WatchError::Watch {
                    dir: dir.clone(),
                    source,
                })?;
        }
        let set = Arc::new(Mutex::new(set));
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        tokio::spawn(forward(raw_rx, set.clone(), tx, debounce));
        Ok((Watcher { debouncer, set }, rx))
    }

    fn set(&self) -> MutexGuard<'_, WatchSet> {
        self.set.lock().expect("watch set lock")
    }

    /// Replaces the watched files (a new generation imports different ones). On error the
    /// previous set stays watched.
    pub fn set_paths(
        &mut self,
        paths: impl IntoIterator<Item = PathBuf>,
    ) -> Result<(), WatchError> {
        let new = WatchSet::resolve(paths)?;
        let old_dirs = self.set().dirs.clone();
        for dir in new.dirs.difference(&old_dirs) {
            self.debouncer
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|source| WatchError::Watch {
                    dir: dir.clone(),
                    source,
                })?;
        }
        for dir in old_dirs.difference(&new.dirs) {
            if let Err(e) = self.debouncer.unwatch(dir) {
                // The directory may be gone; nothing is watched there any more either way.
                tracing::debug!(dir = %dir.display(), error = %e, "unwatching a directory");
            }
        }
        *self.set() = new;
        Ok(())
    }

    /// The watched files, as given, sorted.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self.set().files.values().cloned().collect();
        paths.sort();
        paths
    }
}

/// Turns the debouncer's events into [`Changes`]: keeps the set's files, and gathers them
/// until no event has come for `quiet`, so one burst of writes is one batch.
async fn forward(
    mut raw: mpsc::UnboundedReceiver<DebounceEventResult>,
    set: Arc<Mutex<WatchSet>>,
    tx: mpsc::Sender<Changes>,
    quiet: Duration,
) {
    let mut pending = BTreeSet::new();
    loop {
        let next = if pending.is_empty() {
            raw.recv().await
        } else {
            match tokio::time::timeout(quiet, raw.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    let paths = std::mem::take(&mut pending).into_iter().collect();
                    if tx.send(Changes { paths }).await.is_err() {
                        return; // nobody listens any more
                    }
                    continue;
                }
            }
        };
        match next {
            Some(Ok(events)) => {
                let set = set.lock().expect("watch set lock");
                for event in &events {
                    set.collect(event, &mut pending);
                }
            }
            Some(Err(errors)) => {
                for e in errors {
                    tracing::warn!(error = %e, "file watcher error; edits may be missed");
                }
            }
            None => {
                if !pending.is_empty() {
                    let paths = std::mem::take(&mut pending).into_iter().collect();
                    let _ = tx.send(Changes { paths }).await;
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
