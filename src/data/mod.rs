//! The data stage: arXiv metadata -> cleaned, date-split title/abstract corpus -> cached token blocks.

pub mod blocks;
pub mod prepare;
pub mod readers;

pub use blocks::{split_token_count, token_blocks, TokenBlocks};

use crate::error::UsageError;
use crate::tokenizer::{Tokenizer, EOT, SEP, SOT};
use crate::trial::TokenizerSpec;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub const SPLITS: [&str; 3] = ["train", "valid", "test"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Valid,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];
    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(SPLITS[self.index()])
    }
}

impl std::str::FromStr for Split {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(Split::Train),
            "valid" | "validation" => Ok(Split::Valid),
            "test" => Ok(Split::Test),
            _ => Err(UsageError(format!(
                "unknown split {s:?}: expected train, valid or test"
            ))
            .into()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Data rows read from all sources.
    pub rows: u64,
    pub malformed: u64,
    pub out_of_category: u64,
    /// Papers already seen under the same arXiv id (in an earlier row or file).
    pub duplicates: u64,
    pub empty_title: u64,
    pub empty_abstract: u64,
    pub kept: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    pub path: String,
    pub format: String,
    pub sha256: String,
    pub bytes: u64,
    pub rows: u64,
    pub malformed: u64,
    pub out_of_category: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitInfo {
    pub name: String,
    pub file: String,
    pub count: u64,
    pub first_date: Option<String>,
    pub last_date: Option<String>,
    /// Tokens under `Manifest::tokenizer`, special tokens included.
    pub tokens: u64,
    /// sha256 of the split's text file.
    pub sha256: String,
}

/// `manifest.json` of a prepared directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    /// Content hash of the sources' sha256 and the filters (see `prepare::spec_hash`).
    pub hash: String,
    pub sources: Vec<SourceInfo>,
    /// Canonical (sorted) category filter; empty = all categories.
    pub categories: Vec<String>,
    pub split_ratio: [f64; 3],
    pub counts: Counts,
    pub splits: Vec<SplitInfo>,
    /// Tokenizer of the token counts.
    pub tokenizer: String,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct Prepared {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub hash: String,
}

impl Prepared {
    pub fn split_path(&self, split: Split) -> PathBuf {
        self.dir.join(format!("{split}.txt"))
    }

    /// The tokenizer of a trial on this data (a `bpe-N` is trained on its training split).
    pub fn tokenizer(&self, spec: TokenizerSpec, cache_root: &Path) -> Result<Tokenizer> {
        Tokenizer::for_spec(spec, &self.split_path(Split::Train), &self.hash, cache_root)
    }
}

pub fn load_prepared(dir: &Path) -> Result<Prepared> {
    let mpath = dir.join("manifest.json");
    let text = std::fs::read_to_string(&mpath).map_err(|e| {
        UsageError(format!(
            "{}: cannot read ({e}); is {} a directory written by `sweep data prepare`?",
            mpath.display(),
            dir.display()
        ))
    })?;
    let manifest: Manifest =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", mpath.display()))?;
    if manifest.format != prepare::FORMAT {
        return Err(UsageError(format!(
            "{}: format {:?}, this sweep reads {:?}; prepare the data again",
            mpath.display(),
            manifest.format,
            prepare::FORMAT
        ))
        .into());
    }
    for s in Split::ALL {
        let p = dir.join(format!("{s}.txt"));
        if !p.is_file() {
            return Err(
                UsageError(format!("{}: missing; prepare the data again", p.display())).into(),
            );
        }
    }
    Ok(Prepared {
        dir: dir.to_path_buf(),
        hash: manifest.hash.clone(),
        manifest,
    })
}

/// Prepare `spec` once into `cache_root/data/<hash>/` and reuse it afterwards.
pub fn prepare_cached(spec: &crate::trial::DataSpec, cache_root: &Path) -> Result<Prepared> {
    let inputs: Vec<PathBuf> = spec.sources.iter().map(PathBuf::from).collect();
    let mut shas = Vec::new();
    for p in &inputs {
        readers::detect(p)?;
        if !p.is_file() {
            return Err(
                UsageError(format!("data source {}: input file not found", p.display())).into(),
            );
        }
        shas.push(prepare::sha256_file(p)?);
    }
    prepare::check_split(&spec.split)?;
    let hash = prepare::spec_hash(&shas, &spec.categories, &spec.split);
    let dir = cache_root.join("data").join(&hash);
    if let Ok(p) = load_prepared(&dir) {
        return Ok(p);
    }
    let opts = prepare::Options {
        inputs,
        categories: spec.categories.clone(),
        split: spec.split,
        strict: false,
        verbose: true,
    };
    let corpus = prepare::build(&opts)?;
    let tok = Tokenizer::gpt2()?;
    match prepare::write(&corpus, &opts, &dir, &tok, cache_root) {
        Ok(_) => {}
        // Another worker may have finished the same directory first.
        Err(e) => {
            if load_prepared(&dir).is_err() {
                return Err(e);
            }
        }
    }
    load_prepared(&dir)
}

/// (title, abstract) pairs of a split, in file order.
pub fn examples(prepared: &Prepared, split: Split) -> Result<Vec<(String, String)>> {
    let path = prepared.split_path(split);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let (head, sep, tail) = (format!("{SOT} "), format!(" {SEP} "), format!(" {EOT}"));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            l.strip_prefix(head.as_str())
                .and_then(|l| l.strip_suffix(tail.as_str()))
                .and_then(|l| l.split_once(sep.as_str()))
                .map(|(t, a)| (t.to_string(), a.to_string()))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: line {} is not in the example format",
                        path.display(),
                        i + 1
                    )
                })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Command line

#[derive(clap::Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(clap::Subcommand, Debug)]
enum DataCommand {
    /// Build the train/valid/test corpus from arXiv metadata dumps and print Table 1.
    Prepare(PrepareArgs),
    /// Print Table 1 of an already prepared directory.
    Show {
        /// A directory written by `sweep data prepare`.
        dir: PathBuf,
    },
    /// Tokenization throughput of a text file (one example per line), for bench/tokenize.py.
    #[command(hide = true)]
    BenchTokenize {
        file: PathBuf,
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// Time a trial's data loading from the cache (prepare_cached + tokenizer + token blocks).
    #[command(hide = true)]
    BenchLoad {
        #[arg(long = "input", required = true, num_args = 1..)]
        inputs: Vec<String>,
        #[arg(long, env = "SWEEP_CACHE", default_value = "results/cache")]
        cache: PathBuf,
        #[arg(long, default_value_t = 1024)]
        block_size: usize,
    },
}

#[derive(clap::Args, Debug)]
struct PrepareArgs {
    /// Input files: arXiv Archive .tsv/.tsv.xz/.tsv.zip, Kaggle arxiv-metadata .json/.jsonl.
    #[arg(long = "input", short = 'i', required = true, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// Output directory (written atomically: a temporary directory renamed at the end).
    #[arg(long, short = 'o')]
    out: PathBuf,
    /// Keep papers with any of these categories (cross-lists count); `all` keeps everything.
    #[arg(long, num_args = 1.., value_delimiter = ',', default_values_t = crate::trial::default_categories())]
    categories: Vec<String>,
    /// train,valid,test ratio, split in date order (oldest papers train).
    #[arg(long, default_value = "9,0.5,0.5")]
    split: String,
    /// Fail on the first malformed row instead of skipping and counting it.
    #[arg(long)]
    strict: bool,
    /// Token cache directory (token counts are kept there for training).
    #[arg(long, env = "SWEEP_CACHE", default_value = "results/cache")]
    cache: PathBuf,
}

pub fn run(args: DataArgs) -> Result<ExitCode> {
    match args.command {
        DataCommand::Prepare(a) => run_prepare(a),
        DataCommand::Show { dir } => {
            let p = load_prepared(&dir)?;
            print!("{}", prepare::table1(&p.manifest));
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::BenchTokenize { file, repeat } => bench_tokenize(&file, repeat),
        DataCommand::BenchLoad {
            inputs,
            cache,
            block_size,
        } => bench_load(inputs, &cache, block_size),
    }
}

fn run_prepare(a: PrepareArgs) -> Result<ExitCode> {
    let t0 = std::time::Instant::now();
    let split = parse_split(&a.split)?;
    let opts = prepare::Options {
        inputs: a.inputs,
        categories: a.categories,
        split,
        strict: a.strict,
        verbose: true,
    };
    let corpus = prepare::build(&opts)?;
    let tok = Tokenizer::gpt2()?;
    let m = prepare::write(&corpus, &opts, &a.out, &tok, &a.cache)?;
    let c = &m.counts;
    println!(
        "{} rows read: {} malformed, {} outside categories [{}], {} duplicate ids, {} empty titles, {} empty abstracts dropped; {} papers kept",
        c.rows,
        c.malformed,
        c.out_of_category,
        if m.categories.is_empty() { "all".to_string() } else { m.categories.join(" ") },
        c.duplicates,
        c.empty_title,
        c.empty_abstract,
        c.kept
    );
    for e in &corpus.malformed_examples {
        println!("  skipped {e}");
    }
    println!();
    print!("{}", prepare::table1(&m));
    println!(
        "\nwrote {} (train.txt, valid.txt, test.txt, manifest.json) in {:.1} s",
        a.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn bench_load(sources: Vec<String>, cache: &Path, block_size: usize) -> Result<ExitCode> {
    let spec = crate::trial::DataSpec {
        sources,
        categories: crate::trial::default_categories(),
        split: crate::trial::default_split(),
    };
    prepare_cached(&spec, cache)?; // builds the cache if this is the first trial
    let t0 = std::time::Instant::now();
    let p = prepare_cached(&spec, cache)?;
    let t1 = std::time::Instant::now();
    let tok = Tokenizer::gpt2()?;
    let t2 = std::time::Instant::now();
    let mut train_blocks = 0;
    for s in Split::ALL {
        let b = token_blocks(&p, s, &tok, block_size, cache)?;
        if s == Split::Train {
            train_blocks = b.num_blocks();
        }
    }
    let t3 = std::time::Instant::now();
    println!("prepare_cached_s {:.4}", (t1 - t0).as_secs_f64());
    println!("tokenizer_s {:.4}", (t2 - t1).as_secs_f64());
    println!("blocks_s {:.4}", (t3 - t2).as_secs_f64());
    println!("load_total_s {:.4}", (t3 - t0).as_secs_f64());
    println!("train_blocks {train_blocks}");
    Ok(ExitCode::SUCCESS)
}

fn parse_split(s: &str) -> Result<[f64; 3]> {
    let bad = || {
        UsageError(format!(
            "--split {s:?}: expected three numbers train,valid,test, e.g. 9,0.5,0.5"
        ))
    };
    let v: Vec<f64> = s
        .split([',', ':'])
        .map(|x| x.trim().parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad())?;
    let r: [f64; 3] = v.try_into().map_err(|_| bad())?;
    prepare::check_split(&r)?;
    Ok(r)
}

fn bench_tokenize(file: &Path, repeat: usize) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let bytes: usize = lines.iter().map(|l| l.len()).sum();
    let tok = Tokenizer::gpt2()?;
    let mb = bytes as f64 / 1e6;
    let time = |f: &dyn Fn() -> Result<usize>| -> Result<(f64, usize)> {
        let mut best = f64::INFINITY;
        let mut n = 0;
        for _ in 0..repeat.max(1) {
            let t = std::time::Instant::now();
            n = f()?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok((best, n))
    };
    let (par, n) = time(&|| Ok(tok.encode_many(&lines)?.iter().map(Vec::len).sum()))?;
    let (seq, n2) = time(&|| {
        let mut n = 0;
        for l in &lines {
            n += tok.encode(l)?.len();
        }
        Ok(n)
    })?;
    anyhow::ensure!(
        n == n2,
        "batch and sequential encodings disagree ({n} vs {n2} tokens)"
    );
    println!("rust_batch_mb_s {:.2}", mb / par);
    println!("rust_single_mb_s {:.2}", mb / seq);
    println!("rust_tokens {n}");
    println!("bytes {bytes}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "\tabstract\tacm_class\tarxiv_id\tauthor_text\tcategories\tcomments\tcreated\tdoi\tnum_authors\tnum_categories\tprimary_cat\ttitle\tupdated\tcategories_list\n";

    fn row(id: &str, title: &str, abs: &str, cats: &str, created: &str) -> String {
        format!("0\t{abs}\t\t{id}\tA. Author\t{cats}\t\t{created}\t\t1\t1\tcs.CL\t{title}\t\t[]\n")
    }

    /// Two category files with overlapping ids, unsorted dates and an empty abstract.
    fn fixture(dir: &Path) -> (PathBuf, PathBuf) {
        let mut a = HEADER.to_string();
        let mut b = HEADER.to_string();
        for i in (0..30).rev() {
            let d = format!("2018-01-{:02}", 1 + i % 28);
            a += &row(
                &format!("1801.{i:05}"),
                &format!("\"Title {i}\nline\""),
                &format!("Abstract   {i}."),
                "cs.CL",
                &d,
            );
        }
        for i in 20..45 {
            let d = format!("2018-02-{:02}", 1 + i % 28);
            let date = if i < 30 {
                format!("2018-01-{:02}", 1 + i % 28)
            } else {
                d
            };
            b += &row(
                &format!("1801.{i:05}"),
                &format!("Title {i}"),
                &format!("Abstract {i}."),
                "cs.LG,stat.ML",
                &date,
            );
        }
        b += &row(
            "1802.99999",
            "Empty abstract",
            "\"  \n \"",
            "cs.LG",
            "2018-02-01",
        );
        let (pa, pb) = (dir.join("cs.CL.tsv"), dir.join("cs.LG.tsv"));
        std::fs::write(&pa, a).unwrap();
        std::fs::write(&pb, b).unwrap();
        (pa, pb)
    }

    #[test]
    fn prepare_dedups_sorts_splits_and_caches() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = fixture(dir.path());
        let spec = crate::trial::DataSpec {
            sources: vec![a.display().to_string(), b.display().to_string()],
            categories: crate::trial::default_categories(),
            split: [8.0, 1.0, 1.0],
        };
        let cache = dir.path().join("cache");
        let p = prepare_cached(&spec, &cache).unwrap();
        let c = &p.manifest.counts;
        assert_eq!(
            (c.rows, c.duplicates, c.empty_abstract, c.kept),
            (56, 10, 1, 45)
        );
        let counts: Vec<u64> = p.manifest.splits.iter().map(|s| s.count).collect();
        assert_eq!(counts, vec![35, 5, 5]);
        let mut all = Vec::new();
        for s in Split::ALL {
            all.extend(examples(&p, s).unwrap());
        }
        assert_eq!(all.len(), 45);
        assert_eq!(
            all[0],
            ("Title 0 line".to_string(), "Abstract 0.".to_string())
        );
        // Dates are non-decreasing across the concatenated splits.
        let dates: Vec<&String> = p
            .manifest
            .splits
            .iter()
            .flat_map(|s| {
                [
                    s.first_date.as_ref().unwrap(),
                    s.last_date.as_ref().unwrap(),
                ]
            })
            .collect();
        assert!(dates.windows(2).all(|w| w[0] <= w[1]), "{dates:?}");
        // Token counts match an independent encode of the split text.
        let tok = Tokenizer::gpt2().unwrap();
        let text = std::fs::read_to_string(p.split_path(Split::Valid)).unwrap();
        let n: usize = text.lines().map(|l| tok.encode(l).unwrap().len()).sum();
        assert_eq!(
            split_token_count(&p, Split::Valid, &tok, &cache).unwrap(),
            n
        );
        let blocks = token_blocks(&p, Split::Valid, &tok, 16, &cache).unwrap();
        assert_eq!(blocks.num_blocks(), n / 16);
        let first: Vec<u32> = text
            .lines()
            .flat_map(|l| tok.encode(l).unwrap())
            .take(32)
            .collect();
        assert_eq!(blocks.block(1), first[16..32]);
        // Second call: same directory, nothing rebuilt.
        let again = prepare_cached(&spec, &cache).unwrap();
        assert_eq!(again.dir, p.dir);
        assert_eq!(again.manifest.created_at, p.manifest.created_at);
        // A different filter is a different corpus.
        let only_cl = crate::trial::DataSpec {
            categories: vec!["cs.CL".into()],
            ..spec.clone()
        };
        let q = prepare_cached(&only_cl, &cache).unwrap();
        assert_ne!(q.hash, p.hash);
        assert_eq!(q.manifest.counts.kept, 30);
    }

    #[test]
    fn trained_bpe_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = fixture(dir.path());
        let spec = crate::trial::DataSpec {
            sources: vec![a.display().to_string()],
            categories: vec!["cs.CL".into()],
            split: [8.0, 1.0, 1.0],
        };
        let cache = dir.path().join("cache");
        let p = prepare_cached(&spec, &cache).unwrap();
        let t = p.tokenizer(TokenizerSpec::Bpe(300), &cache).unwrap();
        assert_eq!(t.vocab_size(), 300);
        assert!(t.id().starts_with("bpe-300-"));
        let t2 = p.tokenizer(TokenizerSpec::Bpe(300), &cache).unwrap();
        assert_eq!(
            t2.encode("Title 3 line").unwrap(),
            t.encode("Title 3 line").unwrap()
        );
        assert!("bpe-x".parse::<TokenizerSpec>().is_err());
        let n = split_token_count(&p, Split::Train, &t, &cache).unwrap();
        assert!(n > 0);
    }
}
