//! Integration tests: one binary driving the real `cxpipe` executable.

mod api;
mod check;
mod cli;
mod deferred;
mod demo;
mod docs;
mod download;
mod dry_run;
mod edges;
mod flow;
mod harness;
mod hostile;
mod interrupt;
mod ledger_load;
mod ledger_postgres;
mod new;
mod other_server;
mod pipelines;
mod runner;
mod serve;
mod sim;
mod sim_run;
mod storage;
mod workflows;
mod workflows_archive;
