//! Integration tests: one binary driving the real `cxpipe` executable.

mod api;
mod cli;
mod harness;
mod sim;
