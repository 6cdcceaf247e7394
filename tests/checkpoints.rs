//! Checkpoints you can trust (issue 23), end to end with the `sweep` binary: torn checkpoints
//! after kill -9 and a changed byte fall back to the older checkpoint or the start and the trial
//! still ends with the uninterrupted run's numbers; a full disk while checkpointing keeps the
//! previous checkpoint and the rerun resumes from it; `sweep status` never creates a ledger.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sweep::store::{self, Store, TrialRecord, TrialState};

mod common;
use common::{complete_checkpoints, out_text, Project};

/// A one-trial sweep of gpt2-tiny on the synthetic corpus: `steps_per_epoch` optimizer steps in
/// each of `epochs` epochs (a checkpoint at each epoch's end).
fn sweep_file(p: &Project, name: &str, epochs: usize, steps_per_epoch: usize) -> PathBuf {
    let text = format!(
        r#"[sweep]
name = "{name}"
kind = "grid"
[base]
model = "gpt2-tiny"
tokenizer = "bpe-512"
data = {{ sources = ["data/x.tsv"], categories = ["cs.CL"] }}
block_size = 32
batch_size = 4
grad_accum = 1
learning_rate = 1e-3
weight_decay = 0.01
epochs = {epochs}
max_train_tokens = {tokens}
eval_tokens = 1000
[grid]
seed = [7]
"#,
        tokens = steps_per_epoch * 4 * 32
    );
    p.write(&format!("exp/{name}.toml"), &text)
}

fn ledger(p: &Project) -> Arc<dyn Store> {
    let db = p.path().join("results/sweep.db");
    Arc::from(store::open(db.to_str().unwrap()).unwrap())
}

/// Drops the test's ledger and waits until this process has no file of it open (the pool closes
/// a straggling connection on its own thread): only then is `results/` one consistent thing to
/// copy or replace. Not until `-wal` is gone: connections closing at the same moment can all
/// leave it, for good, which is harmless (the next opener reads it) but once made CI wait 60 s.
fn close(s: Arc<dyn Store>, p: &Project) {
    drop(s);
    let ledger = p.path().join("results/sweep.db");
    let ledger = ledger.to_string_lossy().into_owned();
    wait_for("the ledger to close", Duration::from_secs(60), || {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .all(|t| !t.to_string_lossy().starts_with(&ledger))
    });
}

fn the_trial(s: &dyn Store, sweep: &str) -> Option<TrialRecord> {
    let sw = s.sweep_by_name(sweep).unwrap()?;
    s.sweep_trials(sw.id)
        .unwrap()
        .into_iter()
        .next()
        .map(|t| t.trial)
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A completed trial's final numbers and metric rows (split, step, loss).
struct Numbers {
    finals: [f64; 3],
    rows: Vec<(String, i64, f64)>,
}

fn numbers(s: &dyn Store, t: &TrialRecord) -> Numbers {
    let r = &t.results;
    Numbers {
        finals: [
            r.train_loss.unwrap(),
            r.valid_loss.unwrap(),
            r.test_loss.unwrap(),
        ],
        rows: s
            .metrics(t.id)
            .unwrap()
            .into_iter()
            .map(|m| (m.split, m.step, m.loss))
            .collect(),
    }
}

/// The same-numbers rule of resumed trials (tests/sweep.rs): every row and final number of the
/// uninterrupted run.
fn assert_same_numbers(got: &Numbers, want: &Numbers, what: &str) {
    let keys = |v: &[(String, i64, f64)]| -> Vec<(String, i64)> {
        v.iter().map(|(s, st, _)| (s.clone(), *st)).collect()
    };
    assert_eq!(keys(&got.rows), keys(&want.rows), "{what}: metric rows");
    for (g, w) in got.rows.iter().zip(&want.rows) {
        assert!(
            (g.2 - w.2).abs() <= 1e-9 * w.2.abs().max(1.0),
            "{what}: row {g:?} vs uninterrupted {w:?}"
        );
    }
    for (a, b) in got.finals.iter().zip(&want.finals) {
        assert!(
            (a - b).abs() <= 1e-9 * b.abs(),
            "{what}: final numbers {:?} vs uninterrupted {:?}",
            got.finals,
            want.finals
        );
    }
}

/// The trial of `file` run uninterrupted in a fresh project.
fn reference(name: &str, epochs: usize, steps_per_epoch: usize) -> Numbers {
    let q = Project::new();
    let file = sweep_file(&q, name, epochs, steps_per_epoch);
    let out = q.cmd().arg("run").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    let s = ledger(&q);
    let t = the_trial(&*s, name).unwrap();
    assert_eq!(t.state, TrialState::Completed);
    assert_eq!(t.attempts, 1);
    numbers(&*s, &t)
}

fn cp_r(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

fn truncate(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len / 2).unwrap();
}

fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

/// What a rerun found in the trial's checkpoints, from its environment in the ledger.
fn resume_of(t: &TrialRecord) -> serde_json::Value {
    t.env
        .as_ref()
        .map(|e| e["resume"].clone())
        .unwrap_or_default()
}

#[test]
fn torn_checkpoints_after_kill_9_fall_back_to_the_older_one_or_the_start() {
    // 24 epochs of 10 steps: the kill lands after two epoch-end checkpoints and long before the
    // end, however fast steps are.
    let (epochs, spe) = (24, 10);
    let p = Project::new();
    let file = sweep_file(&p, "torn", epochs, spe);
    let mut child = {
        use std::os::unix::process::CommandExt;
        let mut c = p.std_cmd();
        c.arg("run")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        c.spawn().unwrap()
    };
    // Generous: before the ledger, `sweep run` plans the sweep (data, tokenizer) on a shared,
    // loaded machine.
    wait_for("the ledger", Duration::from_secs(300), || {
        p.path().join("results/sweep.db").exists()
    });
    let s = ledger(&p);
    let mut trial = None;
    wait_for("two complete checkpoints", Duration::from_secs(300), || {
        let Some(t) = the_trial(&*s, "torn") else {
            return false;
        };
        let dir = p.path().join("results/trials").join(t.short_hash());
        let two = complete_checkpoints(&dir).len() >= 2;
        trial = Some((t, dir));
        two
    });
    // SAFETY: kill(2) on the process group we created: `sweep run` and its trial die at once.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    child.wait().unwrap();
    let (t, dir) = trial.unwrap();
    let killed = s.trial(t.id).unwrap().unwrap();
    assert_eq!(killed.state, TrialState::Running, "killed mid-trial");
    assert!(!dir.join("model").exists(), "the trial had not finished");
    // What the kill left: two complete checkpoints (three if it landed between a manifest and
    // the deletion of the oldest), maybe a newer one half written.
    let kept = complete_checkpoints(&dir);
    assert!(kept.len() >= 2, "{kept:?}");
    let (older, newer) = (kept[kept.len() - 2].clone(), kept[kept.len() - 1].clone());
    assert!(older.1 < newer.1 && older.1 % spe as u64 == 0, "{kept:?}");
    let oldest: Vec<String> = kept[..kept.len() - 1].iter().map(|k| k.0.clone()).collect();
    close(s, &p);
    let pristine = p.path().join("pristine");
    cp_r(&p.path().join("results"), &pristine);
    let want = reference("torn", epochs, spe);

    // (what, damage to the newest checkpoint, whether the older ones are damaged too)
    type Damage = fn(&Path);
    let cases: [(&str, Damage, bool); 8] = [
        (
            "manifest deleted",
            |n| std::fs::remove_file(n.join("manifest.json")).unwrap(),
            false,
        ),
        (
            "manifest truncated",
            |n| truncate(&n.join("manifest.json")),
            false,
        ),
        (
            "state truncated",
            |n| truncate(&n.join("state.json")),
            false,
        ),
        (
            "config truncated",
            |n| truncate(&n.join("model/config.json")),
            false,
        ),
        (
            "weights truncated",
            |n| truncate(&n.join("model/model.safetensors")),
            false,
        ),
        (
            "optimizer truncated",
            |n| truncate(&n.join("optimizer.safetensors")),
            false,
        ),
        (
            "optimizer byte flipped",
            |n| flip_byte(&n.join("optimizer.safetensors")),
            false,
        ),
        (
            "both bad",
            |n| flip_byte(&n.join("optimizer.safetensors")),
            true,
        ),
    ];
    for (what, damage, older_bad_too) in cases {
        cp_r(&pristine, &p.path().join("results"));
        let ckpts = dir.join("checkpoints");
        damage(&ckpts.join(&newer.0));
        if older_bad_too {
            for o in &oldest {
                truncate(&ckpts.join(o).join("model/model.safetensors"));
            }
        }
        let out = p.cmd().arg("run").arg(&file).output().unwrap();
        assert!(out.status.success(), "{what}: {}", out_text(&out));
        let s = ledger(&p);
        let done = s.trial(t.id).unwrap().unwrap();
        assert_eq!(done.state, TrialState::Completed, "{what}");
        assert_eq!(done.attempts, 2, "{what}");
        // The environment says what was found and which checkpoint was used.
        let r = resume_of(&done);
        let rejected = r["rejected"].as_array().cloned().unwrap_or_default();
        let named = |name: &str| rejected.iter().find(|x| x["name"] == name).cloned();
        let bad = named(&newer.0).unwrap_or_else(|| panic!("{what}: {r}"));
        let problem = bad["problem"].as_str().unwrap();
        let (expect, step) = match what {
            "manifest deleted" => ("no manifest.json", None),
            "manifest truncated" => ("not a complete manifest", None),
            "optimizer byte flipped" | "both bad" => ("SHA-256", Some(newer.1)),
            _ => ("(truncated)", Some(newer.1)),
        };
        assert!(problem.contains(expect), "{what}: {problem}");
        assert_eq!(bad["step"].as_u64(), step, "{what}: {r}");
        // Besides the damaged ones only a checkpoint the kill cut short may be passed over.
        for x in &rejected {
            let name = x["name"].as_str().unwrap();
            let damaged = name == newer.0 || (older_bad_too && oldest.iter().any(|o| o == name));
            assert!(
                damaged || x["problem"].as_str().unwrap().contains("never completed"),
                "{r}"
            );
        }
        let shown = match step {
            Some(s) => format!("checkpoint {} (step {s}): ", newer.0),
            None => format!("checkpoint {}: ", newer.0),
        };
        let log = std::fs::read_to_string(dir.join("trial.log")).unwrap();
        assert!(log.contains(&shown), "{what}: {log}");
        let from_step = if !older_bad_too {
            assert_eq!(r["checkpoint"]["name"], older.0.as_str(), "{what}: {r}");
            assert_eq!(r["checkpoint"]["step"], older.1, "{what}: {r}");
            assert_eq!(done.env.as_ref().unwrap()["resumed_from_step"], older.1);
            assert!(
                log.contains(&format!(
                    "resuming from checkpoint {} (step {})",
                    older.0, older.1
                )),
                "{what}: {log}"
            );
            older.1
        } else {
            assert!(r["checkpoint"].is_null(), "{what}: {r}");
            assert!(oldest.iter().all(|o| named(o).is_some()), "{what}: {r}");
            assert!(
                log.contains("no usable checkpoint: the trial starts from the beginning"),
                "{what}: {log}"
            );
            0
        };
        // `sweep status` shows it.
        let status = p.cmd().args(["status", "torn"]).output().unwrap();
        let text = String::from_utf8_lossy(&status.stdout);
        assert!(status.status.success(), "{}", out_text(&status));
        println!("{what}: sweep status says\n{text}");
        assert!(
            text.contains("checkpoints that failed verification")
                && text.contains(&shown["checkpoint ".len()..]),
            "{what}: {text}"
        );
        assert_same_numbers(
            &numbers(&*s, &done),
            &want,
            &format!("{what} (from step {from_step})"),
        );
        close(s, &p);
        assert!(
            !dir.join("checkpoints").exists(),
            "{what}: removed once done"
        );
    }
}

/// A small tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a tmpfs and needs root (CI runs as root): {}",
            out_text(&out)
        );
        Self(at.to_path_buf())
    }

    fn free_bytes(&self) -> u64 {
        let c = std::ffi::CString::new(self.0.to_str().unwrap()).unwrap();
        // SAFETY: statvfs fills the struct we pass for a NUL-terminated path.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
        st.f_bavail * st.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Every file under `dir` with its bytes, by relative path.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
                out.push((rel, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
#[ignore = "needs root: mounts a small tmpfs as --artifacts (.ci/run runs the ignored tests as root)"]
fn a_full_disk_while_checkpointing_keeps_the_previous_checkpoint_and_the_rerun_resumes_from_it() {
    let (epochs, spe) = (3, 50);
    let p = Project::new();
    let file = sweep_file(&p, "full", epochs, spe);
    let fs = Tmpfs::mount(&p.path().join("art"), "64m");
    let run = |p: &Project| {
        let mut c = p.cmd();
        c.arg("run").arg(&file).arg("--artifacts").arg(&fs.0);
        c
    };

    // 1. A first checkpoint: Ctrl-C once training has started (it checkpoints and stops).
    let child = p
        .std_cmd()
        .arg("run")
        .arg(&file)
        .arg("--artifacts")
        .arg(&fs.0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the ledger", Duration::from_secs(300), || {
        p.path().join("results/sweep.db").exists()
    });
    let s = ledger(&p);
    wait_for("training to start", Duration::from_secs(300), || {
        the_trial(&*s, "full").is_some_and(|t| s.last_metric(t.id, "train").unwrap().is_some())
    });
    // SAFETY: kill(2) on our child; like a terminal's Ctrl-C, the trial process gets it too.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", out_text(&out));
    let t = the_trial(&*s, "full").unwrap();
    assert_eq!(t.state, TrialState::Interrupted);
    let dir = fs.0.join("trials").join(t.short_hash());
    // One checkpoint (two if the Ctrl-C came after an epoch's end), and one more due: the last
    // epoch's end writes none.
    let first = complete_checkpoints(&dir);
    let (name, step) = first.last().cloned().expect("a checkpoint");
    assert!(step < ((epochs - 1) * spe) as u64, "{first:?}");
    let names: Vec<String> = first.iter().map(|c| c.0.clone()).collect();
    let ckpts = dir.join("checkpoints");
    let before = snapshot(&ckpts);
    let size: u64 = snapshot(&ckpts.join(&name))
        .iter()
        .map(|(_, b)| (b.len() as u64).div_ceil(4096) * 4096)
        .sum();

    // 2. Fill the disk to leave room for half a checkpoint: the next one (at the epoch's end)
    // runs out of space.
    let ballast = fs.0.join("ballast");
    let fill = fs.free_bytes() - size / 2;
    std::fs::write(&ballast, vec![1u8; fill as usize]).unwrap();
    let out = run(&p).output().unwrap();
    assert!(!out.status.success(), "{}", out_text(&out));
    let failed = s.trial(t.id).unwrap().unwrap();
    assert_eq!(failed.state, TrialState::Failed, "{}", out_text(&out));
    let error = failed.error.clone().unwrap_or_default();
    println!("the failed trial's error: {error}");
    for want in [
        "no space left on the device",
        &format!("the previous one, {name} (step {step}), is kept unchanged"),
        &format!("fix: free space under --artifacts {}", fs.0.display()),
        "then run `sweep run` again",
        &format!("the trial resumes from checkpoint {name} (step {step})"),
    ] {
        assert!(error.contains(want), "missing `{want}` in: {error}");
    }
    // Untouched, and the partial one removed: nothing else in the folder.
    assert_eq!(
        snapshot(&ckpts),
        before,
        "the previous checkpoint is untouched"
    );
    let mut left: Vec<String> = std::fs::read_dir(&ckpts)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, names, "the partial checkpoint was removed");

    // 3. Space freed, the same command again: it resumes from that checkpoint and ends with the
    // uninterrupted run's numbers.
    std::fs::remove_file(&ballast).unwrap();
    let out = run(&p).output().unwrap();
    assert!(out.status.success(), "{}", out_text(&out));
    let done = s.trial(t.id).unwrap().unwrap();
    assert_eq!(done.state, TrialState::Completed);
    let r = resume_of(&done);
    assert_eq!(r["checkpoint"]["name"], name.as_str(), "{r}");
    assert_eq!(r["checkpoint"]["step"], step, "{r}");
    let want = reference("full", epochs, spe);
    assert_same_numbers(&numbers(&*s, &done), &want, "after the full disk");
}

#[test]
fn status_on_a_missing_ledger_writes_nothing() {
    let p = Project::new();
    let before = snapshot(p.path());
    for (args, path) in [
        (vec!["status"], "results/sweep.db"),
        (
            vec!["status", "--db", "nowhere/sweep.db"],
            "nowhere/sweep.db",
        ),
        (
            vec!["status", "some_sweep", "--db", "nowhere/x.db"],
            "nowhere/x.db",
        ),
    ] {
        let out = p.cmd().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out_text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(path) && err.contains("--db"),
            "{args:?}: the error names the path and --db: {err}"
        );
        assert_eq!(snapshot(p.path()), before, "{args:?} wrote nothing");
    }
}
