//! The simulator's HTTP surface: one file per seed guide or dialect, assembled here
//! behind the [`gate`](crate::sim::gate) middleware.

use std::sync::Arc;

use axum::Router;

use super::gate::gate;
use super::state::SimState;

mod auth;
mod compliance;
mod export;
mod interactions;
mod media_api;
mod real_contacts;
mod real_jobs;
pub mod recording;
mod retention;
mod sim_api;
mod sim_truth;
pub mod storage;
mod webhooks;

pub use sim_api::apply_patch;

/// All routes with their shared state.
pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .merge(auth::routes())
        .merge(recording::routes())
        .merge(retention::routes())
        .merge(export::routes())
        .merge(compliance::routes())
        .merge(media_api::routes())
        .merge(webhooks::routes())
        .merge(interactions::routes())
        .merge(real_contacts::routes())
        .merge(real_jobs::routes())
        .merge(storage::routes())
        .merge(sim_api::routes())
        .merge(sim_truth::routes())
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}
