//! The local executor: each trial in its own child process on this machine, `--jobs` at a time.
//!
//! A crash, OOM or panic in one trial marks only that trial `failed` (retried up to `--retries`
//! times). Trials that another worker is running are waited for. Stop requests: the first stops
//! starting trials and asks the running ones to checkpoint and stop (exit 130); a second kills
//! them (they resume from their last checkpoint next time). Progress: bars with rate and ETA on
//! a terminal, a plain line every 30 s otherwise.

use super::decide;
use super::search::Ask;
use super::{describe_exit, exit_code_of, tail_of, worker_dead, worker_id};
use super::{Batch, Executor, Ledger, Policy, TrialCommand, EXIT_NOT_CLAIMED};
use crate::config;
use crate::error::UsageError;
use crate::plan::PlannedTrial;
use crate::signals::{self, OnSecond};
use crate::store::{Outcome, Store, TrialRecord, TrialState};
use crate::train;
use crate::trial::TrialConfig;
use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// `sweep run` on this machine, resolved.
#[derive(Debug, Clone)]
pub struct Local {
    pub jobs: usize,
    /// Device specs; job slot k uses device k mod count.
    pub devices: Vec<String>,
    /// `--devices` as given, for messages.
    pub devices_flag: String,
    pub retries: usize,
    pub fail_fast: bool,
    pub force: bool,
    pub checkpoint_minutes: f64,
    pub artifacts: PathBuf,
    pub cache_root: PathBuf,
}

impl Executor for Local {
    fn check_flags(&self) -> Result<()> {
        if self.jobs == 0 {
            return Err(UsageError("--jobs 0: fix: use --jobs 1 or more".into()).into());
        }
        if self.devices.is_empty() {
            return Err(
                UsageError("--devices: empty; fix: use cpu or cuda:0,cuda:1".into()).into(),
            );
        }
        for d in &self.devices {
            // Every device is checked before the ledger is touched: a sweep on a missing GPU
            // fails once, here, rather than failing each of its trials.
            let flag = format!("--devices {}", self.devices_flag);
            crate::backend::DeviceSpec::parse(d)
                .map_err(|e| UsageError(format!("{flag}: {e}")))?
                .check(&flag)?;
        }
        Ok(())
    }

    fn preflight(&self, sweep: &config::Sweep, planned: &[PlannedTrial]) -> Result<()> {
        if self.devices.iter().all(|d| d == "cpu") {
            let half = planned.iter().find_map(|t| {
                t.config()
                    .precision
                    .filter(|p| *p != crate::trial::Precision::F32)
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
        super::fetch_hub_models(&sweep.models())?;
        crate::train::preflight_models(planned.iter().map(|p| p.config()))
    }

    fn policy(&self) -> Policy {
        // A plain `sweep run` reruns everything not done; --retries counts within this run.
        Policy {
            interrupted: true,
            failed_max_attempts: Some(i64::MAX),
        }
    }

    fn execute(&mut self, ledger: &Ledger, batch: &Batch) -> Result<ExitCode> {
        if self.force {
            self.reset(ledger, batch)?;
        }
        let (queue, done) = super::todo(&*ledger.store, batch, self.policy())?;
        let total = batch.total(&*ledger.store)?;
        let searching = match batch.search.first() {
            Some(s) => format!(
                " of a search with a budget of {} ({} suggested so far)",
                s.budget(),
                batch.trial_ids.len()
            ),
            None => String::new(),
        };
        eprintln!(
            "sweep {}: {} trials{searching} ({done} already done, {} new in the ledger{}), {} to run, {} job(s), ledger {}",
            batch.name,
            total,
            batch.created,
            if batch.recovered > 0 {
                format!(", {} interrupted by a dead worker", batch.recovered)
            } else {
                String::new()
            },
            queue.len(),
            self.jobs,
            ledger.url
        );
        signals::install(OnSecond::Count);
        let mut run = Run::new(self, ledger, batch, queue, done, total)?;
        run.drive()?;
        Ok(run.finish())
    }
}

impl Local {
    /// `--force`: back to pending, artifacts removed (running trials are left alone).
    fn reset(&self, ledger: &Ledger, batch: &Batch) -> Result<()> {
        let s = &*ledger.store;
        for id in &batch.trial_ids {
            if let Some(t) = s.trial(*id)? {
                if t.state != TrialState::Running && s.reset_trial(*id)? {
                    let dir = crate::artifacts::trial_dir(&self.artifacts, &t.hash);
                    if dir.exists() {
                        std::fs::remove_dir_all(&dir)
                            .with_context(|| format!("removing {}", dir.display()))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A trial process of this run.
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

impl Display {
    fn new(total: usize, done: usize) -> Self {
        if !std::io::stderr().is_terminal() {
            return Display::Lines {
                last: Instant::now(),
            };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let bar = multi.add(ProgressBar::new(total as u64));
        bar.set_style(bar_style("{pos}/{len} trials"));
        bar.set_prefix("sweep");
        bar.set_position(done as u64);
        Display::Bars { multi, sweep: bar }
    }

    fn println(&self, line: &str) {
        match self {
            Display::Bars { multi, .. } => {
                let _ = multi.println(line);
            }
            Display::Lines { .. } => eprintln!("{line}"),
        }
    }
}

fn bar_style(counts: &str) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{{prefix:>8}} [{{bar:30}}] {counts}  {{elapsed}} (ETA {{eta}}) {{msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

/// The last line of a trial's log, cut to fit a progress line.
fn last_log_line(path: &Path) -> String {
    let line = tail_of(path, 1);
    match line.char_indices().nth(100) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line,
    }
}

/// The state of one `sweep run` on this machine.
struct Run<'a> {
    opts: &'a Local,
    store: &'a dyn Store,
    batch: &'a Batch,
    command: TrialCommand,
    threads: usize,
    display: Display,
    queue: Vec<i64>,
    running: Vec<Running>,
    /// Trials running elsewhere.
    waiting: Vec<i64>,
    tries: HashMap<i64, usize>,
    failed: Vec<(i64, String)>,
    done: usize,
    /// Trials when done (the searches' budgets included).
    total: usize,
    labels: HashMap<i64, String>,
    /// The batch's searches that may still suggest trials (from this index on).
    next_search: usize,
    /// The batch's sweeps run until decided that may still add seeds (from this index on).
    next_decide: usize,
    /// A stop was requested (or --fail-fast tripped): start nothing more.
    stopping: bool,
    killed: bool,
    fail_stop: bool,
}

impl<'a> Run<'a> {
    fn new(
        opts: &'a Local,
        ledger: &'a Ledger,
        batch: &'a Batch,
        queue: Vec<i64>,
        done: usize,
        total: usize,
    ) -> Result<Self> {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Ok(Self {
            opts,
            store: &*ledger.store,
            batch,
            // Children get the root explicitly: the ledger records their artifacts relative to it.
            command: TrialCommand::for_this_exe(
                Some(ledger.url.clone()),
                "cpu",
                opts.checkpoint_minutes,
                Some(opts.artifacts.clone()),
            )?,
            threads: (cores / opts.jobs).max(1),
            display: Display::new(total, done),
            queue,
            running: Vec::new(),
            waiting: Vec::new(),
            tries: HashMap::new(),
            failed: Vec::new(),
            done,
            total,
            labels: batch.labels.clone(),
            next_search: 0,
            next_decide: 0,
            stopping: false,
            killed: false,
            fail_stop: false,
        })
    }

    fn drive(&mut self) -> Result<()> {
        let mut last_poll = Instant::now() - Duration::from_secs(10);
        loop {
            self.follow_signals();
            self.start_trials()?;
            self.reap()?;
            if last_poll.elapsed() >= Duration::from_secs(1) {
                last_poll = Instant::now();
                self.poll_waiting()?;
                self.show_progress()?;
            }
            let ending = self.stopping || self.fail_stop;
            let searching = self.next_search < self.batch.search.len()
                || self.next_decide < self.batch.decide.len();
            let idle = self.running.is_empty() && (self.queue.is_empty() && !searching || ending);
            if idle && (self.waiting.is_empty() || ending) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn follow_signals(&mut self) {
        let requests = signals::requests();
        if requests >= 1 && !self.stopping {
            self.stopping = true;
            eprintln!(
                "{}: not starting more trials; asking running trials to checkpoint and stop \
                 (Ctrl-C again to kill)",
                signals::last_signal_name()
            );
            for r in &self.running {
                signals::send(r.child.id(), libc::SIGINT);
            }
        }
        if requests >= 2 && !self.killed {
            self.killed = true;
            for r in &mut self.running {
                let _ = r.child.kill();
            }
        }
    }

    fn start_trials(&mut self) -> Result<()> {
        while !self.stopping && !self.fail_stop && self.running.len() < self.opts.jobs {
            if self.queue.is_empty() && !self.suggest()? {
                break;
            }
            let id = self.queue.remove(0);
            let Some(t) = self.store.trial(id)? else {
                continue;
            };
            if t.state.is_done() {
                self.done += 1;
                continue;
            }
            if t.state == TrialState::Running {
                self.waiting.push(id);
                continue;
            }
            self.start(t)?;
        }
        Ok(())
    }

    /// Asks the batch's searches for their next trial, at the moment a job slot is free (so the
    /// suggestion sees every trial that finished before it); `false` when none has one.
    fn suggest(&mut self) -> Result<bool> {
        while let Some(searcher) = self.batch.search.get(self.next_search) {
            match searcher.ask(self.store)? {
                Ask::Trial { id, label } => {
                    self.labels.insert(id, label);
                    self.queue.push(id);
                    return Ok(true);
                }
                Ask::Spent => self.next_search += 1,
                Ask::Exhausted => {
                    self.display.println(&format!(
                        "sweep {}: every suggestion repeats a trial of the search: its space is \
                         fully explored; stopping the search early",
                        searcher.name
                    ));
                    self.total = self.done + self.running.len() + self.waiting.len();
                    self.next_search += 1;
                }
            }
        }
        self.add_seed()
    }

    /// Asks the batch's sweeps run until decided for their next seed replicate; `false` when
    /// none has one now. Trials a decision waits for that this run does not hold yet (added by
    /// another process) join its queue.
    fn add_seed(&mut self) -> Result<bool> {
        while let Some(decider) = self.batch.decide.get(self.next_decide) {
            match decider.ask(self.store)? {
                decide::Ask::Trial { id, label } => {
                    self.display.println(&format!(
                        "sweep {}: undecided against the baseline: adding {label}",
                        decider.name
                    ));
                    self.labels.insert(id, label);
                    self.queue.push(id);
                    self.total += 1;
                    return Ok(true);
                }
                decide::Ask::Wait(ids) => {
                    let held = |id: &i64| {
                        self.queue.contains(id)
                            || self.waiting.contains(id)
                            || self.running.iter().any(|r| r.trial.id == *id)
                    };
                    let new: Vec<i64> = ids.into_iter().filter(|id| !held(id)).collect();
                    if new.is_empty() && self.running.is_empty() && self.waiting.is_empty() {
                        // Nothing of ours runs and the rest is not ours to run: stop asking.
                        self.next_decide += 1;
                        continue;
                    }
                    self.total += new.len();
                    self.queue.extend(new);
                    return Ok(!self.queue.is_empty());
                }
                decide::Ask::Spent => {
                    self.display.println(&format!(
                        "sweep {}: every row is decided against the baseline or has its {} seeds",
                        decider.name,
                        decider.until.max_seeds()
                    ));
                    self.next_decide += 1;
                }
            }
        }
        Ok(false)
    }

    fn start(&mut self, t: TrialRecord) -> Result<()> {
        let id = t.id;
        let used: Vec<usize> = self.running.iter().map(|r| r.slot).collect();
        let slot = (0..self.opts.jobs).find(|k| !used.contains(k)).unwrap_or(0);
        let device = self.opts.devices[slot % self.opts.devices.len()].clone();
        let dir = crate::artifacts::trial_dir(&self.opts.artifacts, &t.hash);
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
        self.command.device = device.clone();
        let child = self
            .command
            .command(id)
            .env("RAYON_NUM_THREADS", self.threads.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting trial {id}"))?;
        let total_steps = serde_json::from_value::<TrialConfig>(t.config.clone())
            .ok()
            .and_then(|c| train::plan_info(&c, &self.opts.cache_root).ok())
            .map(|i| i.total_steps);
        let label = self.labels.get(&id).cloned().unwrap_or_default();
        let bar = match &self.display {
            Display::Bars { multi, .. } => {
                let b = multi.add(match total_steps {
                    Some(n) => ProgressBar::new(n),
                    None => ProgressBar::no_length(),
                });
                b.set_style(bar_style("{pos}/{len} steps"));
                b.set_prefix(t.short_hash()[..8].to_string());
                b.set_message(label);
                b
            }
            Display::Lines { .. } => {
                eprintln!(
                    "start trial {id} [{}] {label} on {device} ({} threads)",
                    t.short_hash(),
                    self.threads
                );
                ProgressBar::hidden()
            }
        };
        *self.tries.entry(id).or_default() += 1;
        self.running.push(Running {
            child,
            trial: t,
            slot,
            bar,
            total_steps,
            log,
        });
        Ok(())
    }

    /// Records the ends of finished trial processes and decides on retries.
    fn reap(&mut self) -> Result<()> {
        let mut i = 0;
        while i < self.running.len() {
            let Some(status) = self.running[i].child.try_wait()? else {
                i += 1;
                continue;
            };
            let r = self.running.remove(i);
            r.bar.finish_and_clear();
            if status.code() == Some(EXIT_NOT_CLAIMED as i32) {
                self.waiting.push(r.trial.id);
                continue;
            }
            let t = self.record_unrecorded_end(&r, status)?;
            self.display.println(&end_line(&t));
            self.after_end(&r, &t, status.code());
        }
        Ok(())
    }

    /// A child that died without recording an end (crash, OOM kill, abort, or our kill) leaves
    /// its trial `running`: say here how it ended.
    fn record_unrecorded_end(
        &self,
        r: &Running,
        status: std::process::ExitStatus,
    ) -> Result<TrialRecord> {
        let id = r.trial.id;
        let worker = worker_id(r.child.id());
        let t = self
            .store
            .trial(id)?
            .context("trial vanished from the ledger")?;
        if !(t.state == TrialState::Running && t.worker.as_deref() == Some(worker.as_str())) {
            return Ok(t);
        }
        let how = describe_exit(status);
        let outcome = if self.killed {
            Outcome::Interrupted {
                error: Some(format!(
                    "{how}: killed by a second stop request ({}); it resumes from its last \
                     checkpoint",
                    signals::last_signal_name()
                )),
            }
        } else if self.stopping {
            // Asked to stop and gone before recording an end: say what ended it.
            Outcome::Interrupted {
                error: Some(format!(
                    "{how} while the sweep was stopping, before recording its end; it resumes \
                     from its last checkpoint"
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
                exit_status: Some(exit_code_of(status)),
            }
        };
        self.store.finish_trial(id, &worker, &outcome)?;
        self.store
            .trial(id)?
            .context("trial vanished from the ledger")
    }

    fn after_end(&mut self, r: &Running, t: &TrialRecord, code: Option<i32>) {
        let id = t.id;
        match t.state {
            TrialState::Completed | TrialState::Diverged | TrialState::Pruned => self.done += 1,
            // Failed, or ended without running (could not open the ledger, lost its claim).
            st if st == TrialState::Failed || (!self.stopping && st != TrialState::Running) => {
                let n = self.tries.get(&id).copied().unwrap_or(0);
                let error = match st {
                    TrialState::Failed => t.error.clone().unwrap_or_default(),
                    _ => format!(
                        "the trial process exited with status {} leaving the trial {st}; log \
                         tail:\n{}",
                        code.map(|c| c.to_string()).unwrap_or("?".into()),
                        tail_of(&r.log, 5)
                    ),
                };
                if !self.stopping && n <= self.opts.retries {
                    eprintln!(
                        "retrying trial {id} ({n}/{} retries used)",
                        self.opts.retries
                    );
                    self.queue.insert(0, id);
                } else {
                    self.failed.push((id, error));
                    if self.opts.fail_fast && !self.fail_stop {
                        self.fail_stop = true;
                        eprintln!("--fail-fast: stopping the sweep");
                        for r in &self.running {
                            signals::send(r.child.id(), libc::SIGINT);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Trials that other workers run: done, still running, or orphaned (then ours to run).
    fn poll_waiting(&mut self) -> Result<()> {
        let mut still = Vec::new();
        for id in std::mem::take(&mut self.waiting) {
            match self.store.trial(id)? {
                Some(t) if t.state.is_done() => self.done += 1,
                Some(t) if t.state == TrialState::Running && !worker_dead(&t) => still.push(id),
                Some(t) if t.state == TrialState::Running => {
                    let w = t.worker.clone().unwrap_or_default();
                    self.store.finish_trial(
                        id,
                        &w,
                        &Outcome::Interrupted {
                            error: Some(format!("worker {w} is gone")),
                        },
                    )?;
                    self.queue.push(id);
                }
                Some(t) if t.state == TrialState::Failed => {
                    self.failed.push((id, t.error.unwrap_or_default()))
                }
                Some(_) => self.queue.push(id),
                None => {}
            }
        }
        self.waiting = still;
        Ok(())
    }

    fn show_progress(&mut self) -> Result<()> {
        for r in &self.running {
            if let Some(m) = self.store.last_metric(r.trial.id, "train")? {
                r.bar.set_position(m.step as u64);
                r.bar
                    .set_message(format!("loss {:.3}  {:.0} tok/s", m.loss, m.tokens_per_s));
            } else if matches!(self.display, Display::Bars { .. }) {
                // Before its first step (data preparation, a one-time local pretraining) a
                // trial's log says what it is doing.
                r.bar.set_message(last_log_line(&r.log));
            }
        }
        let (done, total) = (self.done, self.total);
        match &mut self.display {
            Display::Bars { sweep, .. } => {
                sweep.set_length(total as u64);
                sweep.set_position(done as u64);
                sweep.set_message(format!(
                    "{} running, {} failed",
                    self.running.len(),
                    self.failed.len()
                ));
            }
            Display::Lines { last } => {
                if last.elapsed() >= Duration::from_secs(30) {
                    *last = Instant::now();
                    let parts: Vec<String> = self
                        .running
                        .iter()
                        .map(|r| progress_part(self.store, r))
                        .collect();
                    eprintln!("progress: {done}/{total} trials done; {}", parts.join("; "));
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> ExitCode {
        if let Display::Bars { sweep, .. } = &self.display {
            sweep.set_position(self.done as u64);
            sweep.finish_and_clear();
        }
        eprintln!(
            "sweep {}: {}/{} trials done, {} failed{}",
            self.batch.name,
            self.done,
            self.total,
            self.failed.len(),
            if self.stopping { ", interrupted" } else { "" }
        );
        for (id, e) in &self.failed {
            eprintln!("  trial {id} failed: {}", e.lines().next().unwrap_or(""));
        }
        if self.stopping {
            ExitCode::from(130)
        } else if !self.failed.is_empty() || self.fail_stop {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// A finished trial's line: its numbers, or how it ended.
fn end_line(t: &TrialRecord) -> String {
    match t.state {
        TrialState::Completed => format!(
            "trial {} [{}] completed: valid loss {:.4} ppl {:.3}",
            t.id,
            t.short_hash(),
            t.results.valid_loss.unwrap_or(f64::NAN),
            t.results.valid_ppl.unwrap_or(f64::NAN)
        ),
        other => format!(
            "trial {} [{}] {other}{}",
            t.id,
            t.short_hash(),
            t.error
                .as_deref()
                .map(|e| format!(": {}", e.lines().next().unwrap_or("")))
                .unwrap_or_default()
        ),
    }
}

/// One running trial in a plain progress line.
fn progress_part(store: &dyn Store, r: &Running) -> String {
    match store.last_metric(r.trial.id, "train").ok().flatten() {
        Some(m) => format!(
            "trial {} step {}/{} loss {:.3} {:.0} tok/s",
            r.trial.id,
            m.step,
            r.total_steps.map(|t| t.to_string()).unwrap_or("?".into()),
            m.loss,
            m.tokens_per_s
        ),
        None => match last_log_line(&r.log) {
            l if l.is_empty() => format!("trial {} starting", r.trial.id),
            l => format!("trial {} starting: {l}", r.trial.id),
        },
    }
}
