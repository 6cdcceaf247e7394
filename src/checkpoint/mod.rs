//! Weights on disk: HF GPT-2 checkpoints in and out (`config.json` + `model.safetensors`, HF key
//! names, Conv1D `[in, out]`), Hugging Face Hub models through the HF cache (`hub/`: fetched on
//! first use), and training checkpoints verified by their manifests (`training.rs`), written as
//! hashed, synced files (`files.rs`).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{bf16, f16, Tensor, TensorData};
use safetensors::tensor::{Dtype, Metadata, TensorInfo};
use serde::{Deserialize, Serialize};

pub mod files;
pub mod hub;
mod training;
pub use files::{is_no_space, Written};
pub use hub::{dir_tokenizer, hf_cache_dir, model_dir, weights_dir};
pub use training::{
    load_newest, save_training, CheckpointId, Found, Newest, NoSpace, Rejected, Resumption,
    TrainingCheckpoint, LEGACY_SUBDIR, TRAINING_SUBDIR,
};

use crate::error::UsageError;
use crate::model::{Gpt, GptConfig};

/// One float tensor by name, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

// ---------------------------------------------------------------------------------------------
// Module <-> named tensors (names are Burn module paths, e.g. `h.0.ln_1.gamma`)

struct Collect {
    path: Vec<String>,
    out: Vec<NamedTensor>,
}

impl<B: Backend> ModuleVisitor<B> for Collect {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let data = t
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("float tensor converts to f32");
        self.out.push(NamedTensor {
            name: self.path.join("."),
            shape,
            data,
        });
    }
}

/// Every float parameter of `module`, named by its module path, in module order.
pub fn named_tensors<B: Backend, M: Module<B>>(module: &M) -> Vec<NamedTensor> {
    let mut c = Collect {
        path: Vec::new(),
        out: Vec::new(),
    };
    module.visit(&mut c);
    c.out
}

struct Assign<'a> {
    path: Vec<String>,
    tensors: &'a mut HashMap<String, NamedTensor>,
    missing: Vec<String>,
    mismatched: Vec<String>,
}

impl<B: Backend> ModuleMapper<B> for Assign<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let name = self.path.join(".");
        let expected = param.lazy_shape().to_vec();
        let Some(t) = self.tensors.remove(&name) else {
            self.missing.push(name);
            return param;
        };
        if t.shape != expected {
            self.mismatched.push(format!(
                "{name}: file has {:?}, model expects {expected:?}",
                t.shape
            ));
            return param;
        }
        let device = param.lazy_device();
        let value = Tensor::<B, D>::from_data(TensorData::new(t.data, t.shape), &device);
        let id = param.id;
        param.transform_for_load(value, id)
    }
}

/// Replaces `module`'s parameters by the tensors of the same path. Every parameter must be
/// present with its exact shape; the error lists every missing or mismatched tensor and any
/// tensors left over. `what` names the source in the error (a file).
pub fn assign_tensors<B: Backend, M: Module<B>>(
    module: M,
    tensors: Vec<NamedTensor>,
    what: &str,
) -> Result<M> {
    let mut map: HashMap<String, NamedTensor> =
        tensors.into_iter().map(|t| (t.name.clone(), t)).collect();
    let mut a = Assign {
        path: Vec::new(),
        tensors: &mut map,
        missing: Vec::new(),
        mismatched: Vec::new(),
    };
    let module = module.map(&mut a);
    let (missing, mismatched) = (a.missing, a.mismatched);
    let mut unused: Vec<&String> = map.keys().collect();
    unused.sort();
    if !missing.is_empty() || !mismatched.is_empty() || !unused.is_empty() {
        let mut msg = format!("{what} does not fit the model:");
        for m in &mismatched {
            msg.push_str(&format!("\n  shape mismatch: {m}"));
        }
        for m in &missing {
            msg.push_str(&format!("\n  missing tensor: {m}"));
        }
        for u in unused {
            msg.push_str(&format!("\n  unexpected tensor: {u}"));
        }
        return Err(UsageError(msg).into());
    }
    Ok(module)
}

// ---------------------------------------------------------------------------------------------
// safetensors files

/// Reads every tensor of a safetensors file as f32 (F32, F16 and BF16 are accepted).
pub fn read_safetensors(path: &Path) -> Result<(Vec<NamedTensor>, HashMap<String, String>)> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_safetensors(&bytes, path)
}

/// The tensors (as f32) and metadata of a safetensors file's bytes; `path` names it in errors.
fn parse_safetensors(
    bytes: &[u8],
    path: &Path,
) -> Result<(Vec<NamedTensor>, HashMap<String, String>)> {
    let st = match safetensors::SafeTensors::deserialize(bytes) {
        Ok(st) => st,
        Err(_) if is_empty_0_7(bytes) => return Ok((Vec::new(), HashMap::new())),
        Err(e) => bail!("{} is not a valid safetensors file: {e}", path.display()),
    };
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => bail!(
                "{}: tensor `{name}` has dtype {other:?}; only F32, F16 and BF16 are supported",
                path.display()
            ),
        };
        out.push(NamedTensor {
            name,
            shape: view.shape().to_vec(),
            data,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((out, metadata))
}

/// Whether `bytes` is safetensors 0.7's broken header for no tensors and an empty metadata map
/// (optimizer states before the first step, written before [`write_safetensors`] dropped it).
fn is_empty_0_7(bytes: &[u8]) -> bool {
    let Some((len, header)) = bytes.split_first_chunk::<8>() else {
        return false;
    };
    u64::from_le_bytes(*len) == header.len() as u64
        && header.trim_ascii_end() == br#"{},"__metadata__":{}}"#
}

/// Writes f32 tensors to a new safetensors file, synced; its size and SHA-256.
///
/// The bytes are exactly those of `safetensors::serialize_to_file` (a test compares them): the
/// 8-byte header length, the crate's own JSON header padded with spaces to 8 bytes, then the
/// tensors in name order. That writer only takes a path, so it is done here to hash the bytes as
/// they go out (a checkpoint's manifest needs the hash; re-reading gigabytes would cost another
/// pass over the disk), and without the crate's second copy of every tensor in memory.
pub fn write_safetensors(
    path: &Path,
    tensors: &[NamedTensor],
    metadata: HashMap<String, String>,
) -> Result<files::Written> {
    let mut sorted: Vec<&NamedTensor> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut infos = Vec::with_capacity(sorted.len());
    let mut offset = 0;
    for t in &sorted {
        if t.shape.iter().product::<usize>() != t.data.len() {
            bail!(
                "tensor `{}` has shape {:?} but {} values",
                t.name,
                t.shape,
                t.data.len()
            );
        }
        let end = offset + 4 * t.data.len();
        let info = TensorInfo {
            dtype: Dtype::F32,
            shape: t.shape.clone(),
            data_offsets: (offset, end),
        };
        infos.push((t.name.clone(), info));
        offset = end;
    }
    // safetensors 0.7 writes an unreadable header for no tensors and an empty metadata map (a
    // checkpoint before the first optimizer step has no moments); without the map it is fine.
    let metadata = (!metadata.is_empty()).then_some(metadata);
    let header = Metadata::new(metadata, infos)
        .map_err(|e| anyhow!("building the safetensors header of {}: {e}", path.display()))?;
    let mut header = serde_json::to_vec(&header)?;
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = files::HashingFile::create(path)?;
    out.write(&(header.len() as u64).to_le_bytes())?;
    out.write(&header)?;
    let mut buf = Vec::with_capacity(files::CHUNK);
    for t in sorted {
        for values in t.data.chunks(files::CHUNK / 4) {
            buf.clear();
            buf.extend(values.iter().flat_map(|x| x.to_le_bytes()));
            out.write(&buf)?;
        }
    }
    out.finish()
}

/// Builds a directory atomically: `fill` writes into a fresh sibling staging directory, which
/// then replaces `dir` (renames; a crash leaves either the old or the new directory, never half).
pub fn write_dir_atomically(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let name = dir
        .file_name()
        .ok_or_else(|| anyhow!("{} has no directory name", dir.display()))?
        .to_string_lossy()
        .to_string();
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp-"))
        .tempdir_in(parent)
        .with_context(|| format!("creating a staging directory in {}", parent.display()))?;
    fill(staging.path())?;
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    if dir.exists() {
        fs::rename(dir, &old).with_context(|| format!("moving aside {}", dir.display()))?;
    }
    let staged = staging.keep();
    if let Err(e) = fs::rename(&staged, dir) {
        if old.exists() {
            let _ = fs::rename(&old, dir);
        }
        return Err(e).with_context(|| format!("moving {} into place", dir.display()));
    }
    if old.exists() {
        fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// HF names and config

/// HF key -> Burn path; `None` for keys that carry no parameter (causal-mask buffers, the tied
/// LM head).
fn hf_to_burn(key: &str) -> Option<String> {
    let k = key.strip_prefix("transformer.").unwrap_or(key);
    // `.attn.bias` is the causal-mask buffer; `c_attn.bias` does not end with it.
    if k == "lm_head.weight" || k.ends_with(".attn.bias") || k.ends_with(".attn.masked_bias") {
        return None;
    }
    for ln in ["ln_1", "ln_2", "ln_f"] {
        if let Some(prefix) = k.strip_suffix(&format!("{ln}.weight")) {
            return Some(format!("{prefix}{ln}.gamma"));
        }
        if let Some(prefix) = k.strip_suffix(&format!("{ln}.bias")) {
            return Some(format!("{prefix}{ln}.beta"));
        }
    }
    Some(k.to_string())
}

/// Burn path -> HF key, as `GPT2LMHeadModel.save_pretrained` writes it.
fn burn_to_hf(path: &str) -> String {
    let k = path
        .strip_suffix(".gamma")
        .map(|p| format!("{p}.weight"))
        .or_else(|| path.strip_suffix(".beta").map(|p| format!("{p}.bias")))
        .unwrap_or_else(|| path.to_string());
    format!("transformer.{k}")
}

/// The fields of HF's GPT-2 `config.json` this crate understands.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HfConfig {
    #[serde(default)]
    model_type: Option<String>,
    vocab_size: usize,
    n_positions: usize,
    n_embd: usize,
    n_layer: usize,
    n_head: usize,
    #[serde(default)]
    n_inner: Option<usize>,
    #[serde(default = "default_act")]
    activation_function: String,
    #[serde(default = "default_eps")]
    layer_norm_epsilon: f64,
    #[serde(default = "default_pdrop")]
    resid_pdrop: f64,
    #[serde(default = "default_true")]
    tie_word_embeddings: bool,
    #[serde(default = "default_true")]
    scale_attn_weights: bool,
    #[serde(default)]
    scale_attn_by_inverse_layer_idx: bool,
}
fn default_act() -> String {
    "gelu_new".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn default_pdrop() -> f64 {
    0.1
}
fn default_true() -> bool {
    true
}

/// Reads an HF `config.json` as a [`GptConfig`], rejecting variants this model does not implement.
pub fn read_hf_config(dir: &Path) -> Result<GptConfig> {
    let path = dir.join("config.json");
    let text = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_hf_config(&text, &path)
}

/// [`read_hf_config`] of the file's bytes; `path` names it in errors.
fn parse_hf_config(text: &[u8], path: &Path) -> Result<GptConfig> {
    let hf: HfConfig = serde_json::from_slice(text)
        .with_context(|| format!("{} is not a GPT-2 config", path.display()))?;
    let bad = |m: String| -> Result<GptConfig> {
        Err(UsageError(format!("{}: {m}", path.display())).into())
    };
    if let Some(t) = &hf.model_type {
        if t != "gpt2" {
            return bad(format!(
                "model_type is `{t}`; only `gpt2` checkpoints are supported"
            ));
        }
    }
    if !matches!(
        hf.activation_function.as_str(),
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast"
    ) {
        return bad(format!(
            "activation_function `{}` is not GPT-2's tanh GELU",
            hf.activation_function
        ));
    }
    if hf.n_inner.is_some_and(|n| n != 4 * hf.n_embd) {
        return bad("n_inner other than 4 * n_embd is not supported".into());
    }
    if !hf.tie_word_embeddings || !hf.scale_attn_weights || hf.scale_attn_by_inverse_layer_idx {
        return bad("untied embeddings or non-standard attention scaling are not supported".into());
    }
    let cfg = GptConfig {
        vocab_size: hf.vocab_size,
        n_positions: hf.n_positions,
        n_embd: hf.n_embd,
        n_layer: hf.n_layer,
        n_head: hf.n_head,
        dropout: hf.resid_pdrop,
        layer_norm_epsilon: hf.layer_norm_epsilon,
    };
    cfg.validate()
        .with_context(|| format!("invalid model shape in {}", path.display()))?;
    Ok(cfg)
}

fn hf_config_json(cfg: &GptConfig, eot_id: Option<u32>) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.n_positions,
        "n_ctx": cfg.n_positions,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": null,
        "layer_norm_epsilon": cfg.layer_norm_epsilon,
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "initializer_range": 0.02,
        "scale_attn_weights": true,
        "scale_attn_by_inverse_layer_idx": false,
        "reorder_and_upcast_attn": false,
        "tie_word_embeddings": true,
        "use_cache": true,
        "bos_token_id": eot_id,
        "eos_token_id": eot_id,
        "torch_dtype": "float32",
    })
}

// ---------------------------------------------------------------------------------------------
// Import / export

/// Loads an HF GPT-2 checkpoint directory. With `vocab_size` larger than the checkpoint's, the
/// token embedding grows and each new row is the mean of the old rows (what HF's
/// `resize_token_embeddings` does since 4.46, less its 1e-9-scaled noise). `dropout` overrides
/// the checkpoint's `resid_pdrop`.
pub fn import_hf<B: Backend>(
    dir: &Path,
    vocab_size: Option<usize>,
    dropout: Option<f64>,
    device: &B::Device,
) -> Result<(Gpt<B>, GptConfig)> {
    let cfg = read_hf_config(dir)?;
    let file = dir.join("model.safetensors");
    if !file.is_file() {
        let hint = if dir.join("pytorch_model.bin").is_file() {
            " (only pytorch_model.bin is there: convert it with transformers, \
             `GPT2LMHeadModel.from_pretrained(dir).save_pretrained(dir)`)"
        } else {
            ""
        };
        return Err(UsageError(format!("{} is missing{hint}", file.display())).into());
    }
    let (raw, _) = read_safetensors(&file)?;
    build_model(cfg, raw, &file, vocab_size, dropout, device)
}

/// The model of an HF checkpoint's config and tensors (read from `file`), its embedding grown
/// to `vocab_size` and its dropout overridden as [`import_hf`] describes.
fn build_model<B: Backend>(
    mut cfg: GptConfig,
    raw: Vec<NamedTensor>,
    file: &Path,
    vocab_size: Option<usize>,
    dropout: Option<f64>,
    device: &B::Device,
) -> Result<(Gpt<B>, GptConfig)> {
    let mut tensors: Vec<NamedTensor> = raw
        .into_iter()
        .filter_map(|t| hf_to_burn(&t.name).map(|name| NamedTensor { name, ..t }))
        .collect();
    if let Some(target) = vocab_size {
        if target < cfg.vocab_size {
            return Err(UsageError(format!(
                "the tokenizer has {target} tokens but the checkpoint {} embeds {}: they do not \
                 belong together",
                file.parent().unwrap_or(file).display(),
                cfg.vocab_size
            ))
            .into());
        }
        if target > cfg.vocab_size {
            let wte = tensors
                .iter_mut()
                .find(|t| t.name == "wte.weight")
                .ok_or_else(|| {
                    UsageError(format!("{}: missing tensor wte.weight", file.display()))
                })?;
            resize_embedding(wte, target)?;
            cfg.vocab_size = target;
        }
    }
    if let Some(p) = dropout {
        cfg.dropout = p;
    }
    cfg.validate()?;
    let model = cfg.init_uninitialised::<B>(device);
    let model = assign_tensors(model, tensors, &file.display().to_string())?;
    Ok((model, cfg))
}

/// Grows an embedding [V, C] to [target, C]; new rows are the mean of the existing rows.
fn resize_embedding(wte: &mut NamedTensor, target: usize) -> Result<()> {
    let [v, c] = wte.shape[..] else {
        bail!(
            "wte.weight has shape {:?}, expected 2 dimensions",
            wte.shape
        );
    };
    let mut mean = vec![0f64; c];
    for row in wte.data.chunks_exact(c) {
        for (m, x) in mean.iter_mut().zip(row) {
            *m += *x as f64;
        }
    }
    let mean: Vec<f32> = mean.iter().map(|m| (m / v as f64) as f32).collect();
    for _ in v..target {
        wte.data.extend_from_slice(&mean);
    }
    wte.shape = vec![target, c];
    Ok(())
}

/// The tensors of `model` under HF key names, Conv1D weights `[in, out]` (Burn's layout already).
pub fn hf_tensors<B: Backend>(model: &Gpt<B>) -> Vec<NamedTensor> {
    named_tensors(model)
        .into_iter()
        .map(|t| NamedTensor {
            name: burn_to_hf(&t.name),
            ..t
        })
        .collect()
}

/// Writes `model` into `dir` in HF layout (`config.json`, `model.safetensors`), atomically; `extra`
/// adds files (the tokenizer) to the staging directory before it replaces `dir`.
pub fn export_hf<B: Backend>(
    model: &Gpt<B>,
    cfg: &GptConfig,
    eot_id: Option<u32>,
    dir: &Path,
    extra: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    write_dir_atomically(dir, |stage| {
        write_hf_files(model, cfg, eot_id, stage)?;
        extra(stage)
    })
}

/// Writes `config.json` and `model.safetensors` into `dir`, synced; their sizes and hashes by
/// file name.
fn write_hf_files<B: Backend>(
    model: &Gpt<B>,
    cfg: &GptConfig,
    eot_id: Option<u32>,
    dir: &Path,
) -> Result<Vec<(&'static str, files::Written)>> {
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let weights = write_safetensors(&dir.join("model.safetensors"), &hf_tensors(model), meta)?;
    let json = serde_json::to_string_pretty(&hf_config_json(cfg, eot_id))? + "\n";
    let config = files::write_synced(&dir.join("config.json"), json.as_bytes())?;
    Ok(vec![
        ("config.json", config),
        ("model.safetensors", weights),
    ])
}

/// Sorted parameter names -> shapes (for messages and tests).
pub fn shapes(tensors: &[NamedTensor]) -> BTreeMap<String, Vec<usize>> {
    tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    #[test]
    fn names_map_both_ways() {
        for (hf, burn) in [
            ("transformer.h.3.ln_1.weight", "h.3.ln_1.gamma"),
            ("h.3.ln_2.bias", "h.3.ln_2.beta"),
            ("transformer.ln_f.weight", "ln_f.gamma"),
            ("transformer.h.0.attn.c_attn.bias", "h.0.attn.c_attn.bias"),
            ("wte.weight", "wte.weight"),
        ] {
            assert_eq!(hf_to_burn(hf).as_deref(), Some(burn));
            assert_eq!(hf_to_burn(&burn_to_hf(burn)).as_deref(), Some(burn));
        }
        assert_eq!(hf_to_burn("h.0.attn.bias"), None);
        assert_eq!(hf_to_burn("h.0.attn.masked_bias"), None);
        assert_eq!(hf_to_burn("lm_head.weight"), None);
    }

    #[test]
    fn safetensors_round_trip_including_an_empty_tensor_list() {
        let tmp = tempfile::tempdir().unwrap();
        let one = || NamedTensor {
            name: "a".into(),
            shape: vec![2],
            data: vec![1.5, -2.0],
        };
        let zero = || NamedTensor {
            name: "z".into(),
            shape: vec![2, 0],
            data: vec![],
        };
        let step = HashMap::from([("step".to_string(), "0".to_string())]);
        for (i, (tensors, meta)) in [
            (vec![], step.clone()),
            (vec![], HashMap::new()),
            (vec![one()], step.clone()),
            (vec![one()], HashMap::new()),
            (vec![zero()], HashMap::new()),
        ]
        .into_iter()
        .enumerate()
        {
            let path = tmp.path().join(format!("t{i}.safetensors"));
            write_safetensors(&path, &tensors, meta.clone()).unwrap();
            let (back, m) = read_safetensors(&path).unwrap();
            assert_eq!(back, tensors);
            assert_eq!(m, meta);
        }
    }

    /// The hashing writer writes byte for byte what the crate's own writer does, and the size
    /// and hash it returns are those of the file.
    #[test]
    fn writes_the_bytes_the_safetensors_crate_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let t = |name: &str, shape: Vec<usize>| NamedTensor {
            name: name.into(),
            data: (0..shape.iter().product::<usize>())
                .map(|i| i as f32 * -0.25 + 1e-3)
                .collect(),
            shape,
        };
        // Out of name order, a zero-size tensor, one larger than a write chunk.
        let tensors = vec![
            t("h.1.w", vec![3, 5]),
            t("big", vec![files::CHUNK / 4 + 3]),
            t("a.empty", vec![0, 4]),
            t("h.0.w", vec![7]),
        ];
        let pt = HashMap::from([("format".to_string(), "pt".to_string())]);
        for (i, meta) in [HashMap::new(), pt].into_iter().enumerate() {
            let ours = tmp.path().join(format!("ours{i}.safetensors"));
            let written = write_safetensors(&ours, &tensors, meta.clone()).unwrap();
            let theirs = tmp.path().join(format!("theirs{i}.safetensors"));
            let bytes: Vec<Vec<u8>> = tensors
                .iter()
                .map(|t| t.data.iter().flat_map(|x| x.to_le_bytes()).collect())
                .collect();
            let views: Vec<(String, TensorView)> = tensors
                .iter()
                .zip(&bytes)
                .map(|(t, b)| {
                    let view = TensorView::new(Dtype::F32, t.shape.clone(), b).unwrap();
                    (t.name.clone(), view)
                })
                .collect();
            safetensors::serialize_to_file(views, (!meta.is_empty()).then_some(meta), &theirs)
                .unwrap();
            let (a, b) = (fs::read(&ours).unwrap(), fs::read(&theirs).unwrap());
            assert!(a == b, "metadata case {i}: the files differ");
            assert_eq!(written.size, a.len() as u64);
            assert_eq!(written.sha256, crate::util::sha256_hex(&a));
        }
    }

    /// safetensors 0.7 writes no tensors with an empty metadata map as an invalid header (as
    /// sweep did before it dropped the empty map): the reader takes it as empty.
    #[test]
    fn reads_the_header_safetensors_writes_for_no_tensors_and_empty_metadata() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("empty.safetensors");
        safetensors::serialize_to_file(
            Vec::<(String, TensorView)>::new(),
            Some(HashMap::new()),
            &path,
        )
        .unwrap();
        let (tensors, meta) = read_safetensors(&path).unwrap();
        assert!(tensors.is_empty() && meta.is_empty());
    }

    #[test]
    fn resize_uses_mean_row() {
        let mut t = NamedTensor {
            name: "wte.weight".into(),
            shape: vec![2, 3],
            data: vec![1.0, 2.0, 3.0, 3.0, 4.0, 5.0],
        };
        resize_embedding(&mut t, 4).unwrap();
        assert_eq!(t.shape, vec![4, 3]);
        assert_eq!(&t.data[6..], &[2.0, 3.0, 4.0, 2.0, 3.0, 4.0]);
    }
}
