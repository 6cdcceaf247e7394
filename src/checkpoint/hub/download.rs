//! One file of a repository into the cache's `blobs/`, safely: under the blob's lock (a second
//! process waits, then finds the blob and downloads nothing), into `ETAG.incomplete` that a
//! later run resumes with a `Range` request, retried with back-off when the transfer breaks,
//! its SHA-256 checked against the ETag of an LFS file (a mismatch is deleted, downloaded once
//! more from scratch, then refused), and renamed into place only when complete. Progress is a
//! bar with size, rate and ETA on a terminal, a line every 10 s otherwise.
//!
//! The partial file has the shared name that `huggingface_hub` used before 1.x and resumes
//! across processes; the lock keeps two writers apart, and where `flock` is not honoured (some
//! Lustre/GPFS mounts, the reason `huggingface_hub` moved to per-process names) a mixed-up file
//! fails the SHA-256 check instead of entering the cache.

use super::cache::{is_sha256, RepoCache};
use super::client::{backoff, Client, FileMeta, HubError, RETRIES};
use crate::error::UsageError;
use anyhow::{Context, Result};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The blob of `meta` in `cache`, downloaded unless it is there.
pub fn blob(
    client: &Client,
    cache: &RepoCache,
    repo: &str,
    file: &str,
    meta: &FileMeta,
) -> Result<PathBuf> {
    let blob = cache.blob(&meta.etag);
    if blob.is_file() {
        return Ok(blob);
    }
    let dir = blob.parent().expect("a blob has a directory");
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let what = format!("{repo}/{file}");
    let _lock = lock(&cache.lock_path(&meta.etag), &what)?;
    if blob.is_file() {
        eprintln!("hub: {what}: downloaded by another process meanwhile; using it");
        return Ok(blob);
    }
    let part = dir.join(format!("{}.incomplete", meta.etag));
    download_verified(client, meta, &part, &what)?;
    fs::rename(&part, &blob).with_context(|| format!("moving {} into place", part.display()))?;
    Ok(blob)
}

/// Holds `path`'s `flock` (the lock `huggingface_hub`'s `filelock` takes) until dropped; says
/// so when another process holds it and waits for it.
fn lock(path: &Path, what: &str) -> Result<File> {
    let dir = path.parent().expect("a lock file has a directory");
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening the lock {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            eprintln!(
                "hub: {what}: another process is downloading it (lock {}); waiting for it",
                path.display()
            );
            f.lock()
                .with_context(|| format!("waiting for the lock {}", path.display()))?;
        }
        // A file system without locks: go on unlocked; the SHA-256 check still guards the blob.
        Err(std::fs::TryLockError::Error(e)) => {
            eprintln!(
                "hub: warning: cannot lock {} ({e}); downloading without the lock",
                path.display()
            );
        }
    }
    Ok(f)
}

/// Downloads into `part` (resuming it) until complete and, for an LFS file, until its SHA-256
/// is the ETag: a mismatch is deleted and downloaded once more from scratch, then refused.
fn download_verified(client: &Client, meta: &FileMeta, part: &Path, what: &str) -> Result<()> {
    for attempt in 1..=2 {
        let digest = transfer(client, meta, part, what)?;
        if !is_sha256(&meta.etag) || digest == meta.etag {
            return Ok(());
        }
        let _ = fs::remove_file(part);
        if attempt == 1 {
            eprintln!(
                "hub: {what}: SHA-256 {digest} is not the Hub's {}; deleted, downloading it again",
                meta.etag
            );
            continue;
        }
        return Err(UsageError(format!(
            "{what}: the downloaded file's SHA-256 is {digest}, not {} as the Hub's ETag says, \
             twice; it was refused and is not in the cache. fix: retry later; if it persists, \
             something between this machine and {} alters downloads (a proxy?)",
            meta.etag, meta.url
        ))
        .into());
    }
    unreachable!("the loop returns")
}

/// Appends the rest of the file to `part`, retrying broken transfers from where they stopped;
/// the SHA-256 of the whole file.
fn transfer(client: &Client, meta: &FileMeta, part: &Path, what: &str) -> Result<String> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(part)
        .with_context(|| format!("opening {}", part.display()))?;
    let mut have = f.metadata()?.len();
    if have > meta.size {
        f.set_len(0)?;
        have = 0;
    }
    let mut hasher = hash_prefix(&mut f, have)?;
    let mut meter = Meter::new(what, meta.size, have);
    let mut failures = 0u32;
    while have < meta.size {
        let before = have;
        let outcome = match client.get_from(&meta.url, have) {
            // A refusal (an expired CDN link, a 404) does not get better by asking again.
            Err(e) if !e.transient() => {
                meter.abandon();
                return Err(UsageError(format!(
                    "{what}: {e}; the download stopped at {}; fix: run the command again",
                    HumanBytes(have)
                ))
                .into());
            }
            Err(e) => Err(e.to_string()),
            Ok(resp) => {
                if body_start(&resp, have) < have {
                    // The server ignored the range: start over (`huggingface_hub.http_get`).
                    f.set_len(0)?;
                    have = 0;
                    hasher = Sha256::new();
                    meter.set(0);
                }
                copy_body(resp, &mut f, &mut have, meta.size, &mut hasher, &mut meter)
            }
        };
        if let Err(e) = outcome {
            // Retries count attempts without progress, as `huggingface_hub.http_get`'s do.
            if have > before {
                failures = 0;
            }
            failures += 1;
            if failures > RETRIES {
                meter.abandon();
                return Err(UsageError(format!(
                    "{what}: the download stopped at {} of {} after {RETRIES} retries: {e}; \
                     the part is kept in {}. fix: run the command again to resume it",
                    HumanBytes(have),
                    HumanBytes(meta.size),
                    part.display()
                ))
                .into());
            }
            meter.println(&format!(
                "hub: {what}: {e} at {}; resuming in a moment ({failures} of {RETRIES})",
                HumanBytes(have)
            ));
            std::thread::sleep(backoff(failures));
        } else {
            failures = 0;
        }
    }
    f.sync_all()
        .with_context(|| format!("writing {}", part.display()))?;
    meter.finish();
    Ok(hex::encode(hasher.finalize()))
}

/// The hash of the first `len` bytes of `f` (a resumed download's), leaving `f` at their end.
fn hash_prefix(f: &mut File, len: u64) -> Result<Sha256> {
    let mut hasher = Sha256::new();
    f.seek(SeekFrom::Start(0))?;
    std::io::copy(&mut Read::by_ref(f).take(len), &mut hasher)?;
    f.seek(SeekFrom::Start(len))?;
    Ok(hasher)
}

/// Where the answer's body starts in the file: the asked offset for a 206 whose
/// `Content-Range` says so, 0 for a full answer (200), a 416 at the very end, or anything else.
fn body_start(resp: &ureq::http::Response<ureq::Body>, asked: u64) -> u64 {
    if asked == 0 {
        return 0;
    }
    let range = super::client::header(resp.headers(), "content-range").unwrap_or_default();
    let starts_at_asked = range
        .strip_prefix("bytes ")
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.trim().parse::<u64>().ok())
        == Some(asked);
    match resp.status().as_u16() {
        206 if starts_at_asked => asked,
        _ => 0,
    }
}

/// Streams a 200/206 body onto the end of `f` up to `size`; an error (to retry) when the body
/// ended early or broke off.
fn copy_body(
    resp: ureq::http::Response<ureq::Body>,
    f: &mut File,
    have: &mut u64,
    size: u64,
    hasher: &mut Sha256,
    meter: &mut Meter,
) -> Result<(), String> {
    let status = resp.status().as_u16();
    if status == 416 || !(200..300).contains(&status) {
        return Err(HubError::Status {
            url: String::new(),
            status,
            code: None,
            message: None,
        }
        .to_string());
    }
    f.seek(SeekFrom::Start(*have)).map_err(|e| e.to_string())?;
    let mut reader = resp.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                f.flush().map_err(|e| e.to_string())?;
                return Err(format!("the transfer broke off ({e})"));
            }
        };
        if *have + n as u64 > size {
            return Err(format!(
                "the server sent more than the {size} bytes the Hub announced"
            ));
        }
        f.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        hasher.update(&buf[..n]);
        *have += n as u64;
        meter.set(*have);
    }
    if *have < size {
        return Err(format!(
            "the connection closed at {} of {}",
            HumanBytes(*have),
            HumanBytes(size)
        ));
    }
    Ok(())
}

/// Download progress: an indicatif bar on a terminal, a plain line every 10 s otherwise.
struct Meter {
    bar: Option<ProgressBar>,
    what: String,
    size: u64,
    start: Instant,
    started_at: u64,
    last_line: Instant,
    at: u64,
}

impl Meter {
    fn new(what: &str, size: u64, at: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(size).with_position(at);
            b.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            b.set_message(format!("downloading {what}"));
            b
        });
        let verb = if at > 0 { "resuming" } else { "downloading" };
        if bar.is_none() {
            eprintln!(
                "hub: {verb} {what} ({}{})",
                HumanBytes(size),
                if at > 0 {
                    format!(", from {}", HumanBytes(at))
                } else {
                    String::new()
                }
            );
        }
        Self {
            bar,
            what: what.to_string(),
            size,
            start: Instant::now(),
            started_at: at,
            last_line: Instant::now(),
            at,
        }
    }

    fn set(&mut self, at: u64) {
        self.at = at;
        match &self.bar {
            Some(b) => b.set_position(at),
            None if self.last_line.elapsed() >= Duration::from_secs(10) => {
                self.last_line = Instant::now();
                eprintln!(
                    "hub: {}: {} of {} ({:.0}%), {}/s",
                    self.what,
                    HumanBytes(at),
                    HumanBytes(self.size),
                    100.0 * at as f64 / self.size.max(1) as f64,
                    HumanBytes(self.rate())
                );
            }
            None => {}
        }
    }

    fn rate(&self) -> u64 {
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        (self.at.saturating_sub(self.started_at) as f64 / secs) as u64
    }

    fn println(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn abandon(&self) {
        if let Some(b) = &self.bar {
            b.abandon();
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        eprintln!(
            "hub: downloaded {} ({} in {:.1} s, {}/s)",
            self.what,
            HumanBytes(self.size),
            self.start.elapsed().as_secs_f64(),
            HumanBytes(self.rate())
        );
    }
}
