//! `[prune]` of a search sweep, message by message: Hyperband's keys, rungs in tokens, the
//! bracket check.
use super::*;

/// A TPE search over batch sizes 2 and 16 whose trials train 468 and 57 steps (40,000 tokens per
/// epoch of 128-token blocks, 3 epochs), with `[prune]` lines appended.
fn hyperband_search(search: &str, prune: &str) -> String {
    BASE.replace("kind = \"ablation\"", "kind = \"tpe\"")
        .replace(
            "epochs = 5",
            "epochs = 3\nmax_train_tokens = 40000\neval_every = 20",
        )
        + &format!(
            "[search]\n{search}\n[space]\nlearning_rate = {{ log_uniform = [1e-4, 1e-2] }}\n\
             batch_size = {{ choice = [2, 16] }}\n[prune]\nmethod = \"hyperband\"\n{prune}"
        )
}

#[test]
fn hyperband_takes_min_steps_from_eval_every_and_max_steps_from_each_trial() {
    let (_d, p) = setup(&hyperband_search("trials = 30", ""));
    let s = load(&p, None, &[]).unwrap();
    assert_eq!(
        s.search.as_ref().unwrap().prune,
        crate::search::Pruner::Hyperband {
            min: 20,
            max: None,
            reduction_factor: 3,
            resource: crate::search::Resource::Steps,
        }
    );
    assert_eq!(
        s.spec_json()["search"]["prune"],
        serde_json::json!({"method": "hyperband", "min_steps": 20, "max_steps": null,
                           "reduction_factor": 3})
    );
    let (_d, p) = setup(&hyperband_search(
        "trials = 30",
        "min_steps = 10\nmax_steps = 300\nreduction_factor = 2\n",
    ));
    let s = load(&p, None, &[]).unwrap();
    assert_eq!(
        s.search.as_ref().unwrap().prune,
        crate::search::Pruner::Hyperband {
            min: 10,
            max: Some(300),
            reduction_factor: 2,
            resource: crate::search::Resource::Steps,
        }
    );
}

#[test]
fn min_tokens_counts_the_rungs_in_training_tokens() {
    let (_d, p) = setup(&hyperband_search(
        "trials = 30",
        "min_tokens = 20480
",
    ));
    let s = load(&p, None, &[]).unwrap();
    assert_eq!(
        s.search.as_ref().unwrap().prune,
        crate::search::Pruner::Hyperband {
            min: 20_480,
            max: None,
            reduction_factor: 3,
            resource: crate::search::Resource::Tokens,
        }
    );
    assert_eq!(
        s.spec_json()["search"]["prune"],
        serde_json::json!({"method": "hyperband", "min_steps": 20480, "max_steps": null,
                           "reduction_factor": 3, "resource": "tokens"})
    );
    let asha = hyperband_search(
        "trials = 30",
        "min_tokens = 4096
",
    )
    .replace("method = \"hyperband\"", "method = \"asha\"");
    let (_d, p) = setup(&asha);
    assert!(matches!(
        load(&p, None, &[]).unwrap().search.unwrap().prune,
        crate::search::Pruner::Asha {
            min: 4096,
            resource: crate::search::Resource::Tokens,
            ..
        }
    ));
}

#[test]
fn bad_hyperband_settings_name_the_key_and_the_fix() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // (search, prune, the place, what)
        (
            "trials = 30",
            "min_steps = 50\nmax_steps = 50\n",
            "s.toml:23:13: prune.max_steps",
            "50 is not above min_steps 50",
        ),
        (
            "trials = 30",
            "max_steps = 20\n",
            "prune.max_steps",
            "20 is not above min_steps 20 (eval_every, its default)",
        ),
        (
            "trials = 30",
            "reduction_factor = 1\n",
            "s.toml:22:20: prune.reduction_factor",
            "1 is below 2",
        ),
        (
            "trials = 30",
            "min_steps = 500\n",
            "prune.min_steps",
            "not below the trials' length (at most 468 steps here)",
        ),
        // Every trial of this space trains 3 x 40,000 tokens, less the last partial step.
        (
            "trials = 30",
            "min_tokens = 200000\n",
            "prune.min_tokens",
            "not below the trials' length (at most 119808 tokens here)",
        ),
        (
            "trials = 30",
            "min_steps = 20\nmin_tokens = 20480\n",
            "prune.min_steps",
            "both min_steps and min_tokens are set",
        ),
        (
            "trials = 30",
            "min_tokens = 20480\nmax_steps = 300\n",
            "prune.max_steps",
            "the rungs count tokens (min_tokens = 20480), so the maximum must too",
        ),
        (
            "trials = 30",
            "max_tokens = 100000\n",
            "prune.max_tokens",
            "the rungs count steps (min_steps = 20, from eval_every)",
        ),
        (
            "trials = 30",
            "min_tokens = 20480\nmax_tokens = 20480\n",
            "prune.max_tokens",
            "20480 is not above min_tokens 20480",
        ),
        // 3 brackets (first rungs 20, 60, 180 up to the batch-2 trials' 468 steps), 2 trials.
        (
            "trials = 2",
            "",
            "prune.method",
            "3 brackets (first rungs at 20, 60, 180 steps), and the budget of 2 trials leaves",
        ),
    ];
    for (i, (search, prune, place, what)) in cases.iter().enumerate() {
        let e = err(&hyperband_search(search, prune), &[]);
        assert!(
            e.contains(place) && e.contains(what) && e.contains("fix:"),
            "case {i}: {e}"
        );
    }
    // max_steps belongs to Hyperband.
    let asha = hyperband_search("trials = 30", "max_steps = 300\n")
        .replace("method = \"hyperband\"", "method = \"asha\"");
    let e = err(&asha, &[]);
    assert!(
        e.contains("prune.max_steps") && e.contains("only method = \"hyperband\""),
        "{e}"
    );
    // Tokens count the rungs of ASHA and Hyperband only.
    let median = hyperband_search("trials = 30", "min_tokens = 20480\n")
        .replace("method = \"hyperband\"", "method = \"median\"");
    let e = err(&median, &[]);
    assert!(
        e.contains("prune.min_tokens") && e.contains("only method = \"asha\" or"),
        "{e}"
    );
    // Pruning needs evaluations.
    let e = err(
        &hyperband_search("trials = 30", "").replace("eval_every = 20", ""),
        &[],
    );
    assert!(
        e.contains("prune.method") && e.contains("no eval_every"),
        "{e}"
    );
}

#[test]
fn the_bracket_check_names_the_budget_that_fills_every_bracket() {
    let prune = "min_steps = 1\nmax_steps = 1000\nreduction_factor = 2\n";
    let e = err(&hyperband_search("trials = 5\nseed = 3", prune), &[]);
    // 1 x 2^k <= 1000 for k = 0..9: 10 brackets; 5 trials cannot fill them.
    assert!(
        e.contains("10 brackets") && e.contains("without a trial"),
        "{e}"
    );
    let need: usize = e
        .split("trials to at least ")
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no budget named: {e}"));
    let n = crate::search::prune::trials_for_every_bracket(3, 10, 2).unwrap() as usize;
    assert_eq!(need, n);
    let (_d, p) = setup(&hyperband_search(
        &format!("trials = {need}\nseed = 3"),
        prune,
    ));
    assert!(
        load(&p, None, &[]).is_ok(),
        "{need} trials fill every bracket"
    );
    let (_d, p) = setup(&hyperband_search(
        &format!("trials = {}\nseed = 3", need - 1),
        prune,
    ));
    assert!(load(&p, None, &[]).is_err(), "{} do not", need - 1);
    // Step counts that only the data bounds (no max_train_tokens): checked by the trial alone.
    let open = hyperband_search("trials = 2", "").replace("max_train_tokens = 40000\n", "");
    let (_d, p) = setup(&open);
    assert!(load(&p, None, &[]).is_ok());
}
