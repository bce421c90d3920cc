//! The standard library and example scripts compiled into the binary (see `build.rs`).

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// The embedded source of stdlib module `path` (e.g. `cxone/recording_search`).
pub fn stdlib(path: &str) -> Option<&'static str> {
    let path = path.strip_suffix(".rhai").unwrap_or(path);
    STDLIB
        .iter()
        .find(|(name, _)| *name == path)
        .map(|(_, src)| *src)
}

/// The embedded source of example script `name` (e.g. `download_recordings`).
pub fn script(name: &str) -> Option<&'static str> {
    SCRIPTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, src)| *src)
}
