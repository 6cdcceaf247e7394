//! The paper's reference rows beside ours: matching `[[reference]]` rows to table rows.

use serde::Serialize;
use serde_json::{Map, Value};

use super::data::{format_value, model_size_label, value_f64, Metric, PaperTable, TableRow};

/// Whether two axis values are the same (numbers to rounding; presets and their size labels).
pub(super) fn values_equal(a: &Value, b: &Value) -> bool {
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
    /// The index of the matching row in the table (None when not matched).
    #[serde(skip)]
    pub row: Option<usize>,
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
                row: Some(i),
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
            row: None,
        });
    }
    Some(Comparison { metrics, rows })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::data::paper_table;
    use crate::report::data::tests::fixture_records;

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
}
