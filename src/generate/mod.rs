//! `sweep generate`: abstracts from titles (the paper's §3.3) with a KV cache, streamed, stored and scored.
//!
//! A prompt is `<|startoftext|> TITLE <|sep|>`, exactly the prefix of a training example; the
//! model continues it until `<|endoftext|>`, `--max-new-tokens`, or its context window
//! (prompt + generated <= n_positions). The `n` samples of a title decode together as one batch;
//! with the KV cache each step feeds one position per sample instead of the whole prefix.

pub mod bench;
pub mod keyterm;
pub mod sampling;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use burn::tensor::{Int, Tensor, TensorData};
use clap::{ArgGroup, Args, ValueEnum};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;

use crate::backend::DeviceSpec;
use crate::checkpoint;
use crate::data::{self, Split};
use crate::error::UsageError;
use crate::fused::FusedOps;
use crate::model::{Gpt, GptConfig, KvCache, GPT2_HF_VOCAB};
use crate::store::{self, NewSample, Store};
use crate::tokenizer::{Tokenizer, SEP, SOT};
use keyterm::KeytermScore;
use sampling::SamplingParams;

// ---------------------------------------------------------------------------------------------
// Decoding

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

// ---------------------------------------------------------------------------------------------
// Command line

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Stream the first sample of each title, then print the others.
    Text,
    /// One JSON object per sample (no streaming).
    Json,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("source").required(true).args(["trial", "model"])))]
#[command(group(ArgGroup::new("prompts").required(true).args(["title", "titles", "from_split"])))]
pub struct GenerateArgs {
    /// A trial of the ledger; its exported model (`<artifact_dir>/model`) generates.
    #[arg(long)]
    pub trial: Option<i64>,
    /// An exported HF-layout model directory (config.json, model.safetensors, tokenizer files),
    /// or a pretrained preset in the local HF cache.
    #[arg(long, conflicts_with = "trial")]
    pub model: Option<String>,
    /// The paper title to write an abstract for (repeatable).
    #[arg(long)]
    pub title: Vec<String>,
    /// A file with one title per line (blank lines skipped).
    #[arg(long)]
    pub titles: Option<PathBuf>,
    /// Titles of a split of the trial's data ("titles from the future"), stored beside the real
    /// abstracts; prints the key-term usage score.
    #[arg(long, value_name = "SPLIT", conflicts_with_all = ["title", "titles"])]
    pub from_split: Option<Split>,
    /// How many titles of --from-split (the first ones, in file order).
    #[arg(long, default_value_t = 20)]
    pub count: usize,
    /// With --from-split: only titles of the form `ACRONYM: full name` (for the key-term score).
    #[arg(long, requires = "from_split")]
    pub acronym_titles: bool,
    /// Prepared data directory (`sweep data prepare`) for --from-split with --model.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Samples per title (decoded together as one batch).
    #[arg(short = 'n', long = "num-samples", default_value_t = 3)]
    pub n: usize,
    /// Nucleus mass p in (0, 1] (the paper: 0.9); 0 means greedy.
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    pub top_p: f64,
    /// Keep only the k most likely tokens before top-p; 0 disables.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Logits are divided by this before softmax (> 0; < 1 sharpens).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub temperature: f64,
    /// CTRL's repetition penalty (1.0 disables; CTRL used 1.2).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub repetition_penalty: f64,
    /// Stop after this many tokens (also stops at `<|endoftext|>` and at the context window).
    #[arg(long, default_value_t = 300)]
    pub max_new_tokens: usize,
    /// Seed of the first sample; sample k uses seed + k. Default: random (printed and stored).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Always the most likely token.
    #[arg(long)]
    pub greedy: bool,
    /// Write the samples to the ledger (default with --trial).
    #[arg(long, overrides_with = "no_store")]
    pub store: bool,
    /// Do not write the samples to the ledger.
    #[arg(long, overrides_with = "store")]
    pub no_store: bool,
    /// Recompute the whole prefix each step (for comparison; much slower).
    #[arg(long)]
    pub no_kv_cache: bool,
    /// Ledger URL (default results/sweep.db).
    #[arg(long, env = "SWEEP_DB")]
    pub db: Option<String>,
    /// With --trial: the artifacts root its recorded directory is relative to (default `results`).
    #[command(flatten)]
    pub artifacts: crate::artifacts::ArtifactsArgs,
    /// `cpu` or `cuda:N`.
    #[arg(long, env = "SWEEP_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Cache root where --from-split finds (or prepares) the trial's data.
    #[arg(long, env = "SWEEP_CACHE", default_value = "results/cache")]
    pub cache: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// One title to generate for, with the real abstract when it comes from a split.
struct Prompt {
    title: String,
    reference: Option<String>,
}

/// Where the model comes from and what the samples are stored against.
struct Source {
    dir: PathBuf,
    /// `(store, trial id)` when samples are written to the ledger.
    store: Option<(Box<dyn Store>, i64)>,
    prompts: Vec<Prompt>,
    split: Option<Split>,
}

pub fn run(args: GenerateArgs) -> Result<ExitCode> {
    let params = SamplingParams {
        top_p: args.top_p,
        top_k: args.top_k,
        temperature: args.temperature,
        repetition_penalty: args.repetition_penalty,
        greedy: args.greedy || args.top_p == 0.0,
    };
    params.validate()?;
    if args.max_new_tokens == 0 {
        return Err(UsageError("--max-new-tokens must be at least 1".into()).into());
    }
    if args.n == 0 {
        return Err(UsageError("-n (samples per title) must be at least 1".into()).into());
    }
    if args.from_split.is_some() && args.count == 0 {
        return Err(UsageError("--count must be at least 1".into()).into());
    }
    let source = resolve_source(&args)?;
    match DeviceSpec::parse(&args.device)? {
        DeviceSpec::Cpu => {
            generate_on::<crate::backend::Cpu>(&args, params, source, Default::default())
        }
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(n) => generate_on::<crate::backend::Cuda>(
            &args,
            params,
            source,
            crate::backend::cuda_device(n)?,
        ),
        #[allow(unreachable_patterns)]
        other => Err(UsageError(format!("device {other:?} is not compiled in")).into()),
    }
}

/// Opens the ledger without creating one: a mistyped `--db` must not leave an empty database.
fn open_existing_store(flag: Option<&str>) -> Result<(Box<dyn Store>, String)> {
    let url = store::resolve_url(flag);
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(&url);
    let is_pg = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if !is_pg && !Path::new(path).is_file() {
        return Err(UsageError(format!(
            "the ledger {path} does not exist; pass --db (or SWEEP_DB) pointing at the database \
             that `sweep run` wrote"
        ))
        .into());
    }
    Ok((store::open(&url)?, url))
}

fn resolve_source(args: &GenerateArgs) -> Result<Source> {
    let mut split_data: Option<data::Prepared> = None;
    let (dir, store) = if let Some(id) = args.trial {
        let (st, url) = open_existing_store(args.db.as_deref())?;
        let trial = st.trial(id)?.ok_or_else(|| {
            UsageError(format!(
                "no trial {id} in the ledger {url}; `sweep status` lists the trials"
            ))
        })?;
        let model_dir = crate::artifacts::trial_model(&args.artifacts.root(), &trial)?;
        if args.from_split.is_some() {
            let cfg: crate::trial::TrialConfig = serde_json::from_value(trial.config.clone())
                .with_context(|| format!("trial {id}: its config_json is not a trial config"))?;
            split_data = Some(match &args.data {
                Some(d) => data::load_prepared(d)?,
                None => data::prepare_cached(&cfg.data, &args.cache)
                    .with_context(|| format!("preparing the data of trial {id}"))?,
            });
        }
        let store = if args.no_store { None } else { Some((st, id)) };
        (model_dir, store)
    } else {
        let name = args
            .model
            .as_deref()
            .expect("clap requires --trial or --model");
        if args.store {
            return Err(UsageError(
                "--store needs --trial: samples are stored against a trial of the ledger".into(),
            )
            .into());
        }
        if GptConfig::is_preset(name)
            && !GptConfig::is_pretrained_preset(name)
            && !Path::new(name).is_dir()
        {
            return Err(UsageError(format!(
                "`{name}` is a from-scratch preset without weights; pass a trained model directory"
            ))
            .into());
        }
        if args.from_split.is_some() {
            let d = args.data.as_ref().ok_or_else(|| {
                UsageError(
                    "--from-split with --model needs --data DIR (a prepared data directory)".into(),
                )
            })?;
            split_data = Some(data::load_prepared(d)?);
        }
        (checkpoint::resolve_model_dir(name)?, None)
    };

    let mut prompts = Vec::new();
    for t in &args.title {
        if t.trim().is_empty() {
            return Err(UsageError(
                "--title is empty: give the paper title to write an abstract for".into(),
            )
            .into());
        }
        prompts.push(Prompt {
            title: t.trim().to_string(),
            reference: None,
        });
    }
    if let Some(file) = &args.titles {
        let text = std::fs::read_to_string(file)
            .map_err(|e| UsageError(format!("--titles {}: cannot read ({e})", file.display())))?;
        let before = prompts.len();
        prompts.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| Prompt {
                    title: l.to_string(),
                    reference: None,
                }),
        );
        if prompts.len() == before {
            return Err(UsageError(format!(
                "--titles {}: no titles in the file",
                file.display()
            ))
            .into());
        }
    }
    if let (Some(split), Some(prepared)) = (args.from_split, &split_data) {
        let examples = data::examples(prepared, split)?;
        let total = examples.len();
        prompts.extend(
            examples
                .into_iter()
                .filter(|(t, _)| !args.acronym_titles || keyterm::acronym(t).is_some())
                .take(args.count)
                .map(|(title, abs)| Prompt {
                    title,
                    reference: Some(abs),
                }),
        );
        if prompts.is_empty() {
            return Err(UsageError(format!(
                "the {split} split of {} has no {}titles ({total} examples)",
                prepared.dir.display(),
                if args.acronym_titles {
                    "`ACRONYM: ...` "
                } else {
                    ""
                }
            ))
            .into());
        }
    }
    Ok(Source {
        dir,
        store,
        prompts,
        split: args.from_split,
    })
}

/// The tokenizer of a model directory and the vocabulary the embedding must have for it.
fn load_tokenizer(dir: &Path, model_name: Option<&str>) -> Result<(Tokenizer, Option<usize>)> {
    let has_tok = dir.join("tokenizer.json").is_file() || dir.join("vocab.json").is_file();
    let tok = if has_tok {
        Tokenizer::from_dir(dir)?
    } else if model_name.is_some_and(GptConfig::is_pretrained_preset) {
        Tokenizer::gpt2()?
    } else {
        return Err(UsageError(format!(
            "{} has no tokenizer files (tokenizer.json or vocab.json + merges.txt)",
            dir.display()
        ))
        .into());
    };
    let ck = checkpoint::read_hf_config(dir)?;
    // An original 50,257-row GPT-2 checkpoint takes the two added tokens as mean rows (as before
    // fine-tuning); any other difference means the files do not belong together.
    if ck.vocab_size == GPT2_HF_VOCAB && tok.vocab_size() == GPT2_HF_VOCAB + 2 {
        return Ok((tok, Some(GPT2_HF_VOCAB + 2)));
    }
    if tok.vocab_size() != ck.vocab_size {
        return Err(UsageError(format!(
            "the tokenizer in {} has {} tokens but the model embeds {}: they do not belong \
             together (export the model with its own tokenizer)",
            dir.display(),
            tok.vocab_size(),
            ck.vocab_size
        ))
        .into());
    }
    Ok((tok, None))
}

fn generate_on<B: FusedOps>(
    args: &GenerateArgs,
    params: SamplingParams,
    source: Source,
    device: B::Device,
) -> Result<ExitCode> {
    let (tok, resize) = load_tokenizer(&source.dir, args.model.as_deref())?;
    let (model, cfg) = checkpoint::import_hf::<B>(&source.dir, resize, Some(0.0), &device)?;
    let opts = DecodeOptions {
        params: params.clone(),
        max_new_tokens: args.max_new_tokens,
        use_cache: !args.no_kv_cache,
        eot: Some(tok.eot_id()),
    };
    let base_seed = args.seed.unwrap_or_else(|| rand::random::<u32>() as u64);
    let text_mode = args.format == Format::Text;
    if text_mode {
        eprintln!(
            "model {} ({} layers, {} dims, context {}); seed {base_seed}; {}",
            source.dir.display(),
            cfg.n_layer,
            cfg.n_embd,
            cfg.n_positions,
            if params.greedy {
                "greedy".to_string()
            } else {
                format!(
                    "top-p {} top-k {} temperature {} repetition penalty {}",
                    params.top_p, params.top_k, params.temperature, params.repetition_penalty
                )
            }
        );
    }
    let mut score = KeytermScore::default();
    let mut stored = 0usize;
    let (mut total_tokens, mut total_secs) = (0usize, 0f64);
    let mut seed = base_seed;
    let stdout = std::io::stdout();
    for (pi, prompt) in source.prompts.iter().enumerate() {
        let ids = tok.encode(&format!("{SOT} {} {SEP}", prompt.title))?;
        let seeds: Vec<u64> = (0..args.n as u64).map(|k| seed.wrapping_add(k)).collect();
        seed = seed.wrapping_add(args.n as u64);
        if text_mode {
            println!("=== [{}/{}] {}", pi + 1, source.prompts.len(), prompt.title);
            println!("--- sample 1/{} (seed {})", args.n, seeds[0]);
        }
        let mut streamer = Streamer::default();
        let mut stream_err = None;
        let t0 = Instant::now();
        let out = generate(&model, &device, &ids, &seeds, &opts, &mut |row, gen| {
            if text_mode && row == 0 && stream_err.is_none() {
                match streamer.update(&tok, gen) {
                    Ok(s) if !s.is_empty() => {
                        let mut h = stdout.lock();
                        let _ = h.write_all(s.as_bytes()).and_then(|_| h.flush());
                    }
                    Ok(_) => {}
                    Err(e) => stream_err = Some(e),
                }
            }
        })?;
        if let Some(e) = stream_err {
            return Err(e.context("decoding generated tokens"));
        }
        let secs = t0.elapsed().as_secs_f64();
        let n_tok: usize = out.iter().map(|g| g.ids.len()).sum();
        total_tokens += n_tok;
        total_secs += secs;
        if !text_mode {
            // JSON goes to stdout; progress to stderr.
            eprintln!(
                "[{}/{}] {n_tok} tokens in {secs:.1}s: {}",
                pi + 1,
                source.prompts.len(),
                prompt.title
            );
        }
        if let Some(r) = &prompt.reference {
            score.add_real(&prompt.title, r);
        }
        for (k, g) in out.iter().enumerate() {
            let text = tok.decode(&g.ids)?.trim().to_string();
            score.add_generated(&prompt.title, &text);
            let uses = keyterm::title_term_used(&prompt.title, &text);
            match args.format {
                Format::Text => {
                    if k > 0 {
                        println!("--- sample {}/{} (seed {})", k + 1, args.n, seeds[k]);
                        println!("{text}");
                    } else {
                        println!();
                    }
                    println!("[{} tokens, stop: {}]", g.ids.len(), g.stop.as_str());
                }
                Format::Json => println!(
                    "{}",
                    json!({
                        "title": prompt.title, "sample": k, "seed": seeds[k], "text": text,
                        "tokens": g.ids.len(), "stop": g.stop.as_str(),
                        "reference": prompt.reference, "uses_acronym": uses,
                    })
                ),
            }
            if let Some((st, trial_id)) = &source.store {
                let acronym = keyterm::acronym(&prompt.title);
                let sample = NewSample {
                    trial_id: *trial_id,
                    title: prompt.title.clone(),
                    reference: prompt.reference.clone(),
                    text,
                    params: json!({
                        "top_p": params.top_p, "top_k": params.top_k,
                        "temperature": params.temperature,
                        "repetition_penalty": params.repetition_penalty,
                        "greedy": params.greedy, "max_new_tokens": args.max_new_tokens,
                        "kv_cache": opts.use_cache, "tokens": g.ids.len(), "stop": g.stop.as_str(),
                        "split": source.split.map(|s| s.to_string()),
                        "acronym": acronym,
                        "reference_uses_acronym": prompt.reference.as_deref()
                            .and_then(|r| keyterm::title_term_used(&prompt.title, r)),
                        "model_dir": source.dir.display().to_string(),
                    }),
                    seed: Some(seeds[k] as i64),
                    uses_acronym: uses,
                };
                st.insert_sample(&sample)
                    .context("storing a sample in the ledger")?;
                stored += 1;
            }
        }
    }
    if text_mode {
        eprintln!(
            "generated {total_tokens} tokens in {total_secs:.1}s ({:.1} tok/s, {} samples per batch, \
             KV cache {})",
            total_tokens as f64 / total_secs.max(1e-9),
            args.n,
            if opts.use_cache { "on" } else { "off" }
        );
    }
    if source.split.is_some() || score.generated > 0 {
        let line = score.describe(source.split.is_some());
        if text_mode {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    }
    if let Some((_, trial_id)) = &source.store {
        eprintln!("stored {stored} samples for trial {trial_id}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;

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
