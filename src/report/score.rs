//! The reproduction score: does our table move like the paper's, beyond seed noise? Per table
//! with paper references, each row's change relative to the baseline row, ours (with its 95%
//! interval over seeds and its verdict, [`super::effects`]) and the paper's, what that makes of
//! the paper's claim, and the Spearman rank correlation of our column with the paper's.
//!
//! Rules (the README's "Reading the reproduction score"):
//! - The baseline is the starred row (the sweep's baseline trial), else the first matched row.
//! - A change is relative: `(row - baseline) / baseline`, ours paired by seed; within ±`flat`
//!   (`[sweep] flat`, default 0.1%) it counts as flat.
//! - A row's outcome: `same` when our verdict is decided (up, down or flat) and matches the
//!   paper's direction, `opposite` when decided the other way, `no effect` when ours is decided
//!   flat where the paper moves, `undecided` while our interval does not decide (one seed never
//!   does). An undecided row says how many seeds would decide it, from the observed spread of its
//!   per-seed changes: at our change and at the paper's.
//! - The table's verdict counts decided rows only: `trend reproduces` when all of them are
//!   `same`, `partly` when at least half are, `does not reproduce` below half, `undecided` when
//!   no row is decided. Spearman (ties get their average rank; none under 3 rows or for a
//!   constant column) and the point estimates' directions are shown beside it, not counted.
//! - A multi-axis ablation (one axis varied at a time) is scored per axis, one of the paper's
//!   tables each: rows are grouped by the axis keys on which they differ from the baseline.

use serde::Serialize;

use super::compare::{values_equal, CompareRow, Comparison};
use super::data::{axis_header, Metric, PaperTable};
use super::effects::Effects;
use crate::stats::{self, Effect, Verdict as Decision};

/// Seeds beyond this are reported as "more than".
pub const SEEDS_CAP: usize = 1000;

/// What a row's change makes of the paper's claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Decided, the paper's way (flat where the paper is flat).
    Same,
    /// Decided, the other way.
    Opposite,
    /// Decided flat where the paper moves: no effect at this scale.
    NoEffect,
    /// Our interval does not decide yet.
    Undecided,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Same => "same",
            Outcome::Opposite => "opposite",
            Outcome::NoEffect => "no effect",
            Outcome::Undecided => "undecided",
        }
    }
}

/// Seeds that would decide an undecided row (its 95% half-width below the distance of the
/// change from the flat threshold), from the observed spread of its per-seed changes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SeedsNeeded {
    /// If the true change is ours (`None`: more than [`SEEDS_CAP`], or no spread yet).
    pub ours: Option<usize>,
    /// If the true change is the paper's.
    pub paper: Option<usize>,
}

/// One row's change from the baseline for one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Change {
    /// Relative change of the paper's value (0.547 = +54.7%).
    pub paper: Option<f64>,
    /// Relative change of ours: the mean of the per-seed changes (paired by seed).
    pub ours: Option<f64>,
    /// Whether our point estimate moves in the paper's direction (None without both numbers).
    pub agrees: Option<bool>,
    /// Our 95% interval of the change (None with one seed).
    pub ci95: Option<[f64; 2]>,
    /// Seeds (pairs) behind our change.
    pub n: usize,
    /// Our verdict: up, down, flat or inconclusive.
    pub verdict: Option<Decision>,
    /// What that makes of the paper's claim (None without both numbers).
    pub outcome: Option<Outcome>,
    /// For an undecided row: the seeds that would decide it.
    pub seeds_needed: Option<SeedsNeeded>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreRow {
    pub model: String,
    pub axis: Vec<String>,
    /// One per [`ScoreGroup::metrics`] entry.
    pub changes: Vec<Change>,
    /// The row's index in the paper table.
    #[serde(skip)]
    pub row: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every decided row in the paper's direction.
    Reproduces,
    /// At least half the decided rows, but not all.
    Partly,
    /// Fewer than half the decided rows.
    DoesNotReproduce,
    /// Rows with both numbers, none decided yet.
    Undecided,
    /// No row with both numbers.
    NoData,
}

/// The summary of one metric over a group's rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricScore {
    pub metric: Metric,
    /// Decided rows in the paper's direction, of `rows` decided rows.
    pub agree: usize,
    pub rows: usize,
    /// Decided rows with no effect here where the paper moves (counted in `rows`).
    pub no_effect: usize,
    /// Rows with both numbers that are not decided.
    pub undecided: usize,
    /// Point estimates in the paper's direction, of all rows with both numbers.
    pub point_agree: usize,
    pub point_rows: usize,
    /// The most seeds behind any row's change.
    pub max_n: usize,
    pub spearman: Option<f64>,
    pub verdict: Verdict,
}

impl MetricScore {
    /// "trend reproduces: 5/5 decided rows in the paper's direction (1 undecided), Spearman 0.94".
    pub fn summary(&self) -> String {
        let rho = match self.spearman {
            Some(r) => format!("Spearman {r:.2}"),
            None => "Spearman n/a (under 3 rows)".into(),
        };
        let points = format!(
            "point estimates: {}/{} in the paper's direction",
            self.point_agree, self.point_rows
        );
        let what = match self.verdict {
            Verdict::Reproduces => "trend reproduces",
            Verdict::Partly => "trend partly reproduces",
            Verdict::DoesNotReproduce => "trend does not reproduce",
            Verdict::NoData => return "no row with both numbers yet".into(),
            Verdict::Undecided => {
                let why = if self.max_n <= 1 {
                    " at n = 1 (one seed gives no interval; run seeds to decide)".to_string()
                } else {
                    format!(" at n <= {}", self.max_n)
                };
                return format!(
                    "undecided: none of {} rows is decided{why}; {points}, {rho}",
                    self.point_rows
                );
            }
        };
        let mut extra = Vec::new();
        if self.no_effect > 0 {
            extra.push(format!("{} with no effect here", self.no_effect));
        }
        if self.undecided > 0 {
            extra.push(format!("{} undecided", self.undecided));
        }
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(" ({})", extra.join(", "))
        };
        format!(
            "{what}: {}/{} decided rows in the paper's direction{extra}, {rho}",
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

/// -1, 0 (within ±`flat`) or +1.
fn direction(change: f64, flat: f64) -> i8 {
    if change.abs() < flat {
        0
    } else if change > 0.0 {
        1
    } else {
        -1
    }
}

/// The direction a verdict decided (`None`: inconclusive).
fn decided_direction(v: Decision) -> Option<i8> {
    match v {
        Decision::Up => Some(1),
        Decision::Down => Some(-1),
        Decision::Flat => Some(0),
        Decision::Inconclusive => None,
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

fn verdict(agree: usize, rows: usize, point_rows: usize) -> Verdict {
    if point_rows == 0 {
        Verdict::NoData
    } else if rows == 0 {
        Verdict::Undecided
    } else if agree * 2 < rows {
        Verdict::DoesNotReproduce
    } else if agree == rows {
        Verdict::Reproduces
    } else {
        Verdict::Partly
    }
}

/// Seeds for a 95% half-width below the distance of `change` from the flat threshold.
fn seeds_for(sd: Option<f64>, change: Option<f64>, flat: f64) -> Option<usize> {
    let margin = (change?.abs() - flat).abs();
    stats::seeds_needed(sd?, margin, SEEDS_CAP)
}

/// A row's change in one metric: the paper's, ours (the effect), and what ours decides.
fn change(paper: Option<f64>, effect: Option<&Effect>, flat: f64) -> Change {
    let ours = effect.map(|e| e.change).filter(|c| c.is_finite());
    let verdict = effect.map(|e| e.verdict);
    let outcome = paper.zip(verdict).map(|(p, v)| match decided_direction(v) {
        None => Outcome::Undecided,
        Some(d) if d == direction(p, flat) => Outcome::Same,
        Some(0) => Outcome::NoEffect,
        Some(_) => Outcome::Opposite,
    });
    let seeds_needed = (outcome == Some(Outcome::Undecided)).then(|| {
        let sd = effect.and_then(|e| e.sd);
        SeedsNeeded {
            ours: seeds_for(sd, ours, flat),
            paper: seeds_for(sd, paper, flat),
        }
    });
    Change {
        paper,
        ours,
        agrees: paper
            .zip(ours)
            .map(|(p, o)| direction(p, flat) == direction(o, flat)),
        ci95: effect.and_then(|e| e.ci95),
        n: effect.map_or(0, |e| e.n),
        verdict,
        outcome,
        seeds_needed,
    }
}

/// The score of one metric (column `c` of the comparison) over `rows` around `base`.
fn metric_score(
    metric: Metric,
    c: usize,
    base: &CompareRow,
    rows: &[&CompareRow],
    changes: &[Change],
) -> MetricScore {
    let cell = |r: &CompareRow| r.cells[c];
    let (mut paper, mut ours) = (Vec::new(), Vec::new());
    for r in std::iter::once(&base).chain(rows) {
        if let (Some(p), Some(o)) = (cell(r).paper, cell(r).ours) {
            paper.push(p);
            ours.push(o);
        }
    }
    let count = |o: Outcome| changes.iter().filter(|c| c.outcome == Some(o)).count();
    let (same, opposite, no_effect) = (
        count(Outcome::Same),
        count(Outcome::Opposite),
        count(Outcome::NoEffect),
    );
    let decided = same + opposite + no_effect;
    let point_rows = changes.iter().filter(|c| c.agrees.is_some()).count();
    MetricScore {
        metric,
        agree: same,
        rows: decided,
        no_effect,
        undecided: count(Outcome::Undecided),
        point_agree: changes.iter().filter(|c| c.agrees == Some(true)).count(),
        point_rows,
        max_n: changes.iter().map(|c| c.n).max().unwrap_or(0),
        spearman: spearman(&ours, &paper),
        verdict: verdict(same, decided, point_rows),
    }
}

/// A row's changes in the group's metrics (`cols` of the comparison).
fn score_row(
    r: &CompareRow,
    base: &CompareRow,
    cols: &[usize],
    metrics: &[Metric],
    effects: &Effects,
) -> ScoreRow {
    let changes = cols
        .iter()
        .map(|&c| {
            let paper = relative(r.cells[c].paper, base.cells[c].paper);
            let effect = r.row.and_then(|i| effects.get(i, metrics[c]));
            change(paper, effect, effects.flat)
        })
        .collect();
    ScoreRow {
        model: r.model.clone(),
        axis: r.axis.clone(),
        changes,
        row: r.row,
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
/// row matched a row of ours. Our changes are the rows' `effects` against the baseline row.
pub fn score(t: &PaperTable, c: &Comparison, effects: &Effects) -> Vec<ScoreGroup> {
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
            let score_rows: Vec<ScoreRow> = rows
                .iter()
                .map(|r| score_row(r, base, &cols, &c.metrics, effects))
                .collect();
            let scores = cols
                .iter()
                .enumerate()
                .map(|(j, &k)| {
                    let changes: Vec<Change> = score_rows.iter().map(|r| r.changes[j]).collect();
                    metric_score(c.metrics[k], k, base, &rows, &changes)
                })
                .collect();
            ScoreGroup {
                axes,
                baseline_model: base.model.clone(),
                baseline_axis: base.axis.clone(),
                metrics: cols.iter().map(|&k| c.metrics[k]).collect(),
                rows: score_rows,
                scores,
            }
        })
        .collect()
}

/// The score of a sweep's table against its spec's `[[reference]]` rows (empty without any).
pub fn reproduction(
    t: &PaperTable,
    spec: &serde_json::Value,
    effects: &Effects,
) -> Vec<ScoreGroup> {
    super::compare::comparison(t, spec)
        .map(|c| score(t, &c, effects))
        .unwrap_or_default()
}

/// `+54.7%`, or `—`.
pub fn percent(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map(|v| format!("{:+.1}%", v * 100.0))
        .unwrap_or_else(|| "—".into())
}

/// `same`, `opposite`, `no effect`, `undecided (same)` (the point estimate's direction in
/// brackets) or `—`: what a row's change makes of the paper's.
pub fn agreement(c: &Change) -> String {
    match (c.outcome, c.agrees) {
        (Some(Outcome::Undecided), Some(a)) => {
            format!("undecided ({})", if a { "same" } else { "differs" })
        }
        (Some(o), _) => o.as_str().to_string(),
        (None, _) => "—".into(),
    }
}

/// `+1.2% ± 0.4%` (the 95% half-width), or the change alone without an interval.
pub fn change_text(c: &Change) -> String {
    match (c.ours, c.ci95) {
        (Some(o), Some([lo, hi])) => format!("{} ± {:.1}%", percent(Some(o)), (hi - lo) * 50.0),
        (o, _) => percent(o),
    }
}

/// `7 (paper's change: 3)` seeds to decide an undecided row (`>1000` beyond [`SEEDS_CAP`]);
/// empty for decided rows.
pub fn seeds_text(c: &Change) -> String {
    let Some(s) = c.seeds_needed else {
        return String::new();
    };
    if c.n < 2 {
        return "2+ (one seed shows no spread yet)".into();
    }
    let n = |v: Option<usize>| v.map_or(format!(">{SEEDS_CAP}"), |n| n.to_string());
    format!("{} (paper's change: {})", n(s.ours), n(s.paper))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::data::paper_table;
    use crate::report::data::tests::{fixture_records, records_of};
    use crate::report::effects::effects;
    use crate::store::synth::verdicts_fixture;
    use serde_json::json;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    /// The score of records against `spec`'s references.
    fn score_of(r: &crate::store::SweepRecords, spec: &serde_json::Value) -> Vec<ScoreGroup> {
        let t = paper_table(r);
        reproduction(&t, spec, &effects(r, &t))
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
    fn one_seed_per_row_is_undecided_with_the_point_estimates_beside() {
        let r = fixture_records("");
        let t = paper_table(&r);
        let groups = score_of(&r, &r.sweep.spec);
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
        let c = b32.changes[v];
        assert_eq!((c.ours, c.agrees, c.outcome), (None, None, None));
        // Block 256 ran seed 1 only: paired with the baseline's seed 1, exp(4.21) / exp(4.10).
        let c = g.rows[0].changes[v];
        assert!(close(c.ours, 0.11f64.exp() - 1.0));
        assert_eq!(
            (c.n, c.ci95, c.verdict),
            (1, None, Some(Decision::Inconclusive))
        );
        assert_eq!(c.outcome, Some(Outcome::Undecided));
        assert_eq!(agreement(&c), "undecided (same)");
        assert_eq!(seeds_text(&c), "2+ (one seed shows no spread yet)");
        let s = &g.scores[v];
        assert_eq!((s.agree, s.rows, s.undecided), (0, 0, 3));
        assert_eq!(
            (s.point_agree, s.point_rows, s.verdict),
            (3, 3, Verdict::Undecided)
        );
        assert!(close(s.spearman, 1.0));
        assert_eq!(
            s.summary(),
            "undecided: none of 3 rows is decided at n = 1 (one seed gives no interval; run \
             seeds to decide); point estimates: 3/3 in the paper's direction, Spearman 1.00"
        );
        // The paper's train loss at block 256 falls (3.0016 < 3.0095) while ours rises.
        let tl = g
            .metrics
            .iter()
            .position(|m| *m == Metric::TrainLoss)
            .unwrap();
        assert_eq!(g.rows[0].changes[tl].agrees, Some(false));
        assert_eq!(g.scores[tl].point_agree, 2);
        insta::assert_json_snapshot!("block_size_score", groups);
    }

    #[test]
    fn replicates_decide_rows_and_the_table_counts_decided_rows_only() {
        let (sweep, trials) = verdicts_fixture();
        let r = records_of(sweep, trials);
        let groups = score_of(&r, &r.sweep.spec);
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        let v = g.headline();
        assert_eq!(g.metrics[v], Metric::ValidPpl);
        let rows: Vec<(String, Option<Decision>, Option<Outcome>)> = g
            .rows
            .iter()
            .map(|r| {
                (
                    r.axis[0].clone(),
                    r.changes[v].verdict,
                    r.changes[v].outcome,
                )
            })
            .collect();
        use Decision::*;
        assert_eq!(
            rows,
            [
                ("64".to_string(), Some(Up), Some(Outcome::Same)),
                ("256".to_string(), Some(Down), Some(Outcome::Opposite)),
                ("96".to_string(), Some(Flat), Some(Outcome::NoEffect)),
                (
                    "32".to_string(),
                    Some(Inconclusive),
                    Some(Outcome::Undecided)
                ),
            ]
        );
        let up = g.rows[0].changes[v];
        assert_eq!(up.n, 4);
        assert!(close(up.ours, (0.050 + 0.051 + 0.049 + 0.052) / 4.0));
        assert!(change_text(&up).starts_with("+5.") && change_text(&up).contains(" ± 0."));
        // The undecided row's per-seed changes (+2%, -1.5%, +1%, -2%) have sd ~1.9%: deciding
        // its -0.1% takes far more seeds than deciding the paper's +25% would.
        let und = g.rows[3].changes[v];
        let need = und.seeds_needed.unwrap();
        assert_eq!(need.ours, None, "{need:?}");
        assert!(need.paper.is_some_and(|n| (2..=4).contains(&n)), "{need:?}");
        assert_eq!(
            seeds_text(&und),
            format!(">1000 (paper's change: {})", need.paper.unwrap())
        );
        let s = &g.scores[v];
        assert_eq!(
            (s.agree, s.rows, s.no_effect, s.undecided),
            (1, 3, 1, 1),
            "decided: same, opposite, no effect"
        );
        assert_eq!(s.verdict, Verdict::DoesNotReproduce);
        assert_eq!(
            s.summary(),
            "trend does not reproduce: 1/3 decided rows in the paper's direction (1 with no \
             effect here, 1 undecided), Spearman -0.10"
        );
        insta::assert_json_snapshot!("verdicts_score", groups);
    }

    #[test]
    fn flat_changes_and_disagreement() {
        let r = fixture_records("");
        // Paper: 256 flat (+0.05%), 128 down 5%, 64 up 25%; ours rises throughout.
        let spec = json!({"references": [
            {"block_size": 512, "valid_ppl": 20.0},
            {"block_size": 256, "valid_ppl": 20.01},
            {"block_size": 128, "valid_ppl": 19.0},
            {"block_size": 64, "valid_ppl": 25.0},
        ]});
        let g = &score_of(&r, &spec)[0];
        assert_eq!(g.metrics, [Metric::ValidPpl]);
        let agrees: Vec<Option<bool>> = g.rows.iter().map(|r| r.changes[0].agrees).collect();
        assert_eq!(agrees, [Some(false), Some(false), Some(true)]);
        let s = &g.scores[0];
        // Paper ranks (2, 3, 1, 4) against ours (1, 2, 3, 4): 2 / 5.
        assert!(close(s.spearman, 0.4), "{:?}", s.spearman);
        assert_eq!(
            (s.point_agree, s.point_rows, s.verdict),
            (1, 3, Verdict::Undecided)
        );
        assert_eq!(direction(0.000_999, 1e-3), 0);
        assert_eq!(direction(-0.001, 1e-3), -1);
        // Both flat agree.
        assert_eq!(direction(5e-4, 1e-3), direction(-5e-4, 1e-3));
        // A sweep's own flat threshold.
        assert_eq!(direction(0.005, 0.01), 0);
        // No references, or none matched: no score.
        assert!(score_of(&r, &json!({})).is_empty());
        let none = json!({"references": [{"block_size": 1024, "valid_ppl": 1.0}]});
        assert!(score_of(&r, &none).is_empty());
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
        let spec = r.sweep.spec.clone();
        let groups = score_of(&r, &spec);
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
        assert_eq!(groups[0].scores[0].point_agree, 1);
        assert_eq!(groups[1].rows.len(), 3);
        assert!(close(groups[1].scores[0].spearman, 1.0));
    }
}
