//! Draws a search sweep's plots as inline SVG with plotters (no scripts; plotters escapes every
//! text): optimization history with the best-so-far line, one slice per parameter (log10 x-axis
//! for log-scaled parameters) and parallel coordinates. Pruned trials are hollow grey circles.
//! The metric's axis is the one [`super::search::metric_axis`] chose (log10 for perplexities).

use anyhow::Result;
use plotters::coord::ranged1d::{BoldPoints, DefaultFormatting, KeyPointHint, LightPoints};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::ops::Range;

use super::search::{Axis, HistoryPoint, Parallel, Scale, Slice};

const W: u32 = 900;
const H: u32 = 460;
const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREY: RGBColor = RGBColor(150, 150, 150);
const GRID: RGBColor = RGBColor(238, 238, 238);

fn pad(lo: f64, hi: f64, frac: f64) -> (f64, f64) {
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let d = if (hi - lo).abs() < 1e-12 {
        lo.abs().max(1.0) * 0.1
    } else {
        (hi - lo) * frac
    };
    (lo - d, hi + d)
}

/// A number for a tick label: short, scientific when tiny or huge.
fn tick(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-2 || x.abs() >= 1e5) {
        format!("{x:.0e}")
    } else {
        format!("{}", (x * 1000.0).round() / 1000.0)
    }
}

fn legend<'a, CT: CoordTranslate>(chart: &mut ChartContext<'a, SVGBackend<'a>, CT>) -> Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}

/// The metric's y coordinate: plotters' f64 axis with chosen ticks (labelled, grid lines).
/// Written here because plotters' own `WithKeyPoints` has no label formatter for f64 axes.
struct MetricCoord {
    inner: RangedCoordf64,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl Ranged for MetricCoord {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(v, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.bold.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.inner.range()
    }
}

/// The metric's y range in drawing coordinates (log10 on a log axis) with its ticks: plotters'
/// own on a linear axis (as `configure_mesh` picks them), on a log axis [`log_ticks`].
fn metric_range(a: &Axis) -> MetricCoord {
    let (lo, hi) = pad(tx(a, a.low), tx(a, a.high), 0.05);
    let inner: RangedCoordf64 = (lo..hi).into();
    let (bold, light) = match a.scale {
        Scale::Log => log_ticks(lo, hi),
        _ => (
            inner.key_points(BoldPoints(11)),
            inner.key_points(LightPoints::new(11, 110)),
        ),
    };
    MetricCoord { inner, bold, light }
}

/// Ticks of a log10 axis from `lo` to `hi` (in log10), as (labelled, grid lines): the powers of
/// ten, else 1-2-5 or 1-2-3-5-7 of each decade, whichever first gives four labels; a range
/// narrower than that (a factor under ~2) gets evenly spaced values instead. Grid lines at 1-9
/// of each decade.
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let (a, b) = (10f64.powf(lo), 10f64.powf(hi));
    let at = |mantissas: &[f64]| -> Vec<f64> {
        let mut out = Vec::new();
        for k in lo.floor() as i32..=hi.ceil() as i32 {
            for m in mantissas {
                let v = m * 10f64.powi(k);
                if (a..=b).contains(&v) {
                    out.push(v.log10());
                }
            }
        }
        out
    };
    let light = at(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    let labelled = [&[1.0][..], &[1.0, 2.0, 5.0], &[1.0, 2.0, 3.0, 5.0, 7.0]]
        .into_iter()
        .map(at)
        .find(|t| t.len() >= 4);
    match labelled {
        Some(bold) => (bold, light),
        None => {
            let r: RangedCoordf64 = (a..b).into();
            let bold: Vec<f64> = r
                .key_points(BoldPoints(6))
                .into_iter()
                .filter(|v| *v > 0.0)
                .map(f64::log10)
                .collect();
            (bold.clone(), bold)
        }
    }
}

/// A tick label of the metric's axis, in the metric's units.
fn y_label(a: &Axis, y: f64) -> String {
    match a.scale {
        Scale::Log => tick(10f64.powf(y)),
        _ => tick(y),
    }
}

/// The metric's axis title.
fn y_desc(a: &Axis) -> String {
    match a.scale {
        Scale::Log => format!("{} (log scale)", a.name),
        _ => a.name.clone(),
    }
}

/// The metric of every trial by trial number on the axis `y` (see
/// [`super::search::metric_axis`]), completed filled, pruned hollow grey, and the best-so-far of
/// the completed ones as a step line.
pub fn svg_history(points: &[HistoryPoint], y: &Axis) -> Result<String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE)?;
        let xmax = points.iter().map(|p| p.number).max().unwrap_or(0) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption("Optimization history", ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(-0.5f64..xmax + 0.5, metric_range(y))?;
        chart
            .configure_mesh()
            .x_desc("Trial")
            .y_desc(y_desc(y))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|v| y_label(y, *v))
            .light_line_style(GRID)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .draw()?;
        let at = |p: &HistoryPoint| (p.number as f64, tx(y, p.value));
        let done = points.iter().filter(|p| !p.pruned);
        chart
            .draw_series(done.map(|p| Circle::new(at(p), 4, BLUE.filled())))?
            .label(format!("{} (completed)", y.name))
            .legend(|(x, y)| Circle::new((x + 10, y), 4, BLUE.filled()));
        let pruned = points.iter().filter(|p| p.pruned);
        chart
            .draw_series(pruned.map(|p| hollow(at(p))))?
            .label("pruned (last reported value)")
            .legend(|(x, y)| Circle::new((x + 10, y), 4, GREY.stroke_width(1)));
        let best = best_steps(points, xmax)
            .into_iter()
            .map(|(x, b)| (x, tx(y, b)));
        chart
            .draw_series(LineSeries::new(best, ORANGE.stroke_width(2)))?
            .label("best so far")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], ORANGE.stroke_width(2)));
        legend(&mut chart)?;
        root.present()?;
    }
    Ok(buf)
}

fn hollow(at: (f64, f64)) -> Circle<(f64, f64), i32> {
    Circle::new(at, 4, GREY.stroke_width(1))
}

/// The best-so-far as a step function from its first value to the last trial.
fn best_steps(points: &[HistoryPoint], xmax: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for p in points {
        let Some(b) = p.best else { continue };
        let x = p.number as f64;
        if let Some(&(_, prev)) = out.last() {
            if prev != b {
                out.push((x, prev));
            }
        }
        out.push((x, b));
    }
    if let Some(&(_, last)) = out.last() {
        out.push((xmax, last));
    }
    out
}

/// The axis' drawing coordinate of a value: log10 on log axes.
fn tx(a: &Axis, x: f64) -> f64 {
    match a.scale {
        Scale::Log => x.max(f64::MIN_POSITIVE).log10(),
        _ => x,
    }
}

/// A parameter against the metric on the axis `y`; log10 x-axis for log-scaled parameters, tick
/// labels for choices.
pub fn svg_slice(s: &Slice, y: &Axis) -> Result<String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE)?;
        let a = &s.axis;
        let (xlo, xhi) = match a.scale {
            Scale::Categorical(_) => (a.low - 0.5, a.high + 0.5),
            _ => pad(tx(a, a.low), tx(a, a.high), 0.03),
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("Slice: {}", a.name), ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(xlo..xhi, metric_range(y))?;
        let fmt_x = |x: &f64| x_label(a, *x);
        let x_desc = match a.scale {
            Scale::Log => format!("{} (log scale)", a.name),
            _ => a.name.clone(),
        };
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc(y))
            .x_labels(x_ticks(a, xlo, xhi))
            .x_label_formatter(&fmt_x)
            .y_label_formatter(&|v| y_label(y, *v))
            .light_line_style(GRID)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .draw()?;
        let at = |p: &(f64, f64, i64, bool)| (tx(a, p.0), tx(y, p.1));
        let done = s.points.iter().filter(|p| !p.3);
        chart
            .draw_series(done.map(|p| Circle::new(at(p), 4, BLUE.filled())))?
            .label("completed")
            .legend(|(x, y)| Circle::new((x + 10, y), 4, BLUE.filled()));
        let pruned = s.points.iter().filter(|p| p.3);
        chart
            .draw_series(pruned.map(|p| hollow(at(p))))?
            .label("pruned")
            .legend(|(x, y)| Circle::new((x + 10, y), 4, GREY.stroke_width(1)));
        legend(&mut chart)?;
        root.present()?;
    }
    Ok(buf)
}

fn x_ticks(a: &Axis, lo: f64, hi: f64) -> usize {
    match &a.scale {
        Scale::Categorical(l) => l.len().clamp(1, 12),
        Scale::Log => ((hi.floor() - lo.ceil()) as usize + 1).clamp(2, 12),
        Scale::Linear => 8,
    }
}

/// A tick label on a parameter's axis: powers of ten on log axes, the choice on categorical ones.
fn x_label(a: &Axis, x: f64) -> String {
    match &a.scale {
        Scale::Log if (x - x.round()).abs() < 1e-6 => tick(10f64.powf(x.round())),
        Scale::Log => String::new(),
        Scale::Linear => tick(x),
        Scale::Categorical(l) => {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < l.len() {
                short(&l[i as usize], 20)
            } else {
                String::new()
            }
        }
    }
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

/// The colour of a line by its rank: dark blue for the best, light orange for the worst.
fn ramp(rank: f64) -> RGBColor {
    let r = rank.clamp(0.0, 1.0);
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * r).round() as u8;
    RGBColor(mix(8, 253), mix(48, 174), mix(107, 97))
}

/// One vertical axis per parameter and one for the metric; one line per completed trial, coloured
/// by its metric (best drawn last, on top); each axis labelled with its ends.
pub fn svg_parallel(p: &Parallel) -> Result<String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE)?;
        let n = p.axes.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption("Parallel coordinates", ("sans-serif", 20))
            .margin(24)
            .build_cartesian_2d(-0.3f64..n - 0.7, -0.12f64..1.1)?;
        let mut lines: Vec<_> = p.lines.iter().collect();
        lines.sort_by(|a, b| b.rank.total_cmp(&a.rank));
        for l in lines {
            let pts = l.coords.iter().enumerate().map(|(i, y)| (i as f64, *y));
            chart.draw_series(LineSeries::new(pts, ramp(l.rank).stroke_width(1)))?;
        }
        let label = ("sans-serif", 13).into_font().color(&BLACK);
        for (i, a) in p.axes.iter().enumerate() {
            let x = i as f64;
            chart.draw_series(LineSeries::new([(x, 0.0), (x, 1.0)], BLACK.stroke_width(1)))?;
            let name = match a.scale {
                Scale::Log => format!("{} (log)", short(&a.name, 18)),
                _ => short(&a.name, 24),
            };
            chart.draw_series([Text::new(name, (x - 0.05, 1.07), label.clone())])?;
            let ticks = axis_ticks(a).into_iter();
            chart.draw_series(ticks.map(|(y, t)| Text::new(t, (x + 0.02, y), label.clone())))?;
        }
        root.present()?;
    }
    Ok(buf)
}

/// Labels along a parallel axis at their heights: every choice (up to 12), or the two ends.
fn axis_ticks(a: &Axis) -> Vec<(f64, String)> {
    match &a.scale {
        Scale::Categorical(l) if l.len() <= 12 => {
            let n = l.len().saturating_sub(1).max(1) as f64;
            let y = |i: usize| if l.len() == 1 { 0.5 } else { i as f64 / n };
            l.iter()
                .enumerate()
                .map(|(i, t)| (y(i), short(t, 14)))
                .collect()
        }
        Scale::Categorical(l) => {
            let end = |t: Option<&String>| short(t.map(String::as_str).unwrap_or(""), 14);
            vec![(0.0, end(l.first())), (1.0, end(l.last()))]
        }
        _ => vec![(0.0, tick(a.low)), (1.0, tick(a.high))],
    }
}
