//! GPT-2 byte-level BPE (and small trained BPEs) on HuggingFace `tokenizers`, with the paper's special tokens.

use crate::trial::TokenizerSpec;
use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainer, Vocab, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

/// The three markers of the paper's example format. `<|endoftext|>` is GPT-2's own token (50256);
/// the other two are appended after GPT-2's 50,257 tokens.
pub const EOT: &str = "<|endoftext|>";
pub const SOT: &str = "<|startoftext|>";
pub const SEP: &str = "<|sep|>";

/// Identity of the stock GPT-2 vocabulary plus the two added special tokens.
pub const GPT2_ID: &str = "gpt2+2special";

const GPT2_VOCAB: &[u8] = include_bytes!("../assets/gpt2/vocab.json");
const GPT2_MERGES: &str = include_str!("../assets/gpt2/merges.txt");

/// Fewer texts than this per thread are not worth a thread.
const BATCH: usize = 64;

/// Threads for bulk encoding: all cores, unless `TOKENIZERS_PARALLELISM` is false (as in HF).
fn encode_threads() -> usize {
    match std::env::var("TOKENIZERS_PARALLELISM") {
        Ok(v) if matches!(v.to_lowercase().as_str(), "0" | "false" | "off" | "no") => 1,
        _ => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    id: String,
    eot: u32,
    sot: u32,
    sep: u32,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("id", &self.id)
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

fn tk_err(e: tokenizers::Error) -> anyhow::Error {
    anyhow!("{e}")
}

fn special_tokens() -> Vec<AddedToken> {
    [EOT, SOT, SEP]
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect()
}

/// GPT-2's `merges.txt`: a `#version` line, then one `left right` pair per line.
fn parse_merges(text: &str, origin: &str) -> Result<Vec<(String, String)>> {
    let mut merges = Vec::with_capacity(50_000);
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("#version") || line.is_empty() {
            continue;
        }
        let (a, b) = line
            .split_once(' ')
            .ok_or_else(|| anyhow!("{origin}: line {} is not a `left right` merge pair", i + 1))?;
        merges.push((a.to_string(), b.to_string()));
    }
    Ok(merges)
}

fn byte_level_bpe(vocab: Vocab, merges: Vec<(String, String)>) -> Result<tokenizers::Tokenizer> {
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(tk_err)?;
    Ok(with_byte_level(tokenizers::Tokenizer::new(bpe)))
}

fn with_byte_level(mut tk: tokenizers::Tokenizer) -> tokenizers::Tokenizer {
    // GPT-2 encodes without a prefix space: "Hello" and " Hello" are different tokens.
    tk.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
    tk.with_decoder(Some(ByteLevelDecoder::default()));
    tk
}

fn sha12(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..6])
}

impl Tokenizer {
    fn wrap(mut inner: tokenizers::Tokenizer, id: String) -> Result<Self> {
        inner.add_special_tokens(&special_tokens());
        let look = |t: &str| {
            inner
                .token_to_id(t)
                .ok_or_else(|| anyhow!("tokenizer {id} has no id for {t}"))
        };
        let (eot, sot, sep) = (look(EOT)?, look(SOT)?, look(SEP)?);
        Ok(Self {
            inner,
            id,
            eot,
            sot,
            sep,
        })
    }

    /// GPT-2's tokenizer from the copy embedded in the binary (works offline).
    pub fn gpt2() -> Result<Self> {
        let vocab: Vocab =
            serde_json::from_slice::<std::collections::HashMap<String, u32>>(GPT2_VOCAB)
                .context("embedded assets/gpt2/vocab.json")?
                .into_iter()
                .collect();
        let merges = parse_merges(GPT2_MERGES, "embedded assets/gpt2/merges.txt")?;
        let tk = Self::wrap(byte_level_bpe(vocab, merges)?, GPT2_ID.to_string())?;
        if (tk.eot, tk.sot, tk.sep) != (50256, 50257, 50258) {
            bail!(
                "embedded GPT-2 vocabulary gave special ids {:?}, expected (50256, 50257, 50258)",
                (tk.eot, tk.sot, tk.sep)
            );
        }
        Ok(tk)
    }

    /// A tokenizer from a model directory: `tokenizer.json`, or GPT-2 style `vocab.json` + `merges.txt`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        let inner = if json.is_file() {
            tokenizers::Tokenizer::from_file(&json)
                .map_err(|e| anyhow!("{}: {e}", json.display()))?
        } else {
            let (v, m) = (dir.join("vocab.json"), dir.join("merges.txt"));
            if !v.is_file() || !m.is_file() {
                return Err(crate::error::UsageError(format!(
                    "{}: no tokenizer found (expected tokenizer.json, or vocab.json + merges.txt)",
                    dir.display()
                ))
                .into());
            }
            let vocab: Vocab = serde_json::from_slice::<std::collections::HashMap<String, u32>>(
                &std::fs::read(&v).with_context(|| format!("reading {}", v.display()))?,
            )
            .with_context(|| format!("parsing {}", v.display()))?
            .into_iter()
            .collect();
            let text =
                std::fs::read_to_string(&m).with_context(|| format!("reading {}", m.display()))?;
            byte_level_bpe(vocab, parse_merges(&text, &m.display().to_string())?)?
        };
        let mut tk = Self::wrap(inner, String::new())?;
        // Identity = content: the stock GPT-2 files (e.g. an exported fine-tuned model) share
        // GPT-2's id so they share its token caches.
        let canon = tk.inner.to_string(false).map_err(tk_err)?;
        let gpt2 = Self::gpt2()?;
        tk.id = if canon == gpt2.inner.to_string(false).map_err(tk_err)? {
            GPT2_ID.to_string()
        } else {
            format!("dir-{}", sha12(canon.as_bytes()))
        };
        Ok(tk)
    }

    /// `gpt2`, or `bpe-N`: a byte-level BPE of N tokens trained on the prepared training text
    /// `train_text` (whose data manifest hash is `data_hash`), cached under
    /// `cache_root/tokenizers/`.
    pub fn for_spec(
        spec: TokenizerSpec,
        train_text: &Path,
        data_hash: &str,
        cache_root: &Path,
    ) -> Result<Self> {
        let n = match spec {
            TokenizerSpec::Gpt2 => return Self::gpt2(),
            TokenizerSpec::Bpe(n) => n,
        };
        let id = format!("bpe-{n}-{}", &data_hash[..12.min(data_hash.len())]);
        let dir = cache_root.join("tokenizers").join(&id);
        let file = dir.join("tokenizer.json");
        if let Ok(inner) = tokenizers::Tokenizer::from_file(&file) {
            if let Ok(tk) = Self::wrap(inner, id.clone()) {
                return Ok(tk);
            }
        }
        let text = std::fs::read_to_string(train_text)
            .with_context(|| format!("reading {}", train_text.display()))?;
        let tk = Self::train_bpe(n, text.lines(), id)?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = tempfile::NamedTempFile::new_in(&dir)?;
        tk.inner.save(tmp.path(), false).map_err(tk_err)?;
        crate::util::make_public(tmp.path())?;
        tmp.persist(&file)
            .with_context(|| format!("writing {}", file.display()))?;
        Ok(tk)
    }

    /// Train a byte-level BPE with `vocab_size` tokens (special tokens and the 256 bytes included).
    pub fn train_bpe<'a>(
        vocab_size: usize,
        lines: impl Iterator<Item = &'a str> + Send,
        id: String,
    ) -> Result<Self> {
        let mut tk = with_byte_level(tokenizers::Tokenizer::new(BPE::default()));
        let alphabet: HashSet<char> = ByteLevel::alphabet().into_iter().collect();
        let trainer = BpeTrainer::builder()
            .vocab_size(vocab_size)
            .min_frequency(2)
            .show_progress(false)
            .special_tokens(special_tokens())
            .initial_alphabet(alphabet)
            .build();
        // The markers are special tokens: strip them so they are not learned as merges.
        let cleaned = lines.map(|l| l.replace(SOT, "").replace(SEP, "").replace(EOT, ""));
        tk.train(&mut TrainerWrapper::BpeTrainer(trainer), cleaned)
            .map_err(tk_err)?;
        Self::wrap(tk, id)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode_fast(text, false)
            .map_err(tk_err)?
            .get_ids()
            .to_vec())
    }

    /// Encode many texts on all cores, order kept. Each thread encodes a contiguous range one text
    /// at a time: dropping each heavy `Encoding` right away keeps memory cache-hot, which measured
    /// faster than `encode_batch` (rayon over materialised batches) on the cs.CL text.
    pub fn encode_many(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let threads = encode_threads().min(texts.len() / BATCH).max(1);
        if threads == 1 {
            return texts.iter().map(|t| self.encode(t)).collect();
        }
        let per = texts.len().div_ceil(threads);
        let parts: Vec<Result<Vec<Vec<u32>>>> = std::thread::scope(|s| {
            let handles: Vec<_> = texts
                .chunks(per)
                .map(|chunk| s.spawn(move || chunk.iter().map(|t| self.encode(t)).collect()))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("a tokenizer thread panicked")))
                })
                .collect()
        });
        let mut out = Vec::with_capacity(texts.len());
        for p in parts {
            out.extend(p?);
        }
        Ok(out)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(tk_err)
    }

    pub fn eot_id(&self) -> u32 {
        self.eot
    }
    pub fn sot_id(&self) -> u32 {
        self.sot
    }
    pub fn sep_id(&self) -> u32 {
        self.sep
    }

    /// Write the tokenizer in HF layout so `transformers` can load an exported model directory.
    pub fn save_hf(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let write = |name: &str, bytes: &[u8]| -> Result<PathBuf> {
            let p = dir.join(name);
            std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
            Ok(p)
        };
        self.inner
            .save(dir.join("tokenizer.json"), false)
            .map_err(|e| anyhow!("writing {}: {e}", dir.join("tokenizer.json").display()))?;
        // vocab.json + merges.txt for the slow GPT2Tokenizer.
        let json: serde_json::Value =
            serde_json::from_str(&self.inner.to_string(false).map_err(tk_err)?)?;
        let model = &json["model"];
        let mut vocab: Vec<(&String, u64)> = model["vocab"]
            .as_object()
            .ok_or_else(|| anyhow!("tokenizer {} is not a BPE model", self.id))?
            .iter()
            .map(|(k, v)| (k, v.as_u64().unwrap_or(0)))
            .collect();
        vocab.sort_by_key(|(_, id)| *id);
        let vocab: serde_json::Map<String, serde_json::Value> = vocab
            .into_iter()
            .map(|(k, v)| (k.clone(), v.into()))
            .collect();
        write("vocab.json", &serde_json::to_vec(&vocab)?)?;
        let mut merges = String::from("#version: 0.2\n");
        for m in model["merges"].as_array().into_iter().flatten() {
            // tokenizers >= 0.20 stores pairs as [a, b]; older files as "a b".
            match m {
                serde_json::Value::Array(p) if p.len() == 2 => {
                    merges.push_str(p[0].as_str().unwrap_or_default());
                    merges.push(' ');
                    merges.push_str(p[1].as_str().unwrap_or_default());
                }
                serde_json::Value::String(s) => merges.push_str(s),
                _ => bail!("tokenizer {}: unexpected merge entry {m}", self.id),
            }
            merges.push('\n');
        }
        write("merges.txt", merges.as_bytes())?;
        let special = serde_json::json!({
            "bos_token": SOT, "eos_token": EOT, "unk_token": EOT, "pad_token": EOT,
            "sep_token": SEP, "additional_special_tokens": [SOT, SEP],
        });
        write(
            "special_tokens_map.json",
            &serde_json::to_vec_pretty(&special)?,
        )?;
        let config = serde_json::json!({
            "tokenizer_class": "GPT2Tokenizer",
            "model_max_length": 1024,
            "add_prefix_space": false,
            "bos_token": SOT, "eos_token": EOT, "unk_token": EOT, "pad_token": EOT,
            "sep_token": SEP, "additional_special_tokens": [SOT, SEP],
        });
        write(
            "tokenizer_config.json",
            &serde_json::to_vec_pretty(&config)?,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference ids from OpenAI's tiktoken 0.14.0 (an independent BPE implementation), run on
    // GPT-2's vocab.json/merges.txt via `tiktoken.load.data_gym_to_mergeable_bpe_ranks` with
    // GPT-2's regex (tiktoken could not download its own copy offline):
    //   enc.encode(s, allowed_special="all")
    const CASES: &[(&str, &[u32])] = &[
        ("Hello world", &[15496, 995]),
        (
            "Attention Is All You Need",
            &[8086, 1463, 1148, 1439, 921, 10664],
        ),
        (
            "Schrödinger équations über naïve café — “quoted” 日本語 😀",
            &[
                14874, 81, 9101, 67, 3889, 38251, 421, 602, 6184, 120, 527, 41492, 40304, 851, 564,
                250, 421, 5191, 447, 251, 10545, 245, 98, 17312, 105, 45739, 252, 30325, 222,
            ],
        ),
        (
            r"We prove $\mathcal{O}(n \log n)$ bounds for $\alpha_i^{2}$ and \emph{BERT}-style models.",
            &[
                1135, 5879, 39280, 11018, 9948, 90, 46, 92, 7, 77, 3467, 6404, 299, 8, 3, 22303,
                329, 39280, 26591, 62, 72, 36796, 17, 92, 3, 290, 3467, 368, 746, 90, 13246, 51,
                92, 12, 7635, 4981, 13,
            ],
        ),
        (
            "  multiple   spaces\tand\ttabs  ",
            &[220, 3294, 220, 220, 9029, 197, 392, 197, 8658, 82, 220, 220],
        ),
        (
            "don't you'll I'm we've",
            &[9099, 470, 345, 1183, 314, 1101, 356, 1053],
        ),
    ];

    #[test]
    fn gpt2_matches_reference_ids() {
        let tk = Tokenizer::gpt2().unwrap();
        assert_eq!(tk.vocab_size(), 50259);
        assert_eq!(tk.id(), GPT2_ID);
        for (text, ids) in CASES {
            assert_eq!(tk.encode(text).unwrap(), *ids, "{text:?}");
            assert_eq!(tk.decode(ids).unwrap(), *text, "round trip {text:?}");
        }
        let batch: Vec<&str> = (0..600).map(|i| CASES[i % CASES.len()].0).collect();
        let many = tk.encode_many(&batch).unwrap();
        for (i, ids) in many.iter().enumerate() {
            assert_eq!(ids.as_slice(), CASES[i % CASES.len()].1);
        }
    }

    #[test]
    fn special_tokens_are_never_split() {
        let tk = Tokenizer::gpt2().unwrap();
        assert_eq!(
            (tk.eot_id(), tk.sot_id(), tk.sep_id()),
            (50256, 50257, 50258)
        );
        let ids = tk
            .encode("<|startoftext|> Hello world <|sep|> Attention <|endoftext|>")
            .unwrap();
        // " Hello" = 18435, " world" = 995, " Attention" = 47406, " " = 220 (tiktoken, as above).
        assert_eq!(ids, vec![50257, 18435, 995, 220, 50258, 47406, 220, 50256]);
    }

    #[test]
    fn save_hf_round_trips_through_from_dir() {
        let dir = tempfile::tempdir().unwrap();
        let tk = Tokenizer::gpt2().unwrap();
        tk.save_hf(dir.path()).unwrap();
        for f in [
            "vocab.json",
            "merges.txt",
            "tokenizer.json",
            "special_tokens_map.json",
            "tokenizer_config.json",
        ] {
            assert!(dir.path().join(f).is_file(), "{f}");
        }
        let back = Tokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(back.id(), GPT2_ID);
        std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
        let from_files = Tokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(from_files.id(), GPT2_ID);
        assert_eq!(from_files.encode(CASES[3].0).unwrap(), CASES[3].1);
    }

    #[test]
    fn trained_bpe_has_requested_size_and_specials() {
        let lines: Vec<String> = (0..200)
            .map(|i| format!("<|startoftext|> Paper {i} on neural parsing <|sep|> We study models of language number {i}. <|endoftext|>"))
            .collect();
        let tk =
            Tokenizer::train_bpe(300, lines.iter().map(|s| s.as_str()), "bpe-test".into()).unwrap();
        assert_eq!(tk.vocab_size(), 300);
        assert_eq!((tk.eot_id(), tk.sot_id(), tk.sep_id()), (0, 1, 2));
        let ids = tk.encode(&lines[5]).unwrap();
        assert_eq!(ids[0], 1);
        assert_eq!(*ids.last().unwrap(), 0);
        assert_eq!(tk.decode(&ids).unwrap(), lines[5]);
    }
}
