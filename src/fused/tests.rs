//! The fused ops against Burn's own ops and autodiff, forward and backward.

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
    let x =
        Tensor::<CpuTrain, D>::from_data(TensorData::new(x.to_vec(), dims), &device).require_grad();
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
            let targets =
                Tensor::<CpuTrain, 2, Int>::from_data(TensorData::new(t.clone(), [n, 1]), &device);
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
