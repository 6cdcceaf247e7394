//! Sweep-file parsing and validation, message by message.
use super::*;
use crate::error::UsageError;

#[path = "prune_tests.rs"]
mod prune_tests;

/// A project root with `data/x.tsv` and the sweep file at `exp/s.toml`, which names the
/// data relative to itself (`../data/x.tsv`).
fn setup(body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::create_dir_all(dir.path().join("exp")).unwrap();
    std::fs::write(dir.path().join("data/x.tsv"), "x").unwrap();
    let path = dir.path().join("exp/s.toml");
    std::fs::write(&path, body).unwrap();
    (dir, path)
}

const BASE: &str = r#"[sweep]
name = "t"
kind = "ablation"
[base]
model = "gpt2-tiny"
data = { sources = ["../data/x.tsv"], categories = ["cs.CL"] }
block_size = 128
batch_size = 8
grad_accum = 1
learning_rate = 5e-5
weight_decay = 0.0
epochs = 5
"#;

fn err(body: &str, sets: &[&str]) -> String {
    let (_d, p) = setup(body);
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let e = load(&p, None, &sets).unwrap_err();
    assert!(
        e.downcast_ref::<UsageError>().is_some(),
        "usage error: {e:#}"
    );
    format!("{e:#}")
}

#[test]
fn ablation_expands_one_axis_at_a_time_with_shared_baseline() {
    let body = format!(
        "{BASE}[grid]\nblock_size = [128, 64, 32]\ngrad_accum = [1, 2]\n\
             [[reference]]\nblock_size = 128\nvalid_ppl = 21.9143\nlabel = \"82M*\"\n"
    );
    let (dir, p) = setup(&body);
    let s = load(&p, None, &[]).unwrap();
    assert_eq!(s.kind, Kind::Ablation);
    // baseline, 64, 32, grad_accum 2 (block 128 and grad_accum 1 are the baseline).
    let labels: Vec<String> = s
        .trials
        .iter()
        .map(|t| Json::Object(t.label.clone()).to_string())
        .collect();
    assert_eq!(
        labels,
        [
            r#"{"block_size":128,"grad_accum":1}"#,
            r#"{"block_size":64}"#,
            r#"{"block_size":32}"#,
            r#"{"grad_accum":2}"#
        ]
    );
    assert!(s.trials[0].is_baseline && !s.trials[1].is_baseline);
    assert_eq!(s.trials[2].config.block_size, 32);
    assert_eq!(s.trials[2].config.grad_accum, 1);
    let src = std::path::absolute(dir.path().join("data/x.tsv")).unwrap();
    assert_eq!(
        s.trials[0].config.data.sources,
        vec![src.display().to_string()]
    );
    assert_eq!(s.references[0]["valid_ppl"], Json::from(21.9143));
    assert_eq!(s.spec_json()["axes"][0]["name"], "block_size");
}

#[test]
fn profile_axis_maps_paper_references_by_position() {
    let body = format!(
        "{BASE}[grid]\nblock_size = [128, 64]\n[profile.quick]\nepochs = 1\n\
             [profile.quick.grid]\nblock_size = [32, 16]\n\
             [[reference]]\nblock_size = 128\nvalid_ppl = 21.9\n\
             [[reference]]\nblock_size = 64\nvalid_ppl = 27.5\n"
    );
    let (_d, p) = setup(&body);
    let full = load(&p, None, &[]).unwrap();
    assert_eq!(full.references[0]["block_size"], Json::from(128));
    assert!(full.references[0].get("paper_block_size").is_none());
    let quick = load(&p, Some("quick"), &[]).unwrap();
    let got: Vec<(Json, Json)> = quick
        .references
        .iter()
        .map(|r| (r["block_size"].clone(), r["paper_block_size"].clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (Json::from(32), Json::from(128)),
            (Json::from(16), Json::from(64))
        ]
    );
}

#[test]
fn grid_paired_axis_profile_and_set() {
    let body = BASE.replace("kind = \"ablation\"", "kind = \"grid\"")
            + "[grid]\nmodel_lr = [{ model = \"gpt2-tiny\", learning_rate = 1e-3 }, { model = \"gpt2-mini\", learning_rate = 5e-4 }]\nseed = [1, 2]\n\
               [profile.quick]\nepochs = 1\nmax_steps = 10\n[profile.quick.grid]\nseed = [7]\n";
    let (_d, p) = setup(&body);
    let s = load(&p, None, &[]).unwrap();
    assert_eq!(s.trials.len(), 4);
    assert_eq!(s.trials[3].config.model.to_string(), "gpt2-mini");
    assert_eq!(s.trials[3].config.learning_rate, 5e-4);
    assert_eq!(s.trials[3].config.seed, 2);
    let q = load(
        &p,
        Some("quick"),
        &["batch_size=2".into(), "tokenizer=bpe-512".into()],
    )
    .unwrap();
    assert_eq!(q.trials.len(), 2);
    assert!(q.trials.iter().all(|t| t.config.seed == 7
        && t.config.epochs == 1
        && t.config.max_steps == Some(10)
        && t.config.batch_size == 2
        && t.config.tokenizer.to_string() == "bpe-512"));
    let g = load(&p, None, &["grid.seed=[3,4,5]".into()]).unwrap();
    assert_eq!(g.trials.len(), 6);
    let e = format!("{:#}", load(&p, Some("full"), &[]).unwrap_err());
    assert!(e.contains("--profile full") && e.contains("quick"), "{e}");
}

#[test]
fn errors_name_location_key_and_fix() {
    let e = err(&BASE.replace("epochs = 5", "epochs = 5\nepoch = 3"), &[]);
    assert!(
        e.contains("s.toml:13:1: epoch: unknown key; fix: use one of:"),
        "{e}"
    );
    let e = err(&BASE.replace("batch_size = 8", "batch_size = \"8\""), &[]);
    assert!(
        e.contains("s.toml:8:14: batch_size: expected an integer, found a string; fix:"),
        "{e}"
    );
    let e = err(
        &BASE.replace("learning_rate = 5e-5", "learning_rate = -1.0"),
        &[],
    );
    assert!(e.contains(":10:17: learning_rate: must be positive"), "{e}");
    let e = err(&BASE.replace("epochs = 5", "epochs = 0"), &[]);
    assert!(e.contains(":12:10: epochs: must be positive"), "{e}");
    let e = err(&format!("{BASE}[grid]\nblock_size = []\n"), &[]);
    assert!(
        e.contains(":14:14: grid.block_size: empty axis; fix:"),
        "{e}"
    );
    let e = err(&format!("{BASE}[grid]\nblock_size = [64, 32, 64]\n"), &[]);
    assert!(
        e.contains(":14:23: grid.block_size: duplicate axis value"),
        "{e}"
    );
    // gpt2-tiny has a 256-token context.
    let e = err(&format!("{BASE}[grid]\nblock_size = [64, 512]\n"), &[]);
    assert!(
        e.contains(":14:19: block_size: 512 is above the context length 256"),
        "{e}"
    );
    let e = err(BASE, &["block_size=1024"]);
    assert!(
        e.contains("--set block_size=1024: block_size: 1024 is above"),
        "{e}"
    );
    let e = err(BASE, &["nope=1"]);
    assert!(e.contains("--set nope=1: nope: unknown key"), "{e}");
    let e = err(&BASE.replace("../data/x.tsv", "../data/missing.tsv"), &[]);
    assert!(e.contains(":6:21: data.sources: no such file"), "{e}");
    let e = err(BASE, &["precision=fp8"]);
    assert!(
        e.contains("--set precision=fp8: precision: unknown precision `fp8`"),
        "{e}"
    );
    let (_d, p) = setup(BASE);
    let alias = load(&p, None, &["precision=fp16".to_string()]).unwrap();
    let canonical = load(&p, None, &["precision=f16".to_string()]).unwrap();
    assert_eq!(
        alias.trials[0].config.precision,
        Some(crate::trial::Precision::F16)
    );
    assert_eq!(alias.trials[0].config, canonical.trials[0].config);
    // A --set that replaces the missing path makes it irrelevant; a missing --set path is not.
    let (d, p) = setup(&BASE.replace("../data/x.tsv", "../data/missing.tsv"));
    let x = d.path().join("data/x.tsv").display().to_string();
    let sweep = load(&p, None, &[format!("data.sources=[{x:?}]")]).unwrap();
    assert_eq!(sweep.trials[0].config.data.sources, vec![x]);
    let e = err(
        &BASE.replace("../data/x.tsv", "../data/missing.tsv"),
        &["data.sources=[\"/nope.tsv\"]"],
    );
    assert!(
        e.contains("--set data.sources=[\"/nope.tsv\"]: data.sources: no such file: /nope.tsv"),
        "{e}"
    );
    let e = err(&BASE.replace("epochs = 5\n", ""), &[]);
    assert!(
        e.contains("epochs: missing required key; fix: add `epochs = 5` to [base]"),
        "{e}"
    );
    let e = err(&BASE.replace("[base]", "[base\n"), &[]);
    assert!(
        e.contains("s.toml:4:") && e.contains("TOML syntax error"),
        "{e}"
    );
    let e = err(&format!("{BASE}[grid]\nfoo = [1, 2]\n"), &[]);
    assert!(
        e.contains(":14:8: grid.foo: `foo` is not a config key"),
        "{e}"
    );
    let e = err(&format!("{BASE}[[reference]]\nvalid_pll = 3.0\n"), &[]);
    assert!(e.contains(":14:1: reference.valid_pll: unknown key"), "{e}");
    let e = err(
        &BASE.replace("model = \"gpt2-tiny\"", "model = \"gpt5\""),
        &[],
    );
    assert!(e.contains(":5:9: model: unknown model `gpt5`"), "{e}");
}

/// Relative paths resolve against the sweep file's own directory, else the working
/// directory: a copy of a sweep file in a scratch folder finds data beside it.
#[test]
fn relative_paths_resolve_against_the_file_then_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(scratch.join("data")).unwrap();
    std::fs::write(scratch.join("data/y.tsv"), "y").unwrap();
    let file = scratch.join("mine.toml");
    std::fs::write(&file, BASE.replace("../data/x.tsv", "data/y.tsv")).unwrap();
    let s = load(&file, None, &[]).unwrap();
    let want = std::path::absolute(scratch.join("data/y.tsv")).unwrap();
    assert_eq!(
        s.trials[0].config.data.sources,
        vec![want.display().to_string()]
    );
    // Not beside the file: the working directory (this crate's root in tests) is tried next,
    // and the message names both places.
    std::fs::write(&file, BASE.replace("../data/x.tsv", "Cargo.toml")).unwrap();
    let s = load(&file, None, &[]).unwrap();
    assert!(s.trials[0].config.data.sources[0].ends_with("Cargo.toml"));
    std::fs::write(&file, BASE.replace("../data/x.tsv", "nope.tsv")).unwrap();
    let e = format!("{:#}", load(&file, None, &[]).unwrap_err());
    assert!(e.contains("mine.toml:6:") && e.contains(" or "), "{e}");
}

#[test]
fn search_tables_resolve_with_profiles_key_by_key() {
    let body = BASE.replace("kind = \"ablation\"", "kind = \"tpe\"")
        + r#"eval_every = 10
[search]
trials = 40
metric = "valid_ppl"
startup = 6
[space]
learning_rate = { log_uniform = [1e-5, 1e-3] }
opt = { choice = [{ batch_size = 4, grad_accum = 2 }, { batch_size = 8, grad_accum = 1 }] }
[prune]
method = "asha"
[profile.quick.search]
trials = 8
[profile.quick.space]
learning_rate = { uniform = [1e-4, 2e-4] }
[profile.quick.prune]
reduction_factor = 2
"#;
    let (_d, p) = setup(&body);
    let full = load(&p, None, &[]).unwrap();
    let s = full.search.as_ref().unwrap();
    assert_eq!((s.trials, s.metric.as_str()), (40, "valid_ppl"));
    assert_eq!(s.method, crate::search::Method::Tpe { startup: 6 });
    // ASHA's first rung defaults to the evaluation interval.
    assert_eq!(
        s.prune,
        crate::search::Pruner::Asha {
            min: 10,
            reduction_factor: 3,
            resource: crate::search::Resource::Steps,
        }
    );
    assert!(
        full.trials.is_empty(),
        "a search's trials are suggested while it runs"
    );
    let quick = load(&p, Some("quick"), &[]).unwrap();
    let q = quick.search.as_ref().unwrap();
    assert_eq!(
        (q.trials, q.method),
        (8, crate::search::Method::Tpe { startup: 6 })
    );
    assert_eq!(
        q.space[0].dist,
        crate::search::Dist::Uniform {
            low: 1e-4,
            high: 2e-4
        }
    );
    assert!(matches!(
        q.prune,
        crate::search::Pruner::Asha {
            reduction_factor: 2,
            ..
        }
    ));
    // A point resolves over [base]: a paired choice sets both of its keys, the label names it.
    let t = quick.point(&[1.5e-4, 0.0]).unwrap();
    assert_eq!((t.config.batch_size, t.config.grad_accum), (4, 2));
    assert_eq!(t.config.learning_rate, 1.5e-4);
    let label = Json::Object(t.label.clone());
    assert_eq!(
        label["opt"],
        serde_json::json!({"batch_size": 4, "grad_accum": 2})
    );
    assert_eq!(q.point_of(&t.label), Some(vec![1.5e-4, 0.0]));
    assert_eq!(
        quick.spec_json()["search"]["space"][1]["values"][1],
        serde_json::json!({"batch_size": 8, "grad_accum": 1})
    );
}

#[test]
fn search_errors_in_an_unused_profile_are_reported_too() {
    let body = BASE.replace("kind = \"ablation\"", "kind = \"random\"")
        + "[search]\ntrials = 4\n[space]\nseed = { int = [1, 9] }\n[profile.big.search]\ntrials = -1\n";
    let e = err(&body, &[]);
    assert!(
        e.contains("s.toml:") && e.contains("search.trials") && e.contains("fix:"),
        "{e}"
    );
}

#[test]
fn models_are_every_model_a_sweep_may_train() {
    use crate::trial::ModelSpec;
    let names = |s: &Sweep| {
        s.models()
            .iter()
            .map(ModelSpec::to_string)
            .collect::<Vec<_>>()
    };
    // A grid's: its trials', each once; a Hub repository keeps its revision.
    let body = BASE.replace("kind = \"ablation\"", "kind = \"grid\"")
        + "[grid]\nmodel = [\"gpt2-tiny\", \"org/tiny@v1\"]\nseed = [1, 2]\n";
    let (_d, p) = setup(&body);
    assert_eq!(
        names(&load(&p, None, &[]).unwrap()),
        ["gpt2-tiny", "org/tiny@v1"]
    );
    // A search's: the base's, and each choice that sets one (a search has no trials yet).
    let search = BASE.replace("kind = \"ablation\"", "kind = \"random\"")
        + "[search]\ntrials = 4\n[space]\nm = { choice = [{ model = \"gpt2-tiny\" }, { model = \"distilgpt2\", block_size = 64 }] }\n";
    let (_d, p) = setup(&search);
    let s = load(&p, None, &[]).unwrap();
    assert!(s.trials.is_empty());
    assert_eq!(names(&s), ["gpt2-tiny", "distilgpt2"]);
    let partial = search.replace("{ model = \"gpt2-tiny\" }", "{ seed = 3 }");
    let (_d, p) = setup(&partial);
    assert_eq!(
        names(&load(&p, None, &[]).unwrap()),
        ["gpt2-tiny", "distilgpt2"]
    );
    // --set wins over everything.
    let s = load(&p, None, &["model=gpt2-mini".to_string()]).unwrap();
    assert_eq!(names(&s), ["gpt2-mini"]);
}

/// `BASE` with `lines` under `[sweep]` (they land on line 4 and below).
fn with_sweep_keys(lines: &str) -> String {
    BASE.replace(
        "kind = \"ablation\"\n",
        &format!("kind = \"ablation\"\n{lines}"),
    )
}

#[test]
fn seeds_replicate_every_row_and_keep_the_rows_own_trials() {
    let grid = "[grid]\nblock_size = [128, 64]\n";
    let (_d, plain) = setup(&format!("{BASE}seed = 42\n{grid}"));
    let plain = load(&plain, None, &[]).unwrap();
    assert_eq!(plain.seeds, None);
    assert_eq!(plain.flat, crate::stats::FLAT);
    assert_eq!(plain.spec_json()["seeds"], Json::Null);
    let body = format!(
        "{}seed = 42\n{grid}",
        with_sweep_keys("seeds = [42, 1, 2]\n")
    );
    let p = _d.path().join("exp/seeds.toml");
    std::fs::write(&p, body).unwrap();
    let s = load(&p, None, &[]).unwrap();
    assert_eq!(s.seeds, Some(vec![42, 1, 2]));
    assert_eq!(s.spec_json()["seeds"], serde_json::json!([42, 1, 2]));
    // Seed by seed: the first seed's whole table, then the next seed's.
    let rows: Vec<(String, u64, bool)> = s
        .trials
        .iter()
        .map(|t| {
            (
                Json::Object(t.label.clone()).to_string(),
                t.config.seed,
                t.is_baseline,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (r#"{"block_size":128,"seed":42}"#.to_string(), 42, true),
            (r#"{"block_size":64,"seed":42}"#.to_string(), 42, false),
            (r#"{"block_size":128,"seed":1}"#.to_string(), 1, true),
            (r#"{"block_size":64,"seed":1}"#.to_string(), 1, false),
            (r#"{"block_size":128,"seed":2}"#.to_string(), 2, true),
            (r#"{"block_size":64,"seed":2}"#.to_string(), 2, false),
        ]
    );
    // The seed-42 replicates are the trials of the sweep without seeds (same config, same hash).
    assert_eq!(s.trials[0].config, plain.trials[0].config);
    assert_eq!(s.trials[1].config, plain.trials[1].config);
    // A profile's seeds replace [sweep]'s; --seeds replaces both. Flat likewise.
    let body = format!(
        "{}{grid}[profile.q]\nseeds = [7, 8]\nflat = 0.01\n",
        with_sweep_keys("seeds = [42, 1, 2]\nflat = 0.002\n")
    );
    let (_d, p) = setup(&body);
    assert_eq!(load(&p, None, &[]).unwrap().flat, 0.002);
    let q = load(&p, Some("q"), &[]).unwrap();
    assert_eq!((q.seeds, q.flat), (Some(vec![7, 8]), 0.01));
    assert_eq!(q.trials.len(), 4);
    let f = load_with(&p, Some("q"), &[], Some("3, 4,5")).unwrap();
    assert_eq!(f.seeds, Some(vec![3, 4, 5]));
    let f = load_with(&p, None, &[], Some("9")).unwrap();
    assert_eq!(
        f.trials.iter().map(|t| t.config.seed).collect::<Vec<_>>(),
        [9, 9]
    );
}

#[test]
fn bad_seeds_and_flat_name_the_place_and_the_fix() {
    let grid = "[grid]\nblock_size = [128, 64]\n";
    let cases: &[(&str, &str, &str)] = &[
        (
            "seeds = []",
            ":4:9: sweep.seeds: empty list of seeds; fix: give at least one",
            "",
        ),
        (
            "seeds = 42",
            ":4:9: sweep.seeds: expected a list of seeds, found an integer",
            "",
        ),
        (
            "seeds = [42, \"1\"]",
            ":4:14: sweep.seeds: a seed is a non-negative integer, found a string",
            "",
        ),
        (
            "seeds = [42, 1.5]",
            ":4:14: sweep.seeds: a seed is a non-negative integer, found a float",
            "",
        ),
        (
            "seeds = [42, -1]",
            ":4:14: sweep.seeds: a seed is a non-negative integer, found a negative integer",
            "",
        ),
        (
            "seeds = [42, 1, 42]",
            ":4:17: sweep.seeds: seed 42 is listed twice; fix: list each seed once",
            "",
        ),
        ("flat = 0", ":4:8: sweep.flat: 0 is outside (0, 0.5)", ""),
        (
            "flat = 0.5",
            ":4:8: sweep.flat: 0.5 is outside (0, 0.5)",
            "",
        ),
        (
            "flat = -0.1",
            ":4:8: sweep.flat: -0.1 is outside (0, 0.5)",
            "",
        ),
        (
            "flat = \"1%\"",
            ":4:8: sweep.flat: expected a number, found a string; fix: write e.g. `flat = 0.001`",
            "",
        ),
        (
            "seedz = [1]",
            ":4:1: sweep.seedz: unknown key; fix: use name, title, description, kind, seeds, flat",
            "",
        ),
    ];
    for (line, want, _) in cases {
        let e = err(
            &format!("{}{grid}", with_sweep_keys(&format!("{line}\n"))),
            &[],
        );
        assert!(e.contains(want), "{line}: {e}");
    }
    // An unused profile is checked too.
    let e = err(&format!("{BASE}{grid}[profile.q]\nseeds = [1, 1]\n"), &[]);
    assert!(
        e.contains(":16:13: profile.q.seeds: seed 1 is listed twice"),
        "{e}"
    );
    // `seed` as an axis (or set for every trial) and `seeds` together.
    let seeds = with_sweep_keys("seeds = [42, 1]\n");
    let e = err(&format!("{seeds}[grid]\nseed = [1, 2]\n"), &[]);
    assert!(
        e.contains(":15:8: grid.seed: sets `seed`, and `seeds` (") && e.contains("s.toml:4:9)"),
        "{e}"
    );
    assert!(e.contains("fix: keep one"), "{e}");
    let e = err(
        &format!("{seeds}[grid]\npair = [{{ seed = 3, block_size = 64 }}]\n"),
        &[],
    );
    assert!(e.contains("grid.pair: sets `seed`"), "{e}");
    let e = err(&format!("{seeds}{grid}"), &["seed=7"]);
    assert!(
        e.contains("--set seed=7: seed: sets one seed for every trial") && e.contains("fix:"),
        "{e}"
    );
    // --seeds: the flag is the place.
    let (_d, p) = setup(&format!("{BASE}{grid}"));
    for (flag, want) in [
        (
            "1,x",
            "--seeds 1,x: not a list of seeds; fix: write e.g. `--seeds 42,1,2`",
        ),
        ("1,1", "--seeds 1,1: --seeds: seed 1 is listed twice"),
        (
            "-3",
            "--seeds -3: --seeds: a seed is a non-negative integer",
        ),
        ("", "--seeds : --seeds: empty list of seeds"),
    ] {
        let e = load_with(&p, None, &[], Some(flag)).unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some());
        assert!(format!("{e:#}").contains(want), "{flag}: {e:#}");
    }
    // A search has no rows to replicate.
    let search = BASE.replace("kind = \"ablation\"", "kind = \"random\"\nseeds = [1, 2]")
        + "[search]\ntrials = 3\n[space]\nlearning_rate = { log_uniform = [1e-4, 1e-2] }\n";
    let e = err(&search, &[]);
    assert!(
        e.contains(":4:9: seeds: a random search suggests its trials one at a time"),
        "{e}"
    );
}

#[test]
fn until_decided_needs_a_baseline_row_and_two_seeds() {
    let (_d, p) = setup(&format!(
        "{}[grid]\nblock_size = [128, 64]\n",
        with_sweep_keys("seeds = [42, 1, 2]\n")
    ));
    let s = load(&p, None, &[]).unwrap();
    s.check_until_decided(10).unwrap();
    let e = format!("{:#}", s.check_until_decided(1).unwrap_err());
    assert!(
        e.contains(
            "--max-seeds 1: an interval needs at least 2 seeds; fix: use --max-seeds 3 or more"
        ),
        "{e}"
    );
    let e = format!("{:#}", s.check_until_decided(2).unwrap_err());
    assert!(
        e.contains("--max-seeds 2: ") && e.contains("already runs 3 seeds"),
        "{e}"
    );
    // A grid whose axis leaves out [base]'s value has no baseline row.
    let (_d, p) = setup(&format!(
        "{}[grid]\nblock_size = [64, 32]\n",
        BASE.replace("kind = \"ablation\"", "kind = \"grid\"")
    ));
    let s = load(&p, None, &[]).unwrap();
    let e = s.check_until_decided(10).unwrap_err();
    assert!(e.downcast_ref::<UsageError>().is_some());
    let e = format!("{e:#}");
    assert!(
        e.contains("--until-decided: ") && e.contains("has no baseline row") && e.contains("fix:"),
        "{e}"
    );
}

#[test]
fn a_reader_names_a_sweep_by_name_profile_or_file() {
    let with_profile = format!("{BASE}[profile.quick]\nmodel = \"gpt2-mini\"\n");
    let (dir, path) = setup(&with_profile);
    let file = path.to_str().unwrap();
    assert_eq!(sweep_arg_name("t", None).unwrap(), "t");
    assert_eq!(sweep_arg_name("t", Some("quick")).unwrap(), "t@quick");
    assert_eq!(sweep_arg_name("t@quick", None).unwrap(), "t@quick");
    assert_eq!(sweep_arg_name("t@quick", Some("quick")).unwrap(), "t@quick");
    assert_eq!(sweep_arg_name(file, Some("quick")).unwrap(), "t@quick");
    assert_eq!(sweep_arg_name(file, None).unwrap(), "t");
    let usage = |arg: &str, profile: Option<&str>| {
        let e = sweep_arg_name(arg, profile).unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some(), "{e:#}");
        format!("{e:#}")
    };
    let e = usage("t@quick", Some("full"));
    assert!(e.contains("`t@full`") && e.contains("fix"), "{e}");
    let e = usage(file, Some("nope"));
    assert!(
        e.contains("no [profile.nope]") && e.contains("quick"),
        "{e}"
    );
    let e = usage(
        &dir.path().join("exp/gone.toml").display().to_string(),
        None,
    );
    assert!(e.contains("cannot read the sweep file"), "{e}");
    // Only [sweep] and the profile names are read: a file whose data is missing still names
    // its sweep.
    std::fs::remove_file(dir.path().join("data/x.tsv")).unwrap();
    assert!(load(&path, Some("quick"), &[]).is_err());
    assert_eq!(recorded_name(&path, Some("quick")).unwrap(), "t@quick");
}

#[test]
fn paths_are_spelled_relative_to_the_sweep_file_inside_its_project() {
    fn p(s: &str) -> &Path {
        Path::new(s)
    }
    let root = p("/proj");
    assert_eq!(
        spelled_in(p("/proj/data/x.tsv"), p("/proj/sweeps"), root),
        p("../data/x.tsv")
    );
    assert_eq!(
        spelled_in(p("/proj/sweeps/d/x.tsv"), p("/proj/sweeps"), root),
        p("d/x.tsv")
    );
    assert_eq!(
        spelled_in(p("/shared/data/x.tsv"), p("/proj/sweeps"), root),
        p("/shared/data/x.tsv")
    );
    assert_eq!(
        spelled_in(p("/proj/sweeps"), p("/proj/sweeps"), root),
        p(".")
    );
    // The project of a directory: its git checkout.
    let (dir, path) = setup(BASE);
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    let exp = path.parent().unwrap();
    assert_eq!(checkout_of(exp), crate::util::absolute_clean(dir.path()));
}
