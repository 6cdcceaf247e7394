//! `sweep status`: the sweeps of a ledger with their progress, or one sweep's trials (state,
//! attempts, progress, valid PPL, throughput, worker heartbeat, error) and its Slurm jobs.

use super::age_secs;
use crate::checkpoint::Resumption;
use crate::error::UsageError;
use crate::outln;
use crate::plan::label_text;
use crate::store::{Reader, SweepTrial, TrialState};
use anyhow::Result;
use std::path::Path;

/// `sweep status [SWEEP]`: every sweep with its counts, or one sweep's trials.
pub fn render(s: &dyn Reader, sweep: Option<&str>, root: &Path) -> Result<String> {
    let mut out = String::new();
    match sweep {
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
                // A search counts its budget: the suggestions still to come are to do.
                let budget = sw.spec["search"]["trials"].as_u64().map(|b| b as usize);
                let to_suggest = budget.map_or(0, |b| b.saturating_sub(trials.len()));
                outln!(
                    out,
                    "{:<28} {:<9} {:>6} {:>5} {:>5} {:>5} {:>5} {:>11}  {}",
                    sw.name,
                    sw.kind.as_deref().unwrap_or("-"),
                    budget.unwrap_or(trials.len()),
                    count(&|st| st.is_done()),
                    count(&|st| st == TrialState::Running),
                    count(&|st| st == TrialState::Failed),
                    count(&|st| matches!(st, TrialState::Pending | TrialState::Interrupted))
                        + to_suggest,
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
            let mut missing = Vec::new();
            let trials = s.sweep_trials(sw.id)?;
            for st in &trials {
                let t = &st.trial;
                if t.state == TrialState::Completed && t.artifact_dir.is_some() {
                    let (dir, found) =
                        crate::artifacts::model_dir(root, t.artifact_dir.as_deref(), &t.hash);
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
            out.push_str(&checkpoint_section(&trials));
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
            out.push_str(&super::slurm::status_section(&sw.spec));
        }
    }
    Ok(out)
}

/// The trials whose last attempt found a checkpoint that failed verification: which one each
/// resumed from (or that it restarted) and what was wrong with the others (`env.resume`, written
/// by the trial process).
fn checkpoint_section(trials: &[SweepTrial]) -> String {
    let mut out = String::new();
    for st in trials {
        let t = &st.trial;
        let Some(r) = t
            .env
            .as_ref()
            .and_then(|e| e.get("resume"))
            .and_then(|v| serde_json::from_value::<Resumption>(v.clone()).ok())
            .filter(|r| !r.rejected.is_empty())
        else {
            continue;
        };
        if out.is_empty() {
            outln!(
                out,
                "\ncheckpoints that failed verification (the trials went on):"
            );
        }
        outln!(
            out,
            "  trial {} [{}]: {}",
            t.id,
            t.short_hash(),
            r.summary()
        );
        for bad in &r.rejected {
            outln!(out, "    {bad}");
        }
    }
    out
}
