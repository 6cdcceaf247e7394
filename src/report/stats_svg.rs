//! Draws the plots of seed statistics as inline SVG with plotters: forest plots (each row's
//! change from the baseline with its 95% interval, the paper's change, the ±flat band) and
//! expected validation performance (the expected best of k configurations, ± one sd).

use anyhow::Result;
use plotters::prelude::*;

use super::effects::Evp;
use super::forest::Forest;
use crate::stats::Verdict;

const PLOT_W: u32 = 900;

/// The colour of a verdict: up red, down green (lower loss is better), flat grey, inconclusive
/// amber.
fn verdict_color(v: Verdict) -> RGBColor {
    match v {
        Verdict::Up => RGBColor(180, 30, 30),
        Verdict::Down => RGBColor(20, 120, 40),
        Verdict::Flat => RGBColor(110, 110, 110),
        Verdict::Inconclusive => RGBColor(200, 130, 0),
    }
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

/// A forest plot: one line per row (top to bottom), x the relative change in percent. The colours
/// and marks are explained in the figure's caption (a legend would cover rows).
pub fn svg_forest(f: &Forest) -> Result<String> {
    let n = f.rows.len().max(1);
    let height = (150 + 34 * n).max(260) as u32;
    let pct = |v: f64| v * 100.0;
    let mut lo = -pct(f.flat);
    let mut hi = pct(f.flat);
    for r in &f.rows {
        for v in [
            Some(r.change),
            r.ci95.map(|c| c[0]),
            r.ci95.map(|c| c[1]),
            r.paper,
        ]
        .into_iter()
        .flatten()
        .filter(|v| v.is_finite())
        {
            lo = lo.min(pct(v));
            hi = hi.max(pct(v));
        }
    }
    let pad = (hi - lo).max(1e-9) * 0.08;
    let (lo, hi) = (lo - pad, hi + pad);
    let names: Vec<String> = f.rows.iter().map(|r| short(&r.name, 40)).collect();
    let label_width = names.iter().map(|s| s.chars().count()).max().unwrap_or(8);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (PLOT_W, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(short(&f.title, 90), ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size((label_width * 7 + 20).clamp(80, 320) as u32)
            .build_cartesian_2d(lo..hi, -0.5f64..n as f64 - 0.5)?;
        let fmt_y = |y: &f64| {
            let i = y.round();
            // Row 0 at the top.
            let k = n as f64 - 1.0 - i;
            if (y - i).abs() < 1e-6 && k >= 0.0 && (k as usize) < names.len() {
                names[k as usize].clone()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_desc(format!(
                "{} change from the baseline (%)",
                f.metric.header()
            ))
            .x_label_formatter(&|x| format!("{x:+.1}"))
            .y_labels(n)
            .y_label_formatter(&fmt_y)
            .disable_y_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(232, 232, 232))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .draw()?;
        // The flat band: changes within it count as no effect.
        chart.draw_series(std::iter::once(Rectangle::new(
            [(-pct(f.flat), -0.5), (pct(f.flat), n as f64 - 0.5)],
            RGBColor(190, 190, 190).mix(0.45).filled(),
        )))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, -0.5), (0.0, n as f64 - 0.5)],
            BLACK.stroke_width(1),
        )))?;
        for (i, r) in f.rows.iter().enumerate() {
            let y = n as f64 - 1.0 - i as f64;
            let c = verdict_color(r.verdict);
            if let Some([a, b]) = r.ci95 {
                chart.draw_series(std::iter::once(ErrorBar::new_horizontal(
                    y,
                    pct(a),
                    pct(r.change),
                    pct(b),
                    c.stroke_width(2),
                    10,
                )))?;
            }
            chart.draw_series(std::iter::once(Circle::new(
                (pct(r.change), y),
                5,
                c.filled(),
            )))?;
            if let Some(p) = r.paper {
                chart.draw_series(std::iter::once(Cross::new(
                    (pct(p), y),
                    6,
                    RGBColor(31, 119, 180).stroke_width(2),
                )))?;
            }
        }
        root.present()?;
    }
    Ok(buf)
}

/// Expected validation performance: the expected best value of k configurations, k = 1..N,
/// ± one standard deviation.
pub fn svg_evp(e: &Evp, title: &str) -> Result<String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (PLOT_W, 400)).into_drawing_area();
        root.fill(&WHITE)?;
        let (mut ylo, mut yhi) = (f64::INFINITY, f64::NEG_INFINITY);
        for p in &e.points {
            ylo = ylo.min(p.mean - p.sd());
            yhi = yhi.max(p.mean + p.sd());
        }
        let pad = ((yhi - ylo).abs() * 0.08).max(1e-9);
        let n = e.points.len() as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(0.5f64..n + 0.5, ylo - pad..yhi + pad)?;
        let whole = |x: &f64| {
            if (x - x.round()).abs() < 1e-6 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_desc("Configurations tried (k)")
            .y_desc(format!("Expected best {}", e.metric))
            .x_labels((n as usize).clamp(2, 12))
            .x_label_formatter(&whole)
            .y_label_formatter(&|y| format!("{y:.2}"))
            .light_line_style(RGBColor(238, 238, 238))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .draw()?;
        let c = RGBColor(31, 119, 180);
        let band: Vec<(f64, f64)> = e
            .points
            .iter()
            .map(|p| (p.k as f64, p.mean + p.sd()))
            .chain(e.points.iter().rev().map(|p| (p.k as f64, p.mean - p.sd())))
            .collect();
        chart
            .draw_series(std::iter::once(Polygon::new(band, c.mix(0.18).filled())))?
            .label("± one standard deviation")
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 16, y + 5)], c.mix(0.3).filled())
            });
        chart
            .draw_series(LineSeries::new(
                e.points.iter().map(|p| (p.k as f64, p.mean)),
                c.stroke_width(2),
            ))?
            .label("expected best of k")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()?;
        root.present()?;
    }
    Ok(buf)
}
