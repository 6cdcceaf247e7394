//! The trainer's fused Burn ops: the LM loss, GPT-2's tanh GELU, causal attention softmax,
//! dropout and the tied LM head's matmul, each one op with its own backward instead of a chain
//! of tensor ops for autodiff to differentiate; and the AdamW update as one pass.
//!
//! Why: built from Burn's tensor ops, the loss leaves autodiff ~14 full-size passes over the
//! `[N, V]` logits (shift, exp, sum, gather and their backwards, exp computed twice), GELU ~20
//! over the `[B, T, 4C]` activations, and each dropout draws its mask from one serial RNG and
//! multiplies twice. With a 50,259-word vocabulary the logits are the largest tensors of a step
//! (200 MB at 1,024 tokens). On the CPU (Flex) these chains cost as much as all other non-matmul
//! work (bench/RESULTS.md, Trainer). Here the loss keeps its softmax for a one-pass backward
//! `(softmax - onehot) / N`, GELU is one pass each way, and a mask is one parallel pass.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Distribution, FloatDType, TensorMetadata, TensorPrimitive};

/// Backends that run the model's fused ops (every backend sweep builds with). The defaults
/// ([`generic`]) are built from Burn's primitive ops and work on any backend; Flex overrides them
/// with one-pass row-parallel kernels, and `Autodiff` gives each its backward.
pub trait FusedOps: Backend {
    /// Whether reading a scalar back to the host stalls a queue of asynchronous work (GPUs). The
    /// optimizer then keeps the clipping coefficient on the device instead of reading the grad
    /// norm mid-step; on the CPU backends every op has already run, so reading is free and the
    /// coefficient is computed in f64 as PyTorch's is.
    const ASYNC: bool = false;

    /// `(mean loss [1], softmax [N, V])` of logits `[N, V]` and targets `[N, 1]`.
    fn lm_loss_and_probs(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        generic::lm_loss_and_probs::<Self>(logits, targets)
    }

    /// Mean over rows of `logsumexp(logits[i]) - logits[i, targets[i]]`: logits `[N, V]`,
    /// targets `[N, 1]`, result `[1]`.
    fn lm_loss(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        Self::lm_loss_and_probs(logits, targets).0
    }

    /// GPT-2's `gelu_new`: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
    fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        generic::gelu_tanh::<Self>(x)
    }

    /// The gradient of [`FusedOps::gelu_tanh`] at `x`, times `grad`.
    fn gelu_tanh_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        generic::gelu_tanh_backward::<Self>(x, grad)
    }

    /// Causal attention probabilities: `softmax(scale * scores)` over each row of `scores`
    /// `[B, H, T, Tk]`, with query `i` seeing keys `j <= i + Tk - T` (the rest 0).
    fn causal_softmax(scores: FloatTensor<Self>, scale: f64) -> FloatTensor<Self> {
        generic::causal_softmax::<Self>(scores, scale)
    }

    /// The gradient of [`FusedOps::causal_softmax`] from its output `probs` and the output's
    /// gradient: `scale * probs * (grad - rowsum(grad * probs))` (0 where masked, as probs are).
    fn causal_softmax_backward(
        probs: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        generic::causal_softmax_backward::<Self>(probs, grad, scale)
    }

    /// `a @ b^T` for `a` `[N, K]` and `b` `[M, K]`: the tied LM head (`b` the token embedding).
    /// Under autodiff both gradients come out contiguous (`g @ b`, `g^T @ a`); through Burn's
    /// `matmul(a, b.transpose())` the embedding's gradient is a transposed view, which made
    /// adding it to the lookup's gradient a strided pass over `[V, C]` every step.
    fn matmul_nt(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(a, Self::float_transpose(b))
    }

    /// One AdamW update of a flat parameter `[N]` with its gradient and moments (all `[N]`):
    /// returns the new `(param, exp_avg, exp_avg_sq)`. See [`AdamWStep`] for the formula.
    fn adamw_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        exp_avg: FloatTensor<Self>,
        exp_avg_sq: FloatTensor<Self>,
        s: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        generic::adamw_step::<Self>(param, grad, exp_avg, exp_avg_sq, s)
    }

    /// A dropout mask of `shape`: each element `1 / keep` with probability `keep`, else 0, drawn
    /// from the backend's RNG (which the trainer reseeds every step, so a resumed run draws the
    /// same masks).
    fn dropout_mask(shape: Shape, keep: f64, device: &Self::Device) -> FloatTensor<Self> {
        let mask = Self::float_random(
            shape,
            Distribution::Bernoulli(keep),
            device,
            FloatDType::F32,
        );
        Self::float_mul_scalar(mask, (1.0 / keep).into())
    }

    /// Whether the backend runs [`FusedOp`]s itself, forward and backward (LibTorch, through
    /// its own kernels and autograd). Where it does not (the default), the model keeps the
    /// separate ops above, so those backends compute exactly what they did before the seam.
    const OWN_OPS: bool = false;

    /// `op` of `inputs` without a backward (inference, or inputs that need no gradient). The
    /// default computes it from Burn's ops ([`generic::fused_op`]).
    fn fused_op(op: FusedOp, inputs: [FloatTensor<Self>; 3]) -> FloatTensor<Self> {
        generic::fused_op::<Self>(op, inputs)
    }

    /// `op` of `inputs` keeping what [`FusedOps::fused_op_backward`] needs: `(output, state)`.
    /// Only called where [`FusedOps::OWN_OPS`] holds.
    fn fused_op_tracked(
        op: FusedOp,
        inputs: [FloatTensor<Self>; 3],
    ) -> (FloatTensor<Self>, Vec<FloatTensor<Self>>) {
        (Self::fused_op(op, inputs), Vec::new())
    }

    /// The inputs' gradients from the state of [`FusedOps::fused_op_tracked`] and the output's
    /// gradient. Only called where [`FusedOps::OWN_OPS`] holds; the default has no state to work
    /// from and panics.
    fn fused_op_backward(
        op: FusedOp,
        state: Vec<FloatTensor<Self>>,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        let _ = (state, grad);
        panic!("{op:?}: fused_op_backward is only for backends with OWN_OPS")
    }
}

/// Ops of three float inputs that a backend with [`FusedOps::OWN_OPS`] runs as one op with its
/// own backward, where Burn's autodiff would otherwise decompose them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FusedOp {
    /// `dropout(softmax(scale * q k^T + causal mask)) v` for `[q, k, v]` (`[B, H, T, D]`,
    /// `[B, H, Tk, D]`, `[B, H, Tk, D]`), query `i` seeing keys `j <= i + Tk - T`; the matmuls in
    /// `low` (autocast: inputs cast down, output back in f32) when set.
    CausalAttention {
        scale: f64,
        dropout: f64,
        low: Option<FloatDType>,
    },
    /// LayerNorm over the last dimension of `[x, gamma, beta]`.
    LayerNorm { epsilon: f64 },
}

/// The scalars of one AdamW update, as torch.optim.AdamW (non-fused) applies them:
/// `g = grad_scale * grad` (the clipping coefficient), `m = beta1 m + (1 - beta1) g`,
/// `v = beta2 v + (1 - beta2) g^2`, `p = decay * p` (`1 - lr * weight_decay`, or 1),
/// `p = p - step_size * m / (sqrt(v) / bc2_sqrt + eps)` with `step_size = lr / bc1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    pub grad_scale: f32,
    pub beta1: f32,
    /// `1 - beta1`, computed in f64 as PyTorch's Python scalars are.
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    pub eps: f32,
    pub decay: f32,
    pub step_size: f32,
    pub bc2_sqrt: f32,
}

/// A training backend: autodiff over a backend with the fused ops (the optimizer runs there),
/// and the fused ops with their backwards.
pub trait FusedAutodiff: AutodiffBackend<InnerBackend: FusedOps> + FusedOps {}
impl<B: AutodiffBackend<InnerBackend: FusedOps> + FusedOps> FusedAutodiff for B {}

const GELU_K0: f32 = 0.797_884_6; // sqrt(2 / pi)
const GELU_K1: f32 = 0.044_715;

/// The loss of `logits` `[N, V]` against `targets` `[N, 1]`, through the backend's op.
pub fn lm_loss<B: FusedOps>(logits: Tensor<B, 2>, targets: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    let loss = B::lm_loss(logits.into_primitive().tensor(), targets.into_primitive());
    Tensor::from_primitive(TensorPrimitive::Float(loss))
}

/// `a @ b^T` through the backend's op ([`FusedOps::matmul_nt`]).
pub fn matmul_nt<B: FusedOps>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2> {
    Tensor::from_primitive(TensorPrimitive::Float(B::matmul_nt(
        a.into_primitive().tensor(),
        b.into_primitive().tensor(),
    )))
}

/// GPT-2's tanh GELU through the backend's op.
pub fn gelu_tanh<B: FusedOps, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(B::gelu_tanh(
        x.into_primitive().tensor(),
    )))
}

/// Causal attention probabilities of `scores` `[B, H, T, Tk]` scaled by `scale`, through the
/// backend's op.
pub fn causal_softmax<B: FusedOps>(scores: Tensor<B, 4>, scale: f64) -> Tensor<B, 4> {
    Tensor::from_primitive(TensorPrimitive::Float(B::causal_softmax(
        scores.into_primitive().tensor(),
        scale,
    )))
}

/// Causal self-attention of `q` `[B, H, T, D]` over `k`, `v` `[B, H, Tk, D]` as one op with its
/// own backward ([`FusedOp::CausalAttention`]); only for backends with [`FusedOps::OWN_OPS`].
pub fn causal_attention<B: FusedOps>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    scale: f64,
    dropout: f64,
    low: Option<FloatDType>,
) -> Tensor<B, 4> {
    let op = FusedOp::CausalAttention {
        scale,
        dropout,
        low,
    };
    let p = |t: Tensor<B, 4>| t.into_primitive().tensor();
    Tensor::from_primitive(TensorPrimitive::Float(B::fused_op(op, [p(q), p(k), p(v)])))
}

/// `layer.forward(x)` (`epsilon` the layer's own), through the backend's own LayerNorm where it
/// has one ([`FusedOps::OWN_OPS`]); Burn's (decomposed under autodiff) elsewhere.
pub fn layer_norm<B: FusedOps, const D: usize>(
    layer: &burn::nn::LayerNorm<B>,
    x: Tensor<B, D>,
    epsilon: f64,
) -> Tensor<B, D> {
    match (&layer.beta, B::OWN_OPS) {
        (Some(beta), true) => {
            let op = FusedOp::LayerNorm { epsilon };
            let inputs = [
                x.into_primitive().tensor(),
                layer.gamma.val().into_primitive().tensor(),
                beta.val().into_primitive().tensor(),
            ];
            Tensor::from_primitive(TensorPrimitive::Float(B::fused_op(op, inputs)))
        }
        _ => layer.forward(x),
    }
}

/// Dropout with probability `prob` while training (autodiff on), the identity otherwise. The
/// mask is a constant of the graph, so the backward is one multiply.
pub fn dropout<B: FusedOps, const D: usize>(x: Tensor<B, D>, prob: f64) -> Tensor<B, D> {
    if prob == 0.0 || !B::ad_enabled(&x.device()) {
        return x;
    }
    let mask = B::dropout_mask(x.shape(), 1.0 - prob, &x.device());
    x * Tensor::from_primitive(TensorPrimitive::Float(mask))
}

/// The ops from Burn's primitive ops: the trait's defaults, and the fallback of overrides.
pub mod generic {
    use super::*;

    /// Exact for any logits: `lse = max + ln(sum(exp(x - max)))`.
    pub fn lm_loss_and_probs<B: Backend>(
        logits: FloatTensor<B>,
        targets: IntTensor<B>,
    ) -> (FloatTensor<B>, FloatTensor<B>) {
        let picked = B::float_gather(1, logits.clone(), targets); // [N, 1]
        let max = B::float_max_dim(logits.clone(), 1); // [N, 1]
        let exp = B::float_exp(B::float_sub(logits, max.clone())); // [N, V]
        let sum = B::float_sum_dim(exp.clone(), 1); // [N, 1]
        let lse = B::float_add(B::float_log(sum.clone()), max);
        let loss = B::float_mean(B::float_sub(lse, picked));
        (loss, B::float_div(exp, sum))
    }

    pub fn adamw_step<B: Backend>(
        param: FloatTensor<B>,
        grad: FloatTensor<B>,
        exp_avg: FloatTensor<B>,
        exp_avg_sq: FloatTensor<B>,
        s: AdamWStep,
    ) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
        let t = |x| Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(x));
        let g = t(grad) * s.grad_scale;
        let m = t(exp_avg) * s.beta1 + g.clone() * s.one_minus_beta1;
        let v = t(exp_avg_sq) * s.beta2 + g.clone() * g * s.one_minus_beta2;
        let p = match s.decay {
            1.0 => t(param),
            d => t(param) * d,
        };
        let denom = v.clone().sqrt() / s.bc2_sqrt + s.eps;
        let p = p - m.clone() / denom * s.step_size;
        let prim = |x: Tensor<B, 1>| x.into_primitive().tensor();
        (prim(p), prim(m), prim(v))
    }

    pub fn causal_softmax<B: Backend>(scores: FloatTensor<B>, scale: f64) -> FloatTensor<B> {
        let [b, h, t, tk] = scores.shape().dims();
        let scores = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(scores)) * scale;
        // `tril_mask` is true (masked) where key j > query i + offset: the future.
        let mask = Tensor::<B, 2, Bool>::tril_mask([t, tk], (tk - t) as i64, &scores.device())
            .reshape([1, 1, t, tk])
            .expand([b, h, t, tk]);
        let probs = burn::tensor::activation::softmax(scores.mask_fill(mask, f32::NEG_INFINITY), 3);
        probs.into_primitive().tensor()
    }

    /// [`FusedOp`]s from Burn's ops (under autodiff, differentiated op by op).
    pub fn fused_op<B: FusedOps>(op: FusedOp, [a, b, c]: [FloatTensor<B>; 3]) -> FloatTensor<B> {
        let t = |x| Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(x));
        match op {
            FusedOp::CausalAttention {
                scale,
                dropout,
                low,
            } => {
                let mm = |x: Tensor<B, 4>, y: Tensor<B, 4>| match low {
                    None => x.matmul(y),
                    Some(dt) => x.cast(dt).matmul(y.cast(dt)).cast(FloatDType::F32),
                };
                let scores = mm(t(a), t(b).swap_dims(2, 3));
                let probs = super::causal_softmax(scores, scale);
                mm(super::dropout(probs, dropout), t(c))
                    .into_primitive()
                    .tensor()
            }
            FusedOp::LayerNorm { epsilon } => B::layer_norm(a, b, Some(c), epsilon),
        }
    }

    pub fn causal_softmax_backward<B: Backend>(
        probs: FloatTensor<B>,
        grad: FloatTensor<B>,
        scale: f64,
    ) -> FloatTensor<B> {
        let dot = B::float_sum_dim(B::float_mul(grad.clone(), probs.clone()), 3);
        let d = B::float_mul(probs, B::float_sub(grad, dot));
        B::float_mul_scalar(d, scale.into())
    }

    /// `f` over `x` seen as one flat tensor, shape restored.
    fn flat<B: Backend>(
        x: FloatTensor<B>,
        f: impl FnOnce(Tensor<B, 1>, &dyn Fn(FloatTensor<B>) -> Tensor<B, 1>) -> Tensor<B, 1>,
    ) -> FloatTensor<B> {
        let shape = x.shape();
        let n = shape.num_elements();
        let view = move |t: FloatTensor<B>| {
            Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(B::float_reshape(t, [n].into())))
        };
        let y = f(view(x), &view);
        B::float_reshape(y.into_primitive().tensor(), shape)
    }

    pub fn gelu_tanh<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
        flat::<B>(x, |x, _| {
            let x3 = x.clone() * x.clone() * x.clone();
            let t = ((x3 * GELU_K1 + x.clone()) * GELU_K0).tanh();
            x * (t + 1.0) * 0.5
        })
    }

    pub fn gelu_tanh_backward<B: Backend>(
        x: FloatTensor<B>,
        grad: FloatTensor<B>,
    ) -> FloatTensor<B> {
        flat::<B>(x, |x, view| {
            let x2 = x.clone() * x.clone();
            let t = ((x2.clone() * GELU_K1 + 1.0) * x.clone() * GELU_K0).tanh(); // tanh(u)
            let du = (x2 * (3.0 * GELU_K1) + 1.0) * GELU_K0; // du/dx
            let d = (t.clone() + 1.0) * 0.5 + x * (-(t.clone() * t) + 1.0) * du * 0.5;
            d * view(grad)
        })
    }
}

/// Flex: each op is one row-parallel rayon pass over f32 storage (the [`flex`] kernels), with
/// the generic ops as the fallback for other dtypes. The loss row is `ln(sum) + max - x_t` from
/// the same sweep that writes the softmax, so it stays exact where the target's probability
/// underflows f32.
#[cfg(feature = "flex")]
impl FusedOps for burn::backend::Flex {
    fn lm_loss_and_probs(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        flex::lm_loss_and_probs(&logits, &targets)
            .unwrap_or_else(|| generic::lm_loss_and_probs::<Self>(logits, targets))
    }

    fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        flex::map(&x, None, |x, _, out| flex::gelu(x, out))
            .unwrap_or_else(|| generic::gelu_tanh::<Self>(x))
    }

    fn gelu_tanh_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        flex::map(&x, Some(&grad), flex::gelu_backward)
            .unwrap_or_else(|| generic::gelu_tanh_backward::<Self>(x, grad))
    }

    fn causal_softmax(scores: FloatTensor<Self>, scale: f64) -> FloatTensor<Self> {
        flex::causal_softmax(&scores, scale as f32)
            .unwrap_or_else(|| generic::causal_softmax::<Self>(scores, scale))
    }

    fn causal_softmax_backward(
        probs: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        flex::causal_softmax_backward(&probs, &grad, scale as f32)
            .unwrap_or_else(|| generic::causal_softmax_backward::<Self>(probs, grad, scale))
    }

    fn adamw_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        exp_avg: FloatTensor<Self>,
        exp_avg_sq: FloatTensor<Self>,
        s: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        if flex::same_f32_shape(&[&param, &grad, &exp_avg, &exp_avg_sq]) {
            flex::adamw_step(param, &grad, exp_avg, exp_avg_sq, s)
        } else {
            generic::adamw_step::<Self>(param, grad, exp_avg, exp_avg_sq, s)
        }
    }

    fn dropout_mask(shape: Shape, keep: f64, device: &Self::Device) -> FloatTensor<Self> {
        use burn::tensor::ops::FloatTensorOps;
        // One seed per mask from the backend RNG keeps the trainer's per-step reseeding
        // deterministic; the elements come from a counter-based hash, so any thread split of
        // them gives the same mask.
        let draw = Self::float_random(
            [3].into(),
            Distribution::Uniform(0.0, 1.0),
            device,
            FloatDType::F32,
        );
        let seed = draw
            .to_contiguous()
            .storage::<f32>()
            .iter()
            .fold(0u64, |acc, u| {
                (acc << 21) ^ (u * (1u32 << 21) as f32) as u64
            });
        flex::dropout_mask(shape, keep as f32, seed)
    }
}

/// Row-parallel f32 kernels over Flex's storage.
#[cfg(feature = "flex")]
mod flex {
    use burn::tensor::{Bytes, DType, Shape};
    use burn_flex::{FlexTensor, Layout};
    use rayon::prelude::*;

    use super::{GELU_K0, GELU_K1};
    use crate::util::GOLDEN;

    /// Elements per rayon task: large enough to amortise the task, small for the cache.
    const CHUNK: usize = 1 << 14;

    fn f32_tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
        FlexTensor::new(
            Bytes::from_elems(values),
            Layout::contiguous(shape),
            DType::F32,
        )
    }

    /// `e^x` in a form LLVM vectorises (libm's `expf` is one call per element, and those calls
    /// were a tenth of a distilgpt2 training step): Cephes' `expf`, i.e. `x = n ln2 + r` with
    /// `|r| <= ln2 / 2`, a degree-6 polynomial for `e^r`, and `2^n` built in the exponent bits.
    /// Relative error ~1e-7; NaN stays NaN; below -87.3 (where f32 goes subnormal) it returns
    /// ~1e-38 instead of 0, and above 88 `e^88` (~1.7e38) instead of up to infinity.
    #[inline(always)]
    pub fn exp(x: f32) -> f32 {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const LN2_HI: f32 = 0.693_359_4;
        const LN2_LO: f32 = -2.121_944_4e-4;
        // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer without `round`,
        // which baseline x86-64 has no vector instruction for.
        const ROUND: f32 = 12_582_912.0;
        let x = x.clamp(-87.3, 88.0);
        let n = (x * LOG2E + ROUND) - ROUND;
        let r = x - n * LN2_HI - n * LN2_LO;
        let p = 1.987_569_1e-4_f32;
        let p = p * r + 1.398_199_9e-3;
        let p = p * r + 8.333_452e-3;
        let p = p * r + 4.166_579_6e-2;
        let p = p * r + 1.666_666_5e-1;
        let p = p * r + 5e-1;
        let e = p * r * r + r + 1.0;
        // `wrapping_add`: an overflow check here would keep LLVM from vectorising (`n` is in
        // [-126, 127], so it never wraps).
        e * f32::from_bits(((n as i32).wrapping_add(127) as u32) << 23)
    }

    /// `tanh(x)` and its derivative `1 - tanh(x)^2`, from `e = e^{-2|x|} <= 1`:
    /// `tanh|x| = (1 - e) / (1 + e)`, `1 - tanh^2 = 4e / (1 + e)^2`, so the derivative keeps its
    /// relative precision where `tanh` saturates (no `1 - t*t` cancellation) and nothing
    /// overflows. Absolute error ~2e-7.
    #[inline(always)]
    pub fn tanh_and_derivative(x: f32) -> (f32, f32) {
        let e = exp(-2.0 * x.abs());
        let inv = 1.0 / (1.0 + e);
        (((1.0 - e) * inv).copysign(x), 4.0 * e * inv * inv)
    }

    /// `pub fn $name`, with `$body` compiled twice: for baseline x86-64, which is what the
    /// binary targets, and for AVX-512, taken when the CPU has it (four times the vector width
    /// for these libm-free loops). Both do the same f32 operations (Rust never contracts to FMA,
    /// and the reductions fix their own association), so results do not depend on the CPU.
    macro_rules! wide_kernel {
        ($(#[$m:meta])* fn $name:ident / $baseline:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?
            $body:block) => {
            /// The baseline x86-64 build of the kernel of the same name, for any CPU.
            #[inline(always)]
            pub fn $baseline($($arg: $ty),*) $(-> $ret)? $body

            $(#[$m])*
            pub fn $name($($arg: $ty),*) $(-> $ret)? {
                #[cfg(target_arch = "x86_64")]
                {
                    #[target_feature(enable = "avx512f")]
                    unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                        $baseline($($arg),*)
                    }
                    if std::arch::is_x86_feature_detected!("avx512f") {
                        // SAFETY: the CPU has AVX-512F, checked just above.
                        return unsafe { wide($($arg),*) };
                    }
                }
                $baseline($($arg),*)
            }
        };
    }

    /// Lanes of the reductions below: independent accumulators let LLVM vectorise a float
    /// reduction, which it may not reorder itself.
    const LANES: usize = 16;

    wide_kernel! {
        /// The largest element (NaNs ignored, as `f32::max` does; `-inf` for an empty row).
        fn row_max / row_max_baseline(x: &[f32]) -> f32 {
            let mut acc = [f32::NEG_INFINITY; LANES];
            let chunks = x.chunks_exact(LANES);
            let tail = chunks.remainder();
            for c in chunks {
                for (a, &v) in acc.iter_mut().zip(c) {
                    *a = a.max(v);
                }
            }
            acc.into_iter().chain(tail.iter().copied()).fold(f32::NEG_INFINITY, f32::max)
        }
    }

    wide_kernel! {
        /// `out = exp(scale * x - shift)`, returning the sum of `out`.
        fn exp_sum / exp_sum_baseline(x: &[f32], scale: f32, shift: f32, out: &mut [f32]) -> f32 {
            let mut acc = [0.0f32; LANES];
            for (o, x) in out.chunks_exact_mut(LANES).zip(x.chunks_exact(LANES)) {
                for ((o, &x), a) in o.iter_mut().zip(x).zip(acc.iter_mut()) {
                    *o = exp(x * scale - shift);
                    *a += *o;
                }
            }
            let done = x.len() / LANES * LANES;
            let mut sum: f32 = acc.iter().sum();
            for (o, &x) in out[done..].iter_mut().zip(&x[done..]) {
                *o = exp(x * scale - shift);
                sum += *o;
            }
            sum
        }
    }

    wide_kernel! {
        /// GPT-2's tanh GELU of `x` into `out`.
        fn gelu / gelu_baseline(x: &[f32], out: &mut [f32]) {
            for (o, &x) in out.iter_mut().zip(x) {
                let (t, _) = tanh_and_derivative((GELU_K1 * x * x + 1.0) * x * GELU_K0);
                *o = 0.5 * x * (1.0 + t);
            }
        }
    }

    wide_kernel! {
        /// The GELU's gradient at `x` times `grad`, into `out`.
        fn gelu_backward / gelu_backward_baseline(x: &[f32], grad: &[f32], out: &mut [f32]) {
            for ((o, &x), &g) in out.iter_mut().zip(x).zip(grad) {
                let x2 = x * x;
                let (t, dt) = tanh_and_derivative((GELU_K1 * x2 + 1.0) * x * GELU_K0);
                let du = (3.0 * GELU_K1 * x2 + 1.0) * GELU_K0;
                *o = g * (0.5 * (1.0 + t) + 0.5 * x * dt * du);
            }
        }
    }

    /// `out = softmax(scale * x)`; returns `(scale * max(x), sum of exp(scale * x - that))`,
    /// from which a row's log-sum-exp follows.
    fn softmax_row(x: &[f32], scale: f32, out: &mut [f32]) -> (f32, f32) {
        let shift = row_max(x) * scale;
        let sum = exp_sum(x, scale, shift, out);
        let inv = 1.0 / sum;
        out.iter_mut().for_each(|p| *p *= inv);
        (shift, sum)
    }

    /// [`super::FusedOps::lm_loss_and_probs`] in one row-parallel sweep: per row the max, the
    /// exponentials and their sum, the normalisation, and the row's loss
    /// `ln(sum) + max - x_t`. `None` for other dtypes or out-of-range targets (the generic path
    /// then reports them).
    pub fn lm_loss_and_probs(
        logits: &FlexTensor,
        targets: &FlexTensor,
    ) -> Option<(FlexTensor, FlexTensor)> {
        let shape = logits.layout().shape();
        if logits.dtype() != DType::F32 || shape.num_dims() != 2 {
            return None;
        }
        let [n, v] = shape.dims::<2>();
        let t = targets.to_contiguous();
        if v == 0 || t.layout().shape().num_elements() != n {
            return None;
        }
        let targets: Vec<usize> = match t.dtype() {
            DType::I32 => t.storage::<i32>().iter().map(|&i| i as usize).collect(),
            DType::I64 => t.storage::<i64>().iter().map(|&i| i as usize).collect(),
            _ => return None,
        };
        if targets.iter().any(|&i| i >= v) {
            return None;
        }
        let x = logits.to_contiguous();
        let xs = x.storage::<f32>();
        let mut probs = vec![0.0f32; xs.len()];
        let mut rows = vec![0.0f32; n];
        let rows_per_task = (CHUNK / v).max(1);
        probs
            .par_chunks_mut(rows_per_task * v)
            .zip(xs.par_chunks(rows_per_task * v))
            .zip(rows.par_chunks_mut(rows_per_task))
            .enumerate()
            .for_each(|(c, ((o, x), r))| {
                for (k, ((o, x), r)) in o.chunks_mut(v).zip(x.chunks(v)).zip(r).enumerate() {
                    let (max, sum) = softmax_row(x, 1.0, o);
                    *r = sum.ln() + max - x[targets[c * rows_per_task + k]];
                }
            });
        // Sequential, so the mean does not depend on how rayon split the rows.
        let loss = rows.iter().map(|&r| r as f64).sum::<f64>() / n as f64;
        Some((
            f32_tensor(vec![loss as f32], Shape::new([1])),
            f32_tensor(probs, Shape::new([n, v])),
        ))
    }

    /// `f(x chunk, y chunk, out chunk)` over `x` and an optional same-shape `y` (empty chunks
    /// when absent), in parallel. `None` for dtypes other than f32 or shapes that differ: the
    /// caller takes the generic path.
    pub fn map(
        x: &FlexTensor,
        y: Option<&FlexTensor>,
        f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync,
    ) -> Option<FlexTensor> {
        if x.dtype() != DType::F32 || y.is_some_and(|y| y.dtype() != DType::F32) {
            return None;
        }
        let shape = x.layout().shape().clone();
        if y.is_some_and(|y| *y.layout().shape() != shape) {
            return None;
        }
        let x = x.to_contiguous();
        let xs = x.storage::<f32>();
        let mut out = vec![0.0f32; xs.len()];
        match y {
            Some(y) => {
                let y = y.to_contiguous();
                let ys = y.storage::<f32>();
                out.par_chunks_mut(CHUNK)
                    .zip(xs.par_chunks(CHUNK).zip(ys.par_chunks(CHUNK)))
                    .for_each(|(o, (xs, ys))| f(xs, ys, o));
            }
            None => out
                .par_chunks_mut(CHUNK)
                .zip(xs.par_chunks(CHUNK))
                .for_each(|(o, xs)| f(xs, &[], o)),
        }
        Some(f32_tensor(out, shape))
    }

    pub fn same_f32_shape(ts: &[&FlexTensor]) -> bool {
        ts.iter()
            .all(|t| t.dtype() == DType::F32 && t.layout().shape() == ts[0].layout().shape())
    }

    /// `t` contiguous and, unless its buffer is shared, owning it, so it can be written in place.
    fn owned(t: FlexTensor) -> FlexTensor {
        let c = t.to_contiguous();
        drop(t);
        c
    }

    /// [`super::AdamWStep`] in one pass, in place where the buffers are not shared. The same
    /// f32 operations in the same order as [`super::generic::adamw_step`], so the results are
    /// identical.
    pub fn adamw_step(
        param: FlexTensor,
        grad: &FlexTensor,
        exp_avg: FlexTensor,
        exp_avg_sq: FlexTensor,
        s: super::AdamWStep,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (mut p, mut m, mut v) = (owned(param), owned(exp_avg), owned(exp_avg_sq));
        let g = grad.to_contiguous();
        let gs = g.storage::<f32>();
        let (ps, ms, vs) = (
            p.storage_mut::<f32>(),
            m.storage_mut::<f32>(),
            v.storage_mut::<f32>(),
        );
        ps.par_chunks_mut(CHUNK)
            .zip(ms.par_chunks_mut(CHUNK))
            .zip(vs.par_chunks_mut(CHUNK))
            .zip(gs.par_chunks(CHUNK))
            .for_each(|(((ps, ms), vs), gs)| {
                for (((p, m), v), &g) in ps.iter_mut().zip(ms).zip(vs).zip(gs) {
                    let g = g * s.grad_scale;
                    *m = *m * s.beta1 + g * s.one_minus_beta1;
                    *v = *v * s.beta2 + g * g * s.one_minus_beta2;
                    let denom = v.sqrt() / s.bc2_sqrt + s.eps;
                    *p = *p * s.decay - *m / denom * s.step_size;
                }
            });
        (p, m, v)
    }

    /// Rows of a `[B, H, T, Tk]` f32 tensor with the number of keys each query row sees.
    fn attention_rows(x: &FlexTensor) -> Option<(FlexTensor, usize, usize)> {
        if x.dtype() != DType::F32 || x.layout().shape().num_dims() != 4 {
            return None;
        }
        let dims = x.layout().shape().dims::<4>();
        let (t, tk) = (dims[2], dims[3]);
        (tk >= t && tk > 0).then(|| (x.to_contiguous(), t, tk))
    }

    /// Query row `r` (of `B * H * T`) sees keys `0..=r % T + Tk - T`.
    pub fn causal_softmax(scores: &FlexTensor, scale: f32) -> Option<FlexTensor> {
        let (x, t, tk) = attention_rows(scores)?;
        let xs = x.storage::<f32>();
        let mut out = vec![0.0f32; xs.len()];
        let rows_per_task = (CHUNK / tk).max(1);
        out.par_chunks_mut(rows_per_task * tk)
            .zip(xs.par_chunks(rows_per_task * tk))
            .enumerate()
            .for_each(|(c, (o, xs))| {
                for (k, (o, x)) in o.chunks_mut(tk).zip(xs.chunks(tk)).enumerate() {
                    let seen = (c * rows_per_task + k) % t + tk - t + 1;
                    let (o, x) = (&mut o[..seen], &x[..seen]);
                    softmax_row(x, scale, o);
                }
            });
        Some(f32_tensor(out, x.layout().shape().clone()))
    }

    pub fn causal_softmax_backward(
        probs: &FlexTensor,
        grad: &FlexTensor,
        scale: f32,
    ) -> Option<FlexTensor> {
        let (y, _, tk) = attention_rows(probs)?;
        if grad.dtype() != DType::F32 || grad.layout().shape() != y.layout().shape() {
            return None;
        }
        let g = grad.to_contiguous();
        let (ys, gs) = (y.storage::<f32>(), g.storage::<f32>());
        let mut out = vec![0.0f32; ys.len()];
        let task = (CHUNK / tk).max(1) * tk;
        out.par_chunks_mut(task)
            .zip(ys.par_chunks(task).zip(gs.par_chunks(task)))
            .for_each(|(o, (ys, gs))| {
                for ((o, y), g) in o.chunks_mut(tk).zip(ys.chunks(tk)).zip(gs.chunks(tk)) {
                    let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
                    for ((o, &y), &g) in o.iter_mut().zip(y).zip(g) {
                        *o = scale * y * (g - dot);
                    }
                }
            });
        Some(f32_tensor(out, y.layout().shape().clone()))
    }

    /// Element `i` keeps when the top 24 bits of `mix64((seed + i) * GOLDEN)` (SplitMix64's
    /// output function) fall below `keep`.
    pub fn dropout_mask(shape: Shape, keep: f32, seed: u64) -> FlexTensor {
        let n = shape.num_elements();
        let threshold = (keep as f64 * (1u64 << 24) as f64) as u64;
        let scale = 1.0 / keep;
        let mut out = vec![0.0f32; n];
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
            let base = seed.wrapping_add((c * CHUNK) as u64);
            for (i, o) in o.iter_mut().enumerate() {
                let z = crate::util::mix64(base.wrapping_add(i as u64).wrapping_mul(GOLDEN));
                if (z >> 40) < threshold {
                    *o = scale;
                }
            }
        });
        f32_tensor(out, shape)
    }
}

#[cfg(feature = "ndarray")]
impl FusedOps for burn::backend::NdArray {}

#[cfg(feature = "cuda")]
impl FusedOps for burn::backend::Cuda<f32, i32> {
    const ASYNC: bool = true;
}

/// The backward of a one-input op: the input's gradient is `f(state, output gradient)`.
struct UnaryBackward<B: Backend, S> {
    f: fn(S, FloatTensor<B>) -> FloatTensor<B>,
}

impl<B: Backend, S> std::fmt::Debug for UnaryBackward<B, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnaryBackward")
    }
}

impl<B: Backend, S: Clone + Send + std::fmt::Debug + 'static> Backward<B, 1>
    for UnaryBackward<B, S>
{
    type State = S;

    fn backward(self, ops: Ops<S, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        if let [Some(parent)] = ops.parents {
            grads.register::<B>(parent.id, (self.f)(ops.state, grad));
        }
    }
}

/// The backward of `a @ b^T`: `grad_a = g @ b`, `grad_b = g^T @ a`. The state holds `b` when `a`
/// needs a gradient and `a` when `b` does.
#[derive(Debug)]
struct MatmulNtBackward;

impl<B: Backend> Backward<B, 2> for MatmulNtBackward {
    type State = (Option<FloatTensor<B>>, Option<FloatTensor<B>>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node); // [N, M]
        let (a, b) = ops.state;
        let [a_parent, b_parent] = ops.parents;
        if let (Some(parent), Some(a)) = (b_parent, a) {
            let g_t = B::float_transpose(grad.clone()); // [M, N], a view
            grads.register::<B>(parent.id, B::float_matmul(g_t, a)); // [M, K]
        }
        if let (Some(parent), Some(b)) = (a_parent, b) {
            grads.register::<B>(parent.id, B::float_matmul(grad, b)); // [N, K]
        }
    }
}

/// Runs a one-input op under autodiff: `tracked` (the forward, keeping the backward's state)
/// when the input needs a gradient, `untracked` otherwise.
fn unary<B: Backend, C: CheckpointStrategy, S: Clone + Send + std::fmt::Debug + 'static>(
    x: FloatTensor<Autodiff<B, C>>,
    backward: fn(S, FloatTensor<B>) -> FloatTensor<B>,
    tracked: impl FnOnce(FloatTensor<B>) -> (S, FloatTensor<B>),
    untracked: impl FnOnce(FloatTensor<B>) -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    match (UnaryBackward { f: backward })
        .prepare::<C>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (state, y) = tracked(x.primitive);
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(untracked(x.primitive)),
    }
}

/// Training: each op runs the inner backend's forward and registers its own backward.
impl<B: FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    /// The backward turns the kept softmax into the logits' gradient in place: `softmax * g /
    /// N`, then `- g / N` at each target.
    fn lm_loss(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        fn backward<B: Backend>(
            (probs, targets): (FloatTensor<B>, IntTensor<B>),
            grad: FloatTensor<B>, // [1]
        ) -> FloatTensor<B> {
            let [n, _] = probs.shape().dims();
            let scale =
                B::float_reshape(B::float_div_scalar(grad, (n as f64).into()), [1, 1].into()); // [1, 1]
            let d = B::float_mul(probs, scale.clone()); // [N, V]
            let hit = B::float_expand(B::float_neg(scale), [n, 1].into()); // [N, 1]
            B::float_scatter_add(1, d, targets, hit)
        }
        let t = targets.clone();
        unary::<B, C, _>(
            logits,
            backward::<B>,
            |x| {
                let (loss, probs) = B::lm_loss_and_probs(x, t.clone());
                ((probs, t), loss)
            },
            |x| B::lm_loss(x, targets),
        )
    }

    fn matmul_nt(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        let (a_tracked, b_tracked) = (a.is_tracked(), b.is_tracked());
        match MatmulNtBackward
            .prepare::<C>([a.node.clone(), b.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = (
                    b_tracked.then(|| a.primitive.clone()),
                    a_tracked.then(|| b.primitive.clone()),
                );
                prep.finish(state, B::matmul_nt(a.primitive, b.primitive))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::matmul_nt(a.primitive, b.primitive)),
        }
    }

    fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        unary::<B, C, _>(
            x,
            B::gelu_tanh_backward,
            |x| (x.clone(), B::gelu_tanh(x)),
            B::gelu_tanh,
        )
    }

    fn causal_softmax(scores: FloatTensor<Self>, scale: f64) -> FloatTensor<Self> {
        fn backward<B: FusedOps>(
            (probs, scale): (FloatTensor<B>, f64),
            grad: FloatTensor<B>,
        ) -> FloatTensor<B> {
            B::causal_softmax_backward(probs, grad, scale)
        }
        unary::<B, C, _>(
            scores,
            backward::<B>,
            |x| {
                let probs = B::causal_softmax(x, scale);
                ((probs.clone(), scale), probs)
            },
            |x| B::causal_softmax(x, scale),
        )
    }

    fn dropout_mask(shape: Shape, keep: f64, device: &Self::Device) -> FloatTensor<Self> {
        <Self as burn::tensor::backend::AutodiffBackend>::from_inner(B::dropout_mask(
            shape, keep, device,
        ))
    }

    const OWN_OPS: bool = B::OWN_OPS;

    /// The inner backend's op with its own backward where it has them; Burn's ops, each
    /// differentiated by autodiff, elsewhere.
    fn fused_op(op: FusedOp, inputs: [FloatTensor<Self>; 3]) -> FloatTensor<Self> {
        if !B::OWN_OPS {
            return generic::fused_op::<Self>(op, inputs);
        }
        let nodes = inputs.each_ref().map(|x| x.node.clone());
        match (FusedOpBackward { op })
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (y, state) = B::fused_op_tracked(op, inputs.map(|x| x.primitive));
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_op(op, inputs.map(|x| x.primitive))),
        }
    }
}

/// The backward of a [`FusedOp`] on a backend with its own ([`FusedOps::OWN_OPS`]).
#[derive(Debug)]
struct FusedOpBackward {
    op: FusedOp,
}

impl<B: FusedOps> Backward<B, 3> for FusedOpBackward {
    type State = Vec<FloatTensor<B>>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let inputs = B::fused_op_backward(self.op, ops.state, grad);
        for (parent, g) in ops.parents.into_iter().zip(inputs) {
            if let Some(parent) = parent {
                grads.register::<B>(parent.id, g);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Cpu, CpuTrain};

    /// The reference: the loss from Burn's tensor ops, differentiated by autodiff.
    fn reference(
        logits: Tensor<CpuTrain, 2>,
        targets: Tensor<CpuTrain, 2, Int>,
    ) -> Tensor<CpuTrain, 1> {
        let max = logits.clone().detach().max_dim(1);
        let lse = (logits.clone() - max.clone()).exp().sum_dim(1).log() + max;
        (lse - logits.gather(1, targets)).mean()
    }

    fn case(n: usize, v: usize, spread: f32) -> (Vec<f32>, Vec<i32>) {
        let mut rng = crate::util::SplitMix::new(7);
        let logits = (0..n * v)
            .map(|_| ((rng.next_u64() % 20_001) as f32 / 10_000.0 - 1.0) * spread)
            .collect();
        let targets = (0..n).map(|_| (rng.next_u64() % v as u64) as i32).collect();
        (logits, targets)
    }

    fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().expect("f32 tensor")
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    /// `f(x)` and the gradient at `x` of `sum(f(x) * w)`, for a fixed non-uniform `w`.
    fn value_and_grad<const D: usize>(
        x: &[f32],
        dims: [usize; D],
        f: impl Fn(Tensor<CpuTrain, D>) -> Tensor<CpuTrain, D>,
    ) -> (Vec<f32>, Vec<f32>) {
        let device = Default::default();
        let x = Tensor::<CpuTrain, D>::from_data(TensorData::new(x.to_vec(), dims), &device)
            .require_grad();
        let w = (0..x.shape().num_elements())
            .map(|i| (i % 7) as f32 - 3.0)
            .collect();
        let w = Tensor::<CpuTrain, D>::from_data(TensorData::new(w, dims), &device);
        let y = f(x.clone());
        let grads = (y.clone() * w).sum().backward();
        (values(y), values(x.grad(&grads).expect("grad")))
    }

    #[cfg(feature = "flex")]
    #[test]
    fn vectorised_exp_and_tanh_match_libm() {
        let (mut exp_rel, mut tanh_abs, mut dtanh_rel) = (0.0f64, 0.0f64, 0.0f64);
        for i in -100_000..=100_000 {
            let x = i as f32 * 8.7e-4; // [-87, 87]
            let want = (x as f64).exp();
            exp_rel = exp_rel.max(((flex::exp(x) as f64 - want) / want).abs());
            let u = i as f32 * 1e-4; // [-10, 10]
            let (t, dt) = flex::tanh_and_derivative(u);
            let want = (u as f64).tanh();
            tanh_abs = tanh_abs.max((t as f64 - want).abs());
            let want = 1.0 - want * want;
            dtanh_rel = dtanh_rel.max(((dt as f64 - want) / want).abs());
        }
        println!(
            "exp: max relative error {exp_rel:e}; tanh: max absolute error {tanh_abs:e}; \
             1 - tanh^2: max relative error {dtanh_rel:e}"
        );
        assert!(exp_rel < 3e-7 && tanh_abs < 3e-7 && dtanh_rel < 1e-6);
        assert_eq!(flex::tanh_and_derivative(50.0).0, 1.0);
        assert_eq!(flex::tanh_and_derivative(-50.0).0, -1.0);
        assert!(flex::exp(-1e4) < 2e-38 && flex::exp(1e4).is_finite());
        assert!(flex::exp(f32::NAN).is_nan() && flex::tanh_and_derivative(f32::NAN).0.is_nan());
        assert_eq!(flex::exp(f32::NEG_INFINITY), flex::exp(-87.3));
    }

    /// The AVX-512 builds (taken on this CPU when it has AVX-512) against the baseline ones:
    /// bit for bit, so a result does not depend on the machine.
    #[cfg(feature = "flex")]
    #[test]
    fn wide_kernels_equal_their_baseline_builds() {
        let (x, _) = case(1, 1003, 12.0); // not a multiple of the lanes
        let (g, _) = case(1, 1003, 2.0);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let mut a = vec![0.0; x.len()];
        let mut b = vec![0.0; x.len()];
        assert_eq!(flex::row_max(&x), flex::row_max_baseline(&x));
        let sums = (
            flex::exp_sum(&x, 0.3, 2.0, &mut a),
            flex::exp_sum_baseline(&x, 0.3, 2.0, &mut b),
        );
        assert_eq!((sums.0.to_bits(), bits(&a)), (sums.1.to_bits(), bits(&b)));
        flex::gelu(&x, &mut a);
        flex::gelu_baseline(&x, &mut b);
        assert_eq!(bits(&a), bits(&b));
        flex::gelu_backward(&x, &g, &mut a);
        flex::gelu_backward_baseline(&x, &g, &mut b);
        assert_eq!(bits(&a), bits(&b));
        #[cfg(target_arch = "x86_64")]
        println!(
            "AVX-512 path taken: {}",
            std::arch::is_x86_feature_detected!("avx512f")
        );
    }

    #[test]
    fn loss_and_gradient_match_autodiff_of_the_tensor_ops() {
        let device = Default::default();
        // spread 60: logit gaps up to 120, where a target's softmax (e^-120) is below what f32
        // can hold at all; the loss must still be exact.
        for (n, v, spread) in [(6, 11, 1.0), (9, 1000, 5.0), (4, 300, 60.0)] {
            let (x, t) = case(n, v, spread);
            let run = |fused: bool| {
                let logits =
                    Tensor::<CpuTrain, 2>::from_data(TensorData::new(x.clone(), [n, v]), &device)
                        .require_grad();
                let targets = Tensor::<CpuTrain, 2, Int>::from_data(
                    TensorData::new(t.clone(), [n, 1]),
                    &device,
                );
                let loss = if fused {
                    lm_loss(logits.clone(), targets)
                } else {
                    reference(logits.clone(), targets)
                };
                // Scale the output so the backward's incoming gradient is not 1.
                let grads = (loss.clone() * 3.0).backward();
                let g = values(logits.grad(&grads).expect("logits grad"));
                (loss.into_scalar(), g)
            };
            let ((l1, g1), (l2, g2)) = (run(true), run(false));
            let gmax = max_diff(&g1, &g2);
            println!("n {n} v {v} spread {spread}: loss {l1} vs {l2}, grad max diff {gmax:e}");
            assert!(
                (l1 - l2).abs() <= 2e-6 * l2.abs().max(1.0),
                "loss {l1} vs {l2}"
            );
            assert!(gmax < 1e-6, "grad max diff {gmax}");
        }
    }

    #[test]
    fn gelu_and_its_gradient_match_autodiff_of_burns_gelu_approximate() {
        let (x, _) = case(37, 101, 6.0); // 3,737 values in [-6, 6], across several rayon chunks
        let (y1, g1) = value_and_grad(&x, [37, 101], gelu_tanh);
        let (y2, g2) = value_and_grad(&x, [37, 101], burn::tensor::activation::gelu_approximate);
        let (dy, dg) = (max_diff(&y1, &y2), max_diff(&g1, &g2));
        println!("gelu max diff {dy:e}, grad max diff {dg:e}");
        assert!(dy < 2e-6 && dg < 2e-5);
        // The generic path (used by CUDA and ndarray) against the same reference and Flex's.
        let device = Default::default();
        let prim = |v: Vec<f32>| {
            Tensor::<Cpu, 2>::from_data(TensorData::new(v, [37, 101]), &device)
                .into_primitive()
                .tensor()
        };
        let tensor = |p| values(Tensor::<Cpu, 2>::from_primitive(TensorPrimitive::Float(p)));
        assert!(max_diff(&tensor(generic::gelu_tanh::<Cpu>(prim(x.clone()))), &y2) < 2e-6);
        let ones = vec![1.0; x.len()];
        let gg = tensor(generic::gelu_tanh_backward::<Cpu>(
            prim(x.clone()),
            prim(ones.clone()),
        ));
        let gf = tensor(<Cpu as FusedOps>::gelu_tanh_backward(prim(x), prim(ones)));
        assert!(max_diff(&gg, &gf) < 2e-6, "generic vs Flex backward");
    }

    #[test]
    fn causal_softmax_and_its_gradient_match_autodiff_of_mask_and_softmax() {
        // [2, 3, 5, 7]: five queries over seven keys (two cached), and the usual square case.
        for (t, tk) in [(5, 7), (6, 6)] {
            let (x, _) = case(2 * 3 * t * tk, 1, 4.0);
            let (p1, g1) = value_and_grad(&x, [2, 3, t, tk], |s| causal_softmax(s, 0.125));
            let (p2, g2) = value_and_grad(&x, [2, 3, t, tk], |s| {
                let p = generic::causal_softmax::<CpuTrain>(s.into_primitive().tensor(), 0.125);
                Tensor::from_primitive(TensorPrimitive::Float(p))
            });
            let (dp, dg) = (max_diff(&p1, &p2), max_diff(&g1, &g2));
            println!("t {t} tk {tk}: probs max diff {dp:e}, grad max diff {dg:e}");
            assert!(dp < 1e-6 && dg < 1e-6);
            // The future is masked: query i of the last block sees keys 0..=i + tk - t only.
            let row = &p1[(t - 2) * tk..(t - 1) * tk]; // the first head's second-to-last query
            assert_eq!(row[tk - 1], 0.0);
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn matmul_nt_and_its_gradients_match_autodiff_of_matmul_with_a_transpose() {
        let device = Default::default();
        let (a, _) = case(5, 7, 1.0); // [5, 7]
        let (b, _) = case(3, 7, 2.0); // [3, 7]
        let w: Vec<f32> = (0..15).map(|i| (i % 4) as f32 - 1.5).collect();
        let run = |fused: bool, track: [bool; 2]| {
            let leaf = |v: &Vec<f32>, dims: [usize; 2], t: bool| {
                let x = Tensor::<CpuTrain, 2>::from_data(TensorData::new(v.clone(), dims), &device);
                if t {
                    x.require_grad()
                } else {
                    x
                }
            };
            let (ta, tb) = (leaf(&a, [5, 7], track[0]), leaf(&b, [3, 7], track[1]));
            let y = if fused {
                matmul_nt(ta.clone(), tb.clone())
            } else {
                ta.clone().matmul(tb.clone().transpose())
            };
            let w = Tensor::<CpuTrain, 2>::from_data(TensorData::new(w.clone(), [5, 3]), &device);
            let grads = (y.clone() * w).sum().backward();
            let grad = |t: &Tensor<CpuTrain, 2>| t.grad(&grads).map(values);
            (values(y), grad(&ta), grad(&tb))
        };
        for track in [[true, true], [true, false], [false, true]] {
            let (y1, ga1, gb1) = run(true, track);
            let (y2, ga2, gb2) = run(false, track);
            assert!(max_diff(&y1, &y2) < 1e-6, "values");
            assert_eq!((ga1.is_some(), gb1.is_some()), (track[0], track[1]));
            for (g1, g2) in [(ga1, ga2), (gb1, gb2)] {
                if let (Some(g1), Some(g2)) = (g1, g2) {
                    println!("{track:?}: grad max diff {:e}", max_diff(&g1, &g2));
                    assert!(max_diff(&g1, &g2) < 1e-6);
                }
            }
        }
    }

    #[test]
    fn adamw_step_of_the_backend_equals_the_generic_one_and_leaves_shared_buffers_alone() {
        let device = Default::default();
        let n = 40_000; // several rayon chunks
        let (x, _) = case(4, n / 4, 1.0);
        let vec = |k: usize| x[k..].iter().chain(&x[..k]).copied().collect::<Vec<f32>>();
        let prim = |v: Vec<f32>| {
            Tensor::<Cpu, 1>::from_data(TensorData::new(v, [n]), &device)
                .into_primitive()
                .tensor()
        };
        let tensor = |p| values(Tensor::<Cpu, 1>::from_primitive(TensorPrimitive::Float(p)));
        let v_sq: Vec<f32> = vec(3).iter().map(|v| v * v).collect();
        let s = AdamWStep {
            grad_scale: 0.5,
            beta1: 0.9,
            one_minus_beta1: 0.1,
            beta2: 0.999,
            one_minus_beta2: 0.001,
            eps: 1e-8,
            decay: 0.999,
            step_size: 1e-3,
            bc2_sqrt: 0.05,
        };
        let (p, g, m) = (prim(vec(0)), prim(vec(1)), prim(vec(2)));
        let kept = p.clone(); // shares p's buffer: the update must not write through it
        let ours = <Cpu as FusedOps>::adamw_step(p, g.clone(), m.clone(), prim(v_sq.clone()), s);
        let reference = generic::adamw_step::<Cpu>(kept.clone(), g, m, prim(v_sq), s);
        assert_eq!(
            tensor(kept),
            vec(0),
            "a shared parameter buffer was written in place"
        );
        for (name, a, b) in [
            ("param", ours.0, reference.0),
            ("exp_avg", ours.1, reference.1),
            ("exp_avg_sq", ours.2, reference.2),
        ] {
            let (a, b) = (tensor(a), tensor(b));
            println!("{name}: max diff {:e}", max_diff(&a, &b));
            assert_eq!(a, b, "{name}");
        }
        // One element by hand, in f64, against the f32 result.
        let (p0, g0, m0, v0) = (
            vec(0)[7] as f64,
            vec(1)[7] as f64 * 0.5,
            vec(2)[7] as f64,
            vec(3)[7] as f64,
        );
        let m1 = 0.9 * m0 + 0.1 * g0;
        let v1 = 0.999 * v0 * v0 + 0.001 * g0 * g0;
        let p1 = 0.999 * p0 - 1e-3 * m1 / (v1.sqrt() / 0.05 + 1e-8);
        let ours = tensor(
            <Cpu as FusedOps>::adamw_step(
                prim(vec(0)),
                prim(vec(1)),
                prim(vec(2)),
                prim(vec(3).iter().map(|v| v * v).collect()),
                s,
            )
            .0,
        )[7] as f64;
        assert!(
            (ours - p1).abs() < 1e-6 * p1.abs().max(1e-3),
            "{ours} vs {p1}"
        );
    }

    #[test]
    fn dropout_masks_keep_the_right_share_reproducibly_and_scale_by_one_over_keep() {
        let device = Default::default();
        let draw = |shape: [usize; 2], keep| {
            let m = <Cpu as FusedOps>::dropout_mask(shape.into(), keep, &device);
            values(Tensor::<Cpu, 2>::from_primitive(TensorPrimitive::Float(m)))
        };
        let mask = |seed: u64| {
            <Cpu as Backend>::seed(&device, seed);
            draw([300, 1000], 0.9)
        };
        let (a, b, c) = (mask(5), mask(5), mask(6));
        assert_eq!(a, b, "same backend seed, same mask");
        assert_ne!(a, c, "another seed, another mask");
        let scale = 1.0f32 / 0.9;
        assert!(a.iter().all(|&v| v == 0.0 || v == scale));
        // 300,000 Bernoulli(0.9) draws: the kept share is within 5 standard errors (0.00274).
        let kept = a.iter().filter(|&&v| v != 0.0).count() as f64 / a.len() as f64;
        println!("kept {kept}");
        assert!(
            (kept - 0.9).abs() < 5.0 * (0.9f64 * 0.1 / 3e5).sqrt(),
            "kept {kept}"
        );
        // Two masks drawn in a row (two dropout sites) differ.
        <Cpu as Backend>::seed(&device, 5);
        let (m1, m2) = (draw([1, 1000], 0.5), draw([1, 1000], 0.5));
        assert_ne!(m1, m2);
        // Dropout is the identity without autodiff (eval) and at probability 0.
        let x = Tensor::<Cpu, 1>::ones([10], &device);
        assert_eq!(dropout(x.clone(), 0.5).into_data(), x.into_data());
    }

    #[test]
    fn inner_backend_loss_equals_the_autodiff_forward() {
        let (x, t) = case(5, 50, 3.0);
        let device = Default::default();
        let plain = lm_loss(
            Tensor::<Cpu, 2>::from_data(TensorData::new(x.clone(), [5, 50]), &device),
            Tensor::<Cpu, 2, Int>::from_data(TensorData::new(t.clone(), [5, 1]), &device),
        )
        .into_scalar();
        let tracked = lm_loss(
            Tensor::<CpuTrain, 2>::from_data(TensorData::new(x, [5, 50]), &device).require_grad(),
            Tensor::<CpuTrain, 2, Int>::from_data(TensorData::new(t, [5, 1]), &device),
        )
        .into_scalar();
        assert_eq!(plain, tracked);
    }
}
