//! Stale partial files: an `fs` store writes each object into `ROOT/.cxpipe-partial/` and
//! renames it when complete; a process killed mid-write (SIGKILL, power loss) leaves its
//! file there. Before a store's first write, files there untouched for longer than the
//! store's `partial_max_age` are removed. A live writer touches its file with every chunk
//! and lives no longer than its item's deadline, so it is never that old.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// Default `partial_max_age`: far above any sensible `item_timeout` (default 10 minutes).
pub const DEFAULT_PARTIAL_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// The partial folder of one `fs` store and how old a file there may grow.
#[derive(Debug)]
pub(super) struct PartialSweep {
    dir: PathBuf,
    max_age: Duration,
    done: AtomicBool,
}

impl PartialSweep {
    pub(super) fn new(dir: PathBuf, max_age: Duration) -> PartialSweep {
        PartialSweep {
            dir,
            max_age,
            done: AtomicBool::new(false),
        }
    }

    /// Sweeps the folder the first time it is called; later calls return at once.
    pub(super) async fn run_once(&self) {
        if self.done.swap(true, Ordering::SeqCst) {
            return;
        }
        let (dir, max_age) = (self.dir.clone(), self.max_age);
        if let Err(e) = tokio::task::spawn_blocking(move || sweep(&dir, max_age)).await {
            tracing::warn!(error = %e, "sweeping stale partial files stopped");
        }
    }
}

/// Removes regular files in `dir` last modified more than `max_age` ago; returns how many.
/// Never fails: a file it cannot look at or remove is left and logged.
pub(super) fn sweep(dir: &Path, max_age: Duration) -> usize {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return 0,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list partial files");
            return 0;
        }
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        // `symlink_metadata`: a symlink is never followed, only its own age counts.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok());
        if meta.is_dir() || age.is_none_or(|a| a <= max_age) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => removed += 1,
            // Renamed into place or removed by its writer meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove a stale partial file")
            }
        }
    }
    if removed > 0 {
        tracing::info!(dir = %dir.display(), removed, max_age_s = max_age.as_secs(), "removed stale partial files");
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aged(path: &Path, age: Duration) {
        std::fs::write(path, b"partial").unwrap();
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
    }

    #[test]
    fn old_files_go_and_fresh_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        aged(
            &dir.path().join("old.wav.AbCd1234"),
            Duration::from_secs(3 * 3600),
        );
        aged(
            &dir.path().join("fresh.wav.EfGh5678"),
            Duration::from_secs(60),
        );
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(sweep(dir.path(), Duration::from_secs(3600)), 1);
        assert!(!dir.path().join("old.wav.AbCd1234").exists());
        assert!(dir.path().join("fresh.wav.EfGh5678").exists());
        assert!(dir.path().join("sub").is_dir());
        assert_eq!(sweep(&dir.path().join("absent"), Duration::ZERO), 0);
    }
}
