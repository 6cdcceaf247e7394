//! The typed values of a trial's keys that are not plain numbers: `model`, `init`,
//! `tokenizer`, `precision`, and what `model` with `init` means for the starting weights. Each
//! parses (and serialises, for the ledger) from exactly one place.

use crate::error::UsageError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The dtype the matrix products run in. Like PyTorch's autocast, not a half-precision model:
/// parameters, gradients, optimizer state, LayerNorm, softmax and the loss stay f32; only the two
/// inputs of each matmul (linear layers, attention scores and values, the LM head) are cast down,
/// and each product is cast back to f32. Used on GPUs, where bf16/f16 matmuls run on tensor cores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
    F16,
}

impl Precision {
    pub fn parse(s: &str) -> Result<Self, UsageError> {
        match s {
            "f32" | "fp32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            "f16" | "fp16" => Ok(Self::F16),
            other => Err(UsageError(format!(
                "unknown precision `{other}`: use f32 (default), bf16 or f16"
            ))),
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }
}

/// A GPT-2-family preset: HF's pretrained checkpoints, or the small shapes sweep trains on CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    Distilgpt2,
    Gpt2,
    Gpt2Medium,
    Gpt2Large,
    Gpt2Xl,
    Gpt2Tiny,
    Gpt2Mini,
}

impl Preset {
    pub const ALL: [Preset; 7] = [
        Preset::Distilgpt2,
        Preset::Gpt2,
        Preset::Gpt2Medium,
        Preset::Gpt2Large,
        Preset::Gpt2Xl,
        Preset::Gpt2Tiny,
        Preset::Gpt2Mini,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Distilgpt2 => "distilgpt2",
            Preset::Gpt2 => "gpt2",
            Preset::Gpt2Medium => "gpt2-medium",
            Preset::Gpt2Large => "gpt2-large",
            Preset::Gpt2Xl => "gpt2-xl",
            Preset::Gpt2Tiny => "gpt2-tiny",
            Preset::Gpt2Mini => "gpt2-mini",
        }
    }

    pub fn from_name(name: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == name)
    }

    /// HF publishes pretrained weights for it; the others are sweep's small CPU shapes, trained
    /// from scratch or pretrained locally (`train/pretrain.rs`).
    pub fn on_hub(self) -> bool {
        !matches!(self, Preset::Gpt2Tiny | Preset::Gpt2Mini)
    }

    /// The names of the hub presets (`true`) or the small ones, for messages.
    pub fn names(on_hub: bool) -> String {
        let names: Vec<&str> = Preset::ALL
            .into_iter()
            .filter(|p| p.on_hub() == on_hub)
            .map(Preset::name)
            .collect();
        names.join(", ")
    }
}

/// A model repository on the Hugging Face Hub as the `model` key names it: a hub preset
/// (`distilgpt2`) or `org/name`, optionally at a revision (`@main`, a tag or a commit hash).
/// The name is kept as written (it is what the ledger shows); [`HubModel::repos`] says where it
/// lives on the Hub and in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HubModel {
    pub name: String,
    /// `None`: the repository's default branch, `main`.
    pub revision: Option<String>,
}

/// The longest repository name the Hub accepts (its `validate_repo_id`).
const MAX_REPO_NAME: usize = 96;

impl HubModel {
    /// The revision to resolve: the one written after `@`, else `main`.
    pub fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or("main")
    }

    /// The preset this names (`gpt2@<commit>` is still gpt2's shape).
    pub fn preset(&self) -> Option<Preset> {
        Preset::from_name(&self.name)
    }

    /// The Hub repositories it may be found under, the one to download from first: a preset's
    /// current name (`distilbert/distilgpt2`), then the legacy one that a cache filled by
    /// `from_pretrained("distilgpt2")` uses.
    pub fn repos(&self) -> Vec<String> {
        let current = match self.name.as_str() {
            "distilgpt2" => Some("distilbert/distilgpt2".to_string()),
            n @ ("gpt2" | "gpt2-medium" | "gpt2-large" | "gpt2-xl") => {
                Some(format!("openai-community/{n}"))
            }
            _ => None,
        };
        current.into_iter().chain([self.name.clone()]).collect()
    }

    /// `org/name[@revision]` (or `preset@revision`); `None` when `s` does not look like one (a
    /// path, a single word), so that it is read as a checkpoint directory instead.
    fn parse(s: &str) -> Option<Result<HubModel, UsageError>> {
        let (name, revision) = match s.rsplit_once('@') {
            Some((n, r)) => (n, Some(r)),
            None => (s, None),
        };
        let preset = Preset::from_name(name);
        if preset.is_none() && !is_repo_id(name) {
            return None;
        }
        if let Some(p) = preset.filter(|p| !p.on_hub()) {
            return Some(Err(UsageError(format!(
                "model `{s}`: `{}` is one of sweep's own small presets, not a Hub repository, so \
                 it has no revision; fix: write `{}`",
                p.name(),
                p.name()
            ))));
        }
        if let Some(r) = revision {
            if r.is_empty() || r.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Some(Err(UsageError(format!(
                    "model `{s}`: `{r}` is not a revision; fix: write `{name}@main`, a tag or a \
                     commit hash after the `@`, or leave `@` out for the default branch"
                ))));
            }
        }
        Some(Ok(HubModel {
            name: name.to_string(),
            revision: revision.map(str::to_string),
        }))
    }
}

/// A Hub repository id as the Hub validates it: `org/name` of letters, digits, `-`, `_` and `.`,
/// no `--` or `..`, each part starting and ending with a letter, digit or `_`.
fn is_repo_id(s: &str) -> bool {
    let Some((org, name)) = s.split_once('/') else {
        return false;
    };
    let part = |p: &str| {
        let ok_ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        ok_ends(p.chars().next())
            && ok_ends(p.chars().last())
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    s.len() <= MAX_REPO_NAME
        && part(org)
        && part(name)
        && !s.contains("--")
        && !s.contains("..")
        && !s.ends_with(".git")
}

impl fmt::Display for HubModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.revision {
            Some(r) => write!(f, "{}@{r}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The `model` key: a preset name, a Hugging Face Hub repository (`org/name[@revision]`,
/// `preset@revision`), or the path of an HF checkpoint directory. A sweep file's relative paths
/// that exist are made absolute by `config` before they get here, so a relative `org/name` is
/// the Hub's (`from_pretrained` reads an existing directory first too).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ModelSpec {
    Preset(Preset),
    Hub(HubModel),
    Dir(PathBuf),
}

impl ModelSpec {
    /// The Hub repository whose weights this starts from, if any (a hub preset's too).
    pub fn hub(&self) -> Option<HubModel> {
        match self {
            ModelSpec::Preset(p) if p.on_hub() => Some(HubModel {
                name: p.name().to_string(),
                revision: None,
            }),
            ModelSpec::Hub(h) => Some(h.clone()),
            ModelSpec::Preset(_) | ModelSpec::Dir(_) => None,
        }
    }

    /// The preset whose shape this is, when known without reading a checkpoint.
    pub fn preset(&self) -> Option<Preset> {
        match self {
            ModelSpec::Preset(p) => Some(*p),
            ModelSpec::Hub(h) => h.preset(),
            ModelSpec::Dir(_) => None,
        }
    }
}

impl FromStr for ModelSpec {
    type Err = UsageError;
    fn from_str(s: &str) -> Result<Self, UsageError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(UsageError("model must not be empty".into()));
        }
        if let Some(p) = Preset::from_name(s) {
            return Ok(ModelSpec::Preset(p));
        }
        match HubModel::parse(s) {
            Some(hub) => hub.map(ModelSpec::Hub),
            None => Ok(ModelSpec::Dir(PathBuf::from(s))),
        }
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSpec::Preset(p) => f.write_str(p.name()),
            ModelSpec::Hub(h) => h.fmt(f),
            ModelSpec::Dir(d) => write!(f, "{}", d.display()),
        }
    }
}

impl TryFrom<String> for ModelSpec {
    type Error = UsageError;
    fn try_from(s: String) -> Result<Self, UsageError> {
        s.parse()
    }
}

impl From<ModelSpec> for String {
    fn from(m: ModelSpec) -> String {
        m.to_string()
    }
}

/// The `init` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// Start from pretrained weights: HF's for hub presets and checkpoint directories, sweep's
    /// own local pretraining for the small presets.
    Pretrained,
    /// GPT-2's initialisation from the seed.
    Scratch,
}

impl Init {
    pub fn as_str(self) -> &'static str {
        match self {
            Init::Pretrained => "pretrained",
            Init::Scratch => "scratch",
        }
    }
}

impl FromStr for Init {
    type Err = UsageError;
    fn from_str(s: &str) -> Result<Self, UsageError> {
        match s {
            "pretrained" => Ok(Init::Pretrained),
            "scratch" => Ok(Init::Scratch),
            other => Err(UsageError(format!(
                "unknown init `{other}`: use pretrained or scratch"
            ))),
        }
    }
}

/// Where a trial's starting weights come from: decided here, once, from `model` and `init`; the
/// trainer loads accordingly and records it, and the report reads that record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The pretrained weights of a Hugging Face Hub repository (a hub preset's, or `org/name`).
    Hub(HubModel),
    /// An HF checkpoint directory.
    Checkpoint(PathBuf),
    /// A small preset fine-tuned from sweep's own local pretraining.
    LocalPretraining(Preset),
    /// GPT-2's initialisation from the seed (the shape of a preset or of a checkpoint directory).
    Scratch,
}

impl Start {
    /// The words recorded in a trial's environment (`start`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Start::Hub(_) => "hub",
            Start::Checkpoint(_) => "checkpoint",
            Start::LocalPretraining(_) => "local-pretraining",
            Start::Scratch => "scratch",
        }
    }
}

/// The smallest byte-level BPE: 256 bytes, the 3 special tokens and at least one merge.
pub const MIN_BPE_VOCAB: usize = 260;
/// The largest byte-level BPE sweep trains.
pub const MAX_BPE_VOCAB: usize = 1 << 20;

/// The `tokenizer` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TokenizerSpec {
    /// GPT-2's BPE plus the two added special tokens.
    Gpt2,
    /// A byte-level BPE of N tokens trained on the training split (from-scratch CPU presets).
    Bpe(usize),
}

impl FromStr for TokenizerSpec {
    type Err = UsageError;
    fn from_str(s: &str) -> Result<Self, UsageError> {
        if s == "gpt2" {
            return Ok(TokenizerSpec::Gpt2);
        }
        match s.strip_prefix("bpe-").map(str::parse::<usize>) {
            Some(Ok(n)) if (MIN_BPE_VOCAB..=MAX_BPE_VOCAB).contains(&n) => {
                Ok(TokenizerSpec::Bpe(n))
            }
            Some(Ok(_)) => Err(UsageError(format!(
                "tokenizer `{s}`: N must be between {MIN_BPE_VOCAB} and {MAX_BPE_VOCAB} (256 \
                 bytes + 3 special tokens + merges)"
            ))),
            _ => Err(UsageError(format!(
                "unknown tokenizer `{s}`: use \"gpt2\" or \"bpe-N\" (e.g. bpe-4096)"
            ))),
        }
    }
}

impl fmt::Display for TokenizerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenizerSpec::Gpt2 => f.write_str("gpt2"),
            TokenizerSpec::Bpe(n) => write!(f, "bpe-{n}"),
        }
    }
}

impl TryFrom<String> for TokenizerSpec {
    type Error = UsageError;
    fn try_from(s: String) -> Result<Self, UsageError> {
        s.parse()
    }
}

impl From<TokenizerSpec> for String {
    fn from(t: TokenizerSpec) -> String {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_read_as_presets_hub_repositories_or_directories() {
        let parse = |s: &str| s.parse::<ModelSpec>();
        assert_eq!(parse("gpt2").unwrap(), ModelSpec::Preset(Preset::Gpt2));
        let hub = |name: &str, rev: Option<&str>| {
            ModelSpec::Hub(HubModel {
                name: name.into(),
                revision: rev.map(str::to_string),
            })
        };
        assert_eq!(parse("gpt2@abc").unwrap(), hub("gpt2", Some("abc")));
        assert_eq!(
            parse("openai-community/gpt2").unwrap(),
            hub("openai-community/gpt2", None)
        );
        assert_eq!(
            parse("org/my_model-1.5@refs/pr/1").unwrap(),
            hub("org/my_model-1.5", Some("refs/pr/1"))
        );
        for dir in [
            "/abs/ckpt",
            "./ckpt/x",
            "../results/pretrained/m",
            "a/b/c",
            "ckpt",
            "org--x/y",
        ] {
            assert_eq!(parse(dir).unwrap(), ModelSpec::Dir(dir.into()), "{dir}");
        }
        for bad in ["gpt2-tiny@v1", "org/name@", "org/name@a b"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        // The ledger keeps the name as written.
        for s in ["gpt2", "gpt2@abc", "org/m@v1", "/abs/ckpt"] {
            assert_eq!(parse(s).unwrap().to_string(), s);
        }
        // Where a preset lives on the Hub, current name first, then the legacy one.
        assert_eq!(
            parse("distilgpt2").unwrap().hub().unwrap().repos(),
            ["distilbert/distilgpt2", "distilgpt2"]
        );
        assert_eq!(parse("org/m").unwrap().hub().unwrap().repos(), ["org/m"]);
        assert_eq!(parse("gpt2@x").unwrap().preset(), Some(Preset::Gpt2));
        assert!(parse("gpt2-tiny").unwrap().hub().is_none());
    }
}
