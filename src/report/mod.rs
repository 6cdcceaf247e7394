//! `sweep report`: turns a sweep's ledger records into one self-contained HTML report.
//!
//! The records come from the ledger opened read-only ([`crate::store::open_read_only`]); `data`
//! (the paper table), `compare`, `effects` (each row against the baseline over seeds, expected
//! validation performance), `score`, `forest`, `plots` and `summary` compute what is shown
//! (pure), `svg` and `stats_svg` draw the plots and `html` renders the page from the building
//! blocks in `markup` (which the live
//! dashboard uses too). A search sweep's history, slices, parallel coordinates and top trials come
//! from `search` (pure), are drawn by `search_svg` and laid out by `search_html`.

pub mod compare;
pub mod data;
pub mod effects;
pub mod forest;
pub mod html;
pub mod markup;
pub mod plots;
pub mod score;
pub mod search;
pub mod search_html;
pub mod search_svg;
mod stats_svg;
pub mod summary;
mod svg;

use anyhow::Result;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::error::UsageError;
use crate::store::{self, SweepRecords, TrialState};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The sweep: its recorded name (`block_size`, `block_size@quick`; `sweep status` lists them)
    /// or its sweep file.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub sweep: Option<String>,
    #[command(flatten)]
    pub profile: crate::config::ProfileArg,
    /// Report every sweep in the ledger and write `index.html` beside them.
    #[arg(long)]
    pub all: bool,
    /// Output file (one sweep; default `reports/SWEEP.html`) or directory (with --all; default `reports`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Ledger database URL or SQLite path.
    #[arg(long, env = "SWEEP_DB", default_value = store::DEFAULT_DB)]
    pub db: String,
    #[command(flatten)]
    pub artifacts: crate::locations::ArtifactsArgs,
}

/// A sweep name made safe as a file name (`block/size` -> `block_size`).
pub fn file_stem(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("sweep{s}")
    } else {
        s
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Writes `contents` to `out` atomically: a temp file in the same directory, then rename, so a
/// reader never sees a half-written report.
pub fn write_atomic(out: &Path, contents: &[u8]) -> Result<()> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let unwritable = |what: &str, e: &dyn std::fmt::Display| -> anyhow::Error {
        UsageError(format!(
            "cannot write the report to `{}`: {what}: {e}; pass --out with a writable path",
            out.display()
        ))
        .into()
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| unwritable(&format!("creating `{}`", dir.display()), &e))?;
    if out.is_dir() {
        return Err(unwritable("it is a directory", &"expected a file path"));
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".report-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|e| unwritable("creating a temp file", &e))?;
    tmp.write_all(contents)
        .map_err(|e| unwritable("writing", &e))?;
    // Temp files are private (0600); a report is an ordinary readable file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(|e| unwritable("setting permissions", &e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| unwritable("syncing", &e))?;
    tmp.persist(out)
        .map_err(|e| unwritable("renaming the temp file", &e.error))?;
    Ok(())
}

/// Renders the report of `sweep` from the ledger at `db_url` to `out` (atomically). The
/// scheduler calls this when a run ends or is interrupted.
/// Recorded artifact directories are relative to `artifacts` (the artifacts root, see
/// [`crate::artifacts`]); the report shows where they resolve.
pub fn write_sweep_report(db_url: &str, sweep: &str, out: &Path, artifacts: &Path) -> Result<()> {
    let ledger = store::open_read_only(db_url)?;
    let mut records = store::load_sweep_curves(ledger.as_ref(), sweep, plots::CURVE_BUDGET)?;
    drop(ledger);
    resolve_artifacts(&mut records, artifacts);
    let html = html::render_report(&records, &now_rfc3339());
    write_atomic(out, html.as_bytes())
}

/// The name the scheduler calls [`write_sweep_report`] by.
pub use write_sweep_report as write_sweep_report_blocking;

/// Replace each trial's recorded artifact directory by the path it resolves to under `root`.
pub fn resolve_artifacts(records: &mut SweepRecords, root: &Path) {
    for t in &mut records.trials {
        if let Some(d) = &t.artifact_dir {
            let abs = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
            t.trial.artifact_dir = Some(
                crate::artifacts::resolve(&abs, d, &t.hash)
                    .display()
                    .to_string(),
            );
        }
    }
}

/// Reports every sweep into `dir` (`<sweep>.html`) plus `dir/index.html`; returns the paths.
pub fn write_all_reports(db_url: &str, dir: &Path, artifacts: &Path) -> Result<Vec<PathBuf>> {
    let ledger = store::open_read_only(db_url)?;
    let mut entries = Vec::new();
    let mut written = Vec::new();
    for sweep in ledger.sweeps()? {
        let name = sweep.name;
        let file = format!("{}.html", file_stem(&name));
        let path = dir.join(&file);
        let mut records = store::load_sweep_curves(ledger.as_ref(), &name, plots::CURVE_BUDGET)?;
        resolve_artifacts(&mut records, artifacts);
        let html = html::render_report(&records, &now_rfc3339());
        write_atomic(&path, html.as_bytes())?;
        let tot = summary::totals(&records);
        let best = records
            .trials
            .iter()
            .filter(|t| t.state == TrialState::Completed)
            .filter_map(|t| t.results.valid_ppl)
            .filter(|v| v.is_finite())
            .fold(None, |b: Option<f64>, v| Some(b.map_or(v, |b| b.min(v))));
        entries.push(html::IndexEntry {
            name,
            title: records.sweep.title.clone(),
            state: summary::sweep_state(&tot.by_state),
            trials: tot.trials,
            best_valid_ppl: best,
            href: file,
        });
        written.push(path);
    }
    drop(ledger);
    let index = dir.join("index.html");
    write_atomic(
        &index,
        html::render_index(&entries, &now_rfc3339()).as_bytes(),
    )?;
    written.push(index);
    Ok(written)
}

/// `sweep report SWEEP [--out FILE]` / `sweep report --all [--out DIR]`.
pub fn run(args: ReportArgs) -> Result<ExitCode> {
    if args.all {
        let dir = args.out.unwrap_or_else(|| PathBuf::from("reports"));
        let written = write_all_reports(&args.db, &dir, &args.artifacts.root())?;
        for p in &written {
            println!("wrote {}", p.display());
        }
    } else {
        let sweep = args
            .sweep
            .ok_or_else(|| UsageError("name a sweep or pass --all".into()))?;
        let sweep = args.profile.sweep(&sweep)?;
        let out = args.out.unwrap_or_else(|| {
            PathBuf::from("reports").join(format!("{}.html", file_stem(&sweep)))
        });
        write_sweep_report(&args.db, &sweep, &out, &args.artifacts.root())?;
        println!("wrote {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::synth::{block_size_fixture, create_ledger, insert_sweep, SynthSweep};

    /// A ledger holding the block-size fixture (with `hostile` text) and an empty sweep.
    pub(crate) fn fixture_ledger(dir: &Path, hostile: &str) -> String {
        let path = dir.join("sweep.db");
        let store = create_ledger(&path).unwrap();
        let (sweep, trials) = block_size_fixture(hostile);
        insert_sweep(store.as_ref(), &sweep, &trials).unwrap();
        let empty = SynthSweep {
            name: "empty".into(),
            title: "Nothing yet".into(),
            profile: "quick".into(),
            spec: serde_json::json!({}),
            ..Default::default()
        };
        insert_sweep(store.as_ref(), &empty, &[]).unwrap();
        format!("sqlite://{}", path.display())
    }

    const HOSTILE: &str = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>";

    #[test]
    fn report_escapes_hostile_text_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture_ledger(dir.path(), HOSTILE);
        let out = dir.path().join("r.html");
        write_sweep_report_blocking(&db, "block_size", &out, Path::new("results")).unwrap();
        let html = std::fs::read_to_string(&out).unwrap();
        assert!(!html.contains("<script"), "raw <script> in the report");
        assert!(!html.contains("<img"), "raw <img> in the report");
        assert!(!html.contains("onerror=alert(2)>"));
        let escaped =
            "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(2)&gt;";
        // Title (header and <title>), the failed trial's error, a sample title and a sample text.
        assert!(
            html.matches(escaped).count() >= 5,
            "escaped text missing: {}",
            html.matches(escaped).count()
        );
        assert!(html.contains(&format!("out of memory at step 2{escaped}")));
        assert!(html.contains(&format!("In this paper we study attention{escaped}.")));
    }

    #[test]
    fn report_has_table_comparison_plots_and_details() {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture_ledger(dir.path(), "");
        let out = dir.path().join("sub/dir/r.html");
        write_sweep_report_blocking(&db, "block_size", &out, Path::new("results")).unwrap();
        let html = std::fs::read_to_string(&out).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        // Self-contained: no scripts, no external resources (the SVG namespace URI is not a fetch).
        assert!(
            !html.contains("<script")
                && !html.contains("src=")
                && !html.contains("href=\"http")
                && !html.contains("url(")
                && !html.contains("@import")
        );
        assert_eq!(
            html.matches("<svg").count(),
            6,
            "ppl-vs-axis, train curves, valid curves, throughput, the forest plot, expected \
             validation performance"
        );
        assert!(html.contains(
            "<td class=\"l\">gpt2-tiny*</td><td class=\"l\">512</td><td class=\"l\">2</td>"
        ));
        // The effects table (one seed against two: no intervals yet) and the forest plot.
        assert!(html.contains("<table class=\"paper cmp\" id=\"effects-table\">"));
        assert!(html.contains("<tr data-row=\"gpt2-tiny block_size=256\"><td class=\"l\">gpt2-tiny</td><td class=\"l\">256</td><td>1</td><td>+11.63%</td><td>—</td>"));
        assert!(html.contains("Forest plot: each row"));
        // Paper value 21.9143 beside ours.
        assert!(html.contains("<td>21.9143</td>"));
        assert!(html.contains("not paper scale"));
        // The reproduction score: the verdict, and block 32's change (the paper's; ours failed).
        assert!(html.contains(
            "<h3>Reproduction score: Block Size</h3><p class=\"verdict undecided\">Valid PPL: \
             undecided: none of 3 rows is decided at n = 1 (one seed gives no interval; run \
             seeds to decide); point estimates: 3/3 in the paper's direction, Spearman 1.00</p>"
        ));
        assert!(html.contains("<td class=\"l\">32</td><td>+54.7%</td><td>—</td>"));
        assert!(html.contains("Perplexity vs Block Size"));
        assert!(html.contains("log2 scale"));
        assert!(html.contains("Optimizer step") && html.contains("Throughput (tokens/s)"));
        assert!(
            html.contains("4.1200 ± 0.2541"),
            "seed mean ± the 95% interval's half-width of the baseline valid loss"
        );
        // No temp file left behind.
        let left: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn empty_sweep_report_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture_ledger(dir.path(), "");
        let out = dir.path().join("e.html");
        write_sweep_report_blocking(&db, "empty", &out, Path::new("results")).unwrap();
        let html = std::fs::read_to_string(&out).unwrap();
        assert!(html.contains("This sweep has no trials yet"));
        assert!(!html.contains("<svg"));
    }

    #[test]
    fn unknown_sweep_lists_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture_ledger(dir.path(), "");
        let err = write_sweep_report_blocking(
            &db,
            "nope",
            &dir.path().join("x.html"),
            Path::new("results"),
        )
        .unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some());
        let msg = format!("{err:#}");
        assert!(
            msg.contains("unknown sweep `nope`") && msg.contains("block_size, empty"),
            "{msg}"
        );
        assert!(!dir.path().join("x.html").exists());
    }

    #[test]
    fn missing_ledger_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("none.db");
        let err = write_sweep_report_blocking(
            db.to_str().unwrap(),
            "x",
            &dir.path().join("x.html"),
            Path::new("results"),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("no ledger database at"),
            "{err:#}"
        );
        assert!(!db.exists(), "a read-only open must not create the file");
    }

    #[test]
    fn unwritable_out_path_is_a_clear_error_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture_ledger(dir.path(), "");
        // A path below a regular file cannot be created.
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let err = write_sweep_report_blocking(
            &db,
            "block_size",
            &blocker.join("r.html"),
            Path::new("results"),
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("cannot write the report to") && msg.contains("--out"),
            "{msg}"
        );
        // A directory as the output path.
        let err = write_sweep_report_blocking(&db, "block_size", dir.path(), Path::new("results"))
            .unwrap_err();
        assert!(format!("{err:#}").contains("is a directory"));
        // Atomic replace: an existing report is only ever replaced whole.
        let out = dir.path().join("r.html");
        std::fs::write(&out, "old").unwrap();
        write_sweep_report_blocking(&db, "block_size", &out, Path::new("results")).unwrap();
        assert!(std::fs::read_to_string(&out)
            .unwrap()
            .ends_with("</html>\n"));
    }

    #[test]
    fn all_reports_and_index() {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture_ledger(dir.path(), "");
        let out = dir.path().join("reports");
        let written = write_all_reports(&db, &out, Path::new("results")).unwrap();
        assert_eq!(written.len(), 3);
        let index = std::fs::read_to_string(out.join("index.html")).unwrap();
        assert!(index.contains("<a href=\"block_size.html\">block_size</a>"));
        assert!(index.contains("completed with failures"));
        assert!(index.contains("empty"));
        // Best valid PPL: exp(4.10) of the baseline's seed 1.
        assert!(index.contains(&format!("{:.4}", 4.10f64.exp())));
        assert!(out.join("empty.html").exists());
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(file_stem("block_size"), "block_size");
        assert_eq!(file_stem("../a b/c"), "sweep.._a_b_c");
        assert_eq!(file_stem(""), "sweep");
    }
}
