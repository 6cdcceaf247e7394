//! The PostgreSQL implementation of [`Store`] (sqlx): one shared ledger for workers on many nodes.
//!
//! Same tables and SQL as SQLite (`migrations/postgres` mirrors `migrations/sqlite` with Postgres
//! types). Claims are conditional `UPDATE`s: under READ COMMITTED a second concurrent claim waits
//! for the first's row lock, re-checks `state` and matches nothing, so exactly one wins.
//! [`PostgresStore::claim_next`] picks the next claimable trial of a sweep with
//! `FOR UPDATE SKIP LOCKED`, so concurrent workers never queue on the same row. Metric batches
//! are one `INSERT ... SELECT FROM UNNEST(...)` statement (one round trip per batch).

use super::sql::{
    claimable_states, runtime, Backend, Decoders, SqlStore, CLAIM_SET, METRIC_INSERT, TRIAL_COLS,
};
use super::*;
use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgQueryResult};
use sqlx::{ConnectOptions, Connection, Postgres};
use std::str::FromStr;
use std::time::Duration;

/// A PostgreSQL ledger. Owns a small tokio runtime so that callers stay synchronous.
pub type PostgresStore = SqlStore<Postgres>;

/// The statement that makes a session's transactions read-only (reports, `sweep query`).
pub const READ_ONLY_SESSION: &str = "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY";

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
    crate::error::UsageError(format!(
        "--db {}: cannot use the PostgreSQL ledger: {e}; fix: check that the server is running and \
         reachable from this node, and the user, password and database name in the URL \
         (postgres://USER:PASSWORD@HOST:PORT/DB)",
        redact(url)
    ))
    .into()
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

impl SqlStore<Postgres> {
    pub fn open(url: &str) -> Result<Self> {
        let s = Self::connect(url, false)?;
        // sqlx serialises concurrent migrations with an advisory lock.
        s.rt.block_on(sqlx::migrate!("migrations/postgres").run(&s.pool))
            .with_context(|| format!("migrating the ledger {}", redact(url)))?;
        Ok(s)
    }

    /// The ledger at `url` in read-only transactions; no migration runs.
    pub fn open_read_only(url: &str) -> Result<Self> {
        Self::connect(url, true)
    }

    fn connect(url: &str, read_only: bool) -> Result<Self> {
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
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        if read_only {
                            sqlx::query(READ_ONLY_SESSION).execute(conn).await?;
                        }
                        Ok(())
                    })
                })
                .connect_lazy_with(opts)
        };
        Ok(Self {
            pool,
            rt,
            url: url.to_string(),
        })
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
        row.as_ref().map(Decoders::trial).transpose()
    }
}

impl Backend for Postgres {
    const BEGIN: Option<&'static str> = None;

    fn rows_affected(r: &PgQueryResult) -> u64 {
        r.rows_affected()
    }

    /// One statement: the conditional `UPDATE` returns the claimed row.
    fn claim(
        s: &PostgresStore,
        id: i64,
        worker: &str,
        device: &str,
    ) -> Result<Option<TrialRecord>> {
        let sql = format!(
            "UPDATE trials t SET {CLAIM_SET} WHERE t.id = $4 AND t.state IN {}
             RETURNING {TRIAL_COLS}",
            claimable_states()
        );
        let row = s.rt.block_on(
            sqlx::query(&sql)
                .bind(worker)
                .bind(device)
                .bind(now())
                .bind(id)
                .fetch_optional(&s.pool),
        )?;
        row.as_ref().map(Decoders::trial).transpose()
    }

    /// One `INSERT ... SELECT FROM UNNEST(...)` statement: one round trip per batch.
    fn insert_metrics(s: &PostgresStore, trial_id: i64, rows: &[NewMetric]) -> Result<u64> {
        let col = |f: &dyn Fn(&NewMetric) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
        let sql = format!(
            "{METRIC_INSERT}
             SELECT $1, u.step, u.epoch, u.split, u.loss, u.ppl, u.tokens_seen, u.lr,
               u.tokens_per_s, $10
             FROM UNNEST($2::BIGINT[], $3::DOUBLE PRECISION[], $4::TEXT[],
               $5::DOUBLE PRECISION[], $6::DOUBLE PRECISION[], $7::BIGINT[],
               $8::DOUBLE PRECISION[], $9::DOUBLE PRECISION[])
               AS u(step, epoch, split, loss, ppl, tokens_seen, lr, tokens_per_s)
             ON CONFLICT (trial_id, split, step) DO NOTHING"
        );
        let n =
            s.rt.block_on(
                sqlx::query(&sql)
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
                    .execute(&s.pool),
            )?
            .rows_affected();
        Ok(n)
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
    #[ignore = "needs PostgreSQL: SWEEP_TEST_PG_URL (.ci/run starts it)"]
    fn claim_next_skips_locked_and_drains_once() {
        let url = std::env::var("SWEEP_TEST_PG_URL")
            .expect("SWEEP_TEST_PG_URL is not set: this test needs PostgreSQL");
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
