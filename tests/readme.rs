//! The README's examples against what the code writes, so that they stay true: the `job.sbatch`
//! it shows is the script generator's output for the flags it names, with placeholders where a
//! real script has the paths of the machine it was made on.

use std::path::Path;
use sweep::exec::slurm::{render_script, ScriptSpec, Slurm};
use sweep::exec::TrialCommand;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md")
}

/// The body of the first fenced block after the line that ends with `marker`.
fn block_after(text: &str, marker: &str) -> String {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("README has no {marker:?}"));
    let rest = &text[at..];
    let open = rest.find("\n```").expect("a fenced block after the marker");
    let body = &rest[open + 4..];
    let body = &body[body.find('\n').expect("a fence line") + 1..];
    body[..body.find("```").expect("a closing fence")].to_string()
}

#[test]
fn the_readme_job_sbatch_is_the_generated_script_with_placeholders() {
    let shown = block_after(
        &readme(),
        "`<artifacts>/slurm/block_size-<time>/job.sbatch`:",
    );
    for machine in ["/work/", "/tmp/", "/home/", "/root/", "target/debug"] {
        assert!(
            !shown.contains(machine),
            "the README's job.sbatch names a path of the machine it was made on ({machine}); \
             show placeholders:\n{shown}"
        );
    }
    // The generator's script for a user `alice` in /path/to/checkout, submitted at a fixed time:
    // the README shows `$USER` and `<time>` there.
    let flags = "--executor slurm --partition debug --gpus-per-trial 1 --time 04:00:00 \
                 --max-parallel 4 --sbatch-arg=--cpus-per-task=8 --sbatch-arg=--mem=32G \
                 --artifacts /shared/alice/sweep --dry-run";
    let exec = Slurm {
        partition: Some("debug".into()),
        gpus_per_trial: 1,
        time: "04:00:00".into(),
        max_parallel: Some(4),
        sbatch_args: vec!["--cpus-per-task=8".into(), "--mem=32G".into()],
        artifacts: "/shared/alice/sweep".into(),
        artifacts_local_ok: false,
        requeue: false,
        dry_run: true,
        checkpoint_minutes: 10.0,
        cache_root: "/path/to/checkout/results/cache".into(),
        command_line: format!("sweep run experiments/block_size.toml {flags}"),
    };
    let command = TrialCommand {
        exe: "/path/to/checkout/target/release/sweep".into(),
        db: None,
        device: "cuda:0".into(),
        checkpoint_minutes: 10.0,
        artifacts: None,
        skip_if_taken: true,
        hub_cache: "/shared/alice/hf-cache".into(),
    };
    let script = render_script(&ScriptSpec {
        sweep_name: "block_size",
        tasks: 5,
        exec: &exec,
        job_dir: Path::new("/shared/alice/sweep/slurm/block_size-20260101T000000.000Z"),
        work_dir: Path::new("/path/to/checkout"),
        command: &command,
        search: false,
    });
    let expected = script
        .replace("/shared/alice/", "/shared/$USER/")
        .replace("20260101T000000.000Z", "<time>");
    assert_eq!(
        shown, expected,
        "the README's job.sbatch differs from what `sweep run --executor slurm` writes; copy \
         the right-hand side into the README"
    );
}
