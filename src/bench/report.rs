//! `sweep bench-report`: times the report of a large synthetic sweep and grouped aggregate
//! queries over a large synthetic ledger (issue 5), or with `--seeds` the `results --format json`
//! and `report` commands on rows x seeds (issue 21; numbers in bench/RESULTS.md).

use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::store::synth;

#[derive(Debug, Args)]
pub struct BenchReportArgs {
    /// Trials in the synthetic report ledger.
    #[arg(long, default_value_t = 1000)]
    pub trials: usize,
    /// Metric rows per trial.
    #[arg(long, default_value_t = 200)]
    pub metrics: usize,
    /// Metric rows in the synthetic query ledger.
    #[arg(long, default_value_t = 1_000_000)]
    pub query_rows: usize,
    /// Keep the ledgers and report here instead of a temp dir.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Seed replicates: a ledger of `--trials` rows x this many seeds, and time the `sweep
    /// results --format json` and `sweep report` commands on it (issue 21's target: 2 s each).
    #[arg(long, default_value_t = 0)]
    pub seeds: usize,
}

/// The issue 21 target for `sweep results --format json` and `sweep report` at 1,000 x 5.
const SEEDS_TARGET_S: f64 = 2.0;

/// `--seeds S`: `sweep results --format json` and `sweep report` as commands (a fresh process
/// each, as a user runs them) on `rows` rows x `seeds` seeds; best of 3.
fn bench_seeds(dir: &Path, rows: usize, seeds: usize, metrics: usize) -> Result<ExitCode> {
    use std::time::Instant;
    let db = dir.join("bench-seeds.db");
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    let t = Instant::now();
    synth::bench_seeds_ledger(&db, rows, seeds, metrics)?;
    println!(
        "built a ledger of {rows} rows x {seeds} seeds ({} trials, {metrics} metric rows each) in {:.1}s",
        rows * seeds,
        t.elapsed().as_secs_f64()
    );
    let exe = std::env::current_exe()?;
    let url = format!("sqlite://{}", db.display());
    let out = dir.join("bench-seeds.html");
    let commands: [(&str, Vec<String>); 2] = [
        (
            "sweep results --format json",
            vec![
                "results".into(),
                "bench".into(),
                "--format".into(),
                "json".into(),
            ],
        ),
        (
            "sweep report",
            vec![
                "report".into(),
                "bench".into(),
                "--out".into(),
                out.display().to_string(),
            ],
        ),
    ];
    for (name, args) in commands {
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let o = std::process::Command::new(&exe)
                .args(&args)
                .args(["--db", &url])
                .output()?;
            times.push(t.elapsed().as_secs_f64());
            anyhow::ensure!(
                o.status.success(),
                "{name} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
        println!(
            "{name}: {rows} rows x {seeds} seeds in {best:.3}s (best of 3; runs {:?}); target \
             {SEEDS_TARGET_S} s: {:.2}x of it",
            times.iter().map(|t| format!("{t:.3}")).collect::<Vec<_>>(),
            best / SEEDS_TARGET_S
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `sweep bench-report`: times a report of a large synthetic sweep and a grouped aggregate query.
pub fn run_bench(args: BenchReportArgs) -> Result<ExitCode> {
    use std::time::Instant;
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    if args.seeds > 0 {
        return bench_seeds(&dir, args.trials, args.seeds, args.metrics);
    }
    let report_db = dir.join("bench-report.db");
    let query_db = dir.join("bench-query.db");
    for p in [&report_db, &query_db] {
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
        }
    }
    let t = Instant::now();
    synth::bench_ledger(&report_db, args.trials, args.metrics)?;
    let per = 200usize;
    synth::bench_ledger(&query_db, args.query_rows.div_ceil(per), per)?;
    println!(
        "built synthetic ledgers in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let out = dir.join("bench.html");
    let url = format!("sqlite://{}", report_db.display());
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        crate::report::write_sweep_report(&url, "bench", &out, Path::new("results"))?;
        times.push(t.elapsed().as_secs_f64());
    }
    let size = std::fs::metadata(&out)?.len();
    println!(
        "report: {} trials x {} metric rows -> {:.1} MiB HTML in {:.3}s (best of 3; runs {:?})",
        args.trials,
        args.metrics,
        size as f64 / (1024.0 * 1024.0),
        times.iter().cloned().fold(f64::INFINITY, f64::min),
        times.iter().map(|t| format!("{t:.3}")).collect::<Vec<_>>()
    );

    let url = format!("sqlite://{}", query_db.display());
    let sql = "SELECT split, count(*) AS n, avg(loss) AS mean_loss, min(loss) AS min_loss, max(step) AS last_step \
               FROM metrics GROUP BY split";
    let per_trial = "SELECT trial_id, split, count(*) AS n, avg(loss) AS mean_loss FROM metrics GROUP BY trial_id, split";
    for (name, q) in [("by split", sql), ("by trial and split", per_trial)] {
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..3 {
            let t = Instant::now();
            let r = crate::query::query(&url, q)?;
            let _ = crate::query::format_query(&r, crate::query::QueryFormat::Table)?;
            rows = r.rows.len();
            times.push(t.elapsed().as_secs_f64());
        }
        println!(
            "query ({name}) over {} metric rows -> {rows} result rows in {:.3}s (best of 3; runs {:?})",
            args.query_rows,
            times.iter().cloned().fold(f64::INFINITY, f64::min),
            times.iter().map(|t| format!("{t:.3}")).collect::<Vec<_>>()
        );
    }
    Ok(ExitCode::SUCCESS)
}
