//! `sweep plan`: what a sweep file expands to, what the ledger already has of it, and what the
//! rest would cost on this machine; writes nothing.

use super::ledger_name;
use crate::config;
use crate::outln;
use crate::plan::{human_secs, label_text, PlannedTrial};
use crate::store::{self, Reader, TrialRecord, TrialState};
use crate::train;
use crate::trial::TrialConfig;
use anyhow::Result;
use serde_json::Value as Json;
use std::path::Path;

const DAY_SECS: f64 = 86_400.0;

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

/// This device's training rate in FLOP/s: the median of what the ledger's completed trials
/// reached (tokens/s x their FLOPs per token), else measured here and now.
struct Rate {
    done: Vec<TrialRecord>,
    device: String,
    flops: Option<(f64, &'static str)>,
}

impl Rate {
    fn get(&mut self) -> Option<(f64, &'static str)> {
        if self.flops.is_none() {
            let mut seen: Vec<f64> = self
                .done
                .iter()
                .filter_map(|t| {
                    let tps = t.results.tokens_per_s.filter(|v| *v > 0.0)?;
                    let cfg = serde_json::from_value::<TrialConfig>(t.config.clone()).ok()?;
                    Some(tps * train::estimate::trial_flops_per_token(&cfg).ok()?)
                })
                .collect();
            seen.sort_by(f64::total_cmp);
            self.flops = match seen.get(seen.len() / 2) {
                Some(r) => Some((*r, "the ledger's completed trials")),
                None => train::estimate::measure_flops(&self.device)
                    .ok()
                    .map(|r| (r, "measured just now")),
            };
        }
        self.flops
    }
}

/// A trial's estimated training time: from a completed trial of the same shape (exact), else
/// from its FLOPs at the device's rate (`~`, approximate).
fn estimate(
    cfg: &TrialConfig,
    info: &train::TrialPlanInfo,
    rate: &mut Rate,
) -> Option<(f64, bool)> {
    let tokens =
        info.total_steps as f64 * (cfg.batch_size * cfg.grad_accum * cfg.block_size) as f64;
    if let Some(tps) = known_throughput(&rate.done, cfg) {
        return Some((tokens / tps, true));
    }
    let flops = train::estimate::trial_flops_per_token(cfg).ok()?;
    let (r, _) = rate.get()?;
    Some((tokens * flops / r, false))
}

/// `sweep plan`: the expanded trials with their state in the ledger, token and step counts and
/// estimated time on `device`.
pub fn render(
    sweep: &config::Sweep,
    planned: &[PlannedTrial],
    url: &str,
    cache_root: &Path,
    device: &str,
) -> Result<String> {
    let mut out = String::new();
    // Planning writes nothing: the ledger is opened read-only, a SQLite one only if it exists.
    let ledger: Option<Box<dyn Reader>> = match store::sqlite_file(url) {
        Some(file) if !file.is_file() => None,
        _ => Some(store::open_read_only(url)?),
    };
    let done: Vec<TrialRecord> = match &ledger {
        Some(s) => s.trials_in_state(TrialState::Completed)?,
        None => Vec::new(),
    };
    outln!(
        out,
        "sweep {} ({}, {} trials{})",
        ledger_name(sweep),
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
    let mut rate = Rate {
        done,
        device: device.to_string(),
        flops: None,
    };
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
            train::plan_info(p.config(), cache_root).ok()
        } else {
            None
        };
        let (tokens, steps) = match &info {
            Some(i) => (i.train_tokens.to_string(), i.total_steps.to_string()),
            None => ("?".into(), "?".into()),
        };
        let est = match info
            .as_ref()
            .and_then(|i| estimate(p.config(), i, &mut rate))
        {
            Some((secs, exact)) => {
                if state != "done" {
                    total_est += secs;
                }
                format!("{}{}", if exact { "" } else { "~" }, human_secs(secs))
            }
            None => {
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
            cache_root,
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
        if let Some((r, source)) = rate.flops {
            outln!(
                out,
                "  (~: from each trial's FLOPs per token at {:.1} GFLOP/s on {device}, {source})",
                r / 1e9
            );
        }
    }
    if total_est > DAY_SECS {
        outln!(
            out,
            "note: this plan takes about {:.0} days on {device}; fix: run the CPU-scale version \
             (`--profile quick`, where the file has one) or on a GPU (`--devices cuda:0` with a \
             `--features cuda` build)",
            total_est / DAY_SECS
        );
    }
    Ok(out)
}
