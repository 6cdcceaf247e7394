//! Pure functions from ledger records to the report's table and plot data (no I/O, no rendering).

use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use super::load::{MetricPoint, SweepRecords, TrialInfo};

/// A final metric column of the paper's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    TrainLoss,
    ValidLoss,
    TestLoss,
    TrainPpl,
    ValidPpl,
    TestPpl,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::TrainLoss,
        Metric::ValidLoss,
        Metric::TestLoss,
        Metric::TrainPpl,
        Metric::ValidPpl,
        Metric::TestPpl,
    ];

    /// Column name in the ledger and in reference rows.
    pub fn key(self) -> &'static str {
        match self {
            Metric::TrainLoss => "train_loss",
            Metric::ValidLoss => "valid_loss",
            Metric::TestLoss => "test_loss",
            Metric::TrainPpl => "train_ppl",
            Metric::ValidPpl => "valid_ppl",
            Metric::TestPpl => "test_ppl",
        }
    }

    /// Column header as printed in the paper.
    pub fn header(self) -> &'static str {
        match self {
            Metric::TrainLoss => "Train Loss",
            Metric::ValidLoss => "Valid Loss",
            Metric::TestLoss => "Test Loss",
            Metric::TrainPpl => "Train PPL",
            Metric::ValidPpl => "Valid PPL",
            Metric::TestPpl => "Test PPL",
        }
    }

    pub fn from_key(key: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.key() == key)
    }

    pub fn of(self, t: &TrialInfo) -> Option<f64> {
        match self {
            Metric::TrainLoss => t.train_loss,
            Metric::ValidLoss => t.valid_loss,
            Metric::TestLoss => t.test_loss,
            Metric::TrainPpl => t.train_ppl,
            Metric::ValidPpl => t.valid_ppl,
            Metric::TestPpl => t.test_ppl,
        }
    }
}

/// Which of the paper's table shapes a sweep uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Tables 3-7: `Model | <axis> | Train Loss | Valid Loss | Train PPL | Valid PPL`.
    Ablation,
    /// Table 8 (the axis involves `model`): adds Test Loss / Test PPL.
    ModelSize,
}

impl Layout {
    pub fn metrics(self) -> &'static [Metric] {
        match self {
            Layout::Ablation => &[
                Metric::TrainLoss,
                Metric::ValidLoss,
                Metric::TrainPpl,
                Metric::ValidPpl,
            ],
            Layout::ModelSize => &[
                Metric::TrainLoss,
                Metric::ValidLoss,
                Metric::TestLoss,
                Metric::TrainPpl,
                Metric::ValidPpl,
                Metric::TestPpl,
            ],
        }
    }
}

/// Mean and sample standard deviation over the seeds of one table row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    pub mean: f64,
    /// None for a single value.
    pub std: Option<f64>,
    pub n: usize,
}

impl Stat {
    pub fn of(values: &[f64]) -> Option<Stat> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = (n > 1).then(|| {
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            var.sqrt()
        });
        Some(Stat { mean, std, n })
    }

    /// `3.0095` or `3.0095 ± 0.0012` (4 decimals, like the paper).
    pub fn display(&self) -> String {
        match self.std {
            Some(s) => format!("{:.4} ± {:.4}", self.mean, s),
            None => format!("{:.4}", self.mean),
        }
    }
}

/// One row of the paper-layout table (the trials sharing an axis value; seeds aggregated).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableRow {
    /// The Model column: size label like `82M`, with `*` on the baseline row.
    pub model: String,
    /// Formatted axis values, one per axis column.
    pub axis: Vec<String>,
    /// Raw axis values (the trial label without `seed`).
    pub label: Map<String, Value>,
    pub baseline: bool,
    /// One cell per layout metric; None when no trial of the row has completed.
    pub cells: Vec<Option<Stat>>,
    /// Best value of its column (lowest loss/perplexity).
    pub bold: Vec<bool>,
    pub trial_ids: Vec<i64>,
    /// Axis keys this row's label lacked, filled from the trial config (one-axis-at-a-time
    /// ablations label a row only with its own axis).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filled: Vec<String>,
    /// Trials per state, e.g. `{"completed": 3}`.
    pub states: BTreeMap<String, usize>,
}

impl TableRow {
    /// "3 completed", "1 completed, 1 failed" - shown for rows not fully completed.
    pub fn state_summary(&self) -> String {
        self.states
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn complete(&self) -> bool {
        self.states.len() == 1 && self.states.contains_key("completed")
    }
}

/// The paper-layout table of one sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaperTable {
    pub layout: Layout,
    /// Label keys that vary across the sweep's rows (without `seed`), in sweep order.
    pub axis_keys: Vec<String>,
    /// Headers of the axis columns (the `model` key is shown in the Model column instead).
    pub axis_headers: Vec<String>,
    pub metrics: Vec<Metric>,
    pub rows: Vec<TableRow>,
}

impl PaperTable {
    /// All column headers in order.
    pub fn headers(&self) -> Vec<String> {
        let mut h = vec!["Model".to_string()];
        h.extend(self.axis_headers.iter().cloned());
        h.extend(self.metrics.iter().map(|m| m.header().to_string()));
        h
    }

    /// The axis keys shown in their own columns (all but `model`).
    pub fn axis_columns(&self) -> Vec<&str> {
        self.axis_keys
            .iter()
            .filter(|k| k.as_str() != "model")
            .map(String::as_str)
            .collect()
    }
}

/// The paper's parameter-count label for a model preset (`82M` for distilgpt2).
pub fn model_size_label(model: &str) -> String {
    match model {
        "distilgpt2" => "82M",
        "gpt2" => "117M",
        "gpt2-medium" => "345M",
        "gpt2-large" => "774M",
        "gpt2-xl" => "1.5B",
        other => other,
    }
    .to_string()
}

/// Paper header for a config key (`block_size` -> `Block Size`).
pub fn axis_header(key: &str) -> String {
    match key {
        "grad_accum" => "Grad Accum".into(),
        "learning_rate" => "LR".into(),
        "model" => "Model".into(),
        other => other
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                match c.next() {
                    Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                    None => String::new(),
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Plot axis label with units for a config key.
pub fn axis_unit_label(key: &str) -> String {
    match key {
        "block_size" => "Block size (tokens per sequence)".into(),
        "batch_size" => "Batch size (sequences per step)".into(),
        "grad_accum" => "Gradient accumulation (micro-batches per step)".into(),
        "epochs" => "Epochs (passes over the training split)".into(),
        "weight_decay" => "Weight decay (AdamW coefficient)".into(),
        "learning_rate" => "Learning rate (peak)".into(),
        "model" => "Model (parameters)".into(),
        other => axis_header(other),
    }
}

/// Formats an axis value like the paper: `512`, `0.01`, `5e-5`.
pub fn format_value(v: &Value) -> String {
    match v {
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) => format_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        other => other.to_string(),
    }
}

fn format_float(f: f64) -> String {
    if f != 0.0 && f.abs() < 1e-3 {
        // 5e-5 rather than 0.00005
        format!("{f:e}")
    } else if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// The value as a number, when it is one (numbers, or strings that parse as numbers).
pub fn value_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(*b as i64 as f64),
        _ => None,
    }
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (value_f64(a), value_f64(b)) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => match (a, b) {
            (Value::String(x), Value::String(y)) => {
                x == y || model_size_label(x) == *y || *x == model_size_label(y)
            }
            _ => a == b,
        },
    }
}

/// The label without `seed` (seeds of the same row are aggregated).
fn row_key(label: &Map<String, Value>) -> Map<String, Value> {
    label
        .iter()
        .filter(|(k, _)| k.as_str() != "seed")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Axis key order: as listed in `spec.axes` (strings, or objects naming `name`/`key`/`keys`), then
/// any other label key in first-seen order.
pub fn axis_keys(records: &SweepRecords) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for t in &records.trials {
        for k in t.label.keys() {
            if k != "seed" && !seen.contains(k) {
                seen.push(k.clone());
            }
        }
    }
    let mut ordered: Vec<String> = Vec::new();
    let push = |k: &str, ordered: &mut Vec<String>| {
        if seen.iter().any(|s| s == k) && !ordered.iter().any(|o| o == k) {
            ordered.push(k.to_string());
        }
    };
    if let Some(axes) = records.sweep.spec.get("axes").and_then(Value::as_array) {
        for a in axes {
            match a {
                Value::String(s) => push(s, &mut ordered),
                Value::Object(o) => {
                    for f in ["name", "key", "param", "parameter"] {
                        if let Some(s) = o.get(f).and_then(Value::as_str) {
                            push(s, &mut ordered);
                        }
                    }
                    if let Some(ks) = o.get("keys").and_then(Value::as_array) {
                        for k in ks.iter().filter_map(Value::as_str) {
                            push(k, &mut ordered);
                        }
                    }
                    // The store's form: {"name": ..., "values": [label, ...]}; a paired axis's
                    // labels carry several keys.
                    if let Some(vs) = o.get("values").and_then(Value::as_array) {
                        for v in vs.iter().filter_map(Value::as_object) {
                            for k in v.keys() {
                                push(k, &mut ordered);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    for k in &seen {
        push(k, &mut ordered);
    }
    ordered
}

/// The model preset of a trial (`config.model`).
pub fn trial_model(t: &TrialInfo) -> String {
    t.config
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string()
}

/// A config value by key; `data.sources` looks inside the `data` table.
pub fn config_value<'a>(config: &'a Value, key: &str) -> Option<&'a Value> {
    match key.split_once('.') {
        Some((a, b)) => config.get(a)?.get(b),
        None => config.get(key),
    }
    .filter(|v| !v.is_null())
}

/// Builds the paper-layout table: one row per distinct label (seeds aggregated as mean ± std),
/// in sweep order, with the baseline starred and the best value per column flagged.
pub fn paper_table(records: &SweepRecords) -> PaperTable {
    let axis_keys = axis_keys(records);
    let layout = if axis_keys.iter().any(|k| k == "model") {
        Layout::ModelSize
    } else {
        Layout::Ablation
    };
    let metrics = layout.metrics().to_vec();

    // Group trials by label-without-seed, keeping first-seen (position) order.
    let mut groups: Vec<(Map<String, Value>, Vec<&TrialInfo>)> = Vec::new();
    for t in &records.trials {
        let key = row_key(&t.label);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(t),
            None => groups.push((key, vec![t])),
        }
    }

    let axis_cols: Vec<&String> = axis_keys.iter().filter(|k| *k != "model").collect();
    let mut rows: Vec<TableRow> = groups
        .into_iter()
        .map(|(mut label, trials)| {
            // In a one-axis-at-a-time ablation a row's label names only its own axis; the
            // other axis columns show the value the trial ran with.
            let mut filled = Vec::new();
            for k in &axis_keys {
                if !label.contains_key(k) {
                    if let Some(v) = config_value(&trials[0].config, k) {
                        label.insert(k.clone(), v.clone());
                        filled.push(k.clone());
                    }
                }
            }
            let baseline = trials.iter().any(|t| t.is_baseline);
            let model = label
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| trial_model(trials[0]));
            let mut model = model_size_label(&model);
            if baseline {
                model.push('*');
            }
            let axis = axis_cols
                .iter()
                .map(|k| {
                    label
                        .get(k.as_str())
                        .map(format_value)
                        .unwrap_or_else(|| "—".into())
                })
                .collect();
            let cells = metrics
                .iter()
                .map(|m| {
                    let vals: Vec<f64> = trials
                        .iter()
                        .filter(|t| t.state == "completed")
                        .filter_map(|t| m.of(t))
                        .filter(|v| v.is_finite())
                        .collect();
                    Stat::of(&vals)
                })
                .collect();
            let mut states = BTreeMap::new();
            for t in &trials {
                *states.entry(t.state.clone()).or_insert(0) += 1;
            }
            TableRow {
                model,
                axis,
                label,
                baseline,
                bold: vec![false; metrics.len()],
                cells,
                trial_ids: trials.iter().map(|t| t.id).collect(),
                filled,
                states,
            }
        })
        .collect();

    // Bold the best (lowest) value per column, comparing what is printed (4 decimals) so ties
    // are all bold; only meaningful with two or more rows.
    for c in 0..metrics.len() {
        let printed: Vec<Option<f64>> = rows
            .iter()
            .map(|r| r[c].map(|s| (s.mean * 1e4).round()))
            .collect();
        if printed.iter().flatten().count() < 2 {
            continue;
        }
        let best = printed
            .iter()
            .flatten()
            .cloned()
            .fold(f64::INFINITY, f64::min);
        for (r, p) in rows.iter_mut().zip(&printed) {
            r.bold[c] = *p == Some(best);
        }
    }

    PaperTable {
        layout,
        axis_headers: axis_cols.iter().map(|k| axis_header(k)).collect(),
        axis_keys,
        metrics,
        rows,
    }
}

impl std::ops::Index<usize> for TableRow {
    type Output = Option<Stat>;
    fn index(&self, i: usize) -> &Option<Stat> {
        &self.cells[i]
    }
}

/// A cell of the beside-the-paper table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CompareCell {
    pub paper: Option<f64>,
    pub ours: Option<f64>,
    /// ours - paper
    pub delta: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompareRow {
    pub model: String,
    pub axis: Vec<String>,
    pub cells: Vec<CompareCell>,
    /// False for a paper row without a matching row of ours.
    pub matched: bool,
}

/// The paper's values beside ours, for the sweep's reference rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub metrics: Vec<Metric>,
    pub rows: Vec<CompareRow>,
}

/// Reference rows from `spec.references` (or `spec.reference`, as in a sweep file's `[[reference]]`).
fn reference_rows(spec: &Value) -> Vec<&Map<String, Value>> {
    ["references", "reference"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_object)
        .collect()
}

/// Matches each reference row to the first unused table row whose axis values equal the
/// reference's (model presets also match their size labels, e.g. `distilgpt2` = `82M`).
pub fn comparison(table: &PaperTable, spec: &Value) -> Option<Comparison> {
    let refs = reference_rows(spec);
    if refs.is_empty() {
        return None;
    }
    let metrics = table.metrics.clone();
    let mut used = vec![false; table.rows.len()];
    let mut matched_ref: Vec<Vec<usize>> = vec![Vec::new(); table.rows.len()];
    let mut unmatched: Vec<&Map<String, Value>> = Vec::new();
    for (ri, r) in refs.iter().enumerate() {
        let keys: Vec<&String> = r.keys().filter(|k| table.axis_keys.contains(k)).collect();
        let matches = |row: &TableRow, own: bool| {
            keys.iter().all(|k| {
                (!own || !row.filled.contains(k))
                    && row
                        .label
                        .get(k.as_str())
                        .is_some_and(|v| values_equal(v, &r[k.as_str()]))
            })
        };
        // Prefer a row labelled with the reference's keys (not filled in from its config),
        // then a row no other reference took: the shared baseline row (or a reference listed
        // twice, like Table 5's 0.01) may serve several.
        let n = table.rows.len();
        let hit = [(true, true), (true, false), (false, true), (false, false)]
            .into_iter()
            .find_map(|(own, fresh)| {
                (0..n).find(|&i| (!fresh || !used[i]) && matches(&table.rows[i], own))
            });
        match hit {
            Some(i) => {
                used[i] = true;
                matched_ref[i].push(ri);
            }
            None => unmatched.push(r),
        }
    }
    let paper_cells = |r: &Map<String, Value>, ours: &dyn Fn(usize) -> Option<f64>| {
        metrics
            .iter()
            .enumerate()
            .map(|(c, m)| {
                let paper = r.get(m.key()).and_then(value_f64);
                let ours = ours(c);
                CompareCell {
                    paper,
                    ours,
                    delta: paper.zip(ours).map(|(p, o)| o - p),
                }
            })
            .collect::<Vec<_>>()
    };
    let axis_cols = table.axis_columns();
    let mut rows = Vec::new();
    for (i, row) in table.rows.iter().enumerate() {
        for &ri in &matched_ref[i] {
            // A profile at another scale maps the paper's row onto ours (`paper_<key>`): show both.
            let axis = row
                .axis
                .iter()
                .zip(&axis_cols)
                .map(|(ours, k)| match refs[ri].get(&format!("paper_{k}")) {
                    Some(p) => format!("{ours} (paper {})", format_value(p)),
                    None => ours.clone(),
                })
                .collect();
            rows.push(CompareRow {
                model: row.model.clone(),
                axis,
                cells: paper_cells(refs[ri], &|c| row.cells[c].map(|s| s.mean)),
                matched: true,
            });
        }
    }
    for r in unmatched {
        let model = r
            .get("model")
            .map(format_value)
            .map(|m| model_size_label(&m))
            .unwrap_or_else(|| "—".into());
        rows.push(CompareRow {
            model,
            axis: axis_cols
                .iter()
                .map(|k| r.get(*k).map(format_value).unwrap_or_else(|| "—".into()))
                .collect(),
            cells: paper_cells(r, &|_| None),
            matched: false,
        });
    }
    Some(Comparison { metrics, rows })
}

/// Where a trial's weights started: what the trainer recorded (`env.start`), or for trials
/// recorded before it did, the same decision made from the config ([`TrialConfig::start`]).
pub fn trial_start(t: &TrialInfo) -> Option<String> {
    if let Some(s) = t
        .env
        .as_ref()
        .and_then(|e| e.get("start"))
        .and_then(Value::as_str)
    {
        return Some(s.to_string());
    }
    let cfg: crate::trial::TrialConfig = serde_json::from_value(t.config.clone()).ok()?;
    cfg.start().ok().map(|s| s.as_str().to_string())
}

/// Notes saying why numbers are not comparable to the paper's (from-scratch or non-paper models,
/// capped training). Empty for a paper-scale run.
pub fn scale_notes(records: &SweepRecords) -> Vec<String> {
    let mut notes = Vec::new();
    // Small models as the trials start them: from scratch, or from sweep's local pretraining.
    let mut small: Vec<String> = Vec::new();
    let mut capped = false;
    for t in &records.trials {
        let model = trial_model(t);
        let what = match trial_start(t).as_deref() {
            Some("scratch") => format!("`{model}` from scratch"),
            Some("local-pretraining") => {
                format!("`{model}` pretrained by sweep on the training split")
            }
            _ => String::new(),
        };
        if !what.is_empty() && !small.contains(&what) {
            small.push(what);
        }
        for k in ["max_train_tokens", "max_steps", "eval_tokens"] {
            if t.config.get(k).is_some_and(|v| !v.is_null()) {
                capped = true;
            }
        }
    }
    let profile = records.sweep.profile.as_deref().unwrap_or("?");
    if !small.is_empty() {
        notes.push(format!(
            "Profile `{profile}` is not paper scale: trials use {} (not the paper's pretrained \
             GPT-2 checkpoints), so compare trends across rows, not absolute values.",
            small.join(", ")
        ));
    }
    if capped {
        notes.push(format!(
            "Profile `{profile}` caps training or evaluation (max_train_tokens / max_steps / \
             eval_tokens), unlike the paper's full 5-epoch runs."
        ));
    }
    notes
}

/// One line of a plot, with optional error bars (std over seeds).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub name: String,
    /// (x, y, std)
    pub points: Vec<(f64, f64, Option<f64>)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XScale {
    /// x values are powers of two: plot on a log2 axis.
    Log2,
    Linear,
    /// x is the row index; these are the tick labels.
    Categorical(Vec<String>),
}

/// A metric-vs-axis plot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AxisPlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_scale: XScale,
    pub series: Vec<Series>,
}

/// The row's short name for legends and tick labels: `82M* block_size=512`.
pub fn row_name(table: &PaperTable, row: &TableRow) -> String {
    let mut parts = vec![row.model.clone()];
    for (k, v) in table.axis_columns().iter().zip(&row.axis) {
        parts.push(format!("{k}={v}"));
    }
    parts.join(" ")
}

/// Perplexity vs the axis value (valid and train; test too for model-size sweeps).
pub fn axis_plot(table: &PaperTable) -> Option<AxisPlot> {
    if table.rows.is_empty() {
        return None;
    }
    let numeric_key = match table.axis_keys.as_slice() {
        [k] if k != "model" => Some(k.clone()),
        _ => None,
    };
    let xs: Option<Vec<f64>> = numeric_key.as_ref().and_then(|k| {
        table
            .rows
            .iter()
            .map(|r| r.label.get(k).and_then(value_f64))
            .collect()
    });
    let (x_scale, xs, x_label) = match (xs, numeric_key) {
        (Some(xs), Some(k)) => {
            let pow2 = xs
                .iter()
                .all(|x| *x > 0.0 && x.log2().fract() == 0.0 && x.log2().abs() < 60.0);
            let distinct = {
                let mut v = xs.clone();
                v.sort_by(f64::total_cmp);
                v.dedup();
                v.len()
            };
            let scale = if pow2 && distinct >= 2 {
                XScale::Log2
            } else {
                XScale::Linear
            };
            let label = if scale == XScale::Log2 {
                format!("{} (log2 scale)", axis_unit_label(&k))
            } else {
                axis_unit_label(&k)
            };
            (scale, xs, label)
        }
        _ => {
            let labels: Vec<String> = table.rows.iter().map(|r| row_name(table, r)).collect();
            let xs = (0..table.rows.len()).map(|i| i as f64).collect();
            let label = if table.axis_keys.is_empty() {
                "Trial".to_string()
            } else {
                table
                    .axis_keys
                    .iter()
                    .map(|k| axis_unit_label(k))
                    .collect::<Vec<_>>()
                    .join(" × ")
            };
            (XScale::Categorical(labels), xs, label)
        }
    };
    let ppl_metrics: Vec<(usize, Metric)> = table
        .metrics
        .iter()
        .enumerate()
        .filter(|(_, m)| matches!(m, Metric::ValidPpl | Metric::TrainPpl | Metric::TestPpl))
        .map(|(i, m)| (i, *m))
        .collect();
    // Valid first: the paper's headline metric.
    let order = [Metric::ValidPpl, Metric::TrainPpl, Metric::TestPpl];
    let mut series = Vec::new();
    for m in order {
        let Some(&(c, _)) = ppl_metrics.iter().find(|(_, pm)| *pm == m) else {
            continue;
        };
        let mut points: Vec<(f64, f64, Option<f64>)> = table
            .rows
            .iter()
            .zip(&xs)
            .filter_map(|(r, x)| r.cells[c].map(|s| (*x, s.mean, s.std)))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        series.push(Series {
            name: m.header().to_string(),
            points,
        });
    }
    let axis_name = if table.axis_keys.is_empty() {
        "trial".to_string()
    } else {
        table
            .axis_keys
            .iter()
            .map(|k| axis_header(k))
            .collect::<Vec<_>>()
            .join(" × ")
    };
    Some(AxisPlot {
        title: format!("Perplexity vs {axis_name}"),
        x_label,
        y_label: "Perplexity (exp of mean token loss)".into(),
        x_scale,
        series,
    })
}

/// Loss over optimizer steps for one trial and split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Curve {
    pub trial_id: i64,
    pub name: String,
    pub split: String,
    /// (step, loss), step-ordered, at most `MAX_CURVE_POINTS`.
    pub points: Vec<(f64, f64)>,
}

/// Curves are thinned to this many points: more cannot be seen at plot resolution.
pub const MAX_CURVE_POINTS: usize = 400;

/// Evenly thins a step-ordered series to at most `max` points, keeping the first and last.
pub fn thin(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let n = points.len();
    (0..max).map(|i| points[i * (n - 1) / (max - 1)]).collect()
}

/// Train and valid loss curves, one per trial and split, in table-row order.
pub fn loss_curves(records: &SweepRecords, table: &PaperTable) -> Vec<Curve> {
    let mut by_trial: BTreeMap<(i64, &str), Vec<&MetricPoint>> = BTreeMap::new();
    for m in &records.metrics {
        if (m.split == "train" || m.split == "valid") && m.loss.is_finite() {
            by_trial
                .entry((m.trial_id, m.split.as_str()))
                .or_default()
                .push(m);
        }
    }
    let mut curves = Vec::new();
    for row in &table.rows {
        let base = row_name(table, row);
        for &tid in &row.trial_ids {
            let name = trial_name(records, &base, row, tid);
            for split in ["train", "valid"] {
                if let Some(ms) = by_trial.get(&(tid, split)) {
                    let mut pts: Vec<(f64, f64)> =
                        ms.iter().map(|m| (m.step as f64, m.loss)).collect();
                    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                    curves.push(Curve {
                        trial_id: tid,
                        name: name.clone(),
                        split: split.to_string(),
                        points: thin(&pts, MAX_CURVE_POINTS),
                    });
                }
            }
        }
    }
    curves
}

/// A trial's name in legends: the row name, plus its seed when the row aggregates several.
fn trial_name(records: &SweepRecords, base: &str, row: &TableRow, tid: i64) -> String {
    if row.trial_ids.len() < 2 {
        return base.to_string();
    }
    let seed = records
        .trials
        .iter()
        .find(|t| t.id == tid)
        .and_then(|t| t.label.get("seed").or_else(|| t.config.get("seed")))
        .map(format_value);
    match seed {
        Some(s) => format!("{base} seed={s}"),
        None => format!("{base} #{tid}"),
    }
}

/// Final training throughput of each trial (tokens/s), in table-row order.
pub fn throughput(records: &SweepRecords, table: &PaperTable) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for row in &table.rows {
        let base = row_name(table, row);
        for &tid in &row.trial_ids {
            let Some(t) = records.trials.iter().find(|t| t.id == tid) else {
                continue;
            };
            if let Some(v) = t.tokens_per_s.filter(|v| v.is_finite() && *v > 0.0) {
                out.push((trial_name(records, &base, row, tid), v));
            }
        }
    }
    out
}

/// Trials per state, and summed wall time split into GPU and CPU devices.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Totals {
    pub trials: usize,
    pub by_state: BTreeMap<String, usize>,
    pub gpu_seconds: f64,
    pub cpu_seconds: f64,
    pub first_started: Option<String>,
    pub last_finished: Option<String>,
}

pub fn totals(records: &SweepRecords) -> Totals {
    let mut t = Totals {
        trials: records.trials.len(),
        ..Default::default()
    };
    for tr in &records.trials {
        *t.by_state.entry(tr.state.clone()).or_insert(0) += 1;
        let secs = tr.wall_seconds.unwrap_or(0.0);
        let dev = tr.device.as_deref().unwrap_or("cpu");
        if dev.starts_with("cuda") || dev.starts_with("gpu") || dev.starts_with("wgpu") {
            t.gpu_seconds += secs;
        } else {
            t.cpu_seconds += secs;
        }
        if let Some(s) = &tr.started_at {
            if t.first_started.as_ref().is_none_or(|f| s < f) {
                t.first_started = Some(s.clone());
            }
        }
        if let Some(f) = &tr.finished_at {
            if t.last_finished.as_ref().is_none_or(|l| f > l) {
                t.last_finished = Some(f.clone());
            }
        }
    }
    t
}

/// Overall sweep state for the index page: running > pending > failed/diverged > completed.
pub fn sweep_state(by_state: &BTreeMap<String, usize>) -> String {
    if by_state.is_empty() {
        return "empty".into();
    }
    for s in ["running", "pending", "interrupted", "failed", "diverged"] {
        if by_state.contains_key(s) {
            return if s == "failed" || s == "diverged" {
                "completed with failures".into()
            } else {
                s.into()
            };
        }
    }
    "completed".into()
}

/// `1h 02m 03s`, `4m 05s`, `12.3s`.
pub fn format_duration(secs: f64) -> String {
    if !secs.is_finite() {
        return "—".into();
    }
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}h {:02}m {:02}s", s / 3600, (s % 3600) / 60, s % 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{secs:.1}s")
    }
}

/// `1.2 GiB`, `340.0 MiB`.
pub fn format_bytes(b: i64) -> String {
    let b = b as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::load::{SweepInfo, TrialInfo};
    use crate::report::synth::block_size_fixture;

    /// The fixture as records, without a database (ids = position + 1).
    pub(crate) fn fixture_records(hostile: &str) -> SweepRecords {
        let (sweep, trials) = block_size_fixture(hostile);
        let mut records = SweepRecords {
            sweep: SweepInfo {
                id: 1,
                name: sweep.name,
                title: Some(sweep.title),
                description: Some(sweep.description),
                profile: Some(sweep.profile),
                spec: sweep.spec,
                ..Default::default()
            },
            ..Default::default()
        };
        for (i, t) in trials.into_iter().enumerate() {
            let id = i as i64 + 1;
            let f = t.finals;
            for (step, split, loss) in &t.metrics {
                records.metrics.push(MetricPoint {
                    trial_id: id,
                    step: *step,
                    split: split.clone(),
                    loss: *loss,
                    ..Default::default()
                });
            }
            records.trials.push(TrialInfo {
                id,
                hash: format!("h{id}"),
                config: t.config,
                state: t.state,
                train_loss: f.map(|f| f[0]),
                valid_loss: f.map(|f| f[1]),
                test_loss: f.map(|f| f[2]),
                train_ppl: f.map(|f| f[3]),
                valid_ppl: f.map(|f| f[4]),
                test_ppl: f.map(|f| f[5]),
                tokens_per_s: t.tokens_per_s,
                wall_seconds: t.wall_seconds,
                device: t.device,
                position: i as i64,
                label: t.label.as_object().cloned().unwrap_or_default(),
                is_baseline: t.is_baseline,
                ..Default::default()
            });
        }
        records
    }

    #[test]
    fn paper_table_of_the_block_size_fixture() {
        let r = fixture_records("");
        let t = paper_table(&r);
        assert_eq!(t.layout, Layout::Ablation);
        assert_eq!(
            t.headers(),
            [
                "Model",
                "Block Size",
                "Train Loss",
                "Valid Loss",
                "Train PPL",
                "Valid PPL"
            ]
        );
        // Two seeds of 512 aggregate into one starred row; 5 rows like Table 4.
        assert_eq!(t.rows.len(), 5);
        assert_eq!(t.rows[0].model, "gpt2-tiny*");
        assert_eq!(t.rows[0].trial_ids, vec![1, 2]);
        let v = t.rows[0].cells[1].unwrap();
        assert!((v.mean - 4.12).abs() < 1e-12);
        assert!((v.std.unwrap() - (0.0008f64).sqrt()).abs() < 1e-12);
        // Best per column is the 512 row; the failed 32 row has no values.
        assert!(t.rows[0].bold.iter().all(|b| *b));
        assert!(t.rows[4].cells.iter().all(Option::is_none));
        assert_eq!(t.rows[4].state_summary(), "1 failed");
        insta::assert_json_snapshot!("block_size_table", t);
    }

    #[test]
    fn comparison_matches_reference_rows() {
        let r = fixture_records("");
        let t = paper_table(&r);
        let c = comparison(&t, &r.sweep.spec).unwrap();
        assert_eq!(c.rows.len(), 5);
        let first = &c.rows[0];
        assert_eq!(first.axis, vec!["512"]);
        assert_eq!(first.cells[3].paper, Some(21.9143));
        let ours = 4.12f64.exp() / 2.0 + 4.14f64.exp() / 2.0;
        let ours_mean = (4.10f64.exp() + 4.14f64.exp()) / 2.0;
        assert!(
            (first.cells[3].ours.unwrap() - ours_mean).abs() < 1e-9,
            "{ours}"
        );
        assert!((first.cells[3].delta.unwrap() - (ours_mean - 21.9143)).abs() < 1e-9);
        // The failed row is matched but has no numbers of ours.
        assert_eq!(c.rows[4].axis, vec!["32"]);
        assert_eq!(c.rows[4].cells[0].ours, None);
        insta::assert_json_snapshot!("block_size_comparison", c);
    }

    #[test]
    fn unmatched_and_duplicate_references() {
        let r = fixture_records("");
        let t = paper_table(&r);
        // Table 5 lists "0.01" twice; here two rows for 256 and one for a value we lack.
        let spec = serde_json::json!({"references": [
            {"block_size": 256, "valid_ppl": 1.0},
            {"block_size": "256", "valid_ppl": 2.0},
            {"block_size": 1024, "valid_ppl": 3.0},
        ]});
        let c = comparison(&t, &spec).unwrap();
        assert_eq!(c.rows.len(), 3);
        assert!(c.rows[0].matched && c.rows[0].cells[3].paper == Some(1.0));
        // The second 256 reference shares the row.
        assert!(c.rows[1].matched && c.rows[1].cells[3].paper == Some(2.0));
        assert_eq!(c.rows[1].cells[3].ours, c.rows[0].cells[3].ours);
        assert!(!c.rows[2].matched && c.rows[2].axis == vec!["1024"]);
        assert!(comparison(&t, &serde_json::json!({})).is_none());
    }

    #[test]
    fn model_size_sweeps_use_table8_layout() {
        let mut r = fixture_records("");
        r.trials.truncate(4);
        for (t, m) in r
            .trials
            .iter_mut()
            .zip(["distilgpt2", "gpt2", "gpt2-medium", "gpt2-large"])
        {
            t.label = serde_json::json!({"model": m, "learning_rate": 5e-5})
                .as_object()
                .unwrap()
                .clone();
            t.is_baseline = false;
            t.state = "completed".into();
        }
        let t = paper_table(&r);
        assert_eq!(t.layout, Layout::ModelSize);
        assert_eq!(
            t.headers(),
            [
                "Model",
                "LR",
                "Train Loss",
                "Valid Loss",
                "Test Loss",
                "Train PPL",
                "Valid PPL",
                "Test PPL"
            ]
        );
        let models: Vec<&str> = t.rows.iter().map(|r| r.model.as_str()).collect();
        assert_eq!(models, ["82M", "117M", "345M", "774M"]);
        assert_eq!(t.rows[0].axis, vec!["5e-5"]);
        let p = axis_plot(&t).unwrap();
        assert!(matches!(p.x_scale, XScale::Categorical(_)));
        assert_eq!(p.series.len(), 3);
        // References keyed by the paper's size label match the preset.
        let spec = serde_json::json!({"references": [{"model": "117M", "test_ppl": 17.6126}]});
        let c = comparison(&t, &spec).unwrap();
        assert_eq!(c.rows[0].model, "117M");
        assert!(c.rows[0].matched);
    }

    #[test]
    fn multi_axis_ablation_fills_other_axes_from_config() {
        let mut r = fixture_records("");
        r.trials.truncate(4);
        r.trials[0].label = serde_json::json!({"block_size": 512, "grad_accum": 1})
            .as_object()
            .unwrap()
            .clone();
        r.trials[1].label = serde_json::json!({"grad_accum": 2})
            .as_object()
            .unwrap()
            .clone();
        r.trials[1].config["grad_accum"] = serde_json::json!(2);
        r.trials[1].is_baseline = false;
        r.sweep.spec = serde_json::json!({
            "axes": [{"name": "block_size", "values": [{"block_size": 256}]},
                     {"name": "grad_accum", "values": [{"grad_accum": 2}]}],
            "references": [{"grad_accum": 1, "valid_ppl": 21.9143}, {"block_size": 512, "valid_ppl": 21.9143}],
        });
        let t = paper_table(&r);
        assert_eq!(t.axis_keys, ["block_size", "grad_accum"]);
        assert_eq!(t.rows[1].axis, vec!["512", "2"]);
        assert_eq!(t.rows[2].axis, vec!["256", "1"]);
        // Both references land on the shared baseline row.
        let c = comparison(&t, &r.sweep.spec).unwrap();
        assert_eq!(c.rows.len(), 2);
        assert!(c.rows.iter().all(|r| r.matched && r.model == "gpt2-tiny*"));
    }

    #[test]
    fn plot_data() {
        let r = fixture_records("");
        let t = paper_table(&r);
        let p = axis_plot(&t).unwrap();
        assert_eq!(p.x_scale, XScale::Log2);
        assert_eq!(p.series[0].name, "Valid PPL");
        // Sorted by x, failed row absent, baseline has an error bar.
        let xs: Vec<f64> = p.series[0].points.iter().map(|p| p.0).collect();
        assert_eq!(xs, vec![64.0, 128.0, 256.0, 512.0]);
        assert!(p.series[0].points[3].2.is_some());
        let curves = loss_curves(&r, &t);
        // 5 completed trials x 2 splits + the failed trial's train rows.
        assert_eq!(curves.len(), 11);
        assert_eq!(curves[0].name, "gpt2-tiny* block_size=512 seed=1");
        let tp = throughput(&r, &t);
        assert_eq!(tp.len(), 5);
        insta::assert_json_snapshot!("block_size_axis_plot", p);
    }

    #[test]
    fn linear_and_categorical_axes() {
        let mut r = fixture_records("");
        for (i, t) in r.trials.iter_mut().enumerate() {
            let wd = [0.0, 0.0, 0.01, 0.1, 0.2, 0.3][i];
            t.label = serde_json::json!({ "weight_decay": wd })
                .as_object()
                .unwrap()
                .clone();
        }
        let t = paper_table(&r);
        assert_eq!(axis_plot(&t).unwrap().x_scale, XScale::Linear);
        assert_eq!(t.rows[1].axis, vec!["0.01"]);
        for t in r.trials.iter_mut() {
            t.label = serde_json::json!({"tokenizer": "bpe"})
                .as_object()
                .unwrap()
                .clone();
        }
        let t = paper_table(&r);
        assert!(matches!(
            axis_plot(&t).unwrap().x_scale,
            XScale::Categorical(_)
        ));
    }

    #[test]
    fn helpers() {
        assert_eq!(Stat::of(&[1.0, 3.0]).unwrap().display(), "2.0000 ± 1.4142");
        assert_eq!(Stat::of(&[3.00951]).unwrap().display(), "3.0095");
        assert!(Stat::of(&[]).is_none());
        assert_eq!(format_value(&serde_json::json!(5e-5)), "5e-5");
        assert_eq!(format_value(&serde_json::json!(0.01)), "0.01");
        assert_eq!(format_value(&serde_json::json!(512)), "512");
        assert_eq!(model_size_label("distilgpt2"), "82M");
        assert_eq!(axis_header("block_size"), "Block Size");
        let pts: Vec<(f64, f64)> = (0..1000).map(|i| (i as f64, 0.0)).collect();
        let t = thin(&pts, 400);
        assert_eq!(t.len(), 400);
        assert_eq!(t[0].0, 0.0);
        assert_eq!(t[399].0, 999.0);
        assert_eq!(format_duration(3723.0), "1h 02m 03s");
        let r = fixture_records("");
        let notes = scale_notes(&r);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("`gpt2-tiny` from scratch"));
        // Bug: gpt2-xl and checkpoint-directory starts were labelled "from scratch" because the
        // report re-derived the init policy; it now reads the trainer's record (or its rule).
        let mut r = fixture_records("");
        for (t, model) in r.trials.iter_mut().zip(["gpt2-xl", "/ckpt/run1/model"]) {
            t.config["model"] = serde_json::json!(model);
            t.config["init"] = Value::Null;
            t.config["tokenizer"] = serde_json::json!("gpt2");
        }
        r.trials.truncate(2);
        let notes = scale_notes(&r).join(" ");
        assert!(!notes.contains("from scratch"), "{notes}");
        r.trials[0].env = Some(serde_json::json!({ "start": "local-pretraining" }));
        let notes = scale_notes(&r).join(" ");
        assert!(notes.contains("`gpt2-xl` pretrained by sweep"), "{notes}");
        let tot = totals(&fixture_records(""));
        assert_eq!(tot.by_state["completed"], 5);
        assert_eq!(sweep_state(&tot.by_state), "completed with failures");
    }
}

/// The paper's §4.6 finding, measured: of the samples generated for acronym titles
/// (`ACRONYM: full name`), how many use the acronym, next to the real abstracts of those titles.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KeyTermScore {
    pub trial_id: i64,
    /// Generated samples whose title has an acronym.
    pub generated: usize,
    pub generated_using: usize,
    /// Distinct titles with a real abstract and an acronym.
    pub real: usize,
    pub real_using: usize,
}

/// One score per trial that has samples with an acronym title (`uses_acronym` set). The real side
/// counts each title once, from `params.reference_uses_acronym`, however many samples it has.
pub fn key_term_scores(records: &SweepRecords) -> Vec<KeyTermScore> {
    let mut out: Vec<KeyTermScore> = Vec::new();
    let mut seen_titles: std::collections::BTreeSet<(i64, String)> = Default::default();
    for s in &records.samples {
        let Some(uses) = s.uses_acronym else { continue };
        let idx = match out.iter().position(|k| k.trial_id == s.trial_id) {
            Some(i) => i,
            None => {
                out.push(KeyTermScore {
                    trial_id: s.trial_id,
                    generated: 0,
                    generated_using: 0,
                    real: 0,
                    real_using: 0,
                });
                out.len() - 1
            }
        };
        let k = &mut out[idx];
        k.generated += 1;
        k.generated_using += usize::from(uses);
        let real = s
            .params
            .as_ref()
            .and_then(|p| p.get("reference_uses_acronym"))
            .and_then(Value::as_bool);
        if let (Some(real), Some(title)) = (real, &s.title) {
            if seen_titles.insert((s.trial_id, title.clone())) {
                k.real += 1;
                k.real_using += usize::from(real);
            }
        }
    }
    out
}

#[cfg(test)]
mod key_term_tests {
    use super::*;
    use crate::report::load::SampleInfo;
    use serde_json::json;

    fn sample(trial_id: i64, title: &str, uses: Option<bool>, real: Option<bool>) -> SampleInfo {
        SampleInfo {
            trial_id,
            title: Some(title.into()),
            uses_acronym: uses,
            params: real.map(|r| json!({ "reference_uses_acronym": r })),
            ..Default::default()
        }
    }

    #[test]
    fn counts_generated_per_sample_and_real_per_title() {
        let records = SweepRecords {
            samples: vec![
                sample(1, "BERT: Pre-training", Some(true), Some(true)),
                sample(1, "BERT: Pre-training", Some(false), Some(true)),
                sample(1, "ELMo: Deep contextualized", Some(false), Some(false)),
                sample(1, "A title without acronym", None, None),
                sample(2, "GPT: x", Some(true), None),
            ],
            ..Default::default()
        };
        let scores = key_term_scores(&records);
        assert_eq!(
            scores,
            vec![
                KeyTermScore {
                    trial_id: 1,
                    generated: 3,
                    generated_using: 1,
                    real: 2,
                    real_using: 1
                },
                KeyTermScore {
                    trial_id: 2,
                    generated: 1,
                    generated_using: 1,
                    real: 0,
                    real_using: 0
                },
            ]
        );
    }
}
