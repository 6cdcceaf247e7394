//! Synthetic ledgers written through the [`Store`] API: deterministic fixtures for tests, large
//! ones for `sweep bench-report`.

use anyhow::Result;
use serde_json::{json, Value};
use std::path::Path;

use super::{NewMetric, NewSample, NewSweep, NewTrial, Outcome, Store, TrialResults, TrialState};

/// One synthetic trial of a sweep.
#[derive(Debug, Clone, Default)]
pub struct SynthTrial {
    pub label: Value,
    pub config: Value,
    pub state: TrialState,
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

/// Creates (or opens) the SQLite ledger at `path`.
pub fn create_ledger(path: &Path) -> Result<Box<dyn Store>> {
    super::open(&format!("sqlite://{}", path.display()))
}

impl SynthTrial {
    /// How the trial's one attempt ended (`None`: it is pending or still running).
    fn outcome(&self) -> Option<Outcome> {
        let error = self.error.clone().unwrap_or_default();
        Some(match self.state {
            TrialState::Pending | TrialState::Running => return None,
            TrialState::Completed => {
                let f = |i: usize| self.finals.map(|f| f[i]);
                Outcome::Completed {
                    results: TrialResults {
                        wall_seconds: self.wall_seconds,
                        train_seconds: self.wall_seconds,
                        tokens_per_s: self.tokens_per_s,
                        peak_rss_bytes: self.peak_rss_bytes,
                        train_loss: f(0),
                        valid_loss: f(1),
                        test_loss: f(2),
                        train_ppl: f(3),
                        valid_ppl: f(4),
                        test_ppl: f(5),
                        valid_loss_fixed: None,
                    },
                    artifact_dir: None,
                }
            }
            TrialState::Failed => Outcome::Failed {
                error,
                exit_status: None,
            },
            TrialState::Diverged => Outcome::Diverged { error },
            TrialState::Pruned => Outcome::Pruned { error },
            TrialState::Interrupted => Outcome::Interrupted {
                error: self.error.clone(),
            },
        })
    }
}

/// Records a sweep and its trials (hashes derived from the sweep name and position), then plays
/// each trial's attempt through the store: claim by worker `w1`, environment, outcome, metrics
/// (lr 5e-5, 1000 tokens/s, 512 tokens a step) and samples. Returns the sweep id.
pub fn insert_sweep(store: &dyn Store, sweep: &SynthSweep, trials: &[SynthTrial]) -> Result<i64> {
    let new_trials: Vec<NewTrial> = trials
        .iter()
        .enumerate()
        .map(|(pos, t)| NewTrial {
            hash: format!("{}-{pos:04}", sweep.name),
            config: t.config.clone(),
            label: t.label.clone(),
            is_baseline: t.is_baseline,
        })
        .collect();
    let recorded = store.record_sweep(
        &NewSweep {
            name: sweep.name.clone(),
            title: Some(sweep.title.clone()),
            description: Some(sweep.description.clone()),
            file: Some(format!("experiments/{}.toml", sweep.name)),
            profile: Some(sweep.profile.clone()),
            kind: "ablation".into(),
            spec: sweep.spec.clone(),
        },
        &new_trials,
    )?;
    for (t, &id) in trials.iter().zip(&recorded.trial_ids) {
        if t.state != TrialState::Pending {
            store.claim_trial(id, "w1", t.device.as_deref().unwrap_or("cpu"))?;
            if let Some(env) = &t.env {
                store.set_env(id, env)?;
            }
            if let Some(outcome) = t.outcome() {
                store.finish_trial(id, "w1", &outcome)?;
            }
        }
        let metrics: Vec<NewMetric> = t
            .metrics
            .iter()
            .map(|(step, split, loss)| NewMetric {
                step: *step,
                epoch: *step as f64 / 100.0,
                split: split.clone(),
                loss: *loss,
                ppl: loss.exp(),
                tokens_seen: step * 512,
                lr: 5e-5,
                tokens_per_s: 1000.0,
            })
            .collect();
        store.insert_metrics(id, &metrics)?;
        for (i, (title, reference, text)) in t.samples.iter().enumerate() {
            store.insert_sample(&NewSample {
                trial_id: id,
                title: title.clone(),
                reference: Some(reference.clone()),
                text: text.clone(),
                params: json!({"top_k": 50, "max_new_tokens": 200}),
                seed: Some(i as i64),
                uses_acronym: Some(false),
            })?;
        }
    }
    Ok(recorded.sweep_id)
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
                TrialState::Failed
            } else {
                TrialState::Completed
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

/// Fills the ledger at `path` with a sweep `bench` of `trials` completed trials over a
/// power-of-two axis with `metrics_per_trial` metric rows each: one train row a step plus a valid
/// row every 10th step.
pub fn bench_ledger(path: &Path, trials: usize, metrics_per_trial: usize) -> Result<()> {
    let store = create_ledger(path)?;
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
                state: TrialState::Completed,
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
    let sweep_id = insert_sweep(store.as_ref(), &sweep, &fixture)?;
    let n_valid = metrics_per_trial / 11;
    let n_train = metrics_per_trial - n_valid;
    let row = |step: i64, epoch: f64, split: &str, loss: f64, ppl: f64, tps: f64| NewMetric {
        step,
        epoch,
        split: split.into(),
        loss,
        ppl,
        tokens_seen: step * 4096,
        lr: 5e-5,
        tokens_per_s: tps,
    };
    let mut rows: Vec<NewMetric> = (1..=n_train as i64)
        .map(|i| {
            let x = i as f64;
            row(
                i,
                x / 100.0,
                "train",
                4.0 + 3.0 / x,
                55.0 + 20.0 / x,
                2000.0,
            )
        })
        .collect();
    rows.extend((1..=n_valid as i64).map(|i| {
        let x = i as f64;
        row(
            10 * i,
            x / 10.0,
            "valid",
            4.2 + 2.0 / x,
            67.0 + 15.0 / x,
            0.0,
        )
    }));
    for t in store.sweep_trials(sweep_id)? {
        store.insert_metrics(t.trial.id, &rows)?;
    }
    Ok(())
}

/// The valid perplexity of row `row` and seed `seed` in [`verdicts_fixture`]: a baseline with
/// seed noise of a few percent, and four rows built to get each verdict at 4 seeds (flat
/// threshold 0.001): `up` (+5%, tight), `down` (-3%, tight), `flat` (within ±0.02%) and
/// `inconclusive` (±2% either way).
pub fn verdict_value(row: &str, seed: u64) -> f64 {
    let k = [42, 1, 2, 3].iter().position(|s| *s == seed).unwrap_or(0);
    let base = [100.0, 103.0, 98.0, 101.0][k];
    let factor = match row {
        "up" => [1.050, 1.051, 1.049, 1.052][k],
        "down" => [0.970, 0.969, 0.971, 0.970][k],
        "flat" => [1.0001, 0.9999, 1.0002, 1.0000][k],
        "inconclusive" => [1.020, 0.985, 1.010, 0.980][k],
        _ => 1.0,
    };
    base * factor
}

/// The rows of [`verdicts_fixture`]: (name, block size). The baseline is block 128.
pub const VERDICT_ROWS: [(&str, i64); 5] = [
    ("base", 128),
    ("up", 64),
    ("down", 256),
    ("flat", 96),
    ("inconclusive", 32),
];

/// The paper's side of [`verdicts_fixture`]: every row moves up (+10%, +5%, +2.5%, +25%), so the
/// four rows are `same`, `opposite`, `no effect` and `undecided`.
pub fn verdict_references() -> Value {
    json!([
        {"block_size": 128, "valid_ppl": 20.0},
        {"block_size": 64, "valid_ppl": 22.0},
        {"block_size": 256, "valid_ppl": 21.0},
        {"block_size": 96, "valid_ppl": 20.5},
        {"block_size": 32, "valid_ppl": 25.0}
    ])
}

/// An ablation of block size with seeds 42, 1, 2, 3 whose rows get the four verdicts
/// ([`verdict_value`]); train perplexity is 0.9 x valid, losses their logs.
pub fn verdicts_fixture() -> (SynthSweep, Vec<SynthTrial>) {
    let sweep = SynthSweep {
        name: "verdicts".into(),
        title: "Four verdicts".into(),
        description: "Seed replicates against the baseline.".into(),
        profile: "quick".into(),
        spec: json!({"axes": ["block_size"], "references": verdict_references(),
                     "seeds": [42, 1, 2, 3], "flat": 0.001}),
    };
    let mut trials = Vec::new();
    for seed in [42u64, 1, 2, 3] {
        for (row, bs) in VERDICT_ROWS {
            let v = verdict_value(row, seed);
            let t = 0.9 * v;
            trials.push(SynthTrial {
                label: json!({"block_size": bs, "seed": seed}),
                config: tiny_config(bs, seed as i64),
                state: TrialState::Completed,
                is_baseline: row == "base",
                finals: Some([t.ln(), v.ln(), v.ln() + 0.01, t, v, (v.ln() + 0.01).exp()]),
                tokens_per_s: Some(2000.0),
                wall_seconds: Some(60.0),
                device: Some("cpu".into()),
                env: Some(json!({"backend": "flex"})),
                ..Default::default()
            });
        }
    }
    (sweep, trials)
}

/// Fills the ledger at `path` with a sweep `bench` of `rows` rows (a `warmup_steps` axis, the
/// baseline at 0) times `seeds` seeds, completed, with `metrics_per_trial` metric rows each.
pub fn bench_seeds_ledger(
    path: &Path,
    rows: usize,
    seeds: usize,
    metrics_per_trial: usize,
) -> Result<()> {
    let store = create_ledger(path)?;
    let (mut sweep, _) = block_size_fixture("");
    sweep.name = "bench".into();
    sweep.title = format!("Benchmark: {rows} rows x {seeds} seeds");
    sweep.spec = json!({"axes": ["warmup_steps"], "seeds": (0..seeds).collect::<Vec<_>>()});
    let mut fixture = Vec::with_capacity(rows * seeds);
    for seed in 0..seeds {
        for r in 0..rows {
            let noise = ((r * 7 + seed * 13) % 11) as f64 * 1e-3;
            let v = 4.0 + (r % 17) as f64 * 0.01 + noise;
            let mut config = tiny_config(128, seed as i64);
            config["warmup_steps"] = json!(r);
            fixture.push(SynthTrial {
                label: json!({"warmup_steps": r, "seed": seed}),
                config,
                state: TrialState::Completed,
                is_baseline: r == 0,
                finals: Some([
                    v - 0.2,
                    v,
                    v + 0.01,
                    (v - 0.2).exp(),
                    v.exp(),
                    (v + 0.01).exp(),
                ]),
                tokens_per_s: Some(2000.0),
                wall_seconds: Some(100.0),
                device: Some("cpu".into()),
                env: Some(json!({"backend": "flex"})),
                metrics: (1..=metrics_per_trial as i64)
                    .map(|i| (i, "train".to_string(), 4.0 + 3.0 / i as f64))
                    .collect(),
                ..Default::default()
            });
        }
    }
    insert_sweep(store.as_ref(), &sweep, &fixture)?;
    Ok(())
}
