//! Stores and keys for commands that read what runs wrote (`verify`, `decrypt`): a store
//! from a URI or a `[storage.NAME]`, and every `[keys.NAME]`.

use std::path::Path;

use crate::config::{Config, ConfigError};
use crate::keys::KeyRing;
use crate::storage::Store;

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenStoreError {
    #[error("{0:?} is not a URI; give --config to look it up as [storage.{0}]")]
    NoConfig(String),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The `[keys]` of a configuration file.
pub fn load_keys(path: &Path) -> Result<KeyRing, ConfigError> {
    Config::load(path)?.keys()
}

/// A store from a URI, or from `[storage.NAME]` of the configuration.
pub fn open_store(spec: &str, config: Option<&Path>) -> Result<Store, OpenStoreError> {
    if spec.contains("://") {
        return Ok(Store::from_uri(spec)?);
    }
    let Some(path) = config else {
        return Err(OpenStoreError::NoConfig(spec.to_string()));
    };
    Ok(Config::load(path)?.store(spec)?)
}
