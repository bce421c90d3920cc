//! The shipped workflow scripts (docs/WORKFLOWS.md) run end to end by the real binary, and
//! the audit commands.

mod audit;
mod compliance;
mod compliance_server;
mod contacts;
mod contacts_server;
mod demo_workflows;
mod killed;
mod retention;
mod retention_server;
mod shipped;
mod transcripts;
mod transcripts_server;
