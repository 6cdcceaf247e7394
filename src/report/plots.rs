//! Plot data from the paper table and the metric rows: perplexity vs the axis, loss curves,
//! throughput (pure; `svg` draws them).

use serde::Serialize;
use std::collections::BTreeMap;

use super::data::{
    axis_header, axis_unit_label, format_value, value_f64, Metric, PaperTable, TableRow,
};
use crate::store::{MetricRecord, SweepRecords};

/// One line of a plot, with optional error bars (the 95% interval over seeds).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub name: String,
    /// (x, y, the 95% interval's half-width)
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

/// The table's axis keys named by `name` and joined with ` × `; `none` when it has no axis.
fn axes_joined(table: &PaperTable, name: fn(&str) -> String, none: &str) -> String {
    if table.axis_keys.is_empty() {
        return none.to_string();
    }
    table
        .axis_keys
        .iter()
        .map(|k| name(k))
        .collect::<Vec<_>>()
        .join(" × ")
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
            let label = axes_joined(table, axis_unit_label, "Trial");
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
            .filter_map(|(r, x)| r.cells[c].map(|s| (*x, s.mean, s.half_width())))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        series.push(Series {
            name: m.header().to_string(),
            points,
        });
    }
    let axis_name = axes_joined(table, axis_header, "trial");
    Some(AxisPlot {
        title: format!("Perplexity vs {axis_name}"),
        x_label,
        y_label: "Perplexity (exp of mean token loss)".into(),
        x_scale,
        series,
    })
}

/// Loss over optimizer steps for one trial and split, or for one row's seeds: their mean.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Curve {
    /// The trial (a row's first trial when the curve is the mean of its seeds).
    pub trial_id: i64,
    pub name: String,
    pub split: String,
    /// (step, loss), step-ordered, at most `MAX_CURVE_POINTS`.
    pub points: Vec<(f64, f64)>,
    /// A row's mean over seeds: the 95% interval's half-width at each point (0 where fewer
    /// than two seeds reached the step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub err: Option<Vec<f64>>,
}

/// Curves are thinned to this many points: more cannot be seen at plot resolution.
pub const MAX_CURVE_POINTS: usize = 400;

/// The metric rows a report reads ([`crate::store::load_sweep_curves`]): no series beyond what a
/// curve keeps, and no split beyond 20,000 rows, as many as one chart can show legibly (a chart
/// of 1,000 rows x 5 seeds gets 20 points per curve, one of 100 trials 200).
pub const CURVE_BUDGET: crate::store::CurveBudget = crate::store::CurveBudget {
    per_series: MAX_CURVE_POINTS,
    per_split: 20_000,
};

/// Evenly thins a step-ordered series to at most `max` points, keeping the first and last.
pub fn thin(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    thin_indices(points.len(), max)
        .into_iter()
        .map(|i| points[i])
        .collect()
}

/// The indices [`thin`] keeps of `n` points.
fn thin_indices(n: usize, max: usize) -> Vec<usize> {
    if n <= max || max < 2 {
        return (0..n).collect();
    }
    (0..max).map(|i| i * (n - 1) / (max - 1)).collect()
}

/// The mean of several trials' curves at each step, with the 95% interval's half-width.
fn mean_curve(curves: &[Vec<(f64, f64)>]) -> (Vec<(f64, f64)>, Vec<f64>) {
    let mut at: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for c in curves {
        for (x, y) in c {
            at.entry(*x as i64).or_default().push(*y);
        }
    }
    at.into_iter()
        .filter_map(|(x, ys)| {
            let s = crate::stats::Summary::of(&ys)?;
            Some(((x as f64, s.mean), s.half_width().unwrap_or(0.0)))
        })
        .unzip()
}

/// Train and valid loss curves, one per trial and split, in table-row order; a row with several
/// seeds gets one curve, their mean with its 95% interval.
pub fn loss_curves(records: &SweepRecords, table: &PaperTable) -> Vec<Curve> {
    let mut by_trial: BTreeMap<(i64, &str), Vec<&MetricRecord>> = BTreeMap::new();
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
        if row.trial_ids.len() > 1 {
            for split in ["train", "valid"] {
                let per_seed: Vec<Vec<(f64, f64)>> = row
                    .trial_ids
                    .iter()
                    .filter_map(|tid| by_trial.get(&(*tid, split)))
                    .map(|ms| ms.iter().map(|m| (m.step as f64, m.loss)).collect())
                    .collect();
                if per_seed.is_empty() {
                    continue;
                }
                let (points, err) = mean_curve(&per_seed);
                let keep = thin_indices(points.len(), MAX_CURVE_POINTS);
                curves.push(Curve {
                    trial_id: row.trial_ids[0],
                    name: format!("{base} (mean of {} seeds)", per_seed.len()),
                    split: split.to_string(),
                    points: keep.iter().map(|&i| points[i]).collect(),
                    err: Some(keep.iter().map(|&i| err[i]).collect()),
                });
            }
            continue;
        }
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
                        err: None,
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

/// A bar: its name, value and the 95% interval's half-width when it is a mean over seeds.
pub type Bar = (String, f64, Option<f64>);

/// Final training throughput (tokens/s) of each trial in table-row order; a row with several
/// seeds gets one bar, their mean with its 95% interval.
pub fn throughput(records: &SweepRecords, table: &PaperTable) -> Vec<Bar> {
    let mut out = Vec::new();
    for row in &table.rows {
        let base = row_name(table, row);
        let values: Vec<(i64, f64)> = row
            .trial_ids
            .iter()
            .filter_map(|&tid| {
                let t = records.trials.iter().find(|t| t.id == tid)?;
                let v = t
                    .results
                    .tokens_per_s
                    .filter(|v| v.is_finite() && *v > 0.0)?;
                Some((tid, v))
            })
            .collect();
        if row.trial_ids.len() > 1 {
            let vs: Vec<f64> = values.iter().map(|v| v.1).collect();
            if let Some(s) = crate::stats::Summary::of(&vs) {
                out.push((format!("{base} (n={})", s.n), s.mean, s.half_width()));
            }
            continue;
        }
        for (tid, v) in values {
            out.push((trial_name(records, &base, row, tid), v, None));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::data::paper_table;
    use crate::report::data::tests::fixture_records;

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
        // The baseline's two seeds as one mean curve per split, 3 single-seed rows x 2 splits,
        // and the failed trial's train rows.
        assert_eq!(curves.len(), 9);
        assert_eq!(
            curves[0].name,
            "gpt2-tiny* block_size=512 (mean of 2 seeds)"
        );
        let err = curves[0].err.as_ref().unwrap();
        assert_eq!(err.len(), curves[0].points.len());
        // Seeds 1 and 2 differ by 0.04 in loss at every step: sd 0.04/sqrt(2), half-width
        // t(0.975, 1) x 0.02.
        let t1 = crate::stats::t_quantile(0.975, 1.0);
        assert!(err.iter().all(|e| (e - t1 * 0.02).abs() < 1e-9), "{err:?}");
        assert!((curves[0].points[0].1 - (4.12 - 0.2 + 3.0)).abs() < 1e-9);
        assert_eq!(curves[2].err, None);
        let tp = throughput(&r, &t);
        assert_eq!(tp.len(), 4);
        assert_eq!(tp[0].0, "gpt2-tiny* block_size=512 (n=2)");
        assert!(tp[0].2.is_some() && tp[1].2.is_none());
        insta::assert_json_snapshot!("block_size_axis_plot", p);
    }

    #[test]
    fn linear_and_categorical_axes() {
        let mut r = fixture_records("");
        for (i, t) in r.trials.iter_mut().enumerate() {
            let wd = [0.0, 0.0, 0.01, 0.1, 0.2, 0.3][i];
            t.label = serde_json::json!({ "weight_decay": wd });
        }
        let t = paper_table(&r);
        assert_eq!(axis_plot(&t).unwrap().x_scale, XScale::Linear);
        assert_eq!(t.rows[1].axis, vec!["0.01"]);
        for t in r.trials.iter_mut() {
            t.label = serde_json::json!({"tokenizer": "bpe"});
        }
        let t = paper_table(&r);
        assert!(matches!(
            axis_plot(&t).unwrap().x_scale,
            XScale::Categorical(_)
        ));
    }
}
