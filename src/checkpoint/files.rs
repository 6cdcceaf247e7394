//! Durable, hashed files: written through a SHA-256 hasher and synced (a checkpoint's manifest
//! needs each file's size and hash, and hashing as the bytes go out costs no second pass over the
//! disk), read back against an expected size and hash, and a full disk told apart from other
//! write errors.
//!
//! `sha2` picks its SHA-NI (x86) or ARMv8 SHA code at run time when the CPU has it.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bytes per write (and per hash update) of large files.
pub(crate) const CHUNK: usize = 1 << 20;

/// A file as it was written: its size and the lower-case hex SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    pub size: u64,
    pub sha256: String,
}

/// A new file whose bytes are hashed as they are written; [`HashingFile::finish`] syncs it.
pub(crate) struct HashingFile {
    out: BufWriter<File>,
    hasher: Sha256,
    size: u64,
    path: PathBuf,
}

impl HashingFile {
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            out: BufWriter::with_capacity(CHUNK, file),
            hasher: Sha256::new(),
            size: 0,
            path: path.to_path_buf(),
        })
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Flushes and syncs the file to disk; its size and hash.
    pub fn finish(self) -> Result<Written> {
        let path = self.path;
        let file = self
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing {}", path.display()))?;
        file.sync_all()
            .with_context(|| format!("syncing {}", path.display()))?;
        Ok(Written {
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }
}

/// Writes `bytes` to a new file at `path`, synced; its size and hash.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<Written> {
    let mut f = HashingFile::create(path)?;
    f.write(bytes)?;
    f.finish()
}

/// Syncs a directory, so that the renames and new names in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// Reads the file at `path` if it has exactly the expected size and SHA-256 (hashed as it is
/// read: the caller parses the same bytes, so nothing is read twice). The error says what
/// differs.
pub fn read_verified(path: &Path, want: &Written) -> Result<Vec<u8>> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let size = f
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if size != want.size {
        bail!(
            "{} has {size} bytes; the manifest says {}{}",
            path.display(),
            want.size,
            if size < want.size { " (truncated)" } else { "" }
        );
    }
    let mut bytes = vec![0u8; size as usize];
    let mut hasher = Sha256::new();
    for chunk in bytes.chunks_mut(CHUNK) {
        f.read_exact(chunk)
            .with_context(|| format!("reading {}", path.display()))?;
        hasher.update(&*chunk);
    }
    let got = hex::encode(hasher.finalize());
    if got != want.sha256 {
        bail!(
            "{}: SHA-256 {got}, but the manifest says {} (its bytes changed after it was written)",
            path.display(),
            want.sha256
        );
    }
    Ok(bytes)
}

/// Whether an error comes from a full file system (or an exhausted disk quota).
pub fn is_no_space(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ) || matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_as_written_and_verifies_on_read() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let bytes: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i * 7 % 251) as u8).collect();
        let w = write_synced(&path, &bytes).unwrap();
        assert_eq!(w.size, bytes.len() as u64);
        assert_eq!(w.sha256, crate::util::sha256_hex(&bytes));
        assert_eq!(read_verified(&path, &w).unwrap(), bytes);

        let mut flipped = bytes.clone();
        flipped[CHUNK + 5] ^= 0x10;
        std::fs::write(&path, &flipped).unwrap();
        let err = read_verified(&path, &w).unwrap_err().to_string();
        assert!(err.contains("SHA-256") && err.contains("changed"), "{err}");

        std::fs::write(&path, &bytes[..100]).unwrap();
        let err = read_verified(&path, &w).unwrap_err().to_string();
        assert!(
            err.contains("has 100 bytes") && err.contains("truncated"),
            "{err}"
        );
    }

    #[test]
    fn a_full_disk_is_told_apart_from_other_errors() {
        let full = anyhow::Error::from(std::io::Error::from_raw_os_error(libc::ENOSPC))
            .context("writing x");
        assert!(is_no_space(&full));
        let other = anyhow::Error::from(std::io::Error::from_raw_os_error(libc::EACCES))
            .context("writing x");
        assert!(!is_no_space(&other));
        // The real thing: /dev/full answers every write with ENOSPC.
        let mut f = HashingFile {
            out: BufWriter::new(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            ),
            hasher: Sha256::new(),
            size: 0,
            path: "/dev/full".into(),
        };
        let e = f
            .write(&[0; 2 * CHUNK])
            .and_then(|_| f.finish().map(|_| ()));
        assert!(is_no_space(&e.unwrap_err()));
    }
}
