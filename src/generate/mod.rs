//! Abstracts from titles (the paper's §3.3): batched decoding with a KV cache, streamed; `sweep
//! generate`'s command line, which prints, stores and scores the samples, is in [`cli`].
//!
//! A prompt is `<|startoftext|> TITLE <|sep|>`, exactly the prefix of a training example; the
//! model continues it until `<|endoftext|>`, `--max-new-tokens`, or its context window
//! (prompt + generated <= n_positions). The `n` samples of a title decode together as one batch;
//! with the KV cache each step feeds one position per sample instead of the whole prefix.

pub mod bench;
pub mod cli;
pub mod keyterm;
pub mod sampling;

use anyhow::{anyhow, Result};
use burn::tensor::{Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::error::UsageError;
use crate::fused::FusedOps;
use crate::model::{Gpt, KvCache};
use crate::tokenizer::Tokenizer;
use sampling::SamplingParams;

/// Why a sample ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The model produced `<|endoftext|>` (not part of the text).
    EndOfText,
    /// `--max-new-tokens` reached.
    MaxTokens,
    /// The context window is full (prompt + generated = n_positions).
    Context,
}

impl Stop {
    pub fn as_str(self) -> &'static str {
        match self {
            Stop::EndOfText => "eot",
            Stop::MaxTokens => "max_tokens",
            Stop::Context => "context",
        }
    }
}

/// The last-position logits of a batch of sequences, with or without a KV cache. Both see the
/// same token stream; `feed` appends `new` (equally many tokens per row) and returns [n][V].
pub struct Decoder<'a, B: FusedOps> {
    model: &'a Gpt<B>,
    device: B::Device,
    cache: Option<KvCache<B>>,
    /// Every token so far, per row (the uncached decoder re-runs all of them each step).
    seqs: Vec<Vec<u32>>,
}

impl<'a, B: FusedOps> Decoder<'a, B> {
    pub fn new(model: &'a Gpt<B>, device: &B::Device, rows: usize, use_cache: bool) -> Self {
        Self {
            model,
            device: device.clone(),
            cache: use_cache.then(KvCache::new),
            seqs: vec![Vec::new(); rows],
        }
    }

    fn ids_tensor(&self, rows: &[&[u32]]) -> Tensor<B, 2, Int> {
        let t = rows[0].len();
        let data: Vec<i32> = rows
            .iter()
            .flat_map(|r| r.iter().map(|&x| x as i32))
            .collect();
        Tensor::from_data(TensorData::new(data, [rows.len(), t]), &self.device)
    }

    pub fn feed(&mut self, new: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let t = new[0].len();
        debug_assert!(new.len() == self.seqs.len() && new.iter().all(|r| r.len() == t));
        for (s, n) in self.seqs.iter_mut().zip(new) {
            s.extend_from_slice(n);
        }
        let rows: Vec<&[u32]> = match self.cache {
            Some(_) => new.iter().map(Vec::as_slice).collect(),
            None => self.seqs.iter().map(Vec::as_slice).collect(),
        };
        let ids = self.ids_tensor(&rows);
        let last = self.model.forward_last(ids, self.cache.as_mut())?; // [n, V]
        let v = last.dims()[1];
        let flat = last
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| anyhow!("reading logits: {e:?}"))?;
        Ok(flat.chunks_exact(v).map(<[f32]>::to_vec).collect())
    }
}

/// One finished sample: generated ids (without `<|endoftext|>`) and why it stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub ids: Vec<u32>,
    pub stop: Stop,
}

/// Decoding settings besides the sampling filters.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub params: SamplingParams,
    pub max_new_tokens: usize,
    pub use_cache: bool,
    /// `<|endoftext|>`; `None` never stops early (benchmarks).
    pub eot: Option<u32>,
}

/// Generates one sample per seed from `prompt`, all rows in one batch. `on_token(row, ids)` is
/// called after each new token of a row with all its generated ids so far.
pub fn generate<B: FusedOps>(
    model: &Gpt<B>,
    device: &B::Device,
    prompt: &[u32],
    seeds: &[u64],
    opts: &DecodeOptions,
    on_token: &mut dyn FnMut(usize, &[u32]),
) -> Result<Vec<Generated>> {
    let n = seeds.len();
    let ctx = model.n_positions();
    if prompt.is_empty() || n == 0 {
        return Err(anyhow!("generate needs a prompt and at least one seed"));
    }
    if prompt.len() >= ctx {
        return Err(UsageError(format!(
            "the prompt has {} tokens but the model's context is {ctx}: no room to generate \
             (shorten the title)",
            prompt.len()
        ))
        .into());
    }
    let room = ctx - prompt.len();
    let budget = opts.max_new_tokens.min(room);
    let at_budget = if opts.max_new_tokens <= room {
        Stop::MaxTokens
    } else {
        Stop::Context
    };
    let mut rngs: Vec<StdRng> = seeds.iter().map(|&s| StdRng::seed_from_u64(s)).collect();
    let mut seqs: Vec<Vec<u32>> = vec![prompt.to_vec(); n];
    let mut stops: Vec<Option<Stop>> = vec![None; n];
    let mut dec = Decoder::new(model, device, n, opts.use_cache);
    let mut logits = dec.feed(&seqs)?;
    for _ in 0..budget {
        for row in 0..n {
            if stops[row].is_some() {
                continue;
            }
            let tok =
                sampling::next_token(&mut logits[row], &seqs[row], &opts.params, &mut rngs[row]);
            if Some(tok) == opts.eot {
                stops[row] = Some(Stop::EndOfText);
                continue;
            }
            seqs[row].push(tok);
            on_token(row, &seqs[row][prompt.len()..]);
            if seqs[row].len() - prompt.len() == budget {
                stops[row] = Some(at_budget);
            }
        }
        if stops.iter().all(Option::is_some) {
            break;
        }
        // Finished rows keep decoding a filler token (their output is ignored): the batch stays
        // rectangular, which the cache needs.
        let next: Vec<Vec<u32>> = seqs
            .iter()
            .map(|s| vec![*s.last().expect("non-empty")])
            .collect();
        logits = dec.feed(&next)?;
    }
    Ok(seqs
        .into_iter()
        .zip(stops)
        .map(|(s, stop)| Generated {
            ids: s[prompt.len()..].to_vec(),
            stop: stop.unwrap_or(at_budget),
        })
        .collect())
}

/// Prints decoded text as tokens arrive; holds back a trailing incomplete UTF-8 sequence (shown
/// as U+FFFD by the byte-level decoder) until the token that completes it.
#[derive(Default)]
pub struct Streamer {
    printed: usize,
}

impl Streamer {
    /// The newly printable text for the generated ids so far.
    pub fn update(&mut self, tok: &Tokenizer, ids: &[u32]) -> Result<String> {
        let text = tok.decode(ids)?;
        let stable = text.trim_start().trim_end_matches('\u{FFFD}');
        match stable.get(self.printed..) {
            Some(new) if stable.len() > self.printed => {
                self.printed = stable.len();
                Ok(new.to_string())
            }
            _ => Ok(String::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use crate::model::GptConfig;

    fn tiny() -> GptConfig {
        GptConfig {
            vocab_size: 97,
            n_positions: 40,
            n_embd: 32,
            n_layer: 2,
            n_head: 4,
            dropout: 0.0,
            layer_norm_epsilon: 1e-5,
        }
    }

    fn opts(max: usize, cache: bool) -> DecodeOptions {
        DecodeOptions {
            params: SamplingParams {
                top_p: 0.95,
                ..Default::default()
            },
            max_new_tokens: max,
            use_cache: cache,
            eot: None,
        }
    }

    #[test]
    fn cached_logits_equal_full_recompute_along_a_generation() {
        let model = tiny().init::<Cpu>(&Default::default(), 3);
        let dev = Default::default();
        // A sampled continuation, then both decoders fed the same token stream.
        let prompt = [5u32, 17, 2, 60, 33];
        let gen = generate(
            &model,
            &dev,
            &prompt,
            &[1, 2],
            &opts(30, true),
            &mut |_, _| {},
        )
        .unwrap();
        let mut cached = Decoder::new(&model, &dev, 2, true);
        let mut full = Decoder::new(&model, &dev, 2, false);
        let first = vec![prompt.to_vec(); 2];
        let mut max_diff = 0f32;
        let mut compare = |a: Vec<Vec<f32>>, b: Vec<Vec<f32>>| {
            for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
                max_diff = max_diff.max((x - y).abs());
            }
        };
        compare(cached.feed(&first).unwrap(), full.feed(&first).unwrap());
        for i in 0..30 {
            let next: Vec<Vec<u32>> = gen.iter().map(|g| vec![g.ids[i]]).collect();
            compare(cached.feed(&next).unwrap(), full.feed(&next).unwrap());
        }
        println!("KV-cache vs full-recompute logits over 31 steps: max abs diff {max_diff:e}");
        assert!(max_diff < 1e-4, "max abs diff {max_diff}");
        // The same seeds give the same tokens with or without the cache.
        let again = generate(
            &model,
            &dev,
            &prompt,
            &[1, 2],
            &opts(30, false),
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(gen, again);
    }

    #[test]
    fn seeds_reproduce_and_differ() {
        let model = tiny().init::<Cpu>(&Default::default(), 4);
        let dev = Default::default();
        let run = |seeds: &[u64]| {
            generate(
                &model,
                &dev,
                &[1, 2, 3],
                seeds,
                &opts(20, true),
                &mut |_, _| {},
            )
            .unwrap()
        };
        let a = run(&[10, 11, 12]);
        assert_eq!(a, run(&[10, 11, 12]));
        assert_ne!(
            a[0].ids, a[1].ids,
            "different seeds in one batch give different samples"
        );
        assert_eq!(
            a.iter().map(|g| g.ids.len()).collect::<Vec<_>>(),
            vec![20; 3]
        );
        assert!(a.iter().all(|g| g.stop == Stop::MaxTokens));
    }

    #[test]
    fn context_window_is_respected() {
        let model = tiny().init::<Cpu>(&Default::default(), 5);
        let dev = Default::default();
        let prompt: Vec<u32> = (0..30).collect();
        let mut calls = 0;
        let out = generate(
            &model,
            &dev,
            &prompt,
            &[1],
            &opts(300, true),
            &mut |_, _| calls += 1,
        )
        .unwrap();
        assert_eq!(
            out[0].ids.len(),
            10,
            "prompt 30 + 10 generated = n_positions 40"
        );
        assert_eq!(out[0].stop, Stop::Context);
        assert_eq!(calls, 10);
        let long: Vec<u32> = (0..40).collect();
        let e = generate(&model, &dev, &long, &[1], &opts(5, true), &mut |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("context"), "{e}");
    }

    #[test]
    fn streamer_holds_back_incomplete_characters() {
        let tok = Tokenizer::gpt2().unwrap();
        let ids = tok.encode(" Schrödinger’s cat 猫").unwrap();
        let mut s = Streamer::default();
        let mut out = String::new();
        let mut saw_partial = false;
        for i in 1..=ids.len() {
            let piece = s.update(&tok, &ids[..i]).unwrap();
            assert!(
                !piece.contains('\u{FFFD}'),
                "printed a broken character at token {i}"
            );
            saw_partial |= tok.decode(&ids[..i]).unwrap().ends_with('\u{FFFD}');
            out.push_str(&piece);
        }
        assert_eq!(out, "Schrödinger’s cat 猫");
        assert!(
            saw_partial,
            "the test text should split a character across tokens"
        );
    }
}
