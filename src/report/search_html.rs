//! The search section of a search sweep's report (random, TPE): what optuna-dashboard shows —
//! the optimization history with the best-so-far line, the top trials, one slice per parameter
//! and parallel coordinates, pruned trials marked. Data from [`super::search`], plots from
//! [`super::search_svg`].

use super::markup::figure;
use super::search::{self, SearchSpec, SearchTrial};
use super::search_svg::{svg_history, svg_parallel, svg_slice};
use super::stats_svg::svg_evp;
use crate::store::SweepRecords;
use maud::{html, Markup};

/// Trials in the top-trials table.
const TOP: usize = 10;

/// The section; empty for grid and ablation sweeps.
pub fn search_section(records: &SweepRecords) -> Markup {
    let Some(spec) = SearchSpec::of(&records.sweep.spec) else {
        return html! {};
    };
    let trials = search::search_trials(records, &spec);
    let y = search::search_metric_axis(&trials, &spec);
    let budget = records.sweep.spec["search"]["trials"].as_u64();
    html! {
        section #search {
            h2 { "Search" }
            (summary(&spec, &trials, budget, &records.sweep.name))
            (figure(
                svg_history(&search::history(&trials, spec.direction), &y),
                &format!(
                    "Optimization history: each trial's value by trial number (hollow grey: \
                     pruned, its last validation value), and the best completed value so far.{}",
                    log_note(&y)
                ),
            ))
            (expected_best(&spec, &trials))
            h3 { "Top trials" }
            (top_table(&spec, &trials))
            h3 { "Slices" }
            @for s in search::slices(&trials, &spec) {
                (figure(svg_slice(&s, &y), &format!("{} against {}.{}", spec.metric, s.axis.name, log_note(&y))))
            }
            h3 { "Parallel coordinates" }
            (figure(
                svg_parallel(&search::parallel(&trials, &spec)),
                "Completed trials across the parameters (log-scaled ones in log space) and the \
                 metric; darker lines are better.",
            ))
        }
        "\n"
    }
}

/// Beside the best-so-far line: the best value to expect from k of the completed trials in
/// random order (Dodge et al.'s expected validation performance), once 3 or more completed.
fn expected_best(spec: &SearchSpec, trials: &[SearchTrial]) -> Markup {
    let values: Vec<f64> = trials
        .iter()
        .filter(|t| !t.pruned && t.state == "completed")
        .filter_map(|t| t.value)
        .collect();
    let lower = spec.direction == crate::search::Direction::Minimize;
    let Some(e) = super::effects::evp(&spec.metric, &values, lower) else {
        return html! {};
    };
    html! {
        (figure(
            svg_evp(&e, &format!("Expected best {} vs trials", spec.metric)),
            &format!(
                "Expected validation performance (Dodge et al., 2019): the expected best {} of k of \
                 the {} completed trials drawn in random order without replacement (band: ± one \
                 standard deviation). Against the history above: how much of the best-so-far is \
                 the search's doing rather than the number of trials.",
                spec.metric, e.configurations
            ),
        ))
    }
}

/// Why the metric's axis is logarithmic, when it is.
fn log_note(y: &search::Axis) -> &'static str {
    match y.scale {
        search::Scale::Log => {
            " Perplexity on a log scale (equal steps are equal steps of loss), so a pruned trial \
             far above does not flatten the rest."
        }
        _ => "",
    }
}

fn summary(spec: &SearchSpec, trials: &[SearchTrial], budget: Option<u64>, name: &str) -> Markup {
    let pruned = trials.iter().filter(|t| t.pruned).count();
    let done = trials.iter().filter(|t| t.state == "completed").count();
    html! {
        p {
            (spec.method.to_uppercase()) " search: " (trials.len())
            @if let Some(b) = budget { " of " (b) } " trials (" (done) " completed, " (pruned)
            " pruned); " (spec.direction.as_str()) " " code { (spec.metric) } ". "
            "The best configuration as a [base] snippet: " code { "sweep best " (name) } "."
        }
    }
}

fn top_table(spec: &SearchSpec, trials: &[SearchTrial]) -> Markup {
    let top = search::top_trials(trials, spec, TOP);
    if top.is_empty() {
        return html! { p.muted { "No completed trial yet." } };
    }
    html! {
        table {
            thead { tr {
                th { "rank" } th { "trial #" } th { (spec.metric) }
                @for p in &spec.space { th { (p.name) } }
            } }
            tbody {
                @for t in &top {
                    tr {
                        td { (t.rank) } td { (t.number) } td { (format!("{:.4}", t.value)) }
                        @for (_, v) in &t.params { td { (v) } }
                    }
                }
            }
        }
    }
}
