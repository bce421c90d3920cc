//! [`StopSignal`]: asks a run to end early (Ctrl-C, SIGTERM, or a ledger that can no longer
//! be written), with the reason it reports. Cheap to clone; the first reason wins. It wraps
//! a [`CancellationToken`], so a daemon can cancel a run from outside: pass
//! [`StopSignal::from_token`] a child of its shutdown token, or cancel [`StopSignal::token`].

use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

/// Tells a run to stop admitting and starting items, let the ones in flight finish within
/// the grace (`OPTIONS.interrupt_grace`), release the rest for the next run and end.
#[derive(Clone, Debug, Default)]
pub struct StopSignal {
    token: CancellationToken,
    reason: Arc<OnceLock<String>>,
}

impl StopSignal {
    /// A signal that has not fired.
    pub fn new() -> StopSignal {
        StopSignal::default()
    }

    /// A signal that fires when `token` is cancelled (by its owner, or a parent token).
    pub fn from_token(token: CancellationToken) -> StopSignal {
        StopSignal {
            token,
            reason: Arc::default(),
        }
    }

    /// The token behind the signal: cancelling it stops the run (reason `cancelled`).
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Fires the signal with `reason` (e.g. `interrupted by SIGINT`); later reasons are
    /// ignored.
    pub fn stop(&self, reason: impl Into<String>) {
        let _ = self.reason.set(reason.into());
        self.token.cancel();
    }

    /// True once the signal fired.
    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Why the run was asked to stop, once it was (`cancelled` when its token was
    /// cancelled with no reason given).
    pub fn reason(&self) -> Option<String> {
        self.reason
            .get()
            .cloned()
            .or_else(|| self.is_stopped().then(|| "cancelled".to_string()))
    }

    /// Resolves when the signal fires.
    pub async fn stopped(&self) {
        self.token.cancelled().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_wins_and_waiters_wake() {
        let stop = StopSignal::new();
        assert!(!stop.is_stopped() && stop.reason().is_none());
        let waiter = tokio::spawn({
            let stop = stop.clone();
            async move { stop.stopped().await }
        });
        stop.stop("interrupted by SIGINT");
        stop.stop("interrupted by SIGTERM");
        waiter.await.unwrap();
        assert_eq!(stop.reason().as_deref(), Some("interrupted by SIGINT"));
    }

    #[tokio::test]
    async fn cancelling_the_token_from_outside_stops_the_signal() {
        let daemon = CancellationToken::new();
        let stop = StopSignal::from_token(daemon.child_token());
        assert!(!stop.is_stopped() && stop.reason().is_none());
        daemon.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(10), stop.stopped())
            .await
            .expect("woke");
        assert_eq!(stop.reason().as_deref(), Some("cancelled"));
        let own = StopSignal::new();
        own.token().cancel();
        assert!(own.is_stopped());
    }
}
