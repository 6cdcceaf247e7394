//! `sweep plan`: what a sweep file expands to, what the ledger already has of it, and what the
//! rest would cost on this machine; writes nothing.

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
    if let Some(search) = &sweep.search {
        return render_search(sweep, search, ledger.as_deref(), cache_root, device);
    }
    outln!(
        out,
        "sweep {} ({}, {} trials{})",
        sweep.ledger_name(),
        sweep.kind.as_str(),
        planned.len(),
        sweep
            .title
            .as_ref()
            .map(|t| format!(": {t}"))
            .unwrap_or_default()
    );
    chain_line(&mut out, sweep);
    hub_models(&mut out, sweep)?;
    let (total_est, unknown_est, rate) =
        rows(&mut out, planned, ledger.as_deref(), cache_root, device)?;
    footer(
        &mut out,
        "unfinished trials",
        total_est,
        unknown_est,
        &rate,
        device,
    );
    Ok(out)
}

/// A path as the user would type it: relative to the working directory when under it.
fn shown(path: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    path.strip_prefix(&cwd)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The files a sweep file extends (nothing for one that extends none).
fn chain_line(out: &mut String, sweep: &config::Sweep) {
    if !sweep.extends.is_empty() {
        let extended: Vec<String> = sweep.extends.iter().map(|p| shown(p)).collect();
        outln!(
            out,
            "from {}, extending {} (lowest precedence first)",
            shown(&sweep.file),
            extended.join(", ")
        );
    }
}

/// `sweep plan --explain`: each key of the first trial, its value and where it was set.
pub fn render_explain(
    sweep: &config::Sweep,
    trial: &config::ResolvedTrial,
    origins: &[config::Origin],
) -> String {
    let mut out = String::new();
    outln!(
        out,
        "sweep {}, trial 1 ({}{}): each key, what set it and where",
        sweep.ledger_name(),
        label_text(&Json::Object(trial.label.clone())),
        if trial.is_baseline { "*" } else { "" }
    );
    chain_line(&mut out, sweep);
    let width = |f: fn(&config::Origin) -> usize| origins.iter().map(f).max().unwrap_or(0);
    let (kw, lw, aw) = (
        width(|o| o.key.len()),
        width(|o| o.layer.len()),
        width(|o| o.at.len()),
    );
    for o in origins {
        let value = match &o.value {
            Json::String(v) => v.clone(),
            v => v.to_string(),
        };
        let line = format!("  {:<kw$}  {:<lw$}  {:<aw$}  {value}", o.key, o.layer, o.at);
        outln!(out, "{}", line.trim_end());
    }
    out
}

/// One line per Hub model: the commit its revision resolved to (the identities hold its
/// weights' hash) and whether the weights are in the cache or still to download.
fn hub_models(out: &mut String, sweep: &config::Sweep) -> Result<()> {
    for hub in sweep.models().iter().filter_map(|m| m.hub()) {
        let r = crate::checkpoint::hub::resolve(&hub)?;
        let size = r
            .weights_size
            .map(|b| format!(" ({})", indicatif::HumanBytes(b)));
        let place = if r.is_local() {
            "in the Hugging Face cache".to_string()
        } else {
            format!(
                "weights{} to download: `sweep run` fetches them first, `sweep fetch {hub}` \
                 ahead of time",
                size.unwrap_or_default()
            )
        };
        outln!(out, "model {hub}: {}, {place}", r.describe());
    }
    Ok(())
}

/// One line per trial (state in the ledger, tokens, steps, estimated time); the estimated time
/// of the unfinished ones, how many have none, and the rate used.
fn rows(
    out: &mut String,
    planned: &[PlannedTrial],
    ledger: Option<&dyn Reader>,
    cache_root: &Path,
    device: &str,
) -> Result<(f64, usize, Rate)> {
    let done: Vec<TrialRecord> = match ledger {
        Some(s) => s.trials_in_state(TrialState::Completed)?,
        None => Vec::new(),
    };
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
        let state = match ledger {
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
            "note: the first trial pretrains {} locally once ({} tokens of the training split \
             past its first {}, which the trials fine-tune on; ~1.5 minutes for gpt2-tiny on 2 CPU \
             cores), not counted in the estimates",
            p.config().model,
            train::pretrain::PRETRAIN_TOKENS,
            train::pretrain::PRETRAIN_SKIP_TOKENS
        );
    }
    Ok((total_est, unknown_est, rate))
}

/// The estimated total (`what` it covers), the rate behind `~` estimates, and a note when the
/// plan takes days.
fn footer(
    out: &mut String,
    what: &str,
    total_est: f64,
    unknown_est: usize,
    rate: &Rate,
    device: &str,
) {
    if total_est > 0.0 {
        outln!(
            out,
            "estimated time for {what}: {}{} (one job)",
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
             (`--profile quick`, where the file has one) or on a GPU with {}",
            total_est / DAY_SECS,
            fastest_gpu_path()
        );
    }
}

/// The fastest GPU path of this build: LibTorch (`tch:cuda:N`: PyTorch's kernels, flash
/// attention), which the `tch` feature brings; CubeCL's `cuda` build measured 0.37x of HF
/// transformers (README, Training).
fn fastest_gpu_path() -> &'static str {
    if cfg!(feature = "tch") {
        "LibTorch: `--devices tch:cuda:0` (this build has it; torch's lib/ on LD_LIBRARY_PATH)"
    } else {
        "LibTorch, the fastest path: build with `cargo build --release --features tch` (README, \
         \"The LibTorch backend\") and run with `--devices tch:cuda:0`"
    }
}

/// Suggestions of a search that `sweep plan` shows (and estimates the cost from).
const PREVIEW: usize = 5;

/// `sweep plan` of a search sweep: the space, the budget, what the ledger has of it, the first
/// suggestions (those that do not depend on results: random ones, TPE's start-up draws) and the
/// estimated cost of the remaining budget.
fn render_search(
    sweep: &config::Sweep,
    search: &config::search::Search,
    ledger: Option<&dyn Reader>,
    cache_root: &Path,
    device: &str,
) -> Result<String> {
    let mut out = String::new();
    let name = sweep.ledger_name();
    describe_search(&mut out, sweep, search, &name);
    hub_models(&mut out, sweep)?;
    let suggested = match ledger.and_then(|s| s.sweep_by_name(&name).ok().flatten()) {
        Some(rec) => ledger
            .map(|s| s.sweep_trials(rec.id))
            .transpose()?
            .unwrap_or_default(),
        None => Vec::new(),
    };
    if !suggested.is_empty() {
        let count = |st: TrialState| suggested.iter().filter(|m| m.state == st).count();
        outln!(
            out,
            "in the ledger: {} suggested ({} completed, {} pruned, {} running)",
            suggested.len(),
            count(TrialState::Completed),
            count(TrialState::Pruned),
            count(TrialState::Running)
        );
    }
    let remaining = search.trials.saturating_sub(suggested.len());
    preview_and_cost(
        &mut out, sweep, search, remaining, ledger, cache_root, device,
    )?;
    Ok(out)
}

/// The search's name, budget, objective, space and pruning.
fn describe_search(
    out: &mut String,
    sweep: &config::Sweep,
    search: &config::search::Search,
    name: &str,
) {
    outln!(
        out,
        "sweep {name} ({} search, budget {} trials{})",
        sweep.kind.as_str(),
        search.trials,
        sweep
            .title
            .as_ref()
            .map(|t| format!(": {t}"))
            .unwrap_or_default()
    );
    chain_line(out, sweep);
    outln!(
        out,
        "objective: {} {}; seed {}{}",
        search.direction.as_str(),
        search.metric,
        search.seed,
        match search.method {
            crate::search::Method::Tpe { startup } =>
                format!("; TPE after {startup} random start-up trials"),
            crate::search::Method::Random => String::new(),
        }
    );
    outln!(out, "space:");
    for p in &search.space {
        outln!(
            out,
            "  {:<24} {}",
            p.name,
            p.dist.describe(&p.choice_labels())
        );
    }
    outln!(out, "pruning: {}", describe_pruner(&search.prune));
}

/// The first suggestions that do not depend on results, and the remaining budget's cost.
fn preview_and_cost(
    out: &mut String,
    sweep: &config::Sweep,
    search: &config::search::Search,
    remaining: usize,
    ledger: Option<&dyn Reader>,
    cache_root: &Path,
    device: &str,
) -> Result<()> {
    let shown = match search.method {
        crate::search::Method::Tpe { startup } => PREVIEW.min(startup),
        crate::search::Method::Random => PREVIEW,
    };
    let preview = super::search::Searcher::preview(sweep, shown.max(1))?;
    let mut ider = crate::plan::Identifier::new(cache_root);
    let planned: Vec<PlannedTrial> = preview
        .into_iter()
        .map(|resolved| {
            let identity = ider.identify(&resolved.config)?;
            Ok(PlannedTrial { resolved, identity })
        })
        .collect::<Result<_>>()?;
    outln!(
        out,
        "{} suggestion(s){}:",
        if shown == 0 { "a sample" } else { "the first" },
        if shown == 0 {
            " (TPE's suggestions depend on results; this one is a random draw, for the cost)"
        } else {
            ""
        }
    );
    let (est, unknown, rate) = rows(out, &planned, ledger, cache_root, device)?;
    let known = planned.len().saturating_sub(unknown);
    if known > 0 && remaining > 0 {
        let each = est / known as f64;
        let what = format!(
            "the {remaining} trial(s) still to suggest, at {} each (the average of the \
             suggestions above{})",
            human_secs(each),
            if search.prune.is_none() {
                ""
            } else {
                "; pruning stops some early"
            }
        );
        footer(out, &what, each * remaining as f64, 0, &rate, device);
    }
    Ok(())
}

fn describe_pruner(p: &crate::search::Pruner) -> String {
    use crate::search::Pruner;
    match p {
        Pruner::None => "none (every trial trains fully)".into(),
        Pruner::Asha {
            min,
            reduction_factor,
            resource,
        } => format!(
            "ASHA, rungs at {min} x {reduction_factor}^k {}, the best 1/{reduction_factor} \
             continue",
            resource.unit()
        ),
        Pruner::Median {
            startup_trials,
            warmup_steps,
        } => format!(
            "median rule after {startup_trials} completed trials and {warmup_steps} warm-up steps"
        ),
        Pruner::Hyperband {
            min,
            max,
            reduction_factor: eta,
            resource,
        } => {
            let unit = resource.unit();
            let brackets = match max {
                Some(m) => {
                    let n = crate::search::prune::bracket_count(*min, *m, *eta);
                    let shares = crate::search::prune::bracket_shares(n, *eta);
                    format!("{n} brackets (trial shares {shares:?}) up to {m} {unit}")
                }
                None => format!("brackets up to each trial's own length in {unit}"),
            };
            format!(
                "Hyperband, {brackets}: bracket b halves from {min} x {eta}^b {unit}, the best \
                 1/{eta} of its bracket continue"
            )
        }
    }
}
