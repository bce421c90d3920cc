//! `cxpipe serve`: the long-running runtime's parts. [`schedule`] fires pipelines on their cron
//! schedules; [`watch`] reports edits of the config and of every file a generation imports.

pub mod schedule;
pub mod watch;
