//! `sweep data prepare` end to end: fixtures the tests write, every bad input, and the shared cs.CL dump.

use assert_cmd::cargo::cargo_bin_cmd;
use predicates::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};

const HEADER: &str = "\tabstract\tacm_class\tarxiv_id\tauthor_text\tcategories\tcomments\tcreated\tdoi\tnum_authors\tnum_categories\tprimary_cat\ttitle\tupdated\tcategories_list\n";

fn row(id: &str, title: &str, abs: &str, cats: &str, created: &str) -> String {
    format!("7\t{abs}\t\t{id}\tA. Author\t{cats}\t\t{created}\t\t1\t1\tcs.CL\t{title}\t\t[]\n")
}

/// 40 cs.CL papers with unsorted dates and a quoted multi-line title.
fn tsv_text(n: usize, id_base: usize, cats: &str) -> String {
    let mut t = HEADER.to_string();
    for i in (0..n).rev() {
        let id = format!("1805.{:05}", id_base + i);
        let date = format!("2018-{:02}-{:02}", 1 + i % 12, 1 + i % 28);
        t += &row(
            &id,
            &format!("\"Paper {i}\non parsing\""),
            &format!("We   study {i}."),
            cats,
            &date,
        );
    }
    t
}

fn prepare(dir: &Path, inputs: &[&Path], extra: &[&str]) -> assert_cmd::assert::Assert {
    let mut cmd = cargo_bin_cmd!("sweep");
    cmd.arg("data")
        .arg("prepare")
        .arg("--out")
        .arg(dir.join("out"));
    cmd.arg("--cache").arg(dir.join("cache"));
    cmd.arg("--input");
    for i in inputs {
        cmd.arg(i);
    }
    cmd.args(extra).assert()
}

fn no_output(dir: &Path) {
    assert!(!dir.join("out").exists(), "partial output left behind");
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".out"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary directories left: {leftovers:?}"
    );
}

#[test]
fn prepares_merged_tsv_and_json_lines() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("cs.CL.tsv");
    std::fs::write(&a, tsv_text(40, 0, "cs.CL")).unwrap();
    // The same 10 papers again (cross-listed) plus JSON lines from the Kaggle dump.
    let b = d.path().join("snapshot.jsonl");
    let mut json = String::new();
    for i in 30..50 {
        json += &format!(
            "{{\"id\":\"1805.{i:05}\",\"title\":\"Paper {i} on parsing\",\"abstract\":\"We study {i}.\",\"categories\":\"cs.LG stat.ML\",\"versions\":[{{\"created\":\"Tue, 1 Jan 2019 10:00:00 GMT\"}}]}}\n"
        );
    }
    json += "{\"id\":\"1901.00001\",\"title\":\"No abstract\",\"abstract\":\"  \",\"categories\":\"cs.AI\",\"versions\":[{\"created\":\"Tue, 1 Jan 2019 10:00:00 GMT\"}]}\n";
    std::fs::write(&b, json).unwrap();
    prepare(d.path(), &[&a, &b], &["--split", "8,1,1"])
        .success()
        .stdout(predicate::str::contains("10 duplicate ids"))
        .stdout(predicate::str::contains("1 empty abstracts"))
        .stdout(predicate::str::is_match(r"\| Total \|\s+50 \|").unwrap());
    let out = d.path().join("out");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let counts: Vec<u64> = m["splits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, vec![40, 5, 5]);
    assert_eq!(m["sources"].as_array().unwrap().len(), 2);
    assert_eq!(m["sources"][0]["sha256"].as_str().unwrap().len(), 64);
    let train = std::fs::read_to_string(out.join("train.txt")).unwrap();
    let first = train.lines().next().unwrap();
    assert_eq!(
        first,
        "<|startoftext|> Paper 0 on parsing <|sep|> We study 0. <|endoftext|>"
    );
    // The JSON-only papers (dated 2019) are the newest, so they are the test split.
    let test = std::fs::read_to_string(out.join("test.txt")).unwrap();
    assert!(test.lines().all(|l| l.contains("Paper 4")), "{test}");
    // Running again replaces the directory in place.
    prepare(d.path(), &[&a], &["--split", "8,1,1"]).success();
    let m2: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m2["counts"]["kept"], 40);
    no_output_tmp(d.path());
}

fn no_output_tmp(dir: &Path) {
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".out"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn missing_file_and_unknown_extension() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("cs.XX.tsv.xz");
    prepare(d.path(), &[&missing], &[]).code(2).stderr(
        predicate::str::contains("cs.XX.tsv.xz").and(predicate::str::contains("not found")),
    );
    no_output(d.path());
    let csv = d.path().join("papers.csv");
    std::fs::write(&csv, "a,b\n").unwrap();
    prepare(d.path(), &[&csv], &[]).code(2).stderr(
        predicate::str::contains("papers.csv")
            .and(predicate::str::contains("unknown input format")),
    );
    no_output(d.path());
}

#[test]
fn corrupt_xz_and_zip() {
    let d = tempfile::tempdir().unwrap();
    let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
    enc.write_all(tsv_text(400, 0, "cs.CL").as_bytes()).unwrap();
    let xz = enc.finish().unwrap();
    let truncated = d.path().join("cut.tsv.xz");
    std::fs::write(&truncated, &xz[..xz.len() / 2]).unwrap();
    prepare(d.path(), &[&truncated], &[])
        .failure()
        .stderr(predicate::str::contains("cut.tsv.xz").and(predicate::str::contains("corrupt")));
    no_output(d.path());
    let zip = d.path().join("2018.tsv.zip");
    std::fs::write(&zip, b"PK\x03\x04 this is not really a zip archive").unwrap();
    prepare(d.path(), &[&zip], &[])
        .failure()
        .stderr(predicate::str::contains("2018.tsv.zip"));
    no_output(d.path());
}

#[test]
fn header_without_required_columns() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("wrong.tsv");
    std::fs::write(&f, "id\tname\tsummary\n1\tx\ty\n").unwrap();
    prepare(d.path(), &[&f], &[]).code(2).stderr(
        predicate::str::contains("wrong.tsv")
            .and(predicate::str::contains("arxiv_id, title, abstract")),
    );
    no_output(d.path());
}

#[test]
fn malformed_rows_are_skipped_or_fatal_with_strict() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("some-bad.tsv");
    let mut t = tsv_text(40, 0, "cs.CL");
    t += "41\tonly three\tfields\n";
    t += &row("1805.09999", "Undated", "Abs", "cs.CL", "yesterday");
    std::fs::write(&f, t).unwrap();
    prepare(d.path(), &[&f], &["--split", "8,1,1"])
        .success()
        .stdout(predicate::str::contains("2 malformed"))
        .stdout(predicate::str::contains("some-bad.tsv: row 41"));
    std::fs::remove_dir_all(d.path().join("out")).unwrap();
    prepare(d.path(), &[&f], &["--strict"]).code(2).stderr(
        predicate::str::contains("some-bad.tsv: row 41 (line 82)")
            .and(predicate::str::contains("--strict")),
    );
    no_output(d.path());
}

#[test]
fn filters_that_leave_nothing() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("math.tsv");
    std::fs::write(&f, tsv_text(40, 0, "math.CO")).unwrap();
    prepare(d.path(), &[&f], &[]).code(2).stderr(
        predicate::str::contains("no papers left")
            .and(predicate::str::contains("math.tsv"))
            .and(predicate::str::contains("40 outside categories")),
    );
    no_output(d.path());
    // Too few papers for a non-empty valid split.
    std::fs::write(&f, tsv_text(5, 0, "cs.CL")).unwrap();
    prepare(d.path(), &[&f], &[])
        .code(2)
        .stderr(predicate::str::contains("valid split"));
    no_output(d.path());
}

#[test]
fn unwritable_output_directory() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("cs.CL.tsv");
    std::fs::write(&f, tsv_text(40, 0, "cs.CL")).unwrap();
    // A regular file where a directory is needed (permission bits do not stop root).
    let blocker = d.path().join("blocker");
    std::fs::write(&blocker, "").unwrap();
    let out = blocker.join("prepared");
    cargo_bin_cmd!("sweep")
        .args(["data", "prepare", "--input"])
        .arg(&f)
        .arg("--out")
        .arg(&out)
        .arg("--cache")
        .arg(d.path().join("cache"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("blocker"));
    assert!(!out.exists());
    // An existing non-empty directory that is not a prepared one is left alone.
    let busy = d.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), "mine").unwrap();
    cargo_bin_cmd!("sweep")
        .args(["data", "prepare", "--input"])
        .arg(&f)
        .arg("--out")
        .arg(&busy)
        .arg("--cache")
        .arg(d.path().join("cache"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("refusing to overwrite"));
    assert_eq!(
        std::fs::read_to_string(busy.join("notes.txt")).unwrap(),
        "mine"
    );
}

fn arxiv_dir() -> PathBuf {
    std::env::var_os("SWEEP_ARXIV_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/arxiv-archive/20190101")
        })
}

#[test]
#[ignore = "needs the shared arXiv data (SWEEP_ARXIV_DIR; .ci/run sets it)"]
fn shared_cs_cl_dump_gives_the_expected_split() {
    let file = arxiv_dir().join("cs.CL.tsv.xz");
    assert!(
        file.is_file(),
        "{} not found: set SWEEP_ARXIV_DIR to the arXiv Archive 20190101 directory",
        file.display()
    );
    let d = tempfile::tempdir().unwrap();
    prepare(d.path(), &[&file], &[])
        .success()
        .stdout(predicate::str::contains("| train | 10,472 |"))
        .stdout(predicate::str::contains("| valid |    582 |"))
        .stdout(predicate::str::contains("| test  |    582 |"))
        .stdout(predicate::str::contains("| Total | 11,636 |"));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("out/manifest.json")).unwrap())
            .unwrap();
    let s = m["splits"].as_array().unwrap();
    let counts: Vec<u64> = s.iter().map(|s| s["count"].as_u64().unwrap()).collect();
    assert_eq!(counts, vec![10_472, 582, 582]);
    assert!(s[0]["last_date"].as_str().unwrap() <= s[1]["first_date"].as_str().unwrap());
    assert!(s[1]["last_date"].as_str().unwrap() <= s[2]["first_date"].as_str().unwrap());
    assert_eq!(m["counts"]["rows"], 11_636);
    assert_eq!(m["tokenizer"], "gpt2+2special");
    for split in s {
        let lines =
            std::fs::read_to_string(d.path().join("out").join(split["file"].as_str().unwrap()))
                .unwrap();
        assert_eq!(
            lines.lines().count() as u64,
            split["count"].as_u64().unwrap()
        );
        assert!(split["tokens"].as_u64().unwrap() > 100 * split["count"].as_u64().unwrap());
    }
}
