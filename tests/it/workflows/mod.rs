//! The shipped workflow scripts (docs/WORKFLOWS.md) run end to end by the real binary, and
//! the audit commands.

mod audit;
mod compliance;
mod compliance_server;
mod retention;
mod retention_server;
mod transcripts;
mod transcripts_server;
