//! The [`Store`] implementation shared by SQLite and PostgreSQL: one generic `SqlStore<DB>` over
//! `sqlx::Database` holding the portable SQL (`$N` placeholders, `ON CONFLICT`, `RETURNING`) and the
//! row decoding; each backend adds only what differs through [`Backend`].

use super::*;
use anyhow::Context;
use futures_util::TryStreamExt;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};
use std::collections::BTreeMap;

/// A ledger on database `DB`. Owns a small tokio runtime so that callers stay synchronous.
pub struct SqlStore<DB: Database> {
    pub(super) pool: Pool<DB>,
    pub(super) rt: tokio::runtime::Runtime,
    pub(super) url: String,
}

/// Closes every connection before the runtime goes, one after another. A connection just used
/// is still on its way back to the pool (a task on the runtime), and sqlx's `close` can return
/// before closing one that arrives late: dropped with the runtime, those close later on their
/// own threads, at once, and SQLite folds the WAL back and deletes `-wal`/`-shm` only on a close
/// that finds no other connection, which simultaneous closes can all miss (CI's torn-checkpoint
/// test waited 60 s for a ledger that stayed in three files). So: wait until every connection is
/// idle (2 s at most), then close.
impl<DB: Database> Drop for SqlStore<DB> {
    fn drop(&mut self) {
        let close = || {
            self.rt.block_on(async {
                let t0 = std::time::Instant::now();
                while self.pool.num_idle() < self.pool.size() as usize
                    && t0.elapsed() < std::time::Duration::from_secs(2)
                {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                self.pool.close().await
            })
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            // `block_on` may not run on a runtime's thread (a dashboard handler dropping a store).
            std::thread::scope(|s| {
                s.spawn(close);
            });
        } else {
            close();
        }
    }
}

/// One (trial, split) series of metric rows, as [`Reader::sweep_curves`] thins it.
struct SeriesShape {
    trial_id: i64,
    first: i64,
    /// The step after `first` (`first` when the series has one row).
    second: i64,
    last: i64,
}

impl SeriesShape {
    /// The series' first interval (1 for a one-row series).
    fn interval(&self) -> i64 {
        (self.second - self.first).max(1)
    }

    /// Its rows if it were logged at its first interval throughout: exact for what the trainer
    /// writes (its final step aside), and what bounds the rows [`Reader::sweep_curves`] keeps.
    fn grid_rows(&self) -> usize {
        ((self.last - self.first) / self.interval() + 1) as usize
    }
}

/// What differs between the backends.
pub trait Backend: Database + Sized {
    /// The statement that opens a write transaction (`None`: the driver's plain `BEGIN`).
    const BEGIN: Option<&'static str>;
    fn rows_affected(r: &Self::QueryResult) -> u64;
    /// [`Store::claim_trial`].
    fn claim(
        s: &SqlStore<Self>,
        id: i64,
        worker: &str,
        device: &str,
    ) -> Result<Option<TrialRecord>>;
    /// [`Store::insert_metrics`] for a non-empty batch.
    fn insert_metrics(s: &SqlStore<Self>, trial_id: i64, rows: &[NewMetric]) -> Result<u64>;
}

pub(super) const TRIAL_COLS: &str = "t.id, t.hash, t.config_json, t.state, t.attempts, t.error, \
    t.exit_status, t.device, t.worker, t.created_at, t.started_at, t.finished_at, t.heartbeat_at, \
    t.wall_seconds, t.train_seconds, t.tokens_per_s, t.peak_rss_bytes, t.train_loss, t.valid_loss, \
    t.test_loss, t.train_ppl, t.valid_ppl, t.test_ppl, t.valid_loss_fixed, t.artifact_dir, t.env_json";

/// The columns [`Decoders::metric`] reads, in its order (table alias `m`).
pub(super) const METRIC_COLS: &str = "m.trial_id, m.step, m.epoch, m.split, m.loss, m.ppl, \
    m.tokens_seen, m.lr, m.tokens_per_s, m.created_at";

/// The `SET` list of a claim; binds `$1` worker, `$2` device, `$3` now.
pub(super) const CLAIM_SET: &str = "state = 'running', attempts = attempts + 1, worker = $1, \
    device = $2, started_at = $3, heartbeat_at = $3, finished_at = NULL, error = NULL, \
    exit_status = NULL";

/// `('pending', 'interrupted', 'failed')`: the states [`TrialState::is_claimable`] accepts, as an
/// SQL list for `state IN ...`.
pub(super) fn claimable_states() -> String {
    let quoted: Vec<String> = TrialState::ALL
        .into_iter()
        .filter(|s| s.is_claimable())
        .map(|s| format!("'{s}'"))
        .collect();
    format!("({})", quoted.join(", "))
}

/// The `INSERT` column list of `metrics`.
pub(super) const METRIC_INSERT: &str = "INSERT INTO metrics (trial_id, step, epoch, split, loss, \
    ppl, tokens_seen, lr, tokens_per_s, created_at)";

/// A small multi-threaded runtime for one store.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sweep-store")
        .enable_all()
        .build()
        .context("starting the ledger's runtime")
}

fn opt_text<R: Row>(row: &R, col: &str) -> Result<String>
where
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(row.try_get::<Option<String>, _>(col)?.unwrap_or_default())
}

fn json_col<R: Row>(row: &R, col: &str) -> Result<Option<Json>>
where
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| serde_json::from_str(&s).with_context(|| format!("ledger column {col} is not JSON")))
        .transpose()
}

/// Decoders for the rows of the ledger's tables, written once for every backend.
pub(super) trait Decoders {
    fn trial(&self) -> Result<TrialRecord>;
    fn sweep(&self) -> Result<SweepRecord>;
    fn metric(&self) -> Result<MetricRecord>;
    fn sample(&self) -> Result<SampleRecord>;
    fn sweep_trial(&self) -> Result<SweepTrial>;
}

impl<R: Row> Decoders for R
where
    for<'a> &'a str: ColumnIndex<R>,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
{
    fn trial(&self) -> Result<TrialRecord> {
        let row = self;
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

    fn sweep(&self) -> Result<SweepRecord> {
        let row = self;
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

    /// A row of [`METRIC_COLS`] (by position: the report reads hundreds of thousands).
    fn metric(&self) -> Result<MetricRecord> {
        let row = self;
        Ok(MetricRecord {
            trial_id: row.try_get(0)?,
            step: row.try_get(1)?,
            epoch: row.try_get::<Option<f64>, _>(2)?.unwrap_or(0.0),
            split: row.try_get(3)?,
            loss: row.try_get::<Option<f64>, _>(4)?.unwrap_or(f64::NAN),
            ppl: row.try_get::<Option<f64>, _>(5)?.unwrap_or(f64::NAN),
            tokens_seen: row.try_get::<Option<i64>, _>(6)?.unwrap_or(0),
            lr: row.try_get::<Option<f64>, _>(7)?.unwrap_or(0.0),
            tokens_per_s: row.try_get::<Option<f64>, _>(8)?.unwrap_or(0.0),
            created_at: row.try_get::<Option<String>, _>(9)?.unwrap_or_default(),
        })
    }

    fn sample(&self) -> Result<SampleRecord> {
        let r = self;
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
    }

    fn sweep_trial(&self) -> Result<SweepTrial> {
        let r = self;
        Ok(SweepTrial {
            sweep_id: r.try_get("sweep_id")?,
            position: r.try_get("position")?,
            label: json_col(r, "label_json")?.unwrap_or(Json::Null),
            is_baseline: r.try_get::<i64, _>("is_baseline")? != 0,
            trial: r.trial()?,
        })
    }
}

impl<DB: Backend> SqlStore<DB> {
    /// Open a write transaction with the backend's `BEGIN`.
    pub(super) async fn begin(&self) -> sqlx::Result<sqlx::Transaction<'static, DB>> {
        match DB::BEGIN {
            Some(begin) => self.pool.begin_with(begin).await,
            None => self.pool.begin().await,
        }
    }
}

/// `impl … SqlStore<DB>` with the sqlx bounds that the portable SQL needs, spelled out once.
macro_rules! portable {
    (impl $tr:ident for $body:tt) => {
        portable!(@ [$tr for] $body);
    };
    (impl $body:tt) => {
        portable!(@ [] $body);
    };
    (@ [$($head:tt)*] $body:tt) => {
        impl<DB> $($head)* SqlStore<DB>
        where
            DB: Backend + sqlx::database::HasStatementCache,
            for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
            for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
            for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
            for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
            for<'q> f64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
            for<'q> Option<String>: Encode<'q, DB>,
            for<'q> Option<i64>: Encode<'q, DB>,
            for<'q> Option<f64>: Encode<'q, DB>,
            for<'a> &'a str: ColumnIndex<DB::Row>,
            usize: ColumnIndex<DB::Row>,
        $body
    };
}

portable!(impl Reader for {
    fn url(&self) -> &str {
        &self.url
    }

    fn sweeps(&self) -> Result<Vec<SweepRecord>> {
        let rows = self
            .rt
            .block_on(sqlx::query("SELECT * FROM sweeps ORDER BY name").fetch_all(&self.pool))?;
        rows.iter().map(Decoders::sweep).collect()
    }

    fn sweep_by_name(&self, name: &str) -> Result<Option<SweepRecord>> {
        let row = self.rt.block_on(
            sqlx::query("SELECT * FROM sweeps WHERE name = $1")
                .bind(name.to_string())
                .fetch_optional(&self.pool),
        )?;
        row.as_ref().map(Decoders::sweep).transpose()
    }

    fn sweep_trials(&self, sweep_id: i64) -> Result<Vec<SweepTrial>> {
        let sql = format!(
            "SELECT {TRIAL_COLS}, st.sweep_id, st.position, st.label_json, st.is_baseline
             FROM sweep_trials st JOIN trials t ON t.id = st.trial_id
             WHERE st.sweep_id = $1 ORDER BY st.position"
        );
        self.rows_by_id(&sql, sweep_id, Decoders::sweep_trial)
    }

    fn trial(&self, id: i64) -> Result<Option<TrialRecord>> {
        let sql = format!("SELECT {TRIAL_COLS} FROM trials t WHERE t.id = $1 ORDER BY t.id");
        Ok(self.rows_by_id(&sql, id, Decoders::trial)?.pop())
    }

    fn trial_by_hash(&self, hash: &str) -> Result<Option<TrialRecord>> {
        Ok(self.trials_where("t.hash = $1", hash)?.pop())
    }

    fn trials_in_state(&self, state: TrialState) -> Result<Vec<TrialRecord>> {
        self.trials_where("t.state = $1", state.as_str())
    }

    fn metrics(&self, trial_id: i64) -> Result<Vec<MetricRecord>> {
        let sql = format!(
            "SELECT {METRIC_COLS} FROM metrics m WHERE m.trial_id = $1 ORDER BY m.split, m.step"
        );
        self.rows_by_id(&sql, trial_id, Decoders::metric)
    }

    fn sweep_metrics(&self, sweep_id: i64) -> Result<Vec<MetricRecord>> {
        let sql = format!(
            "SELECT {METRIC_COLS} FROM metrics m JOIN sweep_trials st ON st.trial_id = m.trial_id
             WHERE st.sweep_id = $1 ORDER BY m.trial_id, m.split, m.step"
        );
        self.rows_by_id(&sql, sweep_id, Decoders::metric)
    }

    fn sweep_curves(&self, sweep_id: i64, budget: CurveBudget) -> Result<Vec<MetricRecord>> {
        let mut splits: BTreeMap<String, Vec<SeriesShape>> = BTreeMap::new();
        for (split, shape) in self.series_shapes(sweep_id)? {
            splits.entry(split).or_default().push(shape);
        }
        let mut out = Vec::new();
        for (split, shapes) in splits {
            let longest = shapes.iter().map(SeriesShape::grid_rows).max().unwrap_or(0);
            let total = shapes.iter().map(SeriesShape::grid_rows).sum();
            let stride = budget.stride(longest, total);
            if stride == 1 {
                out.extend(self.sweep_split_metrics(sweep_id, &split)?);
                continue;
            }
            // One parameter row per series (integers sweep computed, written inline): a stride
            // over steps selects the same rows as one over ranks without a window function
            // (seconds over a million rows in SQLite). `CROSS JOIN` keeps SQLite's loop order
            // series -> unique index; left to itself it built an automatic index over the whole
            // table first (1.4 s instead of 0.4 s on a million rows).
            let params: Vec<String> = shapes
                .iter()
                .map(|s| {
                    let width = s.interval() * stride as i64;
                    format!("({}, {}, {width}, {})", s.trial_id, s.first, s.last)
                })
                .collect();
            let sql = format!(
                "WITH p (tid, lo, w, hi) AS (VALUES {})
                 SELECT {METRIC_COLS} FROM p CROSS JOIN metrics m
                 WHERE m.trial_id = p.tid AND m.split = $1
                   AND ((m.step - p.lo) % p.w = 0 OR m.step = p.hi)",
                params.join(", ")
            );
            self.rt.block_on(async {
                let mut rows = sqlx::query(&sql)
                    .persistent(false)
                    .bind(split.clone())
                    .fetch(&self.pool);
                while let Some(row) = rows.try_next().await? {
                    out.push(Decoders::metric(&row)?);
                }
                anyhow::Ok(())
            })?;
        }
        // The contract's order: trial, split, step.
        out.sort_by(|a, b| (a.trial_id, &a.split, a.step).cmp(&(b.trial_id, &b.split, b.step)));
        Ok(out)
    }

    fn sweep_split_metrics(&self, sweep_id: i64, split: &str) -> Result<Vec<MetricRecord>> {
        let sql = format!(
            "SELECT {METRIC_COLS} FROM metrics m JOIN sweep_trials st ON st.trial_id = m.trial_id
             WHERE st.sweep_id = $1 AND m.split = $2 ORDER BY m.trial_id, m.step"
        );
        self.rt.block_on(async {
            let mut rows = sqlx::query(&sql)
                .bind(sweep_id)
                .bind(split.to_string())
                .fetch(&self.pool);
            let mut out = Vec::new();
            while let Some(row) = rows.try_next().await? {
                out.push(Decoders::metric(&row)?);
            }
            Ok(out)
        })
    }

    fn last_metric(&self, trial_id: i64, split: &str) -> Result<Option<MetricRecord>> {
        let sql = format!(
            "SELECT {METRIC_COLS} FROM metrics m WHERE m.trial_id = $1 AND m.split = $2
             ORDER BY m.step DESC LIMIT 1"
        );
        let row = self.rt.block_on(
            sqlx::query(&sql)
                .bind(trial_id)
                .bind(split.to_string())
                .fetch_optional(&self.pool),
        )?;
        row.as_ref().map(Decoders::metric).transpose()
    }

    fn samples(&self, trial_id: i64) -> Result<Vec<SampleRecord>> {
        let sql = "SELECT * FROM samples WHERE trial_id = $1 ORDER BY id";
        self.rows_by_id(sql, trial_id, Decoders::sample)
    }

    fn sweep_samples(&self, sweep_id: i64) -> Result<Vec<SampleRecord>> {
        let sql = "SELECT s.* FROM samples s JOIN sweep_trials st ON st.trial_id = s.trial_id
                   WHERE st.sweep_id = $1 ORDER BY s.trial_id, s.id";
        self.rows_by_id(sql, sweep_id, Decoders::sample)
    }
});

portable!(impl Store for {
    fn record_sweep_row(&self, sweep: &NewSweep) -> Result<i64> {
        self.rt.block_on(async {
            let mut tx = self.begin().await?;
            let id = Self::upsert_sweep(&mut tx, sweep, &now()).await?;
            tx.commit().await?;
            Ok(id)
        })
    }

    fn append_trial(&self, sweep_id: i64, position: i64, t: &NewTrial) -> Result<Option<i64>> {
        self.rt.block_on(async {
            let now = now();
            let mut tx = self.begin().await?;
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sweep_trials WHERE sweep_id = $1")
                .bind(sweep_id)
                .fetch_one(&mut *tx)
                .await?;
            if count != position {
                return Ok(None);
            }
            let id = Self::insert_trial(&mut tx, t, &now).await?.0;
            // The unique (sweep_id, position) index decides between concurrent appends on
            // PostgreSQL (SQLite's write transactions are serial already).
            let added = DB::rows_affected(
                &sqlx::query(
                    "INSERT INTO sweep_trials (sweep_id, trial_id, position, label_json, is_baseline)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(sweep_id)
                .bind(id)
                .bind(position)
                .bind(t.label.to_string())
                .bind(t.is_baseline as i64)
                .execute(&mut *tx)
                .await?,
            );
            if added == 0 {
                return Ok(None);
            }
            tx.commit().await?;
            Ok(Some(id))
        })
    }

    fn record_sweep(&self, sweep: &NewSweep, trials: &[NewTrial]) -> Result<RecordedSweep> {
        self.rt.block_on(async {
            let now = now();
            let mut tx = self.begin().await?;
            let sweep_id = Self::upsert_sweep(&mut tx, sweep, &now).await?;
            sqlx::query("DELETE FROM sweep_trials WHERE sweep_id = $1")
                .bind(sweep_id)
                .execute(&mut *tx)
                .await?;
            let mut trial_ids = Vec::with_capacity(trials.len());
            let mut created = 0;
            for (pos, t) in trials.iter().enumerate() {
                let (id, inserted) = Self::insert_trial(&mut tx, t, &now).await?;
                created += inserted as usize;
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

    fn claim_trial(&self, id: i64, worker: &str, device: &str) -> Result<Option<TrialRecord>> {
        DB::claim(self, id, worker, device)
    }

    fn heartbeat(&self, id: i64, worker: &str) -> Result<bool> {
        let r = self.rt.block_on(
            sqlx::query(
                "UPDATE trials SET heartbeat_at = $1
                 WHERE id = $2 AND state = 'running' AND worker = $3",
            )
            .bind(now())
            .bind(id)
            .bind(worker.to_string())
            .execute(&self.pool),
        )?;
        Ok(DB::rows_affected(&r) > 0)
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
            Outcome::Pruned { error } => (&empty, None, Some(error.clone()), None),
        };
        let r = self.rt.block_on(
            sqlx::query(
                "UPDATE trials SET state = $1, finished_at = $2, error = $3, exit_status = $4,
                   wall_seconds = $5, train_seconds = $6, tokens_per_s = $7, peak_rss_bytes = $8,
                   train_loss = $9, valid_loss = $10, test_loss = $11, train_ppl = $12,
                   valid_ppl = $13, test_ppl = $14, valid_loss_fixed = $15,
                   artifact_dir = COALESCE($16, artifact_dir)
                 WHERE id = $17 AND state = 'running' AND worker = $18",
            )
            .bind(outcome.state().as_str().to_string())
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
            .bind(worker.to_string())
            .execute(&self.pool),
        )?;
        Ok(DB::rows_affected(&r) > 0)
    }

    fn reset_trial(&self, id: i64) -> Result<bool> {
        self.rt.block_on(async {
            let mut tx = self.begin().await?;
            let n = DB::rows_affected(
                &sqlx::query(
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
                .await?,
            );
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
        DB::insert_metrics(self, trial_id, rows)
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
});

portable!(impl {
    /// Insert or update a sweep's row; its id.
    async fn upsert_sweep(
        tx: &mut sqlx::Transaction<'static, DB>,
        sweep: &NewSweep,
        now: &str,
    ) -> Result<i64> {
        Ok(sqlx::query_scalar(
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
        .bind(now.to_string())
        .fetch_one(&mut **tx)
        .await?)
    }

    /// Insert a trial unless its hash is known; its id and whether it was new.
    async fn insert_trial(
        tx: &mut sqlx::Transaction<'static, DB>,
        t: &NewTrial,
        now: &str,
    ) -> Result<(i64, bool)> {
        let inserted = DB::rows_affected(
            &sqlx::query(
                "INSERT INTO trials (hash, config_json, state, attempts, created_at)
                 VALUES ($1, $2, 'pending', 0, $3) ON CONFLICT (hash) DO NOTHING",
            )
            .bind(&t.hash)
            .bind(t.config.to_string())
            .bind(now.to_string())
            .execute(&mut **tx)
            .await?,
        );
        let id: i64 = sqlx::query_scalar("SELECT id FROM trials WHERE hash = $1")
            .bind(&t.hash)
            .fetch_one(&mut **tx)
            .await?;
        Ok((id, inserted > 0))
    }

    /// Each (trial, split) series of a sweep: its first, second and last step. Index seeks
    /// only (the splits of a trial by a recursive skip over the unique index): counting the rows
    /// instead read every one, 0.6 of the report's seconds on a million rows.
    fn series_shapes(&self, sweep_id: i64) -> Result<Vec<(String, SeriesShape)>> {
        let rows = self.rt.block_on(
            sqlx::query(
                "WITH RECURSIVE s (tid, split) AS (
                   SELECT st.trial_id,
                          (SELECT MIN(x.split) FROM metrics x WHERE x.trial_id = st.trial_id)
                   FROM sweep_trials st WHERE st.sweep_id = $1
                   UNION ALL
                   SELECT s.tid, (SELECT MIN(x.split) FROM metrics x
                                  WHERE x.trial_id = s.tid AND x.split > s.split)
                   FROM s WHERE s.split IS NOT NULL
                 ), b AS (
                   SELECT s.tid, s.split, (SELECT MIN(x.step) FROM metrics x
                                           WHERE x.trial_id = s.tid AND x.split = s.split) AS lo
                   FROM s WHERE s.split IS NOT NULL
                 )
                 SELECT b.tid, b.split, b.lo,
                        (SELECT MIN(x.step) FROM metrics x
                         WHERE x.trial_id = b.tid AND x.split = b.split AND x.step > b.lo),
                        (SELECT MAX(x.step) FROM metrics x
                         WHERE x.trial_id = b.tid AND x.split = b.split)
                 FROM b",
            )
            .bind(sweep_id)
            .fetch_all(&self.pool),
        )?;
        rows.iter()
            .map(|r| {
                let first = r.try_get::<i64, _>(2usize)?;
                let shape = SeriesShape {
                    trial_id: r.try_get(0usize)?,
                    first,
                    second: r.try_get::<Option<i64>, _>(3usize)?.unwrap_or(first),
                    last: r.try_get(4usize)?,
                };
                Ok((r.try_get::<String, _>(1usize)?, shape))
            })
            .collect()
    }

    /// The rows of `sql`, whose one parameter `$1` is `id`, each decoded as it arrives (a report
    /// reads hundreds of thousands of metric rows: holding them all undecoded costs twice the
    /// memory and time).
    fn rows_by_id<T>(
        &self,
        sql: &str,
        id: i64,
        decode: impl Fn(&DB::Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.rt.block_on(async {
            let mut rows = sqlx::query(sql).bind(id).fetch(&self.pool);
            let mut out = Vec::new();
            while let Some(row) = rows.try_next().await? {
                out.push(decode(&row)?);
            }
            Ok(out)
        })
    }

    /// Trials matching `cond` on one text parameter `$1`, by id.
    fn trials_where(&self, cond: &str, bind: &str) -> Result<Vec<TrialRecord>> {
        let sql = format!("SELECT {TRIAL_COLS} FROM trials t WHERE {cond} ORDER BY t.id");
        let rows = self.rt.block_on(
            sqlx::query(&sql)
                .bind(bind.to_string())
                .fetch_all(&self.pool),
        )?;
        rows.iter().map(Decoders::trial).collect()
    }
});
