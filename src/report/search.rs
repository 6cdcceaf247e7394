//! The data of a search sweep's report, as optuna-dashboard shows it (pure functions of the
//! sweep's records): optimization history with the best-so-far line, one slice per parameter,
//! parallel coordinates and the top trials; pruned trials are kept and marked. `search_svg`
//! draws them.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::search::{Direction, Dist};
use crate::store::{MetricRecord, SweepRecords, SweepTrial, TrialState};

/// One parameter of the search space as the sweep's spec records it (`spec.search.space[i]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpaceParam {
    pub name: String,
    pub dist: Dist,
    /// A choice's values as its trials' labels show them.
    #[serde(default)]
    pub values: Vec<Json>,
}

/// What the report needs of `spec.search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchSpec {
    pub method: String,
    pub metric: String,
    #[serde(default)]
    pub direction: Direction,
    pub space: Vec<SpaceParam>,
}

impl SearchSpec {
    /// The search of a sweep's spec; `None` for a grid sweep or a spec this reader cannot read.
    pub fn of(spec: &Json) -> Option<SearchSpec> {
        serde_json::from_value(spec.get("search")?.clone()).ok()
    }
}

/// One trial of the search as the plots see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchTrial {
    /// The trial's number in the search (its position in the sweep).
    pub number: i64,
    pub state: String,
    /// Each parameter's coordinate: its value, or a choice's index; `None` when the label lacks it.
    pub params: Vec<Option<f64>>,
    /// The metric: the final value of a completed trial, the last reported one of a pruned trial.
    pub value: Option<f64>,
    pub pruned: bool,
}

/// The trials of a search sweep in number order.
pub fn search_trials(records: &SweepRecords, spec: &SearchSpec) -> Vec<SearchTrial> {
    records
        .trials
        .iter()
        .map(|t| {
            let pruned = t.state == TrialState::Pruned;
            let value = if pruned {
                last_reported(&records.metrics, t.id, &spec.metric)
            } else if t.state == TrialState::Completed {
                t.results.get(&spec.metric)
            } else {
                None
            };
            SearchTrial {
                number: t.position,
                state: t.state.as_str().to_string(),
                params: spec.space.iter().map(|p| coordinate(t, p)).collect(),
                value: value.filter(|v| v.is_finite()),
                pruned,
            }
        })
        .collect()
}

fn coordinate(t: &SweepTrial, p: &SpaceParam) -> Option<f64> {
    let v = t.label_map().get(&p.name)?;
    match p.dist {
        Dist::Choice { .. } => p.values.iter().position(|c| c == v).map(|i| i as f64),
        _ => v.as_f64(),
    }
}

/// The last value a trial reported for a loss or perplexity metric (its split's highest step).
fn last_reported(metrics: &[MetricRecord], trial_id: i64, metric: &str) -> Option<f64> {
    let (split, ppl) = metric.split_once('_')?;
    let row = metrics
        .iter()
        .filter(|m| m.trial_id == trial_id && m.split == split)
        .max_by_key(|m| m.step)?;
    match ppl {
        "ppl" => Some(row.ppl),
        "loss" => Some(row.loss),
        _ => None,
    }
}

/// One point of the optimization history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryPoint {
    pub number: i64,
    pub value: f64,
    pub pruned: bool,
    /// The best completed value among trials numbered up to this one (pruned ones do not count).
    pub best: Option<f64>,
}

/// Every trial with a value in number order, with the best-so-far of the completed ones.
pub fn history(trials: &[SearchTrial], direction: Direction) -> Vec<HistoryPoint> {
    let mut sorted: Vec<&SearchTrial> = trials.iter().filter(|t| t.value.is_some()).collect();
    sorted.sort_by_key(|t| t.number);
    let mut best: Option<f64> = None;
    sorted
        .into_iter()
        .filter_map(|t| {
            let value = t.value?;
            if !t.pruned && best.is_none_or(|b| direction.better(value, b)) {
                best = Some(value);
            }
            Some(HistoryPoint {
                number: t.number,
                value,
                pruned: t.pruned,
                best,
            })
        })
        .collect()
}

/// How a parameter's axis is drawn.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    Linear,
    /// Log-scaled parameters (`log_uniform`, `int` with `log = true`): a log10 axis.
    Log,
    /// A choice: the coordinate is the index into these labels.
    Categorical(Vec<String>),
}

/// The axis of a parameter and its extent, from the space (not from the data).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Axis {
    pub name: String,
    pub scale: Scale,
    pub low: f64,
    pub high: f64,
}

/// A parameter's axis from its distribution.
pub fn axis(p: &SpaceParam) -> Axis {
    let (scale, low, high) = match p.dist {
        Dist::Uniform { low, high } => (Scale::Linear, low, high),
        Dist::LogUniform { low, high } => (Scale::Log, low, high),
        Dist::Int { low, high, log, .. } => {
            let s = if log { Scale::Log } else { Scale::Linear };
            (s, low as f64, high as f64)
        }
        Dist::Choice { n } => {
            let labels = (0..n)
                .map(|i| {
                    p.values
                        .get(i)
                        .map(choice_text)
                        .unwrap_or_else(|| i.to_string())
                })
                .collect();
            (Scale::Categorical(labels), 0.0, n.saturating_sub(1) as f64)
        }
    };
    Axis {
        name: p.name.clone(),
        scale,
        low,
        high,
    }
}

/// A choice value as text: strings bare, anything else as JSON.
fn choice_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Where `x` sits on the axis, 0 at `low` and 1 at `high` (log axes in log space).
pub fn normalise(a: &Axis, x: f64) -> f64 {
    let f = |v: f64| match a.scale {
        Scale::Log => v.max(f64::MIN_POSITIVE).ln(),
        _ => v,
    };
    let span = f(a.high) - f(a.low);
    if span.abs() < 1e-300 {
        0.5
    } else {
        ((f(x) - f(a.low)) / span).clamp(0.0, 1.0)
    }
}

/// The metric's axis on the optimization history and the slices, over `values` (every trial
/// drawn, pruned ones included). Perplexities get a log10 axis: perplexity is exp(loss), so equal
/// steps of loss are equal ratios of perplexity, and one pruned or diverging trial at PPL ~6,000
/// would otherwise squash the completed trials at 150-250 into the bottom few percent of a
/// linear axis (optuna-dashboard offers the same log scale). Losses, throughput and times stay
/// linear, as does a perplexity axis with a value that is not positive.
pub fn metric_axis(metric: &str, values: impl IntoIterator<Item = f64>) -> Axis {
    let (low, high) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    let (low, high) = if low <= high { (low, high) } else { (0.0, 1.0) };
    let scale = if metric.ends_with("_ppl") && low > 0.0 {
        Scale::Log
    } else {
        Scale::Linear
    };
    Axis {
        name: metric.to_string(),
        scale,
        low,
        high,
    }
}

/// The metric's axis shared by the history and every slice of a search (one range, so the
/// plots read alike).
pub fn search_metric_axis(trials: &[SearchTrial], spec: &SearchSpec) -> Axis {
    metric_axis(&spec.metric, trials.iter().filter_map(|t| t.value))
}

/// A parameter's values against the metric, for its slice plot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slice {
    pub axis: Axis,
    /// (parameter coordinate, metric value, trial number, pruned)
    pub points: Vec<(f64, f64, i64, bool)>,
}

/// One slice per parameter over the trials that have a value and that parameter.
pub fn slices(trials: &[SearchTrial], spec: &SearchSpec) -> Vec<Slice> {
    spec.space
        .iter()
        .enumerate()
        .map(|(i, p)| Slice {
            axis: axis(p),
            points: trials
                .iter()
                .filter_map(|t| Some((t.params.get(i).copied()??, t.value?, t.number, t.pruned)))
                .collect(),
        })
        .collect()
}

/// Parallel coordinates: one axis per parameter, then the metric's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parallel {
    /// The parameters' axes; the metric's axis is the last (its extent from the data).
    pub axes: Vec<Axis>,
    pub lines: Vec<ParallelLine>,
}

/// One completed trial across the axes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParallelLine {
    pub number: i64,
    /// Each axis' position in `[0, 1]`, the metric's last.
    pub coords: Vec<f64>,
    /// 0 for the best value, 1 for the worst (the line's colour).
    pub rank: f64,
}

/// The completed trials that have every parameter, across normalised axes.
pub fn parallel(trials: &[SearchTrial], spec: &SearchSpec) -> Parallel {
    let mut axes: Vec<Axis> = spec.space.iter().map(axis).collect();
    let done: Vec<(&SearchTrial, Vec<f64>, f64)> = trials
        .iter()
        .filter(|t| !t.pruned)
        .filter_map(|t| {
            Some((
                t,
                t.params.iter().copied().collect::<Option<Vec<_>>>()?,
                t.value?,
            ))
        })
        .collect();
    let lo = done.iter().map(|d| d.2).fold(f64::INFINITY, f64::min);
    let hi = done.iter().map(|d| d.2).fold(f64::NEG_INFINITY, f64::max);
    let metric = Axis {
        name: spec.metric.clone(),
        scale: Scale::Linear,
        low: if lo.is_finite() { lo } else { 0.0 },
        high: if hi.is_finite() { hi } else { 1.0 },
    };
    let lines = done
        .iter()
        .map(|(t, p, v)| {
            let mut coords: Vec<f64> = axes.iter().zip(p).map(|(a, x)| normalise(a, *x)).collect();
            let m = normalise(&metric, *v);
            coords.push(m);
            let rank = match spec.direction {
                Direction::Minimize => m,
                Direction::Maximize => 1.0 - m,
            };
            ParallelLine {
                number: t.number,
                coords,
                rank,
            }
        })
        .collect();
    axes.push(metric);
    Parallel { axes, lines }
}

/// A row of the top-trials table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopTrial {
    pub rank: usize,
    pub number: i64,
    pub value: f64,
    /// (parameter, value as shown)
    pub params: Vec<(String, String)>,
}

/// The `k` best completed trials, best first (ties by number).
pub fn top_trials(trials: &[SearchTrial], spec: &SearchSpec, k: usize) -> Vec<TopTrial> {
    let mut done: Vec<(&SearchTrial, f64)> = trials
        .iter()
        .filter(|t| !t.pruned)
        .filter_map(|t| Some((t, t.value?)))
        .collect();
    let key = |v: f64| spec.direction.oriented(v);
    done.sort_by(|a, b| {
        key(a.1)
            .total_cmp(&key(b.1))
            .then(a.0.number.cmp(&b.0.number))
    });
    done.into_iter()
        .take(k)
        .enumerate()
        .map(|(i, (t, value))| TopTrial {
            rank: i + 1,
            number: t.number,
            value,
            params: spec
                .space
                .iter()
                .zip(&t.params)
                .map(|(p, x)| (p.name.clone(), shown(&axis(p), *x)))
                .collect(),
        })
        .collect()
}

/// A parameter coordinate as the report shows it.
pub fn shown(a: &Axis, x: Option<f64>) -> String {
    let Some(x) = x else {
        return "—".to_string();
    };
    match &a.scale {
        Scale::Categorical(labels) => labels.get(x as usize).cloned().unwrap_or_default(),
        _ if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
        _ if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e5) => format!("{x:.3e}"),
        _ => format!("{}", (x * 1e4).round() / 1e4),
    }
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
