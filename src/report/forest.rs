//! The forest plots' data (pure): per table, every row's change from the baseline with its 95%
//! interval, the paper's change beside it, the ±flat band; `stats_svg` draws them.

use serde::Serialize;

use super::data::{Metric, PaperTable};
use super::effects::Effects;
use super::plots::row_name;
use super::score::ScoreGroup;
use crate::stats::Verdict;

/// Rows a forest plot draws; the rest are counted in [`Forest::omitted`].
pub const MAX_FOREST_ROWS: usize = 40;

/// One row of a forest plot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForestRow {
    pub name: String,
    /// Relative change (0.02 = +2%).
    pub change: f64,
    pub ci95: Option<[f64; 2]>,
    /// The paper's change, when its table has the row.
    pub paper: Option<f64>,
    pub verdict: Verdict,
    pub n: usize,
}

/// One forest plot: a table's rows against its baseline in one metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forest {
    pub title: String,
    pub metric: Metric,
    pub flat: f64,
    pub rows: Vec<ForestRow>,
    /// Rows left out beyond [`MAX_FOREST_ROWS`].
    pub omitted: usize,
}

/// A row's label in a forest plot: its axis values (`block_size=64`), with the model only
/// when the table varies it.
fn axis_name(t: &PaperTable, i: usize) -> String {
    let r = &t.rows[i];
    let mut parts: Vec<String> = Vec::new();
    if t.axis_keys.iter().any(|k| k == "model") {
        parts.push(r.model.clone());
    }
    for (k, v) in t.axis_columns().iter().zip(&r.axis) {
        parts.push(format!("{k}={v}"));
    }
    if parts.is_empty() {
        row_name(t, r)
    } else {
        parts.join(" ")
    }
}

/// One forest per score group (a table of the paper, on its headline metric, with the paper's
/// changes); without references, one for all rows on valid perplexity. Empty without effects.
pub fn forests(t: &PaperTable, e: &Effects, groups: &[ScoreGroup]) -> Vec<Forest> {
    if e.rows.is_empty() {
        return Vec::new();
    }
    let make = |title: String, metric: Metric, rows: Vec<ForestRow>| {
        let omitted = rows.len().saturating_sub(MAX_FOREST_ROWS);
        Forest {
            title,
            metric,
            flat: e.flat,
            rows: rows.into_iter().take(MAX_FOREST_ROWS).collect(),
            omitted,
        }
    };
    let row = |i: usize, metric: Metric, paper: Option<f64>| {
        e.get(i, metric).map(|x| ForestRow {
            name: axis_name(t, i),
            change: x.change,
            ci95: x.ci95,
            paper,
            verdict: x.verdict,
            n: x.n,
        })
    };
    if groups.is_empty() {
        let rows = e
            .rows
            .iter()
            .filter(|r| r.metric == Metric::ValidPpl)
            .filter_map(|r| row(r.row, r.metric, None))
            .collect();
        return vec![make(
            "Change from the baseline: Valid PPL".into(),
            Metric::ValidPpl,
            rows,
        )];
    }
    groups
        .iter()
        .map(|g| {
            let v = g.headline();
            let metric = g.metrics[v];
            let rows = g
                .rows
                .iter()
                .filter_map(|r| row(r.row?, metric, r.changes[v].paper))
                .collect();
            make(
                format!(
                    "{}: {} change from the baseline, ours and the paper's",
                    g.title(),
                    metric.header()
                ),
                metric,
                rows,
            )
        })
        .filter(|f| !f.rows.is_empty())
        .collect()
}
