//! What an object key or a listing prefix may look like, checked before any store sees it:
//! relative, no `.`/`..`/empty segments, no control characters (NUL included), within the
//! length limits of the backends, and clear of the names cxpipe reserves (manifest
//! sidecars, the partial-upload folder). Rules in `docs/FLOWS.md#storage-rules`.

use super::{MANIFEST_SUFFIX, PARTIAL_DIR, StorageError};

/// Longest key, in bytes: S3, GCS and Azure allow 1024, and the key's manifest
/// (`KEY.manifest.json`) must fit too.
pub const MAX_KEY_BYTES: usize = 1024 - MANIFEST_SUFFIX.len();
/// Longest segment (text between `/`), in bytes: 255 is the file-name limit of common
/// file systems, less room for `.manifest.json`.
pub const MAX_SEGMENT_BYTES: usize = 255 - MANIFEST_SUFFIX.len();

fn refuse(key: &str, reason: &'static str) -> Result<(), StorageError> {
    Err(StorageError::Key {
        key: shown(key),
        reason,
    })
}

/// A key as shown in errors: a 5,000-character id would drown the message.
fn shown(key: &str) -> String {
    const MAX: usize = 120;
    match key.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}… ({} bytes)", &key[..cut], key.len()),
        None => key.to_string(),
    }
}

/// The rules every key and prefix obey: relative, short enough, no control characters,
/// no `.`/`..`/empty segments. `last_may_be_empty` allows a trailing `/` (prefixes).
fn check_path(key: &str, last_may_be_empty: bool) -> Result<(), StorageError> {
    if key.starts_with('/') {
        return refuse(
            key,
            "keys and prefixes are relative to the store (no leading `/`)",
        );
    }
    if key.chars().any(char::is_control) {
        return refuse(
            key,
            "keys cannot contain control characters (NUL, newlines, tabs)",
        );
    }
    if key.len() > MAX_KEY_BYTES {
        return refuse(
            key,
            "keys are at most 1010 bytes (1024, the object stores' limit, less `.manifest.json`)",
        );
    }
    let segments: Vec<&str> = key.split('/').collect();
    let last = segments.len() - 1;
    for (i, s) in segments.iter().enumerate() {
        if *s == "." || *s == ".." || (s.is_empty() && !(i == last && last_may_be_empty)) {
            return refuse(key, "keys cannot contain empty, `.` or `..` segments");
        }
        if s.len() > MAX_SEGMENT_BYTES {
            return refuse(
                key,
                "each `/`-separated part of a key is at most 241 bytes (255, the file-name limit, less `.manifest.json`)",
            );
        }
    }
    if segments[0] == PARTIAL_DIR {
        return refuse(
            key,
            "the partial-upload folder `.cxpipe-partial` is reserved",
        );
    }
    Ok(())
}

/// Rejects keys that cannot name an object of ours: empty, absolute, climbing out of the
/// root, too long, with control characters, naming a manifest sidecar (`*.manifest.json`,
/// which `verify` would read as this object's manifest) or the partial-upload folder.
pub fn check_key(key: &str) -> Result<(), StorageError> {
    if key.is_empty() || key.ends_with('/') {
        return refuse(key, "keys name an object, not a folder");
    }
    check_path(key, false)?;
    if key.ends_with(MANIFEST_SUFFIX) {
        return refuse(
            key,
            "keys ending in `.manifest.json` are reserved for manifest sidecars (choose another extension)",
        );
    }
    Ok(())
}

/// Like [`check_key`], but a manifest sidecar's key is allowed: for reads, stats and
/// deletes, which cannot forge anything.
pub fn check_read_key(key: &str) -> Result<(), StorageError> {
    if key.is_empty() || key.ends_with('/') {
        return refuse(key, "keys name an object, not a folder");
    }
    check_path(key, false)
}

/// Rejects listing prefixes that could reach outside the store (`../`, `/etc`) or into
/// reserved names. `""` lists the whole store; a trailing `/` lists a folder.
pub fn check_prefix(prefix: &str) -> Result<(), StorageError> {
    if prefix.is_empty() {
        return Ok(());
    }
    check_path(prefix, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_are_checked() {
        for good in [
            "recordings/a.wav",
            "a",
            "x/manifest.json",
            "a.manifest.json.gz",
        ] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/abs",
            "a/../b",
            "a//b",
            "dir/",
            "./a",
            ".cxpipe-partial/x",
            ".cxpipe-partial",
            "a\0b",
            "a\nb",
            "rec.manifest.json",
            ".manifest.json",
            "x/1.wav.manifest.json",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn long_keys_are_refused_with_a_short_message() {
        let long = "x".repeat(5000);
        let e = check_key(&long).unwrap_err().to_string();
        assert!(e.contains("at most 1010 bytes"), "{e}");
        assert!(e.contains("(5000 bytes)") && e.len() < 400, "{e}");
        let e = check_key(&"y".repeat(300)).unwrap_err().to_string();
        assert!(e.contains("at most 241 bytes"), "{e}");
        let many = vec!["y".repeat(200); 6].join("/");
        let e = check_key(&many).unwrap_err().to_string();
        assert!(e.contains("at most 1010 bytes"), "{e}");
        let fits = format!("{}/{}", "a".repeat(241), "b".repeat(241));
        assert!(check_key(&fits).is_ok());
    }

    #[test]
    fn manifests_may_be_read_but_not_written() {
        assert!(check_read_key("a.wav.manifest.json").is_ok());
        assert!(check_read_key("../a.manifest.json").is_err());
        assert!(check_key("a.wav.manifest.json").is_err());
    }

    #[test]
    fn prefixes_are_checked() {
        for good in ["", "recordings/", "recordings/2024-", "a/b", ".c"] {
            assert!(check_prefix(good).is_ok(), "{good:?}");
        }
        for bad in [
            "../",
            "..",
            "/etc",
            "/",
            "a/../",
            "a//",
            ".cxpipe-partial/",
            "a\0",
        ] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
