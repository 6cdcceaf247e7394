//! Token cache (one checksummed binary file per split text and tokenizer) and fixed-size training blocks.

use super::{Prepared, Split};
use crate::error::UsageError;
use crate::tokenizer::Tokenizer;
use anyhow::{bail, Context, Result};
use memmap2::Mmap;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 4] = b"SWTK";
const VERSION: u32 = 1;
const HEADER: usize = 32;

/// A memory-mapped token file: header (magic, version, bytes per id, count, checksum) + ids.
#[derive(Debug)]
pub struct TokenFile {
    map: Mmap,
    width: usize,
    pub count: usize,
    pub path: PathBuf,
}

impl TokenFile {
    #[inline]
    pub fn get(&self, i: usize) -> u32 {
        let o = HEADER + i * self.width;
        let b = &self.map[o..o + self.width];
        if self.width == 2 {
            u16::from_le_bytes([b[0], b[1]]) as u32
        } else {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        }
    }
}

fn checksum(payload: &[u8]) -> u64 {
    let d = Sha256::digest(payload);
    u64::from_le_bytes(d[..8].try_into().unwrap_or([0; 8]))
}

/// Open and verify a token file; `Err` says why it cannot be used (missing, truncated, corrupt).
pub fn open_token_file(path: &Path) -> Result<TokenFile> {
    let f = std::fs::File::open(path)?;
    // SAFETY: cache files are written once to a temp name and renamed into place, never modified
    // in place; a replacement by rename leaves this mapping on the old inode.
    let map = unsafe { Mmap::map(&f)? };
    if map.len() < HEADER || &map[..4] != MAGIC {
        bail!("not a token file (bad magic)");
    }
    let u32_at = |o: usize| u32::from_le_bytes(map[o..o + 4].try_into().unwrap_or([0; 4]));
    let u64_at = |o: usize| u64::from_le_bytes(map[o..o + 8].try_into().unwrap_or([0; 8]));
    if u32_at(4) != VERSION {
        bail!("token file version {} (expected {VERSION})", u32_at(4));
    }
    let width = u32_at(8) as usize;
    if width != 2 && width != 4 {
        bail!("bad id width {width}");
    }
    let count = u64_at(16) as usize;
    if map.len() != HEADER + count * width {
        bail!(
            "size {} does not match {count} ids of {width} bytes",
            map.len()
        );
    }
    if checksum(&map[HEADER..]) != u64_at(24) {
        bail!("checksum mismatch");
    }
    Ok(TokenFile {
        map,
        width,
        count,
        path: path.to_path_buf(),
    })
}

fn write_token_file(path: &Path, ids: &[u32], vocab_size: usize) -> Result<()> {
    let width = if vocab_size <= 1 << 16 { 2 } else { 4 };
    let mut payload = Vec::with_capacity(ids.len() * width);
    for &id in ids {
        if width == 2 {
            payload.extend_from_slice(&(id as u16).to_le_bytes());
        } else {
            payload.extend_from_slice(&id.to_le_bytes());
        }
    }
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&(width as u32).to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&(ids.len() as u64).to_le_bytes());
    header.extend_from_slice(&checksum(&payload).to_le_bytes());
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating token cache {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing in token cache {}", dir.display()))?;
    tmp.write_all(&header)?;
    tmp.write_all(&payload)?;
    tmp.as_file().sync_all()?;
    crate::util::make_public(tmp.path())?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Where the tokens of a text (by its sha256) under a tokenizer live.
pub fn token_path(cache_root: &Path, text_sha: &str, tok: &Tokenizer) -> PathBuf {
    cache_root
        .join("tokens")
        .join(tok.id())
        .join(format!("{}.tok", &text_sha[..32.min(text_sha.len())]))
}

/// Tokenize `text` (one example per line, examples concatenated with no separator: each already
/// ends with `<|endoftext|>`) unless a valid cache file exists; return the mapped file.
pub fn ensure_tokens(
    cache_root: &Path,
    text: &str,
    text_sha: &str,
    tok: &Tokenizer,
) -> Result<TokenFile> {
    let path = token_path(cache_root, text_sha, tok);
    match open_token_file(&path) {
        Ok(f) => return Ok(f),
        Err(e) if path.exists() => {
            eprintln!(
                "token cache {} is unusable ({e:#}); rebuilding it",
                path.display()
            )
        }
        Err(_) => {}
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let encoded = tok.encode_many(&lines)?;
    let ids: Vec<u32> = encoded.into_iter().flatten().collect();
    write_token_file(&path, &ids, tok.vocab_size())?;
    open_token_file(&path).with_context(|| format!("reading back {}", path.display()))
}

fn split_tokens(
    prepared: &Prepared,
    split: Split,
    tok: &Tokenizer,
    cache_root: &Path,
) -> Result<TokenFile> {
    let path = prepared.split_path(split);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let sha = hex::encode(Sha256::digest(text.as_bytes()));
    ensure_tokens(cache_root, &text, &sha, tok)
}

/// A split's tokens cut into `block_size` blocks (HF `group_texts`: the remainder is dropped).
#[derive(Debug)]
pub struct TokenBlocks {
    file: Arc<TokenFile>,
    block_size: usize,
    num_blocks: usize,
}

impl TokenBlocks {
    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }
    pub fn block_size(&self) -> usize {
        self.block_size
    }
    pub fn num_tokens(&self) -> usize {
        self.num_blocks * self.block_size
    }
    /// Ids of block `i` (panics if `i >= num_blocks()`, like slice indexing).
    pub fn block(&self, i: usize) -> Vec<u32> {
        assert!(i < self.num_blocks, "block {i} of {}", self.num_blocks);
        let start = i * self.block_size;
        (start..start + self.block_size)
            .map(|j| self.file.get(j))
            .collect()
    }
}

pub fn token_blocks(
    prepared: &Prepared,
    split: Split,
    tok: &Tokenizer,
    block_size: usize,
    cache_root: &Path,
) -> Result<TokenBlocks> {
    if block_size == 0 {
        return Err(UsageError("block_size must be at least 1".into()).into());
    }
    let file = split_tokens(prepared, split, tok, cache_root)?;
    let num_blocks = file.count / block_size;
    if num_blocks == 0 {
        return Err(UsageError(format!(
            "the {split} split of {} has {} tokens, fewer than one block of {block_size}",
            prepared.dir.display(),
            file.count
        ))
        .into());
    }
    Ok(TokenBlocks {
        file: Arc::new(file),
        block_size,
        num_blocks,
    })
}

pub fn split_token_count(
    prepared: &Prepared,
    split: Split,
    tok: &Tokenizer,
    cache_root: &Path,
) -> Result<usize> {
    if prepared.manifest.tokenizer == tok.id() {
        if let Some(s) = prepared
            .manifest
            .splits
            .iter()
            .find(|s| s.name == split.to_string())
        {
            return Ok(s.tokens as usize);
        }
    }
    Ok(split_tokens(prepared, split, tok, cache_root)?.count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_round_trip_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.tok");
        let ids: Vec<u32> = (0..1000).map(|i| (i * 37) % 50259).collect();
        write_token_file(&p, &ids, 50259).unwrap();
        let f = open_token_file(&p).unwrap();
        assert_eq!(f.count, 1000);
        assert_eq!((0..1000).map(|i| f.get(i)).collect::<Vec<_>>(), ids);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 32 + 2000);
        let wide: Vec<u32> = vec![70_000, 1, 2];
        write_token_file(&p, &wide, 100_000).unwrap();
        let f = open_token_file(&p).unwrap();
        assert_eq!((0..3).map(|i| f.get(i)).collect::<Vec<_>>(), wide);
        drop(f);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[40] ^= 0xff;
        std::fs::write(&p, &bytes).unwrap();
        assert!(open_token_file(&p)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
        std::fs::write(&p, &bytes[..20]).unwrap();
        assert!(open_token_file(&p).is_err());
    }

    #[test]
    fn corrupt_cache_is_rebuilt_with_the_same_ids() {
        let dir = tempfile::tempdir().unwrap();
        let tok = Tokenizer::gpt2().unwrap();
        let text = "<|startoftext|> A <|sep|> B. <|endoftext|>\n<|startoftext|> C <|sep|> D. <|endoftext|>\n";
        let sha = hex::encode(Sha256::digest(text.as_bytes()));
        let a = ensure_tokens(dir.path(), text, &sha, &tok).unwrap();
        let ids: Vec<u32> = (0..a.count).map(|i| a.get(i)).collect();
        // Concatenation of per-line encodings, no extra separator.
        let mut want = tok.encode(text.lines().next().unwrap()).unwrap();
        want.extend(tok.encode(text.lines().nth(1).unwrap()).unwrap());
        assert_eq!(ids, want);
        let path = a.path.clone();
        drop(a);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();
        let b = ensure_tokens(dir.path(), text, &sha, &tok).unwrap();
        assert_eq!((0..b.count).map(|i| b.get(i)).collect::<Vec<_>>(), want);
    }
}
