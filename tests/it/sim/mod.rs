//! Simulator tests: every route driven with a plain HTTP client (reqwest).

mod auth;
mod cli;
mod faults;
mod media;
mod recordings;
mod support;
mod truth;
