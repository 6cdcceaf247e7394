//! Pretrained weights from the Hugging Face Hub (issue 22), against a Hub of the tests' own
//! (`common/hub.rs`, on 127.0.0.1) serving a tiny random GPT-2 with GPT-2's vocabulary: first
//! use downloads and trains, a second run is offline, every failure is one exit-2 error before
//! anything is recorded, bad bytes never enter the cache, a cut download resumes, concurrent
//! trials download once, and a cache written by Python's `huggingface_hub` is reused.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
#[path = "common/hub.rs"]
mod hub;

use common::{out_text, Project};
use hub::{blobs, sha256_hex, tiny_gpt2, Faults, Repo, TestHub};

const REPO: &str = "sweep-test/tiny-gpt2";

/// A one-trial sweep fine-tuning `model` for two steps.
fn sweep_file(name: &str, model: &str, seed: u64) -> String {
    format!(
        r#"[sweep]
name = "{name}"
[base]
model = "{model}"
data = {{ sources = ["data/x.tsv"], categories = ["cs.CL"] }}
block_size = 16
batch_size = 2
grad_accum = 1
learning_rate = 1e-3
weight_decay = 0.0
epochs = 1
max_steps = 2
eval_tokens = 256
seed = {seed}
"#
    )
}

/// A project whose commands talk to `hub`.
fn project(hub: &TestHub) -> (Project, impl Fn() -> std::process::Command + '_) {
    let p = Project::new();
    let root = p.path().to_path_buf();
    let cmd = move || {
        let mut c = common::sweep_cmd(&root);
        c.env("HF_ENDPOINT", &hub.url);
        c
    };
    (p, cmd)
}

fn weights_sha(repo: &Repo) -> String {
    sha256_hex(repo.file("model.safetensors").unwrap())
}

fn snapshot(cache: &Path, repo: &str, commit: &str) -> PathBuf {
    cache
        .join(format!("models--{}", repo.replace('/', "--")))
        .join("snapshots")
        .join(commit)
}

fn query_json(cmd: &mut std::process::Command, sql: &str) -> serde_json::Value {
    let out = cmd
        .args(["query", sql, "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn assert_refused(out: &Output, wants: &[&str], p: &Project) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", out_text(out));
    for want in wants {
        assert!(err.contains(want), "missing {want:?} in: {err}");
    }
    assert!(err.contains("fix:"), "{err}");
    assert!(
        !p.path().join("results/sweep.db").exists(),
        "nothing may be recorded: {err}"
    );
}

#[test]
fn first_use_downloads_and_trains_then_a_second_run_is_offline() {
    let hub = TestHub::start();
    let repo = Repo::new(tiny_gpt2(1, 32));
    hub.add(REPO, repo.clone());
    let (p, cmd) = project(&hub);
    let file = p.write("exp/a.toml", &sweep_file("a", REPO, 1));

    // The plan resolves the commit and knows the weights are still to download.
    let out = cmd().arg("plan").arg(&file).output().unwrap();
    let plan = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", out_text(&out));
    assert!(
        plan.contains(&format!("commit {}", &repo.commit[..12])),
        "{plan}"
    );
    assert!(plan.contains("to download"), "{plan}");
    assert!(hub.weight_gets().is_empty(), "plan downloads no weights");

    let out = cmd().arg("run").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    assert_eq!(hub.weight_gets().len(), 1, "{:?}", hub.log());
    // The cache is huggingface_hub's: the blob named by its SHA-256, the snapshot's link, the ref.
    let sha = weights_sha(&repo);
    assert!(blobs(&p.hf_cache(), REPO).contains(&sha));
    let snap = snapshot(&p.hf_cache(), REPO, &repo.commit);
    assert_eq!(
        std::fs::read_link(snap.join("model.safetensors")).unwrap(),
        Path::new("../../blobs").join(&sha)
    );
    let refs = p.hf_cache().join("models--sweep-test--tiny-gpt2/refs/main");
    assert_eq!(std::fs::read_to_string(refs).unwrap(), repo.commit);
    // The trial trained from those weights and records the commit they came from.
    let rows = query_json(&mut cmd(), "SELECT state, hash, env_json FROM trials");
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["state"], "completed", "{row}");
    let env: serde_json::Value = serde_json::from_str(row["env_json"].as_str().unwrap()).unwrap();
    assert_eq!(env["hub"]["commit"], repo.commit.as_str(), "{env}");
    assert_eq!(env["hub"]["weights_sha256"], sha.as_str(), "{env}");
    assert_eq!(env["start"], "hub");
    assert!(
        plan.contains(&row["hash"].as_str().unwrap()[..12]),
        "plan and run agree"
    );

    // A second sweep with another seed: offline, not one request to the Hub.
    hub.clear_log();
    let file = p.write("exp/b.toml", &sweep_file("b", REPO, 2));
    let out = cmd()
        .env("HF_HUB_OFFLINE", "1")
        .arg("run")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    assert!(hub.log().is_empty(), "offline: {:?}", hub.log());
    let rows = query_json(
        &mut cmd(),
        "SELECT state FROM trials WHERE state = 'completed'",
    );
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
}

#[test]
fn offline_with_an_empty_cache_is_one_error_before_anything_is_recorded() {
    let hub = TestHub::start();
    hub.add(REPO, Repo::new(tiny_gpt2(1, 32)));
    let (p, cmd) = project(&hub);
    let file = p.write("exp/a.toml", &sweep_file("a", REPO, 1));
    for sub in ["plan", "run"] {
        let out = cmd()
            .env("HF_HUB_OFFLINE", "1")
            .arg(sub)
            .arg(&file)
            .output()
            .unwrap();
        assert_refused(
            &out,
            &[
                &format!("model `{REPO}`"),
                "HF_HUB_OFFLINE",
                "models--sweep-test--tiny-gpt2",
                &format!("sweep fetch {REPO}"),
                "nothing was recorded",
            ],
            &p,
        );
    }
    assert!(hub.log().is_empty(), "offline: {:?}", hub.log());
}

#[test]
fn unreachable_hub_missing_repository_and_revision_are_usage_errors() {
    let hub = TestHub::start();
    hub.add(REPO, Repo::new(tiny_gpt2(1, 32)));
    let (p, cmd) = project(&hub);
    // No network: the project's default endpoint has nothing listening.
    let file = p.write("exp/a.toml", &sweep_file("a", REPO, 1));
    let out = p.cmd().arg("run").arg(&file).output().unwrap();
    assert_refused(
        &out,
        &["cannot reach the Hugging Face Hub", "HF_HUB_CACHE"],
        &p,
    );
    // A typo in the repository's name.
    let file = p.write("exp/a.toml", &sweep_file("a", "sweep-test/tiny-gtp2", 1));
    let out = cmd().arg("run").arg(&file).output().unwrap();
    assert_refused(
        &out,
        &[
            "model `sweep-test/tiny-gtp2`",
            "no repository `sweep-test/tiny-gtp2`",
            "check the name",
        ],
        &p,
    );
    // A revision it does not have.
    let file = p.write("exp/a.toml", &sweep_file("a", &format!("{REPO}@v9"), 1));
    let out = cmd().arg("run").arg(&file).output().unwrap();
    assert_refused(&out, &["has no revision `v9`"], &p);
    assert!(hub.weight_gets().is_empty());
}

#[test]
fn gated_repository_needs_a_token_and_works_with_hf_token() {
    let hub = TestHub::start();
    let mut repo = Repo::new(tiny_gpt2(2, 32));
    repo.gated_token = Some("hf_test_secret".into());
    hub.add("sweep-test/gated", repo.clone());
    let (p, cmd) = project(&hub);
    let file = p.write("exp/a.toml", &sweep_file("a", "sweep-test/gated", 1));
    let out = cmd().arg("run").arg(&file).output().unwrap();
    assert_refused(
        &out,
        &[
            "model `sweep-test/gated`",
            "gated or private",
            "no token was sent",
            "HF_TOKEN",
        ],
        &p,
    );
    let out = cmd()
        .env("HF_TOKEN", "hf_wrong")
        .arg("run")
        .arg(&file)
        .output()
        .unwrap();
    assert_refused(&out, &["has no access"], &p);
    hub.clear_log();
    let out = cmd()
        .env("HF_TOKEN", "hf_test_secret")
        .args(["fetch", "sweep-test/gated"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&repo.commit[..12]), "{stdout}");
    assert!(snapshot(&p.hf_cache(), "sweep-test/gated", &repo.commit)
        .join("model.safetensors")
        .is_file());
    // The token went with the Hub's own requests.
    let resolves: Vec<_> = hub
        .log()
        .into_iter()
        .filter(|r| r.path.contains("/resolve/"))
        .collect();
    assert!(!resolves.is_empty());
    assert!(
        resolves
            .iter()
            .all(|r| r.token.as_deref() == Some("hf_test_secret")),
        "{resolves:?}"
    );
    // ... and never to the CDN (another host, signed URLs).
    let gets = hub.weight_gets();
    assert!(gets.len() == 1 && gets[0].token.is_none(), "{gets:?}");
}

#[test]
fn corrupted_weights_are_refused_and_kept_out_of_the_cache() {
    let hub = TestHub::start();
    let mut repo = Repo::new(tiny_gpt2(3, 32));
    repo.faults = Faults {
        corrupt: true,
        ..Faults::default()
    };
    hub.add(REPO, repo.clone());
    let (p, cmd) = project(&hub);
    let out = cmd().args(["fetch", REPO]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", out_text(&out));
    assert!(err.contains("SHA-256") && err.contains("refused"), "{err}");
    // Downloaded twice (the second from scratch), then refused: nothing of it stays.
    assert_eq!(hub.weight_gets().len(), 2, "{:?}", hub.log());
    let sha = weights_sha(&repo);
    let left: Vec<String> = blobs(&p.hf_cache(), REPO)
        .into_iter()
        .filter(|b| b.starts_with(&sha))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let snap = snapshot(&p.hf_cache(), REPO, &repo.commit);
    assert!(!snap.join("model.safetensors").exists());
    assert!(
        snap.join("config.json").is_file(),
        "the good small file stays"
    );
}

#[test]
fn a_cut_download_resumes_where_it_stopped() {
    let hub = TestHub::start();
    let mut repo = Repo::new(tiny_gpt2(4, 32));
    let size = repo.file("model.safetensors").unwrap().len();
    let cut = size / 2;
    repo.faults = Faults {
        cut_first_at: Some(cut),
        ..Faults::default()
    };
    hub.add(REPO, repo.clone());
    let (p, cmd) = project(&hub);
    let out = cmd().args(["fetch", REPO]).output().unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    let gets = hub.weight_gets();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    // The retry asks for the rest only (chunks of 64 KiB reached the file before the cut).
    let resumed_at: usize = gets[1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{:?}", gets[1]));
    assert!(
        resumed_at > 0 && resumed_at <= cut,
        "{resumed_at} of {size}"
    );
    let sha = weights_sha(&repo);
    let blob = p
        .hf_cache()
        .join("models--sweep-test--tiny-gpt2/blobs")
        .join(&sha);
    assert_eq!(sha256_hex(&std::fs::read(blob).unwrap()), sha);

    // Across processes: a part left by a killed download is continued, not restarted.
    let other = Repo::new(tiny_gpt2(5, 32));
    hub.add("sweep-test/other", other.clone());
    let sha = weights_sha(&other);
    let blobs_dir = p.hf_cache().join("models--sweep-test--other/blobs");
    std::fs::create_dir_all(&blobs_dir).unwrap();
    let bytes = other.file("model.safetensors").unwrap();
    std::fs::write(blobs_dir.join(format!("{sha}.incomplete")), &bytes[..1000]).unwrap();
    hub.clear_log();
    let out = cmd().args(["fetch", "sweep-test/other"]).output().unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    let gets = hub.weight_gets();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].range.as_deref(), Some("bytes=1000-"));
    assert_eq!(
        sha256_hex(&std::fs::read(blobs_dir.join(&sha)).unwrap()),
        sha
    );
}

#[test]
fn two_concurrent_trials_download_the_weights_once() {
    let hub = TestHub::start();
    let mut repo = Repo::new(tiny_gpt2(6, 32));
    // Long enough (~1.6 MB in 64 KiB chunks, 250 ms apart: ~6 s) that both want it at once.
    repo.faults = Faults {
        chunk_delay: Some(std::time::Duration::from_millis(250)),
        ..Faults::default()
    };
    hub.add(REPO, repo.clone());
    let (p, cmd) = project(&hub);
    let cfg = sweep_file("x", REPO, 1);
    // The [base] keys alone: a `sweep train` config.
    let trial: String = cfg.lines().skip(3).collect::<Vec<_>>().join("\n");
    let file = p.write("exp/trial.toml", &trial);
    // Prepare and tokenize the data first (a plan of the same data and tokenizer on a local
    // preset), so that both trials reach the download at about the same time.
    let local = p.write("exp/local.toml", &sweep_file("local", "gpt2-tiny", 1));
    let out = cmd().arg("plan").arg(&local).output().unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    let children: Vec<_> = ["t1", "t2"]
        .iter()
        .map(|out_dir| {
            cmd()
                .args(["train", "--no-progress", "--config"])
                .arg(&file)
                .args(["--out", out_dir])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for out in &outs {
        assert!(out.status.success(), "{}", out_text(out));
    }
    assert_eq!(hub.weight_gets().len(), 1, "{:?}", hub.log());
    let waiting = format!("{REPO}/model.safetensors: another process is downloading it");
    let waited = outs
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stderr).contains(&waiting))
        .count();
    assert_eq!(waited, 1, "one trial waited for the other's download");
    for d in ["t1", "t2"] {
        assert!(p.path().join(d).join("model/model.safetensors").is_file());
    }
}

/// `from_pretrained("distilgpt2")` caches under the preset's old name (`models--distilgpt2`);
/// sweep asks the Hub under its current one (`distilbert/distilgpt2`) and takes the blob it
/// already has instead of downloading it again.
#[test]
fn weights_cached_under_a_presets_legacy_name_are_not_downloaded_again() {
    let hub = TestHub::start();
    let repo = Repo::new(tiny_gpt2(9, 1024));
    hub.add("distilbert/distilgpt2", repo.clone());
    let (p, cmd) = project(&hub);
    let sha = weights_sha(&repo);
    let legacy = p.hf_cache().join("models--distilgpt2/blobs");
    std::fs::create_dir_all(&legacy).unwrap();
    std::fs::write(legacy.join(&sha), repo.file("model.safetensors").unwrap()).unwrap();
    let out = cmd().args(["fetch", "distilgpt2"]).output().unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    assert!(hub.weight_gets().is_empty(), "{:?}", hub.log());
    let snap = snapshot(&p.hf_cache(), "distilbert/distilgpt2", &repo.commit);
    let weights = std::fs::read(snap.join("model.safetensors")).unwrap();
    assert_eq!(sha256_hex(&weights), sha);
}

/// `huggingface_hub` (pinned in scripts/ci-hf-hub.sh) downloads the model from the test Hub
/// into a cache; sweep trains from that cache without one request for the weights, and Python
/// finds offline what sweep fetched.
#[test]
#[ignore = "needs Python's huggingface_hub: SWEEP_TEST_HF_PYTHON (scripts/ci-hf-hub.sh, which .ci/run sources)"]
fn a_cache_written_by_python_huggingface_hub_is_reused() {
    let python = std::env::var("SWEEP_TEST_HF_PYTHON").expect(
        "SWEEP_TEST_HF_PYTHON is not set: this test needs a Python with huggingface_hub \
         (`. scripts/ci-hf-hub.sh` installs the pinned version, as .ci/run does)",
    );
    let hub = TestHub::start();
    let repo = Repo::new(tiny_gpt2(7, 32));
    hub.add(REPO, repo.clone());
    let (p, cmd) = project(&hub);
    let py = |code: &str, offline: bool| {
        let mut c = std::process::Command::new(&python);
        c.args(["-c", code])
            .env("HF_ENDPOINT", &hub.url)
            .env("HF_HUB_CACHE", p.hf_cache())
            .env("HF_HOME", p.path().join("hf-home"))
            .env("HF_HUB_DISABLE_TELEMETRY", "1")
            .env_remove("HF_TOKEN");
        if offline {
            c.env("HF_HUB_OFFLINE", "1");
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", out_text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let version = py("import huggingface_hub as h; print(h.__version__)", false);
    py(
        &format!(
            "from huggingface_hub import hf_hub_download as d\n\
             for f in ['config.json', 'model.safetensors']: print(d('{REPO}', f))"
        ),
        false,
    );
    assert_eq!(hub.weight_gets().len(), 1, "python downloaded the weights");
    hub.clear_log();
    let file = p.write("exp/a.toml", &sweep_file("a", REPO, 1));
    let out = cmd().arg("run").arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "huggingface_hub {version}: {}",
        out_text(&out)
    );
    assert!(
        hub.weight_gets().is_empty(),
        "sweep downloaded what Python had: {:?}",
        hub.log()
    );
    // And the other way round: Python, offline, finds what sweep fetched.
    let other = Repo::new(tiny_gpt2(8, 32));
    hub.add("sweep-test/other", other.clone());
    let out = cmd().args(["fetch", "sweep-test/other"]).output().unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    let path = py(
        "from huggingface_hub import hf_hub_download as d\n\
         print(d('sweep-test/other', 'model.safetensors'))",
        true,
    );
    assert_eq!(
        sha256_hex(&std::fs::read(&path).unwrap()),
        weights_sha(&other),
        "{path}"
    );
}
