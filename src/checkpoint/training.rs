//! Training checkpoints you can trust: each is a directory `checkpoints/ckpt-NNNNNN/` holding
//! `model/` (HF layout), `optimizer.safetensors` (named moment tensors), `state.json` (step, data
//! position, running metrics) and `manifest.json`, the step and every file's size and SHA-256.
//!
//! A checkpoint is written into a staging directory, its files synced, renamed into place, and
//! only then is its manifest written (temp file, sync, rename): a checkpoint without a complete
//! manifest does not exist. The newest two good ones are kept; older ones (and torn or bad ones)
//! are deleted only once a newer one is complete, so a crash or a full disk at any point leaves a
//! good checkpoint behind. Loading verifies each file's size and hash on the bytes it parses and
//! falls back to the next older checkpoint when one does not match ([`load_newest`]), the way
//! Orbax's and TensorFlow's checkpoint managers keep several and PyTorch Lightning writes each
//! atomically.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::files::{self, read_verified, sync_dir, write_synced, Written};
use super::NamedTensor;
use crate::model::{Gpt, GptConfig};

/// The folder of a run's work directory that holds its checkpoints.
pub const TRAINING_SUBDIR: &str = "checkpoints";
/// Where sweep kept its one checkpoint before manifests: never loaded (it cannot be verified),
/// reported when found, deleted once a new checkpoint is complete.
pub const LEGACY_SUBDIR: &str = "checkpoint";

const MANIFEST: &str = "manifest.json";
const PREFIX: &str = "ckpt-";
/// Manifest format; a manifest of another format is not a checkpoint this code can read.
const FORMAT: u32 = 1;
const STATE: &str = "state.json";
const OPTIMIZER: &str = "optimizer.safetensors";
const CONFIG: &str = "model/config.json";
const WEIGHTS: &str = "model/model.safetensors";

/// What `manifest.json` records: the checkpoint's step and each file, by path in the checkpoint.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    step: u64,
    files: BTreeMap<String, Written>,
}

/// The contents of a training checkpoint besides the model.
pub struct TrainingCheckpoint<S> {
    pub cfg: GptConfig,
    pub optimizer: Vec<NamedTensor>,
    pub state: S,
}

/// A checkpoint directory by name (`ckpt-000003`) and the step it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointId {
    pub name: String,
    pub step: u64,
}

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (step {})", self.name, self.step)
    }
}

/// A checkpoint that was found but not used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub name: String,
    /// The step its manifest names, when the manifest could be read.
    pub step: Option<u64>,
    pub problem: String,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            Some(step) => write!(f, "{} (step {step}): {}", self.name, self.problem),
            None => write!(f, "{}: {}", self.name, self.problem),
        }
    }
}

/// Where a run started from: the checkpoint it resumed, and what it found and could not use.
/// The trainer logs it and the trial's environment records it (`env.resume`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resumption {
    /// The checkpoint training continues from; `None`: from the beginning.
    pub checkpoint: Option<CheckpointId>,
    /// Checkpoints found but not usable, newest first.
    #[serde(default)]
    pub rejected: Vec<Rejected>,
}

impl Resumption {
    /// Whether there is anything to tell: a checkpoint resumed, or one found and not used.
    pub fn is_notable(&self) -> bool {
        self.checkpoint.is_some() || !self.rejected.is_empty()
    }

    /// One line: which checkpoint was used, and how many were not.
    pub fn summary(&self) -> String {
        let from = match &self.checkpoint {
            Some(c) => format!("resumed from checkpoint {c}"),
            None => "restarted from the beginning".to_string(),
        };
        match self.rejected.len() {
            0 => from,
            n => {
                let names: Vec<&str> = self.rejected.iter().map(|r| r.name.as_str()).collect();
                format!(
                    "{from}: {n} checkpoint(s) failed verification ({})",
                    names.join(", ")
                )
            }
        }
    }
}

/// A checkpoint that could not be written because its file system is full. The partial
/// checkpoint was removed and the previous one kept unchanged.
#[derive(Debug, Clone)]
pub struct NoSpace {
    pub dir: PathBuf,
    /// The newest good checkpoint, which a rerun resumes from.
    pub kept: Option<CheckpointId>,
}

impl fmt::Display for NoSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no space left on the device for checkpoint {}; the partial checkpoint was removed",
            self.dir.display()
        )?;
        match &self.kept {
            Some(c) => write!(f, " and the previous one, {c}, is kept unchanged"),
            None => write!(f, " (there is no earlier checkpoint)"),
        }
    }
}

impl std::error::Error for NoSpace {}

/// The checkpoint directories in `root` (complete or not, staging directories excepted) by
/// sequence number, newest first.
fn checkpoint_dirs(root: &Path) -> Result<Vec<(u64, String)>> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", root.display())),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", root.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let seq = name
            .strip_prefix(PREFIX)
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq.filter(|_| entry.path().is_dir()) {
            dirs.push((seq, name));
        }
    }
    dirs.sort_by(|a, b| b.cmp(a));
    Ok(dirs)
}

/// Saves a new checkpoint in `root` and then deletes everything else there but `keep` (the
/// newest good checkpoint before this one: the one the run resumed from or last saved). On a
/// full disk the partial checkpoint is removed and the error is a [`NoSpace`].
pub fn save_training<B: Backend, S: Serialize>(
    root: &Path,
    model: &Gpt<B>,
    cfg: &GptConfig,
    optimizer: &[NamedTensor],
    state: &S,
    step: u64,
    keep: Option<&CheckpointId>,
) -> Result<CheckpointId> {
    fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let seq = checkpoint_dirs(root)?.first().map_or(1, |(s, _)| s + 1);
    let id = CheckpointId {
        name: format!("{PREFIX}{seq:06}"),
        step,
    };
    let dir = root.join(&id.name);
    let written = write_checkpoint(root, &dir, step, |stage| {
        let model_dir = stage.join("model");
        fs::create_dir_all(&model_dir)?;
        let mut files: BTreeMap<String, Written> =
            super::write_hf_files(model, cfg, None, &model_dir)?
                .into_iter()
                .map(|(name, w)| (format!("model/{name}"), w))
                .collect();
        sync_dir(&model_dir)?;
        let opt = super::write_safetensors(&stage.join(OPTIMIZER), optimizer, Default::default())?;
        files.insert(OPTIMIZER.into(), opt);
        let st = write_synced(&stage.join(STATE), &serde_json::to_vec_pretty(state)?)?;
        files.insert(STATE.into(), st);
        Ok(files)
    });
    if let Err(e) = written {
        // The partial checkpoint never existed; removing it gives a full disk its space back.
        let _ = fs::remove_dir_all(&dir);
        if files::is_no_space(&e) {
            return Err(e.context(NoSpace {
                dir,
                kept: keep.cloned(),
            }));
        }
        return Err(e);
    }
    prune(root, &[Some(&id), keep]);
    Ok(id)
}

/// Writes a checkpoint: `fill` writes (and syncs) the files into a staging directory, which is
/// renamed to `dir`; then the manifest of what `fill` wrote completes it.
fn write_checkpoint(
    root: &Path,
    dir: &Path,
    step: u64,
    fill: impl FnOnce(&Path) -> Result<BTreeMap<String, Written>>,
) -> Result<()> {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp-"))
        .tempdir_in(root)
        .with_context(|| format!("creating a staging directory in {}", root.display()))?;
    let files = fill(staging.path())?;
    sync_dir(staging.path())?;
    fs::rename(staging.path(), dir)
        .with_context(|| format!("moving {} into place", dir.display()))?;
    // Renamed: nothing for the TempDir to delete any more.
    let _ = staging.keep();
    sync_dir(root)?;
    let manifest = Manifest {
        format: FORMAT,
        step,
        files,
    };
    let tmp = dir.join(format!(".{MANIFEST}.tmp"));
    write_synced(&tmp, &serde_json::to_vec_pretty(&manifest)?)?;
    fs::rename(&tmp, dir.join(MANIFEST))
        .with_context(|| format!("moving {} into place", dir.join(MANIFEST).display()))?;
    sync_dir(dir)
}

/// Deletes every entry of `root` but the checkpoints in `keep`. A failure is only a warning:
/// the next save tries again.
fn prune(root: &Path, keep: &[Option<&CheckpointId>]) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if keep.iter().flatten().any(|k| k.name == name) {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        if let Err(e) = removed {
            eprintln!(
                "warning: could not delete the old checkpoint {}: {e}",
                path.display()
            );
        }
    }
}

/// A checkpoint read back and verified.
pub struct Found<B: Backend, S> {
    pub id: CheckpointId,
    pub model: Gpt<B>,
    pub checkpoint: TrainingCheckpoint<S>,
}

/// What [`load_newest`] found: the checkpoint to resume from, if one is good, and the ones
/// passed over.
pub type Newest<B, S> = (Option<Found<B, S>>, Vec<Rejected>);

/// Loads the newest checkpoint in `root` whose manifest is complete and whose files all have
/// their recorded size and SHA-256 and parse; the ones tried before it, newest first, with what
/// was wrong with each. `None` when no checkpoint is good (or there is none).
pub fn load_newest<B: Backend, S: for<'de> Deserialize<'de>>(
    root: &Path,
    dropout: f64,
    device: &B::Device,
) -> Result<Newest<B, S>> {
    let mut rejected = Vec::new();
    for (_, name) in checkpoint_dirs(root)? {
        let dir = root.join(&name);
        let manifest = match read_manifest(&dir) {
            Ok(m) => m,
            Err(e) => {
                rejected.push(Rejected {
                    name,
                    step: None,
                    problem: format!("{e:#}"),
                });
                continue;
            }
        };
        match load_verified(&dir, &manifest, dropout, device) {
            Ok((model, checkpoint)) => {
                let id = CheckpointId {
                    name,
                    step: manifest.step,
                };
                return Ok((
                    Some(Found {
                        id,
                        model,
                        checkpoint,
                    }),
                    rejected,
                ));
            }
            Err(e) => rejected.push(Rejected {
                name,
                step: Some(manifest.step),
                problem: format!("{e:#}"),
            }),
        }
    }
    Ok((None, rejected))
}

fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no {MANIFEST}: the checkpoint was never completed (its writer stopped before the end)"
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let m: Manifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a complete manifest", path.display()))?;
    if m.format != FORMAT {
        bail!(
            "{} has format {}; this sweep reads format {FORMAT}",
            path.display(),
            m.format
        );
    }
    for f in [CONFIG, WEIGHTS, OPTIMIZER, STATE] {
        if !m.files.contains_key(f) {
            bail!("{} does not list {f}", path.display());
        }
    }
    Ok(m)
}

/// Reads the files of a checkpoint, each checked against its manifest entry, and parses them.
fn load_verified<B: Backend, S: for<'de> Deserialize<'de>>(
    dir: &Path,
    manifest: &Manifest,
    dropout: f64,
    device: &B::Device,
) -> Result<(Gpt<B>, TrainingCheckpoint<S>)> {
    let read = |rel: &str| {
        let path = dir.join(rel);
        read_verified(&path, &manifest.files[rel]).map(|bytes| (bytes, path))
    };
    let (bytes, path) = read(STATE)?;
    let state: S = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} does not parse", path.display()))?;
    let (bytes, path) = read(CONFIG)?;
    let cfg = super::parse_hf_config(&bytes, &path)?;
    let (bytes, path) = read(WEIGHTS)?;
    let (tensors, _) = super::parse_safetensors(&bytes, &path)?;
    drop(bytes);
    let (model, cfg) = super::build_model::<B>(cfg, tensors, &path, None, Some(dropout), device)?;
    let (bytes, path) = read(OPTIMIZER)?;
    let (optimizer, _) = super::parse_safetensors(&bytes, &path)?;
    Ok((
        model,
        TrainingCheckpoint {
            cfg,
            optimizer,
            state,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    type B = crate::backend::Cpu;

    fn tiny() -> (Gpt<B>, GptConfig) {
        let cfg = GptConfig {
            vocab_size: 40,
            n_positions: 16,
            n_embd: 8,
            n_layer: 1,
            n_head: 2,
            dropout: 0.0,
            layer_norm_epsilon: 1e-5,
        };
        (cfg.init::<B>(&Default::default(), 7), cfg)
    }

    fn moments(step: u64) -> Vec<NamedTensor> {
        vec![NamedTensor {
            name: "wte.weight.moment_1".into(),
            shape: vec![3, 4],
            data: (0..12).map(|i| i as f32 * 0.5 + step as f32).collect(),
        }]
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct St {
        step: u64,
    }

    fn save(root: &Path, step: u64, keep: Option<&CheckpointId>) -> CheckpointId {
        let (model, cfg) = tiny();
        save_training(root, &model, &cfg, &moments(step), &St { step }, step, keep).unwrap()
    }

    /// The checkpoint loaded (id, state's step, moments) and the ones passed over.
    type Loaded = (Option<(CheckpointId, u64, Vec<NamedTensor>)>, Vec<Rejected>);

    fn load(root: &Path) -> Loaded {
        let (found, rejected) = load_newest::<B, St>(root, 0.0, &Default::default()).unwrap();
        let found = found.map(|f| (f.id, f.checkpoint.state.step, f.checkpoint.optimizer));
        (found, rejected)
    }

    fn names(root: &Path) -> Vec<String> {
        let mut n: Vec<String> = fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn keeps_the_newest_two_and_loads_the_newest() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join(TRAINING_SUBDIR);
        assert_eq!(load(&root), (None, vec![]), "no checkpoint yet");
        let a = save(&root, 10, None);
        let b = save(&root, 20, Some(&a));
        let c = save(&root, 30, Some(&b));
        assert_eq!(names(&root), ["ckpt-000002", "ckpt-000003"]);
        let (found, rejected) = load(&root);
        let (id, step, opt) = found.unwrap();
        assert_eq!((id, step), (c, 30));
        assert_eq!(opt, moments(30));
        assert!(rejected.is_empty());
        let m = read_manifest(&root.join("ckpt-000003")).unwrap();
        let files: Vec<&str> = m.files.keys().map(String::as_str).collect();
        assert_eq!(files, [CONFIG, WEIGHTS, OPTIMIZER, STATE]);
        let w = &m.files[OPTIMIZER];
        let bytes = fs::read(root.join("ckpt-000003").join(OPTIMIZER)).unwrap();
        assert_eq!(w.size, bytes.len() as u64);
        assert_eq!(w.sha256, crate::util::sha256_hex(&bytes));
    }

    /// Each way a checkpoint can be torn or rot falls back to the older one; with both bad,
    /// there is nothing to resume.
    #[test]
    fn a_torn_or_changed_checkpoint_falls_back_to_the_older_one() {
        type Damage = fn(&Path);
        let damages: [(&str, Damage); 7] = [
            ("no manifest", |d| {
                fs::remove_file(d.join(MANIFEST)).unwrap()
            }),
            ("manifest cut", |d| truncate(&d.join(MANIFEST))),
            ("state cut", |d| truncate(&d.join(STATE))),
            ("config cut", |d| truncate(&d.join(CONFIG))),
            ("weights cut", |d| truncate(&d.join(WEIGHTS))),
            ("optimizer cut", |d| truncate(&d.join(OPTIMIZER))),
            ("optimizer byte flipped", |d| flip_byte(&d.join(OPTIMIZER))),
        ];
        for (what, damage) in damages {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().to_path_buf();
            let a = save(&root, 10, None);
            let b = save(&root, 20, Some(&a));
            damage(&root.join(&b.name));
            let (found, rejected) = load(&root);
            let (id, step, opt) = found.unwrap_or_else(|| panic!("{what}: nothing loaded"));
            assert_eq!((&id, step, opt), (&a, 10, moments(10)), "{what}");
            assert_eq!(rejected.len(), 1, "{what}: {rejected:?}");
            assert_eq!(rejected[0].name, b.name, "{what}");
            let problem = &rejected[0].problem;
            let expect = match what {
                "no manifest" => "never completed",
                "manifest cut" => "not a complete manifest",
                "optimizer byte flipped" => "SHA-256",
                _ => "(truncated)",
            };
            assert!(problem.contains(expect), "{what}: {problem}");

            // The older one bad too: nothing to resume, both reported, newest first.
            flip_byte(&root.join(&a.name).join(WEIGHTS));
            let (found, rejected) = load(&root);
            assert!(found.is_none(), "{what}");
            let bad: Vec<&str> = rejected.iter().map(|r| r.name.as_str()).collect();
            assert_eq!(bad, [b.name.as_str(), a.name.as_str()], "{what}");

            // The next save keeps only itself (no good one to keep) and removes the bad ones.
            let c = save(&root, 10, None);
            assert_eq!(names(&root), std::slice::from_ref(&c.name), "{what}");
        }
    }

    #[test]
    fn a_checkpoint_after_a_bad_one_keeps_the_good_one_it_resumed_from() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let a = save(&root, 10, None);
        let b = save(&root, 20, Some(&a));
        truncate(&root.join(&b.name).join(WEIGHTS));
        // Left over by a writer that died mid-way: a staging directory.
        fs::create_dir(root.join(".ckpt-000003.tmp-x")).unwrap();
        let (found, _) = load(&root);
        assert_eq!(found.unwrap().0, a);
        let c = save(&root, 20, Some(&a));
        assert_eq!(c.name, "ckpt-000003");
        assert_eq!(names(&root), [a.name.clone(), c.name.clone()]);
    }

    fn truncate(path: &Path) {
        let len = fs::metadata(path).unwrap().len();
        let f = fs::OpenOptions::new().write(true).open(path).unwrap();
        f.set_len(len / 2).unwrap();
    }

    fn flip_byte(path: &Path) {
        let mut bytes = fs::read(path).unwrap();
        let i = bytes.len() - 3;
        bytes[i] ^= 0x01;
        fs::write(path, bytes).unwrap();
    }
}
