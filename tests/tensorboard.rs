//! TensorBoard logs: a tiny sweep's live event files and `sweep export --format tensorboard`,
//! read back by TensorBoard's own reader (the `tensorboard` package from PyPI, through
//! tests/fixtures/read_tensorboard.py) and checked against the ledger's metric rows.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

mod common;
use common::Project;

/// `tag -> [(step, value)]`, as TensorBoard returns scalars.
type Scalars = BTreeMap<String, Vec<(i64, f64)>>;

const SWEEP: &str = r#"[sweep]
name = "tb"
kind = "ablation"
[base]
model = "gpt2-tiny"
tokenizer = "bpe-512"
data = { sources = ["data/x.tsv"], categories = ["cs.CL"] }
block_size = 32
batch_size = 4
grad_accum = 1
learning_rate = 1e-3
weight_decay = 0.0
epochs = 1
max_steps = 8
eval_every = 4
eval_tokens = 2000
[grid]
block_size = [32, 16]
"#;

/// The interpreter with the `tensorboard` package: `SWEEP_TEST_TB_PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("SWEEP_TEST_TB_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Every run under `logdir` as TensorBoard reads it. Panics (the test fails, never skips) when
/// the interpreter or its `tensorboard` package is missing.
fn read_with_tensorboard(logdir: &Path) -> BTreeMap<String, Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/read_tensorboard.py");
    let out = std::process::Command::new(python())
        .arg(&script)
        .arg(logdir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running `{}`: {e}; set SWEEP_TEST_TB_PYTHON to a Python with \
                 tensorboard==2.21.0 (.ci/run installs one)",
                python()
            )
        });
    assert!(
        out.status.success(),
        "TensorBoard's reader failed (is tensorboard==2.21.0 installed for `{}`? set \
         SWEEP_TEST_TB_PYTHON): {}",
        python(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn scalars_of(run: &Value) -> Scalars {
    run["scalars"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(tag, evs)| {
            let pts = evs
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e[0].as_i64().unwrap(), e[1].as_f64().unwrap()))
                .collect();
            (tag.clone(), pts)
        })
        .collect()
}

/// What the ledger's rows of one trial should look like in TensorBoard (the mapping the README
/// documents, written out here independently of src/tensorboard).
fn expected(rows: &[&Value]) -> Scalars {
    let mut out = Scalars::new();
    for r in rows {
        let step = r["step"].as_i64().unwrap();
        let split = r["split"].as_str().unwrap();
        let mut put = |tag: String, key: &str| {
            out.entry(tag)
                .or_default()
                .push((step, r[key].as_f64().unwrap()));
        };
        put(format!("loss/{split}"), "loss");
        put(format!("ppl/{split}"), "ppl");
        if split == "train" {
            put("train/lr".into(), "lr");
            put("train/tokens_per_s".into(), "tokens_per_s");
        }
    }
    for pts in out.values_mut() {
        pts.sort_by_key(|p| p.0);
    }
    out
}

/// Same tags, steps and values (to f32 precision, as event files store them).
fn assert_same(got: &Scalars, want: &Scalars, what: &str) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: tags"
    );
    for (tag, w) in want {
        let g = &got[tag];
        assert_eq!(g.len(), w.len(), "{what}: {tag} events: {g:?} vs {w:?}");
        for ((gs, gv), (ws, wv)) in g.iter().zip(w) {
            assert_eq!(gs, ws, "{what}: {tag} steps");
            let tol = 1e-6 * wv.abs().max(1.0);
            assert!((gv - wv).abs() <= tol, "{what}: {tag}@{ws}: {gv} vs {wv}");
        }
    }
}

#[test]
#[ignore = "needs the tensorboard Python package (SWEEP_TEST_TB_PYTHON; .ci/run installs it)"]
fn tensorboard_reads_live_logs_and_exports_as_the_ledger_has_them() {
    let p = Project::new();
    let file = p.write("exp/tb.toml", SWEEP);
    let out = p.cmd().arg("run").arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = p
        .cmd()
        .args(["export", "tb", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let ledger: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut by_trial: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for r in &ledger {
        let hash = r["trial_hash"].as_str().unwrap().to_string();
        by_trial.entry(hash).or_default().push(r);
    }
    assert_eq!(by_trial.len(), 2);

    // Live logs: one run per trial, `<hash12>/tb`, with the grad norm of each running train row.
    let live = read_with_tensorboard(&p.path().join("results/trials"));
    assert_eq!(live.len(), 2, "{:?}", live.keys());
    for (hash, rows) in &by_trial {
        let run = &live[&format!("{}/tb", &hash[..12])];
        let mut got = scalars_of(run);
        let norms = got.remove("train/grad_norm").expect("train/grad_norm");
        let running = rows
            .iter()
            .filter(|r| r["split"] == "train" && r["lr"].as_f64() != Some(0.0))
            .count();
        assert!(running > 0 && norms.len() == running, "{norms:?}");
        assert!(norms.iter().all(|(_, g)| g.is_finite() && *g > 0.0));
        assert_same(&got, &expected(rows), "live");
        let label = run["texts"]["run/label"][0].as_str().unwrap();
        assert!(label.contains("sweep `tb`: block_size="), "{label}");
    }

    // The export: `DIR/<sweep>/<axis values>-<hash8>`, the same numbers, no grad norm.
    let dir = p.path().join("tbexport");
    let out = p
        .cmd()
        .args(["export", "tb", "--format", "tensorboard", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = read_with_tensorboard(&dir);
    let names: Vec<&String> = exported.keys().collect();
    assert_eq!(names.len(), 2, "{names:?}");
    for (hash, rows) in &by_trial {
        let block = rows[0]["label"]["block_size"].as_i64().unwrap();
        let name = format!("tb/block_size={block}-{}", &hash[..8]);
        let run = exported
            .get(&name)
            .unwrap_or_else(|| panic!("{name} in {names:?}"));
        assert_same(&scalars_of(run), &expected(rows), "export");
    }
    // A second export replaces the first, leaving nothing staged behind.
    let again = p
        .cmd()
        .args(["export", "tb", "--format", "tensorboard", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(again.status.success());
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["tb"], "{entries:?}");
}

#[test]
fn export_tensorboard_needs_an_out_directory() {
    let p = Project::new();
    let out = p
        .cmd()
        .args(["export", "tb", "--format", "tensorboard"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pass --out DIR"), "{err}");
    let out = p
        .cmd()
        .args(["export", "tb", "--format", "csv", "--out", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--out is for `--format tensorboard`"));
}
