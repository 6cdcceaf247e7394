//! The resolved configuration of one trial: what the planner produces and the trainer consumes.
//!
//! This is the contract between `config`/`plan` (which build it from a sweep file) and `train`
//! (which runs it). Every field that changes the numbers is part of the trial's identity hash;
//! runtime choices (device, database, progress) are not fields here.

mod keys;
mod spec;

pub use keys::{check_value, key_rule, keys, KeyKind, KeyRule};
pub use spec::{
    HubModel, Init, ModelSpec, Precision, Preset, Start, TokenizerSpec, MAX_BPE_VOCAB,
    MIN_BPE_VOCAB,
};

use crate::error::UsageError;
use crate::util::{canonical_json, sha256_hex};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

/// Where the training text comes from and how it is split (the paper's §2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Input files: arXiv Archive `.tsv`, `.tsv.xz`, `.tsv.zip`, or Kaggle `.json`/`.jsonl` lines.
    pub sources: Vec<String>,
    /// Keep papers that carry any of these categories (cross-lists count).
    #[serde(default = "default_categories")]
    pub categories: Vec<String>,
    /// train : valid : test ratio, split in date order.
    #[serde(default = "default_split")]
    pub split: [f64; 3],
}

pub fn default_categories() -> Vec<String> {
    ["cs.AI", "cs.LG", "cs.CL", "cs.CV"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

pub fn default_split() -> [f64; 3] {
    [9.0, 0.5, 0.5]
}

/// Everything that determines a trial's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialConfig {
    /// A preset (`distilgpt2`, `gpt2`, ..., `gpt2-tiny`, `gpt2-mini`), a Hugging Face Hub
    /// repository (`org/name[@revision]`) or an HF checkpoint directory.
    pub model: ModelSpec,
    /// `None` means: pretrained for hub presets and checkpoint directories, scratch for the small
    /// CPU presets (see [`TrialConfig::start`]).
    #[serde(default)]
    pub init: Option<Init>,
    /// Field-by-field overrides of the preset.
    #[serde(default)]
    pub n_layer: Option<usize>,
    #[serde(default)]
    pub n_embd: Option<usize>,
    #[serde(default)]
    pub n_head: Option<usize>,
    /// `gpt2` (GPT-2's BPE + the two added special tokens) or `bpe-N` (a byte-level BPE of N
    /// tokens trained on the training split, for from-scratch CPU presets).
    #[serde(default = "default_tokenizer")]
    pub tokenizer: TokenizerSpec,
    /// Matmul precision (autocast; see [`Precision`]). `None` is f32 and keeps the identity
    /// hashes of trials recorded before this key existed.
    #[serde(default)]
    pub precision: Option<Precision>,
    pub data: DataSpec,
    pub block_size: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub epochs: usize,
    #[serde(default)]
    pub warmup_steps: u64,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    /// Train on at most this many tokens per epoch (a prefix of the training blocks).
    #[serde(default)]
    pub max_train_tokens: Option<u64>,
    /// Leave out this many tokens at the start of the training split: training reads the blocks
    /// after them (a local pretraining skips the prefix that quick trials fine-tune on). At most
    /// half of the split is left out, so that a small data set still trains.
    #[serde(default)]
    pub skip_train_tokens: Option<u64>,
    /// Stop after this many optimizer steps in total.
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// Evaluate on the valid split every N optimizer steps (and always at each epoch end).
    #[serde(default)]
    pub eval_every: Option<u64>,
    /// Cap on the tokens of each split used by evaluations (None: the whole split).
    #[serde(default)]
    pub eval_tokens: Option<u64>,
    /// Also evaluate at this fixed context length, independent of `block_size`.
    #[serde(default)]
    pub eval_block_size: Option<usize>,
}

impl TrialConfig {
    /// Checks every key against its rule ([`keys`]) and the rules between keys. Sweep files are
    /// checked key by key with locations first (`config`); this covers every other source
    /// (`sweep train --set`, the ledger).
    pub fn validate(&self) -> Result<(), UsageError> {
        let json = serde_json::to_value(self).map_err(|e| UsageError(e.to_string()))?;
        keys::check_all(&json).map_err(UsageError)?;
        if self.block_size < 2 {
            return Err(UsageError(format!(
                "block_size must be at least 2 (one input and one target), got {}",
                self.block_size
            )));
        }
        if self.eval_block_size.is_some_and(|n| n < 2) {
            return Err(UsageError("eval_block_size must be at least 2".into()));
        }
        Ok(())
    }

    /// (training blocks used per epoch, optimizer steps per epoch, total steps) given the blocks
    /// the training split has. Incomplete accumulation groups at an epoch's end are dropped.
    pub fn schedule(&self, available_blocks: usize) -> (usize, u64, u64) {
        let mut blocks = available_blocks - self.skipped_blocks(available_blocks);
        if let Some(cap) = self.max_train_tokens {
            blocks = blocks.min(cap as usize / self.block_size.max(1));
        }
        let spe = (blocks / (self.batch_size * self.grad_accum).max(1)) as u64;
        let mut total = spe.saturating_mul(self.epochs as u64);
        if let Some(m) = self.max_steps {
            total = total.min(m);
        }
        (blocks, spe, total)
    }

    /// Training blocks left out at the start of a split of `available_blocks`
    /// (`skip_train_tokens`, in whole blocks; at most half of them).
    pub fn skipped_blocks(&self, available_blocks: usize) -> usize {
        (self.skip_train_tokens.unwrap_or(0) as usize / self.block_size.max(1))
            .min(available_blocks / 2)
    }

    /// The most optimizer steps this trial takes whatever the data's size (`None` when only the
    /// data bounds them: neither `max_train_tokens` nor `max_steps`). With data of at least
    /// `max_train_tokens` tokens it is the trial's step count.
    pub fn step_bound(&self) -> Option<u64> {
        (self.max_train_tokens.is_some() || self.max_steps.is_some())
            .then(|| self.schedule(usize::MAX).2)
    }

    /// Training tokens per optimizer step (`batch_size x grad_accum x block_size`).
    pub fn tokens_per_step(&self) -> u64 {
        (self.batch_size * self.grad_accum * self.block_size) as u64
    }

    /// [`TrialConfig::step_bound`] in the unit a pruner counts.
    pub fn length_bound(&self, resource: crate::search::Resource) -> Option<u64> {
        let steps = self.step_bound()?;
        Some(match resource {
            crate::search::Resource::Steps => steps,
            crate::search::Resource::Tokens => steps * self.tokens_per_step(),
        })
    }

    /// Where this trial's weights start (the one place that reads `model` with `init`).
    pub fn start(&self) -> Result<Start, UsageError> {
        if self.init == Some(Init::Scratch) {
            return Ok(Start::Scratch);
        }
        if let Some(hub) = self.model.hub() {
            return Ok(Start::Hub(hub));
        }
        Ok(match (&self.model, self.init) {
            (ModelSpec::Dir(d), _) => Start::Checkpoint(d.clone()),
            (ModelSpec::Preset(p), Some(Init::Pretrained)) => Start::LocalPretraining(*p),
            _ => Start::Scratch,
        })
    }

    /// The identity hash of this config given its data manifest hash and tokenizer id (see
    /// `plan` for what an identity covers). `weights`: the content hash of the starting
    /// checkpoint when `model` is a directory or a Hub repository (a local checkpoint can be
    /// rewritten in place, a Hub branch moves); `None` for the small presets.
    pub fn identity_hash(
        &self,
        data_hash: &str,
        tokenizer_id: &str,
        weights: Option<&str>,
    ) -> serde_json::Result<String> {
        let mut config = serde_json::to_value(self)?;
        if let Some(data) = config.get_mut("data").and_then(Json::as_object_mut) {
            data.remove("sources");
        }
        // `init` naming the start the model has anyway (`scratch` for a small preset,
        // `pretrained` for a Hub model) is the same trial as no `init`: the resolved start is
        // what identifies it, so a profile may say `init = "scratch"` over an inherited
        // `init = "pretrained"` and keep the trials it shares with files that never set it.
        let default_start = TrialConfig {
            init: None,
            ..self.clone()
        }
        .start();
        if self.init.is_some() && self.start().ok() == default_start.ok() {
            if let Some(obj) = config.as_object_mut() {
                obj.remove("init");
            }
        }
        if weights.is_some() {
            // The weights identify a checkpoint directory; its (absolute) path must not, or moving
            // the project would retrain everything.
            if let Some(obj) = config.as_object_mut() {
                obj.remove("model");
            }
        }
        let doc = json!({
            "config": config, "data_manifest": data_hash, "tokenizer": tokenizer_id,
            "model_weights": weights,
        });
        Ok(sha256_hex(canonical_json(&doc).as_bytes()))
    }
}

pub fn default_tokenizer() -> TokenizerSpec {
    TokenizerSpec::Gpt2
}
pub fn default_seed() -> u64 {
    42
}
pub fn default_dropout() -> f64 {
    0.1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(model: &str, init: Option<&str>) -> TrialConfig {
        let mut v = json!({
            "model": model, "data": {"sources": ["a.tsv"]}, "block_size": 128,
            "batch_size": 8, "grad_accum": 1, "learning_rate": 1e-3, "weight_decay": 0.0,
            "epochs": 5,
        });
        if let Some(i) = init {
            v["init"] = json!(i);
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn init_naming_the_models_own_start_keeps_the_identity() {
        let hash = |c: &TrialConfig| c.identity_hash("d", "t", None).unwrap();
        let plain = hash(&config("gpt2-tiny", None));
        // A small preset starts from scratch anyway.
        assert_eq!(hash(&config("gpt2-tiny", Some("scratch"))), plain);
        assert_ne!(hash(&config("gpt2-tiny", Some("pretrained"))), plain);
        // A Hub model starts pretrained anyway; from scratch it is another trial.
        let hub = hash(&config("distilgpt2", None));
        assert_eq!(hash(&config("distilgpt2", Some("pretrained"))), hub);
        assert_ne!(hash(&config("distilgpt2", Some("scratch"))), hub);
        // A checkpoint directory starts from its weights; from scratch it is another trial.
        let dir = hash(&config("/ckpt/m", None));
        assert_ne!(hash(&config("/ckpt/m", Some("scratch"))), dir);
    }
}
