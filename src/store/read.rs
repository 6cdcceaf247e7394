//! Reading the ledger without ever writing it: the read-only open (typed [`Reader`] for reports,
//! `sweep results` and `sweep export`; raw SQL for `sweep query`) and the records of one sweep.

use anyhow::{Context, Result};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor};

use super::url::LedgerUrl;
use super::{
    postgres, sqlite, CurveBudget, MetricRecord, Reader, SampleRecord, SweepRecord, SweepTrial,
};
use crate::error::UsageError;

/// The ledger at `url`, opened read-only: SQLite with `mode=ro` (a missing file is a usage error
/// naming the path, and is not created), PostgreSQL in read-only transactions. No migration runs.
pub fn open_read_only(url: &str) -> Result<Box<dyn Reader>> {
    match LedgerUrl::parse(url) {
        LedgerUrl::Postgres(_) => Ok(Box::new(postgres::PostgresStore::open_read_only(url)?)),
        LedgerUrl::Sqlite(_) => Ok(Box::new(sqlite::SqliteStore::open_read_only(url)?)),
    }
}

/// A read-only connection for arbitrary SQL (`sweep query`): rows come back untyped.
pub struct ReadOnlySql {
    rt: tokio::runtime::Runtime,
    pool: AnyPool,
}

impl ReadOnlySql {
    /// Opens the ledger at `url` read-only (see [`open_read_only`]).
    pub fn open(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let rt = super::sql::runtime()?;
        let (any_url, is_pg) = match LedgerUrl::parse(url) {
            LedgerUrl::Postgres(u) => (u.to_string(), true),
            LedgerUrl::Sqlite(_) => (
                format!("sqlite://{}?mode=ro", sqlite::existing_file(url)?),
                false,
            ),
        };
        let pool = rt
            .block_on(
                AnyPoolOptions::new()
                    .max_connections(2)
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            if is_pg {
                                conn.execute(postgres::READ_ONLY_SESSION).await?;
                            }
                            Ok(())
                        })
                    })
                    .connect(&any_url),
            )
            .with_context(|| format!("opening the ledger `{}` read-only", super::redact(url)))?;
        Ok(Self { rt, pool })
    }

    /// Runs one statement and collects every row.
    pub fn fetch_all(&self, sql: &str) -> sqlx::Result<Vec<AnyRow>> {
        self.rt.block_on(sqlx::query(sql).fetch_all(&self.pool))
    }

    /// The column names of `sql` without running it (empty when the driver cannot tell).
    pub fn columns(&self, sql: &str) -> Vec<String> {
        use sqlx::Column;
        match self.rt.block_on((&self.pool).describe(sql)) {
            Ok(d) => d.columns().iter().map(|c| c.name().to_string()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for ReadOnlySql {
    fn drop(&mut self) {
        self.rt.block_on(self.pool.close());
    }
}

/// Everything a report of one sweep is computed from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SweepRecords {
    pub sweep: SweepRecord,
    /// In `position` order.
    pub trials: Vec<SweepTrial>,
    /// Ordered by trial, split, step.
    pub metrics: Vec<MetricRecord>,
    /// Ordered by trial, then sample id.
    pub samples: Vec<SampleRecord>,
}

/// The sweep called `name`, or a usage error listing the known sweep names.
pub fn sweep_named(r: &dyn Reader, name: &str) -> Result<SweepRecord> {
    if let Some(s) = r
        .sweep_by_name(name)
        .with_context(|| format!("reading sweep `{name}`"))?
    {
        return Ok(s);
    }
    let known: Vec<String> = r.sweeps()?.into_iter().map(|s| s.name).collect();
    let list = if known.is_empty() {
        "the ledger has no sweeps yet".to_string()
    } else {
        format!("known sweeps: {}", known.join(", "))
    };
    Err(UsageError(format!("unknown sweep `{name}`; {list}")).into())
}

/// The sweeps a trial belongs to (by name, in ledger order), each with the trial's membership
/// in it (its label and whether it is the baseline there).
pub fn trial_sweeps(r: &dyn Reader, trial_id: i64) -> Result<Vec<(String, SweepTrial)>> {
    let mut out = Vec::new();
    for sweep in r.sweeps()? {
        if let Some(st) = r
            .sweep_trials(sweep.id)?
            .into_iter()
            .find(|st| st.id == trial_id)
        {
            out.push((sweep.name, st));
        }
    }
    Ok(out)
}

/// [`load_sweep`] without the metric rows and samples: what tables of final numbers need
/// (`sweep results`), which on a large sweep is most of the reading saved.
pub fn load_sweep_finals(r: &dyn Reader, name: &str) -> Result<SweepRecords> {
    let sweep = sweep_named(r, name)?;
    let trials = r
        .sweep_trials(sweep.id)
        .with_context(|| format!("reading the trials of sweep `{name}`"))?;
    Ok(SweepRecords {
        sweep,
        trials,
        metrics: Vec::new(),
        samples: Vec::new(),
    })
}

/// Everything of the sweep called `name`: every metric row and sample.
pub fn load_sweep(r: &dyn Reader, name: &str) -> Result<SweepRecords> {
    load_sweep_with(r, name, |id| r.sweep_metrics(id))
}

/// [`load_sweep`] with the metric rows thinned to `budget` ([`Reader::sweep_curves`]): what a
/// report or a dashboard page draws. On 1,000 rows x 5 seeds of 200 rows each, reading every
/// row was 13 of the report's 14 s (bench/RESULTS.md).
pub fn load_sweep_curves(r: &dyn Reader, name: &str, budget: CurveBudget) -> Result<SweepRecords> {
    load_sweep_with(r, name, |id| r.sweep_curves(id, budget))
}

fn load_sweep_with(
    r: &dyn Reader,
    name: &str,
    metrics: impl Fn(i64) -> Result<Vec<MetricRecord>>,
) -> Result<SweepRecords> {
    let mut records = load_sweep_finals(r, name)?;
    let id = records.sweep.id;
    records.metrics =
        metrics(id).with_context(|| format!("reading the metrics of sweep `{name}`"))?;
    records.samples = r
        .sweep_samples(id)
        .with_context(|| format!("reading the samples of sweep `{name}`"))?;
    Ok(records)
}
