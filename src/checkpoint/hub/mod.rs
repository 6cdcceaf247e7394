//! Pretrained weights from the Hugging Face Hub: a model name (`distilgpt2`, `org/name@rev`)
//! resolved to a snapshot directory of the local HF cache and downloaded on first use, in the
//! cache layout and with the environment of Python's `huggingface_hub`, so that either fills the
//! cache for the other. Also the local side of `--model`: checkpoint directories, and the
//! tokenizer that belongs to one.
//!
//! The environment, read as `huggingface_hub` reads it ([`Env::from_env`]): `HF_HUB_CACHE`
//! (else `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`; `HF_HOME` defaults to
//! `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`), `HF_ENDPOINT` (a mirror; default
//! `https://huggingface.co`), `HF_TOKEN` (else `HUGGING_FACE_HUB_TOKEN`, else the token file of
//! `huggingface-cli login`, `$HF_TOKEN_PATH` or `$HF_HOME/token`) for gated and private
//! repositories, and `HF_HUB_OFFLINE=1` (or `TRANSFORMERS_OFFLINE`; 1/ON/YES/TRUE): never touch
//! the network, use the cache only.
//!
//! Resolving ([`resolve`]) pins a revision to a commit (`/api/models`), asks for each file's ETag
//! and size at that commit (so the files of one snapshot always belong together, even while a
//! branch moves) and downloads the small `config.json`, so that `sweep plan` knows the shape and
//! the trial identity (the weights' SHA-256, [`Resolved::content_id`]) without downloading the
//! weights. Fetching ([`fetch`]) downloads the weights too. Without an answer from the Hub
//! (no network, a 5xx, a 401) the cached commit of the revision is used with a warning, as
//! `huggingface_hub` does; with neither, the error names the repository, what was tried and the
//! fix. Both are remembered per process, so that a sweep's plan, preflight and trials use one
//! commit.
//!
//! Why not the `hf-hub` crate: its blocking (ureq) API in 0.5 never checks a download's SHA-256,
//! ignores `HF_HUB_OFFLINE`, `HF_TOKEN` and `HF_HUB_CACHE`, gives up on a blob's lock after 5 s
//! (and then downloads again what the other process just finished), appends a full 200 answer
//! to a partial file, and misses the cache for a commit revision; 1.x brings reqwest 0.13 and
//! the Xet client (~400 crates in its lock file), still without `HF_HUB_OFFLINE`, checksums or a
//! lock that waits. The protocol is small, so it is written here over `ureq` (rustls):
//! `client.rs` (requests, retries, errors), `download.rs` (one blob: lock, resume, SHA-256,
//! progress), `cache.rs` (the layout).

mod cache;
pub mod cli;
mod client;
mod download;

use crate::error::UsageError;
use crate::trial::{HubModel, ModelSpec, Preset};
use anyhow::{Context, Result};
use cache::{file_etag, is_commit, is_sha256, RepoCache, CONFIG, FILES, WEIGHTS};
use client::{Client, FileMeta, HubError};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Where the Hub and its cache are, as the `HF_*` environment says.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Env {
    pub cache: PathBuf,
    pub endpoint: String,
    pub token: Option<String>,
    pub offline: bool,
}

impl Env {
    pub fn from_env() -> Self {
        let home = var_path("HF_HOME").unwrap_or_else(|| {
            var_path("XDG_CACHE_HOME")
                .unwrap_or_else(|| home_dir().join(".cache"))
                .join("huggingface")
        });
        let cache = var_path("HF_HUB_CACHE")
            .or_else(|| var_path("HUGGINGFACE_HUB_CACHE"))
            .unwrap_or_else(|| home.join("hub"));
        let token = var("HF_TOKEN")
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| {
                let file = var_path("HF_TOKEN_PATH").unwrap_or_else(|| home.join("token"));
                fs::read_to_string(file).ok()
            })
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let truthy = |v: Option<String>| {
            v.is_some_and(|v| matches!(v.to_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE"))
        };
        Self {
            cache,
            endpoint: var("HF_ENDPOINT")
                .map(|e| e.trim_end_matches('/').to_string())
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()),
            token,
            offline: truthy(var("HF_HUB_OFFLINE")) || truthy(var("TRANSFORMERS_OFFLINE")),
        }
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A path from the environment, `~` expanded.
fn var_path(name: &str) -> Option<PathBuf> {
    let v = var(name)?;
    Some(match v.strip_prefix("~/") {
        Some(rest) => home_dir().join(rest),
        None => PathBuf::from(v),
    })
}

fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The Hugging Face cache directory of this environment.
pub fn hf_cache_dir() -> PathBuf {
    Env::from_env().cache
}

/// A Hub model pinned to a commit, with what identifies its weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub model: HubModel,
    /// The repository it was found under (a preset's current name on the Hub; in a cache,
    /// possibly its legacy one).
    pub repo: String,
    pub commit: String,
    /// The snapshot: `config.json` is there once resolved, `model.safetensors` once fetched.
    pub dir: PathBuf,
    pub weights_sha256: String,
    pub config_sha256: String,
    /// The weights' size as the Hub says (`None` when resolved from the cache).
    pub weights_size: Option<u64>,
    /// Set when the network was allowed but the cache answered, and why.
    pub cache_because: Option<String>,
    /// Where the weights come from when they are not in the cache yet.
    weights_meta: Option<FileMeta>,
}

impl Resolved {
    /// What a trial's identity covers: the SHA-256 of the weights and of `config.json`, the
    /// bytes the trial starts from (whichever commit, mirror or cache they came through).
    pub fn content_id(&self) -> String {
        format!(
            "sha256:{} config-sha256:{}",
            self.weights_sha256, self.config_sha256
        )
    }

    /// Whether the weights are in the cache.
    pub fn is_local(&self) -> bool {
        self.dir.join(WEIGHTS).is_file()
    }

    /// `distilbert/distilgpt2@main = 2290a62682d0`
    pub fn describe(&self) -> String {
        format!(
            "{}@{} = commit {}",
            self.repo,
            self.model.revision(),
            &self.commit[..12.min(self.commit.len())]
        )
    }

    /// What the trial's environment records.
    pub fn env_json(&self) -> serde_json::Value {
        serde_json::json!({
            "repo": self.repo,
            "revision": self.model.revision(),
            "commit": self.commit,
            "weights_sha256": self.weights_sha256,
            "config_sha256": self.config_sha256,
        })
    }
}

type Memo = HashMap<(Env, HubModel), Resolved>;

/// Resolutions of this process: one commit per model for the plan, preflight and trials.
fn memo() -> &'static Mutex<Memo> {
    static MEMO: OnceLock<Mutex<Memo>> = OnceLock::new();
    MEMO.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Pins `model` to a commit and downloads its `config.json` (not its weights), or finds it in
/// the cache (offline, or when the Hub cannot be asked).
pub fn resolve(model: &HubModel) -> Result<Resolved> {
    resolve_in(&Env::from_env(), model)
}

/// [`resolve`], and the weights downloaded (or found) in the cache.
pub fn fetch(model: &HubModel) -> Result<Resolved> {
    fetch_in(&Env::from_env(), model)
}

fn resolve_in(env: &Env, model: &HubModel) -> Result<Resolved> {
    let key = (env.clone(), model.clone());
    if let Some(r) = memo().lock().expect("memo").get(&key) {
        return Ok(r.clone());
    }
    let r = resolve_uncached(env, model)?;
    if let Some(why) = &r.cache_because {
        eprintln!(
            "hub: warning: model `{model}`: {why}; using the cached {}",
            r.describe()
        );
    }
    memo().lock().expect("memo").insert(key, r.clone());
    Ok(r)
}

fn fetch_in(env: &Env, model: &HubModel) -> Result<Resolved> {
    let r = resolve_in(env, model)?;
    if r.is_local() {
        return Ok(r);
    }
    let meta = r
        .weights_meta
        .as_ref()
        .expect("a resolution without local weights comes from the Hub");
    let client = Client::new(&env.endpoint, env.token.clone());
    let rc = RepoCache::new(&env.cache, &r.repo);
    download::blob(&client, &rc, &r.repo, WEIGHTS, meta)
        .with_context(|| format!("model `{model}`: downloading {}", r.describe()))?;
    rc.link(&r.commit, WEIGHTS, &meta.etag)?;
    Ok(r)
}

fn resolve_uncached(env: &Env, model: &HubModel) -> Result<Resolved> {
    // A commit that is in the cache needs no question (`huggingface_hub` shortcuts it too).
    if is_commit(model.revision()) || env.offline {
        if let Some(r) = from_cache(env, model)? {
            return Ok(r);
        }
        if env.offline {
            return Err(offline_error(env, model));
        }
    }
    let repo = &model.repos()[0];
    match from_hub(env, model, repo) {
        Ok(r) => Ok(r),
        Err(Failure::Hub(e)) if falls_back(&e) => match from_cache(env, model)? {
            Some(r) => Ok(Resolved {
                cache_because: Some(format!("the Hub did not answer ({e})")),
                ..r
            }),
            None => Err(hub_error(env, model, repo, &e)),
        },
        Err(Failure::Hub(e)) => Err(hub_error(env, model, repo, &e)),
        Err(Failure::Other(e)) => Err(e),
    }
}

/// Errors after which the cache may still answer (`huggingface_hub` falls back on all but a
/// missing revision or file).
fn falls_back(e: &HubError) -> bool {
    !matches!(e.code(), Some("RevisionNotFound" | "EntryNotFound"))
}

enum Failure {
    Hub(HubError),
    Other(anyhow::Error),
}

impl From<HubError> for Failure {
    fn from(e: HubError) -> Self {
        Failure::Hub(e)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

/// Asks the Hub: the revision's commit, the files' metadata at that commit, and `config.json`
/// (plus any file that is not in LFS: small by definition) into the cache.
fn from_hub(env: &Env, model: &HubModel, repo: &str) -> Result<Resolved, Failure> {
    let client = Client::new(&env.endpoint, env.token.clone());
    let info = client.repo_info(repo, model.revision())?;
    if let Some(files) = &info.siblings {
        if let Some(missing) = FILES.iter().find(|f| !files.iter().any(|s| s == *f)) {
            return Err(Failure::Other(missing_file(model, repo, missing, files)));
        }
    }
    let commit = info.sha;
    let rc = RepoCache::new(&env.cache, repo);
    let mut metas = Vec::new();
    for file in FILES {
        let meta = client.file_meta(repo, &commit, file)?;
        adopt_alias_blob(env, model, &rc, &meta.etag);
        let small = file == CONFIG || !is_sha256(&meta.etag);
        if small || rc.blob(&meta.etag).is_file() {
            download::blob(&client, &rc, repo, file, &meta)?;
            rc.link(&commit, file, &meta.etag)?;
        }
        metas.push(meta);
    }
    rc.write_ref(model.revision(), &commit)?;
    let dir = rc.snapshot(&commit);
    let weights = metas.pop().expect("the weights' metadata");
    let weights_sha256 = match is_sha256(&weights.etag) {
        true => weights.etag.clone(),
        false => sha256_file(&dir.join(WEIGHTS))?,
    };
    Ok(Resolved {
        model: model.clone(),
        repo: repo.to_string(),
        commit,
        config_sha256: sha256_file(&dir.join(CONFIG))?,
        dir,
        weights_sha256,
        weights_size: Some(weights.size),
        cache_because: None,
        weights_meta: Some(weights),
    })
}

/// A blob the cache has under another name of the model (a preset's legacy folder, which
/// `from_pretrained("distilgpt2")` fills) is hard-linked (else copied) into `rc`'s blobs rather
/// than downloaded again: blobs are named by content, so it is the same file.
fn adopt_alias_blob(env: &Env, model: &HubModel, rc: &RepoCache, etag: &str) {
    let blob = rc.blob(etag);
    if blob.is_file() {
        return;
    }
    let found = model
        .repos()
        .into_iter()
        .map(|r| RepoCache::new(&env.cache, &r).blob(etag))
        .find(|b| b.is_file());
    let (Some(other), Some(dir)) = (found, blob.parent()) else {
        return;
    };
    let copied = fs::create_dir_all(dir)
        .and_then(|_| fs::hard_link(&other, &blob).or_else(|_| fs::copy(&other, &blob).map(drop)));
    if copied.is_ok() {
        eprintln!(
            "hub: {} is in the cache already ({}); not downloading it again",
            etag,
            other.display()
        );
    }
}

/// The revision's complete snapshot in the cache, under any of the model's repository names.
/// A model without a revision also takes a complete snapshot under any name when no ref exists
/// (caches filled by hand).
fn from_cache(env: &Env, model: &HubModel) -> Result<Option<Resolved>> {
    for repo in model.repos() {
        let rc = RepoCache::new(&env.cache, &repo);
        let commit = match rc.commit_of(model.revision()) {
            Some(c) => Some(c),
            None if model.revision.is_none() => rc.any_complete(),
            None => None,
        };
        let Some(commit) = commit.filter(|c| rc.complete(c)) else {
            continue;
        };
        let dir = rc.snapshot(&commit);
        let weights = dir.join(WEIGHTS);
        let weights_sha256 = match file_etag(&weights).filter(|e| is_sha256(e)) {
            Some(sha) => sha,
            None => sha256_file(&weights)?,
        };
        return Ok(Some(Resolved {
            model: model.clone(),
            repo,
            commit,
            config_sha256: sha256_file(&dir.join(CONFIG))?,
            dir,
            weights_sha256,
            weights_size: None,
            cache_because: None,
            weights_meta: None,
        }));
    }
    Ok(None)
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut f, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Where the cache was looked in, for messages.
fn looked_in(env: &Env, model: &HubModel) -> String {
    let places: Vec<String> = model
        .repos()
        .iter()
        .map(|r| cache::folder_name(r))
        .collect();
    format!(
        "{} in the Hugging Face cache {} (HF_HUB_CACHE)",
        places.join(" or "),
        env.cache.display()
    )
}

fn offline_error(env: &Env, model: &HubModel) -> anyhow::Error {
    UsageError(format!(
        "model `{model}`: HF_HUB_OFFLINE is set and revision `{}` with config.json and \
         model.safetensors is not in {}; fix: run `sweep fetch {model}` where the Hub is \
         reachable (for a cluster: on the submitting machine, with HF_HUB_CACHE on a file \
         system the nodes share), or unset HF_HUB_OFFLINE",
        model.revision(),
        looked_in(env, model)
    ))
    .into()
}

fn missing_file(model: &HubModel, repo: &str, file: &str, files: &[String]) -> anyhow::Error {
    let mut listed: Vec<&str> = files.iter().map(String::as_str).take(12).collect();
    if files.len() > listed.len() {
        listed.push("...");
    }
    UsageError(format!(
        "model `{model}`: the repository `{repo}` at revision `{}` has no `{file}` (it has {}); \
         sweep reads GPT-2 checkpoints as config.json + model.safetensors; fix: use a \
         revision or repository that has both",
        model.revision(),
        listed.join(", ")
    ))
    .into()
}

/// The Hub's refusal in words: which repository, what was tried, and the fix.
fn hub_error(env: &Env, model: &HubModel, repo: &str, e: &HubError) -> anyhow::Error {
    let rev = model.revision();
    let not_cached = format!("and it is not in {}", looked_in(env, model));
    let page = format!("{}/{repo}", env.endpoint);
    let token = match &env.token {
        Some(_) => "the token in HF_TOKEN (or the login token file) has no access to it",
        None => "no token was sent (HF_TOKEN is not set and there is no login token file)",
    };
    let msg = match (e, e.code()) {
        (HubError::Network { .. }, _) => format!(
            "cannot reach the Hugging Face Hub at {}: {e}, {not_cached}; fix: run where the \
             Hub is reachable (set HTTPS_PROXY if a proxy is needed, HF_ENDPOINT for a mirror), \
             or run `sweep fetch {model}` on a machine with network and point HF_HUB_CACHE at \
             that cache",
            env.endpoint
        ),
        (_, Some("RevisionNotFound")) => format!(
            "the repository `{repo}` has no revision `{rev}` ({e}); fix: use one of its \
             branches, tags or commit hashes ({page})"
        ),
        (_, Some("EntryNotFound")) => format!(
            "the repository `{repo}` at `{rev}` lacks a file sweep needs ({e}); fix: use a \
             repository with config.json and model.safetensors"
        ),
        (_, Some("GatedRepo"))
        | (
            HubError::Status {
                status: 401 | 403, ..
            },
            None,
        ) => format!(
            "the repository `{repo}` is gated or private and {token} ({e}), {not_cached}; fix: \
             accept its conditions at {page} and set HF_TOKEN to a read token of that account \
             (or log in with `huggingface-cli login`)"
        ),
        (
            HubError::Status {
                status: 401 | 403 | 404,
                ..
            },
            _,
        ) => format!(
            "the Hugging Face Hub has no repository `{repo}` ({e}), {not_cached}; fix: check the \
             name (`org/name`, e.g. `openai-community/gpt2`){}",
            if env.token.is_none() {
                ", or set HF_TOKEN if it is private"
            } else {
                ""
            }
        ),
        (HubError::Status { .. }, _) => format!(
            "the Hugging Face Hub failed ({e}, after {} retries), {not_cached}; fix: try again \
             later",
            client::RETRIES
        ),
        (HubError::Protocol { .. }, _) => format!(
            "{} does not answer like the Hugging Face Hub: {e}; fix: check HF_ENDPOINT, or the \
             proxy or firewall in between",
            env.endpoint
        ),
    };
    UsageError(format!("model `{model}`: {msg}")).into()
}

/// The checkpoint directory a model starts from: a Hub model's snapshot (fetched when
/// missing), or a checkpoint directory that exists.
pub fn model_dir(model: &ModelSpec) -> Result<PathBuf> {
    match model {
        ModelSpec::Dir(d) if d.is_dir() => Ok(d.clone()),
        ModelSpec::Dir(d) => Err(UsageError(format!(
            "model `{}`: no such checkpoint directory; fix: pass an HF checkpoint directory, a \
             Hub repository (`org/name[@revision]`) or a preset ({})",
            d.display(),
            Preset::names(true)
        ))
        .into()),
        ModelSpec::Preset(p) if !p.on_hub() => Err(UsageError(format!(
            "`{}` is a from-scratch preset without weights; pass a trained model directory",
            p.name()
        ))
        .into()),
        m => Ok(fetch(&m.hub().expect("a Hub model"))?.dir),
    }
}

/// The weights of a `--model` (eval, generate): an existing directory first (as
/// `from_pretrained` reads one), else a Hub model, fetched when missing.
pub fn weights_dir(name: &str) -> Result<PathBuf> {
    if Path::new(name).is_dir() {
        return Ok(PathBuf::from(name));
    }
    model_dir(&name.parse::<ModelSpec>()?)
}

/// The tokenizer that belongs to a checkpoint directory: its own files, else GPT-2's for a Hub
/// model (`name`), whose snapshots sweep fetches without tokenizer files.
pub fn dir_tokenizer(dir: &Path, name: Option<&str>) -> Result<crate::tokenizer::Tokenizer> {
    use crate::tokenizer::Tokenizer;
    if dir.join("tokenizer.json").is_file() || dir.join("vocab.json").is_file() {
        return Tokenizer::from_dir(dir);
    }
    let hub = name
        .filter(|n| !Path::new(n).is_dir())
        .and_then(|n| n.parse::<ModelSpec>().ok())
        .and_then(|m| m.hub());
    if hub.is_some() {
        return Tokenizer::gpt2();
    }
    Err(UsageError(format!(
        "{} has no tokenizer files (tokenizer.json or vocab.json + merges.txt)",
        dir.display()
    ))
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(cache: &Path) -> Env {
        Env {
            cache: cache.to_path_buf(),
            // Nothing listens on the discard port: any request would fail.
            endpoint: "http://127.0.0.1:9".into(),
            token: None,
            offline: true,
        }
    }

    fn hub(name: &str) -> HubModel {
        match name.parse::<ModelSpec>().unwrap() {
            m @ ModelSpec::Preset(_) => m.hub().unwrap(),
            ModelSpec::Hub(h) => h,
            ModelSpec::Dir(d) => panic!("{} is not a Hub model", d.display()),
        }
    }

    #[test]
    fn offline_without_the_model_says_where_it_looked_and_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let err = resolve_in(&env(tmp.path()), &hub("distilgpt2")).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some());
        let err = err.to_string();
        for want in [
            "model `distilgpt2`",
            "HF_HUB_OFFLINE",
            "models--distilbert--distilgpt2 or models--distilgpt2",
            "sweep fetch distilgpt2",
        ] {
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn cache_filled_by_hand_or_by_a_ref_resolves_offline() {
        let tmp = tempfile::tempdir().unwrap();
        // Files copied into snapshots/<any-name>/ (the layout older versions asked for).
        let snap = tmp.path().join("models--distilgpt2/snapshots/manual");
        fs::create_dir_all(&snap).unwrap();
        fs::write(snap.join(CONFIG), "{}").unwrap();
        fs::write(snap.join(WEIGHTS), "w").unwrap();
        let r = resolve_in(&env(tmp.path()), &hub("distilgpt2")).unwrap();
        assert_eq!(r.dir, snap);
        assert_eq!(r.weights_sha256, hex::encode(Sha256::digest(b"w")));
        assert!(r.is_local());
        // A named revision needs its ref.
        assert!(resolve_in(&env(tmp.path()), &hub("distilgpt2@v1")).is_err());
        // A ref to a complete snapshot of blobs: the LFS ETag is the weights' hash.
        let rc = RepoCache::new(tmp.path(), "org/tiny");
        let commit = "c".repeat(40);
        let sha = "d".repeat(64);
        fs::create_dir_all(rc.blob("x").parent().unwrap()).unwrap();
        fs::write(rc.blob(&sha), "weights").unwrap();
        fs::write(rc.blob("cfgid"), "{}").unwrap();
        rc.link(&commit, WEIGHTS, &sha).unwrap();
        rc.link(&commit, CONFIG, "cfgid").unwrap();
        rc.write_ref("v1", &commit).unwrap();
        let r = resolve_in(&env(tmp.path()), &hub("org/tiny@v1")).unwrap();
        assert_eq!(
            (r.commit.as_str(), r.repo.as_str()),
            (commit.as_str(), "org/tiny")
        );
        assert_eq!(r.weights_sha256, sha);
        assert_eq!(
            r.content_id(),
            format!(
                "sha256:{sha} config-sha256:{}",
                hex::encode(Sha256::digest(b"{}"))
            )
        );
        // The commit itself resolves without a ref; `main` does not exist.
        assert!(resolve_in(&env(tmp.path()), &hub(&format!("org/tiny@{commit}"))).is_ok());
        assert!(resolve_in(&env(tmp.path()), &hub("org/tiny@main")).is_err());
    }

    #[test]
    fn local_presets_and_missing_directories_are_usage_errors() {
        for name in ["gpt2-tiny", "no-such-model-xyz", "./no/such/dir"] {
            let err = weights_dir(name).unwrap_err();
            assert!(err.downcast_ref::<UsageError>().is_some(), "{name}: {err}");
        }
    }
}
