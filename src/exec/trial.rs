//! `sweep trial run ID`: the process that runs one recorded trial, whichever executor started it.
//!
//! It claims its trial atomically in the ledger (a trial running elsewhere or done is left alone:
//! exit [`EXIT_NOT_CLAIMED`], or 0 with `--skip-if-taken`), records its environment (and, once
//! the trainer has looked, the checkpoint it resumed from and any it passed over), trains
//! through a [`StoreSink`] (teed with a [`TbSink`]: TensorBoard event files in the trial's `tb/`)
//! and records how the attempt ended; a full disk's error names the fix. A stop request (SIGINT, SIGTERM,
//! SIGUSR1) checkpoints and exits 130 with the trial `interrupted`; it resumes from that
//! checkpoint next time. A crash, OOM or panic here ends only this trial.

use super::prune::PruningSink;
use super::sink::StoreSink;
use super::{recover_dead, worker_id, Ledger, EXIT_NOT_CLAIMED};
use crate::checkpoint::{self, NoSpace, Resumption};
use crate::error::UsageError;
use crate::signals::{self, OnSecond};
use crate::store::{Outcome, Store, TrialRecord, TrialResults, TrialState};
use crate::tensorboard::{self, TbSink};
use crate::train::sinks::Tee;
use crate::train::{self, MetricRow, MetricSink, RunContext, TrialEnd};
use crate::trial::TrialConfig;
use anyhow::{Context, Result};
use serde_json::{json, Value as Json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// What `sweep trial run` was asked to do, resolved.
#[derive(Debug, Clone)]
pub struct TrialRun {
    pub id: i64,
    pub db: String,
    pub device: String,
    pub checkpoint_minutes: f64,
    pub progress: bool,
    pub artifacts: PathBuf,
    pub cache_root: PathBuf,
    pub skip_if_taken: bool,
}

pub fn run(args: &TrialRun) -> Result<ExitCode> {
    let s = Ledger::open(&args.db)?.store;
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
    // A stop request checkpoints and ends the trial; a second one ends the process at once.
    let cancel = signals::cancel_flag(OnSecond::Exit);
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
    let work_dir = crate::artifacts::trial_dir(&args.artifacts, &t.hash);
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    let ctx = RunContext {
        work_dir: work_dir.clone(),
        cache_root: args.cache_root.clone(),
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
                error: failure_text(&e, &args.artifacts),
                exit_status: Some(1),
            },
            1,
        ),
    };
    if let Outcome::Failed { error, .. } = &outcome {
        eprintln!("trial {} failed: {error}", t.id);
    }
    let code = match &outcome {
        Outcome::Interrupted { .. } if args.skip_if_taken => {
            eprintln!(
                "trial {}: interrupted after a checkpoint; this array task exits 0 (the ledger \
                 says interrupted; `sweep run FILE --executor slurm --requeue` resumes it)",
                t.id
            );
            0
        }
        _ => code,
    };
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
    let ident = crate::plan::Identifier::new(&ctx.cache_root).identify(cfg)?;
    if let Some(e) = &ident.data_error {
        anyhow::bail!("{e}");
    }
    let mut env = train::environment(ctx);
    if let Some(m) = env.as_object_mut() {
        m.insert("seed".into(), json!(cfg.seed));
        // Where the weights started, as the trainer decides it: the report reads this.
        m.insert("start".into(), json!(cfg.start()?.as_str()));
        m.insert("data_manifest_hash".into(), json!(ident.data_hash));
        m.insert("tokenizer_id".into(), json!(ident.tokenizer_id));
        m.insert("config".into(), t.config.clone());
        m.insert("worker".into(), json!(worker));
        m.insert("identity_hash".into(), json!(ident.hash));
        // The Hub commit the weights came from (the identity holds their content hash).
        if let Some(hub) = cfg.model.hub() {
            let r = crate::checkpoint::hub::resolve(&hub)?;
            m.insert("hub".into(), r.env_json());
        }
        if ident.hash != t.hash {
            m.insert(
                "identity_changed".into(),
                json!(
                    "the data, tokenizer or pretrained weights changed since the trial was \
                     recorded"
                ),
            );
        }
    }
    let pruning = match super::prune::pruner_of(&**s, t.id)? {
        Some(p) => Some(p.place(cfg, &ctx.cache_root)?),
        None => None,
    };
    if let (Some(placement), Some(m)) = (pruning.and_then(|p| p.placement), env.as_object_mut()) {
        // Before any metric row: the other trials of the search read the bracket from here.
        m.insert("hyperband".into(), serde_json::to_value(placement)?);
    }
    s.set_env(t.id, &env)?;
    let mut sink = StoreSink::spawn(s.clone(), t.id, worker.to_string(), ctx.cancel.clone());
    let label = vec![(tensorboard::LABEL_TAG.to_string(), tb_label(&**s, t))];
    let mut tb = TbSink::new(ctx.work_dir.join(tensorboard::TB_SUBDIR), label);
    let mut pruned = None;
    let mut note = ResumeNote {
        store: s,
        id: t.id,
        env: &mut env,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut both = Tee(vec![&mut sink, &mut tb, &mut note]);
        match pruning {
            Some(p) => {
                let mut ps = PruningSink::new(&mut both, s.clone(), t.id, p, ctx.cancel.clone());
                let r = train::run_trial(cfg, ctx, &mut ps);
                pruned = ps.decision().cloned();
                r
            }
            None => train::run_trial(cfg, ctx, &mut both),
        }
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
        TrialEnd::Interrupted => match pruned {
            // Stopped by its pruner: final, with the decision in the environment.
            Some(d) => {
                let mut env = env.clone();
                env["pruned"] = serde_json::to_value(&d)?;
                s.set_env(t.id, &env)?;
                (
                    Outcome::Pruned {
                        error: d.sentence(),
                    },
                    0,
                )
            }
            None => (Outcome::Interrupted { error: None }, 130),
        },
    })
}

/// Records in the trial's environment where its run started, as soon as the trainer knows:
/// `resume` (the checkpoint used, and each one passed over with what was wrong) and
/// `resumed_from_step`.
struct ResumeNote<'a> {
    store: &'a Arc<dyn Store>,
    id: i64,
    env: &'a mut Json,
}

impl MetricSink for ResumeNote<'_> {
    fn record(&mut self, _row: &MetricRow) -> Result<()> {
        Ok(())
    }

    fn resumed(&mut self, r: &Resumption) -> Result<()> {
        if let Some(m) = self.env.as_object_mut() {
            m.insert("resume".into(), serde_json::to_value(r)?);
            match &r.checkpoint {
                Some(c) => m.insert("resumed_from_step".into(), json!(c.step)),
                None => m.remove("resumed_from_step"),
            };
        }
        self.store.set_env(self.id, self.env)
    }
}

/// A failed attempt's error as the ledger keeps it; a full disk gets the fix, and says where a
/// rerun starts.
fn failure_text(e: &anyhow::Error, artifacts: &Path) -> String {
    let text = format!("{e:#}");
    if !checkpoint::is_no_space(e) {
        return text;
    }
    let rerun = match e.downcast_ref::<NoSpace>() {
        Some(NoSpace { kept: Some(c), .. }) => format!("the trial resumes from checkpoint {c}"),
        Some(NoSpace { kept: None, .. }) => "the trial starts from the beginning".into(),
        None => "the trial resumes from its newest good checkpoint".into(),
    };
    format!(
        "{text}; fix: free space under --artifacts {} (`df -h {0}`), then run `sweep run` \
         again: {rerun}",
        artifacts.display()
    )
}

/// The text that names a trial's TensorBoard run: each sweep it belongs to with its axis values
/// there (a trial's directory is named by its hash, which TensorBoard shows as the run name).
fn tb_label(s: &dyn Store, t: &TrialRecord) -> String {
    let mut lines: Vec<String> = crate::store::read::trial_sweeps(s, t.id)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, st)| tensorboard::membership_line(&name, &st.label, st.is_baseline))
        .collect();
    lines.push(format!("trial {}, hash `{}`", t.id, t.short_hash()));
    lines.join("\n\n")
}
