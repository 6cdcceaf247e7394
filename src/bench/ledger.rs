//! `sweep bench-ledger`: claim-and-record throughput of the PostgreSQL ledger with concurrent
//! workers, through the same store calls a trial process makes (bench/RESULTS.md, issue 7).

use crate::error::UsageError;
use crate::store::{Reader, Store, TrialState};
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;

/// `sweep bench-ledger`: the claim-and-record protocol through PostgreSQL, as workers use it.
#[derive(Args, Debug)]
pub struct BenchLedgerArgs {
    /// A PostgreSQL server URL; the benchmark creates (and re-creates) the scratch database
    /// `sweep_bench_ledger` on it (the role needs CREATEDB) and never touches the URL's database.
    #[arg(long, env = "SWEEP_DB")]
    pub db: String,
    #[arg(long, default_value_t = 1000)]
    pub trials: usize,
    /// Metric rows per trial.
    #[arg(long, default_value_t = 200)]
    pub rows: usize,
    /// Concurrent workers (each with its own connection pool, like separate processes).
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
}

pub fn bench_ledger(args: BenchLedgerArgs) -> Result<ExitCode> {
    use crate::store::postgres::{scratch_database, PostgresStore};
    use crate::store::{NewMetric, NewSweep, NewTrial, Outcome, TrialResults};
    if !(args.db.starts_with("postgres://") || args.db.starts_with("postgresql://")) {
        return Err(UsageError(format!(
            "--db {}: bench-ledger measures the PostgreSQL ledger; fix: pass postgres://USER:PASSWORD@HOST/DB",
            args.db
        ))
        .into());
    }
    if args.workers == 0 || args.trials == 0 {
        return Err(UsageError("--workers and --trials must be at least 1".into()).into());
    }
    let url = scratch_database(&args.db, "sweep_bench_ledger")?;
    let setup = PostgresStore::open(&url)?;
    let trials: Vec<NewTrial> = (0..args.trials)
        .map(|i| NewTrial {
            hash: format!("{:064x}", i),
            config: serde_json::json!({"model": "gpt2", "seed": i}),
            label: serde_json::json!({"i": i}),
            is_baseline: false,
        })
        .collect();
    let t0 = std::time::Instant::now();
    let rec = setup.record_sweep(
        &NewSweep {
            name: "bench".into(),
            title: None,
            description: None,
            file: None,
            profile: None,
            kind: "grid".into(),
            spec: serde_json::json!({}),
        },
        &trials,
    )?;
    let record_s = t0.elapsed().as_secs_f64();
    eprintln!(
        "recorded {} trials in {record_s:.2} s; {} workers claiming and writing {} rows each",
        args.trials, args.workers, args.rows
    );
    let start = std::time::Instant::now();
    let per_worker: Vec<Result<(Vec<f64>, u64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.workers)
            .map(|w| {
                let url = url.clone();
                let sweep_id = rec.sweep_id;
                let rows = args.rows;
                scope.spawn(move || -> Result<(Vec<f64>, u64)> {
                    let s = PostgresStore::open(&url)?;
                    let worker = format!("bench:{w}");
                    let mut times = Vec::new();
                    let mut written = 0u64;
                    loop {
                        let t = std::time::Instant::now();
                        let Some(trial) = s.claim_next(sweep_id, &worker, "cpu")? else {
                            break;
                        };
                        s.set_env(trial.id, &serde_json::json!({"backend": "bench"}))?;
                        s.heartbeat(trial.id, &worker)?;
                        let batch: Vec<NewMetric> = (0..rows)
                            .map(|i| NewMetric {
                                step: i as i64 + 1,
                                epoch: i as f64 / rows as f64,
                                split: if i % 10 == 9 { "valid" } else { "train" }.into(),
                                loss: 5.0 - i as f64 * 1e-3,
                                ppl: (5.0 - i as f64 * 1e-3f64).exp(),
                                tokens_seen: i as i64 * 1024,
                                lr: 1e-4,
                                tokens_per_s: 1000.0,
                            })
                            .collect();
                        // The trial writer flushes every FLUSH_ROWS rows.
                        for chunk in batch.chunks(crate::exec::sink::FLUSH_ROWS) {
                            written += s.insert_metrics(trial.id, chunk)?;
                        }
                        let done = s.finish_trial(
                            trial.id,
                            &worker,
                            &Outcome::Completed {
                                results: TrialResults {
                                    valid_loss: Some(3.0),
                                    ..Default::default()
                                },
                                artifact_dir: None,
                            },
                        )?;
                        anyhow::ensure!(done, "trial {} was taken from {worker}", trial.id);
                        times.push(t.elapsed().as_secs_f64());
                    }
                    Ok((times, written))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("bench worker panicked")))
            })
            .collect()
    });
    let wall = start.elapsed().as_secs_f64();
    let mut times = Vec::new();
    let mut rows = 0u64;
    for r in per_worker {
        let (t, w) = r?;
        times.extend(t);
        rows += w;
    }
    anyhow::ensure!(
        times.len() == args.trials,
        "{} trials completed, expected {}",
        times.len(),
        args.trials
    );
    let done = setup.trials_in_state(TrialState::Completed)?;
    anyhow::ensure!(
        done.len() == args.trials && done.iter().all(|t| t.attempts == 1),
        "every trial claimed exactly once"
    );
    anyhow::ensure!(
        rows == (args.trials * args.rows) as u64,
        "{rows} rows written"
    );
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize] * 1e3;
    let mean = times.iter().sum::<f64>() / times.len() as f64 * 1e3;
    println!(
        "trials: {}  workers: {}  rows/trial: {}  wall: {wall:.2} s",
        args.trials, args.workers, args.rows
    );
    println!("trials/s: {:.0}", args.trials as f64 / wall);
    println!("metric rows/s: {:.0}", rows as f64 / wall);
    println!(
        "ledger time per trial (claim + env + heartbeat + {} rows + finish): mean {mean:.1} ms, p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        args.rows,
        pct(0.5),
        pct(0.95),
        pct(1.0)
    );
    println!("record_sweep of {} trials: {record_s:.2} s", args.trials);
    Ok(ExitCode::SUCCESS)
}
