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
use common::Project;

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

fn pg_scratch(name: &str) -> Option<String> {
    let Ok(url) = std::env::var("SWEEP_TEST_PG_URL") else {
        eprintln!(
            "SKIP: SWEEP_TEST_PG_URL is not set (start PostgreSQL with `. scripts/ci-cluster-services.sh`)"
        );
        return None;
    };
    Some(postgres::scratch_database(&url, name).unwrap())
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
    if !ok {
        eprintln!("SKIP: no usable Slurm node (`sinfo` absent or no idle node; `. scripts/ci-cluster-services.sh` starts one)");
    }
    ok
}

fn out_text(o: &std::process::Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
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
        .env("SWEEP_ARTIFACTS", p.path().join("local/trials"))
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
fn store_contract_on_postgres() {
    let Ok(url) = std::env::var("SWEEP_TEST_PG_URL") else {
        eprintln!("SKIP store_contract_on_postgres: SWEEP_TEST_PG_URL is not set");
        return;
    };
    let n = std::sync::atomic::AtomicUsize::new(0);
    let make = || -> anyhow::Result<Arc<dyn Store>> {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let db = postgres::scratch_database(&url, &format!("sweep_contract_{i}"))?;
        Ok(Arc::from(store::open(&db)?))
    };
    store::contract::run_all(&make).unwrap();
}

#[test]
fn bad_postgres_urls_fail_clearly() {
    let Ok(url) = std::env::var("SWEEP_TEST_PG_URL") else {
        eprintln!("SKIP bad_postgres_urls_fail_clearly: SWEEP_TEST_PG_URL is not set");
        return;
    };
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
fn slurm_job_array_on_postgres_matches_a_local_sqlite_run() {
    if !slurm_up() {
        return;
    }
    let Some(pg) = pg_scratch("sweep_cluster_array") else {
        return;
    };
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
        let dir = t.artifact_dir.clone().unwrap_or_default();
        assert!(
            dir.starts_with(shared.join("trials").to_str().unwrap()),
            "{dir}"
        );
        assert!(
            Path::new(&dir).join("model").exists(),
            "model exported to {dir}"
        );
    }
}

#[test]
fn scancel_of_one_task_then_requeue_resumes_from_its_checkpoint() {
    if !slurm_up() {
        return;
    }
    let Some(pg) = pg_scratch("sweep_cluster_requeue") else {
        return;
    };
    let p = Project::new();
    let text = sweep_file("rq", 300, "seed = [1]")
        .replace("eval_tokens = 2000", "eval_tokens = 2000\neval_every = 50");
    let file = p.write("exp/rq.toml", &text);
    let shared = p.path().join("shared");
    let submit = |extra: &[&str]| {
        let out = p
            .cmd()
            .arg("run")
            .arg(&file)
            .args(["--executor", "slurm", "--checkpoint-minutes", "0.01"])
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
                && shared
                    .join("trials")
                    .join(t.short_hash())
                    .join("checkpoint/state.json")
                    .exists()
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
    assert!(cut < 300, "cancelled mid-trial (at step {cut})");
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
fn two_workers_drain_one_sweep_and_run_each_trial_once() {
    let Some(pg) = pg_scratch("sweep_cluster_workers") else {
        return;
    };
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
}

#[test]
fn sweep_cancel_and_slurm_warning_signal_interrupt_then_requeue_finishes() {
    if !slurm_up() {
        return;
    }
    let Some(pg) = pg_scratch("sweep_cluster_cancel") else {
        return;
    };
    let p = Project::new();
    let text = sweep_file("cx", 300, "seed = [1, 2]")
        .replace("eval_tokens = 2000", "eval_tokens = 2000\neval_every = 50");
    let file = p.write("exp/cx.toml", &text);
    let shared = p.path().join("shared");
    let submit = |extra: &[&str]| {
        let out = p
            .cmd()
            .arg("run")
            .arg(&file)
            .args(["--executor", "slurm", "--max-parallel", "1"])
            .args(["--checkpoint-minutes", "0.01"])
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
    // 1. Slurm's time-limit warning (`--signal=B:USR1@120` in the script) on the first task.
    let job = submit(&[]);
    wait_for(
        "trial 1 to train",
        Duration::from_secs(600),
        || {
            let t = trials_of(&*remote, "cx").remove(0);
            t.state == TrialState::Running && training_past(t.id, 30)
        },
        || logs_under(&shared),
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
        || logs_under(&shared),
    );
    // 2. `sweep cancel` while trial 2 trains: it is interrupted too, and nothing else runs.
    wait_for(
        "trial 2 to train",
        Duration::from_secs(600),
        || {
            let t = trials_of(&*remote, "cx").remove(1);
            t.state == TrialState::Running && training_past(t.id, 30)
        },
        || logs_under(&shared),
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
        || logs_under(&shared),
    );
    // 3. --requeue resubmits both; they resume from their checkpoints and finish.
    submit(&["--requeue"]);
    wait_for(
        "the requeued trials to complete",
        Duration::from_secs(900),
        || trials_of(&*remote, "cx").iter().all(|t| t.state.is_done()),
        || logs_under(&shared),
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
fn a_killed_worker_is_detected_and_another_worker_resumes_its_trial() {
    let Some(pg) = pg_scratch("sweep_cluster_dead_worker") else {
        return;
    };
    let p = Project::new();
    let text = sweep_file("dw", 300, "seed = [1]")
        .replace("eval_tokens = 2000", "eval_tokens = 2000\neval_every = 50");
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
        p.path()
            .join("results/trials")
            .join(t.short_hash())
            .join("checkpoint/state.json")
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
                && ckpt(&t).exists()
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
