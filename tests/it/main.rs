//! Integration tests: one binary driving the real `cxpipe` executable.

mod api;
mod check;
mod cli;
mod demo;
mod download;
mod flow;
mod harness;
mod hostile;
mod interrupt;
mod ledger_load;
mod new;
mod other_server;
mod runner;
mod sim;
mod storage;
mod workflows;
mod workflows_archive;
