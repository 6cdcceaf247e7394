//! Run sweeps: `sweep plan`, `sweep run`, `sweep status` and the per-trial child `sweep trial run`.
//!
//! `sweep run` records the sweep, then runs each unfinished trial in its own child process
//! (`sweep trial run ID --db URL`), `--jobs` at a time, so a crash, OOM or panic in one trial marks
//! only that trial `failed`. The child claims its trial atomically in the ledger, writes metrics
//! through a buffered background writer (batched transactions every [`FLUSH_ROWS`] rows or
//! [`FLUSH_SECS`] seconds, so a training step never waits for the database) and a heartbeat every
//! [`HEARTBEAT_SECS`] seconds. A `running` trial whose worker process is gone (same host: its pid is
//! dead; other hosts: no heartbeat for [`STALE_SECS`]) is marked `interrupted` by the next
//! `sweep run`, which resumes it from its checkpoint. Ctrl-C: stop starting trials, ask children to
//! checkpoint and stop (SIGINT -> the trainer's cancel flag), exit 130; a second Ctrl-C kills them.

use crate::config;
use crate::error::UsageError;
use crate::plan::{self, human_secs, label_text, PlannedTrial};
use crate::store::{
    self, NewMetric, NewSweep, NewTrial, Outcome, Store, TrialRecord, TrialResults, TrialState,
};
use crate::train::{self, MetricRow, MetricSink, RunContext, TrialEnd};
use crate::trial::TrialConfig;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Metric rows buffered before a write.
pub const FLUSH_ROWS: usize = 256;
/// Longest time a metric row waits in the buffer.
pub const FLUSH_SECS: f64 = 2.0;
/// Heartbeat period of a running trial.
pub const HEARTBEAT_SECS: f64 = 5.0;
/// A running trial on another host without a heartbeat for this long is considered dead.
pub const STALE_SECS: i64 = 60;
/// Exit status of `sweep trial run` when the trial is not claimable (running elsewhere or done);
/// `--skip-if-taken` (Slurm array tasks) exits 0 instead.
pub const EXIT_NOT_CLAIMED: u8 = 75;

#[derive(Args, Debug, Clone)]
pub struct LedgerArgs {
    /// Ledger database URL (`sqlite://PATH` or a path; default results/sweep.db).
    #[arg(long, env = "SWEEP_DB")]
    pub db: Option<String>,
}

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
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub sweep: SweepFileArgs,
    #[command(flatten)]
    pub ledger: LedgerArgs,
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
    #[command(flatten)]
    pub cluster: crate::slurm::ExecutorArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// A sweep name (as recorded: `name`, or `name@profile` when run with --profile).
    pub sweep: Option<String>,
    #[command(flatten)]
    pub ledger: LedgerArgs,
    #[command(flatten)]
    pub artifacts: crate::artifacts::ArtifactsArgs,
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
    pub artifacts: crate::artifacts::ArtifactsArgs,
    /// Exit 0 instead of 75 when the trial is already done or run by a live worker elsewhere:
    /// a Slurm array task with nothing to do has succeeded (Slurm would list 75 as FAILED).
    #[arg(long)]
    pub skip_if_taken: bool,
}

pub(crate) fn open_store(ledger: &LedgerArgs) -> Result<(String, Arc<dyn Store>)> {
    let url = store::resolve_url(ledger.db.as_deref());
    let s = store::open(&url)?;
    Ok((url, Arc::from(s)))
}

/// The ledger name of a sweep: the file's name, suffixed `@profile` when a profile is applied, so
/// that the quick and full versions of an experiment are kept apart.
/// The ledger rows of planned trials (what `record_sweep` takes), for every executor.
pub(crate) fn ledger_trials(planned: &[crate::plan::PlannedTrial]) -> Result<Vec<NewTrial>> {
    planned
        .iter()
        .map(|p| -> Result<NewTrial> {
            Ok(NewTrial {
                hash: p.identity.hash.clone(),
                config: serde_json::to_value(p.config())?,
                label: Json::Object(p.resolved.label.clone()),
                is_baseline: p.resolved.is_baseline,
            })
        })
        .collect()
}

pub fn ledger_name(sweep: &config::Sweep) -> String {
    match &sweep.profile {
        Some(p) => format!("{}@{p}", sweep.name),
        None => sweep.name.clone(),
    }
}

fn cache_root() -> PathBuf {
    crate::data::default_cache_root()
}

/// The ledger row of a sweep file (`spec`: its spec JSON, which executors may annotate).
pub(crate) fn new_sweep(sweep: &config::Sweep, spec: Json) -> NewSweep {
    NewSweep {
        name: ledger_name(sweep),
        title: sweep.title.clone(),
        description: sweep.description.clone(),
        file: Some(sweep.file.display().to_string()),
        profile: sweep.profile.clone(),
        kind: sweep.kind.as_str().to_string(),
        spec,
    }
}

pub(crate) fn load_and_identify(
    args: &SweepFileArgs,
) -> Result<(config::Sweep, Vec<PlannedTrial>)> {
    let sweep = config::load(&args.file, args.profile.as_deref(), &args.sets)?;
    let planned = plan::identify(&sweep, &cache_root())?;
    Ok((sweep, planned))
}

/// `writeln!` into a String buffer (formatting into a String cannot fail).
macro_rules! outln {
    ($o:ident, $($t:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($o, $($t)*);
    }};
}

/// Print a command's output; a closed pipe (`sweep status | head`) is not an error.
fn write_stdout(text: &str) -> Result<ExitCode> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

// ---------------------------------------------------------------------------------------------
// sweep plan

/// Throughput of the most recent completed trial of the same shape, from the ledger.
fn known_throughput(done: &[TrialRecord], cfg: &TrialConfig) -> Option<f64> {
    done.iter()
        .rev()
        .filter(|t| {
            serde_json::from_value::<TrialConfig>(t.config.clone())
                .map(|c| {
                    c.model == cfg.model
                        && c.block_size == cfg.block_size
                        && c.n_layer == cfg.n_layer
                        && c.n_embd == cfg.n_embd
                        && c.tokenizer == cfg.tokenizer
                })
                .unwrap_or(false)
        })
        .find_map(|t| t.results.tokens_per_s.filter(|v| *v > 0.0))
}

pub fn plan_cmd(args: PlanArgs) -> Result<ExitCode> {
    let mut out = String::new();
    let (sweep, planned) = load_and_identify(&args.sweep)?;
    // Read the ledger only if it exists: planning writes nothing.
    let url = store::resolve_url(args.ledger.db.as_deref());
    let db_file = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(&url);
    let ledger: Option<Box<dyn Store>> = if Path::new(db_file).is_file() {
        Some(store::open(&url)?)
    } else {
        None
    };
    let done: Vec<TrialRecord> = match &ledger {
        Some(s) => s.trials_in_state(TrialState::Completed)?,
        None => Vec::new(),
    };
    outln!(
        out,
        "sweep {} ({}, {} trials{})",
        ledger_name(&sweep),
        sweep.kind.as_str(),
        planned.len(),
        sweep
            .title
            .as_ref()
            .map(|t| format!(": {t}"))
            .unwrap_or_default()
    );
    outln!(
        out,
        "{:>3}  {:<40} {:<12} {:<11} {:>12} {:>8} {:>9}",
        "#",
        "trial",
        "hash",
        "state",
        "tok/epoch",
        "steps",
        "est. time"
    );
    let mut total_est = 0.0;
    let mut unknown_est = 0;
    for (i, p) in planned.iter().enumerate() {
        let state = match &ledger {
            Some(s) => match s.trial_by_hash(&p.identity.hash)? {
                Some(t) if t.state == TrialState::Completed => "done".to_string(),
                Some(t) => t.state.to_string(),
                None => "new".to_string(),
            },
            None => "new".to_string(),
        };
        let info = if p.identity.data_error.is_none() {
            train::plan_info(p.config(), &cache_root()).ok()
        } else {
            None
        };
        let (tokens, steps) = match &info {
            Some(i) => (i.train_tokens.to_string(), i.total_steps.to_string()),
            None => ("?".into(), "?".into()),
        };
        let est = match (&info, known_throughput(&done, p.config())) {
            (Some(i), Some(tps)) => {
                let c = p.config();
                let toks =
                    i.total_steps as f64 * (c.batch_size * c.grad_accum * c.block_size) as f64;
                let secs = toks / tps;
                if state != "done" {
                    total_est += secs;
                }
                human_secs(secs)
            }
            _ => {
                if state != "done" {
                    unknown_est += 1;
                }
                "-".into()
            }
        };
        let mut label = label_text(&Json::Object(p.resolved.label.clone()));
        if p.resolved.is_baseline {
            label.push('*');
        }
        outln!(
            out,
            "{:>3}  {:<40} {:<12} {:<11} {:>12} {:>8} {:>9}",
            i + 1,
            label,
            p.short_hash(),
            state,
            tokens,
            steps,
            est
        );
        if let Some(e) = &p.identity.data_error {
            outln!(out, "     data problem (the trial will fail when run): {e}");
        }
    }
    if let Some(p) = planned.iter().find(|p| {
        train::pretrain::needs_pretraining(
            p.config(),
            &cache_root(),
            &p.identity.data_hash,
            &p.identity.tokenizer_id,
        )
    }) {
        outln!(
            out,
            "note: the first trial pretrains {} locally once ({} tokens of the training split; \
             ~4 minutes for gpt2-tiny on 2 CPU cores), not counted in the estimates",
            p.config().model,
            train::pretrain::PRETRAIN_TOKENS
        );
    }
    if total_est > 0.0 {
        outln!(
            out,
            "estimated time for unfinished trials: {}{} (one job)",
            human_secs(total_est),
            if unknown_est > 0 {
                format!(" + {unknown_est} trials of unknown throughput")
            } else {
                String::new()
            }
        );
    }
    write_stdout(&out)
}

// ---------------------------------------------------------------------------------------------
// sweep status

pub fn status_cmd(args: StatusArgs) -> Result<ExitCode> {
    let mut out = String::new();
    let (_, s) = open_store(&args.ledger)?;
    match &args.sweep {
        None => {
            let sweeps = s.sweeps()?;
            if sweeps.is_empty() {
                outln!(
                    out,
                    "no sweeps recorded yet; start one with `sweep run FILE`"
                );
            }
            outln!(
                out,
                "{:<28} {:<9} {:>6} {:>5} {:>5} {:>5} {:>5} {:>11}  updated",
                "sweep",
                "kind",
                "trials",
                "done",
                "run",
                "fail",
                "todo",
                "best v.ppl"
            );
            for sw in sweeps {
                let trials = s.sweep_trials(sw.id)?;
                let count = |f: &dyn Fn(TrialState) -> bool| {
                    trials.iter().filter(|t| f(t.trial.state)).count()
                };
                let best = trials
                    .iter()
                    .filter_map(|t| t.trial.results.valid_ppl)
                    .fold(f64::INFINITY, f64::min);
                outln!(
                    out,
                    "{:<28} {:<9} {:>6} {:>5} {:>5} {:>5} {:>5} {:>11}  {}",
                    sw.name,
                    sw.kind.as_deref().unwrap_or("-"),
                    trials.len(),
                    count(&|st| st.is_done()),
                    count(&|st| st == TrialState::Running),
                    count(&|st| st == TrialState::Failed),
                    count(&|st| matches!(st, TrialState::Pending | TrialState::Interrupted)),
                    if best.is_finite() {
                        format!("{best:.3}")
                    } else {
                        "-".into()
                    },
                    sw.updated_at
                );
            }
        }
        Some(name) => {
            let Some(sw) = s.sweep_by_name(name)? else {
                let names: Vec<String> = s.sweeps()?.into_iter().map(|s| s.name).collect();
                return Err(UsageError(format!(
                    "sweep {name}: not in the ledger; fix: use one of: {}",
                    if names.is_empty() {
                        "(none recorded)".into()
                    } else {
                        names.join(", ")
                    }
                ))
                .into());
            };
            outln!(
                out,
                "sweep {} ({})",
                sw.name,
                sw.file.as_deref().unwrap_or("-")
            );
            outln!(
                out,
                "{:>3}  {:<36} {:<12} {:<11} {:>3} {:>14} {:>9} {:>9}  note",
                "#",
                "trial",
                "hash",
                "state",
                "try",
                "progress",
                "valid ppl",
                "tok/s"
            );
            let root = args.artifacts.root();
            let mut missing = Vec::new();
            for st in s.sweep_trials(sw.id)? {
                let t = &st.trial;
                if t.state == TrialState::Completed && t.artifact_dir.is_some() {
                    let (dir, found) =
                        crate::artifacts::model_dir(&root, t.artifact_dir.as_deref(), &t.hash);
                    if !found {
                        missing.push(format!("trial {} (looked in {})", t.id, dir.display()));
                    }
                }
                let last = s.last_metric(t.id, "train")?;
                let progress = match (&last, t.state) {
                    (_, TrialState::Completed) => "done".to_string(),
                    (Some(m), _) => format!("step {} ep {:.2}", m.step, m.epoch),
                    (None, _) => "-".into(),
                };
                let mut note = t.error.clone().unwrap_or_default();
                if t.state == TrialState::Running {
                    note = format!("worker {}", t.worker.as_deref().unwrap_or("?"));
                    if let Some(age) = t.heartbeat_at.as_deref().and_then(age_secs) {
                        note.push_str(&format!(", heartbeat {}s ago", age));
                    }
                }
                let note: String = note.lines().next().unwrap_or("").chars().take(80).collect();
                let mut label = label_text(&st.label);
                if st.is_baseline {
                    label.push('*');
                }
                outln!(
                    out,
                    "{:>3}  {:<36} {:<12} {:<11} {:>3} {:>14} {:>9} {:>9}  {}",
                    st.position + 1,
                    label,
                    t.short_hash(),
                    t.state.as_str(),
                    t.attempts,
                    progress,
                    t.results
                        .valid_ppl
                        .map(|v| format!("{v:.3}"))
                        .unwrap_or("-".into()),
                    t.results
                        .tokens_per_s
                        .map(|v| format!("{v:.0}"))
                        .unwrap_or("-".into()),
                    note
                );
            }
            if !missing.is_empty() {
                outln!(
                    out,
                    "\nartifacts root {}: no exported model for {}; fix: pass --artifacts DIR (or \
                     SWEEP_ARTIFACTS) naming the directory that holds trials/ now",
                    root.display(),
                    missing.join(", ")
                );
            }
            // Slurm job states beside the trial states, when the sweep was submitted (issue 7).
            out.push_str(&crate::slurm::status_section(&sw.spec));
        }
    }
    write_stdout(&out)
}

fn age_secs(ts: &str) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(ts).ok()?;
    Some((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
}

// ---------------------------------------------------------------------------------------------
// process helpers

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// `host:pid`, the identity of a trial worker process.
fn worker_id(pid: u32) -> String {
    format!("{}:{pid}", hostname())
}

fn pid_alive(pid: i32) -> bool {
    // A killed worker whose parent died too lingers as a zombie until init reaps it: dead.
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        if let Some(state) = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
        {
            return !matches!(state, 'Z' | 'X');
        }
    }
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Is the worker of a `running` trial gone? Same host: its pid is dead. Other hosts: stale heartbeat.
fn worker_dead(t: &TrialRecord) -> bool {
    let host = hostname();
    if let Some((h, pid)) = t.worker.as_deref().and_then(|w| w.rsplit_once(':')) {
        if h == host {
            if let Ok(pid) = pid.parse::<i32>() {
                return !pid_alive(pid);
            }
        }
    }
    match t.heartbeat_at.as_deref().and_then(age_secs) {
        Some(age) => age > STALE_SECS,
        None => true,
    }
}

/// Mark trials whose worker died `interrupted` (so they resume from their checkpoint).
pub(crate) fn recover_dead(s: &dyn Store, ids: &[i64]) -> Result<usize> {
    let mut n = 0;
    for t in s.trials_in_state(TrialState::Running)? {
        if ids.contains(&t.id) && worker_dead(&t) {
            let worker = t.worker.clone().unwrap_or_default();
            if s.finish_trial(
                t.id,
                &worker,
                &Outcome::Interrupted {
                    error: Some(format!(
                        "worker {worker} is gone; resuming from its checkpoint"
                    )),
                },
            )? {
                n += 1;
            }
        }
    }
    Ok(n)
}

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal_parent(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

static FIRST_SIGNAL_MS: AtomicU64 = AtomicU64::new(0);

fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime is async-signal-safe and writes only into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

extern "C" fn on_signal_child(_: libc::c_int) {
    // A Ctrl-C reaches the child twice (from the terminal and forwarded by `sweep run`), so a
    // signal within a second of the first is the same request. A later one ends the trial at once
    // (the parent then marks it interrupted; it resumes from its last checkpoint).
    let now = monotonic_ms().max(1);
    let first = FIRST_SIGNAL_MS.load(Ordering::SeqCst);
    if first == 0 {
        FIRST_SIGNAL_MS.store(now, Ordering::SeqCst);
        SIGNALS.fetch_add(1, Ordering::SeqCst);
    } else if now.saturating_sub(first) > 1000 {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

fn install_signals(handler: extern "C" fn(libc::c_int)) {
    // SIGUSR1: Slurm's warning before a time limit or preemption (`--signal=B:USR1@120`).
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1] {
        // SAFETY: the handlers only touch an atomic (and _exit).
        unsafe {
            libc::signal(sig, handler as usize as libc::sighandler_t);
        }
    }
}

fn send_signal(pid: u32, sig: libc::c_int) {
    // SAFETY: plain kill(2) on our own child.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

// ---------------------------------------------------------------------------------------------
// sweep trial run: the child

/// What the trainer sends the metric writer.
enum ToWriter {
    Row(NewMetric),
    /// Write everything buffered now, then reply (no reply if writing failed for good).
    Flush(mpsc::Sender<()>),
    Stop,
}

/// A [`MetricSink`] that hands rows to a background writer, so training never waits for the
/// database. The writer also sends heartbeats and raises `cancel` if the trial was taken away.
pub struct StoreSink {
    tx: Option<mpsc::Sender<ToWriter>>,
    handle: Option<std::thread::JoinHandle<Result<u64>>>,
    failed: Arc<Mutex<Option<String>>>,
}

impl StoreSink {
    pub fn spawn(
        store: Arc<dyn Store>,
        trial_id: i64,
        worker: String,
        cancel: Arc<AtomicBool>,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<ToWriter>();
        let failed = Arc::new(Mutex::new(None));
        let failed2 = failed.clone();
        let handle = std::thread::Builder::new()
            .name("sweep-metrics".into())
            .spawn(move || -> Result<u64> {
                let mut buf: Vec<NewMetric> = Vec::new();
                let mut written = 0u64;
                let mut last_flush = Instant::now();
                let mut last_beat = Instant::now();
                let mut failures = 0;
                let mut done = false;
                let mut acks: Vec<mpsc::Sender<()>> = Vec::new();
                while !done {
                    let wait = Duration::from_secs_f64(FLUSH_SECS.min(HEARTBEAT_SECS) / 4.0);
                    match rx.recv_timeout(wait) {
                        Ok(ToWriter::Row(row)) => buf.push(row),
                        Ok(ToWriter::Flush(ack)) => acks.push(ack),
                        Ok(ToWriter::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                            done = true
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                    }
                    let due = buf.len() >= FLUSH_ROWS
                        || last_flush.elapsed().as_secs_f64() >= FLUSH_SECS
                        || !acks.is_empty()
                        || done;
                    if due && !buf.is_empty() {
                        match store.insert_metrics(trial_id, &buf) {
                            Ok(n) => {
                                written += n;
                                buf.clear();
                                failures = 0;
                            }
                            Err(e) => {
                                failures += 1;
                                if failures >= 5 || done {
                                    let msg = format!("writing metrics to the ledger: {e:#}");
                                    *failed2.lock().unwrap_or_else(|p| p.into_inner()) =
                                        Some(msg.clone());
                                    cancel.store(true, Ordering::SeqCst);
                                    anyhow::bail!(msg);
                                }
                            }
                        }
                        last_flush = Instant::now();
                    }
                    if buf.is_empty() {
                        for ack in acks.drain(..) {
                            let _ = ack.send(());
                        }
                    }
                    if last_beat.elapsed().as_secs_f64() >= HEARTBEAT_SECS && !done {
                        last_beat = Instant::now();
                        match store.heartbeat(trial_id, &worker) {
                            // Another worker owns the trial now: stop training.
                            Ok(false) => cancel.store(true, Ordering::SeqCst),
                            Ok(true) => {}
                            Err(e) => eprintln!("warning: heartbeat failed: {e:#}"),
                        }
                    }
                }
                Ok(written)
            })
            .expect("spawning the metric writer thread");
        Self {
            tx: Some(tx),
            handle: Some(handle),
            failed,
        }
    }

    /// Flush everything and stop the writer; returns the number of new rows written.
    pub fn finish(mut self) -> Result<u64> {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(ToWriter::Stop);
        }
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| anyhow::anyhow!("the metric writer thread panicked"))?,
            None => Ok(0),
        }
    }
}

impl MetricSink for StoreSink {
    fn record(&mut self, row: &MetricRow) -> Result<()> {
        if let Some(msg) = self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            anyhow::bail!(msg);
        }
        let row = NewMetric {
            step: row.step as i64,
            epoch: row.epoch,
            split: row.split.clone(),
            loss: row.loss,
            ppl: row.ppl,
            tokens_seen: row.tokens_seen as i64,
            lr: row.lr,
            tokens_per_s: row.tokens_per_s,
        };
        if let Some(tx) = &self.tx {
            tx.send(ToWriter::Row(row))
                .map_err(|_| anyhow::anyhow!("the metric writer stopped"))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let Some(tx) = &self.tx else {
            return Ok(());
        };
        let (ack, written) = mpsc::channel();
        let sent = tx.send(ToWriter::Flush(ack)).is_ok();
        if sent && written.recv().is_ok() {
            return Ok(());
        }
        let failed = self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        anyhow::bail!(failed.unwrap_or_else(|| "the metric writer stopped".into()))
    }
}

pub fn trial_cmd(cmd: TrialCommand) -> Result<ExitCode> {
    match cmd {
        TrialCommand::Run(args) => trial_run(args),
    }
}

fn trial_run(args: TrialRunArgs) -> Result<ExitCode> {
    let (_, s) = open_store(&args.ledger)?;
    let Some(t) = s.trial(args.id)? else {
        return Err(UsageError(format!(
            "trial {}: not in the ledger; fix: see `sweep status SWEEP` for ids",
            args.id
        ))
        .into());
    };
    let cfg: TrialConfig = serde_json::from_value(t.config.clone())
        .with_context(|| format!("trial {}: its config in the ledger does not parse", t.id))?;
    let worker = worker_id(std::process::id());
    let cancel = Arc::new(AtomicBool::new(false));
    install_signals(on_signal_child);
    // A runner that died (node failure, SIGKILL) leaves the trial `running`: take it over rather
    // than report it as run by someone else (a task that exits "nothing to do" must be right).
    if t.state == TrialState::Running && recover_dead(&*s, &[t.id])? > 0 {
        eprintln!(
            "trial {}: its worker {} is gone; resuming it here",
            t.id,
            t.worker.as_deref().unwrap_or("?")
        );
    }
    let Some(t) = s.claim_trial(t.id, &worker, &args.device)? else {
        let now = s.trial(args.id)?.unwrap_or(t);
        let who = now
            .worker
            .as_deref()
            .map(|w| format!(" by worker {w}"))
            .unwrap_or_default();
        let taken = now.state == TrialState::Running || now.state.is_done();
        if args.skip_if_taken && taken {
            // Expected for a trial shared by several job arrays (a common baseline): the first
            // task to claim it trains it; the others have nothing to do, which is success.
            let what = if now.state == TrialState::Running {
                format!("is being run{who}")
            } else {
                format!("is already {}", now.state)
            };
            eprintln!(
                "sweep: trial {} {what}; nothing to do for this task (exit 0)",
                args.id
            );
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "trial {} is {}{}; not running it",
            args.id,
            now.state,
            now.worker
                .as_deref()
                .map(|w| format!(" (worker {w})"))
                .unwrap_or_default()
        );
        return Ok(ExitCode::from(EXIT_NOT_CLAIMED));
    };
    // Copy signal arrivals into the trainer's cancel flag.
    let watcher = {
        let cancel = cancel.clone();
        std::thread::spawn(move || loop {
            if SIGNALS.load(Ordering::SeqCst) > 0 {
                cancel.store(true, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(100));
        })
    };
    drop(watcher);
    let work_dir = crate::artifacts::trial_dir(&args.artifacts.root(), &t.hash);
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    let ctx = RunContext {
        work_dir: work_dir.clone(),
        cache_root: cache_root(),
        device: args.device.clone(),
        cancel: cancel.clone(),
        progress: args.progress,
        checkpoint_minutes: args.checkpoint_minutes,
    };
    let outcome = run_claimed(&s, &t, &cfg, &ctx, &worker);
    let (outcome, code) = match outcome {
        Ok(o) => o,
        Err(e) => (
            Outcome::Failed {
                error: format!("{e:#}"),
                exit_status: Some(1),
            },
            1,
        ),
    };
    if let Outcome::Failed { error, .. } = &outcome {
        eprintln!("trial {} failed: {error}", t.id);
    }
    if !s.finish_trial(t.id, &worker, &outcome)? {
        eprintln!(
            "trial {}: the ledger no longer lists this worker as its runner; result not recorded",
            t.id
        );
    }
    Ok(ExitCode::from(code))
}

fn run_claimed(
    s: &Arc<dyn Store>,
    t: &TrialRecord,
    cfg: &TrialConfig,
    ctx: &RunContext,
    worker: &str,
) -> Result<(Outcome, u8)> {
    let ident = plan::Identifier::new(&ctx.cache_root).identify(cfg)?;
    if let Some(e) = &ident.data_error {
        anyhow::bail!("{e}");
    }
    let mut env = train::environment(ctx);
    if let Some(m) = env.as_object_mut() {
        m.insert("seed".into(), json!(cfg.seed));
        m.insert("data_manifest_hash".into(), json!(ident.data_hash));
        m.insert("tokenizer_id".into(), json!(ident.tokenizer_id));
        m.insert("config".into(), t.config.clone());
        m.insert("worker".into(), json!(worker));
        m.insert("identity_hash".into(), json!(ident.hash));
        if ident.hash != t.hash {
            m.insert(
                "identity_changed".into(),
                json!("the data or tokenizer changed since the trial was recorded"),
            );
        }
    }
    // The trainer resumes from `work_dir/checkpoint` when present; record from where.
    let state = ctx.work_dir.join("checkpoint").join("state.json");
    if let Some(step) = std::fs::read(&state)
        .ok()
        .and_then(|b| serde_json::from_slice::<Json>(&b).ok())
        .and_then(|v| v.get("step").and_then(Json::as_u64))
    {
        eprintln!(
            "trial {}: resuming from its checkpoint at step {step}",
            t.id
        );
        if let Some(m) = env.as_object_mut() {
            m.insert("resumed_from_step".into(), json!(step));
        }
    }
    s.set_env(t.id, &env)?;
    let mut sink = StoreSink::spawn(s.clone(), t.id, worker.to_string(), ctx.cancel.clone());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train::run_trial(cfg, ctx, &mut sink)
    }));
    let flushed = sink.finish();
    let end = match result {
        Ok(r) => r?,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            anyhow::bail!("the trainer panicked: {msg}");
        }
    };
    flushed?;
    if let TrialEnd::Completed(m) = &end {
        // The time split that the orchestration-overhead measurement needs (bench/RESULTS.md).
        let mut env = env.clone();
        env["timing"] = serde_json::json!({
            "wall_seconds": m.wall_seconds,
            "train_seconds": m.train_seconds,
            "eval_seconds": m.eval_seconds,
        });
        s.set_env(t.id, &env)?;
    }
    Ok(match end {
        TrialEnd::Completed(m) => (
            Outcome::Completed {
                results: TrialResults {
                    wall_seconds: Some(m.wall_seconds),
                    train_seconds: Some(m.train_seconds),
                    tokens_per_s: Some(m.tokens_per_s),
                    peak_rss_bytes: Some(m.peak_rss_bytes as i64),
                    train_loss: Some(m.train_loss),
                    valid_loss: Some(m.valid_loss),
                    test_loss: Some(m.test_loss),
                    train_ppl: Some(m.train_ppl),
                    valid_ppl: Some(m.valid_ppl),
                    test_ppl: Some(m.test_ppl),
                    valid_loss_fixed: m.valid_loss_fixed,
                },
                // Relative to the artifacts root, so the ledger survives a moved root.
                artifact_dir: Some(crate::artifacts::relative_dir(&t.hash)),
            },
            0,
        ),
        TrialEnd::Diverged { step } => (
            Outcome::Diverged {
                error: format!("loss diverged (non-finite) at step {step}"),
            },
            0,
        ),
        TrialEnd::Interrupted => (Outcome::Interrupted { error: None }, 130),
    })
}

// ---------------------------------------------------------------------------------------------
// sweep run: the parent

struct Running {
    child: Child,
    trial: TrialRecord,
    slot: usize,
    bar: ProgressBar,
    total_steps: Option<u64>,
    log: PathBuf,
}

enum Display {
    Bars {
        multi: MultiProgress,
        sweep: ProgressBar,
    },
    Lines {
        last: Instant,
    },
}

/// The last line of a trial's log, cut to fit a progress line.
fn last_log_line(path: &Path) -> String {
    let line = tail_of(path, 1);
    match line.char_indices().nth(100) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line,
    }
}

fn tail_of(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

pub fn run_cmd(args: RunArgs) -> Result<ExitCode> {
    if args.cluster.is_slurm() {
        return crate::slurm::submit(args);
    }
    if args.jobs == 0 {
        return Err(UsageError("--jobs 0: fix: use --jobs 1 or more".into()).into());
    }
    let devices: Vec<String> = args
        .devices
        .split(',')
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect();
    for d in &devices {
        // Every device is checked before the ledger is touched: a sweep on a missing GPU fails
        // once, here, rather than failing each of its trials.
        let flag = format!("--devices {}", args.devices);
        crate::backend::DeviceSpec::parse(d)
            .map_err(|e| UsageError(format!("{flag}: {e}")))?
            .check(&flag)?;
    }
    if devices.is_empty() {
        return Err(UsageError("--devices: empty; fix: use cpu or cuda:0,cuda:1".into()).into());
    }
    // Validate and identify everything before touching the ledger.
    let (sweep, planned) = load_and_identify(&args.sweep)?;
    if devices.iter().all(|d| d == "cpu") {
        let half = planned.iter().find_map(|t| {
            t.config()
                .precision
                .filter(|p| *p != crate::model::Precision::F32)
        });
        if let Some(p) = half {
            return Err(UsageError(format!(
                "{}: precision = \"{}\" autocasts matmuls on a GPU; fix: --devices cuda:0 (a \
                 `--features cuda` build), or --set precision=f32 to run on the CPU",
                sweep.file.display(),
                p.as_str()
            ))
            .into());
        }
    }
    let (url, s) = open_store(&args.ledger)?;
    let name = ledger_name(&sweep);
    let new_trials = ledger_trials(&planned)?;
    let recorded = s.record_sweep(&new_sweep(&sweep, sweep.spec_json()), &new_trials)?;
    let ids = recorded.trial_ids.clone();
    let recovered = recover_dead(&*s, &ids)?;
    // Children get the root explicitly: the ledger records their artifacts relative to it.
    let artifacts = crate::artifacts::root(args.cluster.artifacts.as_deref());
    if args.force {
        for id in &ids {
            if let Some(t) = s.trial(*id)? {
                if t.state != TrialState::Running && s.reset_trial(*id)? {
                    let dir = crate::artifacts::trial_dir(&artifacts, &t.hash);
                    if dir.exists() {
                        std::fs::remove_dir_all(&dir)
                            .with_context(|| format!("removing {}", dir.display()))?;
                    }
                }
            }
        }
    }
    let tty = std::io::stderr().is_terminal();
    let total = ids.len();
    let mut done = 0usize;
    let mut queue: Vec<i64> = Vec::new();
    for id in &ids {
        match s.trial(*id)? {
            Some(t) if t.state.is_done() => done += 1,
            Some(_) => queue.push(*id),
            None => {}
        }
    }
    eprintln!(
        "sweep {name}: {total} trials ({} already done, {} new in the ledger{}), {} to run, {} job(s), ledger {url}",
        done,
        recorded.created,
        if recovered > 0 { format!(", {recovered} interrupted by a dead worker") } else { String::new() },
        queue.len(),
        args.jobs
    );
    install_signals(on_signal_parent);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let threads = (cores / args.jobs).max(1);
    let mut display = if tty {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let bar = multi.add(ProgressBar::new(total as u64));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>8} [{bar:30}] {pos}/{len} trials  {elapsed} (ETA {eta}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix("sweep");
        bar.set_position(done as u64);
        Display::Bars { multi, sweep: bar }
    } else {
        Display::Lines {
            last: Instant::now(),
        }
    };
    let exe = std::env::current_exe().context("locating the sweep executable")?;
    let mut running: Vec<Running> = Vec::new();
    let mut waiting: Vec<i64> = Vec::new(); // running elsewhere
    let mut tries: HashMap<i64, usize> = HashMap::new();
    let mut failed: Vec<(i64, String)> = Vec::new();
    let mut stopping = false;
    let mut killed = false;
    let mut fail_stop = false;
    let mut last_poll = Instant::now() - Duration::from_secs(10);
    loop {
        let sig = SIGNALS.load(Ordering::SeqCst);
        if sig >= 1 && !stopping {
            stopping = true;
            eprintln!("interrupt: not starting more trials; asking running trials to checkpoint and stop (Ctrl-C again to kill)");
            for r in &running {
                send_signal(r.child.id(), libc::SIGINT);
            }
        }
        if sig >= 2 && !killed {
            killed = true;
            for r in &mut running {
                let _ = r.child.kill();
            }
        }
        // Start trials.
        while !stopping && !fail_stop && running.len() < args.jobs && !queue.is_empty() {
            let id = queue.remove(0);
            let Some(t) = s.trial(id)? else { continue };
            if t.state.is_done() {
                done += 1;
                continue;
            }
            if t.state == TrialState::Running {
                waiting.push(id);
                continue;
            }
            let used: Vec<usize> = running.iter().map(|r| r.slot).collect();
            let slot = (0..args.jobs).find(|k| !used.contains(k)).unwrap_or(0);
            let device = devices[slot % devices.len()].clone();
            let dir = crate::artifacts::trial_dir(&artifacts, &t.hash);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let log = dir.join("trial.log");
            let open_log = || {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
            };
            let out = open_log().with_context(|| format!("opening {}", log.display()))?;
            let err = open_log()?;
            let child = Command::new(&exe)
                .args([
                    "trial",
                    "run",
                    &id.to_string(),
                    "--db",
                    &url,
                    "--device",
                    &device,
                ])
                .args(["--checkpoint-minutes", &args.checkpoint_minutes.to_string()])
                .arg("--artifacts")
                .arg(&artifacts)
                .env("RAYON_NUM_THREADS", threads.to_string())
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .with_context(|| format!("starting trial {id}"))?;
            let cfg: Option<TrialConfig> = serde_json::from_value(t.config.clone()).ok();
            let total_steps = cfg
                .as_ref()
                .and_then(|c| train::plan_info(c, &cache_root()).ok())
                .map(|i| i.total_steps);
            let label = recorded
                .trial_ids
                .iter()
                .position(|x| *x == id)
                .map(|i| label_text(&new_trials[i].label))
                .unwrap_or_default();
            let bar = match &display {
                Display::Bars { multi, .. } => {
                    let b = multi.add(match total_steps {
                        Some(n) => ProgressBar::new(n),
                        None => ProgressBar::no_length(),
                    });
                    b.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>8} [{bar:30}] {pos}/{len} steps  {elapsed} (ETA {eta}) {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    b.set_prefix(t.short_hash()[..8].to_string());
                    b.set_message(label.clone());
                    b
                }
                Display::Lines { .. } => {
                    eprintln!(
                        "start trial {id} [{}] {label} on {device} ({threads} threads)",
                        t.short_hash()
                    );
                    ProgressBar::hidden()
                }
            };
            *tries.entry(id).or_default() += 1;
            running.push(Running {
                child,
                trial: t,
                slot,
                bar,
                total_steps,
                log,
            });
        }
        // Reap finished children.
        let mut i = 0;
        while i < running.len() {
            let status = running[i].child.try_wait()?;
            let Some(status) = status else {
                i += 1;
                continue;
            };
            let r = running.remove(i);
            r.bar.finish_and_clear();
            let id = r.trial.id;
            let worker = worker_id(r.child.id());
            let code = status.code();
            let mut t = s.trial(id)?.context("trial vanished from the ledger")?;
            if code == Some(EXIT_NOT_CLAIMED as i32) {
                waiting.push(id);
                continue;
            }
            if t.state == TrialState::Running && t.worker.as_deref() == Some(worker.as_str()) {
                // The child died without recording an end: crash, OOM kill, abort, or our kill.
                use std::os::unix::process::ExitStatusExt;
                let how = match (code, status.signal()) {
                    (_, Some(sig)) => format!("the trial process was killed by signal {sig}"),
                    (Some(c), _) => format!("the trial process exited with status {c}"),
                    _ => "the trial process ended".into(),
                };
                let outcome = if killed {
                    Outcome::Interrupted {
                        error: Some("killed by a second Ctrl-C".into()),
                    }
                } else if stopping {
                    // Asked to stop (one Ctrl-C, SIGTERM or SIGUSR1) and gone before recording
                    // an end: say what ended it rather than blaming a second Ctrl-C.
                    Outcome::Interrupted {
                        error: Some(format!(
                            "{how} while the sweep was stopping, before recording its end; it \
                             resumes from its last checkpoint"
                        )),
                    }
                } else {
                    let tail = tail_of(&r.log, 5);
                    Outcome::Failed {
                        error: if tail.is_empty() {
                            how
                        } else {
                            format!("{how}; log tail:\n{tail}")
                        },
                        exit_status: Some(
                            code.map(i64::from)
                                .unwrap_or(128 + status.signal().unwrap_or(0) as i64),
                        ),
                    }
                };
                s.finish_trial(id, &worker, &outcome)?;
                t = s.trial(id)?.context("trial vanished from the ledger")?;
            }
            let line = match t.state {
                TrialState::Completed => format!(
                    "trial {id} [{}] completed: valid loss {:.4} ppl {:.3}",
                    t.short_hash(),
                    t.results.valid_loss.unwrap_or(f64::NAN),
                    t.results.valid_ppl.unwrap_or(f64::NAN)
                ),
                other => format!(
                    "trial {id} [{}] {other}{}",
                    t.short_hash(),
                    t.error
                        .as_deref()
                        .map(|e| format!(": {}", e.lines().next().unwrap_or("")))
                        .unwrap_or_default()
                ),
            };
            match &display {
                Display::Bars { multi, .. } => {
                    let _ = multi.println(&line);
                }
                Display::Lines { .. } => eprintln!("{line}"),
            }
            match t.state {
                TrialState::Completed | TrialState::Diverged => done += 1,
                // Failed, or ended without running (could not open the ledger, lost its claim).
                st if st == TrialState::Failed || (!stopping && st != TrialState::Running) => {
                    let n = tries.get(&id).copied().unwrap_or(0);
                    let error = match st {
                        TrialState::Failed => t.error.clone().unwrap_or_default(),
                        _ => format!(
                            "the trial process exited with status {} leaving the trial {st}; log \
                             tail:\n{}",
                            code.map(|c| c.to_string()).unwrap_or("?".into()),
                            tail_of(&r.log, 5)
                        ),
                    };
                    if !stopping && n <= args.retries {
                        eprintln!("retrying trial {id} ({n}/{} retries used)", args.retries);
                        queue.insert(0, id);
                    } else {
                        failed.push((id, error));
                        if args.fail_fast && !fail_stop {
                            fail_stop = true;
                            eprintln!("--fail-fast: stopping the sweep");
                            for r in &running {
                                send_signal(r.child.id(), libc::SIGINT);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        // Progress and trials running elsewhere.
        if last_poll.elapsed() >= Duration::from_secs(1) {
            last_poll = Instant::now();
            let mut still = Vec::new();
            for id in waiting.drain(..) {
                match s.trial(id)? {
                    Some(t) if t.state.is_done() => done += 1,
                    Some(t) if t.state == TrialState::Running && !worker_dead(&t) => still.push(id),
                    Some(t) if t.state == TrialState::Running => {
                        let w = t.worker.clone().unwrap_or_default();
                        s.finish_trial(
                            id,
                            &w,
                            &Outcome::Interrupted {
                                error: Some(format!("worker {w} is gone")),
                            },
                        )?;
                        queue.push(id);
                    }
                    Some(t) if t.state == TrialState::Failed => {
                        failed.push((id, t.error.unwrap_or_default()))
                    }
                    Some(_) => queue.push(id),
                    None => {}
                }
            }
            waiting = still;
            for r in &running {
                if let Some(m) = s.last_metric(r.trial.id, "train")? {
                    r.bar.set_position(m.step as u64);
                    r.bar
                        .set_message(format!("loss {:.3}  {:.0} tok/s", m.loss, m.tokens_per_s));
                } else if matches!(display, Display::Bars { .. }) {
                    // Before its first step (data preparation, a one-time local pretraining) a
                    // trial's log says what it is doing.
                    r.bar.set_message(last_log_line(&r.log));
                }
            }
            match &mut display {
                Display::Bars { sweep, .. } => {
                    sweep.set_position(done as u64);
                    sweep.set_message(format!(
                        "{} running, {} failed",
                        running.len(),
                        failed.len()
                    ));
                }
                Display::Lines { last } => {
                    if last.elapsed() >= Duration::from_secs(30) {
                        *last = Instant::now();
                        let parts: Vec<String> = running
                            .iter()
                            .map(|r| {
                                let m = s.last_metric(r.trial.id, "train").ok().flatten();
                                match m {
                                    Some(m) => format!(
                                        "trial {} step {}/{} loss {:.3} {:.0} tok/s",
                                        r.trial.id,
                                        m.step,
                                        r.total_steps.map(|t| t.to_string()).unwrap_or("?".into()),
                                        m.loss,
                                        m.tokens_per_s
                                    ),
                                    None => match last_log_line(&r.log) {
                                        l if l.is_empty() => {
                                            format!("trial {} starting", r.trial.id)
                                        }
                                        l => format!("trial {} starting: {l}", r.trial.id),
                                    },
                                }
                            })
                            .collect();
                        eprintln!("progress: {done}/{total} trials done; {}", parts.join("; "));
                    }
                }
            }
        }
        let idle = running.is_empty() && (queue.is_empty() || stopping || fail_stop);
        if idle && (waiting.is_empty() || stopping || fail_stop) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Display::Bars { sweep, .. } = &display {
        sweep.set_position(done as u64);
        sweep.finish_and_clear();
    }
    eprintln!(
        "sweep {name}: {done}/{total} trials done, {} failed{}",
        failed.len(),
        if stopping { ", interrupted" } else { "" }
    );
    for (id, e) in &failed {
        eprintln!("  trial {id} failed: {}", e.lines().next().unwrap_or(""));
    }
    regenerate_report(&url, &name, &artifacts);
    if stopping {
        return Ok(ExitCode::from(130));
    }
    if !failed.is_empty() || fail_stop {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Rewrites `reports/<sweep>.html` from the ledger, also after an interrupt (with what exists).
/// A report failure is printed, never turned into a sweep failure: the numbers are in the ledger.
fn regenerate_report(url: &str, name: &str, artifacts: &Path) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewSweep, NewTrial};

    #[test]
    fn store_sink_flush_writes_every_recorded_row_before_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sweep.db");
        let store: Arc<dyn Store> = Arc::from(crate::store::open(db.to_str().unwrap()).unwrap());
        let sweep = NewSweep {
            name: "s".into(),
            title: None,
            description: None,
            file: None,
            profile: None,
            kind: "grid".into(),
            spec: json!({}),
        };
        let trial = NewTrial {
            hash: "h".into(),
            config: json!({}),
            label: json!({}),
            is_baseline: false,
        };
        let id = store.record_sweep(&sweep, &[trial]).unwrap().trial_ids[0];
        let cancel = Arc::new(AtomicBool::new(false));
        let mut sink = StoreSink::spawn(store.clone(), id, "w".into(), cancel);
        let row = |step, split: &str| MetricRow {
            step,
            epoch: 0.0,
            split: split.into(),
            loss: 1.0,
            ppl: 1.0f64.exp(),
            tokens_seen: step * 10,
            lr: 0.0,
            tokens_per_s: 0.0,
        };
        let t0 = Instant::now();
        sink.record(&row(1, "train")).unwrap();
        sink.record(&row(1, "valid")).unwrap();
        sink.flush().unwrap();
        // Well within FLUSH_SECS: the rows are there because of the flush, not the timer.
        assert!(t0.elapsed().as_secs_f64() < FLUSH_SECS);
        assert_eq!(store.metrics(id).unwrap().len(), 2);
        sink.record(&row(2, "train")).unwrap();
        assert_eq!(sink.finish().unwrap(), 3, "rows written in all");
        assert_eq!(store.metrics(id).unwrap().len(), 3);
    }
}
