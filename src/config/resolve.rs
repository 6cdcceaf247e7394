//! From settings to trials: the configuration of one combination of settings with the rules
//! between keys, and the expansion of the axes into the sweep's trials.

use super::check::key_kind;
use super::source::usage;
use super::{AxisValue, Kind, ResolvedTrial, Setting};
use crate::model::GptConfig;
use crate::trial::{ModelSpec, Preset, TrialConfig};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use std::path::Path;

pub(super) const REQUIRED: &[&str] = &[
    "model",
    "data.sources",
    "block_size",
    "batch_size",
    "grad_accum",
    "learning_rate",
    "weight_decay",
    "epochs",
];

/// Context length of a model preset (with shape overrides) or HF checkpoint directory, if known
/// (a Hub repository's is known once it is resolved: `train::preflight_models` checks it).
pub(super) fn model_context(
    model: &str,
    settings: &BTreeMap<String, Setting>,
    at: &str,
) -> anyhow::Result<Option<usize>> {
    let get = |k: &str| {
        settings
            .get(k)
            .and_then(|s| s.value.as_u64())
            .map(|v| v as usize)
    };
    let spec = model.parse::<ModelSpec>().ok();
    if let Some(preset) = spec.as_ref().and_then(ModelSpec::preset) {
        let cfg = Ok(GptConfig::of(preset))
            .and_then(|c| c.with_overrides(get("n_layer"), get("n_embd"), get("n_head")))
            .map_err(|e| {
                usage(format!(
                    "{at}: model: {e:#}; fix: change the model shape keys"
                ))
            })?;
        return Ok(Some(cfg.n_positions));
    }
    if let Some(ModelSpec::Hub(_)) = spec {
        return Ok(None);
    }
    let Ok(cfg) = std::fs::read_to_string(Path::new(model).join("config.json")) else {
        if model.contains('/') {
            return Err(usage(format!(
                "{at}: model: no HF checkpoint (config.json) at `{model}` (relative paths are \
                 relative to the sweep file, else the working directory); fix: make that checkpoint first (a profile that \
                 fine-tunes one says how in its comments, e.g. `sweep train --config ... --out \
                 DIR`) or use a preset ({}, {})",
                Preset::names(true),
                Preset::names(false)
            )));
        }
        return Err(usage(format!(
            "{at}: model: unknown model `{model}`; fix: use a preset ({}, {}) or a directory \
             holding an HF config.json (relative to the sweep file, else the working directory)",
            Preset::names(true),
            Preset::names(false)
        )));
    };
    let v: Json = serde_json::from_str(&cfg).map_err(|e| {
        usage(format!("{at}: model: {model}/config.json is not valid JSON: {e}; fix: re-export the checkpoint"))
    })?;
    Ok(v.get("n_positions")
        .or_else(|| v.get("n_ctx"))
        .and_then(Json::as_u64)
        .map(|n| n as usize))
}

/// Build the TrialConfig of one combination of settings and check the cross-key rules.
pub(super) fn resolve(
    settings: &BTreeMap<String, Setting>,
    base_at: &str,
) -> anyhow::Result<TrialConfig> {
    for key in REQUIRED {
        if !settings.contains_key(*key) {
            let example = key_kind(key).map(|(_, e)| e).unwrap_or("...");
            return Err(usage(format!(
                "{base_at}: {key}: missing required key; fix: add `{key} = {example}` to [base]"
            )));
        }
    }
    let model = &settings["model"];
    let model_name = model.value.as_str().unwrap_or_default();
    let ctx = model_context(model_name, settings, &model.at)?;
    for key in ["block_size", "eval_block_size"] {
        if let (Some(s), Some(ctx)) = (settings.get(key), ctx) {
            let b = s.value.as_u64().unwrap_or(0) as usize;
            if b > ctx {
                return Err(usage(format!(
                    "{}: {key}: {b} is above the context length {ctx} of model `{model_name}`; \
                     fix: use {key} <= {ctx}",
                    s.at
                )));
            }
        }
    }
    let mut top = Map::new();
    let mut data = Map::new();
    for (k, s) in settings {
        if let Some(sub) = k.strip_prefix("data.") {
            data.insert(sub.to_string(), s.value.clone());
        } else {
            top.insert(k.clone(), s.value.clone());
        }
    }
    top.insert("data".into(), Json::Object(data));
    let cfg: TrialConfig = serde_json::from_value(Json::Object(top)).map_err(|e| {
        usage(format!(
            "{base_at}: the resolved configuration does not fit the trial schema: {e}; fix: \
             check the keys in [base], the profile and --set"
        ))
    })?;
    // The trainer's own checks, reported here so a bad trial never reaches the ledger.
    cfg.validate().map_err(|e| {
        usage(format!(
            "{base_at}: {e:#}; fix: change the offending key in [base], the profile, the axes or --set"
        ))
    })?;
    Ok(cfg)
}

/// The trials of a sweep: every combination of axis values (grid) or one axis value at a time
/// around the base (ablation), each resolved over the settings and `--set` values; configs that
/// resolve identically appear once, the first position winning.
pub(super) fn expand(
    kind: Kind,
    axes: &[super::Axis],
    settings: &BTreeMap<String, Setting>,
    trial_sets: &[(String, Setting)],
    base_at: &str,
) -> anyhow::Result<Vec<ResolvedTrial>> {
    let combos: Vec<Vec<&AxisValue>> = match kind {
        Kind::Grid => {
            let mut combos: Vec<Vec<&AxisValue>> = vec![Vec::new()];
            for axis in axes {
                combos = combos
                    .into_iter()
                    .flat_map(|c| {
                        axis.values.iter().map(move |v| {
                            let mut c = c.clone();
                            c.push(v);
                            c
                        })
                    })
                    .collect();
            }
            combos
        }
        // Search sweeps have no axes: their trials are suggested while they run.
        Kind::Ablation | Kind::Random | Kind::Tpe => {
            let mut combos = vec![Vec::new()];
            for axis in axes {
                for v in &axis.values {
                    combos.push(vec![v]);
                }
            }
            combos
        }
    };
    let resolve_with = |extra: &[&AxisValue]| -> anyhow::Result<TrialConfig> {
        let mut s = settings.clone();
        for v in extra {
            s.extend(v.settings.iter().cloned());
        }
        s.extend(trial_sets.iter().cloned());
        resolve(&s, base_at)
    };
    let baseline = resolve_with(&[])?;
    let baseline_canon = crate::util::sorted_json(&serde_json::to_value(&baseline)?);
    let mut trials: Vec<ResolvedTrial> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for combo in combos {
        let config = resolve_with(&combo)?;
        let canon = crate::util::sorted_json(&serde_json::to_value(&config)?);
        if seen.contains(&canon) {
            continue;
        }
        let is_baseline = canon == baseline_canon;
        let mut label = Map::new();
        if is_baseline && kind == Kind::Ablation {
            // The baseline row carries its value of every axis (it is the starred row of each).
            for axis in axes {
                for (k, _) in axis
                    .values
                    .first()
                    .map(|v| v.settings.clone())
                    .unwrap_or_default()
                {
                    let v = serde_json::to_value(&config)?;
                    let got = match k.strip_prefix("data.") {
                        Some(sub) => v["data"][sub].clone(),
                        None => v[k.as_str()].clone(),
                    };
                    label.insert(k, got);
                }
            }
        } else {
            for v in &combo {
                label.extend(v.label.clone());
            }
        }
        seen.push(canon);
        trials.push(ResolvedTrial {
            config,
            label,
            is_baseline,
        });
    }
    Ok(trials)
}
