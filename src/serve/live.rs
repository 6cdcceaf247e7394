//! The running trials of a sweep, live: their snapshot (pure over the ledger's records) with the
//! rows' effects over seeds, the JSON endpoint that long-polls for a change, the inline SVG of a
//! curve and the page script.

use anyhow::Result;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{AppError, AppState};
use crate::report::data::format_value;
use crate::report::effects;
use crate::report::markup::num;
use crate::report::plots::thin;
use crate::store::{self, MetricRecord, Reader, SweepTrial, TrialState};

/// The longest a poll that names the version it has waits for a newer one.
pub const LONG_POLL: Duration = Duration::from_secs(15);
/// How often a waiting poll looks at the (cached) snapshot again.
const RECHECK: Duration = Duration::from_millis(500);
/// Points per curve sent to the page (the full count is in `points`).
const MAX_POINTS: usize = 300;

/// One running trial with its loss curves.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LiveTrial {
    pub id: i64,
    /// `#id` and the axis values of its row (`#3 block_size=64 seed=1`).
    pub name: String,
    /// Optimizer step of the last train row (0 before the first).
    pub step: i64,
    /// Train metric rows recorded so far (the curve's full length).
    pub points: usize,
    pub loss: Option<f64>,
    pub tokens_per_s: Option<f64>,
    /// (step, loss), thinned to [`MAX_POINTS`].
    pub train: Vec<(f64, f64)>,
    pub valid: Vec<(f64, f64)>,
}

/// The running trials of one sweep and its rows' effects; `version` changes whenever a trial
/// starts, stops, records a row or completes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Snapshot {
    pub version: String,
    pub trials: Vec<LiveTrial>,
    /// Their validation loss on one chart, drawn above the per-trial cards.
    pub overlay: Overlay,
    /// The report's effects table (valid PPL against the baseline, over seeds), row by row as
    /// text: `live.js` refills the table with it as seeds finish. Empty without seeds.
    pub effects: Vec<LiveEffect>,
}

/// One row of the effects table: the row's name and its cells as the report shows them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LiveEffect {
    pub row: String,
    pub cells: Vec<String>,
}

/// The effects table of a sweep's members (their final numbers; no metric rows needed).
fn live_effects(sweep: &store::SweepRecord, members: Vec<SweepTrial>) -> Vec<LiveEffect> {
    let records = store::SweepRecords {
        sweep: sweep.clone(),
        trials: members,
        metrics: Vec::new(),
        samples: Vec::new(),
    };
    let table = crate::report::data::paper_table(&records);
    let e = effects::effects(&records, &table);
    if !effects::shows_effects(&table, &e) {
        return Vec::new();
    }
    effects::effect_table(&table, &e, crate::report::data::Metric::ValidPpl)
        .1
        .into_iter()
        .map(|(row, cells)| LiveEffect { row, cells })
        .collect()
}

/// `#id k=v ...` from a trial's row label.
fn trial_name(t: &SweepTrial) -> String {
    let mut name = format!("#{}", t.id);
    for (k, v) in t.label_map() {
        name.push_str(&format!(" {k}={}", format_value(v)));
    }
    name
}

fn curve(metrics: &[MetricRecord], split: &str) -> Vec<(f64, f64)> {
    let pts: Vec<(f64, f64)> = metrics
        .iter()
        .filter(|m| m.split == split && m.loss.is_finite())
        .map(|m| (m.step as f64, m.loss))
        .collect();
    thin(&pts, MAX_POINTS)
}

/// A running trial's live values from its metric rows (pure).
pub fn live_trial(t: &SweepTrial, metrics: &[MetricRecord]) -> LiveTrial {
    let last = metrics.iter().rev().find(|m| m.split == "train");
    LiveTrial {
        id: t.id,
        name: trial_name(t),
        step: last.map_or(0, |m| m.step),
        points: metrics.iter().filter(|m| m.split == "train").count(),
        loss: last.map(|m| m.loss).filter(|l| l.is_finite()),
        tokens_per_s: last.map(|m| m.tokens_per_s).filter(|v| v.is_finite()),
        train: curve(metrics, "train"),
        valid: curve(metrics, "valid"),
    }
}

/// The running trials of the sweep called `name` (a usage error if there is none).
pub fn snapshot(reader: &dyn Reader, name: &str) -> Result<Snapshot> {
    let sweep = store::read::sweep_named(reader, name)?;
    let mut trials = Vec::new();
    let mut version = Vec::new();
    let members = reader.sweep_trials(sweep.id)?;
    for t in &members {
        if t.state != TrialState::Running {
            continue;
        }
        let metrics = reader.metrics(t.id)?;
        version.push(format!("{}:{}:{}", t.id, t.attempts, metrics.len()));
        trials.push(live_trial(t, &metrics));
    }
    // A seed that completes changes the effects even when no trial is running any more.
    let completed = members
        .iter()
        .filter(|t| t.state == TrialState::Completed)
        .count();
    version.push(format!("done:{completed}"));
    Ok(Snapshot {
        version: version.join(","),
        overlay: overlay(&trials),
        trials,
        effects: live_effects(&sweep, members),
    })
}

/// The snapshot of `name` as (version, JSON), cached for [`super::CACHE_TTL`].
pub async fn cached_snapshot(
    state: &Arc<AppState>,
    name: &str,
) -> Result<Arc<(String, String)>, AppError> {
    let n = name.to_string();
    state
        .live
        .get(state, &format!("live:{name}"), move |s| {
            let snap = snapshot(s.reader.as_ref(), &n)?;
            let json = serde_json::to_string(&snap)
                .map_err(|e| AppError::Internal(format!("encoding the snapshot: {e}")))?;
            Ok((snap.version, json))
        })
        .await
}

#[derive(Debug, Deserialize)]
pub struct Poll {
    /// The version the page shows: the answer waits (up to [`LONG_POLL`]) for another one.
    pub v: Option<String>,
}

/// `GET /api/sweep/{name}/running[?v=VERSION]`: the running trials as JSON; with `v`, answers
/// when the snapshot's version differs from `v` or after [`LONG_POLL`].
pub async fn running(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    Query(poll): Query<Poll>,
) -> Result<Response, AppError> {
    let deadline = Instant::now() + LONG_POLL;
    loop {
        let snap = cached_snapshot(&state, &name).await?;
        let waiting = poll.v.as_deref() == Some(snap.0.as_str());
        if !waiting || Instant::now() >= deadline {
            let mut r = snap.1.clone().into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Ok(r);
        }
        tokio::time::sleep(RECHECK).await;
    }
}

/// The page script, served from this origin (the pages' CSP allows no inline script).
pub const SCRIPT: &str = include_str!("live.js");

/// `GET /static/live.js`.
pub async fn script() -> Response {
    let mut r = SCRIPT.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    r
}

/// Width and height of a live plot (SVG user units); `live.js` draws with the same numbers.
pub const W: f64 = 600.0;
pub const H: f64 = 220.0;
const PAD: f64 = 34.0;

/// The axes of a live plot: x from step 0 to `xmax`, y from `lo` to `hi`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Frame {
    pub lo: f64,
    pub hi: f64,
    pub xmax: f64,
}

impl Frame {
    /// The axes that hold every point of `curves` (a flat range around a single value).
    pub fn around<'a>(curves: impl IntoIterator<Item = &'a [(f64, f64)]>) -> Frame {
        let (mut xmax, mut lo, mut hi) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
        for &(x, y) in curves.into_iter().flatten() {
            xmax = xmax.max(x);
            lo = lo.min(y);
            hi = hi.max(y);
        }
        let (lo, hi) = if lo.is_finite() && hi > lo {
            (lo, hi)
        } else if lo.is_finite() {
            (lo - 0.5, lo + 0.5)
        } else {
            (0.0, 1.0)
        };
        Frame { lo, hi, xmax }
    }

    /// A point in screen coordinates.
    fn at(&self, (x, y): (f64, f64)) -> (f64, f64) {
        let sx = PAD + x / self.xmax * (W - 2.0 * PAD);
        let sy = H - PAD - (y - self.lo) / (self.hi - self.lo) * (H - 2.0 * PAD);
        (sx, sy)
    }

    /// A curve as SVG `points`.
    pub fn line(&self, pts: &[(f64, f64)]) -> String {
        pts.iter()
            .map(|&p| {
                let (sx, sy) = self.at(p);
                format!("{sx:.1},{sy:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The curves in screen coordinates (SVG `points`) and the ranges they span.
#[derive(Debug, PartialEq)]
pub struct Scaled {
    pub train: String,
    pub valid: String,
    pub lo: f64,
    pub hi: f64,
    pub xmax: f64,
}

/// Screen coordinates of the curves: x from step 0 to the last step, y over both splits' range.
pub fn polylines(train: &[(f64, f64)], valid: &[(f64, f64)]) -> Scaled {
    let f = Frame::around([train, valid]);
    Scaled {
        train: f.line(train),
        valid: f.line(valid),
        lo: f.lo,
        hi: f.hi,
        xmax: f.xmax,
    }
}

/// Colours of the overlaid chart (matplotlib's tab10; the cards' train blue and valid orange
/// come first there too).
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// One running trial's validation loss on the overlaid chart.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OverlayLine {
    pub id: i64,
    /// `#id` and the trial's axis values: the legend entry.
    pub name: String,
    pub colour: &'static str,
    /// SVG `points` on the shared axes.
    pub points: String,
    /// The last point (screen coordinates), marked so a single evaluation shows too.
    pub last: (f64, f64),
}

/// The running trials' validation loss on shared axes, one colour per trial.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Overlay {
    pub frame: Frame,
    /// The trials with at least one validation row, in snapshot order.
    pub lines: Vec<OverlayLine>,
}

/// The overlaid chart of `trials` (pure). A trial keeps the colour `id mod 10` while it runs
/// unless another running trial took it first; then it gets the next free one, so the colours
/// on the chart differ (for up to ten trials).
pub fn overlay(trials: &[LiveTrial]) -> Overlay {
    let shown: Vec<&LiveTrial> = trials.iter().filter(|t| !t.valid.is_empty()).collect();
    let frame = Frame::around(shown.iter().map(|t| t.valid.as_slice()));
    let mut taken = [false; PALETTE.len()];
    let lines = shown
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let preferred = t.id.rem_euclid(PALETTE.len() as i64) as usize;
            let free = (0..PALETTE.len())
                .map(|k| (preferred + k) % PALETTE.len())
                .find(|&c| !taken[c]);
            let c = free.unwrap_or(i % PALETTE.len());
            taken[c] = true;
            let last = t.valid.last().map_or((0.0, 0.0), |&p| frame.at(p));
            OverlayLine {
                id: t.id,
                name: t.name.clone(),
                colour: PALETTE[c],
                points: frame.line(&t.valid),
                last: (
                    (last.0 * 10.0).round() / 10.0,
                    (last.1 * 10.0).round() / 10.0,
                ),
            }
        })
        .collect();
    Overlay { frame, lines }
}

/// The overlaid chart above the cards, with its legend (`live.js` redraws the same elements);
/// hidden while no running trial has a validation row.
pub fn overlay_figure(o: &Overlay) -> Markup {
    let f = &o.frame;
    html! {
        figure.live-overlay hidden[o.lines.is_empty()] data-lines=(o.lines.len()) {
            svg viewBox={ "0 0 " (W) " " (H) } width=(W) height=(H) role="img" aria-label="validation loss of the running trials" {
                rect x="0" y="0" width=(W) height=(H) fill="#fff" stroke="#ddd" {}
                g.lines {
                    @for l in &o.lines {
                        polyline data-trial=(l.id) points=(l.points) fill="none" stroke=(l.colour) stroke-width="2" {}
                        circle data-trial=(l.id) cx=(l.last.0) cy=(l.last.1) r="3" fill=(l.colour) {}
                    }
                }
                text.hi x="4" y=(PAD - 6.0) font-size="11" { (format!("{:.3}", f.hi)) }
                text.lo x="4" y=(H - PAD + 14.0) font-size="11" { (format!("{:.3}", f.lo)) }
                text.xmax x=(W - PAD) y=(H - 6.0) font-size="11" text-anchor="end" { "step " (f.xmax) }
            }
            figcaption.muted { "Validation loss of every running trial, on shared axes." }
            ul.legend {
                @for l in &o.lines {
                    li data-trial=(l.id) {
                        svg width="14" height="10" { rect width="14" height="10" fill=(l.colour) {} }
                        " " span.name { (l.name) }
                    }
                }
            }
        }
    }
}

/// One running trial's card: name, step, loss, and its curves as inline SVG (`live.js` redraws
/// the same elements).
pub fn trial_card(t: &LiveTrial) -> Markup {
    let s = polylines(&t.train, &t.valid);
    html! {
        div.live-trial data-trial=(t.id) data-points=(t.points) data-initial-points=(t.points) {
            p {
                a href={ "/trial/" (t.id) } { b.name { (t.name) } }
                " · step " span.step { (t.step) }
                " · loss " span.loss { (num(t.loss, 4)) }
                " · " span.tps { (num(t.tokens_per_s, 0)) } " tokens/s"
            }
            svg viewBox={ "0 0 " (W) " " (H) } width=(W) height=(H) role="img" aria-label="loss vs optimizer step" {
                rect x="0" y="0" width=(W) height=(H) fill="#fff" stroke="#ddd" {}
                polyline.train points=(s.train) fill="none" stroke="#1f77b4" stroke-width="2" {}
                polyline.valid points=(s.valid) fill="none" stroke="#ff7f0e" stroke-width="2" {}
                text.hi x="4" y=(PAD - 6.0) font-size="11" { (format!("{:.3}", s.hi)) }
                text.lo x="4" y=(H - PAD + 14.0) font-size="11" { (format!("{:.3}", s.lo)) }
                text.xmax x=(W - PAD) y=(H - 6.0) font-size="11" text-anchor="end" { "step " (s.xmax) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(split: &str, step: i64, loss: f64) -> MetricRecord {
        MetricRecord {
            split: split.into(),
            step,
            loss,
            tokens_per_s: 100.0,
            ..Default::default()
        }
    }

    #[test]
    fn live_trial_counts_and_names() {
        let t = SweepTrial {
            label: serde_json::json!({"block_size": 64}),
            trial: crate::store::TrialRecord {
                id: 7,
                ..Default::default()
            },
            ..Default::default()
        };
        let rows = [
            m("train", 1, 5.0),
            m("train", 2, 4.0),
            m("valid", 2, 4.5),
            m("train", 3, f64::NAN),
        ];
        let l = live_trial(&t, &rows);
        assert_eq!(l.name, "#7 block_size=64");
        assert_eq!((l.step, l.points, l.loss), (3, 3, None));
        assert_eq!(l.train, vec![(1.0, 5.0), (2.0, 4.0)]);
        assert_eq!(l.valid, vec![(2.0, 4.5)]);
    }

    fn running(id: i64, name: &str, valid: &[(f64, f64)]) -> LiveTrial {
        LiveTrial {
            id,
            name: name.into(),
            step: 0,
            points: 0,
            loss: None,
            tokens_per_s: None,
            train: vec![],
            valid: valid.to_vec(),
        }
    }

    #[test]
    fn the_overlay_puts_every_trials_valid_loss_on_shared_axes() {
        let trials = [
            running(3, "#3 lr=0.001", &[(0.0, 6.0), (100.0, 4.0)]),
            running(13, "#13 lr=0.01", &[(0.0, 7.0), (50.0, 5.0)]),
            running(4, "#4 lr=0.1", &[]),
        ];
        let o = overlay(&trials);
        // Shared axes: the widest step and both trials' loss range.
        assert_eq!(
            o.frame,
            Frame {
                lo: 4.0,
                hi: 7.0,
                xmax: 100.0
            }
        );
        // A trial without a validation row has no line; 13 would share 3's colour, so it moves.
        let ids: Vec<i64> = o.lines.iter().map(|l| l.id).collect();
        assert_eq!(ids, vec![3, 13]);
        assert_eq!(
            (o.lines[0].colour, o.lines[1].colour),
            (PALETTE[3], PALETTE[4])
        );
        assert_eq!(o.lines[0].name, "#3 lr=0.001");
        // Trial 13's last point (step 50, loss 5) sits mid-way across and a third of the way up.
        let (x, y) = o.lines[1].last;
        assert_eq!(x, ((PAD + 0.5 * (W - 2.0 * PAD)) * 10.0).round() / 10.0);
        assert_eq!(y, ((H - PAD - (H - 2.0 * PAD) / 3.0) * 10.0).round() / 10.0);
        assert_eq!(
            o.lines[0].points,
            format!(
                "{PAD:.1},{:.1} {:.1},{:.1}",
                PAD + (H - 2.0 * PAD) / 3.0,
                W - PAD,
                H - PAD
            )
        );
        let page = overlay_figure(&o).into_string();
        assert!(
            page.contains(r##"stroke="#9467bd""##) && page.contains("#13 lr=0.01"),
            "{page}"
        );
        assert!(overlay_figure(&overlay(&trials[2..]))
            .into_string()
            .contains("hidden"));
    }

    #[test]
    fn polylines_span_the_plot() {
        let s = polylines(&[(0.0, 2.0), (10.0, 1.0)], &[]);
        assert_eq!((s.lo, s.hi, s.xmax), (1.0, 2.0, 10.0));
        assert_eq!(
            s.train,
            format!("{PAD:.1},{PAD:.1} {:.1},{:.1}", W - PAD, H - PAD)
        );
        assert!(polylines(&[], &[]).train.is_empty());
    }
}
