//! [`SimServer`]: binds, serves the router until shut down, and exposes the base URL,
//! credentials and counters to the code that started it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::SimError;
use super::config::SimConfig;
use super::credentials::SimCredentials;
use super::routes::router;
use super::state::SimState;

/// A running simulator. Dropping it stops the server too.
#[derive(Debug)]
pub struct SimServer {
    base_url: String,
    state: Arc<SimState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SimServer {
    /// Validates `config`, binds `config.bind` (default `127.0.0.1:0`) and starts serving.
    pub async fn start(config: SimConfig) -> Result<SimServer, SimError> {
        config.validate().map_err(SimError::Config)?;
        let addr = config
            .bind
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| SimError::Bind { addr, source })?;
        let base_url = format!("http://{local}");
        let state = Arc::new(SimState::new(&config));
        state.set_base_url(base_url.clone());
        let app = router(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(err) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %err, "simulator server stopped with an error");
            }
        });
        tracing::info!(%base_url, recordings = config.recordings, seed = config.seed, "simulator started");
        Ok(SimServer {
            base_url,
            state,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn credentials(&self) -> &SimCredentials {
        &self.state.credentials
    }

    /// The same JSON as `GET /_sim/stats`.
    pub fn stats(&self) -> Value {
        self.state.stats.to_json()
    }

    /// Applies a JSON merge patch to the fault knobs (same as `POST /_sim/control`).
    pub fn control(&self, patch: &Value) -> Result<(), SimError> {
        super::routes::apply_patch(&self.state, patch)
            .map(|_| ())
            .map_err(SimError::Config)
    }

    /// Stops accepting connections, lets open requests finish for up to two seconds,
    /// then stops.
    pub async fn shutdown(mut self) {
        self.state.stop();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.state.stop();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
