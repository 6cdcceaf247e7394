//! The LibTorch backend (feature `tch`) on its CPU device: the HF golden check, training with
//! same-seed determinism across a cancel-and-resume and a SIGKILL-and-rerun, and the device's
//! bad input. Empty without the feature, so the default build's tests never need libtorch.
#![cfg(feature = "tch")]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sweep::libtorch::TchTrain;
use sweep::store::{self, TrialState};
use sweep::train::golden::Tolerances;
use sweep::train::sinks::VecSink;
use sweep::train::{run_trial, MetricRow, MetricSink, RunContext, TrialEnd};
use sweep::trial::Precision;
use sweep::trial::{DataSpec, TrialConfig};

mod common;
use common::Project;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

fn sweep_cmd() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("sweep").unwrap();
    c.env_remove("SWEEP_DB")
        .env_remove("SWEEP_CACHE")
        .env_remove("SWEEP_DEVICE");
    c
}

#[test]
fn golden_check_on_libtorch_cpu_matches_transformers_at_f32_and_under_autocast() {
    let check = |p| {
        sweep::train::golden::check::<TchTrain>(&golden_dir(), p, &Default::default(), "tch:cpu")
            .unwrap()
    };
    let r = check(Precision::F32);
    println!("f32: {r:?}");
    let failures = r.failures(Tolerances::for_precision(Precision::F32));
    assert!(failures.is_empty(), "{failures:?}");
    for p in [Precision::Bf16, Precision::F16] {
        let r = check(p);
        println!("{p:?}: {r:?}");
        let failures = r.failures(Tolerances::for_precision(p));
        assert!(failures.is_empty(), "{p:?}: {failures:?}");
        assert!(r.logits_max_diff > 1e-5, "{p:?} changed nothing: {r:?}");
    }
}

#[test]
fn selftest_command_runs_on_tch_cpu() {
    let out = sweep_cmd()
        .args(["selftest", "--json", "--device", "tch:cpu", "--fixture"])
        .arg(golden_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["device"], "libtorch/cpu");
    assert!(r["logits_max_diff"].as_f64().unwrap() < 1e-4, "{r}");
}

/// A small synthetic corpus (Kaggle JSON lines), as in tests/model.rs.
fn write_corpus(dir: &Path) -> PathBuf {
    let words = [
        "language",
        "model",
        "parsing",
        "neural",
        "translation",
        "corpus",
        "semantic",
        "attention",
        "we",
        "propose",
        "a",
        "new",
        "method",
        "results",
        "show",
        "baseline",
    ];
    let mut rng = 12345u64;
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) as usize
    };
    let mut out = String::new();
    for i in 0..240 {
        let title: Vec<&str> = (0..5).map(|_| words[next() % words.len()]).collect();
        let abs: Vec<&str> = (0..40).map(|_| words[next() % words.len()]).collect();
        out += &format!(
            "{{\"id\":\"1801.{i:05}\",\"title\":\"{}\",\"abstract\":\"{}.\",\"categories\":\"cs.CL\",\"update_date\":\"2018-{:02}-{:02}\"}}\n",
            title.join(" "),
            abs.join(" "),
            1 + i / 28,
            1 + i % 28
        );
    }
    let path = dir.join("corpus.jsonl");
    std::fs::write(&path, out).unwrap();
    path
}

fn tiny_trial(source: &Path) -> TrialConfig {
    TrialConfig {
        model: "gpt2-tiny".parse().unwrap(),
        init: None,
        n_layer: Some(1),
        n_embd: Some(32),
        n_head: Some(2),
        tokenizer: "bpe-300".parse().unwrap(),
        precision: None,
        data: DataSpec {
            sources: vec![source.display().to_string()],
            categories: vec!["cs.CL".into()],
            split: [8.0, 1.0, 1.0],
        },
        block_size: 32,
        batch_size: 4,
        grad_accum: 2,
        learning_rate: 3e-3,
        weight_decay: 0.01,
        epochs: 2,
        warmup_steps: 2,
        seed: 7,
        dropout: 0.1,
        max_train_tokens: Some(32 * 8 * 6),
        skip_train_tokens: None,
        max_steps: None,
        eval_every: Some(4),
        eval_tokens: Some(32 * 8),
        eval_block_size: Some(64),
    }
}

/// Cancels the run once it has logged a train row at `at_step`.
struct CancelAt {
    inner: VecSink,
    at_step: u64,
    flag: Arc<AtomicBool>,
}

impl MetricSink for CancelAt {
    fn record(&mut self, row: &MetricRow) -> anyhow::Result<()> {
        if row.split == "train" && row.step >= self.at_step {
            self.flag.store(true, Ordering::SeqCst);
        }
        self.inner.record(row)
    }
}

/// Training on `tch:cpu` learns, and a run cancelled mid-epoch and resumed from its checkpoint
/// ends with the same bits as the uninterrupted one (libtorch's RNG drives dropout, attention
/// dropout included, and is reseeded every step).
#[test]
fn training_on_tch_cpu_learns_and_resume_reproduces_the_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let source = write_corpus(tmp.path());
    let cfg = tiny_trial(&source);
    let ctx = |name: &str| RunContext {
        cache_root: tmp.path().join("cache"),
        progress: false,
        checkpoint_minutes: 0.0,
        device: "tch:cpu".into(),
        ..RunContext::new(tmp.path().join(name))
    };
    let a_ctx = ctx("a");
    let mut a_rows = VecSink::default();
    let TrialEnd::Completed(a) = run_trial(&cfg, &a_ctx, &mut a_rows).unwrap() else {
        panic!("run a did not complete");
    };
    println!("uninterrupted: {a:?}");
    let valid: Vec<&MetricRow> = a_rows.rows.iter().filter(|r| r.split == "valid").collect();
    let first_train = a_rows.rows.iter().find(|r| r.split == "train").unwrap();
    assert!(valid.len() >= 3, "{valid:?}");
    assert!(
        a.valid_loss < valid[0].loss && a.train_loss < first_train.loss,
        "loss did not fall: {:?}",
        a_rows.rows
    );

    let b_ctx = ctx("b");
    let mut b_sink = CancelAt {
        inner: VecSink::default(),
        at_step: 3,
        flag: b_ctx.cancel.clone(),
    };
    assert_eq!(
        run_trial(&cfg, &b_ctx, &mut b_sink).unwrap(),
        TrialEnd::Interrupted
    );
    let resumed = RunContext {
        cancel: Arc::new(AtomicBool::new(false)),
        ..b_ctx.clone()
    };
    let mut b_rows = b_sink.inner;
    let TrialEnd::Completed(b) = run_trial(&cfg, &resumed, &mut b_rows).unwrap() else {
        panic!("resumed run did not complete");
    };
    println!("resumed:       {b:?}");
    for (x, y) in [
        (a.train_loss, b.train_loss),
        (a.valid_loss, b.valid_loss),
        (a.test_loss, b.test_loss),
    ] {
        assert_eq!(x, y, "final numbers differ after resume");
    }
    let key = |r: &MetricRow| (r.split.clone(), r.step, r.loss);
    let mut ka: Vec<_> = a_rows.rows.iter().map(key).collect();
    let mut kb: Vec<_> = b_rows.rows.iter().map(key).collect();
    ka.sort_by(|x, y| x.partial_cmp(y).unwrap());
    kb.sort_by(|x, y| x.partial_cmp(y).unwrap());
    assert_eq!(ka, kb, "metric curves differ after resume");
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A sweep on `--devices tch:cpu` killed with SIGKILL mid-trial, then rerun: the trial resumes
/// from its checkpoint and ends with the numbers of an uninterrupted run; the ledger records the
/// LibTorch backend in the trial's environment.
#[test]
fn sigkill_mid_trial_on_tch_cpu_then_rerun_resumes_with_the_same_numbers() {
    let p = Project::new();
    let text = r#"[sweep]
name = "k"
kind = "grid"
[base]
model = "gpt2-tiny"
tokenizer = "bpe-512"
data = { sources = ["data/x.tsv"], categories = ["cs.CL"] }
block_size = 32
batch_size = 4
grad_accum = 1
learning_rate = 1e-3
weight_decay = 0.0
epochs = 10
max_steps = 400
eval_tokens = 2000
eval_every = 50
[grid]
seed = [2]
"#;
    let file = p.write("exp/k.toml", text);
    let db = p.path().join("results/sweep.db");
    let run = |extra: &[&str]| {
        let mut c = p.std_cmd();
        c.arg("run")
            .arg(&file)
            .args(["--devices", "tch:cpu", "--checkpoint-minutes", "0.005"])
            .args(extra);
        c
    };
    let mut child = {
        use std::os::unix::process::CommandExt;
        let mut c = run(&[]);
        c.stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        c.spawn().unwrap()
    };
    wait_for("the ledger", Duration::from_secs(120), || db.exists());
    let s = store::open(db.to_str().unwrap()).unwrap();
    let mut trial = None;
    wait_for(
        "a checkpoint past step 60",
        Duration::from_secs(300),
        || {
            let Some(sw) = s.sweep_by_name("k").unwrap() else {
                return false;
            };
            let Some(t) = s.sweep_trials(sw.id).unwrap().pop() else {
                return false;
            };
            let t = t.trial;
            let far = s
                .last_metric(t.id, "train")
                .unwrap()
                .is_some_and(|m| m.step >= 60);
            let dir = p.path().join("results/trials").join(&t.hash[..12]);
            if far && common::checkpoint_step(&dir).is_some() {
                trial = Some(t);
                true
            } else {
                false
            }
        },
    );
    let trial = trial.unwrap();
    // SAFETY: kill(2) on the process group we created.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    child.wait().unwrap();
    assert_eq!(
        s.trial(trial.id).unwrap().unwrap().state,
        TrialState::Running
    );

    let out = run(&[]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resumed = s.trial(trial.id).unwrap().unwrap();
    assert_eq!(resumed.state, TrialState::Completed);
    let env = resumed.env.clone().unwrap_or_default();
    assert!(env["resumed_from_step"].as_u64().unwrap_or(0) > 0, "{env}");
    assert_eq!(env["backend"], "libtorch/cpu", "{env}");

    // The same trial uninterrupted, in a fresh project.
    let q = Project::new();
    let qfile = q.write("exp/k.toml", text);
    let out = {
        let mut c = q.std_cmd();
        c.arg("run").arg(&qfile).args(["--devices", "tch:cpu"]);
        c.output().unwrap()
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let qs = store::open(q.path().join("results/sweep.db").to_str().unwrap()).unwrap();
    let reference = qs.trial_by_hash(&trial.hash).unwrap().unwrap();
    let rows = |st: &dyn store::Store, id| -> Vec<(String, i64, f64)> {
        st.metrics(id)
            .unwrap()
            .into_iter()
            .map(|m| (m.split, m.step, m.loss))
            .collect()
    };
    let (got, want) = (rows(&*s, trial.id), rows(&*qs, reference.id));
    assert_eq!(got.len(), want.len(), "no metric row lost or duplicated");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((&g.0, g.1), (&w.0, w.1));
        assert!(
            (g.2 - w.2).abs() <= 1e-9 * w.2.abs().max(1.0),
            "row {g:?} vs uninterrupted {w:?}"
        );
    }
}

/// Bad LibTorch devices are usage errors (exit 2) naming the fix, before any ledger or trial
/// exists: a CUDA device libtorch does not see (none on a CPU machine; past the last one on a
/// GPU machine), and a misspelt device.
#[test]
fn bad_tch_devices_exit_2_before_anything_is_recorded() {
    let p = Project::new();
    let file = p.write(
        "exp/s.toml",
        r#"[sweep]
name = "s"
kind = "grid"
[base]
model = "gpt2-tiny"
tokenizer = "bpe-512"
data = { sources = ["data/x.tsv"], categories = ["cs.CL"] }
block_size = 32
batch_size = 4
max_steps = 2
"#,
    );
    for device in ["tch:cuda:99", "tch:gpu"] {
        let out = p
            .cmd()
            .arg("run")
            .arg(&file)
            .args(["--devices", device])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{device}: {err}");
        assert!(err.contains("tch:"), "{device}: {err}");
        assert!(
            !p.path().join("results").exists(),
            "{device}: a ledger was made"
        );
    }
    let out = sweep_cmd()
        .args(["selftest", "--device", "tch:cuda:99", "--fixture"])
        .arg(golden_dir())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("fix:"), "{err}");
}
