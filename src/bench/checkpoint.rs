//! `sweep bench-checkpoint`: what verified checkpoints cost (issue 23). A checkpoint of a model
//! shape (gpt2-medium by default: its weights plus AdamW's two moments, ~4.3 GB) is written by
//! the trainer's own [`checkpoint::save_training`] (SHA-256 while writing, every file synced) and,
//! for reference, by the crate's `serialize_to_file` with and without a sync; SHA-256 alone is
//! timed over the same bytes in memory; resuming ([`checkpoint::load_newest`]: read, verify,
//! parse) is timed from a cold page cache beside a plain read of the same files.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use safetensors::tensor::{Dtype, TensorView};
use sha2::{Digest, Sha256};

use crate::backend::Cpu;
use crate::checkpoint::{self, NamedTensor};
use crate::error::UsageError;
use crate::model::GptConfig;
use crate::util::SplitMix;

/// `sweep bench-checkpoint`: checkpoint write, hash and verify times at a model's size.
#[derive(Args, Debug)]
pub struct BenchCheckpointArgs {
    /// A directory on the disk to measure (checkpoints are written there and deleted).
    #[arg(long)]
    pub dir: PathBuf,
    /// The model shape: a preset name (gpt2-medium, gpt2, distilgpt2, gpt2-tiny, ...).
    #[arg(long, default_value = "gpt2-medium")]
    pub model: String,
    /// Repetitions of each measurement (the median is printed).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
}

pub fn run(args: BenchCheckpointArgs) -> Result<ExitCode> {
    if args.reps == 0 {
        return Err(UsageError("--reps must be at least 1".into()).into());
    }
    let cfg = GptConfig::preset(&args.model)?;
    let device = Default::default();
    eprintln!("initialising {} ...", args.model);
    let model = cfg.init::<Cpu>(&device, 0);
    let optimizer = fake_moments(&checkpoint::named_tensors(&model));
    let state = serde_json::json!({ "step": 1 });
    let work = tempfile::tempdir_in(&args.dir)
        .with_context(|| format!("creating a directory in {}", args.dir.display()))?;
    let root = work.path().join("checkpoints");

    let mut times: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut bytes = 0;
    for rep in 0..args.reps {
        eprintln!("rep {}/{}", rep + 1, args.reps);
        let _ = fs::remove_dir_all(&root);
        let t = Instant::now();
        let id = checkpoint::save_training(&root, &model, &cfg, &optimizer, &state, 1, None)?;
        times.entry("save").or_default().push(secs(t));
        let files = data_files(&root.join(&id.name))?;
        bytes = files.iter().map(|f| f.1).sum::<u64>();

        let plain = work.path().join("plain");
        for sync in [true, false] {
            let _ = fs::remove_dir_all(&plain);
            fs::create_dir_all(&plain)?;
            let t = Instant::now();
            plain_save(&plain, &model, &optimizer, sync)?;
            let key = if sync { "plain_sync" } else { "plain" };
            times.entry(key).or_default().push(secs(t));
        }
        let _ = fs::remove_dir_all(&plain);

        // Hashing alone, over the same bytes in memory (64 MiB at a time, only the hashing
        // timed).
        let mut hash = 0.0;
        for (path, _) in &files {
            let mut f = File::open(path)?;
            let mut buf = vec![0u8; 64 << 20];
            let mut hasher = Sha256::new();
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                let t = Instant::now();
                hasher.update(&buf[..n]);
                hash += secs(t);
            }
            std::hint::black_box(hasher.finalize());
        }
        times.entry("hash").or_default().push(hash);
    }
    // Resuming, from the last rep's checkpoint, with the trainer's copies gone (as in a new
    // process): cold reads (the files dropped from the page cache first).
    drop((model, optimizer));
    let dir = root.join(checkpoint_name(&root)?);
    let files = data_files(&dir)?;
    for _ in 0..args.reps {
        drop_cache(&files)?;
        let t = Instant::now();
        let mut read = 0;
        for (path, _) in &files {
            read += fs::read(path)?.len();
        }
        std::hint::black_box(read);
        times.entry("read").or_default().push(secs(t));
        drop_cache(&files)?;
        let t = Instant::now();
        let (found, rejected) =
            checkpoint::load_newest::<Cpu, serde_json::Value>(&root, 0.1, &device)?;
        anyhow::ensure!(
            found.is_some() && rejected.is_empty(),
            "the checkpoint did not verify: {rejected:?}"
        );
        drop(found);
        times.entry("load").or_default().push(secs(t));
    }
    let m = |k: &str| median(&times[k]);
    let gb = bytes as f64 / 1e9;
    println!("{}", machine_line());
    println!(
        "{}: {gb:.2} GB of checkpoint files (weights + AdamW moments), {} reps, medians:",
        args.model, args.reps
    );
    println!(
        "  write, sweep (SHA-256 while writing, synced):  {:>7.2} s  ({:.2} GB/s)",
        m("save"),
        gb / m("save")
    );
    println!(
        "  write, crate writer + sync, no hash:           {:>7.2} s  (sweep / this = {:.2})",
        m("plain_sync"),
        m("save") / m("plain_sync")
    );
    println!(
        "  write, crate writer, no sync (before issue 23): {:>6.2} s  (sweep / this = {:.2})",
        m("plain"),
        m("save") / m("plain")
    );
    println!(
        "  SHA-256 alone, in memory:                      {:>7.2} s  ({:.2} GB/s; {:.0}% of sweep's write)",
        m("hash"),
        gb / m("hash"),
        100.0 * m("hash") / m("save")
    );
    println!(
        "  resume, sweep (read + verify + parse), cold:   {:>7.2} s",
        m("load")
    );
    println!(
        "  plain read of the files, cold:                 {:>7.2} s  ({:.2} GB/s; hash / read = {:.2})",
        m("read"),
        gb / m("read"),
        m("hash") / m("read")
    );
    Ok(ExitCode::SUCCESS)
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Two moments per parameter, as AdamW's checkpoint holds them, filled with seeded noise (a
/// constant would not change hashing, but keeps nothing honest about what is on disk).
fn fake_moments(params: &[NamedTensor]) -> Vec<NamedTensor> {
    let mut rng = SplitMix::new(1);
    let mut out = Vec::new();
    for p in params {
        for prefix in ["exp_avg", "exp_avg_sq"] {
            out.push(NamedTensor {
                name: format!("{prefix}.{}", p.name),
                shape: p.shape.clone(),
                data: (0..p.data.len())
                    .map(|_| rng.next_f64() as f32 * 1e-3)
                    .collect(),
            });
        }
    }
    out
}

/// The one checkpoint directory in `root`.
fn checkpoint_name(root: &Path) -> Result<String> {
    let entry = fs::read_dir(root)?
        .flatten()
        .next()
        .context("no checkpoint was written")?;
    Ok(entry.file_name().to_string_lossy().into_owned())
}

/// The files of a checkpoint directory with their sizes.
fn data_files(dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
    let mut out = Vec::new();
    for sub in [dir.to_path_buf(), dir.join("model")] {
        for e in fs::read_dir(&sub)? {
            let e = e?;
            if e.file_type()?.is_file() {
                out.push((e.path(), e.metadata()?.len()));
            }
        }
    }
    Ok(out)
}

/// The same files as `save_training` writes, through the safetensors crate's own writer (which
/// keeps a byte copy of every tensor), as sweep wrote checkpoints before manifests.
fn plain_save(
    dir: &Path,
    model: &crate::model::Gpt<Cpu>,
    opt: &[NamedTensor],
    sync: bool,
) -> Result<()> {
    let write = |path: &Path, tensors: &[NamedTensor]| -> Result<()> {
        let bytes: Vec<Vec<u8>> = tensors
            .iter()
            .map(|t| t.data.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let views = tensors
            .iter()
            .zip(&bytes)
            .map(|(t, b)| {
                Ok((
                    t.name.clone(),
                    TensorView::new(Dtype::F32, t.shape.clone(), b)?,
                ))
            })
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
        safetensors::serialize_to_file(views, None, path)?;
        if sync {
            File::open(path)?.sync_all()?;
        }
        Ok(())
    };
    write(
        &dir.join("model.safetensors"),
        &checkpoint::hf_tensors(model),
    )?;
    write(&dir.join("optimizer.safetensors"), opt)?;
    fs::write(dir.join("state.json"), b"{\"step\": 1}")?;
    Ok(())
}

/// Drops the files' pages from the page cache, so the next read comes from the disk.
fn drop_cache(files: &[(PathBuf, u64)]) -> Result<()> {
    use std::os::fd::AsRawFd;
    for (path, _) in files {
        let f = File::open(path)?;
        f.sync_all()?;
        // SAFETY: posix_fadvise on a descriptor we own; it only advises the kernel.
        let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        anyhow::ensure!(rc == 0, "posix_fadvise({}) failed: {rc}", path.display());
    }
    Ok(())
}

/// Cores, CPU model, load and whether the CPU has the SHA extensions sha2 uses at run time.
fn machine_line() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    #[cfg(target_arch = "x86_64")]
    let sha = std::arch::is_x86_feature_detected!("sha");
    #[cfg(not(target_arch = "x86_64"))]
    let sha = false;
    format!(
        "machine: {} cores, {cpu}, load {}; SHA-NI {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.join(" "),
        if sha { "yes (sha2 uses it)" } else { "no" }
    )
}
