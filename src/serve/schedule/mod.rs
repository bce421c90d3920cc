//! Cron schedules of pipelines × tenants: parsing ([`Schedule`]), the entries the daemon
//! schedules ([`Entry`]), the firing loop ([`Scheduler`]) and the next fires for
//! `cxpipe schedule ls` ([`describe`]).
//!
//! Expressions have six fields, `sec min hour day-of-month month day-of-week`, or five
//! (`min hour day-of-month month day-of-week`, firing at second 0); `@hourly`-style aliases
//! are accepted; years are not. Times are computed in a named IANA zone (default UTC), so
//! `0 30 9 * * *` in `Europe/Berlin` fires at 09:30 Berlin time on both sides of a DST change.

mod clock;
mod fire_log;
mod scheduler;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

pub use clock::{Clock, SystemClock, TokioClock};
pub use fire_log::{FireLog, MemoryFireLog};
pub use scheduler::{FireOutcome, FireSink, FireStats, KeyStatus, Scheduler};

/// A schedule that cannot be used, naming the expression (or zone) and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "schedule {expr:?} has {fields} field(s); expected 6 (sec min hour day-of-month month \
         day-of-week, e.g. \"0 */5 * * * *\") or 5 (min hour day-of-month month day-of-week, \
         firing at second 0)"
    )]
    FieldCount { expr: String, fields: usize },
    #[error("schedule {expr:?} is not a valid cron expression: {reason}")]
    Invalid { expr: String, reason: String },
    #[error("schedule {expr:?} never fires (no matching time from now on)")]
    NeverFires { expr: String },
    #[error(
        "schedule time zone {zone:?} is not a known IANA zone name (e.g. \"UTC\", \
         \"Europe/Berlin\", \"America/New_York\")"
    )]
    UnknownZone { zone: String },
    #[error("misfire policy {given:?} is not known; use \"skip\" or \"run_once\"")]
    UnknownMisfire { given: String },
}

/// A parsed cron expression and the time zone it is read in.
#[derive(Clone)]
pub struct Schedule {
    expr: String,
    tz: Tz,
    cron: Cron,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?} in {})", self.expr, self.tz.name())
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.tz == other.tz
    }
}

impl Schedule {
    /// Parses `expr` (6 fields with seconds, or 5 firing at second 0) in the IANA zone `tz`
    /// (UTC when `None`).
    pub fn parse(expr: &str, tz: Option<&str>) -> Result<Schedule, ScheduleError> {
        let tz = match tz {
            None => Tz::UTC,
            Some(zone) => Tz::from_str(zone).map_err(|_| ScheduleError::UnknownZone {
                zone: zone.to_string(),
            })?,
        };
        let trimmed = expr.trim();
        let fields = trimmed.split_whitespace().count();
        if !trimmed.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(ScheduleError::FieldCount {
                expr: expr.to_string(),
                fields,
            });
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(trimmed)
            .map_err(|e| ScheduleError::Invalid {
                expr: expr.to_string(),
                reason: e.to_string(),
            })?;
        let schedule = Schedule {
            expr: trimmed.to_string(),
            tz,
            cron,
        };
        if schedule.next_after(Utc::now()).is_none() {
            return Err(ScheduleError::NeverFires {
                expr: expr.to_string(),
            });
        }
        Ok(schedule)
    }

    /// The expression as written (trimmed).
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The IANA name of the zone the expression is read in.
    pub fn zone(&self) -> &'static str {
        self.tz.name()
    }

    /// The first fire strictly after `t`, or `None` when there is none.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }

    /// The fires in `(after, until]`: how many (counting at most `cap`) and the latest.
    pub fn fires_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        cap: u64,
    ) -> (u64, Option<DateTime<Utc>>) {
        let mut count = 0;
        let mut latest = None;
        let mut t = after;
        while count < cap {
            match self.next_after(t) {
                Some(next) if next <= until => {
                    count += 1;
                    latest = Some(next);
                    t = next;
                }
                _ => return (count, latest),
            }
        }
        // Capped: the latest fire is the last one at or before `until`.
        let last = self
            .cron
            .find_previous_occurrence(&until.with_timezone(&self.tz), true)
            .ok()
            .map(|p| p.with_timezone(&Utc));
        (count, last.or(latest))
    }
}

/// What the scheduler does, on start, with fires missed while it was down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Misfire {
    /// Drop them (their number is logged) and wait for the next fire.
    #[default]
    Skip,
    /// Fire once now, for the latest missed time.
    RunOnce,
}

impl FromStr for Misfire {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "skip" => Ok(Misfire::Skip),
            "run_once" => Ok(Misfire::RunOnce),
            _ => Err(ScheduleError::UnknownMisfire {
                given: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for Misfire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Misfire::Skip => "skip",
            Misfire::RunOnce => "run_once",
        })
    }
}

/// What a schedule fires: one pipeline for one tenant (the ledger identity of a run).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct FireKey {
    pub pipeline: String,
    pub tenant: String,
}

impl FireKey {
    pub fn new(pipeline: impl Into<String>, tenant: impl Into<String>) -> FireKey {
        FireKey {
            pipeline: pipeline.into(),
            tenant: tenant.into(),
        }
    }
}

impl fmt::Display for FireKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} for tenant {}", self.pipeline, self.tenant)
    }
}

/// One scheduled pipeline × tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: FireKey,
    pub schedule: Schedule,
    pub misfire: Misfire,
    /// A disabled entry is kept (with its last fire) but never fires.
    pub enabled: bool,
}

/// One line of `cxpipe schedule ls`: an entry and its next fires.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Row {
    pub pipeline: String,
    pub tenant: String,
    pub schedule: String,
    pub zone: &'static str,
    pub misfire: String,
    pub enabled: bool,
    /// The next fires after `now`, oldest first (empty when disabled).
    pub next: Vec<DateTime<Utc>>,
}

/// The next `n` fires after `now` of each entry, in entry order.
pub fn describe(entries: &[Entry], now: DateTime<Utc>, n: usize) -> Vec<Row> {
    entries
        .iter()
        .map(|e| {
            let next = if e.enabled {
                std::iter::successors(e.schedule.next_after(now), |t| e.schedule.next_after(*t))
                    .take(n)
                    .collect()
            } else {
                Vec::new()
            };
            Row {
                pipeline: e.key.pipeline.clone(),
                tenant: e.key.tenant.clone(),
                schedule: e.schedule.expr().to_string(),
                zone: e.schedule.zone(),
                misfire: e.misfire.to_string(),
                enabled: e.enabled,
                next,
            }
        })
        .collect()
}
