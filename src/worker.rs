//! `sweep worker`: drain recorded sweeps from a shared ledger, one trial at a time, without Slurm.
//!
//! Several workers (on several machines, against one PostgreSQL ledger) may drain the same sweep:
//! each picks a claimable trial and runs it as a child `sweep trial run ID`, whose atomic claim
//! decides who runs it (a loser exits with [`scheduler::EXIT_NOT_CLAIMED`] and the worker picks
//! again). Running trials of dead workers (stale heartbeat; same host: pid gone) are marked
//! `interrupted` and resumed from their checkpoint. A worker exits when nothing is claimable and
//! nothing is running; SIGINT/SIGTERM stop it after asking its current trial to checkpoint.

use crate::cli::UsageError;
use crate::scheduler::{self, LedgerArgs};
use crate::store::{Store, TrialState};
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
    eprintln!(
        "worker pid {}: {} trial(s) to drain{}, ledger {url}",
        std::process::id(),
        ids.len(),
        args.sweep
            .as_deref()
            .map(|n| format!(" of sweep {n}"))
            .unwrap_or_default()
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
