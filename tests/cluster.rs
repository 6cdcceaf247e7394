//! Issue 7 for real: the PostgreSQL ledger, Slurm job arrays and `sweep worker` processes.
//!
//! Needs the services that `scripts/ci-cluster-services.sh` starts (`.ci/run` sources it):
//! PostgreSQL (`SWEEP_TEST_PG_URL`, a role with CREATEDB: each test uses its own scratch database)
//! and a single-node Slurm (`sinfo` shows an idle node). Each test prints why it skips otherwise.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sweep::store::{self, postgres, Store, TrialRecord, TrialState};

mod common;
use common::{out_text, pg_url, Project};

/// A fast sweep: gpt2-tiny from scratch, small BPE, `max_steps` steps per trial.
fn sweep_file(name: &str, max_steps: u64, grid: &str) -> String {
    format!(
        r#"[sweep]
name = "{name}"
kind = "grid"
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
[grid]
{grid}
"#
    )
}

/// A sweep whose trials train for ~1,900 steps (10 epochs), evaluating every 50: long enough
/// that a test's signal or kill lands while a trial is still training, however fast steps get.
fn long_sweep_file(name: &str, grid: &str) -> String {
    sweep_file(name, 2000, grid)
        .replace("epochs = 1", "epochs = 10")
        .replace("eval_tokens = 2000", "eval_tokens = 2000\neval_every = 50")
}

fn pg_scratch(name: &str) -> String {
    postgres::scratch_database(&pg_url(), name).unwrap()
}

/// A usable single-node Slurm; running a Slurm test without one is a failure, not a skip.
fn need_slurm() {
    assert!(
        slurm_up(),
        "no usable Slurm node (`sinfo` absent or no idle node): this test needs Slurm (start it \
         with `. scripts/ci-cluster-services.sh`, as .ci/run does)"
    );
}

fn slurm_up() -> bool {
    let ok = std::process::Command::new("sinfo")
        .args(["-h", "-o", "%t"])
        .output()
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| ["idle", "mix", "alloc"].contains(&l.trim()))
        })
        .unwrap_or(false);
    ok
}

/// All `*.out` logs under a directory (for failure messages).
fn logs_under(dir: &Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "out") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                out.push_str(&format!("== {}\n", p.display()));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
    }
    out
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool, diag: impl Fn() -> String) {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}\n{}", diag());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The trials of a sweep by hash.
fn trials_of(s: &dyn Store, name: &str) -> Vec<TrialRecord> {
    let sw = s.sweep_by_name(name).unwrap().expect("sweep recorded");
    s.sweep_trials(sw.id)
        .unwrap()
        .into_iter()
        .map(|t| t.trial)
        .collect()
}

/// (split, step, loss) of every metric row.
fn curve(s: &dyn Store, id: i64) -> Vec<(String, i64, f64)> {
    s.metrics(id)
        .unwrap()
        .into_iter()
        .map(|m| (m.split, m.step, m.loss))
        .collect()
}

/// Run `file` locally on SQLite (the reference) and return its store.
fn run_local(p: &Project, file: &Path) -> Arc<dyn Store> {
    let db = p.path().join("local/sweep.db");
    let out = p
        .cmd()
        .arg("run")
        .arg(file)
        .arg("--db")
        .arg(&db)
        .env("SWEEP_ARTIFACTS", p.path().join("local"))
        .output()
        .unwrap();
    assert!(out.status.success(), "local run: {}", out_text(&out));
    Arc::from(store::open(db.to_str().unwrap()).unwrap())
}

fn assert_same_results(local: &dyn Store, remote: &dyn Store, name: &str) {
    let a = trials_of(local, name);
    let b = trials_of(remote, name);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.hash, y.hash, "same trials in the same order");
        assert_eq!(y.state, TrialState::Completed, "{y:?}");
        for (k, u, v) in [
            ("train_loss", x.results.train_loss, y.results.train_loss),
            ("valid_loss", x.results.valid_loss, y.results.valid_loss),
            ("test_loss", x.results.test_loss, y.results.test_loss),
        ] {
            assert!(u.is_some(), "{k} recorded locally");
            assert_eq!(
                u, v,
                "trial {}: {k} differs between SQLite/local and PostgreSQL/Slurm",
                x.hash
            );
        }
        assert_eq!(
            curve(local, x.id),
            curve(remote, y.id),
            "metric rows of trial {} differ",
            x.hash
        );
    }
}

#[test]
#[ignore = "needs PostgreSQL: SWEEP_TEST_PG_URL (.ci/run starts it: scripts/ci-cluster-services.sh)"]
fn store_contract_on_postgres() {
    let url = pg_url();
    let n = std::sync::atomic::AtomicUsize::new(0);
    let make = || -> anyhow::Result<Arc<dyn Store>> {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let db = postgres::scratch_database(&url, &format!("sweep_contract_{i}"))?;
        Ok(Arc::from(store::open(&db)?))
    };
    store::contract::run_all(&make).unwrap();
}

#[test]
#[ignore = "needs PostgreSQL: SWEEP_TEST_PG_URL (.ci/run starts it: scripts/ci-cluster-services.sh)"]
fn bad_postgres_urls_fail_clearly() {
    let url = pg_url();
    let p = Project::new();
    let wrong_pw = url.replacen(":sweep@", ":wrong@", 1);
    for (db, want) in [
        (wrong_pw.as_str(), "authentication failed"),
        ("postgres://sweep:x@127.0.0.1:1/none", "Connection refused"),
    ] {
        let out = p.cmd().args(["status", "--db", db]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(want) && err.contains("fix:"), "{err}");
        assert!(
            !err.contains(":wrong@") && !err.contains(":x@"),
            "password not echoed: {err}"
        );
    }
}

#[test]
#[ignore = "needs Slurm and PostgreSQL (.ci/run starts them: scripts/ci-cluster-services.sh)"]
fn slurm_job_array_on_postgres_matches_a_local_sqlite_run() {
    need_slurm();
    let pg = pg_scratch("sweep_cluster_array");
    let p = Project::new();
    let file = p.write(
        "exp/arr.toml",
        &sweep_file("arr", 12, "learning_rate = [1e-3, 2e-3, 3e-3]"),
    );
    let local = run_local(&p, &file);
    // Bad input is refused before anything is submitted.
    let out = p
        .cmd()
        .arg("run")
        .arg(&file)
        .args(["--executor", "slurm", "--partition", "nope", "--db", &pg])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", out_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--partition nope: no such partition"));
    let shared = p.path().join("shared");
    let out = p
        .cmd()
        .arg("run")
        .arg(&file)
        .args([
            "--executor",
            "slurm",
            "--max-parallel",
            "2",
            "--time",
            "00:10:00",
            // CI's cluster is this one node: a local --artifacts is shared with "all" nodes.
            "--artifacts-local-ok",
        ])
        .arg("--artifacts")
        .arg(&shared)
        .args(["--db", &pg])
        .output()
        .unwrap();
    assert!(out.status.success(), "submit: {}", out_text(&out));
    let job = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        job.parse::<u64>().is_ok(),
        "job id printed: {}",
        out_text(&out)
    );
    let script = std::fs::read_dir(shared.join("slurm"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path()
        .join("job.sbatch");
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("#SBATCH --array=0-2%2"), "{text}");
    assert!(!text.contains("postgres://"), "no credentials on disk");
    let remote: Arc<dyn Store> = Arc::from(store::open(&pg).unwrap());
    let status = p
        .cmd()
        .args(["status", "arr", "--db", &pg])
        .output()
        .unwrap();
    let st = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(st.contains(&format!("job {job}: 3 task(s)")), "{st}");
    wait_for(
        "the job array to finish",
        Duration::from_secs(900),
        || trials_of(&*remote, "arr").iter().all(|t| t.state.is_done()),
        || logs_under(&shared),
    );
    assert_same_results(&*local, &*remote, "arr");
    for t in trials_of(&*remote, "arr") {
        assert_eq!(t.attempts, 1);
        // Recorded relative to --artifacts, so the ledger survives a remounted root.
        let dir = t.artifact_dir.clone().unwrap_or_default();
        assert_eq!(dir, format!("trials/{}", t.short_hash()));
        assert!(
            shared.join(&dir).join("model/config.json").exists(),
            "model exported to {}",
            shared.join(&dir).display()
        );
    }
}

#[test]
#[ignore = "needs Slurm and PostgreSQL (.ci/run starts them: scripts/ci-cluster-services.sh)"]
fn scancel_of_one_task_then_requeue_resumes_from_its_checkpoint() {
    need_slurm();
    let pg = pg_scratch("sweep_cluster_requeue");
    let p = Project::new();
    let text = long_sweep_file("rq", "seed = [1]");
    let file = p.write("exp/rq.toml", &text);
    let shared = p.path().join("shared");
    let submit = |extra: &[&str]| {
        let out = p
            .cmd()
            .arg("run")
            .arg(&file)
            .args(["--executor", "slurm", "--checkpoint-minutes", "0.01"])
            .arg("--artifacts-local-ok")
            .args(extra)
            .arg("--artifacts")
            .arg(&shared)
            .args(["--db", &pg])
            .output()
            .unwrap();
        assert!(out.status.success(), "submit: {}", out_text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let job = submit(&[]);
    let remote: Arc<dyn Store> = Arc::from(store::open(&pg).unwrap());
    let trial = || trials_of(&*remote, "rq").remove(0);
    wait_for(
        "the trial to train past step 60 with a checkpoint",
        Duration::from_secs(600),
        || {
            let t = trial();
            t.state == TrialState::Running
                && remote
                    .last_metric(t.id, "train")
                    .unwrap()
                    .is_some_and(|m| m.step >= 60)
                && common::checkpoint_step(&shared.join("trials").join(t.short_hash())).is_some()
        },
        || logs_under(&shared),
    );
    let out = std::process::Command::new("scancel")
        .arg(format!("{job}_0"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    wait_for(
        "the cancelled trial to checkpoint and become interrupted",
        Duration::from_secs(120),
        || trial().state == TrialState::Interrupted,
        || logs_under(&shared),
    );
    let cut = remote
        .last_metric(trial().id, "train")
        .unwrap()
        .unwrap()
        .step;
    assert!(cut < 1_800, "cancelled mid-trial (at step {cut})");
    // Without --requeue an interrupted trial is not resubmitted.
    let out = p
        .cmd()
        .arg("run")
        .arg(&file)
        .args(["--executor", "slurm", "--db", &pg])
        .arg("--artifacts")
        .arg(&shared)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("resubmit them with --requeue"),
        "{}",
        out_text(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());
    submit(&["--requeue"]);
    wait_for(
        "the requeued trial to complete",
        Duration::from_secs(900),
        || trial().state.is_done(),
        || logs_under(&shared),
    );
    let t = trial();
    assert_eq!(t.state, TrialState::Completed, "{t:?}");
    assert_eq!(t.attempts, 2);
    let resumed = t
        .env
        .as_ref()
        .and_then(|e| e["resumed_from_step"].as_u64())
        .unwrap_or(0);
    assert!(resumed > 0, "resumed from its checkpoint: {:?}", t.env);
    // Nothing lost or duplicated: the same rows and numbers as an uninterrupted local run.
    let local = run_local(&p, &file);
    assert_same_results(&*local, &*remote, "rq");
}

#[test]
#[ignore = "needs PostgreSQL: SWEEP_TEST_PG_URL (.ci/run starts it: scripts/ci-cluster-services.sh)"]
fn two_workers_drain_one_sweep_and_run_each_trial_once() {
    let pg = pg_scratch("sweep_cluster_workers");
    let p = Project::new();
    let file = p.write("exp/w.toml", &sweep_file("w", 8, "seed = [1, 2, 3, 4, 5]"));
    // Record the sweep without running anything (the dry run writes the script, submits nothing).
    let out = p
        .cmd()
        .arg("run")
        .arg(&file)
        .args(["--executor", "slurm", "--dry-run", "--db", &pg])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    let remote: Arc<dyn Store> = Arc::from(store::open(&pg).unwrap());
    assert!(trials_of(&*remote, "w")
        .iter()
        .all(|t| t.state == TrialState::Pending));
    let spawn = || {
        p.std_cmd()
            .args([
                "worker",
                "--sweep",
                "w",
                "--poll-seconds",
                "0.5",
                "--db",
                &pg,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "worker a: {}", out_text(&a));
    assert!(b.status.success(), "worker b: {}", out_text(&b));
    let trials = trials_of(&*remote, "w");
    assert_eq!(trials.len(), 5);
    let mut workers = std::collections::HashSet::new();
    for t in &trials {
        assert_eq!(t.state, TrialState::Completed, "{t:?}");
        assert_eq!(t.attempts, 1, "trial {} ran exactly once", t.id);
        workers.insert(t.worker.clone());
    }
    // Each trial's runner is a `sweep trial run` child of one of the two workers.
    let ran = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stderr)
            .matches("worker: trial ")
            .count()
    };
    assert!(ran(&a) + ran(&b) >= 5, "{}\n{}", out_text(&a), out_text(&b));
    assert_eq!(workers.len(), 5, "each trial has its own runner process");
    // The project's results/ is on a local disk or tmpfs here, never a network file system:
    // workers on a shared ledger say that other machines would not see its artifacts.
    let fs = std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(p.path())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if !["nfs", "lustre", "gpfs", "cifs", "smb2", "ceph", "9p"].contains(&fs.as_str()) {
        assert!(
            String::from_utf8_lossy(&a.stderr).contains("probably local to this machine"),
            "no shared-artifacts warning on {fs}: {}",
            out_text(&a)
        );
    }
}

#[test]
#[ignore = "needs Slurm and PostgreSQL (.ci/run starts them: scripts/ci-cluster-services.sh)"]
fn sweep_cancel_and_slurm_warning_signal_interrupt_then_requeue_finishes() {
    need_slurm();
    let pg = pg_scratch("sweep_cluster_cancel");
    let p = Project::new();
    let text = long_sweep_file("cx", "seed = [1, 2]");
    let file = p.write("exp/cx.toml", &text);
    let shared = p.path().join("shared");
    let submit = |extra: &[&str]| {
        let out = p
            .cmd()
            .arg("run")
            .arg(&file)
            .args(["--executor", "slurm", "--max-parallel", "1"])
            .args(["--checkpoint-minutes", "0.01", "--artifacts-local-ok"])
            .args(extra)
            .arg("--artifacts")
            .arg(&shared)
            .args(["--db", &pg])
            .output()
            .unwrap();
        assert!(out.status.success(), "submit: {}", out_text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let remote: Arc<dyn Store> = Arc::from(store::open(&pg).unwrap());
    let training_past = |id: i64, step: i64| {
        remote
            .last_metric(id, "train")
            .unwrap()
            .is_some_and(|m| m.step >= step)
    };
    let diag = || {
        let states: Vec<_> = trials_of(&*remote, "cx")
            .iter()
            .map(|t| (t.id, t.state, t.error.clone()))
            .collect();
        format!("trials: {states:?}\n{}", logs_under(&shared))
    };
    // 1. Slurm's time-limit warning (`--signal=B:USR1@120` in the script) on the first task.
    let job = submit(&[]);
    wait_for(
        "trial 1 to train",
        Duration::from_secs(600),
        || {
            let t = trials_of(&*remote, "cx").remove(0);
            t.state == TrialState::Running && training_past(t.id, 30)
        },
        diag,
    );
    let out = std::process::Command::new("scancel")
        .args(["--batch", "--signal=USR1", &format!("{job}_0")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    wait_for(
        "SIGUSR1 to interrupt trial 1",
        Duration::from_secs(120),
        || trials_of(&*remote, "cx")[0].state == TrialState::Interrupted,
        diag,
    );
    // A task whose trial checkpointed and stopped did not fail: Slurm lists it COMPLETED
    // (it listed exit 130 as FAILED).
    let task0 = format!("{job}_0");
    let mut listed = String::new();
    wait_for(
        "task 0 to end",
        Duration::from_secs(60),
        || {
            let o = std::process::Command::new("squeue")
                .args(["-h", "-r", "--states=all", "-j", &task0, "-o", "%T"])
                .output()
                .unwrap();
            listed = String::from_utf8_lossy(&o.stdout).trim().to_string();
            !listed.is_empty() && !["PENDING", "RUNNING", "COMPLETING"].contains(&listed.as_str())
        },
        diag,
    );
    assert_eq!(listed, "COMPLETED", "{}", diag());
    // 2. `sweep cancel` while trial 2 trains: it is interrupted too, and nothing else runs.
    wait_for(
        "trial 2 to train",
        Duration::from_secs(600),
        || {
            let t = trials_of(&*remote, "cx").remove(1);
            t.state == TrialState::Running && training_past(t.id, 30)
        },
        diag,
    );
    let status = p
        .cmd()
        .args(["status", "cx", "--db", &pg])
        .output()
        .unwrap();
    let st = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        st.contains(&format!("{job}_1")) && st.contains("RUNNING"),
        "{st}"
    );
    let out = p
        .cmd()
        .args(["cancel", "cx", "--db", &pg])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    wait_for(
        "sweep cancel to interrupt trial 2",
        Duration::from_secs(120),
        || trials_of(&*remote, "cx")[1].state == TrialState::Interrupted,
        diag,
    );
    // 3. --requeue resubmits both; they resume from their checkpoints and finish.
    submit(&["--requeue"]);
    wait_for(
        "the requeued trials to complete",
        Duration::from_secs(900),
        || trials_of(&*remote, "cx").iter().all(|t| t.state.is_done()),
        diag,
    );
    for t in trials_of(&*remote, "cx") {
        assert_eq!(t.state, TrialState::Completed, "{t:?}");
        assert_eq!(t.attempts, 2);
        assert!(
            t.env
                .as_ref()
                .and_then(|e| e["resumed_from_step"].as_u64())
                .unwrap_or(0)
                > 0,
            "{:?}",
            t.env
        );
    }
    let local = run_local(&p, &file);
    assert_same_results(&*local, &*remote, "cx");
}

#[test]
fn slurm_bad_input_is_refused_before_anything_is_recorded() {
    let p = Project::new();
    let file = p.write("exp/b.toml", &sweep_file("b", 4, "seed = [1]"));
    let db = p.path().join("results/sweep.db");
    let cases: [(&[&str], &str); 3] = [
        (&["--time", "4h"], "--time 4h: not a Slurm time limit"),
        (&["--max-parallel", "0"], "--max-parallel 0"),
        // No sbatch on PATH (a machine outside the cluster).
        (&[], "`sbatch` is not on PATH"),
    ];
    for (extra, want) in cases {
        let out = p
            .cmd()
            .arg("run")
            .arg(&file)
            .args(["--executor", "slurm"])
            .args(extra)
            .arg("--db")
            .arg(&db)
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(want) && err.contains("fix:"), "{err}");
        assert!(!db.exists(), "nothing recorded: {err}");
    }
    // An artifacts directory that cannot be created.
    let blocker = p.write("blocker", "a file");
    let out = p
        .cmd()
        .arg("run")
        .arg(&file)
        .args(["--executor", "slurm", "--dry-run", "--artifacts"])
        .arg(blocker.join("sub"))
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--artifacts") && err.contains("cannot create it"),
        "{err}"
    );
}

#[test]
#[ignore = "needs PostgreSQL: SWEEP_TEST_PG_URL (.ci/run starts it: scripts/ci-cluster-services.sh)"]
fn a_killed_worker_is_detected_and_another_worker_resumes_its_trial() {
    let pg = pg_scratch("sweep_cluster_dead_worker");
    let p = Project::new();
    let text = long_sweep_file("dw", "seed = [1]");
    let file = p.write("exp/dw.toml", &text);
    let out = p
        .cmd()
        .arg("run")
        .arg(&file)
        .args(["--executor", "slurm", "--dry-run", "--db", &pg])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    let remote: Arc<dyn Store> = Arc::from(store::open(&pg).unwrap());
    let worker = |group: bool| {
        use std::os::unix::process::CommandExt;
        let mut c = p.std_cmd();
        c.args(["worker", "--sweep", "dw", "--poll-seconds", "0.5"])
            .args(["--checkpoint-minutes", "0.01", "--db", &pg])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if group {
            c.process_group(0);
        }
        c.spawn().unwrap()
    };
    let a = worker(true);
    let ckpt = |t: &TrialRecord| {
        common::checkpoint_step(&p.path().join("results/trials").join(t.short_hash())).is_some()
    };
    wait_for(
        "worker a's trial to train past step 60 with a checkpoint",
        Duration::from_secs(600),
        || {
            let t = trials_of(&*remote, "dw").remove(0);
            t.state == TrialState::Running
                && remote
                    .last_metric(t.id, "train")
                    .unwrap()
                    .is_some_and(|m| m.step >= 60)
                && ckpt(&t)
        },
        String::new,
    );
    // SAFETY: kill(2) on the process group we created: the worker and its trial die at once.
    unsafe { libc::kill(-(a.id() as i32), libc::SIGKILL) };
    let _ = a.wait_with_output();
    assert_eq!(
        trials_of(&*remote, "dw")[0].state,
        TrialState::Running,
        "the ledger still thinks the dead worker runs it"
    );
    let b = worker(false).wait_with_output().unwrap();
    assert!(b.status.success(), "{}", out_text(&b));
    assert!(
        String::from_utf8_lossy(&b.stderr).contains("of dead workers marked interrupted"),
        "{}",
        out_text(&b)
    );
    let t = trials_of(&*remote, "dw").remove(0);
    assert_eq!(t.state, TrialState::Completed, "{t:?}");
    assert_eq!(t.attempts, 2);
    assert!(
        t.env
            .as_ref()
            .and_then(|e| e["resumed_from_step"].as_u64())
            .unwrap_or(0)
            > 0
    );
    let local = run_local(&p, &file);
    assert_same_results(&*local, &*remote, "dw");
}

/// Run one statement against a ledger (SQLite path or PostgreSQL URL) behind the store's back:
/// what an old version of sweep, or a worker on another host, would have left in it.
fn exec_sql(db: &str, sql: &str) {
    sqlx::any::install_default_drivers();
    let url = if db.starts_with("postgres") {
        db.to_string()
    } else {
        format!("sqlite://{db}")
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
    });
}

/// RFC 3339 UTC, `secs` seconds ago, as the ledger stores timestamps.
fn ago(secs: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::seconds(secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Record a sweep without running it (a dry run needs no Slurm; it writes the script only).
fn record(p: &Project, file: &Path, db: &str) {
    let out = p
        .cmd()
        .arg("run")
        .arg(file)
        .args(["--executor", "slurm", "--dry-run", "--artifacts-local-ok"])
        .args(["--db", db])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
}

#[test]
fn artifact_paths_are_relative_to_the_root_and_a_moved_root_still_finds_the_model() {
    let p = Project::new();
    let file = p.write("exp/rel.toml", &sweep_file("rel", 6, "seed = [1]"));
    let db = p.path().join("ledger/sweep.db");
    let dbs = db.to_str().unwrap().to_string();
    let art = p.path().join("art");
    let out = p
        .cmd()
        .arg("run")
        .arg(&file)
        .args(["--db", &dbs])
        .arg("--artifacts")
        .arg(&art)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    let s = store::open(&dbs).unwrap();
    let t = trials_of(&*s, "rel").remove(0);
    drop(s);
    assert_eq!(t.state, TrialState::Completed, "{t:?}");
    assert_eq!(
        t.artifact_dir.as_deref(),
        Some(format!("trials/{}", t.short_hash()).as_str()),
        "the ledger records the trial directory relative to --artifacts"
    );
    assert!(art
        .join("trials")
        .join(t.short_hash())
        .join("model/config.json")
        .is_file());
    assert!(
        !p.path().join("results/trials").exists(),
        "nothing under the default root"
    );

    // Move the whole root; readers given the new root find the model.
    let moved = p.path().join("moved-artifacts");
    std::fs::rename(&art, &moved).unwrap();
    p.write(
        "text.txt",
        &"<|startoftext|> neural translation <|sep|> we propose a neural model for translation. <|endoftext|>\n"
            .repeat(20),
    );
    let id = t.id.to_string();
    let eval = |extra: &[&str], env: Option<&Path>| {
        let mut c = p.cmd();
        c.args([
            "eval", "--trial", &id, "--file", "text.txt", "--format", "json",
        ])
        .args(["--db", &dbs])
        .args(extra);
        if let Some(root) = env {
            c.env("SWEEP_ARTIFACTS", root);
        }
        c.output().unwrap()
    };
    let ok = eval(&["--artifacts", moved.to_str().unwrap()], None);
    assert!(ok.status.success(), "eval: {}", out_text(&ok));
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert!(v["loss"].as_f64().is_some_and(f64::is_finite), "{v}");
    assert!(
        v["model"]
            .as_str()
            .is_some_and(|m| m.contains("moved-artifacts")),
        "{v}"
    );
    // Without the new root: a clear error naming --artifacts and where it looked.
    let lost = eval(&[], None);
    let err = String::from_utf8_lossy(&lost.stderr).into_owned();
    assert_eq!(lost.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no exported model at") && err.contains("fix: pass --artifacts DIR"),
        "{err}"
    );
    // generate --trial with the root from the environment.
    let gen = p
        .cmd()
        .env("SWEEP_ARTIFACTS", &moved)
        .args(["generate", "--trial", &id, "--title", "neural translation"])
        .args([
            "-n",
            "1",
            "--max-new-tokens",
            "8",
            "--seed",
            "1",
            "--no-store",
        ])
        .args(["--db", &dbs])
        .output()
        .unwrap();
    assert!(gen.status.success(), "generate: {}", out_text(&gen));
    // status points at the root when the model is not under it.
    let st = |extra: &[&str]| {
        let o = p
            .cmd()
            .args(["status", "rel", "--db", &dbs])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", out_text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(
        st(&[]).contains("no exported model for trial"),
        "{}",
        st(&[])
    );
    let good = st(&["--artifacts", moved.to_str().unwrap()]);
    assert!(!good.contains("no exported model"), "{good}");

    // Old ledgers hold absolute paths: used as they are, with no --artifacts needed ...
    let abs = moved.join("trials").join(t.short_hash());
    exec_sql(
        &dbs,
        &format!(
            "UPDATE trials SET artifact_dir = '{}' WHERE id = {}",
            abs.display(),
            t.id
        ),
    );
    let old = eval(&[], None);
    assert!(
        old.status.success(),
        "old absolute path: {}",
        out_text(&old)
    );
    // ... and when that root moved too, the trial is looked up under the root given.
    let again = p.path().join("moved-again");
    std::fs::rename(&moved, &again).unwrap();
    let old_moved = eval(&[], Some(&again));
    assert!(
        old_moved.status.success(),
        "old absolute path, moved root: {}",
        out_text(&old_moved)
    );
}

#[test]
fn artifacts_on_tmpfs_are_refused_before_anything_is_submitted_or_recorded() {
    let p = Project::new();
    let file = p.write("exp/fs.toml", &sweep_file("fs", 4, "seed = [1]"));
    let db = p.path().join("results/sweep.db");
    let run = |artifacts: &Path, extra: &[&str]| {
        p.cmd()
            .arg("run")
            .arg(&file)
            .args(["--executor", "slurm"])
            .args(extra)
            .arg("--artifacts")
            .arg(artifacts)
            .arg("--db")
            .arg(&db)
            .output()
            .unwrap()
    };
    let fs_type = |dir: &str| {
        std::process::Command::new("stat")
            .args(["-f", "-c", "%T", dir])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    if fs_type("/dev/shm") == "tmpfs" {
        let shm = Path::new("/dev/shm").join(format!("sweep-test-{}", std::process::id()));
        // Without --dry-run: the refusal comes before sbatch would be looked for or run.
        let out = run(&shm, &[]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("--artifacts {}", shm.display()))
                && err.contains("tmpfs")
                && err.contains("private to this node")
                && err.contains("fix:")
                && err.contains("--artifacts-local-ok"),
            "{err}"
        );
        assert!(!shm.exists(), "nothing created on the refused file system");
        assert!(!db.exists(), "nothing recorded in the ledger: {err}");
        // A single-node cluster may say so; the dry run then writes its script there.
        let out = run(&shm, &["--dry-run", "--artifacts-local-ok"]);
        let ok = out.status.success();
        let text = out_text(&out);
        let _ = std::fs::remove_dir_all(&shm);
        assert!(ok, "{text}");
        assert!(!text.contains("warning: --artifacts"), "{text}");
    } else {
        eprintln!(
            "SKIP the tmpfs refusal: /dev/shm is `{}` here, not tmpfs",
            fs_type("/dev/shm")
        );
    }
    // A local disk (ext4, xfs, ...) warns rather than refuses.
    let local = p.path().join("shared");
    let kind = fs_type(p.path().to_str().unwrap());
    if ["ext2/ext3", "xfs", "btrfs"].contains(&kind.as_str()) {
        let out = run(&local, &["--dry-run"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains(&format!("warning: --artifacts {}", local.display()))
                && err.contains("usually a disk of this node only"),
            "{err}"
        );
        let out = run(&local, &["--dry-run", "--artifacts-local-ok"]);
        assert!(out.status.success(), "{}", out_text(&out));
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("warning: --artifacts"),
            "{}",
            out_text(&out)
        );
    } else {
        eprintln!("SKIP the local-disk warning: the temp dir is on `{kind}`");
    }
}

/// The cross-host half of dead-worker detection: a trial `running` on another host is taken over
/// once its heartbeat is older than the stale limit, and left alone while it is fresh.
fn stale_heartbeat_of_another_host(db: &str) {
    let p = Project::new();
    let text = long_sweep_file("hb", "seed = [1, 2]");
    let file = p.write("exp/hb.toml", &text);
    record(&p, &file, db);
    let s: Arc<dyn Store> = Arc::from(store::open(db).unwrap());
    let trials = trials_of(&*s, "hb");
    let (a, b) = (trials[0].id, trials[1].id);
    // Trial a trains part-way (a checkpoint on disk), then its process dies ...
    let mut runner = p
        .std_cmd()
        .args(["trial", "run", &a.to_string(), "--db", db])
        .args(["--checkpoint-minutes", "0.01"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let trial_dir = p.path().join("results/trials").join(trials[0].short_hash());
    // The checkpoint's own step, not only its existence: on a loaded machine a save can lag
    // the metric rows by many steps.
    let ckpt_step = || common::checkpoint_step(&trial_dir).unwrap_or(0);
    wait_for(
        "trial a to train past step 60 with a checkpoint past step 50",
        Duration::from_secs(600),
        || {
            s.last_metric(a, "train")
                .unwrap()
                .is_some_and(|m| m.step >= 60)
                && ckpt_step() >= 50
        },
        String::new,
    );
    runner.kill().unwrap();
    runner.wait().unwrap();
    // ... and the ledger says it ran on another host that went silent ten minutes ago.
    exec_sql(
        db,
        &format!(
            "UPDATE trials SET worker = 'node-far-away:4242', heartbeat_at = '{}' WHERE id = {a}",
            ago(600)
        ),
    );
    // Trial b runs on another host that is alive: its heartbeat stays fresh.
    let remote = "node-far-away:4343";
    assert!(s.claim_trial(b, remote, "cpu").unwrap().is_some());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let beat = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                assert!(s.heartbeat(b, remote).unwrap(), "b was taken from {remote}");
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let worker = p
        .std_cmd()
        .args([
            "worker",
            "--sweep",
            "hb",
            "--poll-seconds",
            "0.5",
            "--db",
            db,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(
        "the worker to take over and finish trial a",
        Duration::from_secs(600),
        || s.trial(a).unwrap().unwrap().state.is_done(),
        String::new,
    );
    // Several more polls of the worker while b's remote runner is alive.
    std::thread::sleep(Duration::from_secs(3));
    let tb = s.trial(b).unwrap().unwrap();
    // SAFETY: kill(2) on the worker we spawned; SIGTERM stops it (exit 130).
    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    let out = worker.wait_with_output().unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    beat.join().unwrap();
    assert_eq!(tb.state, TrialState::Running, "{tb:?}");
    assert_eq!(tb.worker.as_deref(), Some(remote), "b not taken: {tb:?}");
    assert_eq!(tb.attempts, 1, "{tb:?}");
    assert_eq!(out.status.code(), Some(130), "{}", out_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("worker: 1 trial(s) of dead workers marked interrupted"),
        "{err}"
    );
    let ta = s.trial(a).unwrap().unwrap();
    assert_eq!(ta.state, TrialState::Completed, "{ta:?}");
    assert_eq!(ta.attempts, 2, "{ta:?}");
    assert_ne!(ta.worker.as_deref(), Some("node-far-away:4242"));
    assert!(
        ta.env
            .as_ref()
            .and_then(|e| e["resumed_from_step"].as_u64())
            .unwrap_or(0)
            >= 50,
        "resumed from its checkpoint: {:?}",
        ta.env
    );
}

#[test]
fn a_stale_heartbeat_from_another_host_is_taken_over_and_a_fresh_one_is_not_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    stale_heartbeat_of_another_host(tmp.path().join("hb.db").to_str().unwrap());
}

#[test]
#[ignore = "needs PostgreSQL: SWEEP_TEST_PG_URL (.ci/run starts it: scripts/ci-cluster-services.sh)"]
fn a_stale_heartbeat_from_another_host_is_taken_over_and_a_fresh_one_is_not_on_postgres() {
    let pg = pg_scratch("sweep_cluster_stale_heartbeat");
    stale_heartbeat_of_another_host(&pg);
}

#[test]
fn an_array_task_whose_trial_is_done_or_taken_exits_0_with_skip_if_taken() {
    let p = Project::new();
    let file = p.write("exp/tk.toml", &sweep_file("tk", 4, "seed = [1, 2]"));
    let db = p.path().join("results/sweep.db");
    let dbs = db.to_str().unwrap().to_string();
    record(&p, &file, &dbs);
    let s = store::open(&dbs).unwrap();
    let trials = trials_of(&*s, "tk");
    let (x, y) = (trials[0].id.to_string(), trials[1].id.to_string());
    let task = |id: &str, skip: bool| {
        let mut c = p.cmd();
        c.args(["trial", "run", id, "--db", &dbs]);
        if skip {
            c.arg("--skip-if-taken");
        }
        c.output().unwrap()
    };
    let first = task(&x, true);
    assert!(first.status.success(), "{}", out_text(&first));
    // Completed: 75 for the local executor and workers, 0 with a clear line for array tasks.
    let plain = task(&x, false);
    assert_eq!(plain.status.code(), Some(75), "{}", out_text(&plain));
    let skipped = task(&x, true);
    assert_eq!(skipped.status.code(), Some(0), "{}", out_text(&skipped));
    assert!(
        String::from_utf8_lossy(&skipped.stderr).contains(&format!(
            "sweep: trial {x} is already completed; nothing to do for this task (exit 0)"
        )),
        "{}",
        out_text(&skipped)
    );
    assert_eq!(s.trial(trials[0].id).unwrap().unwrap().attempts, 1);
    // Running on a live worker elsewhere: nothing to do, and the trial is left alone.
    let remote = "node-far-away:77";
    assert!(s
        .claim_trial(trials[1].id, remote, "cpu")
        .unwrap()
        .is_some());
    let skipped = task(&y, true);
    assert_eq!(skipped.status.code(), Some(0), "{}", out_text(&skipped));
    assert!(
        String::from_utf8_lossy(&skipped.stderr).contains(&format!(
            "sweep: trial {y} is being run by worker {remote}; nothing to do for this task"
        )),
        "{}",
        out_text(&skipped)
    );
    let ty = s.trial(trials[1].id).unwrap().unwrap();
    assert_eq!(
        (ty.state, ty.worker.as_deref(), ty.attempts),
        (TrialState::Running, Some(remote), 1)
    );
    // That worker falls silent: the next task for the trial takes it over (a requeued task
    // after a node failure), instead of reporting "nothing to do" for a trial nobody runs.
    exec_sql(
        &dbs,
        &format!(
            "UPDATE trials SET heartbeat_at = '{}' WHERE id = {y}",
            ago(600)
        ),
    );
    let took = task(&y, true);
    assert!(took.status.success(), "{}", out_text(&took));
    assert!(
        String::from_utf8_lossy(&took.stderr).contains(&format!(
            "trial {y}: its worker {remote} is gone; resuming it here"
        )),
        "{}",
        out_text(&took)
    );
    let ty = s.trial(trials[1].id).unwrap().unwrap();
    assert_eq!(
        (ty.state, ty.attempts),
        (TrialState::Completed, 2),
        "{ty:?}"
    );
}

#[test]
#[ignore = "needs Slurm and PostgreSQL (.ci/run starts them: scripts/ci-cluster-services.sh)"]
fn a_baseline_shared_by_two_job_arrays_trains_once_and_no_task_fails() {
    need_slurm();
    let pg = pg_scratch("sweep_cluster_shared_baseline");
    let p = Project::new();
    // seed 1 is the same trial (same identity hash) in both sweeps.
    let fa = p.write("exp/sa.toml", &sweep_file("sa", 12, "seed = [1, 2]"));
    let fb = p.write("exp/sb.toml", &sweep_file("sb", 12, "seed = [1, 3]"));
    let shared = p.path().join("shared");
    // Held at submission so that both arrays include the still-pending shared trial.
    let submit = |file: &Path| {
        let out = p
            .cmd()
            .arg("run")
            .arg(file)
            .args(["--executor", "slurm", "--artifacts-local-ok"])
            .arg("--sbatch-arg=--hold")
            .arg("--artifacts")
            .arg(&shared)
            .args(["--db", &pg])
            .output()
            .unwrap();
        assert!(out.status.success(), "submit: {}", out_text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (ja, jb) = (submit(&fa), submit(&fb));
    let out = std::process::Command::new("scontrol")
        .args(["release", &ja, &jb])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    let remote: Arc<dyn Store> = Arc::from(store::open(&pg).unwrap());
    let all_done = || {
        ["sa", "sb"]
            .iter()
            .all(|n| trials_of(&*remote, n).iter().all(|t| t.state.is_done()))
    };
    wait_for(
        "both arrays to finish",
        Duration::from_secs(900),
        all_done,
        || logs_under(&shared),
    );
    let base = trials_of(&*remote, "sa").remove(0);
    assert_eq!(
        base.hash,
        trials_of(&*remote, "sb")[0].hash,
        "one shared trial"
    );
    for n in ["sa", "sb"] {
        for t in trials_of(&*remote, n) {
            assert_eq!(t.state, TrialState::Completed, "{t:?}");
            assert_eq!(t.attempts, 1, "trained once: {t:?}");
        }
    }
    let states = |job: &str| {
        // Tasks leave squeue a moment after the ledger says done.
        let mut text = String::new();
        for _ in 0..60 {
            let o = std::process::Command::new("squeue")
                .args(["-h", "-r", "--states=all", "-j", job, "-o", "%i|%T"])
                .output()
                .unwrap();
            text = String::from_utf8_lossy(&o.stdout).into_owned();
            if text.lines().count() == 2
                && text.lines().all(|l| {
                    ["|PENDING", "|RUNNING", "|COMPLETING"]
                        .iter()
                        .all(|s| !l.ends_with(s))
                })
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        text
    };
    // Wait for every task to end first: the losing task may start only after the winner has
    // already finished the shared trial, so the ledger can be done while it is still pending.
    let texts = [states(&ja), states(&jb)];
    // The losing task said why it did nothing (the trial was being run or already completed),
    // and Slurm lists every task as COMPLETED.
    let logs = logs_under(&shared);
    assert!(
        logs.contains(&format!("sweep: trial {} is ", base.id))
            && logs.contains("nothing to do for this task (exit 0)"),
        "{logs}"
    );
    for text in texts {
        assert_eq!(text.lines().count(), 2, "two tasks: {text}");
        assert!(
            text.lines().all(|l| l.ends_with("|COMPLETED")),
            "no FAILED task: {text}\n{logs}"
        );
    }
}

#[test]
#[ignore = "needs PostgreSQL: SWEEP_TEST_PG_URL (.ci/run starts it: scripts/ci-cluster-services.sh)"]
fn query_on_postgres_reads_and_refuses_every_write() {
    let pg = pg_scratch("sweep_cluster_query_ro");
    let p = Project::new();
    let file = p.write("exp/q.toml", &sweep_file("q", 4, "seed = [1, 2]"));
    record(&p, &file, &pg);
    let query = |sql: &str| {
        p.cmd()
            .args(["query", sql, "--format", "json", "--db", &pg])
            .output()
            .unwrap()
    };
    let snapshot = || {
        let o = query("SELECT t.id, t.state, t.attempts, s.name FROM trials t JOIN sweep_trials st ON st.trial_id = t.id JOIN sweeps s ON s.id = st.sweep_id ORDER BY t.id");
        assert!(o.status.success(), "{}", out_text(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let before = snapshot();
    let rows = before.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{before}");
    assert!(
        rows.iter()
            .all(|r| r["name"] == "q" && r["state"] == "pending"),
        "{before}"
    );
    for sql in [
        "INSERT INTO sweeps (name, kind, spec_json, created_at, updated_at) VALUES ('x', 'grid', '{}', 'now', 'now')",
        "UPDATE trials SET state = 'failed'",
        "DELETE FROM sweep_trials",
        "DROP TABLE metrics",
        "CREATE TABLE scratch (x INT)",
        "WITH d AS (DELETE FROM trials RETURNING id) SELECT * FROM d",
        "DO $$ BEGIN SET LOCAL transaction_read_only = off; DELETE FROM sweep_trials; END $$",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE; DELETE FROM sweep_trials",
        "COPY (SELECT 1) TO '/tmp/sweep-query-copy.txt'",
    ] {
        let o = query(sql);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(2), "{sql}: {}", out_text(&o));
        let clear = if sql.starts_with("SET SESSION") {
            err.contains("`sweep query` runs one statement per call") && err.contains("fix:")
        } else {
            err.contains("`sweep query` is read-only") && err.contains("Use SELECT")
        };
        assert!(clear, "{sql}: {err}");
        assert!(o.stdout.is_empty(), "{sql}: no rows printed");
    }
    assert_eq!(snapshot(), before, "nothing changed");
    let tables = query("SELECT count(*) AS n FROM information_schema.tables WHERE table_name IN ('metrics', 'sweeps', 'trials', 'sweep_trials', 'samples') AND table_schema = 'public'");
    assert!(tables.status.success(), "{}", out_text(&tables));
    let v: serde_json::Value = serde_json::from_slice(&tables.stdout).unwrap();
    assert_eq!(v[0]["n"], 5, "{v}");
}
