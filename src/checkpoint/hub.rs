//! Where pretrained weights are on this machine: an HF checkpoint directory, or a hub preset in the
//! local HF cache (never downloaded); the tokenizer that belongs to a checkpoint directory.

use crate::error::UsageError;
use crate::trial::Preset;
use anyhow::Result;
use std::fs;
use std::path::{Path, PathBuf};

/// HF hub repositories under which a preset may sit in the local cache (old and new names).
fn hub_repos(name: &str) -> Vec<String> {
    let mut repos = vec![name.to_string()];
    match name {
        "distilgpt2" => repos.push("distilbert/distilgpt2".into()),
        "gpt2" | "gpt2-medium" | "gpt2-large" | "gpt2-xl" => {
            repos.push(format!("openai-community/{name}"))
        }
        _ => {}
    }
    repos
}

/// The HF hub cache directory: `$HF_HUB_CACHE`, `$HF_HOME/hub`, or `~/.cache/huggingface/hub`.
pub fn hf_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return PathBuf::from(p).join("hub");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/huggingface/hub")
}

/// A checkpoint directory for `name`: an existing path, or a pretrained preset found in the
/// local HF cache. This crate never downloads; the error says which files to put where.
pub fn resolve_model_dir(name: &str) -> Result<PathBuf> {
    let path = Path::new(name);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let cache = hf_cache_dir();
    let repos = hub_repos(name);
    for repo in &repos {
        let snaps = cache
            .join(format!("models--{}", repo.replace('/', "--")))
            .join("snapshots");
        let Ok(entries) = fs::read_dir(&snaps) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        dirs.sort();
        if let Some(d) = dirs
            .into_iter()
            .find(|d| d.join("config.json").is_file() && d.join("model.safetensors").is_file())
        {
            return Ok(d);
        }
    }
    if Preset::from_name(name).is_some_and(Preset::on_hub) {
        let example = cache.join(format!("models--{}", repos[0].replace('/', "--")));
        return Err(UsageError(format!(
            "pretrained weights for `{name}` are not available offline. Put `config.json` and \
             `model.safetensors` from the Hugging Face repository `{}` into \
             {}/snapshots/<any-name>/ (or pass a local checkpoint directory as the model), e.g. \
             on a machine with network: `huggingface-cli download {} config.json \
             model.safetensors` and copy {}",
            repos.last().expect("at least one repo"),
            example.display(),
            repos.last().expect("at least one repo"),
            example.display()
        ))
        .into());
    }
    Err(UsageError(format!(
        "model `{name}` is neither a directory nor a pretrained preset ({})",
        Preset::names(true)
    ))
    .into())
}

/// The weights of a `--model` (eval, generate): a trained checkpoint directory, or a hub preset
/// from the local HF cache. A small preset names a shape, not weights, and is refused.
pub fn weights_dir(name: &str) -> Result<PathBuf> {
    if Preset::from_name(name).is_some_and(|p| !p.on_hub()) && !Path::new(name).is_dir() {
        return Err(UsageError(format!(
            "`{name}` is a from-scratch preset without weights; pass a trained model directory"
        ))
        .into());
    }
    resolve_model_dir(name)
}

/// The tokenizer that belongs to a checkpoint directory: its own files, else GPT-2's for a hub
/// preset (`name`), whose HF snapshots carry no tokenizer of ours.
pub fn dir_tokenizer(dir: &Path, name: Option<&str>) -> Result<crate::tokenizer::Tokenizer> {
    use crate::tokenizer::Tokenizer;
    if dir.join("tokenizer.json").is_file() || dir.join("vocab.json").is_file() {
        return Tokenizer::from_dir(dir);
    }
    if name.and_then(Preset::from_name).is_some_and(Preset::on_hub) {
        return Tokenizer::gpt2();
    }
    Err(UsageError(format!(
        "{} has no tokenizer files (tokenizer.json or vocab.json + merges.txt)",
        dir.display()
    ))
    .into())
}
