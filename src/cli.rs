//! Command-line surface: one subcommand per stage; each module owns its arguments and runner.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

use crate::error::UsageError;

#[derive(Parser)]
#[command(
    name = "sweep",
    version,
    about = "Fine-tune GPT-2 over hyperparameter sweeps and report them like the paper"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    // Each stage adds its subcommand here (one variant + one match arm).
    /// Prepare the arXiv title/abstract corpus (the paper's §2, Table 1).
    Data(crate::data::DataArgs),
    /// Train one configuration without a sweep (TOML file + --set overrides), with a progress bar.
    Train(crate::train::cli::TrainArgs),
    /// Loss and perplexity of a model on a prepared split or any text file.
    Eval(crate::train::cli::EvalArgs),
    /// Check this build on a device against HF transformers' golden fixture (logits, loss, one
    /// AdamW step).
    Selftest(crate::train::golden::SelftestArgs),
    /// Training throughput of a model shape on random tokens (bench/train_bench.py).
    #[command(hide = true, name = "bench-train")]
    BenchTrain(crate::train::cli::BenchArgs),
    /// Render a sweep's HTML report (paper-layout table, comparison with the paper, plots).
    Report(crate::report::ReportArgs),
    /// Live dashboard: a read-only web server over the ledger (sweeps, live loss curves, trials).
    Serve(crate::serve::cli::ServeArgs),
    /// Print a sweep's paper-layout table (table, csv, json, markdown, latex).
    Results(crate::query::ResultsArgs),
    /// Run read-only SQL over the results ledger.
    Query(crate::query::QueryArgs),
    /// The best trial of a sweep by its search metric, as a TOML snippet for `[base]` (or JSON).
    Best(crate::query::BestArgs),
    /// Export every metric row of a sweep (csv or json) to stdout.
    Export(crate::query::ExportArgs),
    /// Download Hugging Face Hub models into the HF cache ahead of time (for offline nodes).
    Fetch(crate::checkpoint::hub::cli::FetchArgs),
    /// Show the expanded trials of a sweep file (hash, state, steps, estimated time); writes nothing.
    Plan(crate::exec::cli::PlanArgs),
    /// Record a sweep in the ledger and run every trial not yet completed.
    Run(crate::exec::cli::RunArgs),
    /// Sweeps and trials in the ledger: state, progress, best valid PPL, errors.
    Status(crate::exec::cli::StatusArgs),
    /// Drain recorded sweeps from a shared ledger, one trial at a time (several machines may run one each).
    Worker(crate::exec::cli::WorkerArgs),
    /// Cancel the Slurm job arrays of a sweep (`scancel`); running trials checkpoint first.
    Cancel(crate::exec::cli::CancelArgs),
    /// Claim-and-record throughput of the PostgreSQL ledger with concurrent workers (issue 7).
    #[command(hide = true, name = "bench-ledger")]
    BenchLedger(crate::bench::ledger::BenchLedgerArgs),
    /// Per-trial commands (`sweep trial run ID`: what `sweep run` and cluster tasks execute).
    #[command(subcommand)]
    Trial(crate::exec::cli::TrialCommand),
    /// Benchmark report rendering and ledger queries on synthetic data (issue 5).
    #[command(hide = true, name = "bench-report")]
    BenchReport(crate::bench::report::BenchReportArgs),
    /// Concurrent clients on a running `sweep serve`: requests/s and latency (issue 17).
    #[command(hide = true, name = "bench-serve")]
    BenchServe(crate::bench::serve::BenchServeArgs),
    /// Search samplers' regret on test functions and cost per suggestion (issue 16).
    #[command(hide = true, name = "bench-sampler")]
    BenchSampler(crate::bench::sampler::BenchSamplerArgs),
    /// Checkpoint write, hash and verify times at a model's size (issue 23).
    #[command(hide = true, name = "bench-checkpoint")]
    BenchCheckpoint(crate::bench::checkpoint::BenchCheckpointArgs),
    /// Searches replayed against recorded learning curves: samplers x pruners (issue 25).
    #[command(hide = true, name = "bench-replay")]
    BenchReplay(crate::bench::replay::BenchReplayArgs),
    /// Write abstracts for titles with a trained model: nucleus sampling, KV cache, stored samples.
    Generate(crate::generate::cli::GenerateArgs),
    /// Generation tokens/s with and without the KV cache on random weights (issue 6).
    #[command(hide = true, name = "bench-generate")]
    BenchGenerate(crate::generate::bench::BenchGenerateArgs),
}

pub fn main() -> ExitCode {
    crate::backend::keep_freed_memory();
    let cli = Cli::parse();
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Data(args) => crate::data::run(args),
        Command::Train(args) => crate::train::cli::run_train(args),
        Command::Eval(args) => crate::train::cli::run_eval(args),
        Command::Selftest(args) => crate::train::golden::run_selftest(args),
        Command::BenchTrain(args) => crate::train::cli::run_bench(args),
        Command::Report(args) => crate::report::run(args),
        Command::Serve(args) => crate::serve::cli::run(args),
        Command::Results(args) => crate::query::run_results(args),
        Command::Query(args) => crate::query::run_query(args),
        Command::Best(args) => crate::query::run_best(args),
        Command::Export(args) => crate::query::run_export(args),
        Command::Fetch(args) => crate::checkpoint::hub::cli::run_fetch(args),
        Command::Plan(args) => crate::exec::cli::plan(args),
        Command::Run(args) => crate::exec::cli::run(args),
        Command::Status(args) => crate::exec::cli::status(args),
        Command::Trial(cmd) => crate::exec::cli::trial(cmd),
        Command::Worker(args) => crate::exec::cli::worker(args),
        Command::Cancel(args) => crate::exec::cli::cancel(args),
        Command::BenchLedger(args) => crate::bench::ledger::bench_ledger(args),
        Command::BenchReport(args) => crate::bench::report::run_bench(args),
        Command::BenchServe(args) => crate::bench::serve::run(args),
        Command::BenchSampler(args) => crate::bench::sampler::run(args),
        Command::BenchCheckpoint(args) => crate::bench::checkpoint::run(args),
        Command::BenchReplay(args) => crate::bench::replay::run(args),
        Command::Generate(args) => crate::generate::cli::run(args),
        Command::BenchGenerate(args) => crate::generate::bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
