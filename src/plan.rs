//! Turn a validated sweep into identified trials (content hashes) and show the plan; writes nothing.
//!
//! A trial's identity is `sha256(canonical JSON of {config, data_manifest, tokenizer,
//! model_weights})`, where
//! `config` is the resolved `TrialConfig` *without* `data.sources` (the data manifest hash already
//! covers the sources' content, so moving the data or the project does not change identities),
//! `data_manifest` is the prepared data's manifest hash, `tokenizer` the tokenizer's id and
//! `model_weights` the content of the starting weights: the sha256 of `model.safetensors` when
//! `model` is a checkpoint directory, the recipe of the local pretraining a
//! trial fine-tunes from (`train::pretrain::recipe_id`), and for a Hugging Face Hub model (a hub preset such as
//! `distilgpt2`, or `org/name[@revision]`) the SHA-256 of its `model.safetensors` and of its
//! `config.json` at the commit the revision resolves to ([`crate::checkpoint::hub`]). The name or
//! path then leaves the hash, like `data.sources`: `distilgpt2`, `distilbert/distilgpt2@main` and
//! `distilgpt2@<that commit>` are one trial. The content hash is kept rather than the commit
//! because it is the stronger identity: it names exactly the bytes a trial starts from, is
//! checked on download, and changes only when they change, while a commit (a SHA-1 of the whole
//! repository) pins the weights only through the LFS pointer it contains and moves with every
//! unrelated edit (a README, an ONNX export), which would retrain identical trials. The commit
//! is recorded in the trial's environment (`hub`). The small presets (`gpt2-tiny`, ...) have no
//! weights to hash (`model_weights` null), so their identities are as before Hub models existed.
//! Canonical JSON sorts keys and drops nulls, so adding an optional field with a `None` default
//! to `TrialConfig` keeps existing identities.

use crate::config::{ResolvedTrial, Sweep};
use crate::trial::{ModelSpec, TokenizerSpec, TrialConfig};
use crate::util::canonical_json;
use anyhow::Result;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// What a trial's identity was computed from.
#[derive(Debug, Clone)]
pub struct Identity {
    pub hash: String,
    pub data_hash: String,
    pub tokenizer_id: String,
    /// Set when the data could not be prepared: the trial is still planned (and will fail on its
    /// own when it runs) so that one bad source does not stop a sweep.
    pub data_error: Option<String>,
}

/// One trial of the plan.
#[derive(Debug, Clone)]
pub struct PlannedTrial {
    pub resolved: ResolvedTrial,
    pub identity: Identity,
}

impl PlannedTrial {
    pub fn short_hash(&self) -> &str {
        &self.identity.hash[..12]
    }
    pub fn config(&self) -> &TrialConfig {
        &self.resolved.config
    }
}

/// Computes identities, preparing each distinct data spec and tokenizer once.
pub struct Identifier<'a> {
    cache_root: &'a Path,
    data: HashMap<String, Result<String, String>>,
    tokenizers: HashMap<(String, TokenizerSpec), Result<String, String>>,
    weights: HashMap<ModelSpec, Option<String>>,
}

/// What identifies a trial's starting weights (see the module doc).
fn weights_id(model: &ModelSpec) -> Result<Option<String>> {
    if let Some(hub) = model.hub() {
        return Ok(Some(crate::checkpoint::hub::resolve(&hub)?.content_id()));
    }
    Ok(match model {
        ModelSpec::Dir(dir) => weights_hash(dir),
        _ => None,
    })
}

/// sha256 of a checkpoint directory's `model.safetensors`; `None` when `model` is not a directory
/// or the file cannot be read (the trial then fails on its own with the loader's error).
fn weights_hash(dir: &Path) -> Option<String> {
    if !dir.is_dir() {
        return None;
    }
    let mut file = std::fs::File::open(dir.join("model.safetensors")).ok()?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).ok()?;
    Some(hex::encode(hasher.finalize()))
}

impl<'a> Identifier<'a> {
    pub fn new(cache_root: &'a Path) -> Self {
        Self {
            cache_root,
            data: HashMap::new(),
            tokenizers: HashMap::new(),
            weights: HashMap::new(),
        }
    }

    /// The identity of `model`'s weights, resolved once per model (a Hub model: pinned to a
    /// commit, [`crate::checkpoint::hub::resolve`]).
    pub fn weights_of(&mut self, model: &ModelSpec) -> Result<Option<String>> {
        if let Some(w) = self.weights.get(model) {
            return Ok(w.clone());
        }
        let w = weights_id(model)?;
        self.weights.insert(model.clone(), w.clone());
        Ok(w)
    }

    pub fn identify(&mut self, cfg: &TrialConfig) -> Result<Identity> {
        let key = canonical_json(&serde_json::to_value(&cfg.data)?);
        let cache_root = self.cache_root;
        let data = self
            .data
            .entry(key)
            .or_insert_with(|| {
                crate::data::prepare_cached(&cfg.data, cache_root)
                    .map(|p| p.hash)
                    .map_err(|e| format!("{e:#}"))
            })
            .clone();
        let (data_hash, tokenizer_id, data_error) = match data {
            Ok(h) => {
                let tok = self
                    .tokenizers
                    .entry((h.clone(), cfg.tokenizer))
                    .or_insert_with(|| {
                        crate::data::prepare_cached(&cfg.data, cache_root)
                            .and_then(|p| p.tokenizer(cfg.tokenizer, cache_root))
                            .map(|t| t.id().to_string())
                            .map_err(|e| format!("{e:#}"))
                    })
                    .clone();
                match tok {
                    Ok(t) => (h, t, None),
                    Err(e) => (h, cfg.tokenizer.to_string(), Some(e)),
                }
            }
            Err(e) => {
                // Identify unpreparable data by the bytes of its sources (or their paths).
                let mut hasher = Sha256::new();
                for s in &cfg.data.sources {
                    match std::fs::read(s) {
                        Ok(bytes) => hasher.update(Sha256::digest(&bytes)),
                        Err(_) => hasher.update(s.as_bytes()),
                    }
                }
                (
                    format!("unprepared-{}", hex::encode(hasher.finalize())),
                    cfg.tokenizer.to_string(),
                    Some(e),
                )
            }
        };
        let weights = self.weights_of(&cfg.model)?;
        // A local pretraining's weights are named by its recipe (config, data, tokenizer, trainer
        // numerics): a trial must not keep its identity when the start it fine-tunes from changes.
        let weights = match crate::train::pretrain::recipe_id(cfg, &data_hash, &tokenizer_id) {
            Some(id) => Some(id?),
            None => weights,
        };
        Ok(Identity {
            hash: cfg.identity_hash(&data_hash, &tokenizer_id, weights.as_deref())?,
            data_hash,
            tokenizer_id,
            data_error,
        })
    }
}

/// Identify every trial of a sweep; trials with the same identity appear once (first wins).
/// Every Hub model the sweep may use (a search's choices too) is resolved first, so that a
/// missing network, repository or token is one usage error before any data is prepared.
pub fn identify(sweep: &Sweep, cache_root: &Path) -> Result<Vec<PlannedTrial>> {
    let mut ider = Identifier::new(cache_root);
    for model in sweep.models() {
        ider.weights_of(&model).map_err(|e| {
            crate::error::UsageError(format!(
                "{e:#}; nothing was recorded. Or run the CPU-scale version of the experiment \
                 (`--profile quick`), which trains small presets"
            ))
        })?;
    }
    let mut out: Vec<PlannedTrial> = Vec::new();
    for t in &sweep.trials {
        let identity = ider.identify(&t.config)?;
        if out.iter().any(|p| p.identity.hash == identity.hash) {
            continue;
        }
        out.push(PlannedTrial {
            resolved: t.clone(),
            identity,
        });
    }
    Ok(out)
}

/// A label as short text: `block_size=256 model=gpt2`.
pub fn label_text(label: &Json) -> String {
    match label.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                };
                format!("{k}={v}")
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => "(base)".to_string(),
    }
}

/// Seconds as `1h02m`, `3m05s` or `42s`.
pub fn human_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trial::DataSpec;

    fn cfg() -> TrialConfig {
        TrialConfig {
            model: ModelSpec::Preset(crate::trial::Preset::Gpt2Tiny),
            init: None,
            n_layer: None,
            n_embd: None,
            n_head: None,
            tokenizer: TokenizerSpec::Bpe(512),
            precision: None,
            data: DataSpec {
                sources: vec!["/a/x.tsv".into()],
                categories: vec!["cs.CL".into()],
                split: [9.0, 0.5, 0.5],
            },
            block_size: 64,
            batch_size: 4,
            grad_accum: 1,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            epochs: 1,
            warmup_steps: 0,
            seed: 42,
            dropout: 0.1,
            max_train_tokens: None,
            skip_train_tokens: None,
            max_steps: Some(5),
            eval_every: None,
            eval_tokens: None,
            eval_block_size: None,
        }
    }

    #[test]
    fn hash_ignores_source_paths_but_not_settings() {
        let a = cfg();
        let mut moved = cfg();
        moved.data.sources = vec!["/elsewhere/x.tsv".into()];
        let h = a.identity_hash("d1", "t1", None).unwrap();
        assert_eq!(h.len(), 64);
        assert_eq!(h, moved.identity_hash("d1", "t1", None).unwrap());
        assert_ne!(
            h,
            a.identity_hash("d2", "t1", None).unwrap(),
            "data content matters"
        );
        assert_ne!(
            h,
            a.identity_hash("d1", "t2", None).unwrap(),
            "tokenizer matters"
        );
        assert_ne!(
            h,
            a.identity_hash("d1", "t1", Some("abc")).unwrap(),
            "a checkpoint directory's weights matter"
        );
        let mut lr = cfg();
        lr.learning_rate = 2e-3;
        assert_ne!(h, lr.identity_hash("d1", "t1", None).unwrap());
        let mut cats = cfg();
        cats.data.categories = vec!["cs.AI".into()];
        assert_ne!(h, cats.identity_hash("d1", "t1", None).unwrap());
    }

    #[test]
    fn human_times() {
        assert_eq!(human_secs(42.4), "42s");
        assert_eq!(human_secs(185.0), "3m05s");
        assert_eq!(human_secs(3720.0), "1h02m");
    }
}
