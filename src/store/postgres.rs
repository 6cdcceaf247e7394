//! The PostgreSQL implementation of [`Store`] (sqlx): one shared ledger for workers on many nodes.
//!
//! Same tables and SQL as SQLite (`migrations/postgres` mirrors `migrations/sqlite` with Postgres
//! types). Claims are conditional `UPDATE`s: under READ COMMITTED a second concurrent claim waits
//! for the first's row lock, re-checks `state` and matches nothing, so exactly one wins.
//! [`PostgresStore::claim_next`] picks the next claimable trial of a sweep with
//! `FOR UPDATE SKIP LOCKED`, so concurrent workers never queue on the same row. Metric batches
//! are one `INSERT ... SELECT FROM UNNEST(...)` statement (one round trip per batch).

use super::*;
use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, Row};
use std::str::FromStr;
use std::time::Duration;

/// A PostgreSQL ledger. Owns a small tokio runtime so that callers stay synchronous.
pub struct PostgresStore {
    pool: PgPool,
    rt: tokio::runtime::Runtime,
}

const TRIAL_COLS: &str = "t.id, t.hash, t.config_json, t.state, t.attempts, t.error, \
    t.exit_status, t.device, t.worker, t.created_at, t.started_at, t.finished_at, t.heartbeat_at, \
    t.wall_seconds, t.train_seconds, t.tokens_per_s, t.peak_rss_bytes, t.train_loss, t.valid_loss, \
    t.test_loss, t.train_ppl, t.valid_ppl, t.test_ppl, t.valid_loss_fixed, t.artifact_dir, t.env_json";

const CLAIM_SET: &str = "state = 'running', attempts = attempts + 1, worker = $1, device = $2, \
    started_at = $3, heartbeat_at = $3, finished_at = NULL, error = NULL, exit_status = NULL";

fn json_col(row: &PgRow, col: &str) -> Result<Option<Json>> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| serde_json::from_str(&s).with_context(|| format!("ledger column {col} is not JSON")))
        .transpose()
}

fn trial_from(row: &PgRow) -> Result<TrialRecord> {
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

fn opt_text(row: &PgRow, col: &str) -> Result<String> {
    Ok(row.try_get::<Option<String>, _>(col)?.unwrap_or_default())
}

fn sweep_from(row: &PgRow) -> Result<SweepRecord> {
    Ok(SweepRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        file: row.try_get("file")?,
        profile: row.try_get("profile")?,
        kind: row.try_get("kind")?,
        spec: json_col(row, "spec_json")?.unwrap_or(Json::Null),
        created_at: opt_text(row, "created_at")?,
        updated_at: opt_text(row, "updated_at")?,
    })
}

fn metric_from(row: &PgRow) -> Result<MetricRecord> {
    Ok(MetricRecord {
        trial_id: row.try_get("trial_id")?,
        step: row.try_get("step")?,
        epoch: row.try_get::<Option<f64>, _>("epoch")?.unwrap_or(0.0),
        split: row.try_get("split")?,
        loss: row.try_get::<Option<f64>, _>("loss")?.unwrap_or(f64::NAN),
        ppl: row.try_get::<Option<f64>, _>("ppl")?.unwrap_or(f64::NAN),
        tokens_seen: row.try_get::<Option<i64>, _>("tokens_seen")?.unwrap_or(0),
        lr: row.try_get::<Option<f64>, _>("lr")?.unwrap_or(0.0),
        tokens_per_s: row
            .try_get::<Option<f64>, _>("tokens_per_s")?
            .unwrap_or(0.0),
        created_at: opt_text(row, "created_at")?,
    })
}

/// The URL with its password replaced by `***` (for error messages).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, tail) = match rest.split_once('@') {
        Some(x) => x,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{tail}"),
        None => url.to_string(),
    }
}

/// `url` with its database name replaced by `db` (query parameters kept).
pub fn with_database(url: &str, db: &str) -> Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| anyhow::anyhow!("{}: not a postgres:// URL", redact(url)))?;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    let host = rest.split_once('/').map(|(h, _)| h).unwrap_or(rest);
    Ok(format!("{scheme}://{host}/{db}{query}"))
}

fn bad_connection(url: &str, e: impl std::fmt::Display) -> anyhow::Error {
    crate::cli::UsageError(format!(
        "--db {}: cannot use the PostgreSQL ledger: {e}; fix: check that the server is running and \
         reachable from this node, and the user, password and database name in the URL \
         (postgres://USER:PASSWORD@HOST:PORT/DB)",
        redact(url)
    ))
    .into()
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sweep-store")
        .enable_all()
        .build()
        .context("starting the ledger's runtime")
}

fn options(url: &str) -> Result<PgConnectOptions> {
    PgConnectOptions::from_str(url).map_err(|e| bad_connection(url, e))
}

/// Create (or empty, by dropping and re-creating) database `name` on the server of `url` and
/// return a URL for it. For tests and benchmarks that need a scratch ledger; the URL's role
/// needs `CREATEDB`.
pub fn scratch_database(url: &str, name: &str) -> Result<String> {
    anyhow::ensure!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "scratch database name {name:?}: use letters, digits and _"
    );
    let rt = runtime()?;
    rt.block_on(async {
        let mut conn = options(url)?
            .connect()
            .await
            .map_err(|e| bad_connection(url, e))?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .with_context(|| format!("dropping scratch database {name}"))?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .with_context(|| {
                format!("creating scratch database {name} (the role needs CREATEDB)")
            })?;
        Ok::<_, anyhow::Error>(())
    })?;
    with_database(url, name)
}

impl PostgresStore {
    pub fn open(url: &str) -> Result<Self> {
        let rt = runtime()?;
        let opts = options(url)?;
        // One direct connection first: a pool would retry a refused connection or a wrong password
        // until its timeout and then report only "pool timed out".
        rt.block_on(async {
            match tokio::time::timeout(Duration::from_secs(20), opts.connect()).await {
                Ok(Ok(conn)) => conn.close().await.map_err(|e| bad_connection(url, e)),
                Ok(Err(e)) => Err(bad_connection(url, e)),
                Err(_) => Err(bad_connection(url, "no answer within 20 s")),
            }
        })?;
        let pool = {
            let _enter = rt.enter();
            PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(60))
                .connect_lazy_with(opts)
        };
        // sqlx serialises concurrent migrations with an advisory lock.
        rt.block_on(sqlx::migrate!("migrations/postgres").run(&pool))
            .with_context(|| format!("migrating the ledger {}", redact(url)))?;
        Ok(Self { pool, rt })
    }

    fn trial_where(&self, cond: &str, bind: Bind<'_>) -> Result<Vec<TrialRecord>> {
        let sql = format!("SELECT {TRIAL_COLS} FROM trials t WHERE {cond} ORDER BY t.id");
        let q = sqlx::query(&sql);
        let q = match bind {
            Bind::Text(s) => q.bind(s.to_string()),
            Bind::Id(i) => q.bind(i),
        };
        let rows = self.rt.block_on(q.fetch_all(&self.pool))?;
        rows.iter().map(trial_from).collect()
    }

    /// Claim the first claimable trial (`pending` or `interrupted`, by position) of a sweep, skipping
    /// rows another worker is claiming right now; `None` when nothing is left.
    pub fn claim_next(
        &self,
        sweep_id: i64,
        worker: &str,
        device: &str,
    ) -> Result<Option<TrialRecord>> {
        let sql = format!(
            "UPDATE trials t SET {CLAIM_SET}
             WHERE t.id = (SELECT t2.id FROM trials t2 JOIN sweep_trials st ON st.trial_id = t2.id
                           WHERE st.sweep_id = $4 AND t2.state IN ('pending', 'interrupted')
                           ORDER BY st.position LIMIT 1 FOR UPDATE OF t2 SKIP LOCKED)
               AND t.state IN ('pending', 'interrupted')
             RETURNING {TRIAL_COLS}"
        );
        let row = self.rt.block_on(
            sqlx::query(&sql)
                .bind(worker)
                .bind(device)
                .bind(now())
                .bind(sweep_id)
                .fetch_optional(&self.pool),
        )?;
        row.as_ref().map(trial_from).transpose()
    }
}

enum Bind<'a> {
    Text(&'a str),
    Id(i64),
}

impl Store for PostgresStore {
    fn record_sweep(&self, sweep: &NewSweep, trials: &[NewTrial]) -> Result<RecordedSweep> {
        self.rt.block_on(async {
            let now = now();
            let mut tx = self.pool.begin().await?;
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
        Ok(self.trial_where("t.id = $1", Bind::Id(id))?.pop())
    }

    fn trial_by_hash(&self, hash: &str) -> Result<Option<TrialRecord>> {
        Ok(self.trial_where("t.hash = $1", Bind::Text(hash))?.pop())
    }

    fn trials_in_state(&self, state: TrialState) -> Result<Vec<TrialRecord>> {
        self.trial_where("t.state = $1", Bind::Text(state.as_str()))
    }

    fn claim_trial(&self, id: i64, worker: &str, device: &str) -> Result<Option<TrialRecord>> {
        let sql = format!(
            "UPDATE trials t SET {CLAIM_SET}
             WHERE t.id = $4 AND t.state IN ('pending', 'interrupted', 'failed')
             RETURNING {TRIAL_COLS}"
        );
        let row = self.rt.block_on(
            sqlx::query(&sql)
                .bind(worker)
                .bind(device)
                .bind(now())
                .bind(id)
                .fetch_optional(&self.pool),
        )?;
        row.as_ref().map(trial_from).transpose()
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
        let empty = TrialResults::default();
        let (results, artifact_dir, error, exit_status) = match outcome {
            Outcome::Completed {
                results,
                artifact_dir,
            } => (results, artifact_dir.clone(), None, Some(0i64)),
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
                .bind(now())
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
            let mut tx = self.pool.begin().await?;
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
        let col = |f: &dyn Fn(&NewMetric) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
        let n = self
            .rt
            .block_on(
                sqlx::query(
                    "INSERT INTO metrics (trial_id, step, epoch, split, loss, ppl, tokens_seen, lr,
                       tokens_per_s, created_at)
                     SELECT $1, u.step, u.epoch, u.split, u.loss, u.ppl, u.tokens_seen, u.lr,
                       u.tokens_per_s, $10
                     FROM UNNEST($2::BIGINT[], $3::DOUBLE PRECISION[], $4::TEXT[],
                       $5::DOUBLE PRECISION[], $6::DOUBLE PRECISION[], $7::BIGINT[],
                       $8::DOUBLE PRECISION[], $9::DOUBLE PRECISION[])
                       AS u(step, epoch, split, loss, ppl, tokens_seen, lr, tokens_per_s)
                     ON CONFLICT (trial_id, split, step) DO NOTHING",
                )
                .bind(trial_id)
                .bind(rows.iter().map(|r| r.step).collect::<Vec<i64>>())
                .bind(col(&|r| r.epoch))
                .bind(
                    rows.iter()
                        .map(|r| r.split.clone())
                        .collect::<Vec<String>>(),
                )
                .bind(col(&|r| r.loss))
                .bind(col(&|r| r.ppl))
                .bind(rows.iter().map(|r| r.tokens_seen).collect::<Vec<i64>>())
                .bind(col(&|r| r.lr))
                .bind(col(&|r| r.tokens_per_s))
                .bind(now())
                .execute(&self.pool),
            )?
            .rows_affected();
        Ok(n)
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
                        title: opt_text(r, "title")?,
                        reference: r.try_get("reference")?,
                        text: opt_text(r, "text")?,
                        params: json_col(r, "params_json")?.unwrap_or(Json::Null),
                        seed: r.try_get("seed")?,
                        uses_acronym: r.try_get::<Option<i64>, _>("uses_acronym")?.map(|v| v != 0),
                    },
                    created_at: opt_text(r, "created_at")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_helpers() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(
            with_database("postgres://u:p@h:5432/db?sslmode=disable", "x").unwrap(),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h", "x").unwrap(),
            "postgres://h/x"
        );
    }

    #[test]
    fn claim_next_skips_locked_and_drains_once() {
        let Ok(url) = std::env::var("SWEEP_TEST_PG_URL") else {
            eprintln!("SKIP claim_next_skips_locked_and_drains_once: SWEEP_TEST_PG_URL is not set");
            return;
        };
        let db = scratch_database(&url, "sweep_claim_next_unit").unwrap();
        let s = std::sync::Arc::new(PostgresStore::open(&db).unwrap());
        let trials: Vec<NewTrial> = (0..40)
            .map(|i| NewTrial {
                hash: format!("h{i:03}"),
                config: serde_json::json!({}),
                label: serde_json::json!({"i": i}),
                is_baseline: false,
            })
            .collect();
        let sweep = NewSweep {
            name: "cn".into(),
            title: None,
            description: None,
            file: None,
            profile: None,
            kind: "ablation".into(),
            spec: serde_json::json!({}),
        };
        let r = s.record_sweep(&sweep, &trials).unwrap();
        let claimed: Vec<i64> = std::thread::scope(|scope| {
            let hs: Vec<_> = (0..4)
                .map(|w| {
                    let s = s.clone();
                    scope.spawn(move || {
                        let mut got = Vec::new();
                        while let Some(t) =
                            s.claim_next(r.sweep_id, &format!("w{w}"), "cpu").unwrap()
                        {
                            got.push(t.id);
                        }
                        got
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let mut sorted = claimed.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            40,
            "every trial claimed exactly once: {claimed:?}"
        );
        assert_eq!(claimed.len(), 40);
        assert!(s
            .trials_in_state(TrialState::Running)
            .unwrap()
            .iter()
            .all(|t| t.attempts == 1));
    }
}
