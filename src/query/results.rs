//! `sweep results`: a sweep's paper-layout table as text, CSV, JSON, Markdown or LaTeX, with the
//! rows' changes from the baseline beyond seed noise (text, Markdown and JSON, when rows have
//! seeds) and the reproduction score beside the paper (text, Markdown and JSON).

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

use super::{format_text_table, ResultsFormat};
use crate::report::data::{Metric, PaperTable, Stat};
use crate::report::effects::{self, Effects};
use crate::report::score::{self, ScoreGroup};

fn cell_text(s: &Option<Stat>) -> String {
    s.as_ref().map(Stat::display).unwrap_or_else(|| "—".into())
}

/// Rows of display strings (model, axis..., n with seeds, metrics...) with bold flags for the
/// metric cells.
fn display_rows(t: &PaperTable) -> Vec<(Vec<String>, Vec<bool>)> {
    t.rows
        .iter()
        .map(|r| {
            let mut cells = t.left_cells(r);
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

/// The rows of one score group: model, axis cells, then the paper's change, ours (± the 95%
/// half-width), n, ours' verdict, what it makes of the paper's claim and the seeds that would
/// decide it, for the headline metric.
fn score_rows(g: &ScoreGroup) -> Vec<Vec<String>> {
    let v = g.headline();
    g.rows
        .iter()
        .map(|r| {
            let mut cells = vec![r.model.clone()];
            cells.extend(r.axis.iter().cloned());
            let c = r.changes[v];
            cells.push(score::percent(c.paper));
            cells.push(score::change_text(&c));
            cells.push(c.n.to_string());
            cells.push(c.verdict.map_or("—", |v| v.as_str()).into());
            cells.push(score::agreement(&c));
            cells.push(score::seeds_text(&c));
            cells
        })
        .collect()
}

/// The heading of a score group: what changes, from which baseline.
fn score_heading(g: &ScoreGroup) -> String {
    format!(
        "Beside the paper ({}): {} change from the baseline row {} {}",
        g.title(),
        g.metrics[g.headline()].header(),
        g.baseline_model,
        g.baseline_axis.join(" ")
    )
}

/// Every metric's verdict line.
fn verdicts(g: &ScoreGroup) -> Vec<String> {
    g.scores
        .iter()
        .map(|s| format!("{}: {}", s.metric.header(), s.summary()))
        .collect()
}

/// What the score's columns mean, at the sweep's flat threshold.
fn flat_note(flat: f64) -> String {
    format!(
        "Changes are relative to the baseline row, ours paired by seed with the 95% interval's \
         half-width; within ±{}% a change is flat. Verdict: up or down when our whole interval \
         lies beyond the threshold, flat when it lies within, else inconclusive (one seed gives \
         no interval). Outcome: same / opposite when decided the paper's way or not, no effect \
         when decided flat where the paper moves; an undecided row shows the seeds that would \
         decide it (at our change, and at the paper's).",
        flat * 100.0
    )
}

/// The columns of a score table: the row's model and axis values, then the changes, n, our
/// verdict, the outcome and the seeds to decide.
fn score_headers(t: &PaperTable) -> Vec<String> {
    let mut headers = vec!["Model".to_string()];
    headers.extend(t.axis_headers.iter().cloned());
    headers.extend(
        [
            "Paper",
            "Ours",
            "n",
            "Verdict",
            "Outcome",
            "Seeds to decide",
        ]
        .map(String::from),
    );
    headers
}

/// The effects table of valid perplexity: headers and rows of cells.
fn effect_rows(t: &PaperTable, e: &Effects) -> (Vec<String>, Vec<Vec<String>>) {
    let (headers, rows) = effects::effect_table(t, e, Metric::ValidPpl);
    (headers, rows.into_iter().map(|(_, cells)| cells).collect())
}

/// The effects as a plain text table (empty without seeds).
fn effects_text(t: &PaperTable, e: &Effects) -> String {
    if !effects::shows_effects(t, e) {
        return String::new();
    }
    let (headers, rows) = effect_rows(t, e);
    let n_left = 1 + t.axis_headers.len();
    let right: Vec<bool> = (0..headers.len())
        .map(|i| i >= n_left && i + 1 < headers.len())
        .collect();
    format!(
        "\n{}\n{}",
        effects::effect_caption(t, e, Metric::ValidPpl),
        format_text_table(&headers, &rows, &right)
    )
}

/// The effects as a Markdown table (empty without seeds).
fn effects_markdown(t: &PaperTable, e: &Effects) -> String {
    if !effects::shows_effects(t, e) {
        return String::new();
    }
    let (headers, rows) = effect_rows(t, e);
    format!(
        "\n{}\n\n{}",
        md_escape(&effects::effect_caption(t, e, Metric::ValidPpl)),
        md_table(&headers, &rows)
    )
}

/// A Markdown table's header and rule; columns from `n_left` on are right-aligned.
fn md_header(headers: &[String], n_left: usize) -> String {
    format!(
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
    )
}

/// A Markdown table of plain cells.
fn md_table(headers: &[String], rows: &[Vec<String>]) -> String {
    let mut s = md_header(headers, headers.len());
    for r in rows {
        let cs: Vec<String> = r.iter().map(|c| md_escape(c)).collect();
        s.push_str(&format!("| {} |\n", cs.join(" | ")));
    }
    s
}

/// The score as plain text tables (empty without references).
fn score_text(t: &PaperTable, groups: &[ScoreGroup], flat: f64) -> String {
    let mut s = String::new();
    for g in groups {
        let headers = score_headers(t);
        let n_left = 1 + t.axis_headers.len();
        let right: Vec<bool> = (0..headers.len())
            .map(|i| i >= n_left && i < n_left + 3)
            .collect();
        s.push_str(&format!("\n{}\n", score_heading(g)));
        s.push_str(&format_text_table(&headers, &score_rows(g), &right));
        for line in verdicts(g) {
            s.push_str(&format!("{line}\n"));
        }
    }
    if !groups.is_empty() {
        s.push_str(&format!("{}\n", flat_note(flat)));
    }
    s
}

/// The score as Markdown tables (empty without references).
fn score_markdown(t: &PaperTable, groups: &[ScoreGroup], flat: f64) -> String {
    let mut s = String::new();
    for g in groups {
        let headers = score_headers(t);
        s.push_str(&format!("\n**{}**\n\n", md_escape(&score_heading(g))));
        s.push_str(&md_table(&headers, &score_rows(g)));
        s.push('\n');
        for line in verdicts(g) {
            s.push_str(&format!("- {}\n", md_escape(&line)));
        }
    }
    if !groups.is_empty() {
        s.push_str(&format!("\n{}\n", md_escape(&flat_note(flat))));
    }
    s
}

/// The effects as JSON: `{label, metric, baseline, n, n_baseline, change, ci95, p_value,
/// p_permutation, prob_improvement, verdict, method}` per row and metric (changes as fractions).
pub fn effects_json(t: &PaperTable, e: &Effects) -> Value {
    let baseline = e
        .baseline
        .map(|b| Value::Object(t.rows[b].label.clone()))
        .unwrap_or(Value::Null);
    Value::Array(
        e.rows
            .iter()
            .map(|r| {
                let x = &r.effect;
                json!({
                    "label": r.label,
                    "metric": r.metric,
                    "baseline": baseline,
                    "n": x.n,
                    "n_baseline": x.n_baseline,
                    "change": x.change,
                    "ci95": x.ci95,
                    "p_value": x.p_value,
                    "p_permutation": x.p_permutation,
                    "prob_improvement": x.prob_improvement,
                    "verdict": x.verdict,
                    "method": x.method,
                })
            })
            .collect(),
    )
}

/// The score as JSON: per group its axes, baseline, rows' changes and per-metric summaries.
pub fn score_json(groups: &[ScoreGroup], flat: f64) -> Value {
    let group = |g: &ScoreGroup| {
        let rows: Vec<Value> = g
            .rows
            .iter()
            .map(|r| {
                let change: Map<String, Value> = g
                    .metrics
                    .iter()
                    .zip(&r.changes)
                    .map(|(m, c)| (m.key().to_string(), json!(c)))
                    .collect();
                json!({"model": r.model, "axis": r.axis, "change": change})
            })
            .collect();
        let metrics: Map<String, Value> = g
            .scores
            .iter()
            .map(|s| {
                let mut o = json!(s);
                o["summary"] = json!(s.summary());
                if let Some(m) = o.as_object_mut() {
                    m.remove("metric");
                }
                (s.metric.key().to_string(), o)
            })
            .collect();
        json!({
            "axes": g.axes,
            "baseline": {"model": g.baseline_model, "axis": g.baseline_axis},
            "flat_threshold": flat,
            "rows": rows,
            "metrics": metrics,
        })
    };
    Value::Array(groups.iter().map(group).collect())
}

/// The paper-layout table in the given format (ends with a newline), with the rows' `effects`
/// against the baseline ([`effects::effects`]) and the reproduction score `groups`
/// ([`score::reproduction`]) in text, Markdown and JSON.
pub fn format_results(
    t: &PaperTable,
    groups: &[ScoreGroup],
    effects: &Effects,
    format: ResultsFormat,
) -> Result<String> {
    let headers = t.headers();
    let n_left = t.left_columns();
    let rows = display_rows(t);
    Ok(match format {
        ResultsFormat::Table => {
            let right: Vec<bool> = (0..headers.len()).map(|i| i >= n_left).collect();
            let plain: Vec<Vec<String>> = rows.iter().map(|r| r.0.clone()).collect();
            let mut s = format_text_table(&headers, &plain, &right);
            if t.rows.is_empty() {
                s.push_str("(no trials)\n");
            }
            s.push_str(&effects_text(t, effects));
            s.push_str(&score_text(t, groups, effects.flat));
            s
        }
        ResultsFormat::Markdown => {
            let mut s = md_header(&headers, n_left);
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
            s.push_str(&effects_markdown(t, effects));
            s.push_str(&score_markdown(t, groups, effects.flat));
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
                head.push(format!("{}_ci95_lo", m.key()));
                head.push(format!("{}_ci95_hi", m.key()));
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
                    for k in 0..2 {
                        rec.push(
                            c.and_then(|s| s.ci95)
                                .map(|ci| ci[k].to_string())
                                .unwrap_or_default(),
                        );
                    }
                }
                rec.push(r.n.to_string());
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
                            c.map(
                                |s| json!({"mean": s.mean, "std": s.std, "n": s.n, "ci95": s.ci95}),
                            )
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
                    o.insert("n".into(), json!(r.n));
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
                "flat_threshold": effects.flat,
                "effects": effects_json(t, effects),
                "expected_validation": effects::table_evp(t),
                "reproduction": score_json(groups, effects.flat),
            });
            let mut s = serde_json::to_string_pretty(&doc)?;
            s.push('\n');
            s
        }
    })
}
