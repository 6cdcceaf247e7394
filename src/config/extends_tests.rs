//! `extends`: chains merged key by key, the provenance of every value, and every bad chain.
use super::*;
use crate::error::UsageError;

/// A project with `data/x.tsv` and `files` (paths relative to its root).
fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/x.tsv"), "x").unwrap();
    write(&dir, files);
    dir
}

fn write(dir: &tempfile::TempDir, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// What sweep files extend: `[base]`, a profile and a reference row (line numbers matter).
const BASELINE: &str = r#"# shared by the sweeps of exp/
[base]
model = "gpt2-tiny"
data = { sources = ["../data/x.tsv"], categories = ["cs.CL"] }
block_size = 128
batch_size = 8
grad_accum = 1
learning_rate = 5e-5
weight_decay = 0.0
epochs = 5
[profile.quick]
max_steps = 10
learning_rate = 1e-3
[[reference]]
label = "base"
grad_accum = 1
valid_ppl = 20.0
"#;

/// A sweep extending it, overriding one key of `[base]` and one of the profile.
const SWEEP: &str = r#"extends = "base.toml"
[sweep]
name = "t"
kind = "ablation"
[base]
batch_size = 4
[grid]
grad_accum = [1, 2]
[profile.quick]
epochs = 1
[[reference]]
grad_accum = 2
valid_ppl = 21.0
"#;

/// The same sweep written as one file.
const FLAT: &str = r#"[sweep]
name = "t"
kind = "ablation"
[base]
model = "gpt2-tiny"
data = { sources = ["../data/x.tsv"], categories = ["cs.CL"] }
block_size = 128
batch_size = 4
grad_accum = 1
learning_rate = 5e-5
weight_decay = 0.0
epochs = 5
[grid]
grad_accum = [1, 2]
[profile.quick]
max_steps = 10
learning_rate = 1e-3
epochs = 1
"#;

fn load_err(path: &Path, sets: &[&str]) -> String {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let e = load(path, None, &sets).unwrap_err();
    assert!(e.downcast_ref::<UsageError>().is_some(), "{e:#}");
    format!("{e:#}")
}

/// The error of `exp/s.toml` extending `exp/base.toml` with these texts.
fn chain_err(base: &str, sweep: &str) -> String {
    let d = project(&[("exp/base.toml", base), ("exp/s.toml", sweep)]);
    load_err(&d.path().join("exp/s.toml"), &[])
}

#[test]
fn an_extending_file_overrides_key_by_key_and_resolves_as_if_written_whole() {
    let d = project(&[
        ("exp/base.toml", BASELINE),
        ("exp/s.toml", SWEEP),
        ("exp/flat.toml", FLAT),
    ]);
    let (s, flat) = (d.path().join("exp/s.toml"), d.path().join("exp/flat.toml"));
    for profile in [None, Some("quick")] {
        let got = load(&s, profile, &[]).unwrap();
        let want = load(&flat, profile, &[]).unwrap();
        let configs = |s: &Sweep| {
            s.trials
                .iter()
                .map(|t| t.config.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(configs(&got), configs(&want), "{profile:?}");
        assert_eq!(got.trials.len(), 2);
    }
    let q = load(&s, Some("quick"), &[]).unwrap();
    let c = &q.trials[0].config;
    // The extended [base] and profile, the file's own [base] and profile over them.
    assert_eq!((c.batch_size, c.block_size, c.epochs), (4, 128, 1));
    assert_eq!((c.learning_rate, c.max_steps), (1e-3, Some(10)));
    assert_eq!(q.profiles, ["quick"]);
    // Reference rows: the extended file's first.
    let labels: Vec<&Json> = q.references.iter().map(|r| &r["valid_ppl"]).collect();
    assert_eq!(labels, [&Json::from(20.0), &Json::from(21.0)]);
    // The chain is recorded.
    let base = std::path::absolute(d.path().join("exp/base.toml")).unwrap();
    assert_eq!(q.extends, std::slice::from_ref(&base));
    assert_eq!(
        q.spec_json()["extends"],
        serde_json::json!([base.display().to_string()])
    );
    let flat = load(&flat, None, &[]).unwrap();
    assert!(flat.extends.is_empty() && flat.spec_json()["extends"] == serde_json::json!([]));
}

#[test]
fn explain_names_where_each_key_of_the_first_trial_was_set() {
    let d = project(&[("exp/base.toml", BASELINE), ("exp/s.toml", SWEEP)]);
    let s = d.path().join("exp/s.toml");
    let sweep = load(&s, Some("quick"), &["seed=3".into()]).unwrap();
    let (trial, origins) = sweep.explain(None).unwrap();
    assert!(trial.is_baseline);
    let of = |key: &str| {
        let o = origins.iter().find(|o| o.key == key).unwrap();
        (o.layer.clone(), o.at.clone(), o.value.clone())
    };
    let base = d.path().join("exp/base.toml").display().to_string();
    let file = s.display().to_string();
    assert_eq!(
        of("learning_rate"),
        (
            "[profile.quick]".into(),
            format!("{base}:13:17"),
            Json::from(1e-3)
        )
    );
    assert_eq!(
        of("epochs"),
        (
            "[profile.quick]".into(),
            format!("{file}:10:10"),
            Json::from(1)
        )
    );
    assert_eq!(
        of("batch_size"),
        ("[base]".into(), format!("{file}:6:14"), Json::from(4))
    );
    assert_eq!(of("block_size").1, format!("{base}:5:14"));
    assert_eq!(of("data.categories").1, format!("{base}:4:52"));
    assert_eq!(
        of("seed"),
        ("--set".into(), "--set seed=3".into(), Json::from(3))
    );
    assert_eq!(of("dropout").0, "default");
    assert_eq!(of("dropout").1, "");
    // Every resolved key is listed once, sorted.
    let keys: Vec<&str> = origins.iter().map(|o| o.key.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(keys, sorted);
    // A grid's first trial takes each axis's first value.
    write(
        &d,
        &[(
            "exp/g.toml",
            &SWEEP
                .replace("\"ablation\"", "\"grid\"")
                .replace("[1, 2]", "[2, 1]"),
        )],
    );
    let g = load(&d.path().join("exp/g.toml"), None, &[]).unwrap();
    let (_, origins) = g.explain(None).unwrap();
    let ga = origins.iter().find(|o| o.key == "grad_accum").unwrap();
    assert_eq!(ga.layer, "axis grad_accum");
    assert!(ga.at.ends_with("g.toml:8:15"), "{}", ga.at);
    assert_eq!(ga.value, Json::from(2));
}

#[test]
fn chains_and_lists_apply_in_order_and_a_shared_file_once() {
    let d = project(&[
        ("exp/base.toml", BASELINE),
        // a and b both extend base; s extends [a, b]: base, a, b, s.
        (
            "exp/a.toml",
            "extends = \"base.toml\"\n[base]\nlearning_rate = 2e-5\nepochs = 2\n",
        ),
        (
            "exp/b.toml",
            "extends = \"./base.toml\"\n[base]\nepochs = 3\n",
        ),
        (
            "exp/s.toml",
            &SWEEP.replace(
                "extends = \"base.toml\"",
                "extends = [\"a.toml\", \"b.toml\"]",
            ),
        ),
    ]);
    let s = load(&d.path().join("exp/s.toml"), None, &[]).unwrap();
    let c = &s.trials[0].config;
    // a's rate survives (base is not applied again after a); b's epochs win over a's.
    assert_eq!((c.learning_rate, c.epochs, c.batch_size), (2e-5, 3, 4));
    let names: Vec<String> = s
        .extends
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["base.toml", "a.toml", "b.toml"]);
    // An error deep in the chain names every file up to the sweep file.
    write(
        &d,
        &[(
            "exp/base.toml",
            &BASELINE.replace("epochs = 5", "epoch = 5"),
        )],
    );
    let e = load_err(&d.path().join("exp/s.toml"), &[]);
    assert!(e.contains("base.toml:10:1: epoch: unknown key"), "{e}");
    assert!(
        e.contains("(in ")
            && e.contains("base.toml, extended by ")
            && e.contains("a.toml, extended by "),
        "{e}"
    );
    assert!(e.trim_end().ends_with("s.toml)"), "{e}");
}

#[test]
fn errors_name_the_file_line_and_column_a_value_came_from() {
    // Unknown keys and bad values of an extended file, at its own location, with the chain.
    let e = chain_err(
        &BASELINE.replace("epochs = 5", "epochs = 5\nbogus = 1"),
        SWEEP,
    );
    assert!(
        e.contains("base.toml:11:1: bogus: unknown key; fix:"),
        "{e}"
    );
    assert!(e.contains(", extended by ") && e.contains("s.toml)"), "{e}");
    let e = chain_err(
        &BASELINE.replace("learning_rate = 5e-5", "learning_rate = \"x\""),
        SWEEP,
    );
    assert!(e.contains("base.toml:8:17: learning_rate:"), "{e}");
    let e = chain_err(&format!("{BASELINE}[bogus]\nx = 1\n"), SWEEP);
    assert!(e.contains("base.toml:18:2: bogus: unknown section"), "{e}");
    let e = chain_err(
        &BASELINE.replace("[profile.quick]", "[profile.quick"),
        SWEEP,
    );
    assert!(
        e.contains("base.toml:11:") && e.contains("TOML syntax error"),
        "{e}"
    );
    assert!(e.contains(", extended by "), "{e}");
    // A rule between keys: the value that breaks it is the extended file's.
    let e = chain_err(
        &BASELINE.replace("block_size = 128", "block_size = 512"),
        SWEEP,
    );
    assert!(
        e.contains("base.toml:5:14: block_size: 512 is above the context length 256"),
        "{e}"
    );
    // The extending file's own values and `--set` keep theirs.
    let e = chain_err(BASELINE, &SWEEP.replace("batch_size = 4", "batch_size = 0"));
    assert!(e.contains("s.toml:6:14: batch_size:"), "{e}");
    assert!(!e.contains("extended by"), "{e}");
    let d = project(&[("exp/base.toml", BASELINE), ("exp/s.toml", SWEEP)]);
    let e = load_err(&d.path().join("exp/s.toml"), &["block_size=1024"]);
    assert!(
        e.contains("--set block_size=1024: block_size: 1024 is above"),
        "{e}"
    );
}

#[test]
fn bad_chains_are_usage_errors_with_the_fix() {
    let e = chain_err(&format!("extends = \"s.toml\"\n{BASELINE}"), SWEEP);
    assert!(e.contains("base.toml:1:11: extends: a cycle: "), "{e}");
    assert!(
        e.contains("s.toml extends ") && e.contains("fix: remove one `extends`"),
        "{e}"
    );
    let e = chain_err(BASELINE, &SWEEP.replace("\"base.toml\"", "\"s.toml\""));
    assert!(e.contains("s.toml:1:11: extends: a cycle"), "{e}");
    let e = chain_err(BASELINE, &SWEEP.replace("\"base.toml\"", "\"nope.toml\""));
    assert!(
        e.contains("s.toml:1:11: extends: cannot read ") && e.contains("nope.toml"),
        "{e}"
    );
    let e = chain_err(BASELINE, &SWEEP.replace("\"base.toml\"", "3"));
    assert!(
        e.contains(
            "s.toml:1:11: extends: expected a file name or a list of file names, found an integer"
        ),
        "{e}"
    );
    let e = chain_err(
        BASELINE,
        &SWEEP.replace("\"base.toml\"", "[\"base.toml\", true]"),
    );
    assert!(
        e.contains("s.toml:1:25: extends: expected a file name"),
        "{e}"
    );
    // `extends` under a section header is a key of that section.
    let e = chain_err(
        BASELINE,
        &SWEEP.replace(
            "extends = \"base.toml\"\n[sweep]\n",
            "[sweep]\nextends = \"base.toml\"\n",
        ),
    );
    assert!(
        e.contains("sweep.extends: unknown key; fix: move `extends"),
        "{e}"
    );
    // What an extended file may not hold.
    let e = chain_err(&format!("[sweep]\nname = \"b\"\n{BASELINE}"), SWEEP);
    assert!(
        e.contains("base.toml:1:2: sweep: an extended file has no [sweep]"),
        "{e}"
    );
    let e = chain_err(&format!("{BASELINE}[grid]\nseed = [1, 2]\n"), SWEEP);
    assert!(
        e.contains("base.toml:18:2: grid: an extended file has no axes"),
        "{e}"
    );
    let e = chain_err(
        &format!("{BASELINE}[profile.quick.grid]\nseed = [1]\n"),
        SWEEP,
    );
    assert!(e.contains("grid: an extended file has no axes"), "{e}");
    // A base alone is not a sweep.
    let d = project(&[("exp/base.toml", BASELINE)]);
    let e = load_err(&d.path().join("exp/base.toml"), &[]);
    assert!(
        e.contains("base.toml: sweep: no [sweep] section: a file without one is a base"),
        "{e}"
    );
}

#[test]
fn search_tables_inherit_key_by_key_and_a_space_parameter_whole() {
    let base = format!(
        "{}eval_every = 5\n[search]\ntrials = 10\nmetric = \"valid_ppl\"\n\
         [space]\nlearning_rate = {{ log_uniform = [1e-4, 1e-2] }}\n\
         warmup_steps = {{ int = [0, 100], step = 10 }}\n\
         [prune]\nmethod = \"asha\"\nmin_steps = 5\n",
        BASELINE.split("[profile.quick]").next().unwrap()
    );
    let sweep = "extends = \"base.toml\"\n[sweep]\nname = \"s\"\nkind = \"random\"\n\
                 [search]\ntrials = 20\n[space]\nwarmup_steps = { int = [0, 50] }\n";
    let d = project(&[("exp/base.toml", &base), ("exp/s.toml", sweep)]);
    let s = load(&d.path().join("exp/s.toml"), None, &[]).unwrap();
    let search = s.search.unwrap();
    assert_eq!((search.trials, search.metric.as_str()), (20, "valid_ppl"));
    let names: Vec<&str> = search.space.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["learning_rate", "warmup_steps"]);
    // Replaced whole: the extended `step = 10` is gone with its range.
    assert_eq!(
        search.space[1].dist,
        crate::search::Dist::Int {
            low: 0,
            high: 50,
            step: 1,
            log: false
        }
    );
    assert!(matches!(
        search.prune,
        crate::search::Pruner::Asha { min: 5, .. }
    ));
}

/// Relative paths resolve against the directory of the file that wrote them.
#[test]
fn an_extended_file_resolves_its_paths_against_its_own_directory() {
    let d = project(&[
        ("shared/base.toml", BASELINE),
        (
            "exp/deep/s.toml",
            &SWEEP.replace("\"base.toml\"", "\"../../shared/base.toml\""),
        ),
    ]);
    let s = load(&d.path().join("exp/deep/s.toml"), None, &[]).unwrap();
    let want = std::path::absolute(d.path().join("data/x.tsv")).unwrap();
    assert_eq!(
        s.trials[0].config.data.sources,
        [want.display().to_string()]
    );
}
