//! The simulator's HTTP surface: one file per seed guide or dialect, assembled here
//! behind the [`gate`](crate::sim::gate) middleware.

use std::sync::Arc;

use axum::Router;

use super::gate::gate;
use super::state::SimState;

mod auth;
pub mod recording;
mod sim_api;

pub use sim_api::apply_patch;
mod storage;

/// All routes with their shared state.
pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .merge(auth::routes())
        .merge(recording::routes())
        .merge(storage::routes())
        .merge(sim_api::routes())
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}
