//! Simulator tests: every route driven with a plain HTTP client (reqwest).

mod auth;
mod cli;
mod export;
mod faults;
mod interactions;
mod media;
mod media_api;
mod real;
mod recordings;
mod retention;
mod support;
mod truth;
mod webhooks;
