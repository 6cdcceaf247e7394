//! Turn a validated sweep into identified trials (content hashes) and show the plan; writes nothing.
//!
//! A trial's identity is `sha256(canonical JSON of {config, data_manifest, tokenizer,
//! model_weights})`, where
//! `config` is the resolved `TrialConfig` *without* `data.sources` (the data manifest hash already
//! covers the sources' content, so moving the data or the project does not change identities),
//! `data_manifest` is the prepared data's manifest hash, `tokenizer` the tokenizer's id and
//! `model_weights` the sha256 of `model.safetensors` when `model` is a checkpoint directory (whose
//! path then leaves the hash, like `data.sources`), or the recipe of the local pretraining it
//! fine-tunes from (`train::pretrain::recipe_id`).
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
        let weights = self
            .weights
            .entry(cfg.model.clone())
            .or_insert_with(|| match &cfg.model {
                ModelSpec::Dir(dir) => weights_hash(dir),
                ModelSpec::Preset(_) => None,
            })
            .clone();
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
pub fn identify(sweep: &Sweep, cache_root: &Path) -> Result<Vec<PlannedTrial>> {
    let mut ider = Identifier::new(cache_root);
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
