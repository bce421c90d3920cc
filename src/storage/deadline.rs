//! Store calls bounded by a deadline (the item's, passed in by the caller): a hung store,
//! a huge listing or a backend call that spins without yielding fails the call with
//! [`StorageError::Deadline`] instead of holding the worker past `item_timeout`.

use std::time::Instant;

use tokio::runtime::Handle;

use super::{StorageError, Store};

/// Runs `call(store, key)` until it ends or `deadline` passes, whichever is first (no
/// deadline: until it ends); called from a blocking thread. A call made after the deadline fails
/// at once. With a deadline, the call runs on a thread of its own, so the deadline holds
/// even when the call never yields (an OpenDAL lister spinning on a bad path did); a call
/// still running at the deadline is left to end on that thread, and never holds up
/// the runtime's shutdown.
pub fn block_within<T, F, Fut>(
    handle: &Handle,
    deadline: Option<Instant>,
    store: &Store,
    action: &'static str,
    key: &str,
    call: F,
) -> Result<T, StorageError>
where
    F: FnOnce(Store, String) -> Fut,
    Fut: Future<Output = Result<T, StorageError>> + Send + 'static,
    T: Send + 'static,
{
    let late = || StorageError::Deadline {
        action,
        key: key.to_string(),
        store: store.describe(),
    };
    let fut = call(store.clone(), key.to_string());
    let Some(deadline) = deadline else {
        return handle.block_on(fut);
    };
    let now = Instant::now();
    if now >= deadline {
        return Err(late());
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let runtime = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("cxpipe-store-call".into())
        .spawn(move || {
            let _ = tx.send(runtime.block_on(fut));
        });
    if let Err(e) = spawned {
        return Err(StorageError::Config {
            uri: store.describe(),
            message: format!("{action} {key:?}: cannot start a thread for the call: {e}"),
        });
    }
    match rx.recv_timeout(deadline - now) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(late()),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(StorageError::Config {
            uri: store.describe(),
            message: format!("{action} {key:?}: the call stopped without a result"),
        }),
    }
}
