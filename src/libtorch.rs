//! Burn's LibTorch backend (cargo feature `tch`, devices `tch:cpu` and `tch:cuda:N`): PyTorch's
//! own kernels (cuBLAS, cuDNN, SDPA's flash and memory-efficient attention) under sweep's
//! trainer, and the [`FusedOps`] that keep Burn's autodiff from decomposing what libtorch has
//! fused.
//!
//! Why the ops: `Autodiff<LibTorch>` differentiates op by op in Rust, so without them attention
//! is a `[B, H, T, T]` score matrix, a masked softmax and a dropout mask per layer, and LayerNorm
//! ~10 element-wise passes each way. Attention and LayerNorm run here under libtorch's autograd
//! inside one Burn op ([`FusedOp`]): the forward records libtorch's graph on detached copies of
//! the inputs, and the op's backward asks libtorch for their gradients, so the backward is
//! libtorch's own kernel (flash/efficient attention backward, `native_layer_norm_backward`),
//! neither of which tch 0.22 exposes as a function. The loss, GELU and AdamW need no graph:
//! their forward and backward are single libtorch kernels.

use anyhow::Result;
use burn::backend::libtorch::{LibTorchDevice, TchTensor};
use burn::backend::{Autodiff, LibTorch};
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::FloatDType;
use tch::{Kind, Tensor};

use crate::error::UsageError;
use crate::fused::{generic, AdamWStep, FusedOp, FusedOps};

/// The LibTorch backend at f32 (autocast casts matmul inputs down per op, see `Precision`).
pub type Tch = LibTorch<f32>;
/// The LibTorch backend with Burn's autodiff, for training.
pub type TchTrain = Autodiff<Tch>;

/// The Burn device of LibTorch's CPU (`cuda: None`) or CUDA device `n`, after [`preflight`].
pub fn device(cuda: Option<usize>) -> Result<LibTorchDevice> {
    let flag = match cuda {
        None => "--device tch:cpu".to_string(),
        Some(n) => format!("--device tch:cuda:{n}"),
    };
    preflight(cuda, &flag)?;
    Ok(match cuda {
        None => LibTorchDevice::Cpu,
        Some(n) => LibTorchDevice::Cuda(n),
    })
}

/// Fails with a usage error when libtorch cannot run `d` (no CUDA device that libtorch sees),
/// before any work starts on it; `flag` names where the device came from. On CUDA it also turns
/// on TF32 matmuls (below).
///
/// That libtorch itself loads is settled before `main`: the binary links it, so without torch's
/// `lib/` on `LD_LIBRARY_PATH` the dynamic loader stops with "error while loading shared
/// libraries: libtorch_cpu.so" (README, "The LibTorch backend").
pub fn preflight(cuda: Option<usize>, flag: &str) -> Result<()> {
    let Some(n) = cuda else {
        return Ok(());
    };
    let count = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
    if count == 0 {
        return Err(UsageError(format!(
            "{flag}: libtorch sees no CUDA device (no NVIDIA driver or GPU here, or the torch on \
             LD_LIBRARY_PATH is a CPU-only build); fix: use tch:cpu, or check `nvidia-smi` and \
             put a CUDA build of torch's lib/ on LD_LIBRARY_PATH"
        ))
        .into());
    }
    if n >= count {
        return Err(UsageError(format!(
            "{flag}: libtorch sees {count} CUDA device(s); fix: use tch:cuda:0..tch:cuda:{}",
            count - 1
        ))
        .into());
    }
    allow_tf32();
    Ok(())
}

/// f32 matmuls on TF32 tensor cores, as Burn's CUDA backend runs them (and HF's benchmarks with
/// `allow_tf32`), so `tch:cuda` and `cuda` compare like for like and `selftest` applies the same
/// TF32 tolerances to both. libtorch's switch for this (`setAllowTF32CuBLAS`) is not in tch's
/// API; the environment override it reads on first use is. A value the user set wins (`0`
/// keeps full f32).
fn allow_tf32() {
    const VAR: &str = "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE";
    if std::env::var_os(VAR).is_none() {
        // Before the first CUDA matmul, which is when libtorch reads it.
        std::env::set_var(VAR, "1");
    }
}

/// libtorch's dtype for an autocast dtype.
fn kind(dt: FloatDType) -> Kind {
    match dt {
        FloatDType::BF16 => Kind::BFloat16,
        FloatDType::F16 => Kind::Half,
        FloatDType::F64 => Kind::Double,
        _ => Kind::Float,
    }
}

/// `t`'s tensor, to be written in place: its own buffer when no other Burn tensor shares it
/// (Burn's `can_mut`), else a copy, so a shared buffer (a parameter still referenced elsewhere)
/// is never changed under its other owners.
fn owned(t: TchTensor) -> Tensor {
    if t.can_mut() {
        t.tensor
    } else {
        let mut copy = t.tensor.empty_like();
        copy.copy_(&t.tensor);
        copy
    }
}

/// Forward of a [`FusedOp`] on libtorch tensors; under `tch::with_grad` it records libtorch's
/// graph for the backward.
fn run(op: FusedOp, [a, b, c]: [&Tensor; 3]) -> Tensor {
    match op {
        FusedOp::CausalAttention {
            scale,
            dropout,
            low,
        } => {
            let (t, tk) = (a.size()[2], b.size()[2]);
            // SDPA's `is_causal` aligns the mask top-left when T != Tk; GPT-2 with cached keys
            // needs it bottom-right (query i sees keys j <= i + Tk - T). One query sees every
            // key; other shapes pass the mask itself (true = attend).
            let (mask, is_causal) = if t == tk {
                (None, true)
            } else if t == 1 {
                (None, false)
            } else {
                let ones = Tensor::ones([t, tk], (Kind::Bool, a.device()));
                (Some(ones.tril(tk - t)), false)
            };
            let cast = |x: &Tensor| match low {
                Some(dt) => x.to_kind(kind(dt)),
                None => x.shallow_clone(),
            };
            let y = Tensor::scaled_dot_product_attention(
                &cast(a),
                &cast(b),
                &cast(c),
                mask,
                dropout,
                is_causal,
                scale,
                false,
            );
            y.to_kind(Kind::Float)
        }
        FusedOp::LayerNorm { epsilon } => {
            let last = *a
                .size()
                .last()
                .expect("LayerNorm of a tensor with dimensions");
            a.layer_norm([last], Some(b), Some(c), epsilon, true)
        }
    }
}

/// PyTorch's kernels for the model's fused ops. `ASYNC`: on CUDA a host read stalls libtorch's
/// queue of kernels (the type does not know its device, so the CPU device keeps the clipping
/// coefficient on the device too, at one extra multiply per gradient).
impl FusedOps for Tch {
    const ASYNC: bool = true;
    const OWN_OPS: bool = true;

    /// `log_softmax` (one kernel), the picked rows' mean, and the softmax from it in place.
    fn lm_loss_and_probs(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        if logits.tensor.kind() != Kind::Float {
            return generic::lm_loss_and_probs::<Self>(logits, targets);
        }
        let mut lsm = logits.tensor.log_softmax(1, Kind::Float); // [N, V]
        let targets = targets.tensor.to_kind(Kind::Int64);
        let loss = lsm
            .gather(1, &targets, false)
            .mean(Kind::Float)
            .neg()
            .reshape([1]);
        let probs = lsm.exp_();
        (TchTensor::new(loss), TchTensor::new(probs))
    }

    /// libtorch's fused cross-entropy, where no softmax need be kept (evaluation).
    fn lm_loss(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        let targets = targets.tensor.to_kind(Kind::Int64).reshape([-1]);
        let loss = logits.tensor.cross_entropy_loss::<Tensor>(
            &targets,
            None,
            tch::Reduction::Mean,
            -100,
            0.0,
        );
        TchTensor::new(loss.to_kind(Kind::Float).reshape([1]))
    }

    fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        TchTensor::new(x.tensor.gelu("tanh"))
    }

    fn gelu_tanh_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        // ATen's `gelu_backward(grad_output, self)`: tch makes `self` (the input) the receiver.
        TchTensor::new(x.tensor.gelu_backward(&grad.tensor, "tanh"))
    }

    /// torch.optim.AdamW's single-tensor update, in place where Burn shares no buffer:
    /// `p *= decay; m.lerp_(g, 1 - beta1); v = beta2 v + (1 - beta2) g^2;
    /// p += m / ((sqrt(v) / bc2_sqrt + eps) / -step_size)`: ten kernels per parameter against
    /// ~16 (and as many new buffers) from Burn's ops. tch exposes neither `_fused_adamw_` nor
    /// the `_foreach_` ops, nor the `value` argument of `addcmul_`/`addcdiv_`. The results equal
    /// [`generic::adamw_step`]'s to f32 rounding (lerp and the folded step size round
    /// differently).
    fn adamw_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        exp_avg: FloatTensor<Self>,
        exp_avg_sq: FloatTensor<Self>,
        s: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let all_f32 = [&param, &grad, &exp_avg, &exp_avg_sq]
            .iter()
            .all(|t| t.tensor.kind() == Kind::Float);
        if !all_f32 {
            return generic::adamw_step::<Self>(param, grad, exp_avg, exp_avg_sq, s);
        }
        tch::no_grad(|| {
            let (mut p, mut m, mut v) = (owned(param), owned(exp_avg), owned(exp_avg_sq));
            let g = if s.grad_scale == 1.0 {
                grad.tensor
            } else {
                grad.tensor.g_mul_scalar(s.grad_scale as f64)
            };
            if s.decay != 1.0 {
                let _ = p.g_mul_scalar_(s.decay as f64);
            }
            let _ = m.lerp_(&g, s.one_minus_beta1 as f64);
            let _ = v.g_mul_scalar_(s.beta2 as f64);
            let _ = v.addcmul_(&g, &g.g_mul_scalar(s.one_minus_beta2 as f64));
            let mut denom = v.sqrt();
            let _ = denom.g_div_scalar_(s.bc2_sqrt as f64);
            let _ = denom.g_add_scalar_(s.eps as f64);
            let _ = denom.g_div_scalar_(-(s.step_size as f64));
            let _ = p.addcdiv_(&m, &denom);
            (TchTensor::new(p), TchTensor::new(m), TchTensor::new(v))
        })
    }

    fn fused_op(op: FusedOp, inputs: [FloatTensor<Self>; 3]) -> FloatTensor<Self> {
        let y = tch::no_grad(|| run(op, inputs.each_ref().map(|t| &t.tensor)));
        TchTensor::new(y)
    }

    /// The state is the three graph leaves (detached views of the inputs that require grad) and
    /// the output with libtorch's graph behind it; the returned output is a detached view of it.
    /// Each view carries its source's storage handle, so Burn sees the buffers as shared and
    /// never writes them in place while the graph needs them.
    fn fused_op_tracked(
        op: FusedOp,
        inputs: [FloatTensor<Self>; 3],
    ) -> (FloatTensor<Self>, Vec<FloatTensor<Self>>) {
        tch::with_grad(|| {
            let leaves = inputs.map(|t| {
                let leaf = t.tensor.detach().set_requires_grad(true);
                TchTensor::from_existing(leaf, t.storage)
            });
            let y = TchTensor::new(run(op, leaves.each_ref().map(|t| &t.tensor)));
            let out = TchTensor::from_existing(y.tensor.detach(), y.storage.clone());
            let mut state = leaves.to_vec();
            state.push(y);
            (out, state)
        })
    }

    /// libtorch's backward of the recorded graph for `grad`: the gradients of `sum(y * grad)`
    /// with respect to the leaves (tch has no `backward(gradient)`; the product costs one pass
    /// over the output, small beside attention or LayerNorm themselves).
    fn fused_op_backward(
        op: FusedOp,
        state: Vec<FloatTensor<Self>>,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        let [a, b, c, y]: [TchTensor; 4] = state
            .try_into()
            .unwrap_or_else(|s: Vec<_>| panic!("{op:?}: state of {} tensors, not 4", s.len()));
        tch::with_grad(|| {
            let s = (&y.tensor * &grad.tensor).sum(Kind::Float);
            let g = Tensor::run_backward(&[&s], &[&a.tensor, &b.tensor, &c.tensor], false, false);
            let [ga, gb, gc]: [Tensor; 3] = g.try_into().expect("one gradient per input");
            [ga, gb, gc].map(TchTensor::new)
        })
    }
}

#[cfg(test)]
mod tests {
    //! Each op against the generic path of Burn's ops, on the LibTorch CPU device.
    use super::*;
    use burn::prelude::*;
    // Burn's tensor, not tch's (both come in through the globs).
    use burn::tensor::{Tensor, TensorPrimitive};

    type B = Tch;
    type AB = TchTrain;

    fn case(n: usize, spread: f32, seed: u64) -> Vec<f32> {
        let mut rng = crate::util::SplitMix::new(seed);
        (0..n)
            .map(|_| ((rng.next_u64() % 20_001) as f32 / 10_000.0 - 1.0) * spread)
            .collect()
    }

    fn values<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec::<f32>().expect("f32")
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    fn leaf<const D: usize>(v: &[f32], dims: [usize; D]) -> Tensor<AB, D> {
        Tensor::<AB, D>::from_data(TensorData::new(v.to_vec(), dims), &Default::default())
            .require_grad()
    }

    /// `f(x...)`'s value and the gradients of `sum(f * w)` (a fixed non-uniform `w`) with respect
    /// to each input.
    fn value_and_grads<const D: usize, const E: usize>(
        inputs: &[(Vec<f32>, [usize; D])],
        f: impl Fn(Vec<Tensor<AB, D>>) -> Tensor<AB, E>,
    ) -> (Vec<f32>, Vec<Vec<f32>>) {
        let xs: Vec<Tensor<AB, D>> = inputs.iter().map(|(v, d)| leaf(v, *d)).collect();
        let y = f(xs.clone());
        let w: Vec<f32> = (0..y.shape().num_elements())
            .map(|i| (i % 7) as f32 - 3.0)
            .collect();
        let w = Tensor::<AB, E>::from_data(TensorData::new(w, y.dims()), &Default::default());
        let grads = (y.clone() * w).sum().backward();
        let g = xs
            .iter()
            .map(|x| values(x.grad(&grads).expect("grad")))
            .collect();
        (values(y), g)
    }

    #[test]
    fn loss_and_its_gradient_match_the_generic_path() {
        let (n, v) = (9, 1000);
        let x = case(n * v, 8.0, 1);
        let t: Vec<i64> = (0..n).map(|i| (i * 97 % v) as i64).collect();
        let run = |fused: bool| {
            let logits = leaf(&x, [n, v]);
            let targets = Tensor::<AB, 2, Int>::from_data(
                TensorData::new(t.clone(), [n, 1]),
                &Default::default(),
            );
            let loss = if fused {
                crate::fused::lm_loss(logits.clone(), targets)
            } else {
                let (l, _) = generic::lm_loss_and_probs::<AB>(
                    logits.clone().into_primitive().tensor(),
                    targets.into_primitive(),
                );
                Tensor::<AB, 1>::from_primitive(TensorPrimitive::Float(l))
            };
            let grads = (loss.clone() * 3.0).backward();
            (
                loss.into_scalar(),
                values(logits.grad(&grads).expect("grad")),
            )
        };
        let ((l1, g1), (l2, g2)) = (run(true), run(false));
        let dg = max_diff(&g1, &g2);
        println!("loss {l1} vs {l2}, grad max diff {dg:e}");
        assert!((l1 - l2).abs() <= 2e-6 * l2.abs().max(1.0), "{l1} vs {l2}");
        assert!(dg < 1e-6, "{dg}");
        // Evaluation's loss (libtorch's cross-entropy) equals training's.
        let plain = crate::fused::lm_loss(
            Tensor::<B, 2>::from_data(TensorData::new(x.clone(), [n, v]), &Default::default()),
            Tensor::<B, 2, Int>::from_data(TensorData::new(t, [n, 1]), &Default::default()),
        )
        .into_scalar();
        assert!((plain - l1).abs() <= 2e-6 * l1.abs(), "{plain} vs {l1}");
    }

    #[test]
    fn gelu_and_its_gradient_match_the_generic_path() {
        let x = case(37 * 101, 6.0, 2);
        let (y1, g1) = value_and_grads(&[(x.clone(), [37, 101])], |xs| {
            crate::fused::gelu_tanh(xs[0].clone())
        });
        let (y2, g2) = value_and_grads(&[(x, [37, 101])], |xs| {
            burn::tensor::activation::gelu_approximate(xs[0].clone())
        });
        let (dy, dg) = (max_diff(&y1, &y2), max_diff(&g1[0], &g2[0]));
        println!("gelu max diff {dy:e}, grad max diff {dg:e}");
        assert!(dy < 2e-6 && dg < 2e-5);
    }

    /// Attention through SDPA against Burn's matmul + causal softmax, values and all three
    /// gradients; with cached keys (T < Tk) too, where SDPA's own causal flag would be wrong.
    #[test]
    fn causal_attention_and_its_gradients_match_the_generic_path() {
        for (t, tk) in [(6, 6), (5, 7), (1, 7)] {
            let (b, h, d) = (2, 3, 8);
            let inputs = [
                (case(b * h * t * d, 2.0, 3), [b, h, t, d]),
                (case(b * h * tk * d, 2.0, 4), [b, h, tk, d]),
                (case(b * h * tk * d, 2.0, 5), [b, h, tk, d]),
            ];
            let op = FusedOp::CausalAttention {
                scale: 0.35,
                dropout: 0.0,
                low: None,
            };
            let prim = |x: &Tensor<AB, 4>| x.clone().into_primitive().tensor();
            let (y1, g1) = value_and_grads(&inputs, |xs| {
                crate::fused::causal_attention(
                    xs[0].clone(),
                    xs[1].clone(),
                    xs[2].clone(),
                    0.35,
                    0.0,
                    None,
                )
            });
            let (y2, g2) = value_and_grads(&inputs, |xs| {
                let p = generic::fused_op::<AB>(op, [prim(&xs[0]), prim(&xs[1]), prim(&xs[2])]);
                Tensor::<AB, 4>::from_primitive(TensorPrimitive::Float(p))
            });
            let dy = max_diff(&y1, &y2);
            let dg: Vec<f32> = g1.iter().zip(&g2).map(|(a, b)| max_diff(a, b)).collect();
            println!("t {t} tk {tk}: output max diff {dy:e}, grads {dg:?}");
            assert!(dy < 1e-5 && dg.iter().all(|&d| d < 1e-4), "{dy} {dg:?}");
        }
    }

    /// With dropout the masks are libtorch's: the same seed gives the same output and
    /// gradients, another seed another output, and the backward uses the forward's mask (the
    /// gradient of `sum(y)` through `v` is the column sums of the dropped probabilities, so it
    /// is not that of the undropped attention).
    #[test]
    fn attention_dropout_is_reproducible_and_used_in_the_backward() {
        let (b, h, t, d) = (2, 2, 16, 8);
        let inputs = [
            (case(b * h * t * d, 1.0, 6), [b, h, t, d]),
            (case(b * h * t * d, 1.0, 7), [b, h, t, d]),
            (case(b * h * t * d, 1.0, 8), [b, h, t, d]),
        ];
        let run = |seed: u64, p: f64| {
            <AB as Backend>::seed(&Default::default(), seed);
            value_and_grads(&inputs, |xs| {
                crate::fused::causal_attention(
                    xs[0].clone(),
                    xs[1].clone(),
                    xs[2].clone(),
                    0.3,
                    p,
                    None,
                )
            })
        };
        let (a, b1, c, plain) = (run(1, 0.5), run(1, 0.5), run(2, 0.5), run(1, 0.0));
        assert_eq!(a, b1, "same seed, same output and gradients");
        assert_ne!(a.0, c.0, "another seed, another mask");
        assert_ne!(a.0, plain.0, "dropout changes the output");
        assert!(
            max_diff(&a.1[2], &plain.1[2]) > 1e-3,
            "the backward saw no mask"
        );
    }

    #[test]
    fn layer_norm_and_its_gradients_match_burns() {
        let (rows, c) = (10, 48);
        let inputs = [
            (case(rows * c, 3.0, 9), [rows * c]),
            (case(c, 1.0, 10), [c]),
            (case(c, 1.0, 11), [c]),
        ];
        let norm = |xs: Vec<Tensor<AB, 1>>, fused: bool| {
            let mut layer = burn::nn::LayerNormConfig::new(c)
                .with_epsilon(1e-5)
                .init::<AB>(&Default::default());
            layer.gamma = burn::module::Param::from_tensor(xs[1].clone());
            layer.beta = Some(burn::module::Param::from_tensor(xs[2].clone()));
            let x = xs[0].clone().reshape([2, rows / 2, c]);
            let y = if fused {
                crate::fused::layer_norm(&layer, x, 1e-5)
            } else {
                layer.forward(x)
            };
            y.reshape([rows * c])
        };
        let (y1, g1) = value_and_grads(&inputs, |xs| norm(xs, true));
        let (y2, g2) = value_and_grads(&inputs, |xs| norm(xs, false));
        let dy = max_diff(&y1, &y2);
        let dg: Vec<f32> = g1.iter().zip(&g2).map(|(a, b)| max_diff(a, b)).collect();
        println!("layer norm max diff {dy:e}, grads {dg:?}");
        assert!(dy < 1e-5 && dg.iter().all(|&d| d < 1e-4), "{dy} {dg:?}");
    }

    #[test]
    fn adamw_step_matches_the_generic_one_and_leaves_shared_buffers_alone() {
        let n = 5000;
        let dev = Default::default();
        let prim = |v: Vec<f32>| {
            Tensor::<B, 1>::from_data(TensorData::new(v, [n]), &dev)
                .into_primitive()
                .tensor()
        };
        let tensor = |p| values(Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(p)));
        let (p0, g0, m0) = (case(n, 1.0, 12), case(n, 1.0, 13), case(n, 0.1, 14));
        let v0: Vec<f32> = case(n, 0.1, 15).iter().map(|v| v * v).collect();
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
        let p = prim(p0.clone());
        let kept = p.clone(); // shares p's buffer: the update must not write through it
        let ours =
            <B as FusedOps>::adamw_step(p, prim(g0.clone()), prim(m0.clone()), prim(v0.clone()), s);
        assert_eq!(tensor(kept), p0, "a shared parameter buffer was written");
        let reference = generic::adamw_step::<B>(prim(p0), prim(g0), prim(m0), prim(v0), s);
        for (name, a, b) in [
            ("param", ours.0, reference.0),
            ("exp_avg", ours.1, reference.1),
            ("exp_avg_sq", ours.2, reference.2),
        ] {
            let (a, b) = (tensor(a), tensor(b));
            let rel = a
                .iter()
                .zip(&b)
                // Relative, but not to values that cancelled to near 0 (lerp and Burn's two
                // products differ there by an ulp of the terms, not of the result).
                .map(|(a, b)| (a - b).abs() / b.abs().max(1e-3))
                .fold(0.0, f32::max);
            println!("{name}: max relative diff {rel:e}");
            assert!(rel < 1e-5, "{name}: {rel}");
        }
    }

    #[test]
    fn devices_parse_and_a_missing_gpu_is_a_usage_error() {
        assert!(device(None).is_ok());
        let e = device(Some(99)).unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some());
        let msg = format!("{e:#}");
        assert!(msg.starts_with("--device tch:cuda:99: "), "{msg}");
        assert!(
            msg.contains("libtorch sees no CUDA device") || msg.contains("CUDA device(s)"),
            "{msg}"
        );
    }
}
