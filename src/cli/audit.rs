//! `cxpipe audit export|verify`: the hash-chained audit log as JSON lines (on stdout or into
//! a store, with a manifest), and a walk over the chain that exits 1 naming the first entry
//! that was edited, removed or reordered.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Subcommand;

use super::ledger_args::LedgerArgs;
use crate::flow::{Flow, Source};
use crate::keys::KeyRing;
use crate::ledger::audit_log::AuditFilter;
use crate::ledger::{AuditEntry, Ledger};
use crate::runtime::tools::open_store;

/// Rows read from the ledger per query while exporting.
const EXPORT_PAGE: i64 = 1000;

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub action: AuditAction,
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Write audit entries as JSON lines (stdout, or `--to STORE`), oldest first.
    Export {
        #[command(flatten)]
        ledger: LedgerArgs,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this pipeline.
        #[arg(long)]
        pipeline: Option<String>,
        /// Only entries at or after this time: RFC 3339 (`2026-11-01T00:00:00Z`), a date
        /// (`2026-11-01`, UTC) or an age (`24h`, `7days`).
        #[arg(long)]
        since: Option<String>,
        /// A store URI (`fs:///dir`, `s3://…`) or a `[storage.NAME]` of `--config`; the
        /// export is written there as one object with a manifest instead of to stdout.
        #[arg(long, value_name = "STORE")]
        to: Option<String>,
        /// Object key in `--to` (default `audit/audit-<time>.jsonl`); never overwritten.
        #[arg(long, requires = "to")]
        key: Option<String>,
        /// Configuration file naming `--to` as `[storage.NAME]`.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Recompute every hash of the chain; exit 1 at the first broken link.
    Verify {
        #[command(flatten)]
        ledger: LedgerArgs,
        /// A head hash recorded earlier: it must still be in the chain (catches entries cut
        /// off the end, which no chain can show by itself).
        #[arg(long, value_name = "HASH")]
        anchor: Option<String>,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        AuditAction::Export {
            ledger,
            tenant,
            pipeline,
            since,
            to,
            key,
            config,
        } => {
            let filter = AuditFilter {
                tenant,
                pipeline,
                since_ms: since.as_deref().map(parse_since).transpose()?,
            };
            export(&ledger.open().await?, &filter, to, key, config).await
        }
        AuditAction::Verify {
            ledger,
            anchor,
            json,
        } => verify(&ledger.open().await?, anchor.as_deref(), json).await,
    }
}

/// `--since`: RFC 3339, a UTC date, or an age before now.
fn parse_since(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_millis());
    }
    if let Ok(age) = humantime::parse_duration(text) {
        return Ok(chrono::Utc::now().timestamp_millis() - age.as_millis() as i64);
    }
    bail!(
        "--since {text:?}: expected RFC 3339 (2026-11-01T00:00:00Z), a date (2026-11-01) or an age (24h)"
    )
}

/// One exported line: the stored entry plus its time in RFC 3339.
fn line_of(entry: &AuditEntry) -> anyhow::Result<Vec<u8>> {
    let mut value = serde_json::to_value(entry)?;
    let time = chrono::DateTime::from_timestamp_millis(entry.at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    value["time"] = time.into();
    let mut line = serde_json::to_vec(&value)?;
    line.push(b'\n');
    Ok(line)
}

async fn export(
    ledger: &Ledger,
    filter: &AuditFilter,
    to: Option<String>,
    key: Option<String>,
    config: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    // To stdout line by line, or gathered for one object in `--to`.
    let mut stdout = to
        .is_none()
        .then(|| std::io::BufWriter::new(std::io::stdout()));
    let mut buffer = Vec::new();
    let (mut after, mut count) = (0i64, 0u64);
    loop {
        let page = ledger.audit_page(filter, after, EXPORT_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for entry in &page {
            let line = line_of(entry)?;
            match stdout.as_mut() {
                Some(out) => out.write_all(&line)?,
                None => buffer.extend_from_slice(&line),
            }
            count += 1;
        }
    }
    if let Some(mut out) = stdout {
        out.flush()?;
    }
    let Some(spec) = to else {
        tracing::info!(entries = count, "audit exported");
        return Ok(ExitCode::SUCCESS);
    };
    let store = open_store(&spec, config.as_deref())?;
    let key = key.unwrap_or_else(|| {
        format!(
            "audit/audit-{}.jsonl",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
        )
    });
    let mut flow = Flow::new(Source::Bytes {
        data: buffer.into(),
        kind: "jsonl",
    });
    flow.meta.insert("audit_entries".into(), count.into());
    flow.meta.insert("audit_last_seq".into(), after.into());
    let write_key = key.clone();
    let receipt = tokio::task::spawn_blocking(move || {
        crate::flow::sink::write(
            &flow.with(crate::flow::Stage::Sha256),
            &store,
            &write_key,
            &KeyRing::empty(),
            None,
            &Default::default(),
        )
    })
    .await?
    .with_context(|| format!("writing the audit export to {key}"))?;
    if receipt.get("existed").and_then(|v| v.as_bool()) == Some(true) {
        bail!("{key} already exists in {spec}; choose another --key (exports never overwrite)");
    }
    eprintln!("exported {count} audit entries to {key}");
    Ok(ExitCode::SUCCESS)
}

async fn verify(ledger: &Ledger, anchor: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let report = ledger.verify_audit(anchor).await?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else if let Some(broken) = &report.broken {
        println!("BROKEN {broken}");
        eprintln!(
            "audit chain broken after {} good entries",
            report.entries - 1
        );
    } else if report.anchor_found == Some(false) {
        println!(
            "MISSING anchor {}: entries were cut off the end of the chain (head now seq {})",
            anchor.unwrap_or_default(),
            report.head_seq.unwrap_or(0)
        );
    } else {
        eprintln!(
            "audit chain intact: {} entries, head seq {} hash {}",
            report.entries,
            report.head_seq.unwrap_or(0),
            report.head_hash.as_deref().unwrap_or("-")
        );
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_times_dates_and_ages() {
        assert_eq!(parse_since("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(parse_since("1970-01-02").unwrap(), 86_400_000);
        let age = chrono::Utc::now().timestamp_millis() - parse_since("1h").unwrap();
        assert!((3_600_000..3_700_000).contains(&age), "{age}");
        let err = parse_since("last tuesday").unwrap_err().to_string();
        assert!(err.contains("RFC 3339"), "{err}");
    }
}
