//! The dashboard's HTML pages, all built from the report's templates (`report::html`,
//! `report::markup`): the sweep list, a sweep (the report's body plus its running trials, live),
//! a trial, and errors.

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup};
use std::sync::Arc;

use super::live::{self, Snapshot};
use super::{files, path_segment, AppError, AppState};
use crate::report::html as rh;
use crate::report::markup::{curves_figure, footer, kv_table, num, opt, page};
use crate::report::plots::{thin, Curve, CURVE_BUDGET, MAX_CURVE_POINTS};
use crate::report::summary;
use crate::store::{self, MetricRecord, SweepRecords, SweepTrial, TrialRecord, TrialState};

/// The last bytes of a trial's log shown on its page.
const LOG_TAIL_BYTES: u64 = 16 << 10;
/// Metric rows listed on a trial page (the latest ones).
const METRIC_ROWS: usize = 30;

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn nav() -> Markup {
    html! { nav.muted { a href="/" { "All sweeps" } " · sweep serve (read-only)" } }
}

/// Any HTTP error as a page.
pub fn error_page(status: StatusCode, msg: &str) -> Markup {
    let title = status.to_string();
    page(
        &title,
        html! {},
        html! { (nav()) h1 { (title) } p.note { (msg) } },
    )
}

/// The fallback route.
pub async fn not_found() -> Response {
    AppError::NotFound("no such page; the dashboard has `/`, `/sweep/NAME` and `/trial/ID`".into())
        .into_response()
}

/// One line of the sweep list.
struct SweepLine {
    name: String,
    title: Option<String>,
    state: String,
    total: usize,
    done: usize,
    running: usize,
    counts: String,
}

fn sweep_lines(state: &AppState) -> anyhow::Result<Vec<SweepLine>> {
    let mut out = Vec::new();
    for s in state.reader.sweeps()? {
        let trials = state.reader.sweep_trials(s.id)?;
        let mut by_state = std::collections::BTreeMap::new();
        for t in &trials {
            *by_state.entry(t.state.as_str().to_string()).or_insert(0) += 1;
        }
        let count = |st: TrialState| by_state.get(st.as_str()).copied().unwrap_or(0);
        let counts = by_state
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push(SweepLine {
            state: summary::sweep_state(&by_state),
            total: trials.len(),
            done: trials.iter().filter(|t| t.state.is_done()).count(),
            running: count(TrialState::Running),
            counts,
            name: s.name,
            title: s.title,
        });
    }
    Ok(out)
}

/// `GET /`: every sweep with its progress.
pub async fn index(State(state): State<Arc<AppState>>) -> Result<Html<String>, AppError> {
    let lines = state.blocking(|s| Ok(sweep_lines(s)?)).await?;
    let body = html! {
        h1 { "Sweeps" }
        p.muted { "Live view of the ledger " code { (store::redact(state.reader.url())) } " (read-only)." }
        @if lines.is_empty() {
            p.note { "The ledger has no sweeps yet." }
        } @else {
            table {
                thead { tr { th.l { "Sweep" } th.l { "Title" } th.l { "State" } th.l { "Progress" } th.l { "Trials" } } }
                tbody { @for l in &lines { tr {
                    td.l { a href={ "/sweep/" (path_segment(&l.name)) } { (l.name) } }
                    td.l { (opt(&l.title)) }
                    td.l { (l.state) @if l.running > 0 { " (" (l.running) " running)" } }
                    td.l { progress value=(l.done) max=(l.total.max(1)) {} " " (l.done) "/" (l.total) }
                    td.l { (if l.counts.is_empty() { "none" } else { l.counts.as_str() }) }
                } } }
            }
        }
        (footer(&now()))
    };
    Ok(Html(
        page("Sweeps — sweep serve", html! {}, body).into_string(),
    ))
}

/// The live section: the running trials' validation loss on one chart, then one card per
/// running trial; `live.js` keeps both current.
fn live_section(name: &str, snap: &Snapshot) -> Markup {
    html! {
        section #live data-api={ "/api/sweep/" (path_segment(name)) "/running" } data-version=(snap.version) data-updates="0" {
            h2 { "Running trials (live)" }
            p.muted { "Loss vs optimizer step (blue: train, orange: valid), updated as the trials record rows." }
            p.muted.none hidden[!snap.trials.is_empty()] { "No trial of this sweep is running." }
            (live::overlay_figure(&snap.overlay))
            div.cards { @for t in &snap.trials { (live::trial_card(t)) } }
        }
    }
}

fn trial_links(records: &SweepRecords) -> Markup {
    html! {
        @if !records.trials.is_empty() {
            p.muted { "Trial pages: " @for (i, t) in records.trials.iter().enumerate() {
                @if i > 0 { ", " }
                a href={ "/trial/" (t.id) } { "#" (t.id) } " " span class=(rh::state_class(t)) { (t.state.as_str()) }
            } }
        }
    }
}

fn sweep_page(state: &AppState, name: &str) -> Result<String, AppError> {
    let mut records = store::load_sweep_curves(state.reader.as_ref(), name, CURVE_BUDGET)?;
    crate::report::resolve_artifacts(&mut records, &state.artifacts_given);
    let snap = live::snapshot(state.reader.as_ref(), name)?;
    let title = format!("{} — live", rh::sweep_title(&records));
    let head = html! { script src="/static/live.js" defer {} };
    let body = html! {
        (nav())
        (live_section(name, &snap))
        (trial_links(&records))
        (rh::report_body(&records))
        (footer(&now()))
    };
    Ok(page(&title, head, body).into_string())
}

/// `GET /sweep/{name}`: the report of the sweep with its running trials, live.
pub async fn sweep(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
) -> Result<Html<String>, AppError> {
    let n = name.clone();
    let html = state
        .pages
        .get(&state, &format!("sweep:{name}"), move |s| sweep_page(s, &n))
        .await?;
    Ok(Html(html.as_ref().clone()))
}

/// The tail of the trial's `trial.log`, if it is under the artifacts root.
fn log_tail(state: &AppState, t: &TrialRecord) -> Option<(String, String, bool)> {
    let root = state.artifacts.as_ref()?;
    let rel = format!("{}/trial.log", crate::artifacts::relative_dir(&t.hash));
    let path = files::confined(root, &rel)?;
    let (text, cut) = files::tail(&path, LOG_TAIL_BYTES).ok()?;
    Some((rel, text, cut))
}

fn metrics_table(metrics: &[MetricRecord]) -> Markup {
    let start = metrics.len().saturating_sub(METRIC_ROWS);
    html! {
        @if metrics.is_empty() {
            p.muted { "No metric rows yet." }
        } @else {
            p.muted { (metrics.len()) " rows; the last " (metrics.len() - start) " by split and step:" }
            table {
                thead { tr { th.l { "Split" } th { "Step" } th { "Epoch" } th { "Loss" } th { "PPL" } th { "Tokens" } th { "LR" } th { "Tokens/s" } th.l { "Recorded" } } }
                tbody { @for m in &metrics[start..] { tr {
                    td.l { (m.split) } td { (m.step) } td { (format!("{:.3}", m.epoch)) }
                    td { (num(Some(m.loss), 4)) } td { (num(Some(m.ppl), 4)) } td { (m.tokens_seen) }
                    td { (format!("{:.2e}", m.lr)) } td { (num(Some(m.tokens_per_s), 0)) } td.l { (m.created_at) }
                } } }
            }
        }
    }
}

fn curves_of(t: &TrialRecord, metrics: &[MetricRecord]) -> Vec<Curve> {
    ["train", "valid"]
        .into_iter()
        .filter_map(|split| {
            let pts: Vec<(f64, f64)> = metrics
                .iter()
                .filter(|m| m.split == split && m.loss.is_finite())
                .map(|m| (m.step as f64, m.loss))
                .collect();
            (!pts.is_empty()).then(|| Curve {
                trial_id: t.id,
                name: split.to_string(),
                split: split.to_string(),
                points: thin(&pts, MAX_CURVE_POINTS),
                err: None,
            })
        })
        .collect()
}

fn history(t: &TrialRecord) -> Markup {
    kv_table([
        ("Created (pending)", opt(&t.created_at).to_string()),
        (
            "Last attempt started (running)",
            opt(&t.started_at).to_string(),
        ),
        ("Last heartbeat", opt(&t.heartbeat_at).to_string()),
        ("Finished", format!("{} ({})", opt(&t.finished_at), t.state)),
        ("Attempts", t.attempts.to_string()),
    ])
}

fn trial_page(state: &AppState, id: i64) -> Result<String, AppError> {
    let mut t = state
        .reader
        .trial(id)?
        .ok_or_else(|| AppError::NotFound(format!("no trial {id} in the ledger")))?;
    let metrics = state.reader.metrics(id)?;
    let samples = state.reader.samples(id)?;
    let log = log_tail(state, &t);
    if let Some(d) = &t.artifact_dir {
        let abs = std::path::absolute(&state.artifacts_given)
            .unwrap_or_else(|_| state.artifacts_given.clone());
        t.artifact_dir = Some(
            crate::artifacts::resolve(&abs, d, &t.hash)
                .display()
                .to_string(),
        );
    }
    let curves = curves_of(&t, &metrics);
    let refs: Vec<&Curve> = curves.iter().collect();
    let records = SweepRecords {
        trials: vec![SweepTrial {
            trial: t.clone(),
            ..Default::default()
        }],
        samples,
        ..Default::default()
    };
    let body = html! {
        (nav())
        h1 { "Trial " (t.id) " · " span class=(rh::state_class(&t)) { (t.state.as_str()) } }
        p.muted { "Model " code { (crate::report::data::trial_model(&t)) } " · hash " code { (t.short_hash()) } }
        h2 { "State history" }
        (history(&t))
        h2 { "Metrics" }
        @if !refs.is_empty() { (curves_figure("Loss vs optimizer step", &refs, "Train and valid loss of this trial.")) }
        (metrics_table(&metrics))
        h2 { "Log" }
        @match &log {
            Some((rel, text, cut)) => {
                p.muted { @if *cut { "The last " (LOG_TAIL_BYTES / 1024) " KiB of " } @else { "All of " }
                    a href={ "/artifacts/" (rel) } { (rel) } ":" }
                pre { (text) }
            },
            None => p.muted { "No trial.log under the artifacts root for this trial." },
        }
        h2 { "Details" }
        (rh::trial_facts(&t))
        (rh::trial_samples(&records, t.id))
        (footer(&now()))
    };
    Ok(page(&format!("Trial {id} — sweep serve"), html! {}, body).into_string())
}

/// `GET /trial/{id}`: config, environment, metrics, log tail, state and error of one trial.
pub async fn trial(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Html<String>, AppError> {
    let id: i64 = id
        .parse()
        .map_err(|_| AppError::NotFound(format!("`{id}` is not a trial id (a number)")))?;
    Ok(Html(state.blocking(move |s| trial_page(s, id)).await?))
}
