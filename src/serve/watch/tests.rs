//! The watcher against real files in temporary directories. Every wait is bounded.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc::Receiver;

use super::{Changes, Watcher};

const DEBOUNCE: Duration = Duration::from_millis(150);
/// Far longer than any debounce: a batch not here by then is not coming.
const WAIT: Duration = Duration::from_secs(5);

async fn next_batch(rx: &mut Receiver<Changes>) -> Vec<PathBuf> {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a change batch within 5 s")
        .expect("the watcher is running")
        .paths
}

/// Writes `text` to `path` the way editors save: a temporary file renamed over it.
fn save_by_rename(path: &Path, text: &str) {
    let tmp = path.with_extension("swp");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn a_burst_of_edits_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("main.rhai");
    fs::write(&script, "1").unwrap();
    let (_watcher, mut rx) = Watcher::start([script.clone()], DEBOUNCE).unwrap();
    for i in 0..5 {
        fs::write(&script, format!("{i}")).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(next_batch(&mut rx).await, vec![script.clone()]);
    // A later edit is a new batch, and the only one: the burst above was not split.
    fs::write(&script, "later").unwrap();
    assert_eq!(next_batch(&mut rx).await, vec![script.clone()]);
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn a_file_replaced_by_rename_is_seen_and_still_seen_after() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cxpipe.toml");
    fs::write(&config, "a = 1").unwrap();
    let (_watcher, mut rx) = Watcher::start([config.clone()], DEBOUNCE).unwrap();
    save_by_rename(&config, "a = 2");
    assert_eq!(next_batch(&mut rx).await, vec![config.clone()]);
    save_by_rename(&config, "a = 3");
    assert_eq!(next_batch(&mut rx).await, vec![config.clone()]);
}

#[tokio::test]
async fn files_outside_the_set_are_not_reported() {
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("watched.rhai");
    let other = dir.path().join("other.rhai");
    fs::write(&watched, "1").unwrap();
    let (_watcher, mut rx) = Watcher::start([watched.clone()], DEBOUNCE).unwrap();
    fs::write(&other, "not watched").unwrap();
    // Reading a watched file (as the daemon does to compile it) is not a change either.
    assert_eq!(fs::read_to_string(&watched).unwrap(), "1");
    tokio::time::sleep(DEBOUNCE * 6).await;
    assert!(rx.try_recv().is_err(), "nothing of the set changed yet");
    fs::write(&watched, "2").unwrap();
    // The first batch holds the watched file only.
    assert_eq!(next_batch(&mut rx).await, vec![watched.clone()]);
}

#[tokio::test]
async fn set_paths_watches_the_new_files_and_drops_the_old() {
    let old_dir = tempfile::tempdir().unwrap();
    let new_dir = tempfile::tempdir().unwrap();
    let old = old_dir.path().join("v1.rhai");
    let kept = new_dir.path().join("lib.rhai");
    let new = new_dir.path().join("v2.rhai");
    for f in [&old, &kept, &new] {
        fs::write(f, "0").unwrap();
    }
    let (mut watcher, mut rx) = Watcher::start([old.clone(), kept.clone()], DEBOUNCE).unwrap();
    watcher.set_paths([kept.clone(), new.clone()]).unwrap();
    assert_eq!(watcher.paths(), {
        let mut v = vec![kept.clone(), new.clone()];
        v.sort();
        v
    });
    fs::write(&old, "1").unwrap();
    tokio::time::sleep(DEBOUNCE * 3).await;
    fs::write(&new, "1").unwrap();
    assert_eq!(next_batch(&mut rx).await, vec![new.clone()]);
    fs::write(&kept, "1").unwrap();
    assert_eq!(next_batch(&mut rx).await, vec![kept.clone()]);
}

#[tokio::test]
async fn a_missing_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere").join("main.rhai");
    let err = Watcher::start([missing.clone()], DEBOUNCE).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("nowhere") && msg.contains("main.rhai"),
        "{msg}"
    );
}
