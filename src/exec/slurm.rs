//! The Slurm executor: `sweep run --executor slurm` submits one job array, `sweep status` shows its
//! states, `sweep cancel` cancels it.
//!
//! Each array task runs `sweep trial run ID` against the shared ledger (PostgreSQL on a cluster),
//! so claims, heartbeats, metrics and dead-worker recovery are the same as on one machine. The
//! task-index -> trial-id map is `trials.txt` beside the script (line i+1 = task i). The ledger
//! URL reaches the tasks through the environment (`SWEEP_DB`, exported by sbatch), never on disk.
//! Submitted jobs are recorded in the sweep's `spec_json` under `"slurm": {"jobs": [...]}`.
//! Tasks run with `--skip-if-taken`: a trial shared by several arrays (a common baseline) is
//! trained by the first task to claim it and the others exit 0, not 75 (which Slurm calls FAILED).
//! `--artifacts` must be shared by the nodes: a node-local file system is refused before anything
//! is recorded (see [`crate::artifacts::check_shared`]). So must the Hugging Face cache when the
//! sweep starts from Hub weights: they are fetched here at submission, and the tasks run with
//! `HF_HUB_OFFLINE=1` and `HF_HUB_CACHE` pointing at it (compute nodes often have no network).

use super::{Batch, Executor, Ledger, Policy, TrialCommand};
use crate::artifacts::SharedDir;
use crate::config;
use crate::error::UsageError;
use crate::plan::PlannedTrial;
use crate::store::{self, Store};
use anyhow::{Context, Result};
use serde_json::{json, Value as Json};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The key of a sweep's recorded spec that holds its submitted jobs.
pub const SPEC_KEY: &str = "slurm";

/// `sweep run --executor slurm`, resolved.
#[derive(Debug, Clone)]
pub struct Slurm {
    pub partition: Option<String>,
    pub gpus_per_trial: u32,
    /// Time limit of one trial, `[D-]HH:MM:SS`.
    pub time: String,
    pub max_parallel: Option<usize>,
    /// Extra `#SBATCH` lines.
    pub sbatch_args: Vec<String>,
    /// Artifacts root shared by all nodes (absolute).
    pub artifacts: PathBuf,
    pub artifacts_local_ok: bool,
    /// Also resubmit interrupted and failed trials.
    pub requeue: bool,
    pub dry_run: bool,
    pub checkpoint_minutes: f64,
    pub cache_root: PathBuf,
    /// The submitting command line, for the script's header.
    pub command_line: String,
}

fn usage(msg: String) -> anyhow::Error {
    UsageError(msg).into()
}

/// `[D-]HH:MM:SS`, `MM:SS` or minutes, as Slurm accepts.
fn valid_time(t: &str) -> bool {
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, t),
    };
    if days.is_some_and(|d| d.parse::<u32>().is_err()) {
        return false;
    }
    let parts: Vec<&str> = rest.split(':').collect();
    !parts.is_empty()
        && parts.len() <= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.parse::<u32>().is_ok())
}

fn on_path(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    })
}

fn run_tool(tool: &str, args: &[&str]) -> Result<std::process::Output> {
    Command::new(tool)
        .args(args)
        .output()
        .with_context(|| format!("running {tool}"))
}

/// Directory name for a sweep (ledger names may contain `@`).
fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub(super) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The submitting command for the script's header, without the ledger URL (it may hold a password).
pub fn command_line(args: impl Iterator<Item = String>) -> String {
    let mut out = vec!["sweep".to_string()];
    let mut skip = false;
    for a in args {
        if skip {
            out.push("$SWEEP_DB".into());
            skip = false;
        } else if a == "--db" {
            out.push(a);
            skip = true;
        } else if a.starts_with("--db=") {
            out.push("--db=$SWEEP_DB".into());
        } else {
            out.push(a);
        }
    }
    out.join(" ")
}

/// Everything the generated script depends on.
pub struct ScriptSpec<'a> {
    pub sweep_name: &'a str,
    pub tasks: usize,
    pub exec: &'a Slurm,
    pub job_dir: &'a Path,
    pub work_dir: &'a Path,
    pub command: &'a TrialCommand,
    /// A sweep that grows while it runs (a search, or one run until decided): each task is a
    /// `sweep worker` that takes, adds, trains and records trials until none is left, instead of
    /// one listed trial.
    pub search: bool,
}

/// The sbatch script of a job array (pure: the same inputs give the same text).
pub fn render_script(s: &ScriptSpec) -> String {
    let mut out = String::new();
    let mut line = |l: String| {
        out.push_str(&l);
        out.push('\n');
    };
    line("#!/bin/bash".into());
    line(format!(
        "# Generated by `{}` (sweep {}).",
        s.exec.command_line,
        env!("CARGO_PKG_VERSION")
    ));
    line(format!(
        "# Sweep `{}`: {} trial(s); array task i runs the trial whose ledger id is on line i+1 of trials.txt.",
        s.sweep_name, s.tasks
    ));
    line(format!(
        "#SBATCH --job-name=sweep-{}",
        safe_name(s.sweep_name)
    ));
    let cap = s
        .exec
        .max_parallel
        .map(|k| format!("%{k}"))
        .unwrap_or_default();
    line(format!(
        "#SBATCH --array=0-{}{cap}",
        s.tasks.saturating_sub(1)
    ));
    line(format!("#SBATCH --time={}", s.exec.time));
    if let Some(p) = &s.exec.partition {
        line(format!("#SBATCH --partition={p}"));
    }
    if s.exec.gpus_per_trial > 0 {
        line(format!("#SBATCH --gres=gpu:{}", s.exec.gpus_per_trial));
    }
    line("#SBATCH --ntasks=1".into());
    line(format!(
        "#SBATCH --output={}/logs/%A_%a.out",
        s.job_dir.display()
    ));
    line("#SBATCH --open-mode=append".into());
    line(format!("#SBATCH --chdir={}", s.work_dir.display()));
    line("# SIGUSR1 two minutes before the time limit: the trial checkpoints and exits `interrupted`.".into());
    line("#SBATCH --signal=B:USR1@120".into());
    for a in &s.exec.sbatch_args {
        line(format!("#SBATCH {a}"));
    }
    line("set -euo pipefail".into());
    line(
        ": \"${SWEEP_DB:?the ledger URL is exported by sweep at submission (sbatch --export=ALL)}\""
            .into(),
    );
    if !s.search {
        line(format!(
            "TRIAL_ID=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" {})",
            shell_quote(&s.job_dir.join("trials.txt").display().to_string())
        ));
    }
    // The artifacts root: `trial run` writes to ROOT/trials/<hash> and records `trials/<hash>`.
    line(format!(
        "export SWEEP_ARTIFACTS={}",
        shell_quote(&s.exec.artifacts.display().to_string())
    ));
    line(format!(
        "export SWEEP_CACHE={}",
        shell_quote(&s.exec.cache_root.display().to_string())
    ));
    // Hub weights were fetched at submission into this cache; the nodes never download.
    for (k, v) in s.command.hub_env() {
        line(format!("export {k}={}", shell_quote(&v.to_string_lossy())));
    }
    line("export RAYON_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-$(nproc)}\"".into());
    if s.search {
        line("echo \"sweep: search task ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} on $(hostname)\"".into());
        line(
            "# A search task: ask the search for a trial (or, run until decided, add the next seed"
                .into(),
        );
        line(
            "# of an undecided row), train it, record it; again until the budget is spent or every"
                .into(),
        );
        line("# row is decided (the trials already added and not done are taken first).".into());
        line(format!(
            "exec {} worker --sweep {} --db \"$SWEEP_DB\" --device {} --checkpoint-minutes {} --retries 0",
            shell_quote(&s.command.exe.display().to_string()),
            shell_quote(s.sweep_name),
            shell_quote(&s.command.device),
            s.command.checkpoint_minutes
        ));
        return out;
    }
    line("echo \"sweep: task ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} on $(hostname): trial ${TRIAL_ID}\"".into());
    line("# exec: Slurm's signals reach the trial itself. --skip-if-taken: a trial that another task".into());
    line(
        "# or worker has done or is running (a baseline shared by several arrays) exits 0, not 75."
            .into(),
    );
    line(s.command.shell_line());
    out
}

/// Write `path` atomically (temp file in the same directory, then rename).
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

fn check_writable(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        usage(format!(
            "--artifacts {}: cannot create it: {e}; fix: pass a directory on a file system shared by \
             the nodes that you can write",
            dir.display()
        ))
    })?;
    let probe = dir.join(format!(".sweep-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"ok").map_err(|e| {
        usage(format!(
            "--artifacts {}: not writable: {e}; fix: pass a directory on a file system shared by \
             the nodes that you can write",
            dir.display()
        ))
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

impl Executor for Slurm {
    /// The Slurm flags, the tools and the artifacts root, before anything is read or recorded.
    fn check_flags(&self) -> Result<()> {
        self.check_slurm_flags()?;
        if let Some(warning) = crate::artifacts::check_shared(
            &self.artifacts,
            self.artifacts_local_ok,
            SharedDir::Artifacts,
        )? {
            eprintln!("warning: {warning}");
        }
        check_writable(&self.artifacts)
    }

    /// Fetches the sweep's Hub weights here, on the submitting machine: the tasks run offline
    /// from this cache, which the nodes must therefore share (checked like `--artifacts`).
    fn preflight(&self, sweep: &config::Sweep, planned: &[PlannedTrial]) -> Result<()> {
        crate::train::preflight_models(planned.iter().map(|p| p.config()))?;
        if !super::fetch_hub_models(&sweep.models())? {
            return Ok(());
        }
        let cache = crate::checkpoint::hf_cache_dir();
        if let Some(warning) =
            crate::artifacts::check_shared(&cache, self.artifacts_local_ok, SharedDir::HubCache)?
        {
            eprintln!("warning: {warning}");
        }
        Ok(())
    }

    fn policy(&self) -> Policy {
        Policy {
            interrupted: self.requeue,
            failed_max_attempts: self.requeue.then_some(i64::MAX),
        }
    }

    /// Writes the job array of the trials to run and submits it (or prints it: `--dry-run`).
    fn execute(&mut self, ledger: &Ledger, batch: &Batch) -> Result<ExitCode> {
        let s = &*ledger.store;
        if !store::is_postgres(&ledger.url) {
            eprintln!(
                "warning: ledger {} is SQLite: every node must see this file and SQLite locking \
                 over network file systems is unreliable; use --db postgres://... on a cluster",
                ledger.url
            );
        }
        let (todo, _) = super::todo(s, batch, self.policy())?;
        self.say_what_is_submitted(s, batch, &todo)?;
        // A search's tasks each loop until the budget is spent: as many as may run at once. A
        // sweep run until decided may add up to max_seeds replicates of each row likewise.
        let mut to_suggest = batch.total(s)?.saturating_sub(batch.trial_ids.len());
        for d in &batch.decide {
            to_suggest += d.until.max_seeds() * batch.trial_ids.len();
        }
        let tasks = match to_suggest {
            0 => todo.len(),
            n => (todo.len() + n).min(self.max_parallel.unwrap_or(usize::MAX)),
        };
        if tasks == 0 {
            eprintln!("nothing to submit");
            return Ok(ExitCode::SUCCESS);
        }
        let (script_path, job_dir, script) = self.write_job(batch, &todo, tasks)?;
        if self.dry_run {
            print!("{script}");
            eprintln!("dry run: wrote {} (not submitted)", script_path.display());
            return Ok(ExitCode::SUCCESS);
        }
        let job_id = sbatch(&script_path, &ledger.url)?;
        let mut jobs = s
            .sweep_by_name(&batch.name)?
            .map(|sw| slurm_jobs(&sw.spec))
            .unwrap_or_default();
        jobs.push(json!({
            "job_id": job_id,
            "dir": job_dir.display().to_string(),
            "trials": todo,
            "submitted_at": store::now(),
        }));
        super::annotate(ledger, batch, SPEC_KEY, json!({ "jobs": jobs }))
            .context("recording the Slurm job id in the ledger")?;
        eprintln!(
            "submitted job array {job_id} ({tasks} {}{}); script {}; `sweep status {}` shows progress",
            match (batch.search.is_empty(), batch.decide.is_empty()) {
                (true, true) => "tasks",
                (false, _) => "search tasks",
                (true, false) => "worker tasks, adding seeds until decided",
            },
            self.max_parallel
                .map(|k| format!(", at most {k} at once"))
                .unwrap_or_default(),
            script_path.display(),
            batch.name
        );
        println!("{job_id}");
        Ok(ExitCode::SUCCESS)
    }
}

impl Slurm {
    fn check_slurm_flags(&self) -> Result<()> {
        if !valid_time(&self.time) {
            return Err(usage(format!(
                "--time {}: not a Slurm time limit; fix: use HH:MM:SS or D-HH:MM:SS, e.g. 04:00:00",
                self.time
            )));
        }
        if self.max_parallel == Some(0) {
            return Err(usage(
                "--max-parallel 0: fix: use 1 or more (or leave it out for no cap)".into(),
            ));
        }
        if self.dry_run {
            return Ok(());
        }
        if on_path("sbatch").is_none() {
            return Err(usage(
                "--executor slurm: `sbatch` is not on PATH; fix: run on a Slurm login node (or \
                 load the Slurm module), or use --executor local"
                    .into(),
            ));
        }
        match &self.partition {
            Some(p) => check_partition(p),
            None => Ok(()),
        }
    }

    fn say_what_is_submitted(&self, s: &dyn Store, batch: &Batch, todo: &[i64]) -> Result<()> {
        use crate::store::TrialState;
        let (mut done, mut running, mut held) = (0, 0, 0);
        for id in &batch.trial_ids {
            match s.trial(*id)?.map(|t| t.state) {
                Some(TrialState::Interrupted | TrialState::Failed) if !todo.contains(id) => {
                    held += 1
                }
                Some(TrialState::Running) => running += 1,
                Some(st) if st.is_done() => done += 1,
                _ => {}
            }
        }
        eprintln!(
            "sweep {}: {} trials: {done} done, {running} running, {} to submit{}{}",
            batch.name,
            batch.trial_ids.len(),
            todo.len(),
            if held > 0 {
                format!(", {held} interrupted/failed (resubmit them with --requeue)")
            } else {
                String::new()
            },
            if batch.recovered > 0 {
                format!(", {} marked interrupted (dead worker)", batch.recovered)
            } else {
                String::new()
            }
        );
        Ok(())
    }

    /// The job directory with `trials.txt` and `job.sbatch`; (script path, job dir, script).
    fn write_job(
        &self,
        batch: &Batch,
        todo: &[i64],
        tasks: usize,
    ) -> Result<(PathBuf, PathBuf, String)> {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let job_dir = self
            .artifacts
            .join("slurm")
            .join(format!("{}-{stamp}", safe_name(&batch.name)));
        std::fs::create_dir_all(job_dir.join("logs"))
            .with_context(|| format!("creating {}", job_dir.display()))?;
        let trials_root = self.artifacts.join(crate::artifacts::TRIALS_SUBDIR);
        std::fs::create_dir_all(&trials_root)
            .with_context(|| format!("creating {}", trials_root.display()))?;
        let list: String = todo.iter().map(|id| format!("{id}\n")).collect();
        write_atomic(&job_dir.join("trials.txt"), &list)?;
        let cwd = std::env::current_dir().context("reading the working directory")?;
        // The URL comes from $SWEEP_DB (exported by sbatch) and the root from $SWEEP_ARTIFACTS:
        // neither is written into the script's command.
        let mut command = TrialCommand::for_this_exe(
            None,
            if self.gpus_per_trial > 0 {
                "cuda:0"
            } else {
                "cpu"
            },
            self.checkpoint_minutes,
            None,
        )?;
        command.skip_if_taken = true;
        let script = render_script(&ScriptSpec {
            sweep_name: &batch.name,
            tasks,
            exec: self,
            job_dir: &job_dir,
            work_dir: &cwd,
            command: &command,
            search: !batch.search.is_empty() || !batch.decide.is_empty(),
        });
        let script_path = job_dir.join("job.sbatch");
        write_atomic(&script_path, &script)?;
        Ok((script_path, job_dir, script))
    }
}

fn check_partition(p: &str) -> Result<()> {
    let out = run_tool("sinfo", &["-h", "-o", "%P"])?;
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_end_matches('*').to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if !out.status.success() {
        return Err(usage(format!(
            "--partition {p}: `sinfo` failed: {}; fix: check that slurmctld is reachable",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    if !names.iter().any(|n| n == p) {
        return Err(usage(format!(
            "--partition {p}: no such partition; fix: use one of: {}",
            names.join(", ")
        )));
    }
    Ok(())
}

/// Submits a script; the job id.
fn sbatch(script_path: &Path, url: &str) -> Result<String> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(script_path)
        .env("SWEEP_DB", url)
        .output()
        .context("running sbatch")?;
    if !out.status.success() {
        return Err(usage(format!(
            "sbatch rejected {}: {}; fix: check --partition/--time/--gpus-per-trial/--sbatch-arg",
            script_path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let job_id = stdout.trim().split(';').next().unwrap_or("").to_string();
    if job_id.is_empty() || !job_id.chars().all(|c| c.is_ascii_digit()) {
        anyhow::bail!("sbatch printed no job id: {stdout:?}");
    }
    Ok(job_id)
}

fn slurm_jobs(spec: &Json) -> Vec<Json> {
    spec.get(SPEC_KEY)
        .and_then(|s| s.get("jobs"))
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Slurm states of a sweep's submitted jobs (`squeue`, then `sacct` for finished tasks), as text for
/// `sweep status`; empty when the sweep was never submitted to Slurm.
pub fn status_section(spec: &Json) -> String {
    let jobs = slurm_jobs(spec);
    if jobs.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nslurm jobs:\n");
    let have_squeue = on_path("squeue").is_some();
    for job in jobs {
        let id = job["job_id"].as_str().unwrap_or("?");
        let trials: Vec<i64> = job["trials"]
            .as_array()
            .map(|a| a.iter().filter_map(Json::as_i64).collect())
            .unwrap_or_default();
        out.push_str(&format!(
            "  job {id}: {} task(s), submitted {}, files {}\n",
            trials.len(),
            job["submitted_at"].as_str().unwrap_or("?"),
            job["dir"].as_str().unwrap_or("?")
        ));
        if !have_squeue {
            out.push_str("    (squeue is not on PATH: states unknown here)\n");
            continue;
        }
        let mut states: Vec<Option<String>> = vec![None; trials.len()];
        let fill = |states: &mut Vec<Option<String>>, text: &str| {
            for l in text.lines() {
                let f: Vec<&str> = l.split('|').collect();
                if f.len() < 2 {
                    continue;
                }
                if let Some((_, idx)) = f[0].split_once('_') {
                    if let Ok(i) = idx.parse::<usize>() {
                        if i < states.len() && states[i].is_none() {
                            states[i] = Some(f[1..].join("  "));
                        }
                    }
                }
            }
        };
        if let Ok(o) = run_tool(
            "squeue",
            &["-h", "-r", "--states=all", "-j", id, "-o", "%i|%T|%M|%R"],
        ) {
            fill(&mut states, &String::from_utf8_lossy(&o.stdout));
        }
        let mut sacct_note = None;
        if states.iter().any(Option::is_none) {
            match run_tool(
                "sacct",
                &[
                    "-n",
                    "-P",
                    "-X",
                    "-j",
                    id,
                    "-o",
                    "JobID,State,Elapsed,ExitCode",
                ],
            ) {
                Ok(o) if o.status.success() => {
                    fill(&mut states, &String::from_utf8_lossy(&o.stdout))
                }
                Ok(o) => {
                    sacct_note = Some(
                        String::from_utf8_lossy(&o.stderr)
                            .lines()
                            .next()
                            .unwrap_or("sacct failed")
                            .to_string(),
                    )
                }
                Err(e) => sacct_note = Some(format!("{e:#}")),
            }
        }
        for (i, (t, st)) in trials.iter().zip(&states).enumerate() {
            let st = st.clone().unwrap_or_else(|| match &sacct_note {
                Some(n) => format!("not queued (finished; sacct: {n})"),
                None => "not queued (finished)".into(),
            });
            out.push_str(&format!("    {id}_{i:<4} trial {t:<6} {st}\n"));
        }
    }
    out
}

/// `sweep cancel SWEEP`: scancel every Slurm job recorded for the sweep.
pub fn cancel(ledger: &Ledger, sweep: &str) -> Result<ExitCode> {
    let Some(sw) = ledger.store.sweep_by_name(sweep)? else {
        return Err(usage(format!(
            "sweep {sweep}: not in the ledger; fix: see `sweep status` for names"
        )));
    };
    let ids: Vec<String> = slurm_jobs(&sw.spec)
        .iter()
        .filter_map(|j| j["job_id"].as_str().map(str::to_string))
        .collect();
    if ids.is_empty() {
        return Err(usage(format!(
            "sweep {sweep}: no Slurm job was submitted for it; fix: stop a local `sweep run` with Ctrl-C"
        )));
    }
    if on_path("scancel").is_none() {
        return Err(usage(
            "`scancel` is not on PATH; fix: run on a Slurm login node".into(),
        ));
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let out = run_tool("scancel", &refs)?;
    if !out.status.success() {
        anyhow::bail!(
            "scancel {}: {}",
            ids.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    eprintln!(
        "cancelled Slurm job(s) {} of sweep {}: running trials checkpoint and become `interrupted` \
         (resubmit with `sweep run FILE --executor slurm --requeue`)",
        ids.join(", "),
        sw.name
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_limits() {
        for ok in ["04:00:00", "1-00:00:00", "30", "10:00"] {
            assert!(valid_time(ok), "{ok}");
        }
        for bad in ["", "4h", "1-", "a:b:c", "1:2:3:4"] {
            assert!(!valid_time(bad), "{bad}");
        }
    }

    #[test]
    fn script_has_the_array_and_the_task_command() {
        let exec = Slurm {
            partition: Some("gpu".into()),
            gpus_per_trial: 1,
            time: "02:00:00".into(),
            max_parallel: Some(3),
            sbatch_args: vec!["--account=nlp".into()],
            artifacts: "/shared/results".into(),
            artifacts_local_ok: false,
            requeue: false,
            dry_run: false,
            checkpoint_minutes: 10.0,
            cache_root: "/shared/results/cache".into(),
            command_line: "sweep run x.toml --executor slurm".into(),
        };
        let command = TrialCommand {
            exe: "/opt/sweep/bin/sweep".into(),
            db: None,
            device: "cuda:0".into(),
            checkpoint_minutes: 10.0,
            artifacts: None,
            skip_if_taken: true,
            hub_cache: "/shared/hf/hub".into(),
        };
        let text = render_script(&ScriptSpec {
            sweep_name: "block_size@quick",
            tasks: 5,
            exec: &exec,
            job_dir: Path::new("/shared/results/slurm/j"),
            work_dir: Path::new("/home/u/sweep"),
            command: &command,
            search: false,
        });
        for want in [
            "#SBATCH --array=0-4%3",
            "#SBATCH --partition=gpu",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --time=02:00:00",
            "#SBATCH --account=nlp",
            "#SBATCH --job-name=sweep-block_size_quick",
            "sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" /shared/results/slurm/j/trials.txt",
            "--device cuda:0",
            "exec /opt/sweep/bin/sweep trial run \"$TRIAL_ID\" --db \"$SWEEP_DB\"",
            "--skip-if-taken",
            "export SWEEP_ARTIFACTS=/shared/results\n",
            "export HF_HUB_CACHE=/shared/hf/hub\nexport HF_HUB_OFFLINE=1\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(
            !text.contains("postgres://"),
            "no credentials in the script"
        );
        // A search: every task is a worker that loops ask -> train -> tell.
        let search = render_script(&ScriptSpec {
            sweep_name: "lr_search@quick",
            tasks: 3,
            exec: &exec,
            job_dir: Path::new("/shared/results/slurm/j"),
            work_dir: Path::new("/home/u/sweep"),
            command: &command,
            search: true,
        });
        assert!(search.contains("#SBATCH --array=0-2%3"), "{search}");
        assert!(
            search.contains(
                "exec /opt/sweep/bin/sweep worker --sweep lr_search@quick --db \"$SWEEP_DB\" \
                 --device cuda:0 --checkpoint-minutes 10 --retries 0"
            ),
            "{search}"
        );
        assert!(!search.contains("TRIAL_ID"), "{search}");
        assert!(search.contains("export HF_HUB_OFFLINE=1\n"), "{search}");
    }

    #[test]
    fn header_hides_the_ledger_url() {
        let args = [
            "run",
            "x.toml",
            "--db",
            "postgres://u:pw@h/db",
            "--db=postgres://u:pw@h/d",
        ];
        let line = command_line(args.iter().map(|s| s.to_string()));
        assert_eq!(line, "sweep run x.toml --db $SWEEP_DB --db=$SWEEP_DB");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/a/b"), "/a/b");
        assert_eq!(shell_quote("a b'c"), "'a b'\\''c'");
    }
}
