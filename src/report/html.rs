//! Renders report data to one self-contained HTML file (inline CSS, inline SVG plots, no scripts).

use anyhow::Result;
use serde_json::Value;
use std::fmt::Write as _;

use super::compare::{comparison, Comparison};
use super::data::{self, PaperTable, Stat};
use super::plots::{self, Curve};
use super::score::{self, ScoreGroup};
use super::summary::{self, format_duration};
use super::svg::{svg_axis_plot, svg_curves, svg_throughput};
use crate::store::{SweepRecords, SweepTrial};

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#1b1b1b;line-height:1.45}
h1{font-size:1.7rem;margin-bottom:.2rem}h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.8rem 0}th,td{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:right;vertical-align:top}
th{background:#f3f3f3}td.l,th.l{text-align:left}table.paper td,table.paper th{font-variant-numeric:tabular-nums}
table.kv td{text-align:left}.wide{overflow-x:auto}table.cmp{font-size:.85rem}table.cmp td,table.cmp th{padding:.2rem .4rem;white-space:nowrap}table.kv td:first-child{font-weight:600;white-space:nowrap}
.note{background:#fff7e0;border-left:4px solid #e0a800;padding:.5rem .8rem;margin:.8rem 0}
.muted{color:#666}.pos{color:#a40000}.neg{color:#006400}
.verdict{font-weight:600;margin:.6rem 0 .2rem}.verdict.reproduces{color:#006400}.verdict.partly{color:#8a6d00}.verdict.does_not_reproduce{color:#a40000}
pre{background:#f7f7f7;padding:.5rem;overflow-x:auto;white-space:pre-wrap;word-break:break-word;font-size:.85rem}
pre.error{background:#fdecec;border-left:4px solid #c00}
figure{margin:1rem 0}figure svg{max-width:100%;height:auto;border:1px solid #eee}
details{margin:.4rem 0;border:1px solid #e4e4e4;border-radius:4px;padding:.3rem .6rem}summary{cursor:pointer}
.sample{border-left:3px solid #8ab;padding-left:.6rem;margin:.6rem 0}
.state-completed{color:#006400}.state-failed,.state-diverged{color:#a40000}.state-running,.state-pending,.state-interrupted{color:#8a6d00}
@media print{body{max-width:none;margin:0}figure{break-inside:avoid}details{border:none}details::details-content{content-visibility:visible;display:block}}
"#;

fn opt(s: &Option<String>) -> String {
    s.as_deref().map(esc).unwrap_or_else(|| "—".into())
}

/// Escaped text, or `—` when it is empty (a NULL column).
fn opt_text(s: &str) -> String {
    if s.is_empty() {
        "—".into()
    } else {
        esc(s)
    }
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.filter(|v| v.is_finite())
        .map(|v| format!("{v:.decimals$}"))
        .unwrap_or_else(|| "—".into())
}

fn paper_table_html(t: &PaperTable) -> String {
    let mut h = String::from("<table class=\"paper\"><thead><tr>");
    let n_left = 1 + t.axis_headers.len();
    for (i, head) in t.headers().iter().enumerate() {
        let cls = if i < n_left { " class=\"l\"" } else { "" };
        let _ = write!(h, "<th{cls}>{}</th>", esc(head));
    }
    h.push_str("</tr></thead><tbody>");
    for r in &t.rows {
        h.push_str("<tr>");
        let _ = write!(h, "<td class=\"l\">{}</td>", esc(&r.model));
        for a in &r.axis {
            let _ = write!(h, "<td class=\"l\">{}</td>", esc(a));
        }
        for (c, b) in r.cells.iter().zip(&r.bold) {
            let text = c.as_ref().map(Stat::display).unwrap_or_else(|| "—".into());
            if *b {
                let _ = write!(h, "<td><b>{}</b></td>", esc(&text));
            } else {
                let _ = write!(h, "<td>{}</td>", esc(&text));
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");
    let incomplete: Vec<String> = t
        .rows
        .iter()
        .filter(|r| !r.complete())
        .map(|r| {
            format!(
                "{}: {}",
                esc(&plots::row_name(t, r)),
                esc(&r.state_summary())
            )
        })
        .collect();
    if !incomplete.is_empty() {
        let _ = write!(
            h,
            "<p class=\"muted\">Rows not (fully) completed — only completed trials count: {}.</p>",
            incomplete.join("; ")
        );
    }
    if t.rows
        .iter()
        .any(|r| r.cells.iter().flatten().any(|s| s.n > 1))
    {
        h.push_str("<p class=\"muted\">Cells aggregating several seeds show mean ± sample standard deviation.</p>");
    }
    h
}

fn comparison_html(t: &PaperTable, c: &Comparison) -> String {
    let mut h = String::from("<div class=\"wide\"><table class=\"paper cmp\"><thead><tr>");
    let axis_n = t.axis_headers.len();
    let _ = write!(h, "<th class=\"l\" rowspan=\"2\">Model</th>");
    for a in &t.axis_headers {
        let _ = write!(h, "<th class=\"l\" rowspan=\"2\">{}</th>", esc(a));
    }
    for m in &c.metrics {
        let _ = write!(h, "<th colspan=\"3\">{}</th>", esc(m.header()));
    }
    h.push_str("</tr><tr>");
    for _ in &c.metrics {
        h.push_str("<th>Paper</th><th>Ours</th><th>Δ</th>");
    }
    h.push_str("</tr></thead><tbody>");
    for r in &c.rows {
        h.push_str("<tr>");
        let _ = write!(h, "<td class=\"l\">{}</td>", esc(&r.model));
        for i in 0..axis_n {
            let _ = write!(
                h,
                "<td class=\"l\">{}</td>",
                esc(r.axis.get(i).map(String::as_str).unwrap_or("—"))
            );
        }
        for cell in &r.cells {
            let delta = match cell.delta {
                Some(d) => {
                    let cls = if d > 0.0 { "pos" } else { "neg" };
                    format!("<td class=\"{cls}\">{d:+.4}</td>")
                }
                None => "<td>—</td>".into(),
            };
            let _ = write!(
                h,
                "<td>{}</td><td>{}</td>{delta}",
                num(cell.paper, 4),
                num(cell.ours, 4)
            );
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table></div><p class=\"muted\">Δ = ours − paper; lower loss and perplexity are better.");
    if c.rows.iter().any(|r| !r.matched) {
        h.push_str(
            " Rows with no “Ours” value are paper rows this sweep has no matching trial for.",
        );
    }
    h.push_str("</p>");
    h
}

/// The reproduction score of each of the sweep's tables: the headline verdict, each row's change
/// from the baseline (paper's and ours) and the other metrics' verdicts.
fn score_html(t: &PaperTable, groups: &[ScoreGroup]) -> String {
    let mut h = String::new();
    for g in groups {
        let v = g.headline();
        let s = &g.scores[v];
        let verdict = serde_json::to_value(s.verdict).unwrap_or_default();
        let _ = write!(
            h,
            "<h3>Reproduction score: {}</h3><p class=\"verdict {}\">{}: {}</p>",
            esc(&g.title()),
            verdict.as_str().unwrap_or(""),
            esc(s.metric.header()),
            esc(&s.summary())
        );
        let _ = write!(
            h,
            "<table class=\"paper cmp\"><thead><tr><th class=\"l\">Model</th>{}<th>Paper Δ</th>\
             <th>Ours Δ</th><th class=\"l\">Direction</th></tr></thead><tbody>",
            t.axis_headers
                .iter()
                .map(|a| format!("<th class=\"l\">{}</th>", esc(a)))
                .collect::<String>()
        );
        for r in &g.rows {
            let c = r.changes[v];
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td>{}<td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
                esc(&r.model),
                r.axis
                    .iter()
                    .map(|a| format!("<td class=\"l\">{}</td>", esc(a)))
                    .collect::<String>(),
                score::percent(c.paper),
                score::percent(c.ours),
                match c.agrees {
                    Some(true) => "✓ same",
                    Some(false) => "✗ differs",
                    None => "—",
                }
            );
        }
        h.push_str("</tbody></table>");
        let others: Vec<String> = g
            .scores
            .iter()
            .filter(|o| o.metric != s.metric)
            .map(|o| format!("{}: {}", esc(o.metric.header()), esc(&o.summary())))
            .collect();
        if !others.is_empty() {
            let _ = write!(h, "<p class=\"muted\">{}.</p>", others.join("; "));
        }
    }
    let _ = write!(
        h,
        "<p class=\"muted\">Δ = change from the baseline row {} {}, relative; within ±{}% it is \
         flat. A row moves in the paper's direction when both changes are up, both down or both \
         flat. Spearman: rank correlation of our column with the paper's, baseline included.</p>",
        esc(&groups[0].baseline_model),
        esc(&groups[0].baseline_axis.join(" ")),
        score::FLAT * 100.0
    );
    h
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn trial_html(h: &mut String, records: &SweepRecords, t: &SweepTrial, name: &str, open: bool) {
    let state_cls = format!(
        "state-{}",
        t.state
            .as_str()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    let _ = write!(
        h,
        "<details{}><summary>Trial {} · {} · <span class=\"{}\">{}</span> · {}</summary>",
        if open { " open" } else { "" },
        t.id,
        esc(name),
        esc(&state_cls),
        esc(t.state.as_str()),
        t.results
            .wall_seconds
            .map(format_duration)
            .unwrap_or_else(|| "—".into())
    );
    h.push_str("<table class=\"kv\">");
    let mut kv = |k: &str, v: String| {
        let _ = write!(h, "<tr><td>{}</td><td>{v}</td></tr>", esc(k));
    };
    kv("Hash", esc(&t.hash));
    kv(
        "State",
        format!("{} (attempts: {})", esc(t.state.as_str()), t.attempts),
    );
    if let Some(code) = t.exit_status {
        kv("Exit status", code.to_string());
    }
    kv("Device", opt(&t.device));
    kv("Worker", opt(&t.worker));
    kv("Started", opt(&t.started_at));
    kv("Finished", opt(&t.finished_at));
    kv(
        "Wall time",
        t.results
            .wall_seconds
            .map(format_duration)
            .unwrap_or_else(|| "—".into()),
    );
    kv(
        "Train time",
        t.results
            .train_seconds
            .map(format_duration)
            .unwrap_or_else(|| "—".into()),
    );
    kv(
        "Throughput",
        format!("{} tokens/s", num(t.results.tokens_per_s, 1)),
    );
    kv(
        "Peak memory (RSS)",
        t.results
            .peak_rss_bytes
            .map(summary::format_bytes)
            .unwrap_or_else(|| "—".into()),
    );
    kv(
        "Loss (train / valid / test)",
        format!(
            "{} / {} / {}",
            num(t.results.train_loss, 4),
            num(t.results.valid_loss, 4),
            num(t.results.test_loss, 4)
        ),
    );
    kv(
        "PPL (train / valid / test)",
        format!(
            "{} / {} / {}",
            num(t.results.train_ppl, 4),
            num(t.results.valid_ppl, 4),
            num(t.results.test_ppl, 4)
        ),
    );
    if t.results.valid_loss_fixed.is_some() {
        kv(
            "Valid loss at fixed context",
            num(t.results.valid_loss_fixed, 4),
        );
    }
    kv("Artifacts", opt(&t.artifact_dir));
    h.push_str("</table>");
    if let Some(e) = &t.error {
        let _ = write!(
            h,
            "<p><b>Error</b></p><pre class=\"error\">{}</pre>",
            esc(e)
        );
    }
    let _ = write!(
        h,
        "<p><b>Resolved config</b></p><pre>{}</pre>",
        esc(&pretty(&t.config))
    );
    if let Some(env) = &t.env {
        let _ = write!(
            h,
            "<p><b>Environment</b></p><pre>{}</pre>",
            esc(&pretty(env))
        );
    }
    let samples: Vec<_> = records
        .samples
        .iter()
        .filter(|s| s.trial_id == t.id)
        .collect();
    if !samples.is_empty() {
        let _ = write!(h, "<p><b>Generated samples ({})</b></p>", samples.len());
        if let Some(k) = summary::key_term_scores(records)
            .into_iter()
            .find(|k| k.trial_id == t.id)
        {
            let pct = |n: usize, d: usize| {
                if d == 0 {
                    "—".to_string()
                } else {
                    format!("{:.0}% ({n}/{d})", 100.0 * n as f64 / d as f64)
                }
            };
            let _ = write!(
                h,
                "<p>Key-term usage (titles <code>ACRONYM: name</code>, paper §4.6): generated abstracts use the acronym in {}; the real abstracts in {}.</p>",
                pct(k.generated_using, k.generated),
                pct(k.real_using, k.real)
            );
        }
        for s in samples {
            let _ = write!(
                h,
                "<div class=\"sample\"><p><b>{}</b></p><p>{}</p>",
                opt_text(&s.title),
                opt_text(&s.text)
            );
            let mut meta = Vec::new();
            if let Some(seed) = s.seed {
                meta.push(format!("seed {seed}"));
            }
            if let Some(a) = s.uses_acronym {
                meta.push(format!("uses an acronym: {}", if a { "yes" } else { "no" }));
            }
            if !s.params.is_null() {
                meta.push(format!("params {}", s.params));
            }
            if !meta.is_empty() {
                let _ = write!(h, "<p class=\"muted\">{}</p>", esc(&meta.join(" · ")));
            }
            if let Some(r) = &s.reference {
                let _ = write!(
                    h,
                    "<details><summary>Original abstract</summary><p>{}</p></details>",
                    esc(r)
                );
            }
            h.push_str("</div>");
        }
    }
    h.push_str("</details>");
}

fn figure(h: &mut String, svg: Result<String>, caption: &str) {
    match svg {
        Ok(s) => {
            let _ = write!(
                h,
                "<figure>{s}<figcaption class=\"muted\">{}</figcaption></figure>",
                esc(caption)
            );
        }
        Err(e) => {
            let _ = write!(
                h,
                "<p class=\"note\">Plot failed: {}</p>",
                esc(&format!("{e:#}"))
            );
        }
    }
}

fn page_start(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body>\n",
        esc(title)
    )
}

/// The whole report of one sweep. `generated_at` is printed in the footer (pass a fixed value
/// for reproducible output).
pub fn render_report(records: &SweepRecords, generated_at: &str) -> String {
    let s = &records.sweep;
    let title = s.title.clone().unwrap_or_else(|| s.name.clone());
    let mut h = page_start(&format!("{title} — sweep report"));
    let _ = write!(h, "<header><h1>{}</h1>", esc(&title));
    let _ = write!(
        h,
        "<p class=\"muted\">Sweep <code>{}</code></p>",
        esc(&s.name)
    );
    if let Some(d) = &s.description {
        let _ = write!(h, "<p>{}</p>", esc(d));
    }
    let tot = summary::totals(records);
    h.push_str("<table class=\"kv\">");
    let states = if tot.by_state.is_empty() {
        "none".to_string()
    } else {
        tot.by_state
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (k, v) in [
        ("File", opt(&s.file)),
        ("Profile", opt(&s.profile)),
        ("Kind", opt(&s.kind)),
        ("Created", opt_text(&s.created_at)),
        ("Updated", opt_text(&s.updated_at)),
        ("First trial started", opt(&tot.first_started)),
        ("Last trial finished", opt(&tot.last_finished)),
        ("Trials", format!("{} ({})", tot.trials, esc(&states))),
        ("GPU time", format_duration(tot.gpu_seconds)),
        ("CPU time", format_duration(tot.cpu_seconds)),
    ] {
        let _ = write!(h, "<tr><td>{k}</td><td>{v}</td></tr>");
    }
    h.push_str("</table></header>\n");

    if records.trials.is_empty() {
        h.push_str(
            "<p class=\"note\">This sweep has no trials yet: nothing to tabulate or plot.</p>",
        );
    } else {
        let table = data::paper_table(records);
        let _ = write!(
            h,
            "<section id=\"table\"><h2>Results ({})</h2>",
            match table.layout {
                data::Layout::Ablation => "layout of the paper's Tables 3–7",
                data::Layout::ModelSize => "layout of the paper's Table 8",
            }
        );
        h.push_str(&paper_table_html(&table));
        h.push_str("<p class=\"muted\">* baseline row. Bold: best value of its column. 4 decimals.</p></section>\n");

        let notes = data::scale_notes(records);
        let cmp = comparison(&table, &s.spec);
        if cmp.is_some() || !notes.is_empty() {
            h.push_str("<section id=\"paper\"><h2>Beside the paper</h2>");
            for n in &notes {
                let _ = write!(h, "<p class=\"note\">{}</p>", esc(n));
            }
            match &cmp {
                Some(c) => {
                    let groups = score::score(&table, c);
                    if !groups.is_empty() {
                        h.push_str(&score_html(&table, &groups));
                    }
                    h.push_str(&comparison_html(&table, c));
                }
                None => {
                    h.push_str("<p class=\"muted\">The sweep file has no [[reference]] rows.</p>")
                }
            }
            h.push_str("</section>\n");
        }

        h.push_str("<section id=\"plots\"><h2>Plots</h2>");
        if let Some(p) = plots::axis_plot(&table) {
            if p.series.iter().any(|s| !s.points.is_empty()) {
                figure(
                    &mut h,
                    svg_axis_plot(&p),
                    "Final perplexity per row; error bars: ± std over seeds.",
                );
            } else {
                h.push_str("<p class=\"muted\">No completed trial yet: no perplexity plot.</p>");
            }
        }
        let curves = plots::loss_curves(records, &table);
        for (split, title) in [
            ("train", "Train loss vs optimizer step"),
            ("valid", "Valid loss vs optimizer step"),
        ] {
            let cs: Vec<&Curve> = curves.iter().filter(|c| c.split == split).collect();
            if cs.is_empty() {
                let _ = write!(h, "<p class=\"muted\">No {split} metrics recorded yet.</p>");
            } else {
                figure(
                    &mut h,
                    svg_curves(title, &cs),
                    &format!("{} loss per trial.", split),
                );
            }
        }
        let tp = plots::throughput(records, &table);
        if tp.is_empty() {
            h.push_str("<p class=\"muted\">No throughput recorded yet.</p>");
        } else {
            figure(
                &mut h,
                svg_throughput(&tp),
                "Final training throughput per trial.",
            );
        }
        h.push_str("</section>\n");

        h.push_str("<section id=\"trials\"><h2>Trials</h2>");
        let open = records.trials.len() <= 20;
        for row in &table.rows {
            let name = plots::row_name(&table, row);
            for tid in &row.trial_ids {
                if let Some(t) = records.trials.iter().find(|t| t.id == *tid) {
                    trial_html(&mut h, records, t, &name, open);
                }
            }
        }
        h.push_str("</section>\n");
    }
    let _ = writeln!(
        h,
        "<footer class=\"muted\"><p>Generated by sweep {} at {}.</p></footer></body></html>",
        env!("CARGO_PKG_VERSION"),
        esc(generated_at)
    );
    h
}

/// One line of the index page.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    pub name: String,
    pub title: Option<String>,
    pub state: String,
    pub trials: usize,
    pub best_valid_ppl: Option<f64>,
    /// Relative link to the sweep's report.
    pub href: String,
}

/// `reports/index.html`: every sweep with its state, trial count, best valid PPL and link.
pub fn render_index(entries: &[IndexEntry], generated_at: &str) -> String {
    let mut h = page_start("Sweep reports");
    h.push_str("<h1>Sweep reports</h1>");
    if entries.is_empty() {
        h.push_str("<p class=\"note\">The ledger has no sweeps yet.</p>");
    } else {
        h.push_str("<table><thead><tr><th class=\"l\">Sweep</th><th class=\"l\">Title</th><th class=\"l\">State</th><th>Trials</th><th>Best valid PPL</th></tr></thead><tbody>");
        for e in entries {
            let _ = write!(
                h,
                "<tr><td class=\"l\"><a href=\"{}\">{}</a></td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&e.href),
                esc(&e.name),
                opt(&e.title),
                esc(&e.state),
                e.trials,
                num(e.best_valid_ppl, 4)
            );
        }
        h.push_str("</tbody></table>");
    }
    let _ = writeln!(
        h,
        "<footer class=\"muted\"><p>Generated by sweep {} at {}.</p></footer></body></html>",
        env!("CARGO_PKG_VERSION"),
        esc(generated_at)
    );
    h
}
