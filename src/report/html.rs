//! Renders report data to HTML with maud templates, which escape every value by default: one
//! self-contained file per sweep (inline CSS, inline SVG plots, no scripts), the index, and the
//! pieces the live dashboard (`sweep serve`) composes into its pages.

use maud::{html, Markup};
use serde_json::Value;

use super::compare::{comparison, Comparison};
use super::data::{self, PaperTable, Stat};
use super::effects::{self, Effects};
use super::forest;
use super::markup::{curves_figure, figure, footer, kv_table, num, opt, opt_text, page};
use super::plots::{self, Curve};
use super::score::{self, ScoreGroup};
use super::stats_svg::{svg_evp, svg_forest};
use super::summary::{self, format_duration};
use super::svg::{svg_axis_plot, svg_throughput};
use crate::store::{SweepRecords, SweepTrial, TrialRecord};

fn duration(secs: Option<f64>) -> String {
    secs.map(format_duration).unwrap_or_else(|| "—".into())
}

fn paper_table_html(t: &PaperTable) -> Markup {
    let n_left = t.left_columns();
    let incomplete: Vec<String> = t
        .rows
        .iter()
        .filter(|r| !r.complete())
        .map(|r| format!("{}: {}", plots::row_name(t, r), r.state_summary()))
        .collect();
    let seeds = t
        .rows
        .iter()
        .any(|r| r.cells.iter().flatten().any(|s| s.n > 1));
    html! {
        table.paper {
            thead { tr { @for (i, head) in t.headers().iter().enumerate() {
                @if i < n_left { th.l { (head) } } @else { th { (head) } }
            } } }
            tbody { @for r in &t.rows { tr {
                @for c in t.left_cells(r) { td.l { (c) } }
                @for (c, b) in r.cells.iter().zip(&r.bold) {
                    @let text = c.as_ref().map(Stat::display).unwrap_or_else(|| "—".into());
                    @if *b { td { b { (text) } } } @else { td { (text) } }
                }
            } } }
        }
        @if !incomplete.is_empty() {
            p.muted { "Rows not (fully) completed — only completed trials count: " (incomplete.join("; ")) "." }
        }
        @if seeds {
            p.muted { "n: completed seeds of the row. Cells aggregating several seeds show the mean ± the half-width of its 95% interval (Student t)." }
        }
    }
}

/// Each row's change from the baseline beyond seed noise (valid PPL): the effects table, which
/// the live dashboard keeps current, and one forest plot per table.
fn effects_section(t: &PaperTable, e: &Effects, groups: &[ScoreGroup]) -> Markup {
    let forests = forest::forests(t, e, groups);
    if !effects::shows_effects(t, e) && forests.is_empty() {
        return html! {};
    }
    let (headers, rows) = effects::effect_table(t, e, data::Metric::ValidPpl);
    let n_left = 1 + t.axis_headers.len();
    html! {
        section #effects {
            h2 { "Effects beyond noise" }
            @if effects::shows_effects(t, e) {
                p.muted { (effects::effect_caption(t, e, data::Metric::ValidPpl)) }
                table.paper.cmp #effects-table {
                    thead { tr { @for (i, h) in headers.iter().enumerate() {
                        @if i < n_left { th.l { (h) } } @else { th { (h) } }
                    } } }
                    tbody { @for (name, cells) in &rows { tr data-row=(name) {
                        @for (i, c) in cells.iter().enumerate() {
                            @if i < n_left { td.l { (c) } } @else { td { (c) } }
                        }
                    } } }
                }
            }
            @for f in &forests {
                (figure(svg_forest(f), &format!(
                    "Forest plot: each row's change from the baseline (dot) with its 95% interval over seeds (no bar: one seed), \
                     coloured by its verdict (red up, green down, grey flat, amber inconclusive); blue cross: the paper's change; \
                     grey band: ±{}%, no effect.{}",
                    f.flat * 100.0,
                    if f.omitted > 0 { format!(" The first {} rows; {} more in the table.", f.rows.len(), f.omitted) } else { String::new() }
                )))
            }
        }
        "\n"
    }
}

fn comparison_html(t: &PaperTable, c: &Comparison) -> Markup {
    let axis_n = t.axis_headers.len();
    html! {
        div.wide { table.paper.cmp {
            thead {
                tr {
                    th.l rowspan="2" { "Model" }
                    @for a in &t.axis_headers { th.l rowspan="2" { (a) } }
                    @for m in &c.metrics { th colspan="3" { (m.header()) } }
                }
                tr { @for _ in &c.metrics { th { "Paper" } th { "Ours" } th { "Δ" } } }
            }
            tbody { @for r in &c.rows { tr {
                td.l { (r.model) }
                @for i in 0..axis_n { td.l { (r.axis.get(i).map(String::as_str).unwrap_or("—")) } }
                @for cell in &r.cells {
                    td { (num(cell.paper, 4)) }
                    td { (num(cell.ours, 4)) }
                    @match cell.delta {
                        Some(d) => td class=(if d > 0.0 { "pos" } else { "neg" }) { (format!("{d:+.4}")) },
                        None => td { "—" },
                    }
                }
            } } }
        } }
        p.muted {
            "Δ = ours − paper; lower loss and perplexity are better."
            @if c.rows.iter().any(|r| !r.matched) {
                " Rows with no “Ours” value are paper rows this sweep has no matching trial for."
            }
        }
    }
}

/// The reproduction score of each of the sweep's tables: the headline verdict, each row's change
/// from the baseline (paper's and ours, with our interval and verdict), what it makes of the
/// paper's claim, the seeds that would decide an undecided row, and the other metrics' verdicts.
fn score_html(t: &PaperTable, groups: &[ScoreGroup], flat: f64) -> Markup {
    let Some(first) = groups.first() else {
        return html! {};
    };
    html! {
        @for g in groups {
            @let v = g.headline();
            @let s = &g.scores[v];
            @let verdict = serde_json::to_value(s.verdict).unwrap_or_default();
            @let others: Vec<String> = g.scores.iter().filter(|o| o.metric != s.metric)
                .map(|o| format!("{}: {}", o.metric.header(), o.summary())).collect();
            h3 { "Reproduction score: " (g.title()) }
            p class={ "verdict " (verdict.as_str().unwrap_or("")) } { (s.metric.header()) ": " (s.summary()) }
            table.paper.cmp {
                thead { tr {
                    th.l { "Model" }
                    @for a in &t.axis_headers { th.l { (a) } }
                    th { "Paper Δ" } th { "Ours Δ" } th { "n" } th.l { "Verdict" } th.l { "Outcome" } th.l { "Seeds to decide" }
                } }
                tbody { @for r in &g.rows {
                    @let c = r.changes[v];
                    tr {
                        td.l { (r.model) }
                        @for a in &r.axis { td.l { (a) } }
                        td { (score::percent(c.paper)) }
                        td { (score::change_text(&c)) }
                        td { (c.n) }
                        td.l { (c.verdict.map_or("—", |v| v.as_str())) }
                        td.l { (score::agreement(&c)) }
                        td.l { (score::seeds_text(&c)) }
                    }
                } }
            }
            @if !others.is_empty() { p.muted { (others.join("; ")) "." } }
        }
        p.muted {
            "Δ = change from the baseline row " (first.baseline_model) " " (first.baseline_axis.join(" "))
            ", relative, ours paired by seed (± the 95% interval's half-width); within ±" (flat * 100.0) "% it is flat. "
            "Verdict: up or down when our whole interval lies beyond that threshold, flat when it lies within it, else inconclusive (one seed gives no interval). "
            "Outcome: same or opposite when decided the paper's way or not; no effect when decided flat where the paper moves; undecided shows the point estimate's direction in brackets. "
            "The table's verdict counts decided rows only. Seeds to decide: from the spread of the row's per-seed changes, the seeds whose interval would decide our change (and the paper's). "
            "Spearman: rank correlation of our column with the paper's, baseline included."
        }
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// The CSS class of a trial state (`state-completed`).
pub fn state_class(t: &TrialRecord) -> String {
    format!(
        "state-{}",
        t.state
            .as_str()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

/// The facts of one trial: state, timing, results, error, resolved config and environment.
pub fn trial_facts(t: &TrialRecord) -> Markup {
    let r = &t.results;
    let mut rows: Vec<(&str, String)> = vec![
        ("Hash", t.hash.clone()),
        ("State", format!("{} (attempts: {})", t.state, t.attempts)),
    ];
    if let Some(code) = t.exit_status {
        rows.push(("Exit status", code.to_string()));
    }
    rows.extend([
        ("Device", opt(&t.device).to_string()),
        ("Worker", opt(&t.worker).to_string()),
        ("Started", opt(&t.started_at).to_string()),
        ("Finished", opt(&t.finished_at).to_string()),
        ("Wall time", duration(r.wall_seconds)),
        ("Train time", duration(r.train_seconds)),
        ("Throughput", format!("{} tokens/s", num(r.tokens_per_s, 1))),
        (
            "Peak memory (RSS)",
            r.peak_rss_bytes
                .map(summary::format_bytes)
                .unwrap_or_else(|| "—".into()),
        ),
        (
            "Loss (train / valid / test)",
            format!(
                "{} / {} / {}",
                num(r.train_loss, 4),
                num(r.valid_loss, 4),
                num(r.test_loss, 4)
            ),
        ),
        (
            "PPL (train / valid / test)",
            format!(
                "{} / {} / {}",
                num(r.train_ppl, 4),
                num(r.valid_ppl, 4),
                num(r.test_ppl, 4)
            ),
        ),
    ]);
    if r.valid_loss_fixed.is_some() {
        rows.push(("Valid loss at fixed context", num(r.valid_loss_fixed, 4)));
    }
    rows.push(("Artifacts", opt(&t.artifact_dir).to_string()));
    html! {
        (kv_table(rows))
        @if let Some(e) = &t.error { p { b { "Error" } } pre.error { (e) } }
        p { b { "Resolved config" } } pre { (pretty(&t.config)) }
        @if let Some(env) = &t.env { p { b { "Environment" } } pre { (pretty(env)) } }
    }
}

fn pct(n: usize, d: usize) -> String {
    if d == 0 {
        "—".to_string()
    } else {
        format!("{:.0}% ({n}/{d})", 100.0 * n as f64 / d as f64)
    }
}

/// The generated samples of trial `trial_id` with its key-term score (nothing when it has none).
pub fn trial_samples(records: &SweepRecords, trial_id: i64) -> Markup {
    let samples: Vec<_> = records
        .samples
        .iter()
        .filter(|s| s.trial_id == trial_id)
        .collect();
    if samples.is_empty() {
        return html! {};
    }
    let key_terms = summary::key_term_scores(records)
        .into_iter()
        .find(|k| k.trial_id == trial_id);
    html! {
        p { b { "Generated samples (" (samples.len()) ")" } }
        @if let Some(k) = key_terms {
            p { "Key-term usage (titles " code { "ACRONYM: name" } ", paper §4.6): generated abstracts use the acronym in "
                (pct(k.generated_using, k.generated)) "; the real abstracts in " (pct(k.real_using, k.real)) "." }
        }
        @for s in samples {
            @let meta = sample_meta(s);
            div.sample {
                p { b { (opt_text(&s.title)) } }
                p { (opt_text(&s.text)) }
                @if !meta.is_empty() { p.muted { (meta.join(" · ")) } }
                @if let Some(r) = &s.reference {
                    details { summary { "Original abstract" } p { (r) } }
                }
            }
        }
    }
}

/// Seed, acronym use and decoding parameters of a sample.
fn sample_meta(s: &crate::store::SampleRecord) -> Vec<String> {
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
    meta
}

fn trial_html(records: &SweepRecords, t: &SweepTrial, name: &str, open: bool) -> Markup {
    html! {
        details open[open] {
            summary {
                "Trial " (t.id) " · " (name) " · "
                span class=(state_class(t)) { (t.state.as_str()) }
                " · " (duration(t.results.wall_seconds))
            }
            (trial_facts(t))
            (trial_samples(records, t.id))
        }
    }
}

fn header(records: &SweepRecords) -> Markup {
    let s = &records.sweep;
    let tot = summary::totals(records);
    let states = if tot.by_state.is_empty() {
        "none".to_string()
    } else {
        tot.by_state
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // The files the sweep file extends, lowest precedence first (a chain of `extends`).
    let extends: Vec<&str> = s.spec["extends"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut rows = vec![("File", opt(&s.file).to_string())];
    if !extends.is_empty() {
        rows.push(("Extends", extends.join(", ")));
    }
    rows.extend([
        ("Profile", opt(&s.profile).to_string()),
        ("Kind", opt(&s.kind).to_string()),
        ("Created", opt_text(&s.created_at).to_string()),
        ("Updated", opt_text(&s.updated_at).to_string()),
        ("First trial started", opt(&tot.first_started).to_string()),
        ("Last trial finished", opt(&tot.last_finished).to_string()),
        ("Trials", format!("{} ({states})", tot.trials)),
        ("GPU time", format_duration(tot.gpu_seconds)),
        ("CPU time", format_duration(tot.cpu_seconds)),
    ]);
    html! {
        header {
            h1 { (sweep_title(records)) }
            p.muted { "Sweep " code { (s.name) } }
            @if let Some(d) = &s.description { p { (d) } }
            (kv_table(rows))
        }
        "\n"
    }
}

/// The sweep's title, else its name.
pub fn sweep_title(records: &SweepRecords) -> &str {
    records
        .sweep
        .title
        .as_deref()
        .unwrap_or(&records.sweep.name)
}

fn plots_section(records: &SweepRecords, table: &PaperTable) -> Markup {
    let curves = plots::loss_curves(records, table);
    let tp = plots::throughput(records, table);
    html! {
        section #plots {
            h2 { "Plots" }
            @if let Some(p) = plots::axis_plot(table) {
                @if p.series.iter().any(|s| !s.points.is_empty()) {
                    (figure(svg_axis_plot(&p), "Final perplexity per row; error bars: the 95% interval of a row's mean over its seeds."))
                } @else {
                    p.muted { "No completed trial yet: no perplexity plot." }
                }
            }
            @for (split, title) in [("train", "Train loss vs optimizer step"), ("valid", "Valid loss vs optimizer step")] {
                @let cs: Vec<&Curve> = curves.iter().filter(|c| c.split == split).collect();
                @if cs.is_empty() {
                    p.muted { "No " (split) " metrics recorded yet." }
                } @else {
                    (curves_figure(title, &cs, &if cs.iter().any(|c| c.err.is_some()) {
                        format!("{split} loss per trial; a row with several seeds is their mean, error bars its 95% interval.")
                    } else {
                        format!("{split} loss per trial.")
                    }))
                }
            }
            @if tp.is_empty() {
                p.muted { "No throughput recorded yet." }
            } @else {
                (figure(svg_throughput(&tp), if tp.iter().any(|b| b.2.is_some()) {
                    "Final training throughput per trial; a row with several seeds is their mean, error bar its 95% interval."
                } else {
                    "Final training throughput per trial."
                }))
            }
            @if super::search::SearchSpec::of(&records.sweep.spec).is_none() {
                @if let Some(e) = effects::table_evp(table) {
                    (figure(svg_evp(&e, "Expected best valid PPL vs configurations tried"), &format!(
                        "Expected validation performance (Dodge et al., 2019): the expected best valid PPL when k of \
                         these {} configurations (rows, each at its mean over seeds) are tried in random order, \
                         without replacement; band: ± one standard deviation.", e.configurations)))
                }
            }
        }
        "\n"
    }
}

fn paper_section(
    records: &SweepRecords,
    table: &PaperTable,
    effects: &Effects,
    groups: &[ScoreGroup],
) -> Markup {
    let notes = data::scale_notes(records);
    let cmp = comparison(table, &records.sweep.spec);
    if cmp.is_none() && notes.is_empty() {
        return html! {};
    }
    html! {
        section #paper {
            h2 { "Beside the paper" }
            @for n in &notes { p.note { (n) } }
            @match &cmp {
                Some(c) => {
                    (score_html(table, groups, effects.flat))
                    (comparison_html(table, c))
                },
                None => p.muted { "The sweep file has no [[reference]] rows." },
            }
        }
        "\n"
    }
}

fn trials_section(records: &SweepRecords, table: &PaperTable) -> Markup {
    let open = records.trials.len() <= 20;
    html! {
        section #trials {
            h2 { "Trials" }
            @for row in &table.rows {
                @let name = plots::row_name(table, row);
                @for tid in &row.trial_ids {
                    @if let Some(t) = records.trials.iter().find(|t| t.id == *tid) {
                        (trial_html(records, t, &name, open))
                    }
                }
            }
        }
        "\n"
    }
}

/// Everything the report shows of one sweep, without the page around it and the footer: the
/// header, the paper-layout table, the comparison with the paper, the plots and the trials.
pub fn report_body(records: &SweepRecords) -> Markup {
    if records.trials.is_empty() {
        return html! {
            (header(records))
            p.note { "This sweep has no trials yet: nothing to tabulate or plot." }
        };
    }
    let table = data::paper_table(records);
    let layout = match table.layout {
        data::Layout::Ablation => "layout of the paper's Tables 3–7",
        data::Layout::ModelSize => "layout of the paper's Table 8",
    };
    let effects = effects::effects(records, &table);
    let groups = score::reproduction(&table, &records.sweep.spec, &effects);
    html! {
        (header(records))
        // A search's own view first: its history, best trials, slices and coordinates.
        (super::search_html::search_section(records))
        section #table {
            h2 { "Results (" (layout) ")" }
            (paper_table_html(&table))
            p.muted { "* baseline row. Bold: best value of its column. 4 decimals." }
        }
        "\n"
        (effects_section(&table, &effects, &groups))
        (paper_section(records, &table, &effects, &groups))
        (plots_section(records, &table))
        (trials_section(records, &table))
    }
}

/// The whole report of one sweep. `generated_at` is printed in the footer (pass a fixed value
/// for reproducible output).
pub fn render_report(records: &SweepRecords, generated_at: &str) -> String {
    let title = format!("{} — sweep report", sweep_title(records));
    let body = html! { (report_body(records)) (footer(generated_at)) };
    page(&title, html! {}, body).into_string() + "\n"
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
    let body = html! {
        h1 { "Sweep reports" }
        @if entries.is_empty() {
            p.note { "The ledger has no sweeps yet." }
        } @else {
            table {
                thead { tr { th.l { "Sweep" } th.l { "Title" } th.l { "State" } th { "Trials" } th { "Best valid PPL" } } }
                tbody { @for e in entries { tr {
                    td.l { a href=(e.href) { (e.name) } }
                    td.l { (opt(&e.title)) }
                    td.l { (e.state) }
                    td { (e.trials) }
                    td { (num(e.best_valid_ppl, 4)) }
                } } }
            }
        }
        (footer(generated_at))
    };
    page("Sweep reports", html! {}, body).into_string() + "\n"
}
