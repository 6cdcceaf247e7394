//! The reproduction score: does our table move like the paper's? Per table with paper
//! references, each row's change relative to the baseline row, ours and the paper's, whether
//! they point the same way, and the Spearman rank correlation of our column with the paper's.
//!
//! Rules (the README's "Reading the reproduction score"):
//! - The baseline is the starred row (the sweep's baseline trial), else the first matched row.
//! - A change is relative: `(row - baseline) / baseline`; within ±[`FLAT`] it counts as flat.
//! - A row agrees when both changes are up, both down, or both flat.
//! - Spearman ranks the baseline and the rows with both numbers (ties get their average rank);
//!   it is `None` below 3 rows or when a column is constant.
//! - A multi-axis ablation (one axis varied at a time) is scored per axis, one of the paper's
//!   tables each: rows are grouped by the axis keys on which they differ from the baseline.

use serde::Serialize;

use super::compare::{values_equal, CompareRow, Comparison};
use super::data::{axis_header, Metric, PaperTable};

/// Relative changes smaller than this (0.1%) are flat: no direction.
pub const FLAT: f64 = 1e-3;

/// One row's change from the baseline for one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Change {
    /// Relative change of the paper's value (0.547 = +54.7%).
    pub paper: Option<f64>,
    /// Relative change of ours.
    pub ours: Option<f64>,
    /// Whether ours moves in the paper's direction (None without both numbers).
    pub agrees: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreRow {
    pub model: String,
    pub axis: Vec<String>,
    /// One per [`ScoreGroup::metrics`] entry.
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every row in the paper's direction (and a positive rank correlation, when defined).
    Reproduces,
    /// Most rows, but not all.
    Partly,
    /// Fewer than half the rows, or a rank correlation at or below zero.
    DoesNotReproduce,
    /// No row with both numbers.
    NoData,
}

/// The summary of one metric over a group's rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricScore {
    pub metric: Metric,
    /// Rows moving in the paper's direction, of `rows` with both changes.
    pub agree: usize,
    pub rows: usize,
    pub spearman: Option<f64>,
    pub verdict: Verdict,
}

impl MetricScore {
    /// "trend reproduces: 5/6 rows in the paper's direction, Spearman 0.94".
    pub fn summary(&self) -> String {
        let what = match self.verdict {
            Verdict::Reproduces => "trend reproduces",
            Verdict::Partly => "trend partly reproduces",
            Verdict::DoesNotReproduce => "trend does not reproduce",
            Verdict::NoData => return "no row with both numbers yet".into(),
        };
        let rho = match self.spearman {
            Some(r) => format!("Spearman {r:.2}"),
            None => "Spearman n/a (under 3 rows)".into(),
        };
        format!(
            "{what}: {}/{} rows in the paper's direction, {rho}",
            self.agree, self.rows
        )
    }
}

/// The score of one of the paper's tables: the rows varying `axes` around the baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreGroup {
    /// The axis keys these rows change from the baseline.
    pub axes: Vec<String>,
    /// The baseline row as shown (model, axis cells).
    pub baseline_model: String,
    pub baseline_axis: Vec<String>,
    /// The metrics the paper's references give, baseline included.
    pub metrics: Vec<Metric>,
    pub rows: Vec<ScoreRow>,
    /// One per metric.
    pub scores: Vec<MetricScore>,
}

impl ScoreGroup {
    /// The group's axes as the table's column headers (`Block Size`).
    pub fn title(&self) -> String {
        let names: Vec<String> = self.axes.iter().map(|k| axis_header(k)).collect();
        names.join(", ")
    }

    /// The metric to headline: valid perplexity when the paper gives it, else the first.
    pub fn headline(&self) -> usize {
        self.metrics
            .iter()
            .position(|m| *m == Metric::ValidPpl)
            .unwrap_or(0)
    }
}

/// Relative change of `x` from `base` (None when either is missing or `base` is 0).
fn relative(x: Option<f64>, base: Option<f64>) -> Option<f64> {
    let (x, b) = (x?, base?);
    (b != 0.0 && x.is_finite() && b.is_finite()).then(|| (x - b) / b)
}

/// -1, 0 (flat) or +1.
fn direction(change: f64) -> i8 {
    if change.abs() < FLAT {
        0
    } else if change > 0.0 {
        1
    } else {
        -1
    }
}

/// Ranks from 1, ties given the average of the ranks they span.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in &order[i..=j] {
            out[*k] = avg;
        }
        i = j + 1;
    }
    out
}

/// Spearman's rank correlation (Pearson's over average ranks); None under 3 pairs or when a
/// column is constant.
pub fn spearman(xs: &[f64], ys: &[f64]) -> Option<f64> {
    if xs.len() != ys.len() || xs.len() < 3 {
        return None;
    }
    let (rx, ry) = (ranks(xs), ranks(ys));
    let mean = (xs.len() as f64 + 1.0) / 2.0;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mean) * (b - mean);
        sxx += (a - mean).powi(2);
        syy += (b - mean).powi(2);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

fn verdict(agree: usize, rows: usize, rho: Option<f64>) -> Verdict {
    if rows == 0 {
        Verdict::NoData
    } else if agree * 2 < rows || rho.is_some_and(|r| r <= 0.0) {
        Verdict::DoesNotReproduce
    } else if agree == rows {
        Verdict::Reproduces
    } else {
        Verdict::Partly
    }
}

/// The score of one metric (column `c` of the comparison) over `rows` around `base`.
fn metric_score(metric: Metric, c: usize, base: &CompareRow, rows: &[&CompareRow]) -> MetricScore {
    let cell = |r: &CompareRow| r.cells[c];
    let (mut paper, mut ours) = (Vec::new(), Vec::new());
    let mut agree = 0;
    let mut n = 0;
    for r in std::iter::once(&base).chain(rows) {
        if let (Some(p), Some(o)) = (cell(r).paper, cell(r).ours) {
            paper.push(p);
            ours.push(o);
        }
    }
    for r in rows {
        let p = relative(cell(r).paper, cell(base).paper);
        let o = relative(cell(r).ours, cell(base).ours);
        if let (Some(p), Some(o)) = (p, o) {
            n += 1;
            agree += usize::from(direction(p) == direction(o));
        }
    }
    let rho = spearman(&ours, &paper);
    MetricScore {
        metric,
        agree,
        rows: n,
        spearman: rho,
        verdict: verdict(agree, n, rho),
    }
}

fn score_row(r: &CompareRow, base: &CompareRow, cols: &[usize]) -> ScoreRow {
    let changes = cols
        .iter()
        .map(|&c| {
            let paper = relative(r.cells[c].paper, base.cells[c].paper);
            let ours = relative(r.cells[c].ours, base.cells[c].ours);
            Change {
                paper,
                ours,
                agrees: paper.zip(ours).map(|(p, o)| direction(p) == direction(o)),
            }
        })
        .collect();
    ScoreRow {
        model: r.model.clone(),
        axis: r.axis.clone(),
        changes,
    }
}

/// The axis keys on which table row `i` differs from table row `b`.
fn differing_axes(t: &PaperTable, i: usize, b: usize) -> Vec<String> {
    let (row, base) = (&t.rows[i].label, &t.rows[b].label);
    t.axis_keys
        .iter()
        .filter(|k| match (row.get(k.as_str()), base.get(k.as_str())) {
            (Some(x), Some(y)) => !values_equal(x, y),
            (x, y) => x.is_some() != y.is_some(),
        })
        .cloned()
        .collect()
}

/// One group per set of axes varied from the baseline, in table order; empty when no reference
/// row matched a row of ours.
pub fn score(t: &PaperTable, c: &Comparison) -> Vec<ScoreGroup> {
    let matched: Vec<(usize, &CompareRow)> = c
        .rows
        .iter()
        .filter_map(|r| r.row.map(|i| (i, r)))
        .collect();
    let Some(&(b, base)) = matched
        .iter()
        .find(|(i, _)| t.rows[*i].baseline)
        .or(matched.first())
    else {
        return Vec::new();
    };
    let mut groups: Vec<(Vec<String>, Vec<&CompareRow>)> = Vec::new();
    for &(i, r) in matched.iter().filter(|(i, _)| *i != b) {
        let axes = differing_axes(t, i, b);
        match groups.iter_mut().find(|(a, _)| *a == axes) {
            Some((_, rows)) => rows.push(r),
            None => groups.push((axes, vec![r])),
        }
    }
    // The metrics the paper gives for the baseline and at least one row.
    let cols: Vec<usize> = (0..c.metrics.len())
        .filter(|&k| base.cells[k].paper.is_some())
        .collect();
    groups
        .into_iter()
        .map(|(axes, rows)| {
            let cols: Vec<usize> = cols
                .iter()
                .copied()
                .filter(|&k| rows.iter().any(|r| r.cells[k].paper.is_some()))
                .collect();
            ScoreGroup {
                axes,
                baseline_model: base.model.clone(),
                baseline_axis: base.axis.clone(),
                metrics: cols.iter().map(|&k| c.metrics[k]).collect(),
                rows: rows.iter().map(|r| score_row(r, base, &cols)).collect(),
                scores: cols
                    .iter()
                    .map(|&k| metric_score(c.metrics[k], k, base, &rows))
                    .collect(),
            }
        })
        .collect()
}

/// The score of a sweep's table against its spec's `[[reference]]` rows (empty without any).
pub fn reproduction(t: &PaperTable, spec: &serde_json::Value) -> Vec<ScoreGroup> {
    super::compare::comparison(t, spec)
        .map(|c| score(t, &c))
        .unwrap_or_default()
}

/// `+54.7%`, or `—`.
pub fn percent(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map(|v| format!("{:+.1}%", v * 100.0))
        .unwrap_or_else(|| "—".into())
}

/// `same`, `differs` or `—`: whether a row moves in the paper's direction.
pub fn agreement(a: Option<bool>) -> &'static str {
    match a {
        Some(true) => "same",
        Some(false) => "differs",
        None => "—",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::data::paper_table;
    use crate::report::data::tests::fixture_records;
    use serde_json::json;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn spearman_by_hand() {
        assert_eq!(
            spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]),
            Some(1.0)
        );
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
        // Ties: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4): 4.5 / sqrt(4.5 * 5).
        let rho = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]);
        assert!(close(rho, 4.5 / (4.5f64 * 5.0).sqrt()), "{rho:?}");
        assert_eq!(ranks(&[5.0, 1.0, 5.0, 5.0]), vec![3.0, 1.0, 3.0, 3.0]);
        assert_eq!(spearman(&[1.0, 2.0], &[1.0, 2.0]), None, "under 3 rows");
        assert_eq!(
            spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]),
            None,
            "constant"
        );
    }

    #[test]
    fn table4_fixture_reproduces_with_the_failed_row_left_out() {
        let r = fixture_records("");
        let t = paper_table(&r);
        let groups = reproduction(&t, &r.sweep.spec);
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!(g.axes, ["block_size"]);
        assert_eq!(
            (g.baseline_model.as_str(), g.baseline_axis.clone()),
            ("gpt2-tiny*", vec!["512".to_string()])
        );
        assert_eq!(
            g.metrics,
            Metric::ALL
                .iter()
                .copied()
                .filter(|m| t.metrics.contains(m))
                .collect::<Vec<_>>()
        );
        let v = g.headline();
        assert_eq!(g.metrics[v], Metric::ValidPpl);
        // Block 32: the paper's +54.7% (33.8991 / 21.9143 - 1); ours failed.
        let b32 = &g.rows[3];
        assert_eq!(b32.axis, ["32"]);
        assert!(close(b32.changes[v].paper, 33.8991 / 21.9143 - 1.0));
        assert_eq!(percent(b32.changes[v].paper), "+54.7%");
        assert_eq!((b32.changes[v].ours, b32.changes[v].agrees), (None, None));
        // Block 256: ours exp(4.21) over the two seeds' mean of exp(4.10), exp(4.14).
        let base = (4.10f64.exp() + 4.14f64.exp()) / 2.0;
        assert!(close(g.rows[0].changes[v].ours, 4.21f64.exp() / base - 1.0));
        assert_eq!(percent(g.rows[0].changes[v].ours), "+9.4%");
        let s = &g.scores[v];
        assert_eq!((s.agree, s.rows, s.verdict), (3, 3, Verdict::Reproduces));
        assert!(close(s.spearman, 1.0));
        assert_eq!(
            s.summary(),
            "trend reproduces: 3/3 rows in the paper's direction, Spearman 1.00"
        );
        // The paper's train loss at block 256 falls (3.0016 < 3.0095) while ours rises.
        let tl = g
            .metrics
            .iter()
            .position(|m| *m == Metric::TrainLoss)
            .unwrap();
        assert_eq!(g.rows[0].changes[tl].agrees, Some(false));
        assert_eq!(
            (g.scores[tl].agree, g.scores[tl].verdict),
            (2, Verdict::Partly)
        );
        insta::assert_json_snapshot!("block_size_score", groups);
    }

    #[test]
    fn flat_changes_and_disagreement() {
        let r = fixture_records("");
        let t = paper_table(&r);
        // Paper: 256 flat (+0.05%), 128 down 5%, 64 up 25%; ours rises throughout.
        let spec = json!({"references": [
            {"block_size": 512, "valid_ppl": 20.0},
            {"block_size": 256, "valid_ppl": 20.01},
            {"block_size": 128, "valid_ppl": 19.0},
            {"block_size": 64, "valid_ppl": 25.0},
        ]});
        let g = &reproduction(&t, &spec)[0];
        assert_eq!(g.metrics, [Metric::ValidPpl]);
        let agrees: Vec<Option<bool>> = g.rows.iter().map(|r| r.changes[0].agrees).collect();
        assert_eq!(agrees, [Some(false), Some(false), Some(true)]);
        let s = &g.scores[0];
        // Paper ranks (2, 3, 1, 4) against ours (1, 2, 3, 4): 2 / 5.
        assert!(close(s.spearman, 0.4), "{:?}", s.spearman);
        assert_eq!(
            (s.agree, s.rows, s.verdict),
            (1, 3, Verdict::DoesNotReproduce)
        );
        assert_eq!(direction(0.000_999), 0);
        assert_eq!(direction(-0.001), -1);
        // Both flat agree.
        assert_eq!(direction(FLAT / 2.0), direction(-FLAT / 2.0));
        // No references, or none matched: no score.
        assert!(reproduction(&t, &json!({})).is_empty());
        let none = json!({"references": [{"block_size": 1024, "valid_ppl": 1.0}]});
        assert!(reproduction(&t, &none).is_empty());
    }

    #[test]
    fn a_multi_axis_ablation_is_scored_per_axis() {
        let mut r = fixture_records("");
        r.trials.truncate(5);
        r.trials[0].label = json!({"block_size": 512, "grad_accum": 1});
        r.trials[1].label = json!({"grad_accum": 2});
        r.trials[1].config["grad_accum"] = json!(2);
        r.trials[1].is_baseline = false;
        r.trials[1].results.valid_ppl = Some(70.0);
        r.sweep.spec = json!({"references": [
            {"block_size": 512, "grad_accum": 1, "valid_ppl": 20.0},
            {"grad_accum": 2, "valid_ppl": 22.0},
            {"block_size": 256, "valid_ppl": 21.0},
            {"block_size": 128, "valid_ppl": 23.0},
            {"block_size": 64, "valid_ppl": 30.0},
        ]});
        let t = paper_table(&r);
        let groups = reproduction(&t, &r.sweep.spec);
        let axes: Vec<&Vec<String>> = groups.iter().map(|g| &g.axes).collect();
        assert_eq!(
            axes,
            [
                &vec!["grad_accum".to_string()],
                &vec!["block_size".to_string()]
            ]
        );
        assert_eq!(groups[0].rows.len(), 1);
        assert_eq!(groups[0].scores[0].spearman, None, "two points");
        assert_eq!(groups[0].scores[0].verdict, Verdict::Reproduces);
        assert_eq!(groups[1].rows.len(), 3);
        assert!(close(groups[1].scores[0].spearman, 1.0));
    }
}
