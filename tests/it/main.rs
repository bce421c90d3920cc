//! Integration tests: one binary driving the real `cxpipe` executable.

mod cli;
mod flow;
mod harness;
mod sim;
mod storage;
