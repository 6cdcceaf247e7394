//! Sweep files: read the TOML a user writes, validate every key, and resolve it into trial configs.
//!
//! This is the only module that reports configuration errors. Every error names where the bad
//! value came from (`file:line:column`, or the `--set` flag), the key, what is wrong, and the fix,
//! and is a [`UsageError`] (exit code 2). Nothing here touches the database.
//!
//! # Format
//! ```toml
//! [sweep]                     # name (required, unique in the ledger), title, description,
//! name = "block_size"         # kind = "grid" (cartesian product, default) | "ablation"
//! kind = "ablation"
//! [base]                      # TrialConfig fields (src/trial.rs); `data` is a table
//! model = "distilgpt2"
//! data = { sources = ["data/arxiv/cs.CL.tsv.xz"], categories = ["cs.CL"] }
//! [grid]                      # axes: a TrialConfig key with a list of values, or a *paired*
//! block_size = [512, 256]     # axis (any other name) whose values are tables of keys
//! [profile.quick]             # keys applied over [base]; `[profile.quick.grid]` replaces axes
//! model = "gpt2-tiny"
//! [[reference]]               # the paper's numbers (axis/config keys + metric keys + label/note)
//! block_size = 512
//! valid_ppl = 21.9143
//! ```
//! A search sweep (`kind = "random"` or `"tpe"`) has no `[grid]`; its trials are points of a
//! `[space]`, suggested while it runs (`exec::search`), within a `[search]` budget and optionally
//! pruned (`[prune]`); profiles may override each of the three tables key by key:
//! ```toml
//! [search]                    # trials (budget), metric, direction, seed, startup (tpe)
//! trials = 40
//! metric = "valid_ppl"
//! [space]                     # log_uniform, uniform, int (step, log), choice (any values)
//! learning_rate = { log_uniform = [1e-5, 1e-3] }
//! warmup_steps = { int = [0, 500], step = 50 }
//! [prune]                     # method = "asha" (min_steps, reduction_factor) | "hyperband"
//! method = "asha"             # (also max_steps) | "median" | "none"; min_tokens/max_tokens:
//!                             # rungs counted in training tokens instead of steps
//! ```
//! Precedence, lowest first: `[base]`, `[profile.P]`, the axis values of a trial, `--set key=value`.
//! `--set grid.KEY=[...]` replaces (or adds) an axis instead.
//!
//! A file may build on others: `extends = "baseline.toml"` (or a list, applied in order), above
//! the first section. The extended files' `[base]`, `[profile.*]`, `[search]`, `[space]`,
//! `[prune]` and `[[reference]]` come first and the file's own tables override them key by key
//! (`extends.rs`); so the order above holds for the merged tables, lowest first: the extended
//! files' `[base]`, the file's `[base]`, their `[profile.P]`, its `[profile.P]`, axis values,
//! `--set`. `[sweep]` is never inherited and an extended file has none; nor axes (`[grid]`).
//! Every value keeps the file, line and column it came from, in errors and in
//! [`Sweep::explain`].
//!
//! Relative paths in a file (`data.sources`, a checkpoint directory as `model`) resolve against
//! the sweep file's own directory, else the working directory, as Cargo and Hydra resolve theirs
//! (the shipped files say `../data/arxiv/...`); relative paths given with `--set` resolve against
//! the working directory. Resolved configs carry absolute paths.

mod check;
mod explain;
mod extends;
#[cfg(test)]
mod extends_tests;
mod prune;
mod recorded;
mod replicates;
mod resolve;
pub mod search;
mod source;
mod steps;
#[cfg(test)]
mod tests;

use crate::trial::{ModelSpec, TrialConfig};
pub use explain::Origin;
use extends::Chain;
pub use recorded::{ledger_name, recorded_name, sweep_arg_name, sweep_file_arg, ProfileArg};
use serde_json::{Map, Value as Json};
pub use source::{checkout_of, spelled_in};
use source::{parse_set, usage, PathBase, Source};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::de::DeTable;

/// How the axes of a sweep combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Cartesian product of all axes.
    Grid,
    /// One axis at a time around the base configuration (the paper's Tables 3-7).
    Ablation,
    /// `[space]` sampled at random, `[search] trials` times.
    Random,
    /// `[space]` sampled by TPE after random start-up trials.
    Tpe,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Grid => "grid",
            Kind::Ablation => "ablation",
            Kind::Random => "random",
            Kind::Tpe => "tpe",
        }
    }

    /// Random and TPE sweeps suggest their trials while they run.
    pub fn is_search(self) -> bool {
        matches!(self, Kind::Random | Kind::Tpe)
    }
}

/// One value and where it was written (for error messages).
#[derive(Debug, Clone)]
pub struct Setting {
    pub value: Json,
    /// `file:line:column` or `--set key=value`.
    pub at: String,
}

/// One value of an axis: the keys it sets, flattened (`data.sources`, `block_size`, ...).
#[derive(Debug, Clone)]
pub struct AxisValue {
    pub settings: Vec<(String, Setting)>,
    /// What this value looks like in reports, e.g. `{"block_size": 256}`.
    pub label: Map<String, Json>,
}

#[derive(Debug, Clone)]
pub struct Axis {
    pub name: String,
    pub values: Vec<AxisValue>,
    pub at: String,
}

/// A fully resolved trial of a sweep, before identity hashing (that needs the data; see `plan`).
#[derive(Debug, Clone)]
pub struct ResolvedTrial {
    pub config: TrialConfig,
    /// The axis values that define this row.
    pub label: Map<String, Json>,
    /// True for the base configuration (the starred row of the paper's tables).
    pub is_baseline: bool,
}

/// A validated sweep file with its trials resolved.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub kind: Kind,
    pub file: PathBuf,
    /// The files `file` extends, lowest precedence first (absolute; empty when it extends none).
    pub extends: Vec<PathBuf>,
    pub profile: Option<String>,
    /// Every profile the file and the files it extends define.
    pub profiles: Vec<String>,
    pub sets: Vec<String>,
    pub axes: Vec<Axis>,
    pub references: Vec<Map<String, Json>>,
    /// Trials in order; configs that resolve identically appear once (first position wins).
    /// Empty for search sweeps, whose trials are suggested while they run ([`Sweep::point`]).
    pub trials: Vec<ResolvedTrial>,
    /// The budget, objective, space and pruning of a search sweep.
    pub search: Option<search::Search>,
    /// `seeds` (`[sweep]`, the profile or `--seeds`): every row runs once per seed. `None`: each
    /// row once, with its own `seed` (trials and hashes as before replicates existed).
    pub seeds: Option<Vec<u64>>,
    /// Relative changes within ±`flat` count as no effect (`[sweep] flat`, default 0.001).
    pub flat: f64,
    /// What a point of the space resolves over.
    resolver: Resolver,
}

/// The settings every trial of the sweep starts from (for the points of a search).
#[derive(Debug, Clone, Default)]
struct Resolver {
    settings: BTreeMap<String, Setting>,
    trial_sets: Vec<(String, Setting)>,
    base_at: String,
    /// The table that set each key of `settings` (`[base]`, `[profile.P]`), for `--explain`.
    layers: BTreeMap<String, String>,
}

impl Resolver {
    fn resolve(&self, extra: &[(String, Setting)]) -> anyhow::Result<TrialConfig> {
        let mut s = self.settings.clone();
        s.extend(extra.iter().cloned());
        s.extend(self.trial_sets.iter().cloned());
        resolve::resolve(&s, &self.base_at)
    }
}

impl Sweep {
    /// The trial at a point of a search sweep's space (`--set` values still win).
    pub fn point(&self, point: &[f64]) -> anyhow::Result<ResolvedTrial> {
        let search = self
            .search
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("sweep {} is not a search sweep", self.name))?;
        let (settings, label) = search.settings_of(point);
        Ok(ResolvedTrial {
            config: self.resolver.resolve(&settings)?,
            label,
            is_baseline: false,
        })
    }

    /// Every `model` the sweep's trials may have: its trials', or a search's (the base, `--set`,
    /// and each `choice` that sets one), each once.
    pub fn models(&self) -> Vec<ModelSpec> {
        let mut out: Vec<ModelSpec> = Vec::new();
        let mut add = |v: &Json| {
            let model = v.as_str().and_then(|s| s.parse::<ModelSpec>().ok());
            if let Some(m) = model.filter(|m| !out.contains(m)) {
                out.push(m);
            }
        };
        for t in &self.trials {
            add(&Json::String(t.config.model.to_string()));
        }
        let Some(search) = &self.search else {
            return out;
        };
        let sets_model = |v: &AxisValue| v.settings.iter().any(|(k, _)| k == "model");
        if let Some((_, s)) = self
            .resolver
            .trial_sets
            .iter()
            .rev()
            .find(|(k, _)| k == "model")
        {
            add(&s.value);
            return out;
        }
        let always_chosen = search
            .space
            .iter()
            .any(|p| !p.choices.is_empty() && p.choices.iter().all(sets_model));
        if let Some(s) = self
            .resolver
            .settings
            .get("model")
            .filter(|_| !always_chosen)
        {
            add(&s.value);
        }
        for v in search.space.iter().flat_map(|p| &p.choices) {
            for (_, s) in v.settings.iter().filter(|(k, _)| k == "model") {
                add(&s.value);
            }
        }
        out
    }

    /// Checks `sweep run --until-decided --max-seeds N`: it adds seeds to the rows whose change
    /// from the baseline row is undecided, so the sweep needs a baseline row (a grid or ablation
    /// trial equal to `[base]`), and at least 2 seeds give an interval.
    pub fn check_until_decided(&self, max_seeds: usize) -> anyhow::Result<()> {
        let file = self.file.display();
        if self.kind.is_search() || !self.trials.iter().any(|t| t.is_baseline) {
            return Err(usage(format!(
                "--until-decided: {file}: sweep `{}` has no baseline row (no trial equals \
                 [base]), and a row is decided by its change from the baseline; fix: make it an \
                 ablation (`kind = \"ablation\"` under [sweep]), or give each axis [base]'s value \
                 too",
                self.name
            )));
        }
        let have = self.seeds.as_ref().map_or(1, Vec::len);
        if max_seeds < 2 || max_seeds < have {
            return Err(usage(format!(
                "--max-seeds {max_seeds}: {}; fix: use --max-seeds {} or more",
                if max_seeds < 2 {
                    "an interval needs at least 2 seeds".to_string()
                } else {
                    format!("{file} already runs {have} seeds")
                },
                have.max(2)
            )));
        }
        Ok(())
    }

    /// The name the ledger records this sweep under (`name@profile` with a profile).
    pub fn ledger_name(&self) -> String {
        ledger_name(&self.name, self.profile.as_deref())
    }

    /// The resolved sweep as stored in `sweeps.spec_json`.
    pub fn spec_json(&self) -> Json {
        let axes: Vec<Json> = self
            .axes
            .iter()
            .map(|a| {
                serde_json::json!({
                    "name": a.name,
                    "values": a.values.iter().map(|v| Json::Object(v.label.clone())).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "kind": self.kind.as_str(),
            "file": self.file.display().to_string(),
            "extends": self.extends.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "profile": self.profile,
            "sets": self.sets,
            "axes": axes,
            "references": self.references,
            "search": self.search.as_ref().map(search::Search::spec_json),
            "seeds": self.seeds,
            "flat": self.flat,
        })
    }
}

/// A profile that replaces an axis (`[profile.quick.grid] block_size = [128, 64, ...]` for the
/// paper's `[512, 256, ...]`) runs the same experiment at another scale, so the paper's i-th row
/// is compared with our i-th row: a reference on the file's i-th value is moved to the profile's
/// i-th value, and keeps the paper's value as `paper_<key>` (shown in reports).
fn map_references_onto_profile_axes(
    references: &mut [Map<String, Json>],
    replaced: &[Axis],
    axes: &[Axis],
) {
    for old in replaced {
        let Some(new) = axes.iter().find(|a| a.name == old.name) else {
            continue;
        };
        if new.values.len() != old.values.len() {
            continue;
        }
        for r in references.iter_mut() {
            let Some(i) = old.values.iter().position(|v| {
                !v.label.is_empty() && v.label.iter().all(|(k, x)| r.get(k) == Some(x))
            }) else {
                continue;
            };
            for (k, x) in &old.values[i].label {
                r.insert(format!("paper_{k}"), x.clone());
            }
            r.extend(new.values[i].label.clone());
        }
    }
}

/// The metric keys allowed in `[[reference]]` rows.
pub const REFERENCE_METRICS: &[&str] = &[
    "train_loss",
    "valid_loss",
    "test_loss",
    "train_ppl",
    "valid_ppl",
    "test_ppl",
];

/// Read, validate and resolve a sweep file.
pub fn load(path: &Path, profile: Option<&str>, sets: &[String]) -> anyhow::Result<Sweep> {
    load_with(path, profile, sets, None)
}

/// [`load`] with `--seeds` (`42,1,2`), which replaces the file's and the profile's `seeds`.
pub fn load_with(
    path: &Path,
    profile: Option<&str>,
    sets: &[String],
    seeds: Option<&str>,
) -> anyhow::Result<Sweep> {
    parse_with(path, &read_text(path)?, profile, sets, seeds)
}

/// A sweep file's text (a usage error naming the path if it cannot be read).
fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        usage(format!(
            "{}: cannot read the sweep file: {e}; fix: check the path",
            path.display()
        ))
    })
}

/// Validate and resolve sweep-file text (`path` is used for messages, relative paths and the
/// files it extends).
pub fn parse(
    path: &Path,
    text: &str,
    profile: Option<&str>,
    sets: &[String],
) -> anyhow::Result<Sweep> {
    parse_with(path, text, profile, sets, None)
}

/// [`parse`] with `--seeds`.
pub fn parse_with(
    path: &Path,
    text: &str,
    profile: Option<&str>,
    sets: &[String],
    seeds_flag: Option<&str>,
) -> anyhow::Result<Sweep> {
    let chain = extends::read(path, text)?;
    parse_chain(&chain, profile, sets, seeds_flag).map_err(|e| chain.name_the_chain(e))
}

/// The sweep of a file and the files it extends, merged into one document.
fn parse_chain(
    chain: &Chain,
    profile: Option<&str>,
    sets: &[String],
    seeds_flag: Option<&str>,
) -> anyhow::Result<Sweep> {
    let src = chain.source();
    let doc = extends::merge(chain, &src)?;
    let doc = &doc;
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let replaced: Vec<String> = sets
        .iter()
        .filter_map(|f| parse_set(f).ok().map(|(k, _)| k))
        .collect();
    let dirs = [cwd];
    let file_base = PathBase {
        dirs: &dirs,
        replaced: &replaced,
    };
    let flag_base = PathBase {
        dirs: &dirs,
        replaced: &[],
    };
    steps::check_sections(&src, doc)?;
    let meta = steps::meta(&src, doc)?;
    let Some((base_key, base)) = steps::table(&src, doc, "base")? else {
        return Err(usage(format!(
            "{}: base: missing [base] section; fix: add [base] with the trial settings",
            src.name
        )));
    };
    let base_at = format!("{} [base]", src.loc(&base_key.span()));
    let base_settings: BTreeMap<String, Setting> = check::check_table(&src, &file_base, base, &[])?
        .into_iter()
        .collect();
    let mut settings = base_settings.clone();
    let mut axes = match steps::table(&src, doc, "grid")? {
        Some((_, g)) => check::check_grid(&src, &file_base, g)?,
        None => Vec::new(),
    };
    let (replaced_axes, profile_replicates) =
        steps::apply_profile(&src, doc, &file_base, profile, &mut settings, &mut axes)?;
    let mut reps = meta.replicates.clone().over(profile_replicates);
    if let Some(flag) = seeds_flag {
        reps.seeds = Some(replicates::seeds_flag(flag)?);
    }
    let trial_sets = steps::apply_sets(sets, &flag_base, &mut axes)?;
    if let Some((_, at)) = &reps.seeds {
        if meta.kind.is_search() {
            return Err(usage(format!(
                "{at}: seeds: a {} search suggests its trials one at a time, so there are no rows \
                 to replicate; fix: remove `seeds` (a search may put `seed` in [space] as a \
                 choice)",
                meta.kind.as_str()
            )));
        }
        replicates::check_no_seed_elsewhere(&axes, &trial_sets, at)?;
    }
    let mut references = steps::references(&src, doc, &axes)?;
    map_references_onto_profile_axes(&mut references, &replaced_axes, &axes);
    let resolver = Resolver {
        layers: explain::table_layers(&base_settings, &settings, profile),
        settings,
        trial_sets,
        base_at,
    };
    let (trials, search) = if meta.kind.is_search() {
        let search = search_of(&src, doc, &file_base, meta.kind, profile, &axes, &resolver)?;
        (Vec::new(), Some(search))
    } else {
        refuse_search_sections(&src, doc, meta.kind)?;
        let rows = resolve::expand(
            meta.kind,
            &axes,
            &resolver.settings,
            &resolver.trial_sets,
            &resolver.base_at,
        )?;
        let trials = match &reps.seeds {
            Some((seeds, _)) => replicates::replicate(rows, seeds),
            None => rows,
        };
        (trials, None)
    };
    Ok(Sweep {
        name: meta.name,
        title: meta.title,
        description: meta.description,
        kind: meta.kind,
        file: chain.file(),
        extends: chain.extended(),
        profile: profile.map(str::to_string),
        profiles: steps::profile_names(doc),
        sets: sets.to_vec(),
        axes,
        references,
        trials,
        search,
        seeds: reps.seeds.map(|(s, _)| s),
        flat: reps.flat.unwrap_or(crate::stats::FLAT),
        resolver,
    })
}

/// `[search]`, `[space]` or `[prune]` in a grid or ablation sweep is a mistake worth naming.
fn refuse_search_sections(src: &Source, doc: &DeTable, kind: Kind) -> anyhow::Result<()> {
    if let Some((k, _)) = doc
        .iter()
        .find(|(k, _)| steps::SEARCH_SECTIONS.contains(&k.get_ref().as_ref()))
    {
        return Err(src.err(
            &k.span(),
            k.get_ref(),
            &format!("a {} sweep has no [{}]", kind.as_str(), k.get_ref()),
            "set `kind = \"random\"` or `kind = \"tpe\"` under [sweep] for a search, or remove \
             the section",
        ));
    }
    Ok(())
}

/// The search tables of the file and of profile `name`.
fn search_tables<'d, 'i>(
    src: &Source,
    doc: &'d DeTable<'i>,
    name: Option<&str>,
) -> anyhow::Result<search::Tables<'d, 'i>> {
    let mut t = search::Tables {
        search: Vec::new(),
        space: Vec::new(),
        prune: Vec::new(),
        search_key: None,
        prune_key: None,
    };
    let mut add = |tbl: &'d DeTable<'i>| -> anyhow::Result<()> {
        for section in steps::SEARCH_SECTIONS {
            let Some((k, v)) = tbl.get_key_value(section) else {
                continue;
            };
            let toml::de::DeValue::Table(st) = v.get_ref() else {
                return Err(src.err(
                    &v.span(),
                    section,
                    "expected a table",
                    &format!("write a [{section}] section"),
                ));
            };
            match section {
                "search" => {
                    t.search.push(st);
                    t.search_key.get_or_insert(k);
                }
                "space" => t.space.push(st),
                _ => {
                    t.prune.push(st);
                    t.prune_key.get_or_insert(k);
                }
            }
        }
        Ok(())
    };
    add(doc)?;
    if let Some(name) = name {
        let profile = doc.get("profile").and_then(|p| match p.get_ref() {
            toml::de::DeValue::Table(ps) => ps.get(name),
            _ => None,
        });
        if let Some(toml::de::DeValue::Table(pt)) = profile.map(|p| p.get_ref()) {
            add(pt)?;
        }
    }
    Ok(t)
}

/// The search of a random or TPE sweep, with every profile's search tables checked too.
fn search_of(
    src: &Source,
    doc: &DeTable,
    base: &PathBase,
    kind: Kind,
    profile: Option<&str>,
    axes: &[Axis],
    resolver: &Resolver,
) -> anyhow::Result<search::Search> {
    if let Some(axis) = axes.first() {
        return Err(usage(format!(
            "{}: grid.{}: a {} sweep has no grid axes; fix: move the axis into [space] as `{} = \
             {{ choice = [...] }}`",
            axis.at,
            axis.name,
            kind.as_str(),
            axis.name
        )));
    }
    let eval_every = resolver
        .settings
        .get("eval_every")
        .and_then(|s| s.value.as_u64());
    if let Some(toml::de::DeValue::Table(ps)) = doc.get("profile").map(|p| p.get_ref()) {
        for (name, _) in ps.iter() {
            let t = search_tables(src, doc, Some(name.get_ref()))?;
            search::search(src, base, kind, &t, eval_every)?;
        }
    }
    let t = search_tables(src, doc, profile)?;
    let search = search::search(src, base, kind, &t, eval_every)?;
    check_search(&search, resolver, eval_every)?;
    Ok(search)
}

/// The rules between the space and the base: both corners of the space resolve, pruning has
/// validation evaluations to work on, and Hyperband's brackets fit the trials' steps and budget.
fn check_search(
    search: &search::Search,
    resolver: &Resolver,
    eval_every: Option<u64>,
) -> anyhow::Result<()> {
    for corner in [0.0, 1.0 - 1e-12] {
        let point: Vec<f64> = search
            .space
            .iter()
            .map(|p| p.dist.from_unit(corner))
            .collect();
        let (settings, _) = search.settings_of(&point);
        resolver.resolve(&settings)?;
    }
    let evaluates = eval_every.is_some() || search.space.iter().any(|p| p.name == "eval_every");
    if !search.prune.is_none() && !evaluates {
        return Err(usage(format!(
            "{}: prune.method: pruning needs validation evaluations during training, and this \
             sweep has no eval_every; fix: add `eval_every = 50` (optimizer steps) to [base], or \
             set `method = \"none\"`",
            search.prune_at.as_deref().unwrap_or(&search.at)
        )));
    }
    if matches!(search.prune, crate::search::Pruner::Hyperband { .. }) {
        // A point the resolver refuses counts as unknown: the corners above already name it.
        let resource = search.prune.resource();
        let lengths: Vec<Option<u64>> = search
            .extreme_points()
            .iter()
            .map(|p| {
                resolver
                    .resolve(&search.settings_of(p).0)
                    .ok()?
                    .length_bound(resource)
            })
            .collect();
        search.check_prune(&lengths)?;
    }
    Ok(())
}
