//! `sweep results`: a sweep's paper-layout table as text, CSV, JSON, Markdown or LaTeX.

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

use super::{format_text_table, ResultsFormat};
use crate::report::data::{PaperTable, Stat};

fn cell_text(s: &Option<Stat>) -> String {
    s.as_ref().map(Stat::display).unwrap_or_else(|| "—".into())
}

/// Rows of display strings (model, axis..., metrics...) with bold flags for the metric cells.
fn display_rows(t: &PaperTable) -> Vec<(Vec<String>, Vec<bool>)> {
    t.rows
        .iter()
        .map(|r| {
            let mut cells = vec![r.model.clone()];
            cells.extend(r.axis.iter().cloned());
            let mut bold = vec![false; cells.len()];
            for (c, b) in r.cells.iter().zip(&r.bold) {
                cells.push(cell_text(c));
                bold.push(*b);
            }
            (cells, bold)
        })
        .collect()
}

fn md_escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        if matches!(c, '|' | '*' | '_' | '\\' | '`' | '<' | '>' | '[' | ']') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

fn latex_escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                o.push('\\');
                o.push(c);
            }
            '~' => o.push_str("\\textasciitilde{}"),
            '^' => o.push_str("\\textasciicircum{}"),
            '—' => o.push_str("---"),
            c => o.push(c),
        }
    }
    o
}

/// The paper-layout table in the given format (ends with a newline).
pub fn format_results(t: &PaperTable, format: ResultsFormat) -> Result<String> {
    let headers = t.headers();
    let n_left = 1 + t.axis_headers.len();
    let rows = display_rows(t);
    Ok(match format {
        ResultsFormat::Table => {
            let right: Vec<bool> = (0..headers.len()).map(|i| i >= n_left).collect();
            let plain: Vec<Vec<String>> = rows.iter().map(|r| r.0.clone()).collect();
            let mut s = format_text_table(&headers, &plain, &right);
            if t.rows.is_empty() {
                s.push_str("(no trials)\n");
            }
            s
        }
        ResultsFormat::Markdown => {
            let mut s = format!(
                "| {} |\n|{}|\n",
                headers
                    .iter()
                    .map(|h| md_escape(h))
                    .collect::<Vec<_>>()
                    .join(" | "),
                (0..headers.len())
                    .map(|i| if i < n_left { " --- " } else { " ---: " })
                    .collect::<Vec<_>>()
                    .join("|")
            );
            for (cells, bold) in &rows {
                let cs: Vec<String> = cells
                    .iter()
                    .zip(bold)
                    .map(|(c, b)| {
                        if *b {
                            format!("**{}**", md_escape(c))
                        } else {
                            md_escape(c)
                        }
                    })
                    .collect();
                s.push_str(&format!("| {} |\n", cs.join(" | ")));
            }
            s
        }
        ResultsFormat::Latex => {
            let spec: String = (0..headers.len())
                .map(|i| if i < n_left { 'l' } else { 'r' })
                .collect();
            let mut s = format!("\\begin{{tabular}}{{{spec}}}\n\\hline\n");
            s.push_str(
                &headers
                    .iter()
                    .map(|h| latex_escape(h))
                    .collect::<Vec<_>>()
                    .join(" & "),
            );
            s.push_str(" \\\\\n\\hline\n");
            for (cells, bold) in &rows {
                let cs: Vec<String> = cells
                    .iter()
                    .zip(bold)
                    .map(|(c, b)| {
                        let e = latex_escape(c).replace(" ± ", " $\\pm$ ");
                        if *b {
                            format!("\\textbf{{{e}}}")
                        } else {
                            e
                        }
                    })
                    .collect();
                s.push_str(&cs.join(" & "));
                s.push_str(" \\\\\n");
            }
            s.push_str("\\hline\n\\end{tabular}\n");
            s
        }
        ResultsFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let mut head = vec!["model".to_string(), "baseline".to_string()];
            head.extend(t.axis_columns().iter().map(|s| s.to_string()));
            for m in &t.metrics {
                head.push(m.key().to_string());
                head.push(format!("{}_std", m.key()));
            }
            head.push("n".into());
            head.push("states".into());
            w.write_record(&head)?;
            for r in &t.rows {
                let mut rec = vec![r.model.clone(), r.baseline.to_string()];
                rec.extend(r.axis.iter().cloned());
                for c in &r.cells {
                    rec.push(c.map(|s| s.mean.to_string()).unwrap_or_default());
                    rec.push(
                        c.and_then(|s| s.std)
                            .map(|v| v.to_string())
                            .unwrap_or_default(),
                    );
                }
                rec.push(r.trial_ids.len().to_string());
                rec.push(r.state_summary());
                w.write_record(&rec)?;
            }
            String::from_utf8(w.into_inner().context("writing CSV")?)?
        }
        ResultsFormat::Json => {
            let rows: Vec<Value> = t
                .rows
                .iter()
                .map(|r| {
                    let mut o = Map::new();
                    o.insert("model".into(), json!(r.model));
                    o.insert("baseline".into(), json!(r.baseline));
                    o.insert("axis".into(), Value::Object(r.label.clone()));
                    for (m, c) in t.metrics.iter().zip(&r.cells) {
                        o.insert(
                            m.key().into(),
                            c.map(|s| json!({"mean": s.mean, "std": s.std, "n": s.n}))
                                .unwrap_or(Value::Null),
                        );
                    }
                    o.insert(
                        "best".into(),
                        json!(t
                            .metrics
                            .iter()
                            .zip(&r.bold)
                            .filter(|(_, b)| **b)
                            .map(|(m, _)| m.key())
                            .collect::<Vec<_>>()),
                    );
                    o.insert("trial_ids".into(), json!(r.trial_ids));
                    o.insert("states".into(), json!(r.states));
                    Value::Object(o)
                })
                .collect();
            let doc = json!({
                "layout": t.layout,
                "axis": t.axis_keys,
                "columns": headers,
                "rows": rows,
            });
            let mut s = serde_json::to_string_pretty(&doc)?;
            s.push('\n');
            s
        }
    })
}
