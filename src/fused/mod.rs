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

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Distribution, FloatDType, TensorPrimitive};
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

mod autodiff;
#[cfg(feature = "flex")]
mod flex;
pub mod generic;

#[cfg(feature = "ndarray")]
impl FusedOps for burn::backend::NdArray {}

#[cfg(feature = "cuda")]
impl FusedOps for burn::backend::Cuda<f32, i32> {
    const ASYNC: bool = true;
}

#[cfg(test)]
mod tests;
