//! Renders report data to one self-contained HTML file (inline CSS, inline SVG plots, no scripts).

use anyhow::Result;
use plotters::prelude::*;
use serde_json::Value;
use std::fmt::Write as _;

use super::data::{self, AxisPlot, Comparison, Curve, PaperTable, Stat, XScale};
use super::load::{SweepRecords, TrialInfo};

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
pre{background:#f7f7f7;padding:.5rem;overflow-x:auto;white-space:pre-wrap;word-break:break-word;font-size:.85rem}
pre.error{background:#fdecec;border-left:4px solid #c00}
figure{margin:1rem 0}figure svg{max-width:100%;height:auto;border:1px solid #eee}
details{margin:.4rem 0;border:1px solid #e4e4e4;border-radius:4px;padding:.3rem .6rem}summary{cursor:pointer}
.sample{border-left:3px solid #8ab;padding-left:.6rem;margin:.6rem 0}
.state-completed{color:#006400}.state-failed,.state-diverged{color:#a40000}.state-running,.state-pending,.state-interrupted{color:#8a6d00}
@media print{body{max-width:none;margin:0}figure{break-inside:avoid}details{border:none}}
"#;

/// Tableau-10: distinguishable in colour and in greyscale print.
const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

fn color(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

/// Legends list at most this many entries; more would cover the plot.
const MAX_LEGEND: usize = 12;
const PLOT_W: u32 = 900;
const PLOT_H: u32 = 460;

fn pad_range(lo: f64, hi: f64, frac: f64) -> (f64, f64) {
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if (hi - lo).abs() < 1e-12 {
        let d = if lo.abs() > 1e-12 {
            lo.abs() * 0.1
        } else {
            1.0
        };
        return (lo - d, hi + d);
    }
    let d = (hi - lo) * frac;
    (lo - d, hi + d)
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// Perplexity vs axis value, with error bars for seed std.
pub fn svg_axis_plot(p: &AxisPlot) -> Result<String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (PLOT_W, PLOT_H)).into_drawing_area();
        root.fill(&WHITE)?;
        let tx = |x: f64| match p.x_scale {
            XScale::Log2 => x.log2(),
            _ => x,
        };
        let all: Vec<(f64, f64, Option<f64>)> = p
            .series
            .iter()
            .flat_map(|s| s.points.iter().cloned())
            .collect();
        let (xlo, xhi) = match &p.x_scale {
            XScale::Categorical(l) => (-0.5, l.len() as f64 - 0.5),
            XScale::Log2 => pad_range(
                all.iter().map(|a| tx(a.0)).fold(f64::INFINITY, f64::min),
                all.iter()
                    .map(|a| tx(a.0))
                    .fold(f64::NEG_INFINITY, f64::max),
                0.08,
            ),
            XScale::Linear => pad_range(
                all.iter().map(|a| a.0).fold(f64::INFINITY, f64::min),
                all.iter().map(|a| a.0).fold(f64::NEG_INFINITY, f64::max),
                0.08,
            ),
        };
        let (ylo, yhi) = pad_range(
            all.iter()
                .map(|a| a.1 - a.2.unwrap_or(0.0))
                .fold(f64::INFINITY, f64::min),
            all.iter()
                .map(|a| a.1 + a.2.unwrap_or(0.0))
                .fold(f64::NEG_INFINITY, f64::max),
            0.1,
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(&p.title, ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(xlo..xhi, ylo..yhi)?;
        let n_labels = match &p.x_scale {
            XScale::Categorical(l) => l.len().clamp(1, 12),
            XScale::Log2 => ((xhi.floor() - xlo.ceil()) as usize + 1).clamp(2, 16),
            XScale::Linear => 8,
        };
        let fmt_x = |x: &f64| -> String {
            match &p.x_scale {
                XScale::Log2 => {
                    if (x - x.round()).abs() < 1e-6 {
                        data::format_value(&Value::from(2f64.powf(x.round())))
                    } else {
                        String::new()
                    }
                }
                XScale::Linear => data::format_value(&Value::from(*x)),
                XScale::Categorical(l) => {
                    let i = x.round();
                    if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < l.len() {
                        short(&l[i as usize], 28)
                    } else {
                        String::new()
                    }
                }
            }
        };
        chart
            .configure_mesh()
            .x_desc(&p.x_label)
            .y_desc(&p.y_label)
            .x_labels(n_labels)
            .x_label_formatter(&fmt_x)
            .y_label_formatter(&|y| format!("{y:.2}"))
            .light_line_style(RGBColor(238, 238, 238))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .draw()?;
        for (i, s) in p.series.iter().enumerate() {
            let c = color(i);
            let pts: Vec<(f64, f64)> = s.points.iter().map(|(x, y, _)| (tx(*x), *y)).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
            chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, c.filled())))?;
            chart.draw_series(s.points.iter().filter_map(|(x, y, sd)| {
                sd.map(|sd| {
                    ErrorBar::new_vertical(tx(*x), y - sd, *y, y + sd, c.stroke_width(1), 10)
                })
            }))?;
        }
        let corner = emptiest_corner(all.iter().map(|a| (tx(a.0), a.1)), (xlo, xhi), (ylo, yhi));
        chart
            .configure_series_labels()
            .position(corner)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
        root.present()?;
    }
    Ok(buf)
}

/// The plot corner (40% x 40% of the area) holding the fewest points: where the legend hides
/// the least data. Ties prefer upper right.
fn emptiest_corner(
    pts: impl Iterator<Item = (f64, f64)>,
    (xlo, xhi): (f64, f64),
    (ylo, yhi): (f64, f64),
) -> SeriesLabelPosition {
    let mut counts = [0usize; 4]; // UR, LR, UL, LL
    for (x, y) in pts {
        let fx = (x - xlo) / (xhi - xlo);
        let fy = (y - ylo) / (yhi - ylo);
        let right = fx > 0.6;
        let left = fx < 0.4;
        let top = fy > 0.6;
        let bottom = fy < 0.4;
        for (i, hit) in [right && top, right && bottom, left && top, left && bottom]
            .iter()
            .enumerate()
        {
            counts[i] += *hit as usize;
        }
    }
    let best = (0..4).min_by_key(|i| counts[*i]).unwrap_or(0);
    [
        SeriesLabelPosition::UpperRight,
        SeriesLabelPosition::LowerRight,
        SeriesLabelPosition::UpperLeft,
        SeriesLabelPosition::LowerLeft,
    ][best]
        .clone()
}

/// Loss vs optimizer step, one line per trial, for one split.
pub fn svg_curves(title: &str, curves: &[&Curve]) -> Result<String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (PLOT_W, PLOT_H)).into_drawing_area();
        root.fill(&WHITE)?;
        let pts = curves.iter().flat_map(|c| c.points.iter());
        let (mut xmax, mut ylo, mut yhi) = (0f64, f64::INFINITY, f64::NEG_INFINITY);
        for (x, y) in pts {
            xmax = xmax.max(*x);
            ylo = ylo.min(*y);
            yhi = yhi.max(*y);
        }
        let (ylo, yhi) = pad_range(ylo, yhi, 0.05);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(0f64..xmax.max(1.0) * 1.02, ylo..yhi)?;
        chart
            .configure_mesh()
            .x_desc("Optimizer step")
            .y_desc("Loss (nats per token)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.2}"))
            .light_line_style(RGBColor(238, 238, 238))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .draw()?;
        for (i, c) in curves.iter().enumerate() {
            let col = color(i);
            let series = chart.draw_series(LineSeries::new(
                c.points.iter().cloned(),
                col.stroke_width(if curves.len() > 50 { 1 } else { 2 }),
            ))?;
            if i < MAX_LEGEND {
                series.label(short(&c.name, 40)).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                });
            } else if i == MAX_LEGEND {
                series
                    .label(format!("… and {} more trials", curves.len() - MAX_LEGEND))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], WHITE));
            }
            if c.points.len() <= 50 {
                chart.draw_series(c.points.iter().map(|p| Circle::new(*p, 3, col.filled())))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
        root.present()?;
    }
    Ok(buf)
}

/// Training throughput per trial as bars.
pub fn svg_throughput(items: &[(String, f64)]) -> Result<String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (PLOT_W, PLOT_H)).into_drawing_area();
        root.fill(&WHITE)?;
        let ymax = items.iter().map(|i| i.1).fold(0f64, f64::max).max(1.0) * 1.12;
        let n = items.len();
        let mut chart = ChartBuilder::on(&root)
            .caption("Training throughput per trial", ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..ymax)?;
        let fmt_x = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                short(&items[i as usize].0, 24)
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_desc("Trial")
            .y_desc("Throughput (tokens/s)")
            .x_labels(n.clamp(1, 10))
            .x_label_formatter(&fmt_x)
            .y_label_formatter(&|y| format!("{y:.0}"))
            .disable_x_mesh()
            .light_line_style(RGBColor(238, 238, 238))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .draw()?;
        let c = color(0);
        let half = 0.38;
        chart
            .draw_series(items.iter().enumerate().map(|(i, (_, v))| {
                Rectangle::new([(i as f64 - half, 0.0), (i as f64 + half, *v)], c.filled())
            }))?
            .label("tokens/s (training, final)")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], c.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
        root.present()?;
    }
    Ok(buf)
}

fn opt(s: &Option<String>) -> String {
    s.as_deref().map(esc).unwrap_or_else(|| "—".into())
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
                esc(&data::row_name(t, r)),
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

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn trial_html(h: &mut String, records: &SweepRecords, t: &TrialInfo, name: &str, open: bool) {
    let state_cls = format!(
        "state-{}",
        t.state.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    let _ = write!(
        h,
        "<details{}><summary>Trial {} · {} · <span class=\"{}\">{}</span> · {}</summary>",
        if open { " open" } else { "" },
        t.id,
        esc(name),
        esc(&state_cls),
        esc(&t.state),
        t.wall_seconds
            .map(data::format_duration)
            .unwrap_or_else(|| "—".into())
    );
    h.push_str("<table class=\"kv\">");
    let mut kv = |k: &str, v: String| {
        let _ = write!(h, "<tr><td>{}</td><td>{v}</td></tr>", esc(k));
    };
    kv("Hash", esc(&t.hash));
    kv(
        "State",
        format!("{} (attempts: {})", esc(&t.state), t.attempts),
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
        t.wall_seconds
            .map(data::format_duration)
            .unwrap_or_else(|| "—".into()),
    );
    kv(
        "Train time",
        t.train_seconds
            .map(data::format_duration)
            .unwrap_or_else(|| "—".into()),
    );
    kv("Throughput", format!("{} tokens/s", num(t.tokens_per_s, 1)));
    kv(
        "Peak memory (RSS)",
        t.peak_rss_bytes
            .map(data::format_bytes)
            .unwrap_or_else(|| "—".into()),
    );
    kv(
        "Loss (train / valid / test)",
        format!(
            "{} / {} / {}",
            num(t.train_loss, 4),
            num(t.valid_loss, 4),
            num(t.test_loss, 4)
        ),
    );
    kv(
        "PPL (train / valid / test)",
        format!(
            "{} / {} / {}",
            num(t.train_ppl, 4),
            num(t.valid_ppl, 4),
            num(t.test_ppl, 4)
        ),
    );
    if t.valid_loss_fixed.is_some() {
        kv("Valid loss at fixed context", num(t.valid_loss_fixed, 4));
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
        if let Some(k) = super::data::key_term_scores(records)
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
                opt(&s.title),
                opt(&s.text)
            );
            let mut meta = Vec::new();
            if let Some(seed) = s.seed {
                meta.push(format!("seed {seed}"));
            }
            if let Some(a) = s.uses_acronym {
                meta.push(format!("uses an acronym: {}", if a { "yes" } else { "no" }));
            }
            if let Some(p) = &s.params {
                meta.push(format!("params {}", p));
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
    let tot = data::totals(records);
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
        ("Created", opt(&s.created_at)),
        ("Updated", opt(&s.updated_at)),
        ("First trial started", opt(&tot.first_started)),
        ("Last trial finished", opt(&tot.last_finished)),
        ("Trials", format!("{} ({})", tot.trials, esc(&states))),
        ("GPU time", data::format_duration(tot.gpu_seconds)),
        ("CPU time", data::format_duration(tot.cpu_seconds)),
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
        let cmp = data::comparison(&table, &s.spec);
        if cmp.is_some() || !notes.is_empty() {
            h.push_str("<section id=\"paper\"><h2>Beside the paper</h2>");
            for n in &notes {
                let _ = write!(h, "<p class=\"note\">{}</p>", esc(n));
            }
            match &cmp {
                Some(c) => h.push_str(&comparison_html(&table, c)),
                None => {
                    h.push_str("<p class=\"muted\">The sweep file has no [[reference]] rows.</p>")
                }
            }
            h.push_str("</section>\n");
        }

        h.push_str("<section id=\"plots\"><h2>Plots</h2>");
        if let Some(p) = data::axis_plot(&table) {
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
        let curves = data::loss_curves(records, &table);
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
        let tp = data::throughput(records, &table);
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
            let name = data::row_name(&table, row);
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
