//! `[scripts]` of the configuration: what scripts may reach beyond the stores, keys and
//! tenant their run hands them. Everything is off by default (docs/FLOWS.md#script-sandbox).

use serde::Deserialize;

/// The `[scripts]` table.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScriptsConfig {
    /// Lets scripts open stores of their own with `storage("fs:///dir")` or
    /// `storage(#{ uri: .. })` (never with credentials from the script). Default false:
    /// scripts write to `ctx.store`, the config's `[storage.NAME]`.
    #[serde(default)]
    pub allow_storage_uri: bool,
}
