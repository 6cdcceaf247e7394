//! Evaluation: mean next-token cross-entropy and perplexity of a model over blocks of token ids.

use anyhow::{bail, Result};
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};

use crate::data::TokenBlocks;
use crate::fused::FusedOps;
use crate::model::Gpt;

/// Fixed-length blocks of token ids, from the data stage's token file or from memory.
pub trait Blocks {
    fn len(&self) -> usize;
    fn block_size(&self) -> usize;
    fn block(&self, i: usize) -> Vec<u32>;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Blocks for TokenBlocks {
    fn len(&self) -> usize {
        self.num_blocks()
    }
    fn block_size(&self) -> usize {
        TokenBlocks::block_size(self)
    }
    fn block(&self, i: usize) -> Vec<u32> {
        TokenBlocks::block(self, i)
    }
}

/// A token stream cut into consecutive blocks (the tail shorter than a block is dropped).
pub struct MemBlocks {
    pub ids: Vec<u32>,
    pub block_size: usize,
}

impl Blocks for MemBlocks {
    fn len(&self) -> usize {
        self.ids.len() / self.block_size
    }
    fn block_size(&self) -> usize {
        self.block_size
    }
    fn block(&self, i: usize) -> Vec<u32> {
        self.ids[i * self.block_size..(i + 1) * self.block_size].to_vec()
    }
}

/// Token ids of the given blocks as a [B, T] tensor.
pub fn batch_tensor<B: Backend>(
    blocks: &dyn Blocks,
    indices: &[usize],
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    let t = blocks.block_size();
    let mut flat = Vec::with_capacity(indices.len() * t);
    for &i in indices {
        flat.extend(blocks.block(i).into_iter().map(|x| x as i32));
    }
    Tensor::from_data(TensorData::new(flat, [indices.len(), t]), device)
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct EvalResult {
    /// Mean cross-entropy per predicted token (nats).
    pub loss: f64,
    pub ppl: f64,
    pub blocks: usize,
    /// Predicted tokens: `blocks * (block_size - 1)`.
    pub tokens: usize,
}

/// How many leading blocks an evaluation with a token cap uses (at least one).
pub fn capped_blocks(available: usize, block_size: usize, max_tokens: Option<u64>) -> usize {
    match max_tokens {
        Some(cap) => ((cap as usize) / block_size)
            .clamp(1, available.max(1))
            .min(available),
        None => available,
    }
}

/// Mean loss over the first `n` blocks, `batch` blocks at a time, in eval mode (no dropout:
/// call with a model on a non-autodiff backend).
pub fn evaluate<B: FusedOps>(
    model: &Gpt<B>,
    blocks: &dyn Blocks,
    n: usize,
    batch: usize,
    device: &B::Device,
) -> Result<EvalResult> {
    if n == 0 {
        bail!("nothing to evaluate: no complete block");
    }
    if blocks.block_size() > model.n_positions() {
        bail!(
            "block size {} exceeds the model's context of {} positions",
            blocks.block_size(),
            model.n_positions()
        );
    }
    let mut sum = 0f64;
    let all: Vec<usize> = (0..n).collect();
    for chunk in all.chunks(batch.max(1)) {
        let ids = batch_tensor::<B>(blocks, chunk, device);
        let loss = model.loss(ids).into_scalar().elem::<f64>();
        // Each block predicts the same number of tokens, so weighting by blocks is exact.
        sum += loss * chunk.len() as f64;
    }
    let loss = sum / n as f64;
    Ok(EvalResult {
        loss,
        ppl: loss.exp(),
        blocks: n,
        tokens: n * (blocks.block_size() - 1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps() {
        assert_eq!(capped_blocks(10, 100, None), 10);
        assert_eq!(capped_blocks(10, 100, Some(450)), 4);
        assert_eq!(capped_blocks(10, 100, Some(50)), 1);
        assert_eq!(capped_blocks(10, 100, Some(1_000_000)), 10);
    }

    #[test]
    fn mem_blocks_drop_the_tail() {
        let b = MemBlocks {
            ids: (0..10).collect(),
            block_size: 4,
        };
        assert_eq!(b.len(), 2);
        assert_eq!(b.block(1), vec![4, 5, 6, 7]);
    }
}
