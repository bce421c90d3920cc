//! Rhai surface of storage: `storage(uri_or_map)` and the `Store` methods.
