//! The scheduling core under every executor: record a sweep, decide which trials to take, find
//! dead workers, build the `sweep trial run` command line and read how a trial process ended.
//!
//! Every trial runs as its own process, `sweep trial run ID` ([`trial`]), which claims the trial
//! atomically in the ledger, so the executors differ only in where those processes start:
//! [`local::Local`] (child processes on this machine, `--jobs` at a time), [`slurm::Slurm`] (one
//! job array on a cluster) and [`worker::Worker`] (`sweep worker`: drain a shared ledger). All
//! three implement [`Executor`]; `sweep run` drives the first two through [`run_sweep`], `sweep
//! worker` the third through [`drain`].

pub mod cli;
pub mod decide;
pub mod local;
pub mod plan_view;
pub mod prune;
pub mod search;
pub mod sink;
pub mod slurm;
pub mod status;
pub mod trial;
pub mod worker;

use crate::config;
use crate::error::UsageError;
use crate::plan::{label_text, PlannedTrial};
use crate::store::{self, NewSweep, NewTrial, Outcome, Store, TrialRecord, TrialState};
use anyhow::{Context, Result};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};
use std::sync::Arc;

/// A running trial on another host without a heartbeat for this long is considered dead.
pub const STALE_SECS: i64 = 60;
/// Exit status of `sweep trial run` when the trial is not claimable (running elsewhere or done);
/// `--skip-if-taken` (Slurm array tasks) exits 0 instead.
pub const EXIT_NOT_CLAIMED: u8 = 75;

/// The open ledger and the URL that child processes are given.
#[derive(Clone)]
pub struct Ledger {
    pub url: String,
    pub store: Arc<dyn Store>,
}

impl Ledger {
    pub fn open(url: &str) -> Result<Self> {
        Ok(Self {
            url: url.to_string(),
            store: Arc::from(store::open(url)?),
        })
    }
}

/// Where a sweep's trials run.
pub trait Executor {
    /// Checks the executor's own flags, devices and tools, before the sweep file is read.
    fn check_flags(&self) -> Result<()> {
        Ok(())
    }
    /// Checks the planned trials against what this executor can run (precision on a device,
    /// pretrained weights), before the ledger is touched: a refusal (exit 2) records nothing.
    fn preflight(&self, _sweep: &config::Sweep, _planned: &[PlannedTrial]) -> Result<()> {
        Ok(())
    }
    /// Which recorded trials this executor takes on.
    fn policy(&self) -> Policy;
    /// Runs (or submits) the trials of `batch` that `policy` takes; returns the exit code.
    fn execute(&mut self, ledger: &Ledger, batch: &Batch) -> Result<ExitCode>;
}

/// Which recorded trials an executor takes on (a trial's claim in the ledger is still atomic:
/// this only decides which claims are tried).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Take `interrupted` trials (they resume from their checkpoint).
    pub interrupted: bool,
    /// Take a `failed` trial while it has had at most this many attempts.
    pub failed_max_attempts: Option<i64>,
}

impl Policy {
    pub fn takes(&self, t: &TrialRecord) -> bool {
        match t.state {
            TrialState::Pending => true,
            TrialState::Interrupted => self.interrupted,
            TrialState::Failed => self.failed_max_attempts.is_some_and(|n| t.attempts <= n),
            TrialState::Running
            | TrialState::Completed
            | TrialState::Diverged
            | TrialState::Pruned => false,
        }
    }
}

/// The trials an executor is handed: a recorded sweep's, or every sweep's of a ledger (workers).
#[derive(Debug, Clone)]
pub struct Batch {
    /// The sweep's ledger name (`*` for every sweep of the ledger).
    pub name: String,
    /// In sweep then position order, each trial once.
    pub trial_ids: Vec<i64>,
    /// Row labels for progress lines.
    pub labels: HashMap<i64, String>,
    /// Trials newly added to the ledger by this run.
    pub created: usize,
    /// Trials marked interrupted because their worker died.
    pub recovered: usize,
    /// The recorded sweep row (`None` for a worker's batch), for executors that annotate it.
    pub sweep: Option<NewSweep>,
    /// The ledger rows of the trials, to re-record the sweep with.
    pub trials: Vec<NewTrial>,
    /// The search sweeps among the batch's, which suggest more trials when these are taken.
    pub search: Vec<search::Searcher>,
    /// The sweeps among the batch's that run until decided, which add seeds while rows are
    /// undecided.
    pub decide: Vec<decide::Decider>,
}

impl Batch {
    /// Trials the batch will have run when done: its trials, plus the searches' remaining budget.
    pub fn total(&self, s: &dyn Store) -> Result<usize> {
        let mut extra = 0;
        for searcher in &self.search {
            let have = s.sweep_trials(searcher.sweep_id)?.len();
            extra += searcher.budget().saturating_sub(have);
        }
        Ok(self.trial_ids.len() + extra)
    }
}

/// The ledger rows of planned trials.
fn ledger_trials(planned: &[PlannedTrial]) -> Result<Vec<NewTrial>> {
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

/// Keys of a sweep's recorded spec that executors own (Slurm's job list): the sweep file does not
/// produce them, so re-recording the file keeps them.
const EXECUTOR_SPEC_KEYS: [&str; 1] = [slurm::SPEC_KEY];

/// Records a sweep file's trials (keeping the executors' annotations of an existing row) and marks
/// the trials of dead workers interrupted. A search sweep records its row only: its trials are
/// the ones it has suggested so far, and it suggests more while it runs. A sweep run `until`
/// decided keeps the seed replicates it added before (its trials are the file's plus those).
pub fn record(
    ledger: &Ledger,
    sweep: &config::Sweep,
    planned: &[PlannedTrial],
    cache_root: &Path,
    until: Option<&decide::UntilDecided>,
) -> Result<Batch> {
    let s = &*ledger.store;
    let name = sweep.ledger_name();
    let mut spec = sweep.spec_json();
    let old = s.sweep_by_name(&name)?;
    if let (Some(old), Some(new)) = (&old, spec.as_object_mut()) {
        for key in EXECUTOR_SPEC_KEYS {
            if let Some(v) = old.spec.get(key) {
                new.insert(key.to_string(), v.clone());
            }
        }
    }
    if let (Some(u), Some(new)) = (until, spec.as_object_mut()) {
        new.insert(decide::SPEC_KEY.to_string(), u.spec_json());
    }
    let row = NewSweep {
        name: name.clone(),
        title: sweep.title.clone(),
        description: sweep.description.clone(),
        file: Some(sweep.file.display().to_string()),
        profile: sweep.profile.clone(),
        kind: sweep.kind.as_str().to_string(),
        spec,
    };
    if sweep.search.is_some() {
        let sweep_id = s.record_sweep_row(&row)?;
        let members = s.sweep_trials(sweep_id)?;
        let trial_ids: Vec<i64> = members.iter().map(|m| m.trial.id).collect();
        let labels = members
            .iter()
            .map(|m| (m.trial.id, label_text(&m.label)))
            .collect();
        let recovered = recover_dead(s, &trial_ids)?;
        let searcher = search::Searcher::new(sweep, sweep_id, &name, cache_root);
        return Ok(Batch {
            name,
            trial_ids,
            labels,
            created: 0,
            recovered,
            sweep: Some(row),
            trials: Vec::new(),
            search: searcher.into_iter().collect(),
            decide: Vec::new(),
        });
    }
    let mut trials = ledger_trials(planned)?;
    if let (Some(old), Some(_)) = (&old, until) {
        trials.extend(added_replicates(&s.sweep_trials(old.id)?, &trials));
    }
    let recorded = s.record_sweep(&row, &trials)?;
    let labels = recorded
        .trial_ids
        .iter()
        .zip(&trials)
        .map(|(id, t)| (*id, label_text(&t.label)))
        .collect();
    let recovered = recover_dead(s, &recorded.trial_ids)?;
    let decide = until
        .map(|u| decide::Decider::new(u.clone(), recorded.sweep_id, &name, sweep.flat, cache_root))
        .into_iter()
        .collect();
    Ok(Batch {
        name,
        trial_ids: recorded.trial_ids,
        labels,
        created: recorded.created,
        recovered,
        sweep: Some(row),
        trials,
        search: Vec::new(),
        decide,
    })
}

/// The members of a recorded sweep that `--until-decided` added: seed replicates of a planned
/// row (same label but for `seed`) that the plan itself does not have.
fn added_replicates(old: &[store::SweepTrial], planned: &[NewTrial]) -> Vec<NewTrial> {
    let row_of = |label: &Json| -> serde_json::Map<String, Json> {
        let mut m = label.as_object().cloned().unwrap_or_default();
        m.remove("seed");
        m
    };
    let rows: Vec<_> = planned.iter().map(|t| row_of(&t.label)).collect();
    old.iter()
        .filter(|m| !planned.iter().any(|t| t.hash == m.hash))
        .filter(|m| rows.contains(&m.row_key()))
        .map(|m| NewTrial {
            hash: m.hash.clone(),
            config: m.config.clone(),
            label: m.label.clone(),
            is_baseline: m.is_baseline,
        })
        .collect()
}

/// Re-records a batch's sweep with `value` under an executor's spec key.
pub fn annotate(ledger: &Ledger, batch: &Batch, key: &str, value: Json) -> Result<()> {
    let Some(mut row) = batch.sweep.clone() else {
        return Ok(());
    };
    if let Some(m) = row.spec.as_object_mut() {
        m.insert(key.to_string(), value);
    }
    if batch.search.is_empty() {
        ledger.store.record_sweep(&row, &batch.trials)?;
    } else {
        ledger.store.record_sweep_row(&row)?;
    }
    Ok(())
}

/// Fetches every Hub model of `models` into the Hugging Face cache (what the trial processes
/// read offline), saying which commit each is; whether there was any. A failure is the Hub
/// module's usage error (the repository, what was tried, the fix), before anything runs.
pub fn fetch_hub_models(models: &[crate::trial::ModelSpec]) -> Result<bool> {
    let mut any = false;
    for hub in models.iter().filter_map(|m| m.hub()) {
        let r = crate::checkpoint::hub::fetch(&hub).map_err(|e| {
            UsageError(format!(
                "{e:#}; nothing was recorded or run. Or run the CPU-scale version of the \
                 experiment (`--profile quick`), which trains small presets"
            ))
        })?;
        eprintln!(
            "model {hub}: {}, in the Hugging Face cache {}",
            r.describe(),
            r.dir.display()
        );
        any = true;
    }
    Ok(any)
}

/// `sweep run`: validate everything, record the sweep, hand its trials to the executor.
pub fn run_sweep(
    exec: &mut dyn Executor,
    db_url: &str,
    sweep: &config::Sweep,
    planned: &[PlannedTrial],
    cache_root: &Path,
    until: Option<&decide::UntilDecided>,
) -> Result<(Ledger, Batch, ExitCode)> {
    exec.preflight(sweep, planned)?;
    let ledger = Ledger::open(db_url)?;
    let batch = record(&ledger, sweep, planned, cache_root, until)?;
    let code = exec.execute(&ledger, &batch)?;
    Ok((ledger, batch, code))
}

/// `sweep worker`: hand the trials of one recorded sweep (or of all) to the executor; search
/// sweeps among them suggest more trials as the worker takes them.
pub fn drain(
    exec: &mut dyn Executor,
    ledger: &Ledger,
    only: Option<&str>,
    cache_root: &Path,
) -> Result<ExitCode> {
    let s = &*ledger.store;
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
    let mut labels = HashMap::new();
    let search = search::searchers_of(&sweeps, cache_root)?;
    let decide = decide::deciders_of(&sweeps, cache_root);
    for sw in sweeps {
        for st in s.sweep_trials(sw.id)? {
            if !ids.contains(&st.trial.id) {
                ids.push(st.trial.id);
                labels.insert(st.trial.id, label_text(&st.label));
            }
        }
    }
    let batch = Batch {
        name: only.unwrap_or("*").to_string(),
        trial_ids: ids,
        labels,
        created: 0,
        recovered: 0,
        sweep: None,
        trials: Vec::new(),
        search,
        decide,
    };
    exec.execute(ledger, &batch)
}

/// The batch's trials that `policy` takes, in order, and how many are done already.
pub fn todo(s: &dyn Store, batch: &Batch, policy: Policy) -> Result<(Vec<i64>, usize)> {
    let (mut todo, mut done) = (Vec::new(), 0);
    for id in &batch.trial_ids {
        match s.trial(*id)? {
            Some(t) if t.state.is_done() => done += 1,
            Some(t) if policy.takes(&t) => todo.push(*id),
            _ => {}
        }
    }
    Ok((todo, done))
}

// ---------------------------------------------------------------------------------------------
// The trial process's command line

/// `sweep trial run ID ...`: the command line every executor starts a trial with.
#[derive(Debug, Clone)]
pub struct TrialCommand {
    pub exe: PathBuf,
    /// `None`: the ledger URL comes from `$SWEEP_DB` (Slurm scripts keep credentials off disk).
    pub db: Option<String>,
    pub device: String,
    pub checkpoint_minutes: f64,
    /// `None`: from `$SWEEP_ARTIFACTS`.
    pub artifacts: Option<PathBuf>,
    /// Exit 0 when the trial is taken (done or running elsewhere): Slurm array tasks.
    pub skip_if_taken: bool,
    /// The Hugging Face cache the trial reads its Hub weights from (absolute). Trials run with
    /// `HF_HUB_OFFLINE=1`: the executor fetched every Hub model of the sweep beforehand (on a
    /// cluster, on the submitting machine), so a trial never touches the network and always
    /// finds the commit that its sweep was planned with.
    pub hub_cache: PathBuf,
}

impl TrialCommand {
    /// A command for this executable.
    pub fn for_this_exe(
        db: Option<String>,
        device: &str,
        checkpoint_minutes: f64,
        artifacts: Option<PathBuf>,
    ) -> Result<Self> {
        Ok(Self {
            exe: std::env::current_exe().context("locating the sweep executable")?,
            db,
            device: device.to_string(),
            checkpoint_minutes,
            artifacts,
            skip_if_taken: false,
            hub_cache: std::path::absolute(crate::checkpoint::hf_cache_dir())
                .context("locating the Hugging Face cache")?,
        })
    }

    /// The environment of a trial process: where the Hub weights are, and never the network.
    pub fn hub_env(&self) -> [(&'static str, OsString); 2] {
        [
            ("HF_HUB_CACHE", self.hub_cache.clone().into_os_string()),
            ("HF_HUB_OFFLINE", "1".into()),
        ]
    }

    /// The arguments after the executable; `id` and `db` are given as they should appear (a
    /// number, or a shell expression such as `"$TRIAL_ID"`).
    fn args(&self, id: &str, db: &str) -> Vec<OsString> {
        let mut a: Vec<OsString> = ["trial", "run", id, "--db", db, "--device", &self.device]
            .iter()
            .map(OsString::from)
            .collect();
        a.push("--checkpoint-minutes".into());
        a.push(self.checkpoint_minutes.to_string().into());
        if let Some(dir) = &self.artifacts {
            a.push("--artifacts".into());
            a.push(dir.into());
        }
        if self.skip_if_taken {
            a.push("--skip-if-taken".into());
        }
        a
    }

    /// The process for trial `id`.
    pub fn command(&self, id: i64) -> Command {
        let db = self
            .db
            .clone()
            .unwrap_or_else(|| crate::locations::ledger_url(None));
        let mut c = Command::new(&self.exe);
        c.args(self.args(&id.to_string(), &db)).envs(self.hub_env());
        c
    }

    /// The shell line that `exec`s a trial whose id is in `$TRIAL_ID` (job scripts).
    pub fn shell_line(&self) -> String {
        let args: Vec<String> = self
            .args("\"$TRIAL_ID\"", "\"$SWEEP_DB\"")
            .iter()
            .map(|a| {
                let a = a.to_string_lossy();
                if a.starts_with('"') {
                    a.into_owned()
                } else {
                    slurm::shell_quote(&a)
                }
            })
            .collect();
        format!(
            "exec {} {}",
            slurm::shell_quote(&self.exe.display().to_string()),
            args.join(" ")
        )
    }
}

/// How a trial process ended, in words, for a trial it left `running`.
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (_, Some(sig)) => format!("the trial process was killed by signal {sig}"),
        (Some(c), _) => format!("the trial process exited with status {c}"),
        _ => "the trial process ended".into(),
    }
}

/// The exit status recorded for a trial process that did not record its own end.
pub fn exit_code_of(status: ExitStatus) -> i64 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .map(i64::from)
        .unwrap_or(128 + status.signal().unwrap_or(0) as i64)
}

/// The last `lines` non-empty lines of a log file.
pub fn tail_of(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// Workers: who runs a trial, and whether they are still alive

/// `host:pid`, the identity of a trial worker process.
pub fn worker_id(pid: u32) -> String {
    format!("{}:{pid}", crate::util::hostname())
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

/// Seconds since an RFC 3339 timestamp.
pub fn age_secs(ts: &str) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(ts).ok()?;
    Some((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
}

/// Is the worker of a `running` trial gone? Same host: its pid is dead. Other hosts: stale heartbeat.
pub fn worker_dead(t: &TrialRecord) -> bool {
    let host = crate::util::hostname();
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

/// Marks trials whose worker died `interrupted` (so they resume from their checkpoint).
pub fn recover_dead(s: &dyn Store, ids: &[i64]) -> Result<usize> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(state: TrialState, attempts: i64) -> TrialRecord {
        TrialRecord {
            id: 1,
            hash: "h".into(),
            config: Json::Null,
            state,
            attempts,
            error: None,
            exit_status: None,
            device: None,
            worker: None,
            created_at: None,
            started_at: None,
            finished_at: None,
            heartbeat_at: None,
            env: None,
            results: Default::default(),
            artifact_dir: None,
        }
    }

    #[test]
    fn policies_take_what_their_executor_reruns() {
        let local = Policy {
            interrupted: true,
            failed_max_attempts: Some(i64::MAX),
        };
        let slurm_plain = Policy {
            interrupted: false,
            failed_max_attempts: None,
        };
        let worker = Policy {
            interrupted: true,
            failed_max_attempts: Some(1),
        };
        for p in [local, slurm_plain, worker] {
            assert!(p.takes(&trial(TrialState::Pending, 0)));
            assert!(!p.takes(&trial(TrialState::Running, 1)));
            assert!(!p.takes(&trial(TrialState::Completed, 1)));
            assert!(!p.takes(&trial(TrialState::Diverged, 1)));
        }
        assert!(local.takes(&trial(TrialState::Failed, 7)));
        assert!(!slurm_plain.takes(&trial(TrialState::Interrupted, 1)));
        assert!(!slurm_plain.takes(&trial(TrialState::Failed, 1)));
        assert!(worker.takes(&trial(TrialState::Failed, 1)));
        assert!(!worker.takes(&trial(TrialState::Failed, 2)));
    }

    #[test]
    fn one_command_line_for_children_and_job_scripts() {
        let mut c = TrialCommand {
            exe: "/opt/sweep".into(),
            db: Some("sqlite://x.db".into()),
            device: "cpu".into(),
            checkpoint_minutes: 10.0,
            artifacts: Some("/r".into()),
            skip_if_taken: false,
            hub_cache: "/hf/hub".into(),
        };
        let envs: Vec<(String, String)> = c
            .command(7)
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into(),
                    v.unwrap().to_string_lossy().into(),
                )
            })
            .collect();
        assert_eq!(
            envs,
            [
                ("HF_HUB_CACHE".to_string(), "/hf/hub".to_string()),
                ("HF_HUB_OFFLINE".to_string(), "1".to_string())
            ]
        );
        let args: Vec<String> = c
            .command(7)
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args.join(" "),
            "trial run 7 --db sqlite://x.db --device cpu --checkpoint-minutes 10 --artifacts /r"
        );
        c.artifacts = None;
        c.skip_if_taken = true;
        c.device = "cuda:0".into();
        assert_eq!(
            c.shell_line(),
            "exec /opt/sweep trial run \"$TRIAL_ID\" --db \"$SWEEP_DB\" --device cuda:0 \
             --checkpoint-minutes 10 --skip-if-taken"
        );
    }
}
