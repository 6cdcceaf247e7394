//! Sweeps end to end: the `sweep` binary on a tiny generated corpus, with the real trainer.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sweep::store::{self, Store, TrialState};

mod common;
use common::Project;

/// `[sweep]` + `[base]` of a fast trial (gpt2-tiny from scratch, small BPE, few steps).
fn base(name: &str, kind: &str, max_steps: u64) -> String {
    format!(
        r#"[sweep]
name = "{name}"
kind = "{kind}"
[base]
model = "gpt2-tiny"
tokenizer = "bpe-512"
data = {{ sources = ["data/x.tsv"], categories = ["cs.CL"] }}
block_size = 32
batch_size = 4
grad_accum = 1
learning_rate = 1e-3
weight_decay = 0.0
epochs = 1
max_steps = {max_steps}
eval_tokens = 2000
"#
    )
}

impl Project {
    fn db(&self) -> PathBuf {
        self.path().join("results/sweep.db")
    }
    fn store(&self) -> Arc<dyn Store> {
        Arc::from(store::open(self.db().to_str().unwrap()).unwrap())
    }
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn validation_errors_exit_2_and_write_nothing() {
    let p = Project::new();
    let good = base("v", "ablation", 5) + "[grid]\nblock_size = [32, 16]\n";
    let cases: Vec<(String, &str)> = vec![
        (
            good.replace("epochs = 1", "epochs = 1\nepoch = 2"),
            "s.toml:14:1: epoch: unknown key; fix:",
        ),
        (
            good.replace("batch_size = 4", "batch_size = \"4\""),
            "s.toml:9:14: batch_size: expected an integer, found a string; fix:",
        ),
        (
            good.replace("learning_rate = 1e-3", "learning_rate = 0.0"),
            "s.toml:11:17: learning_rate: must be positive",
        ),
        (
            good.replace("epochs = 1", "epochs = -1"),
            "s.toml:13:10: epochs: must be positive",
        ),
        (
            good.replace("batch_size = 4", "batch_size = 0"),
            "s.toml:9:14: batch_size: must be positive",
        ),
        (
            good.replace("block_size = [32, 16]", "block_size = []"),
            "grid.block_size: empty axis; fix:",
        ),
        (
            good.replace("block_size = [32, 16]", "block_size = [32, 16, 32]"),
            "grid.block_size: duplicate axis value; fix:",
        ),
        // gpt2-tiny's context is 256 tokens.
        (
            good.replace("block_size = [32, 16]", "block_size = [32, 512]"),
            "s.toml:17:19: block_size: 512 is above the context length 256",
        ),
    ];
    for (text, want) in cases {
        let file = p.write("exp/s.toml", &text);
        for sub in ["plan", "run"] {
            let out = p.cmd().arg(sub).arg(&file).output().unwrap();
            let err = stderr_of(&out);
            assert_eq!(out.status.code(), Some(2), "{sub}: {err}");
            assert!(err.contains(want), "{sub}: expected `{want}` in: {err}");
            assert!(err.contains("fix:"), "{err}");
        }
        assert!(
            !p.db().exists(),
            "a bad sweep file must not create the ledger"
        );
    }
    // --set errors name the flag.
    let file = p.write("exp/s.toml", &good);
    let out = p
        .cmd()
        .args(["run"])
        .arg(&file)
        .args(["--set", "block_size=1024"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("--set block_size=1024: block_size: 1024 is above"),
        "{}",
        stderr_of(&out)
    );
    let out = p
        .cmd()
        .args(["run"])
        .arg(&file)
        .args(["--profile", "quick"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("no [profile.quick]"),
        "{}",
        stderr_of(&out)
    );
    assert!(!p.db().exists());
}

#[test]
fn plan_shows_trials_and_writes_nothing_then_run_marks_them_done() {
    let p = Project::new();
    let file = p.write(
        "exp/s.toml",
        &(base("pl", "ablation", 6) + "[grid]\nblock_size = [32, 16]\ngrad_accum = [1, 2]\n"),
    );
    let out = p.cmd().arg("plan").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("sweep pl (ablation, 3 trials)"), "{text}");
    assert!(
        text.contains("block_size=32 grad_accum=1*"),
        "baseline row: {text}"
    );
    assert!(
        text.contains("block_size=16") && text.contains("grad_accum=2"),
        "{text}"
    );
    assert_eq!(text.matches(" new ").count(), 3, "{text}");
    assert!(!p.db().exists(), "plan writes no ledger");
    let out = p.cmd().arg("run").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = p.cmd().arg("plan").arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(text.matches(" done ").count(), 3, "{text}");
    let plan_with = |set: &str| {
        let out = p
            .cmd()
            .arg("plan")
            .arg(&file)
            .args(["--set", set])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Throughput is now known, so the plan estimates time.
    let text = plan_with("seed=7");
    assert!(
        text.contains("estimated time for unfinished trials"),
        "{text}"
    );
    let out = p.cmd().args(["status", "pl"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(text.matches("completed").count(), 3, "{text}");
    // Fine-tuning the small preset's local pretraining, which is not cached yet: the plan says
    // the first trial pretrains it once.
    let text = plan_with("init=\"pretrained\"");
    assert!(text.contains("pretrains gpt2-tiny locally once"), "{text}");
    assert!(
        !text.contains(" done "),
        "a pretrained start is a new trial: {text}"
    );
}

/// A sweep file extending a base: `plan` shows the chain, `plan --explain` where each key was
/// set, `run` records the chain in the sweep's spec and the report shows it; a bad chain and the
/// base itself are usage errors that record nothing.
#[test]
fn a_sweep_extending_a_base_shows_explains_and_records_its_chain() {
    let p = Project::new();
    let b = base("unused", "grid", 2);
    p.write("exp/base.toml", &b[b.find("[base]").unwrap()..]);
    let file = p.write(
        "exp/s.toml",
        "extends = \"base.toml\"\n[sweep]\nname = \"ext\"\nkind = \"grid\"\n[base]\n\
         batch_size = 2\n[grid]\ngrad_accum = [1, 2]\n",
    );
    let out = p.cmd().args(["plan", "exp/s.toml"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("from exp/s.toml, extending exp/base.toml"),
        "{text}"
    );
    let out = p
        .cmd()
        .args(["plan", "exp/s.toml", "--explain", "--set", "seed=3"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = |key: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no {key}: {text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        line("batch_size"),
        ["batch_size", "[base]", "exp/s.toml:6:14", "2"]
    );
    assert_eq!(
        line("block_size"),
        ["block_size", "[base]", "exp/base.toml:5:14", "32"]
    );
    assert_eq!(
        line("grad_accum")[..3],
        ["grad_accum", "axis", "grad_accum"]
    );
    assert_eq!(line("seed"), ["seed", "--set", "--set", "seed=3", "3"]);
    assert_eq!(line("dropout")[1], "default");
    assert!(!text.contains(" new "), "explain shows no plan: {text}");
    // Bad input: exit 2, nothing recorded.
    p.write(
        "exp/c.toml",
        "extends = \"c.toml\"\n[sweep]\nname = \"c\"\n",
    );
    for (f, says) in [
        ("exp/c.toml", "extends: a cycle"),
        (
            "exp/base.toml",
            "a file without one is a base that sweep files extend",
        ),
    ] {
        let out = p.cmd().args(["run", f]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
        assert!(stderr_of(&out).contains(says), "{}", stderr_of(&out));
    }
    assert!(!p.db().exists(), "a bad sweep file records nothing");
    let out = p.cmd().arg("run").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let rec = p.store().sweep_by_name("ext").unwrap().unwrap();
    let base = std::path::absolute(p.path().join("exp/base.toml")).unwrap();
    assert_eq!(
        rec.spec["extends"],
        serde_json::json!([base.display().to_string()])
    );
    let html = std::fs::read_to_string(p.path().join("reports/ext.html")).unwrap();
    assert!(
        html.contains("Extends") && html.contains("exp/base.toml"),
        "the report names the chain"
    );
}

/// The store contract on SQLite (tests/cluster.rs runs it on PostgreSQL).
#[test]
fn store_contract_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    let make = || -> anyhow::Result<Arc<dyn Store>> {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Arc::from(store::open(&format!(
            "sqlite://{}/c{i}.db",
            dir.path().display()
        ))?))
    };
    store::contract::run_all(&make).unwrap();
}

#[test]
fn shared_baseline_is_trained_once_across_sweeps() {
    let p = Project::new();
    let a = p.write(
        "exp/a.toml",
        &(base("a", "ablation", 6) + "[grid]\nblock_size = [32, 16]\n"),
    );
    let b = p.write(
        "exp/b.toml",
        &(base("b", "ablation", 6) + "[grid]\ngrad_accum = [1, 2]\n"),
    );
    let out = p.cmd().arg("run").arg(&a).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = p.cmd().arg("run").arg(&b).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("2 trials (1 already done, 1 new in the ledger)"),
        "{}",
        stderr_of(&out)
    );
    let s = p.store();
    let sa = s
        .sweep_trials(s.sweep_by_name("a").unwrap().unwrap().id)
        .unwrap();
    let sb = s
        .sweep_trials(s.sweep_by_name("b").unwrap().unwrap().id)
        .unwrap();
    assert!(sa[0].is_baseline && sb[0].is_baseline);
    assert_eq!(
        sa[0].trial.id, sb[0].trial.id,
        "one baseline trial shared by both sweeps"
    );
    assert_eq!(sb[0].trial.attempts, 1, "the baseline was trained once");
    assert_eq!(sb[0].label, serde_json::json!({"grad_accum": 1}));
    for t in sa.iter().chain(&sb) {
        assert_eq!(t.trial.state, TrialState::Completed);
        assert!(!s.metrics(t.trial.id).unwrap().is_empty());
    }
    // --force retrains.
    let out = p.cmd().arg("run").arg(&b).arg("--force").output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let again = s.trial(sb[0].trial.id).unwrap().unwrap();
    assert_eq!(again.attempts, 1);
    assert_ne!(
        again.started_at, sb[0].trial.started_at,
        "--force reran the trial"
    );
    assert_eq!(
        again.results.valid_loss, sb[0].trial.results.valid_loss,
        "same seed, same numbers"
    );
}

#[test]
fn a_failing_trial_does_not_stop_the_sweep() {
    let p = Project::new();
    // A source whose header is not an arXiv Archive TSV: that trial fails, the other completes.
    p.write("data/bad.tsv", "foo\tbar\n1\t2\n");
    let text = base("f", "grid", 5)
        + "[grid]\ndata = [{ sources = [\"data/x.tsv\"] }, { sources = [\"data/bad.tsv\"] }]\n";
    let file = p.write("exp/f.toml", &text);
    let out = p
        .cmd()
        .arg("run")
        .arg(&file)
        .args(["--retries", "1"])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed trial makes the exit status 1: {err}"
    );
    assert!(err.contains("1/2 trials done, 1 failed"), "{err}");
    let s = p.store();
    let trials = s
        .sweep_trials(s.sweep_by_name("f").unwrap().unwrap().id)
        .unwrap();
    assert_eq!(trials[0].trial.state, TrialState::Completed);
    let bad = &trials[1].trial;
    assert_eq!(bad.state, TrialState::Failed);
    assert_eq!(bad.attempts, 2, "--retries 1 gives a second attempt");
    let e = bad.error.clone().unwrap_or_default();
    assert!(
        e.contains("bad.tsv") && e.contains("header"),
        "error names the file: {e}"
    );
    assert_eq!(bad.exit_status, Some(1));

    // --fail-fast: the bad trial runs first and nothing is started after it fails.
    let text = base("ff", "grid", 5)
        + "[grid]\ndata = [{ sources = [\"data/bad.tsv\"] }, { sources = [\"data/x.tsv\"] }]\n";
    let file = p.write("exp/ff.toml", &text);
    let out = p
        .cmd()
        .arg("run")
        .arg(&file)
        .args(["--fail-fast", "--set", "seed=5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let trials = s
        .sweep_trials(s.sweep_by_name("ff").unwrap().unwrap().id)
        .unwrap();
    assert_eq!(trials[0].trial.state, TrialState::Failed);
    assert_eq!(
        trials[1].trial.state,
        TrialState::Pending,
        "not started after the failure"
    );
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigkill_mid_trial_then_rerun_resumes_without_losing_or_duplicating_rows() {
    let p = Project::new();
    // ~1,900 steps (10 epochs): trial 2 is still training when the test kills it, however fast
    // steps get.
    let text = base("k", "grid", 2000)
        .replace("epochs = 1", "epochs = 10")
        .replace("eval_tokens = 2000", "eval_tokens = 2000\neval_every = 50")
        + "[grid]\nseed = [1, 2]\n";
    let file = p.write("exp/k.toml", &text);
    // 1. Start the sweep in its own process group; kill the whole group mid-way through trial 2.
    let mut child = {
        use std::os::unix::process::CommandExt;
        let mut c = p.std_cmd();
        c.arg("run")
            .arg(&file)
            .args(["--checkpoint-minutes", "0.005"]);
        c.env("RAYON_NUM_THREADS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        c.spawn().unwrap()
    };
    wait_for("the ledger", Duration::from_secs(60), || p.db().exists());
    let s = p.store();
    let ckpt_of = |hash: &str| {
        common::checkpoint_step(&p.path().join("results/trials").join(&hash[..12])).is_some()
    };
    let mut second = None;
    wait_for("trial 2 to checkpoint", Duration::from_secs(120), || {
        let Some(sw) = s.sweep_by_name("k").unwrap() else {
            return false;
        };
        let trials = s.sweep_trials(sw.id).unwrap();
        if trials.len() != 2 || trials[0].trial.state != TrialState::Completed {
            return false;
        }
        let t = &trials[1].trial;
        let far = s
            .last_metric(t.id, "train")
            .unwrap()
            .is_some_and(|m| m.step >= 60);
        if far && ckpt_of(&t.hash) {
            second = Some(t.clone());
            true
        } else {
            false
        }
    });
    let second = second.unwrap();
    // SAFETY: kill(2) on the process group we created.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    child.wait().unwrap();
    let killed = s.trial(second.id).unwrap().unwrap();
    assert_eq!(
        killed.state,
        TrialState::Running,
        "nobody recorded the end of the killed trial"
    );
    let first_id = s
        .sweep_trials(s.sweep_by_name("k").unwrap().unwrap().id)
        .unwrap()[0]
        .trial
        .id;
    let rows_before = s.metrics(second.id).unwrap().len();
    assert!(rows_before > 0);

    // 2. Rerun: the dead trial is detected, resumed from its checkpoint, and finished.
    let out = p
        .cmd()
        .arg("run")
        .arg(&file)
        .args(["--checkpoint-minutes", "0.005"])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("1 already done") && err.contains("1 interrupted by a dead worker"),
        "{err}"
    );
    let first = s.trial(first_id).unwrap().unwrap();
    assert_eq!(first.attempts, 1, "the completed trial was not retrained");
    let resumed = s.trial(second.id).unwrap().unwrap();
    assert_eq!(resumed.state, TrialState::Completed);
    assert_eq!(resumed.attempts, 2);
    let from = resumed
        .env
        .as_ref()
        .and_then(|e| e["resumed_from_step"].as_u64())
        .unwrap_or(0);
    assert!(from > 0, "resumed from a checkpoint: env {:?}", resumed.env);

    // 3. The same trial uninterrupted, in a fresh project: same rows, same numbers.
    let q = Project::new();
    let qfile = q.write("exp/k.toml", &text);
    let out = q
        .cmd()
        .arg("run")
        .arg(&qfile)
        .args(["--set", "grid.seed=[2]"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let qs = q.store();
    let reference = qs
        .trial_by_hash(&second.hash)
        .unwrap()
        .expect("same identity in both projects");
    assert_eq!(reference.attempts, 1);
    let rows = |st: &Arc<dyn Store>, id| -> Vec<(String, i64, f64)> {
        st.metrics(id)
            .unwrap()
            .into_iter()
            .map(|m| (m.split, m.step, m.loss))
            .collect()
    };
    let got = rows(&s, second.id);
    let want = rows(&qs, reference.id);
    let keys = |v: &[(String, i64, f64)]| {
        v.iter()
            .map(|(s, st, _)| (s.clone(), *st))
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&got), keys(&want), "no metric row lost or duplicated");
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g.2 - w.2).abs() <= 1e-9 * w.2.abs().max(1.0),
            "row {g:?} vs uninterrupted {w:?}"
        );
    }
    for (a, b) in [
        (resumed.results.train_loss, reference.results.train_loss),
        (resumed.results.valid_loss, reference.results.valid_loss),
        (resumed.results.test_loss, reference.results.test_loss),
    ] {
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(
            (a - b).abs() <= 1e-9 * b.abs(),
            "final numbers: resumed {a} vs uninterrupted {b}"
        );
    }

    // 4. Its TensorBoard log holds each row once too: the resume kept the events up to the
    // checkpoint in a new file and deleted the old one.
    let tb = p
        .path()
        .join("results/trials")
        .join(&second.hash[..12])
        .join("tb");
    let files: Vec<_> = std::fs::read_dir(&tb)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let mut tb_keys = Vec::new();
    let bytes = std::fs::read(&files[0]).unwrap();
    for r in sweep::tensorboard::event::records(&bytes).unwrap() {
        let ev = sweep::tensorboard::event::decode(r).unwrap();
        for (tag, _) in &ev.scalars {
            if let Some(split) = tag.strip_prefix("loss/") {
                tb_keys.push((split.to_string(), ev.step));
            }
        }
    }
    let mut ledger_keys = keys(&got);
    tb_keys.sort();
    ledger_keys.sort();
    assert_eq!(
        tb_keys, ledger_keys,
        "TensorBoard: no row lost or duplicated"
    );
}

#[test]
fn parallel_jobs_and_concurrent_sweeps_share_one_sqlite_file() {
    let p = Project::new();
    let text =
        base("par", "grid", 20) + "[grid]\nseed = [1, 2, 3, 4]\nlearning_rate = [1e-3, 2e-3]\n";
    let file = p.write("exp/par.toml", &text);
    // Two `sweep run --jobs 2` at once on the same sweep: up to 4 trial processes writing to one
    // file, and both schedulers competing for the same 8 trials.
    let spawn = || {
        p.std_cmd()
            .arg("run")
            .arg(&file)
            .args(["--jobs", "2"])
            .env("RAYON_NUM_THREADS", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Create the ledger first so that both see the same sweep row.
    let out = p
        .cmd()
        .arg("run")
        .arg(&file)
        .args([
            "--set",
            "grid.seed=[9]",
            "--set",
            "grid.learning_rate=[1e-3]",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let a = spawn();
    let b = spawn();
    let (oa, ob) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for o in [&oa, &ob] {
        let err = stderr_of(o);
        assert!(o.status.success(), "{err}");
        assert!(!err.contains("database is locked"), "{err}");
    }
    let s = p.store();
    let trials = s
        .sweep_trials(s.sweep_by_name("par").unwrap().unwrap().id)
        .unwrap();
    assert_eq!(trials.len(), 8);
    for t in &trials {
        assert_eq!(t.trial.state, TrialState::Completed, "{:?}", t.trial.error);
        assert_eq!(
            t.trial.attempts, 1,
            "trial {} ran more than once",
            t.trial.id
        );
        let log = std::fs::read_to_string(
            p.path()
                .join("results/trials")
                .join(t.trial.short_hash())
                .join("trial.log"),
        )
        .unwrap();
        assert!(!log.contains("database is locked"), "{log}");
    }
    // --jobs 4 on one scheduler.
    let out = p
        .cmd()
        .arg("run")
        .arg(&file)
        .args(["--jobs", "4", "--set", "epochs=2"])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(
        out.status.success() && !err.contains("database is locked"),
        "{err}"
    );
    assert!(err.contains("8 to run, 4 job(s)"), "{err}");
}

#[test]
fn ctrl_c_interrupts_and_the_next_run_finishes() {
    let p = Project::new();
    // ~1,900 steps (10 epochs), so the trial is still training when the test interrupts it.
    let text =
        base("c", "grid", 2000).replace("epochs = 1", "epochs = 10") + "[grid]\nseed = [1]\n";
    let file = p.write("exp/c.toml", &text);
    let child = p
        .std_cmd()
        .arg("run")
        .arg(&file)
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the ledger", Duration::from_secs(60), || p.db().exists());
    let s = p.store();
    wait_for("training to start", Duration::from_secs(60), || {
        s.trials_in_state(TrialState::Running)
            .unwrap()
            .first()
            .is_some_and(|t| s.last_metric(t.id, "train").unwrap().is_some())
    });
    // SAFETY: kill(2) on our child; like a terminal's Ctrl-C, the trial process gets it too.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr_of(&out));
    let t = &s.trials_in_state(TrialState::Interrupted).unwrap()[0];
    let out = p.cmd().arg("run").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let done = s.trial(t.id).unwrap().unwrap();
    assert_eq!(done.state, TrialState::Completed);
    assert!(
        done.env
            .as_ref()
            .and_then(|e| e["resumed_from_step"].as_u64())
            .unwrap_or(0)
            > 0
    );
}

/// Every shipped sweep file validates under every one of its profiles (with the real data in
/// data/arxiv), so a key renamed in the code cannot silently break `experiments/` or `sweeps/`.
/// A profile that starts from a checkpoint the user makes first must say which one is missing.
#[test]
#[ignore = "needs the shared arXiv data in data/arxiv (.ci/run links it)"]
fn every_shipped_sweep_file_and_profile_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("data/arxiv/cs.CL.tsv.xz").is_file(),
        "data/arxiv/cs.CL.tsv.xz is absent: link the shared data (.ci/run does)"
    );
    let mut checked = 0;
    for (rel, profiles) in shipped_sweep_files(root) {
        let path = root.join(&rel);
        for profile in profiles {
            let what = format!("{} --profile {profile:?}", path.display());
            match sweep::config::load(&path, profile.as_deref(), &[]) {
                // A search has no trials before it runs: its first suggestions resolve.
                Ok(s) if s.search.is_some() => {
                    let first = sweep::exec::search::Searcher::preview(&s, 3);
                    assert!(first.is_ok_and(|t| t.len() == 3), "{what}: no suggestions");
                }
                Ok(s) => assert!(!s.trials.is_empty(), "{what}: no trials"),
                // Only a profile fine-tuning the user's own pretrained checkpoint may fail, and
                // only by naming it.
                Err(e) => {
                    let e = format!("{e:#}");
                    assert!(e.contains("results/pretrained/"), "{what}: {e}");
                }
            }
            checked += 1;
        }
    }
    println!("{checked} sweep file/profile combinations validated");
    assert!(checked >= 15, "only {checked} combinations found");
}

/// The paper's tables extend one baseline file and so share one baseline trial, at full scale
/// and at quick scale (block_size's `quick-scratch` is the others' `quick`).
#[test]
#[ignore = "needs the shared arXiv data in data/arxiv (.ci/run links it)"]
fn the_paper_tables_extend_one_baseline_and_share_its_trial() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("data/arxiv/cs.CL.tsv.xz").is_file(),
        "data/arxiv/cs.CL.tsv.xz is absent: link the shared data (.ci/run does)"
    );
    let baseline = root.join("experiments/baseline.toml");
    let e = format!(
        "{:#}",
        sweep::config::load(&baseline, None, &[]).unwrap_err()
    );
    assert!(e.contains("a file without one is a base"), "{e}");
    let load = |table: &str, profile: Option<&str>| {
        let path = root.join(format!("experiments/{table}.toml"));
        let s = sweep::config::load(&path, profile, &[]).unwrap();
        assert_eq!(s.extends, std::slice::from_ref(&baseline), "{table}");
        s
    };
    let ablations = [
        "grad_accum",
        "block_size",
        "weight_decay",
        "epochs",
        "batch_size",
        "ablations",
    ];
    let first = |table: &str, profile: Option<&str>| {
        let s = load(table, profile);
        assert!(s.trials[0].is_baseline || table == "model_size", "{table}");
        s.trials[0].config.clone()
    };
    let full = first("grad_accum", None);
    for table in ablations {
        assert_eq!(first(table, None), full, "{table}");
    }
    // At quick scale both regimes share one baseline trial across Tables 3-7: `quick` fine-tunes
    // the locally pretrained gpt2-tiny, `quick-scratch` trains it from scratch.
    let quick = first("grad_accum", Some("quick"));
    let scratch = first("grad_accum", Some("quick-scratch"));
    for table in ablations {
        assert_eq!(first(table, Some("quick")), quick, "{table}");
        assert_eq!(first(table, Some("quick-scratch")), scratch, "{table}");
    }
    assert_eq!(quick.init, Some(sweep::trial::Init::Pretrained));
    assert_eq!((quick.learning_rate, scratch.learning_rate), (3e-4, 1e-3));
    assert_eq!(scratch.init, None);
    assert_eq!(
        (quick.block_size, quick.epochs),
        (scratch.block_size, scratch.epochs)
    );
    // Fine-tuning reads a shorter prefix: the README's first command's budget (bench/RESULTS.md
    // "Trimmed quick caps"); from scratch keeps the 40k its trials were trained with.
    assert_eq!(
        (quick.max_train_tokens, scratch.max_train_tokens),
        (Some(30_000), Some(40_000))
    );
    // Table 8's quick grid starts at the tiny preset trained from scratch: `init = "scratch"`
    // names the preset's own start, so it is the same trial as the from-scratch baseline.
    let tiny = first("model_size", Some("quick"));
    assert_eq!(tiny.init, Some(sweep::trial::Init::Scratch));
    let cache = tempfile::tempdir().unwrap();
    let mut ider = sweep::plan::Identifier::new(cache.path());
    assert_eq!(
        ider.identify(&tiny).unwrap().hash,
        ider.identify(&scratch).unwrap().hash
    );
    assert_eq!(first("model_size", Some("quick-scratch")), scratch);
}

/// The shipped sweep files (`experiments/`, `sweeps/`) with every profile each defines (its own
/// and those of the files it extends); files without `[sweep]`, which others extend
/// (`experiments/baseline.toml`), are no sweeps of their own. Hidden files are not shipped: the
/// bench scripts write their temporary variants as `sweeps/.bench_*.toml`.
fn shipped_sweep_files(root: &Path) -> Vec<(String, Vec<Option<String>>)> {
    let mut out = Vec::new();
    for dir in ["experiments", "sweeps"] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        paths.sort();
        for path in paths {
            let profiles = match sweep::config::load(&path, None, &[]) {
                Ok(s) => s.profiles,
                Err(e) if format!("{e:#}").contains("a file without one is a base") => continue,
                Err(e) => panic!("{}: {e:#}", path.display()),
            };
            let mut all = vec![None];
            all.extend(profiles.into_iter().map(Some));
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            out.push((rel, all));
        }
    }
    out
}

/// What a shipped sweep file and profile resolve to: the sweep's spec (without the file's
/// absolute path) and each trial's identity hash (its resolved config for a Hub model), label and
/// baseline mark (for a search, its first five suggestions).
fn shipped_identities(root: &Path, cache: &Path) -> serde_json::Value {
    let mut ider = sweep::plan::Identifier::new(cache);
    let mut all = serde_json::Map::new();
    for (rel, profiles) in shipped_sweep_files(root) {
        for profile in profiles {
            let key = format!("{rel} --profile {}", profile.as_deref().unwrap_or("-"));
            let sweep = sweep::config::load(&root.join(&rel), profile.as_deref(), &[]);
            let entry = match sweep {
                Err(e) => {
                    let e = format!("{e:#}").replace(&root.display().to_string(), "<root>");
                    serde_json::json!({ "error": e })
                }
                Ok(s) => {
                    let trials = match &s.search {
                        Some(_) => sweep::exec::search::Searcher::preview(&s, 5).unwrap(),
                        None => s.trials.clone(),
                    };
                    let trials: Vec<serde_json::Value> = trials
                        .iter()
                        .map(|t| {
                            // A Hub model's identity holds its weights' SHA-256, which only the
                            // Hub knows (no network here): what the files decide is the resolved
                            // config, so that is what is kept for those.
                            if t.config.model.hub().is_some() {
                                let mut config = serde_json::to_value(&t.config).unwrap();
                                config["data"].as_object_mut().unwrap().remove("sources");
                                return serde_json::json!({
                                    "config": config,
                                    "label": t.label,
                                    "baseline": t.is_baseline,
                                });
                            }
                            let id = ider.identify(&t.config).unwrap();
                            assert!(id.data_error.is_none(), "{key}: {:?}", id.data_error);
                            serde_json::json!({
                                "hash": id.hash,
                                "label": t.label,
                                "baseline": t.is_baseline,
                            })
                        })
                        .collect();
                    // The files' absolute paths are this checkout's (and `extends` is new).
                    let mut spec = s.spec_json();
                    let spec = spec.as_object_mut().unwrap();
                    spec.remove("file");
                    spec.remove("extends");
                    serde_json::json!({ "spec": spec, "trials": trials })
                }
            };
            all.insert(key, entry);
        }
    }
    serde_json::Value::Object(all)
}

/// Every trial of every shipped sweep file and profile keeps its identity (and the sweep its
/// spec: axes, references, search) against `tests/fixtures/shipped_identities.json`, recorded
/// before `experiments/` moved the shared baseline into `baseline.toml`: a refactor of the files
/// or of `config` retrains nothing. When numbers are meant to move, rewrite the fixture with
/// `SWEEP_WRITE_SHIPPED_IDENTITIES=1` and say in the commit which trials moved and why.
#[test]
#[ignore = "needs the shared arXiv data in data/arxiv (.ci/run links it)"]
fn shipped_trial_identities_are_unchanged() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("data/arxiv/cs.CL.tsv.xz").is_file(),
        "data/arxiv/cs.CL.tsv.xz is absent: link the shared data (.ci/run does)"
    );
    let cache = tempfile::tempdir().unwrap();
    let got = shipped_identities(root, cache.path());
    let fixture = root.join("tests/fixtures/shipped_identities.json");
    if std::env::var_os("SWEEP_WRITE_SHIPPED_IDENTITIES").is_some() {
        std::fs::write(&fixture, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
    }
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    let (got, want) = (got.as_object().unwrap(), want.as_object().unwrap());
    let got_keys: Vec<&String> = got.keys().collect();
    let want_keys: Vec<&String> = want.keys().collect();
    assert_eq!(got_keys, want_keys, "the shipped file/profile combinations");
    for (key, w) in want {
        assert_eq!(&got[key], w, "{key}");
    }
    assert!(got.len() >= 15, "only {} combinations", got.len());
}

/// `sweeps/seeds.toml` replicates the from-scratch quick baseline shared by Tables 3-7
/// (`quick-scratch`): its seed-42 trial has the same resolved configuration (so the same identity
/// hash) as that baseline.
#[test]
#[ignore = "needs the shared arXiv data in data/arxiv (.ci/run links it)"]
fn the_seeds_sweep_replicates_the_quick_baseline() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds = sweep::config::load(&root.join("sweeps/seeds.toml"), None, &[]).unwrap();
    assert_eq!(seeds.seeds, Some(vec![42, 1, 2, 3, 4]));
    assert_eq!(seeds.trials.len(), 5);
    for table in ["weight_decay", "grad_accum", "epochs", "batch_size"] {
        let path = root.join(format!("experiments/{table}.toml"));
        let t = sweep::config::load(&path, Some("quick-scratch"), &[]).unwrap();
        let base = t.trials.iter().find(|t| t.is_baseline).unwrap();
        assert_eq!(seeds.trials[0].config, base.config, "{table}");
    }
    let others: Vec<u64> = seeds.trials[1..].iter().map(|t| t.config.seed).collect();
    assert_eq!(others, [1, 2, 3, 4]);
}
