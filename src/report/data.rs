//! Pure functions from ledger records to the report's table and plot data (no I/O, no rendering).

use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::store::{SweepRecords, SweepTrial, TrialRecord, TrialResults, TrialState};

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

    pub fn of(self, t: &TrialResults) -> Option<f64> {
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

/// Mean, sample standard deviation and 95% interval of the mean over the seeds of one table row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    pub mean: f64,
    /// None for a single value.
    pub std: Option<f64>,
    pub n: usize,
    /// Student t, 95%; None for a single value (one seed gives no interval).
    pub ci95: Option<[f64; 2]>,
}

impl Stat {
    pub fn of(values: &[f64]) -> Option<Stat> {
        let s = crate::stats::Summary::of(values)?;
        Some(Stat {
            mean: s.mean,
            std: s.sd,
            n: s.n,
            ci95: s.ci95,
        })
    }

    /// Half the 95% interval's width.
    pub fn half_width(&self) -> Option<f64> {
        self.ci95.map(|[lo, hi]| (hi - lo) / 2.0)
    }

    /// `3.0095`, or with seeds `3.0095 ± 0.0012` (the 95% interval's half-width; 4 decimals,
    /// like the paper).
    pub fn display(&self) -> String {
        match self.half_width() {
            Some(h) => format!("{:.4} ± {:.4}", self.mean, h),
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
    /// The row's trials, each once, in the sweep's order.
    pub trial_ids: Vec<i64>,
    /// Completed trials (seeds with numbers).
    pub n: usize,
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
    /// Some row has several trials (seed replicates): the table shows each row's n.
    pub replicated: bool,
}

impl PaperTable {
    /// All column headers in order: Model, the axes, `n` (with replicates), the metrics.
    pub fn headers(&self) -> Vec<String> {
        let mut h = vec!["Model".to_string()];
        h.extend(self.axis_headers.iter().cloned());
        if self.replicated {
            h.push("n".into());
        }
        h.extend(self.metrics.iter().map(|m| m.header().to_string()));
        h
    }

    /// The columns before the metrics (Model, axes, `n`).
    pub fn left_columns(&self) -> usize {
        1 + self.axis_headers.len() + usize::from(self.replicated)
    }

    /// A row's cells before its metrics, as shown (model, axis values, `n` with replicates).
    pub fn left_cells(&self, r: &TableRow) -> Vec<String> {
        let mut cells = vec![r.model.clone()];
        cells.extend(r.axis.iter().cloned());
        if self.replicated {
            cells.push(r.n.to_string());
        }
        cells
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

/// Axis key order: as listed in `spec.axes` (strings, or objects naming `name`/`key`/`keys`), then
/// any other label key in first-seen order.
pub fn axis_keys(records: &SweepRecords) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for t in &records.trials {
        for k in t.label_map().keys() {
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
pub fn trial_model(t: &TrialRecord) -> String {
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

    // Group trials by label-without-seed, keeping first-seen (position) order. The index keys
    // are the labels' JSON text: a `Map` is sorted by key, so equal labels print alike.
    let mut groups: Vec<(Map<String, Value>, Vec<&SweepTrial>)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    for t in &records.trials {
        let key = t.row_key();
        let text = Value::Object(key.clone()).to_string();
        match index.get(&text) {
            Some(&i) => groups[i].1.push(t),
            None => {
                index.insert(text, groups.len());
                groups.push((key, vec![t]));
            }
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
                        .filter(|t| t.state == TrialState::Completed)
                        .filter_map(|t| m.of(&t.results))
                        .filter(|v| v.is_finite())
                        .collect();
                    Stat::of(&vals)
                })
                .collect();
            let mut states = BTreeMap::new();
            for t in &trials {
                *states.entry(t.state.to_string()).or_insert(0) += 1;
            }
            let n = trials
                .iter()
                .filter(|t| t.state == TrialState::Completed)
                .count();
            TableRow {
                model,
                axis,
                label,
                baseline,
                bold: vec![false; metrics.len()],
                cells,
                trial_ids: trials.iter().map(|t| t.id).collect(),
                n,
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
        replicated: rows.iter().any(|r| r.trial_ids.len() > 1),
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

/// Where a trial's weights started: what the trainer recorded (`env.start`), or for trials
/// recorded before it did, the same decision made from the config ([`TrialConfig::start`]).
pub fn trial_start(t: &TrialRecord) -> Option<String> {
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
    let mut fine_tuned_locally = false;
    for t in &records.trials {
        let model = trial_model(t);
        let what = match trial_start(t).as_deref() {
            Some("scratch") => format!("`{model}` from scratch"),
            Some("local-pretraining") => {
                fine_tuned_locally = true;
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
    if fine_tuned_locally {
        // Measured at quick scale (bench/RESULTS.md, "Two regimes"): the caveat a reader of such
        // a table needs before comparing its directions with the paper's.
        notes.push(
            "Fine-tuning sweep's own pretraining is not the paper's regime: that model was \
             pretrained on this very domain (the training split past the prefix the trials \
             fine-tune on), so a small fine-tuning budget mostly overfits, and rows that take more \
             optimizer steps over the same tokens (smaller batches or blocks, more epochs, less \
             accumulation) end worse. The paper's GPT-2 met arXiv abstracts for the first time \
             and gained from those steps; where a direction differs from the paper's here, that \
             is the likely cause (bench/RESULTS.md, \"Two regimes\")."
                .to_string(),
        );
    }
    if capped {
        notes.push(format!(
            "Profile `{profile}` caps training or evaluation (max_train_tokens / max_steps / \
             eval_tokens), unlike the paper's full 5-epoch runs."
        ));
    }
    notes
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::compare::comparison;
    use crate::report::plots::{axis_plot, thin, XScale};
    use crate::report::summary::{format_duration, sweep_state, totals};
    use crate::store::synth::block_size_fixture;
    use crate::store::{MetricRecord, SweepRecord};

    /// The block-size fixture as records, without a database (ids = position + 1).
    pub(crate) fn fixture_records(hostile: &str) -> SweepRecords {
        let (sweep, trials) = block_size_fixture(hostile);
        records_of(sweep, trials)
    }

    /// A synthetic sweep as records, without a database (ids = position + 1).
    pub(crate) fn records_of(
        sweep: crate::store::synth::SynthSweep,
        trials: Vec<crate::store::synth::SynthTrial>,
    ) -> SweepRecords {
        let mut records = SweepRecords {
            sweep: SweepRecord {
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
                records.metrics.push(MetricRecord {
                    trial_id: id,
                    step: *step,
                    split: split.clone(),
                    loss: *loss,
                    ..Default::default()
                });
            }
            records.trials.push(SweepTrial {
                sweep_id: 1,
                position: i as i64,
                label: t.label,
                is_baseline: t.is_baseline,
                trial: TrialRecord {
                    id,
                    hash: format!("h{id}"),
                    config: t.config,
                    state: t.state,
                    results: TrialResults {
                        train_loss: f.map(|f| f[0]),
                        valid_loss: f.map(|f| f[1]),
                        test_loss: f.map(|f| f[2]),
                        train_ppl: f.map(|f| f[3]),
                        valid_ppl: f.map(|f| f[4]),
                        test_ppl: f.map(|f| f[5]),
                        tokens_per_s: t.tokens_per_s,
                        wall_seconds: t.wall_seconds,
                        ..Default::default()
                    },
                    device: t.device,
                    ..Default::default()
                },
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
                "n",
                "Train Loss",
                "Valid Loss",
                "Train PPL",
                "Valid PPL"
            ]
        );
        assert!(t.replicated);
        assert_eq!(t.left_cells(&t.rows[0]), ["gpt2-tiny*", "512", "2"]);
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
    fn model_size_sweeps_use_table8_layout() {
        let mut r = fixture_records("");
        r.trials.truncate(4);
        for (t, m) in r
            .trials
            .iter_mut()
            .zip(["distilgpt2", "gpt2", "gpt2-medium", "gpt2-large"])
        {
            t.label = serde_json::json!({"model": m, "learning_rate": 5e-5});
            t.is_baseline = false;
            t.state = TrialState::Completed;
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
        r.trials[0].label = serde_json::json!({"block_size": 512, "grad_accum": 1});
        r.trials[1].label = serde_json::json!({"grad_accum": 2});
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
    fn helpers() {
        // ± is the 95% interval's half-width: t(0.975, 1) = 12.7062 times sd / sqrt(2) = 1.
        assert_eq!(Stat::of(&[1.0, 3.0]).unwrap().display(), "2.0000 ± 12.7062");
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
        assert!(notes.contains("not the paper's regime"), "{notes}");
        let tot = totals(&fixture_records(""));
        assert_eq!(tot.by_state["completed"], 5);
        assert_eq!(sweep_state(&tot.by_state), "completed with failures");
    }
}
