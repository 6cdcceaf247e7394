//! The Hugging Face cache layout, as `huggingface_hub` writes and reads it, for one repository:
//! `models--ORG--NAME/blobs/ETAG` (the files, named by the Hub's ETag: the SHA-256 of an LFS file,
//! the git blob id of a small one), `snapshots/COMMIT/FILE` (relative symlinks to the blobs),
//! `refs/REVISION` (the commit a branch or tag pointed to when it was last fetched), and the
//! per-blob lock files under `.locks/models--ORG--NAME/ETAG.lock` that Python's `filelock` and
//! sweep both take with `flock`.

use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// The files of a GPT-2 repository that sweep reads.
pub const CONFIG: &str = "config.json";
pub const WEIGHTS: &str = "model.safetensors";
pub const FILES: [&str; 2] = [CONFIG, WEIGHTS];

/// A 40-hex-digit commit id (what a revision may be, and what refs point to).
pub fn is_commit(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A 64-hex-digit SHA-256 (the ETag of an LFS file is its content's).
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `models--org--name`: the folder of a model repository (`huggingface_hub.repo_folder_name`).
pub fn folder_name(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

/// One repository's part of the cache.
#[derive(Debug, Clone)]
pub struct RepoCache {
    pub folder: PathBuf,
    locks: PathBuf,
}

impl RepoCache {
    pub fn new(cache: &Path, repo: &str) -> Self {
        let name = folder_name(repo);
        Self {
            folder: cache.join(&name),
            locks: cache.join(".locks").join(name),
        }
    }

    pub fn blob(&self, etag: &str) -> PathBuf {
        self.folder.join("blobs").join(etag)
    }

    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.folder.join("snapshots").join(commit)
    }

    pub fn lock_path(&self, etag: &str) -> PathBuf {
        self.locks.join(format!("{etag}.lock"))
    }

    /// The commit `revision` names here: itself when it is one, else what its ref says.
    pub fn commit_of(&self, revision: &str) -> Option<String> {
        if is_commit(revision) {
            return Some(revision.to_string());
        }
        let text = fs::read_to_string(self.folder.join("refs").join(revision)).ok()?;
        let commit = text.trim();
        is_commit(commit).then(|| commit.to_string())
    }

    /// Whether the snapshot of `commit` holds every file sweep reads.
    pub fn complete(&self, commit: &str) -> bool {
        let dir = self.snapshot(commit);
        FILES.iter().all(|f| dir.join(f).is_file())
    }

    /// A complete snapshot under any name, for caches filled by hand (files copied into
    /// `snapshots/<any-name>/`, as older versions of sweep told users to do): the first by name.
    pub fn any_complete(&self) -> Option<String> {
        let mut names: Vec<String> = fs::read_dir(self.folder.join("snapshots"))
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names.into_iter().find(|n| self.complete(n))
    }

    /// Points `refs/REVISION` at `commit` (atomically; nothing for a commit revision), so that
    /// offline runs, and Python's, find it.
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<()> {
        if revision == commit || self.commit_of(revision).as_deref() == Some(commit) {
            return Ok(());
        }
        let path = self.folder.join("refs").join(revision);
        let dir = path.parent().expect("refs/REVISION has a parent");
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = dir.join(format!(".{}.tmp{}", file_name(&path), std::process::id()));
        fs::write(&tmp, commit).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    /// `snapshots/COMMIT/FILE` -> `../../blobs/ETAG`, replacing whatever was there atomically.
    pub fn link(&self, commit: &str, file: &str, etag: &str) -> Result<PathBuf> {
        let dir = self.snapshot(commit);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let pointer = dir.join(file);
        if file_etag(&pointer).as_deref() == Some(etag) && pointer.is_file() {
            return Ok(pointer);
        }
        let tmp = dir.join(format!(".{file}.tmp{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        make_link(&self.blob(etag), &tmp)?;
        fs::rename(&tmp, &pointer).with_context(|| format!("linking {}", pointer.display()))?;
        Ok(pointer)
    }
}

/// The ETag a snapshot file points to (the name of its blob), when it is a symlink.
pub fn file_etag(pointer: &Path) -> Option<String> {
    let target = fs::read_link(pointer).ok()?;
    target.file_name()?.to_str().map(str::to_string)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A relative symlink from a snapshot to its blob, as `huggingface_hub` makes them (the cache
/// stays valid when moved); a copy where symlinks are not available.
#[cfg(unix)]
fn make_link(blob: &Path, at: &Path) -> Result<()> {
    let name = blob.file_name().expect("a blob has a name");
    let target = Path::new("../../blobs").join(name);
    std::os::unix::fs::symlink(&target, at)
        .with_context(|| format!("linking {} to {}", at.display(), target.display()))
}

#[cfg(not(unix))]
fn make_link(blob: &Path, at: &Path) -> Result<()> {
    fs::copy(blob, at)
        .map(|_| ())
        .with_context(|| format!("copying {} to {}", blob.display(), at.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_huggingface_hub() {
        let c = RepoCache::new(Path::new("/c"), "openai-community/gpt2");
        assert_eq!(c.folder, Path::new("/c/models--openai-community--gpt2"));
        assert_eq!(
            c.blob("abc"),
            Path::new("/c/models--openai-community--gpt2/blobs/abc")
        );
        assert_eq!(
            c.lock_path("abc"),
            Path::new("/c/.locks/models--openai-community--gpt2/abc.lock")
        );
        assert!(is_commit(&"a".repeat(40)) && !is_commit(&"A".repeat(40)));
        assert!(is_sha256(&"0".repeat(64)) && !is_sha256("main"));
    }

    #[test]
    fn refs_and_links_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let c = RepoCache::new(tmp.path(), "org/m");
        let commit = "b".repeat(40);
        assert_eq!(c.commit_of("main"), None);
        assert_eq!(c.commit_of(&commit).as_deref(), Some(commit.as_str()));
        c.write_ref("main", &commit).unwrap();
        c.write_ref("refs/pr/1", &commit).unwrap();
        assert_eq!(c.commit_of("main").as_deref(), Some(commit.as_str()));
        assert_eq!(c.commit_of("refs/pr/1").as_deref(), Some(commit.as_str()));
        std::fs::create_dir_all(c.blob("x").parent().unwrap()).unwrap();
        for (f, etag) in [(CONFIG, "e1"), (WEIGHTS, "e2")] {
            std::fs::write(c.blob(etag), f).unwrap();
            let p = c.link(&commit, f, etag).unwrap();
            assert_eq!(std::fs::read_to_string(&p).unwrap(), f);
            assert_eq!(file_etag(&p).as_deref(), Some(etag));
        }
        assert!(c.complete(&commit));
        assert_eq!(c.any_complete().as_deref(), Some(commit.as_str()));
        // Relinking to another blob replaces the pointer.
        std::fs::write(c.blob("e3"), "new").unwrap();
        let p = c.link(&commit, WEIGHTS, "e3").unwrap();
        assert_eq!(std::fs::read_to_string(p).unwrap(), "new");
    }
}
