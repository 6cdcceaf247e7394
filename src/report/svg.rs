//! Draws the report's plots as inline SVG with plotters: perplexity vs the axis, loss curves,
//! throughput bars.

use anyhow::Result;
use plotters::prelude::*;
use serde_json::Value;

use super::data::format_value;
use super::plots::{AxisPlot, Bar, Curve, XScale};

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

/// The series legend in one style for every plot.
fn legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}

/// Perplexity vs axis value, with error bars: the 95% interval of a row's mean over seeds.
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
                        format_value(&Value::from(2f64.powf(x.round())))
                    } else {
                        String::new()
                    }
                }
                XScale::Linear => format_value(&Value::from(*x)),
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
        legend(&mut chart, corner)?;
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
        let (mut xmax, mut ylo, mut yhi) = (0f64, f64::INFINITY, f64::NEG_INFINITY);
        for c in curves {
            for (i, (x, y)) in c.points.iter().enumerate() {
                let e = c
                    .err
                    .as_ref()
                    .and_then(|e| e.get(i))
                    .copied()
                    .unwrap_or(0.0);
                xmax = xmax.max(*x);
                ylo = ylo.min(y - e);
                yhi = yhi.max(y + e);
            }
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
            // A row's mean over seeds: its 95% interval at about 25 of its points.
            if let Some(err) = &c.err {
                let every = c.points.len().div_ceil(25).max(1);
                chart.draw_series(
                    c.points
                        .iter()
                        .zip(err)
                        .step_by(every)
                        .filter(|(_, e)| **e > 0.0)
                        .map(|((x, y), e)| {
                            ErrorBar::new_vertical(*x, y - e, *y, y + e, col.stroke_width(1), 6)
                        }),
                )?;
            }
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present()?;
    }
    Ok(buf)
}

/// Training throughput per trial (or per row of seeds, with its 95% interval) as bars.
pub fn svg_throughput(items: &[Bar]) -> Result<String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (PLOT_W, PLOT_H)).into_drawing_area();
        root.fill(&WHITE)?;
        let ymax = items
            .iter()
            .map(|i| i.1 + i.2.unwrap_or(0.0))
            .fold(0f64, f64::max)
            .max(1.0)
            * 1.12;
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
            .draw_series(items.iter().enumerate().map(|(i, (_, v, _))| {
                Rectangle::new([(i as f64 - half, 0.0), (i as f64 + half, *v)], c.filled())
            }))?
            .label("tokens/s (training, final)")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], c.filled()));
        chart.draw_series(items.iter().enumerate().filter_map(|(i, (_, v, e))| {
            e.map(|e| ErrorBar::new_vertical(i as f64, v - e, *v, v + e, BLACK.stroke_width(1), 10))
        }))?;
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present()?;
    }
    Ok(buf)
}
