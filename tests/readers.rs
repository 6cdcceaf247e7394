//! The commands that read a recorded sweep name it as `sweep run FILE --profile P` recorded it:
//! `NAME@P`, `NAME --profile P`, or the sweep file itself with `--profile P` (issue 28); and
//! `sweep best` writes its paths for the sweep file's directory, so its snippet works when pasted
//! into a sweep file of the project on any machine.

use std::path::Path;

mod common;
use common::{out_text, Project};

/// Two tiny trials with a `quick` profile; the data path is relative to the file (`exp/`).
const FILE: &str = r#"[sweep]
name = "rd"
[base]
model = "gpt2-tiny"
tokenizer = "bpe-512"
data = { sources = ["../data/x.tsv"], categories = ["cs.CL"] }
block_size = 32
batch_size = 4
grad_accum = 1
learning_rate = 1e-3
weight_decay = 0.0
epochs = 1
max_steps = 40
eval_tokens = 2000
[grid]
learning_rate = [1e-3, 3e-3]
[profile.quick]
max_steps = 3
"#;

fn run_ok(p: &Project, args: &[&str]) -> String {
    let out = p.cmd().args(args).output().unwrap();
    assert!(out.status.success(), "sweep {args:?}: {}", out_text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A usage error (exit 2) whose message contains each of `want`.
fn usage_error(p: &Project, args: &[&str], want: &[&str]) {
    let out = p.cmd().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "sweep {args:?}: {}",
        out_text(&out)
    );
    for w in want {
        assert!(err.contains(w), "sweep {args:?}: no {w:?} in {err}");
    }
}

#[test]
fn every_reader_takes_the_profile_or_the_sweep_file() {
    let p = Project::new();
    p.write("exp/rd.toml", FILE);
    run_ok(&p, &["run", "exp/rd.toml", "--profile", "quick"]);
    let forms: [&[&str]; 3] = [
        &["rd@quick"],
        &["rd", "--profile", "quick"],
        &["exp/rd.toml", "--profile", "quick"],
    ];
    let readers: [&[&str]; 5] = [
        &["results"],
        &["status"],
        &["export", "--format", "csv"],
        &["best"],
        &["report", "--out", "reports/rd.html"],
    ];
    for reader in readers {
        let outputs: Vec<String> = forms
            .iter()
            .map(|form| run_ok(&p, &[reader, form].concat()))
            .collect();
        assert!(
            outputs.iter().all(|o| *o == outputs[0]),
            "{reader:?} differs between the forms: {outputs:#?}"
        );
        if reader[0] == "results" {
            assert!(
                outputs[0].contains("0.003") && outputs[0].contains("Valid PPL"),
                "{}",
                outputs[0]
            );
        }
    }
    // A worker drains the named sweep (nothing left here); cancel finds it and says that it ran
    // locally.
    for form in forms {
        run_ok(&p, &[&["worker", "--sweep"], form].concat());
        usage_error(
            &p,
            &[&["cancel"], form].concat(),
            &["sweep rd@quick: no Slurm job was submitted"],
        );
    }
    // The name alone is another sweep; the errors say what to do.
    usage_error(&p, &["results", "rd"], &["unknown sweep `rd`", "rd@quick"]);
    usage_error(
        &p,
        &["results", "exp/rd.toml", "--profile", "nope"],
        &["no [profile.nope]", "quick"],
    );
    usage_error(
        &p,
        &["report", "rd@quick", "--profile", "full"],
        &["`rd@full`", "fix"],
    );
    usage_error(
        &p,
        &["best", "exp/gone.toml"],
        &["cannot read the sweep file"],
    );
    usage_error(&p, &["status", "--profile", "quick"], &["<SWEEP>"]);
}

/// The snippet's data path is `../data/x.tsv` (relative to `exp/`, where the sweep file is), and
/// pasted under `[base]` of a new sweep file there it plans the very trial it came from.
#[test]
fn sweep_best_writes_paths_for_the_sweep_file_directory() {
    let p = Project::new();
    p.write("exp/rd.toml", FILE);
    run_ok(&p, &["run", "exp/rd.toml", "--profile", "quick"]);
    let root = p.path().canonicalize().unwrap();
    for form in [&["exp/rd.toml", "--profile", "quick"][..], &["rd@quick"]] {
        let snippet = run_ok(&p, &[&["best"], form].concat());
        assert!(
            snippet.contains("sources = [\"../data/x.tsv\"]"),
            "{form:?}: {snippet}"
        );
        assert!(
            !snippet.contains(p.path().to_str().unwrap())
                && !snippet.contains(root.to_str().unwrap()),
            "no path of this machine: {snippet}"
        );
        assert!(snippet.contains("# paths are written for a sweep file beside exp/rd.toml"));
    }
    let snippet = run_ok(&p, &["best", "rd@quick"]);
    let body: String = snippet
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let pasted = p.write(
        "exp/pasted.toml",
        &format!("[sweep]\nname = \"pasted\"\n[base]\n{body}"),
    );
    let plan = run_ok(&p, &["plan", pasted.to_str().unwrap()]);
    assert!(
        plan.contains(" done "),
        "the same trial, already trained: {plan}"
    );
    // From inside `exp/` of a git checkout: the file given there, its paths still relative to
    // its directory (the checkout is the project).
    std::fs::create_dir(p.path().join(".git")).unwrap();
    let out = p
        .cmd()
        .current_dir(p.path().join("exp"))
        .args(["best", "rd.toml", "--profile", "quick", "--db"])
        .arg(Path::new("..").join("results/sweep.db"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", out_text(&out));
    assert!(text.contains("sources = [\"../data/x.tsv\"]"), "{text}");
}
