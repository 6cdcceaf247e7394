//! Where trial artifacts live: `ROOT/trials/<hash12>/` (checkpoints, exported model, log), and how
//! the ledger records them — relative to ROOT, so a ledger outlives a moved or remounted root.
//!
//! ROOT is `--artifacts DIR` (env `SWEEP_ARTIFACTS`, default `results`; resolved in
//! [`crate::locations`]): the same directory that `sweep run --executor slurm --artifacts DIR`
//! fills with `trials/` and `slurm/`. Writers record
//! `trials/<hash12>`; readers (`status`, `report`, `eval --trial`, `generate --trial`, resume)
//! resolve a recorded path against the ROOT they are given. Ledgers written before this rule hold
//! absolute paths: those are used as they are, and when they no longer exist (the root moved) the
//! conventional `ROOT/trials/<hash12>` is tried instead.
//!
//! Also here: the check that an artifacts directory is plausibly shared between cluster nodes.

use crate::error::UsageError;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Subdirectory of the root that holds one directory per trial.
pub const TRIALS_SUBDIR: &str = "trials";

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// What the ledger records for a trial: `trials/<hash12>`, relative to the root.
pub fn relative_dir(hash: &str) -> String {
    format!("{TRIALS_SUBDIR}/{}", short(hash))
}

/// A trial's directory under `root`.
pub fn trial_dir(root: &Path, hash: &str) -> PathBuf {
    root.join(TRIALS_SUBDIR).join(short(hash))
}

/// A recorded `artifact_dir` resolved against `root`: relative paths join the root; absolute ones
/// (old ledgers) are kept while they exist, else the trial's conventional place under `root`.
pub fn resolve(root: &Path, recorded: &str, hash: &str) -> PathBuf {
    let p = Path::new(recorded);
    if p.is_absolute() {
        if p.exists() {
            return p.to_path_buf();
        }
        let moved = trial_dir(root, hash);
        return if moved.exists() {
            moved
        } else {
            p.to_path_buf()
        };
    }
    root.join(p)
}

/// The exported model of a ledger trial (`eval --trial`, `generate --trial`); a usage error that
/// names the fix when the trial has none yet or it is not under `root`.
pub fn trial_model(root: &Path, trial: &crate::store::TrialRecord) -> Result<PathBuf> {
    let id = trial.id;
    if trial.artifact_dir.is_none() {
        return Err(UsageError(format!(
            "trial {id} ({}) has no exported model: only completed trials have one; run it with \
             `sweep trial run {id}` (or `sweep run`), or pass --model DIR",
            trial.state
        ))
        .into());
    }
    let (dir, found) = model_dir(root, trial.artifact_dir.as_deref(), &trial.hash);
    if !found {
        return Err(UsageError(format!(
            "trial {id} ({}): no exported model at {}; fix: pass --artifacts DIR (or \
             SWEEP_ARTIFACTS) naming the artifacts root that holds trials/ now (it is {} \
             here), or --model DIR",
            trial.state,
            dir.display(),
            root.display()
        ))
        .into());
    }
    Ok(dir)
}

/// A trial of the ledger by `--trial ID` (eval, generate): its record, its configuration and its
/// exported model under `root`; usage errors that say what to do when any of them is missing.
pub fn ledger_trial(
    ledger: &dyn crate::store::Reader,
    id: i64,
    root: &Path,
) -> Result<(
    crate::store::TrialRecord,
    crate::trial::TrialConfig,
    PathBuf,
)> {
    let trial = ledger.trial(id)?.ok_or_else(|| {
        UsageError(format!(
            "--trial {id}: no trial {id} in the ledger {}; `sweep status` lists the trials",
            ledger.url()
        ))
    })?;
    let model = trial_model(root, &trial)?;
    let cfg = serde_json::from_value(trial.config.clone())
        .map_err(|e| anyhow::anyhow!("trial {id}: its stored configuration does not parse: {e}"))?;
    Ok((trial, cfg, model))
}

/// The exported model directory of a trial, if its `config.json` is there.
pub fn model_dir(root: &Path, recorded: Option<&str>, hash: &str) -> (PathBuf, bool) {
    let dir = match recorded {
        Some(r) => resolve(root, r, hash),
        None => trial_dir(root, hash),
    }
    .join("model");
    let ok = dir.join("config.json").is_file();
    (dir, ok)
}

// ---------------------------------------------------------------------------------------------
// Is a directory shared between nodes?

/// What the file system under a directory says about sharing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsKind {
    /// Memory-backed and private to one node (tmpfs, ramfs): never shared.
    NodeLocalMemory(&'static str),
    /// A local block-device file system (ext4, xfs, ...): shared only on a single-node cluster
    /// (or if re-exported, which cannot be seen from here).
    LocalDisk(&'static str),
    /// A network or cluster file system (NFS, Lustre, GPFS, ...).
    Network(&'static str),
    /// Anything else (FUSE, overlay, unknown magic): cannot tell.
    Unknown(String),
}

/// Classify a `statfs` `f_type` magic number (values from linux/magic.h and the file systems' own
/// headers; a cluster may mount anything, so only well-known ones are named).
pub fn classify(magic: i64) -> FsKind {
    // f_type is a signed word on some targets; compare the low 32 bits.
    match magic as u32 {
        0x0102_1994 => FsKind::NodeLocalMemory("tmpfs"),
        0x8584_58f6 => FsKind::NodeLocalMemory("ramfs"),
        0x0000_ef53 => FsKind::LocalDisk("ext2/ext3/ext4"),
        0x5846_5342 => FsKind::LocalDisk("xfs"),
        0x9123_683e => FsKind::LocalDisk("btrfs"),
        0x2fc1_2fc1 => FsKind::LocalDisk("zfs"),
        0xf2f5_2010 => FsKind::LocalDisk("f2fs"),
        0x0000_4d44 => FsKind::LocalDisk("vfat"),
        0x0000_6969 => FsKind::Network("nfs"),
        0xff53_4d42 => FsKind::Network("cifs"),
        0xfe53_4d42 => FsKind::Network("smb2"),
        0x0000_517b => FsKind::Network("smb"),
        0x0bd0_0bd0 => FsKind::Network("lustre"),
        0x4750_4653 => FsKind::Network("gpfs"),
        0x1983_0326 => FsKind::Network("beegfs"),
        0x00c3_6400 => FsKind::Network("cephfs"),
        0x5346_414f => FsKind::Network("afs"),
        0x2003_0528 => FsKind::Network("orangefs"),
        0x0102_1997 => FsKind::Network("9p"),
        0x6573_5546 => FsKind::Unknown("fuse".into()),
        0x794c_7630 => FsKind::Unknown("overlay".into()),
        m => FsKind::Unknown(format!("type 0x{m:x}")),
    }
}

/// `statfs(2)` magic of the file system holding `dir` (or its nearest existing ancestor, so the
/// check runs before anything is created).
pub fn fs_magic(dir: &Path) -> Result<(i64, PathBuf)> {
    use std::os::unix::ffi::OsStrExt;
    let mut probe = std::path::absolute(dir)?;
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p.to_path_buf(),
            None => break,
        }
    }
    let c = std::ffi::CString::new(probe.as_os_str().as_bytes())
        .map_err(|_| anyhow::anyhow!("{}: the path contains a NUL byte", probe.display()))?;
    // SAFETY: statfs writes only into the zeroed struct we pass; `c` is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        anyhow::bail!(
            "statfs {}: {}",
            probe.display(),
            std::io::Error::last_os_error()
        );
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
    Ok((st.f_type as i64, probe))
}

/// A directory that a cluster's nodes must share, for the shared-file-system check's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedDir {
    /// `--artifacts`: checkpoints, exported models, job logs.
    Artifacts,
    /// The Hugging Face cache that the submitting machine fetched the Hub weights into.
    HubCache,
}

impl SharedDir {
    fn name(self, dir: &Path) -> String {
        match self {
            SharedDir::Artifacts => format!("--artifacts {}", dir.display()),
            SharedDir::HubCache => {
                format!("the Hugging Face cache {} (HF_HUB_CACHE)", dir.display())
            }
        }
    }

    /// What the tasks on other nodes could not do.
    fn lost(self) -> &'static str {
        match self {
            SharedDir::Artifacts => {
                "array tasks on other nodes could not read its checkpoints or write their models \
                 there"
            }
            SharedDir::HubCache => {
                "array tasks on other nodes (which run offline, HF_HUB_OFFLINE=1) would not find \
                 the pretrained weights fetched into it"
            }
        }
    }

    fn fix(self) -> &'static str {
        match self {
            SharedDir::Artifacts => {
                "pass --artifacts on a file system every node mounts (NFS, Lustre, GPFS, ...)"
            }
            SharedDir::HubCache => {
                "set HF_HUB_CACHE (or HF_HOME) to a directory on a file system every node mounts \
                 (NFS, Lustre, GPFS, ...)"
            }
        }
    }
}

/// Refuse (usage error) a directory that cannot be shared between nodes; return a warning for
/// one that probably is not. `local_ok` (`--artifacts-local-ok`) accepts both, for single-node
/// clusters.
pub fn check_shared(dir: &Path, local_ok: bool, what: SharedDir) -> Result<Option<String>> {
    if local_ok {
        return Ok(None);
    }
    let (magic, probe) = fs_magic(dir)?;
    let on = |kind: &str| {
        if probe == dir {
            format!("is on {kind}")
        } else {
            format!(
                "would be on {kind} (the file system of {})",
                probe.display()
            )
        }
    };
    let name = what.name(dir);
    Ok(match classify(magic) {
        FsKind::NodeLocalMemory(kind) => {
            return Err(UsageError(format!(
                "{name}: {}, which is private to this node: {}; fix: {}, or add \
                 --artifacts-local-ok if the cluster is this one node",
                on(kind),
                what.lost(),
                what.fix()
            ))
            .into())
        }
        FsKind::LocalDisk(kind) => Some(format!(
            "{name}: {}, usually a disk of this node only; if the cluster has other nodes, {} \
             (to fix: {}; add --artifacts-local-ok to silence this on a single-node cluster)",
            on(kind),
            what.lost(),
            what.fix()
        )),
        FsKind::Unknown(kind) => Some(format!(
            "{name}: {}, a file system kind that sweep cannot tell is shared; make sure every \
             node mounts it (add --artifacts-local-ok to silence this)",
            on(&kind)
        )),
        FsKind::Network(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_paths_resolve_against_the_root() {
        let h = "0123456789abcdef";
        assert_eq!(relative_dir(h), "trials/0123456789ab");
        let root = Path::new("/new/root");
        assert_eq!(
            resolve(root, "trials/0123456789ab", h),
            PathBuf::from("/new/root/trials/0123456789ab")
        );
        // An old absolute path that still exists is kept.
        let tmp = tempfile::tempdir().unwrap();
        let old = tmp.path().join("old/trials/0123456789ab");
        std::fs::create_dir_all(&old).unwrap();
        assert_eq!(resolve(root, old.to_str().unwrap(), h), old);
        // ... and one that is gone falls back to the root, when the trial is there.
        let gone = "/gone/results/trials/0123456789ab";
        assert_eq!(resolve(root, gone, h), PathBuf::from(gone));
        let moved_root = tmp.path().join("moved");
        std::fs::create_dir_all(trial_dir(&moved_root, h)).unwrap();
        assert_eq!(resolve(&moved_root, gone, h), trial_dir(&moved_root, h));
    }

    #[test]
    fn file_system_kinds() {
        assert_eq!(classify(0x01021994), FsKind::NodeLocalMemory("tmpfs"));
        assert_eq!(classify(0xef53), FsKind::LocalDisk("ext2/ext3/ext4"));
        assert_eq!(classify(0x6969), FsKind::Network("nfs"));
        assert_eq!(classify(0x0bd00bd0), FsKind::Network("lustre"));
        // A sign-extended magic (f_type is signed on some targets) classifies the same.
        assert_eq!(
            classify(0xff534d42u32 as i32 as i64),
            FsKind::Network("cifs")
        );
        assert!(matches!(classify(0x1234), FsKind::Unknown(_)));
    }

    #[test]
    fn magic_of_a_missing_directory_is_its_ancestors() {
        let tmp = tempfile::tempdir().unwrap();
        let (m1, _) = fs_magic(tmp.path()).unwrap();
        let (m2, probe) = fs_magic(&tmp.path().join("a/b/c")).unwrap();
        assert_eq!(m1, m2);
        assert_eq!(probe, tmp.path());
        assert!(
            check_shared(&tmp.path().join("x"), true, SharedDir::Artifacts)
                .unwrap()
                .is_none()
        );
        // What the messages name (the outcome depends on this machine's file system).
        for what in [SharedDir::Artifacts, SharedDir::HubCache] {
            let said = match check_shared(tmp.path(), false, what) {
                Ok(Some(w)) => w,
                Ok(None) => continue,
                Err(e) => e.to_string(),
            };
            let want = if what == SharedDir::HubCache {
                "HF_HUB_CACHE"
            } else {
                "--artifacts"
            };
            assert!(said.contains(want), "{said}");
        }
    }
}
