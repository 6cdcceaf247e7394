//! The SQLite implementation of [`Store`] (sqlx): WAL, busy timeout, immediate write transactions.

use super::*;
use anyhow::Context;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// A SQLite ledger. Owns a small tokio runtime so that callers stay synchronous.
pub struct SqliteStore {
    pool: SqlitePool,
    rt: tokio::runtime::Runtime,
    url: String,
}

const TRIAL_COLS: &str = "t.id, t.hash, t.config_json, t.state, t.attempts, t.error, \
    t.exit_status, t.device, t.worker, t.created_at, t.started_at, t.finished_at, t.heartbeat_at, \
    t.wall_seconds, t.train_seconds, t.tokens_per_s, t.peak_rss_bytes, t.train_loss, t.valid_loss, \
    t.test_loss, t.train_ppl, t.valid_ppl, t.test_ppl, t.valid_loss_fixed, t.artifact_dir, t.env_json";

fn json_col(row: &SqliteRow, col: &str) -> Result<Option<Json>> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| serde_json::from_str(&s).with_context(|| format!("ledger column {col} is not JSON")))
        .transpose()
}

fn trial_from(row: &SqliteRow) -> Result<TrialRecord> {
    let state: String = row.try_get("state")?;
    Ok(TrialRecord {
        id: row.try_get("id")?,
        hash: row.try_get("hash")?,
        config: json_col(row, "config_json")?.unwrap_or(Json::Null),
        state: TrialState::parse(&state)?,
        attempts: row.try_get("attempts")?,
        error: row.try_get("error")?,
        exit_status: row.try_get("exit_status")?,
        device: row.try_get("device")?,
        worker: row.try_get("worker")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        heartbeat_at: row.try_get("heartbeat_at")?,
        results: TrialResults {
            wall_seconds: row.try_get("wall_seconds")?,
            train_seconds: row.try_get("train_seconds")?,
            tokens_per_s: row.try_get("tokens_per_s")?,
            peak_rss_bytes: row.try_get("peak_rss_bytes")?,
            train_loss: row.try_get("train_loss")?,
            valid_loss: row.try_get("valid_loss")?,
            test_loss: row.try_get("test_loss")?,
            train_ppl: row.try_get("train_ppl")?,
            valid_ppl: row.try_get("valid_ppl")?,
            test_ppl: row.try_get("test_ppl")?,
            valid_loss_fixed: row.try_get("valid_loss_fixed")?,
        },
        artifact_dir: row.try_get("artifact_dir")?,
        env: json_col(row, "env_json")?,
    })
}

fn sweep_from(row: &SqliteRow) -> Result<SweepRecord> {
    Ok(SweepRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        file: row.try_get("file")?,
        profile: row.try_get("profile")?,
        kind: row.try_get("kind")?,
        spec: json_col(row, "spec_json")?.unwrap_or(Json::Null),
        created_at: row
            .try_get::<Option<String>, _>("created_at")?
            .unwrap_or_default(),
        updated_at: row
            .try_get::<Option<String>, _>("updated_at")?
            .unwrap_or_default(),
    })
}

fn metric_from(row: &SqliteRow) -> Result<MetricRecord> {
    Ok(MetricRecord {
        trial_id: row.try_get("trial_id")?,
        step: row.try_get("step")?,
        epoch: row.try_get("epoch")?,
        split: row.try_get("split")?,
        loss: row.try_get("loss")?,
        ppl: row.try_get("ppl")?,
        tokens_seen: row.try_get("tokens_seen")?,
        lr: row.try_get("lr")?,
        tokens_per_s: row.try_get("tokens_per_s")?,
        created_at: row
            .try_get::<Option<String>, _>("created_at")?
            .unwrap_or_default(),
    })
}

/// The file path inside a SQLite URL (`sqlite://p`, `sqlite:p`, or a bare path).
fn db_path(url: &str) -> &str {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    rest.split('?').next().unwrap_or(rest)
}

impl SqliteStore {
    pub fn open(url: &str) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sweep-store")
            .enable_all()
            .build()
            .context("starting the ledger's runtime")?;
        let path = db_path(url);
        if path.is_empty() || path == ":memory:" {
            return Err(crate::cli::UsageError(format!(
                "--db {url}: the ledger needs a file; fix: pass a path such as results/sweep.db"
            ))
            .into());
        }
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

    pub fn url(&self) -> &str {
        &self.url
    }

    fn trial_where(
        &self,
        cond: &str,
        bind: Option<&str>,
        id: Option<i64>,
    ) -> Result<Vec<TrialRecord>> {
        let sql = format!("SELECT {TRIAL_COLS} FROM trials t WHERE {cond} ORDER BY t.id");
        let mut q = sqlx::query(&sql);
        if let Some(b) = bind {
            q = q.bind(b.to_string());
        }
        if let Some(i) = id {
            q = q.bind(i);
        }
        let rows = self.rt.block_on(q.fetch_all(&self.pool))?;
        rows.iter().map(trial_from).collect()
    }
}

impl Store for SqliteStore {
    fn record_sweep(&self, sweep: &NewSweep, trials: &[NewTrial]) -> Result<RecordedSweep> {
        self.rt.block_on(async {
            let now = now();
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let sweep_id: i64 = sqlx::query_scalar(
                "INSERT INTO sweeps (name, title, description, file, profile, kind, spec_json, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
                 ON CONFLICT (name) DO UPDATE SET title = excluded.title, description = excluded.description,
                   file = excluded.file, profile = excluded.profile, kind = excluded.kind,
                   spec_json = excluded.spec_json, updated_at = excluded.updated_at
                 RETURNING id",
            )
            .bind(&sweep.name)
            .bind(&sweep.title)
            .bind(&sweep.description)
            .bind(&sweep.file)
            .bind(&sweep.profile)
            .bind(&sweep.kind)
            .bind(sweep.spec.to_string())
            .bind(&now)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM sweep_trials WHERE sweep_id = $1")
                .bind(sweep_id)
                .execute(&mut *tx)
                .await?;
            let mut trial_ids = Vec::with_capacity(trials.len());
            let mut created = 0;
            for (pos, t) in trials.iter().enumerate() {
                let inserted = sqlx::query(
                    "INSERT INTO trials (hash, config_json, state, attempts, created_at)
                     VALUES ($1, $2, 'pending', 0, $3) ON CONFLICT (hash) DO NOTHING",
                )
                .bind(&t.hash)
                .bind(t.config.to_string())
                .bind(&now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                created += inserted as usize;
                let id: i64 = sqlx::query_scalar("SELECT id FROM trials WHERE hash = $1")
                    .bind(&t.hash)
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO sweep_trials (sweep_id, trial_id, position, label_json, is_baseline)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sweep_id, trial_id) DO NOTHING",
                )
                .bind(sweep_id)
                .bind(id)
                .bind(pos as i64)
                .bind(t.label.to_string())
                .bind(t.is_baseline as i64)
                .execute(&mut *tx)
                .await?;
                trial_ids.push(id);
            }
            tx.commit().await?;
            Ok(RecordedSweep {
                sweep_id,
                trial_ids,
                created,
            })
        })
    }

    fn sweeps(&self) -> Result<Vec<SweepRecord>> {
        let rows = self
            .rt
            .block_on(sqlx::query("SELECT * FROM sweeps ORDER BY name").fetch_all(&self.pool))?;
        rows.iter().map(sweep_from).collect()
    }

    fn sweep_by_name(&self, name: &str) -> Result<Option<SweepRecord>> {
        let row = self.rt.block_on(
            sqlx::query("SELECT * FROM sweeps WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool),
        )?;
        row.as_ref().map(sweep_from).transpose()
    }

    fn sweep_trials(&self, sweep_id: i64) -> Result<Vec<SweepTrial>> {
        let sql = format!(
            "SELECT {TRIAL_COLS}, st.sweep_id, st.position, st.label_json, st.is_baseline
             FROM sweep_trials st JOIN trials t ON t.id = st.trial_id
             WHERE st.sweep_id = $1 ORDER BY st.position"
        );
        let rows = self
            .rt
            .block_on(sqlx::query(&sql).bind(sweep_id).fetch_all(&self.pool))?;
        rows.iter()
            .map(|r| {
                Ok(SweepTrial {
                    sweep_id: r.try_get("sweep_id")?,
                    position: r.try_get("position")?,
                    label: json_col(r, "label_json")?.unwrap_or(Json::Null),
                    is_baseline: r.try_get::<i64, _>("is_baseline")? != 0,
                    trial: trial_from(r)?,
                })
            })
            .collect()
    }

    fn trial(&self, id: i64) -> Result<Option<TrialRecord>> {
        Ok(self.trial_where("t.id = $1", None, Some(id))?.pop())
    }

    fn trial_by_hash(&self, hash: &str) -> Result<Option<TrialRecord>> {
        Ok(self.trial_where("t.hash = $1", Some(hash), None)?.pop())
    }

    fn trials_in_state(&self, state: TrialState) -> Result<Vec<TrialRecord>> {
        self.trial_where("t.state = $1", Some(state.as_str()), None)
    }

    fn claim_trial(&self, id: i64, worker: &str, device: &str) -> Result<Option<TrialRecord>> {
        let now = now();
        let n = self
            .rt
            .block_on(
                sqlx::query(
                    "UPDATE trials SET state = 'running', attempts = attempts + 1, worker = $1,
                       device = $2, started_at = $3, heartbeat_at = $3, finished_at = NULL,
                       error = NULL, exit_status = NULL
                     WHERE id = $4 AND state IN ('pending', 'interrupted', 'failed')",
                )
                .bind(worker)
                .bind(device)
                .bind(&now)
                .bind(id)
                .execute(&self.pool),
            )?
            .rows_affected();
        if n == 0 {
            return Ok(None);
        }
        self.trial(id)
    }

    fn heartbeat(&self, id: i64, worker: &str) -> Result<bool> {
        let n = self
            .rt
            .block_on(
                sqlx::query(
                    "UPDATE trials SET heartbeat_at = $1
                     WHERE id = $2 AND state = 'running' AND worker = $3",
                )
                .bind(now())
                .bind(id)
                .bind(worker)
                .execute(&self.pool),
            )?
            .rows_affected();
        Ok(n > 0)
    }

    fn set_env(&self, id: i64, env: &Json) -> Result<()> {
        self.rt.block_on(
            sqlx::query("UPDATE trials SET env_json = $1 WHERE id = $2")
                .bind(env.to_string())
                .bind(id)
                .execute(&self.pool),
        )?;
        Ok(())
    }

    fn finish_trial(&self, id: i64, worker: &str, outcome: &Outcome) -> Result<bool> {
        let now = now();
        let empty = TrialResults::default();
        let (results, artifact_dir, error, exit_status) = match outcome {
            Outcome::Completed {
                results,
                artifact_dir,
            } => (results, artifact_dir.clone(), None, Some(0)),
            Outcome::Diverged { error } => (&empty, None, Some(error.clone()), None),
            Outcome::Interrupted { error } => (&empty, None, error.clone(), None),
            Outcome::Failed { error, exit_status } => {
                (&empty, None, Some(error.clone()), *exit_status)
            }
        };
        let n = self
            .rt
            .block_on(
                sqlx::query(
                    "UPDATE trials SET state = $1, finished_at = $2, error = $3, exit_status = $4,
                       wall_seconds = $5, train_seconds = $6, tokens_per_s = $7, peak_rss_bytes = $8,
                       train_loss = $9, valid_loss = $10, test_loss = $11, train_ppl = $12,
                       valid_ppl = $13, test_ppl = $14, valid_loss_fixed = $15,
                       artifact_dir = COALESCE($16, artifact_dir)
                     WHERE id = $17 AND state = 'running' AND worker = $18",
                )
                .bind(outcome.state().as_str())
                .bind(&now)
                .bind(error)
                .bind(exit_status)
                .bind(results.wall_seconds)
                .bind(results.train_seconds)
                .bind(results.tokens_per_s)
                .bind(results.peak_rss_bytes)
                .bind(results.train_loss)
                .bind(results.valid_loss)
                .bind(results.test_loss)
                .bind(results.train_ppl)
                .bind(results.valid_ppl)
                .bind(results.test_ppl)
                .bind(results.valid_loss_fixed)
                .bind(artifact_dir)
                .bind(id)
                .bind(worker)
                .execute(&self.pool),
            )?
            .rows_affected();
        Ok(n > 0)
    }

    fn reset_trial(&self, id: i64) -> Result<bool> {
        self.rt.block_on(async {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let n = sqlx::query(
                "UPDATE trials SET state = 'pending', attempts = 0, error = NULL, exit_status = NULL,
                   worker = NULL, started_at = NULL, finished_at = NULL, heartbeat_at = NULL,
                   wall_seconds = NULL, train_seconds = NULL, tokens_per_s = NULL,
                   peak_rss_bytes = NULL, train_loss = NULL, valid_loss = NULL, test_loss = NULL,
                   train_ppl = NULL, valid_ppl = NULL, test_ppl = NULL, valid_loss_fixed = NULL,
                   env_json = NULL
                 WHERE id = $1 AND state <> 'running'",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                sqlx::query("DELETE FROM metrics WHERE trial_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    fn insert_metrics(&self, trial_id: i64, rows: &[NewMetric]) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        self.rt.block_on(async {
            let now = now();
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let mut inserted = 0;
            for r in rows {
                inserted += sqlx::query(
                    "INSERT INTO metrics (trial_id, step, epoch, split, loss, ppl, tokens_seen, lr,
                       tokens_per_s, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (trial_id, split, step) DO NOTHING",
                )
                .bind(trial_id)
                .bind(r.step)
                .bind(r.epoch)
                .bind(&r.split)
                .bind(r.loss)
                .bind(r.ppl)
                .bind(r.tokens_seen)
                .bind(r.lr)
                .bind(r.tokens_per_s)
                .bind(&now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            tx.commit().await?;
            Ok(inserted)
        })
    }

    fn metrics(&self, trial_id: i64) -> Result<Vec<MetricRecord>> {
        let rows = self.rt.block_on(
            sqlx::query("SELECT * FROM metrics WHERE trial_id = $1 ORDER BY split, step")
                .bind(trial_id)
                .fetch_all(&self.pool),
        )?;
        rows.iter().map(metric_from).collect()
    }

    fn last_metric(&self, trial_id: i64, split: &str) -> Result<Option<MetricRecord>> {
        let row = self.rt.block_on(
            sqlx::query(
                "SELECT * FROM metrics WHERE trial_id = $1 AND split = $2 ORDER BY step DESC LIMIT 1",
            )
            .bind(trial_id)
            .bind(split)
            .fetch_optional(&self.pool),
        )?;
        row.as_ref().map(metric_from).transpose()
    }

    fn insert_sample(&self, s: &NewSample) -> Result<i64> {
        let id = self.rt.block_on(
            sqlx::query_scalar(
                "INSERT INTO samples (trial_id, title, reference, text, params_json, seed,
                   uses_acronym, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(s.trial_id)
            .bind(&s.title)
            .bind(&s.reference)
            .bind(&s.text)
            .bind(s.params.to_string())
            .bind(s.seed)
            .bind(s.uses_acronym.map(i64::from))
            .bind(now())
            .fetch_one(&self.pool),
        )?;
        Ok(id)
    }

    fn samples(&self, trial_id: i64) -> Result<Vec<SampleRecord>> {
        let rows = self.rt.block_on(
            sqlx::query("SELECT * FROM samples WHERE trial_id = $1 ORDER BY id")
                .bind(trial_id)
                .fetch_all(&self.pool),
        )?;
        rows.iter()
            .map(|r| {
                Ok(SampleRecord {
                    id: r.try_get("id")?,
                    sample: NewSample {
                        trial_id: r.try_get("trial_id")?,
                        title: r.try_get::<Option<String>, _>("title")?.unwrap_or_default(),
                        reference: r.try_get("reference")?,
                        text: r.try_get::<Option<String>, _>("text")?.unwrap_or_default(),
                        params: json_col(r, "params_json")?.unwrap_or(Json::Null),
                        seed: r.try_get("seed")?,
                        uses_acronym: r.try_get::<Option<i64>, _>("uses_acronym")?.map(|v| v != 0),
                    },
                    created_at: r
                        .try_get::<Option<String>, _>("created_at")?
                        .unwrap_or_default(),
                })
            })
            .collect()
    }
}

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
    fn url_forms() {
        assert_eq!(db_path("sqlite://a/b.db"), "a/b.db");
        assert_eq!(db_path("sqlite:a.db?mode=rwc"), "a.db");
        assert_eq!(db_path("results/sweep.db"), "results/sweep.db");
    }
}
