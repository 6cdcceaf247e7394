//! Each row's change from the baseline row, beyond seed noise: per row and metric the paired
//! relative change over the seeds both have, its 95% interval, p-values, probability of
//! improvement and verdict ([`crate::stats::compare`]), and the expected validation performance
//! of a sweep's configurations (pure; `html`, `sweep results` and the dashboard show them).

use serde::Serialize;
use serde_json::{Map, Value};

use super::data::{Metric, PaperTable, TableRow};
use crate::stats::{self, Effect, Expected};
use crate::store::{SweepRecords, SweepTrial, TrialState};
use std::collections::HashMap;

/// The flat threshold a sweep was recorded with (`[sweep] flat`; 0.001 before it existed).
pub fn flat_of(spec: &Value) -> f64 {
    spec.get("flat")
        .and_then(Value::as_f64)
        .filter(|f| *f > 0.0 && *f < 0.5)
        .unwrap_or(stats::FLAT)
}

/// One row's effect in one metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowEffect {
    /// The row's index in the paper table.
    #[serde(skip)]
    pub row: usize,
    /// The row's axis values (without `seed`).
    pub label: Map<String, Value>,
    pub metric: Metric,
    #[serde(flatten)]
    pub effect: Effect,
}

/// Every row's effect against the baseline row, in table then metric order.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Effects {
    /// The baseline row's index in the table (`None`: no baseline row, no effects).
    #[serde(skip)]
    pub baseline: Option<usize>,
    pub flat: f64,
    pub rows: Vec<RowEffect>,
}

impl Effects {
    /// The effect of table row `row` in `metric`.
    pub fn get(&self, row: usize, metric: Metric) -> Option<&Effect> {
        self.rows
            .iter()
            .find(|e| e.row == row && e.metric == metric)
            .map(|e| &e.effect)
    }
}

/// A row's completed values of `metric` by the seed each trial ran with (`trial_ids` lists each
/// trial once, in the sweep's order); `trials` indexes the sweep's trials by id (a scan per row
/// was quadratic: 1,000 rows x 5 seeds spent a tenth of the report there).
fn seed_values(
    trials: &HashMap<i64, &SweepTrial>,
    row: &TableRow,
    metric: Metric,
) -> Vec<(i64, f64)> {
    row.trial_ids
        .iter()
        .filter_map(|id| trials.get(id))
        .filter(|t| t.state == TrialState::Completed)
        .filter_map(|t| Some((t.seed()?, metric.of(&t.results).filter(|v| v.is_finite())?)))
        .collect()
}

/// Every non-baseline row against the baseline row (the starred one), in each of the table's
/// metrics (lower is better in all of them: losses and perplexities).
pub fn effects(records: &SweepRecords, table: &PaperTable) -> Effects {
    let flat = flat_of(&records.sweep.spec);
    let Some(b) = table.rows.iter().position(|r| r.baseline) else {
        return Effects {
            flat,
            ..Default::default()
        };
    };
    let trials: HashMap<i64, &SweepTrial> = records.trials.iter().map(|t| (t.id, t)).collect();
    let mut rows = Vec::new();
    for (i, row) in table.rows.iter().enumerate().filter(|(i, _)| *i != b) {
        for &metric in &table.metrics {
            let ours = seed_values(&trials, row, metric);
            let base = seed_values(&trials, &table.rows[b], metric);
            if let Some(effect) = stats::compare(&ours, &base, flat, true) {
                rows.push(RowEffect {
                    row: i,
                    label: row.label.clone(),
                    metric,
                    effect,
                });
            }
        }
    }
    Effects {
        baseline: Some(b),
        flat,
        rows,
    }
}

/// The expected best value when k of a sweep's configurations are tried, k = 1..N (Dodge et al.).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evp {
    pub metric: String,
    /// True when lower is better (the expected best is the expected minimum).
    pub lower_is_better: bool,
    /// N: the configurations with a value.
    pub configurations: usize,
    pub points: Vec<Expected>,
}

/// The fewest configurations the curve is drawn for.
pub const EVP_MIN: usize = 3;

/// The curve of some configurations' values; `None` under [`EVP_MIN`] of them.
pub fn evp(metric: &str, values: &[f64], lower_is_better: bool) -> Option<Evp> {
    let values: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    (values.len() >= EVP_MIN).then(|| Evp {
        metric: metric.to_string(),
        lower_is_better,
        configurations: values.len(),
        points: stats::expected_best(&values, lower_is_better),
    })
}

/// The curve of a grid or ablation: each row is a configuration, valued at its mean valid
/// perplexity over its seeds.
pub fn table_evp(table: &PaperTable) -> Option<Evp> {
    let c = table.metrics.iter().position(|m| *m == Metric::ValidPpl)?;
    let means: Vec<f64> = table
        .rows
        .iter()
        .filter_map(|r| r.cells[c].map(|s| s.mean))
        .collect();
    evp(Metric::ValidPpl.key(), &means, true)
}

/// The effects table of one metric as display text: headers and, per row, its name and cells
/// (the table's left cells, n, change, interval, p-values, P(better), verdict). `sweep results`,
/// the report and the live dashboard show these same cells.
pub fn effect_table(
    t: &PaperTable,
    e: &Effects,
    metric: Metric,
) -> (Vec<String>, Vec<(String, Vec<String>)>) {
    let mut headers = vec!["Model".to_string()];
    headers.extend(t.axis_headers.iter().cloned());
    headers.extend(
        [
            "n",
            "Change",
            "95% interval",
            "p (t)",
            "p (sign flip)",
            "P(better)",
            "Verdict",
        ]
        .map(String::from),
    );
    let pct = |v: f64| format!("{:+.2}%", v * 100.0);
    let p = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.3}"));
    let rows = e
        .rows
        .iter()
        .filter(|r| r.metric == metric)
        .map(|r| {
            let row = &t.rows[r.row];
            let x = &r.effect;
            let mut cells = vec![row.model.clone()];
            cells.extend(row.axis.iter().cloned());
            cells.push(match x.method {
                stats::Method::Welch => format!("{} (Welch)", x.n),
                _ => x.n.to_string(),
            });
            cells.push(pct(x.change));
            cells.push(x.ci95.map_or("—".to_string(), |[lo, hi]| {
                format!("[{}, {}]", pct(lo), pct(hi))
            }));
            cells.push(p(x.p_value));
            cells.push(p(x.p_permutation));
            cells.push(p(x.prob_improvement));
            cells.push(x.verdict.as_str().into());
            (super::plots::row_name(t, row), cells)
        })
        .collect();
    (headers, rows)
}

/// The effects table's caption: against which row, how, at which threshold.
pub fn effect_caption(t: &PaperTable, e: &Effects, metric: Metric) -> String {
    let base = e
        .baseline
        .map(|b| super::plots::row_name(t, &t.rows[b]))
        .unwrap_or_default();
    format!(
        "{} change from the baseline row {base}, paired by seed (Welch's interval where the \
         baseline lacks one of the row's seeds); flat within ±{}%. Verdict: up or down when the \
         whole 95% interval lies beyond ±{}%, flat when it lies within, else inconclusive. \
         P(better): the probability that a seed of the row beats a seed of the baseline \
         (rliable's probability of improvement).",
        metric.header(),
        e.flat * 100.0,
        e.flat * 100.0
    )
}

/// Whether a table's effects are worth a table of their own: some row has seeds.
pub fn shows_effects(t: &PaperTable, e: &Effects) -> bool {
    t.replicated && !e.rows.is_empty()
}
