//! Secrets named in configuration (`{ env = "VAR" }` or `{ file = "path" }`) and the
//! [`Secret`] type that holds their value and never prints it.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where a secret comes from. Configuration never holds a secret inline.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SecretRef {
    /// Read from this environment variable.
    Env(String),
    /// Read from this file (trailing newline trimmed); relative paths are resolved
    /// against the configuration file's folder.
    File(PathBuf),
}

/// Error resolving a [`SecretRef`]. Names the source, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set (export it, or point the config at a file)")]
    MissingEnv(String),
    #[error("cannot read secret file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SecretRef {
    /// Resolves the secret; `base` is the folder relative file paths start from.
    pub fn resolve(&self, base: &Path) -> Result<Secret, SecretError> {
        match self {
            SecretRef::Env(var) => std::env::var(var)
                .map(Secret::new)
                .map_err(|_| SecretError::MissingEnv(var.clone())),
            SecretRef::File(path) => {
                let path = base.join(path);
                std::fs::read_to_string(&path)
                    .map(|s| Secret::new(s.trim_end_matches(['\r', '\n']).to_string()))
                    .map_err(|source| SecretError::File { path, source })
            }
        }
    }

    /// A description safe to show in errors and logs (`env:VAR` or `file:path`).
    pub fn describe(&self) -> String {
        match self {
            SecretRef::Env(var) => format!("env:{var}"),
            SecretRef::File(path) => format!("file:{}", path.display()),
        }
    }
}

/// A secret value. `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is sent to the service that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
    }

    #[test]
    fn missing_env_names_the_variable() {
        let r = SecretRef::Env("CXPIPE_TEST_SURELY_UNSET".into());
        let err = r.resolve(Path::new(".")).unwrap_err().to_string();
        assert!(err.contains("CXPIPE_TEST_SURELY_UNSET"), "{err}");
    }

    #[test]
    fn file_is_read_relative_to_base_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.txt"), "abc\n").unwrap();
        let r: SecretRef = toml::from_str::<toml::Table>("file = \"s.txt\"")
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(r.resolve(dir.path()).unwrap().expose(), "abc");
    }
}
