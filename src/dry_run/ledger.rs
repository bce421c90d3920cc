//! The ledger of a dry run: a consistent snapshot of the real SQLite ledger (`VACUUM
//! INTO`) in a temporary folder, so the dry run sees which items are done and where the
//! checkpoints stand, while everything it writes (items, checkpoints, kv, audit) lands in
//! the copy and is thrown away. The real ledger file is only read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::ConnectOptions as _;
use sqlx::sqlite::SqliteConnectOptions;

use crate::ledger::{Ledger, LedgerError, is_postgres_url, redact_url};

/// File name of the ledger inside a state folder.
const LEDGER_FILE: &str = "ledger.sqlite";

/// Error making the dry run's ledger; names the real ledger it was copying.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("dry run: creating a temporary folder for the ledger copy: {0}")]
    TempDir(#[source] std::io::Error),
    #[error("dry run: copying the ledger {}: {message}", source_file.display())]
    Copy {
        source_file: PathBuf,
        message: String,
    },
    #[error("dry run: opening the ledger copy: {0}")]
    Open(#[from] LedgerError),
    #[error(
        "dry run: the ledger {0} is PostgreSQL, and a dry run copies a SQLite ledger only; \
         dry runs against a PostgreSQL ledger are not supported yet (leave out --dry-run, or \
         dry-run against a SQLite ledger with --state DIR)"
    )]
    PostgresLedger(String),
}

/// A throwaway ledger; its folder is removed when this is dropped.
pub struct Throwaway {
    pub ledger: Ledger,
    dir: tempfile::TempDir,
}

impl Throwaway {
    /// Where the copy lives while the run lasts.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The ledger file behind `--state DIR` (`DIR/ledger.sqlite`) or `--ledger URL`
/// (`sqlite://PATH` or a bare path). A PostgreSQL URL is refused: read as a path it would
/// name no file, and the dry run would start from an empty ledger as if nothing were done.
pub fn ledger_file(state_dir: &Path, url: Option<&str>) -> Result<PathBuf, SnapshotError> {
    match url {
        Some(url) if is_postgres_url(url) => Err(SnapshotError::PostgresLedger(redact_url(url))),
        Some(url) => Ok(PathBuf::from(url.strip_prefix("sqlite://").unwrap_or(url))),
        None => Ok(state_dir.join(LEDGER_FILE)),
    }
}

/// A copy of the ledger in `source_file` (an empty ledger when there is none yet: a
/// first run), opened for the dry run.
pub async fn throwaway_copy(source_file: &Path) -> Result<Throwaway, SnapshotError> {
    let dir = tempfile::Builder::new()
        .prefix("cxpipe-dry-run-")
        .tempdir()
        .map_err(SnapshotError::TempDir)?;
    let target = dir.path().join(LEDGER_FILE);
    if source_file.is_file() {
        snapshot(source_file, &target)
            .await
            .map_err(|message| SnapshotError::Copy {
                source_file: source_file.to_path_buf(),
                message,
            })?;
    }
    let ledger = Ledger::open_dir(dir.path()).await?;
    Ok(Throwaway { ledger, dir })
}

/// `VACUUM INTO`: a transactionally consistent copy, even while another process writes.
async fn snapshot(source: &Path, target: &Path) -> Result<(), String> {
    let mut conn = SqliteConnectOptions::new()
        .filename(source)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let target = target
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", target.display()))?;
    sqlx::query("VACUUM INTO $1")
        .bind(target)
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_copy_sees_the_real_ledger_and_writes_only_to_itself() {
        let dir = tempfile::tempdir().unwrap();
        let real = Ledger::open_dir(dir.path()).await.unwrap();
        real.kv_set("p", "t", "seen", "1").await.unwrap();
        let copy = throwaway_copy(&ledger_file(dir.path(), None).unwrap())
            .await
            .unwrap();
        assert_eq!(
            copy.ledger.kv_get("p", "t", "seen").await.unwrap(),
            Some("1".to_string())
        );
        copy.ledger.kv_set("p", "t", "written", "2").await.unwrap();
        assert_eq!(real.kv_get("p", "t", "written").await.unwrap(), None);
        let copy_dir = copy.dir().to_path_buf();
        drop(copy);
        assert!(!copy_dir.exists(), "the copy is removed");
    }

    #[tokio::test]
    async fn no_ledger_yet_gives_an_empty_copy_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = ledger_file(&dir.path().join("state"), None).unwrap();
        let copy = throwaway_copy(&file).await.unwrap();
        assert_eq!(copy.ledger.kv_get("p", "t", "x").await.unwrap(), None);
        assert!(!dir.path().join("state").exists());
    }

    #[test]
    fn a_postgres_ledger_is_refused_not_read_as_a_missing_file() {
        let err = ledger_file(Path::new("state"), Some("postgres://cx:s3cret@db/ledger"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PostgreSQL") && err.contains("--dry-run"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
        let sqlite = ledger_file(Path::new("state"), Some("sqlite:///tmp/l.sqlite")).unwrap();
        assert_eq!(sqlite, PathBuf::from("/tmp/l.sqlite"));
    }
}
