//! `sweep worker`: drain recorded sweeps from a shared ledger, one trial at a time, without Slurm.
//!
//! Several workers (on several machines, against one PostgreSQL ledger) may drain the same sweep:
//! each picks a claimable trial and runs it as a child `sweep trial run ID`, whose atomic claim
//! decides who runs it (a loser exits with [`scheduler::EXIT_NOT_CLAIMED`] and the worker picks
//! again). Running trials of dead workers (stale heartbeat; same host: pid gone) are marked
//! `interrupted` and resumed from their checkpoint. A worker exits when nothing is claimable and
//! nothing is running; SIGINT/SIGTERM stop it after asking its current trial to checkpoint.

use crate::error::UsageError;
use crate::scheduler::{self, LedgerArgs};
use crate::store::{Reader, Store, TrialState};
use anyhow::{Context, Result};
use clap::Args;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// Only this sweep (as recorded); default: every sweep in the ledger.
    #[arg(long)]
    pub sweep: Option<String>,
    /// `cpu` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Retry a failed trial while it has had at most this many attempts.
    #[arg(long, default_value_t = 0)]
    pub retries: i64,
    /// Checkpoint at least this often (minutes).
    #[arg(long, default_value_t = 10.0)]
    pub checkpoint_minutes: f64,
    /// Seconds between looks at the ledger while other workers' trials are still running.
    #[arg(long, default_value_t = 5.0)]
    pub poll_seconds: f64,
    /// Where trial directories go (ROOT/trials/<hash>); workers on several machines need one
    /// that all of them mount, or a trial resumed elsewhere starts from scratch.
    #[command(flatten)]
    pub artifacts: crate::artifacts::ArtifactsArgs,
}

static STOP: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.fetch_add(1, Ordering::SeqCst);
}

/// Trial ids of the chosen sweeps, in sweep then position order (a shared baseline once).
fn sweep_trial_ids(s: &dyn Store, only: Option<&str>) -> Result<Vec<i64>> {
    let sweeps = match only {
        Some(name) => vec![s.sweep_by_name(name)?.ok_or_else(|| {
            anyhow::Error::from(UsageError(format!(
                "--sweep {name}: not in the ledger; fix: record it first with `sweep run FILE` \
                 (or `--executor slurm --dry-run`), see `sweep status`"
            )))
        })?],
        None => s.sweeps()?,
    };
    let mut ids = Vec::new();
    for sw in sweeps {
        for st in s.sweep_trials(sw.id)? {
            if !ids.contains(&st.trial.id) {
                ids.push(st.trial.id);
            }
        }
    }
    Ok(ids)
}

/// Workers on several machines share one ledger, so they must share the artifacts root too: a
/// trial resumed elsewhere needs its checkpoint, `eval`/`generate --trial` need its model. Only a
/// warning, since workers on one machine (or a re-exported disk) are fine.
fn warn_if_node_local(root: &std::path::Path) {
    use crate::artifacts::{classify, fs_magic, FsKind};
    let Ok((magic, _)) = fs_magic(root) else {
        return;
    };
    let kind = match classify(magic) {
        FsKind::Network(_) => return,
        FsKind::NodeLocalMemory(k) | FsKind::LocalDisk(k) => k.to_string(),
        FsKind::Unknown(k) => k,
    };
    eprintln!(
        "warning: artifacts root {} is on {kind}, which is probably local to this machine: \
         workers on other machines will not see the checkpoints and models written here; if \
         they run elsewhere, pass --artifacts on a shared file system (NFS, Lustre, ...)",
        root.display()
    );
}

pub fn run(args: WorkerArgs) -> Result<ExitCode> {
    let (url, s) = scheduler::open_store(&args.ledger)?;
    let ids = sweep_trial_ids(&*s, args.sweep.as_deref())?;
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1] {
        // SAFETY: the handler only touches an atomic.
        unsafe {
            libc::signal(
                sig,
                on_stop as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
    let exe = std::env::current_exe().context("locating the sweep executable")?;
    let artifacts = args.artifacts.root();
    if url.starts_with("postgres") {
        warn_if_node_local(&artifacts);
    }
    eprintln!(
        "worker pid {}: {} trial(s) to drain{}, ledger {url}, artifacts {}",
        std::process::id(),
        ids.len(),
        args.sweep
            .as_deref()
            .map(|n| format!(" of sweep {n}"))
            .unwrap_or_default(),
        artifacts.display()
    );
    let (mut ran, mut failed) = (0usize, 0usize);
    // Trials this worker lost a claim race on, skipped until the ledger changes their state.
    let mut lost: Vec<i64> = Vec::new();
    loop {
        if STOP.load(Ordering::SeqCst) > 0 {
            eprintln!("worker: stopping on a signal");
            return Ok(ExitCode::from(130));
        }
        let recovered = scheduler::recover_dead(&*s, &ids)?;
        if recovered > 0 {
            eprintln!("worker: {recovered} trial(s) of dead workers marked interrupted");
        }
        let mut next = None;
        let mut running = 0;
        for id in &ids {
            let Some(t) = s.trial(*id)? else { continue };
            let claimable = match t.state {
                TrialState::Pending | TrialState::Interrupted => true,
                TrialState::Failed => t.attempts <= args.retries,
                TrialState::Running => {
                    running += 1;
                    false
                }
                _ => false,
            };
            if claimable && !lost.contains(id) {
                next = Some(t);
                break;
            }
        }
        let Some(t) = next else {
            if running == 0 && lost.is_empty() {
                break;
            }
            lost.clear();
            std::thread::sleep(Duration::from_secs_f64(args.poll_seconds.max(0.1)));
            continue;
        };
        eprintln!("worker: trial {} ({})", t.id, t.short_hash());
        let mut child = Command::new(&exe)
            .args(["trial", "run", &t.id.to_string(), "--db", &url])
            .args(["--device", &args.device])
            .args(["--checkpoint-minutes", &args.checkpoint_minutes.to_string()])
            .arg("--artifacts")
            .arg(&artifacts)
            .stdin(Stdio::null())
            .spawn()
            .context("starting `sweep trial run`")?;
        let mut forwarded = false;
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            if STOP.load(Ordering::SeqCst) > 0 && !forwarded {
                // SAFETY: kill(2) on our own child; it checkpoints and exits `interrupted`.
                unsafe {
                    libc::kill(child.id() as i32, libc::SIGTERM);
                }
                forwarded = true;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        match status.code() {
            Some(0) => ran += 1,
            Some(c) if c == scheduler::EXIT_NOT_CLAIMED as i32 => lost.push(t.id),
            _ => {
                failed += 1;
                eprintln!("worker: trial {} ended with {status}", t.id);
            }
        }
    }
    eprintln!("worker: done ({ran} trial(s) run here, {failed} did not complete)");
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

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
                        for chunk in batch.chunks(crate::scheduler::FLUSH_ROWS) {
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
