//! GPT-2 in Burn, read top to bottom like nanoGPT's model.py: config presets, the module tree
//! (field names = Hugging Face checkpoint keys), the forward pass, the loss and a KV-cache forward.

use anyhow::{bail, Result};
use burn::module::{Module, ModuleMapper, Param};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{FloatDType, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::UsageError;
use crate::fused::FusedOps;
use crate::trial::{Precision, Preset};
use crate::util::SplitMix;

/// GPT-2's 50,257 BPE tokens plus the two special tokens the paper adds (`<|startoftext|>`, `<|sep|>`).
pub const GPT2_VOCAB: usize = 50_259;
/// The vocabulary size of the original HF checkpoints, before the two added tokens.
pub const GPT2_HF_VOCAB: usize = 50_257;

/// The dtype of an autocast matmul's inputs (`None`: f32 throughout).
fn low(p: Precision) -> Option<FloatDType> {
    match p {
        Precision::F32 => None,
        Precision::Bf16 => Some(FloatDType::BF16),
        Precision::F16 => Some(FloatDType::F16),
    }
}

/// `a @ b` in the autocast dtype, returned in f32.
fn mm<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>, p: Precision) -> Tensor<B, D> {
    match low(p) {
        None => a.matmul(b),
        Some(dt) => a.cast(dt).matmul(b.cast(dt)).cast(FloatDType::F32),
    }
}

/// A linear layer (HF Conv1D layout: weight [in, out]) with its matmul in the autocast dtype.
/// A 2-D matmul rather than Burn's `Linear::forward`: the latter's backward copies the
/// transposed weight into a new tensor for every input gradient, while a 2-D matmul reads it
/// in place through strides.
fn linear<B: Backend>(layer: &Linear<B>, x: Tensor<B, 3>, p: Precision) -> Tensor<B, 3> {
    let [b, t, c] = x.dims();
    let w = layer.weight.val(); // [C, O]
    let o = w.dims()[1];
    let y = mm(x.reshape([b * t, c]), w, p).reshape([b, t, o]); // [B, T, O]
    match &layer.bias {
        Some(bias) => y + bias.val().reshape([1, 1, o]),
        None => y,
    }
}

/// The shape of a GPT-2 model. Serialises to the subset of HF's `config.json` fields it reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GptConfig {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// One probability for embedding, attention and residual dropout (HF's embd/attn/resid_pdrop).
    pub dropout: f64,
    pub layer_norm_epsilon: f64,
}

impl GptConfig {
    /// A preset's shape; the vocabulary is GPT-2's plus the two special tokens.
    pub fn of(preset: Preset) -> Self {
        let (n_layer, n_embd, n_head, n_positions) = match preset {
            Preset::Distilgpt2 => (6, 768, 12, 1024),
            Preset::Gpt2 => (12, 768, 12, 1024),
            Preset::Gpt2Medium => (24, 1024, 16, 1024),
            Preset::Gpt2Large => (36, 1280, 20, 1024),
            Preset::Gpt2Xl => (48, 1600, 25, 1024),
            Preset::Gpt2Tiny => (2, 128, 4, 256),
            Preset::Gpt2Mini => (4, 256, 4, 512),
        };
        Self {
            vocab_size: GPT2_VOCAB,
            n_positions,
            n_embd,
            n_layer,
            n_head,
            dropout: 0.1,
            layer_norm_epsilon: 1e-5,
        }
    }

    /// A preset by name (`--preset` flags).
    pub fn preset(name: &str) -> Result<Self> {
        match Preset::from_name(name) {
            Some(p) => Ok(Self::of(p)),
            None => Err(UsageError(format!(
                "unknown model preset `{name}`; known presets: {}, {} (or a path to an HF \
                 checkpoint directory)",
                Preset::names(true),
                Preset::names(false)
            ))
            .into()),
        }
    }

    /// Field-by-field overrides from a trial (`n_layer`, `n_embd`, `n_head`), then validation.
    pub fn with_overrides(
        mut self,
        n_layer: Option<usize>,
        n_embd: Option<usize>,
        n_head: Option<usize>,
    ) -> Result<Self> {
        if let Some(v) = n_layer {
            self.n_layer = v;
        }
        if let Some(v) = n_embd {
            self.n_embd = v;
        }
        if let Some(v) = n_head {
            self.n_head = v;
        }
        self.validate()?;
        Ok(self)
    }

    pub fn validate(&self) -> Result<()> {
        let usage = |m: String| -> Result<()> { Err(UsageError(m).into()) };
        if self.n_layer == 0 || self.n_embd == 0 || self.n_head == 0 {
            return usage(format!(
                "model shape must be positive: n_layer={}, n_embd={}, n_head={}",
                self.n_layer, self.n_embd, self.n_head
            ));
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return usage(format!(
                "n_embd ({}) must be divisible by n_head ({})",
                self.n_embd, self.n_head
            ));
        }
        if self.vocab_size == 0 || self.n_positions == 0 {
            return usage("vocab_size and n_positions must be positive".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return usage(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        Ok(())
    }

    /// Parameter count (the tied LM head counted once, as HF does).
    /// Training FLOPs per token at block size `t` (nanoGPT's estimate): 6 per parameter that is
    /// not a position embedding (the tied LM head counted through wte) plus attention's
    /// 12 x layers x width x block.
    pub fn train_flops_per_token(&self, t: usize) -> usize {
        6 * (self.num_params() - self.n_positions * self.n_embd)
            + 12 * self.n_layer * self.n_embd * t
    }

    pub fn num_params(&self) -> usize {
        let c = self.n_embd;
        let block =
            2 * (2 * c) + (c * 3 * c + 3 * c) + (c * c + c) + (c * 4 * c + 4 * c) + (4 * c * c + c);
        self.vocab_size * c + self.n_positions * c + self.n_layer * block + 2 * c
    }

    /// A model with GPT-2's initialisation (HF `_init_weights`): N(0, 0.02) weights,
    /// N(0, 0.02/sqrt(2 n_layer)) for the residual projections, zero biases, unit LayerNorms.
    /// Drawn from a host RNG seeded by `seed`, so it is identical on every backend and thread.
    pub fn init<B: Backend>(&self, device: &B::Device, seed: u64) -> Gpt<B> {
        let model = self.init_uninitialised::<B>(device);
        let mut init = Gpt2Init {
            rng: SplitMix::new(seed),
            path: Vec::new(),
            resid_std: 0.02 / (2.0 * self.n_layer as f64).sqrt(),
        };
        model.map(&mut init)
    }

    /// The module tree with Burn's lazy default initialisers (for loading weights into).
    pub fn init_uninitialised<B: Backend>(&self, device: &B::Device) -> Gpt<B> {
        let c = self.n_embd;
        let ln = || {
            LayerNormConfig::new(c)
                .with_epsilon(self.layer_norm_epsilon)
                .init(device)
        };
        let drop = || DropoutConfig::new(self.dropout).init();
        let h = (0..self.n_layer)
            .map(|_| Block {
                ln_1: ln(),
                attn: Attention {
                    c_attn: LinearConfig::new(c, 3 * c).init(device),
                    c_proj: LinearConfig::new(c, c).init(device),
                    attn_dropout: drop(),
                    resid_dropout: drop(),
                    n_head: self.n_head,
                },
                ln_2: ln(),
                mlp: Mlp {
                    c_fc: LinearConfig::new(c, 4 * c).init(device),
                    c_proj: LinearConfig::new(4 * c, c).init(device),
                    dropout: drop(),
                },
            })
            .collect();
        Gpt {
            wte: EmbeddingConfig::new(self.vocab_size, c).init(device),
            wpe: EmbeddingConfig::new(self.n_positions, c).init(device),
            drop: drop(),
            h,
            ln_f: ln(),
            n_positions: self.n_positions,
            precision: Precision::F32,
            ln_epsilon: self.layer_norm_epsilon,
        }
    }
}

/// Causal self-attention with GPT-2's fused q/k/v projection (`c_attn`, Conv1D `[in, 3 * in]`).
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub c_attn: Linear<B>,
    pub c_proj: Linear<B>,
    attn_dropout: Dropout,
    resid_dropout: Dropout,
    n_head: usize,
}

impl<B: FusedOps> Attention<B> {
    /// `x`: [B, T, C]; `past`: cached keys/values [B, H, T_past, D] of earlier positions.
    /// Returns the output [B, T, C] and the keys/values including this call's positions.
    fn forward(
        &self,
        x: Tensor<B, 3>,
        past: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
        p: Precision,
    ) -> (Tensor<B, 3>, (Tensor<B, 4>, Tensor<B, 4>)) {
        let [b, t, c] = x.dims();
        let (h, d) = (self.n_head, c / self.n_head);
        let qkv = linear(&self.c_attn, x, p); // [B, T, 3C]
        let heads = |z: Tensor<B, 3>| z.reshape([b, t, h, d]).swap_dims(1, 2); // [B, H, T, D]
        let mut parts = qkv.chunk(3, 2);
        let v = heads(parts.pop().expect("3 chunks"));
        let k = heads(parts.pop().expect("3 chunks"));
        let q = heads(parts.pop().expect("3 chunks"));
        let (k, v) = match past {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)), // [B, H, T_all, D]
            None => (k, v),
        };
        let y = if B::OWN_OPS {
            // LibTorch: SDPA's fused kernels, with GPT-2's attention dropout in training and
            // libtorch's own backward (src/libtorch.rs).
            let dropout = if B::ad_enabled(&q.device()) {
                self.attn_dropout.prob
            } else {
                0.0
            };
            let scale = 1.0 / (d as f64).sqrt();
            crate::fused::causal_attention(q, k.clone(), v.clone(), scale, dropout, low(p))
        } else if B::ad_enabled(&q.device()) && self.attn_dropout.prob > 0.0 {
            // Training: GPT-2 drops attention probabilities, which Burn's fused attention cannot
            // do (and under autodiff it decomposes into separate ops anyway).
            let scores = mm(q, k.clone().swap_dims(2, 3), p); // [B, H, T, T_all]
            let probs = crate::fused::causal_softmax(scores, 1.0 / (d as f64).sqrt());
            mm(
                crate::fused::dropout(probs, self.attn_dropout.prob),
                v.clone(),
                p,
            ) // [B, H, T, D]
        } else {
            // The causal mask is aligned bottom-right, so it is right for cached keys too.
            let options = AttentionModuleOptions {
                scale: None,
                softcap: None,
                is_causal: true,
            };
            attention(q, k.clone(), v.clone(), None, None, options) // [B, H, T, D]
        };
        let y = y.swap_dims(1, 2).reshape([b, t, c]); // [B, T, C]
        let y = crate::fused::dropout(linear(&self.c_proj, y, p), self.resid_dropout.prob);
        (y, (k, v))
    }
}

/// The position-wise MLP: 4x width, GELU with the tanh approximation (GPT-2's `gelu_new`).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub c_fc: Linear<B>,
    pub c_proj: Linear<B>,
    dropout: Dropout,
}

impl<B: FusedOps> Mlp<B> {
    fn forward(&self, x: Tensor<B, 3>, p: Precision) -> Tensor<B, 3> {
        let x = crate::fused::gelu_tanh(linear(&self.c_fc, x, p)); // [B, T, 4C]
        crate::fused::dropout(linear(&self.c_proj, x, p), self.dropout.prob) // [B, T, C]
    }
}

/// A pre-LayerNorm transformer block.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub ln_1: LayerNorm<B>,
    pub attn: Attention<B>,
    pub ln_2: LayerNorm<B>,
    pub mlp: Mlp<B>,
}

impl<B: FusedOps> Block<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        past: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
        p: Precision,
        eps: f64,
    ) -> (Tensor<B, 3>, (Tensor<B, 4>, Tensor<B, 4>)) {
        let ln_1 = crate::fused::layer_norm(&self.ln_1, x.clone(), eps);
        let (a, kv) = self.attn.forward(ln_1, past, p);
        let x = x + a; // [B, T, C]
        let ln_2 = crate::fused::layer_norm(&self.ln_2, x.clone(), eps);
        let x = x + self.mlp.forward(ln_2, p);
        (x, kv)
    }
}

/// GPT-2 with the LM head tied to the token embedding (`logits = x @ wte^T`).
#[derive(Module, Debug)]
pub struct Gpt<B: Backend> {
    pub wte: Embedding<B>,
    pub wpe: Embedding<B>,
    drop: Dropout,
    pub h: Vec<Block<B>>,
    pub ln_f: LayerNorm<B>,
    n_positions: usize,
    #[module(skip)]
    precision: Precision,
    /// The LayerNorms' epsilon, for [`crate::fused::layer_norm`] (Burn's `LayerNorm` keeps its
    /// own private).
    #[module(skip)]
    ln_epsilon: f64,
}

/// Keys and values of the positions seen so far, one entry per layer, for incremental decoding.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    len: usize,
}

impl<B: Backend> KvCache<B> {
    pub fn new() -> Self {
        Self {
            layers: Vec::new(),
            len: 0,
        }
    }
    /// Positions already in the cache.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<B: Backend> Default for KvCache<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: FusedOps> Gpt<B> {
    pub fn vocab_size(&self) -> usize {
        self.wte.weight.dims()[0]
    }
    pub fn n_positions(&self) -> usize {
        self.n_positions
    }
    pub fn n_embd(&self) -> usize {
        self.wte.weight.dims()[1]
    }
    pub fn n_layer(&self) -> usize {
        self.h.len()
    }
    pub fn precision(&self) -> Precision {
        self.precision
    }
    /// The same model with its matmuls in `precision` (see [`Precision`]).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The final hidden states [B, T, C] for token ids [B, T] starting at position `start`.
    fn hidden(
        &self,
        ids: Tensor<B, 2, Int>,
        start: usize,
        mut past: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let [b, t] = ids.dims();
        assert!(
            start + t <= self.n_positions,
            "sequence of {} tokens exceeds the model's {} positions",
            start + t,
            self.n_positions
        );
        let device = ids.device();
        let pos = Tensor::<B, 1, Int>::arange(start as i64..(start + t) as i64, &device)
            .reshape([1, t])
            .expand([b, t]); // [B, T]
        let mut x = crate::fused::dropout(
            self.wte.forward(ids) + self.wpe.forward(pos),
            self.drop.prob,
        ); // [B, T, C]
        if let Some(cache) = past.as_deref_mut() {
            cache.layers.resize(self.h.len(), None);
        }
        for (i, block) in self.h.iter().enumerate() {
            let layer_past = past.as_deref_mut().and_then(|c| c.layers[i].take());
            let (y, kv) = block.forward(x, layer_past, self.precision, self.ln_epsilon);
            x = y;
            if let Some(cache) = past.as_deref_mut() {
                cache.layers[i] = Some(kv);
            }
        }
        if let Some(cache) = past {
            cache.len += t;
        }
        crate::fused::layer_norm(&self.ln_f, x, self.ln_epsilon)
    }

    /// The tied LM head: [B, T, C] -> [B, T, V].
    fn head(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, c] = x.dims();
        let w = self.wte.weight.val(); // [V, C]
        let v = w.dims()[0];
        let x = x.reshape([b * t, c]); // [B*T, C]
        match low(self.precision) {
            None => crate::fused::matmul_nt(x, w),
            Some(_) => mm(x, w.transpose(), self.precision),
        }
        .reshape([b, t, v])
    }

    /// Logits [B, T, V] for token ids [B, T].
    pub fn forward(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.head(self.hidden(ids, 0, None))
    }

    /// Logits [B, T, V] for the next `T` tokens after those already in `cache`, which grows by T.
    /// Fails when the cache would pass the model's context length.
    pub fn forward_cached(
        &self,
        ids: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Result<Tensor<B, 3>> {
        let start = self.check_room(ids.dims()[1], cache)?;
        Ok(self.head(self.hidden(ids, start, Some(cache))))
    }

    /// Logits [B, V] of the last position only, which is all sampling needs: the LM head (V x C
    /// per position) is most of a small model's cost. With `cache`, the tokens follow those
    /// already in it, and it grows by T; fails when it would pass the model's context.
    pub fn forward_last(
        &self,
        ids: Tensor<B, 2, Int>,
        cache: Option<&mut KvCache<B>>,
    ) -> Result<Tensor<B, 2>> {
        let [b, t] = ids.dims();
        let start = match &cache {
            Some(c) => self.check_room(t, c)?,
            None => 0,
        };
        let x = self.hidden(ids, start, cache).narrow(1, t - 1, 1); // [B, 1, C]
        let v = self.vocab_size();
        Ok(self.head(x).reshape([b, v])) // [B, V]
    }

    /// Where the next `t` tokens start in `cache`, if they fit the context.
    fn check_room(&self, t: usize, cache: &KvCache<B>) -> Result<usize> {
        if cache.len + t > self.n_positions {
            bail!(
                "KV cache holds {} positions; {} more exceed the model's context of {}",
                cache.len,
                t,
                self.n_positions
            );
        }
        Ok(cache.len)
    }

    /// Mean next-token cross-entropy over a batch of blocks [B, T] (HF `labels = input_ids`:
    /// position t predicts token t + 1, so each block gives T - 1 predictions). Returns [1].
    pub fn loss(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 1> {
        let [b, t] = ids.dims();
        assert!(t >= 2, "a block needs at least 2 tokens to predict one");
        let x = self.hidden(ids.clone(), 0, None).narrow(1, 0, t - 1); // [B, T-1, C]
        let logits = self.head(x); // [B, T-1, V]
        let v = logits.dims()[2];
        let targets = ids.narrow(1, 1, t - 1).reshape([b * (t - 1), 1]); // [N, 1]
        crate::fused::lm_loss(logits.reshape([b * (t - 1), v]), targets)
    }
}

/// Replaces every parameter with GPT-2's initial values, chosen by the parameter's path.
struct Gpt2Init {
    rng: SplitMix,
    path: Vec<String>,
    resid_std: f64,
}

impl<B: Backend> ModuleMapper<B> for Gpt2Init {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let shape = tensor.shape();
        let n = shape.num_elements();
        let last = self.path.last().map(String::as_str).unwrap_or("");
        let parent = self
            .path
            .iter()
            .rev()
            .nth(1)
            .map(String::as_str)
            .unwrap_or("");
        let values: Vec<f32> = match last {
            "gamma" => vec![1.0; n],
            "beta" | "bias" => vec![0.0; n],
            _ => {
                // c_proj of both attention and MLP are the residual projections.
                let std = if parent == "c_proj" {
                    self.resid_std
                } else {
                    0.02
                };
                (0..n).map(|_| (self.rng.normal() * std) as f32).collect()
            }
        };
        let device = tensor.device();
        let fresh = Tensor::<B, D>::from_data(TensorData::new(values, shape), &device);
        let fresh = fresh.set_require_grad(tensor.is_require_grad());
        Param::from_mapped_value(id, fresh, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    fn tiny() -> GptConfig {
        GptConfig {
            vocab_size: 61,
            n_positions: 32,
            n_embd: 16,
            n_layer: 2,
            n_head: 4,
            dropout: 0.1,
            layer_norm_epsilon: 1e-5,
        }
    }

    fn ids(b: usize, t: usize, vocab: usize) -> Tensor<B, 2, Int> {
        let data: Vec<i32> = (0..b * t).map(|i| ((i * 7 + 3) % vocab) as i32).collect();
        Tensor::from_data(TensorData::new(data, [b, t]), &Default::default())
    }

    #[test]
    fn presets_and_overrides() {
        let c = GptConfig::preset("distilgpt2").unwrap();
        assert_eq!(
            (c.n_layer, c.n_embd, c.n_head, c.vocab_size),
            (6, 768, 12, 50_259)
        );
        assert!(GptConfig::preset("gpt3").is_err());
        let err = GptConfig::preset("gpt2")
            .unwrap()
            .with_overrides(None, Some(100), Some(3));
        assert!(err.unwrap_err().to_string().contains("divisible"));
        // HF reports 124,439,808 parameters for gpt2 (vocab 50,257).
        let mut g = GptConfig::preset("gpt2").unwrap();
        g.vocab_size = GPT2_HF_VOCAB;
        assert_eq!(g.num_params(), 124_439_808);
    }

    #[test]
    fn init_is_seeded_and_counts_match() {
        let cfg = tiny();
        let a = cfg.init::<B>(&Default::default(), 7);
        let b = cfg.init::<B>(&Default::default(), 7);
        let c = cfg.init::<B>(&Default::default(), 8);
        assert_eq!(a.num_params(), cfg.num_params());
        let w = |m: &Gpt<B>| {
            m.h[0]
                .attn
                .c_attn
                .weight
                .val()
                .into_data()
                .to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(w(&a), w(&b));
        assert_ne!(w(&a), w(&c));
        let std = {
            let v = w(&a);
            (v.iter().map(|x| (x * x) as f64).sum::<f64>() / v.len() as f64).sqrt()
        };
        assert!((std - 0.02).abs() < 0.003, "init std {std}");
    }

    #[test]
    fn causal_and_cached_forward_match_full_recompute() {
        let cfg = tiny();
        let model = cfg.init::<B>(&Default::default(), 1);
        let x = ids(2, 12, cfg.vocab_size);
        let full = model.forward(x.clone()); // [2, 12, V]
                                             // Causality: changing the last token must not change earlier logits.
        let mut data = x.clone().into_data().to_vec::<i32>().unwrap();
        data[11] = (data[11] + 1) % cfg.vocab_size as i32;
        data[23] = (data[23] + 1) % cfg.vocab_size as i32;
        let x2 =
            Tensor::<B, 2, Int>::from_data(TensorData::new(data, [2, 12]), &Default::default());
        let changed = model.forward(x2);
        let d = (full.clone().narrow(1, 0, 11) - changed.narrow(1, 0, 11))
            .abs()
            .max()
            .into_scalar();
        assert!(d < 1e-6, "earlier positions changed by {d}");

        // Cached: a prompt of 5, then one token at a time, then a chunk of 3.
        let mut cache = KvCache::new();
        let mut pieces = vec![model
            .forward_cached(x.clone().narrow(1, 0, 5), &mut cache)
            .unwrap()];
        for i in 5..9 {
            pieces.push(
                model
                    .forward_cached(x.clone().narrow(1, i, 1), &mut cache)
                    .unwrap(),
            );
        }
        pieces.push(
            model
                .forward_cached(x.clone().narrow(1, 9, 3), &mut cache)
                .unwrap(),
        );
        assert_eq!(cache.len(), 12);
        let cached = Tensor::cat(pieces, 1);
        let diff = (cached - full).abs().max().into_scalar();
        println!("cached vs full max abs diff: {diff:e}");
        assert!(diff < 1e-4, "cached logits differ by {diff}");

        let too_long = ids(1, 30, cfg.vocab_size);
        assert!(model.forward_cached(too_long, &mut cache).is_err());
    }

    #[test]
    fn forward_last_is_the_last_row_of_forward_with_and_without_cache() {
        let cfg = tiny();
        let model = cfg.init::<B>(&Default::default(), 3);
        let x = ids(2, 12, cfg.vocab_size);
        let v = cfg.vocab_size;
        let full = model.forward(x.clone()).narrow(1, 11, 1).reshape([2, v]); // [2, V]
        let last = model.forward_last(x.clone(), None).unwrap();
        let diff = (last - full.clone()).abs().max().into_scalar();
        assert!(diff < 1e-5, "uncached last row differs by {diff}");
        let mut cache = KvCache::new();
        model
            .forward_last(x.clone().narrow(1, 0, 8), Some(&mut cache))
            .unwrap();
        let mut out = None;
        for i in 8..12 {
            out = Some(
                model
                    .forward_last(x.clone().narrow(1, i, 1), Some(&mut cache))
                    .unwrap(),
            );
        }
        let diff = (out.unwrap() - full).abs().max().into_scalar();
        println!("forward_last cached vs full: max abs diff {diff:e}");
        assert!(diff < 1e-4, "cached last row differs by {diff}");
        assert_eq!(cache.len(), 12);
        let too_long = ids(2, cfg.n_positions, cfg.vocab_size);
        assert!(model.forward_last(too_long, Some(&mut cache)).is_err());
    }

    #[test]
    fn loss_of_uniform_model_is_log_vocab() {
        // With all weights zero the logits are zero: the loss is exactly ln(V).
        let cfg = tiny();
        let model = cfg.init::<B>(&Default::default(), 1);
        let zero = model.map(&mut Zero);
        let loss = zero.loss(ids(3, 10, cfg.vocab_size)).into_scalar();
        assert!(
            (loss as f64 - (cfg.vocab_size as f64).ln()).abs() < 1e-5,
            "loss {loss}"
        );
    }

    struct Zero;
    impl<B: Backend> ModuleMapper<B> for Zero {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            param.map(|t| t.zeros_like())
        }
    }
}
