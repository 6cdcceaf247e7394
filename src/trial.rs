//! The resolved configuration of one trial: what the planner produces and the trainer consumes.
//!
//! This is the contract between `config`/`plan` (which build it from a sweep file) and `train`
//! (which runs it). Every field that changes the numbers is part of the trial's identity hash;
//! runtime choices (device, database, progress) are not fields here.

use serde::{Deserialize, Serialize};

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
    /// A preset name (`distilgpt2`, `gpt2`, ..., `gpt2-tiny`, `gpt2-mini`) or a path to an HF
    /// checkpoint directory.
    pub model: String,
    /// `pretrained` loads HF weights for the preset; `scratch` initialises randomly.
    /// `None` means: pretrained for the GPT-2 presets, scratch for the small CPU presets.
    #[serde(default)]
    pub init: Option<String>,
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
    pub tokenizer: String,
    /// Matmul precision (autocast; see `model::Precision`). `None` is f32 and keeps the identity
    /// hashes of trials recorded before this key existed.
    #[serde(default)]
    pub precision: Option<crate::model::Precision>,
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

pub fn default_tokenizer() -> String {
    "gpt2".to_string()
}
pub fn default_seed() -> u64 {
    42
}
pub fn default_dropout() -> f64 {
    0.1
}
