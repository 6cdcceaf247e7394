//! `sweep generate`'s command line: its arguments, the model, prompts and ledger they name, and
//! each sample printed (text or JSON) and stored.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{ArgGroup, Args, ValueEnum};
use serde_json::json;

use super::keyterm::{self, KeytermScore};
use super::sampling::SamplingParams;
use super::{generate, DecodeOptions, Generated, Streamer};
use crate::backend::DeviceSpec;
use crate::checkpoint;
use crate::data::{self, Split};
use crate::error::UsageError;
use crate::fused::FusedOps;
use crate::model::{Gpt, GptConfig, GPT2_HF_VOCAB};
use crate::store::{self, NewSample, Store};
use crate::tokenizer::{Tokenizer, SEP, SOT};

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
    #[command(flatten)]
    pub ledger: crate::locations::LedgerArgs,
    /// With --trial: the artifacts root its recorded directory is relative to (default `results`).
    #[command(flatten)]
    pub artifacts: crate::locations::ArtifactsArgs,
    /// `cpu` or `cuda:N`.
    #[arg(long, env = "SWEEP_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Where --from-split finds (or prepares) the trial's data.
    #[command(flatten)]
    pub cache: crate::locations::CacheArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}
/// What `sweep generate` does, resolved from its arguments (the model and prompts aside).
struct Settings {
    params: SamplingParams,
    max_new_tokens: usize,
    /// Samples per title.
    samples: usize,
    /// Seed of the first sample; random when not given.
    seed: Option<u64>,
    use_cache: bool,
    format: Format,
    /// `--model`'s name: a hub preset's tokenizer is looked up by it.
    model_name: Option<String>,
}

impl Settings {
    fn from_args(args: &GenerateArgs) -> Result<Self> {
        let params = SamplingParams {
            top_p: args.top_p,
            top_k: args.top_k,
            temperature: args.temperature,
            repetition_penalty: args.repetition_penalty,
            greedy: args.greedy || args.top_p == 0.0,
        };
        params.validate()?;
        let at_least_one = |n: usize, what: &str| match n {
            0 => Err(UsageError(format!("{what} must be at least 1"))),
            _ => Ok(()),
        };
        at_least_one(args.max_new_tokens, "--max-new-tokens")?;
        at_least_one(args.n, "-n (samples per title)")?;
        if args.from_split.is_some() {
            at_least_one(args.count, "--count")?;
        }
        Ok(Self {
            params,
            max_new_tokens: args.max_new_tokens,
            samples: args.n,
            seed: args.seed,
            use_cache: !args.no_kv_cache,
            format: args.format,
            model_name: args.model.clone(),
        })
    }
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
    let settings = Settings::from_args(&args)?;
    let source = resolve_source(&args)?;
    crate::on_backend!(DeviceSpec::parse(&args.device)?, |B, dev| {
        generate_on::<B>(&settings, &source, dev)
    })
}

/// Opens the ledger without creating one: a mistyped `--db` must not leave an empty database.
fn open_existing_store(url: &str) -> Result<Box<dyn Store>> {
    store::open_existing(url)?.ok_or_else(|| {
        UsageError(format!(
            "the ledger {url} does not exist; pass --db (or SWEEP_DB) pointing at the database \
             that `sweep run` wrote"
        ))
        .into()
    })
}
/// The model `--trial` or `--model` names, the ledger samples go to, and the prompts.
fn resolve_source(args: &GenerateArgs) -> Result<Source> {
    let (dir, store, split_data) = match args.trial {
        Some(id) => trial_model(args, id)?,
        None => named_model(args)?,
    };
    let mut prompts = given_titles(args)?;
    if let (Some(split), Some(prepared)) = (args.from_split, &split_data) {
        prompts.extend(split_titles(args, split, prepared)?);
    }
    Ok(Source {
        dir,
        store,
        prompts,
        split: args.from_split,
    })
}

/// A ledger trial's exported model, the ledger (unless `--no-store`), and with `--from-split`
/// the trial's prepared data.
type Model = (
    PathBuf,
    Option<(Box<dyn Store>, i64)>,
    Option<data::Prepared>,
);

fn trial_model(args: &GenerateArgs, id: i64) -> Result<Model> {
    let st = open_existing_store(&args.ledger.url())?;
    let (_, cfg, model_dir) = crate::artifacts::ledger_trial(&*st, id, &args.artifacts.root())?;
    let mut split_data = None;
    if args.from_split.is_some() {
        split_data = Some(match &args.data {
            Some(d) => data::load_prepared(d)?,
            None => data::prepare_cached(&cfg.data, &args.cache.root())
                .with_context(|| format!("preparing the data of trial {id}"))?,
        });
    }
    let store = if args.no_store { None } else { Some((st, id)) };
    Ok((model_dir, store, split_data))
}

/// `--model`'s directory or hub preset (never stored), and `--data` for `--from-split`.
fn named_model(args: &GenerateArgs) -> Result<Model> {
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
    let mut split_data = None;
    if args.from_split.is_some() {
        let d = args.data.as_ref().ok_or_else(|| {
            UsageError(
                "--from-split with --model needs --data DIR (a prepared data directory)".into(),
            )
        })?;
        split_data = Some(data::load_prepared(d)?);
    }
    Ok((checkpoint::weights_dir(name)?, None, split_data))
}

/// The titles of `--title` and `--titles`, in that order.
fn given_titles(args: &GenerateArgs) -> Result<Vec<Prompt>> {
    let prompt = |title: &str| Prompt {
        title: title.to_string(),
        reference: None,
    };
    let mut prompts = Vec::new();
    for t in &args.title {
        if t.trim().is_empty() {
            return Err(UsageError(
                "--title is empty: give the paper title to write an abstract for".into(),
            )
            .into());
        }
        prompts.push(prompt(t.trim()));
    }
    if let Some(file) = &args.titles {
        let text = std::fs::read_to_string(file)
            .map_err(|e| UsageError(format!("--titles {}: cannot read ({e})", file.display())))?;
        let before = prompts.len();
        prompts.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(prompt),
        );
        if prompts.len() == before {
            return Err(UsageError(format!(
                "--titles {}: no titles in the file",
                file.display()
            ))
            .into());
        }
    }
    Ok(prompts)
}

/// The first `--count` titles of a split (with `--acronym-titles`, of the `ACRONYM: ...` ones),
/// each with its real abstract.
fn split_titles(
    args: &GenerateArgs,
    split: Split,
    prepared: &data::Prepared,
) -> Result<Vec<Prompt>> {
    let examples = data::examples(prepared, split)?;
    let total = examples.len();
    let prompts: Vec<Prompt> = examples
        .into_iter()
        .filter(|(t, _)| !args.acronym_titles || keyterm::acronym(t).is_some())
        .take(args.count)
        .map(|(title, abs)| Prompt {
            title,
            reference: Some(abs),
        })
        .collect();
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
    Ok(prompts)
}

/// The tokenizer of a model directory and the vocabulary the embedding must have for it.
fn load_tokenizer(dir: &Path, model_name: Option<&str>) -> Result<(Tokenizer, Option<usize>)> {
    let tok = checkpoint::dir_tokenizer(dir, model_name)?;
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
/// One `sweep generate` run: the loaded model, and the counts its summary reports.
struct Session<'a, B: FusedOps> {
    settings: &'a Settings,
    source: &'a Source,
    tok: Tokenizer,
    model: Gpt<B>,
    cfg: GptConfig,
    device: B::Device,
    opts: DecodeOptions,
    /// The next sample's seed: sample k of the run uses the first seed + k.
    seed: u64,
    score: KeytermScore,
    stored: usize,
    tokens: usize,
    seconds: f64,
}

fn generate_on<B: FusedOps>(
    settings: &Settings,
    source: &Source,
    device: B::Device,
) -> Result<ExitCode> {
    let mut session = Session::<B>::open(settings, source, device)?;
    session.print_header();
    for (i, prompt) in source.prompts.iter().enumerate() {
        session.prompt(i, prompt)?;
    }
    session.print_summary();
    Ok(ExitCode::SUCCESS)
}

impl<'a, B: FusedOps> Session<'a, B> {
    fn open(settings: &'a Settings, source: &'a Source, device: B::Device) -> Result<Self> {
        let (tok, resize) = load_tokenizer(&source.dir, settings.model_name.as_deref())?;
        let (model, cfg) = checkpoint::import_hf::<B>(&source.dir, resize, Some(0.0), &device)?;
        let opts = DecodeOptions {
            params: settings.params.clone(),
            max_new_tokens: settings.max_new_tokens,
            use_cache: settings.use_cache,
            eot: Some(tok.eot_id()),
        };
        Ok(Self {
            seed: settings
                .seed
                .unwrap_or_else(|| rand::random::<u32>() as u64),
            settings,
            source,
            tok,
            model,
            cfg,
            device,
            opts,
            score: KeytermScore::default(),
            stored: 0,
            tokens: 0,
            seconds: 0.0,
        })
    }

    fn text_mode(&self) -> bool {
        self.settings.format == Format::Text
    }

    fn print_header(&self) {
        if !self.text_mode() {
            return;
        }
        let p = &self.settings.params;
        let sampling = if p.greedy {
            "greedy".to_string()
        } else {
            format!(
                "top-p {} top-k {} temperature {} repetition penalty {}",
                p.top_p, p.top_k, p.temperature, p.repetition_penalty
            )
        };
        eprintln!(
            "model {} ({} layers, {} dims, context {}); seed {}; {sampling}",
            self.source.dir.display(),
            self.cfg.n_layer,
            self.cfg.n_embd,
            self.cfg.n_positions,
            self.seed
        );
    }

    /// Generates, prints and stores the samples of one title.
    fn prompt(&mut self, i: usize, prompt: &Prompt) -> Result<()> {
        let ids = self.tok.encode(&format!("{SOT} {} {SEP}", prompt.title))?;
        let n = self.settings.samples as u64;
        let seeds: Vec<u64> = (0..n).map(|k| self.seed.wrapping_add(k)).collect();
        self.seed = self.seed.wrapping_add(n);
        let of = self.source.prompts.len();
        if self.text_mode() {
            println!("=== [{}/{of}] {}", i + 1, prompt.title);
            println!("--- sample 1/{n} (seed {})", seeds[0]);
        }
        let t0 = Instant::now();
        let out = self.decode(&ids, &seeds)?;
        let secs = t0.elapsed().as_secs_f64();
        let n_tok: usize = out.iter().map(|g| g.ids.len()).sum();
        self.tokens += n_tok;
        self.seconds += secs;
        if !self.text_mode() {
            // JSON goes to stdout; progress to stderr.
            eprintln!(
                "[{}/{of}] {n_tok} tokens in {secs:.1}s: {}",
                i + 1,
                prompt.title
            );
        }
        if let Some(r) = &prompt.reference {
            self.score.add_real(&prompt.title, r);
        }
        for (k, g) in out.iter().enumerate() {
            self.sample(prompt, k, seeds[k], g)?;
        }
        Ok(())
    }

    /// Decodes the samples of a prompt as one batch, streaming the first to stdout in text mode.
    fn decode(&self, ids: &[u32], seeds: &[u64]) -> Result<Vec<Generated>> {
        let stream = self.text_mode();
        let mut streamer = Streamer::default();
        let mut stream_err = None;
        let stdout = std::io::stdout();
        let out = generate(
            &self.model,
            &self.device,
            ids,
            seeds,
            &self.opts,
            &mut |row, gen| {
                if stream && row == 0 && stream_err.is_none() {
                    match streamer.update(&self.tok, gen) {
                        Ok(s) if !s.is_empty() => {
                            let mut h = stdout.lock();
                            let _ = h.write_all(s.as_bytes()).and_then(|_| h.flush());
                        }
                        Ok(_) => {}
                        Err(e) => stream_err = Some(e),
                    }
                }
            },
        )?;
        match stream_err {
            Some(e) => Err(e.context("decoding generated tokens")),
            None => Ok(out),
        }
    }

    /// Scores, prints and stores sample `k` of a prompt.
    fn sample(&mut self, prompt: &Prompt, k: usize, seed: u64, g: &Generated) -> Result<()> {
        let text = self.tok.decode(&g.ids)?.trim().to_string();
        self.score.add_generated(&prompt.title, &text);
        let uses = keyterm::title_term_used(&prompt.title, &text);
        match self.settings.format {
            Format::Text => {
                if k > 0 {
                    println!(
                        "--- sample {}/{} (seed {seed})",
                        k + 1,
                        self.settings.samples
                    );
                    println!("{text}");
                } else {
                    println!();
                }
                println!("[{} tokens, stop: {}]", g.ids.len(), g.stop.as_str());
            }
            Format::Json => println!(
                "{}",
                json!({
                    "title": prompt.title, "sample": k, "seed": seed, "text": text,
                    "tokens": g.ids.len(), "stop": g.stop.as_str(),
                    "reference": prompt.reference, "uses_acronym": uses,
                })
            ),
        }
        self.store(prompt, seed, g, text, uses)
    }

    /// Writes a sample to the ledger, with how it was made, when the run stores samples.
    fn store(
        &mut self,
        prompt: &Prompt,
        seed: u64,
        g: &Generated,
        text: String,
        uses: Option<bool>,
    ) -> Result<()> {
        let Some((st, trial_id)) = &self.source.store else {
            return Ok(());
        };
        let p = &self.settings.params;
        let sample = NewSample {
            trial_id: *trial_id,
            title: prompt.title.clone(),
            reference: prompt.reference.clone(),
            text,
            params: json!({
                "top_p": p.top_p, "top_k": p.top_k,
                "temperature": p.temperature,
                "repetition_penalty": p.repetition_penalty,
                "greedy": p.greedy, "max_new_tokens": self.settings.max_new_tokens,
                "kv_cache": self.opts.use_cache, "tokens": g.ids.len(), "stop": g.stop.as_str(),
                "split": self.source.split.map(|s| s.to_string()),
                "acronym": keyterm::acronym(&prompt.title),
                "reference_uses_acronym": prompt.reference.as_deref()
                    .and_then(|r| keyterm::title_term_used(&prompt.title, r)),
                "model_dir": self.source.dir.display().to_string(),
            }),
            seed: Some(seed as i64),
            uses_acronym: uses,
        };
        st.insert_sample(&sample)
            .context("storing a sample in the ledger")?;
        self.stored += 1;
        Ok(())
    }

    fn print_summary(&self) {
        if self.text_mode() {
            eprintln!(
                "generated {} tokens in {:.1}s ({:.1} tok/s, {} samples per batch, KV cache {})",
                self.tokens,
                self.seconds,
                self.tokens as f64 / self.seconds.max(1e-9),
                self.settings.samples,
                if self.opts.use_cache { "on" } else { "off" }
            );
        }
        let split = self.source.split.is_some();
        if split || self.score.generated > 0 {
            let line = self.score.describe(split);
            if self.text_mode() {
                println!("{line}");
            } else {
                eprintln!("{line}");
            }
        }
        if let Some((_, trial_id)) = &self.source.store {
            eprintln!("stored {} samples for trial {trial_id}", self.stored);
        }
    }
}
