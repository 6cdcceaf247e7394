//! AdamW as PyTorch/HF Trainer run it (decoupled weight decay skipping biases and LayerNorm,
//! global grad-norm clipping) and the linear learning-rate schedule with warmup.

use std::collections::HashMap;

use anyhow::{bail, Result};
use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData, TensorPrimitive};

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
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
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
    pub fn step<AB, M>(&mut self, model: M, mut grads: GradientsParams, lr: f64) -> (M, StepInfo)
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
        let grad_norm = norm
            .total
            .map(|t| t.into_scalar().elem::<f64>().sqrt())
            .unwrap_or(0.0);
        let coef = match self.config.max_grad_norm {
            // torch.nn.utils.clip_grad_norm_: scale by max / (norm + 1e-6), never above 1.
            Some(max) => (max / (grad_norm + 1e-6)).min(1.0),
            None => 1.0,
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
        (model, StepInfo { grad_norm })
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

impl<AB: AutodiffBackend> ModuleVisitor<AB> for SquaredNorm<'_, AB::InnerBackend> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        if let Some(g) = self.grads.get::<AB::InnerBackend, D>(param.id) {
            // Row sums first: a multithreaded CPU backend may split one big flat sum (Flex does
            // from 4M elements, e.g. the 50k x 128 embedding) differently run to run, and the
            // clip coefficient would then differ in the last bit; per-row sums are each done by
            // one thread, and the sum of rows is short enough to stay sequential.
            let n = g.shape().num_elements();
            let cols = g.dims().last().copied().unwrap_or(1).max(1);
            let s = g.reshape([n / cols, cols]).powi_scalar(2).sum_dim(1).sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

struct Update<'a, B: Backend> {
    opt: &'a mut AdamW<B>,
    grads: &'a mut GradientsParams,
    path: Vec<String>,
    lr: f64,
    coef: f64,
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
        let g = prim(grad.reshape([n]));
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
            grad_scale: self.coef as f32,
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
    fn decay_rule() {
        assert!(decays("h.0.attn.c_attn.weight"));
        assert!(decays("wte.weight"));
        assert!(!decays("h.0.attn.c_attn.bias"));
        assert!(!decays("ln_f.gamma"));
        assert!(!decays("h.1.ln_2.beta"));
    }
}
