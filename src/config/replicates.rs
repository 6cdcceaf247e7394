//! Seed replicates and the flat threshold: `seeds` and `flat` under `[sweep]` or a profile,
//! `--seeds` on the command line, and the expansion of every row of a grid or ablation into one
//! trial per seed.
//!
//! A replicate is an ordinary trial: its config differs from the row's only in `seed`, so it has
//! its own identity hash, and the replicate whose seed equals the row's own seed (42 in the
//! shipped files) *is* the trial a sweep without `seeds` runs. Its label gains `seed`, which
//! reports and results strip when they group a row's replicates.

use super::source::{as_i64, type_name, usage, Source};
use super::{Axis, ResolvedTrial, Setting};
use serde_json::Value as Json;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// `seeds` and `flat` of one section, each with where it was written.
#[derive(Debug, Clone, Default)]
pub(super) struct Replicates {
    pub seeds: Option<(Vec<u64>, String)>,
    pub flat: Option<f64>,
}

impl Replicates {
    /// `other`'s values where it has them, else ours.
    pub(super) fn over(self, other: Replicates) -> Replicates {
        Replicates {
            seeds: other.seeds.or(self.seeds),
            flat: other.flat.or(self.flat),
        }
    }
}

/// The keys this module reads from `[sweep]` and from a profile.
pub(super) const KEYS: [&str; 2] = ["seeds", "flat"];

/// `seeds` and `flat` of `[sweep]` or `[profile.NAME]` (`section` names it for messages).
pub(super) fn read(src: &Source, t: &DeTable, section: &str) -> anyhow::Result<Replicates> {
    let mut out = Replicates::default();
    if let Some(v) = t.get("seeds") {
        out.seeds = Some((
            seeds_of(src, v, &format!("{section}.seeds"))?,
            src.loc(&v.span()),
        ));
    }
    if let Some(v) = t.get("flat") {
        out.flat = Some(flat_of(src, v, &format!("{section}.flat"))?);
    }
    Ok(out)
}

/// A list of distinct non-negative integers.
fn seeds_of(src: &Source, v: &Spanned<DeValue>, key: &str) -> anyhow::Result<Vec<u64>> {
    let example = "seeds = [42, 1, 2]";
    let DeValue::Array(items) = v.get_ref() else {
        return Err(src.err(
            &v.span(),
            key,
            &format!("expected a list of seeds, found {}", type_name(v.get_ref())),
            &format!("write e.g. `{example}`"),
        ));
    };
    if items.is_empty() {
        return Err(src.err(
            &v.span(),
            key,
            "empty list of seeds",
            &format!("give at least one seed (`{example}`), or delete the key"),
        ));
    }
    let mut seeds: Vec<u64> = Vec::new();
    for item in items.iter() {
        let seed = as_i64(item.get_ref()).filter(|s| *s >= 0).ok_or_else(|| {
            src.err(
                &item.span(),
                key,
                &format!(
                    "a seed is a non-negative integer, found {}",
                    match item.get_ref() {
                        DeValue::Integer(_) => "a negative integer",
                        other => type_name(other),
                    }
                ),
                &format!("write e.g. `{example}`"),
            )
        })? as u64;
        if seeds.contains(&seed) {
            return Err(src.err(
                &item.span(),
                key,
                &format!("seed {seed} is listed twice"),
                "list each seed once (a repeated seed would train the same trial again)",
            ));
        }
        seeds.push(seed);
    }
    Ok(seeds)
}

/// A relative change in (0, 0.5).
fn flat_of(src: &Source, v: &Spanned<DeValue>, key: &str) -> anyhow::Result<f64> {
    let f = match v.get_ref() {
        DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
        DeValue::Integer(_) => as_i64(v.get_ref()).map(|i| i as f64),
        _ => None,
    };
    match f {
        Some(f) if f > 0.0 && f < 0.5 => Ok(f),
        Some(f) => Err(src.err(
            &v.span(),
            key,
            &format!("{f} is outside (0, 0.5): the threshold is a relative change"),
            "write e.g. `flat = 0.001` (changes within ±0.1% count as no effect)",
        )),
        None => Err(src.err(
            &v.span(),
            key,
            &format!("expected a number, found {}", type_name(v.get_ref())),
            "write e.g. `flat = 0.001` (changes within ±0.1% count as no effect)",
        )),
    }
}

/// `--seeds 42,1,2`.
pub(super) fn seeds_flag(flag: &str) -> anyhow::Result<(Vec<u64>, String)> {
    let name = format!("--seeds {flag}");
    let text = format!("[{flag}]");
    let src = Source::of_flag(name.clone(), &text);
    let value = DeValue::parse(&text).map_err(|_| {
        usage(format!(
            "{name}: not a list of seeds; fix: write e.g. `--seeds 42,1,2`"
        ))
    })?;
    Ok((seeds_of(&src, &value, "--seeds")?, name))
}

/// A sweep with `seeds` sets `seed` per replicate: an axis or `--set` that sets it too is
/// ambiguous.
pub(super) fn check_no_seed_elsewhere(
    axes: &[Axis],
    trial_sets: &[(String, Setting)],
    seeds_at: &str,
) -> anyhow::Result<()> {
    let fix = "keep one: `seeds = [...]` runs every row once per seed (and reports their mean \
               and interval), a `seed` axis makes each seed its own row";
    for axis in axes {
        if axis
            .values
            .iter()
            .any(|v| v.settings.iter().any(|(k, _)| k == "seed"))
        {
            return Err(usage(format!(
                "{}: grid.{}: sets `seed`, and `seeds` ({seeds_at}) replicates every row over \
                 seeds too; fix: {fix}",
                axis.at, axis.name
            )));
        }
    }
    if let Some((_, s)) = trial_sets.iter().find(|(k, _)| k == "seed") {
        return Err(usage(format!(
            "{}: seed: sets one seed for every trial, and `seeds` ({seeds_at}) replicates every \
             row over seeds; fix: drop the --set, or give the seeds with --seeds",
            s.at
        )));
    }
    Ok(())
}

/// Every row once per seed, seed by seed (the first seed's whole table, then the next seed's):
/// the config's `seed` and the label's `seed` set to it.
pub(super) fn replicate(rows: Vec<ResolvedTrial>, seeds: &[u64]) -> Vec<ResolvedTrial> {
    let mut out = Vec::with_capacity(rows.len() * seeds.len());
    for &seed in seeds {
        for row in &rows {
            let mut t = row.clone();
            t.config.seed = seed;
            t.label.insert("seed".into(), Json::from(seed));
            out.push(t);
        }
    }
    out
}
