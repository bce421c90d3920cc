//! Integration tests: one binary driving the real `cxpipe` executable.

mod api;
mod cli;
mod demo;
mod download;
mod dry_run;
mod flow;
mod harness;
mod hostile;
mod interrupt;
mod ledger_load;
mod other_server;
mod runner;
mod sim;
mod sim_run;
mod storage;
mod workflows;
mod workflows_archive;
