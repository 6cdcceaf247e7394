//! The SQLite implementation of [`Store`] (sqlx): WAL, busy timeout, immediate write transactions.
//! The shared SQL and row decoding live in [`super::sql`]; this file holds what is SQLite's own.

use super::sql::{claimable_states, Backend, SqlStore, CLAIM_SET, METRIC_INSERT};
use super::*;
use anyhow::Context;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use sqlx::Sqlite;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// A SQLite ledger. Owns a small tokio runtime so that callers stay synchronous.
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    pub fn open(url: &str) -> Result<Self> {
        let rt = super::sql::runtime()?;
        let path = file_of(url)?;
        if let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the ledger directory {}", dir.display()))?;
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .with_context(|| format!("--db {url}: not a valid SQLite URL"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(60))
            .foreign_keys(true);
        let pool = rt
            .block_on(
                SqlitePoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(120))
                    .connect_with(opts),
            )
            .with_context(|| format!("opening the ledger {path}"))?;
        // Two processes may create a fresh ledger at once; the loser retries once the winner is done.
        let mut tries = 0;
        loop {
            match rt.block_on(sqlx::migrate!("migrations/sqlite").run(&pool)) {
                Ok(()) => break,
                Err(e) if tries < 5 => {
                    tries += 1;
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(200 * tries));
                }
                Err(e) => return Err(e).with_context(|| format!("migrating the ledger {path}")),
            }
        }
        Ok(Self {
            pool,
            rt,
            url: url.to_string(),
        })
    }

    /// The existing ledger at `url` with `mode=ro`: never created, migrated or written.
    pub fn open_read_only(url: &str) -> Result<Self> {
        let path = existing_file(url)?;
        let rt = super::sql::runtime()?;
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .with_context(|| format!("--db {url}: not a valid SQLite URL"))?
            .read_only(true);
        let pool = rt
            .block_on(
                SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect_with(opts),
            )
            .with_context(|| format!("opening the ledger `{url}` read-only"))?;
        Ok(Self {
            pool,
            rt,
            url: url.to_string(),
        })
    }
}

/// The SQLite file behind `url` (a usage error for PostgreSQL or in-memory URLs).
fn file_of(url: &str) -> Result<&str> {
    LedgerUrl::parse(url)
        .sqlite_file()
        .and_then(Path::to_str)
        .ok_or_else(|| {
            crate::error::UsageError(format!(
                "--db {url}: the ledger needs a file; fix: pass a path such as results/sweep.db"
            ))
            .into()
        })
}

/// The SQLite file behind `url`, which must exist (read-only opens never create one).
pub(super) fn existing_file(url: &str) -> Result<&str> {
    let path = file_of(url)?;
    if !Path::new(path).exists() {
        return Err(crate::error::UsageError(format!(
            "no ledger database at `{path}` (from --db/SWEEP_DB `{url}`); run `sweep run` first or pass --db URL"
        ))
        .into());
    }
    Ok(path)
}

impl Backend for Sqlite {
    /// Take the write lock up front: a deferred transaction that later upgrades to a writer can
    /// fail with SQLITE_BUSY without waiting for the busy timeout.
    const BEGIN: Option<&'static str> = Some("BEGIN IMMEDIATE");

    fn rows_affected(r: &SqliteQueryResult) -> u64 {
        r.rows_affected()
    }

    fn claim(s: &SqliteStore, id: i64, worker: &str, device: &str) -> Result<Option<TrialRecord>> {
        let sql = format!(
            "UPDATE trials SET {CLAIM_SET} WHERE id = $4 AND state IN {}",
            claimable_states()
        );
        let n =
            s.rt.block_on(
                sqlx::query(&sql)
                    .bind(worker)
                    .bind(device)
                    .bind(now())
                    .bind(id)
                    .execute(&s.pool),
            )?
            .rows_affected();
        if n == 0 {
            return Ok(None);
        }
        s.trial(id)
    }

    /// Multi-row `INSERT`s of [`METRIC_ROWS_PER_INSERT`] rows in one immediate transaction.
    fn insert_metrics(s: &SqliteStore, trial_id: i64, rows: &[NewMetric]) -> Result<u64> {
        s.rt.block_on(async {
            let now = now();
            let mut tx = s.begin().await?;
            let mut inserted = 0;
            for chunk in rows.chunks(METRIC_ROWS_PER_INSERT) {
                let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
                let sql = format!(
                    "{METRIC_INSERT} VALUES {values} ON CONFLICT (trial_id, split, step) DO NOTHING"
                );
                let mut q = sqlx::query(&sql);
                for r in chunk {
                    q = q
                        .bind(trial_id)
                        .bind(r.step)
                        .bind(r.epoch)
                        .bind(&r.split)
                        .bind(r.loss)
                        .bind(r.ppl)
                        .bind(r.tokens_seen)
                        .bind(r.lr)
                        .bind(r.tokens_per_s)
                        .bind(&now);
                }
                inserted += q.execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            Ok(inserted)
        })
    }
}

/// Rows per metrics `INSERT` (10 parameters each; SQLite allows 32,766 per statement).
const METRIC_ROWS_PER_INSERT: usize = 200;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn contract_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let n = std::sync::atomic::AtomicUsize::new(0);
        let make = || -> Result<Arc<dyn Store>> {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let url = format!("sqlite://{}/c{i}.db", dir.path().display());
            Ok(Arc::new(SqliteStore::open(&url)?))
        };
        contract::run_all(&make).unwrap();
    }

    #[test]
    fn open_existing_never_creates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/none.db");
        let url = format!("sqlite://{}", path.display());
        assert!(open_existing(&url).unwrap().is_none());
        assert!(!path.exists() && !path.parent().unwrap().exists());
        open(&url).unwrap();
        assert!(open_existing(&url).unwrap().is_some());
        assert!(open_existing(path.to_str().unwrap()).unwrap().is_some());
    }

    /// Four threads reading at once open several connections, and the last read's connection
    /// is still on its way back to the pool when the store is dropped: every connection closes
    /// (nearly always before the drop returns; sqlx closes a rare straggler on its own thread a
    /// moment later, hence the grace period), none is left open for the life of the process.
    /// Linux: open files are read from `/proc/self/fd`.
    #[test]
    fn dropping_a_busy_store_closes_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let open_files = || -> Vec<std::path::PathBuf> {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|t| t.starts_with(dir.path()))
                .collect()
        };
        for round in 0..100 {
            let s = Arc::new(SqliteStore::open(path.to_str().unwrap()).unwrap());
            std::thread::scope(|sc| {
                for _ in 0..4 {
                    let s = &s;
                    sc.spawn(move || {
                        for _ in 0..50 {
                            s.sweeps().unwrap();
                        }
                    });
                }
            });
            s.sweeps().unwrap();
            drop(s);
            let t0 = std::time::Instant::now();
            while !open_files().is_empty() && t0.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(5));
            }
            let open = open_files();
            assert!(
                open.is_empty(),
                "round {round}: still open after 5 s: {open:?}"
            );
        }
    }
}
