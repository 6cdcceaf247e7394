//! End-to-end checks of `sweep report|results|query|export` on a synthetic ledger, including a
//! real headless-Chromium render of the HTML report.

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;
use std::path::{Path, PathBuf};
use sweep::store::synth::{block_size_fixture, create_ledger, insert_sweep};

const HOSTILE: &str = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>";

fn ledger(dir: &Path, hostile: &str) -> String {
    let path = dir.join("sweep.db");
    let store = create_ledger(&path).unwrap();
    let (sweep, trials) = block_size_fixture(hostile);
    insert_sweep(store.as_ref(), &sweep, &trials).unwrap();
    path.display().to_string()
}

fn sweep_cmd(db: &str) -> Command {
    let mut c = Command::cargo_bin("sweep").unwrap();
    c.env("SWEEP_DB", db);
    c
}

#[test]
fn cli_report_results_query_export() {
    let dir = tempfile::tempdir().unwrap();
    let db = ledger(dir.path(), "");
    let out = dir.path().join("out/block.html");
    sweep_cmd(&db)
        .args(["report", "block_size", "--out"])
        .arg(&out)
        .assert()
        .success()
        .stdout(contains("wrote"));
    assert!(std::fs::read_to_string(&out).unwrap().contains("<svg"));

    // Unknown sweep: exit 2, known names listed.
    sweep_cmd(&db)
        .args(["report", "nope"])
        .assert()
        .code(2)
        .stderr(contains("unknown sweep `nope`; known sweeps: block_size"));
    // Unwritable output: exit 2 with the path and the fix.
    std::fs::write(dir.path().join("blocker"), "x").unwrap();
    sweep_cmd(&db)
        .args(["report", "block_size", "--out"])
        .arg(dir.path().join("blocker/r.html"))
        .assert()
        .code(2)
        .stderr(contains("cannot write the report to").and(contains("--out")));

    sweep_cmd(&db)
        .args(["results", "block_size", "--format", "markdown"])
        .assert()
        .success()
        .stdout(contains(
            "| Model | Block Size | n | Train Loss | Valid Loss | Train PPL | Valid PPL |",
        ));
    for f in ["table", "csv", "json", "latex"] {
        sweep_cmd(&db)
            .args(["results", "block_size", "--format", f])
            .assert()
            .success()
            .stdout(contains("512"));
    }

    sweep_cmd(&db)
        .args(["query", "DROP TABLE metrics"])
        .assert()
        .code(2)
        .stderr(contains("`sweep query` is read-only"));
    sweep_cmd(&db)
        .args([
            "query",
            "SELECT count(*) AS n FROM metrics",
            "--format",
            "csv",
        ])
        .assert()
        .success()
        .stdout("n\n122\n");

    let exported = sweep_cmd(&db)
        .args(["export", "block_size", "--format", "csv"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(String::from_utf8(exported).unwrap().lines().count(), 123);

    let reports = dir.path().join("reports");
    sweep_cmd(&db)
        .args(["report", "--all", "--out"])
        .arg(&reports)
        .assert()
        .success();
    assert!(reports.join("index.html").exists() && reports.join("block_size.html").exists());
}

fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = std::process::Command::new("which").arg(name).output() {
            if out.status.success() {
                let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if !p.is_empty() {
                    return Some(PathBuf::from(p));
                }
            }
        }
    }
    None
}

/// Loads the report in headless Chromium and checks the parsed DOM: the paper table's rows, the
/// hostile strings as text (not elements), and four non-empty SVG plots.
#[test]
#[ignore = "needs Chromium (.ci/run installs it)"]
fn report_renders_in_headless_chromium() {
    let browser =
        chromium().expect("chromium not found: this test needs it (apt-get install -y chromium)");
    let dir = tempfile::tempdir().unwrap();
    let db = ledger(dir.path(), HOSTILE);
    let out = dir.path().join("block_size.html");
    sweep_cmd(&db)
        .args(["report", "block_size", "--out"])
        .arg(&out)
        .assert()
        .success();
    let base = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
    ];
    let profile = dir.path().join("chrome-profile");
    let url = format!("file://{}", out.display());
    let dom = std::process::Command::new(&browser)
        .args(base)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("running chromium");
    assert!(
        dom.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);

    // The paper-layout table: header + 5 rows in its tbody.
    let table = dom
        .split("<table class=\"paper\">")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .expect("paper table in the DOM");
    assert!(table.contains("<th>Valid PPL</th>"));
    let body = table.split("<tbody>").nth(1).unwrap();
    assert_eq!(body.matches("<tr>").count(), 5, "five Table-4 rows");
    assert!(body.contains("<td class=\"l\">gpt2-tiny*</td>"));

    // Hostile text stayed text: the browser created no script or img element from it.
    assert!(
        !dom.contains("<script"),
        "a <script> element exists in the DOM"
    );
    assert!(!dom.contains("<img"), "an <img> element exists in the DOM");
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));

    // Six plots, each with drawn content: the four of a sweep (perplexity vs the axis, loss
    // curves, throughput, ...) and, since the baseline has two seeds, the forest plot of the
    // effects and the expected validation performance.
    let svgs: Vec<&str> = dom.split("<svg").skip(1).collect();
    assert_eq!(svgs.len(), 6, "six SVG plots");
    for s in &svgs {
        let svg = s.split("</svg>").next().unwrap();
        let marks = svg.matches("<polyline").count()
            + svg.matches("<rect").count()
            + svg.matches("<circle").count();
        assert!(
            marks > 3 && svg.contains("<text"),
            "an empty plot: {}",
            &svg[..svg.len().min(300)]
        );
    }

    // A screenshot for a human look (kept when SWEEP_REPORT_SCREENSHOT names a path).
    let shot = std::env::var("SWEEP_REPORT_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("report.png"));
    let st = std::process::Command::new(&browser)
        .args(base)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--window-size=1200,4200")
        .arg("--hide-scrollbars")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .expect("running chromium");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "screenshot too small: {}",
        png.len()
    );

    // Printed, the collapsed <details> sections print open: the PDF holds the same text as the
    // report with every section opened by hand (they printed collapsed before).
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(
        html.contains("<details>"),
        "the report has collapsed sections"
    );
    let opened = dir.path().join("opened.html");
    std::fs::write(&opened, html.replace("<details>", "<details open>")).unwrap();
    let printed_text = |page: &Path, name: &str| -> String {
        let pdf = dir.path().join(format!("{name}.pdf"));
        let st = std::process::Command::new(&browser)
            .args(base)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--no-pdf-header-footer")
            .arg(format!("--print-to-pdf={}", pdf.display()))
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("running chromium");
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        let txt = std::process::Command::new("pdftotext")
            .arg(&pdf)
            .arg("-")
            .output()
            .expect("pdftotext (poppler-utils) is needed: .ci/run installs it");
        String::from_utf8_lossy(&txt.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let printed = printed_text(&out, "report");
    let expanded = printed_text(&opened, "opened");
    assert!(
        expanded.len() > 1000 && printed.len() == expanded.len(),
        "printed report: {} characters, with every section open: {}",
        printed.len(),
        expanded.len()
    );
}
