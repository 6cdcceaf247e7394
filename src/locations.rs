//! Where things are, resolved once for every command: the ledger URL, the artifacts root and the
//! cache root, each from its flag, else its environment variable, else the default.
//!
//! The flags (`--db`, `--artifacts`, `--cache`) are defined here once and flattened into every
//! subcommand that needs them; the core takes the resolved values, never the flags.

use clap::Args;
use std::path::{Path, PathBuf};

/// Default ledger (`--db`, env `SWEEP_DB`).
pub const DEFAULT_DB: &str = crate::store::DEFAULT_DB;
/// Default artifacts root (`--artifacts`, env `SWEEP_ARTIFACTS`), relative to the working directory.
pub const DEFAULT_ARTIFACTS: &str = "results";
/// Default cache root (`--cache`, env `SWEEP_CACHE`): prepared data, tokens, tokenizers,
/// pretrained starts.
pub const DEFAULT_CACHE: &str = "results/cache";

/// `--db URL`.
#[derive(Args, Debug, Clone, Default)]
pub struct LedgerArgs {
    /// Ledger database URL (`sqlite://PATH` or a path, or `postgres://...`; default
    /// results/sweep.db).
    #[arg(long, env = "SWEEP_DB")]
    pub db: Option<String>,
}

impl LedgerArgs {
    pub fn url(&self) -> String {
        ledger_url(self.db.as_deref())
    }
}

/// `--artifacts DIR`.
#[derive(Args, Debug, Clone, Default)]
pub struct ArtifactsArgs {
    /// Artifacts root: trial directories are DIR/trials/<hash> (default `results`); the ledger
    /// records them relative to it, so pass the root where the artifacts are now.
    #[arg(long, env = "SWEEP_ARTIFACTS", value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
}

impl ArtifactsArgs {
    pub fn root(&self) -> PathBuf {
        artifacts_root(self.artifacts.as_deref())
    }
}

/// `--cache DIR`.
#[derive(Args, Debug, Clone, Default)]
pub struct CacheArgs {
    /// Cache root for prepared data, tokens, tokenizers and local pretraining (default
    /// results/cache).
    #[arg(long, env = "SWEEP_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

impl CacheArgs {
    pub fn root(&self) -> PathBuf {
        cache_root(self.cache.as_deref())
    }
}

fn from_env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|s| !s.is_empty())
}

/// The ledger URL: the flag (clap fills `SWEEP_DB` into it), else `SWEEP_DB` (callers without
/// the flag), else [`DEFAULT_DB`].
pub fn ledger_url(flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .or_else(|| from_env("SWEEP_DB"))
        .unwrap_or_else(|| DEFAULT_DB.to_string())
}

/// The artifacts root, absolute, so that child processes in another working directory and
/// messages agree on it.
pub fn artifacts_root(flag: Option<&Path>) -> PathBuf {
    let dir = flag
        .map(Path::to_path_buf)
        .or_else(|| from_env("SWEEP_ARTIFACTS").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ARTIFACTS));
    std::path::absolute(&dir).unwrap_or(dir)
}

/// The cache root (relative stays relative: it is recorded nowhere).
pub fn cache_root(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| from_env("SWEEP_CACHE").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE))
}
