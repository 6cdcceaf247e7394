//! The running trials of a sweep, live: their snapshot (pure over the ledger's records), the
//! JSON endpoint that long-polls for a change, the inline SVG of a curve and the page script.

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

/// The running trials of one sweep; `version` changes whenever a trial starts, stops or records
/// a row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Snapshot {
    pub version: String,
    pub trials: Vec<LiveTrial>,
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
    for t in reader.sweep_trials(sweep.id)? {
        if t.state != TrialState::Running {
            continue;
        }
        let metrics = reader.metrics(t.id)?;
        version.push(format!("{}:{}:{}", t.id, t.attempts, metrics.len()));
        trials.push(live_trial(&t, &metrics));
    }
    Ok(Snapshot {
        version: version.join(","),
        trials,
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
    let all = train.iter().chain(valid);
    let xmax = all.clone().map(|p| p.0).fold(1.0, f64::max);
    let lo = all.clone().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = all.map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else if lo.is_finite() {
        (lo - 0.5, lo + 0.5)
    } else {
        (0.0, 1.0)
    };
    let line = |pts: &[(f64, f64)]| {
        pts.iter()
            .map(|(x, y)| {
                let sx = PAD + x / xmax * (W - 2.0 * PAD);
                let sy = H - PAD - (y - lo) / (hi - lo) * (H - 2.0 * PAD);
                format!("{sx:.1},{sy:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    Scaled {
        train: line(train),
        valid: line(valid),
        lo,
        hi,
        xmax,
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
