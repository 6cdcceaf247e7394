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
//! Relative `data.sources` paths in a file are resolved against the parent of the directory that
//! holds the sweep file (sweep files live in `experiments/` or `sweeps/`, data in `data/` beside
//! them, so `data/arxiv/cs.CL.tsv.xz` works from both); relative paths given with `--set` are
//! resolved against the current directory. Resolved configs carry absolute paths.

use crate::error::UsageError;
use crate::model::GptConfig;
use crate::trial::{key_rule, keys, KeyKind, Preset, TrialConfig};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

type SpannedKey<'i> = Spanned<std::borrow::Cow<'i, str>>;

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

const REQUIRED: &[&str] = &[
    "model",
    "data.sources",
    "block_size",
    "batch_size",
    "grad_accum",
    "learning_rate",
    "weight_decay",
    "epochs",
];

fn key_kind(key: &str) -> Option<(KeyKind, &'static str)> {
    key_rule(key).map(|r| (r.kind, r.example))
}

fn key_list() -> String {
    let keys: Vec<String> = keys().into_iter().filter(|k| k != "data").collect();
    keys.join(", ")
}

fn usage(msg: String) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg))
}

/// Where a value came from: the text it was parsed from, to turn byte spans into locations.
struct Source<'a> {
    /// A file path, or the full `--set key=value` flag.
    name: String,
    text: &'a str,
    is_flag: bool,
}

impl Source<'_> {
    fn loc(&self, span: &Range<usize>) -> String {
        if self.is_flag {
            return self.name.clone();
        }
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rsplit('\n')
            .next()
            .map(|s| s.chars().count())
            .unwrap_or(0)
            + 1;
        format!("{}:{line}:{col}", self.name)
    }

    fn err(&self, span: &Range<usize>, key: &str, msg: &str, fix: &str) -> anyhow::Error {
        usage(format!("{}: {key}: {msg}; fix: {fix}", self.loc(span)))
    }
}

fn type_name(v: &DeValue) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn as_i64(v: &DeValue) -> Option<i64> {
    match v {
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
        _ => None,
    }
}

fn as_f64(v: &DeValue) -> Option<f64> {
    match v {
        DeValue::Integer(_) => as_i64(v).map(|i| i as f64),
        DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
        _ => None,
    }
}

/// Entries of a table in the order they were written (the map may be sorted by key).
fn entries<'t, 'i>(
    t: &'t DeTable<'i>,
) -> Vec<(
    &'t Spanned<std::borrow::Cow<'i, str>>,
    &'t Spanned<DeValue<'i>>,
)> {
    let mut e: Vec<_> = t.iter().collect();
    e.sort_by_key(|(k, _)| k.span().start);
    e
}

/// Context-resolution for relative data paths.
struct PathBase<'a> {
    dir: &'a Path,
    /// Path keys that a `--set` replaces: the file's value is never read, so a missing file
    /// there is no error (e.g. `--set data.sources=[...]` on a machine without the default data).
    replaced: &'a [String],
}

/// Check one value of a known key and convert it to JSON. A `data` table expands into several
/// `data.*` settings, so this returns a list.
fn check_value(
    src: &Source,
    base: &PathBase,
    key: &str,
    v: &Spanned<DeValue>,
) -> anyhow::Result<Vec<(String, Setting)>> {
    let Some((kind, example)) = key_kind(key) else {
        return Err(src.err(
            &v.span(),
            key,
            "unknown key",
            &format!("use one of: {}", key_list()),
        ));
    };
    let span = v.span();
    let at = src.loc(&span);
    let wrong = |expected: &str| {
        src.err(
            &span,
            key,
            &format!("expected {expected}, found {}", type_name(v.get_ref())),
            &format!("write e.g. `{key} = {example}`"),
        )
    };
    let bad = |msg: &str| src.err(&span, key, msg, &format!("write e.g. `{key} = {example}`"));
    let value = v.get_ref();
    let json = match kind {
        KeyKind::DataTable => {
            let DeValue::Table(t) = value else {
                return Err(wrong("a table"));
            };
            let mut out = Vec::new();
            for (k, sub) in entries(t) {
                let full = format!("data.{}", k.get_ref());
                if key_kind(&full).is_none() {
                    return Err(src.err(
                        &k.span(),
                        &full,
                        "unknown key",
                        "use data.sources, data.categories or data.split",
                    ));
                }
                out.extend(check_value(src, base, &full, sub)?);
            }
            return Ok(out);
        }
        // A checkpoint directory given as `model` resolves like data paths: against the project
        // root, so a sweep runs the same from any working directory.
        KeyKind::Model => match check_value_rule(key, value) {
            Ok(Json::String(s)) => {
                let p = Path::new(&s);
                let full = base.dir.join(p);
                if Preset::from_name(&s).is_none() && !p.is_absolute() && full.is_dir() {
                    let full = std::path::absolute(&full).unwrap_or(full);
                    Json::String(full.display().to_string())
                } else {
                    Json::String(s)
                }
            }
            Ok(other) => other,
            Err(e) => return Err(bad(&e)),
        },
        KeyKind::Paths | KeyKind::Strings | KeyKind::Split => {
            check_value_rule(key, value).map_err(|e| bad(&e))?;
            match kind {
                KeyKind::Paths => resolve_paths(src, base, key, v)?,
                _ => de_to_json(value),
            }
        }
        _ => check_value_rule(key, value).map_err(|e| bad(&e))?,
    };
    Ok(vec![(key.to_string(), Setting { value: json, at })])
}

/// The rule of `key` (trial/keys.rs) applied to a TOML value.
fn check_value_rule(key: &str, value: &DeValue) -> Result<Json, String> {
    crate::trial::check_value(key, &de_to_json(value))
}

/// `data.sources`: each file resolved against the sweep file's base and required to exist
/// (unless a `--set` replaces the key), errors at the offending item.
fn resolve_paths(
    src: &Source,
    base: &PathBase,
    key: &str,
    v: &Spanned<DeValue>,
) -> anyhow::Result<Json> {
    let DeValue::Array(items) = v.get_ref() else {
        return Ok(de_to_json(v.get_ref()));
    };
    let mut out = Vec::new();
    for item in items.iter() {
        let s = item.get_ref().as_str().unwrap_or_default();
        let p = Path::new(s);
        let full = if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.dir.join(p)
        };
        if !full.is_file() && !base.replaced.iter().any(|k| k == key) {
            return Err(src.err(
                &item.span(),
                key,
                &format!("no such file: {}", full.display()),
                "fix the path (relative paths in a sweep file are relative to the parent of its \
                 directory, i.e. the project root) or fetch the data as the README says",
            ));
        }
        let full = std::path::absolute(&full).unwrap_or(full);
        out.push(Json::String(full.display().to_string()));
    }
    Ok(Json::Array(out))
}

/// The settings of a table of config keys (`[base]`, `[profile.P]`, a paired axis value).
fn check_table(
    src: &Source,
    base: &PathBase,
    t: &DeTable,
    skip: &[&str],
) -> anyhow::Result<Vec<(String, Setting)>> {
    let mut out = Vec::new();
    for (k, v) in entries(t) {
        if skip.contains(&k.get_ref().as_ref()) {
            continue;
        }
        if key_kind(k.get_ref()).is_none() {
            return Err(src.err(
                &k.span(),
                k.get_ref(),
                "unknown key",
                &format!("use one of: {}", key_list()),
            ));
        }
        out.extend(check_value(src, base, k.get_ref(), v)?);
    }
    Ok(out)
}

/// Label value for reports: ints stay ints, paths keep only their file name.
fn label_of(settings: &[(String, Setting)]) -> Map<String, Json> {
    settings
        .iter()
        .map(|(k, s)| {
            let v = if k == "data.sources" {
                match &s.value {
                    Json::Array(a) => Json::Array(
                        a.iter()
                            .map(|p| {
                                let p = p.as_str().unwrap_or_default();
                                Json::String(
                                    Path::new(p)
                                        .file_name()
                                        .map(|f| f.to_string_lossy().into_owned())
                                        .unwrap_or_else(|| p.to_string()),
                                )
                            })
                            .collect(),
                    ),
                    other => other.clone(),
                }
            } else {
                s.value.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

fn check_axis(
    src: &Source,
    base: &PathBase,
    name: &str,
    v: &Spanned<DeValue>,
) -> anyhow::Result<Axis> {
    let span = v.span();
    let DeValue::Array(items) = v.get_ref() else {
        return Err(src.err(
            &span,
            &format!("grid.{name}"),
            &format!("an axis must be an array, found {}", type_name(v.get_ref())),
            &format!("write `{name} = [value1, value2]`"),
        ));
    };
    if items.is_empty() {
        return Err(src.err(
            &span,
            &format!("grid.{name}"),
            "empty axis",
            "give at least one value, or delete the axis",
        ));
    }
    let known = key_kind(name).is_some();
    let mut values: Vec<AxisValue> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for item in items.iter() {
        let settings = if known {
            check_value(src, base, name, item)?
        } else {
            let DeValue::Table(t) = item.get_ref() else {
                return Err(src.err(
                    &item.span(),
                    &format!("grid.{name}"),
                    &format!(
                        "`{name}` is not a config key, so this must be a paired axis whose \
                         values are tables, found {}",
                        type_name(item.get_ref())
                    ),
                    &format!(
                        "use a config key ({}) or tables like `{name} = [{{ model = \"gpt2\", \
                         learning_rate = 5e-5 }}]`",
                        key_list()
                    ),
                ));
            };
            if t.is_empty() {
                return Err(src.err(
                    &item.span(),
                    &format!("grid.{name}"),
                    "empty table in a paired axis",
                    "set at least one key in each table",
                ));
            }
            check_table(src, base, t, &[])?
        };
        let label = label_of(&settings);
        let canon = crate::util::sorted_json(&Json::Object(
            settings
                .iter()
                .map(|(k, s)| (k.clone(), s.value.clone()))
                .collect(),
        ));
        if seen.contains(&canon) {
            return Err(src.err(
                &item.span(),
                &format!("grid.{name}"),
                "duplicate axis value",
                "remove the repeated value (each value of an axis must be different)",
            ));
        }
        seen.push(canon);
        values.push(AxisValue { settings, label });
    }
    Ok(Axis {
        name: name.to_string(),
        values,
        at: src.loc(&span),
    })
}

fn check_grid(src: &Source, base: &PathBase, t: &DeTable) -> anyhow::Result<Vec<Axis>> {
    entries(t)
        .into_iter()
        .map(|(k, v)| check_axis(src, base, k.get_ref(), v))
        .collect()
}

fn get_str(src: &Source, t: &DeTable, key: &str, section: &str) -> anyhow::Result<Option<String>> {
    match t.get(key) {
        None => Ok(None),
        Some(v) => match v.get_ref().as_str() {
            Some(s) => Ok(Some(s.to_string())),
            None => Err(src.err(
                &v.span(),
                &format!("{section}.{key}"),
                &format!("expected a string, found {}", type_name(v.get_ref())),
                &format!("write `{key} = \"...\"`"),
            )),
        },
    }
}

/// Context length of a model preset (with shape overrides) or HF checkpoint directory, if known.
fn model_context(
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
    if let Some(preset) = Preset::from_name(model) {
        let cfg = Ok(GptConfig::of(preset))
            .and_then(|c| c.with_overrides(get("n_layer"), get("n_embd"), get("n_head")))
            .map_err(|e| {
                usage(format!(
                    "{at}: model: {e:#}; fix: change the model shape keys"
                ))
            })?;
        return Ok(Some(cfg.n_positions));
    }
    let Ok(cfg) = std::fs::read_to_string(Path::new(model).join("config.json")) else {
        if model.contains('/') {
            return Err(usage(format!(
                "{at}: model: no HF checkpoint (config.json) at `{model}` (relative paths are \
                 relative to the project root); fix: make that checkpoint first (a profile that \
                 fine-tunes one says how in its comments, e.g. `sweep train --config ... --out \
                 DIR`) or use a preset ({}, {})",
                Preset::names(true),
                Preset::names(false)
            )));
        }
        return Err(usage(format!(
            "{at}: model: unknown model `{model}`; fix: use a preset ({}, {}) or a directory \
             holding an HF config.json (relative to the project root)",
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
fn resolve(settings: &BTreeMap<String, Setting>, base_at: &str) -> anyhow::Result<TrialConfig> {
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

/// Parse `--set key=value`: the value is TOML (`1e-4`, `[1, 2]`, `"x"`) or else a bare string.
fn parse_set(flag: &str) -> anyhow::Result<(String, String)> {
    let Some((k, v)) = flag.split_once('=') else {
        return Err(usage(format!(
            "--set {flag}: expected key=value; fix: write e.g. `--set learning_rate=1e-4`"
        )));
    };
    Ok((k.trim().to_string(), v.trim().to_string()))
}

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
    let root = abs
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let replaced: Vec<String> = sets
        .iter()
        .filter_map(|f| parse_set(f).ok().map(|(k, _)| k))
        .collect();
    let file_base = PathBase {
        dir: &root,
        replaced: &replaced,
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let flag_base = PathBase {
        dir: &cwd,
        replaced: &[],
    };

    for (k, _) in entries(doc) {
        if !["sweep", "base", "grid", "profile", "reference"].contains(&k.get_ref().as_ref()) {
            return Err(src.err(
                &k.span(),
                k.get_ref(),
                "unknown section",
                "use [sweep], [base], [grid], [profile.NAME] and [[reference]]",
            ));
        }
    }
    let table = |name: &str| -> anyhow::Result<Option<(&SpannedKey, &DeTable)>> {
        match doc.get_key_value(name) {
            None => Ok(None),
            Some((k, v)) => match v.get_ref() {
                DeValue::Table(t) => Ok(Some((k, t))),
                other => Err(src.err(
                    &v.span(),
                    name,
                    &format!("expected a table, found {}", type_name(other)),
                    &format!("write a [{name}] section"),
                )),
            },
        }
    };

    // [sweep]
    let Some((_, meta)) = table("sweep")? else {
        return Err(usage(format!(
            "{}: sweep: missing [sweep] section; fix: add `[sweep]` with `name = \"...\"`",
            src.name
        )));
    };
    for (k, _) in entries(meta) {
        if !["name", "title", "description", "kind"].contains(&k.get_ref().as_ref()) {
            return Err(src.err(
                &k.span(),
                &format!("sweep.{}", k.get_ref()),
                "unknown key",
                "use name, title, description, kind",
            ));
        }
    }
    let name = get_str(&src, meta, "name", "sweep")?.ok_or_else(|| {
        usage(format!(
            "{}: sweep.name: missing; fix: add `name = \"my_sweep\"` under [sweep]",
            src.name
        ))
    })?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        let span = meta.get("name").map(|v| v.span()).unwrap_or(0..0);
        return Err(src.err(
            &span,
            "sweep.name",
            &format!("`{name}` is not a valid name"),
            "use letters, digits, `_`, `-` and `.` only",
        ));
    }
    let title = get_str(&src, meta, "title", "sweep")?;
    let description = get_str(&src, meta, "description", "sweep")?;
    let kind = match get_str(&src, meta, "kind", "sweep")?.as_deref() {
        None | Some("grid") => Kind::Grid,
        Some("ablation") => Kind::Ablation,
        Some(other) => {
            let span = meta.get("kind").map(|v| v.span()).unwrap_or(0..0);
            return Err(src.err(
                &span,
                "sweep.kind",
                &format!("unknown kind `{other}`"),
                "use \"grid\" or \"ablation\"",
            ));
        }
    };

    // [base]
    let Some((base_key, base)) = table("base")? else {
        return Err(usage(format!(
            "{}: base: missing [base] section; fix: add [base] with the trial settings",
            src.name
        )));
    };
    let base_at = format!("{} [base]", src.loc(&base_key.span()));
    let mut settings: BTreeMap<String, Setting> = check_table(&src, &file_base, base, &[])?
        .into_iter()
        .collect();

    // [grid]
    let mut axes = match table("grid")? {
        Some((_, g)) => check_grid(&src, &file_base, g)?,
        None => Vec::new(),
    };

    // [profile.NAME]
    // Axes of the file that the selected profile replaced: paper references are mapped onto them.
    let mut replaced_axes: Vec<Axis> = Vec::new();
    let profiles = table("profile")?;
    if let Some((_, ps)) = profiles {
        for (pk, pv) in entries(ps) {
            let DeValue::Table(pt) = pv.get_ref() else {
                return Err(src.err(
                    &pv.span(),
                    &format!("profile.{}", pk.get_ref()),
                    "expected a table",
                    &format!("write a [profile.{}] section", pk.get_ref()),
                ));
            };
            // Validate every profile, not only the selected one: a typo should not wait.
            let p_settings = check_table(&src, &file_base, pt, &["grid"])?;
            let p_grid = match pt.get("grid") {
                None => Vec::new(),
                Some(g) => match g.get_ref() {
                    DeValue::Table(gt) => check_grid(&src, &file_base, gt)?,
                    other => {
                        return Err(src.err(
                            &g.span(),
                            &format!("profile.{}.grid", pk.get_ref()),
                            &format!("expected a table, found {}", type_name(other)),
                            &format!("write [profile.{}.grid]", pk.get_ref()),
                        ))
                    }
                },
            };
            if Some(pk.get_ref().as_ref()) == profile {
                settings.extend(p_settings);
                for axis in p_grid {
                    match axes.iter_mut().find(|a| a.name == axis.name) {
                        Some(a) => {
                            replaced_axes.push(a.clone());
                            *a = axis
                        }
                        None => axes.push(axis),
                    }
                }
            }
        }
    }
    if let Some(p) = profile {
        let defined: Vec<String> = profiles
            .map(|(_, ps)| ps.iter().map(|(k, _)| k.get_ref().to_string()).collect())
            .unwrap_or_default();
        if !defined.iter().any(|d| d == p) {
            return Err(usage(format!(
                "--profile {p}: {}: no [profile.{p}] in this file; fix: use one of: {}",
                src.name,
                if defined.is_empty() {
                    "(none defined)".to_string()
                } else {
                    defined.join(", ")
                }
            )));
        }
    }

    // --set overrides
    let mut trial_sets: Vec<(String, Setting)> = Vec::new();
    for flag in sets {
        let (key, raw) = parse_set(flag)?;
        let flag_text = format!("--set {flag}");
        let parsed = DeValue::parse(&raw);
        let owned_raw;
        let value_src: &str = match &parsed {
            Ok(_) => &raw,
            Err(_) => {
                owned_raw = format!("{:?}", raw);
                &owned_raw
            }
        };
        let fsrc = Source {
            name: flag_text.clone(),
            text: value_src,
            is_flag: true,
        };
        let value = DeValue::parse(value_src).map_err(|e| {
            usage(format!(
                "{flag_text}: {key}: cannot parse the value: {}; fix: quote it",
                e.message()
            ))
        })?;
        if let Some(axis) = key.strip_prefix("grid.") {
            let axis = check_axis(&fsrc, &flag_base, axis, &value)?;
            match axes.iter_mut().find(|a| a.name == axis.name) {
                Some(a) => *a = axis,
                None => axes.push(axis),
            }
        } else {
            trial_sets.extend(check_value(&fsrc, &flag_base, &key, &value)?);
        }
    }

    // [[reference]]
    let mut references = Vec::new();
    if let Some(r) = doc.get("reference") {
        let DeValue::Array(rows) = r.get_ref() else {
            return Err(src.err(
                &r.span(),
                "reference",
                "expected an array of tables",
                "write each row as a [[reference]] section",
            ));
        };
        for row in rows.iter() {
            let DeValue::Table(t) = row.get_ref() else {
                return Err(src.err(
                    &row.span(),
                    "reference",
                    "expected a table",
                    "write each row as a [[reference]] section",
                ));
            };
            let mut m = Map::new();
            for (k, v) in entries(t) {
                let key = k.get_ref().as_ref();
                if REFERENCE_METRICS.contains(&key) {
                    let Some(f) = as_f64(v.get_ref()) else {
                        return Err(src.err(
                            &v.span(),
                            &format!("reference.{key}"),
                            &format!("expected a number, found {}", type_name(v.get_ref())),
                            &format!("write `{key} = 3.0871`"),
                        ));
                    };
                    m.insert(key.to_string(), Json::from(f));
                } else if key == "label" || key == "note" {
                    let s = get_str(&src, t, key, "reference")?.unwrap_or_default();
                    m.insert(key.to_string(), Json::String(s));
                } else if key_kind(key).is_some() || axes.iter().any(|a| a.name == key) {
                    m.insert(key.to_string(), de_to_json(v.get_ref()));
                } else {
                    return Err(src.err(
                        &k.span(),
                        &format!("reference.{key}"),
                        "unknown key",
                        &format!(
                            "use axis or config keys, label, note, or a metric ({})",
                            REFERENCE_METRICS.join(", ")
                        ),
                    ));
                }
            }
            references.push(m);
        }
    }
    map_references_onto_profile_axes(&mut references, &replaced_axes, &axes);

    // Expand the axes into trials.
    let combos: Vec<Vec<&AxisValue>> = match kind {
        Kind::Grid => {
            let mut combos: Vec<Vec<&AxisValue>> = vec![Vec::new()];
            for axis in &axes {
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
        Kind::Ablation => {
            let mut combos = vec![Vec::new()];
            for axis in &axes {
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
        resolve(&s, &base_at)
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
            for axis in &axes {
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
    Ok(Sweep {
        name,
        title,
        description,
        kind,
        file: abs,
        profile: profile.map(str::to_string),
        sets: sets.to_vec(),
        axes,
        references,
        trials,
    })
}

fn de_to_json(v: &DeValue) -> Json {
    match v {
        DeValue::String(s) => Json::String(s.to_string()),
        DeValue::Integer(_) => as_i64(v).map(Json::from).unwrap_or(Json::Null),
        DeValue::Float(_) => as_f64(v).map(Json::from).unwrap_or(Json::Null),
        DeValue::Boolean(b) => Json::Bool(*b),
        DeValue::Datetime(d) => Json::String(d.to_string()),
        DeValue::Array(a) => Json::Array(a.iter().map(|i| de_to_json(i.get_ref())).collect()),
        DeValue::Table(t) => Json::Object(
            entries(t)
                .into_iter()
                .map(|(k, v)| (k.get_ref().to_string(), de_to_json(v.get_ref())))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A project root with `data/x.tsv` and the sweep file at `exp/s.toml`.
    fn setup(body: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::create_dir_all(dir.path().join("exp")).unwrap();
        std::fs::write(dir.path().join("data/x.tsv"), "x").unwrap();
        let path = dir.path().join("exp/s.toml");
        std::fs::write(&path, body).unwrap();
        (dir, path)
    }

    const BASE: &str = r#"[sweep]
name = "t"
kind = "ablation"
[base]
model = "gpt2-tiny"
data = { sources = ["data/x.tsv"], categories = ["cs.CL"] }
block_size = 128
batch_size = 8
grad_accum = 1
learning_rate = 5e-5
weight_decay = 0.0
epochs = 5
"#;

    fn err(body: &str, sets: &[&str]) -> String {
        let (_d, p) = setup(body);
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let e = load(&p, None, &sets).unwrap_err();
        assert!(
            e.downcast_ref::<UsageError>().is_some(),
            "usage error: {e:#}"
        );
        format!("{e:#}")
    }

    #[test]
    fn ablation_expands_one_axis_at_a_time_with_shared_baseline() {
        let body = format!(
            "{BASE}[grid]\nblock_size = [128, 64, 32]\ngrad_accum = [1, 2]\n\
             [[reference]]\nblock_size = 128\nvalid_ppl = 21.9143\nlabel = \"82M*\"\n"
        );
        let (dir, p) = setup(&body);
        let s = load(&p, None, &[]).unwrap();
        assert_eq!(s.kind, Kind::Ablation);
        // baseline, 64, 32, grad_accum 2 (block 128 and grad_accum 1 are the baseline).
        let labels: Vec<String> = s
            .trials
            .iter()
            .map(|t| Json::Object(t.label.clone()).to_string())
            .collect();
        assert_eq!(
            labels,
            [
                r#"{"block_size":128,"grad_accum":1}"#,
                r#"{"block_size":64}"#,
                r#"{"block_size":32}"#,
                r#"{"grad_accum":2}"#
            ]
        );
        assert!(s.trials[0].is_baseline && !s.trials[1].is_baseline);
        assert_eq!(s.trials[2].config.block_size, 32);
        assert_eq!(s.trials[2].config.grad_accum, 1);
        let src = std::path::absolute(dir.path().join("data/x.tsv")).unwrap();
        assert_eq!(
            s.trials[0].config.data.sources,
            vec![src.display().to_string()]
        );
        assert_eq!(s.references[0]["valid_ppl"], Json::from(21.9143));
        assert_eq!(s.spec_json()["axes"][0]["name"], "block_size");
    }

    #[test]
    fn profile_axis_maps_paper_references_by_position() {
        let body = format!(
            "{BASE}[grid]\nblock_size = [128, 64]\n[profile.quick]\nepochs = 1\n\
             [profile.quick.grid]\nblock_size = [32, 16]\n\
             [[reference]]\nblock_size = 128\nvalid_ppl = 21.9\n\
             [[reference]]\nblock_size = 64\nvalid_ppl = 27.5\n"
        );
        let (_d, p) = setup(&body);
        let full = load(&p, None, &[]).unwrap();
        assert_eq!(full.references[0]["block_size"], Json::from(128));
        assert!(full.references[0].get("paper_block_size").is_none());
        let quick = load(&p, Some("quick"), &[]).unwrap();
        let got: Vec<(Json, Json)> = quick
            .references
            .iter()
            .map(|r| (r["block_size"].clone(), r["paper_block_size"].clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Json::from(32), Json::from(128)),
                (Json::from(16), Json::from(64))
            ]
        );
    }

    #[test]
    fn grid_paired_axis_profile_and_set() {
        let body = BASE.replace("kind = \"ablation\"", "kind = \"grid\"")
            + "[grid]\nmodel_lr = [{ model = \"gpt2-tiny\", learning_rate = 1e-3 }, { model = \"gpt2-mini\", learning_rate = 5e-4 }]\nseed = [1, 2]\n\
               [profile.quick]\nepochs = 1\nmax_steps = 10\n[profile.quick.grid]\nseed = [7]\n";
        let (_d, p) = setup(&body);
        let s = load(&p, None, &[]).unwrap();
        assert_eq!(s.trials.len(), 4);
        assert_eq!(s.trials[3].config.model.to_string(), "gpt2-mini");
        assert_eq!(s.trials[3].config.learning_rate, 5e-4);
        assert_eq!(s.trials[3].config.seed, 2);
        let q = load(
            &p,
            Some("quick"),
            &["batch_size=2".into(), "tokenizer=bpe-512".into()],
        )
        .unwrap();
        assert_eq!(q.trials.len(), 2);
        assert!(q.trials.iter().all(|t| t.config.seed == 7
            && t.config.epochs == 1
            && t.config.max_steps == Some(10)
            && t.config.batch_size == 2
            && t.config.tokenizer.to_string() == "bpe-512"));
        let g = load(&p, None, &["grid.seed=[3,4,5]".into()]).unwrap();
        assert_eq!(g.trials.len(), 6);
        let e = format!("{:#}", load(&p, Some("full"), &[]).unwrap_err());
        assert!(e.contains("--profile full") && e.contains("quick"), "{e}");
    }

    #[test]
    fn errors_name_location_key_and_fix() {
        let e = err(&BASE.replace("epochs = 5", "epochs = 5\nepoch = 3"), &[]);
        assert!(
            e.contains("s.toml:13:1: epoch: unknown key; fix: use one of:"),
            "{e}"
        );
        let e = err(&BASE.replace("batch_size = 8", "batch_size = \"8\""), &[]);
        assert!(
            e.contains("s.toml:8:14: batch_size: expected an integer, found a string; fix:"),
            "{e}"
        );
        let e = err(
            &BASE.replace("learning_rate = 5e-5", "learning_rate = -1.0"),
            &[],
        );
        assert!(e.contains(":10:17: learning_rate: must be positive"), "{e}");
        let e = err(&BASE.replace("epochs = 5", "epochs = 0"), &[]);
        assert!(e.contains(":12:10: epochs: must be positive"), "{e}");
        let e = err(&format!("{BASE}[grid]\nblock_size = []\n"), &[]);
        assert!(
            e.contains(":14:14: grid.block_size: empty axis; fix:"),
            "{e}"
        );
        let e = err(&format!("{BASE}[grid]\nblock_size = [64, 32, 64]\n"), &[]);
        assert!(
            e.contains(":14:23: grid.block_size: duplicate axis value"),
            "{e}"
        );
        // gpt2-tiny has a 256-token context.
        let e = err(&format!("{BASE}[grid]\nblock_size = [64, 512]\n"), &[]);
        assert!(
            e.contains(":14:19: block_size: 512 is above the context length 256"),
            "{e}"
        );
        let e = err(BASE, &["block_size=1024"]);
        assert!(
            e.contains("--set block_size=1024: block_size: 1024 is above"),
            "{e}"
        );
        let e = err(BASE, &["nope=1"]);
        assert!(e.contains("--set nope=1: nope: unknown key"), "{e}");
        let e = err(&BASE.replace("data/x.tsv", "data/missing.tsv"), &[]);
        assert!(e.contains(":6:21: data.sources: no such file"), "{e}");
        let e = err(BASE, &["precision=fp8"]);
        assert!(
            e.contains("--set precision=fp8: precision: unknown precision `fp8`"),
            "{e}"
        );
        let (_d, p) = setup(BASE);
        let alias = load(&p, None, &["precision=fp16".to_string()]).unwrap();
        let canonical = load(&p, None, &["precision=f16".to_string()]).unwrap();
        assert_eq!(
            alias.trials[0].config.precision,
            Some(crate::trial::Precision::F16)
        );
        assert_eq!(alias.trials[0].config, canonical.trials[0].config);
        // A --set that replaces the missing path makes it irrelevant; a missing --set path is not.
        let (d, p) = setup(&BASE.replace("data/x.tsv", "data/missing.tsv"));
        let x = d.path().join("data/x.tsv").display().to_string();
        let sweep = load(&p, None, &[format!("data.sources=[{x:?}]")]).unwrap();
        assert_eq!(sweep.trials[0].config.data.sources, vec![x]);
        let e = err(
            &BASE.replace("data/x.tsv", "data/missing.tsv"),
            &["data.sources=[\"/nope.tsv\"]"],
        );
        assert!(
            e.contains("--set data.sources=[\"/nope.tsv\"]: data.sources: no such file: /nope.tsv"),
            "{e}"
        );
        let e = err(&BASE.replace("epochs = 5\n", ""), &[]);
        assert!(
            e.contains("epochs: missing required key; fix: add `epochs = 5` to [base]"),
            "{e}"
        );
        let e = err(&BASE.replace("[base]", "[base\n"), &[]);
        assert!(
            e.contains("s.toml:4:") && e.contains("TOML syntax error"),
            "{e}"
        );
        let e = err(&format!("{BASE}[grid]\nfoo = [1, 2]\n"), &[]);
        assert!(
            e.contains(":14:8: grid.foo: `foo` is not a config key"),
            "{e}"
        );
        let e = err(&format!("{BASE}[[reference]]\nvalid_pll = 3.0\n"), &[]);
        assert!(e.contains(":14:1: reference.valid_pll: unknown key"), "{e}");
        let e = err(
            &BASE.replace("model = \"gpt2-tiny\"", "model = \"gpt5\""),
            &[],
        );
        assert!(e.contains(":5:9: model: unknown model `gpt5`"), "{e}");
    }
}
