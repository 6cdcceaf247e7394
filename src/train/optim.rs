//! AdamW as PyTorch/HF Trainer run it (decoupled weight decay skipping biases and LayerNorm,
//! global grad-norm clipping) and the linear learning-rate schedule with warmup.

use std::collections::HashMap;

use anyhow::{bail, Result};
use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData, TensorPrimitive};
use serde::{Deserialize, Serialize};

use crate::checkpoint::NamedTensor;
use crate::fused::{AdamWStep, FusedOps};

/// AdamW hyperparameters (PyTorch's defaults set explicitly, not Burn's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Global L2 norm over all gradients above which they are scaled down (`clip_grad_norm_`).
    pub max_grad_norm: Option<f64>,
}

impl AdamWConfig {
    pub fn new(weight_decay: f64) -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            max_grad_norm: Some(1.0),
        }
    }
}

/// HF Trainer's rule: no weight decay on biases and LayerNorm parameters.
pub fn decays(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    !(last == "bias" || last == "gamma" || last == "beta")
}

/// The optimizer: moments keyed by parameter path (stable across runs, so they checkpoint by name).
pub struct AdamW<B: Backend> {
    pub config: AdamWConfig,
    /// Optimizer steps taken (PyTorch's `step` for bias correction).
    pub steps: u64,
    moments: HashMap<String, (Tensor<B, 1>, Tensor<B, 1>)>,
}

/// What one step did.
#[derive(Debug, Clone)]
pub struct StepInfo<B: Backend> {
    /// Sum of squares of every gradient before clipping, still on the device: reading it waits
    /// for the step.
    pub squared_norm: Option<Tensor<B, 1>>,
}

impl<B: Backend> StepInfo<B> {
    /// The global gradient norm before clipping (a read from the device).
    pub fn grad_norm(&self) -> f64 {
        self.squared_norm
            .clone()
            .map(|t| t.into_scalar().elem::<f64>().sqrt())
            .unwrap_or(0.0)
    }
}

/// Dynamic loss scaling for f16 autocast, with `torch.amp.GradScaler`'s defaults (what HF
/// Trainer's `--fp16` uses). f16 gradients below ~6e-8 flush to zero, and a language model's
/// are that small (the loss is a mean over thousands of tokens), so the loss is multiplied by a
/// large scale before the backward pass and the gradients divided by it before the update. The
/// scale halves after a step whose gradients overflowed (that step is skipped) and doubles after
/// `GROWTH_INTERVAL` steps in a row that did not.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    pub scale: f64,
    /// Applied steps since the scale last changed.
    pub good_steps: u64,
}

impl LossScaler {
    pub const INIT: f64 = 65_536.0;
    pub const GROWTH_INTERVAL: u64 = 2000;

    pub fn new() -> Self {
        Self {
            scale: Self::INIT,
            good_steps: 0,
        }
    }

    /// After a step: `applied` false means its gradients overflowed.
    pub fn update(&mut self, applied: bool) {
        if !applied {
            self.scale *= 0.5;
            self.good_steps = 0;
        } else {
            self.good_steps += 1;
            if self.good_steps == Self::GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        }
    }
}

impl Default for LossScaler {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Backend> AdamW<B> {
    pub fn new(config: AdamWConfig) -> Self {
        Self {
            config,
            steps: 0,
            moments: HashMap::new(),
        }
    }

    /// One update of `model` with `grads` (already averaged over micro-batches) at rate `lr`.
    /// Nothing is read back from the device on a GPU backend ([`FusedOps::ASYNC`]), so the step
    /// queues behind the backward pass without a stall, as `clip_grad_norm_` does in PyTorch.
    pub fn step<AB, M>(&mut self, model: M, grads: GradientsParams, lr: f64) -> (M, StepInfo<B>)
    where
        B: FusedOps,
        AB: AutodiffBackend<InnerBackend = B>,
        M: AutodiffModule<AB>,
    {
        let (model, info, _) = self.step_clipping(model, grads, lr, None, B::ASYNC);
        (model, info)
    }

    /// [`AdamW::step`] for gradients of a loss multiplied by `loss_scale` (f16 autocast, see
    /// [`LossScaler`]): they are unscaled before clipping, and a step whose gradients overflowed
    /// is skipped, as `torch.amp.GradScaler.step` does. Returns whether the step was applied.
    /// Deciding that reads the norm back, one wait per step, as PyTorch's scaler does too.
    pub fn step_scaled<AB, M>(
        &mut self,
        model: M,
        grads: GradientsParams,
        lr: f64,
        loss_scale: f64,
    ) -> (M, StepInfo<B>, bool)
    where
        B: FusedOps,
        AB: AutodiffBackend<InnerBackend = B>,
        M: AutodiffModule<AB>,
    {
        self.step_clipping(model, grads, lr, Some(loss_scale), false)
    }

    /// The step, with the clipping coefficient computed on the device (`on_device`) or on the
    /// host; both are tested on the CPU.
    fn step_clipping<AB, M>(
        &mut self,
        model: M,
        mut grads: GradientsParams,
        lr: f64,
        loss_scale: Option<f64>,
        on_device: bool,
    ) -> (M, StepInfo<B>, bool)
    where
        B: FusedOps,
        AB: AutodiffBackend<InnerBackend = B>,
        M: AutodiffModule<AB>,
    {
        let mut norm = SquaredNorm::<B> {
            grads: &grads,
            total: None,
        };
        model.visit(&mut norm);
        let mut squared_norm = norm.total;
        if let Some(s) = loss_scale {
            squared_norm = squared_norm.map(|n| n / (s * s));
        }
        // torch.nn.utils.clip_grad_norm_: scale by max / (norm + 1e-6), never above 1.
        let coef = match (self.config.max_grad_norm, &squared_norm) {
            (Some(max), Some(s)) if on_device => {
                Scale::Device((s.clone().sqrt().add_scalar(1e-6).recip() * max).clamp_max(1.0))
            }
            (max, Some(s)) if max.is_some() || loss_scale.is_some() => {
                let n = s.clone().into_scalar().elem::<f64>().sqrt();
                if loss_scale.is_some() && !n.is_finite() {
                    // Overflowed (or NaN) scaled gradients: no update, no moment change, no step
                    // count. Unscaled ones are applied, and the trainer's loss check stops the
                    // trial as diverged.
                    return (model, StepInfo { squared_norm }, false);
                }
                let clip = max.map_or(1.0, |max| (max / (n + 1e-6)).min(1.0));
                Scale::Host(clip / loss_scale.unwrap_or(1.0))
            }
            _ => Scale::Host(1.0 / loss_scale.unwrap_or(1.0)),
        };
        self.steps += 1;
        let t = self.steps as i32;
        let bc1 = 1.0 - self.config.beta1.powi(t);
        let bc2 = 1.0 - self.config.beta2.powi(t);
        let mut update = Update::<B> {
            opt: self,
            grads: &mut grads,
            path: Vec::new(),
            lr,
            coef,
            bc1,
            bc2,
        };
        let model = model.map(&mut update);
        (model, StepInfo { squared_norm }, true)
    }

    /// The moments as named tensors (`exp_avg.<path>`, `exp_avg_sq.<path>`), for checkpoints.
    pub fn to_named(&self) -> Vec<NamedTensor> {
        let mut out = Vec::new();
        let mut keys: Vec<&String> = self.moments.keys().collect();
        keys.sort();
        for k in keys {
            let (m, v) = &self.moments[k];
            for (prefix, t) in [("exp_avg", m), ("exp_avg_sq", v)] {
                out.push(NamedTensor {
                    name: format!("{prefix}.{k}"),
                    shape: t.dims().to_vec(),
                    data: t
                        .to_data()
                        .convert::<f32>()
                        .to_vec::<f32>()
                        .expect("f32 data"),
                });
            }
        }
        out
    }

    /// Restores moments written by [`AdamW::to_named`] and the step count.
    pub fn load_named(
        &mut self,
        tensors: Vec<NamedTensor>,
        steps: u64,
        device: &B::Device,
    ) -> Result<()> {
        let mut m: HashMap<String, Tensor<B, 1>> = HashMap::new();
        let mut v: HashMap<String, Tensor<B, 1>> = HashMap::new();
        for t in tensors {
            let n = t.data.len();
            let tensor = Tensor::<B, 1>::from_data(TensorData::new(t.data, [n]), device);
            if let Some(k) = t.name.strip_prefix("exp_avg_sq.") {
                v.insert(k.to_string(), tensor);
            } else if let Some(k) = t.name.strip_prefix("exp_avg.") {
                m.insert(k.to_string(), tensor);
            } else {
                bail!("unexpected optimizer tensor `{}`", t.name);
            }
        }
        self.moments.clear();
        for (k, mt) in m {
            let Some(vt) = v.remove(&k) else {
                bail!("optimizer state has exp_avg.{k} but no exp_avg_sq.{k}");
            };
            self.moments.insert(k, (mt, vt));
        }
        if let Some(k) = v.keys().next() {
            bail!("optimizer state has exp_avg_sq.{k} but no exp_avg.{k}");
        }
        self.steps = steps;
        Ok(())
    }
}

/// Sum of squares of every gradient, kept on the device until one read.
struct SquaredNorm<'a, B: Backend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B, 1>>,
}

impl<AB: AutodiffBackend<InnerBackend: FusedOps>> ModuleVisitor<AB>
    for SquaredNorm<'_, AB::InnerBackend>
{
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        if let Some(g) = self.grads.get::<AB::InnerBackend, D>(param.id) {
            let s = if AB::InnerBackend::ASYNC {
                // One reduction kernel per parameter on a GPU, where each launch costs host time
                // (bench/RESULTS.md, GPU); its summation order is fixed by the kernel.
                g.powi_scalar(2).sum()
            } else {
                // Row sums first: a multithreaded CPU backend may split one big flat sum (Flex
                // does from 4M elements, e.g. the 50k x 128 embedding) differently run to run,
                // and the clip coefficient would then differ in the last bit; per-row sums are
                // each done by one thread, and the sum of rows is short enough to stay sequential.
                let n = g.shape().num_elements();
                let cols = g.dims().last().copied().unwrap_or(1).max(1);
                g.reshape([n / cols, cols]).powi_scalar(2).sum_dim(1).sum()
            };
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

/// The clipping coefficient: a host scalar where reading the norm was free, else a `[1]` tensor
/// that scales each gradient on the device.
enum Scale<B: Backend> {
    Host(f64),
    Device(Tensor<B, 1>),
}

struct Update<'a, B: Backend> {
    opt: &'a mut AdamW<B>,
    grads: &'a mut GradientsParams,
    path: Vec<String>,
    lr: f64,
    coef: Scale<B>,
    bc1: f64,
    bc2: f64,
}

impl<AB: AutodiffBackend<InnerBackend: FusedOps>> ModuleMapper<AB>
    for Update<'_, AB::InnerBackend>
{
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<AB, D>>) -> Param<Tensor<AB, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<AB::InnerBackend, D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let c = self.opt.config;
        let name = self.path.join(".");
        let dims = tensor.dims();
        let n: usize = dims.iter().product();
        let require_grad = tensor.is_require_grad();
        let device = tensor.device();
        let prim = |t: Tensor<AB::InnerBackend, 1>| t.into_primitive().tensor();
        let p = prim(tensor.inner().reshape([n])); // [N]
        let (g, grad_scale) = match &self.coef {
            Scale::Host(c) => (grad.reshape([n]), *c as f32),
            Scale::Device(c) => (grad.reshape([n]) * c.clone(), 1.0),
        };
        let g = prim(g);
        let (m, v) = match self.opt.moments.remove(&name) {
            Some((m, v)) => (prim(m), prim(v)),
            None => {
                let zeros = || prim(Tensor::zeros([n], &device));
                (zeros(), zeros())
            }
        };
        let decay = if c.weight_decay != 0.0 && decays(&name) {
            1.0 - self.lr * c.weight_decay
        } else {
            1.0
        };
        // The scalars in f64, as PyTorch's are, then one f32 rounding each.
        let step = AdamWStep {
            grad_scale,
            beta1: c.beta1 as f32,
            one_minus_beta1: (1.0 - c.beta1) as f32,
            beta2: c.beta2 as f32,
            one_minus_beta2: (1.0 - c.beta2) as f32,
            eps: c.eps as f32,
            decay: decay as f32,
            step_size: (self.lr / self.bc1) as f32,
            bc2_sqrt: self.bc2.sqrt() as f32,
        };
        let (p, m, v) = AB::InnerBackend::adamw_step(p, g, m, v, step);
        let t = |x| Tensor::<AB::InnerBackend, 1>::from_primitive(TensorPrimitive::Float(x));
        let p = t(p);
        self.opt.moments.insert(name, (t(m), t(v)));
        let mut t = Tensor::<AB, D>::from_inner(p.reshape(dims));
        if require_grad {
            t = t.require_grad();
        }
        Param::from_mapped_value(id, t, mapper)
    }
}

/// Linear warmup from 0 to `peak` over `warmup` steps, then linear decay to 0 at `total` steps
/// (HF `get_linear_schedule_with_warmup`). `step` counts optimizer steps already taken.
pub fn linear_lr(peak: f64, step: u64, warmup: u64, total: u64) -> f64 {
    if step < warmup {
        return peak * step as f64 / warmup.max(1) as f64;
    }
    let left = total.saturating_sub(step) as f64;
    peak * (left / total.saturating_sub(warmup).max(1) as f64).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_matches_hf() {
        // get_linear_schedule_with_warmup(warmup=2, total=10) multipliers.
        let got: Vec<f64> = (0..11).map(|s| linear_lr(1.0, s, 2, 10)).collect();
        let want = [
            0.0, 0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0,
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
        assert_eq!(linear_lr(1e-3, 0, 0, 4), 1e-3);
    }

    #[test]
    fn clipping_on_the_device_matches_clipping_on_the_host() {
        let cfg = small();
        let device = Default::default();
        let ids = token_ids(2, 12, cfg.vocab_size);
        let params = |on_device: bool, max: f64| {
            let model = cfg.init::<TB>(&device, 3);
            let mut opt = AdamW::new(AdamWConfig {
                max_grad_norm: Some(max),
                ..AdamWConfig::new(0.01)
            });
            let mut norms = Vec::new();
            let mut model = model;
            for _ in 0..2 {
                let grads = GradientsParams::from_grads(model.loss(ids.clone()).backward(), &model);
                let (m, info, _) = opt.step_clipping(model, grads, 1e-2, None, on_device);
                norms.push(info.grad_norm());
                model = m;
            }
            (flat_params(&model), norms)
        };
        assert_ne!(
            params(false, 0.05).0,
            params(false, 1e-12).0,
            "the clipping coefficient changes the result, so comparing them means something"
        );
        // 0.05 clips every step here (norms ~2-4); 1e9 never does.
        for max in [0.05, 1e9] {
            let ((host, hn), (dev, dn)) = (params(false, max), params(true, max));
            assert!(hn[0] > 0.1 && hn[0] < 1e3, "{hn:?}");
            assert_eq!(hn[0], dn[0], "same first gradients, same norm");
            let diff = host
                .iter()
                .zip(&dev)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            eprintln!("max {max}: largest parameter difference {diff:e}");
            // The coefficient is rounded once from f64 on the host and computed in f32 on the
            // device: a few ulps apart, never a different update.
            assert!(diff < 1e-6, "max {max}: {diff}");
        }
    }

    #[test]
    fn loss_scaler_follows_grad_scaler() {
        let mut s = LossScaler::new();
        assert_eq!(s.scale, 65_536.0);
        s.update(false);
        assert_eq!((s.scale, s.good_steps), (32_768.0, 0));
        for _ in 0..LossScaler::GROWTH_INTERVAL - 1 {
            s.update(true);
        }
        assert_eq!((s.scale, s.good_steps), (32_768.0, 1999));
        s.update(true);
        assert_eq!((s.scale, s.good_steps), (65_536.0, 0));
        s.update(true);
        s.update(false);
        assert_eq!((s.scale, s.good_steps), (32_768.0, 0));
    }

    type TB = crate::backend::CpuTrain;

    fn small() -> crate::model::GptConfig {
        crate::model::GptConfig {
            vocab_size: 61,
            n_positions: 32,
            n_embd: 16,
            n_layer: 2,
            n_head: 4,
            dropout: 0.0,
            layer_norm_epsilon: 1e-5,
        }
    }

    fn token_ids(b: usize, t: usize, vocab: usize) -> Tensor<TB, 2, burn::tensor::Int> {
        let data: Vec<i32> = (0..b * t).map(|i| ((i * 7 + 3) % vocab) as i32).collect();
        Tensor::from_data(TensorData::new(data, [b, t]), &Default::default())
    }

    fn flat_params(model: &crate::model::Gpt<TB>) -> Vec<f32> {
        crate::checkpoint::hf_tensors(model)
            .into_iter()
            .flat_map(|t| t.data)
            .collect()
    }

    #[test]
    fn a_scaled_step_equals_the_plain_one_and_an_overflowed_one_is_skipped() {
        let cfg = small();
        let ids = token_ids(2, 12, cfg.vocab_size);
        let run = |scale: Option<f64>| {
            let model = cfg.init::<TB>(&Default::default(), 3);
            let mut opt = AdamW::new(AdamWConfig::new(0.01));
            let loss = model.loss(ids.clone());
            let loss = match scale {
                Some(s) => loss * s,
                None => loss,
            };
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let (model, info, applied) = match scale {
                Some(s) => opt.step_scaled(model, grads, 1e-2, s),
                None => {
                    let (m, i) = opt.step(model, grads, 1e-2);
                    (m, i, true)
                }
            };
            (flat_params(&model), info.grad_norm(), applied, opt.steps)
        };
        let (plain, norm, _, _) = run(None);
        let (scaled, scaled_norm, applied, steps) = run(Some(65_536.0));
        assert!(applied && steps == 1);
        assert!(
            (norm - scaled_norm).abs() < 1e-5 * norm,
            "{norm} vs {scaled_norm}"
        );
        let diff = plain
            .iter()
            .zip(&scaled)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-6, "scaled step differs by {diff}");
        // 1e38 overflows f32 gradients: the step is skipped, nothing moves.
        let (skipped, norm, applied, steps) = run(Some(1e38));
        let init = flat_params(&cfg.init::<TB>(&Default::default(), 3));
        assert!(!applied && steps == 0 && !norm.is_finite(), "{norm}");
        assert_eq!(skipped, init);
        // Without a loss scale the same overflow is applied, not skipped in silence: the
        // trainer's loss check then stops the trial as diverged.
        let model = cfg.init::<TB>(&Default::default(), 3);
        let mut opt = AdamW::new(AdamWConfig::new(0.01));
        let grads =
            GradientsParams::from_grads((model.loss(ids.clone()) * 1e38).backward(), &model);
        let (model, _) = opt.step(model, grads, 1e-2);
        assert_eq!(opt.steps, 1);
        assert_ne!(flat_params(&model), init);
    }

    /// The reason for the scaler: under f16 autocast a language model's small gradients lose
    /// their bits in f16 (flushed to zero or left subnormal); scaled, they keep f16's precision.
    /// gpt2 at 8 x 1024 tokens averages its loss over 8,192 positions and 50,259 logits each;
    /// this model is small, so its loss is weighted by 1/4096 to give gradients of that size.
    #[test]
    fn loss_scaling_keeps_f16_gradients_close_to_f32() {
        use crate::trial::Precision;
        use burn::module::Module;
        let mut cfg = small();
        cfg.vocab_size = 3000;
        let ids = token_ids(4, 32, cfg.vocab_size);
        let weight = 1.0 / 4096.0;
        let grads_of = |precision: Precision, scale: f64| -> Vec<f64> {
            let model = cfg
                .init::<TB>(&Default::default(), 5)
                .with_precision(precision);
            let grads = (model.loss(ids.clone()) * (weight * scale)).backward();
            let mut out = Vec::new();
            let mut visit = GradsFlat {
                grads: &grads,
                out: &mut out,
            };
            model.visit(&mut visit);
            out.iter().map(|g| *g as f64 / (weight * scale)).collect()
        };
        let reference = grads_of(Precision::F32, 1.0);
        let rel_err = |g: Vec<f64>| {
            let num: f64 = g.iter().zip(&reference).map(|(a, b)| (a - b).powi(2)).sum();
            let den: f64 = reference.iter().map(|b| b * b).sum();
            (num / den).sqrt()
        };
        let unscaled = rel_err(grads_of(Precision::F16, 1.0));
        let scaled = rel_err(grads_of(Precision::F16, LossScaler::INIT));
        eprintln!(
            "f16 gradients vs f32: relative error {unscaled:.2e} unscaled, {scaled:.2e} scaled"
        );
        assert!(scaled < 5e-3, "{scaled}");
        assert!(unscaled > 4.0 * scaled, "{unscaled} vs {scaled}");
    }

    struct GradsFlat<'a> {
        grads: &'a <TB as AutodiffBackend>::Gradients,
        out: &'a mut Vec<f32>,
    }

    impl ModuleVisitor<TB> for GradsFlat<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<TB, D>>) {
            if let Some(g) = param.val().grad(self.grads) {
                self.out.extend(g.into_data().to_vec::<f32>().unwrap());
            }
        }
    }

    #[test]
    fn decay_rule() {
        assert!(decays("h.0.attn.c_attn.weight"));
        assert!(decays("wte.weight"));
        assert!(!decays("h.0.attn.c_attn.bias"));
        assert!(!decays("ln_f.gamma"));
        assert!(!decays("h.1.ln_2.beta"));
    }
}
