//! Running sweeps through the executors: bugs found by the architecture review (issue 15), each
//! with the test that failed before its fix.

use std::path::{Path, PathBuf};

mod common;
#[path = "common/hub.rs"]
mod hub;
use common::Project;

/// `[sweep]` + `[base]` of a fast trial (gpt2-tiny from scratch, small BPE, few steps).
fn tiny(name: &str) -> String {
    format!(
        r#"[sweep]
name = "{name}"
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
max_steps = 3
eval_tokens = 1000
"#
    )
}

/// A paper-scale trial: distilgpt2 with GPT-2's tokenizer, no caps.
fn paper_scale(name: &str, epochs: usize) -> String {
    format!(
        r#"[sweep]
name = "{name}"
[base]
model = "distilgpt2"
data = {{ sources = ["data/x.tsv"], categories = ["cs.CL"] }}
block_size = 128
batch_size = 8
grad_accum = 1
learning_rate = 5e-5
weight_decay = 0.0
epochs = {epochs}
"#
    )
}

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A directory of stand-ins for Slurm's `sbatch` and `scancel` (each logs its arguments).
fn fake_slurm(dir: &Path) -> PathBuf {
    let bin = dir.join("fake-slurm");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("slurm-calls.log");
    for (tool, out) in [("sbatch", "4242"), ("scancel", "")] {
        let path = bin.join(tool);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{tool} $*\" >> {}\necho {out}\n",
                log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

/// Bug 3: a local `sweep run` of a sweep that was submitted to Slurm re-recorded the sweep's spec
/// without its job list, after which `sweep cancel` found no jobs.
#[test]
fn a_local_run_keeps_the_slurm_jobs_of_the_sweep() {
    let p = Project::new();
    let file = p.write("exp/s.toml", &tiny("mixed"));
    let bin = fake_slurm(p.path());
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = p
        .cmd()
        .env("PATH", &path)
        .args(["run", "--executor", "slurm", "--artifacts-local-ok"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out).trim(), "4242", "the job id is printed");
    // The same sweep, run locally (e.g. the job was slow to start): it trains the trial.
    let out = p.cmd().arg("run").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = p
        .cmd()
        .env("PATH", &path)
        .args(["cancel", "mixed"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cancel still finds the submitted job: {}",
        stderr_of(&out)
    );
    let calls = std::fs::read_to_string(p.path().join("slurm-calls.log")).unwrap();
    assert!(calls.contains("scancel 4242"), "{calls}");
}

/// Bug 1: `sweep plan FILE --db postgres://...` took the URL for a file path, found no such
/// file and planned as if the ledger were empty.
#[test]
fn plan_reads_the_postgres_ledger_it_is_given() {
    let p = Project::new();
    let file = p.write("exp/s.toml", &tiny("pg"));
    // Nothing listens on port 1: reading the ledger must fail, not be skipped.
    let out = p
        .cmd()
        .args(["plan", "--db", "postgres://sweep:sweep@127.0.0.1:1/nothing"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "planned without reading the ledger: {}",
        stdout_of(&out)
    );
    assert!(
        !p.path().join("postgres:").exists(),
        "no file named after the URL"
    );
}

/// Bug 1, against a real PostgreSQL ledger: the plan shows what the ledger has.
#[test]
#[ignore = "needs PostgreSQL (SWEEP_TEST_PG_URL; .ci/run starts it)"]
fn plan_shows_the_state_recorded_in_postgres() {
    let url = std::env::var("SWEEP_TEST_PG_URL")
        .expect("SWEEP_TEST_PG_URL must be set to run the PostgreSQL tests");
    let db = sweep::store::postgres::scratch_database(&url, "sweep_plan_pg").unwrap();
    let p = Project::new();
    let file = p.write("exp/s.toml", &tiny("pgplan"));
    let out = p
        .cmd()
        .args(["run", "--db", &db])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = p
        .cmd()
        .args(["plan", "--db", &db])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stdout_of(&out).contains(" done "), "{}", stdout_of(&out));
}

/// Bug 5: a paper-scale sweep on a machine without the pretrained weights (and here without a
/// network to fetch them from) recorded every trial,
/// failed each with the same message and exited 1. It is refused in preflight, once, exit 2,
/// with nothing recorded.
#[test]
fn missing_pretrained_weights_are_refused_before_anything_is_recorded() {
    let p = Project::new();
    let file = p.write("exp/s.toml", &paper_scale("paper", 1));
    let empty_hub = p.path().join("empty-hub");
    std::fs::create_dir_all(&empty_hub).unwrap();
    let out = p
        .cmd()
        .env("HF_HUB_CACHE", &empty_hub)
        .arg("run")
        .arg(&file)
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.matches("model `distilgpt2`").count(), 1, "{err}");
    assert!(err.contains("--profile quick"), "{err}");
    assert!(
        !p.path().join("results/sweep.db").exists(),
        "nothing recorded"
    );
}

/// Bug 6: `sweep plan` printed `-` for every paper-scale trial. It estimates from the model's
/// FLOPs per token at this device's measured rate, and says when a plan would take days.
#[test]
fn plan_estimates_paper_scale_trials_and_warns_about_days() {
    let p = Project::new();
    // The plan resolves distilgpt2 on the Hub (a test Hub here, serving a tiny stand-in).
    let test_hub = hub::TestHub::start();
    test_hub.add(
        "distilbert/distilgpt2",
        hub::Repo::new(hub::tiny_gpt2(0, 128)),
    );
    let plan = |file: &Path| {
        p.cmd()
            .env("HF_ENDPOINT", &test_hub.url)
            .arg("plan")
            .arg(file)
            .output()
            .unwrap()
    };
    let file = p.write("exp/s.toml", &paper_scale("paper", 1));
    let out = plan(&file);
    let text = stdout_of(&out);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        text.contains("estimated time for unfinished trials"),
        "{text}"
    );
    assert!(text.contains("GFLOP/s on cpu"), "{text}");
    assert!(
        !text.contains("takes about"),
        "one epoch of 300 papers: {text}"
    );
    let file = p.write("exp/s.toml", &paper_scale("paper", 20_000));
    let out = plan(&file);
    let text = stdout_of(&out);
    assert!(text.contains("days on cpu"), "{text}");
    assert!(text.contains("--profile quick"), "{text}");
    // The GPU path it recommends is LibTorch's, the fastest this build can have.
    assert!(text.contains("--devices tch:cuda:0"), "{text}");
    assert!(
        cfg!(feature = "tch") || text.contains("--features tch"),
        "{text}"
    );
}
