//! `[prune]` of a search sweep: its keys, each checked with its location, merged key by key
//! over the files and profiles, then the typed [`Pruner`] and the rules between its keys.

use super::source::{entries, get_str, int_at_least, Source};
use crate::search::{Pruner, Resource};
use toml::de::DeTable;

#[derive(Default)]
pub(super) struct PruneKeys {
    method: Option<String>,
    /// `min_steps` or `min_tokens` (the resource) with where it is written; a later file's one
    /// replaces an earlier file's other.
    min: Option<(u64, Resource, String)>,
    /// `max_steps` or `max_tokens`, likewise.
    max: Option<(u64, Resource, String)>,
    reduction_factor: Option<u64>,
    startup_trials: Option<usize>,
    warmup_steps: Option<u64>,
}

impl PruneKeys {
    pub(super) fn pruner(&self, default_min_steps: Option<u64>) -> Pruner {
        let (min, resource) = match &self.min {
            Some((m, r, _)) => (*m, *r),
            None => (default_min_steps.unwrap_or(1), Resource::Steps),
        };
        let reduction_factor = self.reduction_factor.unwrap_or(3);
        match self.method.as_deref() {
            Some("asha") => Pruner::Asha {
                min,
                reduction_factor,
                resource,
            },
            Some("median") => Pruner::Median {
                startup_trials: self.startup_trials.unwrap_or(5),
                warmup_steps: self.warmup_steps.unwrap_or(0),
            },
            Some("hyperband") => Pruner::Hyperband {
                min,
                max: self.max.as_ref().map(|m| m.0),
                reduction_factor,
                resource,
            },
            _ => Pruner::None,
        }
    }

    /// The rules between the keys of the merged `[prune]`: `min_tokens` belongs to ASHA and
    /// Hyperband, `max_*` to Hyperband, in the unit of `min_*`, above it.
    pub(super) fn check(&self, pruner: &Pruner) -> anyhow::Result<()> {
        if let Some((_, Resource::Tokens, at)) = &self.min {
            if !matches!(pruner, Pruner::Asha { .. } | Pruner::Hyperband { .. }) {
                return Err(super::source::usage(format!(
                    "{at}: prune.min_tokens: only method = \"asha\" or \"hyperband\" has rungs \
                     to count in tokens; fix: remove it, or set one of those methods"
                )));
            }
        }
        let Some((max, max_unit, at)) = &self.max else {
            return Ok(());
        };
        let key = format!("prune.max_{}", max_unit.unit());
        match *pruner {
            Pruner::Hyperband { min, resource, .. } if resource != *max_unit => {
                Err(super::source::usage(format!(
                    "{at}: {key}: the rungs count {} (min_{} = {min}{}), so the maximum must \
                     too; fix: write max_{} instead, or count both in {}",
                    resource.unit(),
                    resource.unit(),
                    if self.min.is_none() {
                        ", from eval_every"
                    } else {
                        ""
                    },
                    resource.unit(),
                    max_unit.unit()
                )))
            }
            Pruner::Hyperband { min, .. } if min >= *max => Err(super::source::usage(format!(
                "{at}: {key}: {max} is not above min_{} {min}{}, so Hyperband has no rung to \
                 prune at; fix: raise {key} above {min} (a trial's length, or leave it out to \
                 use each trial's own) or lower min_{}",
                max_unit.unit(),
                if self.min.is_none() {
                    " (eval_every, its default)"
                } else {
                    ""
                },
                max_unit.unit()
            ))),
            Pruner::Hyperband { .. } => Ok(()),
            _ => Err(super::source::usage(format!(
                "{at}: {key}: only method = \"hyperband\" takes a maximum; fix: remove it, or \
                 set method = \"hyperband\""
            ))),
        }
    }
}

pub(super) fn prune_keys(src: &Source, t: &DeTable, p: &mut PruneKeys) -> anyhow::Result<()> {
    for (k, v) in entries(t) {
        let key = format!("prune.{}", k.get_ref());
        match k.get_ref().as_ref() {
            "method" => {
                let m = get_str(src, t, "method", "prune")?.unwrap_or_default();
                if !["asha", "hyperband", "median", "none"].contains(&m.as_str()) {
                    return Err(src.err(
                        &v.span(),
                        &key,
                        &format!("unknown pruning method `{m}`"),
                        "use \"asha\", \"hyperband\", \"median\" or \"none\"",
                    ));
                }
                p.method = Some(m);
            }
            "min_steps" | "min_tokens" | "max_steps" | "max_tokens" => {
                let (end, unit) = k.get_ref().split_once('_').unwrap_or_default();
                let (resource, example) = match unit {
                    "tokens" => (Resource::Tokens, 20_480),
                    _ => (Resource::Steps, 50),
                };
                let other = format!(
                    "{end}_{}",
                    if unit == "tokens" { "steps" } else { "tokens" }
                );
                if entries(t)
                    .iter()
                    .any(|(k2, _)| k2.get_ref().as_ref() as &str == other)
                {
                    return Err(src.err(
                        &k.span(),
                        &key,
                        &format!("both {} and {other} are set", k.get_ref()),
                        "count the rungs in steps or in tokens: keep one of them",
                    ));
                }
                let m = int_at_least(src, v, &key, 1, &format!("{} = {example}", k.get_ref()))?;
                let value = Some((m as u64, resource, src.loc(&v.span())));
                match end {
                    "min" => p.min = value,
                    _ => p.max = value,
                }
            }
            "reduction_factor" => {
                p.reduction_factor =
                    Some(int_at_least(src, v, &key, 2, "reduction_factor = 3")? as u64)
            }
            "startup_trials" => {
                p.startup_trials =
                    Some(int_at_least(src, v, &key, 0, "startup_trials = 5")? as usize)
            }
            "warmup_steps" => {
                p.warmup_steps = Some(int_at_least(src, v, &key, 0, "warmup_steps = 100")? as u64)
            }
            _ => {
                return Err(src.err(
                    &k.span(),
                    &key,
                    "unknown key",
                    "use method, min_steps or min_tokens and reduction_factor (asha, \
                     hyperband), max_steps or max_tokens (hyperband), startup_trials and \
                     warmup_steps (median)",
                ))
            }
        }
    }
    Ok(())
}
