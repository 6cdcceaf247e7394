//! Tests of `report::search` and `report::search_svg` on a small synthetic search sweep.

use super::*;
use crate::report::search_svg::{svg_history, svg_parallel, svg_slice};
use crate::store::{SweepRecord, TrialRecord};
use serde_json::json;

fn space(choice: &str) -> Json {
    let lr = Dist::LogUniform {
        low: 1e-5,
        high: 1e-2,
    };
    let warmup = Dist::Int {
        low: 0,
        high: 500,
        step: 50,
        log: false,
    };
    json!([
        {"name": "learning_rate", "dist": lr},
        {"name": "warmup_steps", "dist": warmup},
        {"name": "schedule", "dist": Dist::Choice { n: 2 }, "values": ["cosine", choice]},
    ])
}

/// 8 trials: completed ones, one pruned after two evaluations, one running, one failed.
fn records(direction: &str, choice: &str) -> SweepRecords {
    let spec = json!({"search": {"method": "tpe", "trials": 8, "metric": "valid_ppl",
        "direction": direction, "seed": 0, "startup": 3, "space": space(choice),
        "prune": {"asha": {}}}});
    let rows: [(f64, i64, &str, TrialState, f64); 8] = [
        (3e-4, 100, "cosine", TrialState::Completed, 30.0),
        (1e-5, 0, choice, TrialState::Completed, 41.0),
        (2e-3, 450, "cosine", TrialState::Pruned, 55.0),
        (5e-4, 150, choice, TrialState::Completed, 27.5),
        (8e-3, 300, "cosine", TrialState::Failed, f64::NAN),
        (4e-4, 150, "cosine", TrialState::Completed, 26.0),
        (1e-4, 50, choice, TrialState::Completed, 29.0),
        (3e-4, 200, "cosine", TrialState::Running, f64::NAN),
    ];
    let mut trials = Vec::new();
    let mut metrics = Vec::new();
    for (i, (lr, warmup, sched, state, ppl)) in rows.iter().enumerate() {
        let id = 100 + i as i64;
        let mut trial = TrialRecord {
            id,
            state: *state,
            ..Default::default()
        };
        if *state == TrialState::Completed {
            trial.results.valid_ppl = Some(*ppl);
        }
        if *state == TrialState::Pruned {
            for (step, p) in [(10, 70.0), (20, *ppl)] {
                metrics.push(MetricRecord {
                    trial_id: id,
                    step,
                    split: "valid".into(),
                    loss: f64::ln(p),
                    ppl: p,
                    ..Default::default()
                });
            }
        }
        trials.push(SweepTrial {
            sweep_id: 1,
            position: i as i64,
            label: json!({"learning_rate": lr, "warmup_steps": warmup, "schedule": sched}),
            is_baseline: false,
            trial,
        });
    }
    SweepRecords {
        sweep: SweepRecord {
            id: 1,
            name: "lr_search".into(),
            spec,
            ..Default::default()
        },
        trials,
        metrics,
        samples: vec![],
    }
}

fn spec_of(r: &SweepRecords) -> SearchSpec {
    SearchSpec::of(&r.sweep.spec).expect("a search spec")
}

#[test]
fn a_grid_sweep_has_no_search_spec() {
    assert_eq!(SearchSpec::of(&json!({"axes": ["block_size"]})), None);
    assert_eq!(SearchSpec::of(&json!({"search": {"method": 3}})), None);
}

#[test]
fn trials_read_their_point_and_value_from_label_results_and_metrics() {
    let r = records("minimize", "linear");
    let t = search_trials(&r, &spec_of(&r));
    assert_eq!(t[1].params, vec![Some(1e-5), Some(0.0), Some(1.0)]);
    // The pruned trial's value is its last reported valid PPL; failed and running have none.
    assert_eq!((t[2].value, t[2].pruned), (Some(55.0), true));
    assert_eq!((t[4].value, t[7].value), (None, None));
    insta::assert_json_snapshot!("search_trials", t);
}

#[test]
fn history_keeps_the_best_completed_value_and_skips_pruned_ones() {
    let r = records("minimize", "linear");
    let spec = spec_of(&r);
    let h = history(&search_trials(&r, &spec), spec.direction);
    let best: Vec<Option<f64>> = h.iter().map(|p| p.best).collect();
    assert_eq!(
        best,
        vec![
            Some(30.0),
            Some(30.0),
            Some(30.0),
            Some(27.5),
            Some(26.0),
            Some(26.0)
        ]
    );
    assert!(h[2].pruned && h[2].value == 55.0);
    insta::assert_json_snapshot!("search_history", h);
    // Maximising turns the best-so-far around; a pruned 55 still does not count.
    let r = records("maximize", "linear");
    let spec = spec_of(&r);
    let h = history(&search_trials(&r, &spec), spec.direction);
    assert_eq!(h.last().and_then(|p| p.best), Some(41.0));
}

#[test]
fn slices_and_parallel_axes_use_log_space_for_log_parameters() {
    let r = records("minimize", "linear");
    let spec = spec_of(&r);
    let t = search_trials(&r, &spec);
    let s = slices(&t, &spec);
    assert_eq!(s[0].axis.scale, Scale::Log);
    assert_eq!(
        s[2].axis.scale,
        Scale::Categorical(vec!["cosine".into(), "linear".into()])
    );
    assert_eq!(s[0].points.len(), 6, "5 completed + 1 pruned");
    let p = parallel(&t, &spec);
    assert_eq!(p.axes.len(), 4);
    assert_eq!(p.lines.len(), 5, "completed trials only");
    // 1e-4 is a third of the way from 1e-5 to 1e-2 on a log axis.
    let line = p.lines.iter().find(|l| l.number == 6).expect("trial 6");
    assert!(
        (line.coords[0] - 1.0 / 3.0).abs() < 1e-12,
        "{:?}",
        line.coords
    );
    let best = p.lines.iter().find(|l| l.number == 5).expect("trial 5");
    assert_eq!((best.coords[3], best.rank), (0.0, 0.0));
    insta::assert_json_snapshot!("search_slices", s);
    insta::assert_json_snapshot!("search_parallel", p);
}

#[test]
fn top_trials_are_the_best_completed_ones_in_order() {
    let r = records("minimize", "linear");
    let spec = spec_of(&r);
    let top = top_trials(&search_trials(&r, &spec), &spec, 3);
    let numbers: Vec<i64> = top.iter().map(|t| t.number).collect();
    assert_eq!(numbers, vec![5, 3, 6]);
    assert_eq!(
        top[0].params,
        vec![
            ("learning_rate".to_string(), "4.000e-4".to_string()),
            ("warmup_steps".to_string(), "150".to_string()),
            ("schedule".to_string(), "cosine".to_string()),
        ]
    );
    let r = records("maximize", "linear");
    let spec = spec_of(&r);
    let top = top_trials(&search_trials(&r, &spec), &spec, 1);
    assert_eq!((top[0].number, top[0].value), (1, 41.0));
}

#[test]
fn svgs_mark_pruned_trials_and_label_log_axes() {
    let r = records("minimize", "linear");
    let spec = spec_of(&r);
    let t = search_trials(&r, &spec);
    let y = search_metric_axis(&t, &spec);
    let h = svg_history(&history(&t, spec.direction), &y).expect("history svg");
    // One hollow grey marker (the pruned trial) plus its legend entry.
    assert_eq!(
        h.matches(r##"fill="none" stroke="#969696""##).count(),
        2,
        "{h}"
    );
    let s = slices(&t, &spec);
    let lr = svg_slice(&s[0], &y).expect("slice svg");
    assert!(
        lr.contains("learning_rate (log scale)") && lr.contains("\n1e-4\n"),
        "{lr}"
    );
    let par = svg_parallel(&parallel(&t, &spec)).expect("parallel svg");
    assert_eq!(par.matches("<polyline").count(), 5 + 4, "5 trials + 4 axes");
    insta::assert_snapshot!("search_history_svg", h);
    insta::assert_snapshot!("search_slice_lr_svg", lr);
    insta::assert_snapshot!("search_parallel_svg", par);
}

#[test]
fn svg_text_from_the_ledger_is_escaped() {
    let hostile = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>";
    let r = records("minimize", hostile);
    let spec = spec_of(&r);
    let t = search_trials(&r, &spec);
    let s = slices(&t, &spec);
    let y = metric_axis(hostile, t.iter().filter_map(|t| t.value));
    let svgs = [
        svg_slice(&s[2], &y).expect("slice"),
        svg_parallel(&parallel(&t, &spec)).expect("parallel"),
        svg_history(&history(&t, spec.direction), &y).expect("history"),
    ];
    for svg in svgs {
        assert!(!svg.contains("<script") && !svg.contains("<img"), "{svg}");
        assert!(
            svg.contains("&lt;script&gt;") || svg.contains("&lt;scrip"),
            "{svg}"
        );
    }
}

/// The `cy` of every circle of an SVG, in drawing order (pixels from the top).
fn circle_ys(svg: &str) -> Vec<f64> {
    svg.split("<circle")
        .skip(1)
        .filter_map(|c| c.split("cy=\"").nth(1)?.split('"').next()?.parse().ok())
        .collect()
}

#[test]
fn perplexity_gets_a_log_axis_so_a_pruned_outlier_does_not_flatten_the_completed_trials() {
    // As in `sweeps/lr_search.toml --profile quick`: completed trials at valid PPL 150-250 and
    // one pruned at ~6,000.
    let values = [150.0, 180.0, 250.0, 6000.0];
    let a = metric_axis("valid_ppl", values);
    assert_eq!((&a.scale, a.low, a.high), (&Scale::Log, 150.0, 6000.0));
    // The completed trials' share of the axis: 14% in log space, 1.7% on a linear axis.
    let share = normalise(&a, 250.0) - normalise(&a, 150.0);
    assert!(
        (share - (250f64 / 150.0).ln() / 40f64.ln()).abs() < 1e-12,
        "{share}"
    );
    let linear = Axis {
        scale: Scale::Linear,
        ..a.clone()
    };
    assert!(normalise(&linear, 250.0) - normalise(&linear, 150.0) < 0.02);
    // Loss (already the log of perplexity), throughput and a non-positive perplexity: linear.
    for (metric, vals) in [
        ("valid_loss", vec![5.0, 8.7]),
        ("tokens_per_s", vec![900.0, 1000.0]),
        ("valid_ppl", vec![0.0, 5.0]),
    ] {
        assert_eq!(metric_axis(metric, vals).scale, Scale::Linear, "{metric}");
    }
    let empty = metric_axis("valid_ppl", []);
    assert_eq!(
        (empty.scale, empty.low, empty.high),
        (Scale::Linear, 0.0, 1.0)
    );
    // A search's axis spans every drawn value, pruned ones included.
    let r = records("minimize", "linear");
    let spec = spec_of(&r);
    let y = search_metric_axis(&search_trials(&r, &spec), &spec);
    assert_eq!((y.scale, y.low, y.high), (Scale::Log, 26.0, 55.0));
}

#[test]
fn the_history_svg_draws_the_log_axis_with_readable_ticks() {
    let points: Vec<HistoryPoint> = [(0, 250.0, false), (1, 6000.0, true), (2, 150.0, false)]
        .iter()
        .map(|&(number, value, pruned)| HistoryPoint {
            number,
            value,
            pruned,
            best: Some(if number == 0 { 250.0 } else { 150.0 }),
        })
        .collect();
    let y = metric_axis("valid_ppl", points.iter().map(|p| p.value));
    let svg = svg_history(&points, &y).expect("history svg");
    assert!(svg.contains("valid_ppl (log scale)"), "{svg}");
    for label in ["200", "500", "1000", "2000", "5000"] {
        assert!(
            svg.contains(&format!("\n{label}\n")),
            "no tick {label}: {svg}"
        );
    }
    // Completed trials are drawn first (250, 150), then the pruned one (6000). 150 and 250 sit
    // a seventh of the data's height apart, not 1.7% of it as on a linear axis.
    let ys = circle_ys(&svg);
    let (at250, at150, at6000) = (ys[0], ys[1], ys[2]);
    let share = (at150 - at250) / (at150 - at6000);
    assert!((0.12..0.16).contains(&share), "{share}: {ys:?}");
}
