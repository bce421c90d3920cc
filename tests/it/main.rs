//! Integration tests: one binary driving the real `cxpipe` executable.

mod cli;
mod harness;
mod runner;
mod sim;
