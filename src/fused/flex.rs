//! Flex's fused ops: row-parallel f32 kernels over its storage, one rayon pass each, with the
//! generic ops as the fallback for other dtypes.

use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Bytes, DType, Shape};
use burn::tensor::{Distribution, FloatDType};
use burn_flex::{FlexTensor, Layout};
use rayon::prelude::*;

use super::{generic, AdamWStep, FusedOps};

/// Flex: each op is one row-parallel rayon pass over f32 storage (the kernels below), with
/// the generic ops as the fallback for other dtypes. The loss row is `ln(sum) + max - x_t` from
/// the same sweep that writes the softmax, so it stays exact where the target's probability
/// underflows f32.
impl FusedOps for burn::backend::Flex {
    fn lm_loss_and_probs(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        lm_loss_and_probs(&logits, &targets)
            .unwrap_or_else(|| generic::lm_loss_and_probs::<Self>(logits, targets))
    }

    fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        map(&x, None, |x, _, out| gelu(x, out)).unwrap_or_else(|| generic::gelu_tanh::<Self>(x))
    }

    fn gelu_tanh_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        map(&x, Some(&grad), gelu_backward)
            .unwrap_or_else(|| generic::gelu_tanh_backward::<Self>(x, grad))
    }

    fn causal_softmax(scores: FloatTensor<Self>, scale: f64) -> FloatTensor<Self> {
        causal_softmax(&scores, scale as f32)
            .unwrap_or_else(|| generic::causal_softmax::<Self>(scores, scale))
    }

    fn causal_softmax_backward(
        probs: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        causal_softmax_backward(&probs, &grad, scale as f32)
            .unwrap_or_else(|| generic::causal_softmax_backward::<Self>(probs, grad, scale))
    }

    fn adamw_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        exp_avg: FloatTensor<Self>,
        exp_avg_sq: FloatTensor<Self>,
        s: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        if same_f32_shape(&[&param, &grad, &exp_avg, &exp_avg_sq]) {
            adamw_step(param, &grad, exp_avg, exp_avg_sq, s)
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
        dropout_mask(shape, keep as f32, seed)
    }
}

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
