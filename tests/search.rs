//! Search sweeps end to end: bad input, plans, duplicate suggestions, kill-and-resume of a TPE
//! search with `--jobs 2` (SIGINT) and of a Hyperband search (SIGKILL), reproducible pruning and
//! `sweep best`; two workers on one PostgreSQL ledger and a Slurm array, both under Hyperband.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use sweep::store::{self, TrialState};

mod common;
use common::{out_text, pg_url, Project};

/// `[base]` of a tiny trial that takes a few seconds (long enough to be paused and stopped).
const BASE: &str = r#"[base]
model = "gpt2-tiny"
tokenizer = "bpe-512"
data = { sources = ["data/x.tsv"], categories = ["cs.CL"] }
block_size = 32
batch_size = 4
grad_accum = 1
learning_rate = 1e-3
weight_decay = 0.0
epochs = 1
max_steps = 40
eval_every = 10
eval_tokens = 1000
"#;

fn search_file(name: &str, kind: &str, search: &str, rest: &str) -> String {
    format!("[sweep]\nname = \"{name}\"\nkind = \"{kind}\"\n{BASE}\n[search]\n{search}\n{rest}")
}

const SPACE: &str = r#"[space]
learning_rate = { log_uniform = [1e-4, 3e-2] }
warmup_steps = { int = [0, 10], step = 5 }
batch_size = { choice = [2, 4] }
"#;

/// (position, label, state, error) of a trial.
type TrialRow = (i64, String, TrialState, Option<String>);

/// Every trial of a sweep.
fn trials_of(db: &str, sweep: &str) -> Vec<TrialRow> {
    let r = store::open_read_only(db).unwrap();
    let rec = r.sweep_by_name(sweep).unwrap().expect("sweep recorded");
    r.sweep_trials(rec.id)
        .unwrap()
        .into_iter()
        .map(|t| (t.position, t.label.to_string(), t.state, t.error.clone()))
        .collect()
}

#[test]
fn bad_search_files_name_the_place_and_the_fix_and_write_nothing() {
    let p = Project::new();
    let cases: &[(&str, &str, &str, &str)] = &[
        // (search, rest, expected key, expected text)
        (
            "trials = 4",
            "[space]\nlearning_rate = { log_uniform = [1e-3, 1e-4] }",
            "space.learning_rate",
            "reversed range",
        ),
        (
            "trials = 4",
            "[space]\nlearning_rate = { uniform = [1e-3, 1e-3] }",
            "space.learning_rate",
            "empty range",
        ),
        (
            "trials = 4",
            "[space]\nlearning_rate = { log_uniform = [0.0, 1e-3] }",
            "space.learning_rate",
            "above 0",
        ),
        (
            "trials = 4",
            "[space]\nlearning_rate = { normal = [0, 1] }",
            "space.learning_rate",
            "unknown distribution `normal`",
        ),
        (
            "trials = 4\nmetric = \"bleu\"",
            SPACE,
            "search.metric",
            "unknown metric `bleu`",
        ),
        ("trials = 0", SPACE, "search.trials", "0 is below 1"),
        (
            "trials = 4",
            "[space]\nlearnin_rate = { log_uniform = [1e-4, 1e-3] }",
            "space.learnin_rate",
            "not a trial key",
        ),
        (
            "trials = 4",
            "[space]\nbatch_size = { int = [0, 8] }",
            "space.batch_size",
            "must be positive",
        ),
        (
            "trials = 4",
            "[space]\nbatch_size = { uniform = [1, 8] }",
            "space.batch_size",
            "takes integers",
        ),
        (
            "trials = 4",
            &format!("{SPACE}\n[prune]\nmethod = \"hyperhand\""),
            "prune.method",
            "unknown pruning method",
        ),
        // Hyperband: reduction factor, max_steps against min_steps (eval_every, 10), and a
        // budget that leaves a bracket without a trial (10, 20, 40 <= max_steps 40: three).
        (
            "trials = 4",
            &format!("{SPACE}\n[prune]\nmethod = \"hyperband\"\nreduction_factor = 1"),
            "prune.reduction_factor",
            "1 is below 2",
        ),
        (
            "trials = 4",
            &format!("{SPACE}\n[prune]\nmethod = \"hyperband\"\nmax_steps = 10"),
            "prune.max_steps",
            "10 is not above min_steps 10",
        ),
        (
            "trials = 2",
            &format!("{SPACE}\n[prune]\nmethod = \"hyperband\"\nreduction_factor = 2"),
            "prune.method",
            "has 3 brackets",
        ),
    ];
    let mut files: Vec<(String, &str, &str)> = cases
        .iter()
        .map(|(search, rest, key, text)| (search_file("bad", "tpe", search, rest), *key, *text))
        .collect();
    // Pruning needs validation evaluations; the message points at [prune].
    for method in ["asha", "hyperband"] {
        let rest = format!("{SPACE}\n[prune]\nmethod = \"{method}\"");
        let no_eval =
            search_file("bad", "tpe", "trials = 4", &rest).replace("eval_every = 10\n", "");
        files.push((no_eval, "prune.method", "no eval_every"));
    }
    for (i, (body, key, text)) in files.iter().enumerate() {
        let file = p.write(&format!("exp/bad{i}.toml"), body);
        let out = p
            .cmd()
            .args(["run", file.to_str().unwrap(), "--db", "bad.db"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "case {i}: {err}");
        assert!(
            err.contains(&format!("bad{i}.toml:")),
            "case {i}: no location: {err}"
        );
        assert!(err.contains(key) && err.contains(text), "case {i}: {err}");
        assert!(err.contains("fix:"), "case {i}: {err}");
        assert!(
            !p.path().join("bad.db").exists(),
            "case {i}: a ledger was written"
        );
    }
    // A grid axis in a search, a [space] in a grid.
    let file = p.write(
        "exp/axis.toml",
        &search_file(
            "bad",
            "random",
            "trials = 4",
            &format!("{SPACE}\n[grid]\nseed = [1, 2]"),
        ),
    );
    let out = p
        .cmd()
        .args(["plan", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("grid.seed"));
    let file = p.write(
        "exp/grid.toml",
        &search_file("bad", "grid", "trials = 4", SPACE),
    );
    let out = p
        .cmd()
        .args(["plan", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no [search]"));
}

#[test]
fn plan_shows_the_space_budget_and_first_suggestions_and_writes_nothing() {
    let p = Project::new();
    let file = p.write(
        "exp/s.toml",
        &search_file("s", "random", "trials = 6\nseed = 3", SPACE),
    );
    let out = p
        .cmd()
        .args(["plan", file.to_str().unwrap(), "--db", "s.db"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "random search, budget 6 trials",
        "learning_rate            log-uniform [1e-4, 3e-2]",
        "warmup_steps             int [0, 10] step 5",
        "batch_size               choice [2, 4]",
        "pruning: none",
        "estimated time for the 6 trial(s) still to suggest",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    // Five suggestions, each with a label of the three parameters.
    assert_eq!(text.matches("learning_rate=").count(), 5, "{text}");
    assert!(!p.path().join("s.db").exists(), "plan wrote a ledger");
}

#[test]
fn a_suggestion_equal_to_a_known_trial_is_not_trained_again_and_a_small_space_ends_early() {
    let p = Project::new();
    // A grid trial first: batch 2 of the same base.
    let grid = format!("[sweep]\nname = \"g\"\n{BASE}\n[grid]\nbatch_size = [2]\n");
    let g = p.write("exp/g.toml", &grid);
    p.cmd()
        .args(["run", g.to_str().unwrap()])
        .assert()
        .success();
    let space = "[space]\nbatch_size = { choice = [2, 4] }\n";
    let s = p.write(
        "exp/s.toml",
        &search_file("s", "random", "trials = 5", space),
    );
    let out = p.cmd().args(["run", s.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("fully explored"), "{err}");
    let db = p.path().join("results/sweep.db");
    let db = db.to_str().unwrap();
    let trials = trials_of(db, "s");
    assert_eq!(trials.len(), 2, "two distinct points: {trials:?}");
    let r = store::open_read_only(db).unwrap();
    let all: Vec<_> = [TrialState::Completed]
        .iter()
        .flat_map(|s| r.trials_in_state(*s).unwrap())
        .collect();
    assert_eq!(all.len(), 2, "the ledger has two trials in all");
    assert!(
        all.iter().all(|t| t.attempts == 1),
        "each trained once: {all:?}"
    );
}

/// The trial processes of `sweep` that are running, by position: (position, pid).
fn running(db: &str, sweep: &str) -> Vec<(i64, i32)> {
    let Ok(r) = store::open_read_only(db) else {
        return Vec::new();
    };
    let Ok(Some(rec)) = r.sweep_by_name(sweep) else {
        return Vec::new();
    };
    r.sweep_trials(rec.id)
        .unwrap_or_default()
        .iter()
        .filter(|t| t.state == TrialState::Running)
        .filter_map(|t| {
            let pid = t.worker.as_deref()?.rsplit_once(':')?.1.parse().ok()?;
            Some((t.position, pid))
        })
        .collect()
}

/// How [`run_in_order`] stops a run early.
#[derive(Clone, Copy)]
enum Stop {
    /// SIGINT to `sweep run`: it asks its trials to checkpoint and records them interrupted.
    Interrupt,
    /// SIGKILL to `sweep run` and its trial processes at once: nobody records anything.
    Kill,
}

/// Runs `sweep run` while pausing every running trial but the earliest (SIGSTOP/SIGCONT), so that
/// trials finish in position order whatever their speed: the same completion order in every run.
/// `stop_after`: stop the run that way once that many trials completed or were pruned. Returns
/// its exit code (`None` when killed).
fn run_in_order(
    p: &Project,
    file: &str,
    db: &str,
    name: &str,
    stop_after: Option<(usize, Stop)>,
) -> Option<i32> {
    use std::os::unix::process::CommandExt;
    let mut child: Child = p
        .std_cmd()
        .args(["run", file, "--jobs", "2", "--db", db])
        .args(["--checkpoint-minutes", "0.005"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let db_path = p.path().join(db);
    let url = db_path.to_str().unwrap().to_string();
    let mut stopped: Vec<i32> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        assert!(Instant::now() < deadline, "the search did not finish");
        let mut now = running(&url, name);
        now.sort();
        for (i, (_, pid)) in now.iter().enumerate() {
            let (sig, is_stopped) = if i == 0 {
                (libc::SIGCONT, false)
            } else {
                (libc::SIGSTOP, true)
            };
            // SAFETY: signalling a trial process of this test.
            unsafe { libc::kill(*pid, sig) };
            stopped.retain(|p| p != pid);
            if is_stopped {
                stopped.push(*pid);
            }
        }
        if let Some((n, how)) = stop_after {
            let done = if running(&url, name).is_empty() {
                0
            } else {
                trials_of(&url, name)
                    .iter()
                    .filter(|t| matches!(t.2, TrialState::Completed | TrialState::Pruned))
                    .count()
            };
            if done >= n {
                match how {
                    Stop::Interrupt => {
                        for pid in &stopped {
                            // SAFETY: as above; a paused trial must run to see the stop request.
                            unsafe { libc::kill(*pid, libc::SIGCONT) };
                        }
                        // SAFETY: the `sweep run` child of this test.
                        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
                    }
                    // SAFETY: the process group this test created (the run and its trials).
                    Stop::Kill => unsafe {
                        libc::kill(-(child.id() as i32), libc::SIGKILL);
                    },
                }
                return child.wait().unwrap().code();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_tpe_search_with_two_jobs_resumes_to_the_same_trials() {
    let file = search_file("order", "tpe", "trials = 7\nstartup = 3\nseed = 11", SPACE);
    let whole = Project::new();
    let f = whole.write("exp/order.toml", &file);
    assert_eq!(
        run_in_order(&whole, f.to_str().unwrap(), "a.db", "order", None),
        Some(0)
    );
    let killed = Project::new();
    let f = killed.write("exp/order.toml", &file);
    let code = run_in_order(
        &killed,
        f.to_str().unwrap(),
        "b.db",
        "order",
        Some((4, Stop::Interrupt)),
    );
    assert_eq!(code, Some(130), "the first run was stopped");
    let partial = trials_of(killed.path().join("b.db").to_str().unwrap(), "order");
    assert!(
        partial.len() < 7 && partial.iter().any(|t| t.2 == TrialState::Interrupted),
        "stopped mid-search: {partial:?}"
    );
    assert_eq!(
        run_in_order(&killed, f.to_str().unwrap(), "b.db", "order", None),
        Some(0)
    );
    let a = trials_of(whole.path().join("a.db").to_str().unwrap(), "order");
    let b = trials_of(killed.path().join("b.db").to_str().unwrap(), "order");
    assert_eq!(a.len(), 7, "the budget: {a:?}");
    let labels = |v: &[(i64, String, TrialState, Option<String>)]| {
        v.iter()
            .map(|t| (t.0, t.1.clone(), t.2))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        labels(&a),
        labels(&b),
        "same suggestions, same order, all completed"
    );
    assert!(a.iter().all(|t| t.2 == TrialState::Completed));
}

/// Hyperband's `[prune]` of the tests: first rungs at 10, 20 and 40 (= every trial's 40 steps, so
/// bracket 2 never prunes), shares 4:3:3.
const HYPERBAND: &str = "[prune]\nmethod = \"hyperband\"\nmin_steps = 10\nreduction_factor = 2\n";

/// (position, bracket, a pruned trial's decision as (rung, step)) of a Hyperband trial.
type Placed = (i64, u64, Option<(u64, u64)>);

/// Every trial's bracket (`env.hyperband`), the pure function of seed and position, and each
/// pruned trial's decision in its bracket.
fn brackets_of(db: &str, name: &str, seed: u64) -> Vec<Placed> {
    let r = store::open_read_only(db).unwrap();
    let rec = r.sweep_by_name(name).unwrap().expect("recorded");
    r.sweep_trials(rec.id)
        .unwrap()
        .iter()
        .map(|t| {
            let env = t.env.clone().unwrap_or_default();
            let hb = &env["hyperband"];
            let bracket = hb["bracket"]
                .as_u64()
                .expect("every trial records its bracket");
            assert_eq!(
                (hb["brackets"].as_u64(), hb["max_steps"].as_u64()),
                (Some(3), Some(40))
            );
            let want = sweep::search::prune::bracket_of(seed, t.position as u64, 3, 2);
            assert_eq!(bracket, want as u64, "position {}: {hb}", t.position);
            assert_eq!(hb["first_rung"].as_u64(), Some(10 << bracket));
            let decision = (t.state == TrialState::Pruned).then(|| {
                let d = &env["pruned"];
                assert_eq!(d["method"], "hyperband");
                assert_eq!(d["bracket"].as_u64(), Some(bracket), "{d}");
                let (rung, step) = (d["rung"].as_u64().unwrap(), d["step"].as_u64().unwrap());
                assert_eq!(step, 10 << (bracket + rung), "its bracket's rung: {d}");
                (rung, step)
            });
            (t.position, bracket, decision)
        })
        .collect()
}

#[test]
fn a_hyperband_search_killed_with_sigkill_resumes_within_its_budget() {
    let file = search_file(
        "hb",
        "tpe",
        "trials = 10\nstartup = 4\nseed = 6",
        &format!("{SPACE}\n{HYPERBAND}"),
    );
    let whole = Project::new();
    let f = whole.write("exp/hb.toml", &file);
    let f = f.to_str().unwrap();
    assert_eq!(run_in_order(&whole, f, "a.db", "hb", None), Some(0));
    let killed = Project::new();
    let g = killed.write("exp/hb.toml", &file);
    let g = g.to_str().unwrap();
    let code = run_in_order(&killed, g, "b.db", "hb", Some((5, Stop::Kill)));
    assert_eq!(code, None, "killed by SIGKILL");
    let b = killed.path().join("b.db");
    let b = b.to_str().unwrap();
    let partial = trials_of(b, "hb");
    assert!(
        partial.len() < 10 && partial.iter().any(|t| t.2 == TrialState::Running),
        "killed mid-search, a trial left running with nobody to record its end: {partial:?}"
    );
    assert_eq!(run_in_order(&killed, g, "b.db", "hb", None), Some(0));
    let a = whole.path().join("a.db");
    let a = a.to_str().unwrap();
    assert_search_done(a, "hb", 10);
    let (ta, tb) = (trials_of(a, "hb"), trials_of(b, "hb"));
    assert_eq!(tb.len(), 10, "the budget, not more: {tb:?}");
    let r = store::open_read_only(b).unwrap();
    let members = r
        .sweep_trials(r.sweep_by_name("hb").unwrap().unwrap().id)
        .unwrap();
    assert!(members.iter().all(|t| t.state.is_done()), "{tb:?}");
    assert!(
        members.iter().any(|t| t.attempts == 2),
        "a killed trial ran again: {members:?}"
    );
    let rows = |v: &[TrialRow]| {
        v.iter()
            .map(|t| (t.0, t.1.clone(), t.2))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        rows(&ta),
        rows(&tb),
        "same suggestions, brackets and pruning decisions"
    );
    let (ba, bb) = (brackets_of(a, "hb", 6), brackets_of(b, "hb", 6));
    assert_eq!(ba, bb);
    assert!(
        ba.iter().any(|t| t.2.is_some()) && ta.iter().any(|t| t.2 == TrialState::Completed),
        "the search prunes some trials and completes others: {ba:?}"
    );
    assert!(
        ba.iter().all(|t| t.1 < 2 || t.2.is_none()),
        "bracket 2's only rung is the trials' last step: {ba:?}"
    );
}

/// Runs the search `file` (sweep `name`) to its end in a new project, which it returns with the
/// path of its ledger.
fn run_search(name: &str, file: &str) -> (Project, std::path::PathBuf) {
    let p = Project::new();
    let f = p.write(&format!("exp/{name}.toml"), file);
    let out = p.cmd().args(["run", f.to_str().unwrap()]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = p.path().join("results/sweep.db");
    (p, db)
}

/// A Hyperband search with its rungs in training tokens: batch 2 (64 tokens a step) and batch 4
/// (128) meet the rungs at 640, 1280 and 2560 tokens, at their first evaluation past them.
#[test]
fn hyperband_in_tokens_judges_every_batch_size_at_the_same_budget() {
    let prune = format!(
        "{SPACE}\n[prune]\nmethod = \"hyperband\"\nmin_tokens = 640\nmax_tokens = 2560\n\
         reduction_factor = 2\n"
    );
    let file = search_file("hbt", "tpe", "trials = 10\nstartup = 4\nseed = 6", &prune);
    let (_p, db) = run_search("hbt", &file);
    let r = store::open_read_only(db.to_str().unwrap()).unwrap();
    let rec = r.sweep_by_name("hbt").unwrap().expect("recorded");
    let trials = r.sweep_trials(rec.id).unwrap();
    assert_eq!(trials.len(), 10);
    let mut pruned = 0;
    for t in &trials {
        let env = t.env.clone().unwrap_or_default();
        let hb = &env["hyperband"];
        assert_eq!(
            (hb["brackets"].as_u64(), hb["max_steps"].as_u64()),
            (Some(3), Some(2560)),
            "the same brackets for both batch sizes: {hb}"
        );
        let bracket = hb["bracket"].as_u64().unwrap();
        assert_eq!(hb["first_rung"].as_u64(), Some(640 << bracket));
        if t.state != TrialState::Pruned {
            continue;
        }
        pruned += 1;
        let d = &env["pruned"];
        assert_eq!(
            (&d["method"], &d["resource"]),
            (&"hyperband".into(), &"tokens".into())
        );
        let batch = t.trial.config["batch_size"].as_u64().unwrap();
        let rung = 640u64 << (bracket + d["rung"].as_u64().unwrap());
        // Evaluations every 10 steps: every 640 tokens at batch 2, every 1280 at batch 4.
        let every = 10 * 32 * batch;
        assert_eq!(
            d["step"].as_u64(),
            Some(rung.div_ceil(every) * every),
            "decided at the first evaluation at or past {rung} tokens: {d}"
        );
        let why = t.error.clone().unwrap_or_default();
        assert!(why.contains("tokens)"), "{why}");
    }
    assert!(pruned > 0, "the search prunes: {trials:?}");
}

#[test]
fn pruning_decisions_are_reproducible_and_recorded() {
    let prune =
        format!("{SPACE}\n[prune]\nmethod = \"asha\"\nmin_steps = 10\nreduction_factor = 2\n");
    let file = search_file("pr", "tpe", "trials = 8\nstartup = 4\nseed = 5", &prune);
    let runs: Vec<Vec<TrialRow>> = (0..2)
        .map(|_| {
            let (p, db) = run_search("pr", &file);
            let trials = trials_of(db.to_str().unwrap(), "pr");
            // A pruned trial keeps its metrics, its checkpoint and the decision.
            let r = store::open_read_only(db.to_str().unwrap()).unwrap();
            for t in r.trials_in_state(TrialState::Pruned).unwrap() {
                let valid = r
                    .metrics(t.id)
                    .unwrap()
                    .iter()
                    .filter(|m| m.split == "valid")
                    .count();
                assert!(valid >= 1, "pruned after a validation");
                let d = &t.env.as_ref().unwrap()["pruned"];
                assert_eq!(d["method"], "asha");
                assert!(d["threshold"].as_f64().unwrap() < d["value"].as_f64().unwrap());
                let dir = p.path().join("results").join(
                    t.artifact_dir
                        .clone()
                        .unwrap_or(format!("trials/{}", t.short_hash())),
                );
                assert!(
                    common::checkpoint_step(&dir).is_some(),
                    "checkpoint kept in {}",
                    dir.display()
                );
            }
            // `sweep best` names a completed trial and its config as TOML for [base].
            let best = p.cmd().args(["best", "pr"]).output().unwrap();
            let text = String::from_utf8_lossy(&best.stdout);
            assert!(
                best.status.success() && text.contains("# paste under [base]:"),
                "{text}"
            );
            let body: String = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| format!("{l}\n"))
                .collect();
            let parsed: toml::Table = toml::from_str(&body).unwrap();
            assert_eq!(parsed["model"].as_str(), Some("gpt2-tiny"));
            trials
        })
        .collect();
    assert_eq!(
        runs[0], runs[1],
        "same seed, same suggestions and pruning decisions"
    );
    let pruned = runs[0].iter().filter(|t| t.2 == TrialState::Pruned).count();
    assert!(pruned >= 1, "the test exercises pruning: {:?}", runs[0]);
    assert!(runs[0].iter().any(|t| t.2 == TrialState::Completed));
}

/// Every trial of a finished search on `db`: distinct points, within the budget, each run once.
fn assert_search_done(db: &str, name: &str, budget: usize) {
    let r = store::open_read_only(db).unwrap();
    let rec = r.sweep_by_name(name).unwrap().expect("recorded");
    let trials = r.sweep_trials(rec.id).unwrap();
    assert_eq!(trials.len(), budget, "the budget, not more: {trials:?}");
    let hashes: std::collections::HashSet<_> = trials.iter().map(|t| t.hash.clone()).collect();
    let labels: std::collections::HashSet<_> = trials.iter().map(|t| t.label.to_string()).collect();
    assert_eq!(hashes.len(), budget, "no suggestion twice");
    assert_eq!(labels.len(), budget, "no point twice");
    for t in &trials {
        assert!(t.state.is_done(), "{t:?}");
        assert_eq!(t.attempts, 1, "trial {} ran exactly once", t.id);
    }
}

#[test]
#[ignore = "needs PostgreSQL: SWEEP_TEST_PG_URL (.ci/run starts it: scripts/ci-cluster-services.sh)"]
fn two_workers_on_one_postgres_ledger_share_a_search_within_its_budget() {
    let pg = store::postgres::scratch_database(&pg_url(), "sweep_search_workers").unwrap();
    let p = Project::new();
    let file = p.write(
        "exp/ws.toml",
        &search_file(
            "ws",
            "tpe",
            "trials = 6\nstartup = 2\nseed = 1",
            &format!("{SPACE}\n{HYPERBAND}"),
        ),
    );
    // Record the search without running anything.
    let out = p
        .cmd()
        .arg("run")
        .arg(&file)
        .args([
            "--executor",
            "slurm",
            "--dry-run",
            "--artifacts-local-ok",
            "--db",
            &pg,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(" worker --sweep ws "));
    let spawn = || {
        p.std_cmd()
            .args([
                "worker",
                "--sweep",
                "ws",
                "--poll-seconds",
                "0.2",
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
    assert_search_done(&pg, "ws", 6);
    // Hyperband across processes: each trial placed in its bracket, decisions within it.
    brackets_of(&pg, "ws", 1);
    let asked = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stderr)
            .matches("suggests ")
            .count()
    };
    assert!(
        asked(&a) >= 1 && asked(&b) >= 1,
        "both workers asked:\n{}\n{}",
        out_text(&a),
        out_text(&b)
    );
    assert_eq!(asked(&a) + asked(&b), 6, "six suggestions in all");
}

#[test]
#[ignore = "needs Slurm and PostgreSQL (.ci/run starts them: scripts/ci-cluster-services.sh)"]
fn a_search_under_slurm_is_an_array_of_tasks_that_spend_the_budget() {
    let slurm = std::process::Command::new("sinfo")
        .args(["-h", "-o", "%t"])
        .output()
        .map(|o| o.status.success() && !o.stdout.is_empty())
        .unwrap_or(false);
    assert!(
        slurm,
        "no usable Slurm (start it with `. scripts/ci-cluster-services.sh`)"
    );
    let pg = store::postgres::scratch_database(&pg_url(), "sweep_search_slurm").unwrap();
    let p = Project::new();
    let file = p.write(
        "exp/ss.toml",
        &search_file(
            "ss",
            "random",
            "trials = 5\nseed = 2",
            &format!("{SPACE}\n{HYPERBAND}"),
        ),
    );
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
        .args(["--artifacts-local-ok", "--artifacts"])
        .arg(&shared)
        .args(["--db", &pg])
        .output()
        .unwrap();
    assert!(out.status.success(), "submit: {}", out_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2 search tasks"),
        "{}",
        out_text(&out)
    );
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let r = store::open_read_only(&pg).unwrap();
        let rec = r.sweep_by_name("ss").unwrap().unwrap();
        let t = r.sweep_trials(rec.id).unwrap();
        if t.len() == 5 && t.iter().all(|t| t.state.is_done()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the search tasks did not finish: {t:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_search_done(&pg, "ss", 5);
    brackets_of(&pg, "ss", 2);
}

/// A search's report: the search section (history, top trials, one slice per parameter, parallel
/// coordinates) renders in headless Chromium, pruned trials marked, ledger text kept as text.
#[test]
#[ignore = "needs Chromium (.ci/run installs it)"]
fn a_search_report_renders_in_headless_chromium() {
    let browser = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium not found: this test needs it (apt-get install -y chromium)");
    let p = Project::new();
    let prune =
        format!("{SPACE}\n[prune]\nmethod = \"asha\"\nmin_steps = 10\nreduction_factor = 2\n");
    let hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    let file = search_file("rep", "random", "trials = 6\nseed = 4", &prune).replace(
        "name = \"rep\"",
        &format!("name = \"rep\"\ntitle = \"Search {hostile}\""),
    );
    let f = p.write("exp/rep.toml", &file);
    let out = p.cmd().args(["run", f.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    let html = p.path().join("reports/rep.html");
    assert!(html.is_file(), "sweep run wrote the report");
    let dom = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ])
        .arg(format!(
            "--user-data-dir={}",
            p.path().join("chrome").display()
        ))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("running chromium");
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        !dom.contains("<script") && !dom.contains("<img"),
        "hostile text became elements"
    );
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let search = dom
        .split("<section id=\"search\">")
        .nth(1)
        .and_then(|s| s.split("</section>").next())
        .expect("the search section");
    for want in [
        "Optimization history",
        "Expected validation performance",
        "Top trials",
        "Slices",
        "Parallel coordinates",
    ] {
        assert!(search.contains(want), "missing {want}");
    }
    // History + expected best vs trials + three slices + parallel coordinates, each with drawn
    // marks.
    let svgs: Vec<&str> = search.split("<svg").skip(1).collect();
    assert_eq!(svgs.len(), 6, "six search plots");
    for s in &svgs {
        let marks = s.matches("<circle").count() + s.matches("<polyline").count();
        assert!(marks >= 2, "an empty plot: {}", &s[..s.len().min(300)]);
    }
    let pruned = trials_of(p.path().join("results/sweep.db").to_str().unwrap(), "rep")
        .iter()
        .filter(|t| t.2 == TrialState::Pruned)
        .count();
    assert!(pruned >= 1, "the fixture prunes");
    assert!(
        search.contains(&format!("{pruned} pruned")),
        "pruned trials counted"
    );
}
