//! Fixtures shared by the integration tests that train real (tiny) trials.
#![allow(dead_code)]

use assert_cmd::Command;
use std::path::{Path, PathBuf};

/// A project root in a temp dir: `data/x.tsv` (a small synthetic arXiv Archive TSV) and `exp/`.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::create_dir_all(dir.path().join("exp")).unwrap();
        std::fs::write(dir.path().join("data/x.tsv"), synthetic_tsv(300)).unwrap();
        Self { dir }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path().join(rel);
        std::fs::write(&p, text).unwrap();
        p
    }
    /// The binary, run in the project with none of the caller's ledger/cache/artifact settings.
    pub fn cmd(&self) -> Command {
        Command::from_std(self.std_cmd())
    }
    /// ... nor the caller's Hugging Face settings: an empty cache of the project's own
    /// (`hf-cache/`), no token, and a Hub endpoint where nothing listens, so that no test ever
    /// reaches the real Hub (tests that need one start `hub::TestHub` and set `HF_ENDPOINT`).
    pub fn std_cmd(&self) -> std::process::Command {
        sweep_cmd(self.path())
    }
    /// The project's Hugging Face cache (`HF_HUB_CACHE` of its commands).
    pub fn hf_cache(&self) -> PathBuf {
        self.path().join("hf-cache")
    }
}

/// [`Project::std_cmd`] for the project at `root`.
pub fn sweep_cmd(root: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("sweep"));
    c.current_dir(root)
        .env_remove("SWEEP_DB")
        .env_remove("SWEEP_CACHE")
        .env_remove("SWEEP_ARTIFACTS")
        .env("RAYON_NUM_THREADS", "1");
    for var in [
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_TOKEN_PATH",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HUGGINGFACE_HUB_CACHE",
        "XDG_CACHE_HOME",
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ] {
        c.env_remove(var);
    }
    c.env("HF_HOME", root.join("hf-home"))
        .env("HF_HUB_CACHE", root.join("hf-cache"))
        .env("HF_ENDPOINT", "http://127.0.0.1:9");
    c
}

/// The complete checkpoints (those with their manifest) of a trial directory: name and step,
/// oldest first.
pub fn complete_checkpoints(trial_dir: &Path) -> Vec<(String, u64)> {
    let Ok(entries) = std::fs::read_dir(trial_dir.join("checkpoints")) else {
        return Vec::new();
    };
    let mut out: Vec<(String, u64)> = entries
        .flatten()
        .filter_map(|e| {
            let m = std::fs::read(e.path().join("manifest.json")).ok()?;
            let m: serde_json::Value = serde_json::from_slice(&m).ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                m["step"].as_u64()?,
            ))
        })
        .collect();
    out.sort();
    out
}

/// The step of a trial directory's newest complete checkpoint, if it has one.
pub fn checkpoint_step(trial_dir: &Path) -> Option<u64> {
    complete_checkpoints(trial_dir).last().map(|c| c.1)
}

/// The PostgreSQL server of the ignored tests; running them without one is a failure, not a skip.
pub fn pg_url() -> String {
    std::env::var("SWEEP_TEST_PG_URL").expect(
        "SWEEP_TEST_PG_URL is not set: this test needs PostgreSQL (start it with \
         `. scripts/ci-cluster-services.sh`, as .ci/run does)",
    )
}

/// A finished command's status and output, for assertion messages.
pub fn out_text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub const HEADER: &str = "\tabstract\tacm_class\tarxiv_id\tauthor_text\tcategories\tcomments\tcreated\tdoi\tnum_authors\tnum_categories\tprimary_cat\ttitle\tupdated\tcategories_list\n";

/// A small synthetic arXiv Archive TSV: deterministic text, one cs.CL paper per row, dates spread
/// over 2018 so the date-ordered split has all three parts.
pub fn synthetic_tsv(papers: usize) -> String {
    let words = [
        "model",
        "neural",
        "network",
        "language",
        "translation",
        "attention",
        "transformer",
        "data",
        "training",
        "learning",
        "we",
        "propose",
        "method",
        "results",
        "show",
        "improve",
        "performance",
        "task",
        "corpus",
        "word",
        "embedding",
        "sentence",
        "parsing",
        "semantic",
        "speech",
        "text",
        "generation",
        "evaluation",
        "benchmark",
        "state",
        "art",
    ];
    let mut x: u64 = 12345;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as usize
    };
    let mut out = String::from(HEADER);
    for i in 0..papers {
        let title: Vec<&str> = (0..6).map(|_| words[next() % words.len()]).collect();
        let sentences: Vec<String> = (0..5)
            .map(|_| {
                (0..12)
                    .map(|_| words[next() % words.len()])
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        out.push_str(&format!(
            "{i}\t{}.\t\t18{:02}.{i:05}\tA. Author\tcs.CL\t\t2018-{:02}-{:02}\t\t1\t1\tcs.CL\t{}\t\t[]\n",
            sentences.join(". "),
            i % 12 + 1,
            i / 28 % 12 + 1,
            i % 28 + 1,
            title.join(" ")
        ));
    }
    out
}
