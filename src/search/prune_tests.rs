//! The pruners' unit tests: hand-computed rungs, brackets and decisions.

use super::*;

fn curve(trial: i64, points: &[(u64, f64)], completed: bool) -> Curve {
    Curve {
        trial,
        points: points.to_vec(),
        completed,
        bracket: None,
    }
}

fn in_bracket(bracket: u32, c: Curve) -> Curve {
    Curve {
        bracket: Some(bracket),
        ..c
    }
}

const ASHA: Pruner = Pruner::Asha {
    min: 10,
    reduction_factor: 3,
    resource: Resource::Steps,
};

#[test]
fn asha_keeps_the_best_third_at_each_rung() {
    // Rungs at 10, 30, 90. Five trials reached rung 0 with values 1..5.
    let others: Vec<Curve> = (1..=5)
        .map(|i| curve(i, &[(10, i as f64), (20, i as f64)], false))
        .collect();
    // Six values at the rung (five + mine): the best 6/3 = 2 continue.
    let good = curve(9, &[(10, 1.5)], false);
    assert_eq!(ASHA.decide(&good, &others), None);
    let bad = curve(9, &[(10, 2.5)], false);
    let d = ASHA.decide(&bad, &others).unwrap();
    assert_eq!(
        (d.rung, d.step, d.threshold, d.compared_with),
        (Some(0), 10, 2.0, 6)
    );
    // Between rungs nothing is decided, whatever the value.
    let between = curve(9, &[(10, 1.5), (20, 99.0)], false);
    assert_eq!(ASHA.decide(&between, &others), None);
}

#[test]
fn asha_with_fewer_than_eta_values_lets_only_the_best_continue() {
    let others = vec![curve(1, &[(10, 2.0)], false)];
    assert!(ASHA
        .decide(&curve(2, &[(10, 2.5)], false), &others)
        .is_some());
    assert!(ASHA
        .decide(&curve(2, &[(10, 1.5)], false), &others)
        .is_none());
    // The first trial at a rung always continues.
    assert!(ASHA.decide(&curve(2, &[(10, 9.0)], false), &[]).is_none());
}

#[test]
fn asha_meets_a_rung_at_the_first_evaluation_past_it() {
    // Evaluating every 25 steps: rung 0 (10) at step 25, rung 1 (30) at step 50.
    let others = vec![curve(1, &[(25, 1.0), (50, 0.5)], false)];
    let d = ASHA
        .decide(&curve(2, &[(25, 0.9), (50, 0.8)], false), &others)
        .unwrap();
    assert_eq!((d.rung, d.threshold), (Some(1), 0.5));
    assert!(ASHA
        .decide(&curve(2, &[(25, 0.9)], false), &others)
        .is_none());
}

#[test]
fn median_compares_the_best_so_far_with_completed_trials_at_the_step() {
    let median = Pruner::Median {
        startup_trials: 2,
        warmup_steps: 10,
    };
    let others = vec![
        curve(1, &[(10, 1.0), (20, 0.8)], true),
        curve(2, &[(10, 3.0), (20, 2.0)], true),
        curve(3, &[(10, 0.1), (20, 0.1)], false), // running: not compared
    ];
    // Median at step 20 of the completed: (0.8 + 2.0) / 2 = 1.4.
    assert!(median
        .decide(&curve(4, &[(10, 1.0), (20, 1.5)], false), &others)
        .is_none());
    let d = median
        .decide(&curve(4, &[(10, 1.6), (20, 1.5)], false), &others)
        .unwrap();
    assert_eq!((d.value, d.threshold, d.compared_with), (1.5, 1.4, 2));
    // Before the warm-up, or with fewer completed trials than startup_trials: never.
    assert!(median
        .decide(&curve(4, &[(5, 9.0)], false), &others)
        .is_none());
    assert!(median
        .decide(&curve(4, &[(10, 9.0)], false), &others[..1])
        .is_none());
}

#[test]
fn bracket_counts_and_shares_match_the_paper_and_optuna() {
    // floor(log_eta(max / min)) + 1, as Optuna's HyperbandPruner computes it.
    assert_eq!(bracket_count(20, 468, 3), 3); // rungs 20, 60, 180 <= 468 < 540
    assert_eq!(bracket_count(20, 117, 3), 2);
    assert_eq!(bracket_count(20, 180, 3), 3); // 180 = 20 * 3^2 exactly
    assert_eq!(bracket_count(20, 179, 3), 2);
    assert_eq!(bracket_count(1, 81, 3), 5);
    assert_eq!(bracket_count(10, 40, 2), 3);
    assert_eq!(bracket_count(50, 40, 3), 1);
    // Li et al. 2018, Table 1 (R = 81, eta = 3): n = 81, 34, 15, 8, 5 configurations.
    assert_eq!(bracket_shares(5, 3), vec![81, 34, 15, 8, 5]);
    // Optuna 5.0.0 `HyperbandPruner(min_resource=20, max_resource=468, reduction_factor=3)
    // ._trial_allocation_budgets` after its first prune: [9, 5, 3]; (10, 40, 2): [4, 3, 3].
    assert_eq!(bracket_shares(3, 3), vec![9, 5, 3]);
    assert_eq!(bracket_shares(3, 2), vec![4, 3, 3]);
    assert_eq!(bracket_shares(2, 3), vec![3, 2]); // Optuna's for (20, 117, 3)
    assert_eq!(bracket_shares(1, 3), vec![1]);
}

#[test]
fn brackets_follow_their_shares_at_every_prefix_of_the_search() {
    for (brackets, eta) in [(3u32, 3u64), (2, 3), (5, 3), (3, 2)] {
        let shares = bracket_shares(brackets, eta);
        let total: u64 = shares.iter().sum();
        for seed in 0..20 {
            let mut counts = vec![0u64; brackets as usize];
            for i in 0..200u64 {
                counts[bracket_of(seed, i, brackets, eta) as usize] += 1;
                let n = (i + 1) as f64;
                for (b, c) in counts.iter().enumerate() {
                    let want = n * shares[b] as f64 / total as f64;
                    assert!(
                        (*c as f64 - want).abs() < 2.5,
                        "seed {seed}, {brackets} brackets, first {n} trials: bracket {b} \
                         has {c}, its share is {want:.1}"
                    );
                }
            }
            assert_eq!(
                counts,
                bracket_counts(seed, 200, brackets, eta),
                "bracket_counts agrees"
            );
        }
    }
    // A pure function of seed and index; another seed, another order.
    let order = |seed| {
        (0..30)
            .map(|i| bracket_of(seed, i, 3, 3))
            .collect::<Vec<_>>()
    };
    assert_eq!(order(7), order(7));
    assert_ne!(order(7), order(8));
    // Every bracket has a trial once enough are suggested, the smallest share taking longest.
    let fill = trials_for_every_bracket(0, 3, 3).unwrap();
    assert!((3..=10).contains(&fill), "{fill}");
    assert_eq!(
        bracket_counts(0, fill - 1, 3, 3)
            .iter()
            .filter(|&&c| c == 0)
            .count(),
        1
    );
}

#[test]
fn a_trial_gets_its_bracket_from_its_own_steps_unless_max_steps_is_set() {
    let hb = Pruner::Hyperband {
        min: 20,
        max: None,
        reduction_factor: 3,
        resource: Resource::Steps,
    };
    assert_eq!(hb.bracket(0, 0), None, "no max_steps yet");
    let long = hb.for_trial(468, 119_808).bracket(3, 5).unwrap();
    assert_eq!((long.brackets, long.max_steps), (3, 468));
    assert_eq!(long.bracket, bracket_of(3, 5, 3, 3));
    assert_eq!(long.first_rung, [20, 60, 180][long.bracket as usize]);
    assert_eq!(
        hb.for_trial(117, 119_808).bracket(3, 5).unwrap().brackets,
        2
    );
    let fixed = Pruner::Hyperband {
        min: 20,
        max: Some(200),
        reduction_factor: 3,
        resource: Resource::Steps,
    };
    assert_eq!(
        fixed.for_trial(468, 119_808),
        fixed,
        "an explicit max_steps stays"
    );
    assert_eq!(ASHA.for_trial(468, 119_808), ASHA);
    assert_eq!(ASHA.bracket(0, 0), None);
}

#[test]
fn hyperband_halves_within_each_bracket_from_its_own_first_rung() {
    // Brackets of (10, 100, 3): first rungs at 10, 30, 90; rungs past 100 are none, and so
    // is one at a trial's last step.
    let hb = Pruner::Hyperband {
        min: 10,
        max: Some(100),
        reduction_factor: 3,
        resource: Resource::Steps,
    };
    // Bracket 0 holds five strong trials at step 10 and 30; bracket 1 two weak ones at 30.
    let mut others: Vec<Curve> = (1..=5)
        .map(|i| in_bracket(0, curve(i, &[(10, 0.1 * i as f64), (30, 0.1)], false)))
        .collect();
    others.push(in_bracket(1, curve(6, &[(10, 5.0), (30, 5.0)], false)));
    others.push(in_bracket(1, curve(7, &[(10, 6.0), (30, 6.0)], false)));
    // A bracket-1 trial is not judged at step 10 (its first rung is 30), however bad.
    let b1 = in_bracket(1, curve(9, &[(10, 9.0)], false));
    assert_eq!(hb.decide(&b1, &others), None);
    // At 30 it meets its bracket's two trials only: three values, the best 3/3 = 1 continues.
    let b1 = in_bracket(1, curve(9, &[(10, 9.0), (30, 4.0)], false));
    assert_eq!(hb.decide(&b1, &others), None, "best of its bracket");
    let b1 = in_bracket(1, curve(9, &[(10, 9.0), (30, 5.5)], false));
    let d = hb.decide(&b1, &others).unwrap();
    assert_eq!(
        (
            d.method.as_str(),
            d.bracket,
            d.rung,
            d.step,
            d.threshold,
            d.compared_with
        ),
        ("hyperband", Some(1), Some(0), 30, 5.0, 3)
    );
    assert_eq!(d.last, Some(5.5));
    assert!(
        d.sentence().contains("bracket 1 at rung 0 (step 30)"),
        "{}",
        d.sentence()
    );
    // The same value in bracket 0 meets the five strong trials at 10 and is cut there.
    let b0 = in_bracket(0, curve(9, &[(10, 5.5)], false));
    let d = hb.decide(&b0, &others).unwrap();
    assert_eq!(
        (d.bracket, d.rung, d.threshold, d.compared_with),
        (Some(0), Some(0), 0.2, 6)
    );
    // Bracket 2 (first rung 90) and a trial that ends at step 90: never judged.
    let short = Pruner::Hyperband {
        min: 10,
        max: Some(90),
        reduction_factor: 3,
        resource: Resource::Steps,
    };
    let b2 = in_bracket(2, curve(9, &[(30, 9.0), (60, 9.0), (90, 9.0)], false));
    let others2 = vec![in_bracket(2, curve(1, &[(90, 0.1)], false))];
    assert!(hb.decide(&b2, &others2).is_some(), "90 < 100 is a rung");
    assert_eq!(short.decide(&b2, &others2), None, "90 is that trial's end");
    // No bracket, no decision (a trial the search does not place).
    assert_eq!(hb.decide(&curve(9, &[(10, 99.0)], false), &others), None);
}

#[test]
fn token_rungs_meet_every_batch_size_at_the_same_budget() {
    // lr_search's shape: 3 epochs of 40k tokens at block 128; batch 2 trains 468 steps,
    // batch 16 57 steps, both ~117-120k tokens. Counted in steps their brackets differ
    // (3 and 2 from min 20); counted in tokens both have rungs at 20480 and 61440 only.
    let hb = Pruner::Hyperband {
        min: 20_480,
        max: None,
        reduction_factor: 3,
        resource: Resource::Tokens,
    };
    let small = hb.for_trial(468, 119_808);
    let large = hb.for_trial(57, 116_736);
    assert_eq!(small.bracket(0, 0).unwrap().brackets, 2);
    assert_eq!(large.bracket(0, 0).unwrap().brackets, 2);
    assert_eq!(small.bracket(0, 0).unwrap().max_steps, 119_808);
    // Bracket 0. A batch-16 trial evaluating every 20 steps (40,960 tokens) met rung 0
    // (20,480) at its first evaluation with 4.0; a batch-2 trial evaluating every 5,120
    // tokens meets it at 20,480, not at its 20th step (5,120 tokens).
    let others = vec![in_bracket(0, curve(1, &[(40_960, 4.0)], false))];
    let early = in_bracket(
        0,
        curve(2, &[(5_120, 9.0), (10_240, 8.0), (15_360, 7.0)], false),
    );
    assert_eq!(
        small.decide(&early, &others),
        None,
        "no rung before 20,480 tokens"
    );
    let at_rung = in_bracket(0, curve(2, &[(15_360, 7.0), (20_480, 5.0)], false));
    let d = small.decide(&at_rung, &others).unwrap();
    assert_eq!(
        (d.step, d.resource, d.rung, d.threshold, d.compared_with),
        (20_480, Resource::Tokens, Some(0), 4.0, 2)
    );
    assert!(
        d.sentence().contains("rung 0 (20480 tokens)"),
        "{}",
        d.sentence()
    );
    let better = in_bracket(0, curve(2, &[(15_360, 7.0), (20_480, 3.0)], false));
    assert_eq!(small.decide(&better, &others), None);
}

#[test]
fn the_spec_json_names_tokens_and_keeps_the_steps_form() {
    let steps = Pruner::Hyperband {
        min: 20,
        max: None,
        reduction_factor: 3,
        resource: Resource::Steps,
    };
    let json = serde_json::to_value(steps).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"method": "hyperband", "min_steps": 20, "max_steps": null,
                           "reduction_factor": 3})
    );
    let tokens = Pruner::Asha {
        min: 20_480,
        reduction_factor: 3,
        resource: Resource::Tokens,
    };
    let json = serde_json::to_value(tokens).unwrap();
    assert_eq!(json["resource"], "tokens");
    assert_eq!(serde_json::from_value::<Pruner>(json).unwrap(), tokens);
    assert_eq!(
        serde_json::from_value::<Pruner>(
            serde_json::json!({"method": "asha", "min_steps": 5, "reduction_factor": 2})
        )
        .unwrap()
        .resource(),
        Resource::Steps,
        "a ledger written before resources reads as steps"
    );
}
