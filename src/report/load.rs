//! Reads a sweep's records (sweep, trials, metrics, samples) from the ledger over a read-only connection.

use anyhow::{Context, Result};
use serde_json::{Map, Value};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};
use std::path::Path;

use crate::error::UsageError;

/// Default ledger location (overridden by `--db` or env `SWEEP_DB`).
pub const DEFAULT_DB_URL: &str = "sqlite://results/sweep.db";

/// One row of `sweeps`, with `spec_json` parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SweepInfo {
    pub id: i64,
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub file: Option<String>,
    pub profile: Option<String>,
    pub kind: Option<String>,
    pub spec: Value,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

/// One trial as a member of a sweep: the `trials` row plus its `sweep_trials` link.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrialInfo {
    pub id: i64,
    pub hash: String,
    pub config: Value,
    pub state: String,
    pub attempts: i64,
    pub error: Option<String>,
    pub exit_status: Option<i64>,
    pub device: Option<String>,
    pub worker: Option<String>,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub wall_seconds: Option<f64>,
    pub train_seconds: Option<f64>,
    pub tokens_per_s: Option<f64>,
    pub peak_rss_bytes: Option<i64>,
    pub train_loss: Option<f64>,
    pub valid_loss: Option<f64>,
    pub test_loss: Option<f64>,
    pub train_ppl: Option<f64>,
    pub valid_ppl: Option<f64>,
    pub test_ppl: Option<f64>,
    pub valid_loss_fixed: Option<f64>,
    pub artifact_dir: Option<String>,
    pub env: Option<Value>,
    /// Row order within the sweep (sweep file order).
    pub position: i64,
    /// The axis values that define this row, e.g. `{"block_size": 256}`.
    pub label: Map<String, Value>,
    pub is_baseline: bool,
}

/// One `metrics` row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricPoint {
    pub trial_id: i64,
    pub step: i64,
    pub epoch: f64,
    pub split: String,
    pub loss: f64,
    pub ppl: f64,
    pub tokens_seen: i64,
    pub lr: f64,
    pub tokens_per_s: f64,
}

/// One `samples` row (a generated abstract).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleInfo {
    pub trial_id: i64,
    pub title: Option<String>,
    pub reference: Option<String>,
    pub text: Option<String>,
    pub params: Option<Value>,
    pub seed: Option<i64>,
    pub uses_acronym: Option<bool>,
}

/// Everything a report of one sweep is computed from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SweepRecords {
    pub sweep: SweepInfo,
    /// In `position` order.
    pub trials: Vec<TrialInfo>,
    /// Ordered by trial, split, step.
    pub metrics: Vec<MetricPoint>,
    pub samples: Vec<SampleInfo>,
}

/// Accepts `sqlite://...`, `postgres://...`, or a bare path to a SQLite file.
pub fn normalize_url(db: &str) -> String {
    if db.contains("://") || db.starts_with("sqlite:") {
        db.to_string()
    } else {
        format!("sqlite://{db}")
    }
}

/// The file behind a `sqlite:` URL (None for in-memory or other databases).
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path == ":memory:" {
        None
    } else {
        Some(path)
    }
}

/// Opens the ledger read-only: SQLite with `mode=ro`; PostgreSQL sessions default to read-only
/// transactions. A missing SQLite file is a usage error naming the path.
pub async fn connect_read_only(db: &str) -> Result<AnyPool> {
    sqlx::any::install_default_drivers();
    let url = normalize_url(db);
    let url = if let Some(path) = sqlite_path(&url) {
        if !Path::new(path).exists() {
            return Err(UsageError(format!(
                "no ledger database at `{path}` (from --db/SWEEP_DB `{db}`); run `sweep run` first or pass --db URL"
            ))
            .into());
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}mode=ro")
    } else {
        url
    };
    let is_pg = url.starts_with("postgres");
    let pool = AnyPoolOptions::new()
        .max_connections(2)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if is_pg {
                    sqlx::query("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                        .execute(conn)
                        .await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await
        .with_context(|| format!("opening the ledger `{db}` read-only"))?;
    Ok(pool)
}

fn parse_json(text: Option<String>, what: &str) -> Result<Option<Value>> {
    match text {
        None => Ok(None),
        Some(t) if t.trim().is_empty() => Ok(None),
        Some(t) => serde_json::from_str(&t)
            .map(Some)
            .with_context(|| format!("parsing {what} as JSON")),
    }
}

/// Names of all sweeps, sorted.
pub async fn sweep_names(pool: &AnyPool) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT name FROM sweeps ORDER BY name")
        .fetch_all(pool)
        .await
        .context("listing sweeps")?;
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).map_err(Into::into))
        .collect()
}

/// The sweep's record, or a usage error listing the known sweep names.
pub async fn load_sweep_info(pool: &AnyPool, name: &str) -> Result<SweepInfo> {
    let row = sqlx::query(
        "SELECT id, name, title, description, file, profile, kind, spec_json, created_at, updated_at \
         FROM sweeps WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await
    .with_context(|| format!("reading sweep `{name}`"))?;
    let Some(row) = row else {
        let known = sweep_names(pool).await?;
        let list = if known.is_empty() {
            "the ledger has no sweeps yet".to_string()
        } else {
            format!("known sweeps: {}", known.join(", "))
        };
        return Err(UsageError(format!("unknown sweep `{name}`; {list}")).into());
    };
    Ok(SweepInfo {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        file: row.try_get("file")?,
        profile: row.try_get("profile")?,
        kind: row.try_get("kind")?,
        spec: parse_json(row.try_get("spec_json")?, "sweeps.spec_json")?.unwrap_or(Value::Null),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// All records of one sweep.
pub async fn load_sweep(pool: &AnyPool, name: &str) -> Result<SweepRecords> {
    let sweep = load_sweep_info(pool, name).await?;
    let rows = sqlx::query(
        "SELECT t.id, t.hash, t.config_json, t.state, t.attempts, t.error, t.exit_status, t.device, \
         t.worker, t.created_at, t.started_at, t.finished_at, t.wall_seconds, t.train_seconds, \
         t.tokens_per_s, t.peak_rss_bytes, t.train_loss, t.valid_loss, t.test_loss, t.train_ppl, \
         t.valid_ppl, t.test_ppl, t.valid_loss_fixed, t.artifact_dir, t.env_json, \
         st.position, st.label_json, st.is_baseline \
         FROM sweep_trials st JOIN trials t ON t.id = st.trial_id \
         WHERE st.sweep_id = $1 ORDER BY st.position, t.id",
    )
    .bind(sweep.id)
    .fetch_all(pool)
    .await
    .with_context(|| format!("reading the trials of sweep `{name}`"))?;
    let mut trials = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: i64 = r.try_get("id")?;
        let label = match parse_json(r.try_get("label_json")?, "sweep_trials.label_json")? {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        trials.push(TrialInfo {
            id,
            hash: r.try_get("hash")?,
            config: parse_json(r.try_get("config_json")?, "trials.config_json")?
                .unwrap_or(Value::Null),
            state: r.try_get("state")?,
            attempts: r.try_get::<Option<i64>, _>("attempts")?.unwrap_or(0),
            error: r.try_get("error")?,
            exit_status: r.try_get("exit_status")?,
            device: r.try_get("device")?,
            worker: r.try_get("worker")?,
            created_at: r.try_get("created_at")?,
            started_at: r.try_get("started_at")?,
            finished_at: r.try_get("finished_at")?,
            wall_seconds: r.try_get("wall_seconds")?,
            train_seconds: r.try_get("train_seconds")?,
            tokens_per_s: r.try_get("tokens_per_s")?,
            peak_rss_bytes: r.try_get("peak_rss_bytes")?,
            train_loss: r.try_get("train_loss")?,
            valid_loss: r.try_get("valid_loss")?,
            test_loss: r.try_get("test_loss")?,
            train_ppl: r.try_get("train_ppl")?,
            valid_ppl: r.try_get("valid_ppl")?,
            test_ppl: r.try_get("test_ppl")?,
            valid_loss_fixed: r.try_get("valid_loss_fixed")?,
            artifact_dir: r.try_get("artifact_dir")?,
            env: parse_json(r.try_get("env_json")?, "trials.env_json")?,
            position: r.try_get::<Option<i64>, _>("position")?.unwrap_or(0),
            label,
            is_baseline: r.try_get::<Option<i64>, _>("is_baseline")?.unwrap_or(0) != 0,
        });
    }

    let rows = sqlx::query(
        "SELECT m.trial_id, m.step, m.epoch, m.split, m.loss, m.ppl, m.tokens_seen, m.lr, m.tokens_per_s \
         FROM metrics m JOIN sweep_trials st ON st.trial_id = m.trial_id \
         WHERE st.sweep_id = $1 ORDER BY m.trial_id, m.split, m.step",
    )
    .bind(sweep.id)
    .fetch_all(pool)
    .await
    .with_context(|| format!("reading the metrics of sweep `{name}`"))?;
    let mut metrics = Vec::with_capacity(rows.len());
    for r in &rows {
        metrics.push(MetricPoint {
            trial_id: r.try_get(0)?,
            step: r.try_get::<Option<i64>, _>(1)?.unwrap_or(0),
            epoch: r.try_get::<Option<f64>, _>(2)?.unwrap_or(f64::NAN),
            split: r.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
            loss: r.try_get::<Option<f64>, _>(4)?.unwrap_or(f64::NAN),
            ppl: r.try_get::<Option<f64>, _>(5)?.unwrap_or(f64::NAN),
            tokens_seen: r.try_get::<Option<i64>, _>(6)?.unwrap_or(0),
            lr: r.try_get::<Option<f64>, _>(7)?.unwrap_or(f64::NAN),
            tokens_per_s: r.try_get::<Option<f64>, _>(8)?.unwrap_or(f64::NAN),
        });
    }

    let rows = sqlx::query(
        "SELECT s.trial_id, s.title, s.reference, s.text, s.params_json, s.seed, s.uses_acronym \
         FROM samples s JOIN sweep_trials st ON st.trial_id = s.trial_id \
         WHERE st.sweep_id = $1 ORDER BY s.trial_id, s.id",
    )
    .bind(sweep.id)
    .fetch_all(pool)
    .await
    .with_context(|| format!("reading the samples of sweep `{name}`"))?;
    let mut samples = Vec::with_capacity(rows.len());
    for r in &rows {
        samples.push(SampleInfo {
            trial_id: r.try_get(0)?,
            title: r.try_get(1)?,
            reference: r.try_get(2)?,
            text: r.try_get(3)?,
            params: parse_json(r.try_get(4)?, "samples.params_json")?,
            seed: r.try_get(5)?,
            uses_acronym: r.try_get::<Option<i64>, _>(6)?.map(|v| v != 0),
        });
    }
    Ok(SweepRecords {
        sweep,
        trials,
        metrics,
        samples,
    })
}
