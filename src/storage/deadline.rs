//! Store calls bounded by the item's deadline: a hung store or a huge listing fails the
//! call with [`StorageError::Deadline`] instead of holding the worker past `item_timeout`.

use std::time::Instant;

use tokio::runtime::Handle;

use super::{StorageError, Store};

/// Runs `fut` on `handle` (from a blocking thread) until it ends or the deadline of the
/// item on this thread passes, whichever is first. A call made after the deadline fails
/// at once.
pub fn block_within<T>(
    handle: &Handle,
    store: &Store,
    action: &'static str,
    key: &str,
    fut: impl Future<Output = Result<T, StorageError>>,
) -> Result<T, StorageError> {
    let late = || StorageError::Deadline {
        action,
        key: key.to_string(),
        store: store.describe(),
    };
    match crate::item_scope::deadline() {
        None => handle.block_on(fut),
        Some(deadline) if Instant::now() >= deadline => Err(late()),
        Some(deadline) => handle
            .block_on(tokio::time::timeout_at(deadline.into(), fut))
            .map_err(|_| late())?,
    }
}
