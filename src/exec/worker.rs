//! The worker executor (`sweep worker`): drain recorded sweeps from a shared ledger, one trial at a
//! time, without Slurm.
//!
//! Several workers (on several machines, against one PostgreSQL ledger) may drain the same sweep:
//! each picks a trial its [`Policy`] takes and runs it as a child `sweep trial run ID`, whose
//! atomic claim decides who runs it (a loser exits with [`EXIT_NOT_CLAIMED`] and the worker picks
//! again). Running trials of dead workers are marked `interrupted` and resumed from their
//! checkpoint. A worker exits when nothing is claimable and nothing is running; a stop request
//! asks its current trial to checkpoint, then stops it.
//!
//! A search sweep grows while workers drain it: a worker with nothing left to take asks the
//! search for its next suggestion ([`super::search::Searcher::ask`]), until the budget is spent.
//! That is also what a Slurm array task of a search runs: ask, train, tell (the ledger), repeat.
//!
//! Before it takes a trial, a worker fetches the Hub weights of everything it may run into its
//! machine's Hugging Face cache (or, offline, checks that they are there), and its trials run
//! with `HF_HUB_OFFLINE=1` from that cache.
//!
//! A sweep run until decided grows the same way ([`super::decide::Decider::ask`]): a worker with
//! nothing to take adds the next seed of an undecided row, or waits for the trials a decision
//! needs while other workers run them.

use super::decide::{self, Decider};
use super::search::{Ask, Searcher};
use super::{recover_dead, Batch, Executor, Ledger, Policy, TrialCommand, EXIT_NOT_CLAIMED};
use crate::signals::{self, OnSecond};
use crate::store::{Store, TrialRecord, TrialState};
use crate::trial::ModelSpec;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

/// `sweep worker`, resolved.
#[derive(Debug, Clone)]
pub struct Worker {
    pub device: String,
    /// Retry a failed trial while it has had at most this many attempts.
    pub retries: i64,
    pub checkpoint_minutes: f64,
    /// Seconds between looks at the ledger while other workers' trials are still running.
    pub poll_seconds: f64,
    pub artifacts: PathBuf,
}

impl Executor for Worker {
    fn policy(&self) -> Policy {
        Policy {
            interrupted: true,
            failed_max_attempts: Some(self.retries),
        }
    }

    fn execute(&mut self, ledger: &Ledger, batch: &Batch) -> Result<ExitCode> {
        let s = &*ledger.store;
        // The Hub weights of everything this worker may run, here and now: its trials then run
        // offline from this machine's cache.
        super::fetch_hub_models(&models_of(s, batch)?)?;
        signals::install(OnSecond::Count);
        let command = TrialCommand::for_this_exe(
            Some(ledger.url.clone()),
            &self.device,
            self.checkpoint_minutes,
            Some(self.artifacts.clone()),
        )?;
        eprintln!(
            "worker pid {}: {} trial(s) to drain{}, ledger {}, artifacts {}",
            std::process::id(),
            batch.trial_ids.len(),
            if batch.name == "*" {
                String::new()
            } else {
                format!(" of sweep {}", batch.name)
            },
            ledger.url,
            self.artifacts.display()
        );
        let (mut ran, mut failed) = (0usize, 0usize);
        // Trials this worker lost a claim race on, skipped until the ledger changes their state.
        let mut lost: Vec<i64> = Vec::new();
        let mut ids = batch.trial_ids.clone();
        let mut searches: Vec<&Searcher> = batch.search.iter().collect();
        let mut deciders: Vec<&Decider> = batch.decide.iter().collect();
        loop {
            if signals::requests() > 0 {
                eprintln!("worker: stopping on {}", signals::last_signal_name());
                return Ok(ExitCode::from(130));
            }
            let recovered = recover_dead(s, &ids)?;
            if recovered > 0 {
                eprintln!("worker: {recovered} trial(s) of dead workers marked interrupted");
            }
            // Other workers' suggestions join the sweep too: take theirs when they are free.
            let growing = batch.search.iter().map(|x| x.sweep_id);
            for sweep_id in growing.chain(batch.decide.iter().map(|d| d.sweep_id)) {
                for m in s.sweep_trials(sweep_id)? {
                    if !ids.contains(&m.trial.id) {
                        ids.push(m.trial.id);
                    }
                }
            }
            let (mut next, running) = self.next_trial(s, &ids, &lost)?;
            if next.is_none() {
                next = ask(s, &mut searches, &mut ids)?;
            }
            let mut waiting = false;
            if next.is_none() {
                (next, waiting) = add_seed(s, &mut deciders, &mut ids)?;
            }
            let Some(t) = next else {
                if running == 0 && lost.is_empty() && !waiting {
                    break;
                }
                lost.clear();
                std::thread::sleep(Duration::from_secs_f64(self.poll_seconds.max(0.1)));
                continue;
            };
            eprintln!("worker: trial {} ({})", t.id, t.short_hash());
            match run_child(&command, t.id)? {
                Some(0) => ran += 1,
                Some(c) if c == EXIT_NOT_CLAIMED as i32 => lost.push(t.id),
                other => {
                    failed += 1;
                    eprintln!(
                        "worker: trial {} ended with {}",
                        t.id,
                        other.map_or("a signal".to_string(), |c| format!("exit status {c}"))
                    );
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
}

impl Worker {
    /// The first trial the policy takes (not one just lost), and how many are running.
    fn next_trial(
        &self,
        s: &dyn Store,
        ids: &[i64],
        lost: &[i64],
    ) -> Result<(Option<TrialRecord>, usize)> {
        let policy = self.policy();
        let mut running = 0;
        for id in ids {
            let Some(t) = s.trial(*id)? else { continue };
            if t.state == TrialState::Running {
                running += 1;
            } else if policy.takes(&t) && !lost.contains(id) {
                return Ok((Some(t), running));
            }
        }
        Ok((None, running))
    }
}

/// The models of a batch's recorded trials (those not done) and of its searches' spaces.
fn models_of(s: &dyn Store, batch: &Batch) -> Result<Vec<ModelSpec>> {
    let mut out: Vec<ModelSpec> = batch.search.iter().flat_map(Searcher::models).collect();
    for id in &batch.trial_ids {
        let Some(t) = s.trial(*id)? else { continue };
        if t.state.is_done() {
            continue;
        }
        let model = t.config.get("model").and_then(|m| m.as_str());
        if let Some(m) = model.and_then(|m| m.parse::<ModelSpec>().ok()) {
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    Ok(out)
}

/// The next suggestion of the first search with budget left (searches without are dropped).
fn ask(
    s: &dyn Store,
    searches: &mut Vec<&Searcher>,
    ids: &mut Vec<i64>,
) -> Result<Option<TrialRecord>> {
    while let Some(searcher) = searches.first() {
        match searcher.ask(s)? {
            Ask::Trial { id, label } => {
                eprintln!("worker: sweep {} suggests {label}", searcher.name);
                ids.push(id);
                return s.trial(id);
            }
            Ask::Spent | Ask::Exhausted => {
                searches.remove(0);
            }
        }
    }
    Ok(None)
}

/// The next seed replicate of the first sweep run until decided that needs one; `true` while a
/// decision waits for trials that are still running (sweeps with neither are dropped).
fn add_seed(
    s: &dyn Store,
    deciders: &mut Vec<&Decider>,
    ids: &mut Vec<i64>,
) -> Result<(Option<TrialRecord>, bool)> {
    let mut waiting = false;
    let mut i = 0;
    while let Some(decider) = deciders.get(i) {
        match decider.ask(s)? {
            decide::Ask::Trial { id, label } => {
                eprintln!(
                    "worker: sweep {} is undecided: adding {label}",
                    decider.name
                );
                ids.push(id);
                return Ok((s.trial(id)?, waiting));
            }
            decide::Ask::Wait(pending) => {
                // Running elsewhere: wait. Not running (pending, interrupted): ours to take.
                for id in pending {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                waiting = true;
                i += 1;
            }
            decide::Ask::Spent => {
                deciders.remove(i);
            }
        }
    }
    Ok((None, waiting))
}

/// Runs one trial process to its end, passing a stop request on; its exit code.
fn run_child(command: &TrialCommand, id: i64) -> Result<Option<i32>> {
    let mut child = command
        .command(id)
        .stdin(Stdio::null())
        .spawn()
        .context("starting `sweep trial run`")?;
    let mut forwarded = false;
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st.code());
        }
        if signals::requests() > 0 && !forwarded {
            // It checkpoints and exits `interrupted`.
            signals::send(child.id(), libc::SIGTERM);
            forwarded = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
