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
    for dir in ["experiments", "sweeps"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let doc: toml::Table =
                toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let mut profiles = vec![None];
            if let Some(p) = doc.get("profile").and_then(|p| p.as_table()) {
                profiles.extend(p.keys().cloned().map(Some));
            }
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
    }
    println!("{checked} sweep file/profile combinations validated");
    assert!(checked >= 15, "only {checked} combinations found");
}
