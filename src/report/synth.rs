//! Builds synthetic ledgers (deterministic fixtures for tests, large ones for the benchmark).

use anyhow::{Context, Result};
use serde_json::{json, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::SqlitePool;
use std::path::Path;
use std::str::FromStr;

/// One synthetic trial of a sweep.
#[derive(Debug, Clone, Default)]
pub struct SynthTrial {
    pub label: Value,
    pub config: Value,
    pub state: String,
    pub is_baseline: bool,
    /// train_loss, valid_loss, test_loss, train_ppl, valid_ppl, test_ppl
    pub finals: Option<[f64; 6]>,
    pub tokens_per_s: Option<f64>,
    pub wall_seconds: Option<f64>,
    pub peak_rss_bytes: Option<i64>,
    pub device: Option<String>,
    pub error: Option<String>,
    pub env: Option<Value>,
    /// (step, split, loss)
    pub metrics: Vec<(i64, String, f64)>,
    /// (title, reference, text)
    pub samples: Vec<(String, String, String)>,
}

/// A sweep's own columns.
#[derive(Debug, Clone, Default)]
pub struct SynthSweep {
    pub name: String,
    pub title: String,
    pub description: String,
    pub profile: String,
    pub spec: Value,
}

/// Creates (or opens) a SQLite ledger at `path` with the store's migrations applied.
pub async fn create_ledger(path: &Path) -> Result<SqlitePool> {
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .with_context(|| format!("creating {}", path.display()))?;
    sqlx::migrate!("migrations/sqlite").run(&pool).await?;
    Ok(pool)
}

const TS: &str = "2026-01-02T03:04:05.000Z";

/// Inserts a sweep and its trials (hashes derived from the sweep name and position).
pub async fn insert_sweep(
    pool: &SqlitePool,
    sweep: &SynthSweep,
    trials: &[SynthTrial],
) -> Result<i64> {
    let mut tx = pool.begin().await?;
    let sweep_id: i64 = sqlx::query_scalar(
        "INSERT INTO sweeps (name, title, description, file, profile, kind, spec_json, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'ablation', $6, $7, $7) RETURNING id",
    )
    .bind(&sweep.name)
    .bind(&sweep.title)
    .bind(&sweep.description)
    .bind(format!("experiments/{}.toml", sweep.name))
    .bind(&sweep.profile)
    .bind(sweep.spec.to_string())
    .bind(TS)
    .fetch_one(&mut *tx)
    .await?;
    for (pos, t) in trials.iter().enumerate() {
        let f = t.finals;
        let g = |i: usize| f.map(|f| f[i]);
        let trial_id: i64 = sqlx::query_scalar(
            "INSERT INTO trials (hash, config_json, state, attempts, error, device, worker, created_at, \
             started_at, finished_at, wall_seconds, train_seconds, tokens_per_s, peak_rss_bytes, \
             train_loss, valid_loss, test_loss, train_ppl, valid_ppl, test_ppl, env_json) \
             VALUES ($1, $2, $3, 1, $4, $5, 'w1', $6, $6, $6, $7, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             RETURNING id",
        )
        .bind(format!("{}-{pos:04}", sweep.name))
        .bind(t.config.to_string())
        .bind(&t.state)
        .bind(&t.error)
        .bind(&t.device)
        .bind(TS)
        .bind(t.wall_seconds)
        .bind(t.tokens_per_s)
        .bind(t.peak_rss_bytes)
        .bind(g(0))
        .bind(g(1))
        .bind(g(2))
        .bind(g(3))
        .bind(g(4))
        .bind(g(5))
        .bind(t.env.as_ref().map(Value::to_string))
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO sweep_trials (sweep_id, trial_id, position, label_json, is_baseline) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(sweep_id)
        .bind(trial_id)
        .bind(pos as i64)
        .bind(t.label.to_string())
        .bind(t.is_baseline as i64)
        .execute(&mut *tx)
        .await?;
        for (step, split, loss) in &t.metrics {
            sqlx::query(
                "INSERT INTO metrics (trial_id, step, epoch, split, loss, ppl, tokens_seen, lr, tokens_per_s, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 5e-5, 1000.0, $8)",
            )
            .bind(trial_id)
            .bind(step)
            .bind(*step as f64 / 100.0)
            .bind(split)
            .bind(loss)
            .bind(loss.exp())
            .bind(step * 512)
            .bind(TS)
            .execute(&mut *tx)
            .await?;
        }
        for (i, (title, reference, text)) in t.samples.iter().enumerate() {
            sqlx::query(
                "INSERT INTO samples (trial_id, title, reference, text, params_json, seed, uses_acronym, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 0, $7)",
            )
            .bind(trial_id)
            .bind(title)
            .bind(reference)
            .bind(text)
            .bind(json!({"top_k": 50, "max_new_tokens": 200}).to_string())
            .bind(i as i64)
            .bind(TS)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(sweep_id)
}

/// The paper's Table 4 (block size), as `[[reference]]` rows.
pub fn table4_references() -> Value {
    json!([
        {"block_size": 512, "train_loss": 3.0095, "valid_loss": 3.0871, "train_ppl": 20.2781, "valid_ppl": 21.9143},
        {"block_size": 256, "train_loss": 3.0016, "valid_loss": 3.1042, "train_ppl": 20.1196, "valid_ppl": 22.2923},
        {"block_size": 128, "train_loss": 3.3092, "valid_loss": 3.1783, "train_ppl": 20.8875, "valid_ppl": 24.0068},
        {"block_size": 64, "train_loss": 3.1322, "valid_loss": 3.3147, "train_ppl": 22.924, "valid_ppl": 27.5139},
        {"block_size": 32, "train_loss": 3.2962, "valid_loss": 3.5234, "train_ppl": 27.0104, "valid_ppl": 33.8991}
    ])
}

fn tiny_config(block_size: i64, seed: i64) -> Value {
    json!({
        "model": "gpt2-tiny", "init": null, "tokenizer": "bpe-4096",
        "data": {"sources": ["cs.CL.tsv.xz"], "categories": ["cs.CL"], "split": [9.0, 0.5, 0.5]},
        "block_size": block_size, "batch_size": 8, "grad_accum": 1, "learning_rate": 5e-4,
        "weight_decay": 0.0, "epochs": 1, "warmup_steps": 0, "seed": seed, "dropout": 0.1,
        "max_train_tokens": 200000, "max_steps": null, "eval_every": 10, "eval_tokens": 20000,
        "eval_block_size": null
    })
}

/// A deterministic quick-profile block-size sweep: baseline 512 with two seeds, 256/128/64
/// completed, 32 failed (with `error`), loss curves, and samples on the baseline.
/// `hostile` is inserted into the title, the failed trial's error and a sample.
pub fn block_size_fixture(hostile: &str) -> (SynthSweep, Vec<SynthTrial>) {
    let sweep = SynthSweep {
        name: "block_size".into(),
        title: format!("Block size (Table 4){hostile}"),
        description: "A small block size is extremely harmful to the model performance.".into(),
        profile: "quick".into(),
        spec: json!({"axes": ["block_size"], "references": table4_references()}),
    };
    let mut trials = Vec::new();
    let rows: [(i64, i64, f64); 6] = [
        (512, 1, 4.10),
        (512, 2, 4.14),
        (256, 1, 4.21),
        (128, 1, 4.37),
        (64, 1, 4.62),
        (32, 1, f64::NAN),
    ];
    for (i, (bs, seed, valid)) in rows.iter().enumerate() {
        let label = if *bs == 512 {
            json!({"block_size": bs, "seed": seed})
        } else {
            json!({"block_size": bs})
        };
        let failed = valid.is_nan();
        let train = valid - 0.2;
        let metrics = if failed {
            vec![(1, "train".to_string(), 7.5), (2, "train".to_string(), 7.1)]
        } else {
            let mut m: Vec<(i64, String, f64)> = (1..=20)
                .map(|s| (s * 5, "train".to_string(), train + 3.0 / (s as f64).sqrt()))
                .collect();
            m.extend((1..=4).map(|s| (s * 25, "valid".to_string(), valid + 2.0 / (s as f64))));
            m
        };
        trials.push(SynthTrial {
            label,
            config: tiny_config(*bs, *seed),
            state: if failed {
                "failed".into()
            } else {
                "completed".into()
            },
            is_baseline: *bs == 512,
            finals: (!failed).then(|| {
                [
                    train,
                    *valid,
                    valid + 0.01,
                    train.exp(),
                    valid.exp(),
                    (valid + 0.01).exp(),
                ]
            }),
            tokens_per_s: (!failed).then_some(2000.0 + 10.0 * (*bs as f64) + i as f64),
            wall_seconds: Some(60.0 + i as f64 * 30.0),
            peak_rss_bytes: Some(300 * 1024 * 1024),
            device: Some("cpu".into()),
            error: failed.then(|| format!("out of memory at step 2{hostile}")),
            env: Some(json!({"backend": "flex", "device": "cpu", "version": "0.1.0"})),
            metrics,
            samples: if *bs == 512 && *seed == 1 {
                vec![(
                    format!("Attention is all you need{hostile}"),
                    "We propose the Transformer.".into(),
                    format!("In this paper we study attention{hostile}."),
                )]
            } else {
                vec![]
            },
        });
    }
    (sweep, trials)
}

/// Fills `path` with a sweep `bench` of `trials` trials over a power-of-two axis with
/// `metrics_per_trial` train/valid rows each (generated inside SQLite, so it is fast).
pub async fn bench_ledger(
    path: &Path,
    trials: usize,
    metrics_per_trial: usize,
) -> Result<SqlitePool> {
    let pool = create_ledger(path).await?;
    let (mut sweep, _) = block_size_fixture("");
    sweep.name = "bench".into();
    sweep.title = format!("Benchmark: {trials} trials x {metrics_per_trial} metric rows");
    let fixture: Vec<SynthTrial> = (0..trials)
        .map(|i| {
            let bs = 32i64 << (i % 5);
            let v = 4.0 + (i % 5) as f64 * 0.1 + (i / 5) as f64 * 1e-4;
            SynthTrial {
                label: json!({"block_size": bs, "seed": i / 5}),
                config: tiny_config(bs, (i / 5) as i64),
                state: "completed".into(),
                is_baseline: bs == 512,
                finals: Some([
                    v - 0.2,
                    v,
                    v + 0.01,
                    (v - 0.2).exp(),
                    v.exp(),
                    (v + 0.01).exp(),
                ]),
                tokens_per_s: Some(2000.0 + i as f64),
                wall_seconds: Some(100.0),
                device: Some(if i % 2 == 0 { "cuda:0" } else { "cpu" }.into()),
                env: Some(json!({"backend": "flex"})),
                ..Default::default()
            }
        })
        .collect();
    let sweep_id = insert_sweep(&pool, &sweep, &fixture).await?;
    // One train row per step plus a valid row every 10th step, `metrics_per_trial` rows in all.
    let n_valid = metrics_per_trial / 11;
    let n_train = metrics_per_trial - n_valid;
    sqlx::query(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $1) \
         INSERT INTO metrics (trial_id, step, epoch, split, loss, ppl, tokens_seen, lr, tokens_per_s, created_at) \
         SELECT st.trial_id, s.i, s.i / 100.0, 'train', 4.0 + 3.0 / s.i, 55.0 + 20.0 / s.i, s.i * 4096, 5e-5, 2000.0, $2 \
         FROM sweep_trials st, s WHERE st.sweep_id = $3",
    )
    .bind(n_train as i64)
    .bind(TS)
    .bind(sweep_id)
    .execute(&pool)
    .await?;
    if n_valid > 0 {
        sqlx::query(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $1) \
             INSERT INTO metrics (trial_id, step, epoch, split, loss, ppl, tokens_seen, lr, tokens_per_s, created_at) \
             SELECT st.trial_id, s.i * 10, s.i / 10.0, 'valid', 4.2 + 2.0 / s.i, 67.0 + 15.0 / s.i, s.i * 40960, 5e-5, 0.0, $2 \
             FROM sweep_trials st, s WHERE st.sweep_id = $3",
        )
        .bind(n_valid as i64)
        .bind(TS)
        .bind(sweep_id)
        .execute(&pool)
        .await?;
    }
    Ok(pool)
}
