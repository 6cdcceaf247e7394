//! The command layer of running sweeps: `sweep plan`, `run`, `status`, `trial run`, `worker` and
//! `cancel`. Each runner resolves its flags (through [`crate::locations`]) into the executors'
//! typed values and hands over; nothing below this file sees a clap type.

use super::local::Local;
use super::slurm::Slurm;
use super::trial::TrialRun;
use super::worker::Worker;
use super::{Executor, Ledger};
use crate::config::{self, ProfileArg};
use crate::locations::{ArtifactsArgs, CacheArgs, LedgerArgs};
use crate::plan::{self, PlannedTrial};
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args, Debug, Clone)]
pub struct SweepFileArgs {
    /// The sweep file (TOML), e.g. experiments/block_size.toml.
    pub file: PathBuf,
    /// Apply `[profile.NAME]` of the file (e.g. `quick`).
    #[arg(long)]
    pub profile: Option<String>,
    /// Override a key for every trial (`--set learning_rate=1e-4`), or an axis (`--set grid.seed=[1,2]`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Run every row once per seed (`--seeds 42,1,2`), replacing the file's `seeds`.
    #[arg(long, value_name = "S1,S2,...", allow_hyphen_values = true)]
    pub seeds: Option<String>,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub sweep: SweepFileArgs,
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// The device the estimates are for (`cpu` or `cuda:N`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print each key of the first trial with where it was set (file:line:column of the file,
    /// or the extended file, that set it; the profile, axis or `--set`), instead of the plan.
    #[arg(long)]
    pub explain: bool,
}

/// Executor flags of `sweep run`.
#[derive(Args, Debug, Clone)]
pub struct ExecutorArgs {
    /// Where trials run: `local` (child processes on this machine) or `slurm` (one sbatch job array).
    #[arg(long, default_value = "local", value_parser = ["local", "slurm"])]
    pub executor: String,
    /// Slurm partition (default: the cluster's default partition).
    #[arg(long)]
    pub partition: Option<String>,
    /// GPUs per trial (Slurm `--gres=gpu:N`); 0 runs trials on CPU.
    #[arg(long, default_value_t = 0)]
    pub gpus_per_trial: u32,
    /// Time limit of one trial, `[D-]HH:MM:SS`.
    #[arg(long, default_value = "04:00:00")]
    pub time: String,
    /// At most K array tasks at once (`--array=0-N%K`).
    #[arg(long)]
    pub max_parallel: Option<usize>,
    /// Extra `#SBATCH` line, repeatable (`--sbatch-arg=--account=nlp --sbatch-arg=--mem=32G`).
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// Artifacts root shared by all nodes: trial directories (checkpoints, models) in
    /// DIR/trials, job files in DIR/slurm (default `results`). The ledger records paths relative
    /// to it.
    #[command(flatten)]
    pub artifacts: ArtifactsArgs,
    /// Accept an --artifacts directory on a node-local file system (tmpfs, a local disk): only
    /// right when the cluster is this one node.
    #[arg(long)]
    pub artifacts_local_ok: bool,
    /// Also resubmit trials that were interrupted (preempted, cancelled, time limit) or failed.
    #[arg(long)]
    pub requeue: bool,
    /// Write the sbatch script and print it, without submitting.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub sweep: SweepFileArgs,
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// Trials to run at once (CPU threads are split between them).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Devices, comma-separated (`cpu`, or `cuda:0,cuda:1`); job slot k uses device k mod count.
    #[arg(long, default_value = "cpu")]
    pub devices: String,
    /// Retry a failed trial up to K more times in this run.
    #[arg(long, default_value_t = 0)]
    pub retries: usize,
    /// On the first failed trial: stop starting trials, interrupt the running ones, exit 1.
    #[arg(long)]
    pub fail_fast: bool,
    /// Retrain trials even if the ledger has them completed.
    #[arg(long)]
    pub force: bool,
    /// Checkpoint a running trial at least this often (minutes; epoch ends always checkpoint).
    #[arg(long, default_value_t = 10.0)]
    pub checkpoint_minutes: f64,
    /// Add seeds (42 or the file's seeds, then 1, 2, 3, ...) to each row whose valid-PPL change
    /// from the baseline row is still inconclusive, until it is up, down or flat.
    #[arg(long)]
    pub until_decided: bool,
    /// With --until-decided: at most this many seeds per row.
    #[arg(long, default_value_t = 10, requires = "until_decided")]
    pub max_seeds: usize,
    #[command(flatten)]
    pub cluster: ExecutorArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// A sweep: its recorded name (`name`, or `name@profile` when run with --profile) or its
    /// sweep file.
    pub sweep: Option<String>,
    #[command(flatten)]
    pub profile: ProfileArg,
    #[command(flatten)]
    pub ledger: LedgerArgs,
    #[command(flatten)]
    pub artifacts: ArtifactsArgs,
}

#[derive(Subcommand, Debug)]
pub enum TrialCommand {
    /// Run one recorded trial (what `sweep run` and cluster tasks execute).
    Run(TrialRunArgs),
}

#[derive(Args, Debug)]
pub struct TrialRunArgs {
    /// Trial id in the ledger.
    pub id: i64,
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// `cpu` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Checkpoint at least this often (minutes).
    #[arg(long, default_value_t = 10.0)]
    pub checkpoint_minutes: f64,
    /// Draw the trainer's own progress bar (off when run by `sweep run`).
    #[arg(long)]
    pub progress: bool,
    #[command(flatten)]
    pub artifacts: ArtifactsArgs,
    /// Run as a Slurm array task: exit 0 instead of 75 when the trial is already done or run by a
    /// live worker elsewhere (a task with nothing to do has succeeded), and instead of 130 when
    /// the trial was interrupted after a checkpoint (Slurm would list both as FAILED; the ledger
    /// says `interrupted` and `--requeue` resumes it).
    #[arg(long)]
    pub skip_if_taken: bool,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// Only this sweep (its recorded name or its sweep file); default: every sweep in the ledger.
    #[arg(long)]
    pub sweep: Option<String>,
    #[command(flatten)]
    pub profile: ProfileArg,
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
    pub artifacts: ArtifactsArgs,
}

#[derive(Args, Debug)]
pub struct CancelArgs {
    /// The sweep whose Slurm jobs to cancel: its recorded name (see `sweep status`) or its sweep
    /// file.
    pub sweep: String,
    #[command(flatten)]
    pub profile: ProfileArg,
    #[command(flatten)]
    pub ledger: LedgerArgs,
}

/// Reads, validates and identifies a sweep file's trials (nothing is written).
fn load_and_identify(
    args: &SweepFileArgs,
    cache_root: &Path,
) -> Result<(config::Sweep, Vec<PlannedTrial>)> {
    let sweep = config::load_with(
        &args.file,
        args.profile.as_deref(),
        &args.sets,
        args.seeds.as_deref(),
    )?;
    let planned = plan::identify(&sweep, cache_root)?;
    Ok((sweep, planned))
}

pub fn plan(args: PlanArgs) -> Result<ExitCode> {
    if args.explain {
        // Where values come from needs the file only: no data is prepared, no ledger read.
        let s = &args.sweep;
        let sweep = config::load(&s.file, s.profile.as_deref(), &s.sets)?;
        let point = super::search::Searcher::preview_points(&sweep, 1).pop();
        let (trial, origins) = sweep.explain(point.as_deref())?;
        return crate::util::write_stdout(&super::plan_view::render_explain(
            &sweep, &trial, &origins,
        ));
    }
    let cache = CacheArgs::default().root();
    let (sweep, planned) = load_and_identify(&args.sweep, &cache)?;
    crate::backend::DeviceSpec::parse(&args.device)?.check("--device")?;
    let text =
        super::plan_view::render(&sweep, &planned, &args.ledger.url(), &cache, &args.device)?;
    crate::util::write_stdout(&text)
}

pub fn status(args: StatusArgs) -> Result<ExitCode> {
    let sweep = args.profile.sweep_opt(args.sweep.as_deref())?;
    // Read-only, like every reader: a missing SQLite file is an error naming it, not created.
    let ledger = crate::store::open_read_only(&args.ledger.url())?;
    let text = super::status::render(&*ledger, sweep.as_deref(), &args.artifacts.root())?;
    crate::util::write_stdout(&text)
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let cache = CacheArgs::default().root();
    let artifacts = args.cluster.artifacts.root();
    let mut exec: Box<dyn Executor> = if args.cluster.executor == "slurm" {
        Box::new(slurm_executor(&args, &artifacts, &cache)?)
    } else {
        Box::new(local_executor(&args, &artifacts, &cache))
    };
    exec.check_flags()?;
    let sweep = config::load_with(
        &args.sweep.file,
        args.sweep.profile.as_deref(),
        &args.sweep.sets,
        args.sweep.seeds.as_deref(),
    )?;
    let until = if args.until_decided {
        sweep.check_until_decided(args.max_seeds)?;
        Some(super::decide::UntilDecided::new(&sweep, args.max_seeds))
    } else {
        None
    };
    let planned = plan::identify(&sweep, &cache)?;
    let (ledger, batch, code) = super::run_sweep(
        &mut *exec,
        &args.ledger.url(),
        &sweep,
        &planned,
        &cache,
        until.as_ref(),
    )?;
    if args.cluster.executor != "slurm" {
        write_report(&ledger.url, &batch.name, &artifacts);
    }
    Ok(code)
}

fn local_executor(args: &RunArgs, artifacts: &Path, cache: &Path) -> Local {
    Local {
        jobs: args.jobs,
        devices: args
            .devices
            .split(',')
            .map(|d| d.trim().to_string())
            .filter(|d| !d.is_empty())
            .collect(),
        devices_flag: args.devices.clone(),
        retries: args.retries,
        fail_fast: args.fail_fast,
        force: args.force,
        checkpoint_minutes: args.checkpoint_minutes,
        artifacts: artifacts.to_path_buf(),
        cache_root: cache.to_path_buf(),
    }
}

fn slurm_executor(args: &RunArgs, artifacts: &Path, cache: &Path) -> Result<Slurm> {
    let c = &args.cluster;
    Ok(Slurm {
        partition: c.partition.clone(),
        gpus_per_trial: c.gpus_per_trial,
        time: c.time.clone(),
        max_parallel: c.max_parallel,
        sbatch_args: c.sbatch_args.clone(),
        artifacts: artifacts.to_path_buf(),
        artifacts_local_ok: c.artifacts_local_ok,
        requeue: c.requeue,
        dry_run: c.dry_run,
        checkpoint_minutes: args.checkpoint_minutes,
        cache_root: std::path::absolute(cache)?,
        command_line: super::slurm::command_line(std::env::args().skip(1)),
    })
}

/// Rewrites `reports/<sweep>.html` from the ledger, also after an interrupt (with what exists).
/// A report failure is printed, never turned into a sweep failure: the numbers are in the ledger.
fn write_report(url: &str, name: &str, artifacts: &Path) {
    let out = Path::new("reports").join(format!("{}.html", crate::report::file_stem(name)));
    let (url, sweep, root) = (url.to_string(), name.to_string(), artifacts.to_path_buf());
    let target = out.clone();
    // The report opens its own runtime, so it runs on a plain thread outside the store's.
    let result = std::thread::spawn(move || {
        crate::report::write_sweep_report_blocking(&url, &sweep, &target, &root)
    })
    .join();
    match result {
        Ok(Ok(())) => eprintln!("report: {}", out.display()),
        Ok(Err(e)) => eprintln!(
            "warning: could not write the report {}: {e:#}",
            out.display()
        ),
        Err(_) => eprintln!("warning: the report writer panicked; run `sweep report {name}`"),
    }
}

pub fn trial(cmd: TrialCommand) -> Result<ExitCode> {
    let TrialCommand::Run(args) = cmd;
    super::trial::run(&TrialRun {
        id: args.id,
        db: args.ledger.url(),
        device: args.device,
        checkpoint_minutes: args.checkpoint_minutes,
        progress: args.progress,
        artifacts: args.artifacts.root(),
        cache_root: CacheArgs::default().root(),
        skip_if_taken: args.skip_if_taken,
    })
}

pub fn worker(args: WorkerArgs) -> Result<ExitCode> {
    let sweep = args.profile.sweep_opt(args.sweep.as_deref())?;
    let ledger = Ledger::open(&args.ledger.url())?;
    let artifacts = args.artifacts.root();
    if crate::store::is_postgres(&ledger.url) {
        warn_if_node_local(&artifacts);
    }
    let mut worker = Worker {
        device: args.device,
        retries: args.retries,
        checkpoint_minutes: args.checkpoint_minutes,
        poll_seconds: args.poll_seconds,
        artifacts,
    };
    super::drain(
        &mut worker,
        &ledger,
        sweep.as_deref(),
        &CacheArgs::default().root(),
    )
}

/// Workers on several machines share one ledger, so they must share the artifacts root too: a
/// trial resumed elsewhere needs its checkpoint, `eval`/`generate --trial` need its model. Only a
/// warning, since workers on one machine (or a re-exported disk) are fine.
fn warn_if_node_local(root: &Path) {
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

pub fn cancel(args: CancelArgs) -> Result<ExitCode> {
    let sweep = args.profile.sweep(&args.sweep)?;
    let ledger = Ledger::open(&args.ledger.url())?;
    super::slurm::cancel(&ledger, &sweep)
}
