//! `sweep bench-generate` (hidden): decoding tokens/s with and without the KV cache on random weights.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::sampling::SamplingParams;
use super::{generate, DecodeOptions};
use crate::backend::DeviceSpec;
use crate::error::UsageError;
use crate::model::GptConfig;

#[derive(Args, Debug)]
pub struct BenchGenerateArgs {
    /// Model shape (`gpt2-tiny`, `distilgpt2`, ...); weights are random.
    #[arg(long, default_value = "gpt2-tiny")]
    pub preset: String,
    /// New tokens per sample (never stopped early by `<|endoftext|>`).
    #[arg(long, default_value_t = 300)]
    pub new_tokens: usize,
    /// Prompt length in tokens (a title is ~15).
    #[arg(long, default_value_t = 16)]
    pub prompt_tokens: usize,
    /// Samples decoded together.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Greedy decoding instead of top-p 0.9: random weights give a near-uniform distribution whose
    /// nucleus holds most of the vocabulary, so sampling costs far more than with a trained model.
    #[arg(long)]
    pub greedy: bool,
    /// `cached`, `uncached` or `both`.
    #[arg(long, default_value = "both")]
    pub mode: String,
    #[arg(long, env = "SWEEP_DEVICE", default_value = "cpu")]
    pub device: String,
}

pub fn run(args: BenchGenerateArgs) -> Result<ExitCode> {
    crate::on_backend!(DeviceSpec::parse(&args.device)?, |B, dev| bench_on::<B>(
        &args, dev
    ))
}

fn bench_on<B: crate::fused::FusedOps>(
    args: &BenchGenerateArgs,
    device: B::Device,
) -> Result<ExitCode> {
    let modes: Vec<bool> = match args.mode.as_str() {
        "both" => vec![true, false],
        "cached" => vec![true],
        "uncached" => vec![false],
        m => return Err(UsageError(format!("--mode {m}: use cached, uncached or both")).into()),
    };
    let cfg = GptConfig::preset(&args.preset)?;
    if args.prompt_tokens == 0
        || args.batch == 0
        || args.prompt_tokens + args.new_tokens > cfg.n_positions
    {
        return Err(UsageError(format!(
            "--prompt-tokens ({}) >= 1, --batch >= 1, and prompt + --new-tokens ({}) within {}'s \
             context of {}",
            args.prompt_tokens, args.new_tokens, args.preset, cfg.n_positions
        ))
        .into());
    }
    let model = cfg.init::<B>(&device, 0);
    let prompt: Vec<u32> = (0..args.prompt_tokens as u32)
        .map(|i| (i * 7919 + 13) % cfg.vocab_size as u32)
        .collect();
    let seeds: Vec<u64> = (0..args.batch as u64).collect();
    let mut rates = Vec::new();
    for use_cache in modes {
        let opts = DecodeOptions {
            params: SamplingParams {
                greedy: args.greedy,
                ..Default::default()
            },
            max_new_tokens: args.new_tokens,
            use_cache,
            eot: None,
        };
        // Warm-up: a few steps, so one-time allocations and kernel setup are not timed.
        let warm = DecodeOptions {
            max_new_tokens: 4,
            ..opts.clone()
        };
        generate(&model, &device, &prompt, &seeds, &warm, &mut |_, _| {})?;
        let t0 = Instant::now();
        let out = generate(&model, &device, &prompt, &seeds, &opts, &mut |_, _| {})?;
        let _ = B::sync(&device);
        let secs = t0.elapsed().as_secs_f64();
        let tokens: usize = out.iter().map(|g| g.ids.len()).sum();
        let rate = tokens as f64 / secs;
        rates.push(rate);
        println!(
            "{}",
            json!({
                "impl": format!("burn-{}", DeviceSpec::parse(&args.device)?.describe()),
                "preset": args.preset, "params": cfg.num_params(), "kv_cache": use_cache, "greedy": args.greedy,
                "batch": args.batch, "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
                "generated": tokens, "seconds": secs, "tokens_per_s": rate,
            })
        );
    }
    if let [cached, uncached] = rates[..] {
        println!(
            "{}",
            json!({"preset": args.preset, "speedup_cached_over_uncached": cached / uncached})
        );
    }
    Ok(ExitCode::SUCCESS)
}
