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
//! Precedence, lowest first: `[base]`, `[profile.P]`, the axis values of a trial, `--set key=value`.
//! `--set grid.KEY=[...]` replaces (or adds) an axis instead.
//!
//! Relative paths in a file (`data.sources`, a checkpoint directory as `model`) resolve against
//! the sweep file's own directory, else the working directory, as Cargo and Hydra resolve theirs
//! (the shipped files say `../data/arxiv/...`); relative paths given with `--set` resolve against
//! the working directory. Resolved configs carry absolute paths.

mod check;
mod resolve;
mod source;
mod steps;
#[cfg(test)]
mod tests;

use crate::trial::TrialConfig;
use serde_json::{Map, Value as Json};
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
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Grid => "grid",
            Kind::Ablation => "ablation",
        }
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
    pub profile: Option<String>,
    pub sets: Vec<String>,
    pub axes: Vec<Axis>,
    pub references: Vec<Map<String, Json>>,
    /// Trials in order; configs that resolve identically appear once (first position wins).
    pub trials: Vec<ResolvedTrial>,
}

impl Sweep {
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
            "profile": self.profile,
            "sets": self.sets,
            "axes": axes,
            "references": self.references,
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
    let text = std::fs::read_to_string(path).map_err(|e| {
        usage(format!(
            "{}: cannot read the sweep file: {e}; fix: check the path",
            path.display()
        ))
    })?;
    parse(path, &text, profile, sets)
}

/// Validate and resolve sweep-file text (`path` is used for messages and relative data paths).
pub fn parse(
    path: &Path,
    text: &str,
    profile: Option<&str>,
    sets: &[String],
) -> anyhow::Result<Sweep> {
    let src = Source {
        name: path.display().to_string(),
        text,
        is_flag: false,
    };
    let doc = DeTable::parse(text).map_err(|e| {
        let loc = e
            .span()
            .map(|s| src.loc(&s))
            .unwrap_or_else(|| src.name.clone());
        usage(format!(
            "{loc}: TOML syntax error: {}; fix: correct the TOML syntax",
            e.message().trim()
        ))
    })?;
    let doc = doc.get_ref();
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let file_dirs = [
        abs.parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        cwd.clone(),
    ];
    let replaced: Vec<String> = sets
        .iter()
        .filter_map(|f| parse_set(f).ok().map(|(k, _)| k))
        .collect();
    let file_base = PathBase {
        dirs: &file_dirs,
        replaced: &replaced,
    };
    let flag_dirs = [cwd];
    let flag_base = PathBase {
        dirs: &flag_dirs,
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
    let mut settings: BTreeMap<String, Setting> = check::check_table(&src, &file_base, base, &[])?
        .into_iter()
        .collect();
    let mut axes = match steps::table(&src, doc, "grid")? {
        Some((_, g)) => check::check_grid(&src, &file_base, g)?,
        None => Vec::new(),
    };
    let replaced_axes =
        steps::apply_profile(&src, doc, &file_base, profile, &mut settings, &mut axes)?;
    let trial_sets = steps::apply_sets(sets, &flag_base, &mut axes)?;
    let mut references = steps::references(&src, doc, &axes)?;
    map_references_onto_profile_axes(&mut references, &replaced_axes, &axes);
    let trials = resolve::expand(meta.kind, &axes, &settings, &trial_sets, &base_at)?;
    Ok(Sweep {
        name: meta.name,
        title: meta.title,
        description: meta.description,
        kind: meta.kind,
        file: abs,
        profile: profile.map(str::to_string),
        sets: sets.to_vec(),
        axes,
        references,
        trials,
    })
}
