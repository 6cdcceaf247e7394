//! The ops from Burn's primitive ops: the trait's defaults, and the fallback of overrides.

use burn::prelude::*;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{FloatDType, TensorMetadata, TensorPrimitive};

use super::{AdamWStep, FusedOp, FusedOps, GELU_K0, GELU_K1};
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

pub fn gelu_tanh_backward<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    flat::<B>(x, |x, view| {
        let x2 = x.clone() * x.clone();
        let t = ((x2.clone() * GELU_K1 + 1.0) * x.clone() * GELU_K0).tanh(); // tanh(u)
        let du = (x2 * (3.0 * GELU_K1) + 1.0) * GELU_K0; // du/dx
        let d = (t.clone() + 1.0) * 0.5 + x * (-(t.clone() * t) + 1.0) * du * 0.5;
        d * view(grad)
    })
}
