//! The fused ops under autodiff: each runs the inner backend's forward and registers its own
//! backward.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::TensorMetadata;

use super::{generic, FusedOp, FusedOps};

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
